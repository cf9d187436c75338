//! Integration tests: the real server on a port, real gRPC clients.
//!
//! One test binary with modules (see `helpers::TestServer`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod audit;
mod binary;
mod cache_loads;
mod catalog_test;
mod check;
mod client;
mod daemon;
mod delegation;
mod deploy;
mod examples;
mod failover;
mod faults;
mod gate;
mod helpers;
mod history;
mod hostile;
mod interleave;
mod lifecycle;
mod logs;
mod metrics;
mod model;
mod observability;
mod pg;
mod preview;
mod proto;
mod replicas;
mod soak;
mod store_contract;
mod surface;
mod tls;
mod tracing;
mod transport;
mod trust;
mod watch;

/// Whether the slow scenarios run (more cases, longer runs, injected faults): `.ci/run` sets
/// `AUTHZ_SLOW_TESTS=1`.
pub fn slow() -> bool {
    std::env::var_os("AUTHZ_SLOW_TESTS").is_some_and(|v| !v.is_empty() && v != "0")
}
