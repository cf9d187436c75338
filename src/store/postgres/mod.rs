//! The Postgres store (tokio-postgres + deadpool-postgres): the production source of truth.
//!
//! Every write is one transaction that starts by bumping the tenant's revision row
//! (`UPDATE tenants SET revision = revision + 1 ... RETURNING revision`). That row lock serialises
//! the tenant's writes, so revision order is commit order. Before commit the transaction appends
//! its change to `changes` and sends one coalesced NOTIFY (delivered only on commit). Reads that
//! feed caches read the tenant's revision in the same statement — the same snapshot — as the data.

mod frame;
mod reads;
mod rows;
mod writes;

use super::ImportRow;
use super::catalogs::{CatalogGuard, LOCK as CATALOG_LOCK};
use super::notify::{CHANNEL, Notice};
use super::{Access, Committed, Op, PREVIEW_LIMIT, Write, Written, rules};
use super::{
    AuditQuery, Change, CommitEvent, CommitSignal, Consistency, Grants, GroupDef, GroupInfo,
    GroupPatch, GroupRef, Page, PageRequest, Readiness, Result, Revision, Store, StoreError,
    TenantInfo, Touched, UserInfo, WriteCtx,
};
use async_trait::async_trait;
use authz_core::admin::{Facts, Rule};
use authz_core::model::{
    GroupGrants, ResourceRef, ResourceTypeId, Restriction, ScopedGrant, Subject, UserGrants,
    UserStatus,
};
use authz_core::{Catalog, PermSet};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, NoTls, Row};

/// The schema migrations, in order. Pending ones run once, together in one transaction.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../../../migrations/0001_init.sql")),
    (
        2,
        "audit",
        include_str!("../../../migrations/0002_audit.sql"),
    ),
    (
        3,
        "member_count",
        include_str!("../../../migrations/0003_member_count.sql"),
    ),
    (
        4,
        "catalogs",
        include_str!("../../../migrations/0004_catalogs.sql"),
    ),
];

/// The schema version this build needs.
pub const SCHEMA_VERSION: i32 = 4;

/// Serialises concurrent `migrate` runs (an arbitrary, fixed advisory-lock key).
const MIGRATION_LOCK: i64 = 0x6175_7468_7a00;

#[derive(Clone, Debug)]
pub struct PgOptions {
    pub url: String,
    pub pool_size: usize,
    /// Longest a statement may run before the server cancels it.
    pub statement_timeout: Duration,
    /// Longest a request waits for a pooled connection, or for a new one to connect.
    pub connect_timeout: Duration,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    catalog: Arc<Catalog>,
    commits: tokio::sync::broadcast::Sender<CommitEvent>,
    guard: Arc<CatalogGuard>,
}

/// What to do about a database without this build's schema, in every message that finds one.
pub const RUN_MIGRATE: &str = "run `authzd migrate` or pass `--migrate`";

/// An error with every cause under it, on one line. tokio-postgres keeps the reason (the
/// server's message, the refused connection) in `source()`, not in its own text ("db error").
/// Neither carries the connection's password: the server never echoes it and the client's
/// messages name options, not their values.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out.replace('\n', "; ")
}

pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        // A table or column this build reads is missing: the schema was never migrated (or was
        // dropped since), whichever request finds it first.
        if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN {
            return StoreError::Unavailable(format!(
                "the database does not have this build's schema ({}): {RUN_MIGRATE}",
                db.message()
            ));
        }
        if *code == SqlState::QUERY_CANCELED {
            return StoreError::Unavailable(format!(
                "the database cancelled a statement that ran too long: {}",
                db.message()
            ));
        }
        if code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            return StoreError::Unavailable(db.message().to_owned());
        }
        return StoreError::Internal(format!("{} ({})", db.message(), code.code()));
    }
    StoreError::Unavailable(describe(&e))
}

