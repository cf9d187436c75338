//! The one mapping from application errors to gRPC statuses. Exhaustive, no wildcard arm: a new
//! error variant does not compile until it has a code.

use crate::error::Error;
use crate::store::StoreError;
use tonic::{Code, Status};

pub fn code(e: &Error) -> Code {
    match e {
        Error::Concealed(inner) => code(inner),
        Error::Invalid(_) => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::Precondition(_) => Code::FailedPrecondition,
        Error::Denied(_) | Error::Refused(_) => Code::PermissionDenied,
        Error::Store(s) => match s {
            StoreError::TenantNotFound(_)
            | StoreError::UserNotFound(_)
            | StoreError::GroupNotFound(_) => Code::NotFound,
            StoreError::TenantExists(_) | StoreError::GroupExists(_) => Code::AlreadyExists,
            StoreError::Invalid(_) => Code::InvalidArgument,
            StoreError::GroupNotEmpty { .. } | StoreError::ChangesTruncated { .. } => {
                Code::FailedPrecondition
            }
            StoreError::VersionMismatch { .. } => Code::Aborted,
            StoreError::Denied(_) => Code::PermissionDenied,
            StoreError::FutureRevision { .. } => Code::InvalidArgument,
            StoreError::Unavailable(_) | StoreError::Stale(_) | StoreError::CatalogMismatch(_) => {
                Code::Unavailable
            }
            StoreError::Internal(_) => Code::Internal,
        },
    }
}

pub fn to_status(e: Error) -> Status {
    Status::new(code(&e), e.to_string())
}
