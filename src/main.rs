//! The `authzd` binary.

use authz::app::Authz;
use authz::config::{CatalogCommand, CliError, Command, LogFormat, MigrateArgs, ServeArgs};
use authz::gate::{ClientRoles, Keys};
use authz::open::{StoreConfig, open_store};
use authz::server::ServerOptions;
use authz::store::postgres::{PgOptions, PostgresStore};
use authz::tls::ServerTls;
use authz_core::Catalog;
use authz_core::admin::AdminOp;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = match authz::config::parse_cli(std::env::args().collect()) {
        Ok(cli) => cli,
        // Usage errors, --help and --version: clap prints them and picks the exit code.
        Err(CliError::Clap(e)) => e.exit(),
        Err(CliError::Config(e)) => {
            eprintln!("authzd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Catalog(command)) => catalog(command),
        Some(Command::Serve(args)) => serve(*args).map(|()| 0),
        Some(Command::Migrate(args)) => migrate(&args).map(|()| 0),
        None => serve(cli.serve).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("authzd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn catalog(command: CatalogCommand) -> Result<u8, String> {
    use authz::catalog_cli;
    match command {
        CatalogCommand::Check { file } => catalog_check(&file).map(|()| 0),
        CatalogCommand::Test(args) => Ok(authz::catalog_test::main(&args)),
        CatalogCommand::Diff {
            files,
            database_url,
            mappings,
            output,
        } => {
            let mappings = mappings.mappings()?;
            // With one catalog the other side is a database: the flag, or AUTHZ_DATABASE_URL.
            let database_url = match files.len() {
                1 => database_url.or_else(|| {
                    std::env::var("AUTHZ_DATABASE_URL")
                        .ok()
                        .filter(|u| !u.is_empty())
                }),
                _ => database_url,
            };
            match (files.as_slice(), database_url) {
                ([old, new], None) => {
                    if !mappings.is_empty() {
                        return Err(
                            "mappings (--move-members, --drop-permission, ...) apply to a database: pass --database-url URL NEW".into(),
                        );
                    }
                    let old = load_catalog(Some(old))?;
                    let new = load_catalog(Some(new))?;
                    Ok(catalog_cli::diff_files(&old, &new, output))
                }
                ([new], Some(url)) => {
                    catalog_cli::plan(&url, load_catalog(Some(new))?, &mappings, false, output)
                }
                ([_, _], Some(_)) => Err(
                    "with --database-url, name only the new catalog: the database records the old one".into(),
                ),
                _ => Err(
                    "name two catalogs (OLD NEW), or one with --database-url URL (or AUTHZ_DATABASE_URL)"
                        .into(),
                ),
            }
        }
        CatalogCommand::Apply {
            file,
            database_url,
            mappings,
            dry_run,
            output,
        } => catalog_cli::plan(
            &database_url,
            load_catalog(Some(&file))?,
            &mappings.mappings()?,
            !dry_run,
            output,
        ),
        CatalogCommand::History {
            database_url,
            show,
            output,
        } => catalog_cli::history(&database_url, load_catalog(None)?, show, output),
    }
}

fn load_catalog(path: Option<&std::path::Path>) -> Result<Catalog, String> {
    match path {
        None => {
            Catalog::from_toml(authz::DEFAULT_CATALOG).map_err(|e| format!("built-in catalog: {e}"))
        }
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read catalog {}: {e}", p.display()))?;
            Catalog::from_toml(&text).map_err(|e| format!("catalog {}: {e}", p.display()))
        }
    }
}

fn catalog_check(file: &std::path::Path) -> Result<(), String> {
    let c = load_catalog(Some(file))?;
    let internal = c.permissions().iter().filter(|p| p.internal).count();
    let aliases: usize = c.permissions().iter().map(|p| p.aliases.len()).sum();
    println!(
        "catalog {} version {} (fingerprint {}) is valid",
        c.name, c.version, c.fingerprint
    );
    println!(
        "  permissions:    {} ({internal} internal, {aliases} aliases)",
        c.permissions().len()
    );
    println!("  system groups:  {}", c.groups().len());
    for g in c.groups() {
        let internal = if g.internal { ", internal" } else { "" };
        println!(
            "    {:<28} {:>3} permissions{internal}",
            g.key,
            g.grants.permissions.len()
        );
    }
    println!("  actions:        {}", c.actions().len());
    let types: Vec<&str> = c.resource_types().iter().map(|t| t.key.as_str()).collect();
    println!("  resource types: {}", types.join(", "));
    let flags: Vec<&str> = c.context_flags().iter().map(|f| f.key.as_str()).collect();
    println!("  context flags:  {}", flags.join(", "));
    // Valid, but probably not meant: without [admin] no actor may do anything.
    if AdminOp::ALL
        .iter()
        .all(|op| c.admin_requirement(*op).is_none())
    {
        let ops: Vec<&str> = AdminOp::ALL.iter().map(|op| op.key()).collect();
        eprintln!(
            "warning: catalog {} has no [admin] table, so every admin operation ({}) is operator-only and actors are refused all of them. Add [admin] to say what actors need for each (docs/catalog.md)",
            file.display(),
            ops.join(", ")
        );
    }
    Ok(())
}

/// Logs, and OTLP traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
fn init_logging(format: LogFormat) -> Result<authz::telemetry::Telemetry, String> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    authz::telemetry::init(format, "info", endpoint.as_deref())
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let telemetry = init_logging(args.log_format)?;
    let catalog = Arc::new(load_catalog(args.catalog.as_deref())?);
    let keys = Keys::load(
        args.api_keys.as_deref().unwrap_or(""),
        args.api_keys_file.clone(),
    )?;
    // TLS material is checked before anything is served: a bad file is a start-up error that
    // names it, never a transport error after `ready`.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ServerTls::load(cert, key, args.tls_client_ca.as_deref())?),
        _ => None,
    };
    let client_roles = args
        .tls_client_roles
        .clone()
        .map(ClientRoles::load)
        .transpose()?
        .map(Arc::new);
    // Mutual TLS authenticates callers too: the handshake refuses any client without a
    // certificate from the CA.
    let mutual_tls = tls.as_ref().is_some_and(ServerTls::mutual);
    let authenticated = !keys.is_empty() || args.api_keys_file.is_some() || mutual_tls;
    if !authenticated && !args.listen.ip().is_loopback() && !args.insecure {
        return Err(format!(
            "refusing to serve on {} without caller authentication: configure API keys (AUTHZ_API_KEYS or --api-keys-file), listen on a loopback address, or pass --insecure (AUTHZ_INSECURE=true)",
            args.listen
        ));
    }
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let metrics = authz::metrics::Metrics::with_options(&authz::metrics::MetricsOptions {
            top_tenants: args.metrics_top_tenants,
        })
        .map_err(|e| format!("cannot set up metrics: {e}"))?;
        metrics.build_info(&catalog.name, &catalog.version);
        metrics.max_staleness(args.max_staleness);
        let decision_log = args
            .decision_log
            .as_deref()
            .map(|target| {
                authz::decisions::DecisionLog::open(
                    authz::decisions::Target::parse(target),
                    args.decision_log_sample,
                    &args.decision_log_mask,
                    metrics.decision_log(),
                )
            })
            .transpose()?;
        let opened = open_store(
            StoreConfig::from_args(&args, metrics.clone()),
            catalog.clone(),
        )
        .await?;
        let (store, kind) = (opened.store(), opened.kind());
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            listen = %args.listen,
            catalog = %catalog.name,
            catalog_version = %catalog.version,
            fingerprint = %catalog.fingerprint,
            store = kind,
            max_staleness = %authz::config::format_duration(args.max_staleness),
            authenticated,
            decision_log = args.decision_log.as_deref(),
            "authzd serving"
        );
        // In JSON logs the configuration is an object (see telemetry::EMBEDDED_JSON_FIELD).
        tracing::info!(config = %authz::config::redacted(&args), "effective configuration");
        if !authenticated {
            tracing::warn!("no API keys configured: callers are not authenticated and act as operators");
        } else if mutual_tls && client_roles.is_none() && keys.is_empty() && args.api_keys_file.is_none() {
            tracing::warn!("mutual TLS without API keys or --tls-client-roles: every client the CA vouches for acts as an operator");
        }
        if let Some(tls) = &tls {
            metrics.tls_certificate_expiry(tls.not_after());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            match tls.validity_warning(now) {
                Some(warning) => tracing::warn!(not_after = tls.not_after(), "{warning}"),
                None => tracing::info!(not_after = tls.not_after(), mutual = tls.mutual(), "serving TLS"),
            }
        }
        let keys = Arc::new(keys);
        tokio::spawn(reload_credentials(
            keys.clone(),
            client_roles.clone(),
            decision_log.clone(),
        ));
        let app = Arc::new(Authz::new(catalog, store).with_max_batch(args.max_batch));
        if let Some(addr) = args.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
            tracing::info!(%addr, "metrics at /metrics");
            let (m, a) = (metrics.clone(), app.clone());
            tokio::spawn(async move {
                if let Err(e) = authz::metrics::serve(listener, m, a).await {
                    tracing::error!(error = %e, "metrics endpoint stopped");
                }
            });
        }
        let mut connections = args.connections();
        connections.max_connections =
            fit_open_file_limit(connections.max_connections, args.db_pool_size + FD_RESERVE);
        let options = ServerOptions {
            keys: Some(keys),
            max_concurrent: args.max_concurrent_requests,
            request_timeout: args.request_timeout,
            max_message_bytes: args.max_message_bytes,
            metrics: Some(metrics),
            tls,
            client_roles,
            connections,
            watch: args.watch(),
            decision_log: decision_log.clone(),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut draining = stop_rx.clone();
        let server = authz::server::run(listener, app, options, async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
        });
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let grace = args.shutdown_grace;
        tokio::select! {
            result = server => result.map_err(|e| e.to_string())?,
            () = async {
                let _ = draining.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(?grace, "shutdown grace period over; exiting with requests still in flight"),
        }
        if let Some(log) = &decision_log {
            log.flush(std::time::Duration::from_secs(5));
        }
        tracing::info!("authzd stopped");
        telemetry.shutdown();
        Ok(())
    })
}

