//! The command line: `authzd [serve]`, `authzd catalog check FILE`, `authzd catalog test
//! CATALOG TESTS`. Every serve option also reads an `AUTHZ_*` environment variable.
//!
//! Longer than most: every option is declared here once, with its help text and environment
//! variable, and the last quarter is its unit tests.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why the command line could not be read: clap's own error (usage, `--help`, `--version`,
/// a bad flag: clap prints and exits), or a configuration file problem, which names the file,
/// the line and the setting.
#[derive(Debug)]
pub enum CliError {
    Clap(clap::Error),
    Config(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Clap(e) => write!(f, "{e}"),
            CliError::Config(e) => f.write_str(e),
        }
    }
}

/// The command line, with the settings of the config file (`--config FILE`, `AUTHZ_CONFIG`)
/// under the flags and the environment. A setting of the file that is not one, or whose value
/// does not parse, is reported with the file, its line and the setting (and the closest
/// setting name for a misspelt one), never as an unknown command-line flag.
pub fn parse_cli(args: Vec<String>) -> Result<Cli, CliError> {
    let (args, file) = with_config_file(args).map_err(CliError::Config)?;
    Cli::try_parse_from(&args).map_err(|e| match file.as_ref().and_then(|f| f.blame(&e)) {
        Some(message) => CliError::Config(message),
        None => CliError::Clap(e),
    })
}

/// Reads the config file named by `--config FILE` / `--config=FILE` / `AUTHZ_CONFIG` and turns
/// each setting into a `--flag=value` argument placed before the real ones, skipping settings
/// whose flag or `AUTHZ_*` variable is given: flags > environment > file > defaults.
pub fn args_with_config_file(args: Vec<String>) -> Result<Vec<String>, String> {
    with_config_file(args).map(|(args, _)| args)
}

/// One setting taken from the config file.
#[derive(Debug)]
struct Setting {
    key: String,
    line: usize,
    /// As the file writes it (`"5 hours"`), for error messages.
    written: String,
    /// The flag it became (`--max-staleness`).
    flag: String,
}

/// The config file's settings that were turned into flags.
#[derive(Debug)]
struct ConfigFile {
    path: String,
    settings: Vec<Setting>,
}

impl ConfigFile {
    /// The file's account of a parse error that concerns one of its settings.
    fn blame(&self, e: &clap::Error) -> Option<String> {
        use clap::error::{ContextKind, ContextValue};
        let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else {
            return None;
        };
        let flag = arg.split([' ', '=']).next()?;
        let setting = self.settings.iter().find(|s| s.flag == flag)?;
        let reason = match (std::error::Error::source(e), e.get(ContextKind::ValidValue)) {
            (Some(source), _) => source.to_string(),
            (None, Some(ContextValue::Strings(valid))) => {
                format!("use one of: {}", valid.join(", "))
            }
            _ => e
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned(),
        };
        Some(format!(
            "config file {} line {}: `{} = {}`: {reason}",
            self.path, setting.line, setting.key, setting.written
        ))
    }
}

/// Each serve setting's config-file name, and whether it is a switch (`insecure = true`)
/// rather than a setting that takes a value.
fn settings() -> Vec<(String, bool)> {
    use clap::Args as _;
    let command = ServeArgs::augment_args(clap::Command::new("authzd"));
    command
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?, !a.get_action().takes_values())))
        .filter(|(l, _)| !matches!(*l, "config" | "help" | "version"))
        .map(|(l, switch)| (l.replace('-', "_"), switch))
        .collect()
}

/// The line (from 1) of each top-level key of a TOML document.
fn key_lines(text: &str) -> std::collections::HashMap<String, usize> {
    let Ok(table) = toml::de::DeTable::parse(text) else {
        return std::collections::HashMap::new();
    };
    table
        .get_ref()
        .iter()
        .map(|(k, _)| {
            let line = text[..k.span().start.min(text.len())].matches('\n').count() + 1;
            (k.get_ref().to_string(), line)
        })
        .collect()
}

