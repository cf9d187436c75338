//! The Postgres store (tokio-postgres + deadpool-postgres): the production source of truth.
//!
//! Every write is one transaction that starts by bumping the tenant's revision row
//! (`UPDATE tenants SET revision = revision + 1 ... RETURNING revision`). That row lock serialises
//! the tenant's writes, so revision order is commit order. Before commit the transaction appends
//! its change to `changes` and sends one coalesced NOTIFY (delivered only on commit). Reads that
//! feed caches read the tenant's revision in the same statement — the same snapshot — as the data.

use super::ImportRow;
use super::catalogs::{CatalogGuard, LOCK as CATALOG_LOCK};
use super::notify::{CHANNEL, Notice};
use super::{Access, Committed, PREVIEW_LIMIT};
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
use tokio_postgres::{NoTls, Row};

/// The schema migrations, in order. Pending ones run once, together in one transaction.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (2, "audit", include_str!("../../migrations/0002_audit.sql")),
    (
        3,
        "member_count",
        include_str!("../../migrations/0003_member_count.sql"),
    ),
    (
        4,
        "catalogs",
        include_str!("../../migrations/0004_catalogs.sql"),
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

/// What [`PostgresStore::load_user_and_groups`] read.
pub struct UserLoad {
    pub user: Option<UserGrants>,
    pub revision: Revision,
    pub groups: Vec<GroupGrants>,
    pub groups_revision: Revision,
}

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
        if id == self.guard.verified() {
            return match self.guard.refusal() {
                None => Ok(()),
                Some(r) => Err(StoreError::Unavailable(r)),
            };
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        self.guard.admit(&tx, id).await
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

    /// Applies pending migrations; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i32>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.batch_execute(&format!(
            "SET LOCAL client_min_messages = warning;
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS authz_schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());"
        ))
        .await
        .map_err(pg)?;
        let done: BTreeSet<i32> = tx
            .query("SELECT version FROM authz_schema_migrations", &[])
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            tx.batch_execute(sql).await.map_err(pg)?;
            tx.execute(
                "INSERT INTO authz_schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(pg)?;
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

    // ---- Writes: the tenant's lock, the admin rule, audit records and commit ----

    /// Starts a tenant's write: bumps and locks its revision row, then decides the write's
    /// admin rule on state read after the lock, in this transaction. Every write of the tenant
    /// takes the same lock first, so what the rule read cannot change before this write
    /// commits: the decision and the write are one step in revision order.
    async fn begin(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        ctx: &WriteCtx,
    ) -> Result<Revision> {
        // Shared with every other write; a catalog record or apply holds it exclusively.
        tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&CATALOG_LOCK])
            .await
            .map_err(pg)?;
        let (revision, catalog_id) = lock_tenant(tx, tenant_id).await?;
        if catalog_id != self.guard.verified() {
            self.guard.admit(tx, catalog_id).await?;
        } else if let Some(r) = self.guard.refusal() {
            return Err(StoreError::Unavailable(r));
        }
        if let Some(actor) = &ctx.actor {
            let facts = self.facts(tx, tenant_id, actor, &ctx.rule).await?;
            ctx.authorize(&self.catalog, &facts)?;
        }
        Ok(revision)
    }

    /// What an admin rule decides on, read in the write's transaction: the actor, then what
    /// the rule needs given the actor.
    async fn facts(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        actor: &str,
        rule: &Rule,
    ) -> Result<Facts> {
        let named: Vec<String> = rule.groups().into_iter().collect();
        let (mut users, groups) = self
            .subjects_in(tx, tenant_id, &[actor.to_owned()], &[], &named)
            .await?;
        let actor = users.remove(actor).unwrap_or_default();
        let needs = rule.needs(&self.catalog, &actor, &groups);
        let ids: Vec<String> = needs.users.into_iter().collect();
        let members_of: Vec<String> = needs.members_of.into_iter().collect();
        let groups: Vec<String> = needs.groups.into_iter().collect();
        let (users, groups) = self
            .subjects_in(tx, tenant_id, &ids, &members_of, &groups)
            .await?;
        Ok(Facts {
            actor,
            users,
            groups,
        })
    }

    /// The subjects of the named users and of every member of `members_of`, and the grants of
    /// their custom groups and of the `groups` named, in the transaction's view.
    async fn subjects_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        ids: &[String],
        members_of: &[String],
        groups: &[String],
    ) -> Result<(
        std::collections::HashMap<String, Subject>,
        std::collections::HashMap<String, Arc<GroupGrants>>,
    )> {
        self.subjects_with(tx, tenant_id, USER_COLUMNS, ids, members_of, groups)
            .await
    }

    /// [`Self::subjects_in`] with the user columns given.
    async fn subjects_with(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        columns: &str,
        ids: &[String],
        members_of: &[String],
        groups: &[String],
    ) -> Result<(
        std::collections::HashMap<String, Subject>,
        std::collections::HashMap<String, Arc<GroupGrants>>,
    )> {
        // Separate statements by what is asked: an `OR` of the two would keep the planner from
        // the primary key and scan the tenant's users.
        let members =
            "SELECT m.user_id FROM memberships m WHERE m.tenant_id = $1 AND m.group_key = ANY($2)";
        let rows = match (ids.is_empty(), members_of.is_empty()) {
            (true, true) => Vec::new(),
            (false, true) => tx
                .query(
                    &format!(
                        "SELECT {columns} FROM users u WHERE u.tenant_id = $1 AND u.user_id = ANY($2)"
                    ),
                    &[&tenant_id, &ids],
                )
                .await
                .map_err(pg)?,
            (true, false) => tx
                .query(
                    &format!(
                        "SELECT {columns} FROM users u WHERE u.tenant_id = $1 AND u.user_id IN ({members})"
                    ),
                    &[&tenant_id, &members_of],
                )
                .await
                .map_err(pg)?,
            (false, false) => tx
                .query(
                    &format!(
                        "SELECT {columns} FROM users u WHERE u.tenant_id = $1 AND u.user_id = ANY($3)
                         UNION SELECT {columns} FROM users u WHERE u.tenant_id = $1 AND u.user_id IN ({members})"
                    ),
                    &[&tenant_id, &members_of, &ids],
                )
                .await
                .map_err(pg)?,
        };
        let users: Vec<UserInfo> = rows.iter().map(|r| self.user_info(r)).collect();
        let mut keys: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
        keys.extend(
            users
                .iter()
                .flat_map(|u| u.groups.iter().map(String::as_str)),
        );
        let custom: Vec<&str> = keys
            .into_iter()
            .filter(|k| self.catalog.group(k).is_none())
            .collect();
        let loaded: std::collections::HashMap<String, Arc<GroupGrants>> = if custom.is_empty() {
            std::collections::HashMap::new()
        } else {
            tx.query(
                &format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.group_key = ANY($2)"),
                &[&tenant_id, &custom],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| {
                let g = self.group_grants(r);
                (g.key.clone(), Arc::new(g))
            })
            .collect()
        };
        let subjects = users
            .into_iter()
            .map(|u| {
                let groups = u
                    .groups
                    .iter()
                    .filter_map(|k| match self.catalog.group(k) {
                        Some(g) => Some(g.grants.clone()),
                        None => loaded.get(k).cloned(),
                    })
                    .collect();
                let subject = Subject {
                    user: Some(Arc::new(UserGrants {
                        status: u.status,
                        groups: u.groups,
                        direct: u.direct,
                        scoped: u.scoped,
                        restrictions: u.restrictions,
                    })),
                    groups,
                };
                (u.user_id, subject)
            })
            .collect();
        Ok((subjects, loaded))
    }

    /// Starts the audit record of a write: what it aims at and the state of what it touches,
    /// read inside the transaction after the tenant's revision row is locked.
    async fn record(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        operation: &'static str,
        target: String,
        touched: Touched,
    ) -> Result<Record> {
        let before = self.snapshot(tx, tenant_id, &touched).await?;
        let limit = to_i64(PREVIEW_LIMIT as u64 + 1);
        let mut ids: BTreeSet<String> = touched.users.iter().cloned().collect();
        if !touched.groups.is_empty() {
            let rows = tx
                // Per group, the first members in index order (no per-member work however
                // large the group), then the first of their union.
                .query(
                    "SELECT DISTINCT first.user_id FROM unnest($2::text[]) AS touched(group_key),
                         LATERAL (SELECT m.user_id FROM memberships m
                                  WHERE m.tenant_id = $1 AND m.group_key = touched.group_key
                                  ORDER BY m.user_id LIMIT $3) AS first
                     ORDER BY 1 LIMIT $3",
                    &[&tenant_id, &touched.groups, &limit],
                )
                .await
                .map_err(pg)?;
            ids.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        let truncated = ids.len() > PREVIEW_LIMIT;
        let affected: Vec<String> = ids.into_iter().take(PREVIEW_LIMIT).collect();
        let effective_before = self
            .effective(tx, tenant_id, &affected, &touched.users)
            .await?;
        Ok(Record {
            operation,
            target,
            touched,
            before,
            affected,
            truncated,
            effective_before,
        })
    }

    /// Each user's access inside the transaction (empty when blocked or unknown). The users the
    /// write touches itself (`own`) are read whole; the others (members of an edited group) are
    /// read without their own scoped grants and limits, which the write cannot change, so a
    /// large group's edit costs one light row per listed member.
    async fn effective(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        users: &[String],
        own: &[String],
    ) -> Result<BTreeMap<String, Access>> {
        let mut out: BTreeMap<String, Access> = users
            .iter()
            .map(|u| (u.clone(), Access::default()))
            .collect();
        if users.is_empty() {
            return Ok(out);
        }
        let (whole, light): (Vec<String>, Vec<String>) =
            users.iter().cloned().partition(|u| own.contains(u));
        for (ids, columns) in [(whole, USER_COLUMNS), (light, USER_GROUP_COLUMNS)] {
            if ids.is_empty() {
                continue;
            }
            let (subjects, _) = self
                .subjects_with(tx, tenant_id, columns, &ids, &[], &[])
                .await?;
            for (id, subject) in subjects {
                out.insert(id, Access::of(&subject));
            }
        }
        Ok(out)
    }

    async fn snapshot(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        touched: &Touched,
    ) -> Result<serde_json::Value> {
        let mut users: Vec<(String, Option<UserInfo>)> = Vec::new();
        if !touched.all_users && !touched.users.is_empty() {
            let rows = tx
                .query(
                    &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.user_id = ANY($2)"),
                    &[&tenant_id, &touched.users],
                )
                .await
                .map_err(pg)?;
            let found: Vec<UserInfo> = rows.iter().map(|r| self.user_info(r)).collect();
            users = touched
                .users
                .iter()
                .map(|id| (id.clone(), found.iter().find(|u| &u.user_id == id).cloned()))
                .collect();
        }
        let mut groups: Vec<(String, Option<GroupInfo>)> = Vec::new();
        if !touched.groups.is_empty() {
            let rows = tx
                .query(
                    &format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.group_key = ANY($2)"),
                    &[&tenant_id, &touched.groups],
                )
                .await
                .map_err(pg)?;
            let found: Vec<GroupInfo> = rows.iter().map(|r| self.group_info(r)).collect();
            groups = touched
                .groups
                .iter()
                .map(|k| (k.clone(), found.iter().find(|g| &g.def.key == k).cloned()))
                .collect();
        }
        Ok(super::snapshot_json(&self.catalog, &users, &groups))
    }

    /// Finishes a tenant's write: computes the preview, then either rolls back (a dry run:
    /// returns the revision it was computed at) or appends the change with its audit record,
    /// sends one NOTIFY (delivered only on commit) and commits.
    async fn commit(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        revision: Revision,
        ctx: &WriteCtx,
        record: Record,
    ) -> Result<Committed<()>> {
        let effective_after = self
            .effective(&tx, tenant_id, &record.affected, &record.touched.users)
            .await?;
        let preview = super::preview(
            &self.catalog,
            &record.effective_before,
            &effective_after,
            record.truncated,
        );
        if ctx.dry_run {
            tx.rollback().await.map_err(pg)?;
            return Ok(Committed {
                value: (),
                revision: revision - 1,
                preview,
            });
        }
        let after = self.snapshot(&tx, tenant_id, &record.touched).await?;
        let touched = &record.touched;
        tx.execute(
            "INSERT INTO changes (tenant_id, revision, operation, users, groups, all_users, actor, target, before, after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &tenant_id,
                &to_i64(revision),
                &record.operation,
                &touched.users,
                &touched.groups,
                &touched.all_users,
                &ctx.actor,
                &record.target,
                &record.before,
                &after,
            ],
        )
        .await
        .map_err(pg)?;
        let payload = Notice::new(tenant_id, revision, touched).encode();
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(Committed {
            value: (),
            revision,
            preview,
        })
    }

    /// Inserts a new custom group with its scoped grants; `GroupExists` when the key is taken.
    async fn insert_group(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        def: &GroupDef,
    ) -> Result<()> {
        // A newer catalog the database records (a rollout under way) may reserve the key; the
        // write holds the catalog lock shared, so the check stands until it commits.
        if self.guard.reserved(&def.key) {
            return Err(StoreError::Reserved(def.key.clone()));
        }
        let inserted = tx
            .execute(
                "INSERT INTO groups (tenant_id, group_key, name, description, permissions)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, group_key) DO NOTHING",
                &[
                    &tenant_id,
                    &def.key,
                    &def.name,
                    &def.description,
                    &self.keys(&def.permissions),
                ],
            )
            .await
            .map_err(pg)?;
        if inserted == 0 {
            return Err(StoreError::GroupExists(def.key.clone()));
        }
        self.insert_group_scoped(tx, tenant_id, &def.key, &def.scoped)
            .await
    }

    async fn insert_group_scoped(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        key: &str,
        scoped: &[ScopedGrant],
    ) -> Result<()> {
        let (p, t, i) = scoped_arrays(&self.catalog, scoped);
        tx.execute(
            "INSERT INTO group_scoped_grants (tenant_id, group_key, permission, resource_type, resource_id)
             SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[]) ON CONFLICT DO NOTHING",
            &[&tenant_id, &key, &p, &t, &i],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    // ---- Conversions from rows ----

    fn perms(&self, keys: &[String]) -> PermSet {
        keys.iter()
            .filter_map(|k| {
                let p = self.catalog.resolve(k);
                if p.is_none() {
                    tracing::warn!(permission = %k, "stored permission is not in the catalog; ignored");
                }
                p
            })
            .collect()
    }

    fn scoped(&self, perms: &[String], types: &[String], ids: &[String]) -> Vec<ScopedGrant> {
        let mut out: Vec<ScopedGrant> = perms
            .iter()
            .zip(types)
            .zip(ids)
            .filter_map(|((p, t), id)| {
                Some(ScopedGrant {
                    permission: self.catalog.resolve(p)?,
                    resource: ResourceRef {
                        resource_type: self.catalog.resource_type(t)?,
                        id: id.clone(),
                    },
                })
            })
            .collect();
        out.sort();
        out
    }

    fn restrictions(&self, types: &[String], ids: &[String]) -> Vec<Restriction> {
        let mut out: Vec<Restriction> = Vec::new();
        for (t, id) in types.iter().zip(ids) {
            let Some(resource_type) = self.catalog.resource_type(t) else {
                continue;
            };
            match out.iter_mut().find(|r| r.resource_type == resource_type) {
                Some(r) => {
                    r.ids.insert(id.clone());
                }
                None => out.push(Restriction {
                    resource_type,
                    ids: [id.clone()].into(),
                }),
            }
        }
        out.sort_by_key(|r| r.resource_type);
        out
    }

    fn user_info(&self, row: &Row) -> UserInfo {
        let status: String = row.get("status");
        let mut info = UserInfo {
            user_id: row.get("user_id"),
            display_name: row.get("display_name"),
            email: row.get("email"),
            // Only a status known to be active lets a user in: anything else denies.
            status: if status == "active" {
                UserStatus::Active
            } else {
                UserStatus::Blocked
            },
            groups: row.get("groups"),
            direct: self.perms(&row.get::<_, Vec<String>>("direct")),
            scoped: self.scoped(
                &row.get::<_, Vec<String>>("sp"),
                &row.get::<_, Vec<String>>("st"),
                &row.get::<_, Vec<String>>("si"),
            ),
            restrictions: self.restrictions(
                &row.get::<_, Vec<String>>("rt"),
                &row.get::<_, Vec<String>>("ri"),
            ),
            effective: PermSet::new(),
        };
        // Admin reads also carry the custom groups' permissions: the effective set (and so
        // the roles) comes from the same snapshot as the rest of the user.
        if let Ok(group_perms) = row.try_get::<_, Vec<String>>("gp") {
            if info.status == UserStatus::Active {
                let mut set = info.direct.clone();
                set.union_with(&self.perms(&group_perms));
                for g in &info.groups {
                    if let Some(sys) = self.catalog.group(g) {
                        set.union_with(&sys.grants.permissions);
                    }
                }
                info.effective = set;
            }
        }
        info
    }

    fn group_info(&self, row: &Row) -> GroupInfo {
        GroupInfo {
            def: GroupDef {
                key: row.get("group_key"),
                name: row.get("name"),
                description: row.get("description"),
                permissions: self.perms(&row.get::<_, Vec<String>>("permissions")),
                scoped: self.scoped(
                    &row.get::<_, Vec<String>>("sp"),
                    &row.get::<_, Vec<String>>("st"),
                    &row.get::<_, Vec<String>>("si"),
                ),
            },
            version: rev(row.get("version")),
            member_count: rev(row.get("members")),
        }
    }

    fn keys(&self, set: &PermSet) -> Vec<String> {
        self.catalog.keys(set).map(str::to_owned).collect()
    }

    // ---- Cache loads: data and revision from one statement, hence one snapshot ----

    /// A user's grants and the grants of the custom groups it is a member of, in one round
    /// trip: the two statements are pipelined on one connection (the group statement finds
    /// the groups through the memberships itself). They are two snapshots, each with the
    /// tenant's revision; a group in the user's list but not in the group rows (a membership
    /// added in between) is simply not returned, and the caller loads it on its own.
    pub async fn load_user_and_groups(&self, tenant_id: &str, user_id: &str) -> Result<UserLoad> {
        let (row, group_rows) = self
            .read(move |c| async move {
                let (user_stmt, group_stmt) = tokio::try_join!(
                    c.prepare_cached(&USER_LOAD),
                    c.prepare_cached(&USER_GROUPS_LOAD)
                )?;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&tenant_id, &user_id];
                tokio::try_join!(
                    c.query_opt(&user_stmt, &params),
                    c.query(&group_stmt, &params)
                )
            })
            .await?;
        // The user was read under this catalog record: this replica must agree with it.
        if let Some(r) = &row {
            self.admit(r.get("catalog_id")).await?;
        }
        let (user, revision) = self.loaded_user(tenant_id, row)?;
        let groups_revision = group_rows.first().map_or(revision, |r| rev(r.get(0)));
        let groups = group_rows.iter().map(|r| self.group_grants(r)).collect();
        Ok(UserLoad {
            user,
            revision,
            groups,
            groups_revision,
        })
    }

    /// The user (`None` when the tenant has no such user) and the tenant's revision from the
    /// user statement's row; no row means no such tenant.
    fn loaded_user(
        &self,
        tenant_id: &str,
        row: Option<Row>,
    ) -> Result<(Option<UserGrants>, Revision)> {
        let row = row.ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        let revision = rev(row.get(0));
        if !row.get::<_, bool>(1) {
            return Ok((None, revision));
        }
        let info = self.user_info(&row);
        Ok((
            Some(UserGrants {
                status: info.status,
                groups: info.groups,
                direct: info.direct,
                scoped: info.scoped,
                restrictions: info.restrictions,
            }),
            revision,
        ))
    }

    fn group_grants(&self, row: &Row) -> GroupGrants {
        let info = self.group_info(row);
        GroupGrants {
            key: info.def.key,
            permissions: info.def.permissions,
            scoped: info.def.scoped,
        }
    }

    /// The grants of the named custom groups that exist, and the tenant's revision, in one
    /// snapshot.
    pub async fn load_groups(
        &self,
        tenant_id: &str,
        keys: &[String],
    ) -> Result<(Vec<GroupGrants>, Revision)> {
        let sql = &format!(
            "SELECT t.revision, g.group_key IS NOT NULL AS found, {GROUP_COLUMNS}
             FROM tenants t LEFT JOIN groups g ON g.tenant_id = t.tenant_id AND g.group_key = ANY($2)
             WHERE t.tenant_id = $1"
        );
        let rows = self
            .read(move |c| async move {
                let stmt = c.prepare_cached(sql).await?;
                c.query(&stmt, &[&tenant_id, &keys]).await
            })
            .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::TenantNotFound(tenant_id.to_owned()));
        };
        let revision = rev(first.get(0));
        let groups = rows
            .iter()
            .filter(|r| r.get::<_, bool>(1))
            .map(|r| self.group_grants(r))
            .collect();
        Ok((groups, revision))
    }

    /// One page of every tenant's users, ordered by (tenant, user) and strictly after `after`,
    /// each with its tenant's revision: the bulk read behind cache warm-up.
    pub async fn load_users_page(
        &self,
        after: &(String, String),
        limit: i64,
    ) -> Result<Vec<(String, String, UserGrants, Revision)>> {
        let sql = &format!(
            "SELECT t.revision, u.tenant_id, {USER_COLUMNS}
             FROM users u JOIN tenants t ON t.tenant_id = u.tenant_id
             WHERE (u.tenant_id, u.user_id) > ($1, $2)
             ORDER BY u.tenant_id, u.user_id LIMIT $3"
        );
        let (t, u) = (&after.0, &after.1);
        let rows = self
            .read(move |c| async move {
                let stmt = c.prepare_cached(sql).await?;
                c.query(&stmt, &[t, u, &limit]).await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let info = self.user_info(r);
                (
                    r.get(1),
                    info.user_id,
                    UserGrants {
                        status: info.status,
                        groups: info.groups,
                        direct: info.direct,
                        scoped: info.scoped,
                        restrictions: info.restrictions,
                    },
                    rev(r.get(0)),
                )
            })
            .collect())
    }

    /// One page of every tenant's custom groups, like [`Self::load_users_page`].
    pub async fn load_groups_page(
        &self,
        after: &(String, String),
        limit: i64,
    ) -> Result<Vec<(String, GroupGrants, Revision)>> {
        let sql = &format!(
            "SELECT t.revision, g.tenant_id, {GROUP_COLUMNS}
             FROM groups g JOIN tenants t ON t.tenant_id = g.tenant_id
             WHERE (g.tenant_id, g.group_key) > ($1, $2)
             ORDER BY g.tenant_id, g.group_key LIMIT $3"
        );
        let (t, k) = (&after.0, &after.1);
        let rows = self
            .read(move |c| async move {
                let stmt = c.prepare_cached(sql).await?;
                c.query(&stmt, &[t, k, &limit]).await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let info = self.group_info(r);
                (
                    r.get(1),
                    GroupGrants {
                        key: info.def.key,
                        permissions: info.def.permissions,
                        scoped: info.def.scoped,
                    },
                    rev(r.get(0)),
                )
            })
            .collect())
    }

    /// Builds a subject from the database alone: the user and its custom groups in one round
    /// trip, and, in the rare case a membership landed between the two statements, that group
    /// read on its own.
    pub async fn load_subject(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<(Subject, Revision)> {
        let load = self.load_user_and_groups(tenant_id, user_id).await?;
        let Some(user) = load.user else {
            return Ok((Subject::default(), load.revision));
        };
        let mut revision = load.revision.min(load.groups_revision);
        let missed: Vec<String> = user
            .groups
            .iter()
            .filter(|k| {
                self.catalog.group(k).is_none() && !load.groups.iter().any(|g| &g.key == *k)
            })
            .cloned()
            .collect();
        let mut loaded = load.groups;
        if !missed.is_empty() {
            let (more, more_rev) = self.load_groups(tenant_id, &missed).await?;
            revision = revision.min(more_rev);
            loaded.extend(more);
        }
        let groups = user
            .groups
            .iter()
            .filter_map(|k| match self.catalog.group(k) {
                Some(g) => Some(g.grants.clone()),
                None => loaded.iter().find(|g| &g.key == k).cloned().map(Arc::new),
            })
            .collect();
        Ok((
            Subject {
                user: Some(Arc::new(user)),
                groups,
            },
            revision,
        ))
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
        .query_opt(
            "UPDATE tenants SET revision = revision + 1 WHERE tenant_id = $1
             RETURNING revision, (SELECT coalesce(max(id), 0) FROM catalogs)",
            &[&tenant_id],
        )
        .await
        .map_err(pg)?
        .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
    Ok((rev(row.get(0)), row.get(1)))
}

async fn ensure_users(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_id: &str,
    user_ids: &[String],
) -> Result<()> {
    tx.execute(
        "INSERT INTO users (tenant_id, user_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
        &[&tenant_id, &user_ids],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn check_group(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_id: &str,
    group: GroupRef<'_>,
) -> Result<()> {
    if let GroupRef::Custom(key) = group {
        let found = tx
            .query_opt(
                "SELECT 1 FROM groups WHERE tenant_id = $1 AND group_key = $2",
                &[&tenant_id, &key],
            )
            .await
            .map_err(pg)?;
        if found.is_none() {
            return Err(StoreError::GroupNotFound(key.to_owned()));
        }
    }
    Ok(())
}

/// Scoped grants as three parallel arrays (permission, type, id) for `unnest`.
fn scoped_arrays(
    catalog: &Catalog,
    grants: &[ScopedGrant],
) -> (Vec<String>, Vec<String>, Vec<String>) {
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
    (p, t, i)
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

#[async_trait]
impl Store for PostgresStore {
    async fn create_tenant(&self, tenant_id: &str, display_name: &str) -> Result<TenantInfo> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "INSERT INTO tenants (tenant_id, display_name) VALUES ($1, $2)
                 ON CONFLICT (tenant_id) DO NOTHING RETURNING created_at, revision",
                &[&tenant_id, &display_name],
            )
            .await
            .map_err(pg)?
            .ok_or_else(|| StoreError::TenantExists(tenant_id.to_owned()))?;
        Ok(TenantInfo {
            tenant_id: tenant_id.to_owned(),
            display_name: display_name.to_owned(),
            created_at: row.get(0),
            revision: rev(row.get(1)),
        })
    }

    async fn get_tenant(&self, tenant_id: &str) -> Result<TenantInfo> {
        let row = self
            .read(move |c| async move {
                c.query_opt(
                    "SELECT display_name, created_at, revision FROM tenants WHERE tenant_id = $1",
                    &[&tenant_id],
                )
                .await
            })
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        Ok(TenantInfo {
            tenant_id: tenant_id.to_owned(),
            display_name: row.get(0),
            created_at: row.get(1),
            revision: rev(row.get(2)),
        })
    }

    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<TenantInfo>> {
        let (a, l) = (after(page), limit(page));
        let rows = self
            .read(move |c| async move {
                c.query(
                    "SELECT tenant_id, display_name, created_at, revision FROM tenants
                         WHERE tenant_id > $1 ORDER BY tenant_id LIMIT $2",
                    &[&a, &l],
                )
                .await
            })
            .await?;
        let items = rows
            .iter()
            .map(|r| TenantInfo {
                tenant_id: r.get(0),
                display_name: r.get(1),
                created_at: r.get(2),
                revision: rev(r.get(3)),
            })
            .collect();
        Ok(paged(items, page))
    }

    async fn upsert_user(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        user_id: &str,
        display_name: &str,
        email: &str,
    ) -> Result<Committed<UserInfo>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "upsert_user",
                format!("user:{user_id}"),
                Touched::users([user_id.to_owned()]),
            )
            .await?;
        tx.execute(
            "INSERT INTO users (tenant_id, user_id, display_name, email) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET display_name = $3, email = $4",
            &[&tenant_id, &user_id, &display_name, &email],
        )
        .await
        .map_err(pg)?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.user_id = $2"
                ),
                &[&tenant_id, &user_id],
            )
            .await
            .map_err(pg)?;
        let info = self.user_info(&row);
        Ok(self
            .commit(tx, tenant_id, revision, ctx, record)
            .await?
            .map(|()| info))
    }

    async fn import_users(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        rows: &[ImportRow],
    ) -> Result<Committed<()>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let touched = Touched::users(rows.iter().map(|r| r.user_id.clone()));
        let record = self
            .record(
                &tx,
                tenant_id,
                "import_users",
                format!("users:{}", rows.len()),
                touched,
            )
            .await?;
        let custom: BTreeSet<&String> = rows
            .iter()
            .flat_map(|r| &r.groups)
            .filter(|g| self.catalog.group(g).is_none())
            .collect();
        let custom: Vec<&String> = custom.into_iter().collect();
        let found: BTreeSet<String> = tx
            .query(
                "SELECT group_key FROM groups WHERE tenant_id = $1 AND group_key = ANY($2) FOR SHARE",
                &[&tenant_id, &custom],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(missing) = custom.iter().find(|g| !found.contains(g.as_str())) {
            return Err(StoreError::GroupNotFound((*missing).clone()));
        }
        for r in rows {
            tx.execute(
                "INSERT INTO users (tenant_id, user_id, display_name, email, direct) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET
                     display_name = coalesce(nullif($3, ''), users.display_name),
                     email = coalesce(nullif($4, ''), users.email),
                     direct = ARRAY(SELECT DISTINCT x FROM unnest(users.direct || $5::text[]) x ORDER BY 1)",
                &[&tenant_id, &r.user_id, &r.display_name, &r.email, &self.keys(&r.direct)],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO memberships (tenant_id, user_id, group_key)
                 SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
                &[&tenant_id, &r.user_id, &r.groups],
            )
            .await
            .map_err(pg)?;
        }
        self.commit(tx, tenant_id, revision, ctx, record).await
    }

    async fn get_user(&self, tenant_id: &str, user_id: &str) -> Result<UserInfo> {
        let sql = &format!(
            "SELECT t.tenant_id, u.user_id IS NOT NULL AS found, {USER_COLUMNS}, {GROUP_PERMISSIONS_COLUMN}
             FROM tenants t LEFT JOIN users u ON u.tenant_id = t.tenant_id AND u.user_id = $2
             WHERE t.tenant_id = $1"
        );
        let row = self
            .read(move |c| async move { c.query_opt(sql, &[&tenant_id, &user_id]).await })
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        if !row.get::<_, bool>("found") {
            return Err(StoreError::UserNotFound(user_id.to_owned()));
        }
        Ok(self.user_info(&row))
    }

    async fn list_users(
        &self,
        tenant_id: &str,
        group: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<UserInfo>> {
        self.get_tenant(tenant_id).await?;
        let (a, l) = (after(page), limit(page));
        let rows = match group {
            None => {
                let sql = &format!(
                    "SELECT {USER_COLUMNS}, {GROUP_PERMISSIONS_COLUMN} FROM users u WHERE u.tenant_id = $1 AND u.user_id > $2
                     ORDER BY u.user_id LIMIT $3"
                );
                self.read(move |c| async move { c.query(sql, &[&tenant_id, &a, &l]).await })
                    .await?
            }
            Some(g) => {
                let sql = &format!(
                    "SELECT {USER_COLUMNS}, {GROUP_PERMISSIONS_COLUMN} FROM memberships gm
                     JOIN users u ON u.tenant_id = gm.tenant_id AND u.user_id = gm.user_id
                     WHERE gm.tenant_id = $1 AND gm.group_key = $2 AND gm.user_id > $3
                     ORDER BY gm.user_id LIMIT $4"
                );
                self.read(move |c| async move { c.query(sql, &[&tenant_id, &g, &a, &l]).await })
                    .await?
            }
        };
        Ok(paged(
            rows.iter().map(|r| self.user_info(r)).collect(),
            page,
        ))
    }

    async fn set_user_status(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        user_id: &str,
        status: UserStatus,
    ) -> Result<Committed<UserInfo>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "set_user_status",
                format!("user:{user_id}"),
                Touched::users([user_id.to_owned()]),
            )
            .await?;
        tx.execute(
            "INSERT INTO users (tenant_id, user_id, status) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET status = $3",
            &[&tenant_id, &user_id, &status_text(status)],
        )
        .await
        .map_err(pg)?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.user_id = $2"
                ),
                &[&tenant_id, &user_id],
            )
            .await
            .map_err(pg)?;
        let info = self.user_info(&row);
        Ok(self
            .commit(tx, tenant_id, revision, ctx, record)
            .await?
            .map(|()| info))
    }

    async fn create_group(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        def: GroupDef,
    ) -> Result<Committed<GroupInfo>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "create_group",
                format!("group:{}", def.key),
                Touched::group(&def.key),
            )
            .await?;
        self.insert_group(&tx, tenant_id, &def).await?;
        Ok(self
            .commit(tx, tenant_id, revision, ctx, record)
            .await?
            .map(|()| GroupInfo {
                def,
                version: 1,
                member_count: 0,
            }))
    }

    async fn duplicate_group(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        def: GroupDef,
        members_of: Option<&str>,
    ) -> Result<Committed<GroupInfo>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let copied: Vec<String> = match members_of {
            None => Vec::new(),
            Some(src) => tx
                .query(
                    "SELECT user_id FROM memberships WHERE tenant_id = $1 AND group_key = $2 ORDER BY user_id",
                    &[&tenant_id, &src],
                )
                .await
                .map_err(pg)?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let touched = Touched {
            users: copied,
            groups: vec![def.key.clone()],
            all_users: false,
        };
        let record = self
            .record(
                &tx,
                tenant_id,
                "duplicate_group",
                format!("group:{}", def.key),
                touched,
            )
            .await?;
        self.insert_group(&tx, tenant_id, &def).await?;
        if let Some(src) = members_of {
            tx.execute(
                "INSERT INTO memberships (tenant_id, user_id, group_key)
                 SELECT tenant_id, user_id, $3 FROM memberships WHERE tenant_id = $1 AND group_key = $2",
                &[&tenant_id, &src, &def.key],
            )
            .await
            .map_err(pg)?;
        }
        let member_count = record.touched.users.len() as u64;
        Ok(self
            .commit(tx, tenant_id, revision, ctx, record)
            .await?
            .map(|()| GroupInfo {
                def,
                version: 1,
                member_count,
            }))
    }

    async fn get_group(&self, tenant_id: &str, key: &str) -> Result<GroupInfo> {
        let sql = &format!(
            "SELECT t.tenant_id, g.group_key IS NOT NULL AS found, {GROUP_COLUMNS}
             FROM tenants t LEFT JOIN groups g ON g.tenant_id = t.tenant_id AND g.group_key = $2
             WHERE t.tenant_id = $1"
        );
        let row = self
            .read(move |c| async move { c.query_opt(sql, &[&tenant_id, &key]).await })
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        if !row.get::<_, bool>("found") {
            return Err(StoreError::GroupNotFound(key.to_owned()));
        }
        Ok(self.group_info(&row))
    }

    async fn list_groups(&self, tenant_id: &str, page: &PageRequest) -> Result<Page<GroupInfo>> {
        self.get_tenant(tenant_id).await?;
        let (a, l) = (after(page), limit(page));
        let sql = &format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.group_key > $2
             ORDER BY g.group_key LIMIT $3"
        );
        let rows = self
            .read(move |c| async move { c.query(sql, &[&tenant_id, &a, &l]).await })
            .await?;
        Ok(paged(
            rows.iter().map(|r| self.group_info(r)).collect(),
            page,
        ))
    }

    async fn update_group(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        key: &str,
        patch: GroupPatch,
        expected_version: Option<u64>,
    ) -> Result<Committed<GroupInfo>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "update_group",
                format!("group:{key}"),
                Touched::group(key),
            )
            .await?;
        let row = tx
            .query_opt(
                "SELECT version, permissions FROM groups WHERE tenant_id = $1 AND group_key = $2 FOR UPDATE",
                &[&tenant_id, &key],
            )
            .await
            .map_err(pg)?
            .ok_or_else(|| StoreError::GroupNotFound(key.to_owned()))?;
        let actual = rev(row.get(0));
        if let Some(expected) = expected_version.filter(|e| *e != actual) {
            return Err(StoreError::VersionMismatch {
                key: key.to_owned(),
                expected,
                actual,
            });
        }
        // A stored key the catalog does not know is never dropped by an edit, and an actor's
        // edit keeps the internal permissions it cannot see.
        let internal = self.catalog.internal_permissions();
        let kept: Vec<String> = row
            .get::<_, Vec<String>>(1)
            .into_iter()
            .filter(|k| match self.catalog.resolve(k) {
                None => true,
                Some(p) => ctx.actor.is_some() && internal.contains(p),
            })
            .collect();
        let permissions = patch.permissions.as_ref().map(|p| {
            let mut keys = self.keys(p);
            keys.extend(kept.iter().cloned());
            keys.sort();
            keys.dedup();
            keys
        });
        tx.execute(
            "UPDATE groups SET name = coalesce($3, name), description = coalesce($4, description),
                    permissions = coalesce($5, permissions), version = version + 1
             WHERE tenant_id = $1 AND group_key = $2",
            &[
                &tenant_id,
                &key,
                &patch.name,
                &patch.description,
                &permissions,
            ],
        )
        .await
        .map_err(pg)?;
        if let Some(scoped) = &patch.scoped {
            let keep: Vec<String> = if ctx.actor.is_some() {
                self.keys(internal)
            } else {
                Vec::new()
            };
            tx.execute(
                "DELETE FROM group_scoped_grants WHERE tenant_id = $1 AND group_key = $2
                 AND permission <> ALL($3)",
                &[&tenant_id, &key, &keep],
            )
            .await
            .map_err(pg)?;
            self.insert_group_scoped(&tx, tenant_id, key, scoped)
                .await?;
        }
        let row = tx
            .query_one(
                &format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.group_key = $2"),
                &[&tenant_id, &key],
            )
            .await
            .map_err(pg)?;
        let info = self.group_info(&row);
        Ok(self
            .commit(tx, tenant_id, revision, ctx, record)
            .await?
            .map(|()| info))
    }

    async fn delete_group(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<Committed<()>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "delete_group",
                format!("group:{key}"),
                Touched::group(key),
            )
            .await?;
        let row = tx
            .query_opt(
                "SELECT version, (SELECT count(*) FROM memberships m WHERE m.tenant_id = $1 AND m.group_key = $2)
                 FROM groups WHERE tenant_id = $1 AND group_key = $2 FOR UPDATE",
                &[&tenant_id, &key],
            )
            .await
            .map_err(pg)?
            .ok_or_else(|| StoreError::GroupNotFound(key.to_owned()))?;
        let actual = rev(row.get(0));
        if let Some(expected) = expected_version.filter(|e| *e != actual) {
            return Err(StoreError::VersionMismatch {
                key: key.to_owned(),
                expected,
                actual,
            });
        }
        let members = rev(row.get(1));
        if members > 0 {
            return Err(StoreError::GroupNotEmpty {
                key: key.to_owned(),
                members,
            });
        }
        tx.execute(
            "DELETE FROM groups WHERE tenant_id = $1 AND group_key = $2",
            &[&tenant_id, &key],
        )
        .await
        .map_err(pg)?;
        self.commit(tx, tenant_id, revision, ctx, record).await
    }

    async fn member_count(&self, tenant_id: &str, group: &str) -> Result<u64> {
        let row = self
            .read(move |c| {
                async move {
                    c.query_opt(
                        "SELECT (SELECT count(*) FROM memberships m WHERE m.tenant_id = $1 AND m.group_key = $2)
                         FROM tenants WHERE tenant_id = $1",
                        &[&tenant_id, &group],
                    )
                    .await
                }
            })
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        Ok(rev(row.get(0)))
    }

    async fn add_members(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        group: GroupRef<'_>,
        user_ids: &[String],
    ) -> Result<Committed<()>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "add_members",
                format!("group:{}", group.key()),
                Touched::users(user_ids.iter().cloned()),
            )
            .await?;
        check_group(&tx, tenant_id, group).await?;
        ensure_users(&tx, tenant_id, user_ids).await?;
        tx.execute(
            "INSERT INTO memberships (tenant_id, user_id, group_key)
             SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING",
            &[&tenant_id, &user_ids, &group.key()],
        )
        .await
        .map_err(pg)?;
        self.commit(tx, tenant_id, revision, ctx, record).await
    }

    async fn remove_members(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        group: GroupRef<'_>,
        user_ids: &[String],
    ) -> Result<Committed<()>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "remove_members",
                format!("group:{}", group.key()),
                Touched::users(user_ids.iter().cloned()),
            )
            .await?;
        check_group(&tx, tenant_id, group).await?;
        tx.execute(
            "DELETE FROM memberships WHERE tenant_id = $1 AND group_key = $2 AND user_id = ANY($3)",
            &[&tenant_id, &group.key(), &user_ids],
        )
        .await
        .map_err(pg)?;
        self.commit(tx, tenant_id, revision, ctx, record).await
    }

    async fn grant(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        user_id: &str,
        grants: &Grants,
    ) -> Result<Committed<()>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "grant",
                format!("user:{user_id}"),
                Touched::users([user_id.to_owned()]),
            )
            .await?;
        ensure_users(&tx, tenant_id, &[user_id.to_owned()]).await?;
        match grants {
            Grants::Unscoped(set) => {
                tx.execute(
                    "UPDATE users SET direct = ARRAY(SELECT DISTINCT x FROM unnest(direct || $3::text[]) x ORDER BY 1)
                     WHERE tenant_id = $1 AND user_id = $2",
                    &[&tenant_id, &user_id, &self.keys(set)],
                )
                .await
                .map_err(pg)?;
            }
            Grants::Scoped(list) => {
                let (p, t, i) = scoped_arrays(&self.catalog, list);
                tx.execute(
                    "INSERT INTO user_scoped_grants (tenant_id, user_id, permission, resource_type, resource_id)
                     SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[]) ON CONFLICT DO NOTHING",
                    &[&tenant_id, &user_id, &p, &t, &i],
                )
                .await
                .map_err(pg)?;
            }
        }
        self.commit(tx, tenant_id, revision, ctx, record).await
    }

    async fn revoke(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        user_id: &str,
        grants: &Grants,
    ) -> Result<Committed<()>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "revoke",
                format!("user:{user_id}"),
                Touched::users([user_id.to_owned()]),
            )
            .await?;
        let found = tx
            .query_opt(
                "SELECT 1 FROM users WHERE tenant_id = $1 AND user_id = $2",
                &[&tenant_id, &user_id],
            )
            .await
            .map_err(pg)?;
        if found.is_none() {
            return Err(StoreError::UserNotFound(user_id.to_owned()));
        }
        match grants {
            Grants::Unscoped(set) => {
                tx.execute(
                    "UPDATE users SET direct = ARRAY(SELECT x FROM unnest(direct) x WHERE x <> ALL($3::text[]) ORDER BY 1)
                     WHERE tenant_id = $1 AND user_id = $2",
                    &[&tenant_id, &user_id, &self.keys(set)],
                )
                .await
                .map_err(pg)?;
            }
            Grants::Scoped(list) => {
                let (p, t, i) = scoped_arrays(&self.catalog, list);
                tx.execute(
                    "DELETE FROM user_scoped_grants WHERE tenant_id = $1 AND user_id = $2
                     AND (permission, resource_type, resource_id) IN
                         (SELECT * FROM unnest($3::text[], $4::text[], $5::text[]))",
                    &[&tenant_id, &user_id, &p, &t, &i],
                )
                .await
                .map_err(pg)?;
            }
        }
        self.commit(tx, tenant_id, revision, ctx, record).await
    }

    async fn set_restriction(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        user_id: &str,
        resource_type: ResourceTypeId,
        ids: Option<BTreeSet<String>>,
    ) -> Result<Committed<()>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let record = self
            .record(
                &tx,
                tenant_id,
                "set_restriction",
                format!("user:{user_id}"),
                Touched::users([user_id.to_owned()]),
            )
            .await?;
        ensure_users(&tx, tenant_id, &[user_id.to_owned()]).await?;
        let type_key = self.catalog.resource_type_key(resource_type);
        match ids {
            Some(ids) => {
                let ids: Vec<String> = ids.into_iter().collect();
                tx.execute(
                    "INSERT INTO restrictions (tenant_id, user_id, resource_type, resource_ids) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant_id, user_id, resource_type) DO UPDATE SET resource_ids = $4",
                    &[&tenant_id, &user_id, &type_key, &ids],
                )
                .await
                .map_err(pg)?;
            }
            None => {
                tx.execute(
                    "DELETE FROM restrictions WHERE tenant_id = $1 AND user_id = $2 AND resource_type = $3",
                    &[&tenant_id, &user_id, &type_key],
                )
                .await
                .map_err(pg)?;
            }
        }
        self.commit(tx, tenant_id, revision, ctx, record).await
    }

    async fn subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)> {
        let (subject, revision) = self.load_subject(tenant_id, user_id).await?;
        if let Consistency::AtLeast(requested) = consistency {
            if requested > revision {
                return Err(StoreError::FutureRevision {
                    requested,
                    latest: revision,
                });
            }
        }
        Ok((subject, revision))
    }

    async fn changes_since(
        &self,
        tenant_id: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Change>> {
        self.get_tenant(tenant_id).await?;
        let (a, l) = (to_i64(after), to_i64(limit as u64));
        let rows = self
            .read(move |c| {
                async move {
                    c.query(
                        "SELECT revision, committed_at, operation, users, groups, all_users, actor, target, before, after
                         FROM changes WHERE tenant_id = $1 AND revision > $2 ORDER BY revision LIMIT $3",
                        &[&tenant_id, &a, &l],
                    )
                    .await
                }
            })
            .await?;
        Ok(rows.iter().map(|r| change(tenant_id, r)).collect())
    }

    async fn audit(&self, tenant_id: &str, query: &AuditQuery) -> Result<Vec<Change>> {
        self.get_tenant(tenant_id).await?;
        let before = query.before_revision.map(to_i64);
        let limit = to_i64(query.limit as u64);
        let rows = self
            .read(move |c| async move {
                c.query(
                    "SELECT revision, committed_at, operation, users, groups, all_users, actor, target, before, after
                     FROM changes
                     WHERE tenant_id = $1
                       AND ($2::bigint IS NULL OR revision < $2)
                       AND ($3::text IS NULL OR actor = $3)
                       AND ($4::text IS NULL OR target = $4)
                       AND ($5::timestamptz IS NULL OR committed_at >= $5)
                       AND ($6::timestamptz IS NULL OR committed_at < $6)
                     ORDER BY revision DESC LIMIT $7",
                    &[&tenant_id, &before, &query.actor, &query.target, &query.since, &query.until, &limit],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(|r| change(tenant_id, r)).collect())
    }

    fn commits(&self) -> CommitSignal {
        self.commits.subscribe()
    }

    async fn latest_revisions(&self, tenant_ids: &[String]) -> Result<Vec<(String, Revision)>> {
        let rows = self
            .read(move |c| async move {
                c.query(
                    "SELECT tenant_id, revision FROM tenants WHERE tenant_id = ANY($1)",
                    &[&tenant_ids],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), rev(r.get(1)))).collect())
    }

    fn readiness(&self) -> Readiness {
        Readiness {
            ready: true,
            reason: String::new(),
        }
    }
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
