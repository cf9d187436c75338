//! What an operator reads in authzd's log, from the real binary: a line per RPC at debug, the
//! server's own failures with their cause, refused admin calls, lifecycle events (catalog
//! recorded, listener lost and regained, cache flushed, ready, shutdown), the start-up
//! configuration as an object with its secrets redacted, no colour codes off a terminal, and
//! the decision log.

use crate::binary::Daemon;
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::grpc::pb::authz_service_client::AuthzServiceClient;
use serde_json::Value;
use tonic::Code;

const OPERATOR: &str = "operator-key-0123456789";
const CHECK: &str = "check-key-0123456789abc";

fn keyed<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

/// A URL with a password to keep out of the log: the one it has, or a `password` parameter
/// (which a server that let the URL in without one ignores).
fn with_a_password(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    if let Some((userinfo, _)) = rest.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            return (url.to_owned(), password.to_owned());
        }
    }
    let secret = "pw-Secret-8642";
    let separator = if url.contains('?') { '&' } else { '?' };
    (
        format!("{url}{separator}password={secret}"),
        secret.to_owned(),
    )
}

fn is_rpc(v: &Value, method: &str, code: &str) -> bool {
    v["target"] == "authz::rpc"
        && message(v) == "rpc"
        && v["fields"]["method"] == method
        && v["fields"]["code"] == code
}

