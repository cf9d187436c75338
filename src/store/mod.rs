//! Storage: the [`Store`] trait every backend implements, and the types it speaks.
//!
//! A store keeps tenants, users, custom groups, memberships, grants and restrictions, and hands
//! checks a [`Subject`] built from them. System groups come from the catalog and are never
//! stored; a store only records memberships in them. Every write returns the tenant's new
//! [`Revision`]; revisions order a tenant's writes.

pub mod cached;
pub mod catalogs;
pub mod listener;
pub mod memory;
pub mod notify;
pub mod postgres;
pub(crate) mod rules;
mod write;

pub(crate) use write::Op;
pub use write::{Write, Written};

use async_trait::async_trait;
use authz_core::PermSet;
use authz_core::model::{ResourceTypeId, ScopedGrant, Subject, UserStatus};
use std::collections::BTreeSet;
use std::time::SystemTime;

/// A tenant's write counter: every committed write increments it by one.
pub type Revision = u64;

/// How fresh a subject must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Any cached data will do.
    #[default]
    MinimizeLatency,
    /// Data at least as new as this revision (read-your-writes).
    AtLeast(Revision),
    /// Read the source of truth, bypassing caches.
    Full,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantInfo {
    pub tenant_id: String,
    pub display_name: String,
    pub created_at: SystemTime,
    pub revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub user_id: String,
    pub display_name: String,
    pub email: String,
    pub status: UserStatus,
    /// Group keys, sorted.
    pub groups: Vec<String>,
    pub direct: PermSet,
    pub scoped: Vec<ScopedGrant>,
    pub restrictions: Vec<authz_core::model::Restriction>,
    /// The unscoped effective permissions, read in the same snapshot as the rest (empty when
    /// blocked). Filled by `get_user` and `list_users`; empty in audit snapshots.
    pub effective: PermSet,
}

/// The editable part of a custom group.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupDef {
    pub key: String,
    pub name: String,
    pub description: String,
    pub permissions: PermSet,
    pub scoped: Vec<ScopedGrant>,
}

/// Fields to change in a group; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<PermSet>,
    pub scoped: Option<Vec<ScopedGrant>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub def: GroupDef,
    pub version: u64,
    pub member_count: u64,
}

/// What a grant or revoke changes: unscoped permissions, or permissions on one resource.
#[derive(Clone, Debug)]
pub enum Grants {
    Unscoped(PermSet),
    Scoped(Vec<ScopedGrant>),
}

/// One page of a keyset-paginated listing: items sorted by key, strictly after `after`.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub size: usize,
    pub after: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// True when items follow the last one returned.
    pub more: bool,
}

/// A store's errors. Each says what was not found or not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("tenant `{0}` does not exist; create it with AdminService.CreateTenant")]
    TenantNotFound(String),
    #[error("tenant `{0}` already exists")]
    TenantExists(String),
    #[error("user `{0}` does not exist in this tenant")]
    UserNotFound(String),
    #[error("group `{0}` does not exist in this tenant")]
    GroupNotFound(String),
    #[error("group `{0}` already exists in this tenant")]
    GroupExists(String),
    #[error("group `{key}` still has {members} member(s); remove them before deleting it")]
    GroupNotEmpty { key: String, members: u64 },
    #[error(
        "group `{key}` is at version {actual}, not {expected}; reload it and apply the change again"
    )]
    VersionMismatch {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "revision {requested} is newer than the tenant's latest revision {latest}; revision tokens are per tenant"
    )]
    FutureRevision {
        requested: Revision,
        latest: Revision,
    },
    #[error(
        "changes after revision {requested} are no longer kept (the oldest kept is {oldest}); reload the state and watch from its revision"
    )]
    ChangesTruncated {
        requested: Revision,
        oldest: Revision,
    },
    #[error(
        "the cache may have missed revocations for longer than the staleness bound and the database is unreachable: {0}"
    )]
    Stale(String),
    /// The write's admin rule refused it, decided on state read inside the write.
    #[error("{0}")]
    Denied(authz_core::admin::Refusal),
    /// A catalog change asked of the store cannot be carried out as declared.
    #[error("{0}")]
    Invalid(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// This replica's catalog disagrees with the one the database records, or is a step behind
    /// it (then it answers checks but writes nothing).
    #[error("{0}")]
    CatalogMismatch(String),
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a committed write touched: the users whose own grants changed and the custom groups
/// whose grants changed. `all_users` marks a change too large to list (a bulk change).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub all_users: bool,
}

