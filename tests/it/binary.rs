//! The `authzd` binary: catalog checking and start-up refusals.

use std::process::Command;

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
    assert!(!err.contains("s3cret-Passw0rd"), "{err}");

    let missing = crate::pg::with_database(crate::pg::admin_url(), "authz_no_such_database");
    let (ok, err) = serve_briefly(&[&listen[..], &["--database-url", &missing]].concat()).await;
    assert!(!ok);
    assert!(
        err.contains("database \"authz_no_such_database\" does not exist"),
        "{err}"
    );
    assert!(!err.trim_end().ends_with("db error"), "{err}");

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
    let app = spawn(Backend::Postgres, MAESTRA).await;
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
