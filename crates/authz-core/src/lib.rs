//! The authorization core: everything that decides, and nothing that does I/O.
//!
//! # Layout
//! - [`key`]: the key rule (`"Export customers"` → `export_customers`).
//! - [`permset`]: dense permission ids and bitsets.
//! - [`expr`]: requirement expressions (`a & (b | !ctx.flag)`), parsed once, evaluated with
//!   the missing permissions of the failing part.
//! - [`catalog`]: the catalog file format, its validation and its compiled, indexed form.
//! - [`model`]: what the core knows about a user and a group (grants, memberships,
//!   restrictions), as the stores hand it over.
//! - [`decide`]: checks, explanations, effective permissions and allowed resources.
//! - [`admin`]: the rules of administration (meta-permissions, delegation, restrictions).
//! - [`evolve`]: catalog changes: compatibility, stored data conflicts, per-user previews.
//!
//! The crate has no async runtime, network, database or wire-format dependency: stores and the
//! gRPC edge are adapters around it.

pub mod admin;
pub mod catalog;
pub mod decide;
pub mod evolve;
pub mod expr;
pub mod key;
pub mod model;
pub mod permset;

pub use catalog::{Catalog, CatalogError};
pub use expr::{Expr, ExprError, FlagId};
pub use permset::{PermId, PermSet};
