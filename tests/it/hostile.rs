//! Every RPC, sent malformed and hostile requests: each gets its exact status code and a message
//! that says what to fix, and the stored state is unchanged afterwards. On both stores.
//!
//! Long: one test per RPC and kind of malformed input, each standing alone.

use crate::helpers::*;
use authz::grpc::pb;
use std::future::Future;
use std::pin::Pin;
use tonic::{Code, Status};

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

struct Case {
    name: String,
    code: Code,
    parts: Vec<&'static str>,
    call: Call,
}

/// One admin RPC call, with its response dropped.
macro_rules! admin {
    ($app:expr, $method:ident, $req:expr) => {{
        let mut client = $app.admin.clone();
        let req = $req;
        Box::pin(async move { client.$method(req).await.map(|_| ()) }) as Call
    }};
}

/// One check-service RPC call; for Watch, the stream's first status counts.
macro_rules! authz {
    ($app:expr, $method:ident, $req:expr) => {{
        let mut client = $app.authz.clone();
        let req = $req;
        Box::pin(async move { client.$method(req).await.map(|_| ()) }) as Call
    }};
}

fn case(name: impl Into<String>, code: Code, parts: &[&'static str], call: Call) -> Case {
    Case {
        name: name.into(),
        code,
        parts: parts.to_vec(),
        call,
    }
}

/// Ids that no RPC may accept, with a word its error message must carry.
fn bad_ids() -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("empty", String::new(), "required"),
        ("oversized", "u".repeat(300), "limit is 256"),
        ("NUL", "a\u{0}b".into(), "control character"),
        ("newline", "a\nb".into(), "control character"),
        ("escape", "a\u{1b}[31mb".into(), "control character"),
        ("padded", " u ".into(), "whitespace"),
        ("zero-width space", "\u{200b}".into(), "U+200B"),
        ("right-to-left override", "a\u{202e}b".into(), "U+202E"),
        ("byte order mark", "\u{feff}u".into(), "U+FEFF"),
    ]
}

