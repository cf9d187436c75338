//! The command line: `authzd [serve]`, `authzd catalog check FILE`. Every serve option also
//! reads an `AUTHZ_*` environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Parses `250ms`, `5s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 250ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} has unknown unit {unit:?}; use ms, s or m")),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "authzd",
    version,
    about = "Permission-group authorization service (gRPC)"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for `serve`, which runs when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve AuthzService and AdminService over gRPC (the default).
    Serve(Box<ServeArgs>),
    /// Apply the embedded schema migrations to the database, then exit.
    Migrate(MigrateArgs),
    /// Catalog tools.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Postgres URL, e.g. postgres://authz@db:5432/authz.
    #[arg(long, env = "AUTHZ_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Validate a catalog file and print a summary; exits non-zero with the error otherwise.
    Check {
        /// The catalog file (TOML).
        file: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to serve gRPC on.
    #[arg(long, env = "AUTHZ_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Catalog file; the built-in Maestra catalog when not given.
    #[arg(long, env = "AUTHZ_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Allow a non-loopback listen address without caller authentication.
    #[arg(long, env = "AUTHZ_INSECURE")]
    pub insecure: bool,
    /// API keys as comma-separated `role:key` (roles: check, admin, operator). Never logged.
    #[arg(long, env = "AUTHZ_API_KEYS", hide_env_values = true, hide = true)]
    pub api_keys: Option<String>,
    /// A file of `role:key` lines (`#` comments); re-read on SIGHUP and when it changes.
    #[arg(long, env = "AUTHZ_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Requests served at once; more are refused at once with RESOURCE_EXHAUSTED.
    #[arg(long, env = "AUTHZ_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// Deadline of each request (DEADLINE_EXCEEDED past it).
    #[arg(long, env = "AUTHZ_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Largest request or response message, in bytes.
    #[arg(long, env = "AUTHZ_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Most items in one BatchCheck.
    #[arg(long, env = "AUTHZ_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// After SIGTERM, how long in-flight requests may take before the process exits anyway.
    #[arg(long, env = "AUTHZ_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Postgres URL (e.g. postgres://authz@db:5432/authz). Without it the embedded in-memory
    /// store is used: nothing survives a restart.
    #[arg(long, env = "AUTHZ_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Apply pending schema migrations at start.
    #[arg(long, env = "AUTHZ_MIGRATE")]
    pub migrate: bool,
    /// Database connections in the pool (the change listener has one more of its own).
    #[arg(long, env = "AUTHZ_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
    /// Longest a database statement may run.
    #[arg(long, env = "AUTHZ_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,
    /// Longest wait for a database connection.
    #[arg(long, env = "AUTHZ_DB_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_connect_timeout: Duration,
    /// Longest the cache may lag the database: past it (listener lost) checks bypass the cache
    /// and read the database, or fail with UNAVAILABLE.
    #[arg(long, env = "AUTHZ_MAX_STALENESS", default_value = "5s", value_parser = parse_duration)]
    pub max_staleness: Duration,
    /// Memory bound of the cache, in MiB.
    #[arg(long, env = "AUTHZ_CACHE_MAX_MIB", default_value_t = 256)]
    pub cache_max_mib: u64,
    /// Cache entries are reloaded after this long whatever happened (a safety net).
    #[arg(long, env = "AUTHZ_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    pub cache_ttl: Duration,
    /// How often the change listener checks its connection with a heartbeat NOTIFY.
    #[arg(long, env = "AUTHZ_HEARTBEAT_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "AUTHZ_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "AUTHZ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("fast").is_err());
    }
}
