//! Starts the real server on 127.0.0.1:0 and hands out typed clients.

use authz::app::Authz;
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::grpc::pb::authz_service_client::AuthzServiceClient;
use authz::open::{OpenedStore, PostgresConfig, StoreConfig, open_store};
use authz::store::Store;
use authz::store::cached::{AfterLoad, CacheOptions, CachedStore, LagObserver};
use authz::store::listener::ListenerOptions;
use authz::store::memory::MemoryStore;
use authz::store::postgres::PgOptions;
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

/// Starts a test server: the store (memory, a fresh Postgres database, a replica on an existing
/// one, or any store), the catalog (Maestra unless told), admission options (the defaults
/// unless told), and for Postgres the pool and cache. Postgres is opened with
/// [`authz::open::open_store`], as `authzd` opens it, and the server starts once the change
/// listener has subscribed.
///
/// `TestServer::on(backend).catalog(TOOLJET).start().await`,
/// `TestServer::postgres(&url).after_load(hook).start().await`.
pub struct TestServer {
    source: Source,
    catalog: Arc<Catalog>,
    options: authz::server::ServerOptions,
    listener: Option<tokio::net::TcpListener>,
    pool_size: Option<usize>,
    connect_timeout: Option<Duration>,
    cache_bytes: Option<u64>,
    after_load: Option<AfterLoad>,
}

enum Source {
    Memory,
    /// A fresh database, migrated.
    FreshPostgres,
    /// An existing database (migrated when it is not yet).
    Postgres(String),
    Store(Arc<dyn Store>),
}

impl TestServer {
    fn new(source: Source) -> Self {
        Self {
            source,
            catalog: Arc::new(Catalog::from_toml(MAESTRA).unwrap()),
            options: authz::server::ServerOptions::default(),
            listener: None,
            pool_size: None,
            connect_timeout: None,
            cache_bytes: None,
            after_load: None,
        }
    }

    /// The memory store.
    pub fn memory() -> Self {
        Self::new(Source::Memory)
    }

    /// Postgres on a fresh, migrated database, behind the cache.
    pub fn fresh_postgres() -> Self {
        Self::new(Source::FreshPostgres)
    }

    /// The memory store or a fresh Postgres database: the contract suite runs both.
    pub fn on(backend: Backend) -> Self {
        match backend {
            Backend::Memory => Self::memory(),
            Backend::Postgres => Self::fresh_postgres(),
        }
    }

    /// Another replica on the database at `url`, behind its own cache.
    pub fn postgres(url: &str) -> Self {
        Self::new(Source::Postgres(url.to_owned()))
    }

    /// A server straight over `store`, which serves `catalog`.
    pub fn over(catalog: Arc<Catalog>, store: Arc<dyn Store>) -> Self {
        Self {
            catalog,
            ..Self::new(Source::Store(store))
        }
    }

    /// The catalog served (Maestra by default).
    pub fn catalog(mut self, toml: &str) -> Self {
        self.catalog = Arc::new(Catalog::from_toml(toml).unwrap());
        self
    }

    /// Admission options (keys, limits, deadlines, metrics, TLS, ...). With metrics, a Postgres
    /// server's invalidation lags are recorded there too.
    pub fn options(mut self, options: authz::server::ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// Serves on this listener instead of a new one on `127.0.0.1:0`.
    pub fn listener(mut self, listener: tokio::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Postgres: the connection pool's size.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = Some(size);
        self
    }

    /// Postgres: how long a connection may take to open.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Postgres: the cache's size bound in bytes.
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = Some(bytes);
        self
    }

    /// Postgres: a hook the cache runs after each load, before it installs the entry.
    pub fn after_load(mut self, hook: AfterLoad) -> Self {
        self.after_load = Some(hook);
        self
    }

    /// Opens the store, starts the server and connects its clients.
    pub async fn start(self) -> TestApp {
        let listener = match self.listener {
            Some(l) => l,
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let url = match self.source {
            Source::Memory => None,
            Source::FreshPostgres => Some(crate::pg::fresh_database().await.0),
            Source::Postgres(url) => Some(url),
            Source::Store(store) => {
                return serve(listener, self.catalog, store, None, self.options).await;
            }
        };
        let config = match &url {
            None => StoreConfig::Memory,
            Some(url) => {
                let mut connection = PgOptions::new(url);
                connection.pool_size = self.pool_size.unwrap_or(connection.pool_size);
                connection.connect_timeout =
                    self.connect_timeout.unwrap_or(connection.connect_timeout);
                let defaults = CacheOptions::default();
                StoreConfig::Postgres(PostgresConfig {
                    connection,
                    migrate: true,
                    cache: CacheOptions {
                        max_bytes: self.cache_bytes.unwrap_or(defaults.max_bytes),
                        max_staleness: MAX_STALENESS,
                        listener: ListenerOptions {
                            heartbeat: Duration::from_millis(100),
                            heartbeat_timeout: Duration::from_millis(1000),
                            max_backoff: Duration::from_millis(500),
                        },
                        after_load: self.after_load,
                        lag_observer: self
                            .options
                            .metrics
                            .clone()
                            .map(|m| LagObserver(Arc::new(move |lag| m.invalidation_lag(lag)))),
                        ..defaults
                    },
                })
            }
        };
        let opened = open_store(config, self.catalog.clone()).await.unwrap();
        if let OpenedStore::Postgres(cached) = &opened {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !cached.listener().connected() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "listener never subscribed: {}",
                    cached.listener().last_error()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let mut app = serve(listener, self.catalog, opened.store(), url, self.options).await;
        match opened {
            OpenedStore::Memory(store) => app.memory = Some(store),
            OpenedStore::Postgres(cached) => app.cached = Some(cached),
        }
        app
    }
}

/// Serves the app over `store` on `listener` and connects to it.
async fn serve(
    listener: tokio::net::TcpListener,
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    db_url: Option<String>,
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
        cached: None,
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