/// Everything the stored state is made of, as the admin surface shows it.
async fn state(app: &TestApp) -> String {
    let mut out = String::new();
    for t in ["t", "other"] {
        let mut admin = app.admin.clone();
        let tenant = admin
            .get_tenant(pb::GetTenantRequest {
                tenant_id: t.into(),
                actor_user_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .tenant
            .unwrap();
        let users = admin
            .list_users(pb::ListUsersRequest {
                tenant_id: t.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .users;
        let groups = admin
            .list_groups(pb::ListGroupsRequest {
                tenant_id: t.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .groups;
        out.push_str(&format!("{t}@{}\n{users:?}\n{groups:?}\n", tenant.revision));
    }
    out
}

fn group(key: &str, perms: &[&str]) -> pb::Group {
    pb::Group {
        key: key.into(),
        name: format!("Group {key}"),
        permissions: perms.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    }
}

fn expr_check(expression: String) -> pb::CheckRequest {
    pb::CheckRequest {
        target: Some(pb::check_request::Target::Expression(expression)),
        ..perm_check("t", "u", "")
    }
}

fn item(user: &str, perm: &str) -> pb::BatchCheckItem {
    pb::BatchCheckItem {
        user_id: user.into(),
        target: Some(pb::batch_check_item::Target::Permission(perm.into())),
        ..Default::default()
    }
}

fn cases(app: &TestApp) -> Vec<Case> {
    let mut cases = Vec::new();

    // Ids: every RPC that takes a tenant or user id refuses each malformed one.
    for (what, bad, part) in bad_ids() {
        let t = bad.clone();
        cases.extend([
            case(
                format!("CreateTenant {what} tenant"),
                Code::InvalidArgument,
                &["tenant_id", part],
                admin!(
                    app,
                    create_tenant,
                    pb::CreateTenantRequest {
                        tenant_id: t.clone(),
                        display_name: "x".into()
                    }
                ),
            ),
            case(
                format!("GetTenant {what} tenant"),
                Code::InvalidArgument,
                &["tenant_id", part],
                admin!(
                    app,
                    get_tenant,
                    pb::GetTenantRequest {
                        tenant_id: t.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("Check {what} tenant"),
                Code::InvalidArgument,
                &["tenant_id", part],
                authz!(
                    app,
                    check,
                    pb::CheckRequest {
                        tenant_id: t.clone(),
                        ..perm_check("", "u", "view_reports")
                    }
                ),
            ),
            case(
                format!("Check {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                authz!(app, check, perm_check("t", &bad, "view_reports")),
            ),
            case(
                format!("BatchCheck {what} tenant"),
                Code::InvalidArgument,
                &["tenant_id", part],
                authz!(
                    app,
                    batch_check,
                    pb::BatchCheckRequest {
                        tenant_id: t.clone(),
                        items: vec![item("u", "view_reports")],
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("GetEffectivePermissions {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                authz!(
                    app,
                    get_effective_permissions,
                    pb::GetEffectivePermissionsRequest {
                        tenant_id: "t".into(),
                        user_id: bad.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("ListAllowedResources {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                authz!(
                    app,
                    list_allowed_resources,
                    pb::ListAllowedResourcesRequest {
                        tenant_id: "t".into(),
                        user_id: bad.clone(),
                        permission: "view_reports".into(),
                        resource_type: "brand".into(),
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("Watch {what} tenant"),
                Code::InvalidArgument,
                &["tenant_id", part],
                authz!(
                    app,
                    watch,
                    pb::WatchRequest {
                        tenant_id: t.clone(),
                        after_revision: String::new()
                    }
                ),
            ),
            case(
                format!("UpsertUser {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                admin!(
                    app,
                    upsert_user,
                    pb::UpsertUserRequest {
                        tenant_id: "t".into(),
                        user_id: bad.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("GetUser {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                admin!(
                    app,
                    get_user,
                    pb::GetUserRequest {
                        tenant_id: "t".into(),
                        user_id: bad.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("ListUsers {what} tenant"),
                Code::InvalidArgument,
                &["tenant_id", part],
                admin!(
                    app,
                    list_users,
                    pb::ListUsersRequest {
                        tenant_id: t.clone(),
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("SetUserStatus {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                admin!(
                    app,
                    set_user_status,
                    pb::SetUserStatusRequest {
                        tenant_id: "t".into(),
                        user_id: bad.clone(),
                        status: pb::UserStatus::Blocked as i32,
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("AddGroupMembers {what} user"),
                Code::InvalidArgument,
                &["user_ids", part],
                admin!(
                    app,
                    add_group_members,
                    pb::AddGroupMembersRequest {
                        tenant_id: "t".into(),
                        group_key: "analysts".into(),
                        user_ids: vec!["fresh".into(), bad.clone()],
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("RemoveGroupMembers {what} user"),
                Code::InvalidArgument,
                &["user_ids", part],
                admin!(
                    app,
                    remove_group_members,
                    pb::RemoveGroupMembersRequest {
                        tenant_id: "t".into(),
                        group_key: "analysts".into(),
                        user_ids: vec!["u".into(), bad.clone()],
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("GrantPermissions {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                admin!(
                    app,
                    grant_permissions,
                    pb::GrantPermissionsRequest {
                        tenant_id: "t".into(),
                        user_id: bad.clone(),
                        permissions: vec!["view_reports".into()],
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("RevokePermissions {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                admin!(
                    app,
                    revoke_permissions,
                    pb::RevokePermissionsRequest {
                        tenant_id: "t".into(),
                        user_id: bad.clone(),
                        permissions: vec!["view_reports".into()],
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("SetRestrictions {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                admin!(
                    app,
                    set_restrictions,
                    pb::SetRestrictionsRequest {
                        tenant_id: "t".into(),
                        user_id: bad.clone(),
                        resource_type: "brand".into(),
                        resource_ids: vec!["b1".into()],
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("ImportUsers {what} user"),
                Code::InvalidArgument,
                &["user_id", part],
                admin!(
                    app,
                    import_users,
                    pb::ImportUsersRequest {
                        tenant_id: "t".into(),
                        rows: vec![
                            pb::ImportRow {
                                user_id: "fine".into(),
                                ..Default::default()
                            },
                            pb::ImportRow {
                                user_id: bad.clone(),
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("ListAuditEvents {what} tenant"),
                Code::InvalidArgument,
                &["tenant_id", part],
                admin!(
                    app,
                    list_audit_events,
                    pb::ListAuditEventsRequest {
                        tenant_id: t.clone(),
                        ..Default::default()
                    }
                ),
            ),
        ]);
        // Actors are ids too; an empty actor means an operator call, so it is not bad here.
        if !bad.is_empty() {
            cases.push(case(
                format!("ListPermissions {what} actor"),
                Code::InvalidArgument,
                &["actor_user_id", part],
                admin!(
                    app,
                    list_permissions,
                    pb::ListPermissionsRequest {
                        actor_user_id: bad.clone(),
                        ..Default::default()
                    }
                ),
            ));
            cases.push(case(
                format!("AddGroupMembers {what} actor"),
                Code::InvalidArgument,
                &["actor_user_id", part],
                admin!(
                    app,
                    add_group_members,
                    pb::AddGroupMembersRequest {
                        tenant_id: "t".into(),
                        group_key: "analysts".into(),
                        user_ids: vec!["u".into()],
                        actor_user_id: bad.clone(),
                        ..Default::default()
                    }
                ),
            ));
        }
    }

    // Group keys: empty, oversized, not in the key form.
    for (what, key, part) in [
        ("empty", String::new(), "required"),
        ("oversized", "g".repeat(200), "limit is 128"),
        (
            "upper case",
            "Support Team".to_owned(),
            "try `support_team`",
        ),
        ("control", "g\u{7}".to_owned(), "not a valid key"),
    ] {
        cases.extend([
            case(
                format!("CreateGroup {what} key"),
                Code::InvalidArgument,
                &["key", part],
                admin!(
                    app,
                    create_group,
                    pb::CreateGroupRequest {
                        tenant_id: "t".into(),
                        group: Some(group(&key, &["view_reports"])),
                        ..Default::default()
                    }
                ),
            ),
            case(
                format!("DuplicateGroup {what} new key"),
                Code::InvalidArgument,
                &["new_key", part],
                admin!(
                    app,
                    duplicate_group,
                    pb::DuplicateGroupRequest {
                        tenant_id: "t".into(),
                        source_group_key: "analysts".into(),
                        new_key: key.clone(),
                        new_name: "Copy".into(),
                        copy_permissions: true,
                        ..Default::default()
                    }
                ),
            ),
        ]);
    }

    // Things that do not exist, or belong to the other tenant.
    cases.extend([
        case(
            "GetTenant unknown",
            Code::NotFound,
            &["nope", "CreateTenant"],
            admin!(
                app,
                get_tenant,
                pb::GetTenantRequest {
                    tenant_id: "nope".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "CreateTenant existing",
            Code::AlreadyExists,
            &["`t`"],
            admin!(
                app,
                create_tenant,
                pb::CreateTenantRequest {
                    tenant_id: "t".into(),
                    display_name: "again".into()
                }
            ),
        ),
        case(
            "Check unknown tenant",
            Code::NotFound,
            &["nope"],
            authz!(app, check, perm_check("nope", "u", "view_reports")),
        ),
        case(
            "GetUser another tenant's user",
            Code::NotFound,
            &["x"],
            admin!(
                app,
                get_user,
                pb::GetUserRequest {
                    tenant_id: "t".into(),
                    user_id: "x".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "GetGroup another tenant's group",
            Code::NotFound,
            &["other_team"],
            admin!(
                app,
                get_group,
                pb::GetGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "other_team".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "AddGroupMembers another tenant's group",
            Code::NotFound,
            &["other_team"],
            admin!(
                app,
                add_group_members,
                pb::AddGroupMembersRequest {
                    tenant_id: "t".into(),
                    group_key: "other_team".into(),
                    user_ids: vec!["u".into()],
                    ..Default::default()
                }
            ),
        ),
        case(
            "UpdateGroup another tenant's group",
            Code::NotFound,
            &["other_team"],
            admin!(
                app,
                update_group,
                pb::UpdateGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "other_team".into(),
                    group: Some(group("other_team", &["view_reports"])),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["permissions".into()]
                    }),
                    ..Default::default()
                }
            ),
        ),
        case(
            "DeleteGroup another tenant's group",
            Code::NotFound,
            &["other_team"],
            admin!(
                app,
                delete_group,
                pb::DeleteGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "other_team".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "DuplicateGroup another tenant's group",
            Code::NotFound,
            &["other_team"],
            admin!(
                app,
                duplicate_group,
                pb::DuplicateGroupRequest {
                    tenant_id: "t".into(),
                    source_group_key: "other_team".into(),
                    new_key: "stolen".into(),
                    new_name: "Stolen".into(),
                    copy_permissions: true,
                    copy_members: true,
                    ..Default::default()
                }
            ),
        ),
        case(
            "AddGroupMembers actor of another tenant",
            Code::PermissionDenied,
            &["x"],
            admin!(
                app,
                add_group_members,
                pb::AddGroupMembersRequest {
                    tenant_id: "t".into(),
                    group_key: "analysts".into(),
                    user_ids: vec!["u".into()],
                    actor_user_id: "x".into(),
                    ..Default::default()
                }
            ),
        ),
    ]);

    // Permissions, actions and flags the catalog does not know.
    cases.extend([
        case(
            "Check unknown permission",
            Code::InvalidArgument,
            &["fly_to_the_moon"],
            authz!(app, check, perm_check("t", "u", "fly_to_the_moon")),
        ),
        case(
            "Check unknown action",
            Code::InvalidArgument,
            &["nowhere.nothing", "ListActions"],
            authz!(app, check, action_check("t", "u", "nowhere.nothing", &[])),
        ),
        case(
            "Check no target",
            Code::InvalidArgument,
            &["permission", "action", "expression"],
            authz!(
                app,
                check,
                pb::CheckRequest {
                    target: None,
                    ..perm_check("t", "u", "")
                }
            ),
        ),
        case(
            "Check unknown context flag",
            Code::InvalidArgument,
            &["no_such_flag"],
            authz!(
                app,
                check,
                action_check("t", "u", "customers.open", &["no_such_flag"])
            ),
        ),
        case(
            "Check too many context flags",
            Code::InvalidArgument,
            &["limit is 64"],
            authz!(app, check, {
                let mut r = perm_check("t", "u", "view_reports");
                r.context = (0..65).map(|i| (format!("f{i}"), true)).collect();
                r
            }),
        ),
        case(
            "Check resource of unknown type",
            Code::InvalidArgument,
            &["planet"],
            authz!(
                app,
                check,
                pb::CheckRequest {
                    resource: Some(pb::Resource {
                        r#type: "planet".into(),
                        id: "mars".into()
                    }),
                    ..perm_check("t", "u", "view_reports")
                }
            ),
        ),
        case(
            "GrantPermissions unknown permission",
            Code::InvalidArgument,
            &["fly_to_the_moon"],
            admin!(
                app,
                grant_permissions,
                pb::GrantPermissionsRequest {
                    tenant_id: "t".into(),
                    user_id: "u".into(),
                    permissions: vec!["view_reports".into(), "fly_to_the_moon".into()],
                    ..Default::default()
                }
            ),
        ),
        case(
            "GrantPermissions nothing",
            Code::InvalidArgument,
            &["permissions"],
            admin!(
                app,
                grant_permissions,
                pb::GrantPermissionsRequest {
                    tenant_id: "t".into(),
                    user_id: "u".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "CreateGroup unknown permission",
            Code::InvalidArgument,
            &["fly_to_the_moon"],
            admin!(
                app,
                create_group,
                pb::CreateGroupRequest {
                    tenant_id: "t".into(),
                    group: Some(group("movers", &["fly_to_the_moon"])),
                    ..Default::default()
                }
            ),
        ),
        case(
            "CreateGroup no group",
            Code::InvalidArgument,
            &["group"],
            admin!(
                app,
                create_group,
                pb::CreateGroupRequest {
                    tenant_id: "t".into(),
                    group: None,
                    ..Default::default()
                }
            ),
        ),
        case(
            "CreateGroup control character in name",
            Code::InvalidArgument,
            &["name", "control character"],
            admin!(
                app,
                create_group,
                pb::CreateGroupRequest {
                    tenant_id: "t".into(),
                    group: Some(pb::Group {
                        name: "Bad\u{0}name".into(),
                        ..group("movers", &["view_reports"])
                    }),
                    ..Default::default()
                }
            ),
        ),
        case(
            "CreateGroup with a system group's key",
            Code::AlreadyExists,
            &["analysts"],
            admin!(
                app,
                create_group,
                pb::CreateGroupRequest {
                    tenant_id: "t".into(),
                    group: Some(group("analysts", &["view_reports"])),
                    ..Default::default()
                }
            ),
        ),
        case(
            "UpdateGroup a system group",
            Code::FailedPrecondition,
            &["analysts", "system"],
            admin!(
                app,
                update_group,
                pb::UpdateGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "analysts".into(),
                    group: Some(group("analysts", &["delete_customers"])),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["permissions".into()]
                    }),
                    ..Default::default()
                }
            ),
        ),
        case(
            "UpdateGroup unknown mask path",
            Code::InvalidArgument,
            &["owner"],
            admin!(
                app,
                update_group,
                pb::UpdateGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "support_team".into(),
                    group: Some(group("support_team", &["view_reports"])),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["owner".into()]
                    }),
                    ..Default::default()
                }
            ),
        ),
        case(
            "UpdateGroup stale version",
            Code::Aborted,
            &["version"],
            admin!(
                app,
                update_group,
                pb::UpdateGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "support_team".into(),
                    group: Some(group("support_team", &["view_reports"])),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["permissions".into()]
                    }),
                    expected_version: 99,
                    ..Default::default()
                }
            ),
        ),
        case(
            "DeleteGroup with members",
            Code::FailedPrecondition,
            &["support_team", "member"],
            admin!(
                app,
                delete_group,
                pb::DeleteGroupRequest {
                    tenant_id: "t".into(),
                    group_key: "support_team".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "SetRestrictions unknown resource type",
            Code::InvalidArgument,
            &["planet"],
            admin!(
                app,
                set_restrictions,
                pb::SetRestrictionsRequest {
                    tenant_id: "t".into(),
                    user_id: "u".into(),
                    resource_type: "planet".into(),
                    resource_ids: vec!["mars".into()],
                    ..Default::default()
                }
            ),
        ),
        case(
            "SetUserStatus unspecified",
            Code::InvalidArgument,
            &["status"],
            admin!(
                app,
                set_user_status,
                pb::SetUserStatusRequest {
                    tenant_id: "t".into(),
                    user_id: "u".into(),
                    status: 0,
                    ..Default::default()
                }
            ),
        ),
        case(
            "SetUserStatus out of the enum",
            Code::InvalidArgument,
            &["status"],
            admin!(
                app,
                set_user_status,
                pb::SetUserStatusRequest {
                    tenant_id: "t".into(),
                    user_id: "u".into(),
                    status: 77,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ImportUsers unknown group in one row",
            Code::InvalidArgument,
            &["row 2", "ghosts"],
            admin!(
                app,
                import_users,
                pb::ImportUsersRequest {
                    tenant_id: "t".into(),
                    rows: vec![
                        pb::ImportRow {
                            user_id: "fine".into(),
                            group_keys: vec!["analysts".into()],
                            ..Default::default()
                        },
                        pb::ImportRow {
                            user_id: "fine2".into(),
                            group_keys: vec!["ghosts".into()],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }
            ),
        ),
    ]);

    // Expressions: malformed, deeply nested, huge.
    for (what, expr, parts) in [
        (
            "unbalanced",
            "(view_reports & ".to_owned(),
            vec!["expression"],
        ),
        ("empty", String::new(), vec!["expression"]),
        (
            "dangling operator",
            "view_reports |".to_owned(),
            vec!["expression"],
        ),
        ("unknown name", "view_reports & fly".to_owned(), vec!["fly"]),
        (
            "deep",
            format!("{}view_reports{}", "(".repeat(5000), ")".repeat(5000)),
            vec!["expression"],
        ),
        (
            "huge",
            vec!["view_reports"; 2000].join(" | "),
            vec!["expression", "4096"],
        ),
    ] {
        cases.push(case(
            format!("Check {what} expression"),
            Code::InvalidArgument,
            &parts,
            authz!(app, check, expr_check(expr)),
        ));
    }

    // Lists, pages and batches.
    cases.extend([
        case(
            "ListActions control character in prefix",
            Code::InvalidArgument,
            &["prefix"],
            admin!(
                app,
                list_actions,
                pb::ListActionsRequest {
                    prefix: "customers\u{0}".into()
                }
            ),
        ),
        case(
            "BatchCheck empty",
            Code::InvalidArgument,
            &["items", "at least one"],
            authz!(
                app,
                batch_check,
                pb::BatchCheckRequest {
                    tenant_id: "t".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "BatchCheck over the limit",
            Code::InvalidArgument,
            &["1001", "limit is 1000", "split"],
            authz!(
                app,
                batch_check,
                pb::BatchCheckRequest {
                    tenant_id: "t".into(),
                    items: vec![item("u", "view_reports"); 1001],
                    ..Default::default()
                }
            ),
        ),
        case(
            "AddGroupMembers over the list limit",
            Code::InvalidArgument,
            &["user_ids", "limit is 10000"],
            admin!(
                app,
                add_group_members,
                pb::AddGroupMembersRequest {
                    tenant_id: "t".into(),
                    group_key: "analysts".into(),
                    user_ids: (0..10_001).map(|i| format!("n{i}")).collect(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "AddGroupMembers nobody",
            Code::InvalidArgument,
            &["user_ids", "at least one"],
            admin!(
                app,
                add_group_members,
                pb::AddGroupMembersRequest {
                    tenant_id: "t".into(),
                    group_key: "analysts".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "ListUsers negative page",
            Code::InvalidArgument,
            &["page_size", "negative"],
            admin!(
                app,
                list_users,
                pb::ListUsersRequest {
                    tenant_id: "t".into(),
                    page_size: -1,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ListGroups page over the limit",
            Code::InvalidArgument,
            &["page_size", "1000"],
            admin!(
                app,
                list_groups,
                pb::ListGroupsRequest {
                    tenant_id: "t".into(),
                    page_size: 5000,
                    ..Default::default()
                }
            ),
        ),
        case(
            "ListTenants forged page token",
            Code::InvalidArgument,
            &["page_token", "next_page_token"],
            admin!(
                app,
                list_tenants,
                pb::ListTenantsRequest {
                    page_size: 10,
                    page_token: "' OR 1=1 --".into()
                }
            ),
        ),
        case(
            "ListAuditEvents forged page token",
            Code::InvalidArgument,
            &["page_token"],
            admin!(
                app,
                list_audit_events,
                pb::ListAuditEventsRequest {
                    tenant_id: "t".into(),
                    page_token: "garbage".into(),
                    ..Default::default()
                }
            ),
        ),
        case(
            "Check malformed revision token",
            Code::InvalidArgument,
            &["at_least_as_fresh"],
            authz!(
                app,
                check,
                pb::CheckRequest {
                    consistency: Some(pb::Consistency {
                        requirement: Some(pb::consistency::Requirement::AtLeastAsFresh(
                            "yesterday".into()
                        )),
                    }),
                    ..perm_check("t", "u", "view_reports")
                }
            ),
        ),
        case(
            "Check revision from the future",
            Code::InvalidArgument,
            &["999999999", "newer than the tenant's latest"],
            authz!(
                app,
                check,
                pb::CheckRequest {
                    consistency: Some(pb::Consistency {
                        requirement: Some(pb::consistency::Requirement::AtLeastAsFresh(
                            "999999999".into()
                        )),
                    }),
                    ..perm_check("t", "u", "view_reports")
                }
            ),
        ),
        case(
            "Watch malformed revision",
            Code::InvalidArgument,
            &["after_revision"],
            authz!(
                app,
                watch,
                pb::WatchRequest {
                    tenant_id: "t".into(),
                    after_revision: "-3".into()
                }
            ),
        ),
    ]);

    // Revision tokens are exactly what the server writes: no sign, space or leading zero.
    for token in ["+2", " 2", "2 ", "02", "2\n", "0x2", "２"] {
        let fresh = pb::Consistency {
            requirement: Some(pb::consistency::Requirement::AtLeastAsFresh(token.into())),
        };
        cases.extend([
            case(
                format!("Check at_least_as_fresh {token:?}"),
                Code::InvalidArgument,
                &["at_least_as_fresh", "not a revision token"],
                authz!(
                    app,
                    check,
                    pb::CheckRequest {
                        consistency: Some(fresh.clone()),
                        ..perm_check("t", "u", "view_reports")
                    }
                ),
            ),
            case(
                format!("BatchCheck at_least_as_fresh {token:?}"),
                Code::InvalidArgument,
                &["at_least_as_fresh", "not a revision token"],
                authz!(
                    app,
                    batch_check,
                    pb::BatchCheckRequest {
                        tenant_id: "t".into(),
                        items: vec![item("u", "view_reports")],
                        consistency: Some(fresh.clone()),
                    }
                ),
            ),
            case(
                format!("GetEffectivePermissions at_least_as_fresh {token:?}"),
                Code::InvalidArgument,
                &["at_least_as_fresh"],
                authz!(
                    app,
                    get_effective_permissions,
                    pb::GetEffectivePermissionsRequest {
                        tenant_id: "t".into(),
                        user_id: "u".into(),
                        consistency: Some(fresh),
                    }
                ),
            ),
            case(
                format!("Watch after_revision {token:?}"),
                Code::InvalidArgument,
                &["after_revision", "not a revision token"],
                authz!(
                    app,
                    watch,
                    pb::WatchRequest {
                        tenant_id: "t".into(),
                        after_revision: token.into(),
                    }
                ),
            ),
            case(
                format!("ListAuditEvents page token after:{token:?}"),
                Code::InvalidArgument,
                &["page_token", "next_page_token"],
                admin!(
                    app,
                    list_audit_events,
                    pb::ListAuditEventsRequest {
                        tenant_id: "t".into(),
                        page_token: format!("after:{token}"),
                        ..Default::default()
                    }
                ),
            ),
        ]);
    }

    // Context flags in inline expressions: misspelt, undeclared, or declared and not sent.
    for (expression, context, parts) in [
        (
            "view_reports & (!ctx.multibrnad | view_brands)",
            vec![("multibrand", true)],
            vec![
                "undeclared context flag `ctx.multibrnad`",
                "did you mean `ctx.multibrand`?",
                "position 18",
            ],
        ),
        (
            "view_reports & !ctx.anything",
            vec![],
            vec!["undeclared context flag `ctx.anything`", "position 17"],
        ),
        (
            "view_reports & !ctx.multibrand",
            vec![],
            vec![
                "context flag `multibrand` is required",
                "send it in context",
            ],
        ),
    ] {
        let context: std::collections::HashMap<String, bool> =
            context.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        cases.push(case(
            format!("Check {expression:?}"),
            Code::InvalidArgument,
            &parts,
            authz!(
                app,
                check,
                pb::CheckRequest {
                    context,
                    ..expr_check(expression.into())
                }
            ),
        ));
    }

    cases.extend([case(
        "ImportUsers over the message size limit",
        Code::OutOfRange,
        &["4194304"],
        admin!(
            app,
            import_users,
            pb::ImportUsersRequest {
                tenant_id: "t".into(),
                rows: (0..1300)
                    .map(|i| pb::ImportRow {
                        user_id: format!("big{i}"),
                        display_name: "n".repeat(4000),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
        ),
    )]);
    cases
}

async fn every_rpc_refuses_bad_input_and_changes_nothing(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.tenant("other").await;
    app.add("t", "analysts", &["u"]).await;
    app.add("other", "analysts", &["x"]).await;
    for (tenant, key, member) in [("t", "support_team", "u"), ("other", "other_team", "x")] {
        app.admin
            .clone()
            .create_group(pb::CreateGroupRequest {
                tenant_id: tenant.into(),
                group: Some(group(key, &["view_reports"])),
                ..Default::default()
            })
            .await
            .unwrap();
        app.add(tenant, key, &[member]).await;
    }
    let before = state(&app).await;
    let cases = cases(&app);
    let total = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        match c.call.await {
            Ok(()) => failures.push(format!("{}: accepted", c.name)),
            Err(s) => {
                if s.code() != c.code {
                    failures.push(format!(
                        "{}: {:?} {:?}, expected {:?}",
                        c.name,
                        s.code(),
                        s.message(),
                        c.code
                    ));
                } else if let Some(p) = c.parts.iter().find(|p| !s.message().contains(*p)) {
                    failures.push(format!("{}: message {:?} lacks {p:?}", c.name, s.message()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(state(&app).await, before, "a refused request changed state");
    // The service still answers normally afterwards.
    assert!(app.allowed("t", "u", "view_reports").await);
    eprintln!("{backend:?}: {total} hostile requests refused, state unchanged");
}

contract!(every_rpc_refuses_bad_input_and_changes_nothing);
