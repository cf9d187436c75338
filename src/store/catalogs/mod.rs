//! The catalog a Postgres database is served with.
//!
//! The database records every catalog it has been served with (`catalogs`, newest last). At
//! start a replica compares its catalog with the newest record ([`PostgresStore::reconcile`]):
//! the same → serve; a compatible successor → record it and serve; a compatible predecessor
//! (this replica is one step behind a rolling update) → serve without recording; otherwise the
//! start is refused with every conflict listed. `authzd catalog apply` carries out an
//! incompatible change on purpose ([`PostgresStore::plan_catalog`] with `apply`).
//!
//! While serving, the replica's [`CatalogGuard`] keeps watch: every cache load and every write
//! reads the newest record's id in the same snapshot as its data, and a replica whose catalog is
//! incompatible with a newer record stops serving (UNAVAILABLE, readiness NOT_SERVING) instead
//! of answering with another meaning.
//!
//! Catalog records and writes are serialised by an advisory lock: a write holds it shared, a
//! record or an apply exclusively, so a write either commits before a new catalog is checked
//! against the data or sees that catalog.

mod data;
mod guard;
mod plan;

pub use data::*;
pub use guard::*;
pub use plan::*;

use super::notify::{self, Notice};
use super::postgres::{PostgresStore, Sql, pg};
use super::{PREVIEW_LIMIT, Result, StoreError};
use authz_core::Catalog;
use authz_core::evolve::{
    self, Comparison, Mappings, StoredGroup, StoredUser, TenantData, TenantPreview, Usage,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

/// The channel a new catalog record is announced on; the payload is its id.
pub const CHANNEL: &str = "authz_catalog";
/// Held shared by every write, exclusively by a catalog record or apply (advisory-lock key).
pub const LOCK: i64 = 0x6175_7468_7a01;

/// A recorded catalog.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    pub id: i64,
    pub fingerprint: String,
    pub name: String,
    pub version: String,
    pub how: String,
    /// RFC 3339, UTC.
    pub recorded_at: String,
    /// What `catalog apply` was told to do with stored data (empty for a start).
    pub mappings: serde_json::Value,
    #[serde(skip)]
    pub source: String,
}

impl Recorded {
    pub fn describe(&self) -> String {
        format!(
            "{} {} (fingerprint {}, record {})",
            self.name, self.version, self.fingerprint, self.id
        )
    }

    fn catalog(&self) -> std::result::Result<Catalog, String> {
        Catalog::from_toml(&self.source).map_err(|e| {
            format!(
                "the database records catalog {}, which this build cannot read: {e}",
                self.describe()
            )
        })
    }
}

pub fn describe(c: &Catalog) -> String {
    format!("{} {} (fingerprint {})", c.name, c.version, c.fingerprint)
}

pub(super) const RECORD_COLUMNS: &str = "id, fingerprint, name, version, how,
    to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), source, mappings";

pub(super) fn recorded(r: &tokio_postgres::Row) -> Recorded {
    Recorded {
        id: r.get(0),
        fingerprint: r.get(1),
        name: r.get(2),
        version: r.get(3),
        how: r.get(4),
        recorded_at: r.get(5),
        source: r.get(6),
        mappings: r.get(7),
    }
}

/// The newest record.
pub async fn latest(tx: &Transaction<'_>) -> Result<Option<Recorded>> {
    let row = tx
        .opt(
            &format!("SELECT {RECORD_COLUMNS} FROM catalogs ORDER BY id DESC LIMIT 1"),
            &[],
        )
        .await?;
    Ok(row.as_ref().map(recorded))
}

pub(super) async fn record_by_id(tx: &Transaction<'_>, id: i64) -> Result<Recorded> {
    let row = tx
        .one(
            &format!("SELECT {RECORD_COLUMNS} FROM catalogs WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(recorded(&row))
}

/// The newest record's id (0 when there is none).
pub async fn latest_id(tx: &Transaction<'_>) -> Result<i64> {
    let row = tx
        .one("SELECT coalesce(max(id), 0) FROM catalogs", &[])
        .await?;
    Ok(row.get(0))
}

/// What a start found.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// The database records this catalog.
    Same(i64),
    /// This catalog was recorded (the first, or a compatible successor).
    Recorded { id: i64, how: &'static str },
    /// The database records a compatible successor of this catalog: a rolling update is under
    /// way and this replica is one step behind.
    Behind(i64),
}
