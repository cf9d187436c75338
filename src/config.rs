//! The command line: `authzd [serve]`, `authzd catalog check FILE`. Every serve option also
//! reads an `AUTHZ_*` environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

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
    Serve(ServeArgs),
    /// Catalog tools.
    #[command(subcommand)]
    Catalog(CatalogCommand),
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
    /// Log format.
    #[arg(long, env = "AUTHZ_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}
