//! The per-replica cache in front of the Postgres store.
//!
//! Two moka caches: users' records (their own grants and their groups by reference) and
//! custom groups' grants. A check combines a user's record with its groups' entries (system
//! groups come from the catalog), so editing a group invalidates one group entry whatever its
//! member count. Writes through this replica invalidate locally after commit; every replica's
//! listener invalidates from the NOTIFY each write sends.
//!
//! **Memory.** A moka entry costs a few hundred bytes of its own, more than a user's record,
//! so users share entries: the user cache holds 2,048 buckets (`records::BUCKETS`), each a
//! table of the records whose key hashes to it, and moka weighs and evicts buckets. A record
//! names its groups by interned 4-byte ids, and a user with no grants of its own shares one
//! grants value with every such user.
//!
//! **Load/invalidate races.** A load reads the database, then inserts; an invalidation that runs
//! in between must win. Each key hashes to a generation counter; an invalidation bumps it, a load
//! captures it *before* reading and stores it in the entry, and an entry whose generation is no
//! longer current is a miss. Flushes bump a global generation the same way. So a load that read
//! before a revoke's notification can never be served after it, whenever it is inserted.
//! Concurrent misses for one user or one group share one load (`flights::coalesce`).
//!
//! **Staleness.** The listener confirms, by heartbeat, the time up to which every commit has been
//! applied. When that is older than `max_staleness` (listener lost, half-open connection) the
//! cache is bypassed: checks read the database, or fail with UNAVAILABLE when it is down.
//!
//! Longer than most: the loads, warm-up and invalidation that must agree on the records'
//! generations stay in one file; the records themselves are in `records.rs`, the coalescing of
//! misses in `flights.rs` (tests/it/cache_loads.rs and tests/it/replicas.rs hold its races at
//! known points).

mod flights;
mod records;

use super::Committed;
use super::catalogs::CatalogGuard;
use super::listener::{ListenerOptions, ListenerSink, ListenerState};
use super::notify::Notice;
use super::postgres::PostgresStore;
use super::{
    CommitEvent, CommitSignal, Consistency, Readiness, Records, Result, Revision, Store,
    StoreError, TenantInfo, Touched, Write, WriteCtx, Written,
};
use async_trait::async_trait;
use authz_core::Catalog;
use authz_core::model::{GroupGrants, Subject, UserGrants, UserStatus};
use flights::{Flights, coalesce};
use records::{
    BUCKETS, Bucket, BucketSlots, Clock, FastHash, Gen, Generations, GroupEntry, GroupRef,
    GroupSlots, Interner, Look, MOKA_ENTRY, Rec, SYSTEM, bucket_of, group_weight, is_plain, key,
    with_key,
};
use smallvec::SmallVec;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a user miss read: the user and the custom groups it is a member of, each part with the
/// tenant revision of its own snapshot.
pub struct UserLoad {
    /// `None`: the tenant has no such user.
    pub user: Option<UserGrants>,
    pub revision: Revision,
    /// Custom groups of `user` that existed when read; a group in the user's list but missing
    /// here (a membership added between the two reads) is loaded on its own.
    pub groups: Vec<GroupGrants>,
    pub groups_revision: Revision,
}

/// One page of a bulk warm-up read of users: (tenant, user, grants, tenant revision).
pub type UserPage = Vec<(String, String, UserGrants, Revision)>;
/// One page of a bulk warm-up read of custom groups: (tenant, grants, tenant revision).
pub type GroupPage = Vec<(String, GroupGrants, Revision)>;

/// What the cache reads from the database behind it. Every load returns its data with the
/// tenant revision read in the same snapshot. Writes and admin reads pass through the
/// [`Store`] the loader also is.
#[async_trait]
pub trait Loader: Send + Sync + 'static {
    /// A user and its custom groups (one round trip).
    async fn load_user_and_groups(&self, tenant_id: &str, user_id: &str) -> Result<UserLoad>;
    /// The named custom groups that exist, and the tenant's revision.
    async fn load_groups(
        &self,
        tenant_id: &str,
        keys: &[String],
    ) -> Result<(Vec<GroupGrants>, Revision)>;
    /// A subject straight from the database: the cache bypass.
    async fn load_subject(&self, tenant_id: &str, user_id: &str) -> Result<(Subject, Revision)>;
    /// Every tenant's users, ordered by (tenant, user), strictly after `after`.
    async fn load_users_page(&self, after: &(String, String), limit: i64) -> Result<UserPage>;
    /// Every tenant's custom groups, ordered by (tenant, group), strictly after `after`.
    async fn load_groups_page(&self, after: &(String, String), limit: i64) -> Result<GroupPage>;
    /// Checks the database's newest catalog record again.
    async fn recheck_catalog(&self) -> Result<()>;
    /// The connection settings of the listener's dedicated connection.
    fn listen_config(&self) -> &tokio_postgres::Config;
    /// The guard that keeps this replica's catalog in step with the database's.
    fn catalog_guard(&self) -> &Arc<CatalogGuard>;
    /// The connection pool's occupancy, for metrics.
    fn pool_status(&self) -> deadpool_postgres::Status;
}

