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

use super::notify::{self, Notice};
use super::postgres::{PostgresStore, pg};
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

const RECORD_COLUMNS: &str = "id, fingerprint, name, version, how,
    to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), source, mappings";

fn recorded(r: &tokio_postgres::Row) -> Recorded {
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
        .query_opt(
            &format!("SELECT {RECORD_COLUMNS} FROM catalogs ORDER BY id DESC LIMIT 1"),
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(row.as_ref().map(recorded))
}

async fn record_by_id(tx: &Transaction<'_>, id: i64) -> Result<Recorded> {
    let row = tx
        .query_one(
            &format!("SELECT {RECORD_COLUMNS} FROM catalogs WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg)?;
    Ok(recorded(&row))
}

/// What a replica may serve, kept in step with the database's newest catalog record.
pub struct CatalogGuard {
    own: Arc<Catalog>,
    /// The newest record id checked; loads and writes that see it go ahead without a look.
    verified: AtomicI64,
    serving: AtomicBool,
    state: RwLock<GuardState>,
}

#[derive(Default)]
struct GuardState {
    /// Why this replica serves nothing.
    refusal: Option<String>,
    /// Why this replica makes no writes: the database records a newer, compatible catalog (a
    /// rollout is under way). Admin rules are decided with the newest catalog's groups, and
    /// new system group keys stay free, so writes go to updated replicas.
    behind: Option<String>,
}

impl CatalogGuard {
    pub fn new(own: Arc<Catalog>) -> Self {
        Self {
            own,
            // 0: no record. A database that records none is read with this catalog.
            verified: AtomicI64::new(0),
            serving: AtomicBool::new(true),
            state: RwLock::new(GuardState::default()),
        }
    }

    /// True while the replica's catalog agrees with the database's.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Why the replica does not serve, when it does not.
    pub fn refusal(&self) -> Option<String> {
        if self.serving() {
            return None;
        }
        self.state.read().ok().and_then(|s| s.refusal.clone())
    }

    /// The id of the newest record checked.
    pub fn verified(&self) -> i64 {
        self.verified.load(Ordering::Acquire)
    }

    /// Why this replica must not write, when it must not: it serves nothing, or it is one
    /// compatible step behind the database's catalog.
    pub fn write_refusal(&self) -> Option<String> {
        self.state
            .read()
            .ok()
            .and_then(|s| s.refusal.clone().or_else(|| s.behind.clone()))
    }

    fn set(&self, id: i64, refusal: Option<String>, behind: Option<String>) {
        if let Ok(mut s) = self.state.write() {
            match (&refusal, &s.refusal) {
                (Some(r), None) => tracing::error!(
                    reason = %r,
                    "catalog incompatible with the database's: not serving"
                ),
                (None, Some(_)) => tracing::info!(
                    record = id,
                    "catalog agrees with the database's again: serving"
                ),
                _ => {}
            }
            self.serving.store(refusal.is_none(), Ordering::Release);
            s.refusal = refusal;
            s.behind = behind;
        }
        self.verified.store(id, Ordering::Release);
    }

    /// UNAVAILABLE with the reason while this replica must not serve.
    pub fn serves(&self) -> Result<()> {
        match self.refusal() {
            None => Ok(()),
            Some(r) => Err(StoreError::CatalogMismatch(r)),
        }
    }

    /// Compares this replica's catalog with record `id` and serves or stops accordingly. A
    /// replica serves a record that is its own catalog or a compatible successor of it (a
    /// rolling update in progress, this replica not yet updated).
    pub async fn check(&self, tx: &Transaction<'_>, id: i64) -> Result<()> {
        if id == 0 {
            self.set(0, None, None);
            return Ok(());
        }
        let rec = record_by_id(tx, id).await?;
        if rec.fingerprint == self.own.fingerprint {
            self.set(id, None, None);
            return Ok(());
        }
        let recorded = match rec.catalog() {
            Ok(c) => c,
            Err(e) => {
                self.set(id, Some(e), None);
                return Ok(());
            }
        };
        // The record is authoritative: this replica may serve it only when the record keeps
        // every meaning this replica's catalog gives (a compatible successor). A record that
        // is a predecessor was applied on purpose after this replica started (a rollback).
        match successor(&self.own, &rec, &recorded) {
            Ok(()) => self.set(
                id,
                None,
                Some(format!(
                    "this replica serves catalog {}, one compatible step behind the database's {} (a rollout is under way): it answers checks and reads, but admin writes go to replicas on the recorded catalog",
                    describe(&self.own),
                    rec.describe()
                )),
            ),
            Err(report) => self.set(
                id,
                Some(format!(
                    "this replica serves catalog {}, but the database now records {}, which is incompatible with it:\n{report}\nroll this replica onto the recorded catalog",
                    describe(&self.own),
                    rec.describe()
                )),
                None,
            ),
        }
        Ok(())
    }
}

/// Whether a replica on `own` may go on serving data recorded under `rec` (`recorded`, its
/// catalog): `rec` must keep every meaning `own` gives. A record `catalog apply` made has
/// rewritten stored keys to its own names, so it must also name every permission as `own`
/// does. `Err` holds why not.
fn successor(own: &Catalog, rec: &Recorded, recorded: &Catalog) -> std::result::Result<(), String> {
    let ahead = evolve::compare(Some(own), recorded, None, &Mappings::default());
    if !ahead.compatible() {
        return Err(ahead.report());
    }
    let renamed: Vec<&str> = ahead
        .changes
        .iter()
        .filter(|c| c.kind == "permission_renamed")
        .map(|c| c.detail.as_str())
        .collect();
    if rec.how == "apply" && !renamed.is_empty() {
        return Err(format!(
            "  - `catalog apply` rewrote stored keys to the recorded catalog's names, which this catalog does not know: {}",
            renamed.join("; ")
        ));
    }
    Ok(())
}

/// The newest record's id (0 when there is none).
pub async fn latest_id(tx: &Transaction<'_>) -> Result<i64> {
    let row = tx
        .query_one("SELECT coalesce(max(id), 0) FROM catalogs", &[])
        .await
        .map_err(pg)?;
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

/// Everything stored that a catalog gives meaning to, across tenants. `group_keys`: the system
/// group keys of the catalogs compared, to find custom groups that use one.
pub async fn usage(tx: &Transaction<'_>, group_keys: &[String]) -> Result<Usage> {
    let mut usage = Usage::default();
    let add = |map: &mut BTreeMap<String, evolve::Uses>, rows: Vec<tokio_postgres::Row>| {
        for r in rows {
            let tenant: String = r.get(0);
            let key: String = r.get(1);
            let n: i64 = r.get(2);
            map.entry(key)
                .or_default()
                .add(&tenant, u64::try_from(n).unwrap_or(0));
        }
    };
    let rows = tx
        .query(
            "SELECT tenant_id, k, count(*) FROM (
                 SELECT tenant_id, unnest(direct) AS k FROM users
                 UNION ALL SELECT tenant_id, unnest(permissions) FROM groups
                 UNION ALL SELECT tenant_id, permission FROM user_scoped_grants
                 UNION ALL SELECT tenant_id, permission FROM group_scoped_grants) x
             GROUP BY 1, 2",
            &[],
        )
        .await
        .map_err(pg)?;
    add(&mut usage.permissions, rows);
    let rows = tx
        .query(
            "SELECT m.tenant_id, m.group_key, count(*) FROM memberships m
             WHERE NOT EXISTS (SELECT 1 FROM groups g
                               WHERE g.tenant_id = m.tenant_id AND g.group_key = m.group_key)
             GROUP BY 1, 2",
            &[],
        )
        .await
        .map_err(pg)?;
    add(&mut usage.system_memberships, rows);
    let rows = tx
        .query(
            "SELECT tenant_id, group_key, 1::bigint FROM groups WHERE group_key = ANY($1)",
            &[&group_keys],
        )
        .await
        .map_err(pg)?;
    add(&mut usage.custom_groups, rows);
    let rows = tx
        .query(
            "SELECT tenant_id, t, count(*) FROM (
                 SELECT tenant_id, resource_type AS t FROM user_scoped_grants
                 UNION ALL SELECT tenant_id, resource_type FROM group_scoped_grants
                 UNION ALL SELECT tenant_id, resource_type FROM restrictions) x
             GROUP BY 1, 2",
            &[],
        )
        .await
        .map_err(pg)?;
    add(&mut usage.resource_types, rows);
    Ok(usage)
}

/// One tenant's users and custom groups as stored.
pub async fn tenant_data(tx: &Transaction<'_>, tenant_id: &str) -> Result<TenantData> {
    let users = tx
        .query(
            "SELECT u.user_id, u.status = 'active', u.direct,
                 ARRAY(SELECT m.group_key FROM memberships m
                       WHERE m.tenant_id = u.tenant_id AND m.user_id = u.user_id ORDER BY 1),
                 ARRAY(SELECT s.permission FROM user_scoped_grants s
                       WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT s.resource_type FROM user_scoped_grants s
                       WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT s.resource_id FROM user_scoped_grants s
                       WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT r.resource_type FROM restrictions r
                       WHERE r.tenant_id = u.tenant_id AND r.user_id = u.user_id ORDER BY 1)
             FROM users u WHERE u.tenant_id = $1 ORDER BY u.user_id",
            &[&tenant_id],
        )
        .await
        .map_err(pg)?;
    let groups = tx
        .query(
            "SELECT g.group_key, g.permissions,
                 ARRAY(SELECT s.permission FROM group_scoped_grants s
                       WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT s.resource_type FROM group_scoped_grants s
                       WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key ORDER BY s.permission, s.resource_type, s.resource_id),
                 ARRAY(SELECT s.resource_id FROM group_scoped_grants s
                       WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key ORDER BY s.permission, s.resource_type, s.resource_id)
             FROM groups g WHERE g.tenant_id = $1 ORDER BY g.group_key",
            &[&tenant_id],
        )
        .await
        .map_err(pg)?;
    let triples = |r: &tokio_postgres::Row, at: usize| -> Vec<(String, String, String)> {
        let p: Vec<String> = r.get(at);
        let t: Vec<String> = r.get(at + 1);
        let i: Vec<String> = r.get(at + 2);
        p.into_iter()
            .zip(t)
            .zip(i)
            .map(|((p, t), i)| (p, t, i))
            .collect()
    };
    Ok(TenantData {
        tenant_id: tenant_id.to_owned(),
        users: users
            .iter()
            .map(|r| StoredUser {
                id: r.get(0),
                active: r.get(1),
                direct: r.get(2),
                groups: r.get(3),
                scoped: triples(r, 4),
                restricted: r.get(7),
            })
            .collect(),
        groups: groups
            .iter()
            .map(|r| StoredGroup {
                key: r.get(0),
                permissions: r.get(1),
                scoped: triples(r, 2),
            })
            .collect(),
    })
}

async fn tenant_ids(tx: &Transaction<'_>) -> Result<Vec<String>> {
    let rows = tx
        .query("SELECT tenant_id FROM tenants ORDER BY 1", &[])
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The system group keys of the catalogs compared.
fn group_keys(old: Option<&Catalog>, new: &Catalog) -> Vec<String> {
    let mut keys: BTreeSet<String> = new.groups().iter().map(|g| g.key.clone()).collect();
    if let Some(o) = old {
        keys.extend(o.groups().iter().map(|g| g.key.clone()));
    }
    keys.into_iter().collect()
}

/// A catalog change planned against a database, and carried out when asked.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The newest record before the change.
    pub recorded: Option<Recorded>,
    pub catalog: PlanCatalog,
    pub compatible: bool,
    pub comparison: Comparison,
    pub mappings: Mappings,
    /// Tenants whose users or groups change, each with who gains or loses what.
    pub tenants: Vec<TenantPreview>,
    /// Tenants the database holds.
    pub tenants_total: usize,
    pub users_changed: u64,
    /// Stored permission keys an apply rewrites: to the new catalog's key (an alias's
    /// permission), or dropped (`to` empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<Rewrite>,
    /// The record an apply wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct PlanCatalog {
    pub name: String,
    pub version: String,
    pub fingerprint: String,
}

impl PlanCatalog {
    fn of(c: &Catalog) -> Self {
        Self {
            name: c.name.clone(),
            version: c.version.clone(),
            fingerprint: c.fingerprint.clone(),
        }
    }
}

/// A stored key an apply rewrites.
#[derive(Debug, Serialize)]
pub struct Rewrite {
    pub from: String,
    /// The new key; empty: the key is dropped.
    pub to: String,
    pub uses: u64,
    pub tenants: usize,
}

/// Data rewrites of an apply: stored key → its new key, or `""` to drop it.
fn key_rewrites(new: &Catalog, usage: &Usage, m: &Mappings) -> (Vec<String>, Vec<String>) {
    let mut from = Vec::new();
    let mut to = Vec::new();
    for k in usage.permissions.keys() {
        if m.drop_permissions.contains(k) {
            from.push(k.clone());
            to.push(String::new());
        } else if let Some(p) = new.resolve(k) {
            if new.key(p) != k {
                from.push(k.clone());
                to.push(new.key(p).to_owned());
            }
        }
    }
    (from, to)
}

impl PostgresStore {
    /// Records this replica's catalog when the database's newest record is compatible with it,
    /// or refuses with every conflict and how to resolve it.
    pub async fn reconcile(&self) -> std::result::Result<Start, String> {
        let own = self.catalog().clone();
        let mut client = self.write_client().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| pg(e).to_string())?;
        let fail = |e: StoreError| e.to_string();
        if let Some(rec) = latest(&tx).await.map_err(fail)? {
            if rec.fingerprint == own.fingerprint {
                self.guard().check(&tx, rec.id).await.map_err(fail)?;
                return Ok(Start::Same(rec.id));
            }
        }
        // From here on no write runs until this transaction ends.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await
            .map_err(|e| pg(e).to_string())?;
        let rec = latest(&tx).await.map_err(fail)?;
        let old = match &rec {
            Some(r) if r.fingerprint == own.fingerprint => {
                self.guard().check(&tx, r.id).await.map_err(fail)?;
                return Ok(Start::Same(r.id));
            }
            Some(r) => Some(r.catalog()?),
            None => None,
        };
        let usage = usage(&tx, &group_keys(old.as_ref(), &own))
            .await
            .map_err(fail)?;
        let forward = evolve::compare(old.as_ref(), &own, Some(&usage), &Mappings::default());
        if forward.compatible() {
            let how = if rec.is_none() {
                "initial"
            } else {
                "compatible"
            };
            let id = insert_record(&tx, &own, how, &serde_json::json!({}))
                .await
                .map_err(fail)?;
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id.to_string()])
                .await
                .map_err(|e| pg(e).to_string())?;
            tx.commit().await.map_err(|e| pg(e).to_string())?;
            self.guard().set(id, None, None);
            return Ok(Start::Recorded { id, how });
        }
        if let (Some(r), Some(o)) = (&rec, &old) {
            let backward = evolve::compare(Some(&own), o, Some(&usage), &Mappings::default());
            if backward.compatible() && successor(&own, r, o).is_ok() {
                self.guard().check(&tx, r.id).await.map_err(fail)?;
                return Ok(Start::Behind(r.id));
            }
        }
        let against = match &rec {
            Some(r) => format!("the catalog the database records, {}", r.describe()),
            None => "the data the database holds (it records no catalog yet)".to_owned(),
        };
        Err(format!(
            "refusing to serve catalog {} against {against}; it would change the meaning of what is stored or decided:\n{}\n\
             To see who would gain or lose what: authzd catalog diff --database-url URL CATALOG\n\
             To carry the change out on purpose: authzd catalog apply --database-url URL CATALOG (with the flags named above), then start again",
            describe(&own),
            forward.report()
        ))
    }

    /// Compares `new` with the database's catalog and data, previews every tenant, and, with
    /// `apply`, carries the change out in one transaction: stored keys rewritten by the
    /// mappings and the new catalog's aliases, the catalog recorded, one audit event per
    /// tenant, every replica notified. An apply with unresolved conflicts changes nothing.
    pub async fn plan_catalog(
        &self,
        new: &Catalog,
        mappings: &Mappings,
        apply: bool,
    ) -> std::result::Result<Plan, String> {
        mappings.validate(new)?;
        let fail = |e: StoreError| e.to_string();
        let mut client = self.write_client().await.map_err(fail)?;
        let tx = if apply {
            client.transaction().await
        } else {
            client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
        }
        .map_err(|e| pg(e).to_string())?;
        if apply {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
                .await
                .map_err(|e| pg(e).to_string())?;
        }
        let rec = latest(&tx).await.map_err(fail)?;
        let old = rec.as_ref().map(Recorded::catalog).transpose()?;
        let usage = usage(&tx, &group_keys(old.as_ref(), new))
            .await
            .map_err(fail)?;
        let comparison = evolve::compare(old.as_ref(), new, Some(&usage), mappings);
        // Every tenant's revision row, locked by an apply: its writes wait for it.
        let tenants: Vec<(String, i64)> = if apply {
            tx.query(
                "UPDATE tenants SET revision = revision + 1 RETURNING tenant_id, revision",
                &[],
            )
            .await
            .map_err(|e| pg(e).to_string())?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect::<Vec<(String, i64)>>()
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect()
        } else {
            tenant_ids(&tx)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|t| (t, 0))
                .collect()
        };
        if !comparison.unused_mappings.is_empty() {
            let unchanged = rec
                .as_ref()
                .is_some_and(|r| r.fingerprint == new.fingerprint)
                && comparison.conflicts.is_empty();
            if !unchanged {
                return Err(format!(
                    "mappings that resolve no conflict are not carried out; leave them out:\n  - {}",
                    comparison.unused_mappings.join("\n  - ")
                ));
            }
        }
        let mut comparison = comparison;
        let mut previews = Vec::new();
        let mut predicted: BTreeMap<String, BTreeMap<String, evolve::UserView>> = BTreeMap::new();
        let mut users_changed = 0;
        let mut missing_targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut taken_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (t, _) in &tenants {
            let data = tenant_data(&tx, t).await.map_err(fail)?;
            // A custom group renamed needs its new key free in its tenant.
            for (from, to) in &mappings.rename_groups {
                let renamed = data.groups.iter().any(|g| &g.key == from);
                let taken = data.groups.iter().any(|g| &g.key == to)
                    || data.users.iter().any(|u| u.groups.contains(to));
                if renamed && taken {
                    taken_keys
                        .entry(format!("{from}={to}"))
                        .or_default()
                        .push(t.clone());
                }
            }
            // Members moved into a custom group need that group in their tenant.
            for (from, to) in &mappings.move_members {
                let has_members = data.users.iter().any(|u| u.groups.contains(from))
                    && !data.groups.iter().any(|g| &g.key == from);
                let target = data
                    .groups
                    .iter()
                    .any(|g| mappings.rename_groups.get(&g.key).unwrap_or(&g.key) == to);
                if has_members && new.group(to).is_none() && !target {
                    missing_targets
                        .entry(format!("{from}={to}"))
                        .or_default()
                        .push(t.clone());
                }
            }
            let p = evolve::preview(old.as_ref(), new, mappings, &data, PREVIEW_LIMIT);
            if apply {
                let after = evolve::mapped(&data, new, mappings);
                predicted.insert(
                    t.clone(),
                    evolve::views(&after, new, &|k: &str| k.to_owned()),
                );
            }
            users_changed += p.users_changed;
            if !p.is_empty() {
                previews.push(p);
            }
        }
        for (pair, tenants) in missing_targets {
            let to = pair.split_once('=').map_or("", |(_, to)| to).to_owned();
            comparison.conflicts.push(evolve::Conflict {
                kind: "move_target_missing",
                key: to.clone(),
                detail: format!(
                    "--move-members {pair}: `{to}` is neither a system group of the new catalog nor a custom group of tenant{} {}",
                    if tenants.len() == 1 { "" } else { "s" },
                    tenants.join(", ")
                ),
                resolve: format!("create `{to}` in those tenants first, or move the members to a system group"),
                resolved_by: None,
            });
        }
        for (pair, tenants) in taken_keys {
            let to = pair.split_once('=').map_or("", |(_, to)| to).to_owned();
            comparison.conflicts.push(evolve::Conflict {
                kind: "rename_target_taken",
                key: to.clone(),
                detail: format!(
                    "--rename-group {pair}: `{to}` is already used in tenant{} {}",
                    if tenants.len() == 1 { "" } else { "s" },
                    tenants.join(", ")
                ),
                resolve: "rename to a key no tenant uses".to_owned(),
                resolved_by: None,
            });
        }
        let rewrites = {
            let (from, to) = key_rewrites(new, &usage, mappings);
            from.into_iter()
                .zip(to)
                .map(|(from, to)| {
                    let uses = usage.permissions.get(&from);
                    Rewrite {
                        uses: uses.map_or(0, |u| u.count),
                        tenants: uses.map_or(0, |u| u.tenants.len()),
                        from,
                        to,
                    }
                })
                .collect()
        };
        let mut plan = Plan {
            recorded: rec,
            catalog: PlanCatalog::of(new),
            compatible: comparison.compatible(),
            comparison,
            mappings: mappings.clone(),
            tenants: previews,
            tenants_total: tenants.len(),
            users_changed,
            rewrites,
            applied: None,
        };
        let unresolved = plan.comparison.unresolved().count();
        // The recorded catalog again, with nothing stored to carry over: nothing to do.
        let unchanged = plan
            .recorded
            .as_ref()
            .is_some_and(|r| r.fingerprint == new.fingerprint)
            && plan.comparison.conflicts.is_empty()
            && plan.rewrites.is_empty();
        if !apply || unresolved > 0 || unchanged {
            tx.rollback().await.map_err(|e| pg(e).to_string())?;
            return Ok(plan);
        }
        rewrite(&tx, new, &usage, mappings)
            .await
            .map_err(|e| format!("{e}; nothing was changed"))?;
        // The data must now be what the preview showed, and all of it readable by `new`.
        let after_usage = evolve::compare(
            None,
            new,
            Some(&usage_of(&tx, new).await.map_err(fail)?),
            &Mappings::default(),
        );
        if let Some(c) = after_usage.conflicts.first() {
            return Err(format!(
                "after the rewrite the data still conflicts with the new catalog ({}); nothing was changed",
                c.detail
            ));
        }
        for (t, _) in &tenants {
            let data = tenant_data(&tx, t).await.map_err(fail)?;
            let actual = evolve::views(&data, new, &|k: &str| k.to_owned());
            if predicted.get(t) != Some(&actual) {
                return Err(format!(
                    "the rewrite of tenant `{t}` does not match the preview; nothing was changed"
                ));
            }
        }
        let id = insert_record(
            &tx,
            new,
            "apply",
            &serde_json::to_value(mappings).unwrap_or_default(),
        )
        .await
        .map_err(fail)?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id.to_string()])
            .await
            .map_err(|e| pg(e).to_string())?;
        let old_json = plan
            .recorded
            .as_ref()
            .map(|r| serde_json::json!({"name": r.name, "version": r.version, "fingerprint": r.fingerprint}));
        for (t, revision) in &tenants {
            let preview = plan.tenants.iter().find(|p| &p.tenant_id == t);
            let users: Vec<String> = preview
                .map(|p| {
                    p.users
                        .iter()
                        .take(AUDIT_LIST)
                        .map(|u| u.user_id.clone())
                        .collect()
                })
                .unwrap_or_default();
            let before = serde_json::json!({ "catalog": old_json });
            let after = serde_json::json!({
                "catalog": {"name": new.name, "version": new.version, "fingerprint": new.fingerprint, "record": id},
                "mappings": mappings,
                "users_changed": preview.map_or(0, |p| p.users_changed),
                "users": preview.map(|p| p.users.iter().take(AUDIT_LIST).map(capped).collect::<Vec<_>>()).unwrap_or_default(),
                "groups": preview.map(|p| p.groups.iter().take(AUDIT_LIST).cloned().collect::<Vec<_>>()).unwrap_or_default(),
            });
            tx.execute(
                "INSERT INTO changes (tenant_id, revision, operation, users, groups, all_users, actor, target, before, after)
                 VALUES ($1, $2, 'catalog_apply', $3, '{}', true, NULL, $4, $5, $6)",
                &[
                    t,
                    revision,
                    &users,
                    &format!("catalog:{}@{}", new.name, new.version),
                    &before,
                    &after,
                ],
            )
            .await
            .map_err(|e| pg(e).to_string())?;
            let mut notice = Notice::new(
                t,
                u64::try_from(*revision).unwrap_or(0),
                &super::Touched {
                    all_users: true,
                    ..super::Touched::default()
                },
            );
            notice.ag = true;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&notify::CHANNEL, &notice.encode()],
            )
            .await
            .map_err(|e| pg(e).to_string())?;
        }
        tx.commit().await.map_err(|e| pg(e).to_string())?;
        plan.applied = Some(id);
        Ok(plan)
    }

    /// Every recorded catalog, newest first.
    pub async fn catalog_history(&self) -> Result<Vec<Recorded>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let rows = tx
            .query(
                &format!("SELECT {RECORD_COLUMNS} FROM catalogs ORDER BY id DESC"),
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(recorded).collect())
    }
}