/// File descriptors kept aside from client connections (besides the database pool): the
/// listeners, the change listener's connection, the metrics endpoint, files read at run time.
const FD_RESERVE: usize = 64;

/// Raises the open-file soft limit (up to the hard limit) to what `max_connections` plus
/// `reserve` need, and returns the connection cap that fits under the limit in force: past the
/// limit accepts would fail and new clients time out, where the cap refuses them at once and
/// says so.
#[cfg(unix)]
fn fit_open_file_limit(max_connections: usize, reserve: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = u64::try_from(max_connections.saturating_add(reserve)).unwrap_or(u64::MAX);
    let limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else {
        return max_connections;
    };
    if soft >= wanted {
        return max_connections;
    }
    let target = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    let soft = if target > soft && setrlimit(Resource::Nofile, raised).is_ok() {
        tracing::info!(
            from = soft,
            to = target,
            "raised the open-file limit for --max-connections"
        );
        target
    } else {
        soft
    };
    if soft >= wanted {
        return max_connections;
    }
    let fits = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve)
        .max(1);
    tracing::warn!(
        open_file_limit = soft,
        max_connections,
        serving = fits,
        "the open-file limit is too low for --max-connections; serving at most {fits} connections: raise the limit (ulimit -n, systemd LimitNOFILE, the container runtime's nofile)"
    );
    fits
}

