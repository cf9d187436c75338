//! Soak: a bounded mixed load on a Postgres-backed replica whose cache is far smaller than its
//! working set, so it evicts all the time. Memory must stay bounded by the cache limit; the
//! per-window latencies are printed (`FIGURES`) for `docs/reliability.md`, not asserted —
//! latency is measured in benchmarks, never in timed tests.
//!
//! 5 s by default, 60 s with `AUTHZ_SLOW_TESTS`, or `AUTHZ_SOAK_SECS`.

use crate::helpers::*;
use authz::grpc::pb;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The checks a soak must make for its memory figures to mean anything.
const MIN_CHECKS: usize = 1000;
const USERS: usize = 5000;
const CACHE_BYTES: u64 = 256 * 1024;

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_mixed_load_keeps_memory_bounded() {
    let secs: u64 = std::env::var("AUTHZ_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if crate::slow() { 60 } else { 5 });
    let windows = secs.clamp(2, 12);
    let window = Duration::from_secs(secs) / windows as u32;
    let app = TestServer::fresh_postgres()
        .cache_bytes(CACHE_BYTES)
        .start()
        .await;
    app.tenant("t").await;
    // A working set far over the cache: 5,000 users, a third in each of three groups.
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i}")).collect();
    for (k, group) in ["analysts", "marketers", "accountants"].iter().enumerate() {
        for chunk in users
            .iter()
            .skip(k)
            .step_by(3)
            .cloned()
            .collect::<Vec<_>>()
            .chunks(1000)
        {
            app.admin
                .clone()
                .add_group_members(pb::AddGroupMembersRequest {
                    tenant_id: "t".into(),
                    group_key: group.to_string(),
                    user_ids: chunk.to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    }
    let cached = app.cached.clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let mut tasks = Vec::new();
    for seed in 0..3u64 {
        let (mut authz, users, stop, tx) =
            (app.authz.clone(), users.clone(), stop.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ seed;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Zipf-ish: most checks hit a hot tenth of the users, the rest miss the cache.
                let i = if x % 10 < 8 {
                    (x >> 8) as usize % (USERS / 10)
                } else {
                    (x >> 8) as usize % USERS
                };
                let start = Instant::now();
                authz
                    .check(perm_check("t", &users[i], "view_reports"))
                    .await
                    .unwrap();
                let _ = tx.send(start.elapsed());
            }
        }));
    }
    {
        let (app_admin, stop) = (app.admin.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut admin = app_admin;
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let user = format!("u{}", (n * 7919) % USERS);
                let req = pb::GrantPermissionsRequest {
                    tenant_id: "t".into(),
                    user_id: user,
                    permissions: vec!["delete_customers".into()],
                    ..Default::default()
                };
                if n % 2 == 0 {
                    admin.grant_permissions(req).await.unwrap();
                } else {
                    admin
                        .revoke_permissions(pb::RevokePermissionsRequest {
                            tenant_id: req.tenant_id,
                            user_id: req.user_id,
                            permissions: req.permissions,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    drop(tx);
    let mut rows = Vec::new();
    let mut max_weight = 0;
    let started = Instant::now();
    // On a loaded machine the soak runs more windows, up to four times as many, until it has
    // done the work it asserts.
    let mut done = 0;
    let mut w = 0;
    while w < windows || (done <= MIN_CHECKS && w < windows * 4) {
        let mut lat = Vec::new();
        let end = started + window * (w as u32 + 1);
        while let Ok(Some(d)) = tokio::time::timeout_at(end.into(), rx.recv()).await {
            lat.push(d);
        }
        lat.sort();
        let stats = cached.stats();
        let weight = app.app.store_stats().map_or(0, |s| s.cache_weight_bytes);
        max_weight = max_weight.max(weight);
        rows.push((
            w,
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            resident_bytes(),
            weight,
            stats.loads.load(Ordering::Relaxed),
        ));
        done += lat.len();
        w += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    for (w, n, p50, p99, rss, weight, loads) in &rows {
        eprintln!(
            "FIGURES soak window {w}: checks={n} p50={p50:?} p99={p99:?} rss={:.1}MiB \
             cache={:.0}KiB loads={loads}",
            *rss as f64 / 1048576.0,
            *weight as f64 / 1024.0
        );
    }
    // The cache stays within its limit (moka's weight is settled lazily: allow one slack tenth).
    assert!(
        max_weight <= CACHE_BYTES + CACHE_BYTES / 10,
        "cache weight {max_weight} over its limit {CACHE_BYTES}"
    );
    // Resident memory stops growing once warm: from the second window to the last it grows by
    // less than 16 MiB (a leak of even 1 KiB per check would pass that within seconds).
    let warm = rows[1.min(rows.len() - 1)].4;
    let last = rows[rows.len() - 1].4;
    let total: usize = rows.iter().map(|r| r.1).sum();
    eprintln!(
        "FIGURES soak: {secs}s, {total} checks, rss {:.1} -> {:.1} MiB, cache max {:.0} KiB of {} KiB",
        warm as f64 / 1048576.0,
        last as f64 / 1048576.0,
        max_weight as f64 / 1024.0,
        CACHE_BYTES / 1024
    );
    assert!(
        last < warm + 16 * 1024 * 1024,
        "resident memory grew from {warm} to {last} bytes under a steady load"
    );
    assert!(total > MIN_CHECKS, "the soak did some work: {total} checks");
}
