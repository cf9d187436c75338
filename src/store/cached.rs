//! The per-replica cache in front of the Postgres store.
//!
//! Two moka caches: one entry per (tenant, user) with the user's own grants and memberships,
//! one per (tenant, custom group) with the group's grants. A check combines them (system groups
//! come from the catalog), so editing a group invalidates one group entry whatever its member
//! count. Writes through this replica invalidate locally after commit; every replica's listener
//! invalidates from the NOTIFY each write sends.
//!
//! **Load/invalidate races.** A load reads the database, then inserts; an invalidation that runs
//! in between must win. Each key hashes to a generation counter; an invalidation bumps it, a load
//! captures it *before* reading and stores it in the entry, and an entry whose generation is no
//! longer current is a miss. Flushes bump a global generation the same way. So a load that read
//! before a revoke's notification can never be served after it, whenever it is inserted.
//!
//! **Staleness.** The listener confirms, by heartbeat, the time up to which every commit has been
//! applied. When that is older than `max_staleness` (listener lost, half-open connection) the
//! cache is bypassed: checks read the database, or fail with UNAVAILABLE when it is down.
//!
//! Longer than most: the entries, the generation counters and the loads, warm-up and
//! invalidation that must agree on them stay private to one file (tests/it/cache_loads.rs and
//! tests/it/replicas.rs hold its races at known points).

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
use authz_core::model::{GroupGrants, Subject, UserGrants};
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
    /// Misses that waited for another lookup's load of the same user instead of reading.
    pub coalesced: AtomicU64,
    pub invalidations: AtomicU64,
    /// Checks that bypassed the cache (fully consistent, or the cache too stale to trust).
    pub bypasses: AtomicU64,
}

/// The hasher of the caches and the generation slots: keys are short and hashed on every check.
type FastHash = ahash::RandomState;

/// Generation counters: per key slot, plus one global.
struct Generations {
    hasher: FastHash,
    slots: Box<[AtomicU64]>,
    global: AtomicU64,
    /// Counts invalidations, bumped *before* their slot: a bulk read that sees it unchanged
    /// across the read and its generation capture raced no invalidation.
    epoch: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Gen {
    slot: u64,
    global: u64,
}

impl Generations {
    fn new(slots: usize) -> Self {
        Self {
            hasher: FastHash::new(),
            slots: (0..slots.next_power_of_two())
                .map(|_| AtomicU64::new(0))
                .collect(),
            global: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The slot `key` hashes to; a user entry keeps its groups' slots, so checking a group's
    /// generation costs two loads and no hashing.
    fn index(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.slots.len() - 1)
    }

    fn at(&self, index: usize) -> Gen {
        Gen {
            global: self.global.load(Ordering::Acquire),
            slot: self.slots[index].load(Ordering::Acquire),
        }
    }

    fn current(&self, key: &str) -> Gen {
        self.at(self.index(key))
    }

    fn bump(&self, key: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.slots[self.index(key)].fetch_add(1, Ordering::AcqRel);
    }

    fn bump_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.global.fetch_add(1, Ordering::AcqRel);
    }
}

struct Entry<T> {
    /// `None`: the user or group does not exist.
    value: Option<Arc<T>>,
    revision: Revision,
    generation: Gen,
    /// When it was read ([`Clock::now`]): past the TTL it is a miss.
    loaded: u64,
}

/// A user's cache entry: its grants, and its groups resolved once per load.
struct UserEntry {
    /// `None`: the user does not exist.
    value: Option<Arc<UserGrants>>,
    revision: Revision,
    generation: Gen,
    /// When it was read ([`Clock::now`]): past the TTL it is a miss.
    loaded: u64,
    /// One per group of `value`, in the same order.
    links: Box<[Link]>,
}

/// How a user entry reaches one of its groups.
enum Link {
    /// A catalog group: fixed for the store's life.
    System(Arc<GroupGrants>),
    /// A custom group: its generation slot, and the last group cache entry this user used. The
    /// memo is used only while its generation is current and its revision high enough, exactly
    /// the test a group cache entry passes, so it is never staler than the group cache; it
    /// saves the group lookup on every check. It is past the TTL when its group entry would be.
    Custom {
        slot: u32,
        memo: arc_swap::ArcSwapOption<Entry<GroupGrants>>,
    },
}

/// Runs `f` on the cache key of (`tenant_id`, `id`) built in a reused per-thread buffer: a
/// cache hit allocates nothing.
fn with_key<R>(tenant_id: &str, id: &str, f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static BUF: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut b) => {
            b.clear();
            b.push_str(tenant_id);
            b.push('\0');
            b.push_str(id);
            f(&b)
        }
        // Not reentered today; if it ever is, fall back to an allocation.
        Err(_) => f(&key(tenant_id, id)),
    })
}

