//! The cache's records and their bookkeeping: generation counters, user records in buckets,
//! custom groups' entries and interned ids, cache keys and the TTL clock.

use super::super::{Result, Revision, StoreError};
use authz_core::model::{GroupGrants, UserGrants};
use smallvec::SmallVec;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The hasher of the caches and the generation slots: keys are short and hashed on every check.
pub(super) type FastHash = ahash::RandomState;

/// Generation counters: per key slot, plus one global. Compared for equality only, so they
/// may wrap: an entry would have to outlive 2³² invalidations of its slot to be mistaken.
pub(super) struct Generations {
    pub(super) slots: Box<[AtomicU32]>,
    pub(super) global: AtomicU32,
    /// Counts invalidations, bumped *before* their slot: a read that sees it unchanged
    /// across the read and its generation capture raced no invalidation.
    pub(super) epoch: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Gen {
    pub(super) slot: u32,
    pub(super) global: u32,
}

impl Generations {
    pub(super) fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots.next_power_of_two())
                .map(|_| AtomicU32::new(0))
                .collect(),
            global: AtomicU32::new(0),
            epoch: AtomicU64::new(0),
        }
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The slot of a key hashed to `hash` (a user's), or of a group's id.
    pub(super) fn index(&self, hash: u64) -> usize {
        (hash as usize) & (self.slots.len() - 1)
    }

    pub(super) fn at(&self, index: usize) -> Gen {
        Gen {
            global: self.global.load(Ordering::Acquire),
            slot: self.slots[index].load(Ordering::Acquire),
        }
    }

    /// Marks an invalidation whose key has no slot yet (a group never cached here): reads
    /// guarded by the epoch still see it.
    pub(super) fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn bump(&self, index: usize) {
        self.bump_epoch();
        self.slots[index].fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn bump_all(&self) {
        self.bump_epoch();
        self.global.fetch_add(1, Ordering::AcqRel);
    }
}

/// A custom group's cache entry.
pub(super) struct GroupEntry {
    /// `None`: the group does not exist.
    pub(super) value: Option<Arc<GroupGrants>>,
    pub(super) revision: Revision,
    pub(super) generation: Gen,
    /// When it was read ([`Clock::now`]): past the TTL it is a miss.
    pub(super) loaded: u64,
}

/// A user record's reference to one of its groups: below [`SYSTEM`], a custom group's
/// interned id; from it up, [`SYSTEM`] plus the catalog group's index.
pub(super) type GroupRef = u32;
pub(super) const SYSTEM: GroupRef = 1 << 31;

/// A user's cache record: its own grants and its groups by reference, resolved at each check
/// against the group cache (a group edit then invalidates one group entry, not its members).
#[derive(Clone)]
pub(super) struct Rec {
    /// `None`: the user does not exist. `groups` of the grants is left empty (the list is
    /// `groups` below); a user with no grants of its own shares one value per status.
    pub(super) user: Option<Arc<UserGrants>>,
    pub(super) revision: Revision,
    pub(super) generation: Gen,
    /// When it was read ([`Clock::now`]): past the TTL it is a miss.
    pub(super) loaded: u64,
    pub(super) groups: SmallVec<[GroupRef; 4]>,
}

/// The estimated bytes a record costs in its bucket's table: the slot, the key, and the grants
/// unless they are the shared plain value (exactly the grants with nothing of their own).
pub(super) fn rec_weight(key: &str, rec: &Rec) -> u32 {
    let own = match rec.user.as_deref() {
        Some(u) if !is_plain(u) => {
            u.direct.heap_bytes()
                + 16
                + u.scoped
                    .iter()
                    .map(|s| s.resource.id.len() + 48)
                    .sum::<usize>()
                + u.restrictions
                    .iter()
                    .map(|r| r.ids.iter().map(|i| i.len() + 32).sum::<usize>() + 48)
                    .sum::<usize>()
                + 160
        }
        _ => 0,
    };
    let spilled = if rec.groups.spilled() {
        rec.groups.len() * 4 + 16
    } else {
        0
    };
    // The boxed slot and its key, each with the allocator's header, and the table's pointer
    // at about two thirds full.
    let slot = std::mem::size_of::<Slot>() + 16 + 12;
    u32::try_from(key.len() + 16 + slot + own + spilled).unwrap_or(u32::MAX)
}

/// Grants with nothing of the user's own beyond its status (its groups aside).
pub(super) fn is_plain(u: &UserGrants) -> bool {
    u.direct.is_empty() && u.scoped.is_empty() && u.restrictions.is_empty()
}

/// What one moka entry costs of its own, before its value (measured: `authz-bench moka-floor`
/// reads 337–418 bytes), for the weights.
pub(super) const MOKA_ENTRY: usize = 384;

/// Users share moka entries: the user cache holds [`BUCKETS`] buckets, each a table of the
/// records whose key hashes to it. A moka entry costs a few hundred bytes of its own, more
/// than a record, so one per user could not stay small; eviction is then by bucket.
pub(super) const BUCKETS: u32 = 2048;

/// A record and its key, boxed: the table holds a pointer per slot, so the room a hash table
/// keeps free (a third to a half of its slots, depending on where it is between two growths)
/// costs 8 bytes a slot, not a whole record.
pub(super) struct Slot {
    pub(super) key: Box<str>,
    pub(super) rec: Rec,
}

#[derive(Default)]
pub(super) struct Bucket {
    table: std::sync::Mutex<Table>,
    /// The table's estimated bytes as moka last weighed them (its weigher reads this when the
    /// bucket is inserted); the table keeps the exact count.
    pub(super) weight: AtomicU32,
}

#[derive(Default)]
struct Table {
    recs: hashbrown::HashTable<Box<Slot>>,
    weight: u32,
}

impl Bucket {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn find(&self, hash: u64, key: &str) -> Option<Rec> {
        let t = self.table();
        t.recs.find(hash, |s| *s.key == *key).map(|s| s.rec.clone())
    }

    /// Stores records (each with its key's hash), replacing older ones. True when moka should
    /// weigh the bucket again: its weight grew by an eighth since moka last did, so moka's
    /// total is never more than an eighth short.
    pub(super) fn put(
        &self,
        hasher: &FastHash,
        recs: impl IntoIterator<Item = (u64, Box<str>, Rec)>,
    ) -> bool {
        let mut t = self.table();
        for (hash, key, rec) in recs {
            let weight = rec_weight(&key, &rec);
            let t = &mut *t;
            match t
                .recs
                .entry(hash, |s| s.key == key, |s| hasher.hash_one(&*s.key))
            {
                hashbrown::hash_table::Entry::Occupied(mut o) => {
                    let old = o.get_mut();
                    t.weight = t.weight.saturating_sub(rec_weight(&old.key, &old.rec));
                    old.rec = rec;
                }
                hashbrown::hash_table::Entry::Vacant(v) => {
                    v.insert(Box::new(Slot { key, rec }));
                }
            }
            t.weight = t.weight.saturating_add(weight);
        }
        let reported = self.weight.load(Ordering::Acquire);
        let again = t.weight > reported.saturating_add(reported / 8);
        if again {
            self.weight.store(t.weight, Ordering::Release);
        }
        again
    }

    /// Drops the record of `key`, if any (its generation already makes it a miss).
    pub(super) fn remove(&self, hash: u64, key: &str) {
        let mut t = self.table();
        if let Ok(o) = t.recs.find_entry(hash, |s| *s.key == *key) {
            let (old, _) = o.remove();
            t.weight = t.weight.saturating_sub(rec_weight(&old.key, &old.rec));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.table().recs.len()
    }
}

/// Custom groups by id: a user record names each of its groups in four bytes, and the group
/// cache and its generation slots are keyed by the id. An id is handed out once per (tenant,
/// group) and never reused, so it always means the one group; the table grows with the
/// distinct groups this replica has cached, not with users.
#[derive(Default)]
pub(super) struct Interner {
    table: std::sync::Mutex<Names>,
    /// Set when ids ran out: the cache is then bypassed (checks read the database) until the
    /// process restarts.
    full: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Names {
    ids: std::collections::HashMap<Arc<str>, GroupRef, FastHash>,
    /// By id: the group's cache key (tenant, NUL, group).
    names: Vec<Arc<str>>,
}

impl Interner {
    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of `tenant_id`'s group `group`, handed out now if it has none.
    pub(super) fn intern(&self, tenant_id: &str, group: &str) -> Result<GroupRef> {
        with_key(tenant_id, group, |k| {
            let mut t = self.names();
            if let Some(&id) = t.ids.get(k) {
                return Ok(id);
            }
            let Some(id) = GroupRef::try_from(t.names.len())
                .ok()
                .filter(|&id| id < MAX_GROUP_IDS)
            else {
                if !self.full.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        ids = MAX_GROUP_IDS,
                        "the cache has named as many custom groups as it can; checks read the \
                         database until authzd restarts"
                    );
                }
                return Err(StoreError::Internal(
                    "the cache has run out of group ids".to_owned(),
                ));
            };
            let name: Arc<str> = Arc::from(k);
            t.names.push(name.clone());
            t.ids.insert(name, id);
            Ok(id)
        })
    }

    /// Whether ids ran out (then the cache is bypassed).
    pub(super) fn full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// The id of a group, if it has one.
    pub(super) fn find(&self, tenant_id: &str, group: &str) -> Option<GroupRef> {
        with_key(tenant_id, group, |k| self.names().ids.get(k).copied())
    }

    /// The group key of `id`.
    pub(super) fn group_key(&self, id: GroupRef) -> Option<String> {
        let t = self.names();
        let name = t.names.get(id as usize)?;
        name.split_once('\0').map(|(_, g)| g.to_owned())
    }
}

/// How many custom groups a replica can name: ids index [`GroupSlots`] directly.
pub(super) const MAX_GROUP_IDS: GroupRef = 1 << 26;
const CHUNK_BITS: u32 = 14;

type Chunk = Box<[arc_swap::ArcSwapOption<GroupEntry>]>;

/// Custom groups' entries by id, read on every check without a lock, a hash or a reference
/// count. The group cache (moka) owns the entries and bounds their bytes: what it evicts is
/// taken out here too, and what is put here is inserted there.
pub(super) struct GroupSlots {
    /// Chunks of 2^14 slots, made when an id in them is first stored.
    chunks: Box<[std::sync::OnceLock<Chunk>]>,
}

impl Default for GroupSlots {
    fn default() -> Self {
        Self {
            chunks: (0..MAX_GROUP_IDS >> CHUNK_BITS)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }
}

impl GroupSlots {
    /// The chunk of `id` and its place in it.
    fn place(id: GroupRef) -> (usize, usize) {
        (
            (id >> CHUNK_BITS) as usize,
            (id & ((1 << CHUNK_BITS) - 1)) as usize,
        )
    }

    fn slot(&self, id: GroupRef) -> Option<&arc_swap::ArcSwapOption<GroupEntry>> {
        let (chunk, at) = Self::place(id);
        self.chunks.get(chunk)?.get()?.get(at)
    }

    /// The entry of `id`, if one is stored; the guard borrows it without counting a reference.
    pub(super) fn get(&self, id: GroupRef) -> Option<arc_swap::Guard<Option<Arc<GroupEntry>>>> {
        let guard = self.slot(id)?.load();
        guard.is_some().then_some(guard)
    }

    pub(super) fn set(&self, id: GroupRef, entry: Arc<GroupEntry>) {
        let (chunk, at) = Self::place(id);
        let Some(chunk) = self.chunks.get(chunk) else {
            return;
        };
        let chunk = chunk.get_or_init(|| {
            (0..1 << CHUNK_BITS)
                .map(|_| arc_swap::ArcSwapOption::empty())
                .collect()
        });
        if let Some(slot) = chunk.get(at) {
            slot.store(Some(entry));
        }
    }

    pub(super) fn clear(&self, id: GroupRef) {
        if let Some(slot) = self.slot(id) {
            slot.store(None);
        }
    }

    /// Clears `id`'s slot if it still holds `entry` (it left moka; a newer one stays).
    pub(super) fn clear_if(&self, id: GroupRef, entry: &Arc<GroupEntry>) {
        if let Some(slot) = self.slot(id) {
            let current = slot.load();
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, entry)) {
                slot.compare_and_swap(&*current, None);
            }
        }
    }
}