/// Statements on a connection or transaction, each with its error mapped by [`pg`].
pub(crate) trait Sql {
    /// `execute`: the number of rows the statement changed.
    async fn run(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64>;
    /// `query_one`: exactly one row.
    async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row>;
    /// `query_opt`: at most one row.
    async fn opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>>;
    /// `query`: every row.
    async fn all(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>>;
    /// `batch_execute`: statements without parameters.
    async fn batch(&self, sql: &str) -> Result<()>;
}

impl<C: GenericClient + Sync> Sql for C {
    async fn run(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        self.execute(sql, params).await.map_err(pg)
    }

    async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        self.query_one(sql, params).await.map_err(pg)
    }

    async fn opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        self.query_opt(sql, params).await.map_err(pg)
    }

    async fn all(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.query(sql, params).await.map_err(pg)
    }

    async fn batch(&self, sql: &str) -> Result<()> {
        self.batch_execute(sql).await.map_err(pg)
    }
}

fn pool_err(e: PoolError) -> StoreError {
    match e {
        // Whatever the database answered, failing to get a connection means it is unavailable.
        PoolError::Backend(e) => StoreError::Unavailable(match connect_hint(&e) {
            Some(hint) => format!("cannot connect to the database: {}: {hint}", describe(&e)),
            None => format!("cannot connect to the database: {}", describe(&e)),
        }),
        PoolError::Timeout(_) => {
            StoreError::Unavailable("no database connection became available in time".to_owned())
        }
        other => StoreError::Unavailable(describe(&other)),
    }
}

/// What to do about a connection the database refused, for the causes an operator fixes in
/// the URL or on the server.
fn connect_hint(e: &tokio_postgres::Error) -> Option<&'static str> {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD {
            Some("check the user and password in --database-url (AUTHZ_DATABASE_URL)")
        } else if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            Some("check the user in --database-url and that the server's pg_hba.conf lets it in")
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            Some("create the database, or correct its name in --database-url")
        } else if *code == SqlState::TOO_MANY_CONNECTIONS {
            Some("the server is at max_connections: lower --db-pool-size or raise max_connections")
        } else {
            None
        };
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Some(
                    "is Postgres running and listening on the host and port of --database-url?",
                );
            }
        }
        cause = c.source();
    }
    None
}

/// True when an error means the connection, not the statement, failed: worth one retry on a
/// fresh connection.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_some_and(|d| {
            *d.code() == SqlState::ADMIN_SHUTDOWN || d.code().code().starts_with("08")
        })
        || (e.as_db_error().is_none()
            && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()))
}

fn rev(r: i64) -> Revision {
    u64::try_from(r).unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn status_text(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Active => "active",
        UserStatus::Blocked => "blocked",
    }
}

const USER_COLUMNS: &str = "
    u.user_id, u.display_name, u.email, u.status, u.direct,
    ARRAY(SELECT m.group_key FROM memberships m
          WHERE m.tenant_id = u.tenant_id AND m.user_id = u.user_id ORDER BY 1) AS groups,
    ARRAY(SELECT s.permission FROM user_scoped_grants s WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id
          ORDER BY s.permission, s.resource_type, s.resource_id) AS sp,
    ARRAY(SELECT s.resource_type FROM user_scoped_grants s WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id
          ORDER BY s.permission, s.resource_type, s.resource_id) AS st,
    ARRAY(SELECT s.resource_id FROM user_scoped_grants s WHERE s.tenant_id = u.tenant_id AND s.user_id = u.user_id
          ORDER BY s.permission, s.resource_type, s.resource_id) AS si,
    ARRAY(SELECT r.resource_type FROM restrictions r, unnest(r.resource_ids) AS id
          WHERE r.tenant_id = u.tenant_id AND r.user_id = u.user_id ORDER BY r.resource_type, id) AS rt,
    ARRAY(SELECT id FROM restrictions r, unnest(r.resource_ids) AS id
          WHERE r.tenant_id = u.tenant_id AND r.user_id = u.user_id ORDER BY r.resource_type, id) AS ri";

