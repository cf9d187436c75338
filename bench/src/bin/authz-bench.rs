//! The benchmark harness: seeds the large Postgres data set with COPY, measures the Postgres
//! paths, the memory per cached user and the full in-process path, serves the bare tonic echo
//! ceiling, and drives h2load against authzd, the echo server and Cerbos. Each measuring command
//! appends a Markdown section to `--report`; `scripts/bench.sh` runs them all and assembles
//! `docs/benchmarks.md`.
//!
//! Longer than most: one command per measurement, each a short function over the shared seed,
//! server and report helpers; splitting them would only scatter those helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz::app::{Authz, CheckInput};
use authz::grpc::pb;
use authz::store::Consistency;
use authz::store::cached::{CacheOptions, CachedStore};
use authz::store::postgres::{PgOptions, PostgresStore};
use authz_bench::{MAESTRA, Rng};
use authz_core::Catalog;
use clap::{Parser, Subcommand};
use futures_util::SinkExt;
use prost::Message;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod echo {
    tonic::include_proto!("bench.v1");
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the bare tonic unary echo server (the framework's ceiling).
    Echo {
        #[arg(long, default_value = "127.0.0.1:50061")]
        listen: String,
    },
    /// Load the large data set into a database with COPY (replacing what is there).
    Seed {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 10_000)]
        tenants: usize,
        #[arg(long, default_value_t = 1_000_000)]
        users: usize,
        /// Members of the big tenant's one large group.
        #[arg(long, default_value_t = 100_000)]
        big_group: usize,
    },
    /// Cold checks, admin writes, invalidation lag between two replicas, a large group edit.
    Postgres {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        #[arg(long)]
        report: PathBuf,
    },
    /// Resident memory per cached user, and the full in-process check path, at each size.
    Inproc {
        #[arg(long)]
        url: String,
        #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 1_000_000)]
        checks: usize,
        #[arg(long)]
        report: PathBuf,
    },
    /// Resident bytes per entry of a bare moka cache configured like the user cache (run as
    /// its own process by `inproc`, so no freed memory flatters it).
    MokaFloor {
        #[arg(long, default_value_t = 1_000_000)]
        entries: usize,
    },
    /// Resident memory per cached user end to end: a fresh database seeded through the admin
    /// API, a Postgres-backed authzd warmed by BatchCheck, its resident memory read from /proc.
    MemoryApi {
        #[arg(long)]
        authzd: PathBuf,
        /// Any database on the server; the measurement creates (and drops) its own.
        #[arg(long)]
        url: String,
        #[arg(long, value_delimiter = ',', default_value = "100000")]
        sizes: Vec<usize>,
        /// Use the data set already in `url` (loaded by `seed`) instead of seeding through the
        /// API: the first users of it, in (tenant, user) order.
        #[arg(long)]
        seeded: bool,
        #[arg(long)]
        report: PathBuf,
    },
    /// 1, 2, 4, 8 authzd processes on one Postgres: write throughput, NOTIFY cost,
    /// invalidation lag at each replica, cold-load capacity (`authz_bench::scaling`).
    Scaling(authz_bench::scaling::ScalingArgs),
    /// The data set as seeded: cold checks, warm-up through the API, resident memory.
    Large(authz_bench::scaling::LargeArgs),
    /// Prints the header of the table `large` appends rows to.
    LargeHeader,
    /// h2load against authzd, the echo server and Cerbos, side by side.
    Grpc {
        #[arg(long)]
        authzd: PathBuf,
        #[arg(long)]
        url: String,
        #[arg(long)]
        cerbos: Option<PathBuf>,
        /// Seconds per h2load run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Pairs of runs (stubs, client; which goes first alternating) for "Check through the
        /// client vs raw tonic stubs".
        #[arg(long, default_value_t = 30)]
        client_pairs: usize,
        /// Seconds per run of those pairs.
        #[arg(long, default_value_t = 2)]
        client_secs: u64,
        /// Measure only the client against the stubs (no h2load, no Cerbos).
        #[arg(long)]
        client_only: bool,
        #[arg(long)]
        report: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().unwrap();
    match cli.command {
        Cmd::Echo { listen } => rt.block_on(serve_echo(listen)),
        Cmd::Seed {
            url,
            tenants,
            users,
            big_group,
        } => rt.block_on(seed(&url, tenants, users, big_group)),
        Cmd::Postgres {
            url,
            samples,
            report,
        } => rt.block_on(postgres_paths(&url, samples, &report)),
        Cmd::Inproc {
            url,
            sizes,
            checks,
            report,
        } => rt.block_on(inproc(&url, &sizes, checks, &report)),
        Cmd::Scaling(args) => rt.block_on(authz_bench::scaling::scaling(args)),
        Cmd::Large(args) => rt.block_on(authz_bench::scaling::large(args)),
        Cmd::LargeHeader => print!("{}", authz_bench::scaling::LARGE_HEADER),
        Cmd::MokaFloor { entries } => println!("{:.0}", moka_floor(entries)),
        Cmd::MemoryApi {
            authzd,
            url,
            sizes,
            seeded,
            report,
        } => memory_api(&authzd, &url, &sizes, seeded, &report),
        Cmd::Grpc {
            authzd,
            url,
            cerbos,
            duration,
            rounds,
            client_pairs,
            client_secs,
            client_only,
            report,
        } => grpc(
            &authzd,
            &url,
            cerbos.as_deref(),
            Load {
                secs: duration,
                rounds,
                client_pairs,
                client_secs,
                client_only,
            },
            &report,
        ),
    }
}

