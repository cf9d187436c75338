//! Past one replica, measured: 1, 2, 4, 8 authzd processes (each with its own listener) on one
//! Postgres, and the large seeded data set. Two commands of `authz-bench`:
//!
//! - `scaling`: for each replica count, in interleaved rounds (medians reported): write
//!   throughput with writers spread over the replicas; the CPU a write's NOTIFY costs, in the
//!   listeners' Postgres backends and in each replica, at a steady write rate; invalidation lag
//!   at each replica under that steady rate (a revoke through replica 0, every replica polled
//!   until it denies, timed from the revoke's acknowledgement); and the cold-load capacity of
//!   Postgres (checks of users no replica has cached, spread over the replicas).
//! - `large`: on whatever the database was seeded with: cold check latency, the time to warm
//!   every user through the API (BatchCheck), and the resident memory that costs.
//!
//! Replicas run with a pool of `--pool-size` connections each, so eight of them stay within
//! Postgres's default `max_connections`.

use authz::grpc::pb;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

use crate::Rng;

#[derive(clap::Args, Clone, Debug)]
pub struct ScalingArgs {
    /// The authzd binary (a release build).
    #[arg(long)]
    pub authzd: PathBuf,
    /// A database seeded by `authz-bench seed`.
    #[arg(long)]
    pub url: String,
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub replicas: Vec<usize>,
    /// Interleaved rounds over the replica counts; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of each timed phase (write throughput, NOTIFY cost, cold loads).
    #[arg(long, default_value_t = 5)]
    pub secs: u64,
    /// Concurrent writers in the write-throughput phase.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Writes per second of the steady load (NOTIFY cost and lag phases).
    #[arg(long, default_value_t = 200)]
    pub write_rate: u64,
    /// Revokes whose lag is measured at every replica, per run.
    #[arg(long, default_value_t = 100)]
    pub lag_samples: usize,
    /// Concurrent callers in the cold-load phase.
    #[arg(long, default_value_t = 32)]
    pub cold_callers: usize,
    /// Each replica's Postgres pool.
    #[arg(long, default_value_t = 4)]
    pub pool_size: usize,
    #[arg(long)]
    pub report: PathBuf,
}

#[derive(clap::Args, Clone, Debug)]
pub struct LargeArgs {
    #[arg(long)]
    pub authzd: PathBuf,
    #[arg(long)]
    pub url: String,
    /// Cold checks timed (one at a time, each a user never checked before).
    #[arg(long, default_value_t = 2000)]
    pub samples: usize,
    /// Warm at most this many users through the API (all by default).
    #[arg(long)]
    pub warm_users: Option<usize>,
    #[arg(long)]
    pub report: PathBuf,
}

/// The permission the lag probe grants and revokes (as in `authz-bench postgres`): no custom
/// group holds it and the probe's users (tenant `lag`) are in no group.
const LAG_PERM: &str = "delete_customers";

fn append(report: &Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    print!("{text}");
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Nanoseconds on CPU of every thread of a process (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// One authzd process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Replicas {
    procs: Vec<Proc>,
    channels: Vec<Channel>,
}

impl Replicas {
    async fn start(authzd: &Path, url: &str, n: usize, extra: &[&str]) -> Replicas {
        let mut procs = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..n {
            let port = free_port();
            procs.push(Proc(
                Command::new(authzd)
                    .args(["--database-url", url, "--listen"])
                    .arg(format!("127.0.0.1:{port}"))
                    .args(extra)
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            ));
            ports.push(port);
        }
        let mut channels = Vec::new();
        for port in ports {
            let deadline = Instant::now() + Duration::from_secs(60);
            let channel = loop {
                let c = Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await;
                if let Ok(c) = c {
                    break c;
                }
                assert!(Instant::now() < deadline, "authzd on {port} did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            // Ready when a check answers (the listener subscribed, the catalog loaded).
            let mut authz = pb::authz_service_client::AuthzServiceClient::new(channel.clone());
            while authz.check(check("lag", "u0", LAG_PERM)).await.is_err() {
                assert!(Instant::now() < deadline, "authzd on {port} is not ready");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            channels.push(channel);
        }
        Replicas { procs, channels }
    }

    fn authz(&self, i: usize) -> pb::authz_service_client::AuthzServiceClient<Channel> {
        pb::authz_service_client::AuthzServiceClient::new(self.channels[i].clone())
    }

    fn admin(&self, i: usize) -> pb::admin_service_client::AdminServiceClient<Channel> {
        pb::admin_service_client::AdminServiceClient::new(self.channels[i].clone())
    }

    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.0.id()).collect()
    }
}

fn check(tenant: &str, user: &str, perm: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
        target: Some(pb::check_request::Target::Permission(perm.into())),
        ..Default::default()
    }
}

fn grant(tenant: &str, user: &str, perm: &str) -> pb::GrantPermissionsRequest {
    pb::GrantPermissionsRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
        permissions: vec![perm.into()],
        ..Default::default()
    }
}