/// A user's row without its own scoped grants and restrictions (empty): enough for what a write
/// to someone else (a group's edit) can change in a user's access.
const USER_GROUP_COLUMNS: &str = "
    u.user_id, u.display_name, u.email, u.status, u.direct,
    ARRAY(SELECT m.group_key FROM memberships m
          WHERE m.tenant_id = u.tenant_id AND m.user_id = u.user_id ORDER BY 1) AS groups,
    ARRAY[]::text[] AS sp, ARRAY[]::text[] AS st, ARRAY[]::text[] AS si,
    ARRAY[]::text[] AS rt, ARRAY[]::text[] AS ri";

/// The permissions of a user's custom groups, read with the user's row (admin reads only:
/// roles are derived from the same snapshot as the rest of the user).
const GROUP_PERMISSIONS_COLUMN: &str = "
    ARRAY(SELECT DISTINCT p FROM memberships m
          JOIN groups g ON g.tenant_id = m.tenant_id AND g.group_key = m.group_key,
          unnest(g.permissions) AS p
          WHERE m.tenant_id = u.tenant_id AND m.user_id = u.user_id) AS gp";

const GROUP_COLUMNS: &str = "
    g.group_key, g.name, g.description, g.permissions, g.version,
    g.member_count AS members,
    ARRAY(SELECT s.permission FROM group_scoped_grants s WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key
          ORDER BY s.permission, s.resource_type, s.resource_id) AS sp,
    ARRAY(SELECT s.resource_type FROM group_scoped_grants s WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key
          ORDER BY s.permission, s.resource_type, s.resource_id) AS st,
    ARRAY(SELECT s.resource_id FROM group_scoped_grants s WHERE s.tenant_id = g.tenant_id AND s.group_key = g.group_key
          ORDER BY s.permission, s.resource_type, s.resource_id) AS si";

/// One user's row (absent when the tenant has no such user) and the tenant's revision.
static USER_LOAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT t.revision, u.tenant_id IS NOT NULL AS found, {USER_COLUMNS},
             (SELECT coalesce(max(id), 0) FROM catalogs) AS catalog_id
         FROM tenants t LEFT JOIN users u ON u.tenant_id = t.tenant_id AND u.user_id = $2
         WHERE t.tenant_id = $1"
    )
});

/// The custom groups one user is a member of, each with the tenant's revision.
static USER_GROUPS_LOAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT t.revision, {GROUP_COLUMNS}
         FROM tenants t JOIN groups g ON g.tenant_id = t.tenant_id
         WHERE t.tenant_id = $1 AND g.group_key IN
             (SELECT m.group_key FROM memberships m WHERE m.tenant_id = $1 AND m.user_id = $2)"
    )
});

pub use super::cached::UserLoad;