/// A fault-injection point: runs after a cache load has read the database and before it stores
/// the entry, so tests can hold a load exactly there. Unset in production.
#[derive(Clone)]
pub struct AfterLoad(
    pub Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>,
);

impl std::fmt::Debug for AfterLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterLoad")
    }
}

#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// Upper bound on the cache's estimated size in bytes (users and groups together).
    pub max_bytes: u64,
    /// Entries older than this are reloaded whatever happened: a safety net, not the mechanism.
    pub ttl: Duration,
    /// Longest time the cache may lag the database before checks stop trusting it.
    pub max_staleness: Duration,
    pub listener: ListenerOptions,
    pub after_load: Option<AfterLoad>,
    /// Called with each notification's lag, commit → invalidation.
    pub lag_observer: Option<LagObserver>,
}

/// Receives invalidation lags (commit → this replica's eviction).
#[derive(Clone)]
pub struct LagObserver(pub Arc<dyn Fn(Duration) + Send + Sync>);

impl std::fmt::Debug for LagObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LagObserver")
    }
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            ttl: Duration::from_secs(300),
            max_staleness: Duration::from_secs(5),
            listener: ListenerOptions::default(),
            after_load: None,
            lag_observer: None,
        }
    }
}

/// Counters for metrics.
#[derive(Default, Debug)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub loads: AtomicU64,
    /// Database reads of a user (each miss that did not join another's load).
    pub user_loads: AtomicU64,
    /// Database reads of a custom group on its own (each group miss that did not join another's
    /// load).
    pub group_loads: AtomicU64,
    /// Misses that waited for another lookup's load of the same user or group instead of
    /// reading.
    pub coalesced: AtomicU64,
    pub invalidations: AtomicU64,
    /// Checks that bypassed the cache (fully consistent, or the cache too stale to trust).
    pub bypasses: AtomicU64,
}

/// Shared between the store and the listener task.
struct Shared {
    clock: Clock,
    hasher: FastHash,
    /// Owns the user buckets and bounds their bytes; checks find them in `user_slots`.
    users: moka::sync::Cache<u32, Arc<Bucket>, FastHash>,
    user_slots: Arc<BucketSlots>,
    /// Owns the custom groups' entries and bounds their bytes; checks find them in
    /// `group_slots`, so its recency is that of loads, not of hits.
    groups: moka::sync::Cache<GroupRef, Arc<GroupEntry>, FastHash>,
    group_slots: Arc<GroupSlots>,
    user_gens: Generations,
    group_gens: Generations,
    user_flights: Flights<String, Rec>,
    group_flights: Flights<GroupRef, Arc<GroupEntry>>,
    names: Interner,
    /// The catalog's groups, by [`GroupRef`] less [`SYSTEM`]: fixed for the store's life.
    system: Box<[Arc<GroupGrants>]>,
    /// The grants of a user with none of its own, by status: shared by every such record.
    plain: [Arc<UserGrants>; 2],
    stats: CacheStats,
    commits: tokio::sync::broadcast::Sender<CommitEvent>,
    lag_observer: Option<LagObserver>,
    /// Has the replica check the database's newest catalog record (off the listener's task).
    catalog_recheck: Option<Box<dyn Fn() + Send + Sync>>,
}

/// Checks the newest catalog record in a task of its own; a failed look is logged and made
/// again at the next announcement, load or write (each of which looks too).
fn catalog_recheck<L: Loader>(inner: &Arc<L>) -> Box<dyn Fn() + Send + Sync> {
    let inner = Arc::downgrade(inner);
    Box::new(move || {
        let Some(store) = inner.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = store.recheck_catalog().await {
                tracing::warn!(error = %e, "cannot check the database's catalog record");
            }
        });
    })
}

impl Shared {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn group_slot(&self, id: GroupRef) -> usize {
        self.group_gens.index(u64::from(id))
    }

    /// The record of `key` (hashed to `hash`), whatever its generation.
    fn find_user(&self, hash: u64, key: &str) -> Option<Rec> {
        let b = bucket_of(hash);
        if let Some(bucket) = self.user_slots.get(b) {
            if BucketSlots::touch() {
                let _ = self.users.get(&b);
            }
            return bucket.as_ref()?.find(hash, key);
        }
        let bucket = self.users.get(&b)?;
        self.show_bucket(b, &bucket);
        bucket.find(hash, key)
    }

