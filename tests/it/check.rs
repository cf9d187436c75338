//! AuthzService through the real server.
//!
//! Long: one test per kind of check, each run on both stores.

use crate::helpers::*;
use authz::grpc::pb;
use authz_core::decide::{Query, Target, decide};
use authz_core::model::{Subject, UserGrants};
use std::sync::Arc;
use tonic::Code;

async fn readme_walkthrough(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("acme").await;
    app.add("acme", "analysts", &["alice"]).await;
    assert!(app.allowed("acme", "alice", "export_customers").await);
    assert!(!app.allowed("acme", "alice", "delete_customers").await);
    let r = app
        .check(pb::CheckRequest {
            context: [("include_personal_data".to_owned(), false)].into(),
            ..action_check("acme", "alice", "customers.export_customers", &[])
        })
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
    let app = TestServer::on(backend).start().await;
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
    let app = TestServer::on(backend).start().await;
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
        // Every flag sent, all false, then all true.
        for flags in [&[][..], &all_flags[..]] {
            let items = c
                .actions()
                .iter()
                .map(|a| pb::BatchCheckItem {
                    user_id: user.clone(),
                    target: Some(pb::batch_check_item::Target::Action(a.key.clone())),
                    context: all_flags
                        .iter()
                        .map(|f| (f.to_string(), flags.contains(f)))
                        .collect(),
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
                        context: |f: &str| Some(flags.contains(&f)),
                        explain: false,
                    },
                )
                .unwrap();
                assert!(
                    res.error.is_none(),
                    "{} for {}: {:?}",
                    a.key,
                    group.key,
                    res.error
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
    let app = TestServer::on(backend).start().await;
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
    let app = TestServer::on(backend).start().await;
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
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.add("t", "analysts", &["ann"]).await;
    let expr = |e: &str, flags: &[(&str, bool)]| pb::CheckRequest {
        target: Some(pb::check_request::Target::Expression(e.into())),
        context: flags.iter().map(|(f, v)| (f.to_string(), *v)).collect(),
        explain: true,
        ..perm_check("t", "ann", "")
    };
    let r = app
        .check(expr(
            "view_flows & (!ctx.multibrand | view_brands)",
            &[("multibrand", true)],
        ))
        .await
        .unwrap();
    assert!(r.allowed);
    let r = app
        .check(expr(
            "edit_flows & (!ctx.multibrand | edit_segments)",
            &[("multibrand", true)],
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
    // A declared flag sent false fails a positive test; nothing is reported missing.
    let r = app
        .check(expr(
            "ctx.multibrand & view_flows",
            &[("multibrand", false)],
        ))
        .await
        .unwrap();
    assert!(!r.allowed);
    assert!(r.missing_permissions.is_empty());
    // An undeclared flag is refused, never read as false.
    assert_status(
        app.check(expr("ctx.anything", &[])).await,
        Code::InvalidArgument,
        &["undeclared context flag `ctx.anything`", "position 1"],
    );
}

async fn explanations_name_groups_and_grants(backend: Backend) {
    let app = TestServer::on(backend).start().await;
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
    let app = TestServer::on(backend).start().await;
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
    let app = TestServer::on(backend).catalog(TOOLJET).start().await;
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
        context: [("released".to_owned(), false)].into(),
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
    let app = TestServer::on(backend).start().await;
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
    let app = TestServer::on(backend).start().await;
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
    let app = TestServer::on(backend).start().await;
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
    let app = TestServer::on(backend).start().await;
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

/// A check whose expression names context flags: user `fe` holds `edit_flows` only.
fn flag_check(expression: &str, context: &[(&str, bool)]) -> pb::CheckRequest {
    pb::CheckRequest {
        target: Some(pb::check_request::Target::Expression(expression.into())),
        context: context.iter().map(|(f, v)| (f.to_string(), *v)).collect(),
        ..perm_check("t", "fe", "")
    }
}

fn flag_item(expression: &str, context: &[(&str, bool)]) -> pb::BatchCheckItem {
    let r = flag_check(expression, context);
    pb::BatchCheckItem {
        user_id: r.user_id,
        target: Some(pb::batch_check_item::Target::Expression(expression.into())),
        context: r.context,
        ..Default::default()
    }
}

/// An expression, the context sent, and the answer: allowed or not, or the error's parts.
type FlagCase<'a> = (String, Vec<(&'a str, bool)>, Result<bool, Vec<String>>);

/// A flag that is misspelt, undeclared or unsent never reads as false, in Check or BatchCheck:
/// `!ctx.flag | permission` would otherwise drop the permission. Run over every declared flag
/// and every catalog action that tests one.
async fn context_flags_are_never_read_as_false(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.grant("t", "fe", &["edit_flows"], None).await;
    assert_status(
        app.check(flag_check(
            "edit_flows & (!ctx.multibrnad | view_brands)",
            &[("multibrand", true)],
        ))
        .await,
        Code::InvalidArgument,
        &[
            "undeclared context flag `ctx.multibrnad`",
            "did you mean `ctx.multibrand`?",
            "position 16",
        ],
    );
    assert_status(
        app.check(flag_check("edit_flows & !ctx.anything", &[]))
            .await,
        Code::InvalidArgument,
        &["undeclared context flag `ctx.anything`", "position 15"],
    );

    // Every declared flag: unsent, misspelt, false and true; Check and BatchCheck agree.
    let c = app.catalog.clone();
    let mut cases: Vec<FlagCase> = Vec::new();
    for f in c.context_flags() {
        let k = f.key.as_str();
        let negated = format!("edit_flows & !ctx.{k}");
        cases.push((
            negated.clone(),
            vec![],
            Err(vec![format!("context flag `{k}` is required")]),
        ));
        cases.push((negated.clone(), vec![(k, false)], Ok(true)));
        cases.push((negated, vec![(k, true)], Ok(false)));
        cases.push((
            format!("edit_flows & (!ctx.{k}x | view_brands)"),
            vec![(k, true)],
            Err(vec![
                format!("undeclared context flag `ctx.{k}x`"),
                format!("did you mean `ctx.{k}`?"),
                "position 16".to_owned(),
            ]),
        ));
    }
    let items = cases.iter().map(|(e, ctx, _)| flag_item(e, ctx)).collect();
    let batch = app
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
    for ((expression, ctx, expected), item) in cases.iter().zip(&batch.results) {
        let single = app.check(flag_check(expression, ctx)).await;
        match expected {
            Ok(allowed) => {
                let r = single.unwrap();
                assert_eq!(r.allowed, *allowed, "{expression} with {ctx:?}");
                assert!(r.missing_permissions.is_empty(), "{expression}");
                assert!(item.error.is_none(), "{expression}: {:?}", item.error);
                assert_eq!(
                    item.allowed, *allowed,
                    "{expression} with {ctx:?} in a batch"
                );
            }
            Err(parts) => {
                let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                assert_status(single, Code::InvalidArgument, &parts);
                assert!(!item.allowed, "{expression} in a batch");
                let e = item.error.as_ref().expect("an item error");
                assert_eq!(e.code, Code::InvalidArgument as i32);
                for p in &parts {
                    assert!(e.message.contains(p), "{:?} lacks {p:?}", e.message);
                }
            }
        }
    }

    // Every catalog action: one that tests a flag is refused without it, whoever asks.
    app.add("t", "owners", &["owner"]).await;
    let items: Vec<pb::BatchCheckItem> = c
        .actions()
        .iter()
        .map(|a| pb::BatchCheckItem {
            user_id: "owner".into(),
            target: Some(pb::batch_check_item::Target::Action(a.key.clone())),
            ..Default::default()
        })
        .collect();
    let batch = app
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
    let mut flagged = 0;
    for (a, item) in c.actions().iter().zip(&batch.results) {
        let Some(first) = a.expr.flags().first() else {
            assert!(item.error.is_none(), "{}: {:?}", a.key, item.error);
            continue;
        };
        flagged += 1;
        let flag = &c.context_flag(*first).key;
        let e = item
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("{} without {flag}", a.key));
        assert!(!item.allowed);
        assert!(
            e.message
                .contains(&format!("context flag `{flag}` is required"))
                && e.message.contains(&format!("action `{}`", a.key)),
            "{}",
            e.message
        );
        assert_status(
            app.check(action_check("t", "owner", &a.key, &[])).await,
            Code::InvalidArgument,
            &[&format!("context flag `{flag}` is required")],
        );
    }
    assert!(flagged > 10, "{flagged} actions test flags");
}

/// A catalog may give a flag a default; only then may a check leave it out.
async fn a_flag_default_is_the_catalogs_to_give(backend: Backend) {
    const CATALOG: &str = r#"
name = "flags"
version = "1"
[[context_flags]]
key = "beta"
description = "The feature is in beta; unsent means it is not."
default = false
[[context_flags]]
key = "risky"
[[permissions]]
name = "Use beta"
[[permissions]]
name = "Approve risk"
[[actions]]
key = "feature.open"
expression = "!ctx.beta | use_beta"
[[actions]]
key = "feature.risky"
expression = "!ctx.risky | approve_risk"
"#;
    let app = TestServer::on(backend).catalog(CATALOG).start().await;
    app.tenant("t").await;
    let open = |flags: &[&str]| action_check("t", "u", "feature.open", flags);
    app.grant("t", "u", &["approve_risk"], None).await;
    assert!(app.check(open(&[])).await.unwrap().allowed);
    let r = app.check(open(&["beta"])).await.unwrap();
    assert!(!r.allowed);
    assert_eq!(r.missing_permissions, ["use_beta"]);
    assert_status(
        app.check(action_check("t", "u", "feature.risky", &[]))
            .await,
        Code::InvalidArgument,
        &["context flag `risky` is required", "no default"],
    );
    assert!(
        app.check(action_check("t", "u", "feature.risky", &["risky"]))
            .await
            .unwrap()
            .allowed
    );
}

/// One kind of user for the missing-permissions property: its id says which.
async fn set_up(app: &TestApp, kind: &str, user: &str) {
    let mut admin = app.admin.clone();
    match kind {
        "plain" => {
            app.add("t", "analysts", &[user]).await;
        }
        "restricted" => {
            app.add("t", "analysts", &[user]).await;
            admin
                .set_restrictions(pb::SetRestrictionsRequest {
                    tenant_id: "t".into(),
                    user_id: user.into(),
                    resource_type: "folder".into(),
                    resource_ids: vec!["f2".into()],
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        "scoped" => {
            app.add("t", "accountants", &[user]).await;
            app.grant("t", user, &["delete_customers"], Some(("folder", "f1")))
                .await;
        }
        "blocked" => {
            app.add("t", "analysts", &[user]).await;
            admin
                .set_user_status(pb::SetUserStatusRequest {
                    tenant_id: "t".into(),
                    user_id: user.into(),
                    status: pb::UserStatus::Blocked.into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        other => panic!("{other}"),
    }
}

/// Granting what `missing_permissions` lists makes the check pass, whatever denied it; a
/// restriction is reported as the restriction, with nothing missing. Over users with groups,
/// scoped grants, restrictions and blocks; permissions, actions and expressions; with and
/// without resources of the restricted type and another.
async fn missing_permissions_always_fix_the_check(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;

    // The probe's case: restricted to folder f2, asking on f1.
    set_up(&app, "restricted", "r").await;
    let on = |user: &str, perm: &str, folder: &str| pb::CheckRequest {
        resource: Some(pb::Resource {
            r#type: "folder".into(),
            id: folder.into(),
        }),
        explain: true,
        ..perm_check("t", user, perm)
    };
    for round in ["before the grant", "after the grant"] {
        let r = app.check(on("r", "delete_customers", "f1")).await.unwrap();
        assert!(!r.allowed, "{round}");
        assert!(r.missing_permissions.is_empty(), "{round}: {r:?}");
        let denial = r.denied_by_restriction.clone().unwrap();
        assert_eq!(
            (
                denial.resource_type.as_str(),
                denial.allowed_ids.clone(),
                denial.allowed_count
            ),
            ("folder", vec!["f2".to_owned()], 1),
            "{round}"
        );
        let summary = r.explanation.unwrap().summary;
        assert!(
            summary.contains("restricted to folder f2, and folder:f1 is not one of them"),
            "{summary}"
        );
        app.grant("t", "r", &["delete_customers"], None).await;
    }
    assert!(
        app.check(on("r", "delete_customers", "f2"))
            .await
            .unwrap()
            .allowed
    );
    let batch = app
        .authz
        .clone()
        .batch_check(pb::BatchCheckRequest {
            tenant_id: "t".into(),
            items: vec![pb::BatchCheckItem {
                user_id: "r".into(),
                target: Some(pb::batch_check_item::Target::Permission(
                    "delete_customers".into(),
                )),
                resource: Some(pb::Resource {
                    r#type: "folder".into(),
                    id: "f1".into(),
                }),
                ..Default::default()
            }],
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    let item = &batch.results[0];
    assert!(!item.allowed && item.missing_permissions.is_empty());
    assert_eq!(
        item.denied_by_restriction.as_ref().unwrap().allowed_ids,
        ["f2"]
    );

    // The property.
    let kinds = ["plain", "restricted", "scoped", "blocked"];
    for kind in kinds {
        set_up(&app, kind, kind).await;
    }
    use pb::check_request::Target as T;
    let targets = [
        T::Permission("view_reports".into()),
        T::Permission("delete_customers".into()),
        T::Permission("view_billing_details".into()),
        T::Action("customers.export_customers".into()),
        T::Action("flows.add_a_flow".into()),
        T::Expression("view_reports & !delete_customers".into()),
        T::Expression("delete_customers & (edit_folders | view_billing_details)".into()),
    ];
    let resources = [
        None,
        Some(("folder", "f1")),
        Some(("folder", "f2")),
        Some(("brand", "b1")),
    ];
    let context: std::collections::HashMap<String, bool> = app
        .catalog
        .context_flags()
        .iter()
        .map(|f| (f.key.clone(), true))
        .collect();
    let request = |user: &str, target: &T, resource: Option<(&str, &str)>| pb::CheckRequest {
        tenant_id: "t".into(),
        user_id: user.into(),
        target: Some(target.clone()),
        resource: resource.map(|(t, id)| pb::Resource {
            r#type: t.into(),
            id: id.into(),
        }),
        context: context.clone(),
        ..Default::default()
    };
    let mut twins = 0;
    let mut restricted = 0;
    for kind in kinds {
        for target in &targets {
            for resource in resources {
                let r = app.check(request(kind, target, resource)).await.unwrap();
                let what = format!("{kind} {target:?} on {resource:?}");
                let restricted_out = kind == "restricted" && resource == Some(("folder", "f1"));
                assert_eq!(
                    r.denied_by_restriction.is_some(),
                    restricted_out,
                    "{what}: {r:?}"
                );
                if r.denied_by_restriction.is_some() {
                    restricted += 1;
                    assert!(
                        !r.allowed && r.missing_permissions.is_empty(),
                        "{what}: {r:?}"
                    );
                }
                if r.allowed || r.missing_permissions.is_empty() {
                    continue;
                }
                // A user set up the same way, given what was reported missing, passes.
                twins += 1;
                let twin = format!("{kind}_twin_{twins}");
                set_up(&app, kind, &twin).await;
                let missing: Vec<&str> = r.missing_permissions.iter().map(String::as_str).collect();
                app.grant("t", &twin, &missing, None).await;
                let again = app.check(request(&twin, target, resource)).await.unwrap();
                assert!(
                    again.allowed,
                    "{what}: granting {missing:?} did not fix it: {again:?}"
                );
            }
        }
    }
    assert!(
        twins >= 10 && restricted == targets.len(),
        "{twins} twins, {restricted} restricted"
    );
}

/// Every decided check says DECISION_ALLOWED or DECISION_DENIED (a non-zero enum, so JSON shows
/// it even when `allowed` is false and left out); an undecided batch item says neither and
/// carries its error; batch items that ask to `explain` get the explanation Check would give.
async fn decisions_are_explicit_and_batch_items_explain(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.add("t", "analysts", &["a"]).await;
    let allowed = app
        .check(perm_check("t", "a", "view_reports"))
        .await
        .unwrap();
    assert_eq!(allowed.decision(), pb::Decision::Allowed);
    let denied = app
        .check(perm_check("t", "a", "delete_customers"))
        .await
        .unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.decision(), pb::Decision::Denied);
    assert_eq!(denied.missing_permissions, ["delete_customers"]);

    let item = |perm: &str, explain: bool| pb::BatchCheckItem {
        user_id: "a".into(),
        target: Some(pb::batch_check_item::Target::Permission(perm.into())),
        explain,
        ..Default::default()
    };
    let r = app
        .authz
        .clone()
        .batch_check(pb::BatchCheckRequest {
            tenant_id: "t".into(),
            items: vec![
                item("view_reports", true),
                item("delete_customers", true),
                item("delete_customers", false),
                item("no_such_permission", true),
            ],
            consistency: None,
        })
        .await
        .unwrap()
        .into_inner();
    let d: Vec<_> = r.results.iter().map(|r| r.decision()).collect();
    use pb::Decision::*;
    assert_eq!(d, [Allowed, Denied, Denied, Unspecified]);
    // The same explanation a single Check gives.
    let single = app
        .check(pb::CheckRequest {
            explain: true,
            ..perm_check("t", "a", "delete_customers")
        })
        .await
        .unwrap();
    assert_eq!(r.results[1].explanation, single.explanation);
    let held = r.results[0].explanation.as_ref().unwrap();
    assert_eq!(held.permissions[0].sources, ["group:analysts"]);
    assert!(r.results[2].explanation.is_none());
    assert!(r.results[3].explanation.is_none() && r.results[3].error.is_some());
}

/// A Watch response's initial metadata says where the stream starts: the tenant's latest
/// revision when `after_revision` is empty, else the one asked for.
async fn watch_says_where_it_starts(backend: Backend) {
    let app = TestServer::on(backend).start().await;
    app.tenant("t").await;
    app.add("t", "analysts", &["a"]).await;
    let start = |after: &str| {
        let mut authz = app.authz.clone();
        let req = pb::WatchRequest {
            tenant_id: "t".into(),
            after_revision: after.into(),
        };
        async move {
            let r = authz.watch(req).await.unwrap();
            r.metadata()
                .get("authz-after-revision")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(start("").await, "2");
    assert_eq!(start("1").await, "1");
}

contract!(
    decisions_are_explicit_and_batch_items_explain,
    watch_says_where_it_starts,
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
    context_flags_are_never_read_as_false,
    a_flag_default_is_the_catalogs_to_give,
    missing_permissions_always_fix_the_check,
);
