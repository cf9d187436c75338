//! authzctl, the built binary, against the real server (in-process, on the memory store and on
//! Postgres, with the server's own test helpers): every command, its tables and JSON, its exit
//! codes, keys from the environment, and the shell walk-through in `examples/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The server's test helpers: `TestServer` on either store, `contract!`, Postgres for tests.
#[allow(dead_code)]
#[path = "../../../tests/it/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../../../tests/it/pg.rs"]
mod pg;

use helpers::{Backend, TestApp, TestServer, contract};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const AUTHZCTL: &str = env!("CARGO_BIN_EXE_authzctl");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

fn command(app: &TestApp, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(AUTHZCTL);
    c.args(args)
        .env("AUTHZ_SERVER", app.url())
        .env_remove("AUTHZ_API_KEY")
        .env_remove("AUTHZ_ACTOR")
        .env_remove("AUTHZ_SERVER_DNS")
        .kill_on_drop(true);
    c
}

async fn run_with(app: &TestApp, args: &[&str], stdin: Option<&str>) -> Run {
    let mut c = command(app, args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn run(app: &TestApp, args: &[&str]) -> Run {
    run_with(app, args, None).await
}

/// Runs and expects an exit code; returns the run.
async fn expect(app: &TestApp, code: i32, args: &[&str]) -> Run {
    let r = run(app, args).await;
    assert_eq!(
        r.code, code,
        "authzctl {args:?}\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

async fn set_up(app: &TestApp) {
    expect(app, 0, &["tenant", "create", "acme", "--name", "Acme"]).await;
    let r = run_with(
        app,
        &["import", "acme", "-"],
        Some("user,groups\nalice,analysts\nbob,marketers;analysts\n"),
    )
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("2 users imported"), "{}", r.stdout);
}

/// check: 0 allowed, 3 denied, 1 a bad request (with the server's code and message), 2 bad
/// usage; tables for people, JSON for scripts; batch files in CSV and JSON.
async fn checks_and_batches_answer_with_exit_codes(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    set_up(&app).await;
    let r = expect(
        &app,
        0,
        &["check", "acme", "alice", "-p", "export_customers"],
    )
    .await;
    assert!(
        r.stdout.starts_with("ALLOWED alice export_customers"),
        "{}",
        r.stdout
    );
    let r = expect(
        &app,
        3,
        &["check", "acme", "alice", "-p", "delete_customers"],
    )
    .await;
    assert!(r.stdout.contains("DENIED") && r.stdout.contains("missing: delete_customers"));
    let r = expect(
        &app,
        3,
        &[
            "check",
            "acme",
            "alice",
            "--action",
            "customers.export_customers",
            "--context",
            "include_personal_data=true",
            "--explain",
            "-o",
            "json",
        ],
    )
    .await;
    let j = r.json();
    assert_eq!(j["decision"], "DENIED");
    assert_eq!(j["allowed"], false);
    assert_eq!(j["missing_permissions"][0], "export_personal_data");
    assert!(
        j["explanation"]["summary"]
            .as_str()
            .unwrap()
            .contains("export_personal_data")
    );
    assert!(j["revision"].as_str().unwrap().parse::<u64>().is_ok());

    let r = expect(
        &app,
        1,
        &["check", "acme", "alice", "-p", "export_customer"],
    )
    .await;
    assert!(
        r.stderr.contains("INVALID_ARGUMENT") && r.stderr.contains("export_customer"),
        "{}",
        r.stderr
    );
    let r = expect(
        &app,
        1,
        &["check", "acme", "alice", "-p", "x", "-o", "json"],
    )
    .await;
    let e: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(e["code"], "INVALID_ARGUMENT");
    expect(&app, 2, &["check", "acme", "alice"]).await;
    expect(&app, 2, &["check", "acme", "alice", "-p", "a", "-a", "b"]).await;
    expect(
        &app,
        2,
        &["check", "acme", "alice", "-p", "a", "--context", "flag"],
    )
    .await;

    // A batch: table, exit 3 when one is denied, 1 when one cannot be decided.
    let csv = "user,permission,resource\nalice,view_reports,folder:f1\nbob,delete_customers,\n";
    let r = run_with(&app, &["batch", "acme", "-"], Some(csv)).await;
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[1].starts_with("alice")
            && lines[1].contains("folder:f1")
            && lines[1].contains("ALLOWED")
    );
    assert!(
        lines[2].starts_with("bob")
            && lines[2].contains("DENIED")
            && lines[2].contains("delete_customers")
    );
    assert!(
        r.stdout.contains("1 allowed, 1 denied, 0 errors"),
        "{}",
        r.stdout
    );
    let r = run_with(
        &app,
        &["batch", "acme", "-", "--format", "json", "-o", "json"],
        Some(r#"[{"user":"alice","permission":"view_reports"},{"user":"alice","permission":"nope"}]"#),
    )
    .await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["results"][0]["decision"], "ALLOWED");
    assert_eq!(j["results"][1]["error"]["code"], "INVALID_ARGUMENT");
    let r = run_with(
        &app,
        &["batch", "acme", "-"],
        Some("user,permission\nalice,view_reports\n"),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A file that cannot be used is named, with its line.
    let r = run_with(
        &app,
        &["batch", "acme", "-"],
        Some("user,permission\n,view_reports\n"),
    )
    .await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("line 2: user is empty"), "{}", r.stderr);
    let r = expect(&app, 2, &["batch", "acme", "/no/such/file.csv"]).await;
    assert!(
        r.stderr.contains("cannot read /no/such/file.csv"),
        "{}",
        r.stderr
    );

    // Effective permissions and allowed resources.
    let r = expect(&app, 0, &["effective", "acme", "bob", "-o", "json"]).await;
    let j = r.json();
    assert_eq!(j["groups"], serde_json::json!(["analysts", "marketers"]));
    assert!(
        j["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "view_reports")
    );
    let r = expect(&app, 0, &["effective", "acme", "alice"]).await;
    assert!(
        r.stdout.contains("view_reports") && r.stdout.contains("group:analysts"),
        "{}",
        r.stdout
    );
    let r = expect(
        &app,
        0,
        &[
            "allowed-resources",
            "acme",
            "alice",
            "view_reports",
            "folder",
        ],
    )
    .await;
    assert_eq!(r.stdout.trim(), "every folder");
    app.stop().await;
}

/// groups, group show, group edit --dry-run (prints who gains or loses what and changes
/// nothing), group edit, import --dry-run.
async fn groups_edits_and_imports(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    set_up(&app).await;
    expect(
        &app,
        0,
        &[
            "group",
            "create",
            "acme",
            "mailers",
            "-p",
            "send_test_messages",
            "-p",
            "view_campaign_manager",
        ],
    )
    .await;
    expect(
        &app,
        0,
        &["group", "add-members", "acme", "mailers", "alice", "bob"],
    )
    .await;
    let r = expect(&app, 0, &["groups", "acme"]).await;
    let mailers = r
        .stdout
        .lines()
        .find(|l| l.starts_with("mailers"))
        .unwrap()
        .to_owned();
    assert!(
        mailers.contains("custom") && mailers.contains(" 2 "),
        "{mailers}"
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("owners") && l.contains("system"))
    );

    let r = expect(
        &app,
        0,
        &[
            "group",
            "edit",
            "acme",
            "mailers",
            "--remove",
            "send_test_messages",
            "--dry-run",
        ],
    )
    .await;
    assert!(r.stdout.starts_with("dry run"), "{}", r.stdout);
    // Alice loses it; Bob holds it through marketers too, so he is not affected.
    let line = r.stdout.lines().find(|l| l.starts_with("alice")).unwrap();
    assert!(line.contains("send_test_messages"), "{line}");
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("bob")),
        "{}",
        r.stdout
    );
    // Nothing changed.
    expect(
        &app,
        0,
        &["check", "acme", "alice", "-p", "send_test_messages"],
    )
    .await;
    let r = expect(
        &app,
        0,
        &[
            "group",
            "edit",
            "acme",
            "mailers",
            "--remove",
            "send_test_messages",
            "-o",
            "json",
        ],
    )
    .await;
    let j = r.json();
    assert_eq!(j["dry_run"], false);
    assert_eq!(j["preview"]["affected_users"][0]["user_id"], "alice");
    assert_eq!(
        j["preview"]["affected_users"][0]["removed"],
        serde_json::json!(["send_test_messages"])
    );
    assert_eq!(j["preview"]["affected_users"].as_array().unwrap().len(), 1);
    expect(
        &app,
        3,
        &["check", "acme", "alice", "-p", "send_test_messages"],
    )
    .await;
    expect(
        &app,
        0,
        &["check", "acme", "bob", "-p", "send_test_messages"],
    )
    .await;
    let r = expect(&app, 0, &["group", "show", "acme", "mailers", "-o", "json"]).await;
    let j = r.json();
    assert_eq!(
        j["permissions"],
        serde_json::json!(["view_campaign_manager"])
    );
    assert_eq!(j["members"], serde_json::json!(["alice", "bob"]));
    assert_eq!(j["version"], 2);
    expect(&app, 2, &["group", "edit", "acme", "mailers"]).await;
    let r = expect(
        &app,
        1,
        &["group", "edit", "acme", "owners", "--name", "Bosses"],
    )
    .await;
    assert!(
        r.stderr.contains("FAILED_PRECONDITION") || r.stderr.contains("system"),
        "{}",
        r.stderr
    );

    // Import with Maestra's columns, previewed first.
    let csv = "user_id,group_system_names,email\ncarol,mailers,carol@acme.test\ncarol,api,\n";
    let r = run_with(&app, &["import", "acme", "-", "--dry-run"], Some(csv)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("dry run") && r.stdout.contains("carol"),
        "{}",
        r.stdout
    );
    expect(
        &app,
        3,
        &["check", "acme", "carol", "-p", "view_campaign_manager"],
    )
    .await;
    let r = run_with(&app, &["import", "acme", "-"], Some(csv)).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    expect(
        &app,
        0,
        &["check", "acme", "carol", "-p", "view_campaign_manager"],
    )
    .await;
    // Every row is checked by the server before any is applied.
    let r = run_with(
        &app,
        &["import", "acme", "-"],
        Some("user,groups\ndan,marketers\nerin,no_such_group\n"),
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("no_such_group"), "{}", r.stderr);
    expect(&app, 3, &["check", "acme", "dan", "-p", "view_reports"]).await;
    let r = run_with(&app, &["import", "acme", "-"], Some("login,groups\nx,y\n")).await;
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown CSV columns"), "{}", r.stderr);
    app.stop().await;
}

