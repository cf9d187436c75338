//! The admin rules as an attacker and a careless client meet them from outside: the reach of a
//! restricted actor, taking access away, reads made with an `admin` key, previews that show
//! resource access and hide staff-only permissions, and refusals that show on a dashboard. On
//! both stores.
//!
//! Long: one test per attack, each standing alone.

use crate::helpers::*;
use authz::grpc::pb;
use authz::metrics::Metrics;
use authz::server::ServerOptions;
use tonic::Code;

/// An owner; `limited`, an admin limited to folder `spring` that holds what it needs to give
/// `view_reports`; `bob`, a user with no limit.
async fn setup(backend: Backend) -> TestApp {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.add("t", "owners", &["owner"]).await;
    app.grant(
        "t",
        "limited",
        &[
            "edit_users",
            "view_users",
            "edit_permission_groups",
            "view_permission_groups",
            "limit_staff_campaign_access",
            "view_reports",
        ],
        None,
    )
    .await;
    restrict(&app, "", "limited", &["spring"]).await.unwrap();
    app.grant("t", "bob", &["view_users"], None).await;
    app
}

async fn restrict(
    app: &TestApp,
    actor: &str,
    user: &str,
    folders: &[&str],
) -> Result<tonic::Response<pb::SetRestrictionsResponse>, tonic::Status> {
    app.admin
        .clone()
        .set_restrictions(pb::SetRestrictionsRequest {
            tenant_id: "t".into(),
            user_id: user.into(),
            resource_type: "folder".into(),
            resource_ids: folders.iter().map(|f| f.to_string()).collect(),
            actor_user_id: actor.into(),
            ..Default::default()
        })
        .await
}

fn folder(id: &str) -> pb::Resource {
    pb::Resource {
        r#type: "folder".into(),
        id: id.into(),
    }
}

fn grant(actor: &str, user: &str, perms: &[&str], on: Option<&str>) -> pb::GrantPermissionsRequest {
    pb::GrantPermissionsRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        resource: on.map(folder),
        actor_user_id: actor.into(),
        ..Default::default()
    }
}

fn add(actor: &str, group: &str, users: &[&str]) -> pb::AddGroupMembersRequest {
    pb::AddGroupMembersRequest {
        tenant_id: "t".into(),
        group_key: group.into(),
        user_ids: users.iter().map(|u| u.to_string()).collect(),
        actor_user_id: actor.into(),
        ..Default::default()
    }
}

fn new_group(
    actor: &str,
    key: &str,
    perms: &[&str],
    scoped: &[(&str, &str)],
) -> pb::CreateGroupRequest {
    pb::CreateGroupRequest {
        tenant_id: "t".into(),
        group: Some(pb::Group {
            key: key.into(),
            name: key.into(),
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            scoped_grants: scoped
                .iter()
                .map(|(p, f)| pb::ScopedGrant {
                    permission: p.to_string(),
                    resource: Some(folder(f)),
                })
                .collect(),
            ..Default::default()
        }),
        actor_user_id: actor.into(),
        ..Default::default()
    }
}

fn import_row(user: &str, groups: &[&str], perms: &[&str]) -> pb::ImportUsersRequest {
    pb::ImportUsersRequest {
        tenant_id: "t".into(),
        rows: vec![pb::ImportRow {
            user_id: user.into(),
            group_keys: groups.iter().map(|g| g.to_string()).collect(),
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }],
        actor_user_id: "limited".into(),
        ..Default::default()
    }
}

async fn sees(app: &TestApp, user: &str, on: &str) -> bool {
    app.check(pb::CheckRequest {
        resource: Some(folder(on)),
        ..perm_check("t", user, "view_reports")
    })
    .await
    .unwrap()
    .allowed
}

