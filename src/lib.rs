//! `authzd`: the permission-group authorization service.
//!
//! # Layout
//! - [`app`]: the application. Validates requests, resolves names against the catalog, applies
//!   the product's rules and calls the store. Knows nothing of gRPC.
//! - [`store`]: the [`store::Store`] trait and its backends ([`store::memory`]).
//! - [`grpc`]: the wire edge: generated protobuf types, `AuthzService` and `AdminService`,
//!   conversions, and the one error → status mapping.
//! - [`open`]: opens the store a server runs on (memory, or Postgres behind the cache), for
//!   the binary and the tests alike.
//! - [`server`]: serves the services, health and reflection on a bound listener.
//! - [`telemetry`]: logs, OTLP traces, the span per RPC with the caller's W3C trace context.
//! - [`metrics`]: Prometheus metrics and their `/metrics` endpoint.
//! - [`transport`]: the connection cap, handshake and idle deadlines beneath HTTP/2.
//! - [`gate`]: tower middleware: authentication (bearer keys, client certificates), roles,
//!   admission limits, deadlines.
//! - [`tls`]: TLS material checked before serving, the server's own handshakes, client
//!   certificate names.
//! - [`config`]: the command line, `AUTHZ_*` environment and the config file.
//! - [`decisions`]: the optional decision log (who was allowed what), written off the check
//!   path.
//! - [`catalog_test`]: `authzd catalog test`, a catalog's test file run through [`app`] over
//!   the memory store.
//! - [`validate`], [`error`]: input checks and the application's error type.
//!
//! Decisions themselves live in the `authz-core` crate, which does no I/O.

pub mod app;
pub mod catalog_cli;
pub mod catalog_test;
pub mod config;
pub mod decisions;
pub mod error;
pub mod gate;
pub mod grpc;
pub mod ids;
pub mod metrics;
pub mod open;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod validate;

/// The default catalog (Maestra's model), compiled into the binary.
pub const DEFAULT_CATALOG: &str = include_str!("../catalogs/maestra.toml");