/// Reads lines from a running command until one satisfies `want`.
async fn line_where(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    want: impl Fn(&str) -> bool,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("the command is still running");
        if want(&line) {
            return line;
        }
    }
}

/// audit lists the log; audit --follow and watch keep printing changes as they commit.
async fn audit_and_watch_follow_changes(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    set_up(&app).await;
    let r = expect(&app, 0, &["audit", "acme", "--limit", "1"]).await;
    assert_eq!(r.stdout.lines().count(), 1);
    assert!(
        r.stdout.contains("operator  import_users  users:2"),
        "{}",
        r.stdout
    );
    let r = expect(
        &app,
        0,
        &["audit", "acme", "-o", "json", "--target", "user:alice"],
    )
    .await;
    assert_eq!(
        r.stdout.lines().count(),
        0,
        "the import's target is users:2"
    );
    let r = expect(&app, 0, &["audit", "acme", "-o", "json", "--since", "1h"]).await;
    let events: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["operation"], "import_users");
    assert!(
        events[0]["after"]["users"]["alice"].is_object(),
        "{}",
        events[0]
    );

    let mut follow = command(&app, &["audit", "acme", "--follow", "--limit", "1"]);
    let mut follow = follow.stdout(Stdio::piped()).spawn().unwrap();
    let mut audit = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut watch = command(&app, &["watch", "acme", "--after", "1", "-o", "json"]);
    let mut watch = watch.stdout(Stdio::piped()).spawn().unwrap();
    let mut changes = BufReader::new(watch.stdout.take().unwrap()).lines();
    // The history first: the latest event; the watch replays from revision 1.
    line_where(&mut audit, |l| l.contains("import_users")).await;
    let first: Value = serde_json::from_str(&line_where(&mut changes, |_| true).await).unwrap();
    assert_eq!(first["revision"], "2");
    assert_eq!(first["operation"], "import_users");
    // Then each new change.
    let rev = app.add("acme", "owners", &["olivia"]).await;
    let line = line_where(&mut audit, |l| l.contains("add_members")).await;
    assert!(
        line.starts_with(&rev) && line.contains("group:owners"),
        "{line}"
    );
    let line = line_where(&mut changes, |_| true).await;
    let change: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(change["revision"], rev);
    assert_eq!(change["user_ids"], serde_json::json!(["olivia"]));
    follow.kill().await.unwrap();
    watch.kill().await.unwrap();
    app.stop().await;
}

