//! Coalesced loads: concurrent misses for one key share one database read.

use super::super::{Result, Revision};
use super::CacheStats;
use super::records::{Clock, FastHash, Gen, GroupEntry, Look, Rec};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a coalesced load returns: joiners compare its revision with the one they ask for.
pub(super) trait Loaded: Clone {
    fn revision(&self) -> Revision;
}

impl Loaded for Rec {
    fn revision(&self) -> Revision {
        self.revision
    }
}

impl Loaded for Arc<GroupEntry> {
    fn revision(&self) -> Revision {
        self.revision
    }
}

pub(super) type Done<V> = Option<Result<V>>;

/// Loads in flight, by key, which concurrent misses for the same key wait for.
pub(super) struct Flights<K, V> {
    pub(super) map: std::sync::Mutex<std::collections::HashMap<K, Flight<V>, FastHash>>,
    pub(super) ids: AtomicU64,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            map: std::sync::Mutex::new(std::collections::HashMap::with_hasher(FastHash::new())),
            ids: AtomicU64::new(0),
        }
    }
}

pub(super) struct Flight<V> {
    pub(super) id: u64,
    /// The generation the load captured before its read.
    pub(super) generation: Gen,
    pub(super) done: tokio::sync::watch::Receiver<Done<V>>,
}

/// A miss either leads the load for its key or joins the one in flight.
pub(super) enum Role<V> {
    Lead(tokio::sync::watch::Sender<Done<V>>, u64),
    Join(tokio::sync::watch::Receiver<Done<V>>),
}

impl<K: std::hash::Hash + Eq + Clone, V> Flights<K, V> {
    pub(super) fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<K, Flight<V>, FastHash>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the load in flight for `k` if it captured `generation` (no invalidation came
    /// between its capture and this join) and joining is allowed; leads a new one otherwise.
    pub(super) fn role(&self, k: &K, generation: Gen, may_join: bool) -> Role<V> {
        let mut flights = self.map();
        match flights.get(k) {
            Some(f) if may_join && f.generation == generation => Role::Join(f.done.clone()),
            _ => {
                let id = self.ids.fetch_add(1, Ordering::Relaxed);
                let (tx, done) = tokio::sync::watch::channel(None);
                flights.insert(
                    k.clone(),
                    Flight {
                        id,
                        generation,
                        done,
                    },
                );
                Role::Lead(tx, id)
            }
        }
    }
}

/// Takes a leader's flight out of the map when the load ends, or when the lookup is dropped
/// midway (its joiners then see the sender gone and look again).
pub(super) struct FlightGuard<'a, K: std::hash::Hash + Eq + Clone, V> {
    pub(super) flights: &'a Flights<K, V>,
    pub(super) key: &'a K,
    pub(super) id: u64,
}

impl<K: std::hash::Hash + Eq + Clone, V> Drop for FlightGuard<'_, K, V> {
    fn drop(&mut self) {
        let mut flights = self.flights.map();
        if flights.get(self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(self.key);
        }
    }
}

/// After a miss on `k` at `look`: joins the load in flight for `k` or leads one with `load`.
///
/// Concurrent misses for one key share one load: a miss joins the load in flight when that
/// load captured the generation the miss sees, so no invalidation came between the load's
/// capture and the join and the joiner gets what a load of its own could have returned. A miss
/// that sees a newer generation starts a load of its own; one whose revision token is newer
/// than the shared read reads again alone. `probe` looks again after a wait: the current
/// generation, and the entry if it may answer.
pub(super) async fn coalesce<K, V, Fut>(
    flights: &Flights<K, V>,
    stats: &CacheStats,
    clock: &Clock,
    k: &K,
    mut look: Look,
    probe: impl Fn(Look) -> (Gen, Option<V>),
    load: impl Fn(Gen, u64) -> Fut,
) -> Result<V>
where
    K: std::hash::Hash + Eq + Clone,
    V: Loaded,
    Fut: std::future::Future<Output = Result<V>>,
{
    let mut may_join = true;
    loop {
        match flights.role(k, look.current, may_join) {
            Role::Join(mut done) => {
                stats.coalesced.fetch_add(1, Ordering::Relaxed);
                // Err: the leading lookup was dropped before it finished; look again.
                if let Ok(out) = done.wait_for(Option::is_some).await {
                    match out.as_ref() {
                        // Read before the revision this lookup asks for: read again, alone.
                        Some(Ok(v)) if v.revision() < look.min => may_join = false,
                        Some(out) => return out.clone(),
                        None => {}
                    }
                }
            }
            Role::Lead(tx, id) => {
                let flight = FlightGuard {
                    flights,
                    key: k,
                    id,
                };
                let out = load(look.current, look.now).await;
                // Out of the map before the result is out: a joiner that looks again (its
                // token is newer than this read) finds no stale flight to join.
                drop(flight);
                tx.send_replace(Some(out.clone()));
                return out;
            }
        }
        // After a wait for another's load: this lookup's time moved on.
        look.now = clock.now();
        let (current, hit) = probe(look);
        if let Some(v) = hit {
            stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        stats.misses.fetch_add(1, Ordering::Relaxed);
        look.current = current;
    }
}