/// The user cache's buckets by number, read on every check without going through moka. The
/// user cache (moka) owns the buckets and bounds their bytes: a bucket is put here only while
/// moka holds it, and what moka removes is taken out here too.
pub(super) struct BucketSlots {
    slots: Box<[arc_swap::ArcSwapOption<Bucket>]>,
}

/// One hit in this many (counted per thread) is also a moka read: moka learns enough of them
/// for its frequency and recency estimates of a bucket, at a sixty-fourth of the cost.
pub(super) const TOUCH_EVERY: u32 = 64;

thread_local! {
    static HITS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl Default for BucketSlots {
    fn default() -> Self {
        Self {
            slots: (0..BUCKETS)
                .map(|_| arc_swap::ArcSwapOption::empty())
                .collect(),
        }
    }
}

impl BucketSlots {
    /// The bucket stored for `b`; the guard borrows it without counting a reference.
    pub(super) fn get(&self, b: u32) -> Option<arc_swap::Guard<Option<Arc<Bucket>>>> {
        let guard = self.slots.get(b as usize)?.load();
        guard.is_some().then_some(guard)
    }

    pub(super) fn set(&self, b: u32, bucket: &Arc<Bucket>) {
        if let Some(slot) = self.slots.get(b as usize) {
            slot.store(Some(bucket.clone()));
        }
    }

    /// Empties the slot of `b` if it still holds `bucket`.
    pub(super) fn clear_if(&self, b: u32, bucket: &Arc<Bucket>) {
        if let Some(slot) = self.slots.get(b as usize) {
            let current = slot.load();
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, bucket)) {
                slot.compare_and_swap(&*current, None);
            }
        }
    }

    pub(super) fn clear_all(&self) {
        for slot in &self.slots {
            slot.store(None);
        }
    }

    /// True once every [`TOUCH_EVERY`] calls: time to tell moka of a hit.
    pub(super) fn touch() -> bool {
        HITS.with(|h| {
            let n = h.get().wrapping_add(1);
            h.set(n);
            n % TOUCH_EVERY == 0
        })
    }
}

