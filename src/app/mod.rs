//! The application: validates requests, resolves names against the catalog, applies the
//! product's rules and calls the store. It speaks plain Rust types; the gRPC edge converts.

use crate::error::{Error, Result};
pub use crate::ids::{By, GroupKey, Paging, TenantId, UserId, UserIds};
use crate::store::{
    Change, Consistency, Grants, GroupDef, GroupInfo, GroupPatch, GroupRef, Revision, Store,
    TenantInfo, UserInfo, WriteCtx,
};
use crate::store::{Committed, ImportRow, Write};
use crate::validate;
use authz_core::admin::{self as rules, Actor, AdminOp, Effect, ImportGrant, Refusal, Rule};
use authz_core::decide::{self, Decision, Query, Target};
use authz_core::expr::Expr;
use authz_core::model::{
    GroupGrants, ResourceRef, ResourceTypeId, ScopedGrant, Subject, UserStatus,
};
use authz_core::{Catalog, PermId, PermSet};
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

mod audit;
mod caller;
use caller::Caller;
mod changes;
mod check;
mod grants;
mod groups;
mod import;
mod resolve;
mod tenants;
mod users;

/// Most items in one BatchCheck.
pub const DEFAULT_MAX_BATCH: usize = 1000;
/// Most context flags in one check.
pub const MAX_CONTEXT_FLAGS: usize = 64;

/// What a check asks for, by name.
#[derive(Clone, Debug)]
pub enum TargetInput {
    Permission(String),
    Action(String),
    Expression(String),
}

#[derive(Clone, Debug)]
pub struct ResourceInput {
    pub resource_type: String,
    pub id: String,
}

#[derive(Clone, Debug)]
pub struct CheckInput {
    /// Validated with the rest of the check, so that a batch item's invalid id is that item's
    /// error and the other items still answer.
    pub user_id: String,
    pub target: Option<TargetInput>,
    pub resource: Option<ResourceInput>,
    pub context: HashMap<String, bool>,
    pub explain: bool,
}

/// A decided check, with the resource it was asked on (for rendering sources).
#[derive(Clone, Debug)]
pub struct Checked {
    pub decision: Decision,
    pub resource: Option<ResourceRef>,
}

/// A user's effective access as GetEffectivePermissions shows it: each permission and scoped
/// grant with where it comes from, the limits, the groups, the state and the derived roles.
#[derive(Clone, Debug)]
pub struct Effective {
    pub state: decide::UserState,
    pub permissions: Vec<decide::EffectivePermission>,
    pub scoped: Vec<(ScopedGrant, decide::Source)>,
    pub restrictions: Vec<authz_core::model::Restriction>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

/// A group as shown to callers: a custom group of the tenant or a catalog system group.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub def: GroupDef,
    pub system: bool,
    pub internal: bool,
    pub version: u64,
    pub member_count: u64,
}

#[derive(Clone, Debug, Default)]
pub struct GroupInput {
    pub key: String,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub scoped_grants: Vec<(String, ResourceInput)>,
}

/// A check whose names are resolved.
struct Prepared<'c> {
    target: Resolved<'c>,
    resource: Option<ResourceRef>,
}

/// Where [`Authz::check_now`] left a check.
pub enum CheckNow<'c> {
    Decided(Result<(Checked, Revision)>),
    /// Validated; the store must read the user ([`Authz::check_read`]).
    Read(PendingCheck<'c>),
}

/// A validated check waiting for the store's read of its user.
pub struct PendingCheck<'c>(Prepared<'c>);

/// A resolved target: an inline expression is parsed per request and owned here.
enum Resolved<'c> {
    Permission(PermId),
    Action(&'c authz_core::catalog::Action),
    Expression(Expr),
}

impl Resolved<'_> {
    fn as_target(&self) -> Target<'_> {
        match self {
            Resolved::Permission(p) => Target::Permission(*p),
            Resolved::Action(a) => Target::Action(a),
            Resolved::Expression(e) => Target::Expression(e),
        }
    }
}

pub struct Authz {
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    max_batch: usize,
}

impl Authz {
    pub fn new(catalog: Arc<Catalog>, store: Arc<dyn Store>) -> Self {
        Self {
            catalog,
            store,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }

    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn readiness(&self) -> crate::store::Readiness {
        self.store.readiness()
    }

    /// Why the store does not serve (its catalog disagrees with the database's), or `None`.
    pub fn catalog_refusal(&self) -> Option<String> {
        self.store.catalog_refusal()
    }

    pub fn store_stats(&self) -> Option<crate::store::StoreStats> {
        self.store.stats()
    }
}

/// One row of ImportUsers, as sent.
#[derive(Clone, Debug, Default)]
pub struct ImportInput {
    pub user_id: String,
    pub display_name: String,
    pub email: String,
    pub group_keys: Vec<String>,
    pub permissions: Vec<String>,
}

/// Whether a mutation commits or only previews.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    #[default]
    Commit,
    /// Validate and compute everything, including the preview; commit nothing.
    DryRun,
}

/// Whether a change of a group's members or a user's grants adds or removes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Add,
    Remove,
}

/// Who makes an admin mutation, and how.
#[derive(Clone, Debug)]
pub struct AdminCall {
    pub by: By,
    pub mode: WriteMode,
}

/// Filters of ListAuditEvents.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<UserId>,
    pub target: Option<String>,
    pub since: Option<std::time::SystemTime>,
    pub until: Option<std::time::SystemTime>,
    pub page: Paging,
}

/// What DuplicateGroup copies.
#[derive(Clone, Debug)]
pub struct DuplicateInput {
    pub source_group_key: GroupKey,
    pub new_key: String,
    pub new_name: String,
    pub copy_permissions: bool,
    pub copy_scoped_grants: bool,
    pub copy_members: bool,
}
