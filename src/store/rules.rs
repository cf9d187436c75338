//! The product's storage rules, written once and called by every store: a group's version
//! check, "a group with members cannot be deleted", "a token from the future is refused", and
//! what an actor's group edit keeps. Stores read and write; these decide.

use super::{Consistency, Result, Revision, StoreError};
use authz_core::{Catalog, PermSet};

/// An edit or delete that names the version it read applies only to that version.
pub(crate) fn check_version(key: &str, expected: Option<u64>, actual: u64) -> Result<()> {
    match expected {
        Some(expected) if expected != actual => Err(StoreError::VersionMismatch {
            key: key.to_owned(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

/// A custom group is deleted only once it has no members.
pub(crate) fn check_empty(key: &str, members: u64) -> Result<()> {
    if members > 0 {
        return Err(StoreError::GroupNotEmpty {
            key: key.to_owned(),
            members,
        });
    }
    Ok(())
}

/// A revision token newer than the tenant's latest revision can only come from another tenant
/// or be forged: it is refused, never waited for.
pub(crate) fn check_fresh(consistency: Consistency, latest: Revision) -> Result<()> {
    match consistency {
        Consistency::AtLeast(requested) if requested > latest => {
            Err(StoreError::FutureRevision { requested, latest })
        }
        _ => Ok(()),
    }
}

/// The permissions a group edit keeps whatever it sets: an actor cannot see internal
/// permissions, so its edit keeps them (and scoped grants of them) as they are; an operator's
/// edit keeps nothing. (No edit drops a stored key the catalog does not know: that is the
/// Postgres store's, the only one that can hold such keys.)
pub(crate) fn kept_on_edit(catalog: &Catalog, by_actor: bool) -> PermSet {
    if by_actor {
        catalog.internal_permissions().clone()
    } else {
        PermSet::new()
    }
}
