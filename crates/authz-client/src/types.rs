//! Revisions, consistency, resources and decisions: the plain types requests and answers use.

use crate::proto;
use std::fmt;

/// A tenant's revision: every committed write bumps it by one, and every answer says which
/// revision it was decided at.
///
/// On the wire a revision is a token of digits (`"42"`); [`Revision::parse`] reads exactly what
/// the server writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl Revision {
    /// Reads a revision token as the server writes it: digits, no sign, spaces or leading
    /// zeros. `None` for anything else.
    ///
    /// ```
    /// use authz_client::Revision;
    /// assert_eq!(Revision::parse("42"), Some(Revision(42)));
    /// assert_eq!(Revision::parse("042"), None);
    /// ```
    pub fn parse(token: &str) -> Option<Revision> {
        let canonical = !token.is_empty()
            && token.bytes().all(|b| b.is_ascii_digit())
            && (token == "0" || !token.starts_with('0'));
        if canonical {
            token.parse().ok().map(Revision)
        } else {
            None
        }
    }

    /// The token the server reads (`"42"`).
    pub fn token(self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Reads a revision a response carried; a response without a valid one is a protocol error.
pub(crate) fn revision_in(token: &str) -> Result<Revision, crate::Error> {
    Revision::parse(token).ok_or_else(|| {
        crate::Error::Status(tonic::Status::internal(format!(
            "the server answered with revision {token:?}, which is not a revision token"
        )))
    })
}

/// How fresh the data behind a read must be.
///
/// Left unset on a request, the client sends [`Consistency::AtLeastAsFresh`] with the newest
/// revision its own writes to the tenant returned (read-your-writes), or nothing (the server's
/// default, [`Consistency::MinimizeLatency`]) when it made none; see
/// [`ClientBuilder::read_your_writes`](crate::ClientBuilder::read_your_writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Answer from the replica's cache (the server's default).
    MinimizeLatency,
    /// Data at least as new as this revision: cached entries older than it are reloaded.
    AtLeastAsFresh(Revision),
    /// Bypass every cache and read the database.
    FullyConsistent,
}

impl Consistency {
    pub(crate) fn to_proto(self) -> proto::Consistency {
        use proto::consistency::Requirement;
        proto::Consistency {
            requirement: Some(match self {
                Consistency::MinimizeLatency => Requirement::MinimizeLatency(true),
                Consistency::AtLeastAsFresh(r) => Requirement::AtLeastAsFresh(r.token()),
                Consistency::FullyConsistent => Requirement::FullyConsistent(true),
            }),
        }
    }
}

/// The answer to a check (one [`Client::check`](crate::Client::check), or one item of a batch).
///
/// A denial is an answer, not an error: the call's `Result` is `Ok` with `allowed: false`.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Whether the user may do it.
    pub allowed: bool,
    /// Permissions whose grant would make a denied check pass (empty when none would: a
    /// restriction, a blocked or unknown user, a context flag).
    pub missing_permissions: Vec<String>,
    /// Set when a restriction denied the check: the user is limited to other resources of the
    /// type, so granting permissions changes nothing.
    pub denied_by_restriction: Option<proto::RestrictionDenial>,
    /// Why, when the request asked to explain.
    pub explanation: Option<proto::Explanation>,
    /// The revision the decision was made at (for a batch item: the batch's).
    pub revision: Revision,
}

impl Decision {
    /// `allowed`, for `if client.check(..).await?.is_allowed()`.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    pub(crate) fn from_check(r: proto::CheckResponse) -> Result<Decision, crate::Error> {
        let allowed = decided(r.decision, r.allowed)?;
        Ok(Decision {
            allowed,
            revision: revision_in(&r.revision)?,
            missing_permissions: r.missing_permissions,
            denied_by_restriction: r.denied_by_restriction,
            explanation: r.explanation,
        })
    }
}

/// The outcome a response states. A server that sends the `decision` enum must agree with its
/// own `allowed`; one that predates the enum leaves it unset and `allowed` decides.
pub(crate) fn decided(decision: i32, allowed: bool) -> Result<bool, crate::Error> {
    match proto::Decision::try_from(decision) {
        Ok(proto::Decision::Allowed) if allowed => Ok(true),
        Ok(proto::Decision::Denied) if !allowed => Ok(false),
        Ok(proto::Decision::Unspecified) => Ok(allowed),
        _ => Err(crate::Error::Status(tonic::Status::internal(format!(
            "the server's decision {decision} contradicts allowed={allowed}"
        )))),
    }
}

/// Why one batch item could not be decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemError {
    /// The gRPC code (`INVALID_ARGUMENT` for a bad item).
    pub code: tonic::Code,
    /// What is wrong with the item and how to fix it.
    pub message: String,
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            crate::error::code_name(self.code),
            self.message
        )
    }
}

impl std::error::Error for ItemError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_tokens_are_read_exactly() {
        for bad in [
            "",
            "+5",
            " 5",
            "05",
            "5 ",
            "x",
            "-1",
            "99999999999999999999999",
        ] {
            assert_eq!(Revision::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Revision::parse("0"), Some(Revision(0)));
        assert_eq!(Revision(17).token(), "17");
    }

    #[test]
    fn a_decision_that_contradicts_allowed_is_an_error_never_an_allow() {
        assert!(decided(proto::Decision::Denied as i32, true).is_err());
        assert!(decided(proto::Decision::Allowed as i32, false).is_err());
        assert!(decided(99, true).is_err());
        assert!(decided(proto::Decision::Allowed as i32, true).unwrap());
        assert!(!decided(proto::Decision::Unspecified as i32, false).unwrap());
    }
}
