//! Starts the real server on 127.0.0.1:0 and hands out typed clients.

use authz::app::Authz;
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::grpc::pb::authz_service_client::AuthzServiceClient;
use authz::store::Store;
use authz::store::cached::{AfterLoad, CacheOptions, CachedStore};
use authz::store::listener::ListenerOptions;
use authz::store::memory::MemoryStore;
use authz::store::postgres::{PgOptions, PostgresStore};
use authz_core::Catalog;
use std::time::Duration;

use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub const MAESTRA: &str = include_str!("../../catalogs/maestra.toml");
pub const TOOLJET: &str = include_str!("../../catalogs/tooljet.toml");

/// Which store a test runs against: the contract suite runs every test on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Postgres,
}

/// The staleness bound tests run with.
pub const MAX_STALENESS: Duration = Duration::from_secs(2);

pub struct TestApp {
    /// The application behind the server (for the metrics endpoint in tests).
    pub app: Arc<Authz>,
    /// For Postgres apps: the database URL (replicas share it) and the cached store.
    pub db_url: Option<String>,
    pub cached: Option<Arc<CachedStore>>,
    /// For memory-store apps: the store (to hold writes at a known point).
    pub memory: Option<Arc<MemoryStore>>,
    pub authz: AuthzServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
    pub channel: Channel,
    /// Where the server listens.
    pub addr: std::net::SocketAddr,
    pub catalog: Arc<Catalog>,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<Result<(), authz::server::ServeError>>>,
}