/// The catalog: reads from the server, and everything else passed to `authzd catalog`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reads_and_authzd_passthrough() {
    let app = TestServer::memory().start().await;
    let r = expect(&app, 0, &["catalog", "show", "-o", "json"]).await;
    assert_eq!(r.json()["name"], "maestra");
    let r = expect(&app, 0, &["catalog", "actions", "--prefix", "flows."]).await;
    assert!(
        r.stdout.lines().any(|l| l.starts_with("flows.add_a_flow")),
        "{}",
        r.stdout
    );
    let r = expect(&app, 0, &["catalog", "permissions", "-o", "json"]).await;
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "export_customers")
    );

    // `authzd` is built beside authzctl by the workspace's `cargo test`.
    let authzd = std::path::Path::new(AUTHZCTL).with_file_name("authzd");
    assert!(
        authzd.is_file(),
        "{} is missing: build it with `cargo build --bin authzd` (the workspace's `cargo test` does)",
        authzd.display()
    );
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalogs/tooljet.toml");
    let r = expect(&app, 0, &["catalog", "check", catalog]).await;
    assert!(r.stdout.contains("tooljet"), "{}", r.stdout);
    let bad = std::env::temp_dir().join(format!("authzctl-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, "name = 1\n").unwrap();
    let r = expect(&app, 1, &["catalog", "check", bad.to_str().unwrap()]).await;
    assert!(!r.stderr.is_empty());
    let _ = std::fs::remove_file(&bad);
    // Without authzd anywhere, it says how to get it.
    let alone = std::env::temp_dir().join(format!("authzctl-alone-{}", std::process::id()));
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(AUTHZCTL, alone.join("authzctl")).unwrap();
    let out = tokio::process::Command::new(alone.join("authzctl"))
        .args(["catalog", "check", catalog])
        .env("AUTHZD", "")
        .env("PATH", "/nonexistent")
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&alone);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("authzd not found") && text.contains("AUTHZD"),
        "{text}"
    );
    app.stop().await;
}

