//! The catalog lifecycle against real Postgres, through the binary: a database records its
//! catalog; a start with an incompatible one is refused with every conflict listed; `catalog
//! diff` previews who gains or loses what; `catalog apply` carries a change out by declared
//! mappings; replicas with different catalogs never answer with two meanings.
//!
//! Long: one scenario per catalog change, each standing alone on a database of its own.

use crate::daemon::{Authzd, eventually};
use crate::helpers::{MAESTRA, TOOLJET, TestServer, assert_status, perm_check};
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::grpc::pb::authz_service_client::AuthzServiceClient;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use tonic::Code;

/// A catalog file in a directory of this test process.
fn file(text: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!("authzd-lifecycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(format!("c{}.toml", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Runs `authzd ARGS` to its exit: exit code, stdout, stderr.
async fn authzd(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_authzd"))
            .args(args)
            .env_remove("AUTHZ_DATABASE_URL")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("authzd {args:?} did not exit"))
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `authzd serve` on this database and catalog until it exits, which it must.
async fn refused_start(url: &str, catalog: &str) -> String {
    let (code, _, err) = authzd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        url,
        "--catalog",
        catalog,
    ])
    .await;
    assert_eq!(code, 1, "the start must be refused: {err}");
    err
}

fn contains_all(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "expected {p:?} in:\n{text}");
    }
}

async fn admin(d: &Authzd) -> AdminServiceClient<tonic::transport::Channel> {
    AdminServiceClient::new(d.channel().await)
}

async fn allowed(
    client: &mut AuthzServiceClient<tonic::transport::Channel>,
    user: &str,
    perm: &str,
) -> bool {
    client
        .check(perm_check("acme", user, perm))
        .await
        .unwrap()
        .into_inner()
        .allowed
}