fn key(tenant_id: &str, id: &str) -> String {
    // Ids never hold control characters (validated), so NUL separates unambiguously.
    let mut k = String::with_capacity(tenant_id.len() + id.len() + 1);
    k.push_str(tenant_id);
    k.push('\0');
    k.push_str(id);
    k
}

/// The TTL safety net, checked on read against each entry's load time, so moka keeps no
/// per-entry expiry bookkeeping (a write-order queue node and timestamps per entry).
struct Clock {
    start: std::time::Instant,
    ttl_ms: u64,
}

impl Clock {
    /// Milliseconds since the cache started.
    fn now(&self) -> u64 {
        self.at(std::time::Instant::now())
    }

    /// Milliseconds from the cache's start to `t`.
    fn at(&self, t: std::time::Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// True while an entry read at `loaded` is younger than the TTL.
    fn young(&self, loaded: u64, now: u64) -> bool {
        now.saturating_sub(loaded) < self.ttl_ms
    }
}

/// A user load in flight, which concurrent misses for the same key wait for.
struct Flight {
    id: u64,
    /// The generation the load captured before its read.
    generation: Gen,
    done: tokio::sync::watch::Receiver<Option<Result<Arc<UserEntry>>>>,
}

/// A miss either leads the load for its key or joins the one in flight.
enum Role {
    Lead(
        tokio::sync::watch::Sender<Option<Result<Arc<UserEntry>>>>,
        u64,
    ),
    Join(tokio::sync::watch::Receiver<Option<Result<Arc<UserEntry>>>>),
}

/// Takes a leader's flight out of the map when the load ends, or when the lookup is dropped
/// midway (its joiners then see the sender gone and look again).
struct FlightGuard<'a> {
    shared: &'a Shared,
    tenant_id: &'a str,
    user_id: &'a str,
    id: u64,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        with_key(self.tenant_id, self.user_id, |k| {
            let mut flights = self
                .shared
                .flights
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if flights.get(k).is_some_and(|f| f.id == self.id) {
                flights.remove(k);
            }
        });
    }
}

