//! AuthzService through the real server.

use crate::helpers::*;
use authz::grpc::pb;
use authz_core::decide::{Query, Target, decide};
use authz_core::model::{Subject, UserGrants};
use std::sync::Arc;
use tonic::Code;

async fn readme_walkthrough(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("acme").await;
    app.add("acme", "analysts", &["alice"]).await;
    assert!(app.allowed("acme", "alice", "export_customers").await);
    assert!(!app.allowed("acme", "alice", "delete_customers").await);
    let r = app
        .check(action_check(
            "acme",
            "alice",
            "customers.export_customers",
            &[],
        ))
        .await
        .unwrap();
    assert!(r.allowed);
    let r = app
        .check(action_check(
            "acme",
            "alice",
            "customers.export_customers",
            &["include_personal_data"],
        ))
        .await
        .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.missing_permissions, ["export_personal_data"]);
    app.stop().await;
}

/// Every standard group, every permission of the catalog: the answer is membership.
async fn every_standard_group_and_every_permission(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    let c = app.catalog.clone();
    for group in c.groups() {
        let user = format!("member_of_{}", group.key);
        app.add("t", &group.key, &[&user]).await;
        let items = c
            .permissions()
            .iter()
            .map(|p| pb::BatchCheckItem {
                user_id: user.clone(),
                target: Some(pb::batch_check_item::Target::Permission(p.key.clone())),
                ..Default::default()
            })
            .collect();
        let r = app
            .authz
            .clone()
            .batch_check(pb::BatchCheckRequest {
                tenant_id: "t".into(),
                items,
                consistency: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.results.len(), c.permissions().len());
        for (p, res) in c.permissions().iter().zip(&r.results) {
            assert!(res.error.is_none(), "{:?}", res.error);
            assert_eq!(
                res.allowed,
                group.grants.permissions.contains(p.id),
                "{} / {}",
                group.key,
                p.key
            );
            let expect_missing: Vec<String> = if res.allowed {
                vec![]
            } else {
                vec![p.key.clone()]
            };
            assert_eq!(res.missing_permissions, expect_missing);
        }
    }
}

/// Every action for every standard group, without and with every context flag, agrees with
/// the core's decision: nothing is lost between the wire and the core.
async fn every_action_for_every_group_over_grpc(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    let c = app.catalog.clone();
    let all_flags: Vec<&str> = c.context_flags().iter().map(|f| f.key.as_str()).collect();
    for group in c.groups() {
        let user = format!("u_{}", group.key);
        app.add("t", &group.key, &[&user]).await;
        let subject = Subject {
            user: Some(Arc::new(UserGrants {
                groups: vec![group.key.clone()],
                ..Default::default()
            })),
            groups: vec![group.grants.clone()],
        };
        for flags in [&[][..], &all_flags[..]] {
            let items = c
                .actions()
                .iter()
                .map(|a| pb::BatchCheckItem {
                    user_id: user.clone(),
                    target: Some(pb::batch_check_item::Target::Action(a.key.clone())),
                    context: flags.iter().map(|f| (f.to_string(), true)).collect(),
                    ..Default::default()
                })
                .collect();
            let r = app
                .authz
                .clone()
                .batch_check(pb::BatchCheckRequest {
                    tenant_id: "t".into(),
                    items,
                    consistency: None,
                })
                .await
                .unwrap()
                .into_inner();
            for (a, res) in c.actions().iter().zip(&r.results) {
                let expected = decide(
                    &c,
                    &subject,
                    &Query {
                        target: Target::Action(a),
                        resource: None,
                        flag: |f: &str| flags.contains(&f),
                        explain: false,
                    },
                );
                assert_eq!(res.allowed, expected.allowed, "{} for {}", a.key, group.key);
                let missing: Vec<&str> = expected.missing.iter().map(|p| c.key(*p)).collect();
                assert_eq!(
                    res.missing_permissions, missing,
                    "{} for {}",
                    a.key, group.key
                );
            }
        }
    }
}

async fn direct_grants_blocking_and_unknown_users(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    app.add("t", "accountants", &["bob"]).await;
    assert!(!app.allowed("t", "bob", "view_reports").await);
    app.grant("t", "bob", &["view_reports"], None).await;
    assert!(app.allowed("t", "bob", "view_reports").await);
    // Blocked: denied everything, including what groups and grants give.
    let mut admin = app.admin.clone();
    admin
        .set_user_status(pb::SetUserStatusRequest {
            tenant_id: "t".into(),
            user_id: "bob".into(),
            status: pb::UserStatus::Blocked.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!app.allowed("t", "bob", "view_reports").await);
    assert!(!app.allowed("t", "bob", "view_billing_details").await);
    let r = app
        .check(pb::CheckRequest {
            explain: true,
            ..perm_check("t", "bob", "view_reports")
        })
        .await
        .unwrap();
    let e = r.explanation.unwrap();
    assert_eq!(e.user_status, "blocked");
    assert!(e.summary.contains("blocked"), "{}", e.summary);
    assert!(r.missing_permissions.is_empty());
    admin
        .set_user_status(pb::SetUserStatusRequest {
            tenant_id: "t".into(),
            user_id: "bob".into(),
            status: pb::UserStatus::Active.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(app.allowed("t", "bob", "view_reports").await);
    // Revoked.
    admin
        .revoke_permissions(pb::RevokePermissionsRequest {
            tenant_id: "t".into(),
            user_id: "bob".into(),
            permissions: vec!["view_reports".into()],
            resource: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!app.allowed("t", "bob", "view_reports").await);
    // Unknown users are simply denied.
    let r = app
        .check(pb::CheckRequest {
            explain: true,
            ..perm_check("t", "nobody", "view_reports")
        })
        .await
        .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.explanation.unwrap().user_status, "unknown");
}

async fn aliases_work_wherever_keys_do(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    app.add("t", "accountants", &["acc"]).await;
    assert!(app.allowed("t", "acc", "view_billing_detalization").await);
    let r = app
        .check(pb::CheckRequest {
            target: Some(pb::check_request::Target::Expression(
                "view_billing_detalization & !view_promo_code".into(),
            )),
            ..perm_check("t", "acc", "")
        })
        .await
        .unwrap();
    assert!(r.allowed);
}

async fn expressions_and_context_flags(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    app.add("t", "analysts", &["ann"]).await;
    let expr = |e: &str, flags: &[&str]| pb::CheckRequest {
        target: Some(pb::check_request::Target::Expression(e.into())),
        context: flags.iter().map(|f| (f.to_string(), true)).collect(),
        explain: true,
        ..perm_check("t", "ann", "")
    };
    let r = app
        .check(expr(
            "view_flows & (!ctx.multibrand | view_brands)",
            &["multibrand"],
        ))
        .await
        .unwrap();
    assert!(r.allowed);
    let r = app
        .check(expr(
            "edit_flows & (!ctx.multibrand | edit_segments)",
            &["multibrand"],
        ))
        .await
        .unwrap();
    assert!(!r.allowed);
    assert_eq!(r.missing_permissions, ["edit_flows", "edit_segments"]);
    let e = r.explanation.unwrap();
    assert_eq!(
        e.failed_parts,
        ["edit_flows", "(!ctx.multibrand | edit_segments)"]
    );
    // A flag the caller does not send is false.
    let r = app.check(expr("ctx.anything", &[])).await.unwrap();
    assert!(!r.allowed);
    assert!(r.missing_permissions.is_empty());
}

async fn explanations_name_groups_and_grants(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    app.add("t", "analysts", &["ann"]).await;
    app.add("t", "marketers", &["ann"]).await;
    app.grant("t", "ann", &["delete_customers"], None).await;
    let r = app
        .check(pb::CheckRequest {
            explain: true,
            ..action_check("t", "ann", "customers.delete_customers", &[])
        })
        .await
        .unwrap();
    assert!(r.allowed);
    let e = r.explanation.unwrap();
    let trace = |k: &str| {
        e.permissions
            .iter()
            .find(|t| t.permission == k)
            .unwrap()
            .clone()
    };
    assert_eq!(trace("delete_customers").sources, ["direct"]);
    assert_eq!(
        trace("view_customer").sources,
        ["group:analysts", "group:marketers"]
    );
    assert!(e.summary.starts_with("allowed"), "{}", e.summary);
}

async fn restrictions_and_scoped_grants_on_resources(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    app.add("t", "marketers", &["m"]).await;
    let mut admin = app.admin.clone();
    admin
        .set_restrictions(pb::SetRestrictionsRequest {
            tenant_id: "t".into(),
            user_id: "m".into(),
            resource_type: "folder".into(),
            resource_ids: vec!["spring".into(), "summer".into()],
            clear: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let on = |id: &str| pb::CheckRequest {
        resource: Some(pb::Resource {
            r#type: "folder".into(),
            id: id.into(),
        }),
        explain: true,
        ..perm_check("t", "m", "edit_folders")
    };
    assert!(app.check(on("spring")).await.unwrap().allowed);
    let r = app.check(on("winter")).await.unwrap();
    assert!(!r.allowed);
    let e = r.explanation.unwrap();
    assert_eq!(e.denied_by_restriction.unwrap().id, "winter");
    // A brand check is not limited by a folder restriction.
    let brand = pb::CheckRequest {
        resource: Some(pb::Resource {
            r#type: "brand".into(),
            id: "b1".into(),
        }),
        ..perm_check("t", "m", "view_brands")
    };
    assert!(app.check(brand).await.unwrap().allowed);
    let allowed = app
        .authz
        .clone()
        .list_allowed_resources(pb::ListAllowedResourcesRequest {
            tenant_id: "t".into(),
            user_id: "m".into(),
            permission: "edit_folders".into(),
            resource_type: "folder".into(),
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!allowed.all);
    assert_eq!(allowed.resource_ids, ["spring", "summer"]);
    admin
        .set_restrictions(pb::SetRestrictionsRequest {
            tenant_id: "t".into(),
            user_id: "m".into(),
            resource_type: "folder".into(),
            resource_ids: vec![],
            clear: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(app.check(on("winter")).await.unwrap().allowed);

    // Scoped grant: one folder only.
    app.grant("t", "m", &["delete_customers"], Some(("folder", "spring")))
        .await;
    let seg = |id: &str| pb::CheckRequest {
        resource: Some(pb::Resource {
            r#type: "folder".into(),
            id: id.into(),
        }),
        ..perm_check("t", "m", "delete_customers")
    };
    assert!(app.check(seg("spring")).await.unwrap().allowed);
    assert!(!app.check(seg("summer")).await.unwrap().allowed);
    assert!(!app.allowed("t", "m", "delete_customers").await);
    let eff = app
        .authz
        .clone()
        .get_effective_permissions(pb::GetEffectivePermissionsRequest {
            tenant_id: "t".into(),
            user_id: "m".into(),
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(eff.scoped_grants.len(), 1);
    assert_eq!(eff.scoped_grants[0].permission, "delete_customers");
    assert_eq!(eff.scoped_grants[0].source, "direct");
    assert_eq!(eff.group_keys, ["marketers"]);
    assert_eq!(eff.permissions.len(), 108);
    assert!(
        eff.permissions
            .iter()
            .all(|p| p.sources == ["group:marketers"])
    );
    assert_eq!(eff.user_status, "active");
}

async fn tooljet_group_scoped_grants(backend: Backend) {
    let app = spawn(backend, TOOLJET).await;
    app.tenant("ws").await;
    let mut admin = app.admin.clone();
    admin
        .create_group(pb::CreateGroupRequest {
            tenant_id: "ws".into(),
            group: Some(pb::Group {
                key: "app_42_editors".into(),
                name: "App 42 editors".into(),
                scoped_grants: vec![pb::ScopedGrant {
                    permission: "edit_app".into(),
                    resource: Some(pb::Resource {
                        r#type: "app".into(),
                        id: "42".into(),
                    }),
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    app.add("ws", "end_user", &["eve"]).await;
    app.add("ws", "app_42_editors", &["eve"]).await;
    let on = |id: &str| pb::CheckRequest {
        resource: Some(pb::Resource {
            r#type: "app".into(),
            id: id.into(),
        }),
        explain: true,
        ..action_check("ws", "eve", "app.edit", &[])
    };
    let r = app.check(on("42")).await.unwrap();
    assert!(r.allowed);
    assert_eq!(
        r.explanation.unwrap().permissions[0].sources,
        ["group:app_42_editors@app:42"]
    );
    assert!(!app.check(on("43")).await.unwrap().allowed);
}

async fn batch_items_fail_alone(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    app.add("t", "analysts", &["a"]).await;
    let item = |user: &str, perm: &str| pb::BatchCheckItem {
        user_id: user.into(),
        target: Some(pb::batch_check_item::Target::Permission(perm.into())),
        ..Default::default()
    };
    let r = app
        .authz
        .clone()
        .batch_check(pb::BatchCheckRequest {
            tenant_id: "t".into(),
            items: vec![
                item("a", "view_reports"),
                item("a", "no_such_permission"),
                item("", "view_reports"),
                item("b", "view_reports"),
            ],
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.results[0].allowed);
    let e = r.results[1].error.as_ref().unwrap();
    assert_eq!(e.code, Code::InvalidArgument as i32);
    assert!(e.message.contains("no_such_permission"));
    assert!(
        r.results[2]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("user_id is required")
    );
    assert!(!r.results[3].allowed);
    assert!(r.results[3].error.is_none());
    assert_eq!(r.revision, "2");

    let too_many = (0..1001).map(|_| item("a", "view_reports")).collect();
    assert_status(
        app.authz
            .clone()
            .batch_check(pb::BatchCheckRequest {
                tenant_id: "t".into(),
                items: too_many,
                consistency: None,
            })
            .await,
        Code::InvalidArgument,
        &["1001", "limit is 1000"],
    );
    assert_status(
        app.authz
            .clone()
            .batch_check(pb::BatchCheckRequest {
                tenant_id: "t".into(),
                items: vec![],
                consistency: None,
            })
            .await,
        Code::InvalidArgument,
        &["items is empty"],
    );
}

async fn revisions_and_consistency(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    let rev = app.add("t", "analysts", &["a"]).await;
    assert_eq!(rev, "2");
    let fresh = |c: pb::consistency::Requirement| pb::CheckRequest {
        consistency: Some(pb::Consistency {
            requirement: Some(c),
        }),
        ..perm_check("t", "a", "view_reports")
    };
    use pb::consistency::Requirement;
    let r = app
        .check(fresh(Requirement::AtLeastAsFresh(rev.clone())))
        .await
        .unwrap();
    assert!(r.allowed);
    assert_eq!(r.revision, rev);
    assert!(
        app.check(fresh(Requirement::FullyConsistent(true)))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        app.check(fresh(Requirement::MinimizeLatency(true)))
            .await
            .unwrap()
            .allowed
    );
    assert_status(
        app.check(fresh(Requirement::AtLeastAsFresh("abc".into())))
            .await,
        Code::InvalidArgument,
        &["not a revision token"],
    );
    assert_status(
        app.check(fresh(Requirement::AtLeastAsFresh("99".into())))
            .await,
        Code::InvalidArgument,
        &["newer than"],
    );
}

async fn bad_check_requests_get_clear_errors(backend: Backend) {
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    let base = perm_check("t", "u", "view_reports");
    let expr = |e: String| pb::CheckRequest {
        target: Some(pb::check_request::Target::Expression(e)),
        ..base.clone()
    };
    let cases: Vec<(pb::CheckRequest, Code, Vec<&str>)> = vec![
        (
            perm_check("nope", "u", "view_reports"),
            Code::NotFound,
            vec!["tenant `nope` does not exist"],
        ),
        (
            perm_check("", "u", "view_reports"),
            Code::InvalidArgument,
            vec!["tenant_id is required"],
        ),
        (
            perm_check("t", "", "view_reports"),
            Code::InvalidArgument,
            vec!["user_id is required"],
        ),
        (
            perm_check("t", "a\u{7}b", "view_reports"),
            Code::InvalidArgument,
            vec!["control character"],
        ),
        (
            perm_check("t", &"x".repeat(300), "view_reports"),
            Code::InvalidArgument,
            vec!["limit is 256"],
        ),
        (
            perm_check("t", "u", "view_reportz"),
            Code::InvalidArgument,
            vec!["unknown permission `view_reportz`"],
        ),
        (
            perm_check("t", "u", "View reports"),
            Code::InvalidArgument,
            vec!["did you mean `view_reports`"],
        ),
        (
            action_check("t", "u", "customers.nope", &[]),
            Code::InvalidArgument,
            vec!["unknown action `customers.nope`"],
        ),
        (
            pb::CheckRequest {
                target: None,
                ..base.clone()
            },
            Code::InvalidArgument,
            vec!["target is required"],
        ),
        (
            expr("view_reports &".into()),
            Code::InvalidArgument,
            vec!["expression", "ends where", "position 15"],
        ),
        (
            expr(format!(
                "{}view_reports{}",
                "(".repeat(5000),
                ")".repeat(5000)
            )),
            Code::InvalidArgument,
            vec!["limit is 4096"],
        ),
        (
            expr(format!(
                "{}view_reports{}",
                "(".repeat(100),
                ")".repeat(100)
            )),
            Code::InvalidArgument,
            vec!["nests deeper than 32"],
        ),
        (
            pb::CheckRequest {
                resource: Some(pb::Resource {
                    r#type: "planet".into(),
                    id: "x".into(),
                }),
                ..base.clone()
            },
            Code::InvalidArgument,
            vec!["unknown resource type `planet`", "folder, brand"],
        ),
        (
            pb::CheckRequest {
                resource: Some(pb::Resource {
                    r#type: "folder".into(),
                    id: "".into(),
                }),
                ..base.clone()
            },
            Code::InvalidArgument,
            vec!["resource.id is required"],
        ),
    ];
    for (req, code, parts) in cases {
        assert_status(app.check(req).await, code, &parts);
    }
}

async fn watch_streams_committed_changes(backend: Backend) {
    use tokio_stream::StreamExt;
    let app = spawn(backend, MAESTRA).await;
    app.tenant("t").await;
    app.tenant("other").await;
    let r1 = app.add("t", "analysts", &["a", "b"]).await;
    let mut authz = app.authz.clone();
    // From revision 1: the past is replayed, then new commits follow.
    let mut stream = authz
        .watch(pb::WatchRequest {
            tenant_id: "t".into(),
            after_revision: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (first.revision.as_str(), first.operation.as_str()),
        (r1.as_str(), "add_members")
    );
    assert_eq!(first.user_ids, ["a", "b"]);
    assert!(first.commit_time.is_some());
    app.add("other", "analysts", &["x"]).await;
    let r2 = app.grant("t", "a", &["delete_customers"], None).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (next.revision.as_str(), next.operation.as_str()),
        (r2.as_str(), "grant"),
        "other tenants' changes are not streamed"
    );
    app.admin
        .clone()
        .create_group(pb::CreateGroupRequest {
            tenant_id: "t".into(),
            group: Some(pb::Group {
                key: "g".into(),
                name: "G".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let g = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(g.group_keys, ["g"]);

    // Empty after_revision: from now on.
    let mut now = authz
        .watch(pb::WatchRequest {
            tenant_id: "t".into(),
            after_revision: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let r3 = app.grant("t", "b", &["delete_customers"], None).await;
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), now.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n.revision, r3);

    assert_status(
        authz
            .watch(pb::WatchRequest {
                tenant_id: "t".into(),
                after_revision: "x".into(),
            })
            .await,
        Code::InvalidArgument,
        &["not a revision token"],
    );
    assert_status(
        authz
            .watch(pb::WatchRequest {
                tenant_id: "t".into(),
                after_revision: "999".into(),
            })
            .await,
        Code::InvalidArgument,
        &["newer than"],
    );
    assert_status(
        authz
            .watch(pb::WatchRequest {
                tenant_id: "ghost".into(),
                after_revision: String::new(),
            })
            .await,
        Code::NotFound,
        &["ghost"],
    );
}

contract!(
    readme_walkthrough,
    every_standard_group_and_every_permission,
    every_action_for_every_group_over_grpc,
    direct_grants_blocking_and_unknown_users,
    aliases_work_wherever_keys_do,
    expressions_and_context_flags,
    explanations_name_groups_and_grants,
    restrictions_and_scoped_grants_on_resources,
    tooljet_group_scoped_grants,
    batch_items_fail_alone,
    revisions_and_consistency,
    bad_check_requests_get_clear_errors,
    watch_streams_committed_changes,
);