#[cfg(not(unix))]
fn fit_open_file_limit(max_connections: usize, _reserve: usize) -> usize {
    max_connections
}

/// A file re-read on SIGHUP and when it changes; a bad file keeps what is in force.
struct Reloadable {
    what: &'static str,
    file: Option<std::path::PathBuf>,
    reload: Box<dyn Fn() -> Result<usize, String> + Send>,
    modified: Option<std::time::SystemTime>,
}

impl Reloadable {
    fn modified(&self) -> Option<std::time::SystemTime> {
        self.file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
    }

    fn reload(&self, reason: &str) {
        match (self.reload)() {
            Ok(n) => tracing::info!(entries = n, reason, "{} reloaded", self.what),
            Err(e) => {
                tracing::error!(error = %e, reason, "{} not reloaded; the previous ones stay in force", self.what)
            }
        }
    }
}

/// Re-reads the API keys and the client roles on SIGHUP and when their files change; reopens
/// the decision log file on SIGHUP (after log rotation).
async fn reload_credentials(
    keys: Arc<Keys>,
    client_roles: Option<Arc<ClientRoles>>,
    decision_log: Option<Arc<authz::decisions::DecisionLog>>,
) {
    let mut watched = vec![Reloadable {
        what: "API keys",
        file: keys.file().cloned(),
        reload: Box::new(move || keys.reload()),
        modified: None,
    }];
    if let Some(roles) = client_roles {
        watched.push(Reloadable {
            what: "client certificate roles",
            file: Some(roles.file().to_path_buf()),
            reload: Box::new(move || roles.reload()),
            modified: None,
        });
    }
    for w in &mut watched {
        w.modified = w.modified();
    }
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            () = hangup => {
                for w in &watched {
                    w.reload("SIGHUP");
                }
                if let Some(log) = &decision_log {
                    log.reopen();
                }
            }
            _ = tick.tick() => {
                for w in &mut watched {
                    let now = w.modified();
                    if now != w.modified {
                        w.modified = now;
                        w.reload("file changed");
                    }
                }
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn migrate(args: &MigrateArgs) -> Result<(), String> {
    let _telemetry = init_logging(LogFormat::Text)?;
    let catalog = Arc::new(load_catalog(None)?);
    runtime()?.block_on(async {
        let store = PostgresStore::new(catalog, &PgOptions::new(&args.database_url))
            .map_err(|e| e.to_string())?;
        let applied = store
            .migrate()
            .await
            .map_err(|e| format!("migration failed: {e}"))?;
        let version = store.schema_version().await.map_err(|e| e.to_string())?;
        if applied.is_empty() {
            println!("schema is up to date at version {version}");
        } else {
            println!("applied migrations {applied:?}; schema is at version {version}");
        }
        Ok(())
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!(
        "shutdown signal received; ending Watch streams and draining in-flight requests"
    );
}
