//! The Rust client of the authz permission-group authorization service.
//!
//! ```no_run
//! # async fn f() -> Result<(), authz_client::Error> {
//! let client = authz_client::Client::connect("http://127.0.0.1:50051").await?;
//! let decision = client.check("acme", "alice").permission("export_customers").await?;
//! println!("allowed: {}, missing: {:?}", decision.allowed, decision.missing_permissions);
//! # Ok(()) }
//! ```
//!
//! A denied check is an answer (`allowed: false`, with the permissions that would allow it),
//! not an error; every failure is an [`Error`], never an allow.
//!
//! # What the client does for you
//!
//! - **Typed requests**: [`Client::check`], [`Client::batch_check`],
//!   [`Client::effective_permissions`], [`Client::allowed_resources`], [`Client::watch`], and
//!   the whole AdminService through [`Client::admin`].
//! - **Credentials**: an API key ([`ClientBuilder::api_key`], sent as a bearer token and never
//!   shown), TLS and mutual TLS ([`Tls`]).
//! - **Deadlines** on every call ([`ClientBuilder::timeout`], or per call), sent to the server
//!   too.
//! - **Retries** of reads that meet `UNAVAILABLE`, with jittered exponential backoff
//!   ([`RetryPolicy`]); writes are never retried.
//! - **Read-your-writes** without passing tokens around: the newest revision the client's own
//!   writes to a tenant returned is sent as `at_least_as_fresh` with its later reads of that
//!   tenant ([`ClientBuilder::read_your_writes`]).
//! - **Replicas**: given several addresses ([`ClientBuilder::endpoints`]) or a DNS name that
//!   resolves to several ([`ClientBuilder::dns`]), each tenant goes to one replica by
//!   consistent (rendezvous) hashing, so each replica's cache holds only its tenants' users; a
//!   replica whose gRPC health is not SERVING, or that answered `UNAVAILABLE`, is skipped until
//!   it is ready again.
//! - **Large batches** are split into requests the server accepts ([`ClientBuilder::max_batch`])
//!   and answered as one.
//! - **Watch** resumes by itself from the last revision it delivered.
//!
//! # Layout
//!
//! - `client`: [`Client`], [`ClientBuilder`], [`Tls`], [`RetryPolicy`]; the one call path
//!   (routing, key, deadline, retries) and read-your-writes.
//! - `pool`: the replicas, their readiness and the tenant → replica hash.
//! - `check`: [`CheckRequest`], [`EffectivePermissionsRequest`], [`AllowedResourcesRequest`].
//! - `batch`: [`BatchCheckRequest`], [`BatchItem`], [`BatchDecisions`].
//! - `watch`: [`WatchRequest`], [`Changes`], [`Change`].
//! - `admin`: [`Admin`], the AdminService.
//! - `types`: [`Decision`], [`Revision`], [`Consistency`], [`ItemError`].
//! - [`proto`]: the generated messages and client stubs of `authz.v1`, for everything the
//!   typed API leaves out.

#![warn(missing_docs)]

mod admin;
mod batch;
mod check;
mod client;
mod error;
mod pool;
mod types;
mod watch;

pub use admin::Admin;
pub use batch::{BatchCheckRequest, BatchDecisions, BatchItem};
pub use check::{
    AllowedResources, AllowedResourcesRequest, BoxFuture, CheckRequest, EffectivePermissions,
    EffectivePermissionsRequest,
};
pub use client::{Client, ClientBuilder, RetryEvent, RetryPolicy, Tls};
pub use error::{Error, code_name};
pub use types::{Consistency, Decision, ItemError, Revision};
pub use watch::{Change, Changes, WatchRequest};

/// The `authz.v1` protobuf messages and gRPC client stubs, generated from the service's
/// `proto/` files. Their documentation is the proto's.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod proto {
    tonic::include_proto!("authz.v1");
}

/// The README's examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