    /// The bucket `b`, if moka holds one.
    fn bucket(&self, b: u32) -> Option<Arc<Bucket>> {
        match self.user_slots.get(b) {
            Some(bucket) => bucket.clone(),
            None => self.users.get(&b),
        }
    }

    /// Puts a bucket moka holds where checks find it. Should moka have removed it meanwhile
    /// (its removal then found the slot still empty), it is taken out again: the slots never
    /// keep a bucket moka does not count.
    fn show_bucket(&self, b: u32, bucket: &Arc<Bucket>) {
        self.user_slots.set(b, bucket);
        if !self
            .users
            .get(&b)
            .is_some_and(|held| Arc::ptr_eq(&held, bucket))
        {
            self.user_slots.clear_if(b, bucket);
        }
    }

    /// Stores user records, each (hash, key, record), into their buckets; moka weighs a bucket
    /// again when it has grown by an eighth.
    fn put_users(&self, recs: Vec<(u64, Box<str>, Rec)>) {
        let mut by_bucket: std::collections::BTreeMap<u32, Vec<_>> = Default::default();
        for (hash, key, rec) in recs {
            by_bucket
                .entry(bucket_of(hash))
                .or_default()
                .push((hash, key, rec));
        }
        for (b, recs) in by_bucket {
            let bucket = self.users.get_with(b, Arc::default);
            let grown = bucket.put(&self.hasher, recs);
            if grown {
                self.users.insert(b, bucket.clone());
            }
            self.show_bucket(b, &bucket);
        }
    }

    /// The grants a record keeps of `grants`: without the group list, shared when plain.
    fn own_grants(&self, mut grants: UserGrants) -> Arc<UserGrants> {
        if is_plain(&grants) {
            return self.plain[grants.status as usize].clone();
        }
        grants.groups = Vec::new();
        Arc::new(grants)
    }

    /// Stores a custom group's entry where checks find it and where its bytes are bounded.
    fn put_group(&self, id: GroupRef, entry: Arc<GroupEntry>) {
        self.group_slots.set(id, entry.clone());
        self.groups.insert(id, entry);
    }

    /// Every user record stale at once, then out of moka.
    fn invalidate_all_users(&self) {
        self.user_gens.bump_all();
        self.users.invalidate_all();
        self.user_slots.clear_all();
    }

    /// Every group entry stale at once, then out of moka; moka's removals empty the slot
    /// table.
    fn invalidate_all_groups(&self) {
        self.group_gens.bump_all();
        self.groups.invalidate_all();
    }

    fn invalidate(&self, tenant_id: &str, touched: &Touched) {
        let mut n = 0;
        if touched.all_users {
            self.invalidate_all_users();
            n += 1;
        }
        for u in &touched.users {
            with_key(tenant_id, u, |k| {
                let hash = self.hash(k);
                self.user_gens.bump(self.user_gens.index(hash));
                if let Some(b) = self.bucket(bucket_of(hash)) {
                    b.remove(hash, k);
                }
            });
            n += 1;
        }
        for g in &touched.groups {
            // The epoch first, whether or not the group has an id: a load that interns it
            // meanwhile either sees the epoch move, or interned it before the lookup below,
            // which then finds the id and makes the load's entry stale.
            self.group_gens.bump_epoch();
            if let Some(id) = self.names.find(tenant_id, g) {
                self.group_gens.bump(self.group_slot(id));
                self.group_slots.clear(id);
                self.groups.invalidate(&id);
            }
            n += 1;
        }
        self.stats.invalidations.fetch_add(n, Ordering::Relaxed);
    }
}

