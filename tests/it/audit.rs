//! The audit log: every committed mutation, in the same transaction, with who, what and the
//! before/after of what it touched. On both stores.

use crate::helpers::*;
use authz::grpc::pb;
use prost_types::value::Kind;
use tokio_stream::StreamExt;
use tonic::Code;

fn field<'a>(s: &'a prost_types::Struct, path: &[&str]) -> &'a Kind {
    let mut v = s
        .fields
        .get(path[0])
        .and_then(|v| v.kind.as_ref())
        .unwrap_or_else(|| panic!("{path:?} in {s:?}"));
    for p in &path[1..] {
        let Kind::StructValue(inner) = v else {
            panic!("{p} of {path:?} is not an object")
        };
        v = inner
            .fields
            .get(*p)
            .and_then(|v| v.kind.as_ref())
            .unwrap_or_else(|| panic!("{path:?}"));
    }
    v
}

fn strings(k: &Kind) -> Vec<String> {
    let Kind::ListValue(l) = k else {
        panic!("{k:?} is not a list")
    };
    l.values
        .iter()
        .map(|v| match &v.kind {
            Some(Kind::StringValue(s)) => s.clone(),
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn events(app: &TestApp, req: pb::ListAuditEventsRequest) -> Vec<pb::AuditEvent> {
    app.admin
        .clone()
        .list_audit_events(req)
        .await
        .unwrap()
        .into_inner()
        .events
}

async fn every_committed_mutation_is_audited_with_before_and_after(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    app.add("t", "owners", &["boss"]).await;
    admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(pb::Group {
                key: "g".into(),
                name: "G".into(),
                permissions: vec!["view_reports".into()],
                ..Default::default()
            }),
            actor_user_id: "boss".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .grant_permissions(pb::GrantPermissionsRequest {
            tenant_id: "t".into(),
            user_id: "ann".into(),
            permissions: vec!["delete_customers".into()],
            actor_user_id: "boss".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .update_group(pb::UpdateGroupRequest {
            tenant_id: "t".into(),
            group_key: "g".into(),
            group: Some(pb::Group {
                permissions: vec!["view_flows".into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["permissions".into()],
            }),
            actor_user_id: "boss".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // A refused mutation leaves no event.
    let refused = admin
        .grant_permissions(pb::GrantPermissionsRequest {
            tenant_id: "t".into(),
            user_id: "ann".into(),
            permissions: vec!["view_users".into()],
            actor_user_id: "boss".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);

    let all = events(
        &app,
        pb::ListAuditEventsRequest {
            tenant_id: "t".into(),
            ..Default::default()
        },
    )
    .await;
    let ops: Vec<&str> = all.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        ops,
        ["update_group", "grant", "create_group", "add_members"],
        "newest first"
    );
    let revs: Vec<u64> = all.iter().map(|e| e.revision.parse().unwrap()).collect();
    assert!(revs.windows(2).all(|w| w[0] > w[1]));

    let update = &all[0];
    assert_eq!(
        (
            update.actor_user_id.as_str(),
            update.operator,
            update.target.as_str()
        ),
        ("boss", false, "group:g")
    );
    assert_eq!(
        strings(field(
            update.before.as_ref().unwrap(),
            &["groups", "g", "permissions"]
        )),
        ["view_reports"]
    );
    assert_eq!(
        strings(field(
            update.after.as_ref().unwrap(),
            &["groups", "g", "permissions"]
        )),
        ["view_flows"]
    );
    let grant = &all[1];
    assert_eq!(grant.target, "user:ann");
    assert!(
        matches!(
            field(grant.before.as_ref().unwrap(), &["users", "ann"]),
            Kind::NullValue(_)
        ),
        "ann did not exist before"
    );
    assert_eq!(
        strings(field(
            grant.after.as_ref().unwrap(),
            &["users", "ann", "direct"]
        )),
        ["delete_customers"]
    );
    let create = &all[2];
    assert!(matches!(
        field(create.before.as_ref().unwrap(), &["groups", "g"]),
        Kind::NullValue(_)
    ));
    let add = &all[3];
    assert!(add.operator && add.actor_user_id.is_empty());
    assert_eq!(
        strings(field(
            add.after.as_ref().unwrap(),
            &["users", "boss", "groups"]
        )),
        ["owners"]
    );

    // Filters: by actor, by target, by time; pages walk everything once.
    let by_boss = events(
        &app,
        pb::ListAuditEventsRequest {
            tenant_id: "t".into(),
            filter_actor_user_id: "boss".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_boss.len(), 3);
    let on_g = events(
        &app,
        pb::ListAuditEventsRequest {
            tenant_id: "t".into(),
            filter_target: "group:g".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        on_g.iter()
            .map(|e| e.operation.as_str())
            .collect::<Vec<_>>(),
        ["update_group", "create_group"]
    );
    let future = prost_types::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    };
    let none = events(
        &app,
        pb::ListAuditEventsRequest {
            tenant_id: "t".into(),
            since: Some(future),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
    let until_all = events(
        &app,
        pb::ListAuditEventsRequest {
            tenant_id: "t".into(),
            until: Some(future),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(until_all.len(), 4);
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_audit_events(pb::ListAuditEventsRequest {
                tenant_id: "t".into(),
                page_size: 3,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.events.into_iter().map(|e| e.revision));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        all.iter().map(|e| e.revision.clone()).collect::<Vec<_>>()
    );
}

async fn reading_the_audit_log_needs_its_permission_and_hides_staff_data(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.add("t", "analysts", &["ann"]).await;
    app.add("t", "marketers", &["mia"]).await;
    app.add("t", "maestra_staff", &["staffer"]).await;
    app.grant("t", "mia", &["view_system_tasks", "delete_customers"], None)
        .await;
    let mut admin = app.admin.clone();
    assert_status(
        admin
            .list_audit_events(pb::ListAuditEventsRequest {
                tenant_id: "t".into(),
                actor_user_id: "ann".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        &["read the audit log", "view_activity_logs"],
    );
    // Marketers hold `view_activity_logs`; staff-only data is left out for them.
    let seen = events(
        &app,
        pb::ListAuditEventsRequest {
            tenant_id: "t".into(),
            actor_user_id: "mia".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(seen.iter().all(|e| e.target != "group:maestra_staff"));
    let grant = seen.iter().find(|e| e.operation == "grant").unwrap();
    assert_eq!(
        strings(field(
            grant.after.as_ref().unwrap(),
            &["users", "mia", "direct"]
        )),
        ["delete_customers"]
    );
    assert_status(
        admin
            .list_audit_events(pb::ListAuditEventsRequest {
                tenant_id: "t".into(),
                page_token: "after:x".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["page_token"],
    );
}

/// An id of exactly the longest length ids may have.
fn longest_id(prefix: &str, i: usize) -> String {
    let mut id = format!("{prefix}{i:06}");
    id.push_str(&"x".repeat(authz::validate::MAX_ID_LEN - id.len()));
    id
}

/// Every page of the audit log, `page_size` at a time: the revisions in order, and how many
/// pages ended early (fewer events than asked, yet more to come).
async fn walk(app: &TestApp, page_size: i32) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut early = 0;
    let mut token = String::new();
    loop {
        let page = app
            .admin
            .clone()
            .list_audit_events(pb::ListAuditEventsRequest {
                tenant_id: "t".into(),
                page_size,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("page after {token:?}: {s:?}"))
            .into_inner();
        assert!(!page.events.is_empty() || page.next_page_token.is_empty());
        let n = page.events.len();
        seen.extend(page.events.into_iter().map(|e| e.revision));
        if page.next_page_token.is_empty() {
            break;
        }
        if n < usize::try_from(page_size).unwrap() {
            early += 1;
        }
        token = page.next_page_token;
    }
    (seen, early)
}

async fn all_revisions(app: &TestApp) -> Vec<String> {
    let latest = app.revision("t").await;
    // Revision 1 is the tenant's creation, which is not an audited mutation.
    (2..=latest).rev().map(|r| r.to_string()).collect()
}

/// The largest writes the server accepts (10,000 of the longest ids, 10,000 restricted
/// resources, 10,000 scoped grants, a group of 10,000 copied) each leave an audit event that
/// reads back, one page at a time or many: snapshots record what fits and count the rest.
async fn the_largest_accepted_writes_keep_the_audit_log_readable(backend: Backend) {
    // What is measured here is the audit log's size, not latency: a debug build on a loaded
    // machine may need more than the default 10 s for a 10,000-user preview of every owners
    // permission.
    let app = TestServer::on(backend)
        .options(authz::server::ServerOptions {
            request_timeout: std::time::Duration::from_secs(120),
            ..authz::server::ServerOptions::default()
        })
        .start()
        .await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    let members: Vec<String> = (0..validate_max_list())
        .map(|i| longest_id("m", i))
        .collect();
    let resources: Vec<String> = (0..validate_max_list())
        .map(|i| longest_id("f", i))
        .collect();
    admin
        .add_group_members(pb::AddGroupMembersRequest {
            tenant_id: "t".into(),
            group_key: "accountants".into(),
            user_ids: members.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The largest preview: 10,000 users gaining every permission owners have.
    let owners = admin
        .add_group_members(pb::AddGroupMembersRequest {
            tenant_id: "t".into(),
            group_key: "owners".into(),
            user_ids: members.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .preview
        .unwrap();
    assert!(owners.truncated);
    assert!(!owners.affected_users.is_empty());
    admin
        .set_restrictions(pb::SetRestrictionsRequest {
            tenant_id: "t".into(),
            user_id: members[0].clone(),
            resource_type: "folder".into(),
            resource_ids: resources.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(pb::Group {
                key: "wide".into(),
                name: "Wide".into(),
                scoped_grants: resources
                    .iter()
                    .map(|id| pb::ScopedGrant {
                        permission: "view_reports".into(),
                        resource: Some(pb::Resource {
                            r#type: "folder".into(),
                            id: id.clone(),
                        }),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .duplicate_group(pb::DuplicateGroupRequest {
            tenant_id: "t".into(),
            source_group_key: "accountants".into(),
            new_key: "accountants_copy".into(),
            copy_permissions: true,
            copy_members: true,
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .remove_group_members(pb::RemoveGroupMembersRequest {
            tenant_id: "t".into(),
            group_key: "accountants".into(),
            user_ids: members.clone(),
            ..Default::default()
        })
        .await
        .unwrap();

    let expected = all_revisions(&app).await;
    assert_eq!(expected.len(), 6);
    for size in [1, 2, 1000] {
        let (seen, _) = walk(&app, size).await;
        assert_eq!(seen, expected, "pages of {size}");
    }
    let all = events(
        &app,
        pb::ListAuditEventsRequest {
            tenant_id: "t".into(),
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), 6, "one page holds every event");
    let by_op = |op: &str| all.iter().find(|e| e.operation == op).unwrap();
    let count = |s: &prost_types::Struct, key: &str| match s
        .fields
        .get(key)
        .and_then(|v| v.kind.as_ref())
    {
        Some(Kind::NumberValue(n)) => *n as usize,
        other => panic!("{key}: {other:?}"),
    };
    let listed = |s: &prost_types::Struct| match field(s, &["users"]) {
        Kind::StructValue(users) => users.fields.len(),
        other => panic!("{other:?}"),
    };
    // Every user touched is listed or counted.
    for op in ["add_members", "duplicate_group", "remove_members"] {
        let e = by_op(op);
        for snapshot in [e.before.as_ref().unwrap(), e.after.as_ref().unwrap()] {
            let (shown, omitted) = (listed(snapshot), count(snapshot, "users_omitted"));
            assert!(
                shown >= 1 && omitted > 0,
                "{op}: {shown} listed, {omitted} left out"
            );
            assert_eq!(shown + omitted, members.len(), "{op}");
        }
    }
    let restrict = by_op("set_restriction").after.clone().unwrap();
    let user = members[0].as_str();
    assert_eq!(
        strings(field(&restrict, &["users", user, "restrictions", "folder"])).len(),
        100
    );
    assert!(matches!(
        field(&restrict, &["users", user, "restrictions_omitted", "folder"]),
        Kind::NumberValue(n) if *n as usize == resources.len() - 100
    ));
    let wide = by_op("create_group").after.clone().unwrap();
    assert_eq!(
        strings(field(&wide, &["groups", "wide", "scoped"])).len(),
        100
    );
    assert!(matches!(
        field(&wide, &["groups", "wide", "scoped_omitted"]),
        Kind::NumberValue(n) if *n as usize == resources.len() - 100
    ));
}

fn validate_max_list() -> usize {
    authz::validate::MAX_LIST_LEN
}

/// With a smaller message limit, a page holds what fits and says where to go on; an event too
/// large for any response is still listed, with its snapshots left out and a note why.
async fn audit_pages_stop_at_what_a_response_holds(backend: Backend) {
    let options = |bytes: usize| authz::server::ServerOptions {
        max_message_bytes: bytes,
        ..Default::default()
    };
    let app = TestServer::on(backend)
        .options(options(1024 * 1024))
        .start()
        .await;
    app.tenant("t").await;
    for (n, group) in ["analysts", "analysts", "marketers", "owners"]
        .iter()
        .enumerate()
    {
        let ids: Vec<String> = (0..3500).map(|i| longest_id(&format!("g{n}"), i)).collect();
        app.admin
            .clone()
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: "t".into(),
                group_key: group.to_string(),
                user_ids: ids,
                ..Default::default()
            })
            .await
            .unwrap();
        app.grant("t", "small", &["view_reports"], None).await;
    }
    // 7,000 members copied: more user ids than one message holds.
    app.admin
        .clone()
        .duplicate_group(pb::DuplicateGroupRequest {
            tenant_id: "t".into(),
            source_group_key: "analysts".into(),
            new_key: "analysts_copy".into(),
            copy_members: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let expected = all_revisions(&app).await;
    let (seen, early) = walk(&app, 1000).await;
    assert_eq!(seen, expected);
    assert!(early >= 2, "{early} pages ended early");
    // Watch streams every change too: one that touched too many users to list says all_users.
    let mut stream = app
        .authz
        .clone()
        .watch(pb::WatchRequest {
            tenant_id: "t".into(),
            after_revision: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while streamed.len() < expected.len() {
        let change = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if change.operation == "duplicate_group" {
            assert!(
                change.all_users && change.user_ids.is_empty(),
                "{:?}",
                change.group_keys
            );
        }
        streamed.push(change.revision);
    }
    streamed.reverse();
    assert_eq!(streamed, expected);

    let app = TestServer::on(backend)
        .options(options(300 * 1024))
        .start()
        .await;
    app.tenant("t").await;
    app.grant("t", "small", &["view_reports"], None).await;
    let ids: Vec<String> = (0..1000).map(|i| longest_id("u", i)).collect();
    app.admin
        .clone()
        .add_group_members(pb::AddGroupMembersRequest {
            tenant_id: "t".into(),
            group_key: "analysts".into(),
            user_ids: ids,
            ..Default::default()
        })
        .await
        .unwrap();
    let (seen, _) = walk(&app, 10).await;
    assert_eq!(seen, all_revisions(&app).await);
    let big = events(
        &app,
        pb::ListAuditEventsRequest {
            tenant_id: "t".into(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(big[0].operation, "add_members");
    match field(big[0].before.as_ref().unwrap(), &["omitted"]) {
        Kind::StringValue(note) => assert!(note.contains("--max-message-bytes"), "{note}"),
        other => panic!("{other:?}"),
    }
}

contract!(
    every_committed_mutation_is_audited_with_before_and_after,
    reading_the_audit_log_needs_its_permission_and_hides_staff_data,
    the_largest_accepted_writes_keep_the_audit_log_readable,
    audit_pages_stop_at_what_a_response_holds,
);
