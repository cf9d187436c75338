//! The command line: `authzd [serve]`, `authzd catalog check FILE`, `authzd catalog test
//! CATALOG TESTS`. Every serve option also reads an `AUTHZ_*` environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Reads the config file named by `--config FILE` / `--config=FILE` / `AUTHZ_CONFIG` and turns
/// each setting into a `--flag=value` argument placed before the real ones, skipping settings
/// whose flag or `AUTHZ_*` variable is given: flags > environment > file > defaults.
pub fn args_with_config_file(args: Vec<String>) -> Result<Vec<String>, String> {
    let path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1].clone())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_owned))
        })
        .or_else(|| std::env::var("AUTHZ_CONFIG").ok());
    let Some(path) = path else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read config file {path}: {e}"))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("config file {path}: {e}"))?;
    let mut injected = Vec::new();
    for (key, value) in table {
        if !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "config file {path}: {key:?} is not a setting name (write them like `max_staleness`)"
            ));
        }
        let flag = format!("--{}", key.replace('_', "-"));
        let env = format!("AUTHZ_{}", key.to_ascii_uppercase());
        let given = args
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if given || std::env::var_os(&env).is_some() {
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(true) => {
                injected.push(flag);
                continue;
            }
            toml::Value::Boolean(false) => continue,
            other => {
                return Err(format!(
                    "config file {path}: `{key}` must be a string, number or boolean, not {other}"
                ));
            }
        };
        injected.push(format!("{flag}={value}"));
    }
    // Settings go after the subcommand (if any) and before the real flags.
    let mut out = Vec::with_capacity(args.len() + injected.len());
    let mut rest = args.into_iter();
    out.extend(rest.next());
    let mut rest: Vec<String> = rest.collect();
    if rest.first().is_some_and(|a| a == "serve") {
        out.push(rest.remove(0));
    }
    out.extend(injected);
    out.extend(rest);
    Ok(out)
}

/// The effective serve configuration for the start-up log, secrets redacted.
pub fn redacted(args: &ServeArgs) -> String {
    let mut shown = args.clone();
    if shown.api_keys.is_some() {
        shown.api_keys = Some("<redacted>".to_owned());
    }
    shown.database_url = shown.database_url.as_deref().map(redact_url);
    format!("{shown:?}")
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
            None => url.to_owned(),
        },
        None if rest.contains("password=") => "<redacted>".to_owned(),
        None => url.to_owned(),
    }
}

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

/// A count of at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// A duration longer than zero.
fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be longer than 0".to_owned());
    }
    Ok(d)
}

impl ServeArgs {
    /// The connection settings; zero durations switch the idle timeout and pings off.
    pub fn connections(&self) -> crate::transport::ConnectionOptions {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        crate::transport::ConnectionOptions {
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: nonzero(self.idle_timeout),
            keepalive_interval: nonzero(self.http2_keepalive_interval),
            keepalive_timeout: self.http2_keepalive_timeout,
            max_streams_per_connection: self.max_streams_per_connection,
        }
    }

