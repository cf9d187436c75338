//! The admin rules, enforced by the server with the actor's own permissions, and the escalation
//! attempts an attacker would try. On both stores.
//!
//! Long: one test per admin rule and escalation attempt, each standing alone.

use crate::helpers::*;
use authz::grpc::pb;
use tonic::Code;

/// A tenant with an owner, an analyst, and a "group admin" who may edit groups and users but
/// holds little else.
async fn setup(backend: Backend) -> TestApp {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.add("t", "owners", &["owner"]).await;
    app.add("t", "analysts", &["analyst"]).await;
    app.admin
        .clone()
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(pb::Group {
                key: "group_admins".into(),
                name: "Group admins".into(),
                permissions: [
                    "edit_permission_groups",
                    "view_permission_groups",
                    "edit_users",
                    "view_reports",
                    "view_and_export_the_users_list",
                ]
                .map(String::from)
                .to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    app.add("t", "group_admins", &["ga"]).await;
    app
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

fn grant(actor: &str, user: &str, perms: &[&str]) -> pb::GrantPermissionsRequest {
    pb::GrantPermissionsRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        actor_user_id: actor.into(),
        ..Default::default()
    }
}

fn group(actor: &str, key: &str, perms: &[&str]) -> pb::CreateGroupRequest {
    pb::CreateGroupRequest {
        tenant_id: "t".into(),
        group: Some(pb::Group {
            key: key.into(),
            name: key.into(),
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }),
        actor_user_id: actor.into(),
        ..Default::default()
    }
}

async fn an_actor_cannot_give_what_it_does_not_hold(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    // The operation itself needs the catalog's meta-permission.
    assert_status(
        admin
            .add_group_members(add("analyst", "analysts", &["x"]))
            .await,
        Code::PermissionDenied,
        &["edit users", "missing edit_users"],
    );
    // Assign yourself Owners.
    assert_status(
        admin.add_group_members(add("ga", "owners", &["ga"])).await,
        Code::PermissionDenied,
        &["group `owners`", "delete_customers"],
    );
    assert!(!app.allowed("t", "ga", "delete_customers").await);
    // Create a group with permissions you lack, then join it.
    assert_status(
        admin
            .create_group(group(
                "ga",
                "escalate",
                &["view_reports", "delete_customers"],
            ))
            .await,
        Code::PermissionDenied,
        &["missing delete_customers"],
    );
    assert_status(
        admin
            .get_group(pb::GetGroupRequest {
                tenant_id: "t".into(),
                group_key: "escalate".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["escalate"],
    );
    // A group within your own permissions is fine, and so is joining it.
    admin
        .create_group(group("ga", "reporters", &["view_reports"]))
        .await
        .unwrap();
    admin
        .add_group_members(add("ga", "reporters", &["analyst", "ga"]))
        .await
        .unwrap();
    // Widen a group you can edit.
    let before = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "t".into(),
            group_key: "reporters".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_status(
        admin
            .update_group(pb::UpdateGroupRequest {
                tenant_id: "t".into(),
                group_key: "reporters".into(),
                group: Some(pb::Group {
                    permissions: vec!["view_reports".into(), "delete_customers".into()],
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["permissions".into()],
                }),
                actor_user_id: "ga".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &["missing delete_customers"],
    );
    let after = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "t".into(),
            group_key: "reporters".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(before, after, "the refused update changed nothing");
    // Grant directly what you lack; grant what you hold.
    assert_status(
        admin
            .grant_permissions(grant("ga", "analyst", &["delete_customers"]))
            .await,
        Code::PermissionDenied,
        &["missing delete_customers"],
    );
    assert!(!app.allowed("t", "analyst", "delete_customers").await);
    admin
        .grant_permissions(grant("ga", "analyst", &["edit_users"]))
        .await
        .unwrap();
    // Scoped grants too: a permission on one folder is still a permission the actor must hold.
    let mut scoped = grant("ga", "analyst", &["delete_customers"]);
    scoped.resource = Some(pb::Resource {
        r#type: "folder".into(),
        id: "f1".into(),
    });
    assert_status(
        admin.grant_permissions(scoped).await,
        Code::PermissionDenied,
        &["delete_customers"],
    );
    // Duplicating a group you cannot give.
    assert_status(
        admin
            .duplicate_group(pb::DuplicateGroupRequest {
                tenant_id: "t".into(),
                source_group_key: "owners".into(),
                new_key: "my_owners".into(),
                copy_permissions: true,
                actor_user_id: "ga".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &["delete_customers"],
    );
}

async fn system_groups_internal_groups_and_internal_permissions(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    // Editing a system group: refused for everyone.
    assert_status(
        admin
            .update_group(pb::UpdateGroupRequest {
                tenant_id: "t".into(),
                group_key: "analysts".into(),
                group: Some(pb::Group {
                    name: "Mine".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                actor_user_id: "owner".into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["system group"],
    );
    // Internal groups and permissions do not exist for actors...
    assert_status(
        admin
            .add_group_members(add("owner", "maestra_staff", &["owner"]))
            .await,
        Code::NotFound,
        &["maestra_staff"],
    );
    assert_status(
        admin
            .grant_permissions(grant("owner", "owner", &["view_system_tasks"]))
            .await,
        Code::InvalidArgument,
        &["unknown permission `view_system_tasks`"],
    );
    assert_status(
        admin
            .create_group(group("owner", "staffish", &["view_all_system_tasks"]))
            .await,
        Code::InvalidArgument,
        &["unknown permission"],
    );
    assert_status(
        admin
            .get_group(pb::GetGroupRequest {
                tenant_id: "t".into(),
                group_key: "maestra_staff".into(),
                actor_user_id: "owner".into(),
            })
            .await,
        Code::NotFound,
        &["maestra_staff"],
    );
    let as_actor = admin
        .list_groups(pb::ListGroupsRequest {
            tenant_id: "t".into(),
            page_size: 100,
            actor_user_id: "owner".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(as_actor.groups.iter().all(|g| !g.internal));
    let perms = admin
        .list_permissions(pb::ListPermissionsRequest {
            actor_user_id: "owner".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(perms.permissions.len(), 165);
    // ...but do for operators.
    admin
        .add_group_members(add("", "maestra_staff", &["staffer"]))
        .await
        .unwrap();
    let as_operator = admin
        .list_groups(pb::ListGroupsRequest {
            tenant_id: "t".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        as_operator
            .groups
            .iter()
            .any(|g| g.internal && g.key == "maestra_staff")
    );
    // An actor reading the staffer sees no internal membership.
    let seen = admin
        .get_user(pb::GetUserRequest {
            tenant_id: "t".into(),
            user_id: "staffer".into(),
            actor_user_id: "ga".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(seen.group_keys.is_empty(), "{:?}", seen.group_keys);
    // Reading groups needs the catalog's view permission.
    assert_status(
        admin
            .list_groups(pb::ListGroupsRequest {
                tenant_id: "t".into(),
                actor_user_id: "analyst".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &["view permission groups", "view_permission_groups"],
    );
}

async fn blocked_unknown_and_foreign_actors(backend: Backend) {
    let app = setup(backend).await;
    app.tenant("other").await;
    let mut admin = app.admin.clone();
    // A user of another tenant is nobody here.
    let mut foreign = add("owner", "analysts", &["x"]);
    foreign.tenant_id = "other".into();
    assert_status(
        admin.add_group_members(foreign).await,
        Code::PermissionDenied,
        &["actor `owner` is not a user of this tenant"],
    );
    assert_status(
        admin
            .add_group_members(add("ghost", "analysts", &["x"]))
            .await,
        Code::PermissionDenied,
        &["not a user"],
    );
    assert_status(
        admin
            .add_group_members(add("bad\u{1}", "analysts", &["x"]))
            .await,
        Code::InvalidArgument,
        &["actor_user_id", "control character"],
    );
    admin
        .set_user_status(pb::SetUserStatusRequest {
            tenant_id: "t".into(),
            user_id: "owner".into(),
            status: pb::UserStatus::Blocked.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_status(
        admin
            .add_group_members(add("owner", "analysts", &["x"]))
            .await,
        Code::PermissionDenied,
        &["actor `owner` is blocked"],
    );
}

async fn an_owner_can_do_what_the_documents_allow(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    for g in [
        "owners",
        "marketers",
        "analysts",
        "client_developers",
        "accountants",
        "layout_of_email_templates",
        "api",
    ] {
        admin
            .add_group_members(add("owner", g, &["newbie"]))
            .await
            .unwrap();
    }
    let owners_perms: Vec<String> = app
        .catalog
        .group("owners")
        .unwrap()
        .grants
        .permissions
        .iter()
        .map(|p| app.catalog.key(p).to_owned())
        .collect();
    let all: Vec<&str> = owners_perms.iter().map(String::as_str).collect();
    admin
        .create_group(group("owner", "everything", &all))
        .await
        .unwrap();
    admin
        .grant_permissions(grant("owner", "analyst", &["delete_customers"]))
        .await
        .unwrap();
    assert!(app.allowed("t", "analyst", "delete_customers").await);
    admin
        .duplicate_group(pb::DuplicateGroupRequest {
            tenant_id: "t".into(),
            source_group_key: "marketers".into(),
            new_key: "marketing_team".into(),
            copy_permissions: true,
            copy_members: true,
            actor_user_id: "owner".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let dup = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "t".into(),
            group_key: "marketing_team".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(dup.name, "Marketers (copy)");
    assert_eq!(dup.permissions.len(), 108);
    assert_eq!(dup.member_count, 1);
    assert!(!dup.system);
    // Blocking needs `view_users`, which the documents give no standard group.
    assert_status(
        admin
            .set_user_status(pb::SetUserStatusRequest {
                tenant_id: "t".into(),
                user_id: "analyst".into(),
                status: pb::UserStatus::Blocked.into(),
                actor_user_id: "owner".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &["block users", "missing view_users"],
    );
    admin
        .grant_permissions(grant("", "owner", &["view_users"]))
        .await
        .unwrap();
    admin
        .set_user_status(pb::SetUserStatusRequest {
            tenant_id: "t".into(),
            user_id: "analyst".into(),
            status: pb::UserStatus::Blocked.into(),
            actor_user_id: "owner".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!app.allowed("t", "analyst", "view_reports").await);
    // Unblocking gives back what the user holds: only for a user within the actor's permissions.
    let unblock = |actor: &str, user: &str| pb::SetUserStatusRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        status: pb::UserStatus::Active.into(),
        actor_user_id: actor.into(),
        ..Default::default()
    };
    admin
        .grant_permissions(grant("", "ga", &["view_users"]))
        .await
        .unwrap();
    admin
        .set_user_status(pb::SetUserStatusRequest {
            tenant_id: "t".into(),
            user_id: "owner".into(),
            status: pb::UserStatus::Blocked.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_status(
        admin.set_user_status(unblock("ga", "owner")).await,
        Code::PermissionDenied,
        &["delete_customers"],
    );
    assert!(
        !app.allowed("t", "owner", "view_reports").await,
        "still blocked"
    );
    admin.set_user_status(unblock("", "owner")).await.unwrap();
    admin
        .set_user_status(unblock("owner", "analyst"))
        .await
        .unwrap();
    assert!(app.allowed("t", "analyst", "view_reports").await);
}

async fn restricted_actors_restrict_only_within_their_limit(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    let restrict =
        |actor: &str, user: &str, ids: &[&str], clear: bool| pb::SetRestrictionsRequest {
            tenant_id: "t".into(),
            user_id: user.into(),
            resource_type: "folder".into(),
            resource_ids: ids.iter().map(|i| i.to_string()).collect(),
            clear,
            actor_user_id: actor.into(),
            ..Default::default()
        };
    admin
        .set_restrictions(restrict("", "owner", &["a", "b"], false))
        .await
        .unwrap();
    // Limiting takes access away, so it needs what the user holds within the actor's reach:
    // an analyst with access to every folder is out of reach of an owner limited to a and b.
    assert_status(
        admin
            .set_restrictions(restrict("owner", "analyst", &["a"], false))
            .await,
        Code::PermissionDenied,
        &[
            "take access away",
            "`analyst`",
            "not limited to folder within it",
        ],
    );
    admin
        .set_restrictions(restrict("", "analyst", &["a", "b"], false))
        .await
        .unwrap();
    admin
        .set_restrictions(restrict("owner", "analyst", &["a"], false))
        .await
        .unwrap();
    assert_status(
        admin
            .set_restrictions(restrict("owner", "analyst", &["a", "c"], false))
            .await,
        Code::PermissionDenied,
        &["beyond them", "c"],
    );
    assert_status(
        admin
            .set_restrictions(restrict("owner", "analyst", &[], true))
            .await,
        Code::PermissionDenied,
        &["lifting the limit"],
    );
    assert_status(
        admin
            .set_restrictions(restrict("ga", "analyst", &["a"], false))
            .await,
        Code::PermissionDenied,
        &["limit_staff_campaign_access"],
    );
}

/// Lifting or widening a limit gives a user back access on more resources, so it is giving:
/// an actor without a limit of its own still needs everything the user holds. (Found by the
/// delegation property in `model.rs`.)
async fn lifting_a_limit_needs_what_the_user_holds(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    let restrict =
        |actor: &str, user: &str, ids: &[&str], clear: bool| pb::SetRestrictionsRequest {
            tenant_id: "t".into(),
            user_id: user.into(),
            resource_type: "folder".into(),
            resource_ids: ids.iter().map(|i| i.to_string()).collect(),
            clear,
            actor_user_id: actor.into(),
            ..Default::default()
        };
    app.grant(
        "t",
        "limiter",
        &["edit_users", "limit_staff_campaign_access", "view_reports"],
        None,
    )
    .await;
    for user in ["owner", "reader"] {
        admin
            .set_restrictions(restrict("", user, &["a", "b"], false))
            .await
            .unwrap();
    }
    app.grant("t", "reader", &["view_reports"], None).await;
    let on = |user: &str, folder: &str| pb::CheckRequest {
        resource: Some(pb::Resource {
            r#type: "folder".into(),
            id: folder.into(),
        }),
        ..perm_check("t", user, "view_reports")
    };

    // Narrowing takes access away, widening and lifting give it back: each needs everything
    // the owner holds.
    let rev = app
        .app
        .get_tenant(
            &authz::ids::TenantId::parse("t", "t").unwrap(),
            &authz::ids::By::Operator,
        )
        .await
        .unwrap()
        .revision;
    for (ids, clear) in [
        (&["a"][..], false),
        (&["a", "c"][..], false),
        (&[][..], true),
    ] {
        assert_status(
            admin
                .set_restrictions(restrict("limiter", "owner", ids, clear))
                .await,
            Code::PermissionDenied,
            &["delete_customers"],
        );
    }
    assert_eq!(
        app.app
            .get_tenant(
                &authz::ids::TenantId::parse("t", "t").unwrap(),
                &authz::ids::By::Operator
            )
            .await
            .unwrap()
            .revision,
        rev
    );
    assert!(!app.check(on("owner", "c")).await.unwrap().allowed);

    // For a user holding only what the actor holds, lifting is fine.
    admin
        .set_restrictions(restrict("limiter", "reader", &[], true))
        .await
        .unwrap();
    assert!(app.check(on("reader", "c")).await.unwrap().allowed);
}

async fn stale_versions_are_aborted_and_change_nothing(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    admin
        .create_group(group("", "g", &["view_reports"]))
        .await
        .unwrap();
    let update = |version: i64, actor: &str| pb::UpdateGroupRequest {
        tenant_id: "t".into(),
        group_key: "g".into(),
        group: Some(pb::Group {
            name: format!("v{version}"),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["name".into()],
        }),
        expected_version: version,
        actor_user_id: actor.into(),
        ..Default::default()
    };
    let g = admin
        .update_group(update(1, ""))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!((g.name.as_str(), g.version), ("v1", 2));
    assert_status(
        admin.update_group(update(1, "")).await,
        Code::Aborted,
        &["version 2, not 1", "reload"],
    );
    assert_status(
        admin.update_group(update(1, "owner")).await,
        Code::Aborted,
        &["version 2, not 1"],
    );
    assert_status(
        admin.update_group(update(-1, "")).await,
        Code::InvalidArgument,
        &["negative"],
    );
    assert_status(
        admin
            .delete_group(pb::DeleteGroupRequest {
                tenant_id: "t".into(),
                group_key: "g".into(),
                expected_version: 1,
                ..Default::default()
            })
            .await,
        Code::Aborted,
        &["not 1"],
    );
    let g = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "t".into(),
            group_key: "g".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!((g.name.as_str(), g.version), ("v1", 2));
    admin
        .delete_group(pb::DeleteGroupRequest {
            tenant_id: "t".into(),
            group_key: "g".into(),
            expected_version: 2,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn row(user: &str, groups: &[&str], perms: &[&str]) -> pb::ImportRow {
    pb::ImportRow {
        user_id: user.into(),
        display_name: format!("User {user}"),
        email: format!("{user}@example.com"),
        group_keys: groups.iter().map(|g| g.to_string()).collect(),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
    }
}

fn import(actor: &str, rows: Vec<pb::ImportRow>, dry_run: bool) -> pb::ImportUsersRequest {
    pb::ImportUsersRequest {
        tenant_id: "t".into(),
        rows,
        actor_user_id: actor.into(),
        dry_run,
    }
}

async fn import_applies_all_rows_or_none(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    let rows = || {
        vec![
            row("i1", &["analysts", "group_admins"], &[]),
            row("i2", &["marketers"], &["delete_customers"]),
            row("i3", &[], &["view_reports"]),
        ]
    };
    // A dry run previews and applies nothing.
    let dry = admin
        .import_users(import("", rows(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.imported, 3);
    assert_eq!(dry.preview.unwrap().affected_users.len(), 3);
    assert!(!app.allowed("t", "i1", "view_reports").await);
    // Committed: every row at once.
    let done = admin
        .import_users(import("", rows(), false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.imported, 3);
    assert!(app.allowed("t", "i1", "edit_users").await);
    assert!(app.allowed("t", "i2", "delete_customers").await);
    let i1 = admin
        .get_user(pb::GetUserRequest {
            tenant_id: "t".into(),
            user_id: "i1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (i1.email.as_str(), i1.group_keys.as_slice()),
        (
            "i1@example.com",
            &["analysts".to_string(), "group_admins".to_string()][..]
        )
    );

    // One bad row refuses the whole import, naming every problem by row.
    let bad = vec![
        row("ok1", &["analysts"], &[]),
        row("", &[], &[]),
        row("x2", &["ghosts"], &["nope"]),
        row("ok1", &[], &[]),
        row("x3", &["Not A Key"], &[]),
    ];
    assert_status(
        admin.import_users(import("", bad, false)).await,
        Code::InvalidArgument,
        &[
            "nothing applied",
            "4 of 5 rows",
            "row 2 (``): user_id is required",
            "row 3 (`x2`): group `ghosts` does not exist",
            "unknown permission `nope`",
            "row 4 (`ok1`): user `ok1` is also in row 1",
            "row 5",
            "try `not_a_key`",
        ],
    );
    assert_status(
        admin
            .get_user(pb::GetUserRequest {
                tenant_id: "t".into(),
                user_id: "ok1".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["ok1"],
    );
    assert_status(
        admin.import_users(import("", vec![], false)).await,
        Code::InvalidArgument,
        &["rows is empty"],
    );
}

async fn import_cannot_escalate(backend: Backend) {
    let app = setup(backend).await;
    let mut admin = app.admin.clone();
    // Grant through import: the same rules as everywhere.
    assert_status(
        admin
            .import_users(import(
                "ga",
                vec![
                    row("ok", &["group_admins"], &[]),
                    row("me2", &["owners"], &[]),
                ],
                false,
            ))
            .await,
        Code::PermissionDenied,
        &["row 2 (`me2`)", "group `owners`", "delete_customers"],
    );
    assert_status(
        admin
            .import_users(import(
                "ga",
                vec![row("ga", &[], &["delete_customers"])],
                false,
            ))
            .await,
        Code::PermissionDenied,
        &["missing delete_customers"],
    );
    assert_status(
        admin
            .import_users(import(
                "ga",
                vec![row("x", &["maestra_staff"], &["view_system_tasks"])],
                false,
            ))
            .await,
        Code::InvalidArgument,
        &[
            "group `maestra_staff` does not exist",
            "unknown permission `view_system_tasks`",
        ],
    );
    assert_status(
        admin
            .import_users(import("analyst", vec![row("x", &[], &[])], false))
            .await,
        Code::PermissionDenied,
        &["missing edit_users"],
    );
    assert!(
        !app.allowed("t", "ok", "view_reports").await,
        "nothing of the refused imports was applied"
    );
    assert!(!app.allowed("t", "ga", "delete_customers").await);
    // Within the actor's own permissions it works.
    admin
        .import_users(import(
            "ga",
            vec![row("ok", &["group_admins"], &["view_reports"])],
            false,
        ))
        .await
        .unwrap();
    assert!(app.allowed("t", "ok", "edit_permission_groups").await);
}

contract!(
    an_actor_cannot_give_what_it_does_not_hold,
    system_groups_internal_groups_and_internal_permissions,
    blocked_unknown_and_foreign_actors,
    an_owner_can_do_what_the_documents_allow,
    restricted_actors_restrict_only_within_their_limit,
    lifting_a_limit_needs_what_the_user_holds,
    stale_versions_are_aborted_and_change_nothing,
    import_applies_all_rows_or_none,
    import_cannot_escalate,
);
