//! The cache's loads: concurrent misses for one user, or for one custom group, share one
//! database read, sharing it never serves a load that read before an invalidation to a check
//! that began after it, and an entry past the TTL is read again. Postgres only.

use crate::helpers::*;
use authz::grpc::pb;
use authz::store::cached::{AfterLoad, CacheOptions, CachedStore};
use authz::store::postgres::{PgOptions, PostgresStore};
use authz::store::{Consistency, Store};
use authz_core::Catalog;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Holds the first user load after it is armed, between its database read and its store.
struct Hold {
    armed: Arc<AtomicBool>,
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

impl Hold {
    fn new() -> (Self, AfterLoad) {
        let hold = Self {
            armed: Arc::new(AtomicBool::new(false)),
            reached: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        };
        let (armed, reached, release) = (
            hold.armed.clone(),
            hold.reached.clone(),
            hold.release.clone(),
        );
        let hook = AfterLoad(Arc::new(move || {
            let (armed, reached, release) = (armed.clone(), reached.clone(), release.clone());
            Box::pin(async move {
                if armed.swap(false, Ordering::AcqRel) {
                    reached.notify_one();
                    release.notified().await;
                }
            })
        }));
        (hold, hook)
    }
}

/// Polls `f` (a counter of the cache) until it reaches `n`; fails after a few seconds.
async fn until(what: &str, n: u64, f: impl Fn() -> u64) {
    let start = Instant::now();
    while f() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: {} < {n}",
            f()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the replica's listener has confirmed, by heartbeat, a point after now: every
/// write committed before this call has then been applied to its cache, so no notification
/// of theirs can bump a generation later.
async fn caught_up(cached: &CachedStore) {
    let since = Instant::now();
    let start = Instant::now();
    loop {
        let staleness = cached.listener().staleness();
        // Milliseconds are truncated on both sides: keep a margin of one.
        if staleness.is_some_and(|s| s + Duration::from_millis(1) < since.elapsed()) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "listener never caught up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `write` (on another replica) and waits until `cached` has applied one more
/// invalidation: the write's notification.
async fn invalidated_by<F: std::future::Future>(cached: &CachedStore, what: &str, write: F) {
    let before = cached.stats().invalidations.load(Ordering::Relaxed);
    write.await;
    until(what, before + 1, || {
        cached.stats().invalidations.load(Ordering::Relaxed)
    })
    .await;
}

fn check_on(app: &TestApp, user: &str) -> tokio::task::JoinHandle<bool> {
    let mut client = app.authz.clone();
    let req = perm_check("t", user, "view_reports");
    tokio::spawn(async move { client.check(req).await.unwrap().into_inner().allowed })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_checks_for_one_user_read_the_database_once() {
    const N: u64 = 8;
    let a = TestServer::fresh_postgres().start().await;
    let (hold, hook) = Hold::new();
    let b = TestServer::postgres(a.db_url.as_ref().unwrap())
        .after_load(hook)
        .start()
        .await;
    let cached = b.cached.clone().unwrap();
    a.tenant("t").await;
    a.add("t", "analysts", &["u"]).await;
    caught_up(&cached).await;

    let stats = || cached.stats();
    let loads = stats().user_loads.load(Ordering::Relaxed);
    let coalesced = stats().coalesced.load(Ordering::Relaxed);
    hold.armed.store(true, Ordering::Release);
    let first = check_on(&b, "u");
    hold.reached.notified().await; // The first miss has read the database and is held.
    let rest: Vec<_> = (1..N).map(|_| check_on(&b, "u")).collect();
    // Every other check has missed and joined the held load (none can be answered: the
    // entry is not stored until the load is released).
    until(
        "checks joined the load in flight",
        coalesced + N - 1,
        || stats().coalesced.load(Ordering::Relaxed),
    )
    .await;
    hold.release.notify_one();

    assert!(first.await.unwrap());
    for c in rest {
        assert!(c.await.unwrap(), "a joined check has the load's answer");
    }
    assert_eq!(
        stats().user_loads.load(Ordering::Relaxed) - loads,
        1,
        "{N} concurrent cold checks of one user read it once"
    );
    assert_eq!(stats().coalesced.load(Ordering::Relaxed) - coalesced, N - 1);
    // A different user is not held up by, nor joined to, that load.
    assert!(!b.allowed("t", "other", "view_reports").await);
    assert_eq!(stats().user_loads.load(Ordering::Relaxed) - loads, 2);
}

/// A shared load that read before a revoke: checks that joined it before the revoke may have
/// its answer, a check after the revoke must not join it, and its entry is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_during_a_shared_load_is_never_missed() {
    let a = TestServer::fresh_postgres().start().await;
    let (hold, hook) = Hold::new();
    let b = TestServer::postgres(a.db_url.as_ref().unwrap())
        .after_load(hook)
        .start()
        .await;
    let cached = b.cached.clone().unwrap();
    a.tenant("t").await;
    a.add("t", "analysts", &["u"]).await;
    caught_up(&cached).await;

    let stats = || cached.stats();
    let loads = stats().user_loads.load(Ordering::Relaxed);
    let coalesced = stats().coalesced.load(Ordering::Relaxed);
    hold.armed.store(true, Ordering::Release);
    let leader = check_on(&b, "u");
    hold.reached.notified().await; // Read "u is an analyst", held before storing it.
    let joined = check_on(&b, "u");
    until("the second check joined the load", coalesced + 1, || {
        stats().coalesced.load(Ordering::Relaxed)
    })
    .await;

    invalidated_by(
        &cached,
        "B receives the revoke's notification",
        a.remove_from("t", "analysts", "u"),
    )
    .await;

    // The load is still held: a check that begins now must read for itself.
    assert!(
        !b.allowed("t", "u", "view_reports").await,
        "a check after the revoke must not join the load that read before it"
    );
    hold.release.notify_one(); // The held load now stores what it read before the revoke.
    assert!(
        leader.await.unwrap(),
        "the held check answers from its read"
    );
    assert!(joined.await.unwrap(), "the joined check shares that read");
    assert!(
        !b.allowed("t", "u", "view_reports").await,
        "the held load's entry must not be served"
    );
    assert_eq!(stats().coalesced.load(Ordering::Relaxed) - coalesced, 1);
    assert_eq!(
        stats().user_loads.load(Ordering::Relaxed) - loads,
        3,
        "the held load, the check after the revoke, and the reload past the stale entry"
    );
}

/// Sets the permissions of `tenant`'s custom group `key`, which creates it first if asked.
async fn set_group(app: &TestApp, key: &str, perms: &[&str], create: bool) {
    let group = pb::Group {
        key: key.into(),
        name: key.into(),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    let mut admin = app.admin.clone();
    if create {
        admin
            .create_group(pb::CreateGroupRequest {
                tenant_id: "t".into(),
                group: Some(group),
                ..Default::default()
            })
            .await
            .unwrap();
        return;
    }
    admin
        .update_group(pb::UpdateGroupRequest {
            tenant_id: "t".into(),
            group_key: key.into(),
            group: Some(pb::Group {
                key: String::new(),
                ..group
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["permissions".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Users of a custom group whose entry was invalidated: their own records are still cached,
/// so each check misses on the group alone. Returns the replica under `hold`, its users
/// checked once, and the group's entry invalidated by an edit that keeps `view_reports`.
async fn group_edited_under(hold: AfterLoad, users: &[&str]) -> (TestApp, TestApp) {
    let a = TestServer::fresh_postgres().start().await;
    let b = TestServer::postgres(a.db_url.as_ref().unwrap())
        .after_load(hold)
        .start()
        .await;
    let cached = b.cached.clone().unwrap();
    a.tenant("t").await;
    set_group(&a, "reporters", &["view_reports"], true).await;
    a.add("t", "reporters", users).await;
    caught_up(&cached).await;
    for u in users {
        assert!(b.allowed("t", u, "view_reports").await);
    }
    invalidated_by(
        &cached,
        "B receives the group edit's notification",
        set_group(&a, "reporters", &["view_reports", "view_users"], false),
    )
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_misses_read_the_group_once() {
    let users = ["u0", "u1", "u2", "u3", "u4", "u5"];
    let (hold, hook) = Hold::new();
    let (_a, b) = group_edited_under(hook, &users).await;
    let cached = b.cached.clone().unwrap();
    let stats = || cached.stats();
    let (user_loads, group_loads, coalesced) = (
        stats().user_loads.load(Ordering::Relaxed),
        stats().group_loads.load(Ordering::Relaxed),
        stats().coalesced.load(Ordering::Relaxed),
    );
    hold.armed.store(true, Ordering::Release);
    let first = check_on(&b, users[0]);
    hold.reached.notified().await; // The first group miss has read the group and is held.
    let rest: Vec<_> = users[1..].iter().map(|u| check_on(&b, u)).collect();
    let joiners = rest.len() as u64;
    until(
        "checks joined the group load in flight",
        coalesced + joiners,
        || stats().coalesced.load(Ordering::Relaxed),
    )
    .await;
    hold.release.notify_one();

    assert!(first.await.unwrap());
    for c in rest {
        assert!(c.await.unwrap(), "a joined check has the load's answer");
    }
    assert_eq!(
        stats().group_loads.load(Ordering::Relaxed) - group_loads,
        1,
        "{} concurrent checks missing on one group read it once",
        users.len()
    );
    assert_eq!(
        stats().user_loads.load(Ordering::Relaxed) - user_loads,
        0,
        "the users' own records stayed cached"
    );
    assert_eq!(
        stats().coalesced.load(Ordering::Relaxed) - coalesced,
        joiners
    );
}

/// A shared group load that read before the group lost a permission: a check after the edit
/// must not join it, and its entry is never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_edit_during_a_shared_group_load_is_never_missed() {
    let (hold, hook) = Hold::new();
    let (a, b) = group_edited_under(hook, &["u", "v"]).await;
    let cached = b.cached.clone().unwrap();
    let stats = || cached.stats();
    let (group_loads, coalesced) = (
        stats().group_loads.load(Ordering::Relaxed),
        stats().coalesced.load(Ordering::Relaxed),
    );
    hold.armed.store(true, Ordering::Release);
    let leader = check_on(&b, "u");
    hold.reached.notified().await; // Read "reporters may view reports", held before storing.
    let joined = check_on(&b, "v");
    until("the second check joined the load", coalesced + 1, || {
        stats().coalesced.load(Ordering::Relaxed)
    })
    .await;

    invalidated_by(
        &cached,
        "B receives the edit's notification",
        set_group(&a, "reporters", &["view_users"], false),
    )
    .await;

    assert!(
        !b.allowed("t", "u", "view_reports").await,
        "a check after the edit must not join the load that read before it"
    );
    hold.release.notify_one(); // The held load now stores what it read before the edit.
    assert!(
        leader.await.unwrap(),
        "the held check answers from its read"
    );
    assert!(joined.await.unwrap(), "the joined check shares that read");
    assert!(
        !b.allowed("t", "v", "view_reports").await,
        "the held load's entry must not be served"
    );
    assert_eq!(stats().coalesced.load(Ordering::Relaxed) - coalesced, 1);
    assert_eq!(
        stats().group_loads.load(Ordering::Relaxed) - group_loads,
        3,
        "the held load, the check after the edit, and the reload past the stale entry"
    );
}

/// A replica's first load of a user reads its custom group along with it, before the group has
/// an id here; an edit of the group that lands meanwhile must still keep that read out of the
/// group cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_edit_during_the_first_load_of_its_member_is_never_missed() {
    let a = TestServer::fresh_postgres().start().await;
    let (hold, hook) = Hold::new();
    let b = TestServer::postgres(a.db_url.as_ref().unwrap())
        .after_load(hook)
        .start()
        .await;
    let cached = b.cached.clone().unwrap();
    a.tenant("t").await;
    set_group(&a, "reporters", &["view_reports"], true).await;
    a.add("t", "reporters", &["u"]).await;
    caught_up(&cached).await;

    hold.armed.store(true, Ordering::Release);
    let first = check_on(&b, "u");
    hold.reached.notified().await; // Read "u is a reporter; reporters view reports", held.
    invalidated_by(
        &cached,
        "B receives the edit's notification",
        set_group(&a, "reporters", &["view_users"], false),
    )
    .await;
    hold.release.notify_one();
    // The held check began before the edit: either answer is right for it (it resolves the
    // group it did not cache through the group cache, so today it sees the edit).
    first.await.unwrap();
    assert!(
        !b.allowed("t", "u", "view_reports").await,
        "the group as the held load read it must not be served after the edit"
    );
}

/// The TTL safety net is checked on read: an entry younger than the TTL is a hit, an older one
/// is read again (nothing else invalidated it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_past_the_ttl_is_read_again() {
    let a = TestServer::fresh_postgres().start().await;
    a.tenant("t").await;
    a.add("t", "analysts", &["u"]).await;
    let catalog = Arc::new(Catalog::from_toml(MAESTRA).unwrap());
    let pg = PostgresStore::new(catalog.clone(), &PgOptions::new(a.db_url.clone().unwrap()));
    let ttl = Duration::from_millis(500);
    let cached = CachedStore::start(
        Arc::new(pg.unwrap()),
        catalog,
        CacheOptions {
            ttl,
            ..CacheOptions::default()
        },
    );
    let start = Instant::now();
    while !cached.listener().connected() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "listener never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let loads = || cached.stats().user_loads.load(Ordering::Relaxed);
    let subject = || cached.subject("t", "u", Consistency::MinimizeLatency);

    let before = Instant::now(); // The entry's load time is after this.
    assert!(subject().await.unwrap().0.user.is_some());
    let loaded = Instant::now(); // ... and before this.
    assert_eq!(loads(), 1);
    subject().await.unwrap();
    if before.elapsed() < ttl {
        assert_eq!(loads(), 1, "an entry younger than the TTL is a hit");
    }
    tokio::time::sleep_until((loaded + ttl).into()).await;
    assert!(
        cached
            .subject_now("t", "u", Consistency::MinimizeLatency)
            .is_none(),
        "the check path's shortcut does not answer past the TTL"
    );
    subject().await.unwrap();
    assert_eq!(loads(), 2, "an entry past the TTL is read again");
    assert!(
        cached
            .subject_now("t", "u", Consistency::MinimizeLatency)
            .is_some_and(|found| found.unwrap().0.user.is_some()),
        "the entry read again is a hit without waiting"
    );
}

/// A cache far smaller than its users evicts buckets of them all the time; whatever it evicts
/// leaves the table checks read from too, and every answer stays right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_buckets_leave_the_check_path() {
    const USERS: usize = 3000;
    let a = TestServer::fresh_postgres().start().await;
    a.tenant("t").await;
    let users: Vec<String> = (0..USERS).map(|i| format!("u{i}")).collect();
    for chunk in users.chunks(1000) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        a.add("t", "analysts", &chunk).await;
    }
    let catalog = Arc::new(Catalog::from_toml(MAESTRA).unwrap());
    let pg = PostgresStore::new(catalog.clone(), &PgOptions::new(a.db_url.clone().unwrap()));
    let max_bytes = 64 * 1024;
    let cached = CachedStore::start(
        Arc::new(pg.unwrap()),
        catalog,
        CacheOptions {
            max_bytes,
            ..CacheOptions::default()
        },
    );
    for round in 0..2 {
        for u in &users {
            let found = match cached.subject_now("t", u, Consistency::MinimizeLatency) {
                Some(found) => found,
                None => cached.subject("t", u, Consistency::MinimizeLatency).await,
            };
            let groups = found.unwrap().0.groups;
            assert_eq!(groups.len(), 1, "{u} in round {round}");
        }
    }
    assert_eq!(cached.stray_buckets(), 0);
    let (records, bytes) = cached.size();
    assert!(
        (records as usize) < USERS,
        "the cache evicted: {records} records"
    );
    assert!(bytes <= max_bytes, "{bytes} bytes");
    assert!(cached.stats().user_loads.load(Ordering::Relaxed) > USERS as u64);
}