/// One run of the binary on Postgres, read as an operator would: every kind of line the
/// operations guide describes shows up with its fields, and no key, password or context value
/// ever does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_requests_failures_refusals_and_lifecycle_in_the_log() {
    let (url, db) = crate::pg::fresh_database().await;
    let (url, secret) = with_a_password(&url);
    let dir = std::env::temp_dir().join(format!("authzd-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let decisions = dir.join("decisions.log");
    let _ = std::fs::remove_file(&decisions);
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{}", crate::binary::free_port())
        .parse()
        .unwrap();
    let keys = format!("operator:{OPERATOR},check:{CHECK}");
    let mut d = Daemon::start(
        &[
            "--database-url",
            &url,
            "--migrate",
            "--api-keys",
            &keys,
            "--decision-log",
            decisions.to_str().unwrap(),
            "--metrics-listen",
            &metrics_addr.to_string(),
        ],
        &[("RUST_LOG", "info,authz::rpc=debug")],
    )
    .await;

    // Start-up: the configuration as an object, secrets redacted; the catalog recorded; the
    // listener subscribed and the cache flushed; ready.
    let config = d
        .json_line("the effective configuration", |v| {
            message(v) == "effective configuration"
        })
        .await;
    let config = &config["fields"]["config"];
    assert!(config.is_object(), "{config}");
    assert_eq!(config["api_keys"], "<redacted>");
    assert_eq!(config["max_staleness"], "5s");
    assert_eq!(config["metrics_listen"], metrics_addr.to_string());
    assert_eq!(config["decision_log"], decisions.to_str().unwrap());
    assert!(
        config["database_url"]
            .as_str()
            .unwrap()
            .contains("<redacted>"),
        "{config}"
    );
    let recorded = d
        .json_line("the catalog recorded", |v| {
            message(v) == "catalog recorded in the database"
        })
        .await;
    assert_eq!(recorded["level"], "INFO");
    assert_eq!(recorded["fields"]["record"], 1);
    d.json_line("the listener subscribed", |v| {
        message(v) == "change listener subscribed"
    })
    .await;
    let flushed = d
        .json_line("the cache flushed", |v| message(v) == "cache flushed")
        .await;
    assert_eq!(flushed["level"], "INFO");
    assert!(
        flushed["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("subscribed"),
        "{flushed}"
    );
    d.json_line("ready", |v| message(v) == "ready").await;

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", d.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = AdminServiceClient::new(channel.clone());
    let mut authz = AuthzServiceClient::new(channel);
    let created = admin
        .create_tenant(keyed(
            pb::CreateTenantRequest {
                tenant_id: "acme".into(),
                display_name: "Acme".into(),
            },
            OPERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    admin
        .add_group_members(keyed(
            pb::AddGroupMembersRequest {
                tenant_id: "acme".into(),
                group_key: "analysts".into(),
                user_ids: vec!["alice".into()],
                ..Default::default()
            },
            OPERATOR,
        ))
        .await
        .unwrap();
    let allowed = authz
        .check(keyed(
            crate::helpers::perm_check("acme", "alice", "view_reports"),
            CHECK,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(allowed.allowed);
    let export = crate::helpers::action_check(
        "acme",
        "alice",
        "customers.export_customers",
        &["include_personal_data"],
    );
    let denied = authz
        .check(keyed(export, CHECK))
        .await
        .unwrap()
        .into_inner();
    assert!(!denied.allowed);
    let invalid = authz
        .check(keyed(
            crate::helpers::perm_check("acme", "alice", "no_such_permission"),
            CHECK,
        ))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    // Alice tries to make herself an owner.
    let refused = admin
        .add_group_members(keyed(
            pb::AddGroupMembersRequest {
                tenant_id: "acme".into(),
                group_key: "owners".into(),
                user_ids: vec!["alice".into()],
                actor_user_id: "alice".into(),
                ..Default::default()
            },
            OPERATOR,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // One debug line per RPC: method, tenant, code, latency, revision, role.
    let line = d
        .json_line("the Check line", |v| {
            is_rpc(v, "Check", "OK")
                && v["fields"]["revision"] == allowed.revision.parse::<u64>().unwrap()
        })
        .await;
    assert_eq!(line["level"], "DEBUG");
    let f = &line["fields"];
    assert_eq!(f["service"], "authz.v1.AuthzService");
    assert_eq!(f["tenant"], "acme");
    assert_eq!(f["role"], "check");
    assert!(f["latency_ms"].as_f64().unwrap() >= 0.0, "{line}");
    assert!(
        f["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );
    let line = d
        .json_line("the CreateTenant line", |v| is_rpc(v, "CreateTenant", "OK"))
        .await;
    assert_eq!(line["fields"]["service"], "authz.v1.AdminService");
    assert_eq!(line["fields"]["role"], "operator");
    assert_eq!(
        line["fields"]["revision"],
        created.revision.parse::<u64>().unwrap()
    );
    // A caller's mistake is a debug line with the message, never a warning.
    let line = d
        .json_line("the INVALID_ARGUMENT line", |v| {
            is_rpc(v, "Check", "INVALID_ARGUMENT")
        })
        .await;
    assert!(
        line["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("no_such_permission"),
        "{line}"
    );

    // The refusal at info: who, what, which rule, what was missing.
    let line = d
        .json_line("the refusal", |v| message(v) == "admin call refused")
        .await;
    assert_eq!(line["level"], "INFO");
    let f = &line["fields"];
    assert_eq!(f["actor"], "alice");
    assert_eq!(f["method"], "AddGroupMembers");
    assert!(f["rule"].is_string(), "{line}");
    assert!(f["reason"].as_str().unwrap().contains("missing"), "{line}");

    // The listener lost (its connection killed, and no new connection let in) and regained.
    let text = crate::metrics::scrape(metrics_addr).await;
    let changes = crate::metrics::value(&text, "authz_readiness_changes_total");
    crate::pg::admin_execute(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false")).await;
    crate::pg::admin_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'authzd-listener' AND datname = '{db}'"
    ))
    .await;
    let lost = d
        .next_json_line("the listener lost", |v| {
            message(v).starts_with("change listener disconnected")
        })
        .await;
    assert_eq!(lost["level"], "WARN");
    let not_ready = d
        .next_json_line("not ready", |v| message(v) == "not ready")
        .await;
    assert!(
        not_ready["fields"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("change listener not subscribed: "),
        "{not_ready}"
    );
    // Each failed attempt says why, as the database put it.
    d.next_json_line("the cause of a failed reconnection", |v| {
        message(v).starts_with("change listener disconnected")
            && v["fields"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("is not currently accepting connections"))
    })
    .await;
    let text = crate::metrics::scrape(metrics_addr).await;
    assert_eq!(crate::metrics::value(&text, "authz_ready"), 0.0);
    assert_eq!(
        crate::metrics::value(&text, "authz_listener_connected"),
        0.0
    );
    crate::pg::admin_execute(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true")).await;
    let regained = d
        .next_json_line("the listener regained", |v| {
            message(v) == "change listener subscribed"
                && v["fields"]["reconnects"].as_u64().is_some_and(|n| n >= 1)
        })
        .await;
    assert_eq!(regained["level"], "INFO");
    // After it (lines not read yet): the cache flushed again, and ready again.
    d.wait_for_log("\"message\":\"cache flushed\"").await;
    d.wait_for_log("\"message\":\"ready\"").await;
    let text = crate::metrics::scrape(metrics_addr).await;
    assert_eq!(crate::metrics::value(&text, "authz_ready"), 1.0);
    assert_eq!(
        crate::metrics::value(&text, "authz_readiness_changes_total"),
        changes + 2.0,
        "out of readiness and back"
    );
    assert!(crate::metrics::value(&text, "authz_listener_reconnects_total") >= 1.0);
    assert!(
        text.lines()
            .any(|l| l.starts_with("authz_admin_refusals_total{method=\"AddGroupMembers\"")),
        "{text}"
    );

    // The server's own failure: a warning with the code and the cause.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    client
        .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    let failed = authz
        .check(keyed(
            crate::helpers::perm_check("acme", "bob", "view_reports"),
            CHECK,
        ))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable);
    let line = d
        .json_line("the failure", |v| message(v) == "request failed")
        .await;
    assert_eq!(line["level"], "WARN");
    let f = &line["fields"];
    assert_eq!(f["code"], "UNAVAILABLE");
    assert_eq!(f["method"], "Check");
    assert_eq!(f["tenant"], "acme");
    assert!(
        f["error"]
            .as_str()
            .unwrap()
            .contains("run `authzd migrate` or pass `--migrate`"),
        "{line}"
    );

    // Shutdown.
    d.signal("TERM");
    d.json_line("the shutdown", |v| {
        message(v).starts_with("shutdown signal received")
    })
    .await;
    d.json_line("the stop", |v| message(v) == "authzd stopped")
        .await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), d.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    d.drain();

    // Nothing secret anywhere in the log, and no context value.
    for line in d.seen() {
        for never in [OPERATOR, CHECK, secret.as_str(), "include_personal_data"] {
            assert!(!line.contains(never), "{never:?} logged: {line}");
        }
    }

    // The decision log: the two decided checks, nothing else.
    let text = std::fs::read_to_string(&decisions).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["permission"], "view_reports");
    assert_eq!(lines[0]["allowed"], true);
    let export = &lines[1];
    assert_eq!(export["method"], "Check");
    assert_eq!(export["role"], "check");
    assert_eq!(export["tenant"], "acme");
    assert_eq!(export["user"], "alice");
    assert_eq!(export["action"], "customers.export_customers");
    assert_eq!(
        export["context"],
        serde_json::json!({"include_personal_data": true})
    );
    assert_eq!(export["allowed"], false);
    assert_eq!(
        export["missing"],
        serde_json::json!(["export_personal_data"])
    );
    assert_eq!(export["revision"], denied.revision);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Text logs written to a pipe or a file carry no colour codes, the configuration is one
/// `config={...}` field, and a memory-store server exports no listener to be "down".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_off_a_terminal_are_plain() {
    let d = crate::daemon::Authzd::start(&[]).await;
    let log = crate::daemon::eventually("the ready line", || async {
        let log = d.log();
        log.contains(" ready").then_some(log)
    })
    .await;
    assert!(!log.contains('\u{1b}'), "colour codes in:\n{log}");
    let config = log
        .lines()
        .find(|l| l.contains("effective configuration"))
        .unwrap();
    // One field whose value is the whole configuration as JSON (key order depends on how
    // serde_json is built, so the test reads it as JSON).
    let json = config.split_once(" config=").map(|(_, j)| j).unwrap_or("");
    let fields: serde_json::Value = serde_json::from_str(json).expect(config);
    assert!(fields["api_keys"].is_null(), "{config}");
    assert_eq!(fields["log_format"], "text", "{config}");
    assert!(d.metric("authz_ready").await == 1.0);
    let catalog = authz_core::Catalog::from_toml(crate::helpers::MAESTRA).unwrap();
    assert_eq!(
        d.metric(&format!(
            "authz_build_info{{catalog=\"maestra\",catalog_version=\"{}\",version=\"{}\"}}",
            catalog.version,
            env!("CARGO_PKG_VERSION")
        ))
        .await,
        1.0
    );
    let text =
        crate::metrics::scrape(format!("127.0.0.1:{}", d.metrics_port).parse().unwrap()).await;
    assert!(!text.contains("authz_listener_connected"), "{text}");
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
}
