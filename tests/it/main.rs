//! Integration tests: the real server on a port, real gRPC clients.
//!
//! One test binary with modules (see `helpers::spawn_app`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod audit;
mod binary;
mod check;
mod delegation;
mod deploy;
mod gate;
mod helpers;
mod hostile;
mod metrics;
mod pg;
mod preview;
mod replicas;
mod surface;
mod tls;
mod tracing;
