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
