//! Storage: the [`Store`] trait every backend implements, and the types it speaks.
//!
//! A store keeps tenants, users, custom groups, memberships, grants and restrictions, and hands
//! checks a [`Subject`] built from them. System groups come from the catalog and are never
//! stored; a store only records memberships in them. Every write returns the tenant's new
//! [`Revision`]; revisions order a tenant's writes.

pub mod cached;
pub mod listener;
pub mod memory;
pub mod notify;
pub mod postgres;

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
    #[error("storage unavailable: {0}")]
    Unavailable(String),
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

/// One committed write, as the change log and `Watch` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub tenant_id: String,
    pub revision: Revision,
    pub committed_at: SystemTime,
    pub operation: String,
    pub touched: Touched,
}

/// A signal that a tenant has committed up to a revision; receivers re-read the change log.
pub type CommitSignal = tokio::sync::broadcast::Receiver<(String, Revision)>;

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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_tenant(&self, tenant_id: &str, display_name: &str) -> Result<TenantInfo>;
    async fn get_tenant(&self, tenant_id: &str) -> Result<TenantInfo>;
    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<TenantInfo>>;

    /// Creates the user or updates its profile fields.
    async fn upsert_user(
        &self,
        tenant_id: &str,
        user_id: &str,
        display_name: &str,
        email: &str,
    ) -> Result<(UserInfo, Revision)>;
    async fn get_user(&self, tenant_id: &str, user_id: &str) -> Result<UserInfo>;
    /// Users sorted by id; only members of `group` when given.
    async fn list_users(
        &self,
        tenant_id: &str,
        group: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<UserInfo>>;
    /// Sets a user's status, creating the user when unknown.
    async fn set_user_status(
        &self,
        tenant_id: &str,
        user_id: &str,
        status: UserStatus,
    ) -> Result<(UserInfo, Revision)>;

    async fn create_group(&self, tenant_id: &str, def: GroupDef) -> Result<(GroupInfo, Revision)>;
    /// Creates a custom group and, when `members_of` is given, makes every member of that group
    /// (system or custom) a member of the new one, in one write.
    async fn duplicate_group(
        &self,
        tenant_id: &str,
        def: GroupDef,
        members_of: Option<&str>,
    ) -> Result<(GroupInfo, Revision)>;
    async fn get_group(&self, tenant_id: &str, key: &str) -> Result<GroupInfo>;
    /// Custom groups sorted by key.
    async fn list_groups(&self, tenant_id: &str, page: &PageRequest) -> Result<Page<GroupInfo>>;
    async fn update_group(
        &self,
        tenant_id: &str,
        key: &str,
        patch: GroupPatch,
        expected_version: Option<u64>,
    ) -> Result<(GroupInfo, Revision)>;
    async fn delete_group(
        &self,
        tenant_id: &str,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<Revision>;
    /// Members of any group, system or custom.
    async fn member_count(&self, tenant_id: &str, group: &str) -> Result<u64>;
    /// Adds members, creating users that do not exist yet.
    async fn add_members(
        &self,
        tenant_id: &str,
        group: GroupRef<'_>,
        user_ids: &[String],
    ) -> Result<Revision>;
    async fn remove_members(
        &self,
        tenant_id: &str,
        group: GroupRef<'_>,
        user_ids: &[String],
    ) -> Result<Revision>;

    /// Adds direct grants, creating the user when unknown.
    async fn grant(&self, tenant_id: &str, user_id: &str, grants: &Grants) -> Result<Revision>;
    async fn revoke(&self, tenant_id: &str, user_id: &str, grants: &Grants) -> Result<Revision>;
    /// Sets (`Some`) or clears (`None`) the user's restriction on one resource type.
    async fn set_restriction(
        &self,
        tenant_id: &str,
        user_id: &str,
        resource_type: ResourceTypeId,
        ids: Option<BTreeSet<String>>,
    ) -> Result<Revision>;

    /// Everything a check needs about one user, and the revision it reflects. An unknown user
    /// is a subject with no user (denied); an unknown tenant is an error.
    async fn subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)>;

    /// The tenant's committed changes after `after`, oldest first, at most `limit`.
    async fn changes_since(
        &self,
        tenant_id: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Change>>;

    /// Fires after commits this process learns of. Best effort: `Watch` also polls.
    fn commits(&self) -> CommitSignal;

    /// Whether the store can serve: the database answers and, for a cached store, the change
    /// listener is subscribed. The memory store is always ready.
    fn readiness(&self) -> Readiness {
        Readiness {
            ready: true,
            reason: String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// Why not ready.
    pub reason: String,
}
