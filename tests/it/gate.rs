//! Caller authentication and admission, through the real server.

use crate::helpers::*;
use authz::gate::Keys;
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::grpc::pb::authz_service_client::AuthzServiceClient;
use authz::server::ServerOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::metadata::MetadataValue;

const CHECK: &str = "check-key-0123456789";
const ADMIN: &str = "admin-key-0123456789";
const OPERATOR: &str = "operator-key-0123456";

fn keyed<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {key}")).unwrap(),
    );
    r
}

async fn gated() -> TestApp {
    let keys = Keys::load(
        &format!("check:{CHECK},admin:{ADMIN},operator:{OPERATOR}"),
        None,
    )
    .unwrap();
    TestServer::memory()
        .options(ServerOptions {
            keys: Some(Arc::new(keys)),
            ..ServerOptions::default()
        })
        .start()
        .await
}

/// One `authorization` header, `Bearer <key>` with the scheme in any case: two headers are
/// refused (which would count is a guess), and so is a header that is not a bearer key.
#[tokio::test]
async fn authorization_headers_are_read_strictly() {
    let app = gated().await;
    let mut authz = AuthzServiceClient::new(app.channel.clone());
    let check = || perm_check("t", "u", "view_reports");
    let with = |values: &[&str]| {
        let mut r = tonic::Request::new(check());
        for v in values {
            r.metadata_mut()
                .append("authorization", MetadataValue::try_from(*v).unwrap());
        }
        r
    };
    // Past the gate (the tenant does not exist), whatever the scheme's case.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        assert_status(
            authz.check(with(&[&format!("{scheme} {CHECK}")])).await,
            Code::NotFound,
            &["tenant `t`"],
        );
    }
    // Two headers, in either order, whatever roles they carry.
    for pair in [[OPERATOR, CHECK], [CHECK, OPERATOR]] {
        let values: Vec<String> = pair.iter().map(|k| format!("Bearer {k}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        assert_status(
            authz.check(with(&values)).await,
            Code::Unauthenticated,
            &["more than one authorization header"],
        );
    }
    for bad in [CHECK.to_owned(), format!("Basic {CHECK}"), "Bearer ".into()] {
        assert_status(
            authz.check(with(&[&bad])).await,
            Code::Unauthenticated,
            &["not `Bearer <key>`"],
        );
    }
}