impl TestApp {
    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.unwrap().unwrap();
        }
    }

    /// The server's address as a URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of this server, built with the defaults.
    pub async fn client(&self) -> authz_client::Client {
        authz_client::Client::connect(self.url()).await.unwrap()
    }

    pub async fn tenant(&self, id: &str) {
        self.admin
            .clone()
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: id.into(),
                display_name: format!("Tenant {id}"),
            })
            .await
            .unwrap();
    }

    /// The tenant's latest revision.
    pub async fn revision(&self, tenant: &str) -> u64 {
        self.admin
            .clone()
            .get_tenant(pb::GetTenantRequest {
                tenant_id: tenant.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .tenant
            .unwrap()
            .revision
            .parse()
            .unwrap()
    }

    pub async fn add(&self, tenant: &str, group: &str, users: &[&str]) -> String {
        self.admin
            .clone()
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: tenant.into(),
                group_key: group.into(),
                user_ids: users.iter().map(|u| u.to_string()).collect(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .revision
    }

    pub async fn remove_from(&self, tenant: &str, group: &str, user: &str) -> String {
        self.admin
            .clone()
            .remove_group_members(pb::RemoveGroupMembersRequest {
                tenant_id: tenant.into(),
                group_key: group.into(),
                user_ids: vec![user.into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .revision
    }

    pub async fn grant(
        &self,
        tenant: &str,
        user: &str,
        perms: &[&str],
        resource: Option<(&str, &str)>,
    ) -> String {
        self.admin
            .clone()
            .grant_permissions(pb::GrantPermissionsRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                permissions: perms.iter().map(|p| p.to_string()).collect(),
                resource: resource.map(|(t, id)| pb::Resource {
                    r#type: t.into(),
                    id: id.into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .revision
    }

    pub async fn check(&self, req: pb::CheckRequest) -> Result<pb::CheckResponse, Status> {
        self.authz.clone().check(req).await.map(|r| r.into_inner())
    }

    /// Allowed or not for a permission, with no resource.
    pub async fn allowed(&self, tenant: &str, user: &str, perm: &str) -> bool {
        self.check(perm_check(tenant, user, perm))
            .await
            .unwrap()
            .allowed
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(MAESTRA).await
}

pub async fn spawn_app_with(catalog: &str) -> TestApp {
    spawn(Backend::Memory, catalog).await
}

/// Starts the server on the backend: Postgres gets a fresh, migrated database.
pub async fn spawn(backend: Backend, catalog: &str) -> TestApp {
    match backend {
        Backend::Memory => {
            let catalog = Arc::new(Catalog::from_toml(catalog).unwrap());
            let store = Arc::new(MemoryStore::new(catalog.clone()));
            let mut app = start(catalog, store.clone(), None, None).await;
            app.memory = Some(store);
            app
        }
        Backend::Postgres => {
            let (url, _) = crate::pg::fresh_database().await;
            let app = spawn_replica(&url, catalog).await;
            app.cached
                .as_ref()
                .unwrap()
                .inner()
                .migrate()
                .await
                .unwrap();
            app
        }
    }
}

/// Starts the server on the backend with these admission options (message size, ...).
pub async fn spawn_with_options(
    backend: Backend,
    catalog: &str,
    options: authz::server::ServerOptions,
) -> TestApp {
    match backend {
        Backend::Memory => {
            let catalog = Arc::new(Catalog::from_toml(catalog).unwrap());
            let store = Arc::new(MemoryStore::new(catalog.clone()));
            start_with(catalog, store, None, None, options).await
        }
        Backend::Postgres => {
            let (url, _) = crate::pg::fresh_database().await;
            spawn_replica_full(PgOptions::new(url), catalog, None, options, None).await
        }
    }
}

/// Another replica on an existing database (migrated by the first).
pub async fn spawn_replica(url: &str, catalog: &str) -> TestApp {
    spawn_replica_with(url, catalog, None).await
}

pub async fn spawn_replica_with(
    url: &str,
    catalog: &str,
    after_load: Option<AfterLoad>,
) -> TestApp {
    spawn_replica_full(
        PgOptions::new(url),
        catalog,
        after_load,
        authz::server::ServerOptions::default(),
        None,
    )
    .await
}

/// A Postgres-backed server on a fresh, migrated database with these admission options (and,
/// when they carry metrics, invalidation lags recorded there).
pub async fn spawn_pg_gated(options: authz::server::ServerOptions) -> TestApp {
    let (url, _) = crate::pg::fresh_database().await;
    spawn_replica_full(PgOptions::new(url), MAESTRA, None, options, None).await
}

/// A replica with these store and admission options (pool size, statement timeout, deadlines),
/// and a cache of `cache_bytes` when given.
pub async fn spawn_replica_full(
    pg: PgOptions,
    catalog: &str,
    after_load: Option<AfterLoad>,
    server_options: authz::server::ServerOptions,
    cache_bytes: Option<u64>,
) -> TestApp {
    replica(pg, catalog, after_load, server_options, cache_bytes, None).await
}

async fn replica(
    pg: PgOptions,
    catalog: &str,
    after_load: Option<AfterLoad>,
    server_options: authz::server::ServerOptions,
    cache_bytes: Option<u64>,
    listen_on: Option<tokio::net::TcpListener>,
) -> TestApp {
    let catalog = Arc::new(Catalog::from_toml(catalog).unwrap());
    let url = pg.url.clone();
    let pg = Arc::new(PostgresStore::new(catalog.clone(), &pg).unwrap());
    pg.migrate().await.unwrap();
    pg.reconcile().await.unwrap();
    let defaults = CacheOptions::default();
    let options = CacheOptions {
        max_bytes: cache_bytes.unwrap_or(defaults.max_bytes),
        max_staleness: MAX_STALENESS,
        listener: ListenerOptions {
            heartbeat: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_millis(1000),
            max_backoff: Duration::from_millis(500),
        },
        after_load,
        lag_observer: server_options.metrics.clone().map(|m| {
            authz::store::cached::LagObserver(Arc::new(move |lag| m.invalidation_lag(lag)))
        }),
        ..defaults
    };
    let cached = Arc::new(CachedStore::start(pg, catalog.clone(), options));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cached.listener().connected() {
        assert!(
            std::time::Instant::now() < deadline,
            "listener never subscribed: {}",
            cached.listener().last_error()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let listener = match listen_on {
        Some(l) => l,
        None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    start_on(
        listener,
        catalog,
        cached.clone(),
        Some(url),
        Some(cached),
        server_options,
    )
    .await
}

/// A replica on an existing database, serving on `listener` (to come back on an address).
pub async fn spawn_replica_on(url: &str, listener: tokio::net::TcpListener) -> TestApp {
    replica(
        PgOptions::new(url),
        MAESTRA,
        None,
        authz::server::ServerOptions::default(),
        None,
        Some(listener),
    )
    .await
}

async fn start(
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    db_url: Option<String>,
    cached: Option<Arc<CachedStore>>,
) -> TestApp {
    start_with(
        catalog,
        store,
        db_url,
        cached,
        authz::server::ServerOptions::default(),
    )
    .await
}

/// A server over any store, with these options.
pub async fn spawn_store(
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    options: authz::server::ServerOptions,
) -> TestApp {
    start_with(catalog, store, None, None, options).await
}

/// The memory store behind a server with these admission options.
pub async fn spawn_gated(options: authz::server::ServerOptions) -> TestApp {
    let catalog = Arc::new(Catalog::from_toml(MAESTRA).unwrap());
    let store = Arc::new(MemoryStore::new(catalog.clone()));
    start_with(catalog, store, None, None, options).await
}

async fn start_with(
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    db_url: Option<String>,
    cached: Option<Arc<CachedStore>>,
    options: authz::server::ServerOptions,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, catalog, store, db_url, cached, options).await
}

/// A server over any store on a bound listener.
pub async fn start_on(
    listener: tokio::net::TcpListener,
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    db_url: Option<String>,
    cached: Option<Arc<CachedStore>>,
    options: authz::server::ServerOptions,
) -> TestApp {
    let app = Arc::new(Authz::new(catalog.clone(), store).with_max_batch(1000));
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(authz::server::run(listener, app.clone(), options, async {
        let _ = rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TestApp {
        app: app.clone(),
        db_url,
        cached,
        memory: None,
        authz: AuthzServiceClient::new(channel.clone()),
        admin: AdminServiceClient::new(channel.clone()),
        channel,
        addr,
        catalog,
        shutdown: Some(tx),
        server: Some(server),
    }
}

pub fn perm_check(tenant: &str, user: &str, perm: &str) -> pb::CheckRequest {
    pb::CheckRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
        target: Some(pb::check_request::Target::Permission(perm.into())),
        ..Default::default()
    }
}

pub fn action_check(tenant: &str, user: &str, action: &str, flags: &[&str]) -> pb::CheckRequest {
    pb::CheckRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
        target: Some(pb::check_request::Target::Action(action.into())),
        context: flags.iter().map(|f| (f.to_string(), true)).collect(),
        ..Default::default()
    }
}

/// Asserts the call failed with `code` and a message containing every one of `parts`.
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, parts: &[&str]) {
    let status = result.expect_err("expected an error status");
    assert_eq!(status.code(), code, "code for {:?}", status.message());
    for p in parts {
        assert!(
            status.message().contains(p),
            "message {:?} should contain {p:?}",
            status.message()
        );
    }
}

/// Runs each named `async fn(Backend)` as a test on the memory store and on Postgres.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(crate::helpers::Backend::Memory).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(crate::helpers::Backend::Postgres).await
            })*
        }
    };
}
pub(crate) use contract;
