//! The `authzd` binary.

use authz::app::Authz;
use authz::config::{CatalogCommand, Cli, Command, LogFormat, ServeArgs};
use authz::store::memory::MemoryStore;
use authz_core::Catalog;
use clap::Parser;
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Catalog(CatalogCommand::Check { file })) => catalog_check(&file),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authzd: {e}");
            ExitCode::FAILURE
        }
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
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    init_logging(args.log_format);
    let catalog = Arc::new(load_catalog(args.catalog.as_deref())?);
    if !args.listen.ip().is_loopback() && !args.insecure {
        return Err(format!(
            "refusing to serve on {} without caller authentication: listen on a loopback address, or pass --insecure (AUTHZ_INSECURE=true) to accept unauthenticated callers",
            args.listen
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let store = Arc::new(MemoryStore::new(catalog.clone()));
        tracing::info!(
            listen = %args.listen,
            catalog = %catalog.name,
            catalog_version = %catalog.version,
            fingerprint = %catalog.fingerprint,
            store = "memory",
            "authzd serving; callers are not authenticated"
        );
        let app = Arc::new(Authz::new(catalog, store));
        authz::server::run(listener, app, shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("authzd stopped");
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
    tracing::info!("shutdown signal received; draining in-flight requests");
}
