//! Opening the store a server runs on: the memory store, or Postgres behind the per-replica
//! cache. `authzd serve` and the integration tests open their stores through [`open_store`],
//! so a test server starts exactly as the binary does (schema check, catalog reconciliation,
//! cache and change listener).

use crate::config::ServeArgs;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::cached::{CacheOptions, CachedStore, LagObserver};
use crate::store::catalogs::Start;
use crate::store::listener::ListenerOptions;
use crate::store::memory::MemoryStore;
use crate::store::postgres::{PgOptions, PostgresStore};
use authz_core::Catalog;
use std::sync::Arc;
use std::time::Duration;

/// Which store to open.
pub enum StoreConfig {
    /// The embedded store: one process, nothing kept across restarts.
    Memory,
    /// Postgres behind the per-replica cache and its change listener.
    Postgres(PostgresConfig),
}

/// How to open Postgres.
pub struct PostgresConfig {
    /// The URL, pool size, statement and connect timeouts.
    pub connection: PgOptions,
    /// Apply pending schema migrations first; without it a schema behind the binary's is
    /// refused.
    pub migrate: bool,
    /// The cache: its size, TTL, staleness bound, listener heartbeat and hooks.
    pub cache: CacheOptions,
}

impl PostgresConfig {
    /// The database at `url` with the default pool and cache, migrations not applied.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            connection: PgOptions::new(url),
            migrate: false,
            cache: CacheOptions::default(),
        }
    }
}

impl StoreConfig {
    /// The store `authzd serve` opens: Postgres when a database URL is configured, the memory
    /// store otherwise. Invalidation lags are recorded in `metrics`.
    pub fn from_args(args: &ServeArgs, metrics: Arc<Metrics>) -> Self {
        let Some(url) = &args.database_url else {
            return Self::Memory;
        };
        Self::Postgres(PostgresConfig {
            connection: PgOptions {
                url: url.clone(),
                pool_size: args.db_pool_size,
                statement_timeout: args.db_statement_timeout,
                connect_timeout: args.db_connect_timeout,
            },
            migrate: args.migrate,
            cache: CacheOptions {
                max_bytes: args.cache_max_mib.saturating_mul(1024 * 1024),
                ttl: args.cache_ttl,
                max_staleness: args.max_staleness,
                listener: ListenerOptions {
                    heartbeat: args.heartbeat_interval,
                    heartbeat_timeout: (args.heartbeat_interval * 4).max(Duration::from_secs(1)),
                    ..ListenerOptions::default()
                },
                after_load: None,
                lag_observer: Some(LagObserver(Arc::new(move |lag| {
                    metrics.invalidation_lag(lag)
                }))),
            },
        })
    }
}

/// An opened store, with its concrete type for callers that need more than [`Store`] (the
/// cache's listener, the memory store's write door).
pub enum OpenedStore {
    Memory(Arc<MemoryStore>),
    Postgres(Arc<CachedStore>),
}

impl OpenedStore {
    /// The store the application runs on.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Memory(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// `memory` or `postgres`, as the start-up log line names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// Opens the store. On Postgres: migrates when asked, refuses a schema that does not match,
/// reconciles the database's catalog with `catalog` (records it, serves one step behind, or
/// refuses with every conflict), then starts the cache and its change listener. Errors are
/// the messages `authzd` exits with.
pub async fn open_store(config: StoreConfig, catalog: Arc<Catalog>) -> Result<OpenedStore, String> {
    let config = match config {
        StoreConfig::Memory => return Ok(OpenedStore::Memory(Arc::new(MemoryStore::new(catalog)))),
        StoreConfig::Postgres(config) => config,
    };
    let pg = PostgresStore::new(catalog.clone(), &config.connection).map_err(|e| e.to_string())?;
    // These lines keep the binary's target, which operators filter and tests read.
    if config.migrate {
        let applied = pg
            .migrate()
            .await
            .map_err(|e| format!("migration failed: {e}"))?;
        if !applied.is_empty() {
            tracing::info!(target: "authzd", ?applied, "applied schema migrations");
        }
    }
    pg.check_schema().await.map_err(|e| e.to_string())?;
    // The database's catalog: record this one, serve one step behind, or refuse.
    match pg.reconcile().await? {
        Start::Same(id) => {
            tracing::info!(target: "authzd", record = id, "the database records this catalog")
        }
        Start::Recorded { id, how } => {
            tracing::info!(target: "authzd", record = id, how, "catalog recorded in the database")
        }
        Start::Behind(id) => tracing::warn!(
            target: "authzd",
            record = id,
            "the database records a newer, compatible catalog (a rollout is under way): serving this one until this replica is updated"
        ),
    }
    Ok(OpenedStore::Postgres(Arc::new(CachedStore::start(
        Arc::new(pg),
        catalog,
        config.cache,
    ))))
}
