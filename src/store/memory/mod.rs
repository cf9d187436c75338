//! The embedded in-memory store: the zero-configuration default, with the same semantics as
//! the Postgres store. Each tenant sits behind its own lock, so a write to one tenant never
//! blocks checks in another, and a tenant's writes are serialised like a transaction.

mod tenant;

pub(in crate::store) use tenant::Tenant;
use tenant::page;

use super::{
    AuditQuery, Change, CommitEvent, CommitSignal, Consistency, GroupInfo, Page, PageRequest,
    Records, Result, Revision, Store, StoreError, TenantInfo, Touched, UserInfo, WriteCtx,
};
use super::{Committed, Op, Write, Written};
use async_trait::async_trait;
use authz_core::Catalog;
use authz_core::model::Subject;
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

#[async_trait]
impl Store for MemoryStore {
    async fn write(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        write: Write<'_>,
    ) -> Result<Committed<Written>> {
        let catalog = &self.catalog;
        self.write_tenant(
            tenant_id,
            ctx,
            Op::of(&write),
            |t, touched| write.plan(t, touched),
            |t| write.apply(t, catalog, ctx),
        )
        .await
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

    async fn subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)> {
        self.subject_in_memory(tenant_id, user_id, consistency)
    }

    fn subject_now(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Option<Result<(Subject, Revision)>> {
        Some(self.subject_in_memory(tenant_id, user_id, consistency))
    }

    fn commits(&self) -> CommitSignal {
        self.commits.subscribe()
    }

    fn records(&self) -> &dyn Records {
        self
    }
}

impl MemoryStore {
    fn subject_in_memory(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)> {
        let tenant = self.tenant(tenant_id)?;
        let t = read(&tenant);
        // This store is the source of truth: every read is fully consistent. A token newer than
        // the tenant's revision can only come from another tenant or be forged.
        super::rules::check_fresh(consistency, t.revision)?;
        Ok((
            t.subject(&self.catalog, user_id).unwrap_or_default(),
            t.revision,
        ))
    }
}

#[async_trait]
impl Records for MemoryStore {
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
}