impl Touched {
    pub fn users(users: impl IntoIterator<Item = String>) -> Self {
        Self {
            users: users.into_iter().collect(),
            ..Self::default()
        }
    }

    pub fn group(key: &str) -> Self {
        Self {
            groups: vec![key.to_owned()],
            ..Self::default()
        }
    }
}

/// One validated row of a user import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportRow {
    pub user_id: String,
    pub display_name: String,
    pub email: String,
    /// Group keys, each a system group or an existing custom group.
    pub groups: Vec<String>,
    pub direct: PermSet,
}

/// Who makes a write (the audit log records it), under which admin rule, and whether to
/// commit it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteCtx {
    /// The acting user; `None` for an operator.
    pub actor: Option<String>,
    /// What the write needs of an actor. A store decides it on state read inside the write,
    /// after the tenant's lock and before it changes anything ([`WriteCtx::authorize`]); an
    /// operator's write skips it.
    pub rule: authz_core::admin::Rule,
    /// Validate and compute everything, commit nothing.
    pub dry_run: bool,
}

/// Most users a preview lists; past it the preview says it is truncated.
pub const PREVIEW_LIMIT: usize = 1000;

/// What a user may do, as a preview compares it: unscoped permissions, scoped grants and
/// limits (permissions and grants empty for a blocked user, who may do nothing; all empty for
/// an unknown one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub permissions: PermSet,
    pub scoped: BTreeSet<ScopedGrant>,
    pub restrictions: std::collections::BTreeMap<ResourceTypeId, BTreeSet<String>>,
}

impl Access {
    /// A blocked user may do nothing, but keeps its limits: blocking or unblocking a limited
    /// user changes its permissions, not its limits.
    pub fn of(subject: &Subject) -> Access {
        let restrictions = subject
            .user
            .iter()
            .flat_map(|u| u.restrictions.iter())
            .map(|r| (r.resource_type, r.ids.clone()))
            .collect();
        if !subject.is_active() {
            return Access {
                restrictions,
                ..Access::default()
            };
        }
        Access {
            permissions: subject.effective(),
            scoped: authz_core::decide::scoped_grants(subject)
                .into_iter()
                .map(|(g, _)| g)
                .collect(),
            restrictions,
        }
    }
}

/// How one user's limit on a resource type changes (`None`: not limited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitChange {
    pub resource_type: ResourceTypeId,
    pub before: Option<BTreeSet<String>>,
    pub after: Option<BTreeSet<String>>,
}

/// How one user's access (effective permissions, scoped grants, limits and derived roles)
/// changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserDiff {
    pub user_id: String,
    pub added: PermSet,
    pub removed: PermSet,
    pub scoped_added: Vec<ScopedGrant>,
    pub scoped_removed: Vec<ScopedGrant>,
    pub limits: Vec<LimitChange>,
    pub roles_added: Vec<String>,
    pub roles_removed: Vec<String>,
}

/// Every user whose access a write changes (or would change).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preview {
    pub affected_users: Vec<UserDiff>,
    /// More users were affected than [`PREVIEW_LIMIT`]; only the first are listed.
    pub truncated: bool,
}

/// A write's result: its value, the revision (for a dry run, the revision it was computed at),
/// its preview, and what it touched — the one account of it caches invalidate from.
#[derive(Clone, Debug)]
pub struct Committed<T> {
    pub value: T,
    pub revision: Revision,
    pub preview: Preview,
    pub touched: Touched,
}

impl<T> Committed<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Committed<U> {
        Committed {
            value: f(self.value),
            revision: self.revision,
            preview: self.preview,
            touched: self.touched,
        }
    }
}

