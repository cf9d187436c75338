//! Postgres for tests: `AUTHZ_TEST_DATABASE_URL` when set, otherwise a throwaway cluster started
//! once per test run from the local server binaries (as the `postgres` user when run as root),
//! on a free port, removed when the test process exits. Each test gets a fresh database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const HOW_TO_GET_POSTGRES: &str = "tests need Postgres: set AUTHZ_TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB \
(a role that may CREATE DATABASE), or install the PostgreSQL server binaries (Debian/Ubuntu: \
`apt-get install postgresql`; macOS: `brew install postgresql`) so the tests can start a throwaway cluster";

/// The URL of a database tests can create databases from, started on first use.
pub fn admin_url() -> &'static str {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    match URL.get_or_init(|| match std::env::var("AUTHZ_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => start_cluster(),
    }) {
        Ok(url) => url,
        Err(e) => panic!("{e}\n{HOW_TO_GET_POSTGRES}"),
    }
}

/// Replaces the database name of a URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{base}/{db}{query}")
}

/// A fresh, empty database (not migrated); returns its URL and name.
pub async fn fresh_database() -> (String, String) {
    static N: AtomicU32 = AtomicU32::new(0);
    // The process id alone repeats: a later run that gets a recycled pid would collide with a
    // database an earlier run left behind on a long-lived server. Its start time does not.
    static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
    });
    let admin = admin_url().to_owned();
    let name = format!(
        "authz_test_{}_{started}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {admin}: {e}\n{HOW_TO_GET_POSTGRES}"));
    let driver = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    (with_database(&admin, &name), name)
}

/// Runs a query on the database at `url`.
pub async fn query(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let rows = client.query(sql, &[]).await.unwrap();
    drop(client);
    let _ = driver.await;
    rows
}

/// Runs SQL on the admin database (to kill backends and the like).
pub async fn admin_execute(sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let rows = client.query(sql, &[]).await.unwrap();
    drop(client);
    let _ = driver.await;
    rows
}

fn server_bin_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .collect();
    candidates.sort();
    candidates.reverse();
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        candidates.insert(
            0,
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        );
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command as the `postgres` user when we are root (initdb refuses root).
fn as_db_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh cluster directory owned by the database user, with `initdb` run in `dir/data`.
fn init_cluster(tag: &str) -> Result<(PathBuf, PathBuf, PathBuf, bool), String> {
    let bin = server_bin_dir().ok_or(
        "no AUTHZ_TEST_DATABASE_URL and no PostgreSQL server binaries (initdb, postgres) found",
    )?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("authz-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if root {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "cannot hand {} to the postgres user (is there one?)",
                dir.display()
            ));
        }
    }
    let data = dir.join("data");
    let out = as_db_user(&bin.join("initdb"), root)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((bin, dir, data, root))
}

fn start_cluster() -> Result<String, String> {
    let (bin, dir, data, root) = init_cluster("pg")?;
    let port = free_port();
    // A watchdog shell stops the server and removes the cluster when this test process exits.
    let script = format!(
        "'{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 >'{dir}/log' 2>&1 & pg=$!; \
         while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
         kill -INT $pg 2>/dev/null; wait $pg; rm -rf '{dir}'",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
        parent = std::process::id(),
    );
    as_db_user(Path::new("/bin/sh"), root)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
                &port.to_string(),
            ])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(url);
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!(
                "the throwaway postgres did not start within 30s:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn database_urls() {
    assert_eq!(
        with_database("postgres://u@h:1/db", "x"),
        "postgres://u@h:1/x"
    );
    assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    assert_eq!(
        with_database("postgres://u@h:1/db?sslmode=disable", "x"),
        "postgres://u@h:1/x?sslmode=disable"
    );
}

/// A cluster of a test's own, which the test may stop, start and signal (fault injection). Its
/// directory is removed on drop, or by a watchdog if the test process dies.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    root: bool,
    pub port: u16,
}

impl Cluster {
    /// Starts a new cluster from the local server binaries.
    pub fn new(tag: &str) -> Cluster {
        let (bin, dir, data, root) =
            init_cluster(tag).unwrap_or_else(|e| panic!("{e}\n{HOW_TO_GET_POSTGRES}"));
        let cluster = Cluster {
            bin,
            dir,
            data,
            root,
            port: free_port(),
        };
        let script = format!(
            "while [ -d /proc/{parent} ]; do sleep 0.5; done; '{ctl}' -D '{data}' stop -m immediate; rm -rf '{dir}'",
            parent = std::process::id(),
            ctl = cluster.bin.join("pg_ctl").display(),
            data = cluster.data.display(),
            dir = cluster.dir.display(),
        );
        // The watchdog outlives this test on purpose: it cleans up after the process exits.
        #[allow(clippy::zombie_processes)]
        as_db_user(Path::new("/bin/sh"), root)
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        cluster.start();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn ctl(&self, args: &[&str]) {
        let out = as_db_user(&self.bin.join("pg_ctl"), self.root)
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k '{}' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        self.ctl(&[
            "-w",
            "-t",
            "30",
            "-o",
            &options,
            "-l",
            &log.to_string_lossy(),
            "start",
        ]);
    }

    /// Stops the server: `fast` disconnects clients and shuts down cleanly, `immediate` is a crash.
    pub fn stop(&self, mode: &str) {
        self.ctl(&["-w", "-m", mode, "stop"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_db_user(&self.bin.join("pg_ctl"), self.root)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