/// Keys come from AUTHZ_API_KEY or a key file, and appear nowhere: not in errors, not in help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_environment_and_are_never_shown() {
    let key = "an-operator-key-0123456789";
    let options = authz::server::ServerOptions {
        keys: Some(std::sync::Arc::new(
            authz::gate::Keys::load(&format!("operator:{key}"), None).unwrap(),
        )),
        ..Default::default()
    };
    let app = helpers::TestServer::memory().options(options).start().await;
    let r = expect(&app, 1, &["tenant", "list"]).await;
    assert!(r.stderr.contains("UNAUTHENTICATED"), "{}", r.stderr);
    let out = command(&app, &["tenant", "create", "t"])
        .env("AUTHZ_API_KEY", key)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong = "a-wrong-key-9876543210-xyz";
    let out = command(&app, &["tenant", "list"])
        .env("AUTHZ_API_KEY", wrong)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("UNAUTHENTICATED") && !text.contains(wrong),
        "{text}"
    );
    let file = std::env::temp_dir().join(format!("authzctl-key-{}", std::process::id()));
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let r = expect(
        &app,
        0,
        &["tenant", "list", "--api-key-file", file.to_str().unwrap()],
    )
    .await;
    assert!(r.stdout.contains("t "), "{}", r.stdout);
    let _ = std::fs::remove_file(&file);
    // No flag takes a key, and help shows no key from the environment.
    let out = command(&app, &["--help"])
        .env("AUTHZ_API_KEY", key)
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        !help.contains(key) && !help.contains("--api-key "),
        "{help}"
    );
    app.stop().await;
}

/// `examples/authzctl-walkthrough.sh` runs start to finish against a fresh server.
async fn the_shell_walkthrough_runs(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/authzctl-walkthrough.sh"
    );
    let bin = std::path::Path::new(AUTHZCTL).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .env("PATH", path)
        .env("AUTHZ_SERVER", app.url())
        .env_remove("AUTHZ_API_KEY")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for line in [
        "3 users imported",
        "ALLOWED alice export_customers",
        "DENIED alice delete_customers",
        "missing: export_personal_data",
        "dry run: group email_specialist would change",
        "\"decision\":\"DENIED\"",
        "walk-through done",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    app.stop().await;
}

contract!(
    checks_and_batches_answer_with_exit_codes,
    groups_edits_and_imports,
    audit_and_watch_follow_changes,
    the_shell_walkthrough_runs,
);