impl ListenerSink for Shared {
    fn notice(&self, notice: Notice) {
        let committed_ms = notice.ts;
        let touched = Touched {
            users: notice.u,
            groups: notice.g,
            all_users: notice.au,
        };
        self.invalidate(&notice.t, &touched);
        if notice.ag {
            self.invalidate_all_groups();
            self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .commits
            .send(CommitEvent::Committed(notice.t, notice.r));
        if let (Some(observe), true) = (&self.lag_observer, committed_ms > 0) {
            let lag = super::notify::now_ms().saturating_sub(committed_ms);
            (observe.0)(Duration::from_millis(lag));
        }
    }

    fn catalog_changed(&self) {
        if let Some(recheck) = &self.catalog_recheck {
            recheck();
        }
    }

    fn flush(&self) {
        self.invalidate_all_users();
        self.invalidate_all_groups();
        self.stats.invalidations.fetch_add(1, Ordering::Relaxed);
        // Notifications may have been missed, and with them commit announcements.
        let _ = self.commits.send(CommitEvent::Resync);
    }
}

/// The cache in front of a [`Loader`] (in production, [`PostgresStore`]).
pub struct CachedStore<L = PostgresStore> {
    inner: Arc<L>,
    catalog: Arc<Catalog>,
    shared: Arc<Shared>,
    listener: Arc<ListenerState>,
    listener_task: tokio::task::JoinHandle<()>,
    max_staleness: Duration,
    after_load: Option<AfterLoad>,
}

impl<L> Drop for CachedStore<L> {
    fn drop(&mut self) {
        self.listener_task.abort();
    }
}

impl<L: Loader + Store> CachedStore<L> {
    /// Wraps `inner` and starts the listener on its own connection.
    pub fn start(inner: Arc<L>, catalog: Arc<Catalog>, options: CacheOptions) -> Self {
        let plain = |status| {
            Arc::new(UserGrants {
                status,
                ..UserGrants::default()
            })
        };
        let group_slots = Arc::new(GroupSlots::default());
        let evicted = group_slots.clone();
        let user_slots = Arc::new(BucketSlots::default());
        let removed = user_slots.clone();
        let shared = Arc::new(Shared {
            clock: Clock {
                start: std::time::Instant::now(),
                ttl_ms: u64::try_from(options.ttl.as_millis()).unwrap_or(u64::MAX),
            },
            hasher: FastHash::new(),
            users: moka::sync::Cache::builder()
                .max_capacity(options.max_bytes / 4 * 3)
                .weigher(|_: &u32, b: &Arc<Bucket>| {
                    b.weight
                        .load(Ordering::Acquire)
                        .saturating_add(MOKA_ENTRY as u32)
                })
                // A bucket moka evicts or drops leaves the slots too. A replacement is the
                // same bucket inserted again to be weighed anew: it stays.
                .eviction_listener(move |b, bucket, cause| {
                    if cause != moka::notification::RemovalCause::Replaced {
                        removed.clear_if(*b, &bucket);
                    }
                })
                .build_with_hasher(FastHash::new()),
            user_slots,
            groups: moka::sync::Cache::builder()
                .max_capacity(options.max_bytes / 4)
                .weigher(|k: &GroupRef, e: &Arc<GroupEntry>| group_weight(k, e))
                // Whatever takes an entry out of moka (eviction, invalidation, replacement)
                // takes it out of the slot table too, unless a newer one is there: the table
                // never holds an entry moka does not count.
                .eviction_listener(move |id, entry, _| evicted.clear_if(*id, &entry))
                .build_with_hasher(FastHash::new()),
            group_slots,
            user_gens: Generations::new(1 << 16),
            group_gens: Generations::new(1 << 12),
            user_flights: Flights::default(),
            group_flights: Flights::default(),
            names: Interner::default(),
            system: catalog.groups().iter().map(|g| g.grants.clone()).collect(),
            plain: [plain(UserStatus::Active), plain(UserStatus::Blocked)],
            stats: CacheStats::default(),
            commits: tokio::sync::broadcast::channel(1024).0,
            lag_observer: options.lag_observer.clone(),
            catalog_recheck: Some(catalog_recheck(&inner)),
        });
        let listener = Arc::new(ListenerState::default());
        let listener_task = tokio::spawn(super::listener::run(
            inner.listen_config().clone(),
            shared.clone(),
            listener.clone(),
            options.listener.clone(),
        ));
        Self {
            inner,
            catalog,
            shared,
            listener,
            listener_task,
            max_staleness: options.max_staleness,
            after_load: options.after_load,
        }
    }

    pub fn listener(&self) -> &Arc<ListenerState> {
        &self.listener
    }

    pub fn stats(&self) -> &CacheStats {
        &self.shared.stats
    }

    pub fn inner(&self) -> &Arc<L> {
        &self.inner
    }

    /// Records (users and groups) and estimated bytes in the cache.
    pub fn size(&self) -> (u64, u64) {
        let s = &self.shared;
        let users: usize = s.users.iter().map(|(_, b)| b.len()).sum();
        (
            users as u64 + s.groups.entry_count(),
            s.users.weighted_size() + s.groups.weighted_size(),
        )
    }

    /// User buckets that checks can reach but the user cache no longer holds, once moka's
    /// pending removals have run. Always 0: the slot table never keeps a bucket moka does not
    /// count (and bound).
    pub fn stray_buckets(&self) -> usize {
        let s = &self.shared;
        s.users.run_pending_tasks();
        (0..BUCKETS)
            .filter(|&b| {
                s.user_slots.get(b).is_some_and(|slot| {
                    let held = s.users.get(&b);
                    !matches!((&*slot, held), (Some(a), Some(b)) if Arc::ptr_eq(a, &b))
                })
            })
            .count()
    }

