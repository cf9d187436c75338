//! The embedded in-memory store: the zero-configuration default, with the same semantics as
//! the Postgres store. Each tenant sits behind its own lock, so a write to one tenant never
//! blocks checks in another, and a tenant's writes are serialised like a transaction.

use super::{Access, Committed, Op, PREVIEW_LIMIT, Write, Written};
use super::{At, ImportRow};
use super::{
    AuditQuery, Change, CommitEvent, CommitSignal, Consistency, Grants, GroupDef, GroupInfo,
    GroupPatch, GroupRef, Page, PageRequest, Result, Revision, Store, StoreError, TenantInfo,
    Touched, UserInfo, WriteCtx, WriteOps,
};
use async_trait::async_trait;
use authz_core::Catalog;
use authz_core::admin::{Facts, Rule};
use authz_core::model::{
    GroupGrants, ResourceTypeId, Restriction, Subject, UserGrants, UserStatus,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

/// How many changes per tenant the memory store keeps for `Watch`.
pub const CHANGE_LOG_LEN: usize = 10_000;

pub struct MemoryStore {
    catalog: Arc<Catalog>,
    tenants: RwLock<BTreeMap<String, Arc<RwLock<Tenant>>>>,
    commits: tokio::sync::broadcast::Sender<CommitEvent>,
    door: WriteDoor,
}

/// Where writes can be held before they take their tenant's lock, and released in the order
/// they arrived: what another writer holding the lock looks like, made deterministic. Closed
/// only by [`MemoryStore::hold_writes`]; an open door costs one atomic load per write.
#[derive(Default)]
struct WriteDoor {
    closed: AtomicBool,
    queue: Arc<tokio::sync::Mutex<()>>,
    waiting: AtomicUsize,
}

/// Writes wait while this lives; dropping it lets them through one at a time, oldest first.
pub struct HeldWrites<'a> {
    door: &'a WriteDoor,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for HeldWrites<'_> {
    fn drop(&mut self) {
        self.door.closed.store(false, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Tenant {
    display_name: String,
    created_at: SystemTime,
    revision: Revision,
    users: BTreeMap<String, UserRow>,
    groups: BTreeMap<String, GroupRow>,
    /// Group key (system or custom) → member ids.
    members: BTreeMap<String, BTreeSet<String>>,
    /// The latest changes, oldest first.
    changes: VecDeque<Change>,
}

#[derive(Clone, Default)]
struct UserRow {
    display_name: String,
    email: String,
    /// Shared with checks; replaced, never mutated in place, on every write.
    grants: Arc<UserGrants>,
}

#[derive(Clone)]
struct GroupRow {
    name: String,
    description: String,
    version: u64,
    grants: Arc<GroupGrants>,
}

/// Lock poisoning only follows a panic in another request; the data itself stays consistent
/// because every write builds its new values before it stores them.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            tenants: RwLock::new(BTreeMap::new()),
            commits: tokio::sync::broadcast::channel(1024).0,
            door: WriteDoor::default(),
        }
    }

    /// Holds every write at the door (before its tenant's lock, so before it reads anything)
    /// until the returned guard is dropped; then they run one at a time in arrival order.
    pub async fn hold_writes(&self) -> HeldWrites<'_> {
        let turn = self.door.queue.clone().lock_owned().await;
        self.door.closed.store(true, Ordering::SeqCst);
        HeldWrites {
            door: &self.door,
            _turn: turn,
        }
    }

    /// Writes waiting at a closed door.
    pub fn writes_waiting(&self) -> usize {
        self.door.waiting.load(Ordering::SeqCst)
    }

    /// A write's way in: straight through an open door, in line behind a closed one.
    async fn enter(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if !self.door.closed.load(Ordering::SeqCst) {
            return None;
        }
        self.door.waiting.fetch_add(1, Ordering::SeqCst);
        let turn = self.door.queue.clone().lock_owned().await;
        self.door.waiting.fetch_sub(1, Ordering::SeqCst);
        Some(turn)
    }

    fn tenant(&self, tenant_id: &str) -> Result<Arc<RwLock<Tenant>>> {
        read(&self.tenants)
            .get(tenant_id)
            .cloned()
            .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))
    }

    /// Runs `f` on the tenant under its write lock, like a transaction. `f` validates before it
    /// changes anything, so an error leaves the tenant as it was. On success the revision is
    /// bumped and the change logged with the before and after of what `touched` names (computed
    /// on the state before `f`), and the preview diffs every affected user. A dry run applies `f`
    /// to a copy and keeps nothing.
    async fn write_tenant<T>(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        op: Op,
        plan: impl FnOnce(&Tenant, &mut Touched),
        f: impl FnOnce(&mut Tenant) -> Result<T>,
    ) -> Result<Committed<T>> {
        let _turn = self.enter().await;
        let tenant = self.tenant(tenant_id)?;
        let committed = {
            let mut t = write(&tenant);
            // The admin rule decides on the state this write changes, under the same lock.
            if let Some(actor) = &ctx.actor {
                ctx.authorize(&self.catalog, &t.facts(&self.catalog, actor, &ctx.rule))?;
            }
            let Op {
                name,
                target,
                mut touched,
            } = op;
            plan(&t, &mut touched);
            let (affected, truncated) = t.affected(&touched);
            let effective_before = t.effective(&self.catalog, &affected);
            if ctx.dry_run {
                let mut copy = t.clone();
                let value = f(&mut copy)?;
                let effective_after = copy.effective(&self.catalog, &affected);
                return Ok(Committed {
                    value,
                    revision: t.revision,
                    preview: super::preview(
                        &self.catalog,
                        &effective_before,
                        &effective_after,
                        truncated,
                    ),
                    touched,
                });
            }
            let before = t.snapshot(&self.catalog, &touched);
            let value = f(&mut t)?;
            let after = t.snapshot(&self.catalog, &touched);
            let effective_after = t.effective(&self.catalog, &affected);
            t.revision += 1;
            let revision = t.revision;
            if t.changes.len() == CHANGE_LOG_LEN {
                t.changes.pop_front();
            }
            t.changes.push_back(Change {
                tenant_id: tenant_id.to_owned(),
                revision,
                committed_at: SystemTime::now(),
                operation: name.to_owned(),
                touched: touched.clone(),
                actor: ctx.actor.clone(),
                target,
                before,
                after,
            });
            Committed {
                value,
                revision,
                preview: super::preview(
                    &self.catalog,
                    &effective_before,
                    &effective_after,
                    truncated,
                ),
                touched,
            }
        };
        // Nobody listening is fine.
        let _ = self.commits.send(CommitEvent::Committed(
            tenant_id.to_owned(),
            committed.revision,
        ));
        Ok(committed)
    }
}