impl PostgresStore {
    /// Builds the pool; connections are made on first use.
    pub fn new(catalog: Arc<Catalog>, options: &PgOptions) -> Result<Self> {
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("authzd");
        }
        let timeout_ms = options.statement_timeout.as_millis();
        let extra = format!("-c statement_timeout={timeout_ms}");
        let opts = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {extra}"),
            _ => extra,
        };
        config.options(&opts);
        config.connect_timeout(options.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))?;
        Ok(Self {
            pool,
            config,
            guard: Arc::new(CatalogGuard::new(catalog.clone())),
            catalog,
            commits: tokio::sync::broadcast::channel(16).0,
        })
    }

    /// The catalog this replica serves.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Keeps this replica's catalog in step with the database's newest record.
    pub fn guard(&self) -> &Arc<CatalogGuard> {
        &self.guard
    }

    /// Lets data read under catalog record `id` through; checks the record first when it is
    /// new to this replica.
    async fn admit(&self, id: i64) -> Result<()> {
        if id != self.guard.verified() {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            self.guard.check(&tx, id).await?;
        }
        self.guard.serves()
    }

    /// Checks the database's newest catalog record again (a notification announced one, or
    /// notifications may have been missed).
    pub async fn recheck_catalog(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let id = super::catalogs::latest_id(&tx).await?;
        self.guard.check(&tx, id).await
    }

    /// The connection settings, for the listener's dedicated connection.
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(pool_err)
    }

    /// A connection for a write transaction, verified with an empty round trip: a pooled
    /// connection whose backend died (killed, database restarted) is replaced before the write
    /// starts, so the write never fails for a connection it did not get to use. Writes are not
    /// on the check path; the round trip costs tens of microseconds.
    pub(crate) async fn write_client(&self) -> Result<Object> {
        let mut attempts = self.retries();
        loop {
            let client = self.client().await?;
            match client.simple_query("").await {
                Ok(_) => return Ok(client),
                Err(e) if attempts > 0 && connection_lost(&e) => attempts -= 1,
                Err(e) => return Err(pg(e)),
            }
        }
    }

    /// How many dead connections a request may meet before it gives up: every pooled one can
    /// have died at once (a database restart). Each is discarded as it is found.
    fn retries(&self) -> usize {
        self.pool.status().max_size
    }

    /// Runs a read, retrying on a fresh connection when one turns out dead (a restarted
    /// database, a killed backend): callers do not see the broken connection.
    async fn read<T, Fut>(&self, f: impl Fn(Object) -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let mut attempts = self.retries();
        loop {
            // A closed connection goes back to the pool and is discarded at its next checkout.
            match f(self.client().await?).await {
                Ok(v) => return Ok(v),
                Err(e) if attempts > 0 && connection_lost(&e) => {
                    attempts -= 1;
                    tracing::debug!("retrying a read on a fresh connection: {e}");
                }
                Err(e) => return Err(pg(e)),
            }
        }
    }

    /// Every row of `sql`, read as [`Self::read`] reads.
    async fn read_all(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.read(move |c| async move { c.query(sql, params).await })
            .await
    }

    /// The row of `sql`, if any, read as [`Self::read`] reads.
    async fn read_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        self.read(move |c| async move { c.query_opt(sql, params).await })
            .await
    }

    /// The rows of `sql`, a statement prepared once per connection, read as [`Self::read`]
    /// reads.
    async fn read_prepared(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.read(move |c| async move {
            let stmt = c.prepare_cached(sql).await?;
            c.query(&stmt, params).await
        })
        .await
    }

    /// Applies pending migrations; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i32>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.batch(&format!(
            "SET LOCAL client_min_messages = warning;
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS authz_schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());"
        ))
        .await?;
        let done: BTreeSet<i32> = tx
            .all("SELECT version FROM authz_schema_migrations", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            tx.batch(sql).await?;
            tx.run(
                "INSERT INTO authz_schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            applied.push(*version);
        }
        tx.commit().await.map_err(pg)?;
        Ok(applied)
    }

    /// The schema version the database is at (0 before the first migration).
    pub async fn schema_version(&self) -> Result<i32> {
        self.read(move |c| {
            async move {
                let row = c
                    .query_one(
                        "SELECT CASE WHEN to_regclass('authz_schema_migrations') IS NULL THEN 0
                                ELSE (SELECT coalesce(max(version), 0) FROM authz_schema_migrations) END",
                        &[],
                    )
                    .await?;
                Ok(row.get::<_, i32>(0))
            }
        })
        .await
    }

    /// Errors unless the schema is exactly the one this build needs.
    pub async fn check_schema(&self) -> Result<()> {
        match self.schema_version().await? {
            SCHEMA_VERSION => Ok(()),
            v if v < SCHEMA_VERSION => Err(StoreError::Unavailable(format!(
                "the database schema is at version {v}; this build needs {SCHEMA_VERSION}: {RUN_MIGRATE}"
            ))),
            v => Err(StoreError::Unavailable(format!(
                "the database schema is at version {v}, newer than this build's {SCHEMA_VERSION}: upgrade authzd"
            ))),
        }
    }
}

