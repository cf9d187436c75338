//! The Rust client (`authz-client`) against the real server: the quick start, read-your-writes,
//! retries, deadlines, split batches, routing and failover over replicas, Watch that resumes,
//! and TLS with keys.

use crate::helpers::*;
use authz::app::Authz;
use authz::store::memory::MemoryStore;
use authz_client::{
    AllowedResources, BatchItem, Client, Consistency, RetryPolicy, Revision, proto,
};
use authz_core::Catalog;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

async fn create_tenant(client: &Client, tenant: &str) -> Revision {
    let r = client
        .admin()
        .create_tenant(proto::CreateTenantRequest {
            tenant_id: tenant.into(),
            display_name: tenant.into(),
        })
        .await
        .unwrap();
    Revision::parse(&r.revision).unwrap()
}

async fn add_members(client: &Client, tenant: &str, group: &str, users: &[&str]) -> Revision {
    let r = client
        .admin()
        .add_group_members(proto::AddGroupMembersRequest {
            tenant_id: tenant.into(),
            group_key: group.into(),
            user_ids: users.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    Revision::parse(&r.revision).unwrap()
}

/// What the crate's documentation shows, end to end: writes through the admin API, then
/// checks, explanations, batches, effective permissions and allowed resources.
async fn the_documented_calls_work(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    let client = app.client().await;
    create_tenant(&client, "acme").await;
    let rev = add_members(&client, "acme", "analysts", &["alice"]).await;
    assert_eq!(client.last_write("acme"), Some(rev));

    let d = client
        .check("acme", "alice")
        .permission("export_customers")
        .resource("folder", "f1")
        .await
        .unwrap();
    assert!(d.allowed && d.is_allowed());
    assert_eq!(d.revision, rev);

    let d = client
        .check("acme", "alice")
        .action("customers.export_customers")
        .context("include_personal_data", true)
        .explain()
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.missing_permissions, ["export_personal_data"]);
    assert!(
        d.explanation
            .unwrap()
            .summary
            .contains("missing export_personal_data")
    );

    // A bad request is an error with the server's code and message, never a decision.
    let e = client
        .check("acme", "alice")
        .permission("export_customer")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("export_customer"), "{e}");
    assert!(e.to_string().starts_with("INVALID_ARGUMENT: "), "{e}");

    let batch = client
        .batch_check("acme")
        .item(BatchItem::permission("alice", "view_reports"))
        .item(BatchItem::permission("alice", "delete_customers").explain())
        .item(BatchItem::permission("alice", "nope"))
        .await
        .unwrap();
    assert!(batch.results[0].as_ref().unwrap().allowed);
    let denied = batch.results[1].as_ref().unwrap();
    assert!(!denied.allowed && denied.explanation.is_some());
    assert_eq!(
        batch.results[2].as_ref().unwrap_err().code,
        Code::InvalidArgument
    );
    assert!(!batch.all_allowed());

    let effective = client.effective_permissions("acme", "alice").await.unwrap();
    assert!(effective.holds("view_reports") && !effective.holds("delete_customers"));
    assert_eq!(effective.response.group_keys, ["analysts"]);

    let (allowed, _) = client
        .allowed_resources("acme", "alice", "view_reports", "folder")
        .await
        .unwrap();
    assert_eq!(allowed, AllowedResources::All);

    // Admin reads as an actor: the admin rules apply with Alice's own permissions.
    let refused = client
        .admin()
        .as_actor("alice")
        .add_group_members(proto::AddGroupMembersRequest {
            tenant_id: "acme".into(),
            group_key: "owners".into(),
            user_ids: vec!["alice".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
    // A refused write commits nothing, so the client remembers no newer revision.
    assert_eq!(client.last_write("acme"), Some(rev));
    app.stop().await;
}

/// Read-your-writes without tokens: after a write through the client, its next check of the
/// tenant is at least as fresh as the write, so a replica reloads a cached entry older than it
/// (here: a user the write did not touch, whose entry no invalidation removes). With it turned
/// off, or with an explicit consistency, the same check is a cache hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_a_write_are_at_least_as_fresh_as_the_write() {
    let app = TestServer::fresh_postgres().start().await;
    let stats = app.cached.as_ref().unwrap().stats();
    let client = app.client().await;
    let plain = Client::builder()
        .endpoint(app.url())
        .read_your_writes(false)
        .connect()
        .await
        .unwrap();
    create_tenant(&client, "t").await;
    add_members(&client, "t", "analysts", &["u"]).await;
    // The write's own NOTIFY, which invalidates `u` again, is behind us.
    settled(&app).await;
    // `u` cached at the current revision.
    assert!(
        plain
            .check("t", "u")
            .permission("view_reports")
            .await
            .unwrap()
            .allowed
    );
    let loads = || stats.loads.load(Ordering::SeqCst);

    // A write `u` is not part of: its entry stays cached, now older than the write.
    let rev = add_members(&client, "t", "marketers", &["v"]).await;
    let before = loads();
    assert!(
        plain
            .check("t", "u")
            .permission("view_reports")
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(loads(), before, "without read-your-writes: a cache hit");
    assert!(
        client
            .check("t", "u")
            .permission("view_reports")
            .consistency(Consistency::MinimizeLatency)
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(loads(), before, "an explicit consistency wins");
    let d = client
        .check("t", "u")
        .permission("view_reports")
        .await
        .unwrap();
    assert_eq!(
        loads(),
        before + 1,
        "the write's revision made the entry stale"
    );
    assert!(d.revision >= rev);
    // Once reloaded, it is fresh enough: no more loads.
    client
        .check("t", "u")
        .permission("view_reports")
        .await
        .unwrap();
    assert_eq!(loads(), before + 1);
    // A revision handed over from elsewhere counts the same: a write made without this client.
    let elsewhere = app.add("t", "marketers", &["w"]).await;
    assert!(
        client
            .check("t", "u")
            .permission("view_reports")
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(loads(), before + 1, "nothing told the client of that write");
    client.remember_write("t", Revision::parse(&elsewhere).unwrap());
    assert!(
        client
            .check("t", "u")
            .permission("view_reports")
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(
        loads(),
        before + 2,
        "a remembered revision made the entry stale"
    );
    app.stop().await;
}

/// Waits until the replica's listener has applied every commit made before now (a heartbeat
/// sent after now came back: notifications arrive in commit order).
async fn settled(app: &TestApp) {
    let listener = app.cached.as_ref().unwrap().listener();
    let now = std::time::Instant::now();
    let deadline = now + Duration::from_secs(10);
    while listener
        .staleness()
        .is_none_or(|s| s + Duration::from_millis(2) >= now.elapsed())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never confirmed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn memory_app() -> Arc<Authz> {
    let catalog = Arc::new(Catalog::from_toml(MAESTRA).unwrap());
    Arc::new(Authz::new(
        catalog.clone(),
        Arc::new(MemoryStore::new(catalog)),
    ))
}

/// A read that meets UNAVAILABLE is tried again after a backoff: the port is bound but not
/// listening (connections are refused) until the retry hook, called between the attempts,
/// starts the server on it. A write in the same situation fails at once: it is never retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_retried_on_unavailable_and_writes_are_not() {
    let app = memory_app();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let socket = Arc::new(Mutex::new(Some(socket)));
    let retries = Arc::new(Mutex::new(Vec::<(u32, Code)>::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = Arc::new(Mutex::new(Some(stopped)));
    let hook = {
        let (socket, retries, app, stopped) = (
            socket.clone(),
            retries.clone(),
            app.clone(),
            stopped.clone(),
        );
        move |e: &authz_client::RetryEvent<'_>| {
            retries.lock().unwrap().push((e.attempt, e.status.code()));
            if let Some(s) = socket.lock().unwrap().take() {
                let listener = s.listen(64).unwrap();
                let stopped = stopped.lock().unwrap().take().unwrap();
                tokio::spawn(authz::server::run(
                    listener,
                    app.clone(),
                    Default::default(),
                    async {
                        let _ = stopped.await;
                    },
                ));
            }
        }
    };
    let client = Client::builder()
        .endpoint(format!("http://{addr}"))
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
        })
        .on_retry(hook)
        .connect_lazy()
        .await
        .unwrap();

    // The write first: refused connection, UNAVAILABLE, no retry, so nothing is served yet.
    let write = client
        .admin()
        .create_tenant(proto::CreateTenantRequest {
            tenant_id: "t".into(),
            display_name: "T".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::Unavailable, "{write}");
    assert!(retries.lock().unwrap().is_empty(), "a write was retried");
    assert!(socket.lock().unwrap().is_some());

    // The read: attempt 1 refused, the hook starts the server, attempt 2 is answered.
    let e = client
        .check("t", "u")
        .permission("view_reports")
        .await
        .unwrap_err();
    assert_eq!(*retries.lock().unwrap(), [(1, Code::Unavailable)]);
    // Answered by the server: the tenant does not exist (the write never happened).
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let _ = stop.send(());
}

/// A per-call deadline covers the call: a write held at the memory store's door fails with
/// DEADLINE_EXCEEDED when its deadline passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_end_at_their_deadline() {
    let app = TestServer::memory().start().await;
    let client = app.client().await;
    create_tenant(&client, "t").await;
    let held = app.memory.as_ref().unwrap().hold_writes().await;
    let e = client
        .admin()
        .timeout(Duration::from_millis(200))
        .add_group_members(proto::AddGroupMembersRequest {
            tenant_id: "t".into(),
            group_key: "analysts".into(),
            user_ids: vec!["u".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
    drop(held);
    // Reads have deadlines too; a generous one is met.
    client
        .check("t", "u")
        .permission("view_reports")
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();
    app.stop().await;
}

/// A batch larger than the server's limit (1000) is split, sent concurrently and answered in
/// the order of its items; each item's answer is its own.
async fn large_batches_are_split_and_answered_in_order(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    let client = app.client().await;
    create_tenant(&client, "t").await;
    add_members(&client, "t", "analysts", &["a"]).await;
    let perms = [
        "view_reports",
        "delete_customers",
        "export_customers",
        "edit_users",
    ];
    let expected = [true, false, true, false];
    let items: Vec<BatchItem> = (0..2500)
        .map(|i| BatchItem::permission(if i % 7 == 0 { "b" } else { "a" }, perms[i % 4]))
        .collect();
    let r = client.batch_check("t").items(items).await.unwrap();
    assert_eq!(r.results.len(), 2500);
    for (i, result) in r.results.iter().enumerate() {
        let want = i % 7 != 0 && expected[i % 4];
        assert_eq!(result.as_ref().unwrap().allowed, want, "item {i}");
    }
    // One request holding more than the server takes is refused, as the server says.
    let small = Client::builder()
        .endpoint(app.url())
        .max_batch(5000)
        .connect()
        .await
        .unwrap();
    let e = small
        .batch_check("t")
        .items((0..1001).map(|_| BatchItem::permission("a", "view_reports")))
        .await
        .unwrap_err();
    assert!(e.message().contains("limit is 1000"), "{e}");
    // An empty batch is the server's error too.
    let e = client.batch_check("t").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    app.stop().await;
}

/// Three replicas on one database: each tenant's checks go to one replica, so each user is
/// loaded into one replica's cache (the replicas' loads add up to the number of users, not three
/// times it). A replica that stops is skipped (its tenants go to their next replica; the
/// others stay), and takes its tenants back when it is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_routed_to_one_replica_each_and_fail_over() {
    let first = TestServer::fresh_postgres().start().await;
    let url = first.db_url.clone().unwrap();
    let mut replicas = vec![
        first,
        TestServer::postgres(&url).start().await,
        TestServer::postgres(&url).start().await,
    ];
    let client = Client::builder()
        .endpoints(replicas.iter().map(|r| r.url()))
        .health_interval(Duration::from_secs(3600))
        .connect()
        .await
        .unwrap();
    let tenants: Vec<String> = (0..30).map(|i| format!("tenant{i}")).collect();
    for t in &tenants {
        create_tenant(&client, t).await;
        add_members(&client, t, "analysts", &["u0", "u1", "u2", "u3", "u4"]).await;
    }
    let home: Vec<String> = tenants
        .iter()
        .map(|t| client.replica_for(t).unwrap())
        .collect();
    for r in &replicas {
        let share = home.iter().filter(|h| **h == r.url()).count();
        assert!(share > 0, "{} serves no tenant", r.url());
    }
    for t in &tenants {
        for u in 0..5 {
            let d = client
                .check(t.as_str(), format!("u{u}"))
                .permission("view_reports")
                .consistency(Consistency::MinimizeLatency)
                .await
                .unwrap();
            assert!(d.allowed);
        }
    }
    // Every check missed the cache of exactly one replica, the tenant's.
    let loads: Vec<u64> = replicas
        .iter()
        .map(|r| {
            r.cached
                .as_ref()
                .unwrap()
                .stats()
                .loads
                .load(Ordering::SeqCst)
        })
        .collect();
    assert_eq!(
        loads.iter().sum::<u64>(),
        150,
        "each user loaded once: {loads:?}"
    );
    for (r, n) in replicas.iter().zip(&loads) {
        let share = home.iter().filter(|h| **h == r.url()).count() as u64;
        assert_eq!(*n, share * 5, "{} loads only its tenants' users", r.url());
    }

    // One replica stops: its tenants' next calls fail over; nobody else moves.
    let gone = replicas.remove(1);
    let gone_url = gone.url();
    let gone_addr = gone.addr;
    gone.stop().await;
    let moved = tenants
        .iter()
        .zip(&home)
        .find(|(_, h)| **h == gone_url)
        .map(|(t, _)| t.clone())
        .unwrap();
    assert!(
        client
            .check(moved.as_str(), "u0")
            .permission("view_reports")
            .await
            .unwrap()
            .allowed
    );
    client.refresh_health().await;
    assert!(client.replicas().contains(&(gone_url.clone(), false)));
    for (t, h) in tenants.iter().zip(&home) {
        let now = client.replica_for(t).unwrap();
        if *h == gone_url {
            assert_ne!(now, gone_url);
        } else {
            assert_eq!(&now, h, "{t} moved though its replica is up");
        }
    }

    // It comes back on its address: its tenants go home again.
    let listener = tokio::net::TcpListener::bind(gone_addr).await.unwrap();
    let back = TestServer::postgres(&url).listener(listener).start().await;
    client.refresh_health().await;
    assert!(client.replicas().contains(&(gone_url.clone(), true)));
    for (t, h) in tenants.iter().zip(&home) {
        assert_eq!(&client.replica_for(t).unwrap(), h);
    }
    assert!(
        client
            .check(moved.as_str(), "u1")
            .permission("view_reports")
            .await
            .unwrap()
            .allowed
    );
    back.stop().await;
    for r in replicas {
        r.stop().await;
    }
}

/// The health loop notices on its own that a replica stopped, and that it came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_followed_without_calls() {
    let a = TestServer::memory().start().await;
    let b = TestServer::memory().start().await;
    let client = Client::builder()
        .endpoints([a.url(), b.url()])
        .health_interval(Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    assert!(client.replicas().iter().all(|(_, ready)| *ready));
    let b_url = b.url();
    b.stop().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.replicas().contains(&(b_url.clone(), true)) {
        assert!(std::time::Instant::now() < deadline, "never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every tenant now goes to the replica that is up.
    for t in ["x", "y", "z", "w"] {
        assert_eq!(client.replica_for(t).unwrap(), a.url());
    }
    a.stop().await;
}

/// The next change, which must come.
async fn next(changes: &mut authz_client::Changes) -> authz_client::Change {
    tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("a change in time")
        .expect("the stream is open")
        .expect("a change, not an error")
}

/// Watch through the client resumes across a replica's shutdown from the last revision it
/// delivered, on the tenant's next replica: no change lost, none repeated. Started "from now"
/// and broken before its first change, it resumes from where the server said it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_the_last_revision_on_another_replica() {
    let first = TestServer::fresh_postgres().start().await;
    let url = first.db_url.clone().unwrap();
    let second = TestServer::postgres(&url).start().await;
    first.tenant("t").await;
    let client = Client::builder()
        .endpoints([first.url(), second.url()])
        .health_interval(Duration::from_secs(3600))
        .retry(RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        })
        .connect()
        .await
        .unwrap();
    let (home, other) = if client.replica_for("t").unwrap() == first.url() {
        (first, second)
    } else {
        (second, first)
    };
    let mut changes = client.watch("t").start().await.unwrap();
    let mut from_now = client.watch("t").start().await.unwrap();
    let r2 = other.add("t", "analysts", &["a"]).await;
    let c = next(&mut changes).await;
    assert_eq!(
        (c.revision.token(), c.operation.as_str()),
        (r2.clone(), "add_members")
    );
    assert_eq!(c.user_ids, ["a"]);
    assert_eq!(next(&mut from_now).await.revision.token(), r2);
    let r3 = other.add("t", "marketers", &["b"]).await;
    assert_eq!(next(&mut changes).await.revision.token(), r3);
    assert_eq!(next(&mut from_now).await.revision.token(), r3);

    let mut late = client.watch("t").start().await.unwrap();
    home.stop().await;
    // Committed while no replica streams to the client.
    let r4 = other.grant("t", "c", &["view_users"], None).await;
    let r5 = other.remove_from("t", "analysts", "a").await;
    for stream in [&mut changes, &mut from_now] {
        assert_eq!(next(stream).await.revision.token(), r4);
        assert_eq!(next(stream).await.revision.token(), r5);
    }
    // `late` started after r3 and saw nothing before the break: it resumes from r3.
    assert_eq!(next(&mut late).await.revision.token(), r4);
    assert_eq!(next(&mut late).await.revision.token(), r5);
    // An error reconnecting cannot cure ends the stream with it.
    let e = client.watch("nope").start().await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    other.stop().await;
}

/// TLS, mutual TLS and an API key: the client verifies the server, presents its certificate
/// and sends its key; a client without the key is refused, and one that does not trust the
/// server's CA never gets an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mutual_tls_and_keys() {
    use authz::gate::Keys;
    use authz::server::ServerOptions;
    use authz::tls::{ServerTls, TlsPem};
    let ca = crate::tls::new_ca();
    let (cert, key) = crate::tls::leaf(&ca, &["localhost"]);
    let client_ca = crate::tls::new_ca();
    let identity = crate::tls::leaf(&client_ca, &["billing.internal"]);
    let options = ServerOptions {
        tls: Some(
            ServerTls::from_pem(&TlsPem {
                cert: cert.into_bytes(),
                key: key.into_bytes(),
                client_ca: Some(client_ca.pem.clone().into_bytes()),
            })
            .unwrap(),
        ),
        keys: Some(Arc::new(
            Keys::load("operator:an-operator-key-0123456789", None).unwrap(),
        )),
        ..ServerOptions::default()
    };
    let app = TestServer::memory().options(options).start().await;
    let port = app.addr.port();
    let tls = authz_client::Tls::new()
        .ca_certificate(ca.pem.clone())
        .identity(identity.0.clone(), identity.1.clone())
        .domain_name("localhost");
    let client = Client::builder()
        .endpoint(format!("127.0.0.1:{port}"))
        .tls(tls.clone())
        .api_key("an-operator-key-0123456789")
        .connect()
        .await
        .unwrap();
    assert!(client.replicas()[0].0.starts_with("https://"));
    create_tenant(&client, "t").await;
    add_members(&client, "t", "analysts", &["u"]).await;
    assert!(
        client
            .check("t", "u")
            .permission("view_reports")
            .await
            .unwrap()
            .allowed
    );

    let keyless = Client::builder()
        .endpoint(format!("127.0.0.1:{port}"))
        .tls(tls.clone())
        .connect()
        .await
        .unwrap();
    let e = keyless
        .check("t", "u")
        .permission("view_reports")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");

    let wrong_ca = Client::builder()
        .endpoint(format!("127.0.0.1:{port}"))
        .tls(
            authz_client::Tls::new()
                .ca_certificate(client_ca.pem.clone())
                .identity(identity.0, identity.1)
                .domain_name("localhost"),
        )
        .api_key("an-operator-key-0123456789")
        .retry(RetryPolicy::none())
        .connect()
        .await
        .unwrap_err();
    assert_eq!(wrong_ca.code(), Code::Unavailable, "{wrong_ca}");
    assert!(
        wrong_ca
            .message()
            .contains("no authz replica could be reached"),
        "{wrong_ca}"
    );
    app.stop().await;
}

/// A DNS name's addresses are the replicas; configuration mistakes are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_and_configuration_errors() {
    let app = TestServer::memory().start().await;
    let client = Client::builder()
        .dns(&format!("localhost:{}", app.addr.port()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ids: Vec<String> = client.replicas().into_iter().map(|(id, _)| id).collect();
    assert!(ids.contains(&app.url()), "{ids:?}");
    create_tenant(&client, "t").await;
    client
        .check("t", "u")
        .permission("view_reports")
        .await
        .unwrap();

    let e = Client::builder().connect().await.unwrap_err();
    assert!(e.message().contains("no endpoint"), "{e}");
    let e = Client::builder().dns("localhost").unwrap_err();
    assert!(e.message().contains("has no port"), "{e}");
    let e = Client::builder()
        .endpoint("http://127.0.0.1:1")
        .api_key("bad\nkey-with-a-newline")
        .connect()
        .await
        .unwrap_err();
    assert!(
        e.message().contains("API key") && !e.message().contains("newline"),
        "{e}"
    );
    let e = Client::connect("http://127.0.0.1:1").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    app.stop().await;
}

contract!(
    the_documented_calls_work,
    large_batches_are_split_and_answered_in_order,
);