impl Tenant {
    /// A user's subject: its grants and its groups' (`None`: no such user).
    fn subject(&self, catalog: &Catalog, user_id: &str) -> Option<Subject> {
        let row = self.users.get(user_id)?;
        let groups = row
            .grants
            .groups
            .iter()
            .filter_map(|k| match catalog.group(k) {
                Some(g) => Some(g.grants.clone()),
                None => self.groups.get(k).map(|g| g.grants.clone()),
            })
            .collect();
        Some(Subject {
            user: Some(row.grants.clone()),
            groups,
        })
    }

    /// What an admin rule decides on, as the tenant is now.
    fn facts(&self, catalog: &Catalog, actor: &str, rule: &Rule) -> Facts {
        let actor = self.subject(catalog, actor).unwrap_or_default();
        let groups =
            |keys: &BTreeSet<String>| -> std::collections::HashMap<String, Arc<GroupGrants>> {
                keys.iter()
                    .filter_map(|k| self.groups.get(k).map(|g| (k.clone(), g.grants.clone())))
                    .collect()
            };
        let needs = rule.needs(catalog, &actor, &groups(&rule.groups()));
        let mut ids = needs.users;
        for g in &needs.members_of {
            if let Some(m) = self.members.get(g) {
                ids.extend(m.iter().cloned());
            }
        }
        Facts {
            actor,
            users: ids
                .into_iter()
                .filter_map(|id| self.subject(catalog, &id).map(|s| (id, s)))
                .collect(),
            groups: groups(&needs.groups),
        }
    }

    /// The users whose effective permissions a write touching `touched` can change: the
    /// touched users and the members of touched groups, at most `PREVIEW_LIMIT`.
    fn affected(&self, touched: &Touched) -> (Vec<String>, bool) {
        let mut ids: BTreeSet<String> = touched.users.iter().cloned().collect();
        for g in &touched.groups {
            if let Some(m) = self.members.get(g) {
                ids.extend(m.iter().cloned());
            }
        }
        let truncated = ids.len() > PREVIEW_LIMIT;
        (ids.into_iter().take(PREVIEW_LIMIT).collect(), truncated)
    }