    /// Whether the listener has confirmed, by `now`, every commit older than the bound.
    fn trusted(&self, now: std::time::Instant) -> bool {
        self.listener.fresh_within_at(self.max_staleness, now)
    }

    /// How a subject is read: the revision it must reach, the cache's time when the cache may
    /// answer (`None`: the database must), and whether the listener is within the staleness
    /// bound. One clock read serves the bound and the TTL.
    fn plan(&self, consistency: Consistency) -> (Revision, Option<u64>, bool) {
        let min = match consistency {
            Consistency::AtLeast(r) => r,
            _ => 0,
        };
        let now = std::time::Instant::now();
        let trusted = self.trusted(now);
        // Group ids run out only after 2^26 distinct custom groups: then the database answers.
        let bypass = consistency == Consistency::Full || !trusted || self.shared.names.full();
        (min, (!bypass).then(|| self.shared.clock.at(now)), trusted)
    }

    /// After this replica's own commit: invalidate what it touched at once, rather than wait
    /// for the notification.
    fn committed(&self, tenant_id: &str, ctx: &WriteCtx, revision: Revision, touched: &Touched) {
        if ctx.dry_run {
            return;
        }
        self.shared.invalidate(tenant_id, touched);
        let _ = self
            .shared
            .commits
            .send(CommitEvent::Committed(tenant_id.to_owned(), revision));
    }

    /// Pages of the bulk reads behind [`Self::warm`], and how often a page that raced an
    /// invalidation is read again before it is skipped (left to load on demand).
    const WARM_PAGE: usize = 10_000;
    const WARM_ATTEMPTS: usize = 5;

    /// Fills the cache from bulk reads of every tenant's custom groups and then users, up to
    /// `max_users` users, so a new replica does not answer its first checks from the database
    /// one by one. A page is stored only if no invalidation began between its read and the
    /// capture of its keys' generations (otherwise it is read again), so an invalidation that
    /// lands meanwhile still wins. Returns the users stored.
    pub async fn warm(&self, max_users: usize) -> Result<usize> {
        self.warm_groups().await?;
        self.warm_users(max_users).await
    }

    /// The custom-group half of [`Self::warm`].
    pub async fn warm_groups(&self) -> Result<()> {
        let sh = &self.shared;
        let mut after = (String::new(), String::new());
        loop {
            let mut last = None;
            for _ in 0..Self::WARM_ATTEMPTS {
                let epoch = sh.group_gens.epoch();
                let loaded = sh.clock.now();
                let page = self
                    .inner
                    .load_groups_page(&after, Self::WARM_PAGE as i64)
                    .await?;
                last = page
                    .last()
                    .map(|(t, g, _)| (t.clone(), g.key.clone(), page.len()));
                let mut entries = Vec::with_capacity(page.len());
                for (t, g, revision) in page {
                    let id = sh.names.intern(&t, &g.key)?;
                    let generation = sh.group_gens.at(sh.group_slot(id));
                    entries.push((id, g, revision, generation));
                }
                if sh.group_gens.epoch() != epoch {
                    continue;
                }
                for (id, g, revision, generation) in entries {
                    let entry = GroupEntry {
                        value: Some(Arc::new(g)),
                        revision,
                        generation,
                        loaded,
                    };
                    sh.put_group(id, Arc::new(entry));
                }
                break;
            }
            match last {
                Some((t, g, n)) if n == Self::WARM_PAGE => after = (t, g),
                _ => break,
            }
        }
        Ok(())
    }

    /// The user half of [`Self::warm`]: up to `max_users` users; returns the users stored.
    pub async fn warm_users(&self, max_users: usize) -> Result<usize> {
        let sh = &self.shared;
        let mut after = (String::new(), String::new());
        let mut stored = 0;
        let mut read = 0;
        while read < max_users {
            let limit = Self::WARM_PAGE.min(max_users - read);
            let mut last = None;
            for _ in 0..Self::WARM_ATTEMPTS {
                let epoch = sh.user_gens.epoch();
                let loaded = sh.clock.now();
                let page = self.inner.load_users_page(&after, limit as i64).await?;
                last = page
                    .last()
                    .map(|(t, u, _, _)| (t.clone(), u.clone(), page.len()));
                let mut recs = Vec::with_capacity(page.len());
                for (t, u, grants, revision) in page {
                    let k = key(&t, &u);
                    let hash = sh.hash(&k);
                    let generation = sh.user_gens.at(sh.user_gens.index(hash));
                    let rec = self.record(&t, Some(grants), revision, generation, loaded)?;
                    recs.push((hash, k.into_boxed_str(), rec));
                }
                if sh.user_gens.epoch() != epoch {
                    continue;
                }
                stored += recs.len();
                sh.put_users(recs);
                break;
            }
            match last {
                Some((t, u, n)) => {
                    read += n;
                    after = (t, u);
                    if n < limit {
                        break;
                    }
                }
                None => break,
            }
        }
        sh.stats.loads.fetch_add(stored as u64, Ordering::Relaxed);
        Ok(stored)
    }