/// Shared between the store and the listener task.
struct Shared {
    clock: Clock,
    /// User loads in flight, by key.
    flights: std::sync::Mutex<std::collections::HashMap<String, Flight, FastHash>>,
    flight_ids: AtomicU64,
    users: moka::sync::Cache<String, Arc<UserEntry>, FastHash>,
    groups: moka::sync::Cache<String, Arc<Entry<GroupGrants>>, FastHash>,
    user_gens: Generations,
    group_gens: Generations,
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
    fn invalidate(&self, tenant_id: &str, touched: &Touched) {
        let mut n = 0;
        if touched.all_users {
            self.user_gens.bump_all();
            self.users.invalidate_all();
            n += 1;
        }
        for u in &touched.users {
            let k = key(tenant_id, u);
            self.user_gens.bump(&k);
            self.users.invalidate(&k);
            n += 1;
        }
        for g in &touched.groups {
            let k = key(tenant_id, g);
            self.group_gens.bump(&k);
            self.groups.invalidate(&k);
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
            self.group_gens.bump_all();
            self.groups.invalidate_all();
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
        self.user_gens.bump_all();
        self.group_gens.bump_all();
        self.users.invalidate_all();
        self.groups.invalidate_all();
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

fn user_weight(k: &str, e: &UserEntry) -> u32 {
    let v = e.value.as_deref().map_or(0, |u| {
        u.groups.iter().map(|g| g.len() + 24).sum::<usize>()
            + u.scoped
                .iter()
                .map(|s| s.resource.id.len() + 48)
                .sum::<usize>()
            + u.restrictions
                .iter()
                .map(|r| r.ids.iter().map(|i| i.len() + 32).sum::<usize>() + 48)
                .sum::<usize>()
            + 128
    });
    let links = e.links.len() * (std::mem::size_of::<Link>() + 8);
    u32::try_from(k.len() + v + links + 64).unwrap_or(u32::MAX)
}

fn group_weight(k: &str, e: &Entry<GroupGrants>) -> u32 {
    let v = e.value.as_deref().map_or(0, |g| {
        g.key.len()
            + g.scoped
                .iter()
                .map(|s| s.resource.id.len() + 48)
                .sum::<usize>()
            + 96
    });
    u32::try_from(k.len() + v + 64).unwrap_or(u32::MAX)
}

impl<L: Loader + Store> CachedStore<L> {
    /// Wraps `inner` and starts the listener on its own connection.
    pub fn start(inner: Arc<L>, catalog: Arc<Catalog>, options: CacheOptions) -> Self {
        let shared = Arc::new(Shared {
            clock: Clock {
                start: std::time::Instant::now(),
                ttl_ms: u64::try_from(options.ttl.as_millis()).unwrap_or(u64::MAX),
            },
            flights: std::sync::Mutex::default(),
            flight_ids: AtomicU64::new(0),
            users: moka::sync::Cache::builder()
                .max_capacity(options.max_bytes / 4 * 3)
                .weigher(|k: &String, v: &Arc<UserEntry>| user_weight(k, v))
                .build_with_hasher(FastHash::new()),
            groups: moka::sync::Cache::builder()
                .max_capacity(options.max_bytes / 4)
                .weigher(|k: &String, v: &Arc<Entry<GroupGrants>>| group_weight(k, v))
                .build_with_hasher(FastHash::new()),
            user_gens: Generations::new(1 << 16),
            group_gens: Generations::new(1 << 12),
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

    /// Entries and estimated bytes in the cache.
    pub fn size(&self) -> (u64, u64) {
        let s = &self.shared;
        (
            s.users.entry_count() + s.groups.entry_count(),
            s.users.weighted_size() + s.groups.weighted_size(),
        )
    }

    /// Whether the listener has confirmed, by `now`, every commit older than the bound.
    fn trusted(&self, now: std::time::Instant) -> bool {
        self.listener.fresh_within_at(self.max_staleness, now)
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
                let keyed: Vec<_> = page
                    .into_iter()
                    .map(|(t, g, r)| (key(&t, &g.key), t, g, r))
                    .collect();
                let gens: Vec<Gen> = keyed.iter().map(|e| sh.group_gens.current(&e.0)).collect();
                last = keyed
                    .last()
                    .map(|(_, t, g, _)| (t.clone(), g.key.clone(), keyed.len()));
                if sh.group_gens.epoch() != epoch {
                    continue;
                }
                for ((k, _, g, revision), generation) in keyed.into_iter().zip(gens) {
                    let value = Some(Arc::new(g));
                    sh.groups.insert(
                        k,
                        Arc::new(Entry {
                            value,
                            revision,
                            generation,
                            loaded,
                        }),
                    );
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
                let keyed: Vec<_> = page
                    .into_iter()
                    .map(|(t, u, g, r)| (key(&t, &u), t, u, g, r))
                    .collect();
                let gens: Vec<Gen> = keyed.iter().map(|e| sh.user_gens.current(&e.0)).collect();
                last = keyed
                    .last()
                    .map(|(_, t, u, _, _)| (t.clone(), u.clone(), keyed.len()));
                if sh.user_gens.epoch() != epoch {
                    continue;
                }
                stored += keyed.len();
                for ((k, t, _, g, revision), generation) in keyed.into_iter().zip(gens) {
                    let entry = self.user_entry(&t, Some(g), revision, generation, loaded);
                    sh.users.insert(k, Arc::new(entry));
                }
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

    /// The cached entry for `k`, or a fresh one from `load`. The race guard lives here, once:
    /// the key's generation is captured before `load` reads the database, so if an
    /// invalidation lands while it runs, the entry is born stale and the next lookup misses.
    async fn lookup<T, Fut>(
        &self,
        cache: &moka::sync::Cache<String, Arc<Entry<T>>, FastHash>,
        gens: &Generations,
        k: String,
        min: Revision,
        load: impl FnOnce() -> Fut,
    ) -> Result<Arc<Entry<T>>>
    where
        T: Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(Option<T>, Revision)>>,
    {
        let generation = gens.current(&k);
        let clock = &self.shared.clock;
        let now = clock.now();
        if let Some(e) = cache.get(&k) {
            if e.generation == generation && e.revision >= min && clock.young(e.loaded, now) {
                self.shared.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(e);
            }
        }
        self.shared.stats.misses.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.loads.fetch_add(1, Ordering::Relaxed);
        let (value, revision) = load().await?;
        if let Some(hook) = &self.after_load {
            (hook.0)().await;
        }
        let entry = Arc::new(Entry {
            value: value.map(Arc::new),
            revision,
            generation,
            loaded: now,
        });
        cache.insert(k, entry.clone());
        Ok(entry)
    }

    /// A user entry for `grants` of `tenant_id`, with its groups linked.
    fn user_entry(
        &self,
        tenant_id: &str,
        grants: Option<UserGrants>,
        revision: Revision,
        generation: Gen,
        loaded: u64,
    ) -> UserEntry {
        let links = grants.as_ref().map_or_else(Box::default, |u| {
            u.groups
                .iter()
                .map(|k| match self.catalog.system_grants(k) {
                    Some(grants) => Link::System(grants),
                    None => Link::Custom {
                        slot: with_key(tenant_id, k, |k| self.shared.group_gens.index(k)) as u32,
                        memo: arc_swap::ArcSwapOption::empty(),
                    },
                })
                .collect()
        });
        UserEntry {
            value: grants.map(Arc::new),
            revision,
            generation,
            loaded,
            links,
        }
    }

    /// The user's cache entry: a hit, or a load of the user together with its custom groups
    /// (one round trip), whose entries then fill the group cache and the user's memos.
    ///
    /// Concurrent misses for one user share one load: a miss joins the load in flight for its
    /// key when that load captured the generation the miss sees, so no invalidation came
    /// between the load's capture and the join and the joiner gets what a load of its own
    /// could have returned. A miss that sees a newer generation starts a load of its own.
    async fn user(
        &self,
        tenant_id: &str,
        user_id: &str,
        min: Revision,
        mut now: u64,
    ) -> Result<Arc<UserEntry>> {
        let sh = &self.shared;
        let mut may_join = true;
        let mut again = false;
        loop {
            if std::mem::replace(&mut again, true) {
                // After a wait for another's load: this lookup's time moved on.
                now = sh.clock.now();
            }
            let (generation, hit) = with_key(tenant_id, user_id, |k| {
                (sh.user_gens.current(k), sh.users.get(k))
            });
            if let Some(e) = hit {
                if e.generation == generation && e.revision >= min && sh.clock.young(e.loaded, now)
                {
                    sh.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(e);
                }
            }
            sh.stats.misses.fetch_add(1, Ordering::Relaxed);
            let role = with_key(tenant_id, user_id, |k| {
                let mut flights = sh.flights.lock().unwrap_or_else(|e| e.into_inner());
                match flights.get(k) {
                    Some(f) if may_join && f.generation == generation => Role::Join(f.done.clone()),
                    _ => {
                        let id = sh.flight_ids.fetch_add(1, Ordering::Relaxed);
                        let (tx, done) = tokio::sync::watch::channel(None);
                        flights.insert(
                            k.to_owned(),
                            Flight {
                                id,
                                generation,
                                done,
                            },
                        );
                        Role::Lead(tx, id)
                    }
                }
            });
            match role {
                Role::Join(mut done) => {
                    sh.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    // Err: the leading lookup was dropped before it finished; look again.
                    let Ok(out) = done.wait_for(Option::is_some).await else {
                        continue;
                    };
                    match out.as_ref() {
                        Some(Ok(e)) if e.revision < min => {
                            // Read before the revision this check asks for: read again, alone.
                            may_join = false;
                        }
                        Some(out) => return out.clone(),
                        None => {}
                    }
                }
                Role::Lead(tx, id) => {
                    let flight = FlightGuard {
                        shared: sh,
                        tenant_id,
                        user_id,
                        id,
                    };
                    let out = self.load_user(tenant_id, user_id, generation, now).await;
                    // Out of the map before the result is out: a joiner that looks again
                    // (its token is newer than this read) finds no stale flight to join.
                    drop(flight);
                    tx.send_replace(Some(out.clone()));
                    return out;
                }
            }
        }
    }

    /// Reads the user and its custom groups and caches them under `generation` and `loaded`,
    /// both captured before the read.
    async fn load_user(
        &self,
        tenant_id: &str,
        user_id: &str,
        generation: Gen,
        loaded: u64,
    ) -> Result<Arc<UserEntry>> {
        let sh = &self.shared;
        sh.stats.loads.fetch_add(1, Ordering::Relaxed);
        sh.stats.user_loads.fetch_add(1, Ordering::Relaxed);
        let group_epoch = sh.group_gens.epoch();
        let load = self.inner.load_user_and_groups(tenant_id, user_id).await?;
        if let Some(hook) = &self.after_load {
            (hook.0)().await;
        }
        let entry =
            Arc::new(self.user_entry(tenant_id, load.user, load.revision, generation, loaded));
        // The groups read alongside are cached only if no group invalidation began since before
        // the read (the same guard as the warm-up's); otherwise they load on their own.
        let keyed: Vec<(String, Gen, GroupGrants)> = load
            .groups
            .into_iter()
            .map(|g| {
                let k = key(tenant_id, &g.key);
                let generation = sh.group_gens.current(&k);
                (k, generation, g)
            })
            .collect();
        if sh.group_gens.epoch() == group_epoch {
            if let Some(user) = &entry.value {
                for (k, generation, g) in keyed {
                    let at = user.groups.iter().position(|u| *u == g.key);
                    let group = Arc::new(Entry {
                        value: Some(Arc::new(g)),
                        revision: load.groups_revision,
                        generation,
                        loaded,
                    });
                    if let Some(Link::Custom { memo, .. }) = at.map(|i| &entry.links[i]) {
                        memo.store(Some(group.clone()));
                    }
                    sh.groups.insert(k, group);
                }
            }
        }
        with_key(tenant_id, user_id, |k| {
            sh.users.insert(k.to_owned(), entry.clone())
        });
        Ok(entry)
    }

    async fn group(
        &self,
        tenant_id: &str,
        group: &str,
        min: Revision,
    ) -> Result<Arc<Entry<GroupGrants>>> {
        let (cache, gens) = (&self.shared.groups, &self.shared.group_gens);
        self.lookup(cache, gens, key(tenant_id, group), min, || async {
            let (mut loaded, revision) = self
                .inner
                .load_groups(tenant_id, &[group.to_owned()])
                .await?;
            Ok((loaded.pop(), revision))
        })
        .await
    }

    /// The subject from the cache; `now` is the check's time ([`Clock::now`]).
    async fn cached_subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        min: Revision,
        now: u64,
    ) -> Result<(Subject, Revision)> {
        let user = self.user(tenant_id, user_id, min, now).await?;
        let clock = &self.shared.clock;
        let mut revision = user.revision;
        let Some(grants) = user.value.clone() else {
            return Ok((Subject::default(), revision));
        };
        let gens = &self.shared.group_gens;
        let mut groups = Vec::with_capacity(grants.groups.len());
        for (k, link) in grants.groups.iter().zip(user.links.iter()) {
            let (slot, memo) = match link {
                Link::System(g) => {
                    groups.push(g.clone());
                    continue;
                }
                Link::Custom { slot, memo } => (*slot as usize, memo),
            };
            let current = gens.at(slot);
            let remembered = memo.load();
            if let Some(e) = remembered.as_ref().filter(|e| {
                e.generation == current && e.revision >= min && clock.young(e.loaded, now)
            }) {
                revision = revision.min(e.revision);
                if let Some(v) = &e.value {
                    groups.push(v.clone());
                }
                continue;
            }
            drop(remembered);
            let e = self.group(tenant_id, k, min).await?;
            memo.store(Some(e.clone()));
            revision = revision.min(e.revision);
            if let Some(v) = &e.value {
                groups.push(v.clone());
            }
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
        let min = match consistency {
            Consistency::AtLeast(r) => r,
            _ => 0,
        };
        // One clock read for the staleness bound and the TTL.
        let now = std::time::Instant::now();
        let trusted = self.trusted(now);
        let (subject, revision) = if consistency == Consistency::Full || !trusted {
            self.shared.stats.bypasses.fetch_add(1, Ordering::Relaxed);
            self.inner
                .load_subject(tenant_id, user_id)
                .await
                .map_err(|e| match e {
                    StoreError::Unavailable(msg) if !trusted => StoreError::Stale(msg),
                    other => other,
                })?
        } else {
            let now = self.shared.clock.at(now);
            self.cached_subject(tenant_id, user_id, min, now).await?
        };
        super::rules::check_fresh(consistency, revision)?;
        Ok((subject, revision))
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