    /// Each user's access (empty when blocked or unknown).
    fn effective(&self, catalog: &Catalog, users: &[String]) -> BTreeMap<String, Access> {
        users
            .iter()
            .map(|u| {
                let access = self
                    .subject(catalog, u)
                    .map(|s| Access::of(&s))
                    .unwrap_or_default();
                (u.clone(), access)
            })
            .collect()
    }

    fn snapshot(&self, catalog: &Catalog, touched: &Touched) -> serde_json::Value {
        let users: Vec<(String, Option<UserInfo>)> = if touched.all_users {
            Vec::new()
        } else {
            touched
                .users
                .iter()
                .map(|u| {
                    (
                        u.clone(),
                        self.users.get(u).map(|row| self.user_info(u, row)),
                    )
                })
                .collect()
        };
        let groups: Vec<(String, Option<GroupInfo>)> = touched
            .groups
            .iter()
            .map(|g| {
                (
                    g.clone(),
                    self.groups.get(g).map(|row| self.group_info(g, row)),
                )
            })
            .collect();
        super::snapshot_json(catalog, &users, &groups)
    }

    fn user_info(&self, user_id: &str, row: &UserRow) -> UserInfo {
        let g = &row.grants;
        UserInfo {
            user_id: user_id.to_owned(),
            display_name: row.display_name.clone(),
            email: row.email.clone(),
            status: g.status,
            groups: g.groups.clone(),
            direct: g.direct.clone(),
            scoped: g.scoped.clone(),
            restrictions: g.restrictions.clone(),
            effective: authz_core::PermSet::new(),
        }
    }

    /// A user as admin reads show it: with its effective permissions, under the same lock.
    fn user_view(&self, catalog: &Catalog, user_id: &str, row: &UserRow) -> UserInfo {
        let mut info = self.user_info(user_id, row);
        if let Some(subject) = self.subject(catalog, user_id) {
            info.effective = subject.effective();
        }
        info
    }

    fn group_info(&self, key: &str, row: &GroupRow) -> GroupInfo {
        GroupInfo {
            def: GroupDef {
                key: key.to_owned(),
                name: row.name.clone(),
                description: row.description.clone(),
                permissions: row.grants.permissions.clone(),
                scoped: row.grants.scoped.clone(),
            },
            version: row.version,
            member_count: self.members.get(key).map_or(0, |m| m.len() as u64),
        }
    }

    /// Adds a new custom group; `GroupExists` when the key is taken.
    fn insert_group(&mut self, def: GroupDef) -> Result<GroupInfo> {
        if self.groups.contains_key(&def.key) {
            return Err(StoreError::GroupExists(def.key));
        }
        let row = GroupRow {
            name: def.name,
            description: def.description,
            version: 1,
            grants: Arc::new(GroupGrants {
                key: def.key.clone(),
                permissions: def.permissions,
                scoped: def.scoped,
            }),
        };
        let info = self.group_info(&def.key, &row);
        self.groups.insert(def.key, row);
        Ok(info)
    }

    /// Makes a user (created when unknown) a member of a group.
    fn join(&mut self, user_id: &str, key: &str) {
        self.edit_user(user_id, |g| {
            if let Err(at) = g.groups.binary_search_by(|x| x.as_str().cmp(key)) {
                g.groups.insert(at, key.to_owned());
            }
        });
        self.members
            .entry(key.to_owned())
            .or_default()
            .insert(user_id.to_owned());
    }

    /// Changes a user's grants, creating the user when unknown.
    fn edit_user(&mut self, user_id: &str, f: impl FnOnce(&mut UserGrants)) {
        let row = self.users.entry(user_id.to_owned()).or_default();
        let mut grants = (*row.grants).clone();
        f(&mut grants);
        row.grants = Arc::new(grants);
    }

    fn check_group(&self, group: GroupRef<'_>) -> Result<()> {
        match group {
            GroupRef::System(_) => Ok(()),
            GroupRef::Custom(k) if self.groups.contains_key(k) => Ok(()),
            GroupRef::Custom(k) => Err(StoreError::GroupNotFound(k.to_owned())),
        }
    }
}

fn page<T, K: AsRef<str>>(items: impl Iterator<Item = (K, T)>, req: &PageRequest) -> Page<T> {
    let mut out: Vec<T> = items
        .filter(|(k, _)| req.after.as_deref().is_none_or(|a| k.as_ref() > a))
        .take(req.size + 1)
        .map(|(_, v)| v)
        .collect();
    let more = out.len() > req.size;
    out.truncate(req.size);
    Page { items: out, more }
}