/// The diff of access, per user, before and after a write.
pub fn preview(
    catalog: &authz_core::Catalog,
    before: &std::collections::BTreeMap<String, Access>,
    after: &std::collections::BTreeMap<String, Access>,
    truncated: bool,
) -> Preview {
    let empty = Access::default();
    let users: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut affected_users = Vec::new();
    for u in users {
        let b = before.get(u).unwrap_or(&empty);
        let a = after.get(u).unwrap_or(&empty);
        if a == b {
            continue;
        }
        let mut added = a.permissions.clone();
        added.difference_with(&b.permissions);
        let mut removed = b.permissions.clone();
        removed.difference_with(&a.permissions);
        let types: BTreeSet<&ResourceTypeId> =
            b.restrictions.keys().chain(a.restrictions.keys()).collect();
        let limits = types
            .into_iter()
            .filter(|t| b.restrictions.get(t) != a.restrictions.get(t))
            .map(|t| LimitChange {
                resource_type: *t,
                before: b.restrictions.get(t).cloned(),
                after: a.restrictions.get(t).cloned(),
            })
            .collect();
        let (rb, ra) = (
            catalog.roles_of(&b.permissions),
            catalog.roles_of(&a.permissions),
        );
        affected_users.push(UserDiff {
            user_id: u.clone(),
            added,
            removed,
            scoped_added: a.scoped.difference(&b.scoped).cloned().collect(),
            scoped_removed: b.scoped.difference(&a.scoped).cloned().collect(),
            limits,
            roles_added: ra
                .iter()
                .filter(|r| !rb.contains(r))
                .map(|r| r.to_string())
                .collect(),
            roles_removed: rb
                .iter()
                .filter(|r| !ra.contains(r))
                .map(|r| r.to_string())
                .collect(),
        });
    }
    Preview {
        affected_users,
        truncated,
    }
}

impl WriteCtx {
    pub fn operator() -> Self {
        Self::default()
    }

    /// Decides the write's rule for its actor on `facts`, read inside the write (operators
    /// pass). Called by every store after the tenant's lock and before any change.
    pub fn authorize(
        &self,
        catalog: &authz_core::Catalog,
        facts: &authz_core::admin::Facts,
    ) -> Result<()> {
        match &self.actor {
            None => Ok(()),
            Some(actor) => self
                .rule
                .check(catalog, actor, facts)
                .map_err(StoreError::Denied),
        }
    }
}

/// One committed write, as the change log, `Watch` and the audit log report it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub tenant_id: String,
    pub revision: Revision,
    pub committed_at: SystemTime,
    pub operation: String,
    pub touched: Touched,
    /// The acting user; `None` for an operator.
    pub actor: Option<String>,
    /// What the operation was aimed at: `group:<key>` or `user:<id>`.
    pub target: String,
    /// The state of everything the write touched, before and after:
    /// `{"users": {id: {...} | null}, "groups": {key: {...} | null}}`.
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// Filters of the audit log, read newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Only events older than this revision (the page token).
    pub before_revision: Option<Revision>,
    pub limit: usize,
}

/// Most entries of one list (a user's groups, direct and scoped grants, a restriction's
/// resources; a group's permissions and scoped grants) an audit snapshot records. Past it the
/// snapshot records how many were left out, under `<list>_omitted`.
pub const SNAPSHOT_LIST_LIMIT: usize = 100;
/// Most bytes (as JSON) of users and groups one audit snapshot records. Past it the remaining
/// users (groups) are counted under `users_omitted` (`groups_omitted`), not listed, so one audit
/// event stays far below a response's size limit whatever the write touched.
pub const SNAPSHOT_MAX_BYTES: usize = 256 * 1024;

/// The first [`SNAPSHOT_LIST_LIMIT`] items of a list, and how many were left out.
fn capped<T: serde::Serialize>(
    items: impl ExactSizeIterator<Item = T>,
) -> (serde_json::Value, usize) {
    let total = items.len();
    let kept: Vec<T> = items.take(SNAPSHOT_LIST_LIMIT).collect();
    (
        serde_json::json!(kept),
        total.saturating_sub(SNAPSHOT_LIST_LIMIT),
    )
}

/// Inserts a capped list and, when some were left out, its `<key>_omitted` count.
fn insert_capped(
    out: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    (list, omitted): (serde_json::Value, usize),
) {
    out.insert(key.to_owned(), list);
    if omitted > 0 {
        out.insert(format!("{key}_omitted"), serde_json::json!(omitted));
    }
}