#[tokio::test]
async fn keys_and_roles() {
    let app = gated().await;
    let mut authz = AuthzServiceClient::new(app.channel.clone());
    let mut admin = AdminServiceClient::new(app.channel.clone());
    let check = || perm_check("t", "u", "view_reports");

    assert_status(
        authz.check(check()).await,
        Code::Unauthenticated,
        &["authorization: Bearer"],
    );
    assert_status(
        authz.check(keyed(check(), "not-a-key-at-all-000")).await,
        Code::Unauthenticated,
        &["unknown API key"],
    );
    assert_status(
        authz.check(keyed(check(), &CHECK[..CHECK.len() - 1])).await,
        Code::Unauthenticated,
        &["unknown API key"],
    );
    // Past the gate: the tenant does not exist yet.
    assert_status(
        authz.check(keyed(check(), CHECK)).await,
        Code::NotFound,
        &["tenant `t`"],
    );
    assert_status(
        admin
            .get_catalog(keyed(pb::GetCatalogRequest {}, CHECK))
            .await,
        Code::PermissionDenied,
        &["a `check` key may not call authz.v1.AdminService"],
    );
    assert_status(
        authz.check(keyed(check(), ADMIN)).await,
        Code::PermissionDenied,
        &["an `admin` key may not call authz.v1.AuthzService"],
    );

    // Only operators create tenants; admin mutations must name an actor.
    let tenant = pb::CreateTenantRequest {
        tenant_id: "t".into(),
        display_name: "T".into(),
    };
    assert_status(
        admin.create_tenant(keyed(tenant.clone(), ADMIN)).await,
        Code::PermissionDenied,
        &["operator"],
    );
    admin.create_tenant(keyed(tenant, OPERATOR)).await.unwrap();
    let add = |actor: &str| pb::AddGroupMembersRequest {
        tenant_id: "t".into(),
        group_key: "analysts".into(),
        user_ids: vec!["u".into()],
        actor_user_id: actor.into(),
        ..Default::default()
    };
    assert_status(
        admin.add_group_members(keyed(add(""), ADMIN)).await,
        Code::PermissionDenied,
        &["set actor_user_id"],
    );
    admin
        .add_group_members(keyed(add(""), OPERATOR))
        .await
        .unwrap();
    admin
        .add_group_members(keyed(
            pb::AddGroupMembersRequest {
                group_key: "owners".into(),
                user_ids: vec!["boss".into()],
                ..add("")
            },
            OPERATOR,
        ))
        .await
        .unwrap();
    // With an actor, the admin rules apply to the admin key's calls.
    admin
        .add_group_members(keyed(add("boss"), ADMIN))
        .await
        .unwrap();
    assert_status(
        admin.add_group_members(keyed(add("u"), ADMIN)).await,
        Code::PermissionDenied,
        &["missing edit_users"],
    );
    // Reads of the catalog need no actor.
    admin
        .get_catalog(keyed(pb::GetCatalogRequest {}, ADMIN))
        .await
        .unwrap();
    assert!(
        authz
            .check(keyed(check(), OPERATOR))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );

    // Probes and reflection need no key.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn keys_reload_and_keep_the_old_ones_on_a_bad_file() {
    let dir = std::env::temp_dir().join(format!("authz-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys");
    std::fs::write(&file, format!("# rotated keys\ncheck:{CHECK}\n")).unwrap();
    let keys = Arc::new(Keys::load("", Some(file.clone())).unwrap());
    let app = TestServer::memory()
        .options(ServerOptions {
            keys: Some(keys.clone()),
            ..ServerOptions::default()
        })
        .start()
        .await;
    let mut authz = AuthzServiceClient::new(app.channel.clone());
    let check = || perm_check("t", "u", "view_reports");
    assert_status(
        authz.check(keyed(check(), CHECK)).await,
        Code::NotFound,
        &["tenant"],
    );
    // Rotation: a new key in, the old one out.
    let rotated = "check-key-rotated-0001";
    std::fs::write(&file, format!("check:{rotated}\n")).unwrap();
    assert_eq!(keys.reload().unwrap(), 1);
    assert_status(
        authz.check(keyed(check(), CHECK)).await,
        Code::Unauthenticated,
        &["unknown API key"],
    );
    assert_status(
        authz.check(keyed(check(), rotated)).await,
        Code::NotFound,
        &["tenant"],
    );
    // A broken file is refused and the keys in force stay.
    std::fs::write(&file, "check:short\n").unwrap();
    assert!(keys.reload().unwrap_err().contains("at least 16"));
    assert_status(
        authz.check(keyed(check(), rotated)).await,
        Code::NotFound,
        &["tenant"],
    );
    // So is a file giving the key a second role: it stays a check key.
    std::fs::write(&file, format!("check:{rotated}\noperator:{rotated}\n")).unwrap();
    let err = keys.reload().unwrap_err();
    assert!(
        err.contains(&format!(
            "{} line 2: this operator key is already the check key of {} line 1",
            file.display(),
            file.display()
        )),
        "{err}"
    );
    assert_status(
        AdminServiceClient::new(app.channel.clone())
            .get_catalog(keyed(pb::GetCatalogRequest {}, rotated))
            .await,
        Code::PermissionDenied,
        &["a `check` key may not call"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stalled database: a transaction holds the tenant's revision row, so writes block.
async fn hold_tenant_row(
    app: &TestApp,
    tenant: &str,
) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let url = app.db_url.clone().unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
            &[&tenant],
        )
        .await
        .unwrap();
    (client, driver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_and_stalls_hit_their_deadline() {
    let app = TestServer::fresh_postgres()
        .options(ServerOptions {
            max_concurrent: 1,
            request_timeout: Duration::from_millis(800),
            ..ServerOptions::default()
        })
        .start()
        .await;
    app.tenant("t").await;
    let (lock, driver) = hold_tenant_row(&app, "t").await;
    // One write blocks on the lock and holds the only slot...
    let blocked = {
        let mut admin = app.admin.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r = admin
                .grant_permissions(pb::GrantPermissionsRequest {
                    tenant_id: "t".into(),
                    user_id: "u".into(),
                    permissions: vec!["view_reports".into()],
                    ..Default::default()
                })
                .await;
            (r, start.elapsed())
        })
    };
    // Wait until the write is really in flight: its backend waits on the row lock.
    let db = app
        .db_url
        .as_ref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let waiting = Instant::now();
    loop {
        let rows = crate::pg::admin_execute(&format!(
            "SELECT 1 FROM pg_stat_activity WHERE datname = '{db}' AND wait_event_type = 'Lock'"
        ))
        .await;
        if !rows.is_empty() {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the write never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...so another request is shed at once, not queued.
    let start = Instant::now();
    assert_status(
        app.check(perm_check("t", "u", "view_reports")).await,
        Code::ResourceExhausted,
        &["limit of 1 concurrent"],
    );
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "shed immediately: {:?}",
        start.elapsed()
    );
    // The stalled write ends at its deadline, with the right code, and changes nothing.
    let (r, took) = blocked.await.unwrap();
    assert_status(r, Code::DeadlineExceeded, &["did not finish within"]);
    assert!(
        took < Duration::from_secs(3),
        "nothing hangs past its deadline: {took:?}"
    );
    lock.batch_execute("ROLLBACK").await.unwrap();
    drop(lock);
    let _ = driver.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let full = pb::CheckRequest {
        consistency: Some(pb::Consistency {
            requirement: Some(pb::consistency::Requirement::FullyConsistent(true)),
        }),
        ..perm_check("t", "u", "view_reports")
    };
    assert!(
        !app.check(full).await.unwrap().allowed,
        "the timed-out write was not applied"
    );
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let app = TestServer::memory()
        .options(ServerOptions {
            max_message_bytes: 1024,
            ..ServerOptions::default()
        })
        .start()
        .await;
    let big = pb::CheckRequest {
        target: Some(pb::check_request::Target::Expression(
            "view_reports |".repeat(200),
        )),
        ..perm_check("t", "u", "")
    };
    let status = app.check(big).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("1024"), "{}", status.message());
}
