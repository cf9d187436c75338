//! The `authzd` binary: catalog checking, start-up refusals, key reloading, and [`Daemon`], a
//! running `authzd` whose log the tests read.

use std::process::Command;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `authzd` with `args` until it exits (at most 30 s): its status and stderr.
pub async fn run_to_exit(
    args: &[String],
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authzd"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("authzd {args:?} did not exit"))
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `authzd serve` on a free loopback port, logging JSON, its stderr read line by line.
pub struct Daemon {
    pub addr: std::net::SocketAddr,
    pub child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let listen = addr.to_string();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authzd"))
            .args(["serve", "--listen", &listen, "--log-format", "json"])
            .args(args)
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            addr,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next log line containing `part` (lines before it are passed over); fails after 30 s
    /// or when the process ends without logging it.
    pub async fn wait_for_log(&mut self, part: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(part) {
                        return line;
                    }
                }
                Ok(None) | Err(_) => panic!(
                    "authzd never logged {part:?}; its log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The first JSON log line `matches` accepts, among the lines already seen or the next
    /// ones; fails after 30 s or when the process ends without logging one.
    pub async fn json_line(
        &mut self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let parse = |line: &str| serde_json::from_str::<serde_json::Value>(line).ok();
        if let Some(v) = self
            .seen
            .iter()
            .filter_map(|l| parse(l))
            .find(|v| matches(v))
        {
            return v;
        }
        self.next_json_line(what, matches).await
    }

    /// The next JSON log line `matches` accepts, among the lines not read yet (for lines that
    /// repeat, such as `ready`).
    pub async fn next_json_line(
        &mut self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let parse = |line: &str| serde_json::from_str::<serde_json::Value>(line).ok();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if let Some(v) = parse(&line).filter(|v| matches(v)) {
                        return v;
                    }
                }
                Ok(None) | Err(_) => panic!(
                    "authzd never logged {what}; its log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line logged so far (as far as the tests have read).
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Reads whatever the process has logged meanwhile, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

fn authzd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_authzd"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn catalog_check_summarises_valid_catalogs() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = authzd(&["catalog", "check", &format!("{root}/catalogs/maestra.toml")]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("catalog maestra"), "{text}");
    assert!(text.contains("167 (2 internal, 3 aliases)"), "{text}");
    assert!(text.contains("actions:        221"), "{text}");
    let out = authzd(&["catalog", "check", &format!("{root}/catalogs/tooljet.toml")]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn catalog_check_names_the_error() {
    let dir = std::env::temp_dir().join(format!("authzd-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "name = \"x\"\nversion = \"1\"\n[[permissions]]\nname = \"A\"\n[[actions]]\nkey = \"a.b\"\nexpression = \"a & (b\"\n",
    )
    .unwrap();
    let out = authzd(&["catalog", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("action `a.b`") && err.contains("unknown permission `b` at position 6"),
        "{err}"
    );
    let out = authzd(&["catalog", "check", "/nonexistent/catalog.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read catalog"));
}

/// A catalog without `[admin]` is valid, but no actor may do anything with it: `catalog check`
/// says so on stderr and still succeeds. The shipped catalogs have the table and get no warning.
#[test]
fn catalog_check_warns_when_there_is_no_admin_table() {
    let root = env!("CARGO_MANIFEST_DIR");
    for shipped in ["maestra.toml", "tooljet.toml"] {
        let out = authzd(&["catalog", "check", &format!("{root}/catalogs/{shipped}")]);
        assert!(out.status.success(), "{out:?}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("warning"),
            "{shipped}: {out:?}"
        );
    }
    let dir = std::env::temp_dir().join(format!("authzd-no-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("no-admin.toml");
    std::fs::write(
        &file,
        "name = \"x\"\nversion = \"1\"\n[[permissions]]\nname = \"A\"\n",
    )
    .unwrap();
    let out = authzd(&["catalog", "check", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("catalog x version 1"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "warning: catalog {} has no [admin] table, so every admin operation (view_groups, edit_groups, view_users, edit_users, block_users, restrict_users, view_audit) is operator-only",
            file.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every serve flag is in the configuration tables of the README and the operations guide.
#[test]
fn every_serve_flag_is_documented() {
    let out = authzd(&["serve", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    let root = env!("CARGO_MANIFEST_DIR");
    let docs = ["README.md", "docs/operations.md"]
        .map(|d| (d, std::fs::read_to_string(format!("{root}/{d}")).unwrap()));
    let mut flags: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .filter(|w| !matches!(*w, "--help" | "--version"))
        .collect();
    flags.sort_unstable();
    flags.dedup();
    assert!(flags.len() > 20, "{flags:?}");
    for flag in flags {
        for (name, text) in &docs {
            assert!(
                text.contains(&format!("`{flag}")),
                "{name} does not document {flag}"
            );
        }
    }
}

/// A mistake in the config file is reported with the file, the line and the setting (the
/// closest one for a misspelt name), not as an unknown command-line flag.
#[test]
fn config_file_mistakes_name_the_file_line_and_setting() {
    let dir = std::env::temp_dir().join(format!("authzd-config-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("authzd.toml");
    let f = file.display().to_string();
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nmax_stalenes = \"5s\"\n").unwrap();
    let out = authzd(&["serve", "--config", &f]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "authzd: config file {f} line 2: unknown setting `max_stalenes`; did you mean `max_staleness`?\n"
        )
    );
    // A server's AUTHZ_CONFIG does not break `authzd migrate` (which takes its own flags).
    let out = Command::new(env!("CARGO_BIN_EXE_authzd"))
        .args([
            "migrate",
            "--database-url",
            "postgres://authz@127.0.0.1:1/authz",
        ])
        .env("AUTHZ_CONFIG", &file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to the database"), "{err}");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\n\nmax_batch = -3\n").unwrap();
    let out = authzd(&["serve", "--config", &f]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "authzd: config file {f} line 3: `max_batch = -3`: "
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_an_unauthenticated_public_listener() {
    let out = authzd(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve on 0.0.0.0:0") && err.contains("--insecure"),
        "{err}"
    );
}

/// SIGTERM under write load: the binary drains, exits 0, and every acknowledged write is in the
/// database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_zero_and_keeps_every_acknowledged_write() {
    use authz::grpc::pb;
    use authz::grpc::pb::admin_service_client::AdminServiceClient;
    use std::time::{Duration, Instant};
    let (url, _) = crate::pg::fresh_database().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authzd"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &url,
            "--migrate",
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        if let Ok(c) = tonic::transport::Channel::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
        {
            break c;
        }
        assert!(Instant::now() < deadline, "authzd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut admin = AdminServiceClient::new(channel.clone());
    admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "t".into(),
            display_name: "T".into(),
        })
        .await
        .unwrap();
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut admin = AdminServiceClient::new(channel.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..10_000 {
                let user = format!("w{w}-{i}");
                let r = admin
                    .grant_permissions(pb::GrantPermissionsRequest {
                        tenant_id: "t".into(),
                        user_id: user.clone(),
                        permissions: vec!["view_reports".into()],
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => acknowledged.push(user),
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(
        acknowledged.len() > 10,
        "writes were under way: {}",
        acknowledged.len()
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let stored: std::collections::HashSet<String> = client
        .query(
            "SELECT user_id FROM users WHERE tenant_id = 't' AND 'view_reports' = ANY(direct)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|u| !stored.contains(*u))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    eprintln!(
        "SIGTERM under load: {} acknowledged writes, none lost, exit 0",
        acknowledged.len()
    );
}

/// `authzd serve` with its output, stopped after `wait` if it is still running.
async fn serve_briefly(args: &[&str]) -> (bool, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authzd"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("authzd exits")
        .unwrap();
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        stderr.read_to_string(&mut err).await.unwrap();
    }
    (status.success(), err)
}

/// A database authzd cannot use stops it at start with the reason and what to do, never a bare
/// "db error", and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_problems_at_start_name_their_cause_and_the_fix() {
    let listen = ["--listen", "127.0.0.1:0"];
    // Nothing listens on port 1.
    let url = "postgres://authz:s3cret-Passw0rd@127.0.0.1:1/authz";
    let (ok, err) = serve_briefly(&[&listen[..], &["--database-url", url]].concat()).await;
    assert!(!ok);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(
        err.contains("is Postgres running and listening on the host and port of --database-url?"),
        "{err}"
    );
    assert!(!err.contains("s3cret-Passw0rd"), "{err}");

    let missing = crate::pg::with_database(crate::pg::admin_url(), "authz_no_such_database");
    let (ok, err) = serve_briefly(&[&listen[..], &["--database-url", &missing]].concat()).await;
    assert!(!ok);
    assert!(
        err.contains("database \"authz_no_such_database\" does not exist"),
        "{err}"
    );
    assert!(
        err.contains("create the database, or correct its name in --database-url"),
        "{err}"
    );
    assert!(!err.trim_end().ends_with("db error"), "{err}");

    // A user the server does not let in: whether it says the role does not exist (trust
    // authentication) or the password is wrong, the fix is in the URL's user and password.
    let (_, host) = crate::pg::admin_url()
        .split_once("://")
        .map(|(_, rest)| rest.rsplit_once('@').map_or(("", rest), |(u, h)| (u, h)))
        .unwrap();
    let stranger = format!("postgres://authz_no_such_role:s3cret-Passw0rd@{host}");
    let (ok, err) = serve_briefly(&[&listen[..], &["--database-url", &stranger]].concat()).await;
    assert!(!ok);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(err.contains("authz_no_such_role"), "{err}");
    assert!(err.contains(": check the user"), "{err}");
    assert!(!err.contains("s3cret-Passw0rd"), "{err}");

    let (unmigrated, _) = crate::pg::fresh_database().await;
    let (ok, err) = serve_briefly(&[&listen[..], &["--database-url", &unmigrated]].concat()).await;
    assert!(!ok);
    assert!(
        err.contains("run `authzd migrate` or pass `--migrate`"),
        "{err}"
    );
}

/// A schema that disappears under a running server (a restored or recreated database) is
/// reported on the first request of every kind as what it is, with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_database_without_the_schema_say_to_migrate() {
    use crate::helpers::*;
    use authz::grpc::pb;
    use tonic::Code;
    let app = TestServer::fresh_postgres().start().await;
    app.tenant("t").await;
    let (client, conn) =
        tokio_postgres::connect(app.db_url.as_ref().unwrap(), tokio_postgres::NoTls)
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    client
        .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    let fix = "run `authzd migrate` or pass `--migrate`";
    assert_status(
        app.check(perm_check("t", "someone", "view_reports")).await,
        Code::Unavailable,
        &[fix],
    );
    assert_status(
        app.admin
            .clone()
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: "u".into(),
                display_name: "U".into(),
            })
            .await,
        Code::Unavailable,
        &[fix],
    );
    assert_status(
        app.admin
            .clone()
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: "t".into(),
                group_key: "analysts".into(),
                user_ids: vec!["x".into()],
                ..Default::default()
            })
            .await,
        Code::Unavailable,
        &[fix],
    );
    assert_status(
        app.admin
            .clone()
            .list_tenants(pb::ListTenantsRequest::default())
            .await,
        Code::Unavailable,
        &[fix],
    );
}

/// A key listed under two roles: whichever line came first would win silently, so the file is
/// refused — at start with the file and line, on reload with the keys in force kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_under_two_roles_is_refused_at_start_and_on_reload() {
    use authz::grpc::pb;
    use authz::grpc::pb::admin_service_client::AdminServiceClient;
    const OPERATOR: &str = "operator-key-0123456";
    let dir = std::env::temp_dir().join(format!("authzd-dup-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys");
    let f = file.display().to_string();
    std::fs::write(
        &file,
        format!("operator:{OPERATOR}\n# downgraded\ncheck:{OPERATOR}\n"),
    )
    .unwrap();
    let serve = |extra: &[&str]| {
        ["serve", "--listen", "127.0.0.1:0", "--api-keys-file", &f]
            .iter()
            .chain(extra)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
    };
    let (status, stderr) = run_to_exit(&serve(&[]), &[]).await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{f} line 3: this check key is already the operator key of {f} line 1"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(OPERATOR), "a key was shown: {stderr}");
    // Across the list in the environment and the file too.
    std::fs::write(&file, format!("operator:{OPERATOR}\n")).unwrap();
    let admin = format!("admin:{OPERATOR}");
    let (status, stderr) = run_to_exit(&serve(&[]), &[("AUTHZ_API_KEYS", &admin)]).await;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{f} line 1: this operator key is already the admin key of AUTHZ_API_KEYS entry 1"
        )),
        "{stderr}"
    );

    // On reload (SIGHUP), the file is refused and the operator key stays an operator's.
    let mut daemon = Daemon::start(&["--api-keys-file", &f], &[]).await;
    daemon.wait_for_log("\"message\":\"ready\"").await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", daemon.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AdminServiceClient::new(channel);
    let create = |tenant: &str| {
        let mut r = tonic::Request::new(pb::CreateTenantRequest {
            tenant_id: tenant.into(),
            display_name: tenant.into(),
        });
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {OPERATOR}").parse().unwrap(),
        );
        r
    };
    client.create_tenant(create("t1")).await.unwrap();
    std::fs::write(&file, format!("operator:{OPERATOR}\ncheck:{OPERATOR}\n")).unwrap();
    daemon.signal("HUP");
    let line = daemon.wait_for_log("API keys not reloaded").await;
    assert!(
        line.contains(&format!(
            "{f} line 2: this check key is already the operator key"
        )),
        "{line}"
    );
    client.create_tenant(create("t2")).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