    /// The Watch stream limits.
    pub fn watch(&self) -> crate::grpc::watch::WatchOptions {
        crate::grpc::watch::WatchOptions {
            max_streams: self.max_watch_streams,
            max_streams_per_tenant: self.max_watch_streams_per_tenant,
            ..crate::grpc::watch::WatchOptions::default()
        }
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
    /// Run a test file of fixtures and expected decisions, effective permissions and admin
    /// refusals against a catalog. Exits 0 when every case passes, 1 when one fails, 2 when the
    /// catalog or the test file can't be used (nothing is judged then).
    Test(CatalogTestArgs),
    /// What changes between two catalogs (`diff OLD NEW`), or between the catalog a database
    /// records and a new one (`diff --database-url URL NEW`), with a preview of every user who
    /// gains or loses a permission or role. Exits 0 when the change is compatible, 3 when it
    /// needs `catalog apply`, 1 on error.
    Diff {
        /// OLD NEW, or NEW alone with --database-url.
        #[arg(num_args = 1..=2, required = true, value_name = "CATALOG")]
        files: Vec<PathBuf>,
        /// Compare with the catalog this database records, and preview its users (with one
        /// catalog named, AUTHZ_DATABASE_URL when the flag is not given).
        #[arg(long)]
        database_url: Option<String>,
        #[command(flatten)]
        mappings: MappingArgs,
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Carry out a catalog change on a database, incompatible ones included, in one
    /// transaction: stored data rewritten by the declared mappings, the catalog recorded, one
    /// audit event per tenant, every replica notified. Refuses (exit 3, nothing changed) while
    /// a conflict has no mapping. `--dry-run` is the diff.
    Apply {
        /// The new catalog file.
        file: PathBuf,
        #[arg(long, env = "AUTHZ_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[command(flatten)]
        mappings: MappingArgs,
        /// Show what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// The catalogs a database has been served with, newest first.
    History {
        #[arg(long, env = "AUTHZ_DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Print the file of this record instead (e.g. to roll back onto it).
        #[arg(long, value_name = "RECORD")]
        show: Option<i64>,
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
}

/// How `catalog apply` carries stored data over an incompatible change.
#[derive(Args, Debug, Clone, Default)]
pub struct MappingArgs {
    /// Move the members of a removed system group to another group (repeatable).
    #[arg(long = "move-members", value_name = "FROM=TO")]
    pub move_members: Vec<String>,
    /// Drop the memberships of a removed system group (repeatable).
    #[arg(long = "drop-members", value_name = "GROUP")]
    pub drop_members: Vec<String>,
    /// Drop a stored permission the new catalog does not have, everywhere (repeatable).
    #[arg(long = "drop-permission", value_name = "KEY")]
    pub drop_permissions: Vec<String>,
    /// Give a custom group another key, when a new system group takes its key (repeatable).
    #[arg(long = "rename-group", value_name = "FROM=TO")]
    pub rename_groups: Vec<String>,
    /// Drop the scoped grants and restrictions of a removed resource type (repeatable).
    #[arg(long = "drop-resource-type", value_name = "TYPE")]
    pub drop_resource_types: Vec<String>,
}

impl MappingArgs {
    pub fn mappings(&self) -> Result<authz_core::evolve::Mappings, String> {
        let pairs = |flag: &str, items: &[String]| {
            let mut out = std::collections::BTreeMap::new();
            for item in items {
                let Some((a, b)) = item
                    .split_once('=')
                    .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                else {
                    return Err(format!("--{flag} {item:?}: expected FROM=TO"));
                };
                if let Some(before) = out.insert(a.to_owned(), b.to_owned()) {
                    return Err(format!(
                        "--{flag} {a}={before} and --{flag} {a}={b}: `{a}` is given twice; say one"
                    ));
                }
            }
            Ok(out)
        };
        Ok(authz_core::evolve::Mappings {
            move_members: pairs("move-members", &self.move_members)?,
            drop_members: self.drop_members.iter().cloned().collect(),
            drop_permissions: self.drop_permissions.iter().cloned().collect(),
            rename_groups: pairs("rename-group", &self.rename_groups)?,
            drop_resource_types: self.drop_resource_types.iter().cloned().collect(),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct CatalogTestArgs {
    /// The catalog file (TOML).
    pub catalog: PathBuf,
    /// The test file (TOML); its format is in docs/catalog.md.
    pub tests: PathBuf,
    /// How to print the results.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// List the cases that pass too.
    #[arg(long, short)]
    pub verbose: bool,
}

/// How a catalog command prints its results.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document, for scripts.
    Json,
}

#[derive(Args, Debug, Clone)]
#[command(args_override_self = true)]
pub struct ServeArgs {
    /// A TOML file of settings named like the flags (`listen = "0.0.0.0:50051"`,
    /// `max_staleness = "5s"`). Flags and AUTHZ_* variables take precedence over it.
    #[arg(long, env = "AUTHZ_CONFIG")]
    pub config: Option<PathBuf>,
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
    #[arg(long, env = "AUTHZ_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// A file of `role:key` lines (`#` comments); re-read on SIGHUP and when it changes.
    #[arg(long, env = "AUTHZ_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "AUTHZ_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    #[arg(long, env = "AUTHZ_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "AUTHZ_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Roles of client certificates: a file of `role:cn=NAME`, `role:dns=NAME` or
    /// `role:uri=URI` lines (`#` comments). A verified certificate carrying a mapped name needs
    /// no bearer key. Re-read on SIGHUP and when it changes.
    #[arg(long, env = "AUTHZ_TLS_CLIENT_ROLES", requires = "tls_client_ca")]
    pub tls_client_roles: Option<PathBuf>,
    /// Requests served at once; more are refused at once with RESOURCE_EXHAUSTED.
    #[arg(long, env = "AUTHZ_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// Connections open at once; more are closed on arrival, counted and warned about. Kept
    /// under the process's open-file limit.
    #[arg(long, env = "AUTHZ_MAX_CONNECTIONS", default_value_t = 4096, value_parser = positive)]
    pub max_connections: usize,
    /// A new connection must finish its TLS handshake and send the HTTP/2 preface within this,
    /// or it is closed.
    #[arg(long, env = "AUTHZ_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub handshake_timeout: Duration,
    /// A connection with no open stream (RPC or Watch) for this long is closed; 0 keeps it.
    #[arg(long, env = "AUTHZ_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// HTTP/2 PING a connection that sent nothing for this long; 0 sends none.
    #[arg(long, env = "AUTHZ_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,
    /// A PING not answered within this closes the connection.
    #[arg(long, env = "AUTHZ_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http2_keepalive_timeout: Duration,
    /// Concurrent streams a client may open on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, env = "AUTHZ_MAX_STREAMS_PER_CONNECTION", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,
    /// Watch streams open at once on this server; more are refused with RESOURCE_EXHAUSTED.
    /// They are not counted in --max-concurrent-requests.
    #[arg(long, env = "AUTHZ_MAX_WATCH_STREAMS", default_value_t = 1000, value_parser = positive)]
    pub max_watch_streams: usize,
    /// Watch streams one tenant may have open on this server.
    #[arg(long, env = "AUTHZ_MAX_WATCH_STREAMS_PER_TENANT", default_value_t = 100, value_parser = positive)]
    pub max_watch_streams_per_tenant: usize,
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
    fn secrets_are_redacted() {
        assert_eq!(
            redact_url("postgres://authz:s3cret@db:5432/authz"),
            "postgres://authz:<redacted>@db:5432/authz"
        );
        assert_eq!(
            redact_url("postgres://authz@db/authz"),
            "postgres://authz@db/authz"
        );
        assert_eq!(redact_url("host=db password=x"), "<redacted>");
        let cli = Cli::parse_from([
            "authzd",
            "--database-url",
            "postgres://u:pw@h/d",
            "--api-keys",
            "check:0123456789abcdef",
        ]);
        let shown = redacted(&cli.serve);
        assert!(
            !shown.contains("pw@") && !shown.contains("0123456789abcdef"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn config_file_settings_yield_to_flags() {
        let dir = std::env::temp_dir().join(format!("authzd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("authzd.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:7000\"\nmax_batch = 50\ninsecure = true\nlog_format = \"json\"\n",
        )
        .unwrap();
        let f = file.display().to_string();
        let args = args_with_config_file(
            ["authzd", "serve", "--config", &f, "--max-batch", "70"]
                .map(String::from)
                .to_vec(),
        )
        .unwrap();
        let cli = Cli::try_parse_from(&args).unwrap();
        let Some(Command::Serve(serve)) = cli.command else {
            panic!("{args:?}")
        };
        assert_eq!(serve.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(serve.max_batch, 70, "the flag wins over the file");
        assert!(serve.insecure);
        assert_eq!(serve.log_format, LogFormat::Json);
        std::fs::write(&file, "bad-key = 1\n").unwrap();
        assert!(
            args_with_config_file(vec!["authzd".into(), "--config".into(), f.clone()])
                .unwrap_err()
                .contains("not a setting name")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn connection_and_watch_defaults_match_the_library() {
        let cli = Cli::parse_from(["authzd"]);
        let c = cli.serve.connections();
        let d = crate::transport::ConnectionOptions::default();
        assert_eq!(
            (
                c.max_connections,
                c.handshake_timeout,
                c.idle_timeout,
                c.keepalive_interval,
                c.keepalive_timeout,
                c.max_streams_per_connection
            ),
            (
                d.max_connections,
                d.handshake_timeout,
                d.idle_timeout,
                d.keepalive_interval,
                d.keepalive_timeout,
                d.max_streams_per_connection
            )
        );
        let w = cli.serve.watch();
        let dw = crate::grpc::watch::WatchOptions::default();
        assert_eq!(
            (w.max_streams, w.max_streams_per_tenant),
            (dw.max_streams, dw.max_streams_per_tenant)
        );
        let off = Cli::parse_from([
            "authzd",
            "--idle-timeout",
            "0",
            "--http2-keepalive-interval",
            "0",
        ]);
        let c = off.serve.connections();
        assert_eq!((c.idle_timeout, c.keepalive_interval), (None, None));
        for bad in [
            ["--max-connections", "0"],
            ["--max-watch-streams", "0"],
            ["--handshake-timeout", "0"],
            ["--max-streams-per-connection", "0"],
        ] {
            assert!(
                Cli::try_parse_from(["authzd", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
    }

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
