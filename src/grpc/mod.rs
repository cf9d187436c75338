//! The gRPC edge: generated protobuf types, the two services, conversions and the one mapping
//! from application errors to statuses. Protobuf types go no deeper than this module.

pub mod admin;
mod answer;
pub mod authz;
pub mod convert;
mod status;
pub mod watch;

/// Generated from `proto/authz/v1/*.proto` by `build.rs`.
#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod pb {
    tonic::include_proto!("authz.v1");
}

/// The encoded descriptor set served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("authz_descriptor");

pub use status::to_status;
