//! AdminService through the real server.

use crate::helpers::*;
use authz::grpc::pb;
use tonic::Code;

fn group(key: &str, name: &str, perms: &[&str]) -> pb::Group {
    pb::Group {
        key: key.into(),
        name: name.into(),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

async fn tenants(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    let mut admin = app.admin.clone();
    for id in ["c", "a", "b"] {
        app.tenant(id).await;
    }
    assert_status(
        admin
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: "a".into(),
                display_name: "again".into(),
            })
            .await,
        Code::AlreadyExists,
        &["tenant `a` already exists"],
    );
    let t = admin
        .get_tenant(pb::GetTenantRequest {
            tenant_id: "a".into(),
            actor_user_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(t.display_name, "Tenant a");
    assert!(t.create_time.is_some());
    assert_status(
        admin
            .get_tenant(pb::GetTenantRequest {
                tenant_id: "zz".into(),
                actor_user_id: String::new(),
            })
            .await,
        Code::NotFound,
        &["zz"],
    );
    // Pagination walks every tenant once, in order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_tenants(pb::ListTenantsRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.tenants.into_iter().map(|t| t.tenant_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["a", "b", "c"]);
    assert_status(
        admin
            .list_tenants(pb::ListTenantsRequest {
                page_size: 2,
                page_token: "bogus".into(),
            })
            .await,
        Code::InvalidArgument,
        &["page_token"],
    );
    assert_status(
        admin
            .list_tenants(pb::ListTenantsRequest {
                page_size: 5000,
                page_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
        &["page_size 5000"],
    );
}

async fn users(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    let u = admin
        .upsert_user(pb::UpsertUserRequest {
            tenant_id: "t".into(),
            user_id: "ann".into(),
            display_name: "Ann".into(),
            email: "ann@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(u.user.unwrap().status, pb::UserStatus::Active as i32);
    app.add("t", "analysts", &["ann", "bob"]).await;
    app.add("t", "owners", &["carl"]).await;
    app.grant("t", "ann", &["delete_customers"], None).await;
    let got = admin
        .get_user(pb::GetUserRequest {
            tenant_id: "t".into(),
            user_id: "ann".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(got.email, "ann@example.com");
    assert_eq!(got.group_keys, ["analysts"]);
    assert_eq!(got.direct_permissions, ["delete_customers"]);
    assert_status(
        admin
            .get_user(pb::GetUserRequest {
                tenant_id: "t".into(),
                user_id: "zed".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["user `zed`"],
    );
    let list = |group: &str| pb::ListUsersRequest {
        tenant_id: "t".into(),
        group_key: group.into(),
        page_size: 0,
        page_token: String::new(),
        ..Default::default()
    };
    let ids = |r: pb::ListUsersResponse| r.users.into_iter().map(|u| u.user_id).collect::<Vec<_>>();
    assert_eq!(
        ids(admin
            .list_users(list("analysts"))
            .await
            .unwrap()
            .into_inner()),
        ["ann", "bob"]
    );
    assert_eq!(
        ids(admin.list_users(list("")).await.unwrap().into_inner()),
        ["ann", "bob", "carl"]
    );
    assert_status(
        admin.list_users(list("ghosts")).await,
        Code::NotFound,
        &["group `ghosts`"],
    );
    assert_status(
        admin
            .set_user_status(pb::SetUserStatusRequest {
                tenant_id: "t".into(),
                user_id: "ann".into(),
                status: 0,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["status is required"],
    );
    assert_status(
        admin
            .set_user_status(pb::SetUserStatusRequest {
                tenant_id: "t".into(),
                user_id: "ann".into(),
                status: 9,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["ACTIVE or BLOCKED"],
    );
    // Removing a member.
    admin
        .remove_group_members(pb::RemoveGroupMembersRequest {
            tenant_id: "t".into(),
            group_key: "analysts".into(),
            user_ids: vec!["bob".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(admin
            .list_users(list("analysts"))
            .await
            .unwrap()
            .into_inner()),
        ["ann"]
    );
    assert!(!app.allowed("t", "bob", "view_reports").await);
}

async fn custom_group_lifecycle(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    let created = admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(group(
                "email_specialist",
                "Email Specialist",
                &[
                    "view_and_edit_email_messages",
                    "view_campaign_manager",
                    "view_promo_code",
                ],
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let g = created.group.unwrap();
    assert_eq!(g.version, 1);
    assert!(!g.system);
    // The alias was stored as its permission.
    assert_eq!(g.permissions.len(), 3);
    assert!(g.permissions.contains(&"view_promo_codes".to_string()));

    app.add("t", "email_specialist", &["eve"]).await;
    assert!(
        app.check(action_check("t", "eve", "email_campaigns.open", &[]))
            .await
            .unwrap()
            .allowed
    );
    assert!(!app.allowed("t", "eve", "view_and_edit_sms_messages").await);

    // Update permissions through a field mask: members see it at once.
    let updated = admin
        .update_group(pb::UpdateGroupRequest {
            tenant_id: "t".into(),
            group_key: "email_specialist".into(),
            group: Some(group("", "", &["view_and_edit_sms_messages"])),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["permissions".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(
        updated.name, "Email Specialist",
        "fields outside the mask are kept"
    );
    assert_eq!(updated.version, 2);
    assert!(app.allowed("t", "eve", "view_and_edit_sms_messages").await);
    assert!(
        !app.allowed("t", "eve", "view_and_edit_email_messages")
            .await
    );

    let get = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "t".into(),
            group_key: "email_specialist".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(get.member_count, 1);

    assert_status(
        admin
            .delete_group(pb::DeleteGroupRequest {
                tenant_id: "t".into(),
                group_key: "email_specialist".into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["still has 1 member"],
    );
    admin
        .remove_group_members(pb::RemoveGroupMembersRequest {
            tenant_id: "t".into(),
            group_key: "email_specialist".into(),
            user_ids: vec!["eve".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .delete_group(pb::DeleteGroupRequest {
            tenant_id: "t".into(),
            group_key: "email_specialist".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_status(
        admin
            .get_group(pb::GetGroupRequest {
                tenant_id: "t".into(),
                group_key: "email_specialist".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["email_specialist"],
    );
}

async fn system_groups_are_read_only_and_listed_with_custom_ones(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    let owners = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "t".into(),
            group_key: "owners".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert!(owners.system);
    assert_eq!(owners.permissions.len(), 162);
    assert_status(
        admin
            .update_group(pb::UpdateGroupRequest {
                tenant_id: "t".into(),
                group_key: "owners".into(),
                group: Some(group("", "Bosses", &[])),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["system group"],
    );
    assert_status(
        admin
            .delete_group(pb::DeleteGroupRequest {
                tenant_id: "t".into(),
                group_key: "analysts".into(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        &["system group"],
    );
    assert_status(
        admin
            .create_group(pb::CreateGroupRequest {
                tenant_id: "t".into(),
                group: Some(group("owners", "Owners", &[])),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        &["system group"],
    );
    for key in ["b_custom", "zz_custom", "a_custom"] {
        admin
            .create_group(pb::CreateGroupRequest {
                tenant_id: "t".into(),
                group: Some(group(key, key, &[])),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Pages of 3 walk system and custom groups together, sorted by key, each once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_groups(pb::ListGroupsRequest {
                tenant_id: "t".into(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.groups.len() <= 3);
        seen.extend(page.groups.into_iter().map(|g| g.key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = app.catalog.groups().iter().map(|g| g.key.clone()).collect();
    expected.extend(["b_custom", "zz_custom", "a_custom"].map(String::from));
    expected.sort();
    assert_eq!(seen, expected);
}

async fn bad_admin_requests_get_clear_errors_and_change_nothing(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    let create = |g: pb::Group| pb::CreateGroupRequest {
        tenant_id: "t".into(),
        group: Some(g),
        ..Default::default()
    };
    assert_status(
        admin
            .create_group(create(group("Email Specialist", "E", &[])))
            .await,
        Code::InvalidArgument,
        &["try `email_specialist`"],
    );
    assert_status(
        admin.create_group(create(group("e", "", &[]))).await,
        Code::InvalidArgument,
        &["group.name is required"],
    );
    assert_status(
        admin.create_group(create(group("e", "E", &["nope"]))).await,
        Code::InvalidArgument,
        &["unknown permission `nope`"],
    );
    assert_status(
        admin
            .create_group(pb::CreateGroupRequest {
                tenant_id: "ghost".into(),
                group: Some(group("e", "E", &[])),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["tenant `ghost`"],
    );
    admin
        .create_group(create(group("e", "E", &["view_reports"])))
        .await
        .unwrap();
    assert_status(
        admin.create_group(create(group("e", "E", &[]))).await,
        Code::AlreadyExists,
        &["group `e` already exists"],
    );
    let update = |paths: &[&str]| pb::UpdateGroupRequest {
        tenant_id: "t".into(),
        group_key: "e".into(),
        group: Some(group("", "", &["nope"])),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        ..Default::default()
    };
    assert_status(
        admin.update_group(update(&[])).await,
        Code::InvalidArgument,
        &["update_mask is required"],
    );
    assert_status(
        admin.update_group(update(&["colour"])).await,
        Code::InvalidArgument,
        &["unknown field `colour`"],
    );
    assert_status(
        admin.update_group(update(&["key"])).await,
        Code::InvalidArgument,
        &["key can't be changed"],
    );
    assert_status(
        admin.update_group(update(&["permissions"])).await,
        Code::InvalidArgument,
        &["unknown permission `nope`"],
    );
    assert_status(
        admin.update_group(update(&["name"])).await,
        Code::InvalidArgument,
        &["group.name is required"],
    );
    // Nothing changed.
    let g = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "t".into(),
            group_key: "e".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(
        (g.name.as_str(), g.version, g.permissions),
        ("E", 1, vec!["view_reports".to_string()])
    );

    assert_status(
        admin
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: "t".into(),
                group_key: "ghosts".into(),
                user_ids: vec!["u".into()],
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["group `ghosts`"],
    );
    assert_status(
        admin
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: "t".into(),
                group_key: "e".into(),
                user_ids: vec![],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["user_ids must name at least one id"],
    );
    assert_status(
        admin
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: "t".into(),
                group_key: "e".into(),
                user_ids: vec!["ok".into(), "bad\n".into()],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["control character"],
    );
    // The valid id in the rejected request was not added.
    assert_status(
        admin
            .get_user(pb::GetUserRequest {
                tenant_id: "t".into(),
                user_id: "ok".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        &["ok"],
    );

    let grant = |perms: &[&str], resource: Option<pb::Resource>| pb::GrantPermissionsRequest {
        tenant_id: "t".into(),
        user_id: "u".into(),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        resource,
        ..Default::default()
    };
    assert_status(
        admin.grant_permissions(grant(&[], None)).await,
        Code::InvalidArgument,
        &["at least one permission"],
    );
    assert_status(
        admin
            .grant_permissions(grant(&["view_reports", "nope"], None))
            .await,
        Code::InvalidArgument,
        &["unknown permission `nope`"],
    );
    assert_status(
        admin
            .grant_permissions(grant(
                &["view_reports"],
                Some(pb::Resource {
                    r#type: "app".into(),
                    id: "1".into(),
                }),
            ))
            .await,
        Code::InvalidArgument,
        &["unknown resource type `app`"],
    );
    assert!(
        !app.allowed("t", "u", "view_reports").await,
        "the rejected grant changed nothing"
    );

    let restrict = |ids: &[&str], clear: bool, t: &str| pb::SetRestrictionsRequest {
        tenant_id: "t".into(),
        user_id: "u".into(),
        resource_type: t.into(),
        resource_ids: ids.iter().map(|p| p.to_string()).collect(),
        clear,
        ..Default::default()
    };
    assert_status(
        admin.set_restrictions(restrict(&[], false, "folder")).await,
        Code::InvalidArgument,
        &["resource_ids is empty", "clear"],
    );
    assert_status(
        admin
            .set_restrictions(restrict(&["a"], true, "folder"))
            .await,
        Code::InvalidArgument,
        &["one or the other"],
    );
    assert_status(
        admin
            .set_restrictions(restrict(&["a"], false, "planet"))
            .await,
        Code::InvalidArgument,
        &["unknown resource type `planet`"],
    );
}

async fn catalog_reads(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    let mut admin = app.admin.clone();
    let c = admin
        .get_catalog(pb::GetCatalogRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.name, "maestra");
    assert_eq!(c.permission_count, 167);
    assert_eq!(c.resource_types, ["folder", "brand"]);
    assert!(c.context_flags.contains(&"multibrand".to_string()));
    let perms = admin
        .list_permissions(pb::ListPermissionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .permissions;
    assert_eq!(perms.len(), 167);
    let billing = perms
        .iter()
        .find(|p| p.key == "view_billing_details")
        .unwrap();
    assert_eq!(billing.aliases, ["View billing detalization"]);
    assert!(
        perms
            .iter()
            .find(|p| p.key == "view_system_tasks")
            .unwrap()
            .internal
    );
    let billing_section = admin
        .list_permissions(pb::ListPermissionsRequest {
            section: "Billing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(billing_section.permissions.len(), 2);
    let actions = admin
        .list_actions(pb::ListActionsRequest {
            prefix: "flows.".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .actions;
    let add = actions
        .iter()
        .find(|a| a.key == "flows.add_a_flow")
        .unwrap();
    assert_eq!(
        add.expression,
        "view_campaign_manager & view_flows & edit_flows & view_integrations & (!ctx.multibrand | view_brands)"
    );
}

/// ImportUsers rows add to what users have: a row's empty display name or email leaves the
/// stored one as it was; a given one replaces it.
async fn import_leaves_profile_fields_a_row_leaves_empty(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    for (id, name, email) in [
        ("ann", "Ann", "ann@example.com"),
        ("bob", "Bob", "bob@example.com"),
    ] {
        admin
            .upsert_user(pb::UpsertUserRequest {
                tenant_id: "t".into(),
                user_id: id.into(),
                display_name: name.into(),
                email: email.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let row = |id: &str, name: &str, email: &str| pb::ImportRow {
        user_id: id.into(),
        display_name: name.into(),
        email: email.into(),
        group_keys: vec!["analysts".into()],
        ..Default::default()
    };
    for dry_run in [true, false] {
        admin
            .import_users(pb::ImportUsersRequest {
                tenant_id: "t".into(),
                rows: vec![
                    row("ann", "", ""),
                    row("bob", "Robert", ""),
                    row("cy", "", "cy@example.com"),
                ],
                dry_run,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let get = |id: &str| {
        let mut admin = app.admin.clone();
        let id = id.to_owned();
        async move {
            admin
                .get_user(pb::GetUserRequest {
                    tenant_id: "t".into(),
                    user_id: id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .user
                .unwrap()
        }
    };
    let profile = |u: &pb::User| {
        (
            u.display_name.clone(),
            u.email.clone(),
            u.group_keys.clone(),
        )
    };
    let analysts = vec!["analysts".to_owned()];
    assert_eq!(
        profile(&get("ann").await),
        ("Ann".into(), "ann@example.com".into(), analysts.clone())
    );
    assert_eq!(
        profile(&get("bob").await),
        ("Robert".into(), "bob@example.com".into(), analysts.clone())
    );
    assert_eq!(
        profile(&get("cy").await),
        (String::new(), "cy@example.com".into(), analysts)
    );
}

contract!(
    tenants,
    users,
    custom_group_lifecycle,
    system_groups_are_read_only_and_listed_with_custom_ones,
    bad_admin_requests_get_clear_errors_and_change_nothing,
    catalog_reads,
    import_leaves_profile_fields_a_row_leaves_empty,
);
