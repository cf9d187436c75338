//! Previews: a dry run computes what committing would do to every affected user, and commits
//! nothing; committing returns the same preview. On both stores.

use crate::helpers::*;
use authz::grpc::pb;

fn update(key: &str, perms: &[&str], dry_run: bool) -> pb::UpdateGroupRequest {
    pb::UpdateGroupRequest {
        tenant_id: "ws".into(),
        group_key: key.into(),
        group: Some(pb::Group {
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["permissions".into()],
        }),
        dry_run,
        ..Default::default()
    }
}

async fn revision(app: &TestApp) -> String {
    app.admin
        .clone()
        .get_tenant(pb::GetTenantRequest {
            tenant_id: "ws".into(),
            actor_user_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap()
        .revision
}

async fn a_dry_run_previews_exactly_what_a_commit_does(backend: Backend) {
    let app = TestServer::on(backend).catalog(TOOLJET).start().await;
    app.tenant("ws").await;
    let mut admin = app.admin.clone();
    admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "ws".into(),
            group: Some(pb::Group {
                key: "makers".into(),
                name: "Makers".into(),
                permissions: vec!["create_apps".into(), "edit_app".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    app.add("ws", "makers", &["a", "b"]).await;
    app.add("ws", "builder", &["b"]).await;
    app.add("ws", "makers", &["blocked"]).await;
    admin
        .set_user_status(pb::SetUserStatusRequest {
            tenant_id: "ws".into(),
            user_id: "blocked".into(),
            status: pb::UserStatus::Blocked.into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Roles are reported.
    let user = |id: &str| pb::GetUserRequest {
        tenant_id: "ws".into(),
        user_id: id.into(),
        ..Default::default()
    };
    assert_eq!(
        admin
            .get_user(user("a"))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .roles,
        ["builder"]
    );
    let eff = app
        .authz
        .clone()
        .get_effective_permissions(pb::GetEffectivePermissionsRequest {
            tenant_id: "ws".into(),
            user_id: "a".into(),
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(eff.roles, ["builder"]);

    // Makers become workspace admins: a dry run shows who gains what, and the role change.
    let before_rev = revision(&app).await;
    let perms = [
        "create_apps",
        "edit_app",
        "manage_users",
        "manage_groups",
        "manage_workspace_settings",
    ];
    let dry = admin
        .update_group(update("makers", &perms, true))
        .await
        .unwrap()
        .into_inner();
    let preview = dry.preview.clone().unwrap();
    let ids: Vec<&str> = preview
        .affected_users
        .iter()
        .map(|u| u.user_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["a", "b"],
        "the blocked member's effective permissions do not change"
    );
    let a = &preview.affected_users[0];
    assert_eq!(
        a.added,
        ["manage_users", "manage_groups", "manage_workspace_settings"]
    );
    assert!(a.removed.is_empty());
    assert_eq!(
        (a.roles_added.as_slice(), a.roles_removed.as_slice()),
        (&["admin".to_string()][..], &["builder".to_string()][..])
    );
    assert_eq!(
        dry.group.unwrap().permissions.len(),
        5,
        "the response shows the group as it would be"
    );

    // Nothing was committed: same revision, same group, same answers, no audit event.
    assert_eq!(revision(&app).await, before_rev);
    let g = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "ws".into(),
            group_key: "makers".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!((g.permissions.len(), g.version), (2, 1));
    assert!(!app.allowed("ws", "a", "manage_users").await);
    let audit = admin
        .list_audit_events(pb::ListAuditEventsRequest {
            tenant_id: "ws".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(audit.events.iter().all(|e| e.operation != "update_group"));

    // Committing returns the same preview and does it.
    let done = admin
        .update_group(update("makers", &perms, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.preview, dry.preview);
    assert!(app.allowed("ws", "a", "manage_users").await);
    assert_eq!(
        admin
            .get_user(user("a"))
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
            .roles,
        ["admin"]
    );

    // Every mutation previews: a membership change, a direct grant.
    let dry = admin
        .remove_group_members(pb::RemoveGroupMembersRequest {
            tenant_id: "ws".into(),
            group_key: "makers".into(),
            user_ids: vec!["b".into()],
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let b = &dry.preview.unwrap().affected_users[0];
    assert_eq!(b.user_id, "b");
    assert_eq!(
        b.removed,
        ["manage_users", "manage_groups", "manage_workspace_settings"],
        "b keeps what Builder gives"
    );
    assert!(
        app.allowed("ws", "b", "manage_users").await,
        "the dry run removed nothing"
    );
    let dry = admin
        .grant_permissions(pb::GrantPermissionsRequest {
            tenant_id: "ws".into(),
            user_id: "c".into(),
            permissions: vec!["view_app".into()],
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.preview.unwrap().affected_users[0].added, ["view_app"]);
    assert!(!app.allowed("ws", "c", "view_app").await);
}

contract!(a_dry_run_previews_exactly_what_a_commit_does);
