//! Admin rights are decided inside the write, in revision order: a right taken away by a write
//! that commits first is gone for every write queued behind it.
//!
//! Each case holds the tenant's writes at its lock (Postgres: another session holds the
//! tenant's revision row `FOR UPDATE`; memory store: the store's write door), queues the
//! operator's write that takes something away, then queues the actor's write that relied on it,
//! and releases. The operator's write commits first; the actor's must then be refused and
//! change nothing. A store that decided before taking the lock lets the actor's write through.

use crate::helpers::*;
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};

type Call = Box<
    dyn FnOnce(
            AdminServiceClient<Channel>,
        ) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>
        + Send,
>;

fn call<F, Fut>(f: F) -> Call
where
    F: FnOnce(AdminServiceClient<Channel>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    Box::new(move |c| Box::pin(f(c)))
}

/// The actor `a` holds every admin permission and `export_customers`, directly; `v` is the
/// user it acts on; `g` is a custom group with `view_reports` (`a` is not in it); `empty` is a
/// custom group without members.
async fn setup(backend: Backend) -> TestApp {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.grant(
        "t",
        "a",
        &[
            "edit_users",
            "view_users",
            "edit_permission_groups",
            "view_permission_groups",
            "limit_staff_campaign_access",
            "view_reports",
            "export_customers",
        ],
        None,
    )
    .await;
    let mut admin = app.admin.clone();
    for (key, perms) in [("g", vec!["view_reports".to_owned()]), ("empty", vec![])] {
        admin
            .create_group(pb::CreateGroupRequest {
                tenant_id: "t".into(),
                group: Some(pb::Group {
                    key: key.into(),
                    name: key.into(),
                    permissions: perms,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    app.add("t", "g", &["v"]).await;
    app
}

fn revoke(actor: &str, user: &str, perm: &str) -> pb::RevokePermissionsRequest {
    pb::RevokePermissionsRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        permissions: vec![perm.into()],
        actor_user_id: actor.into(),
        ..Default::default()
    }
}

fn grant(actor: &str, user: &str, perm: &str) -> pb::GrantPermissionsRequest {
    pb::GrantPermissionsRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        permissions: vec![perm.into()],
        actor_user_id: actor.into(),
        ..Default::default()
    }
}

fn status(actor: &str, user: &str, s: pb::UserStatus) -> pb::SetUserStatusRequest {
    pb::SetUserStatusRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        status: s.into(),
        actor_user_id: actor.into(),
        ..Default::default()
    }
}

fn members(actor: &str, group: &str, users: &[&str]) -> (String, String, Vec<String>) {
    (
        actor.to_owned(),
        group.to_owned(),
        users.iter().map(|u| u.to_string()).collect(),
    )
}

fn add(actor: &str, group: &str, users: &[&str]) -> pb::AddGroupMembersRequest {
    let (actor_user_id, group_key, user_ids) = members(actor, group, users);
    pb::AddGroupMembersRequest {
        tenant_id: "t".into(),
        group_key,
        user_ids,
        actor_user_id,
        ..Default::default()
    }
}

fn remove(actor: &str, group: &str, users: &[&str]) -> pb::RemoveGroupMembersRequest {
    let (actor_user_id, group_key, user_ids) = members(actor, group, users);
    pb::RemoveGroupMembersRequest {
        tenant_id: "t".into(),
        group_key,
        user_ids,
        actor_user_id,
        ..Default::default()
    }
}

fn group(key: &str) -> Option<pb::Group> {
    Some(pb::Group {
        key: key.into(),
        name: key.into(),
        ..Default::default()
    })
}

/// Writes of tenant `t` held at its lock.
enum Held {
    Postgres(tokio_postgres::Client),
    Memory,
}

async fn hold(app: &TestApp) -> (Held, Option<authz::store::memory::HeldWrites<'_>>) {
    match (&app.memory, &app.db_url) {
        (Some(store), _) => (Held::Memory, Some(store.hold_writes().await)),
        (None, Some(url)) => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(
                    "BEGIN; SELECT revision FROM tenants WHERE tenant_id = 't' FOR UPDATE",
                )
                .await
                .unwrap();
            (Held::Postgres(client), None)
        }
        _ => unreachable!("a test app has a store"),
    }
}

/// Waits until `n` writes wait at the held lock; none of `queued` may finish meanwhile.
async fn until_waiting(
    app: &TestApp,
    held: &Held,
    n: usize,
    queued: &mut [&mut tokio::task::JoinHandle<Result<(), Status>>],
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for q in queued.iter_mut() {
            if q.is_finished() {
                panic!("a queued write finished: {:?}", (&mut **q).await);
            }
        }
        let waiting = match held {
            Held::Memory => app.memory.as_ref().unwrap().writes_waiting(),
            Held::Postgres(client) => {
                // Activity statistics are a snapshot per transaction, and this session is
                // inside one: clear it so each poll sees now.
                client
                    .execute("SELECT pg_stat_clear_snapshot()", &[])
                    .await
                    .unwrap();
                let row = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE datname = current_database() AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .await
                    .unwrap();
                usize::try_from(row.get::<_, i64>(0)).unwrap()
            }
        };
        if waiting >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} of {n} writes queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Queues `first` (the operator's) then `second` (the actor's) behind the held lock, releases,
/// and checks that `first` committed, `second` was refused naming `refusal`, and only one
/// revision was written.
async fn race(app: &TestApp, first: Call, second: Call, refusal: &[&str]) {
    let before = app.revision("t").await;
    let (held, memory) = hold(app).await;
    let mut a = tokio::spawn(first(app.admin.clone()));
    until_waiting(app, &held, 1, &mut [&mut a]).await;
    let mut b = tokio::spawn(second(app.admin.clone()));
    until_waiting(app, &held, 2, &mut [&mut a, &mut b]).await;
    match held {
        Held::Postgres(client) => client.batch_execute("COMMIT").await.unwrap(),
        Held::Memory => drop(memory),
    }
    a.await.unwrap().expect("the operator's write commits");
    assert_status(b.await.unwrap(), Code::PermissionDenied, refusal);
    assert_eq!(
        app.revision("t").await,
        before + 1,
        "the refused write wrote nothing"
    );
    RACES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Interleavings run in this process, for the figures line.
static RACES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn a_grant_queued_behind_the_revoke_of_its_right_is_refused(backend: Backend) {
    let app = setup(backend).await;
    race(
        &app,
        call(|mut c| async move {
            c.revoke_permissions(revoke("", "a", "export_customers"))
                .await
                .map(drop)
        }),
        call(|mut c| async move {
            c.grant_permissions(grant("a", "v", "export_customers"))
                .await
                .map(drop)
        }),
        &["missing export_customers"],
    )
    .await;
    assert!(!app.allowed("t", "v", "export_customers").await);
}

async fn a_grant_queued_behind_leaving_the_group_that_gave_its_right_is_refused(backend: Backend) {
    let app = setup(backend).await;
    app.admin
        .clone()
        .revoke_permissions(revoke("", "a", "export_customers"))
        .await
        .unwrap();
    let mut admin = app.admin.clone();
    admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(pb::Group {
                permissions: vec!["export_customers".into()],
                ..group("exporters").unwrap()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    app.add("t", "exporters", &["a"]).await;
    race(
        &app,
        call(|mut c| async move {
            c.remove_group_members(remove("", "exporters", &["a"]))
                .await
                .map(drop)
        }),
        call(|mut c| async move {
            c.grant_permissions(grant("a", "v2", "export_customers"))
                .await
                .map(drop)
        }),
        &["missing export_customers"],
    )
    .await;
    assert!(!app.allowed("t", "v2", "export_customers").await);
}

async fn an_assignment_queued_behind_the_group_gaining_a_permission_is_refused(backend: Backend) {
    let app = setup(backend).await;
    let widen = pb::UpdateGroupRequest {
        tenant_id: "t".into(),
        group_key: "g".into(),
        group: Some(pb::Group {
            permissions: vec!["view_reports".into(), "delete_customers".into()],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["permissions".into()],
        }),
        ..Default::default()
    };
    race(
        &app,
        call(|mut c| async move { c.update_group(widen).await.map(drop) }),
        call(|mut c| async move { c.add_group_members(add("a", "g", &["w"])).await.map(drop) }),
        &["group `g`", "delete_customers"],
    )
    .await;
    assert!(!app.allowed("t", "w", "delete_customers").await);
}

async fn a_write_queued_behind_blocking_its_actor_is_refused(backend: Backend) {
    let app = setup(backend).await;
    race(
        &app,
        call(|mut c| async move {
            c.set_user_status(status("", "a", pb::UserStatus::Blocked))
                .await
                .map(drop)
        }),
        call(|mut c| async move {
            c.grant_permissions(grant("a", "w", "view_reports"))
                .await
                .map(drop)
        }),
        &["actor `a` is blocked"],
    )
    .await;
}

async fn an_unblock_queued_behind_losing_what_the_user_holds_is_refused(backend: Backend) {
    let app = setup(backend).await;
    app.grant("t", "v", &["export_customers"], None).await;
    app.admin
        .clone()
        .set_user_status(status("", "v", pb::UserStatus::Blocked))
        .await
        .unwrap();
    race(
        &app,
        call(|mut c| async move {
            c.revoke_permissions(revoke("", "a", "export_customers"))
                .await
                .map(drop)
        }),
        call(|mut c| async move {
            c.set_user_status(status("a", "v", pb::UserStatus::Active))
                .await
                .map(drop)
        }),
        &["`v`", "export_customers"],
    )
    .await;
    assert!(
        !app.allowed("t", "v", "view_reports").await,
        "still blocked"
    );
}

/// Every admin mutation, queued behind the revoke of the catalog permission it needs.
async fn every_admin_mutation_queued_behind_losing_its_admin_permission_is_refused(
    backend: Backend,
) {
    let cases: Vec<(&str, &str, Call)> = vec![
        (
            "UpsertUser",
            "edit_users",
            call(|mut c| async move {
                c.upsert_user(pb::UpsertUserRequest {
                    tenant_id: "t".into(),
                    user_id: "n".into(),
                    display_name: "N".into(),
                    actor_user_id: "a".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
            }),
        ),
        (
            "ImportUsers",
            "edit_users",
            call(|mut c| async move {
                c.import_users(pb::ImportUsersRequest {
                    tenant_id: "t".into(),
                    rows: vec![pb::ImportRow {
                        user_id: "n".into(),
                        ..Default::default()
                    }],
                    actor_user_id: "a".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
            }),
        ),
        (
            "SetUserStatus",
            "view_users",
            call(|mut c| async move {
                c.set_user_status(status("a", "v", pb::UserStatus::Blocked))
                    .await
                    .map(drop)
            }),
        ),
        (
            "CreateGroup",
            "edit_permission_groups",
            call(|mut c| async move {
                c.create_group(pb::CreateGroupRequest {
                    tenant_id: "t".into(),
                    group: group("new"),
                    actor_user_id: "a".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
            }),
        ),
        (
            "UpdateGroup",
            "edit_permission_groups",
            call(|mut c| async move {
                c.update_group(pb::UpdateGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "g".into(),
                    group: Some(pb::Group {
                        name: "renamed".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["name".into()],
                    }),
                    actor_user_id: "a".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
            }),
        ),
        (
            "DeleteGroup",
            "edit_permission_groups",
            call(|mut c| async move {
                c.delete_group(pb::DeleteGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "empty".into(),
                    actor_user_id: "a".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
            }),
        ),
        (
            "DuplicateGroup",
            "edit_permission_groups",
            call(|mut c| async move {
                c.duplicate_group(pb::DuplicateGroupRequest {
                    tenant_id: "t".into(),
                    source_group_key: "g".into(),
                    new_key: "copy".into(),
                    actor_user_id: "a".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
            }),
        ),
        (
            "AddGroupMembers",
            "edit_users",
            call(|mut c| async move {
                c.add_group_members(add("a", "empty", &["n"]))
                    .await
                    .map(drop)
            }),
        ),
        (
            "RemoveGroupMembers",
            "edit_users",
            call(|mut c| async move {
                c.remove_group_members(remove("a", "g", &["v"]))
                    .await
                    .map(drop)
            }),
        ),
        (
            "GrantPermissions",
            "edit_users",
            call(|mut c| async move {
                c.grant_permissions(grant("a", "v", "view_reports"))
                    .await
                    .map(drop)
            }),
        ),
        (
            "RevokePermissions",
            "edit_users",
            call(|mut c| async move {
                c.revoke_permissions(revoke("a", "v", "view_reports"))
                    .await
                    .map(drop)
            }),
        ),
        (
            "SetRestrictions",
            "limit_staff_campaign_access",
            call(|mut c| async move {
                c.set_restrictions(pb::SetRestrictionsRequest {
                    tenant_id: "t".into(),
                    user_id: "v".into(),
                    resource_type: "folder".into(),
                    resource_ids: vec!["f".into()],
                    actor_user_id: "a".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
            }),
        ),
    ];
    for (method, needs, second) in cases {
        let app = setup(backend).await;
        let needs = needs.to_owned();
        let missing = format!("missing {needs}");
        eprintln!("{method}: queued behind the revoke of {needs}");
        race(
            &app,
            call(move |mut c| async move {
                c.revoke_permissions(revoke("", "a", &needs))
                    .await
                    .map(drop)
            }),
            second,
            &[&missing],
        )
        .await;
        app.stop().await;
    }
    eprintln!(
        "FIGURES interleavings ({backend:?}): every admin mutation queued behind the loss of its right, refused; {} interleavings run in this process, 0 writes let through",
        RACES.load(std::sync::atomic::Ordering::Relaxed)
    );
}

contract!(
    a_grant_queued_behind_the_revoke_of_its_right_is_refused,
    a_grant_queued_behind_leaving_the_group_that_gave_its_right_is_refused,
    an_assignment_queued_behind_the_group_gaining_a_permission_is_refused,
    a_write_queued_behind_blocking_its_actor_is_refused,
    an_unblock_queued_behind_losing_what_the_user_holds_is_refused,
    every_admin_mutation_queued_behind_losing_its_admin_permission_is_refused,
);