/// An actor limited to folder `spring` gives `view_reports` to nobody beyond `spring`: not
/// unscoped, not scoped to another folder, not through a group it creates, fills, edits or
/// duplicates, not by import.
async fn a_restricted_actor_gives_only_within_its_reach(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    app.admin
        .clone()
        .create_group(new_group("", "staffers", &[], &[]))
        .await
        .unwrap();
    app.add("t", "staffers", &["bob"]).await;
    let beyond = ["limited to folder spring", "view_reports to `bob`"];
    assert_status(
        admin
            .grant_permissions(grant("limited", "bob", &["view_reports"], None))
            .await,
        Code::PermissionDenied,
        &beyond,
    );
    assert_status(
        admin
            .grant_permissions(grant("limited", "bob", &["view_reports"], Some("winter")))
            .await,
        Code::PermissionDenied,
        &["limited to folder spring", "view_reports@folder:winter"],
    );
    assert_status(
        admin
            .create_group(new_group(
                "limited",
                "w",
                &[],
                &[("view_reports", "winter")],
            ))
            .await,
        Code::PermissionDenied,
        &["view_reports@folder:winter"],
    );
    // A group without members reaches nobody yet: creating it is fine, filling it is not.
    admin
        .create_group(new_group("limited", "reports", &["view_reports"], &[]))
        .await
        .unwrap();
    assert_status(
        admin
            .add_group_members(add("limited", "reports", &["bob"]))
            .await,
        Code::PermissionDenied,
        &beyond,
    );
    assert_status(
        admin
            .import_users(import_row("bob", &["reports"], &[]))
            .await,
        Code::PermissionDenied,
        &["row 1 (`bob`)", "view_reports to `bob`"],
    );
    assert_status(
        admin
            .import_users(import_row("bob", &[], &["view_reports"]))
            .await,
        Code::PermissionDenied,
        &["row 1 (`bob`)", "view_reports to `bob`"],
    );
    // Putting the permission into a group bob is already in, or copying bob into a new group.
    assert_status(
        admin
            .update_group(pb::UpdateGroupRequest {
                tenant_id: "t".into(),
                group_key: "staffers".into(),
                group: Some(pb::Group {
                    permissions: vec!["view_reports".into()],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["permissions".into()],
                }),
                actor_user_id: "limited".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &beyond,
    );
    // Copying an empty group's members copies nobody.
    admin
        .duplicate_group(pb::DuplicateGroupRequest {
            tenant_id: "t".into(),
            source_group_key: "reports".into(),
            new_key: "copy".into(),
            copy_permissions: true,
            copy_members: true,
            actor_user_id: "limited".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    app.add("t", "reports", &["bob"]).await;
    assert_status(
        admin
            .duplicate_group(pb::DuplicateGroupRequest {
                tenant_id: "t".into(),
                source_group_key: "reports".into(),
                new_key: "copy2".into(),
                copy_permissions: true,
                copy_members: true,
                actor_user_id: "limited".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &beyond,
    );
    app.admin
        .clone()
        .remove_group_members(pb::RemoveGroupMembersRequest {
            tenant_id: "t".into(),
            group_key: "reports".into(),
            user_ids: vec!["bob".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!sees(&app, "bob", "winter").await);
    assert!(!sees(&app, "bob", "spring").await);

    // Within reach it works: a scoped grant on spring, and anything to a user limited within
    // spring.
    admin
        .grant_permissions(grant("limited", "bob", &["view_reports"], Some("spring")))
        .await
        .unwrap();
    assert!(sees(&app, "bob", "spring").await);
    assert!(!sees(&app, "bob", "winter").await);
    restrict(&app, "", "carol", &["spring"]).await.unwrap();
    admin
        .grant_permissions(grant("limited", "carol", &["view_reports"], None))
        .await
        .unwrap();
    admin
        .add_group_members(add("limited", "reports", &["carol"]))
        .await
        .unwrap();
    assert!(sees(&app, "carol", "spring").await);
    assert!(!sees(&app, "carol", "winter").await);
}

/// Blocking, limiting, removing from a group and revoking take access away: a lesser admin may
/// do none of it to an owner, so nobody can lock the tenant's owners out.
async fn taking_access_away_needs_what_the_user_holds(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.add("t", "owners", &["owner"]).await;
    app.grant("t", "owner", &["view_reports"], None).await;
    app.grant(
        "t",
        "helpdesk",
        &["view_users", "edit_users", "limit_staff_campaign_access"],
        None,
    )
    .await;
    app.grant("t", "intern", &["view_users"], None).await;
    let mut admin = app.admin.clone();
    let status = |actor: &str, user: &str, s: pb::UserStatus| pb::SetUserStatusRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        status: s.into(),
        actor_user_id: actor.into(),
        ..Default::default()
    };
    let before = app.revision("t").await;
    let refused = ["take access away", "`owner`", "delete_customers"];
    assert_status(
        admin
            .set_user_status(status("helpdesk", "owner", pb::UserStatus::Blocked))
            .await,
        Code::PermissionDenied,
        &refused,
    );
    assert_status(
        admin
            .remove_group_members(pb::RemoveGroupMembersRequest {
                tenant_id: "t".into(),
                group_key: "owners".into(),
                user_ids: vec!["owner".into()],
                actor_user_id: "helpdesk".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &refused,
    );
    assert_status(
        admin
            .revoke_permissions(pb::RevokePermissionsRequest {
                tenant_id: "t".into(),
                user_id: "owner".into(),
                permissions: vec!["view_reports".into()],
                actor_user_id: "helpdesk".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &refused,
    );
    assert_status(
        restrict(&app, "helpdesk", "owner", &["spring"]).await,
        Code::PermissionDenied,
        &refused,
    );
    // A dry run is refused the same way.
    assert_status(
        admin
            .set_user_status(pb::SetUserStatusRequest {
                dry_run: true,
                ..status("helpdesk", "owner", pb::UserStatus::Blocked)
            })
            .await,
        Code::PermissionDenied,
        &refused,
    );
    assert_eq!(app.revision("t").await, before, "nothing was written");
    assert!(app.allowed("t", "owner", "delete_customers").await);

    // A user holding no more than the actor can be blocked and unblocked by it; an operator
    // may do anything.
    admin
        .set_user_status(status("helpdesk", "intern", pb::UserStatus::Blocked))
        .await
        .unwrap();
    assert!(!app.allowed("t", "intern", "view_users").await);
    admin
        .set_user_status(status("helpdesk", "intern", pb::UserStatus::Active))
        .await
        .unwrap();
    assert!(app.allowed("t", "intern", "view_users").await);
    admin
        .set_user_status(status("", "owner", pb::UserStatus::Blocked))
        .await
        .unwrap();
    assert!(!app.allowed("t", "owner", "delete_customers").await);
    // Unblocking gives everything back: the helpdesk may not.
    assert_status(
        admin
            .set_user_status(status("helpdesk", "owner", pb::UserStatus::Active))
            .await,
        Code::PermissionDenied,
        &refused,
    );
}

/// Dry runs show every change in what a user may do, resources included; to an actor they never
/// name internal permissions, and neither do its refusals.
async fn previews_show_resource_access_and_hide_staff_permissions(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    let limit = admin
        .set_restrictions(pb::SetRestrictionsRequest {
            tenant_id: "t".into(),
            user_id: "bob".into(),
            resource_type: "folder".into(),
            resource_ids: vec!["a".into()],
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .preview
        .unwrap();
    assert_eq!(limit.affected_users.len(), 1, "{limit:?}");
    let bob = &limit.affected_users[0];
    assert_eq!(bob.user_id, "bob");
    assert_eq!(
        bob.limits,
        vec![pb::LimitChange {
            resource_type: "folder".into(),
            limited_before: false,
            before_ids: vec![],
            limited_after: true,
            after_ids: vec!["a".into()],
        }]
    );
    let scoped = admin
        .grant_permissions(pb::GrantPermissionsRequest {
            dry_run: true,
            ..grant("", "bob", &["view_reports"], Some("f1"))
        })
        .await
        .unwrap()
        .into_inner()
        .preview
        .unwrap();
    assert_eq!(scoped.affected_users.len(), 1, "{scoped:?}");
    assert_eq!(
        scoped.affected_users[0].scoped_added,
        vec![pb::ScopedGrant {
            permission: "view_reports".into(),
            resource: Some(folder("f1")),
        }]
    );

    // A staff member (internal group) who is also an analyst; an actor that holds both.
    app.add("t", "maestra_staff", &["staffer", "chief"]).await;
    app.add("t", "analysts", &["staffer"]).await;
    app.add("t", "owners", &["chief", "owner"]).await;
    app.grant("t", "chief", &["view_users"], None).await;
    app.grant("t", "owner", &["view_users"], None).await;
    let block = |actor: &str| pb::SetUserStatusRequest {
        tenant_id: "t".into(),
        user_id: "staffer".into(),
        status: pb::UserStatus::Blocked.into(),
        actor_user_id: actor.into(),
        dry_run: true,
    };
    let internal = ["view_system_tasks", "view_all_system_tasks"];
    let by_actor = admin
        .set_user_status(block("chief"))
        .await
        .unwrap()
        .into_inner()
        .preview
        .unwrap();
    let removed = &by_actor.affected_users[0].removed;
    assert!(removed.contains(&"view_reports".to_owned()), "{removed:?}");
    for p in internal {
        assert!(!removed.contains(&p.to_owned()), "{p} shown to an actor");
    }
    let by_operator = admin
        .set_user_status(block(""))
        .await
        .unwrap()
        .into_inner()
        .preview
        .unwrap();
    assert!(
        by_operator.affected_users[0]
            .removed
            .contains(&"view_system_tasks".to_owned())
    );
    // The owner may not block the staffer (it lacks the staff permissions), and is not told
    // their names.
    let refused = admin
        .set_user_status(block("owner"))
        .await
        .expect_err("an owner holds no staff permissions");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("only an operator can change")
            && internal.iter().all(|p| !refused.message().contains(p)),
        "{}",
        refused.message()
    );
}

/// Blocking a limited user previews its permissions taken away and its limit as it stands;
/// unblocking previews them given back, the limit again unchanged.
async fn blocking_a_limited_user_leaves_its_limit_in_the_preview(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    let status = |status: pb::UserStatus, dry_run: bool| pb::SetUserStatusRequest {
        tenant_id: "t".into(),
        user_id: "limited".into(),
        status: status.into(),
        actor_user_id: String::new(),
        dry_run,
    };
    let block = admin
        .set_user_status(status(pb::UserStatus::Blocked, true))
        .await
        .unwrap()
        .into_inner()
        .preview
        .unwrap();
    let limited = &block.affected_users[0];
    assert!(
        limited.removed.contains(&"view_reports".to_owned()),
        "{limited:?}"
    );
    assert!(limited.limits.is_empty(), "{limited:?}");
    admin
        .set_user_status(status(pb::UserStatus::Blocked, false))
        .await
        .unwrap();
    let unblock = admin
        .set_user_status(status(pb::UserStatus::Active, true))
        .await
        .unwrap()
        .into_inner()
        .preview
        .unwrap();
    let limited = &unblock.affected_users[0];
    assert!(
        limited.added.contains(&"view_reports".to_owned()),
        "{limited:?}"
    );
    assert!(limited.limits.is_empty(), "{limited:?}");
}

contract!(
    blocking_a_limited_user_leaves_its_limit_in_the_preview,
    a_restricted_actor_gives_only_within_its_reach,
    taking_access_away_needs_what_the_user_holds,
    previews_show_resource_access_and_hide_staff_permissions,
    group_edits_and_profiles_follow_the_removal_rule,
    careless_admin_requests_say_what_to_fix,
    watch_from_revision_zero_sees_the_first_change,
);

/// Editing a group takes from its members what the edit takes out: a lesser admin may not cut a
/// stronger member down through the group, and an actor's edit keeps the internal permissions
/// it cannot see. Changing who a user is (name, email) follows the removal rule too.
async fn group_edits_and_profiles_follow_the_removal_rule(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    let perms = |p: &[&str]| p.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(pb::Group {
                key: "admins".into(),
                name: "Admins".into(),
                permissions: perms(&[
                    "edit_users",
                    "view_users",
                    "export_customers",
                    "edit_permission_groups",
                    "view_permission_groups",
                    "view_system_tasks",
                ]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    app.add("t", "admins", &["boss"]).await;
    app.add("t", "owners", &["owner"]).await;
    app.grant(
        "t",
        "lesser",
        &[
            "edit_users",
            "view_users",
            "edit_permission_groups",
            "view_permission_groups",
        ],
        None,
    )
    .await;
    let edit = |actor: &str, p: &[&str]| pb::UpdateGroupRequest {
        tenant_id: "t".into(),
        group_key: "admins".into(),
        group: Some(pb::Group {
            permissions: perms(p),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["permissions".into()],
        }),
        actor_user_id: actor.into(),
        ..Default::default()
    };
    let before = app.revision("t").await;
    assert_status(
        admin.update_group(edit("lesser", &[])).await,
        Code::PermissionDenied,
        &["take access away", "`boss`", "export_customers"],
    );
    assert_eq!(app.revision("t").await, before);
    assert!(app.allowed("t", "boss", "export_customers").await);

    // The owner may take `export_customers` out; the staff permission it cannot see stays, and
    // neither the refusal above nor any group read names it.
    app.add("t", "maestra_staff", &["owner"]).await;
    app.grant("t", "owner", &["view_users"], None).await;
    let edited = admin
        .update_group(edit(
            "owner",
            &[
                "edit_users",
                "view_users",
                "edit_permission_groups",
                "view_permission_groups",
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!app.allowed("t", "boss", "export_customers").await);
    assert!(app.allowed("t", "boss", "view_system_tasks").await, "kept");
    let seen = edited.group.unwrap().permissions;
    assert!(!seen.contains(&"view_system_tasks".to_owned()), "{seen:?}");
    let read = |actor: &str| pb::GetGroupRequest {
        tenant_id: "t".into(),
        group_key: "admins".into(),
        actor_user_id: actor.into(),
    };
    let as_actor = admin.get_group(read("owner")).await.unwrap().into_inner();
    assert!(
        !as_actor
            .group
            .unwrap()
            .permissions
            .contains(&"view_system_tasks".to_owned())
    );
    let as_operator = admin.get_group(read("")).await.unwrap().into_inner();
    assert!(
        as_operator
            .group
            .unwrap()
            .permissions
            .contains(&"view_system_tasks".to_owned())
    );

    // Who a user is: a lesser admin may not rewrite an owner's email (by upsert or import),
    // but may set up a new user.
    let upsert = |user: &str| pb::UpsertUserRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        email: "attacker@example.test".into(),
        actor_user_id: "lesser".into(),
        ..Default::default()
    };
    assert_status(
        admin.upsert_user(upsert("owner")).await,
        Code::PermissionDenied,
        &["`owner`"],
    );
    assert_status(
        admin
            .import_users(pb::ImportUsersRequest {
                tenant_id: "t".into(),
                rows: vec![pb::ImportRow {
                    user_id: "owner".into(),
                    email: "attacker@example.test".into(),
                    ..Default::default()
                }],
                actor_user_id: "lesser".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &["row 1 (`owner`)"],
    );
    admin.upsert_user(upsert("newcomer")).await.unwrap();
    // A refusal names staff-only access once, never by name.
    let refused = admin
        .duplicate_group(pb::DuplicateGroupRequest {
            tenant_id: "t".into(),
            source_group_key: "admins".into(),
            new_key: "copy".into(),
            copy_permissions: true,
            copy_members: true,
            actor_user_id: "lesser".into(),
            ..Default::default()
        })
        .await
        .map(drop);
    assert!(refused.is_ok(), "copying what the actor sees: {refused:?}");
}

/// Careless clients: revoking from a user that does not exist, an audit filter that names no
/// target, a time window that is empty by construction.
async fn careless_admin_requests_say_what_to_fix(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    let before = app.revision("t").await;
    assert_status(
        admin
            .revoke_permissions(pb::RevokePermissionsRequest {
                tenant_id: "t".into(),
                user_id: "ghost".into(),
                permissions: vec!["view_reports".into()],
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["user `ghost` does not exist"],
    );
    assert_eq!(app.revision("t").await, before, "nothing written");
    assert_status(
        admin
            .list_audit_events(pb::ListAuditEventsRequest {
                tenant_id: "t".into(),
                filter_target: "grp:x".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["group:<key> or user:<id>"],
    );
    let at = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });
    assert_status(
        admin
            .list_audit_events(pb::ListAuditEventsRequest {
                tenant_id: "t".into(),
                since: at(2_000_000_000),
                until: at(1_000_000_000),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["since is after until"],
    );
    // The group named in the body must be the group the call names.
    admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(pb::Group {
                key: "mine".into(),
                name: "Mine".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = app.revision("t").await;
    assert_status(
        admin
            .update_group(pb::UpdateGroupRequest {
                tenant_id: "t".into(),
                group_key: "mine".into(),
                group: Some(pb::Group {
                    key: "other".into(),
                    name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["group.key `other` is not group_key `mine`"],
    );
    assert_eq!(app.revision("t").await, before, "nothing written");
}

/// Watching from revision 0 (before anything, the tenant's creation included) is a careless but
/// valid start: the first change arrives, not a claim that changes were dropped.
async fn watch_from_revision_zero_sees_the_first_change(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut stream = app
        .authz
        .clone()
        .watch(pb::WatchRequest {
            tenant_id: "t".into(),
            after_revision: "0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    app.grant("t", "u", &["view_reports"], None).await;
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("a change within the deadline")
        .expect("no error status")
        .expect("the stream is open");
    assert_eq!(first.revision, "2", "{first:?}");
}

const ADMIN: &str = "admin-key-trust-0123456789";
const OPERATOR: &str = "operator-key-trust-01234567";
const CHECK: &str = "check-key-trust-0123456789";

fn keyed<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

/// An `admin` key acts for a staff user on reads as on writes: without an actor it reads
/// nothing, tenant-wide listings need the operator key, and the catalog it sees has no staff
/// entries. Every refusal is logged and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_keys_read_as_their_actor_and_refusals_are_counted() {
    let keys = authz::gate::Keys::load(
        &format!("admin:{ADMIN},operator:{OPERATOR},check:{CHECK}"),
        None,
    )
    .unwrap();
    let metrics = Metrics::new().unwrap();
    let app = TestServer::memory()
        .options(ServerOptions {
            keys: Some(std::sync::Arc::new(keys)),
            metrics: Some(metrics.clone()),
            ..ServerOptions::default()
        })
        .start()
        .await;
    let mut admin = app.admin.clone();
    admin
        .create_tenant(keyed(
            pb::CreateTenantRequest {
                tenant_id: "t".into(),
                ..Default::default()
            },
            OPERATOR,
        ))
        .await
        .unwrap();
    admin
        .add_group_members(keyed(
            pb::AddGroupMembersRequest {
                tenant_id: "t".into(),
                group_key: "maestra_staff".into(),
                user_ids: vec!["staffer".into()],
                ..Default::default()
            },
            OPERATOR,
        ))
        .await
        .unwrap();
    let user = || pb::GetUserRequest {
        tenant_id: "t".into(),
        user_id: "staffer".into(),
        ..Default::default()
    };
    let no_actor = ["set actor_user_id"];
    assert_status(
        admin.get_user(keyed(user(), ADMIN)).await,
        Code::PermissionDenied,
        &no_actor,
    );
    assert_status(
        admin
            .list_users(keyed(
                pb::ListUsersRequest {
                    tenant_id: "t".into(),
                    ..Default::default()
                },
                ADMIN,
            ))
            .await,
        Code::PermissionDenied,
        &no_actor,
    );
    assert_status(
        admin
            .get_group(keyed(
                pb::GetGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "maestra_staff".into(),
                    ..Default::default()
                },
                ADMIN,
            ))
            .await,
        Code::PermissionDenied,
        &no_actor,
    );
    assert_status(
        admin
            .list_groups(keyed(
                pb::ListGroupsRequest {
                    tenant_id: "t".into(),
                    ..Default::default()
                },
                ADMIN,
            ))
            .await,
        Code::PermissionDenied,
        &no_actor,
    );
    assert_status(
        admin
            .list_audit_events(keyed(
                pb::ListAuditEventsRequest {
                    tenant_id: "t".into(),
                    ..Default::default()
                },
                ADMIN,
            ))
            .await,
        Code::PermissionDenied,
        &no_actor,
    );
    assert_status(
        admin
            .get_tenant(keyed(
                pb::GetTenantRequest {
                    tenant_id: "t".into(),
                    ..Default::default()
                },
                ADMIN,
            ))
            .await,
        Code::PermissionDenied,
        &no_actor,
    );
    assert_status(
        admin
            .list_tenants(keyed(pb::ListTenantsRequest::default(), ADMIN))
            .await,
        Code::PermissionDenied,
        &["operator"],
    );
    // The catalog and its permissions, as an admin key sees them: no staff entries.
    let catalog = admin
        .get_catalog(keyed(pb::GetCatalogRequest {}, ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !catalog
            .system_group_keys
            .contains(&"maestra_staff".to_owned())
    );
    let full = admin
        .get_catalog(keyed(pb::GetCatalogRequest {}, OPERATOR))
        .await
        .unwrap()
        .into_inner();
    assert!(full.system_group_keys.contains(&"maestra_staff".to_owned()));
    assert!(catalog.permission_count < full.permission_count);
    for key in [ADMIN, OPERATOR] {
        let perms = admin
            .list_permissions(keyed(pb::ListPermissionsRequest::default(), key))
            .await
            .unwrap()
            .into_inner()
            .permissions;
        assert_eq!(
            perms.iter().any(|p| p.internal),
            key == OPERATOR,
            "internal permissions are for operator keys only"
        );
    }
    // With an actor, reads hide the staff group; the operator sees it.
    let seen = admin
        .get_user(keyed(
            pb::GetUserRequest {
                actor_user_id: "staffer".into(),
                ..user()
            },
            ADMIN,
        ))
        .await;
    assert_status(seen, Code::PermissionDenied, &["view users"]);
    let by_operator = admin
        .get_user(keyed(user(), OPERATOR))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(by_operator.group_keys, vec!["maestra_staff".to_owned()]);

    // A check key reaching for the admin service, and an actor reaching for the staff group:
    // refused like any attempt, and counted.
    assert_status(
        admin.get_user(keyed(user(), CHECK)).await,
        Code::PermissionDenied,
        &["may not call authz.v1.AdminService"],
    );
    admin
        .grant_permissions(keyed(
            pb::GrantPermissionsRequest {
                tenant_id: "t".into(),
                user_id: "boss".into(),
                permissions: vec!["edit_users".into()],
                ..Default::default()
            },
            OPERATOR,
        ))
        .await
        .unwrap();
    assert_status(
        admin
            .add_group_members(keyed(
                pb::AddGroupMembersRequest {
                    tenant_id: "t".into(),
                    group_key: "maestra_staff".into(),
                    user_ids: vec!["boss".into()],
                    actor_user_id: "boss".into(),
                    ..Default::default()
                },
                ADMIN,
            ))
            .await,
        Code::NotFound,
        &["group `maestra_staff` does not exist"],
    );

    // Every refusal above is on the dashboard, by method and rule.
    let text = metrics.render(None);
    let series = |method: &str, rule: &str| {
        format!("authz_admin_refusals_total{{method=\"{method}\",rule=\"{rule}\"}} 1")
    };
    for (method, rule) in [
        ("GetUser", "key"),
        ("ListUsers", "key"),
        ("ListTenants", "key"),
        ("GetUser", "operation"),
        ("GetUser", "role"),
        ("AddGroupMembers", "staff_only"),
    ] {
        assert!(
            text.lines().any(|l| l == series(method, rule)),
            "no {} in:\n{text}",
            series(method, rule)
        );
    }
}

/// Admin reads answer from one snapshot: a replica whose cache missed a change (here a change
/// made behind its back, with no notification) still shows groups and roles that agree, and
/// reads take the checks' consistency option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_reads_show_groups_and_roles_from_one_snapshot() {
    let app = TestServer::fresh_postgres().catalog(TOOLJET).start().await;
    app.tenant("t").await;
    app.add("t", "builder", &["u"]).await;
    assert!(
        app.allowed("t", "u", "create_apps").await,
        "cached as a builder"
    );
    let (client, conn) =
        tokio_postgres::connect(app.db_url.as_ref().unwrap(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "UPDATE memberships SET group_key = 'admin' WHERE tenant_id = 't' AND user_id = 'u'",
        )
        .await
        .unwrap();
    let mut admin = app.admin.clone();
    let get = |consistency: Option<pb::Consistency>| pb::GetUserRequest {
        tenant_id: "t".into(),
        user_id: "u".into(),
        consistency,
        ..Default::default()
    };
    let user = admin
        .get_user(get(None))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.group_keys, vec!["admin".to_owned()]);
    assert_eq!(user.roles, vec!["admin".to_owned()], "{user:?}");
    let listed = admin
        .list_users(pb::ListUsersRequest {
            tenant_id: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(listed[0].roles, vec!["admin".to_owned()]);
    let future = pb::Consistency {
        requirement: Some(pb::consistency::Requirement::AtLeastAsFresh("9999".into())),
    };
    assert_status(
        admin.get_user(get(Some(future))).await,
        Code::InvalidArgument,
        &["newer than the tenant's latest revision"],
    );
    let full = pb::Consistency {
        requirement: Some(pb::consistency::Requirement::FullyConsistent(true)),
    };
    admin.get_user(get(Some(full))).await.unwrap();
}
