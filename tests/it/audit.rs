//! The audit log: every committed mutation, in the same transaction, with who, what and the
//! before/after of what it touched. On both stores.

use crate::helpers::*;
use authz::grpc::pb;
use prost_types::value::Kind;
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
    let app = spawn(backend, MAESTRA).await;
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
    let app = spawn(backend, MAESTRA).await;
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

contract!(
    every_committed_mutation_is_audited_with_before_and_after,
    reading_the_audit_log_needs_its_permission_and_hides_staff_data,
);