fn group(key: &str, permissions: &[&str]) -> pb::CreateGroupRequest {
    pb::CreateGroupRequest {
        tenant_id: "acme".into(),
        group: Some(pb::Group {
            key: key.into(),
            name: key.into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A database on the default catalog where ann is in "Layout of email templates", and a
/// catalog file without that group: its URL and the file.
async fn a_layout_member_and_a_catalog_without_the_group() -> (String, String) {
    let a = TestServer::fresh_postgres().start().await;
    let url = a.db_url.clone().unwrap();
    a.tenant("acme").await;
    a.add("acme", "layout_of_email_templates", &["ann"]).await;
    a.stop().await;
    (url, file(&maestra_without_layout()))
}

/// The default catalog without its "Layout of email templates" group.
fn maestra_without_layout() -> String {
    let start = MAESTRA
        .find("[[groups]]\nname = \"Layout of email templates\"")
        .unwrap();
    let end = start + MAESTRA[start + 1..].find("[[groups]]").unwrap() + 1;
    format!("{}{}", &MAESTRA[..start], &MAESTRA[end..])
}

fn maestra_with_support() -> String {
    format!("{MAESTRA}\n[[groups]]\nname = \"Support\"\npermissions = [\"export_personal_data\"]\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_system_group_on_a_custom_groups_key_is_refused_until_apply_renames_the_custom_group()
{
    let a = TestServer::fresh_postgres().start().await;
    let url = a.db_url.clone().unwrap();
    a.tenant("acme").await;
    a.admin
        .clone()
        .create_group(group("support", &["view_customer"]))
        .await
        .unwrap();
    a.add("acme", "support", &["ann"]).await;
    a.stop().await;

    let new = file(&maestra_with_support());
    let err = refused_start(&url, &new).await;
    contains_all(
        &err,
        &[
            "refusing to serve catalog maestra",
            "system group `support` takes the key of a custom group: 1 custom group in 1 tenant (acme)",
            "--rename-group support=NEW_KEY",
            "authzd catalog apply --database-url URL CATALOG",
        ],
    );

    // The preview says what the start would have done: ann gains the system group's permission.
    let (code, out, _) = authzd(&["catalog", "diff", "--database-url", &url, &new]).await;
    assert_eq!(code, 3, "{out}");
    contains_all(
        &out,
        &[
            "UNRESOLVED: system group `support` takes the key",
            "ann: gains export_personal_data",
            "result: INCOMPATIBLE",
        ],
    );
    // A mapping the catalog could not mean is refused before anything is read.
    let (code, _, err) = authzd(&[
        "catalog",
        "apply",
        "--database-url",
        &url,
        &new,
        "--rename-group",
        "support=owners",
    ])
    .await;
    assert_eq!(code, 1);
    contains_all(&err, &["`owners` is a system group of the new catalog"]);

    let (code, out, _) = authzd(&[
        "catalog",
        "apply",
        "--database-url",
        &url,
        &new,
        "--rename-group",
        "support=support_team",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &[
            "resolved by --rename-group support=support_team",
            "group support: custom group renamed `support_team` (1 member)",
            "preview: 0 users change",
            "applied: recorded as catalog record 2",
        ],
    );

    let d = Authzd::start(&["--database-url", &url, "--catalog", &new]).await;
    let mut checks = AuthzServiceClient::new(d.channel().await);
    assert!(!allowed(&mut checks, "ann", "export_personal_data").await);
    assert!(allowed(&mut checks, "ann", "view_customer").await);
    let mut admin = admin(&d).await;
    let g = admin
        .get_group(pb::GetGroupRequest {
            tenant_id: "acme".into(),
            group_key: "support_team".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(g.member_count, 1);
    let events = admin
        .list_audit_events(pb::ListAuditEventsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events[0].operation, "catalog_apply", "{events:?}");
    assert_eq!(events[0].target, "catalog:maestra@2026.05.20");
    // The same catalog again is nothing to apply.
    let (code, out, _) = authzd(&["catalog", "apply", "--database-url", &url, &new]).await;
    assert_eq!(code, 0);
    contains_all(
        &out,
        &["nothing applied: the database already records this catalog"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_products_catalog_is_refused_and_lists_what_it_would_reinterpret() {
    let a = TestServer::fresh_postgres().start().await;
    let url = a.db_url.clone().unwrap();
    a.tenant("acme").await;
    a.admin
        .clone()
        .create_group(group("admin", &["view_customer"]))
        .await
        .unwrap();
    a.add("acme", "admin", &["ann"]).await;
    a.add("acme", "marketers", &["bob"]).await;
    a.stop().await;
    let err = refused_start(&url, &file(TOOLJET)).await;
    contains_all(
        &err,
        &[
            "the catalog changes from `maestra` to `tooljet`: a different catalog",
            "system group `admin` takes the key of a custom group",
            "system group `marketers` is removed but has 1 member in 1 tenant (acme)",
            "permission `view_customer` is removed but",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_system_group_keeps_no_leftover_members() {
    let (url, new) = a_layout_member_and_a_catalog_without_the_group().await;
    let err = refused_start(&url, &new).await;
    contains_all(
        &err,
        &[
            "system group `layout_of_email_templates` is removed",
            "system group `layout_of_email_templates` is removed but has 1 member in 1 tenant (acme)",
            "--move-members layout_of_email_templates=GROUP",
        ],
    );
    let (code, out, _) = authzd(&[
        "catalog",
        "apply",
        "--database-url",
        &url,
        &new,
        "--move-members",
        "layout_of_email_templates=marketers",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["applied"], 2);
    assert_eq!(
        plan["tenants"][0]["groups"][0]["detail"],
        "members move to `marketers`"
    );
    // ann moves from the layout group to Marketers: she gains what Marketers have.
    let ann = &plan["tenants"][0]["users"][0];
    assert_eq!(ann["user_id"], "ann");
    assert!(ann["gained"].as_array().unwrap().len() > 50, "{ann}");

    let d = Authzd::start(&["--database-url", &url, "--catalog", &new]).await;
    let mut admin = admin(&d).await;
    // The key is free for a custom group, which starts empty: nobody is enrolled by leftovers.
    admin
        .create_group(group("layout_of_email_templates", &["view_brands"]))
        .await
        .unwrap();
    let get = |key: &str| pb::GetGroupRequest {
        tenant_id: "acme".into(),
        group_key: key.into(),
        ..Default::default()
    };
    let g = admin
        .get_group(get("layout_of_email_templates"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.group.unwrap().member_count, 0);
    admin
        .delete_group(pb::DeleteGroupRequest {
            tenant_id: "acme".into(),
            group_key: "layout_of_email_templates".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut checks = AuthzServiceClient::new(d.channel().await);
    assert!(
        allowed(&mut checks, "ann", "export_customers").await,
        "ann is a marketer now"
    );
}

/// A small catalog whose changes the next tests make.
const SMALL: &str = r#"
name = "small"
version = "1"
[[resource_types]]
key = "folder"
[[permissions]]
name = "View reports"
[[permissions]]
name = "Edit reports"
[[permissions]]
name = "Send test messages"
[[groups]]
name = "Editors"
permissions = ["edit_reports"]
[[actions]]
key = "reports.edit"
expression = "view_reports & edit_reports"
[admin]
edit_groups = "edit_reports"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_permission_still_granted_is_refused_until_dropped_and_renames_follow_aliases() {
    let (url, _) = crate::pg::fresh_database().await;
    let a = TestServer::postgres(&url).catalog(SMALL).start().await;
    a.tenant("acme").await;
    a.grant("acme", "ann", &["send_test_messages", "view_reports"], None)
        .await;
    a.grant(
        "acme",
        "ann",
        &["send_test_messages"],
        Some(("folder", "f1")),
    )
    .await;
    a.admin
        .clone()
        .create_group(group("testers", &["send_test_messages", "view_reports"]))
        .await
        .unwrap();
    a.add("acme", "testers", &["bob"]).await;
    a.stop().await;
    // `send_test_messages` goes; `view_reports` is renamed, its old key kept as an alias.
    let new_text = SMALL
        .replace("[[permissions]]\nname = \"Send test messages\"\n", "")
        .replace(
            "name = \"View reports\"",
            "name = \"Read reports\"\naliases = [\"View reports\"]",
        )
        .replace("view_reports & edit_reports", "read_reports & edit_reports")
        .replace("version = \"1\"", "version = \"2\"");
    let new = file(&new_text);
    let err = refused_start(&url, &new).await;
    contains_all(
        &err,
        &[
            "permission `send_test_messages` is removed",
            "permission `send_test_messages` is removed but is still used by 3 stored grants in 1 tenant (acme)",
            "--drop-permission send_test_messages",
        ],
    );
    assert!(
        !err.contains("view_reports` is removed"),
        "a rename through an alias keeps meaning: {err}"
    );

    let (code, out, _) = authzd(&[
        "catalog",
        "diff",
        "--database-url",
        &url,
        &new,
        "--drop-permission",
        "send_test_messages",
    ])
    .await;
    assert_eq!(code, 3);
    contains_all(
        &out,
        &[
            "INCOMPATIBLE  permission `view_reports` is renamed `read_reports` (the old key stays as an alias; `catalog apply` rewrites stored keys to the new one)",
            "group testers: custom group loses `send_test_messages` (1 member)",
            "ann: loses send_test_messages; loses scoped send_test_messages on folder:f1",
            "bob: loses send_test_messages",
        ],
    );
    let (code, out, _) = authzd(&[
        "catalog",
        "apply",
        "--database-url",
        &url,
        &new,
        "--drop-permission",
        "send_test_messages",
    ])
    .await;
    assert_eq!(code, 0, "{out}");

    let b = TestServer::postgres(&url).catalog(&new_text).start().await;
    let g = b
        .admin
        .clone()
        .get_group(pb::GetGroupRequest {
            tenant_id: "acme".into(),
            group_key: "testers".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    // Stored under the new key, and the group's version moved: a client holding the old one
    // must reload before editing.
    assert_eq!(g.permissions, ["read_reports"]);
    assert_eq!(g.version, 2);
    assert!(b.allowed("acme", "ann", "read_reports").await);
    assert!(
        b.allowed("acme", "bob", "view_reports").await,
        "the alias still resolves"
    );
    let rows = crate::pg::query(&url, "SELECT direct FROM users WHERE user_id = 'ann'").await;
    assert_eq!(rows[0].get::<_, Vec<String>>(0), ["read_reports"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_on_the_catalog_through_a_rollout() {
    let (url, _) = crate::pg::fresh_database().await;
    let v1 = file(SMALL);
    let old = Authzd::start(&["--database-url", &url, "--catalog", &v1, "--migrate"]).await;
    assert_eq!(old.metric("authz_catalog_record").await, 1.0);
    let mut admin_old = admin(&old).await;
    admin_old
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut grant = pb::GrantPermissionsRequest {
        tenant_id: "acme".into(),
        user_id: "ann".into(),
        permissions: vec!["send_test_messages".into()],
        ..Default::default()
    };
    admin_old.grant_permissions(grant.clone()).await.unwrap();

    // A compatible step: a new permission, in an existing group. The new replica records it;
    // the old one keeps answering checks, one step behind, but writes nothing (its groups may
    // give less than the recorded catalog's, and the new group's key stays free).
    let v2_text = format!("{SMALL}\n[[permissions]]\nname = \"Export reports\"\n")
        .replace("version = \"1\"", "version = \"2\"")
        .replace(
            "permissions = [\"edit_reports\"]",
            "permissions = [\"edit_reports\", \"export_reports\"]",
        );
    let v2 = file(&v2_text);
    let new = Authzd::start(&["--database-url", &url, "--catalog", &v2]).await;
    assert_eq!(new.metric("authz_catalog_record").await, 2.0);
    old.metric_reaches("authz_catalog_record", 2.0).await;
    assert_eq!(old.metric("authz_catalog_compatible").await, 1.0);
    let mut checks_old = AuthzServiceClient::new(old.channel().await);
    assert!(allowed(&mut checks_old, "ann", "send_test_messages").await);
    assert_status(
        admin_old
            .create_group(group("exporters", &["view_reports"]))
            .await,
        Code::Unavailable,
        &[
            "one compatible step behind the database's small 2",
            "admin writes go to replicas on the recorded catalog",
        ],
    );
    // A replica still on the first catalog starts one step behind, without recording it.
    let behind = Authzd::start(&["--database-url", &url, "--catalog", &v1]).await;
    assert_eq!(behind.metric("authz_catalog_record").await, 2.0);
    assert!(
        behind.log().contains("a rollout is under way"),
        "{}",
        behind.log()
    );
    drop(behind);
    let (_, history, _) = authzd(&["catalog", "history", "--database-url", &url]).await;
    assert_eq!(history.lines().count(), 2, "{history}");
    contains_all(
        &history,
        &[
            "   2  ",
            "compatible small 2",
            "   1  ",
            "initial    small 1",
        ],
    );

    // An incompatible step, applied on purpose: both running replicas stop answering rather
    // than answer with another meaning.
    let v3_text = v2_text
        .replace("[[permissions]]\nname = \"Send test messages\"\n", "")
        .replace("version = \"2\"", "version = \"3\"");
    let v3 = file(&v3_text);
    let (code, out, _) = authzd(&[
        "catalog",
        "apply",
        "--database-url",
        &url,
        &v3,
        "--drop-permission",
        "send_test_messages",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    for replica in [&old, &new] {
        replica.metric_reaches("authz_catalog_record", 3.0).await;
        assert_eq!(replica.metric("authz_catalog_compatible").await, 0.0);
        let mut checks = AuthzServiceClient::new(replica.channel().await);
        assert_status(
            checks
                .check(perm_check("acme", "ann", "view_reports"))
                .await,
            Code::Unavailable,
            &[
                "but the database now records small 3",
                "roll this replica onto the recorded catalog",
            ],
        );
        let health = tonic_health::pb::health_client::HealthClient::new(replica.channel().await);
        eventually("readiness NOT_SERVING", || {
            let mut health = health.clone();
            async move {
                let s = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: "authz.v1.AuthzService".into(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .status;
                (s == tonic_health::pb::health_check_response::ServingStatus::NotServing as i32)
                    .then_some(())
            }
        })
        .await;
    }
    grant.permissions = vec!["view_reports".into()];
    assert_status(
        admin_old.grant_permissions(grant.clone()).await,
        Code::Unavailable,
        &["incompatible"],
    );
    let third = Authzd::start(&["--database-url", &url, "--catalog", &v3]).await;
    let mut checks = AuthzServiceClient::new(third.channel().await);
    assert!(!allowed(&mut checks, "ann", "view_reports").await);
    let mut admin_third = admin(&third).await;
    admin_third.grant_permissions(grant).await.unwrap();
    assert!(allowed(&mut checks, "ann", "view_reports").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_or_load_after_an_apply_is_refused_even_before_the_replica_hears_of_it() {
    let (url, _) = crate::pg::fresh_database().await;
    let a = TestServer::postgres(&url).catalog(SMALL).start().await;
    a.tenant("acme").await;
    a.grant("acme", "ann", &["view_reports"], None).await;
    let cached = a.cached.clone().unwrap();
    assert_eq!(cached.inner().guard().verified(), 1);
    let v2 = file(
        &SMALL
            .replace("[[permissions]]\nname = \"Send test messages\"\n", "")
            .replace("version = \"1\"", "version = \"2\""),
    );
    let (code, out, _) = authzd(&["catalog", "apply", "--database-url", &url, &v2]).await;
    assert_eq!(code, 0, "{out}");
    // Whether or not the replica has heard of the new record yet (its listener races this
    // test), a write checks the record under the catalog lock and a load reads the record's id
    // with its data: neither answers with the old catalog's meaning.
    assert_status(
        a.admin
            .clone()
            .grant_permissions(pb::GrantPermissionsRequest {
                tenant_id: "acme".into(),
                user_id: "bob".into(),
                permissions: vec!["view_reports".into()],
                ..Default::default()
            })
            .await,
        Code::Unavailable,
        &["incompatible"],
    );
    let mut full = perm_check("acme", "ann", "view_reports");
    full.consistency = Some(pb::Consistency {
        requirement: Some(pb::consistency::Requirement::FullyConsistent(true)),
    });
    assert_status(a.check(full).await, Code::Unavailable, &["incompatible"]);
    let rows = crate::pg::query(&url, "SELECT count(*) FROM users WHERE user_id = 'bob'").await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        0,
        "the refused write left nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diffing_two_files_classifies_every_change() {
    let v1 = file(SMALL);
    let added = file(&format!(
        "{SMALL}\n[[permissions]]\nname = \"Export reports\"\n"
    ));
    let (code, out, _) = authzd(&["catalog", "diff", &v1, &added]).await;
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &[
            "compatible    permission `export_reports` is added",
            "result: compatible",
        ],
    );
    let changed = file(&SMALL.replace("view_reports & edit_reports", "view_reports"));
    let (code, out, _) = authzd(&["catalog", "diff", &v1, &changed, "--output", "json"]).await;
    assert_eq!(code, 3, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["compatible"], false);
    assert_eq!(json["changes"][0]["kind"], "action_changed");
    assert_eq!(json["changes"][0]["key"], "reports.edit");
    let (code, _, err) =
        authzd(&["catalog", "diff", &v1, &changed, "--drop-permission", "x"]).await;
    assert_eq!(code, 1);
    contains_all(
        &err,
        &["mappings (--move-members, --drop-permission, ...) apply to a database"],
    );
}

/// The store alone, with no change listener to announce the new record: only the checks made
/// inside writes and loads stand between an apply and the old catalog's meaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_checks_the_record_inside_every_write_and_load() {
    use authz::store::postgres::{PgOptions, PostgresStore};
    use authz::store::{Store, StoreError, Write, WriteCtx};
    let (url, _) = crate::pg::fresh_database().await;
    let catalog = std::sync::Arc::new(authz_core::Catalog::from_toml(SMALL).unwrap());
    let pg = PostgresStore::new(catalog, &PgOptions::new(url.clone())).unwrap();
    pg.migrate().await.unwrap();
    pg.reconcile().await.unwrap();
    pg.create_tenant("acme", "").await.unwrap();
    let operator = WriteCtx {
        actor: None,
        rule: authz_core::admin::Rule::default(),
        dry_run: false,
    };
    let upsert = |user_id| Write::UpsertUser {
        user_id,
        display_name: "",
        email: "",
    };
    pg.write("acme", &operator, upsert("ann")).await.unwrap();
    pg.load_subject("acme", "ann").await.unwrap();

    let v2 = file(
        &SMALL
            .replace("[[permissions]]\nname = \"Send test messages\"\n", "")
            .replace("version = \"1\"", "version = \"2\""),
    );
    let (code, out, _) = authzd(&["catalog", "apply", "--database-url", &url, &v2]).await;
    assert_eq!(code, 0, "{out}");
    let refused = |e: StoreError| match e {
        StoreError::CatalogMismatch(m) => assert!(m.contains("incompatible"), "{m}"),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    };
    refused(
        pg.write("acme", &operator, upsert("bob"))
            .await
            .unwrap_err(),
    );
    refused(pg.load_subject("acme", "ann").await.unwrap_err());
    assert!(!pg.guard().serving());
    let rows = crate::pg::query(&url, "SELECT count(*) FROM users WHERE user_id = 'bob'").await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        0,
        "the refused write left nothing"
    );
}

/// A rename through an alias is carried out by `catalog apply`, which rewrites stored keys to
/// the new name: a replica that does not know the new name stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_that_renames_stored_keys_stops_replicas_that_do_not_know_the_new_names() {
    let (url, _) = crate::pg::fresh_database().await;
    let a = TestServer::postgres(&url).catalog(SMALL).start().await;
    a.tenant("acme").await;
    a.grant("acme", "ann", &["view_reports"], None).await;
    let renamed = file(
        &SMALL
            .replace(
                "name = \"View reports\"",
                "name = \"Read reports\"\naliases = [\"View reports\"]",
            )
            .replace("version = \"1\"", "version = \"2\""),
    );
    let (code, out, _) = authzd(&["catalog", "diff", &file(SMALL), &renamed]).await;
    assert_eq!(code, 3, "a rename is carried out by apply: {out}");
    let (code, out, _) = authzd(&["catalog", "apply", "--database-url", &url, &renamed]).await;
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &[
            "stored keys rewritten (1):",
            "view_reports → read_reports (1 stored grant in 1 tenant)",
        ],
    );
    let cached = a.cached.clone().unwrap();
    eventually("the replica stops serving", || {
        let c = cached.clone();
        async move { (!c.inner().guard().serving()).then_some(()) }
    })
    .await;
    assert_status(
        a.check(perm_check("acme", "ann", "view_reports")).await,
        Code::Unavailable,
        &[
            "permission `view_reports` is renamed `read_reports`",
            "roll this replica onto the recorded catalog",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_are_carried_out_only_when_a_conflict_needs_them() {
    let (url, new) = a_layout_member_and_a_catalog_without_the_group().await;
    // Into a custom group the tenant does not have: unresolved, named with its tenants.
    let (code, out, _) = authzd(&[
        "catalog",
        "diff",
        "--database-url",
        &url,
        &new,
        "--move-members",
        "layout_of_email_templates=designers",
    ])
    .await;
    assert_eq!(code, 3, "{out}");
    contains_all(
        &out,
        &[
            "UNRESOLVED: --move-members layout_of_email_templates=designers: `designers` is neither a system group of the new catalog nor a custom group of tenant acme",
        ],
    );
    // A mapping no conflict needs is refused, and nothing changes.
    let (code, _, err) = authzd(&[
        "catalog",
        "apply",
        "--database-url",
        &url,
        &new,
        "--drop-members",
        "layout_of_email_templates",
        "--drop-permission",
        "nope",
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    contains_all(
        &err,
        &[
            "mappings that resolve no conflict are not carried out",
            "--drop-permission nope: no stored grant uses `nope`",
        ],
    );
    // The same flag twice with two values is a mistake, not "the last one wins".
    let (code, _, err) = authzd(&[
        "catalog",
        "apply",
        "--database-url",
        &url,
        &new,
        "--move-members",
        "layout_of_email_templates=marketers",
        "--move-members",
        "layout_of_email_templates=analysts",
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    contains_all(&err, &["`layout_of_email_templates` is given twice"]);
    let (_, history, _) = authzd(&["catalog", "history", "--database-url", &url]).await;
    assert_eq!(
        history.lines().count(),
        1,
        "nothing was recorded: {history}"
    );
    // Once applied, the same command again has nothing to do.
    let apply = [
        "catalog",
        "apply",
        "--database-url",
        &url,
        &new,
        "--drop-members",
        "layout_of_email_templates",
    ];
    let (code, out, _) = authzd(&apply).await;
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = authzd(&apply).await;
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &["nothing applied: the database already records this catalog"],
    );
    let (_, history, _) = authzd(&["catalog", "history", "--database-url", &url]).await;
    assert_eq!(history.lines().count(), 2, "{history}");
    contains_all(
        &history,
        &[
            "apply",
            "mappings: drop_members [\"layout_of_email_templates\"]",
        ],
    );
}
