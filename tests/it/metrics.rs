//! `/metrics` after real traffic: every family operators rely on is there.

use crate::helpers::*;
use authz::metrics::Metrics;
use authz::server::ServerOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "{}",
        &out[..out.len().min(200)]
    );
    out
}

pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_traffic() {
    let metrics = Metrics::new().unwrap();
    let app = TestServer::fresh_postgres()
        .options(ServerOptions {
            metrics: Some(metrics.clone()),
            ..ServerOptions::default()
        })
        .start()
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let authz_app = app.app.clone();
    tokio::spawn(authz::metrics::serve(listener, metrics, authz_app));

    app.tenant("t").await;
    app.add("t", "analysts", &["u"]).await;
    for _ in 0..3 {
        assert!(app.allowed("t", "u", "view_reports").await);
    }
    assert!(!app.allowed("t", "u", "delete_customers").await);
    assert!(app.check(perm_check("t", "u", "nope")).await.is_err());
    // A batch's decisions are counted one by one: 2 allowed, 1 denied.
    let batch = authz::grpc::pb::BatchCheckRequest {
        tenant_id: "t".into(),
        items: ["view_reports", "view_reports", "delete_customers"]
            .iter()
            .map(|p| authz::grpc::pb::BatchCheckItem {
                user_id: "u".into(),
                target: Some(authz::grpc::pb::batch_check_item::Target::Permission(
                    (*p).into(),
                )),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    app.authz.clone().batch_check(batch).await.unwrap();
    // A path that names no method is labelled `unknown`, not by its path.
    let mut raw = tonic::client::Grpc::new(app.channel.clone());
    raw.ready().await.unwrap();
    let unknown = raw
        .unary::<_, authz::grpc::pb::CheckResponse, _>(
            tonic::Request::new(perm_check("t", "u", "view_reports")),
            http::uri::PathAndQuery::from_static("/authz.v1.AuthzService/NoSuchMethod"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::Unimplemented);
    app.grant("t", "u", &["delete_customers"], None).await;
    // The grant's notification reaches this replica's listener.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = scrape(addr).await;
        if value(&text, "authz_invalidation_lag_seconds_count") >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no invalidation lag recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let text = scrape(addr).await;
    assert!(
        value(
            &text,
            r#"authz_requests_total{code="OK",method="Check",service="authz.v1.AuthzService"}"#
        ) >= 4.0
    );
    assert_eq!(
        value(
            &text,
            r#"authz_requests_total{code="INVALID_ARGUMENT",method="Check",service="authz.v1.AuthzService"}"#
        ),
        1.0
    );
    assert!(
        value(
            &text,
            r#"authz_request_duration_seconds_count{code="OK",method="GrantPermissions",service="authz.v1.AdminService"}"#
        ) >= 1.0
    );
    assert_eq!(
        value(&text, r#"authz_check_decisions_total{decision="allow"}"#),
        5.0
    );
    assert_eq!(
        value(&text, r#"authz_check_decisions_total{decision="deny"}"#),
        2.0
    );
    assert_eq!(
        value(
            &text,
            r#"authz_requests_total{code="UNIMPLEMENTED",method="unknown",service="unknown"}"#
        ),
        1.0
    );
    assert!(
        !text.contains("NoSuchMethod"),
        "a bogus path became a label"
    );
    assert!(value(&text, "authz_cache_hits_total") >= 2.0);
    assert!(value(&text, "authz_cache_loads_total") >= 1.0);
    assert!(value(&text, "authz_cache_invalidations_total") >= 1.0);
    assert!(value(&text, "authz_cache_entries") >= 0.0);
    assert!(value(&text, "authz_cache_weight_bytes") >= 0.0);
    assert_eq!(value(&text, "authz_listener_connected"), 1.0);
    assert!(value(&text, "authz_listener_flushes_total") >= 1.0);
    assert!(value(&text, "authz_listener_notifications_total") >= 1.0);
    assert!(value(&text, "authz_listener_reconnects_total") >= 0.0);
    assert!(value(&text, "authz_db_pool_connections") >= 1.0);
    assert!(value(&text, "authz_db_pool_available") >= 0.0);
    assert!(value(&text, "authz_db_pool_waiting") >= 0.0);
    // The listener confirms its cache often; the bound is what the server was given.
    assert!(value(&text, "authz_listener_staleness_seconds") < MAX_STALENESS.as_secs_f64());
    // The busiest tenant's own series (the one tenant here).
    // CreateTenant, AddGroupMembers, five Checks, a BatchCheck and a GrantPermissions; the
    // unknown method never reached a handler, so it names no tenant.
    assert_eq!(
        value(&text, r#"authz_tenant_requests_total{tenant="t"}"#),
        9.0
    );
    assert_eq!(
        value(&text, r#"authz_tenant_request_errors_total{tenant="t"}"#),
        1.0,
        "the unknown permission"
    );
}

/// A memory-store server has no cache, listener or pool: it shows none of their series (a
/// listener that does not exist is not "down").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_store_shows_no_listener() {
    let metrics = Metrics::new().unwrap();
    let app = TestServer::memory()
        .options(ServerOptions {
            metrics: Some(metrics.clone()),
            ..ServerOptions::default()
        })
        .start()
        .await;
    app.tenant("t").await;
    let text = metrics.render(app.app.store_stats());
    for absent in [
        "authz_listener_connected",
        "authz_cache_hits_total",
        "authz_db_pool_connections",
        "authz_invalidation_lag_seconds",
    ] {
        assert!(!text.contains(absent), "{absent} in:\n{text}");
    }
    assert_eq!(
        value(
            &text,
            r#"authz_requests_total{code="OK",method="CreateTenant",service="authz.v1.AdminService"}"#
        ),
        1.0
    );
}