fn append(report: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(report)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

// ---- Echo ----

struct EchoServer;

#[tonic::async_trait]
impl echo::echo_server::Echo for EchoServer {
    async fn unary(
        &self,
        request: tonic::Request<echo::EchoRequest>,
    ) -> Result<tonic::Response<echo::EchoReply>, tonic::Status> {
        Ok(tonic::Response::new(echo::EchoReply {
            payload: request.into_inner().payload,
        }))
    }
}

/// Built the way authzd's server is: tonic on a TCP listener with Nagle off.
async fn serve_echo(listen: String) {
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(echo::echo_server::EchoServer::new(EchoServer))
        .serve_with_incoming(incoming)
        .await
        .unwrap();
}

// ---- Seeding ----

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

async fn copy(client: &tokio_postgres::Client, sql: &str, rows: impl Iterator<Item = String>) {
    let sink = client.copy_in(sql).await.unwrap();
    futures_util::pin_mut!(sink);
    let mut buf = String::with_capacity(1 << 22);
    let mut n = 0usize;
    for row in rows {
        buf.push_str(&row);
        buf.push('\n');
        n += 1;
        if buf.len() > (1 << 22) {
            sink.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                .await
                .unwrap();
        }
    }
    if !buf.is_empty() {
        sink.send(bytes::Bytes::from(buf)).await.unwrap();
    }
    sink.finish().await.unwrap();
    eprintln!("  {n} rows: {sql}");
}

/// The data set: tenant `big` with `big_group` users all in its group `g0`, tenant `lag` with
/// 200 users in no group (for the invalidation-lag probe), and the other tenants sharing the
/// rest of the users. Every tenant has 10 custom groups of 5–15 permissions; every user is in
/// one system group and two custom groups; one in five has direct grants.
async fn seed(url: &str, tenants: usize, users: usize, big_group: usize) {
    let started = Instant::now();
    let catalog = Arc::new(Catalog::from_toml(MAESTRA).unwrap());
    let pg = PostgresStore::new(catalog.clone(), &PgOptions::new(url)).unwrap();
    pg.migrate().await.unwrap();
    let client = connect(url).await;
    client
        .batch_execute("TRUNCATE tenants, changes CASCADE")
        .await
        .unwrap();
    let groups = authz_bench::visible_groups(&catalog);
    let perms: Vec<String> = authz_bench::visible_permissions(&catalog)
        .into_iter()
        .map(|p| catalog.key(p).to_owned())
        .filter(|k| k != LAG_PERM)
        .collect();
    let regular = tenants.saturating_sub(2).max(1);
    let per_tenant = users.saturating_sub(big_group + 200) / regular;
    let mut names: Vec<(String, usize)> = vec![("big".into(), big_group), ("lag".into(), 200)];
    names.extend((0..regular).map(|i| (format!("t{i}"), per_tenant)));

    let rows = names.iter().map(|(t, _)| format!("{t}\tTenant {t}\t100"));
    copy(
        &client,
        "COPY tenants (tenant_id, display_name, revision) FROM STDIN",
        rows,
    )
    .await;
    let mut rng = Rng(0x5eed);
    let mut group_rows = Vec::new();
    for (t, _) in &names {
        for g in 0..10 {
            let n = 5 + rng.next(11);
            let mut ps: Vec<&str> = (0..n)
                .map(|_| perms[rng.next(perms.len())].as_str())
                .collect();
            ps.sort();
            ps.dedup();
            group_rows.push(format!("{t}\tg{g}\tGroup {g}\t{{{}}}", ps.join(",")));
        }
    }
    copy(
        &client,
        "COPY groups (tenant_id, group_key, name, permissions) FROM STDIN",
        group_rows.into_iter(),
    )
    .await;
    let mut rng = Rng(0xfeed);
    let user_rows = names.iter().flat_map(|(t, n)| {
        let t = t.clone();
        (0..*n).map(move |u| (t.clone(), u))
    });
    let mut direct = Vec::new();
    let mut member_rows = Vec::new();
    for (t, u) in user_rows {
        let prefix = if t == "big" { "b" } else { "u" };
        let id = format!("{prefix}{u}");
        let d = if t != "lag" && rng.next(5) == 0 {
            let mut ps: Vec<&str> = (0..1 + rng.next(3))
                .map(|_| perms[rng.next(perms.len())].as_str())
                .collect();
            ps.sort();
            ps.dedup();
            ps.join(",")
        } else {
            String::new()
        };
        direct.push(format!("{t}\t{id}\t{{{d}}}"));
        if t == "lag" {
            continue;
        }
        let system = &groups[rng.next(groups.len())];
        member_rows.push(format!("{t}\t{id}\t{system}"));
        let a = 1 + rng.next(9);
        let b = if t == "big" {
            0
        } else {
            (a + 1 + rng.next(8)) % 10
        };
        member_rows.push(format!("{t}\t{id}\tg{a}"));
        member_rows.push(format!("{t}\t{id}\tg{b}"));
    }
    member_rows.sort();
    member_rows.dedup();
    copy(
        &client,
        "COPY users (tenant_id, user_id, direct) FROM STDIN",
        direct.into_iter(),
    )
    .await;
    copy(
        &client,
        "COPY memberships (tenant_id, user_id, group_key) FROM STDIN",
        member_rows.into_iter(),
    )
    .await;
    client.batch_execute("ANALYZE").await.unwrap();
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    eprintln!(
        "seeded in {:.1?}: {} tenants, {} users, {} custom groups, {} memberships",
        started.elapsed(),
        count("SELECT count(*) FROM tenants").await,
        count("SELECT count(*) FROM users").await,
        count("SELECT count(*) FROM groups").await,
        count("SELECT count(*) FROM memberships").await,
    );
}

/// The permission the lag probe grants and revokes: no custom group holds it, and the probe's
/// users are in no group.
const LAG_PERM: &str = "delete_customers";

// ---- Replicas in this process ----

struct Replica {
    cached: Arc<CachedStore>,
    authz: pb::authz_service_client::AuthzServiceClient<tonic::transport::Channel>,
    admin: pb::admin_service_client::AdminServiceClient<tonic::transport::Channel>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn store(url: &str, cache_bytes: u64) -> (Arc<Catalog>, Arc<CachedStore>) {
    let catalog = Arc::new(Catalog::from_toml(MAESTRA).unwrap());
    let pg = Arc::new(PostgresStore::new(catalog.clone(), &PgOptions::new(url)).unwrap());
    let cached = Arc::new(CachedStore::start(
        pg,
        catalog.clone(),
        CacheOptions {
            max_bytes: cache_bytes,
            ..CacheOptions::default()
        },
    ));
    while !cached.listener().connected() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (catalog, cached)
}

async fn replica(url: &str) -> Replica {
    let (catalog, cached) = store(url, 256 << 20).await;
    let app = Arc::new(Authz::new(catalog, cached.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(authz::server::run(
        listener,
        app,
        authz::server::ServerOptions::default(),
        async {
            let _ = rx.await;
        },
    ));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Replica {
        cached,
        authz: pb::authz_service_client::AuthzServiceClient::new(channel.clone()),
        admin: pb::admin_service_client::AdminServiceClient::new(channel),
        _stop: tx,
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

async fn tenants_of(url: &str) -> Vec<(String, i64)> {
    let client = connect(url).await;
    client
        .query(
            "SELECT tenant_id, (SELECT count(*) FROM users u WHERE u.tenant_id = t.tenant_id) \
             FROM tenants t WHERE tenant_id LIKE 't%' ORDER BY tenant_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn postgres_paths(url: &str, samples: usize, report: &Path) {
    let a = replica(url).await;
    let b = replica(url).await;
    let tenants = tenants_of(url).await;
    assert!(!tenants.is_empty(), "seed the database first");
    let mut rng = Rng(0xc01d);
    let pick = |rng: &mut Rng| {
        let (t, n) = &tenants[rng.next(tenants.len())];
        (t.clone(), format!("u{}", rng.next(*n as usize)))
    };

    // Cold checks: users this replica has never loaded.
    let mut authz = a.authz.clone();
    let mut cold = Vec::with_capacity(samples);
    let mut seen = std::collections::HashSet::new();
    while cold.len() < samples {
        let (t, u) = pick(&mut rng);
        if !seen.insert((t.clone(), u.clone())) {
            continue;
        }
        let start = Instant::now();
        authz.check(check(&t, &u, "view_reports")).await.unwrap();
        cold.push(start.elapsed());
    }
    cold.sort();
    // Warm checks over the same users, for contrast.
    let mut warm = Vec::with_capacity(samples);
    for (t, u) in seen.iter().take(samples) {
        let start = Instant::now();
        authz.check(check(t, u, "view_reports")).await.unwrap();
        warm.push(start.elapsed());
    }
    warm.sort();

    // Admin writes.
    let mut admin = a.admin.clone();
    let mut writes = Vec::new();
    for i in 0..samples / 4 {
        let (t, u) = pick(&mut rng);
        let start = Instant::now();
        let req = pb::GrantPermissionsRequest {
            tenant_id: t,
            user_id: u,
            permissions: vec![
                if i % 2 == 0 {
                    "view_flows"
                } else {
                    "view_reports"
                }
                .into(),
            ],
            ..Default::default()
        };
        admin.grant_permissions(req).await.unwrap();
        writes.push(start.elapsed());
    }
    writes.sort();

    // Invalidation lag: a revoke through A, then B polled until it denies.
    let mut bz = b.authz.clone();
    let (mut lag_ack, mut lag_start) = (Vec::new(), Vec::new());
    for i in 0..200.min(samples) {
        let user = format!("u{i}");
        admin
            .grant_permissions(pb::GrantPermissionsRequest {
                tenant_id: "lag".into(),
                user_id: user.clone(),
                permissions: vec![LAG_PERM.into()],
                ..Default::default()
            })
            .await
            .unwrap();
        while !bz
            .check(check("lag", &user, LAG_PERM))
            .await
            .unwrap()
            .into_inner()
            .allowed
        {}
        let sent = Instant::now();
        admin
            .revoke_permissions(pb::RevokePermissionsRequest {
                tenant_id: "lag".into(),
                user_id: user.clone(),
                permissions: vec![LAG_PERM.into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let acked = Instant::now();
        while bz
            .check(check("lag", &user, LAG_PERM))
            .await
            .unwrap()
            .into_inner()
            .allowed
        {}
        lag_ack.push(acked.elapsed());
        lag_start.push(sent.elapsed());
    }
    lag_ack.sort();
    lag_start.sort();

    // Editing the 100,000-member group: one UpdateGroup, end to end, and B's invalidations.
    let members: i64 = connect(url)
        .await
        .query_one(
            "SELECT count(*) FROM memberships WHERE tenant_id = 'big' AND group_key = 'g0'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        bz.check(check("big", "b7", "view_reports"))
            .await
            .unwrap()
            .into_inner()
            .revision
            .parse::<u64>()
            .is_ok()
    );
    let mut edits = Vec::new();
    let mut invalidations = Vec::new();
    for i in 0..10 {
        let perms = if i % 2 == 0 {
            vec!["view_reports".to_owned(), LAG_PERM.to_owned()]
        } else {
            vec!["view_reports".to_owned()]
        };
        let before = b
            .cached
            .stats()
            .invalidations
            .load(std::sync::atomic::Ordering::Relaxed);
        let start = Instant::now();
        admin
            .update_group(pb::UpdateGroupRequest {
                tenant_id: "big".into(),
                group_key: "g0".into(),
                group: Some(pb::Group {
                    permissions: perms,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["permissions".into()],
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        edits.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
        invalidations.push(
            b.cached
                .stats()
                .invalidations
                .load(std::sync::atomic::Ordering::Relaxed)
                - before,
        );
    }
    edits.sort();
    let a_stats = a.cached.stats();
    eprintln!(
        "A: {} loads, {} hits",
        a_stats.loads.load(std::sync::atomic::Ordering::Relaxed),
        a_stats.hits.load(std::sync::atomic::Ordering::Relaxed)
    );
    let text = format!(
        "### Postgres paths (two replicas in one process, gRPC on loopback)\n\n\
         | Measurement | samples | p50 | p99 | target |\n|---|---:|---:|---:|---|\n\
         | Cold check (cache miss) | {} | {} | {} | p99 ≤ 2 ms |\n\
         | Same users, warm (cache hit) | {} | {} | {} | |\n\
         | Admin write (GrantPermissions) | {} | {} | {} | |\n\
         | Invalidation lag: A acknowledges the revoke → B denies | {} | {} | {} | p99 ≤ 10 ms |\n\
         | Invalidation lag: revoke sent to A → B denies | {} | {} | {} | |\n\
         | Edit a {members}-member group (UpdateGroup, end to end) | {} | {} | {} (max) | ≤ 50 ms |\n\n\
         Invalidations on replica B per edit of the {members}-member group: {:?} (one group \
         entry, no per-member work).\n\n",
        cold.len(),
        ms(pct(&cold, 0.5)),
        ms(pct(&cold, 0.99)),
        warm.len(),
        ms(pct(&warm, 0.5)),
        ms(pct(&warm, 0.99)),
        writes.len(),
        ms(pct(&writes, 0.5)),
        ms(pct(&writes, 0.99)),
        lag_ack.len(),
        ms(pct(&lag_ack, 0.5)),
        ms(pct(&lag_ack, 0.99)),
        lag_start.len(),
        ms(pct(&lag_start, 0.5)),
        ms(pct(&lag_start, 0.99)),
        edits.len(),
        ms(pct(&edits, 0.5)),
        ms(pct(&edits, 1.0)),
        invalidations,
    );
    print!("{text}");
    append(report, &text);
}

// ---- Memory and the full in-process path ----

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resident bytes per entry of a moka cache configured like the user cache (weigher, the same
/// hasher, no per-entry expiry) holding `n` keys shaped like ours and a trivial value: the
/// floor any one-entry-per-user moka cache pays before it stores a single grant.
fn moka_floor(n: usize) -> f64 {
    let keys: Vec<String> = (0..n)
        .map(|i| format!("t{:05}\0u{i}", i % 10_000))
        .collect();
    let before = rss();
    let cache: moka::sync::Cache<String, std::sync::Arc<u64>, ahash::RandomState> =
        moka::sync::Cache::builder()
            .max_capacity(u64::MAX)
            .weigher(|_: &String, _: &std::sync::Arc<u64>| 100)
            .build_with_hasher(ahash::RandomState::new());
    for k in &keys {
        cache.insert(k.clone(), std::sync::Arc::new(0));
    }
    cache.run_pending_tasks();
    let per_entry = rss().saturating_sub(before) as f64 / n as f64;
    drop(cache);
    per_entry
}

async fn inproc(url: &str, sizes: &[usize], checks: usize, report: &Path) {
    let mut rows = String::new();
    for &n in sizes {
        let before = rss();
        let (catalog, cached) = store(url, 16 << 30).await;
        cached.warm_groups().await.unwrap();
        let groups_before = rss();
        let warmed = cached.warm_users(n).await.unwrap();
        let (entries, weight) = cached.size();
        let after = rss();
        let per_user = after.saturating_sub(groups_before) as f64 / warmed.max(1) as f64;
        // The warmed users, as check inputs, in a shuffled order.
        let client = connect(url).await;
        let ids: Vec<(String, String)> = client
            .query(
                "SELECT tenant_id, user_id FROM users ORDER BY tenant_id, user_id LIMIT $1",
                &[&(warmed as i64)],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let app = Authz::new(catalog.clone(), cached.clone());
        let mut rng = Rng(0xabcd ^ n as u64);
        let perms = authz_bench::visible_permissions(&catalog);
        let inputs: Vec<(authz::app::TenantId, CheckInput)> = (0..4096)
            .map(|_| {
                let (t, u) = &ids[rng.next(ids.len())];
                let p = catalog.key(perms[rng.next(perms.len())]).to_owned();
                (
                    authz::app::TenantId::parse("tenant_id", t.clone()).unwrap(),
                    CheckInput {
                        user_id: u.clone(),
                        target: Some(authz::app::TargetInput::Permission(p)),
                        resource: None,
                        context: Default::default(),
                        explain: false,
                    },
                )
            })
            .collect();
        // One pass loads any group entries the warm-up did not reach.
        for (t, i) in &inputs {
            app.check(t, i, Consistency::MinimizeLatency).await.unwrap();
        }
        let loads_before = cached
            .stats()
            .loads
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut runs = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let mut allowed = 0usize;
            for k in 0..checks {
                let (t, i) = &inputs[k % inputs.len()];
                let (c, _) = app.check(t, i, Consistency::MinimizeLatency).await.unwrap();
                allowed += usize::from(c.decision.allowed);
            }
            std::hint::black_box(allowed);
            runs.push(start.elapsed().as_nanos() as f64 / checks as f64);
        }
        runs.sort_by(f64::total_cmp);
        let loads = cached
            .stats()
            .loads
            .load(std::sync::atomic::Ordering::Relaxed)
            - loads_before;
        eprintln!(
            "{n}: warmed {warmed}, {entries} entries, weight {weight}, rss {before} -> {after}, \
             {per_user:.0} B/user, check {:.0} ns (runs {runs:?}), {loads} loads while timed",
            runs[2]
        );
        rows.push_str(&format!(
            "| {n} | {warmed} | {:.0} ns | {:.0} ns | {:.0} B | {:.0} B |\n",
            runs[2],
            runs[0],
            per_user,
            weight as f64 / entries.max(1) as f64
        ));
        drop(app);
        drop(cached);
    }
    // In a process of its own: this one's freed memory would flatter it.
    let floor_n = sizes.iter().copied().max().unwrap_or(1000);
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["moka-floor", "--entries", &floor_n.to_string()])
        .output()
        .unwrap();
    let floor: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eprintln!("moka floor: {floor:.0} B per entry at {floor_n} entries");
    let text = format!(
        "### Full in-process path and memory per cached user\n\n\
         `Authz::check` on a `CachedStore` warmed from the seeded database (`CachedStore::warm`), \
         {checks} checks per run over 4,096 random (user, permission) pairs of the warmed users, \
         5 runs; resident memory measured before and after the warm-up.\n\n\
         | cached users | warmed | median per check | best run | resident bytes per cached user | cache's own estimate |\n\
         |---:|---:|---:|---:|---:|---:|\n{rows}\n\
         Targets: ≤ 1 µs per check at 100k cached users; ≤ 256 bytes of resident memory per cached user.\n\n\
         For scale, measured in a process of its own: a moka cache configured like the user \
         cache (weigher, same hasher, no per-entry expiry) holding {floor_n} keys shaped like ours, each with an \
         8-byte value, takes **{floor:.0} bytes per entry** resident, before any grant is stored.\n\n"
    );
    print!("{text}");
    append(report, &text);
}

// ---- gRPC load: h2load against authzd, echo and Cerbos ----

fn frame(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Cerbos's CheckResources request, field for field (cerbos.request.v1).
mod cerbos {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckResourcesRequest {
        #[prost(string, tag = "1")]
        pub request_id: String,
        #[prost(message, optional, tag = "3")]
        pub principal: Option<Principal>,
        #[prost(message, repeated, tag = "4")]
        pub resources: Vec<ResourceEntry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Principal {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub policy_version: String,
        #[prost(string, repeated, tag = "3")]
        pub roles: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceEntry {
        #[prost(string, repeated, tag = "1")]
        pub actions: Vec<String>,
        #[prost(message, optional, tag = "2")]
        pub resource: Option<Resource>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(string, tag = "1")]
        pub kind: String,
        #[prost(string, tag = "2")]
        pub policy_version: String,
        #[prost(string, tag = "3")]
        pub id: String,
    }
}

struct Target {
    name: &'static str,
    url: String,
    body: PathBuf,
    /// Decisions per request.
    decisions: usize,
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends the body once with curl (a real HTTP/2 client) and returns the `grpc-status` trailer.
fn grpc_status(url: &str, body: &Path) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "--http2-prior-knowledge",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
        ])
        .arg(format!("@{}", body.display()))
        .args(["-D", "-", "-o", "/dev/null", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("grpc-status:").map(|s| s.trim().to_owned()))
        .unwrap_or_else(|| "missing".into())
}

fn h2load(t: &Target, clients: u32, streams: u32, secs: u64, dir: &Path) -> Run {
    let log = dir.join(format!("{}-{clients}-{streams}.log", t.name));
    let _ = std::fs::remove_file(&log);
    let out = Command::new("h2load")
        .args(["-D", &secs.to_string(), "--warm-up-time", "1"])
        .args([
            "-c",
            &clients.to_string(),
            "-m",
            &streams.to_string(),
            "-t",
            "1",
        ])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("-d")
        .arg(&t.body)
        .arg("--log-file")
        .arg(&log)
        .arg(&t.url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("h2load output:\n{text}"));
    let failed = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        failed.contains(" 0 failed") && failed.contains(" 0 errored"),
        "{}: {failed}",
        t.name
    );
    // Log lines: start time (µs), status, duration (µs).
    let mut lat: Vec<Duration> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 3 && f[1] == "200")
                .then(|| f[2].trim().parse::<u64>().ok())
                .flatten()
        })
        .map(Duration::from_micros)
        .collect();
    lat.sort();
    Run {
        rps,
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How long the gRPC load runs.
struct Load {
    secs: u64,
    rounds: usize,
    client_pairs: usize,
    client_secs: u64,
    client_only: bool,
}

fn grpc(authzd: &Path, url: &str, cerbos: Option<&Path>, load: Load, report: &Path) {
    let (secs, rounds) = (load.secs, load.rounds);
    let dir = std::env::temp_dir().join(format!("authz-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = Catalog::from_toml(MAESTRA).unwrap();

    // authzd on the seeded database.
    let port = free_port();
    let _authzd = Killed(
        Command::new(authzd)
            .args([
                "--database-url",
                url,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            // Start-up reads the 1M-user data set; a loaded machine can take longer than 5 s.
            .args(["--db-statement-timeout", "60s"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The bare tonic echo server.
    let echo_port = free_port();
    let _echo = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args(["echo", "--listen", &format!("127.0.0.1:{echo_port}")])
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    wait_port(echo_port);

    // A tenant's user with its groups, for every target.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tenant, user, user_groups) = rt.block_on(async {
        let client = connect(url).await;
        let row = client
            .query_one(
                "SELECT tenant_id, user_id, ARRAY(SELECT group_key FROM memberships m \
                 WHERE m.tenant_id = u.tenant_id AND m.user_id = u.user_id ORDER BY 1) \
                 FROM users u WHERE tenant_id = 't1' AND user_id = 'u1'",
                &[],
            )
            .await
            .unwrap();
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, Vec<String>>(2),
        )
    });
    let system: Vec<String> = user_groups
        .iter()
        .filter(|g| catalog.group(g).is_some())
        .cloned()
        .collect();
    // A permission the user holds through its system group, so every target answers "allow".
    let perm_owned = catalog
        .group(&system[0])
        .and_then(|g| g.grants.permissions.iter().next())
        .map(|p| catalog.key(p).to_owned())
        .unwrap();
    let perm = perm_owned.as_str();
    let check_req = check(&tenant, &user, perm);
    let batch_req = pb::BatchCheckRequest {
        tenant_id: tenant.clone(),
        items: (0..100)
            .map(|i| pb::BatchCheckItem {
                user_id: format!("u{}", i % 50),
                target: Some(pb::batch_check_item::Target::Permission(
                    catalog.permissions()[i % 150].key.clone(),
                )),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let write = |name: &str, bytes: Vec<u8>| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut targets = vec![
        Target {
            name: "echo",
            url: format!("http://127.0.0.1:{echo_port}/bench.v1.Echo/Unary"),
            body: write(
                "echo.bin",
                frame(&echo::EchoRequest {
                    payload: check_req.encode_to_vec(),
                }),
            ),
            decisions: 1,
        },
        Target {
            name: "authz-check",
            url: format!("http://127.0.0.1:{port}/authz.v1.AuthzService/Check"),
            body: write("check.bin", frame(&check_req)),
            decisions: 1,
        },
        Target {
            name: "authz-batch100",
            url: format!("http://127.0.0.1:{port}/authz.v1.AuthzService/BatchCheck"),
            body: write("batch.bin", frame(&batch_req)),
            decisions: 100,
        },
    ];

    // authzd on its embedded store, serving the same user, beside the Postgres-backed one.
    let (_embedded, embedded_port) = embedded_authzd(authzd, port, &tenant, &user);
    targets.insert(
        2,
        Target {
            name: "authz-check-embedded",
            url: format!("http://127.0.0.1:{embedded_port}/authz.v1.AuthzService/Check"),
            body: dir.join("check.bin"),
            decisions: 1,
        },
    );

    // Cerbos: groups as roles in one resource policy, direct grants as principal policies
    // (authz_bench::peers), on the benchmarked tenant; disk store.
    let cerbos = cerbos.filter(|_| !load.client_only);
    let modelled = cerbos.map(|_| {
        rt.block_on(async { authz_bench::peers::Tenant::load(&connect(url).await, &tenant).await })
    });
    let _cerbos = cerbos.map(|bin| {
        let modelled = modelled.as_ref().unwrap();
        let policies = dir.join("policies");
        let principals = authz_bench::peers::write_cerbos_policies(&catalog, modelled, &policies);
        eprintln!(
            "cerbos: {} users of tenant {tenant}, {principals} principal policies",
            modelled.users.len()
        );
        let (http, grpc) = (free_port(), free_port());
        let config = dir.join("cerbos.yaml");
        std::fs::write(
            &config,
            format!(
                "server:\n  httpListenAddr: \"127.0.0.1:{http}\"\n  grpcListenAddr: \"127.0.0.1:{grpc}\"\n\
                 storage:\n  driver: disk\n  disk:\n    directory: {}\n    watchForChanges: false\n\
                 telemetry:\n  disabled: true\n",
                policies.display()
            ),
        )
        .unwrap();
        let child = Killed(
            Command::new(bin)
                .args(["server", &format!("--config={}", config.display()), "--log-level=warn"])
                .env("CERBOS_NO_TELEMETRY", "1")
                .spawn()
                .unwrap(),
        );
        wait_port(grpc);
        let req = cerbos::CheckResourcesRequest {
            request_id: "bench".into(),
            principal: Some(cerbos::Principal {
                id: modelled.principal(&user),
                policy_version: "default".into(),
                roles: modelled.roles(&catalog, modelled.user(&user)),
            }),
            resources: vec![cerbos::ResourceEntry {
                actions: vec![perm.into()],
                resource: Some(cerbos::Resource {
                    kind: "account".into(),
                    policy_version: "default".into(),
                    id: tenant.clone(),
                }),
            }],
        };
        targets.push(Target {
            name: "cerbos",
            url: format!("http://127.0.0.1:{grpc}/cerbos.svc.v1.CerbosService/CheckResources"),
            body: write("cerbos.bin", frame(&req)),
            decisions: 1,
        });
        // Every (user, permission) of the tenant, over Cerbos's HTTP API, must agree with ours.
        let perms: Vec<String> = authz_bench::visible_permissions(&catalog)
            .into_iter()
            .map(|p| catalog.key(p).to_owned())
            .collect();
        let channel = rt.block_on(async {
            tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .connect()
                .await
                .unwrap()
        });
        let (mut compared, mut allowed) = (0usize, 0usize);
        for u in &modelled.users {
            let roles = modelled.roles(&catalog, u);
            let theirs = authz_bench::peers::cerbos_answers(http, modelled, &roles, &u.id, &perms);
            let ours = rt.block_on(authz_bench::peers::authz_answers(
                channel.clone(),
                &tenant,
                &u.id,
                &perms,
            ));
            for ((p, a), b) in perms.iter().zip(&ours).zip(&theirs) {
                assert_eq!(a, b, "authz and Cerbos disagree on {tenant}/{} {p}", u.id);
            }
            compared += perms.len();
            allowed += ours.iter().filter(|a| **a).count();
        }
        eprintln!("cerbos and authz agree on {compared} checks ({allowed} allowed)");
        let theirs = authz_bench::peers::cerbos_answers(
            http,
            modelled,
            &modelled.roles(&catalog, modelled.user(&user)),
            &user,
            &[perm.to_owned()],
        )[0];
        (child, theirs, compared, principals)
    });
    // Our own answer for the same question, and every body's grpc-status, before any load.
    let ours = rt.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        pb::authz_service_client::AuthzServiceClient::new(channel)
            .check(check_req.clone())
            .await
            .unwrap()
            .into_inner()
            .allowed
    });
    if let Some((_, theirs, _, _)) = &_cerbos {
        assert_eq!(
            ours, *theirs,
            "authz and Cerbos disagree on the benchmarked check"
        );
    }
    assert!(ours, "the benchmarked check should be an allow");
    for t in &targets {
        let status = grpc_status(&t.url, &t.body);
        assert_eq!(status, "0", "{}: grpc-status {status}", t.name);
        eprintln!("{}: grpc-status 0 with a real client", t.name);
    }

    if load.client_only {
        let text = client_runtime().block_on(client_vs_stubs(
            port,
            &check_req,
            load.client_secs,
            load.client_pairs,
        ));
        print!("{text}");
        append(report, &text);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    // Interleaved rounds, medians reported.
    let mut results: Vec<[Vec<f64>; 5]> = targets.iter().map(|_| Default::default()).collect();
    for round in 0..rounds {
        for (i, t) in targets.iter().enumerate() {
            let load = h2load(t, 4, 32, secs, &dir);
            let single = h2load(t, 1, 1, secs, &dir);
            eprintln!(
                "round {round} {}: {:.0} req/s p50 {:?} p99 {:?}; single p50 {:?} p99 {:?}",
                t.name, load.rps, load.p50, load.p99, single.p50, single.p99
            );
            let r = &mut results[i];
            r[0].push(load.rps);
            r[1].push(load.p50.as_secs_f64() * 1e6);
            r[2].push(load.p99.as_secs_f64() * 1e6);
            r[3].push(single.p50.as_secs_f64() * 1e6);
            r[4].push(single.p99.as_secs_f64() * 1e6);
        }
    }
    let echo_rps = median(results[0][0].clone());
    let echo_single = median(results[0][3].clone());
    let cerbos_rps = targets
        .iter()
        .position(|t| t.name == "cerbos")
        .map(|i| median(results[i][0].clone()));
    let mut rows = String::new();
    for (t, r) in targets.iter().zip(&results) {
        let rps = median(r[0].clone());
        let vs_cerbos = cerbos_rps.map_or("—".to_owned(), |c| format!("{:.2}×", rps / c));
        rows.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:.2}× | {} | {:.2}× |\n",
            t.name,
            rps,
            rps * t.decisions as f64,
            median(r[1].clone()),
            median(r[2].clone()),
            median(r[3].clone()),
            median(r[4].clone()),
            rps / echo_rps,
            vs_cerbos,
            median(r[3].clone()) / echo_single,
        ));
    }
    let cerbos_model = _cerbos
        .as_ref()
        .map_or(String::new(), |(_, _, compared, principals)| {
            authz_bench::peers::cerbos_note(&tenant, *compared, *principals)
        });
    let text = format!(
        "### gRPC on loopback (h2load)\n\n\
         {cerbos_model}\
         Each target served on 127.0.0.1 and driven by `h2load -t 1` with a pre-encoded gRPC body; \
         `-c 4 -m 32` for throughput, `-c 1 -m 1` for single-stream latency; {secs} s per run after \
         a 1 s warm-up; {rounds} interleaved rounds, medians shown. Every body was first sent with \
         curl and answered `grpc-status: 0`; Cerbos and authz gave the same decision for it. The \
         authz check is a cache hit (the user was checked once before the runs).\n\n\
         | target | req/s | decisions/s | p50 | p99 | single p50 | single p99 | req/s vs echo | req/s vs Cerbos | single p50 vs echo |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n{rows}\n\
         Targets: Check ≥ 0.8 × echo and ≥ 5 × Cerbos in req/s; single-stream p50 ≤ 1.3 × echo's; \
         BatchCheck ≥ 1,000,000 decisions/s.\n\n"
    );
    let text = text + &postgres_vs_embedded(&targets, &results);
    print!("{text}");
    append(report, &text);
    let text = client_runtime().block_on(client_vs_stubs(
        port,
        &check_req,
        load.client_secs,
        load.client_pairs,
    ));
    print!("{text}");
    append(report, &text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One thread for the callers and both connections, so neither path's connection lands on
/// another worker than its callers (which would add a cross-thread wake-up to every call of one
/// path and not the other).
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---- Check through the client vs raw tonic stubs ----

/// Checks per second with `concurrency` tasks calling for `secs`, and the latencies of one of
/// them.
async fn drive<F, Fut>(concurrency: usize, secs: u64, call: F) -> (f64, Vec<Duration>)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut latencies = Vec::new();
                while Instant::now() < stop {
                    let t = Instant::now();
                    assert!(call().await, "the benchmarked check should be an allow");
                    if i == 0 {
                        latencies.push(t.elapsed());
                    }
                    n += 1;
                }
                (n, latencies)
            })
        })
        .collect();
    let started = Instant::now();
    let mut total = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (n, l) = t.await.unwrap();
        total += n;
        if !l.is_empty() {
            latencies = l;
        }
    }
    latencies.sort();
    (total as f64 / started.elapsed().as_secs_f64(), latencies)
}

/// The same Check, a cache hit, sent by the Rust client and by the generated tonic stubs over
/// one connection each: `pairs` pairs of runs of each (32 concurrent callers for throughput, then
/// one caller for latency), which goes first alternating. The machine's load drifts (other
/// processes share its cores), so the headline is the median of the pairs' ratios: the two runs
/// of a pair are seconds apart.
async fn client_vs_stubs(
    port: u16,
    check_req: &pb::CheckRequest,
    secs: u64,
    pairs: usize,
) -> String {
    let url = format!("http://127.0.0.1:{port}");
    let channel = tonic::transport::Channel::from_shared(url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stubs = pb::authz_service_client::AuthzServiceClient::new(channel);
    let client = authz_client::Client::connect(&url).await.unwrap();
    let (tenant, user) = (check_req.tenant_id.clone(), check_req.user_id.clone());
    let Some(pb::check_request::Target::Permission(perm)) = check_req.target.clone() else {
        panic!("the benchmarked check names a permission");
    };
    let raw = {
        let (stubs, req) = (stubs.clone(), check_req.clone());
        move || {
            let (mut stubs, req) = (stubs.clone(), req.clone());
            async move { stubs.check(req).await.unwrap().into_inner().allowed }
        }
    };
    let typed = {
        let (client, tenant, user, perm) =
            (client.clone(), tenant.clone(), user.clone(), perm.clone());
        move || {
            let (client, tenant, user, perm) =
                (client.clone(), tenant.clone(), user.clone(), perm.clone());
            async move {
                client
                    .check(tenant, user)
                    .permission(perm)
                    .await
                    .unwrap()
                    .allowed
            }
        }
    };
    // Warm both paths.
    drive(4, 1, raw.clone()).await;
    drive(4, 1, typed.clone()).await;
    let p50 = |l: &[Duration]| pct(l, 0.5).as_secs_f64() * 1e6;
    let mut results: [Vec<f64>; 6] = Default::default();
    for pair in 0..pairs {
        let stubs_first = pair % 2 == 0;
        let (stub_rps, client_rps) = if stubs_first {
            let a = drive(32, secs, raw.clone()).await.0;
            (a, drive(32, secs, typed.clone()).await.0)
        } else {
            let b = drive(32, secs, typed.clone()).await.0;
            (drive(32, secs, raw.clone()).await.0, b)
        };
        let (stub_single, client_single) = if stubs_first {
            let a = p50(&drive(1, secs, raw.clone()).await.1);
            (a, p50(&drive(1, secs, typed.clone()).await.1))
        } else {
            let b = p50(&drive(1, secs, typed.clone()).await.1);
            (p50(&drive(1, secs, raw.clone()).await.1), b)
        };
        eprintln!(
            "pair {pair}: stubs {stub_rps:.0}/s, client {client_rps:.0}/s ({:.3}); single p50 stubs {stub_single:.1} µs, client {client_single:.1} µs ({:.3})",
            client_rps / stub_rps,
            client_single / stub_single
        );
        for (i, v) in [
            stub_rps,
            client_rps,
            client_rps / stub_rps,
            stub_single,
            client_single,
            client_single / stub_single,
        ]
        .into_iter()
        .enumerate()
        {
            results[i].push(v);
        }
    }
    let [
        stub_rps,
        client_rps,
        rps_ratio,
        stub_p50,
        client_p50,
        p50_ratio,
    ] = results.map(median);
    format!(
        "### Check through the client vs raw tonic stubs\n\n\
         The same Check (a cache hit) from this process to authzd on loopback: by the generated \
         tonic stubs (`AuthzServiceClient`), and by `authz-client` (`client.check(t, u).permission(p)`, \
         with its routing, read-your-writes lookup, deadline and retry wrapper), callers and \
         connections on one thread. {pairs} pairs of runs of {secs} s, which goes first \
         alternating: 32 concurrent callers on one connection for throughput, then one caller \
         for latency. Medians; the ratio is the \
         median of the pairs' ratios (the two runs of a pair are seconds apart, so load from \
         other processes on the shared cores cancels out).\n\n\
         | path | checks/s (32 callers) | single-caller p50 |\n|---|---:|---:|\n\
         | raw tonic stubs | {stub_rps:.0} | {stub_p50:.1} µs |\n\
         | authz-client | {client_rps:.0} | {client_p50:.1} µs |\n\
         | client / stubs | {rps_ratio:.3}× | {p50_ratio:.3}× |\n\n\
         Target: the client within 5% of the stubs (≥ 0.95× the checks/s, ≤ 1.05× the p50).\n\n"
    )
}

// ---- The embedded store beside the Postgres-backed replica ----

/// authzd on its embedded (memory) store, with the benchmarked user copied from the
/// Postgres-backed authzd on `source_port` through the admin API: its groups (custom groups with
/// their grants), direct and scoped grants, so both answer the same question from the same data.
fn embedded_authzd(authzd: &Path, source_port: u16, tenant: &str, user: &str) -> (Killed, u16) {
    let port = free_port();
    let child = Killed(
        Command::new(authzd)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = |port: u16| async move {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            pb::admin_service_client::AdminServiceClient::new(channel)
        };
        let (mut from, mut to) = (admin(source_port).await, admin(port).await);
        let u = from
            .get_user(pb::GetUserRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        to.create_tenant(pb::CreateTenantRequest {
            tenant_id: tenant.into(),
            display_name: tenant.into(),
        })
        .await
        .unwrap();
        let catalog = Catalog::from_toml(MAESTRA).unwrap();
        for g in &u.group_keys {
            if catalog.group(g).is_none() {
                let group = from
                    .get_group(pb::GetGroupRequest {
                        tenant_id: tenant.into(),
                        group_key: g.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .group;
                to.create_group(pb::CreateGroupRequest {
                    tenant_id: tenant.into(),
                    group,
                    ..Default::default()
                })
                .await
                .unwrap();
            }
            to.add_group_members(pb::AddGroupMembersRequest {
                tenant_id: tenant.into(),
                group_key: g.clone(),
                user_ids: vec![user.into()],
                ..Default::default()
            })
            .await
            .unwrap();
        }
        if !u.direct_permissions.is_empty() {
            to.grant_permissions(pb::GrantPermissionsRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                permissions: u.direct_permissions.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        for s in &u.scoped_grants {
            to.grant_permissions(pb::GrantPermissionsRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                permissions: vec![s.permission.clone()],
                resource: s.resource.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let copied = to
            .get_user(pb::GetUserRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        assert_eq!(
            (
                &copied.group_keys,
                &copied.direct_permissions,
                &copied.roles
            ),
            (&u.group_keys, &u.direct_permissions, &u.roles),
            "the embedded store holds the benchmarked user as Postgres does"
        );
    });
    (child, port)
}

/// The Postgres-backed replica's warm Check against the embedded store's and the echo's, as
/// per-round ratios (each round runs the three back to back) and their medians.
fn postgres_vs_embedded(targets: &[Target], results: &[[Vec<f64>; 5]]) -> String {
    let at = |name: &str| targets.iter().position(|t| t.name == name);
    let (Some(echo), Some(pg), Some(embedded)) =
        (at("echo"), at("authz-check"), at("authz-check-embedded"))
    else {
        return String::new();
    };
    let ratios = |a: usize, b: usize| -> Vec<f64> {
        results[a][0]
            .iter()
            .zip(&results[b][0])
            .map(|(x, y)| x / y)
            .collect()
    };
    let (vs_echo, vs_embedded, embedded_vs_echo) = (
        ratios(pg, echo),
        ratios(pg, embedded),
        ratios(embedded, echo),
    );
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "Warm Check on the Postgres-backed replica (`authz-check`) beside the embedded store \
         (`authz-check-embedded`, the same user copied through the admin API), req/s ratios per \
         round and their median:\n\n\
         | ratio | per round | median |\n|---|---|---:|\n\
         | Postgres-backed / echo | {} | {:.3}× |\n\
         | Postgres-backed / embedded | {} | {:.3}× |\n\
         | embedded / echo | {} | {:.3}× |\n\n\
         Targets: Postgres-backed ≥ 0.9 × echo, and within 5 % of the embedded store.\n\n",
        list(&vs_echo),
        median(vs_echo.clone()),
        list(&vs_embedded),
        median(vs_embedded.clone()),
        list(&embedded_vs_echo),
        median(embedded_vs_echo.clone()),
    )
}

// ---- Memory per cached user, end to end through the API ----

/// Resident bytes of process `pid`.
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn spawn_authzd(authzd: &Path, db_url: &str, port: u16) -> Killed {
    let child = Killed(
        Command::new(authzd)
            .args(["--database-url", db_url, "--migrate"])
            // Room for every user (no eviction), and for slow imports on a loaded machine.
            .args(["--cache-max-mib", "4096", "--request-timeout", "120s"])
            .args(["--db-statement-timeout", "120s"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    child
}

/// For each size: a fresh database seeded through the admin API (tenants of 1,000 users, each
/// with ten custom groups; every user in one system group and two custom groups, one in five
/// with direct grants, as the COPY data set), or with `seeded` the COPY data set in `url`; then
/// a fresh authzd on it, its resident memory read, every user checked once by BatchCheck
/// (up to 1,000 per request), and read again.
fn memory_api(authzd: &Path, url: &str, sizes: &[usize], seeded: bool, report: &Path) {
    let catalog = Catalog::from_toml(MAESTRA).unwrap();
    let groups = authz_bench::visible_groups(&catalog);
    let perms: Vec<String> = authz_bench::visible_permissions(&catalog)
        .into_iter()
        .map(|p| catalog.key(p).to_owned())
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rows = String::new();
    for &n in sizes {
        let db = format!("authz_bench_api_{n}");
        let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
        let db_url = if seeded {
            url.to_owned()
        } else {
            format!("{base}/{db}")
        };
        let started = Instant::now();
        if !seeded {
            memory_api_seed(authzd, &rt, base, &db, &db_url, n, &groups, &perms);
        }
        let seeded_in = started.elapsed();
        // Every user to warm, by tenant.
        let by_tenant: Vec<(String, Vec<String>)> = rt.block_on(async {
            connect(&db_url)
                .await
                .query(
                    "SELECT tenant_id, array_agg(user_id) FROM (SELECT tenant_id, user_id \
                     FROM users ORDER BY tenant_id, user_id LIMIT $1) u GROUP BY tenant_id",
                    &[&(n as i64)],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        });
        let (t0, u0) = (by_tenant[0].0.clone(), by_tenant[0].1[0].clone());
        // The first replica to start on a database checks its catalog against every stored
        // use of a key (a count per tenant and key); that one-time work's freed memory would
        // flatter the measured replica, so a replica of its own does it first.
        drop(spawn_authzd(authzd, &db_url, free_port()));
        // A fresh replica: nothing the seeding allocated flatters the measurement.
        let port = free_port();
        let server = spawn_authzd(authzd, &db_url, port);
        let pid = server.0.id();
        let (before, after, warmed) = rt.block_on(async {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let mut authz = pb::authz_service_client::AuthzServiceClient::new(channel);
            // One check first: the connection, the pool and the statements are set up outside
            // the measurement.
            authz
                .check(check(&t0, &u0, perms[0].as_str()))
                .await
                .unwrap();
            let before = rss_of(pid);
            let mut warmed = 0usize;
            for (tenant, users) in &by_tenant {
                for chunk in users.chunks(1000) {
                    let items = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, u)| pb::BatchCheckItem {
                            user_id: u.clone(),
                            target: Some(pb::batch_check_item::Target::Permission(
                                perms[i % perms.len()].clone(),
                            )),
                            ..Default::default()
                        })
                        .collect();
                    let r = authz
                        .batch_check(pb::BatchCheckRequest {
                            tenant_id: tenant.clone(),
                            items,
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    warmed += r.results.len();
                }
            }
            (before, rss_of(pid), warmed)
        });
        drop(server);
        let per_user = after.saturating_sub(before) as f64 / warmed.max(1) as f64;
        let how = if seeded { "COPY" } else { "the API" };
        eprintln!(
            "api {n}: seeded through {how} in {seeded_in:.1?}, warmed {warmed}, rss {before} -> {after}, {per_user:.0} B/user"
        );
        rows.push_str(&format!(
            "| {n} | {how} | {warmed} | {:.1} MiB | {:.1} MiB | {per_user:.0} B |\n",
            before as f64 / (1 << 20) as f64,
            after as f64 / (1 << 20) as f64
        ));
        if !seeded {
            rt.block_on(async {
                let c = connect(&format!("{base}/postgres")).await;
                c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
                    .await
                    .unwrap();
            });
        }
    }
    let text = format!(
        "### Memory per cached user, end to end through the API\n\n\
         A database seeded through the admin API (`CreateTenant`, `CreateGroup`, \
         `ImportUsers`: tenants of 1,000 users, each user in one system group and two of its \
         tenant's ten custom groups, one in five with direct grants) or by COPY (`seed`, the \
         first users in (tenant, user) order), then a fresh Postgres-backed authzd: its \
         resident memory (`VmRSS`) read after one check, every user checked once by \
         `BatchCheck` (up to 1,000 items per request), and read again.\n\n\
         | users | seeded through | warmed | resident before | resident after | resident bytes per cached user |\n\
         |---:|---|---:|---:|---:|---:|\n{rows}\n\
         Target: ≤ 256 bytes of resident memory per cached user.\n\n"
    );
    print!("{text}");
    append(report, &text);
}

/// Seeds `db` (created afresh) through the admin API of an authzd of its own.
#[allow(clippy::too_many_arguments)]
fn memory_api_seed(
    authzd: &Path,
    rt: &tokio::runtime::Runtime,
    base: &str,
    db: &str,
    db_url: &str,
    n: usize,
    groups: &[String],
    perms: &[String],
) {
    const PER_TENANT: usize = 1000;
    const PER_IMPORT: usize = 250;
    rt.block_on(async {
        let c = connect(&format!("{base}/postgres")).await;
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    });
    let tenants = n.div_ceil(PER_TENANT);
    {
        let port = free_port();
        let _seeder = spawn_authzd(authzd, db_url, port);
        rt.block_on(async {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
            let admin = pb::admin_service_client::AdminServiceClient::new(channel)
                .max_decoding_message_size(64 << 20);
            let mut rng = Rng(0xa11 ^ n as u64);
            let pick = |k: usize, rng: &mut Rng| -> Vec<String> {
                let mut ps: Vec<String> = (0..k)
                    .map(|_| perms[rng.next(perms.len())].clone())
                    .collect();
                ps.sort();
                ps.dedup();
                ps
            };
            for t in 0..tenants {
                let tenant = format!("t{t}");
                let mut admin = admin.clone();
                admin
                    .create_tenant(pb::CreateTenantRequest {
                        tenant_id: tenant.clone(),
                        display_name: tenant.clone(),
                    })
                    .await
                    .unwrap();
                for g in 0..10 {
                    let k = 5 + rng.next(11);
                    admin
                        .create_group(pb::CreateGroupRequest {
                            tenant_id: tenant.clone(),
                            group: Some(pb::Group {
                                key: format!("g{g}"),
                                name: format!("Group {g}"),
                                permissions: pick(k, &mut rng),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
                let users = PER_TENANT.min(n - t * PER_TENANT);
                let rows: Vec<pb::ImportRow> = (0..users)
                    .map(|u| {
                        let a = 1 + rng.next(9);
                        let b = (a + 1 + rng.next(8)) % 10;
                        let direct = if rng.next(5) == 0 {
                            let k = 1 + rng.next(3);
                            pick(k, &mut rng)
                        } else {
                            Vec::new()
                        };
                        pb::ImportRow {
                            user_id: format!("u{u}"),
                            group_keys: vec![
                                groups[rng.next(groups.len())].clone(),
                                format!("g{a}"),
                                format!("g{b}"),
                            ],
                            permissions: direct,
                            ..Default::default()
                        }
                    })
                    .collect();
                for rows in rows.chunks(PER_IMPORT) {
                    admin
                        .import_users(pb::ImportUsersRequest {
                            tenant_id: tenant.clone(),
                            rows: rows.to_vec(),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            }
        });
    }
}