    /// A user record for `grants` of `tenant_id`, its groups named by reference.
    fn record(
        &self,
        tenant_id: &str,
        grants: Option<UserGrants>,
        revision: Revision,
        generation: Gen,
        loaded: u64,
    ) -> Result<Rec> {
        let sh = &self.shared;
        let mut groups = SmallVec::new();
        if let Some(u) = &grants {
            for k in &u.groups {
                groups.push(match self.catalog.system_index(k) {
                    Some(i) => GroupRef::try_from(i)
                        .ok()
                        .filter(|&i| i < SYSTEM)
                        .map(|i| SYSTEM | i)
                        .ok_or_else(|| StoreError::Internal(format!("catalog group {i}")))?,
                    None => sh.names.intern(tenant_id, k)?,
                });
            }
        }
        Ok(Rec {
            user: grants.map(|g| sh.own_grants(g)),
            revision,
            generation,
            loaded,
            groups,
        })
    }

    /// The cached record of a user, if it is usable for `look` (its generation is the key's
    /// current one, it is at least `look.min`, and young enough); the key's current generation
    /// either way.
    fn probe_user(
        &self,
        tenant_id: &str,
        user_id: &str,
        hash: u64,
        look: Look,
    ) -> (Gen, Option<Rec>) {
        let sh = &self.shared;
        let current = sh.user_gens.at(sh.user_gens.index(hash));
        let hit = with_key(tenant_id, user_id, |k| sh.find_user(hash, k)).filter(|r| {
            sh.clock
                .usable(r.generation, r.revision, r.loaded, Look { current, ..look })
        });
        (current, hit)
    }

    /// The user's record: a hit, or a load of the user together with its custom groups (one
    /// round trip), whose entries then fill the group cache. Misses are coalesced.
    async fn user(&self, tenant_id: &str, user_id: &str, min: Revision, now: u64) -> Result<Rec> {
        let sh = &self.shared;
        let hash = with_key(tenant_id, user_id, |k| sh.hash(k));
        let probe = |look: Look| self.probe_user(tenant_id, user_id, hash, look);
        let look = Look {
            current: sh.user_gens.at(sh.user_gens.index(hash)),
            min,
            now,
        };
        let (current, hit) = probe(look);
        if let Some(rec) = hit {
            sh.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(rec);
        }
        sh.stats.misses.fetch_add(1, Ordering::Relaxed);
        let k = key(tenant_id, user_id);
        let look = Look { current, ..look };
        coalesce(
            &sh.user_flights,
            &sh.stats,
            &sh.clock,
            &k,
            look,
            probe,
            |generation, loaded| self.load_user(tenant_id, user_id, hash, generation, loaded),
        )
        .await
    }

    /// Reads the user and its custom groups and caches them under `generation` and `loaded`,
    /// both captured before the read.
    async fn load_user(
        &self,
        tenant_id: &str,
        user_id: &str,
        hash: u64,
        generation: Gen,
        loaded: u64,
    ) -> Result<Rec> {
        let sh = &self.shared;
        sh.stats.loads.fetch_add(1, Ordering::Relaxed);
        sh.stats.user_loads.fetch_add(1, Ordering::Relaxed);
        let group_epoch = sh.group_gens.epoch();
        let load = self.inner.load_user_and_groups(tenant_id, user_id).await?;
        if let Some(hook) = &self.after_load {
            (hook.0)().await;
        }
        let rec = self.record(tenant_id, load.user, load.revision, generation, loaded)?;
        // The groups read alongside are cached only if no group invalidation began since before
        // the read (the same guard as the warm-up's); otherwise they load on their own.
        let mut entries = Vec::with_capacity(load.groups.len());
        for g in load.groups {
            let id = sh.names.intern(tenant_id, &g.key)?;
            entries.push((id, sh.group_gens.at(sh.group_slot(id)), g));
        }
        if sh.group_gens.epoch() == group_epoch && rec.user.is_some() {
            for (id, generation, g) in entries {
                // One already cached under the same generation, as new and still young, stays:
                // replacing it would only churn memory (it is read again past its TTL).
                let look = Look {
                    current: generation,
                    min: load.groups_revision,
                    now: loaded,
                };
                if sh.group_slots.get(id).is_some_and(|e| {
                    e.as_ref()
                        .is_some_and(|e| sh.clock.usable(e.generation, e.revision, e.loaded, look))
                }) {
                    continue;
                }
                let entry = GroupEntry {
                    value: Some(Arc::new(g)),
                    revision: load.groups_revision,
                    generation,
                    loaded,
                };
                sh.put_group(id, Arc::new(entry));
            }
        }
        let k = key(tenant_id, user_id).into_boxed_str();
        sh.put_users(vec![(hash, k, rec.clone())]);
        Ok(rec)
    }