fn with_config_file(args: Vec<String>) -> Result<(Vec<String>, Option<ConfigFile>), String> {
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
        return Ok((args, None));
    };
    // The file holds serve settings: `migrate` and `catalog` take their own flags (and the
    // environment), so an AUTHZ_CONFIG set for the server does not break them.
    if args
        .get(1)
        .is_some_and(|a| !a.starts_with('-') && a != "serve")
    {
        return Ok((args, None));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read config file {path}: {e}"))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("config file {path}: {}", e.to_string().trim_end()))?;
    let lines = key_lines(&text);
    let settings = settings();
    let known: Vec<String> = settings.iter().map(|(name, _)| name.clone()).collect();
    let mut file = ConfigFile {
        path: path.clone(),
        settings: Vec::new(),
    };
    let mut injected = Vec::new();
    for (key, value) in table {
        let line = lines.get(&key).copied().unwrap_or(0);
        let place = format!("config file {path} line {line}");
        if !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "{place}: {key:?} is not a setting name (write them like `max_staleness`)"
            ));
        }
        if !known.contains(&key) {
            let hint = match authz_core::key::closest(&key, known.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`?"),
                None => "settings are named like the flags (`max_staleness` for --max-staleness); `authzd serve --help` lists them".to_owned(),
            };
            return Err(format!("{place}: unknown setting `{key}`; {hint}"));
        }
        let switch = settings
            .iter()
            .any(|(name, switch)| *name == key && *switch);
        match (&value, switch) {
            (toml::Value::Boolean(_), false) => {
                return Err(format!(
                    "{place}: `{key} = {value}`: `{key}` takes a value, not true or false"
                ));
            }
            (v, true) if !v.is_bool() => {
                return Err(format!(
                    "{place}: `{key} = {v}`: `{key}` is a switch: write `{key} = true` or `{key} = false`"
                ));
            }
            _ => {}
        }
        let flag = format!("--{}", key.replace('_', "-"));
        let env = format!("AUTHZ_{}", key.to_ascii_uppercase());
        let given = args
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if given || std::env::var_os(&env).is_some() {
            continue;
        }
        let written = value.to_string();
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(true) => {
                file.settings.push(Setting {
                    key,
                    line,
                    written,
                    flag: flag.clone(),
                });
                injected.push(flag);
                continue;
            }
            toml::Value::Boolean(false) => continue,
            toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => items
                .iter()
                .filter_map(toml::Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            other => {
                return Err(format!(
                    "{place}: `{key}` must be a string, number, boolean or list of strings, not {other}"
                ));
            }
        };
        injected.push(format!("{flag}={value}"));
        file.settings.push(Setting {
            key,
            line,
            written,
            flag,
        });
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
    Ok((out, Some(file)))
}

/// The effective serve configuration for the start-up log, as a JSON object: every setting by
/// its config-file name, durations written as the flags take them (`5s`), secrets redacted
/// (API keys, the database password).
pub fn effective(args: &ServeArgs) -> serde_json::Value {
    serde_json::to_value(args).unwrap_or_default()
}

/// [`effective`] as one line of JSON.
pub fn redacted(args: &ServeArgs) -> String {
    effective(args).to_string()
}

fn redact_keys<S: serde::Serializer>(keys: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match keys {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

fn redact_database_url<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_str(&redact_url(url)),
        None => s.serialize_none(),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`; a `password=`
/// parameter (in the query, or in the `key=value` form) is redacted too. When in doubt it
/// redacts more: the last `@` ends the user information, so a password holding one is hidden
/// whole.
fn redact_url(url: &str) -> String {
    let url = redact_password_parameter(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:<redacted>@{}", &rest[at + 1..]),
            None => url.clone(),
        },
        None => url.clone(),
    }
}

/// `password=VALUE` → `password=<redacted>`, VALUE running to `&`, whitespace or the end.
fn redact_password_parameter(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("password=") {
        let (before, after) = rest.split_at(i + "password=".len());
        out.push_str(before);
        out.push_str("<redacted>");
        let end = after
            .find(|c: char| c == '&' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn duration_text<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// A duration as the flags take it: `2m`, `5s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms > 0 && ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
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

#[derive(Args, Debug, Clone, serde::Serialize)]
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
    #[serde(serialize_with = "redact_keys")]
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
    #[serde(serialize_with = "duration_text")]
    pub handshake_timeout: Duration,
    /// A connection with no open stream (RPC or Watch) for this long is closed; 0 keeps it.
    #[arg(long, env = "AUTHZ_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub idle_timeout: Duration,
    /// HTTP/2 PING a connection that sent nothing for this long; 0 sends none.
    #[arg(long, env = "AUTHZ_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub http2_keepalive_interval: Duration,
    /// A PING not answered within this closes the connection.
    #[arg(long, env = "AUTHZ_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    #[serde(serialize_with = "duration_text")]
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
    #[serde(serialize_with = "duration_text")]
    pub request_timeout: Duration,
    /// Largest request or response message, in bytes.
    #[arg(long, env = "AUTHZ_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Most items in one BatchCheck.
    #[arg(long, env = "AUTHZ_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// After SIGTERM, how long in-flight requests may take before the process exits anyway.
    #[arg(long, env = "AUTHZ_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub shutdown_grace: Duration,
    /// Postgres URL (e.g. postgres://authz@db:5432/authz). Without it the embedded in-memory
    /// store is used: nothing survives a restart.
    #[arg(long, env = "AUTHZ_DATABASE_URL", hide_env_values = true)]
    #[serde(serialize_with = "redact_database_url")]
    pub database_url: Option<String>,
    /// Apply pending schema migrations at start.
    #[arg(long, env = "AUTHZ_MIGRATE")]
    pub migrate: bool,
    /// Database connections in the pool (the change listener has one more of its own).
    #[arg(long, env = "AUTHZ_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
    /// Longest a database statement may run.
    #[arg(long, env = "AUTHZ_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub db_statement_timeout: Duration,
    /// Longest wait for a database connection.
    #[arg(long, env = "AUTHZ_DB_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub db_connect_timeout: Duration,
    /// Longest the cache may lag the database: past it (listener lost) checks bypass the cache
    /// and read the database, or fail with UNAVAILABLE.
    #[arg(long, env = "AUTHZ_MAX_STALENESS", default_value = "5s", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub max_staleness: Duration,
    /// Memory bound of the cache, in MiB.
    #[arg(long, env = "AUTHZ_CACHE_MAX_MIB", default_value_t = 256)]
    pub cache_max_mib: u64,
    /// Cache entries are reloaded after this long whatever happened (a safety net).
    #[arg(long, env = "AUTHZ_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub cache_ttl: Duration,
    /// How often the change listener checks its connection with a heartbeat NOTIFY.
    #[arg(long, env = "AUTHZ_HEARTBEAT_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    #[serde(serialize_with = "duration_text")]
    pub heartbeat_interval: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "AUTHZ_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Export per-tenant request series for this many of the busiest tenants (ranked by recent
    /// traffic at each scrape); 0 exports none. Bounds the series per replica whatever tenant
    /// ids callers send.
    #[arg(long, env = "AUTHZ_METRICS_TOP_TENANTS", default_value_t = 10)]
    pub metrics_top_tenants: usize,
    /// Log format.
    #[arg(long, env = "AUTHZ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Write a decision log (one JSON line per Check or BatchCheck item decided: who, what,
    /// on which resource, allowed or not, at which revision) to `stdout`, `stderr` or a file
    /// (appended; reopened on SIGHUP for log rotation). Off by default.
    #[arg(long, env = "AUTHZ_DECISION_LOG", value_name = "stdout|stderr|FILE")]
    pub decision_log: Option<String>,
    /// Fraction of decisions the decision log writes, above 0 and at most 1 (every decision):
    /// 0.1 writes one decision in ten, spread evenly.
    #[arg(long, env = "AUTHZ_DECISION_LOG_SAMPLE", default_value_t = 1.0, value_parser = sample_rate)]
    pub decision_log_sample: f64,
    /// Fields the decision log masks (writes as `***`): any of `user`, `resource`, `context`,
    /// comma-separated.
    #[arg(
        long,
        env = "AUTHZ_DECISION_LOG_MASK",
        value_delimiter = ',',
        value_enum
    )]
    pub decision_log_mask: Vec<MaskedField>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A field of the decision log that can be masked.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskedField {
    /// The user the check was about.
    User,
    /// The resource id (its type stays).
    Resource,
    /// The context flags' values.
    Context,
}

/// A sampling rate: above 0, at most 1.
fn sample_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        Ok(_) => Err("must be above 0 and at most 1 (1 writes every decision)".to_owned()),
        Err(_) => Err(format!(
            "{s:?} is not a number; write e.g. 0.1 for one decision in ten"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The long names of the serve settings (`max_staleness`), as a config file spells them.
    fn setting_names() -> Vec<String> {
        settings().into_iter().map(|(name, _)| name).collect()
    }

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
        assert_eq!(
            redact_url("host=db password=x user=u"),
            "host=db password=<redacted> user=u"
        );
        assert_eq!(
            redact_url("postgres://u@h/d?sslmode=require&password=s3cret&x=1"),
            "postgres://u@h/d?sslmode=require&password=<redacted>&x=1"
        );
        // A password with an `@` in it is hidden whole.
        assert_eq!(
            redact_url("postgres://u:p@ss@h/d"),
            "postgres://u:<redacted>@h/d"
        );
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
    fn the_effective_configuration_is_an_object_of_settings() {
        let cli = Cli::parse_from([
            "authzd",
            "--max-staleness",
            "2500ms",
            "--cache-ttl",
            "2m",
            "--decision-log-mask",
            "user,context",
        ]);
        let v = effective(&cli.serve);
        assert_eq!(v["listen"], "127.0.0.1:50051");
        assert_eq!(v["max_staleness"], "2500ms");
        assert_eq!(v["cache_ttl"], "2m");
        assert_eq!(v["request_timeout"], "10s");
        assert_eq!(v["log_format"], "text");
        assert_eq!(v["database_url"], serde_json::Value::Null);
        assert_eq!(
            v["decision_log_mask"],
            serde_json::json!(["user", "context"])
        );
        // Every setting a config file may name is there, under that name.
        let object = v.as_object().unwrap();
        for name in setting_names() {
            assert!(object.contains_key(&name), "{name} missing from {v}");
        }
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(90_000)), "90s");
    }

    #[test]
    fn config_file_errors_name_the_file_line_and_setting() {
        let dir = std::env::temp_dir().join(format!("authzd-config-errors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("authzd.toml");
        let f = file.display().to_string();
        let parse = |text: &str| {
            std::fs::write(&file, text).unwrap();
            match parse_cli(vec!["authzd".into(), "--config".into(), f.clone()]) {
                Ok(_) => panic!("{text:?} was accepted"),
                Err(e) => e.to_string(),
            }
        };
        assert_eq!(
            parse("listen = \"127.0.0.1:1\"\n# comment\nmax_stalenes = \"5s\"\n"),
            format!(
                "config file {f} line 3: unknown setting `max_stalenes`; did you mean `max_staleness`?"
            )
        );
        assert!(
            parse("zzz_qqq = 1\n")
                .contains("line 1: unknown setting `zzz_qqq`; settings are named like the flags"),
        );
        assert_eq!(
            parse("\nmax_staleness = \"5 hours\"\n"),
            format!(
                "config file {f} line 2: `max_staleness = \"5 hours\"`: \"5 hours\" has unknown unit \" hours\"; use ms, s or m"
            )
        );
        let err = parse("log_format = \"yaml\"\n");
        assert!(
            err.starts_with(&format!(
                "config file {f} line 1: `log_format = \"yaml\"`: "
            )),
            "{err}"
        );
        assert!(err.contains("text") && err.contains("json"), "{err}");
        let err = parse("max_batch = \"lots\"\n");
        assert!(
            err.starts_with(&format!("config file {f} line 1: `max_batch = \"lots\"`: ")),
            "{err}"
        );
        assert_eq!(
            parse("insecure = 3\n"),
            format!(
                "config file {f} line 1: `insecure = 3`: `insecure` is a switch: write `insecure = true` or `insecure = false`"
            )
        );
        assert_eq!(
            parse("max_batch = true\n"),
            format!(
                "config file {f} line 1: `max_batch = true`: `max_batch` takes a value, not true or false"
            )
        );
        let err = parse("listen = \n");
        assert!(err.starts_with(&format!("config file {f}: ")), "{err}");
        assert!(err.contains("line 1"), "{err}");
        // A bad flag on the command line is still clap's to report.
        std::fs::write(&file, "max_batch = 5\n").unwrap();
        assert!(matches!(
            parse_cli(vec![
                "authzd".into(),
                "--config".into(),
                f.clone(),
                "--max-batch".into(),
                "x".into()
            ]),
            Err(CliError::Clap(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
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
        // Other commands do not read it (a server's AUTHZ_CONFIG must not break `migrate`).
        let migrate: Vec<String> = ["authzd", "migrate", "--config", &f]
            .map(String::from)
            .to_vec();
        assert_eq!(args_with_config_file(migrate.clone()).unwrap(), migrate);
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