/// Most entries of any list an apply's audit event holds (as every audit record).
const AUDIT_LIST: usize = 100;

/// A user's change with each list cut to [`AUDIT_LIST`] entries.
fn capped(u: &evolve::UserChange) -> evolve::UserChange {
    let cut = |v: &Vec<String>| v.iter().take(AUDIT_LIST).cloned().collect();
    evolve::UserChange {
        user_id: u.user_id.clone(),
        blocked: u.blocked,
        gained: cut(&u.gained),
        lost: cut(&u.lost),
        scoped_gained: cut(&u.scoped_gained),
        scoped_lost: cut(&u.scoped_lost),
        restrictions_lifted: cut(&u.restrictions_lifted),
        roles_gained: cut(&u.roles_gained),
        roles_lost: cut(&u.roles_lost),
    }
}

async fn usage_of(tx: &Transaction<'_>, new: &Catalog) -> Result<Usage> {
    usage(tx, &group_keys(None, new)).await
}

async fn insert_record(
    tx: &Transaction<'_>,
    c: &Catalog,
    how: &str,
    mappings: &serde_json::Value,
) -> Result<i64> {
    let groups: Vec<String> = c.groups().iter().map(|g| g.key.clone()).collect();
    let row = tx
        .query_one(
            "INSERT INTO catalogs (fingerprint, name, version, source, system_groups, how, mappings)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &c.fingerprint,
                &c.name,
                &c.version,
                &c.source,
                &groups,
                &how,
                mappings,
            ],
        )
        .await
        .map_err(pg)?;
    Ok(row.get(0))
}