    /// The cached grants of a custom group, if its entry is usable for `look`.
    fn group_hit(&self, id: GroupRef, look: Look) -> Option<(Option<Arc<GroupGrants>>, Revision)> {
        let sh = &self.shared;
        let e = sh.group_slots.get(id)?;
        let e = e
            .as_ref()
            .filter(|e| sh.clock.usable(e.generation, e.revision, e.loaded, look))?;
        Some((e.value.clone(), e.revision))
    }

    /// A custom group's grants (`None`: it does not exist) and the revision they were read
    /// at: a hit, or a load of the group. Misses are coalesced.
    async fn group(
        &self,
        tenant_id: &str,
        id: GroupRef,
        min: Revision,
        now: u64,
    ) -> Result<(Option<Arc<GroupGrants>>, Revision)> {
        let sh = &self.shared;
        let slot = sh.group_slot(id);
        let usable =
            |e: &GroupEntry, look: Look| sh.clock.usable(e.generation, e.revision, e.loaded, look);
        let look = Look {
            current: sh.group_gens.at(slot),
            min,
            now,
        };
        if let Some(hit) = self.group_hit(id, look) {
            sh.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        sh.stats.misses.fetch_add(1, Ordering::Relaxed);
        let probe = |look: Look| {
            let current = sh.group_gens.at(slot);
            let hit = sh
                .group_slots
                .get(id)
                .and_then(|e| e.as_ref().cloned())
                .filter(|e| usable(e, Look { current, ..look }));
            (current, hit)
        };
        let e = coalesce(
            &sh.group_flights,
            &sh.stats,
            &sh.clock,
            &id,
            look,
            probe,
            |generation, loaded| self.load_group(tenant_id, id, generation, loaded),
        )
        .await?;
        Ok((e.value.clone(), e.revision))
    }

    /// Reads a custom group and caches it under `generation` and `loaded`, both captured
    /// before the read.
    async fn load_group(
        &self,
        tenant_id: &str,
        id: GroupRef,
        generation: Gen,
        loaded: u64,
    ) -> Result<Arc<GroupEntry>> {
        let sh = &self.shared;
        sh.stats.loads.fetch_add(1, Ordering::Relaxed);
        sh.stats.group_loads.fetch_add(1, Ordering::Relaxed);
        let group = sh
            .names
            .group_key(id)
            .ok_or_else(|| StoreError::Internal(format!("the cache has no group {id}")))?;
        let (mut found, revision) = self.inner.load_groups(tenant_id, &[group]).await?;
        if let Some(hook) = &self.after_load {
            (hook.0)().await;
        }
        let entry = Arc::new(GroupEntry {
            value: found.pop().map(Arc::new),
            revision,
            generation,
            loaded,
        });
        sh.put_group(id, entry.clone());
        Ok(entry)
    }

    /// The subject from the cache; `now` is the check's time ([`Clock::now`]).
    async fn cached_subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        min: Revision,
        now: u64,
    ) -> Result<(Subject, Revision)> {
        let rec = self.user(tenant_id, user_id, min, now).await?;
        let mut revision = rec.revision;
        let Some(grants) = rec.user else {
            return Ok((Subject::default(), revision));
        };
        let mut groups = Vec::with_capacity(rec.groups.len());
        for &g in &rec.groups {
            if let Some(i) = g.checked_sub(SYSTEM) {
                groups.extend(self.shared.system.get(i as usize).cloned());
                continue;
            }
            let (value, read_at) = self.group(tenant_id, g, min, now).await?;
            revision = revision.min(read_at);
            groups.extend(value);
        }
        Ok((
            Subject {
                user: Some(grants),
                groups,
            },
            revision,
        ))
    }
}

#[async_trait]
impl<L: Loader + Store> Store for CachedStore<L> {
    /// The write goes to the database; what it touched, as the database recorded it, is
    /// invalidated here at once (other replicas learn it from the NOTIFY).
    async fn write(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        write: Write<'_>,
    ) -> Result<Committed<Written>> {
        let out = self.inner.write(tenant_id, ctx, write).await?;
        self.committed(tenant_id, ctx, out.revision, &out.touched);
        Ok(out)
    }

