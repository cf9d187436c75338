//! The application: validates requests, resolves names against the catalog, applies the
//! product's rules and calls the store. It speaks plain Rust types; the gRPC edge converts.

use crate::error::{Error, Result};
use crate::store::{
    Change, Consistency, Grants, GroupDef, GroupInfo, GroupPatch, GroupRef, PageRequest, Revision,
    Store, TenantInfo, UserInfo, WriteCtx,
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

    // ---- Change stream ----

    /// Subscribe before reading the change log, so no commit falls between the two.
    pub fn commits(&self) -> crate::store::CommitSignal {
        self.store.commits()
    }

    pub async fn changes_since(
        &self,
        tenant_id: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<crate::store::Change>> {
        validate::id("tenant_id", tenant_id)?;
        Ok(self.store.changes_since(tenant_id, after, limit).await?)
    }

    /// The latest revision of each of these tenants (those that exist).
    pub async fn latest_revisions(&self, tenant_ids: &[String]) -> Result<Vec<(String, Revision)>> {
        Ok(self.store.latest_revisions(tenant_ids).await?)
    }

    /// Where a Watch starts: after the given revision token, or after the tenant's latest.
    pub async fn watch_start(&self, tenant_id: &str, after_revision: &str) -> Result<Revision> {
        validate::id("tenant_id", tenant_id)?;
        let latest = self.store.get_tenant(tenant_id).await?.revision;
        if after_revision.is_empty() {
            return Ok(latest);
        }
        match validate::revision_token(after_revision) {
            Some(r) if r <= latest => Ok(r),
            Some(r) => Err(Error::Invalid(format!(
                "after_revision {r} is newer than the tenant's latest revision {latest}"
            ))),
            None => Err(Error::Invalid(format!(
                "after_revision {after_revision:?} is not a revision token; pass a `revision` string from a response, or leave it empty to start now"
            ))),
        }
    }

    // ---- Name resolution ----

    fn permission(&self, field: &str, key: &str) -> Result<PermId> {
        if let Some(p) = self.catalog.resolve(key) {
            return Ok(p);
        }
        let hint = authz_core::key::key_from_name(key);
        match self.catalog.resolve(&hint) {
            Some(p) if hint != key => Err(Error::Invalid(format!(
                "{field}: unknown permission `{key}`; did you mean `{}`?",
                self.catalog.key(p)
            ))),
            _ => Err(Self::unknown_permission(field, key)),
        }
    }

    fn unknown_permission(field: &str, key: &str) -> Error {
        Error::Invalid(format!(
            "{field}: unknown permission `{key}`; AdminService.ListPermissions lists the catalog's keys"
        ))
    }

    fn resource_type(&self, field: &str, key: &str) -> Result<ResourceTypeId> {
        self.catalog.resource_type(key).ok_or_else(|| {
            let known: Vec<&str> = self
                .catalog
                .resource_types()
                .iter()
                .map(|t| t.key.as_str())
                .collect();
            Error::Invalid(format!(
                "{field}: unknown resource type `{key}`; this catalog has: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    fn resource(&self, field: &str, r: &ResourceInput) -> Result<ResourceRef> {
        let resource_type = self.resource_type(&format!("{field}.type"), &r.resource_type)?;
        validate::id(&format!("{field}.id"), &r.id)?;
        Ok(ResourceRef {
            resource_type,
            id: r.id.clone(),
        })
    }

    fn target<'c>(&'c self, target: Option<&TargetInput>) -> Result<Resolved<'c>> {
        match target {
            None => Err(Error::Invalid(
                "target is required: set one of permission, action or expression".to_owned(),
            )),
            Some(TargetInput::Permission(k)) => Ok(Resolved::Permission(self.permission("permission", k)?)),
            Some(TargetInput::Action(k)) => self.catalog.action(k).map(Resolved::Action).ok_or_else(|| {
                Error::Invalid(format!(
                    "action: unknown action `{k}`; AdminService.ListActions lists the catalog's actions"
                ))
            }),
            Some(TargetInput::Expression(src)) => self
                .catalog
                .parse_expression(src)
                .map(Resolved::Expression)
                .map_err(|e| Error::Invalid(format!("expression: {e}"))),
        }
    }

    /// The system group with this key, or the tenant's custom group reference.
    fn group_ref<'k>(&self, key: &'k str) -> GroupRef<'k> {
        match self.catalog.group(key) {
            Some(_) => GroupRef::System(key),
            None => GroupRef::Custom(key),
        }
    }

    // ---- Checks ----

    /// Validates a check and resolves its names, before any store work.
    fn prepare<'c>(&'c self, input: &CheckInput) -> Result<Prepared<'c>> {
        validate::id("user_id", &input.user_id)?;
        if input.context.len() > MAX_CONTEXT_FLAGS {
            return Err(Error::Invalid(format!(
                "context has {} flags; the limit is {MAX_CONTEXT_FLAGS}",
                input.context.len()
            )));
        }
        // A misspelt flag would silently read as false and could drop a requirement: refuse it.
        if let Some(unknown) = input
            .context
            .keys()
            .find(|k| self.catalog.flag(k).is_none())
        {
            let declared = self.catalog.context_flags().iter().map(|f| f.key.as_str());
            let hint = match authz_core::key::closest(unknown, declared) {
                Some(close) => format!("did you mean `{close}`? "),
                None => String::new(),
            };
            return Err(Error::Invalid(format!(
                "context flag {unknown:?} is not declared in the catalog; {hint}GetCatalog lists the context_flags"
            )));
        }
        let target = self.target(input.target.as_ref())?;
        // Every flag the requirement tests needs a value (sent, or the catalog's default):
        // refused here, before any store work, whoever the user is.
        decide::FlagValues::resolve(&self.catalog, target.as_target(), |k| {
            input.context.get(k).copied()
        })
        .map_err(|e| Error::Invalid(e.to_string()))?;
        let resource = input
            .resource
            .as_ref()
            .map(|r| self.resource("resource", r))
            .transpose()?;
        Ok(Prepared { target, resource })
    }

    fn decide(
        &self,
        subject: &Subject,
        input: &CheckInput,
        prepared: Prepared<'_>,
    ) -> Result<Checked> {
        let query = Query {
            target: prepared.target.as_target(),
            resource: prepared.resource.as_ref(),
            context: |f: &str| input.context.get(f).copied(),
            explain: input.explain,
        };
        let decision = decide::decide(&self.catalog, subject, &query)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Checked {
            decision,
            resource: prepared.resource,
        })
    }

    pub async fn check(
        &self,
        tenant_id: &str,
        input: &CheckInput,
        consistency: Consistency,
    ) -> Result<(Checked, Revision)> {
        validate::id("tenant_id", tenant_id)?;
        let prepared = self.prepare(input)?;
        let (subject, revision) = self
            .store
            .subject(tenant_id, &input.user_id, consistency)
            .await?;
        Ok((self.decide(&subject, input, prepared)?, revision))
    }

    /// Decides every item; an invalid item gets its own error and the rest still answer.
    /// Each distinct user is loaded once. The revision is the oldest any item was decided at.
    pub async fn batch_check(
        &self,
        tenant_id: &str,
        items: &[CheckInput],
        consistency: Consistency,
    ) -> Result<(Vec<Result<Checked>>, Revision)> {
        validate::id("tenant_id", tenant_id)?;
        if items.is_empty() {
            return Err(Error::Invalid(
                "items is empty; send at least one check".to_owned(),
            ));
        }
        if items.len() > self.max_batch {
            return Err(Error::Invalid(format!(
                "items has {} checks; the limit is {} per BatchCheck: split the batch",
                items.len(),
                self.max_batch
            )));
        }
        let mut subjects: HashMap<&str, (Subject, Revision)> = HashMap::new();
        let mut oldest: Option<Revision> = None;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let prepared = match self.prepare(item) {
                Ok(p) => p,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let (subject, revision) = match subjects.entry(item.user_id.as_str()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(
                    self.store
                        .subject(tenant_id, &item.user_id, consistency)
                        .await?,
                ),
            };
            oldest = Some(oldest.map_or(*revision, |o| o.min(*revision)));
            out.push(self.decide(subject, item, prepared));
        }
        let revision = match oldest {
            Some(r) => r,
            None => self.store.get_tenant(tenant_id).await?.revision,
        };
        Ok((out, revision))
    }

    pub async fn subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)> {
        validate::id("tenant_id", tenant_id)?;
        validate::id("user_id", user_id)?;
        Ok(self.store.subject(tenant_id, user_id, consistency).await?)
    }

    pub async fn allowed_resources(
        &self,
        tenant_id: &str,
        user_id: &str,
        permission: &str,
        resource_type: &str,
        consistency: Consistency,
    ) -> Result<(decide::AllowedResources, Revision)> {
        validate::id("tenant_id", tenant_id)?;
        validate::id("user_id", user_id)?;
        let p = self.permission("permission", permission)?;
        let t = self.resource_type("resource_type", resource_type)?;
        let (subject, revision) = self.store.subject(tenant_id, user_id, consistency).await?;
        Ok((decide::allowed_resources(&subject, p, t), revision))
    }

    /// The roles the catalog derives from a set of effective permissions.
    pub fn roles_of_set(&self, effective: &PermSet) -> Vec<String> {
        self.catalog
            .roles_of(effective)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Refuses an `at_least_as_fresh` token newer than the tenant's latest revision.
    async fn fresh_enough(&self, tenant_id: &str, consistency: Consistency) -> Result<()> {
        if let Consistency::AtLeast(requested) = consistency {
            let latest = self.store.get_tenant(tenant_id).await?.revision;
            if requested > latest {
                return Err(Error::Store(crate::store::StoreError::FutureRevision {
                    requested,
                    latest,
                }));
            }
        }
        Ok(())
    }

    pub fn roles_of(&self, subject: &Subject) -> Vec<String> {
        self.catalog
            .roles_of(&subject.effective())
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    // ---- Callers ----

    /// Who makes an admin call: an operator (no actor named) or an actor, authorized for `op`
    /// with its own, fully consistent, permissions.
    async fn caller(&self, tenant_id: &str, actor_user_id: &str, op: AdminOp) -> Result<Caller> {
        validate::id("tenant_id", tenant_id)?;
        if actor_user_id.is_empty() {
            return Ok(Caller::Operator);
        }
        validate::id("actor_user_id", actor_user_id)?;
        let (subject, _) = self
            .store
            .subject(tenant_id, actor_user_id, Consistency::Full)
            .await?;
        let caller = Caller::Actor {
            id: actor_user_id.to_owned(),
            subject,
        };
        caller.check(|a| rules::authorize(&self.catalog, a, op))?;
        Ok(caller)
    }

    /// Who makes an admin write: an operator (no actor named) or an actor, whose rights the
    /// store decides inside the write itself (`WriteCtx::rule`), never before it.
    fn writer(tenant_id: &str, actor_user_id: &str) -> Result<Caller> {
        validate::id("tenant_id", tenant_id)?;
        if !actor_user_id.is_empty() {
            validate::id("actor_user_id", actor_user_id)?;
        }
        Ok(Caller::actor_marker(actor_user_id))
    }

    /// A permission key as the caller may name it: internal ones do not exist for actors.
    fn visible_permission(&self, caller: &Caller, field: &str, key: &str) -> Result<PermId> {
        match self.catalog.resolve(key) {
            Some(p) if caller.is_actor() && self.catalog.permission(p).internal => Err(
                Error::Concealed(Box::new(Self::unknown_permission(field, key))),
            ),
            _ => self.permission(field, key),
        }
    }

    fn visible_permissions(
        &self,
        caller: &Caller,
        field: &str,
        keys: &[String],
    ) -> Result<PermSet> {
        validate::list_len(field, keys.len())?;
        keys.iter()
            .map(|k| self.visible_permission(caller, field, k))
            .collect()
    }

    /// Internal system groups do not exist for actors.
    fn hidden_from(&self, caller: &Caller, key: &str) -> bool {
        caller.is_actor() && self.catalog.group(key).is_some_and(|g| g.internal)
    }

    /// An internal group, to an actor: "does not exist", counted as a refusal.
    fn no_group(key: &str) -> Error {
        Error::Concealed(Box::new(Error::Store(
            crate::store::StoreError::GroupNotFound(key.to_owned()),
        )))
    }

    /// A user as the caller may see it: actors see no internal groups or permissions.
    fn user_view(&self, caller: &Caller, mut user: UserInfo) -> UserInfo {
        if caller.is_actor() {
            user.groups.retain(|g| !self.hidden_from(caller, g));
            user.direct
                .difference_with(self.catalog.internal_permissions());
            user.scoped
                .retain(|s| !self.catalog.permission(s.permission).internal);
        }
        user
    }

    /// The grants a group gives, for the delegation rule.
    async fn group_grants(&self, tenant_id: &str, key: &str) -> Result<Arc<GroupGrants>> {
        match self.catalog.group(key) {
            Some(g) => Ok(g.grants.clone()),
            None => {
                let info = self.store.get_group(tenant_id, key).await?;
                Ok(Arc::new(GroupGrants {
                    key: info.def.key,
                    permissions: info.def.permissions,
                    scoped: info.def.scoped,
                }))
            }
        }
    }

    // ---- Tenants (operators only: tenants are not staff data) ----

    pub async fn create_tenant(&self, tenant_id: &str, display_name: &str) -> Result<TenantInfo> {
        validate::id("tenant_id", tenant_id)?;
        validate::text("display_name", display_name)?;
        Ok(self.store.create_tenant(tenant_id, display_name).await?)
    }

    /// A tenant, read by an operator or by one of its active users.
    pub async fn get_tenant(&self, tenant_id: &str, actor: &str) -> Result<TenantInfo> {
        validate::id("tenant_id", tenant_id)?;
        if !actor.is_empty() {
            validate::id("actor_user_id", actor)?;
            let (subject, _) = self
                .store
                .subject(tenant_id, actor, Consistency::Full)
                .await?;
            if subject.user.is_none() {
                return Err(Error::Refused(Refusal::UnknownActor(actor.to_owned())));
            }
            if !subject.is_active() {
                return Err(Error::Refused(Refusal::BlockedActor(actor.to_owned())));
            }
        }
        Ok(self.store.get_tenant(tenant_id).await?)
    }

    pub async fn list_tenants(
        &self,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<TenantInfo>, String)> {
        let req = page_request(page_size, page_token)?;
        let page = self.store.list_tenants(&req).await?;
        let next =
            validate::next_page_token(page.items.last().map(|t| t.tenant_id.as_str()), page.more);
        Ok((page.items, next))
    }

    // ---- Users ----

    pub async fn upsert_user(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        user_id: &str,
        display_name: &str,
        email: &str,
    ) -> Result<Committed<UserInfo>> {
        validate::id("user_id", user_id)?;
        validate::text("display_name", display_name)?;
        validate::text("email", email)?;
        let caller = Self::writer(tenant_id, call.actor)?;
        // Who an existing user is (an email is how accounts are recovered) changes only by an
        // actor that could give the user everything it holds.
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::Profile {
                user: user_id.to_owned(),
            },
        );
        let done = self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::UpsertUser {
                    user_id,
                    display_name,
                    email,
                },
            )
            .await?
            .user()?;
        Ok(done.map(|u| self.user_view(&caller, u)))
    }

    /// A user, its roles derived from the same snapshot. Admin reads come from the source of
    /// truth, so every consistency is met; a token from the future is refused as for checks.
    pub async fn get_user(
        &self,
        tenant_id: &str,
        actor: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<UserInfo> {
        validate::id("user_id", user_id)?;
        let caller = self.caller(tenant_id, actor, AdminOp::ViewUsers).await?;
        self.fresh_enough(tenant_id, consistency).await?;
        let user = self.store.get_user(tenant_id, user_id).await?;
        Ok(self.user_view(&caller, user))
    }

    pub async fn list_users(
        &self,
        tenant_id: &str,
        actor: &str,
        group_key: &str,
        page_size: i32,
        page_token: &str,
        consistency: Consistency,
    ) -> Result<(Vec<UserInfo>, String)> {
        let caller = self.caller(tenant_id, actor, AdminOp::ViewUsers).await?;
        self.fresh_enough(tenant_id, consistency).await?;
        let group = if group_key.is_empty() {
            None
        } else {
            validate::group_key("group_key", group_key)?;
            if self.hidden_from(&caller, group_key) {
                return Err(Self::no_group(group_key));
            }
            if let GroupRef::Custom(k) = self.group_ref(group_key) {
                self.store.get_group(tenant_id, k).await?;
            }
            Some(group_key)
        };
        let req = page_request(page_size, page_token)?;
        let page = self.store.list_users(tenant_id, group, &req).await?;
        let next =
            validate::next_page_token(page.items.last().map(|u| u.user_id.as_str()), page.more);
        Ok((
            page.items
                .into_iter()
                .map(|u| self.user_view(&caller, u))
                .collect(),
            next,
        ))
    }

    pub async fn set_user_status(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        user_id: &str,
        status: Option<UserStatus>,
    ) -> Result<Committed<UserInfo>> {
        validate::id("user_id", user_id)?;
        let status = status
            .ok_or_else(|| Error::Invalid("status is required: ACTIVE or BLOCKED".to_owned()))?;
        let caller = Self::writer(tenant_id, call.actor)?;
        // Blocking takes everything away and unblocking gives it back: either way an actor
        // must hold everything the user holds.
        let effect = match status {
            UserStatus::Blocked => Effect::TakeFrom {
                users: vec![user_id.to_owned()],
            },
            UserStatus::Active => Effect::Unblock {
                user: user_id.to_owned(),
            },
        };
        let rule = Rule::new(AdminOp::BlockUsers, effect);
        let done = self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::SetUserStatus { user_id, status },
            )
            .await?
            .user()?;
        Ok(done.map(|u| self.user_view(&caller, u)))
    }

    // ---- Groups ----

    fn system_view(&self, g: &authz_core::catalog::SystemGroup, member_count: u64) -> GroupView {
        GroupView {
            def: GroupDef {
                key: g.key.clone(),
                name: g.name.clone(),
                description: g.description.clone(),
                permissions: g.grants.permissions.clone(),
                scoped: Vec::new(),
            },
            system: true,
            internal: g.internal,
            version: 0,
            member_count,
        }
    }

    /// A group as the caller may see it: actors see no internal permissions or scoped grants.
    fn group_for(&self, caller: &Caller, mut view: GroupView) -> GroupView {
        if caller.is_actor() {
            let internal = self.catalog.internal_permissions();
            view.def.permissions.difference_with(internal);
            view.def.scoped.retain(|g| !internal.contains(g.permission));
        }
        view
    }

    fn custom_view(info: GroupInfo) -> GroupView {
        GroupView {
            def: info.def,
            system: false,
            internal: false,
            version: info.version,
            member_count: info.member_count,
        }
    }

    fn scoped_grants(
        &self,
        caller: &Caller,
        field: &str,
        grants: &[(String, ResourceInput)],
    ) -> Result<Vec<ScopedGrant>> {
        validate::list_len(field, grants.len())?;
        let mut out: Vec<ScopedGrant> = grants
            .iter()
            .map(|(p, r)| {
                Ok(ScopedGrant {
                    permission: self.visible_permission(
                        caller,
                        &format!("{field}.permission"),
                        p,
                    )?,
                    resource: self.resource(&format!("{field}.resource"), r)?,
                })
            })
            .collect::<Result<_>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn read_only(&self, key: &str) -> Result<()> {
        if self.catalog.group(key).is_some() {
            return Err(Error::Precondition(format!(
                "group `{key}` is a system group from the catalog and can't be changed or deleted; duplicate it into a custom group instead"
            )));
        }
        Ok(())
    }

    fn new_group_key(&self, field: &str, key: &str) -> Result<()> {
        validate::group_key(field, key)?;
        if self.catalog.group(key).is_some() {
            return Err(Error::AlreadyExists(format!(
                "group `{key}` is a system group in every tenant; choose another key"
            )));
        }
        Ok(())
    }

    fn group_name(field: &str, name: &str) -> Result<()> {
        if name.trim().is_empty() {
            return Err(Error::Invalid(format!("{field} is required")));
        }
        validate::text(field, name)
    }

    pub async fn create_group(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        group: &GroupInput,
    ) -> Result<Committed<GroupView>> {
        self.new_group_key("group.key", &group.key)?;
        Self::group_name("group.name", &group.name)?;
        validate::text("group.description", &group.description)?;
        let caller = Self::writer(tenant_id, call.actor)?;
        let def = GroupDef {
            key: group.key.clone(),
            name: group.name.clone(),
            description: group.description.clone(),
            permissions: self.visible_permissions(
                &caller,
                "group.permissions",
                &group.permissions,
            )?,
            scoped: self.scoped_grants(&caller, "group.scoped_grants", &group.scoped_grants)?,
        };
        let rule = Rule::new(
            AdminOp::EditGroups,
            Effect::NewGroup {
                permissions: def.permissions.clone(),
                scoped: def.scoped.clone(),
                members_of: None,
            },
        );
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::CreateGroup { def },
            )
            .await?
            .group()?
            .map(|info| self.group_for(&caller, Self::custom_view(info))))
    }

    pub async fn get_group(&self, tenant_id: &str, actor: &str, key: &str) -> Result<GroupView> {
        validate::group_key("group_key", key)?;
        let caller = self.caller(tenant_id, actor, AdminOp::ViewGroups).await?;
        if self.hidden_from(&caller, key) {
            return Err(Self::no_group(key));
        }
        let view = match self.catalog.group(key) {
            Some(g) => {
                let members = self.store.member_count(tenant_id, key).await?;
                self.system_view(g, members)
            }
            None => Self::custom_view(self.store.get_group(tenant_id, key).await?),
        };
        Ok(self.group_for(&caller, view))
    }

    /// System and custom groups together, sorted by key.
    pub async fn list_groups(
        &self,
        tenant_id: &str,
        actor: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<GroupView>, String)> {
        let caller = self.caller(tenant_id, actor, AdminOp::ViewGroups).await?;
        let req = page_request(page_size, page_token)?;
        let custom = self.store.list_groups(tenant_id, &req).await?;
        let mut system: Vec<&authz_core::catalog::SystemGroup> = self
            .catalog
            .groups()
            .iter()
            .filter(|g| !self.hidden_from(&caller, &g.key))
            .filter(|g| req.after.as_deref().is_none_or(|a| g.key.as_str() > a))
            .collect();
        system.sort_by(|a, b| a.key.cmp(&b.key));
        let mut merged: Vec<GroupView> = Vec::with_capacity(req.size + 1);
        for g in system {
            let members = self.store.member_count(tenant_id, &g.key).await?;
            merged.push(self.system_view(g, members));
        }
        merged.extend(custom.items.into_iter().map(Self::custom_view));
        merged.sort_by(|a, b| a.def.key.cmp(&b.def.key));
        // Custom groups after the page's last custom one exist when the store said so; system
        // groups past the cut exist when the merge is longer than the page.
        let more = custom.more || merged.len() > req.size;
        merged.truncate(req.size);
        let next = validate::next_page_token(merged.last().map(|g| g.def.key.as_str()), more);
        Ok((
            merged
                .into_iter()
                .map(|g| self.group_for(&caller, g))
                .collect(),
            next,
        ))
    }

    pub async fn update_group(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        key: &str,
        group: &GroupInput,
        mask: &[String],
        expected_version: Option<u64>,
    ) -> Result<Committed<GroupView>> {
        validate::group_key("group_key", key)?;
        if self.hidden_from(&Caller::actor_marker(call.actor), key) {
            return Err(Self::no_group(key));
        }
        self.read_only(key)?;
        if mask.is_empty() {
            return Err(Error::Invalid(
                "update_mask is required: list the fields to change (name, description, permissions, scoped_grants) or \"*\"".to_owned(),
            ));
        }
        let caller = Self::writer(tenant_id, call.actor)?;
        let mut patch = GroupPatch::default();
        for path in mask {
            let all = path == "*";
            match path.as_str() {
                "*" | "name" | "description" | "permissions" | "scoped_grants" => {}
                "key" => {
                    return Err(Error::Invalid(
                        "update_mask: a group's key can't be changed; duplicate the group under a new key instead".to_owned(),
                    ));
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "update_mask: unknown field `{other}`; use name, description, permissions, scoped_grants or \"*\""
                    )));
                }
            }
            if all || path == "name" {
                Self::group_name("group.name", &group.name)?;
                patch.name = Some(group.name.clone());
            }
            if all || path == "description" {
                validate::text("group.description", &group.description)?;
                patch.description = Some(group.description.clone());
            }
            if all || path == "permissions" {
                patch.permissions = Some(self.visible_permissions(
                    &caller,
                    "group.permissions",
                    &group.permissions,
                )?);
            }
            if all || path == "scoped_grants" {
                patch.scoped = Some(self.scoped_grants(
                    &caller,
                    "group.scoped_grants",
                    &group.scoped_grants,
                )?);
            }
        }
        // An actor may only put into the group what it holds: the store checks what the change
        // adds against the group as it is inside the write.
        let rule = Rule::new(
            AdminOp::EditGroups,
            Effect::EditGroup {
                group: key.to_owned(),
                permissions: patch.permissions.clone(),
                scoped: patch.scoped.clone(),
            },
        );
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::UpdateGroup {
                    key,
                    patch,
                    expected_version,
                },
            )
            .await?
            .group()?
            .map(|info| self.group_for(&caller, Self::custom_view(info))))
    }

    pub async fn delete_group(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<Committed<()>> {
        validate::group_key("group_key", key)?;
        if self.hidden_from(&Caller::actor_marker(call.actor), key) {
            return Err(Self::no_group(key));
        }
        self.read_only(key)?;
        let caller = Self::writer(tenant_id, call.actor)?;
        let rule = Rule::new(AdminOp::EditGroups, Effect::Nothing);
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::DeleteGroup {
                    key,
                    expected_version,
                },
            )
            .await?
            .nothing())
    }

    pub async fn duplicate_group(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        d: &DuplicateInput,
    ) -> Result<Committed<GroupView>> {
        validate::group_key("source_group_key", &d.source_group_key)?;
        self.new_group_key("new_key", &d.new_key)?;
        if !d.new_name.is_empty() {
            Self::group_name("new_name", &d.new_name)?;
        }
        let caller = Self::writer(tenant_id, call.actor)?;
        if self.hidden_from(&caller, &d.source_group_key) {
            return Err(Self::no_group(&d.source_group_key));
        }
        // An actor copies what it can see of the source: never its internal permissions.
        let source = self.group_for(
            &caller,
            self.get_group(tenant_id, "", &d.source_group_key).await?,
        );
        let def = GroupDef {
            key: d.new_key.clone(),
            name: if d.new_name.is_empty() {
                format!("{} (copy)", source.def.name)
            } else {
                d.new_name.clone()
            },
            description: source.def.description.clone(),
            permissions: if d.copy_permissions {
                source.def.permissions.clone()
            } else {
                PermSet::new()
            },
            scoped: if d.copy_scoped_grants {
                source.def.scoped.clone()
            } else {
                Vec::new()
            },
        };
        // Copying members assigns them the new group, so the actor must hold what it gives,
        // within its reach of each member, and may edit users.
        let members_of = d.copy_members.then_some(d.source_group_key.as_str());
        let mut rule = Rule::new(
            AdminOp::EditGroups,
            Effect::NewGroup {
                permissions: def.permissions.clone(),
                scoped: def.scoped.clone(),
                members_of: members_of.map(str::to_owned),
            },
        );
        if d.copy_members {
            rule.ops.push(AdminOp::EditUsers);
        }
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::DuplicateGroup { def, members_of },
            )
            .await?
            .group()?
            .map(|info| self.group_for(&caller, Self::custom_view(info))))
    }

    pub async fn add_members(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        key: &str,
        user_ids: &[String],
    ) -> Result<Committed<()>> {
        validate::group_key("group_key", key)?;
        validate::ids("user_ids", user_ids)?;
        let caller = Self::writer(tenant_id, call.actor)?;
        if self.hidden_from(&caller, key) {
            return Err(Self::no_group(key));
        }
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::Assign {
                group: key.to_owned(),
                users: user_ids.to_vec(),
            },
        );
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::AddMembers {
                    group: self.group_ref(key),
                    user_ids,
                },
            )
            .await?
            .nothing())
    }

    pub async fn remove_members(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        key: &str,
        user_ids: &[String],
    ) -> Result<Committed<()>> {
        validate::group_key("group_key", key)?;
        validate::ids("user_ids", user_ids)?;
        let caller = Self::writer(tenant_id, call.actor)?;
        if self.hidden_from(&caller, key) {
            return Err(Self::no_group(key));
        }
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::TakeFrom {
                users: user_ids.to_vec(),
            },
        );
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::RemoveMembers {
                    group: self.group_ref(key),
                    user_ids,
                },
            )
            .await?
            .nothing())
    }

    // ---- Grants and restrictions ----

    fn grants(
        &self,
        caller: &Caller,
        permissions: &[String],
        resource: Option<&ResourceInput>,
    ) -> Result<Grants> {
        if permissions.is_empty() {
            return Err(Error::Invalid(
                "permissions must name at least one permission".to_owned(),
            ));
        }
        let set = self.visible_permissions(caller, "permissions", permissions)?;
        Ok(match resource {
            None => Grants::Unscoped(set),
            Some(r) => {
                let resource = self.resource("resource", r)?;
                Grants::Scoped(
                    set.iter()
                        .map(|permission| ScopedGrant {
                            permission,
                            resource: resource.clone(),
                        })
                        .collect(),
                )
            }
        })
    }

    pub async fn grant(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        user_id: &str,
        permissions: &[String],
        resource: Option<&ResourceInput>,
    ) -> Result<Committed<()>> {
        validate::id("user_id", user_id)?;
        let caller = Self::writer(tenant_id, call.actor)?;
        let grants = self.grants(&caller, permissions, resource)?;
        let (permissions, scoped) = match &grants {
            Grants::Unscoped(set) => (set.clone(), Vec::new()),
            Grants::Scoped(list) => (PermSet::new(), list.clone()),
        };
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::Give {
                user: user_id.to_owned(),
                permissions,
                scoped,
            },
        );
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::Grant {
                    user_id,
                    grants: &grants,
                },
            )
            .await?
            .nothing())
    }

    pub async fn revoke(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        user_id: &str,
        permissions: &[String],
        resource: Option<&ResourceInput>,
    ) -> Result<Committed<()>> {
        validate::id("user_id", user_id)?;
        let caller = Self::writer(tenant_id, call.actor)?;
        let grants = self.grants(&caller, permissions, resource)?;
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::TakeFrom {
                users: vec![user_id.to_owned()],
            },
        );
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::Revoke {
                    user_id,
                    grants: &grants,
                },
            )
            .await?
            .nothing())
    }

    pub async fn set_restrictions(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        user_id: &str,
        resource_type: &str,
        resource_ids: &[String],
        clear: bool,
    ) -> Result<Committed<()>> {
        validate::id("user_id", user_id)?;
        let t = self.resource_type("resource_type", resource_type)?;
        let ids = match (clear, resource_ids.is_empty()) {
            (true, true) => None,
            (true, false) => {
                return Err(Error::Invalid(
                    "clear is set and resource_ids is not empty; send one or the other".to_owned(),
                ));
            }
            (false, true) => {
                return Err(Error::Invalid(
                    "resource_ids is empty; list the resources the user is limited to, or set clear to lift the restriction".to_owned(),
                ));
            }
            (false, false) => {
                validate::ids("resource_ids", resource_ids)?;
                Some(resource_ids.iter().cloned().collect::<BTreeSet<_>>())
            }
        };
        let caller = Self::writer(tenant_id, call.actor)?;
        // Limiting takes access away and lifting gives it back: an actor must hold everything
        // the user holds, and an actor limited on the type limits only within its own list.
        let rule = Rule::new(
            AdminOp::RestrictUsers,
            Effect::Restrict {
                user: user_id.to_owned(),
                resource_type: t,
                ids: ids.clone(),
            },
        );
        Ok(self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::SetRestriction {
                    user_id,
                    resource_type: t,
                    ids,
                },
            )
            .await?
            .nothing())
    }

    // ---- Import ----

    /// Validates every row, then applies them all in one write or none; the store decides the
    /// admin rules per row inside that write. A refused import lists each row's problems.
    pub async fn import_users(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        rows: &[ImportInput],
    ) -> Result<Committed<usize>> {
        if rows.is_empty() {
            return Err(Error::Invalid(
                "rows is empty; send at least one user".to_owned(),
            ));
        }
        validate::list_len("rows", rows.len())?;
        let caller = Self::writer(tenant_id, call.actor)?;
        let mut groups: HashMap<String, std::result::Result<Arc<GroupGrants>, String>> =
            HashMap::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut problems: Vec<String> = Vec::new();
        let mut concealed = false;
        let mut valid: Vec<ImportRow> = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let mut errors: Vec<String> = Vec::new();
            let mut note = |e: Error, errors: &mut Vec<String>| {
                concealed |= matches!(e, Error::Concealed(_));
                errors.push(e.to_string());
            };
            if let Err(e) = validate::id("user_id", &row.user_id) {
                note(e, &mut errors);
            } else if let Some(first) = seen.insert(&row.user_id, i + 1) {
                note(
                    Error::Invalid(format!("user `{}` is also in row {first}", row.user_id)),
                    &mut errors,
                );
            }
            for (field, text) in [("display_name", &row.display_name), ("email", &row.email)] {
                if let Err(e) = validate::text(field, text) {
                    note(e, &mut errors);
                }
            }
            for key in &row.group_keys {
                if let Err(e) = validate::group_key("group_keys", key) {
                    note(e, &mut errors);
                    continue;
                }
                if !groups.contains_key(key) {
                    let found = if self.hidden_from(&caller, key) {
                        Err(format!("group `{key}` does not exist in this tenant"))
                    } else {
                        self.group_grants(tenant_id, key)
                            .await
                            .map_err(|e| e.to_string())
                    };
                    groups.insert(key.clone(), found);
                }
                if let Some(Err(msg)) = groups.get(key) {
                    let missing = Error::Invalid(msg.clone());
                    if self.hidden_from(&caller, key) {
                        note(Error::Concealed(Box::new(missing)), &mut errors);
                    } else {
                        note(missing, &mut errors);
                    }
                }
            }
            let direct = match self.visible_permissions(&caller, "permissions", &row.permissions) {
                Ok(set) => set,
                Err(e) => {
                    note(e, &mut errors);
                    PermSet::new()
                }
            };
            if errors.is_empty() {
                valid.push(ImportRow {
                    user_id: row.user_id.clone(),
                    display_name: row.display_name.clone(),
                    email: row.email.clone(),
                    groups: row.group_keys.clone(),
                    direct,
                });
            } else {
                problems.push(format!(
                    "row {} (`{}`): {}",
                    i + 1,
                    row.user_id,
                    errors.join("; ")
                ));
            }
        }
        if !problems.is_empty() {
            const SHOWN: usize = 20;
            let more = problems.len().saturating_sub(SHOWN);
            let mut msg = format!(
                "import refused, nothing applied: {} of {} rows have problems: {}",
                problems.len(),
                rows.len(),
                problems[..problems.len().min(SHOWN)].join(" | ")
            );
            if more > 0 {
                msg.push_str(&format!(" | and {more} more"));
            }
            // Naming an internal group or permission reads as "does not exist", and counts as
            // a refused attempt.
            let refused = Error::Invalid(msg);
            return Err(if concealed {
                Error::Concealed(Box::new(refused))
            } else {
                refused
            });
        }
        // Delegation and reach are decided per row by the store, inside the write.
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::Import {
                rows: valid
                    .iter()
                    .map(|r| ImportGrant {
                        user_id: r.user_id.clone(),
                        groups: r.groups.clone(),
                        direct: r.direct.clone(),
                        profile: !r.display_name.is_empty() || !r.email.is_empty(),
                    })
                    .collect(),
            },
        );
        let done = self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::ImportUsers { rows: &valid },
            )
            .await?;
        Ok(done.map(|_| valid.len()))
    }

    // ---- Audit ----

    /// Audit events, newest first, with the next page token.
    pub async fn list_audit(
        &self,
        tenant_id: &str,
        reader: &str,
        filter: AuditFilter,
    ) -> Result<(Vec<Change>, String)> {
        let caller = self.caller(tenant_id, reader, AdminOp::ViewAudit).await?;
        if let Some(a) = &filter.actor {
            validate::id("filter_actor_user_id", a)?;
        }
        if let Some(t) = &filter.target {
            validate::id("filter_target", t)?;
            if !["group:", "user:", "users:"]
                .iter()
                .any(|p| t.starts_with(p))
            {
                return Err(Error::Invalid(format!(
                    "filter_target {t:?} names no target: use group:<key> or user:<id>"
                )));
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since > until {
                return Err(Error::Invalid(
                    "since is after until: no event can match; swap them".to_owned(),
                ));
            }
        }
        let size = validate::page_size(filter.page_size)?;
        let before_revision = match validate::page_token(&filter.page_token)? {
            None => None,
            Some(t) => Some(validate::revision_token(&t).ok_or_else(|| {
                Error::Invalid("page_token is not one this server issued; pass next_page_token from the previous response".to_owned())
            })?),
        };
        let query = crate::store::AuditQuery {
            actor: filter.actor,
            target: filter.target,
            since: filter.since,
            until: filter.until,
            before_revision,
            limit: size + 1,
        };
        let mut events = self.store.audit(tenant_id, &query).await?;
        let more = events.len() > size;
        events.truncate(size);
        let next = validate::next_page_token(
            events.last().map(|e| e.revision.to_string()).as_deref(),
            more,
        );
        if caller.is_actor() {
            events.retain(|e| {
                !e.target
                    .strip_prefix("group:")
                    .is_some_and(|g| self.hidden_from(&caller, g))
            });
            for e in &mut events {
                self.scrub(&mut e.before);
                self.scrub(&mut e.after);
            }
        }
        Ok((events, next))
    }

    /// Removes internal groups and permissions from an audit snapshot.
    fn scrub(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Array(items) => items.retain(|i| {
                i.as_str().is_none_or(|s| {
                    let key = s.split('@').next().unwrap_or(s);
                    let internal_perm = self
                        .catalog
                        .resolve(key)
                        .is_some_and(|p| self.catalog.permission(p).internal);
                    let internal_group = self.catalog.group(s).is_some_and(|g| g.internal);
                    !internal_perm && !internal_group
                })
            }),
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !self.catalog.group(k).is_some_and(|g| g.internal));
                for value in map.values_mut() {
                    self.scrub(value);
                }
            }
            _ => {}
        }
    }
}

