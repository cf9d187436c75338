//! The client's one error type.

use tonic::Code;

/// What went wrong with a call or with the client's configuration.
///
/// A denied check is not an error: it is a [`Decision`](crate::Decision) with `allowed: false`.
/// Every failed call is an error, never an allow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status (or none could be reached: `UNAVAILABLE`, or
    /// the call's deadline passed: `DEADLINE_EXCEEDED`). The message says what to fix.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(#[from] tonic::Status),
    /// The client cannot be built as configured (a bad address, unreadable TLS material, ...).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The gRPC code: the server's, `UNAVAILABLE` when no replica answered,
    /// `DEADLINE_EXCEEDED` when the deadline passed, `INVALID_ARGUMENT` for a configuration
    /// error.
    pub fn code(&self) -> Code {
        match self {
            Error::Status(s) => s.code(),
            Error::Config(_) => Code::InvalidArgument,
        }
    }

    /// The message without the code.
    pub fn message(&self) -> &str {
        match self {
            Error::Status(s) => s.message(),
            Error::Config(m) => m,
        }
    }

    /// The status the server sent, if it was one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status(s) => Some(s),
            Error::Config(_) => None,
        }
    }
}

/// The code's name as gRPC writes it (`PERMISSION_DENIED`), which is what operators grep for.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_show_the_code_as_grpc_names_it() {
        let e = Error::from(tonic::Status::permission_denied("missing edit_users"));
        assert_eq!(e.to_string(), "PERMISSION_DENIED: missing edit_users");
        assert_eq!(e.code(), Code::PermissionDenied);
        assert_eq!(e.message(), "missing edit_users");
    }
}