/// A user's state as the audit log records it (lists capped at [`SNAPSHOT_LIST_LIMIT`]).
pub fn user_json(catalog: &authz_core::Catalog, u: &UserInfo) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("display_name".to_owned(), serde_json::json!(u.display_name));
    out.insert("email".to_owned(), serde_json::json!(u.email));
    out.insert(
        "status".to_owned(),
        serde_json::json!(match u.status {
            UserStatus::Active => "active",
            UserStatus::Blocked => "blocked",
        }),
    );
    insert_capped(&mut out, "groups", capped(u.groups.iter()));
    insert_capped(
        &mut out,
        "direct",
        capped(catalog.keys(&u.direct).collect::<Vec<_>>().into_iter()),
    );
    insert_capped(
        &mut out,
        "scoped",
        capped(u.scoped.iter().map(|s| scoped_text(catalog, s))),
    );
    let mut restrictions = serde_json::Map::new();
    let mut omitted = serde_json::Map::new();
    for r in &u.restrictions {
        let key = catalog.resource_type_key(r.resource_type).to_owned();
        let (ids, left_out) = capped(r.ids.iter());
        restrictions.insert(key.clone(), ids);
        if left_out > 0 {
            omitted.insert(key, serde_json::json!(left_out));
        }
    }
    out.insert(
        "restrictions".to_owned(),
        serde_json::Value::Object(restrictions),
    );
    if !omitted.is_empty() {
        out.insert(
            "restrictions_omitted".to_owned(),
            serde_json::Value::Object(omitted),
        );
    }
    serde_json::Value::Object(out)
}

/// A group's state as the audit log records it (lists capped at [`SNAPSHOT_LIST_LIMIT`]).
pub fn group_json(catalog: &authz_core::Catalog, g: &GroupInfo) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("name".to_owned(), serde_json::json!(g.def.name));
    out.insert(
        "description".to_owned(),
        serde_json::json!(g.def.description),
    );
    insert_capped(
        &mut out,
        "permissions",
        capped(
            catalog
                .keys(&g.def.permissions)
                .collect::<Vec<_>>()
                .into_iter(),
        ),
    );
    insert_capped(
        &mut out,
        "scoped",
        capped(g.def.scoped.iter().map(|s| scoped_text(catalog, s))),
    );
    out.insert("version".to_owned(), serde_json::json!(g.version));
    serde_json::Value::Object(out)
}

fn scoped_text(catalog: &authz_core::Catalog, s: &ScopedGrant) -> String {
    format!(
        "{}@{}:{}",
        catalog.key(s.permission),
        catalog.resource_type_key(s.resource.resource_type),
        s.resource.id
    )
}

/// Records entries into `out[key]` while they fit in `budget` bytes of JSON; the rest are
/// counted under `<key>_omitted`. The first entry is always recorded, so a snapshot never says
/// nothing about what a write touched.
fn bounded_entries<T>(
    out: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    entries: &[(String, Option<T>)],
    budget: &mut usize,
    json: impl Fn(&T) -> serde_json::Value,
) {
    if entries.is_empty() {
        return;
    }
    let mut map = serde_json::Map::new();
    let mut omitted = 0usize;
    for (id, value) in entries {
        if omitted > 0 {
            omitted += 1;
            continue;
        }
        let v = value.as_ref().map_or(serde_json::Value::Null, &json);
        // The entry's size as JSON: its value, its key and the punctuation around them.
        let size = v.to_string().len() + id.len() + 4;
        if size > *budget && !map.is_empty() {
            omitted = 1;
            continue;
        }
        *budget = budget.saturating_sub(size);
        map.insert(id.clone(), v);
    }
    out.insert(key.to_owned(), serde_json::Value::Object(map));
    if omitted > 0 {
        out.insert(format!("{key}_omitted"), serde_json::json!(omitted));
    }
}

/// The audit snapshot of touched users and groups (`None`: does not exist), bounded by
/// [`SNAPSHOT_MAX_BYTES`] and [`SNAPSHOT_LIST_LIMIT`].
pub fn snapshot_json(
    catalog: &authz_core::Catalog,
    users: &[(String, Option<UserInfo>)],
    groups: &[(String, Option<GroupInfo>)],
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let mut budget = SNAPSHOT_MAX_BYTES;
    // Groups first: a write touches few, and they say what a group edit changed.
    bounded_entries(&mut out, "groups", groups, &mut budget, |g| {
        group_json(catalog, g)
    });
    bounded_entries(&mut out, "users", users, &mut budget, |u| {
        user_json(catalog, u)
    });
    serde_json::Value::Object(out)
}

/// What [`Store::commits`] announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitEvent {
    /// The tenant has committed up to this revision.
    Committed(String, Revision),
    /// Announcements may have been missed (the change listener has just subscribed again): every
    /// tenant may have moved.
    Resync,
}

/// Commit announcements; a receiver that lags must treat it as [`CommitEvent::Resync`].
pub type CommitSignal = tokio::sync::broadcast::Receiver<CommitEvent>;

