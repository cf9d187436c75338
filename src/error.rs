//! The application's error type. The gRPC edge maps it to a status in one exhaustive match
//! (`grpc::status`), so the application itself never depends on tonic.

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something the catalog does not have.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well-formed but the target's state forbids it (a system group, ...).
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Denied(String),
    /// An admin rule refused the actor.
    #[error("{0}")]
    Refused(authz_core::admin::Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An actor reached for something that does not exist for it (an internal group or
    /// permission): answered exactly as the inner error, and counted as a refusal.
    #[error(transparent)]
    Concealed(Box<Error>),
}

impl Error {
    /// The admin rule that refused the call, as logs and metrics label it; `None` for an error
    /// that is not a refusal.
    pub fn refused_by(&self) -> Option<&'static str> {
        match self {
            Error::Refused(r) | Error::Store(StoreError::Denied(r)) => Some(r.rule()),
            Error::Denied(_) => Some("denied"),
            Error::Concealed(_) => Some("staff_only"),
            Error::Invalid(_)
            | Error::NotFound(_)
            | Error::AlreadyExists(_)
            | Error::Precondition(_)
            | Error::Store(_) => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