/// Who makes an admin call.
enum Caller {
    Operator,
    Actor { id: String, subject: Subject },
}

impl Caller {
    fn is_actor(&self) -> bool {
        matches!(self, Caller::Actor { .. })
    }

    /// What the store records about the caller, the rule it decides for an actor inside the
    /// write, and whether to commit.
    fn ctx(&self, mode: WriteMode, rule: Rule) -> WriteCtx {
        WriteCtx {
            actor: match self {
                Caller::Operator => None,
                Caller::Actor { id, .. } => Some(id.clone()),
            },
            rule,
            dry_run: mode == WriteMode::DryRun,
        }
    }

    /// A caller that only says whether an actor is named, for checks that need no subject.
    fn actor_marker(actor: &str) -> Caller {
        if actor.is_empty() {
            Caller::Operator
        } else {
            Caller::Actor {
                id: actor.to_owned(),
                subject: Subject::default(),
            }
        }
    }

    /// Applies a rule to an actor; operators pass.
    fn check(&self, rule: impl FnOnce(&Actor<'_>) -> Result<(), Refusal>) -> Result<()> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Actor { id, subject } => rule(&Actor {
                user_id: id,
                subject,
            })
            .map_err(Error::Refused),
        }
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

/// Who makes an admin mutation, and how.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdminCall<'a> {
    /// The acting user; empty for an operator.
    pub actor: &'a str,
    pub mode: WriteMode,
}

/// Filters of ListAuditEvents.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub since: Option<std::time::SystemTime>,
    pub until: Option<std::time::SystemTime>,
    pub page_size: i32,
    pub page_token: String,
}

/// What DuplicateGroup copies.
#[derive(Clone, Debug, Default)]
pub struct DuplicateInput {
    pub source_group_key: String,
    pub new_key: String,
    pub new_name: String,
    pub copy_permissions: bool,
    pub copy_scoped_grants: bool,
    pub copy_members: bool,
}

fn page_request(page_size: i32, page_token: &str) -> Result<PageRequest> {
    Ok(PageRequest {
        size: validate::page_size(page_size)?,
        after: validate::page_token(page_token)?,
    })
}
