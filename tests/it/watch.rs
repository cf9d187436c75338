//! Watch streams on the real binary: their limits, their cost while quiet, and shutdown.

use crate::daemon::{Authzd, eventually};
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::grpc::pb::authz_service_client::AuthzServiceClient;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

type Changes = tonic::Streaming<pb::WatchResponse>;

async fn tenant(channel: &Channel, id: &str) {
    AdminServiceClient::new(channel.clone())
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: id.into(),
            display_name: id.into(),
        })
        .await
        .unwrap();
}

async fn grant(channel: &Channel, tenant: &str, user: &str) -> String {
    AdminServiceClient::new(channel.clone())
        .grant_permissions(pb::GrantPermissionsRequest {
            tenant_id: tenant.into(),
            user_id: user.into(),
            permissions: vec!["view_reports".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision
}

async fn watch(channel: &Channel, tenant: &str) -> Result<Changes, tonic::Status> {
    AuthzServiceClient::new(channel.clone())
        .watch(pb::WatchRequest {
            tenant_id: tenant.into(),
            after_revision: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// The next change, which must come.
async fn next(stream: &mut Changes) -> pb::WatchResponse {
    tokio::time::timeout(crate::daemon::PATIENCE, stream.next())
        .await
        .expect("a change in time")
        .expect("the stream is open")
        .expect("a change, not an error")
}

/// Streams past either limit are refused with RESOURCE_EXHAUSTED naming the flag to raise;
/// streams are not counted as concurrent requests; a closed stream frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_are_capped_per_server_and_per_tenant() {
    let d = Authzd::start(&[
        "--max-watch-streams",
        "3",
        "--max-watch-streams-per-tenant",
        "2",
        "--max-concurrent-requests",
        "1",
    ])
    .await;
    let ch = d.channel().await;
    for t in ["a", "b", "c"] {
        tenant(&ch, t).await;
    }
    let a1 = watch(&ch, "a").await.unwrap();
    let _a2 = watch(&ch, "a").await.unwrap();
    let refused = watch(&ch, "a").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("tenant `a`")
            && refused.message().contains("--max-watch-streams-per-tenant"),
        "{}",
        refused.message()
    );
    let mut b = watch(&ch, "b").await.unwrap();
    let refused = watch(&ch, "c").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("limit of 3 Watch streams")
            && refused.message().contains("--max-watch-streams"),
        "{}",
        refused.message()
    );
    d.metric_reaches("authz_watch_streams", 3.0).await;
    d.metric_reaches("authz_watch_streams_refused_total{limit=\"tenant\"}", 1.0)
        .await;
    d.metric_reaches("authz_watch_streams_refused_total{limit=\"server\"}", 1.0)
        .await;
    assert!(d.log().contains("--max-watch-streams"), "{}", d.log());
    // Three open streams and a limit of one concurrent request: requests still run.
    let r = grant(&ch, "b", "u").await;
    assert_eq!(next(&mut b).await.revision, r);
    // Closing a stream frees its place, once the server has seen it go.
    drop(a1);
    eventually("a closed stream frees its place", || async {
        watch(&ch, "c").await.ok()
    })
    .await;
}

/// Quiet streams make no change-log reads: not over time, not when other tenants commit. A
/// commit reaches streams on another replica through the change listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watch_streams_cost_no_database_reads() {
    const QUIET: usize = 50;
    let (url, _) = crate::pg::fresh_database().await;
    let writer = Authzd::start(&["--database-url", &url, "--migrate"]).await;
    let watcher = Authzd::start(&["--database-url", &url]).await;
    let w = writer.channel().await;
    tenant(&w, "quiet").await;
    tenant(&w, "busy").await;
    let ch = watcher.channel().await;
    let mut quiet = Vec::new();
    for _ in 0..QUIET {
        quiet.push(watch(&ch, "quiet").await.unwrap());
    }
    let mut busy = watch(&ch, "busy").await.unwrap();
    watcher
        .metric_reaches("authz_watch_streams", (QUIET + 1) as f64)
        .await;
    // Each stream reads the log once when it opens.
    watcher
        .metric_reaches("authz_watch_reads_total", (QUIET + 1) as f64)
        .await;
    let opened = watcher.metric("authz_watch_reads_total").await;
    for i in 0..5 {
        let r = grant(&w, "busy", &format!("u{i}")).await;
        assert_eq!(next(&mut busy).await.revision, r);
    }
    let after_busy = watcher.metric("authz_watch_reads_total").await;
    assert!(
        after_busy - opened <= 5.0,
        "only the busy tenant's stream read the log: {} reads for 5 commits",
        after_busy - opened
    );
    // An observation window, not a wait for an event: nothing may happen in it.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        watcher.metric("authz_watch_reads_total").await,
        after_busy,
        "quiet streams read nothing while time passes"
    );
    let r = grant(&w, "quiet", "q").await;
    for s in &mut quiet {
        assert_eq!(next(s).await.revision, r);
    }
}

/// SIGTERM ends every open Watch stream at once with UNAVAILABLE, and the process exits without
/// waiting out its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watch_streams_at_once() {
    let mut d = Authzd::start(&["--shutdown-grace", "120s"]).await;
    let ch = d.channel().await;
    tenant(&ch, "t").await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(watch(&ch, "t").await.unwrap());
    }
    d.metric_reaches("authz_watch_streams", 3.0).await;
    d.signal("TERM");
    let ends = futures_util::future::join_all(
        streams
            .iter_mut()
            .map(|s| tokio::time::timeout(crate::daemon::PATIENCE, s.next())),
    )
    .await;
    // Every stream ends, none with a change. The server sends each its UNAVAILABLE status; a
    // client library that closes the connection (after the server's GOAWAY) before its
    // application has read a status it received drops it, and its stream then ends without
    // one: under a busy test run that happens to some streams, never to all.
    let mut statuses = 0;
    for end in ends {
        match end.expect("the stream ends in time") {
            Some(Err(status)) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(
                    status.message().contains("shutting down")
                        && status.message().contains("reconnect"),
                    "{}",
                    status.message()
                );
                statuses += 1;
            }
            None => {}
            Some(Ok(change)) => panic!("no change was committed: {change:?}"),
        }
    }
    assert!(statuses > 0, "the streams end with UNAVAILABLE");
    let exit = tokio::time::timeout(crate::daemon::PATIENCE, d.child.wait())
        .await
        .expect("authzd exits without waiting out its grace period")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(!d.log().contains("grace period over"), "{}", d.log());
}

/// A replica that hears no announcement of another replica's commits (here: a server straight
/// on the Postgres store, without a change listener) still delivers them, through the hub's
/// periodic re-read of the watched tenants' revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_catch_up_when_announcements_are_lost() {
    use authz::store::postgres::{PgOptions, PostgresStore};
    use std::sync::Arc;
    let writer = crate::helpers::TestServer::fresh_postgres().start().await;
    writer.tenant("t").await;
    let url = writer.db_url.clone().unwrap();
    let catalog = writer.catalog.clone();
    let deaf = Arc::new(PostgresStore::new(catalog.clone(), &PgOptions::new(url)).unwrap());
    let reader = crate::helpers::TestServer::over(catalog, deaf)
        .options(authz::server::ServerOptions {
            watch: authz::grpc::watch::WatchOptions {
                resync_every: std::time::Duration::from_millis(200),
                ..Default::default()
            },
            ..Default::default()
        })
        .start()
        .await;
    let mut stream = watch(&reader.channel, "t").await.unwrap();
    let r = grant(&writer.channel, "t", "u").await;
    assert_eq!(next(&mut stream).await.revision, r);
    let r = grant(&writer.channel, "t", "v").await;
    assert_eq!(next(&mut stream).await.revision, r);
}