fn revoke(tenant: &str, user: &str, perm: &str) -> pb::RevokePermissionsRequest {
    pb::RevokePermissionsRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
        permissions: vec![perm.into()],
        ..Default::default()
    }
}

/// The seeded tenants and their user counts, with each tenant's user-id prefix.
async fn population(url: &str) -> Vec<(String, &'static str, usize)> {
    connect(url)
        .await
        .query(
            "SELECT tenant_id, count(*) FROM users GROUP BY tenant_id ORDER BY tenant_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let t: String = r.get(0);
            let prefix = if t == "big" { "b" } else { "u" };
            (t, prefix, r.get::<_, i64>(1) as usize)
        })
        .collect()
}

/// One write of the background load: a grant or revoke of a permission on a random user of a
/// regular tenant (tenants differ, so writes do not queue on one tenant's revision).
fn random_write(
    tenants: &[(String, &'static str, usize)],
    rng: &mut Rng,
) -> (String, String, bool) {
    loop {
        let (t, p, n) = &tenants[rng.next(tenants.len())];
        // Not the big tenant's group members nor the lag probe's users.
        if t.starts_with('t') {
            return (t.clone(), format!("{p}{}", rng.next(*n)), rng.next(2) == 0);
        }
    }
}

async fn write(
    admin: &mut pb::admin_service_client::AdminServiceClient<Channel>,
    (t, u, g): &(String, String, bool),
) -> bool {
    const PERM: &str = "view_flows";
    if *g {
        admin.grant_permissions(grant(t, u, PERM)).await.is_ok()
    } else {
        admin.revoke_permissions(revoke(t, u, PERM)).await.is_ok()
    }
}

/// What one run at one replica count measured.
#[derive(Default, Clone)]
struct RunFigures {
    writes_per_s: f64,
    write_p50: f64,
    write_p99: f64,
    steady_writes: f64,
    steady_commit_p50: f64,
    listener_backend_us_per_write: f64,
    replica_us_per_write: f64,
    /// Lag at the writing replica and at the others (ms).
    lag_local_p50: f64,
    lag_remote_p50: f64,
    lag_remote_p99: f64,
    lag_worst_replica_p99: f64,
    cold_per_s: f64,
    cold_p50: f64,
    cold_p99: f64,
}

async fn listener_backends(url: &str) -> Vec<u32> {
    connect(url)
        .await
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'authzd-listener' \
             AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i32>(0) as u32)
        .collect()
}

/// Writes at `rate` per second through replica 0 until `stop`; returns the commits' latencies.
fn steady_writer(
    replicas: &Replicas,
    tenants: Arc<Vec<(String, &'static str, usize)>>,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    let admin = replicas.admin(0);
    tokio::spawn(async move {
        let mut rng = Rng(0x57ead);
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut inflight = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            ticker.tick().await;
            let w = random_write(&tenants, &mut rng);
            let mut admin = admin.clone();
            inflight.push(tokio::spawn(async move {
                let t = Instant::now();
                write(&mut admin, &w).await.then(|| t.elapsed())
            }));
        }
        let mut lat = Vec::new();
        for t in inflight {
            if let Some(d) = t.await.unwrap() {
                lat.push(d);
            }
        }
        lat.sort();
        lat
    })
}

async fn run_once(
    args: &ScalingArgs,
    n: usize,
    tenants: &Arc<Vec<(String, &'static str, usize)>>,
    round: usize,
) -> RunFigures {
    let pool = args.pool_size.to_string();
    let replicas = Replicas::start(&args.authzd, &args.url, n, &["--db-pool-size", &pool]).await;
    let mut f = RunFigures::default();
    let secs = Duration::from_secs(args.secs);

    // Write throughput: writers spread over the replicas, back to back.
    let stop_at = Instant::now() + secs;
    let tasks: Vec<_> = (0..args.writers)
        .map(|w| {
            let mut admin = replicas.admin(w % n);
            let tenants = tenants.clone();
            tokio::spawn(async move {
                let mut rng = Rng(0x1000 + (w as u64) * 7919 + round as u64);
                let mut lat = Vec::new();
                while Instant::now() < stop_at {
                    let wr = random_write(&tenants, &mut rng);
                    let t = Instant::now();
                    if write(&mut admin, &wr).await {
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    let started = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    lat.sort();
    f.writes_per_s = lat.len() as f64 / took;
    f.write_p50 = pct(&lat, 0.5).as_secs_f64() * 1e3;
    f.write_p99 = pct(&lat, 0.99).as_secs_f64() * 1e3;

    // NOTIFY cost: a steady write rate and nothing else; CPU of the listeners' backends and of
    // the replicas that did not write (they only apply notifications and heartbeat).
    let backends = listener_backends(&args.url).await;
    let pids = replicas.pids();
    let backend_cpu = |b: &[u32]| b.iter().map(|p| cpu_ns(*p)).sum::<u64>();
    let (b0, r0): (u64, Vec<u64>) = (
        backend_cpu(&backends),
        pids.iter().map(|p| cpu_ns(*p)).collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&replicas, tenants.clone(), args.write_rate, stop.clone());
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let commits = writer.await.unwrap();
    let writes = commits.len().max(1) as f64;
    let (b1, r1): (u64, Vec<u64>) = (
        backend_cpu(&backends),
        pids.iter().map(|p| cpu_ns(*p)).collect(),
    );
    f.steady_writes = commits.len() as f64 / args.secs as f64;
    f.steady_commit_p50 = pct(&commits, 0.5).as_secs_f64() * 1e3;
    f.listener_backend_us_per_write = (b1 - b0) as f64 / 1e3 / writes;
    f.replica_us_per_write = if n > 1 {
        median(
            (1..n)
                .map(|i| (r1[i] - r0[i]) as f64 / 1e3 / writes)
                .collect(),
        )
    } else {
        f64::NAN
    };

    // Invalidation lag at every replica, under the steady write rate.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = steady_writer(&replicas, tenants.clone(), args.write_rate, stop.clone());
    let mut admin = replicas.admin(0);
    let mut per_replica: Vec<Vec<Duration>> = vec![Vec::new(); n];
    for i in 0..args.lag_samples {
        let user = format!("u{}", (i + round * 7) % 200);
        admin
            .grant_permissions(grant("lag", &user, LAG_PERM))
            .await
            .unwrap();
        // Every replica caches the allow first, so a deny afterwards is an invalidation.
        for r in 0..n {
            let mut authz = replicas.authz(r);
            while !authz
                .check(check("lag", &user, LAG_PERM))
                .await
                .unwrap()
                .into_inner()
                .allowed
            {}
        }
        admin
            .revoke_permissions(revoke("lag", &user, LAG_PERM))
            .await
            .unwrap();
        let acked = Instant::now();
        let pollers: Vec<_> = (0..n)
            .map(|r| {
                let mut authz = replicas.authz(r);
                let user = user.clone();
                tokio::spawn(async move {
                    while authz
                        .check(check("lag", &user, LAG_PERM))
                        .await
                        .unwrap()
                        .into_inner()
                        .allowed
                    {}
                    acked.elapsed()
                })
            })
            .collect();
        for (r, p) in pollers.into_iter().enumerate() {
            per_replica[r].push(p.await.unwrap());
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    for l in &mut per_replica {
        l.sort();
    }
    f.lag_local_p50 = pct(&per_replica[0], 0.5).as_secs_f64() * 1e3;
    let mut remote: Vec<Duration> = per_replica[1..].iter().flatten().copied().collect();
    remote.sort();
    if n > 1 {
        f.lag_remote_p50 = pct(&remote, 0.5).as_secs_f64() * 1e3;
        f.lag_remote_p99 = pct(&remote, 0.99).as_secs_f64() * 1e3;
        f.lag_worst_replica_p99 = per_replica[1..]
            .iter()
            .map(|l| pct(l, 0.99).as_secs_f64() * 1e3)
            .fold(0.0, f64::max);
    } else {
        f.lag_remote_p50 = f64::NAN;
        f.lag_remote_p99 = f64::NAN;
        f.lag_worst_replica_p99 = f64::NAN;
    }
    eprintln!(
        "  lag per replica (p50/p99 ms): {}",
        per_replica
            .iter()
            .map(|l| format!(
                "{:.2}/{:.2}",
                pct(l, 0.5).as_secs_f64() * 1e3,
                pct(l, 0.99).as_secs_f64() * 1e3
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Cold-load capacity: users no replica has loaded (the replicas are fresh processes), each
    // checked once, callers spread over the replicas.
    let mut rng = Rng(0xc01d + round as u64 * 31 + n as u64);
    let regular: Vec<_> = tenants.iter().filter(|t| t.0.starts_with('t')).collect();
    let total: usize = regular.iter().map(|t| t.2).sum();
    let want = total.min(400_000);
    let mut seen = HashSet::new();
    while seen.len() < want {
        let (t, p, c) = regular[rng.next(regular.len())];
        seen.insert((t.clone(), format!("{p}{}", rng.next(*c))));
    }
    let users: Arc<Vec<(String, String)>> = Arc::new(seen.into_iter().collect());
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + secs;
    let tasks: Vec<_> = (0..args.cold_callers)
        .map(|c| {
            let mut authz = replicas.authz(c % n);
            let (users, next, done) = (users.clone(), next.clone(), done.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < stop_at {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((t, u)) = users.get(i) else { break };
                    let s = Instant::now();
                    authz.check(check(t, u, "view_reports")).await.unwrap();
                    lat.push(s.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                lat
            })
        })
        .collect();
    let started = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    lat.sort();
    if next.load(Ordering::Relaxed) >= users.len() {
        eprintln!("  (cold phase ran out of fresh users after {took:.1} s)");
    }
    f.cold_per_s = lat.len() as f64 / took;
    f.cold_p50 = pct(&lat, 0.5).as_secs_f64() * 1e3;
    f.cold_p99 = pct(&lat, 0.99).as_secs_f64() * 1e3;
    eprintln!(
        "round {round}, {n} replicas: {:.0} writes/s (p50 {:.2} p99 {:.2} ms); steady {:.0}/s commit p50 {:.2} ms, \
         listener backends {:.1} µs/write, replica {:.1} µs/write; lag local p50 {:.2} ms, remote p50 {:.2} p99 {:.2} worst {:.2} ms; \
         cold {:.0}/s p50 {:.2} p99 {:.2} ms",
        f.writes_per_s,
        f.write_p50,
        f.write_p99,
        f.steady_writes,
        f.steady_commit_p50,
        f.listener_backend_us_per_write,
        f.replica_us_per_write,
        f.lag_local_p50,
        f.lag_remote_p50,
        f.lag_remote_p99,
        f.lag_worst_replica_p99,
        f.cold_per_s,
        f.cold_p50,
        f.cold_p99
    );
    drop(replicas);
    f
}

fn cell(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "—".to_owned()
    } else {
        format!("{v:.digits$}")
    }
}

pub async fn scaling(args: ScalingArgs) {
    let tenants = Arc::new(population(&args.url).await);
    let users: usize = tenants.iter().map(|t| t.2).sum();
    assert!(
        tenants.iter().any(|t| t.0 == "lag") && tenants.iter().any(|t| t.0.starts_with('t')),
        "seed the database first (authz-bench seed)"
    );
    let mut runs: Vec<Vec<RunFigures>> = vec![Vec::new(); args.replicas.len()];
    for round in 0..args.rounds {
        for (i, &n) in args.replicas.iter().enumerate() {
            runs[i].push(run_once(&args, n, &tenants, round).await);
        }
    }
    let med = |rs: &[RunFigures], f: fn(&RunFigures) -> f64| median(rs.iter().map(f).collect());
    let base = med(&runs[0], |r| r.writes_per_s);
    let base_cold = med(&runs[0], |r| r.cold_per_s);
    let mut rows = String::new();
    for (rs, n) in runs.iter().zip(&args.replicas) {
        rows.push_str(&format!(
            "| {n} | {} | {}× | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}× | {} |\n",
            cell(med(rs, |r| r.writes_per_s), 0),
            cell(med(rs, |r| r.writes_per_s) / base, 2),
            cell(med(rs, |r| r.write_p50), 2),
            cell(med(rs, |r| r.steady_commit_p50), 2),
            cell(med(rs, |r| r.listener_backend_us_per_write), 1),
            cell(med(rs, |r| r.replica_us_per_write), 1),
            cell(med(rs, |r| r.lag_local_p50), 2),
            cell(med(rs, |r| r.lag_remote_p50), 2),
            cell(med(rs, |r| r.lag_remote_p99), 2),
            cell(med(rs, |r| r.lag_worst_replica_p99), 2),
            cell(med(rs, |r| r.cold_per_s), 0),
            cell(med(rs, |r| r.cold_p99), 2),
            cell(med(rs, |r| r.cold_per_s) / base_cold, 2),
            cell(med(rs, |r| r.steady_writes), 0),
        ));
    }
    let text = format!(
        "### Replicas on one Postgres\n\n\
         `authz-bench scaling`: N authzd processes (release build, `--db-pool-size {pool}`, each \
         with its own listener) on one Postgres holding {users} seeded users; {rounds} \
         interleaved rounds over the replica counts, a fresh set of processes for every run, \
         medians shown. Phases of {secs} s: write throughput ({writers} writers spread over the \
         replicas, grants and revokes on random users of random tenants); NOTIFY cost (a steady \
         {rate} writes/s through replica 0 and nothing else: CPU time of every listener's \
         Postgres backend per write, summed, and of each other replica per write, from \
         `/proc/PID/task/*/schedstat`); invalidation lag under that steady rate ({lag} revokes \
         per run through replica 0, each of a permission every replica had cached as allowed, \
         every replica polled until it denies, timed from the revoke's acknowledgement; \
         \"local\" is replica 0, which invalidates on its own commit, the others are \
         \"remote\"); cold-load capacity ({cold} callers spread over the replicas, each check a \
         user no replica has loaded, so each is a Postgres read).\n\n\
         | replicas | writes/s | vs 1 | write p50 (ms) | commit p50 at {rate}/s (ms) | listener backends CPU per write (µs) | CPU per write in each other replica (µs) | lag local p50 (ms) | lag remote p50 (ms) | lag remote p99 (ms) | worst replica's p99 (ms) | cold checks/s | cold p99 (ms) | cold vs 1 | steady writes/s done |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n{rows}\n\
         Every process (replicas, Postgres, the load) shares the machine's cores, so the columns \
         show how the costs move with the replica count on one box, not what separate machines \
         would reach.\n\n",
        pool = args.pool_size,
        rounds = args.rounds,
        secs = args.secs,
        writers = args.writers,
        rate = args.write_rate,
        lag = args.lag_samples,
        cold = args.cold_callers,
    );
    append(&args.report, &text);
}

pub async fn large(args: LargeArgs) {
    let tenants = population(&args.url).await;
    let users: usize = tenants.iter().map(|t| t.2).sum();
    let db_bytes: i64 = connect(&args.url)
        .await
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .unwrap()
        .get(0);
    let replicas = Replicas::start(
        &args.authzd,
        &args.url,
        1,
        &["--cache-max-mib", "65536", "--cache-ttl", "60m"],
    )
    .await;
    let pid = replicas.pids()[0];
    let mut authz = replicas.authz(0);

    // Cold checks, one at a time, users never checked.
    let regular: Vec<_> = tenants.iter().filter(|t| t.0.starts_with('t')).collect();
    let mut rng = Rng(0x1a26e);
    let mut seen = HashSet::new();
    let mut cold = Vec::new();
    while cold.len() < args.samples {
        let (t, p, c) = regular[rng.next(regular.len())];
        let u = format!("{p}{}", rng.next(*c));
        if !seen.insert((t.clone(), u.clone())) {
            continue;
        }
        let s = Instant::now();
        authz.check(check(t, &u, "view_reports")).await.unwrap();
        cold.push(s.elapsed());
    }
    cold.sort();

    // Warm every user through the API: BatchCheck, one item per user, up to 1,000 users of
    // one tenant per batch, 4 batches in flight.
    let rss_before = rss(pid);
    let limit = args.warm_users.unwrap_or(usize::MAX);
    let mut batches = Vec::new();
    let mut planned = 0;
    'plan: for (t, p, c) in &tenants {
        let mut i = 0;
        while i < *c {
            let take = (c - i).min(1000).min(limit - planned);
            if take == 0 {
                break 'plan;
            }
            batches.push((t.clone(), *p, i, i + take));
            planned += take;
            i += take;
        }
    }
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (batches, next, mut authz) = (batches.clone(), next.clone(), replicas.authz(0));
            tokio::spawn(async move {
                while let Some((t, p, from, to)) =
                    batches.get(next.fetch_add(1, Ordering::Relaxed)).cloned()
                {
                    let results = authz
                        .batch_check(pb::BatchCheckRequest {
                            tenant_id: t,
                            items: (from..to)
                                .map(|u| pb::BatchCheckItem {
                                    user_id: format!("{p}{u}"),
                                    target: Some(pb::batch_check_item::Target::Permission(
                                        "view_reports".into(),
                                    )),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .results;
                    assert!(results.iter().all(|r| r.error.is_none()));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let warm = started.elapsed();
    let rss_after = rss(pid);
    let per_user = rss_after.saturating_sub(rss_before) as f64 / planned.max(1) as f64;
    eprintln!(
        "large: {users} users, cold p50 {:?} p99 {:?}; warmed {planned} in {warm:?}; rss {rss_before} -> {rss_after}",
        pct(&cold, 0.5),
        pct(&cold, 0.99)
    );
    let text = format!(
        "| {users} | {:.1} GB | {} | {} | {} | {planned} | {:.1} s | {:.0} | {:.0} MiB | {per_user:.0} B |\n",
        db_bytes as f64 / 1e9,
        cold.len(),
        ms(pct(&cold, 0.5)),
        ms(pct(&cold, 0.99)),
        warm.as_secs_f64(),
        planned as f64 / warm.as_secs_f64(),
        rss_after as f64 / (1 << 20) as f64,
    );
    append(&args.report, &text);
}

/// The header of the large-data-set table; `large` appends one row per run.
pub const LARGE_HEADER: &str = "### Large data set: cold checks, warm-up, memory\n\n\
`authz-bench large` on the database as seeded (one row per seeded size): one authzd process \
(release build, cache bounded at 64 GiB and its TTL at an hour, so nothing is evicted or \
expires during the warm-up); cold checks one at a time, \
each a user never checked; then every user warmed through the API (BatchCheck, one item per \
user, up to 1,000 users of one tenant per batch, 4 batches in flight), and the process's \
resident memory after it (the growth per warmed user, end to end: cache, allocator and all).\n\n\
| users | database | cold samples | cold p50 | cold p99 | users warmed | warm-up time | users/s | authzd resident after | resident growth per user |\n\
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
