//! Connection limits of the real binary, probed with raw TCP and HTTP/2 frames: what an idle,
//! half-open or greedy client gets, and that well-behaved connections keep working.

use crate::daemon::{Authzd, PING, answers_ping, connect, h2_connect, until_frame, wait_closed};
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::grpc::pb::authz_service_client::AuthzServiceClient;
use tokio::io::AsyncWriteExt;

/// Connections that send nothing, or half a preface, are closed after the handshake timeout;
/// one that sent its whole preface earlier is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_the_preface_are_closed() {
    let d = Authzd::start(&["--handshake-timeout", "1s"]).await;
    // Opened first, so its deadline passes first: had the preface not counted, it would be
    // closed before the others.
    let mut complete = h2_connect(d.port).await;
    let mut silent = connect(d.port).await;
    let mut half = connect(d.port).await;
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // Meanwhile the server answers others.
    AdminServiceClient::new(d.channel().await)
        .get_catalog(pb::GetCatalogRequest {})
        .await
        .unwrap();
    wait_closed(&mut silent).await;
    wait_closed(&mut half).await;
    assert!(
        answers_ping(&mut complete).await,
        "a connection that sent its preface stays open"
    );
    d.metric_reaches(
        "authz_connections_closed_total{reason=\"handshake_timeout\"}",
        2.0,
    )
    .await;
}

/// A connection without an open stream is closed after the idle timeout; a connection with an
/// open Watch stream is not, however quiet the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_open_streams_keep_theirs() {
    use tokio_stream::StreamExt;
    let d = Authzd::start(&["--idle-timeout", "1s"]).await;
    let admin = AdminServiceClient::new(d.channel().await);
    admin
        .clone()
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "t".into(),
            display_name: "T".into(),
        })
        .await
        .unwrap();
    // The watching connection is idle-timed from before the raw one: had its stream not
    // counted, it would be closed first.
    let mut watch = AuthzServiceClient::new(d.channel().await)
        .watch(pb::WatchRequest {
            tenant_id: "t".into(),
            after_revision: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut idle = h2_connect(d.port).await;
    wait_closed(&mut idle).await;
    d.metric_reaches("authz_connections_closed_total{reason=\"idle\"}", 1.0)
        .await;
    // The writer's connection may have been closed as idle too: a fresh one writes.
    AdminServiceClient::new(d.channel().await)
        .grant_permissions(pb::GrantPermissionsRequest {
            tenant_id: "t".into(),
            user_id: "u".into(),
            permissions: vec!["view_reports".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let change = watch.next().await.unwrap().unwrap();
    assert_eq!(change.user_ids, ["u"]);
}

/// The server pings; a connection that does not answer is closed, one that does stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_keepalive_pings_close_the_connection() {
    let d = Authzd::start(&[
        "--http2-keepalive-interval",
        "1s",
        "--http2-keepalive-timeout",
        "1s",
    ])
    .await;
    let mut answering = h2_connect(d.port).await;
    let mut silent = h2_connect(d.port).await;
    let ping = |f: &crate::daemon::Frame| f.0 == PING && f.1 == 0;
    until_frame(&mut answering, true, ping)
        .await
        .expect("the server pings an idle connection");
    until_frame(&mut silent, false, ping)
        .await
        .expect("the server pings the silent connection too");
    // Not answered: closed after the keepalive timeout (the idle timeout is minutes away).
    assert!(
        until_frame(&mut silent, false, |_| false).await.is_none(),
        "the connection that ignores pings is closed"
    );
    assert!(answers_ping(&mut answering).await);
}

/// Past --max-connections new connections are closed at once, counted, and warned about in a
/// few lines rather than one per refusal; a freed place is usable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_the_excess_and_says_so() {
    const REFUSED: usize = 20;
    let d = Authzd::start(&["--max-connections", "3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = h2_connect(d.port).await;
        assert!(answers_ping(&mut c).await);
        held.push(c);
    }
    d.metric_reaches("authz_connections_open", 3.0).await;
    for _ in 0..REFUSED {
        let mut c = connect(d.port).await;
        wait_closed(&mut c).await;
    }
    d.metric_reaches("authz_connections_refused_total", REFUSED as f64)
        .await;
    let warnings = d.log().matches("refusing connections").count();
    assert!(
        (1..REFUSED).contains(&warnings),
        "refusals are warned about, rate-limited: {warnings} lines for {REFUSED} refusals"
    );
    for c in &mut held {
        assert!(answers_ping(c).await, "admitted connections are unaffected");
    }
    // Free one place: a gRPC client gets in once the server has noticed.
    drop(held.pop());
    crate::daemon::eventually("a freed place admits a client", || async {
        let channel = tonic::transport::Channel::from_shared(d.endpoint())
            .unwrap()
            .connect()
            .await
            .ok()?;
        AdminServiceClient::new(channel)
            .get_catalog(pb::GetCatalogRequest {})
            .await
            .ok()
    })
    .await;
}