/// The stored-data part of an apply, across tenants.
async fn rewrite(tx: &Transaction<'_>, new: &Catalog, usage: &Usage, m: &Mappings) -> Result<()> {
    let (from, to) = key_rewrites(new, usage, m);
    if !from.is_empty() {
        for (table, column, bump) in [
            ("users", "direct", ""),
            ("groups", "permissions", ", version = version + 1"),
        ] {
            tx.execute(
                &format!(
                    "UPDATE {table} x SET {column} = ARRAY(
                         SELECT DISTINCT coalesce(m.to_key, d) FROM unnest(x.{column}) AS d
                         LEFT JOIN unnest($1::text[], $2::text[]) AS m(from_key, to_key) ON m.from_key = d
                         WHERE m.to_key IS DISTINCT FROM '' ORDER BY 1){bump}
                     WHERE x.{column} && $1::text[]"
                ),
                &[&from, &to],
            )
            .await
            .map_err(pg)?;
        }
        for (table, owner) in [
            ("user_scoped_grants", "user_id"),
            ("group_scoped_grants", "group_key"),
        ] {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (tenant_id, {owner}, permission, resource_type, resource_id)
                     SELECT s.tenant_id, s.{owner}, m.to_key, s.resource_type, s.resource_id
                     FROM {table} s JOIN unnest($1::text[], $2::text[]) AS m(from_key, to_key)
                         ON s.permission = m.from_key
                     WHERE m.to_key <> ''
                     ON CONFLICT DO NOTHING"
                ),
                &[&from, &to],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                &format!("DELETE FROM {table} WHERE permission = ANY($1)"),
                &[&from],
            )
            .await
            .map_err(pg)?;
        }
    }
    let types: Vec<&String> = m.drop_resource_types.iter().collect();
    if !types.is_empty() {
        for table in ["user_scoped_grants", "group_scoped_grants", "restrictions"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE resource_type = ANY($1)"),
                &[&types],
            )
            .await
            .map_err(pg)?;
        }
    }
    for (from, to) in &m.rename_groups {
        let taken = tx
            .query(
                "SELECT DISTINCT g.tenant_id FROM groups g
                 WHERE g.group_key = $1 AND (
                     EXISTS (SELECT 1 FROM groups o WHERE o.tenant_id = g.tenant_id AND o.group_key = $2)
                     OR EXISTS (SELECT 1 FROM memberships o WHERE o.tenant_id = g.tenant_id AND o.group_key = $2))
                 ORDER BY 1",
                &[from, to],
            )
            .await
            .map_err(pg)?;
        if !taken.is_empty() {
            let names: Vec<String> = taken.iter().map(|r| r.get(0)).collect();
            return Err(StoreError::Invalid(format!(
                "--rename-group {from}={to}: `{to}` is already used in tenant(s) {}",
                names.join(", ")
            )));
        }
        tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE")
            .await
            .map_err(pg)?;
        tx.execute(
            "INSERT INTO groups (tenant_id, group_key, name, description, permissions, version, member_count)
             SELECT tenant_id, $2, name, description, permissions, version + 1, member_count
             FROM groups WHERE group_key = $1",
            &[from, to],
        )
        .await
        .map_err(pg)?;
        for sql in [
            "UPDATE group_scoped_grants SET group_key = $2 WHERE group_key = $1",
            "UPDATE memberships m SET group_key = $2 WHERE m.group_key = $1
                 AND EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = $1)",
            "DELETE FROM groups WHERE group_key = $1 AND $2 <> ''",
        ] {
            tx.execute(sql, &[from, to]).await.map_err(pg)?;
        }
    }
    for (from, to) in &m.move_members {
        if new.group(to).is_none() {
            let missing = tx
                .query(
                    "SELECT DISTINCT m.tenant_id FROM memberships m
                     WHERE m.group_key = $1
                       AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = $1)
                       AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = $2)
                     ORDER BY 1",
                    &[from, to],
                )
                .await
                .map_err(pg)?;
            if !missing.is_empty() {
                let names: Vec<String> = missing.iter().map(|r| r.get(0)).collect();
                return Err(StoreError::Invalid(format!(
                    "--move-members {from}={to}: `{to}` is neither a system group of the new catalog nor a custom group of tenants {}",
                    names.join(", ")
                )));
            }
        }
        tx.execute(
            "INSERT INTO memberships (tenant_id, user_id, group_key)
             SELECT m.tenant_id, m.user_id, $2 FROM memberships m
             WHERE m.group_key = $1
               AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = $1)
             ON CONFLICT DO NOTHING",
            &[from, to],
        )
        .await
        .map_err(pg)?;
    }
    let leaving: Vec<&String> = m.move_members.keys().chain(&m.drop_members).collect();
    if !leaving.is_empty() {
        tx.execute(
            "DELETE FROM memberships m WHERE m.group_key = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = m.group_key)",
            &[&leaving],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}