/// A reference to a group that a membership names: system groups exist in every tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRef<'a> {
    System(&'a str),
    Custom(&'a str),
}

impl GroupRef<'_> {
    pub fn key(&self) -> &str {
        match self {
            GroupRef::System(k) | GroupRef::Custom(k) => k,
        }
    }
}

/// What a store reads for the admin surface, Watch and the audit log. These reads never go
/// through a cache: a cached store hands out its database's (`Store::records`).
#[async_trait]
pub trait Records: Send + Sync {
    async fn get_tenant(&self, tenant_id: &str) -> Result<TenantInfo>;
    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<TenantInfo>>;

    async fn get_user(&self, tenant_id: &str, user_id: &str) -> Result<UserInfo>;
    /// Users sorted by id; only members of `group` when given.
    async fn list_users(
        &self,
        tenant_id: &str,
        group: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<UserInfo>>;

    async fn get_group(&self, tenant_id: &str, key: &str) -> Result<GroupInfo>;
    /// Custom groups sorted by key.
    async fn list_groups(&self, tenant_id: &str, page: &PageRequest) -> Result<Page<GroupInfo>>;
    /// Members of any group, system or custom.
    async fn member_count(&self, tenant_id: &str, group: &str) -> Result<u64>;

    /// The tenant's committed changes after `after`, oldest first, at most `limit`.
    async fn changes_since(
        &self,
        tenant_id: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Change>>;

    /// Audit events, newest first.
    async fn audit(&self, tenant_id: &str, query: &AuditQuery) -> Result<Vec<Change>>;

    /// The latest revision of each of these tenants that exists, in no particular order.
    async fn latest_revisions(&self, tenant_ids: &[String]) -> Result<Vec<(String, Revision)>> {
        let mut out = Vec::with_capacity(tenant_ids.len());
        for t in tenant_ids {
            match self.get_tenant(t).await {
                Ok(info) => out.push((info.tenant_id, info.revision)),
                Err(StoreError::TenantNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// A store: its writes, the subjects checks are decided on, and its [`Records`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Carries out one admin write in one transaction (one write lock on the memory store):
    /// the tenant's lock, the write's admin rule decided on state read under it, the change,
    /// its change-log and audit record, its notification. A dry run computes everything,
    /// preview included, and commits nothing.
    async fn write(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        write: Write<'_>,
    ) -> Result<Committed<Written>>;

    async fn create_tenant(&self, tenant_id: &str, display_name: &str) -> Result<TenantInfo>;

    /// Everything a check needs about one user, and the revision it reflects. An unknown user
    /// is a subject with no user (denied); an unknown tenant is an error.
    async fn subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)>;

    /// [`Store::subject`] when it can be answered without waiting (a cache hit; a store in
    /// memory); `None` when it must wait for the database. Checks ask this first, so the
    /// common case costs no future.
    fn subject_now(
        &self,
        _tenant_id: &str,
        _user_id: &str,
        _consistency: Consistency,
    ) -> Option<Result<(Subject, Revision)>> {
        None
    }

    /// The store's records: tenants, users, groups, the change log and the audit log.
    fn records(&self) -> &dyn Records;

    /// Announces the commits this process learns of: its own, and (for a cached store) every
    /// replica's through the change listener.
    fn commits(&self) -> CommitSignal;

    /// Operational numbers for metrics; `None` for a store without cache or pool.
    fn stats(&self) -> Option<StoreStats> {
        None
    }

    /// Why this store does not serve right now (its catalog disagrees with the one the
    /// database records), or `None`.
    fn catalog_refusal(&self) -> Option<String> {
        None
    }

    /// Whether the store can serve: the database answers and, for a cached store, the change
    /// listener is subscribed. The memory store is always ready.
    fn readiness(&self) -> Readiness {
        Readiness {
            ready: true,
            reason: String::new(),
        }
    }
}

/// A store's operational numbers, for metrics. Counters only ever grow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_loads: u64,
    pub cache_invalidations: u64,
    pub cache_bypasses: u64,
    pub cache_entries: u64,
    pub cache_weight_bytes: u64,
    pub listener_connected: bool,
    /// How long ago the newest point is up to which every commit is known to have reached the
    /// cache (`None` before the first subscription).
    pub listener_staleness: Option<std::time::Duration>,
    pub listener_reconnects: u64,
    pub listener_flushes: u64,
    pub listener_notifications: u64,
    pub pool_size: u64,
    pub pool_available: u64,
    pub pool_waiting: u64,
    pub catalog_compatible: bool,
    pub catalog_record: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// Why not ready.
    pub reason: String,
}