#[async_trait]
impl WriteOps for MemoryStore {
    async fn upsert_user(
        &self,
        at: At<'_>,
        user_id: &str,
        display_name: &str,
        email: &str,
    ) -> Result<Committed<UserInfo>> {
        let At { tenant_id, ctx, op } = at;
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                let row = t.users.entry(user_id.to_owned()).or_default();
                row.display_name = display_name.to_owned();
                row.email = email.to_owned();
                let row = row.clone();
                Ok(t.user_info(user_id, &row))
            },
        )
        .await
    }

    async fn import_users(&self, at: At<'_>, rows: &[ImportRow]) -> Result<Committed<()>> {
        let At { tenant_id, ctx, op } = at;
        let catalog = self.catalog.clone();
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                for r in rows {
                    for g in &r.groups {
                        if catalog.group(g).is_none() && !t.groups.contains_key(g) {
                            return Err(StoreError::GroupNotFound(g.clone()));
                        }
                    }
                }
                for r in rows {
                    // An empty profile field leaves the stored one as it is.
                    let row = t.users.entry(r.user_id.clone()).or_default();
                    if !r.display_name.is_empty() {
                        row.display_name = r.display_name.clone();
                    }
                    if !r.email.is_empty() {
                        row.email = r.email.clone();
                    }
                    t.edit_user(&r.user_id, |g| g.direct.union_with(&r.direct));
                    for key in &r.groups {
                        t.join(&r.user_id, key);
                    }
                }
                Ok(())
            },
        )
        .await
    }

    async fn set_user_status(
        &self,
        at: At<'_>,
        user_id: &str,
        status: UserStatus,
    ) -> Result<Committed<UserInfo>> {
        let At { tenant_id, ctx, op } = at;
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                t.edit_user(user_id, |g| g.status = status);
                let row = t.users.get(user_id).cloned().unwrap_or_default();
                Ok(t.user_info(user_id, &row))
            },
        )
        .await
    }

    async fn create_group(&self, at: At<'_>, def: GroupDef) -> Result<Committed<GroupInfo>> {
        let At { tenant_id, ctx, op } = at;
        self.write_tenant(tenant_id, ctx, op, |_, _| {}, |t| t.insert_group(def))
            .await
    }

    async fn duplicate_group(
        &self,
        at: At<'_>,
        def: GroupDef,
        members_of: Option<&str>,
    ) -> Result<Committed<GroupInfo>> {
        let At { tenant_id, ctx, op } = at;
        let new_key = def.key.clone();
        let copied = |t: &Tenant| -> Vec<String> {
            members_of
                .and_then(|src| t.members.get(src))
                .map(|m| m.iter().cloned().collect())
                .unwrap_or_default()
        };
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |t, touched| touched.users = copied(t),
            |t| {
                let members = copied(t);
                let mut info = t.insert_group(def)?;
                for u in &members {
                    t.join(u, &new_key);
                }
                info.member_count = members.len() as u64;
                Ok(info)
            },
        )
        .await
    }

    async fn update_group(
        &self,
        at: At<'_>,
        key: &str,
        patch: GroupPatch,
        expected_version: Option<u64>,
    ) -> Result<Committed<GroupInfo>> {
        let At { tenant_id, ctx, op } = at;
        let catalog = self.catalog.clone();
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                let row = t
                    .groups
                    .get(key)
                    .ok_or_else(|| StoreError::GroupNotFound(key.to_owned()))?;
                if let Some(expected) = expected_version.filter(|e| *e != row.version) {
                    return Err(StoreError::VersionMismatch {
                        key: key.to_owned(),
                        expected,
                        actual: row.version,
                    });
                }
                let mut grants = (*row.grants).clone();
                let mut row = row.clone();
                if let Some(name) = patch.name {
                    row.name = name;
                }
                if let Some(description) = patch.description {
                    row.description = description;
                }
                // An actor cannot see internal permissions, so its edit keeps them as they are.
                let internal = catalog.internal_permissions();
                let keep = ctx.actor.is_some();
                if let Some(mut p) = patch.permissions {
                    if keep {
                        for kept in grants.permissions.iter().filter(|p| internal.contains(*p)) {
                            p.insert(kept);
                        }
                    }
                    grants.permissions = p;
                }
                if let Some(mut s) = patch.scoped {
                    if keep {
                        s.extend(
                            grants
                                .scoped
                                .iter()
                                .filter(|g| internal.contains(g.permission))
                                .cloned(),
                        );
                        s.sort();
                        s.dedup();
                    }
                    grants.scoped = s;
                }
                row.grants = Arc::new(grants);
                row.version += 1;
                let info = t.group_info(key, &row);
                t.groups.insert(key.to_owned(), row);
                Ok(info)
            },
        )
        .await
    }

    async fn delete_group(
        &self,
        at: At<'_>,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<Committed<()>> {
        let At { tenant_id, ctx, op } = at;
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                let row = t
                    .groups
                    .get(key)
                    .ok_or_else(|| StoreError::GroupNotFound(key.to_owned()))?;
                if let Some(expected) = expected_version.filter(|e| *e != row.version) {
                    return Err(StoreError::VersionMismatch {
                        key: key.to_owned(),
                        expected,
                        actual: row.version,
                    });
                }
                let members = t.members.get(key).map_or(0, |m| m.len() as u64);
                if members > 0 {
                    return Err(StoreError::GroupNotEmpty {
                        key: key.to_owned(),
                        members,
                    });
                }
                t.groups.remove(key);
                t.members.remove(key);
                Ok(())
            },
        )
        .await
    }

    async fn add_members(
        &self,
        at: At<'_>,
        group: GroupRef<'_>,
        user_ids: &[String],
    ) -> Result<Committed<()>> {
        let At { tenant_id, ctx, op } = at;
        let key = group.key();
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                t.check_group(group)?;
                for u in user_ids {
                    t.join(u, key);
                }
                Ok(())
            },
        )
        .await
    }

    async fn remove_members(
        &self,
        at: At<'_>,
        group: GroupRef<'_>,
        user_ids: &[String],
    ) -> Result<Committed<()>> {
        let At { tenant_id, ctx, op } = at;
        let key = group.key();
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                t.check_group(group)?;
                for u in user_ids {
                    if t.users.contains_key(u) {
                        t.edit_user(u, |g| g.groups.retain(|x| x != key));
                    }
                    if let Some(m) = t.members.get_mut(key) {
                        m.remove(u);
                    }
                }
                Ok(())
            },
        )
        .await
    }

    async fn grant(&self, at: At<'_>, user_id: &str, grants: &Grants) -> Result<Committed<()>> {
        let At { tenant_id, ctx, op } = at;
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                t.edit_user(user_id, |g| match grants {
                    Grants::Unscoped(set) => g.direct.union_with(set),
                    Grants::Scoped(list) => {
                        for s in list {
                            if !g.scoped.contains(s) {
                                g.scoped.push(s.clone());
                            }
                        }
                        g.scoped.sort();
                    }
                });
                Ok(())
            },
        )
        .await
    }

    async fn revoke(&self, at: At<'_>, user_id: &str, grants: &Grants) -> Result<Committed<()>> {
        let At { tenant_id, ctx, op } = at;
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                if !t.users.contains_key(user_id) {
                    return Err(StoreError::UserNotFound(user_id.to_owned()));
                }
                t.edit_user(user_id, |g| match grants {
                    Grants::Unscoped(set) => g.direct.difference_with(set),
                    Grants::Scoped(list) => g.scoped.retain(|s| !list.contains(s)),
                });
                Ok(())
            },
        )
        .await
    }

    async fn set_restriction(
        &self,
        at: At<'_>,
        user_id: &str,
        resource_type: ResourceTypeId,
        ids: Option<BTreeSet<String>>,
    ) -> Result<Committed<()>> {
        let At { tenant_id, ctx, op } = at;
        self.write_tenant(
            tenant_id,
            ctx,
            op,
            |_, _| {},
            |t| {
                t.edit_user(user_id, |g| {
                    g.restrictions.retain(|r| r.resource_type != resource_type);
                    if let Some(ids) = ids {
                        g.restrictions.push(Restriction { resource_type, ids });
                        g.restrictions.sort_by_key(|r| r.resource_type);
                    }
                });
                Ok(())
            },
        )
        .await
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn write(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        write: Write<'_>,
    ) -> Result<Committed<Written>> {
        super::dispatch(self, tenant_id, ctx, write).await
    }

    async fn create_tenant(&self, tenant_id: &str, display_name: &str) -> Result<TenantInfo> {
        let mut tenants = write(&self.tenants);
        if tenants.contains_key(tenant_id) {
            return Err(StoreError::TenantExists(tenant_id.to_owned()));
        }
        let created_at = SystemTime::now();
        tenants.insert(
            tenant_id.to_owned(),
            Arc::new(RwLock::new(Tenant {
                display_name: display_name.to_owned(),
                created_at,
                revision: 1,
                users: BTreeMap::new(),
                groups: BTreeMap::new(),
                members: BTreeMap::new(),
                changes: VecDeque::new(),
            })),
        );
        Ok(TenantInfo {
            tenant_id: tenant_id.to_owned(),
            display_name: display_name.to_owned(),
            created_at,
            revision: 1,
        })
    }

    async fn get_tenant(&self, tenant_id: &str) -> Result<TenantInfo> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        Ok(TenantInfo {
            tenant_id: tenant_id.to_owned(),
            display_name: t.display_name.clone(),
            created_at: t.created_at,
            revision: t.revision,
        })
    }

    async fn list_tenants(&self, req: &PageRequest) -> Result<Page<TenantInfo>> {
        let tenants = read(&self.tenants);
        Ok(page(
            tenants.iter().map(|(id, t)| {
                let t = read(t);
                (
                    id,
                    TenantInfo {
                        tenant_id: id.clone(),
                        display_name: t.display_name.clone(),
                        created_at: t.created_at,
                        revision: t.revision,
                    },
                )
            }),
            req,
        ))
    }

    async fn get_user(&self, tenant_id: &str, user_id: &str) -> Result<UserInfo> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        let row = t
            .users
            .get(user_id)
            .ok_or_else(|| StoreError::UserNotFound(user_id.to_owned()))?;
        Ok(t.user_view(&self.catalog, user_id, row))
    }

    async fn list_users(
        &self,
        tenant_id: &str,
        group: Option<&str>,
        req: &PageRequest,
    ) -> Result<Page<UserInfo>> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        Ok(match group {
            None => page(
                t.users
                    .iter()
                    .map(|(id, row)| (id, t.user_view(&self.catalog, id, row))),
                req,
            ),
            Some(g) => {
                let empty = BTreeSet::new();
                let members = t.members.get(g).unwrap_or(&empty);
                page(
                    members.iter().filter_map(|id| {
                        t.users
                            .get(id)
                            .map(|row| (id, t.user_view(&self.catalog, id, row)))
                    }),
                    req,
                )
            }
        })
    }

    async fn get_group(&self, tenant_id: &str, key: &str) -> Result<GroupInfo> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        let row = t
            .groups
            .get(key)
            .ok_or_else(|| StoreError::GroupNotFound(key.to_owned()))?;
        Ok(t.group_info(key, row))
    }

    async fn list_groups(&self, tenant_id: &str, req: &PageRequest) -> Result<Page<GroupInfo>> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        Ok(page(
            t.groups.iter().map(|(k, row)| (k, t.group_info(k, row))),
            req,
        ))
    }

    async fn member_count(&self, tenant_id: &str, group: &str) -> Result<u64> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        Ok(t.members.get(group).map_or(0, |m| m.len() as u64))
    }

    async fn subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        // This store is the source of truth: every read is fully consistent. A token newer than
        // the tenant's revision can only come from another tenant or be forged.
        if let Consistency::AtLeast(requested) = consistency {
            if requested > t.revision {
                return Err(StoreError::FutureRevision {
                    requested,
                    latest: t.revision,
                });
            }
        }
        Ok((
            t.subject(&self.catalog, user_id).unwrap_or_default(),
            t.revision,
        ))
    }

    async fn changes_since(
        &self,
        tenant_id: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Change>> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        if let Some(first) = t.changes.front() {
            // Revision 1 is the tenant's creation, never a change: from 0 nothing is missing
            // until the log has dropped something.
            if after.max(1) + 1 < first.revision {
                return Err(StoreError::ChangesTruncated {
                    requested: after,
                    oldest: first.revision,
                });
            }
        }
        Ok(t.changes
            .iter()
            .filter(|c| c.revision > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn audit(&self, tenant_id: &str, query: &AuditQuery) -> Result<Vec<Change>> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        Ok(t.changes
            .iter()
            .rev()
            .filter(|c| query.before_revision.is_none_or(|r| c.revision < r))
            .filter(|c| query.actor.is_none() || c.actor == query.actor)
            .filter(|c| query.target.as_ref().is_none_or(|x| &c.target == x))
            .filter(|c| query.since.is_none_or(|s| c.committed_at >= s))
            .filter(|c| query.until.is_none_or(|u| c.committed_at < u))
            .take(query.limit)
            .cloned()
            .collect())
    }

    fn commits(&self) -> CommitSignal {
        self.commits.subscribe()
    }
}
