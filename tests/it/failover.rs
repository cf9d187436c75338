//! A promotion-like Postgres failover under a serving replica: the primary dies, a standby that
//! holds one more commit than the replica was ever told about (a revoke replicated to it whose
//! NOTIFY died with the primary: notifications are not replicated) comes up at the same
//! address, and the replica must never serve the old allow past the staleness bound, must
//! report not-ready while its listener is down, and must flush its cache when the listener
//! subscribes again, so the revoke is seen without any notification.
//!
//! Runs on clusters of its own and only with `AUTHZ_SLOW_TESTS` set (like the other scenarios
//! that stop a Postgres server).

use crate::helpers::*;
use crate::pg::Cluster;
use authz::grpc::pb;
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const PERM: &str = "delete_customers";

async fn serving(app: &TestApp) -> bool {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "authz.v1.AuthzService".into(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// The same tenant and grants on a database, as a replica of it writes them.
async fn populate(url: &str) -> TestApp {
    let app = TestServer::postgres(url).start().await;
    app.tenant("t").await;
    app.grant("t", "alice", &[PERM], None).await;
    app.grant("t", "bob", &[PERM], None).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_like_failover_never_serves_past_the_bound_and_flushes_on_resubscribe() {
    if !crate::slow() {
        eprintln!("skipped: set AUTHZ_SLOW_TESTS=1 to fail a Postgres primary over");
        return;
    }
    let primary = Cluster::new("primary");
    let mut standby = Cluster::new("standby");

    // The standby: the primary's data plus the revoke of alice's grant.
    let writer = populate(&standby.url()).await;
    writer
        .admin
        .clone()
        .revoke_permissions(pb::RevokePermissionsRequest {
            tenant_id: "t".into(),
            user_id: "alice".into(),
            permissions: vec![PERM.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!writer.allowed("t", "alice", PERM).await);
    writer.stop().await;

    // The replica under test serves from the primary, both users cached as allowed.
    populate(&primary.url()).await.stop().await;
    let replica = TestServer::postgres(&primary.url()).start().await;
    assert!(replica.allowed("t", "alice", PERM).await);
    assert!(replica.allowed("t", "bob", PERM).await);
    assert!(serving(&replica).await);
    let listener = replica.cached.as_ref().unwrap().listener().clone();
    let flushes = listener.flushes();

    // The primary dies. Nothing is confirmed after that, so the listener's last confirmed
    // point is now fixed: the cache may be trusted until it is MAX_STALENESS old (plus 3 ms:
    // the replica and this reading count whole milliseconds).
    tokio::task::block_in_place(|| primary.stop("immediate"));
    let before = Instant::now();
    let confirmed_at = before - listener.staleness().expect("the listener had confirmed");
    let trust_ends = confirmed_at + MAX_STALENESS + Duration::from_millis(3);

    // While it is down: readiness turns false, alice's check answers from the cache only
    // until the bound, and fails closed after it.
    let mut not_ready = false;
    let (mut allows_within, mut failed_after) = (0, 0);
    loop {
        not_ready |= !serving(&replica).await;
        let started = Instant::now();
        match replica.check(perm_check("t", "alice", PERM)).await {
            Ok(r) if r.allowed => {
                assert!(
                    started < trust_ends,
                    "an allow from the cache {:?} past the staleness bound",
                    started - trust_ends
                );
                allows_within += 1;
            }
            // Failing closed: a deny or an error status.
            Ok(_) | Err(_) => {
                if started > trust_ends {
                    failed_after += 1;
                }
            }
        }
        if not_ready && failed_after >= 3 {
            break;
        }
        assert!(
            before.elapsed() < Duration::from_secs(15),
            "readiness ({not_ready}) or failing closed ({failed_after}) never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!listener.connected());

    // The standby is promoted at the primary's address.
    tokio::task::block_in_place(|| {
        standby.stop("fast");
        standby.port = primary.port;
        standby.start();
    });
    let promoted = Instant::now();
    while !(listener.connected() && serving(&replica).await) {
        assert!(
            promoted.elapsed() < Duration::from_secs(15),
            "the replica did not recover: {}",
            listener.last_error()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovery = promoted.elapsed();
    assert!(
        listener.flushes() > flushes,
        "the listener subscribed again without flushing the cache"
    );
    // No notification of the revoke ever reached the replica: only the flush makes it seen.
    assert!(!replica.allowed("t", "alice", PERM).await);
    assert!(replica.allowed("t", "bob", PERM).await);
    eprintln!(
        "FIGURES failover: allows_within_bound={allows_within} failed_closed_after_bound={failed_after} \
         recovery_after_promotion={recovery:?} flushes={}",
        listener.flushes() - flushes
    );
}
