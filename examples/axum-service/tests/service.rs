//! The example service on a port, in front of the real authz server (memory store): allowed
//! requests are answered, denied ones get 403 with the missing permissions, and when authz
//! cannot answer, 503 — never an allow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_client::{Client, proto};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 GET: status and JSON body.
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    user: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let who = user
        .map(|u| format!("x-tenant: acme\r\nx-user: {u}\r\n"))
        .unwrap_or_default();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\n{who}connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_what_authz_allows_and_refuse_the_rest() {
    // The real authz server.
    let catalog = Arc::new(authz_core::Catalog::from_toml(authz::DEFAULT_CATALOG).unwrap());
    let store = Arc::new(authz::store::memory::MemoryStore::new(catalog.clone()));
    let app = Arc::new(authz::app::Authz::new(catalog, store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authz_addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(authz::server::run(
        listener,
        app,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = Client::connect(format!("http://{authz_addr}"))
        .await
        .unwrap();
    let admin = client.admin();
    admin
        .create_tenant(proto::CreateTenantRequest {
            tenant_id: "acme".into(),
            display_name: "Acme".into(),
        })
        .await
        .unwrap();
    admin
        .add_group_members(proto::AddGroupMembersRequest {
            tenant_id: "acme".into(),
            group_key: "analysts".into(),
            user_ids: vec!["alice".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .set_restrictions(proto::SetRestrictionsRequest {
            tenant_id: "acme".into(),
            user_id: "alice".into(),
            resource_type: "folder".into(),
            resource_ids: vec!["spring".into()],
            ..Default::default()
        })
        .await
        .unwrap();

    // The example service.
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(http, axum_service::router(client)).await });

    let (status, body) = get(addr, "/reports", Some("alice")).await;
    assert_eq!((status, body["reports"][0].as_str()), (200, Some("weekly")));
    let (status, body) = get(addr, "/customers/export", Some("alice")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(addr, "/customers/export?personal_data=true", Some("alice")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["missing_permissions"],
        serde_json::json!(["export_personal_data"])
    );
    let (status, body) = get(addr, "/reports", Some("mallory")).await;
    assert_eq!(status, 403, "an unknown user is denied: {body}");
    let (status, _) = get(addr, "/folders/spring/reports", Some("alice")).await;
    assert_eq!(status, 200);
    let (status, body) = get(addr, "/folders/winter/reports", Some("alice")).await;
    assert_eq!(status, 403);
    assert_eq!(body["reason"], "limited to other folders");
    assert_eq!(body["missing_permissions"], serde_json::json!([]));
    let (status, _) = get(addr, "/reports", None).await;
    assert_eq!(status, 401);

    // authz goes away: refused with 503, never allowed.
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let (status, body) = get(addr, "/reports", Some("alice")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("UNAVAILABLE"),
        "{body}"
    );
}