/// A write's audit record, started before it changes anything.
struct Record {
    operation: &'static str,
    target: String,
    touched: Touched,
    before: serde_json::Value,
    /// The users whose effective permissions the write can change, and theirs before it.
    affected: Vec<String>,
    truncated: bool,
    effective_before: BTreeMap<String, Access>,
}

/// Bumps and locks a tenant's revision row; returns the revision and the newest catalog
/// record's id (0 when none), read after the catalog lock.
async fn lock_tenant(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_id: &str,
) -> Result<(Revision, i64)> {
    let row = tx
        .opt(
            "UPDATE tenants SET revision = revision + 1 WHERE tenant_id = $1
             RETURNING revision, (SELECT coalesce(max(id), 0) FROM catalogs)",
            &[&tenant_id],
        )
        .await?
        .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
    Ok((rev(row.get(0)), row.get(1)))
}

async fn ensure_users(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_id: &str,
    user_ids: &[String],
) -> Result<()> {
    tx.run(
        "INSERT INTO users (tenant_id, user_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
        &[&tenant_id, &user_ids],
    )
    .await?;
    Ok(())
}

async fn check_group(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_id: &str,
    group: GroupRef<'_>,
) -> Result<()> {
    if let GroupRef::Custom(key) = group {
        let sql = "SELECT 1 FROM groups WHERE tenant_id = $1 AND group_key = $2";
        if tx.opt(sql, &[&tenant_id, &key]).await?.is_none() {
            return Err(StoreError::GroupNotFound(key.to_owned()));
        }
    }
    Ok(())
}

/// Runs `sql` with the tenant ($1), the grants' owner ($2: a user or a group) and the scoped
/// grants as three parallel arrays for `unnest` ($3 permission, $4 resource type, $5 id).
async fn run_scoped(
    tx: &deadpool_postgres::Transaction<'_>,
    catalog: &Catalog,
    sql: &str,
    (tenant_id, owner): (&str, &str),
    grants: &[ScopedGrant],
) -> Result<()> {
    let mut p = Vec::with_capacity(grants.len());
    let mut t = Vec::with_capacity(grants.len());
    let mut i = Vec::with_capacity(grants.len());
    for g in grants {
        p.push(catalog.key(g.permission).to_owned());
        t.push(
            catalog
                .resource_type_key(g.resource.resource_type)
                .to_owned(),
        );
        i.push(g.resource.id.clone());
    }
    tx.run(sql, &[&tenant_id, &owner, &p, &t, &i]).await?;
    Ok(())
}

fn change(tenant_id: &str, r: &Row) -> Change {
    Change {
        tenant_id: tenant_id.to_owned(),
        revision: rev(r.get(0)),
        committed_at: r.get::<_, SystemTime>(1),
        operation: r.get(2),
        touched: Touched {
            users: r.get(3),
            groups: r.get(4),
            all_users: r.get(5),
        },
        actor: r.get(6),
        target: r.get(7),
        before: r.get(8),
        after: r.get(9),
    }
}

fn after(page: &PageRequest) -> &str {
    page.after.as_deref().unwrap_or("")
}

fn limit(page: &PageRequest) -> i64 {
    to_i64(page.size as u64 + 1)
}

fn paged<T>(mut items: Vec<T>, page: &PageRequest) -> Page<T> {
    let more = items.len() > page.size;
    items.truncate(page.size);
    Page { items, more }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        assert_eq!(files.len(), MIGRATIONS.len(), "{files:?}");
        for (i, ((version, name, sql), file)) in MIGRATIONS.iter().zip(&files).enumerate() {
            assert_eq!(*version, i32::try_from(i + 1).unwrap());
            assert_eq!(file, &format!("{version:04}_{name}.sql"));
            assert_eq!(
                *sql,
                std::fs::read_to_string(format!("{dir}/{file}")).unwrap()
            );
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