/// Runs `f` on the cache key of (`tenant_id`, `id`) built in a reused per-thread buffer: a
/// cache hit allocates nothing.
pub(super) fn with_key<R>(tenant_id: &str, id: &str, f: impl FnOnce(&str) -> R) -> R {
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
        // Reentered (a closure that builds a key itself): fall back to an allocation.
        Err(_) => f(&key(tenant_id, id)),
    })
}

pub(super) fn key(tenant_id: &str, id: &str) -> String {
    // Ids never hold control characters (validated), so NUL separates unambiguously.
    let mut k = String::with_capacity(tenant_id.len() + id.len() + 1);
    k.push_str(tenant_id);
    k.push('\0');
    k.push_str(id);
    k
}

/// The TTL safety net, checked on read against each entry's load time, so moka keeps no
/// per-entry expiry bookkeeping (a write-order queue node and timestamps per entry).
pub(super) struct Clock {
    pub(super) start: std::time::Instant,
    pub(super) ttl_ms: u64,
}

impl Clock {
    /// Milliseconds since the cache started.
    pub(super) fn now(&self) -> u64 {
        self.at(std::time::Instant::now())
    }

    /// Milliseconds from the cache's start to `t`.
    pub(super) fn at(&self, t: std::time::Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// True while an entry read at `loaded` is younger than the TTL.
    pub(super) fn young(&self, loaded: u64, now: u64) -> bool {
        now.saturating_sub(loaded) < self.ttl_ms
    }

    /// Whether an entry may answer a lookup that sees `current` and asks for `min`.
    pub(super) fn usable(
        &self,
        generation: Gen,
        revision: Revision,
        loaded: u64,
        look: Look,
    ) -> bool {
        generation == look.current && revision >= look.min && self.young(loaded, look.now)
    }
}

/// What a lookup accepts: the key's current generation, the revision it asks for, its time.
#[derive(Clone, Copy)]
pub(super) struct Look {
    pub(super) current: Gen,
    pub(super) min: Revision,
    pub(super) now: u64,
}

pub(super) fn bucket_of(hash: u64) -> u32 {
    ((hash >> 32) as u32) & (BUCKETS - 1)
}

pub(super) fn group_weight(k: &GroupRef, e: &GroupEntry) -> u32 {
    let v = e.value.as_deref().map_or(0, |g| {
        g.key.len()
            + g.permissions.heap_bytes()
            + g.scoped
                .iter()
                .map(|s| s.resource.id.len() + 48)
                .sum::<usize>()
            + std::mem::size_of::<GroupGrants>()
            + 48
    });
    // The entry in its `Arc`, its slot, and moka's own bookkeeping of it.
    let entry = std::mem::size_of::<GroupEntry>() + 16 + 8 + MOKA_ENTRY;
    u32::try_from(std::mem::size_of_val(k) + v + entry).unwrap_or(u32::MAX)
}
