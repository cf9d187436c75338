//! The replicas a client talks to: their channels, their readiness, and which one serves a
//! tenant.
//!
//! Each tenant goes to one replica, chosen by rendezvous hashing of the tenant id over the
//! replicas' addresses, so every client process sends a tenant to the same replica and each
//! replica's cache holds only its share of the users. A replica that is not ready (its health
//! says NOT_SERVING, or a call to it failed with UNAVAILABLE) is skipped: its tenants go to their
//! next replica in hash order, and come back when it is ready again. Adding or removing a
//! replica moves only the tenants that hash to it.

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tonic::transport::Channel;

/// One replica: its address, its channels and whether it is ready.
pub(crate) struct Replica {
    /// The address it is known by (`http://10.0.0.7:50051`): what the hash uses.
    pub id: String,
    seed: u64,
    /// For calls: each has a deadline, which is how a dead connection shows.
    pub channel: Channel,
    /// For Watch streams, which have none: HTTP/2 keepalive pings find a dead connection.
    pub streams: Channel,
    ready: AtomicBool,
}

impl Replica {
    pub fn new(id: String, channel: Channel, streams: Channel) -> Replica {
        Replica {
            seed: fnv1a(FNV_OFFSET, id.as_bytes()),
            id,
            channel,
            streams,
            ready: AtomicBool::new(true),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        let was = self.ready.swap(ready, Ordering::Relaxed);
        if was != ready {
            tracing::debug!(replica = %self.id, ready, "replica readiness changed");
        }
    }

    /// The replica's rendezvous score for a tenant.
    fn score(&self, tenant_hash: u64) -> u64 {
        mix(self.seed ^ tenant_hash)
    }
}

/// The current replica list, replaced whole when DNS answers change.
pub(crate) struct Pool {
    replicas: ArcSwap<Vec<Arc<Replica>>>,
}

impl Pool {
    pub fn new(replicas: Vec<Arc<Replica>>) -> Pool {
        Pool {
            replicas: ArcSwap::from_pointee(replicas),
        }
    }

    pub fn replicas(&self) -> Arc<Vec<Arc<Replica>>> {
        self.replicas.load_full()
    }

    pub fn replace(&self, replicas: Vec<Arc<Replica>>) {
        self.replicas.store(Arc::new(replicas));
    }

    /// The replica for a tenant's next attempt: the highest-scoring ready replica not yet
    /// `tried` in this call; failing that, the highest-scoring untried one; failing that, the
    /// tenant's own. `None` only when there are no replicas at all.
    pub fn pick(&self, tenant: &str, tried: &[String]) -> Option<Arc<Replica>> {
        let replicas = self.replicas.load();
        if replicas.len() == 1 {
            return replicas.first().cloned();
        }
        let h = fnv1a(FNV_OFFSET, tenant.as_bytes());
        let best = |ready_only: bool, untried_only: bool| {
            replicas
                .iter()
                .filter(|r| !ready_only || r.is_ready())
                .filter(|r| !untried_only || !tried.contains(&r.id))
                .max_by_key(|r| r.score(h))
                .cloned()
        };
        best(true, true)
            .or_else(|| best(false, true))
            .or_else(|| best(false, false))
    }

    /// Every replica in a tenant's preference order.
    #[cfg(test)]
    pub fn order(&self, tenant: &str) -> Vec<Arc<Replica>> {
        let h = fnv1a(FNV_OFFSET, tenant.as_bytes());
        let mut all: Vec<Arc<Replica>> = self.replicas.load().iter().cloned().collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.score(h)));
        all
    }
}

// A fixed hash (FNV-1a, then a 64-bit finaliser), so every client process, whatever its Rust
// version, sends a tenant to the same replica.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        let replicas = (0..n)
            .map(|i| {
                let id = format!("http://10.0.0.{i}:50051");
                let channel = tonic::transport::Endpoint::from_shared(id.clone())
                    .unwrap()
                    .connect_lazy();
                Arc::new(Replica::new(id, channel.clone(), channel))
            })
            .collect();
        Pool::new(replicas)
    }

    #[tokio::test]
    async fn tenants_spread_over_replicas_and_move_only_when_theirs_is_not_ready() {
        let p = pool(4);
        let tenants: Vec<String> = (0..4000).map(|i| format!("tenant-{i}")).collect();
        let home: Vec<String> = tenants
            .iter()
            .map(|t| p.pick(t, &[]).unwrap().id.clone())
            .collect();
        for r in p.replicas().iter() {
            let share = home.iter().filter(|h| **h == r.id).count();
            assert!((800..1200).contains(&share), "{} has {share}", r.id);
        }
        // The same answer every time, and the same as the preference order's first.
        for (t, h) in tenants.iter().zip(&home) {
            assert_eq!(&p.pick(t, &[]).unwrap().id, h);
            assert_eq!(&p.order(t)[0].id, h);
        }
        // One replica not ready: only its tenants move, each to its second choice.
        let down = p.replicas()[1].clone();
        down.set_ready(false);
        for (t, h) in tenants.iter().zip(&home) {
            let now = p.pick(t, &[]).unwrap();
            if *h == down.id {
                assert_eq!(now.id, p.order(t)[1].id);
            } else {
                assert_eq!(&now.id, h);
            }
        }
        // Every replica down: each tenant still gets its own (an attempt beats a refusal).
        for r in p.replicas().iter() {
            r.set_ready(false);
        }
        assert_eq!(
            p.pick("tenant-7", &[]).unwrap().id,
            p.order("tenant-7")[0].id
        );
        // A retry goes to a replica not tried yet.
        let first = p.pick("tenant-7", &[]).unwrap().id.clone();
        let second = p.pick("tenant-7", std::slice::from_ref(&first)).unwrap();
        assert_ne!(second.id, first);
    }

    #[test]
    fn the_hash_is_fixed_across_processes_and_versions() {
        // Changing these numbers sends tenants to other replicas in a mixed fleet of clients.
        assert_eq!(fnv1a(FNV_OFFSET, b"acme"), 0x0724_d383_f4f6_de0f);
        assert_eq!(mix(1), 0x5692_161d_100b_05e5);
    }
}