    async fn create_tenant(&self, tenant_id: &str, display_name: &str) -> Result<TenantInfo> {
        self.inner.create_tenant(tenant_id, display_name).await
    }

    async fn subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)> {
        let (min, now, trusted) = self.plan(consistency);
        let (subject, revision) = match now {
            None => {
                self.shared.stats.bypasses.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .load_subject(tenant_id, user_id)
                    .await
                    .map_err(|e| match e {
                        StoreError::Unavailable(msg) if !trusted => StoreError::Stale(msg),
                        other => other,
                    })?
            }
            Some(now) => self.cached_subject(tenant_id, user_id, min, now).await?,
        };
        super::rules::check_fresh(consistency, revision)?;
        Ok((subject, revision))
    }

    /// A cache hit for the user and each of its custom groups, decided without waiting;
    /// anything else (a miss, a bypass) is `None` and left to [`Store::subject`], which counts
    /// it.
    fn subject_now(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Option<Result<(Subject, Revision)>> {
        let (min, now, _) = self.plan(consistency);
        let now = now?;
        let sh = &self.shared;
        let hash = with_key(tenant_id, user_id, |k| sh.hash(k));
        let look = Look {
            current: sh.user_gens.at(sh.user_gens.index(hash)),
            min,
            now,
        };
        let (_, rec) = self.probe_user(tenant_id, user_id, hash, look);
        let rec = rec?;
        let mut revision = rec.revision;
        let subject = match rec.user {
            None => Subject::default(),
            Some(grants) => {
                let mut groups = Vec::with_capacity(rec.groups.len());
                for &g in &rec.groups {
                    if let Some(i) = g.checked_sub(SYSTEM) {
                        groups.extend(sh.system.get(i as usize).cloned());
                        continue;
                    }
                    let look = Look {
                        current: sh.group_gens.at(sh.group_slot(g)),
                        min,
                        now,
                    };
                    let (value, read_at) = self.group_hit(g, look)?;
                    revision = revision.min(read_at);
                    groups.extend(value);
                }
                Subject {
                    user: Some(grants),
                    groups,
                }
            }
        };
        let custom = rec.groups.iter().filter(|g| **g < SYSTEM).count();
        sh.stats
            .hits
            .fetch_add(1 + custom as u64, Ordering::Relaxed);
        Some(super::rules::check_fresh(consistency, revision).map(|()| (subject, revision)))
    }

    fn commits(&self) -> CommitSignal {
        self.shared.commits.subscribe()
    }

    fn stats(&self) -> Option<super::StoreStats> {
        let s = &self.shared.stats;
        let (entries, weight) = self.size();
        let pool = self.inner.pool_status();
        Some(super::StoreStats {
            cache_hits: s.hits.load(Ordering::Relaxed),
            cache_misses: s.misses.load(Ordering::Relaxed),
            cache_loads: s.loads.load(Ordering::Relaxed),
            cache_invalidations: s.invalidations.load(Ordering::Relaxed),
            cache_bypasses: s.bypasses.load(Ordering::Relaxed),
            cache_entries: entries,
            cache_weight_bytes: weight,
            listener_connected: self.listener.connected(),
            listener_staleness: self.listener.staleness(),
            listener_reconnects: self.listener.reconnects(),
            listener_flushes: self.listener.flushes(),
            listener_notifications: self.listener.notifications(),
            pool_size: pool.size as u64,
            pool_available: pool.available as u64,
            pool_waiting: pool.waiting as u64,
            catalog_compatible: self.inner.catalog_guard().serving(),
            catalog_record: u64::try_from(self.inner.catalog_guard().verified()).unwrap_or(0),
        })
    }

    fn catalog_refusal(&self) -> Option<String> {
        self.inner.catalog_guard().refusal()
    }

    fn readiness(&self) -> Readiness {
        if let Some(reason) = self.inner.catalog_guard().refusal() {
            return Readiness {
                ready: false,
                reason,
            };
        }
        if self.listener.connected() {
            Readiness {
                ready: true,
                reason: String::new(),
            }
        } else {
            Readiness {
                ready: false,
                reason: format!(
                    "change listener not subscribed: {}",
                    self.listener.last_error()
                ),
            }
        }
    }

    /// Admin reads, Watch and the audit log never go through the cache: they read the
    /// database's records directly.
    fn records(&self) -> &dyn Records {
        self.inner.records()
    }
}
