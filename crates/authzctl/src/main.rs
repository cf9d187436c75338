//! `authzctl`: the operator's command line for authz, built on `authz-client`.
//!
//! Exit codes: 0 done (a check allowed), 3 a check denied (or any item of a batch), 1 the
//! call failed (the server's code and message on stderr), 2 bad usage or an unusable file.
//!
//! One file: every subcommand is a short function from parsed arguments to one client call and its
//! output; reading them together shows the command line as a user sees it.

mod files;
mod output;

use authz_client::{Client, Consistency, Revision, Tls, proto};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;
use tokio_stream::StreamExt;

const ALLOWED: u8 = 0;
const FAILED: u8 = 1;
const USAGE: u8 = 2;
const DENIED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "authzctl",
    version,
    about = "The operator's command line for the authz service",
    after_help = "Exit codes: 0 done (allowed), 3 denied, 1 the call failed, 2 bad usage or file.\n\
                  Keys come from AUTHZ_API_KEY or --api-key-file, never from a flag."
)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Args)]
struct Conn {
    /// Replica addresses, comma-separated (host:port or URL); tenants are spread over them.
    #[arg(
        long,
        global = true,
        env = "AUTHZ_SERVER",
        default_value = "http://127.0.0.1:50051",
        value_delimiter = ','
    )]
    server: Vec<String>,
    /// A DNS name whose addresses are the replicas (host:port), instead of --server.
    #[arg(long, global = true, env = "AUTHZ_SERVER_DNS")]
    dns: Option<String>,
    /// A file holding the API key (the key itself only through AUTHZ_API_KEY).
    #[arg(long, global = true, env = "AUTHZ_API_KEY_FILE")]
    api_key_file: Option<std::path::PathBuf>,
    /// The CA certificate (PEM) that signed the server's: connect over TLS.
    #[arg(long, global = true, env = "AUTHZ_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// Connect over TLS, trusting the platform's roots.
    #[arg(long, global = true, env = "AUTHZ_TLS")]
    tls: bool,
    /// A client certificate (PEM) for mutual TLS, with --tls-key.
    #[arg(long, global = true, env = "AUTHZ_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "AUTHZ_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The name to verify the server's certificate for (default: the address's host).
    #[arg(long, global = true, env = "AUTHZ_TLS_DOMAIN")]
    tls_domain: Option<String>,
    /// Deadline of each call: 500ms, 5s, 1m.
    #[arg(long, global = true, env = "AUTHZ_TIMEOUT", default_value = "10s", value_parser = duration)]
    timeout: Duration,
    /// The staff user admin calls are made on behalf of (empty: an operator's call).
    #[arg(long, global = true, env = "AUTHZ_ACTOR")]
    actor: Option<String>,
}

#[derive(Args, Clone)]
struct Target {
    /// A permission key (or alias).
    #[arg(long, short = 'p', group = "target")]
    permission: Option<String>,
    /// A catalog action key.
    #[arg(long, short = 'a', group = "target")]
    action: Option<String>,
    /// An inline expression, e.g. 'edit_flows & (!ctx.multibrand | view_brands)'.
    #[arg(long, short = 'e', group = "target")]
    expression: Option<String>,
}

#[derive(Args, Clone)]
struct Read {
    /// `latency` (the cache), `full` (the database) or a revision token to be at least as
    /// fresh as.
    #[arg(long, value_parser = consistency)]
    consistency: Option<Consistency>,
}

#[derive(Subcommand)]
enum Command {
    /// May USER of TENANT do it? Exit 0 allowed, 3 denied.
    Check {
        tenant: String,
        user: String,
        #[command(flatten)]
        target: Target,
        /// On a resource, TYPE:ID (e.g. folder:f1).
        #[arg(long, short = 'r', value_parser = files::resource)]
        resource: Option<(String, String)>,
        /// A context flag, FLAG=true or FLAG=false (repeat for each).
        #[arg(long, short = 'c', value_parser = files::flag)]
        context: Vec<(String, bool)>,
        /// Say why, in RBAC terms.
        #[arg(long)]
        explain: bool,
        #[command(flatten)]
        read: Read,
    },
    /// Many checks of TENANT from a CSV or JSON file (`-`: standard input). Exit 3 if any is
    /// denied, 1 if any could not be decided.
    Batch {
        tenant: String,
        file: String,
        /// The file's format (default: by its extension; CSV for standard input).
        #[arg(long, value_enum)]
        format: Option<FileFormat>,
        #[command(flatten)]
        read: Read,
    },
    /// What USER holds and where each permission comes from.
    Effective {
        tenant: String,
        user: String,
        #[command(flatten)]
        read: Read,
    },
    /// Which resources of TYPE USER may use PERMISSION on.
    AllowedResources {
        tenant: String,
        user: String,
        permission: String,
        resource_type: String,
        #[command(flatten)]
        read: Read,
    },
    /// The tenant's groups.
    Groups { tenant: String },
    /// One group.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Bulk import of users with their groups (Maestra's columns: user and group system names).
    Import {
        tenant: String,
        /// CSV: user, groups (system names separated by ; , or spaces), and optionally name,
        /// email, permissions. `-`: standard input.
        file: String,
        /// Show what would change; commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The audit log, newest first (with --follow: oldest first, then each change as it
    /// commits).
    Audit {
        tenant: String,
        /// Only events made by this acting user.
        #[arg(long)]
        by: Option<String>,
        /// Only events aimed at this target: group:KEY or user:ID.
        #[arg(long)]
        target: Option<String>,
        /// Only events since this time: 2026-05-20T10:00:00Z or a duration ago (15m, 2h, 7d).
        #[arg(long, value_parser = output::parse_time)]
        since: Option<prost_types::Timestamp>,
        /// Only events before this time.
        #[arg(long, value_parser = output::parse_time)]
        until: Option<prost_types::Timestamp>,
        /// At most this many events (before following).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Keep printing new events as they commit (over Watch).
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// The tenant's committed changes as they happen (resumes by itself).
    Watch {
        tenant: String,
        /// Start after this revision (replaying the changes since).
        #[arg(long)]
        after: Option<String>,
    },
    /// The catalog: `show`, `permissions`, `actions` ask the server; anything else
    /// (`check`, `test`, `diff`, `apply`, `history`) runs `authzd catalog ...`.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum FileFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// A group, its permissions and its members.
    Show { tenant: String, key: String },
    /// Changes a custom group; prints every user who gains or loses something.
    Edit {
        tenant: String,
        key: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// Add a permission (repeat for each).
        #[arg(long = "add", value_name = "PERMISSION")]
        add: Vec<String>,
        /// Remove a permission (repeat for each).
        #[arg(long = "remove", value_name = "PERMISSION")]
        remove: Vec<String>,
        /// Show who would gain or lose what; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Creates a custom group.
    Create {
        tenant: String,
        key: String,
        /// Its display name (default: the key).
        #[arg(long)]
        name: Option<String>,
        /// A permission (repeat for each).
        #[arg(long = "permission", short = 'p')]
        permissions: Vec<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Adds users to a group.
    AddMembers {
        tenant: String,
        key: String,
        #[arg(required = true)]
        users: Vec<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Removes users from a group.
    RemoveMembers {
        tenant: String,
        key: String,
        #[arg(required = true)]
        users: Vec<String>,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Creates a tenant (operator only).
    Create {
        tenant: String,
        /// A name for people (default: the id).
        #[arg(long)]
        name: Option<String>,
    },
    /// Lists tenants (operator only).
    List,
    /// A tenant and its latest revision.
    Show { tenant: String },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// The catalog the server runs with.
    Show,
    /// Its permissions.
    Permissions {
        /// Only this section.
        #[arg(long)]
        section: Option<String>,
    },
    /// Its actions.
    Actions {
        /// Only keys starting with this, e.g. `customers.`.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// `authzd catalog ...`: check, test, diff, apply, history (authzd from AUTHZD, next to
    /// authzctl, or PATH).
    #[command(external_subcommand)]
    Other(Vec<String>),
}

fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration: write 500ms, 5s or 2m");
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    })
}

fn consistency(s: &str) -> Result<Consistency, String> {
    match s {
        "latency" | "minimize_latency" => Ok(Consistency::MinimizeLatency),
        "full" | "fully_consistent" => Ok(Consistency::FullyConsistent),
        token => Revision::parse(token)
            .map(Consistency::AtLeastAsFresh)
            .ok_or_else(|| format!("{s:?}: use latency, full or a revision token (digits)")),
    }
}

/// What a command ends with.
enum Failure {
    /// The call failed (exit 1).
    Call(authz_client::Error),
    /// Bad input (exit 2).
    Usage(String),
}

impl From<authz_client::Error> for Failure {
    fn from(e: authz_client::Error) -> Self {
        Failure::Call(e)
    }
}

impl From<files::FileError> for Failure {
    fn from(e: files::FileError) -> Self {
        Failure::Usage(e.0)
    }
}

type Outcome = Result<u8, Failure>;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.output;
    let code = match run(cli).await {
        Ok(code) => code,
        Err(Failure::Call(e)) => {
            report(format, &e.to_string(), Some(e.code()));
            FAILED
        }
        Err(Failure::Usage(message)) => {
            report(format, &message, None);
            USAGE
        }
    };
    ExitCode::from(code)
}

fn report(format: Format, message: &str, code: Option<tonic::Code>) {
    match format {
        Format::Json => eprintln!(
            "{}",
            json!({"error": message, "code": code.map(authz_client::code_name)})
        ),
        Format::Table => eprintln!("authzctl: {message}"),
    }
}

async fn connect(conn: &Conn) -> Result<Client, Failure> {
    let mut b = Client::builder()
        .timeout(conn.timeout)
        .connect_timeout(conn.timeout.min(Duration::from_secs(5)));
    b = match &conn.dns {
        Some(name) => b.dns(name)?,
        None => b.endpoints(conn.server.iter().filter(|s| !s.is_empty())),
    };
    // The key comes from the environment or a file, never from a flag (flags show in `ps`).
    let key = match &conn.api_key_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| {
                Failure::Usage(format!("cannot read the key file {}: {e}", path.display()))
            })?
            .trim()
            .to_owned(),
        None => std::env::var("AUTHZ_API_KEY").unwrap_or_default(),
    };
    b = b.api_key(key);
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", p.display())))
    };
    if conn.tls || conn.tls_ca.is_some() || conn.tls_cert.is_some() {
        let mut tls = Tls::new();
        if let Some(ca) = &conn.tls_ca {
            tls = tls.ca_certificate(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&conn.tls_cert, &conn.tls_key) {
            tls = tls.identity(read(cert)?, read(key)?);
        }
        if let Some(d) = &conn.tls_domain {
            tls = tls.domain_name(d);
        }
        b = b.tls(tls);
    }
    Ok(b.connect_lazy().await?)
}

async fn run(cli: Cli) -> Outcome {
    let json = cli.output == Format::Json;
    if let Command::Catalog(CatalogCommand::Other(args)) = &cli.command {
        return passthrough(args).await;
    }
    let client = connect(&cli.conn).await?;
    let admin = || {
        let a = client.admin().timeout(cli.conn.timeout);
        match &cli.conn.actor {
            Some(actor) => a.as_actor(actor),
            None => a,
        }
    };
    match cli.command {
        Command::Check {
            tenant,
            user,
            target,
            resource,
            context,
            explain,
            read,
        } => {
            let mut check = client.check(&tenant, &user);
            let shown = if let Some(p) = target.permission {
                check = check.permission(&p);
                p
            } else if let Some(a) = target.action {
                check = check.action(&a);
                a
            } else if let Some(e) = target.expression {
                check = check.expression(&e);
                e
            } else {
                return Err(Failure::Usage(
                    "name what to check: --permission, --action or --expression".to_owned(),
                ));
            };
            if let Some((t, id)) = &resource {
                check = check.resource(t, id);
            }
            for (k, v) in context {
                check = check.context(k, v);
            }
            if explain {
                check = check.explain();
            }
            if let Some(c) = read.consistency {
                check = check.consistency(c);
            }
            let d = check.await?;
            if json {
                println!(
                    "{}",
                    json!({
                        "decision": if d.allowed { "ALLOWED" } else { "DENIED" },
                        "allowed": d.allowed,
                        "missing_permissions": d.missing_permissions,
                        "denied_by_restriction": output::restriction_denial(&d.denied_by_restriction),
                        "explanation": output::explanation(&d.explanation),
                        "revision": d.revision.token(),
                    })
                );
            } else {
                let on = resource
                    .map(|(t, id)| format!(" on {t}:{id}"))
                    .unwrap_or_default();
                println!(
                    "{} {user} {shown}{on} (revision {})",
                    if d.allowed { "ALLOWED" } else { "DENIED" },
                    d.revision
                );
                if !d.missing_permissions.is_empty() {
                    println!("missing: {}", d.missing_permissions.join(", "));
                }
                if let Some(r) = &d.denied_by_restriction {
                    println!(
                        "denied by a restriction: limited to {} {} ({} in all)",
                        r.resource_type,
                        r.allowed_ids.join(", "),
                        r.allowed_count
                    );
                }
                if let Some(e) = &d.explanation {
                    print!("{}", output::explanation_text(e));
                }
            }
            Ok(if d.allowed { ALLOWED } else { DENIED })
        }
        Command::Batch {
            tenant,
            file,
            format,
            read,
        } => {
            let as_json = match format {
                Some(FileFormat::Json) => true,
                Some(FileFormat::Csv) => false,
                None => file.to_ascii_lowercase().ends_with(".json"),
            };
            let items = files::batch(&files::read(&file)?, as_json)?;
            let mut batch = client
                .batch_check(&tenant)
                .items(items.iter().map(files::Item::to_batch_item));
            if let Some(c) = read.consistency {
                batch = batch.consistency(c);
            }
            let answers = batch.await?;
            let mut code = ALLOWED;
            let mut rows = Vec::new();
            let mut out = Vec::new();
            for (item, result) in items.iter().zip(&answers.results) {
                let resource = item
                    .resource
                    .as_ref()
                    .map(|(t, id)| format!("{t}:{id}"))
                    .unwrap_or_else(|| "-".to_owned());
                match result {
                    Ok(d) => {
                        if !d.allowed && code == ALLOWED {
                            code = DENIED;
                        }
                        rows.push(vec![
                            item.user.clone(),
                            item.target.1.clone(),
                            resource,
                            if d.allowed { "ALLOWED" } else { "DENIED" }.to_owned(),
                            output::cell(&d.missing_permissions),
                        ]);
                        out.push(json!({
                            "user": item.user,
                            item.target.0: item.target.1,
                            "decision": if d.allowed { "ALLOWED" } else { "DENIED" },
                            "allowed": d.allowed,
                            "missing_permissions": d.missing_permissions,
                            "denied_by_restriction": output::restriction_denial(&d.denied_by_restriction),
                            "explanation": output::explanation(&d.explanation),
                        }));
                    }
                    Err(e) => {
                        code = FAILED;
                        rows.push(vec![
                            item.user.clone(),
                            item.target.1.clone(),
                            resource,
                            "ERROR".to_owned(),
                            e.to_string(),
                        ]);
                        out.push(json!({
                            "user": item.user,
                            item.target.0: item.target.1,
                            "error": {"code": authz_client::code_name(e.code), "message": e.message},
                        }));
                    }
                }
            }
            if json {
                println!(
                    "{}",
                    json!({"results": out, "revision": answers.revision.token()})
                );
            } else {
                print!(
                    "{}",
                    output::table(
                        &["USER", "TARGET", "RESOURCE", "DECISION", "MISSING"],
                        &rows
                    )
                );
                let allowed = answers
                    .results
                    .iter()
                    .filter(|r| r.as_ref().is_ok_and(|d| d.allowed))
                    .count();
                let errors = answers.results.iter().filter(|r| r.is_err()).count();
                println!(
                    "{allowed} allowed, {} denied, {errors} errors (revision {})",
                    answers.results.len() - allowed - errors,
                    answers.revision
                );
            }
            Ok(code)
        }
        Command::Effective { tenant, user, read } => {
            let mut req = client.effective_permissions(&tenant, &user);
            if let Some(c) = read.consistency {
                req = req.consistency(c);
            }
            let e = req.await?;
            let r = &e.response;
            if json {
                println!(
                    "{}",
                    json!({
                        "user_status": r.user_status,
                        "groups": r.group_keys,
                        "roles": r.roles,
                        "permissions": r.permissions.iter().map(|p| json!({"key": p.key, "sources": p.sources})).collect::<Vec<_>>(),
                        "scoped_grants": r.scoped_grants.iter().map(|g| json!({"permission": g.permission, "resource": output::resource(&g.resource), "source": g.source})).collect::<Vec<_>>(),
                        "restrictions": r.restrictions.iter().map(|x| json!({"resource_type": x.resource_type, "resource_ids": x.resource_ids})).collect::<Vec<_>>(),
                        "revision": e.revision.token(),
                    })
                );
            } else {
                println!(
                    "{user}: {} (revision {}); groups: {}; roles: {}",
                    r.user_status,
                    e.revision,
                    output::cell(&r.group_keys),
                    output::cell(&r.roles)
                );
                let mut rows: Vec<Vec<String>> = r
                    .permissions
                    .iter()
                    .map(|p| vec![p.key.clone(), p.sources.join(", ")])
                    .collect();
                rows.extend(r.scoped_grants.iter().map(|g| {
                    let res = g.resource.clone().unwrap_or_default();
                    vec![
                        format!("{}@{}:{}", g.permission, res.r#type, res.id),
                        g.source.clone(),
                    ]
                }));
                print!("{}", output::table(&["PERMISSION", "FROM"], &rows));
                for x in &r.restrictions {
                    println!(
                        "limited to {} {}",
                        x.resource_type,
                        x.resource_ids.join(", ")
                    );
                }
            }
            Ok(ALLOWED)
        }
        Command::AllowedResources {
            tenant,
            user,
            permission,
            resource_type,
            read,
        } => {
            let mut req = client.allowed_resources(&tenant, &user, &permission, &resource_type);
            if let Some(c) = read.consistency {
                req = req.consistency(c);
            }
            let (allowed, revision) = req.await?;
            match (&allowed, json) {
                (authz_client::AllowedResources::All, true) => {
                    println!(
                        "{}",
                        json!({"all": true, "resource_ids": [], "revision": revision.token()})
                    )
                }
                (authz_client::AllowedResources::Only(ids), true) => {
                    println!(
                        "{}",
                        json!({"all": false, "resource_ids": ids, "revision": revision.token()})
                    )
                }
                (authz_client::AllowedResources::All, false) => {
                    println!("every {resource_type}")
                }
                (authz_client::AllowedResources::Only(ids), false) => {
                    for id in ids {
                        println!("{id}");
                    }
                }
            }
            Ok(ALLOWED)
        }
        Command::Groups { tenant } => {
            let mut groups = Vec::new();
            let mut token = String::new();
            loop {
                let page = admin()
                    .list_groups(proto::ListGroupsRequest {
                        tenant_id: tenant.clone(),
                        page_size: 1000,
                        page_token: token,
                        ..Default::default()
                    })
                    .await?;
                groups.extend(page.groups);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            if json {
                println!(
                    "{}",
                    json!(groups.iter().map(group_json).collect::<Vec<_>>())
                );
            } else {
                let rows: Vec<Vec<String>> = groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.key.clone(),
                            g.name.clone(),
                            if g.system { "system" } else { "custom" }.to_owned(),
                            g.member_count.to_string(),
                            g.permissions.len().to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(&["KEY", "NAME", "KIND", "MEMBERS", "PERMISSIONS"], &rows)
                );
            }
            Ok(ALLOWED)
        }
        Command::Group(GroupCommand::Show { tenant, key }) => {
            let group = admin()
                .get_group(proto::GetGroupRequest {
                    tenant_id: tenant.clone(),
                    group_key: key.clone(),
                    ..Default::default()
                })
                .await?
                .group
                .unwrap_or_default();
            let mut members = Vec::new();
            let mut token = String::new();
            loop {
                let page = admin()
                    .list_users(proto::ListUsersRequest {
                        tenant_id: tenant.clone(),
                        group_key: key.clone(),
                        page_size: 1000,
                        page_token: token,
                        ..Default::default()
                    })
                    .await?;
                members.extend(page.users.into_iter().map(|u| u.user_id));
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            if json {
                let mut g = group_json(&group);
                g["members"] = json!(members);
                println!("{g}");
            } else {
                println!(
                    "{} ({}, {}, version {})",
                    group.key,
                    group.name,
                    if group.system { "system" } else { "custom" },
                    group.version
                );
                if !group.description.is_empty() {
                    println!("{}", group.description);
                }
                println!("permissions: {}", output::cell(&group.permissions));
                for s in &group.scoped_grants {
                    let r = s.resource.clone().unwrap_or_default();
                    println!("scoped: {}@{}:{}", s.permission, r.r#type, r.id);
                }
                println!("members ({}): {}", members.len(), output::cell(&members));
            }
            Ok(ALLOWED)
        }
        Command::Group(GroupCommand::Edit {
            tenant,
            key,
            name,
            description,
            add,
            remove,
            dry_run,
        }) => {
            let current = admin()
                .get_group(proto::GetGroupRequest {
                    tenant_id: tenant.clone(),
                    group_key: key.clone(),
                    ..Default::default()
                })
                .await?
                .group
                .unwrap_or_default();
            let mut paths = Vec::new();
            let mut group = proto::Group::default();
            if let Some(n) = name {
                group.name = n;
                paths.push("name".to_owned());
            }
            if let Some(d) = description {
                group.description = d;
                paths.push("description".to_owned());
            }
            if !add.is_empty() || !remove.is_empty() {
                let mut permissions = current.permissions.clone();
                for p in add {
                    if !permissions.contains(&p) {
                        permissions.push(p);
                    }
                }
                permissions.retain(|p| !remove.contains(p));
                group.permissions = permissions;
                paths.push("permissions".to_owned());
            }
            if paths.is_empty() {
                return Err(Failure::Usage(
                    "nothing to change: give --name, --description, --add or --remove".to_owned(),
                ));
            }
            let r = admin()
                .update_group(proto::UpdateGroupRequest {
                    tenant_id: tenant,
                    group_key: key.clone(),
                    group: Some(group),
                    update_mask: Some(prost_types::FieldMask { paths }),
                    expected_version: current.version,
                    dry_run,
                    ..Default::default()
                })
                .await?;
            wrote(
                json,
                &format!("group {key}"),
                dry_run,
                &r.revision,
                &r.preview,
            );
            Ok(ALLOWED)
        }
        Command::Group(GroupCommand::Create {
            tenant,
            key,
            name,
            permissions,
            dry_run,
        }) => {
            let r = admin()
                .create_group(proto::CreateGroupRequest {
                    tenant_id: tenant,
                    group: Some(proto::Group {
                        name: name.unwrap_or_else(|| key.clone()),
                        key: key.clone(),
                        permissions,
                        ..Default::default()
                    }),
                    dry_run,
                    ..Default::default()
                })
                .await?;
            wrote(
                json,
                &format!("group {key} created"),
                dry_run,
                &r.revision,
                &r.preview,
            );
            Ok(ALLOWED)
        }
        Command::Group(GroupCommand::AddMembers {
            tenant,
            key,
            users,
            dry_run,
        }) => {
            let r = admin()
                .add_group_members(proto::AddGroupMembersRequest {
                    tenant_id: tenant,
                    group_key: key.clone(),
                    user_ids: users,
                    dry_run,
                    ..Default::default()
                })
                .await?;
            wrote(
                json,
                &format!("members added to {key}"),
                dry_run,
                &r.revision,
                &r.preview,
            );
            Ok(ALLOWED)
        }
        Command::Group(GroupCommand::RemoveMembers {
            tenant,
            key,
            users,
            dry_run,
        }) => {
            let r = admin()
                .remove_group_members(proto::RemoveGroupMembersRequest {
                    tenant_id: tenant,
                    group_key: key.clone(),
                    user_ids: users,
                    dry_run,
                    ..Default::default()
                })
                .await?;
            wrote(
                json,
                &format!("members removed from {key}"),
                dry_run,
                &r.revision,
                &r.preview,
            );
            Ok(ALLOWED)
        }
        Command::Tenant(TenantCommand::Create { tenant, name }) => {
            let r = admin()
                .create_tenant(proto::CreateTenantRequest {
                    display_name: name.unwrap_or_else(|| tenant.clone()),
                    tenant_id: tenant.clone(),
                })
                .await?;
            if json {
                println!("{}", json!({"tenant_id": tenant, "revision": r.revision}));
            } else {
                println!("tenant {tenant} created (revision {})", r.revision);
            }
            Ok(ALLOWED)
        }
        Command::Tenant(TenantCommand::Show { tenant }) => {
            let t = admin()
                .get_tenant(proto::GetTenantRequest {
                    tenant_id: tenant,
                    ..Default::default()
                })
                .await?
                .tenant
                .unwrap_or_default();
            print_tenants(json, &[t]);
            Ok(ALLOWED)
        }
        Command::Tenant(TenantCommand::List) => {
            let mut tenants = Vec::new();
            let mut token = String::new();
            loop {
                let page = admin()
                    .list_tenants(proto::ListTenantsRequest {
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?;
                tenants.extend(page.tenants);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            print_tenants(json, &tenants);
            Ok(ALLOWED)
        }
        Command::Import {
            tenant,
            file,
            dry_run,
        } => {
            let users = files::import(&files::read(&file)?)?;
            let r = admin()
                .import_users(proto::ImportUsersRequest {
                    tenant_id: tenant,
                    rows: users
                        .into_iter()
                        .map(|u| proto::ImportRow {
                            user_id: u.user,
                            display_name: u.display_name,
                            email: u.email,
                            group_keys: u.groups,
                            permissions: u.permissions,
                        })
                        .collect(),
                    dry_run,
                    ..Default::default()
                })
                .await?;
            wrote(
                json,
                &format!("{} users imported", r.imported),
                dry_run,
                &r.revision,
                &r.preview,
            );
            Ok(ALLOWED)
        }
        Command::Audit {
            tenant,
            by,
            target,
            since,
            until,
            limit,
            follow,
        } => {
            let filter = proto::ListAuditEventsRequest {
                tenant_id: tenant.clone(),
                filter_actor_user_id: by.unwrap_or_default(),
                filter_target: target.unwrap_or_default(),
                since,
                until,
                ..Default::default()
            };
            // Follow from the tenant's revision now: every later change is read from the log.
            let changes = if follow {
                Some(client.watch(&tenant).start().await?)
            } else {
                None
            };
            let mut events = audit_page(&admin(), &filter, limit, None).await?;
            let mut last = events.first().and_then(|e| Revision::parse(&e.revision));
            if follow {
                events.reverse();
            }
            for e in &events {
                print_event(json, e);
            }
            let Some(mut changes) = changes else {
                return Ok(ALLOWED);
            };
            while let Some(change) = changes.next().await {
                let change = change?;
                if last.is_some_and(|l| change.revision <= l) {
                    continue;
                }
                let mut newer = audit_page(&admin(), &filter, usize::MAX, last).await?;
                newer.reverse();
                for e in &newer {
                    print_event(json, e);
                }
                last = Some(last.map_or(change.revision, |l| l.max(change.revision)));
            }
            Ok(ALLOWED)
        }
        Command::Watch { tenant, after } => {
            let mut req = client.watch(&tenant);
            if let Some(a) = after {
                let r = Revision::parse(&a).ok_or_else(|| {
                    Failure::Usage(format!("--after {a:?} is not a revision token (digits)"))
                })?;
                req = req.after(r);
            }
            let mut changes = req.start().await?;
            while let Some(change) = changes.next().await {
                let c = change?;
                let time = output::time(&c.commit_time.map(prost_types::Timestamp::from));
                if json {
                    println!(
                        "{}",
                        json!({
                            "revision": c.revision.token(),
                            "commit_time": time,
                            "operation": c.operation,
                            "user_ids": c.user_ids,
                            "group_keys": c.group_keys,
                            "all_users": c.all_users,
                        })
                    );
                } else {
                    println!(
                        "{}  {time}  {}  users: {}  groups: {}",
                        c.revision,
                        c.operation,
                        if c.all_users {
                            "all".to_owned()
                        } else {
                            output::cell(&c.user_ids)
                        },
                        output::cell(&c.group_keys)
                    );
                }
            }
            Ok(ALLOWED)
        }
        Command::Catalog(CatalogCommand::Show) => {
            let c = admin().get_catalog(proto::GetCatalogRequest {}).await?;
            if json {
                println!(
                    "{}",
                    json!({
                        "name": c.name, "version": c.version, "fingerprint": c.fingerprint,
                        "description": c.description, "permission_count": c.permission_count,
                        "action_count": c.action_count, "system_group_keys": c.system_group_keys,
                        "resource_types": c.resource_types, "context_flags": c.context_flags,
                    })
                );
            } else {
                println!("{} {} ({})", c.name, c.version, c.fingerprint);
                println!(
                    "{} permissions, {} actions",
                    c.permission_count, c.action_count
                );
                println!("system groups: {}", output::cell(&c.system_group_keys));
                println!("resource types: {}", output::cell(&c.resource_types));
                println!("context flags: {}", output::cell(&c.context_flags));
            }
            Ok(ALLOWED)
        }
        Command::Catalog(CatalogCommand::Permissions { section }) => {
            let r = admin()
                .list_permissions(proto::ListPermissionsRequest {
                    section: section.unwrap_or_default(),
                    ..Default::default()
                })
                .await?;
            if json {
                println!(
                    "{}",
                    json!(r.permissions.iter().map(|p| json!({
                        "key": p.key, "name": p.name, "section": p.section,
                        "description": p.description, "internal": p.internal, "aliases": p.aliases,
                    })).collect::<Vec<_>>())
                );
            } else {
                let rows: Vec<Vec<String>> = r
                    .permissions
                    .iter()
                    .map(|p| vec![p.key.clone(), p.section.clone(), p.name.clone()])
                    .collect();
                print!("{}", output::table(&["KEY", "SECTION", "NAME"], &rows));
            }
            Ok(ALLOWED)
        }
        Command::Catalog(CatalogCommand::Actions { prefix }) => {
            let r = admin()
                .list_actions(proto::ListActionsRequest {
                    prefix: prefix.unwrap_or_default(),
                })
                .await?;
            if json {
                println!(
                    "{}",
                    json!(r.actions.iter().map(|a| json!({
                        "key": a.key, "description": a.description, "expression": a.expression,
                    })).collect::<Vec<_>>())
                );
            } else {
                let rows: Vec<Vec<String>> = r
                    .actions
                    .iter()
                    .map(|a| vec![a.key.clone(), a.expression.clone()])
                    .collect();
                print!("{}", output::table(&["ACTION", "REQUIRES"], &rows));
            }
            Ok(ALLOWED)
        }
        Command::Catalog(CatalogCommand::Other(_)) => Ok(USAGE),
    }
}

fn group_json(g: &proto::Group) -> Value {
    json!({
        "key": g.key, "name": g.name, "description": g.description,
        "permissions": g.permissions,
        "scoped_grants": g.scoped_grants.iter().map(|s| json!({"permission": s.permission, "resource": output::resource(&s.resource)})).collect::<Vec<_>>(),
        "system": g.system, "internal": g.internal,
        "member_count": g.member_count, "version": g.version,
    })
}

fn print_tenants(json: bool, tenants: &[proto::Tenant]) {
    if json {
        println!(
            "{}",
            json!(
                tenants
                    .iter()
                    .map(|t| json!({
                        "tenant_id": t.tenant_id, "display_name": t.display_name,
                        "create_time": output::time(&t.create_time), "revision": t.revision,
                    }))
                    .collect::<Vec<_>>()
            )
        );
    } else {
        let rows: Vec<Vec<String>> = tenants
            .iter()
            .map(|t| {
                vec![
                    t.tenant_id.clone(),
                    t.display_name.clone(),
                    t.revision.clone(),
                    output::time(&t.create_time),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(&["TENANT", "NAME", "REVISION", "CREATED"], &rows)
        );
    }
}

/// A write's result: its revision (or that it was a dry run) and who it changes.
fn wrote(json: bool, what: &str, dry_run: bool, revision: &str, preview: &Option<proto::Preview>) {
    if json {
        println!(
            "{}",
            json!({"dry_run": dry_run, "revision": revision, "preview": output::preview(preview)})
        );
    } else {
        if dry_run {
            println!("dry run: {what} would change (nothing was committed):");
        } else {
            println!("{what} (revision {revision})");
        }
        print!("{}", output::preview_text(preview));
    }
}

/// Audit events newest first: at most `limit`, or (with `after`) every one past that revision.
async fn audit_page(
    admin: &authz_client::Admin<'_>,
    filter: &proto::ListAuditEventsRequest,
    limit: usize,
    after: Option<Revision>,
) -> Result<Vec<proto::AuditEvent>, Failure> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_audit_events(proto::ListAuditEventsRequest {
                page_size: i32::try_from(limit.saturating_sub(out.len()).clamp(1, 1000))
                    .unwrap_or(1000),
                page_token: token,
                ..filter.clone()
            })
            .await?;
        for e in page.events {
            let r = Revision::parse(&e.revision);
            if after.is_some_and(|a| r.is_some_and(|r| r <= a)) {
                return Ok(out);
            }
            out.push(e);
            if out.len() >= limit {
                return Ok(out);
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

fn print_event(json: bool, e: &proto::AuditEvent) {
    let who = if e.operator {
        "operator".to_owned()
    } else {
        e.actor_user_id.clone()
    };
    if json {
        println!(
            "{}",
            json!({
                "revision": e.revision, "time": output::time(&e.time), "actor": who,
                "operation": e.operation, "target": e.target,
                "before": output::structure(&e.before), "after": output::structure(&e.after),
            })
        );
    } else {
        println!(
            "{}  {}  {}  {}  {}",
            e.revision,
            output::time(&e.time),
            who,
            e.operation,
            e.target
        );
    }
}

/// `authzctl catalog check|test|diff|apply|history ...` runs `authzd catalog ...`.
async fn passthrough(args: &[String]) -> Outcome {
    let authzd = authzd_path().ok_or_else(|| {
        Failure::Usage(
            "authzd not found: `authzctl catalog` runs `authzd catalog ...`; put authzd on PATH, \
             next to authzctl, or name it in AUTHZD"
                .to_owned(),
        )
    })?;
    let status = tokio::process::Command::new(&authzd)
        .arg("catalog")
        .args(args)
        .status()
        .await
        .map_err(|e| Failure::Usage(format!("cannot run {}: {e}", authzd.display())))?;
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(FAILED))
}

fn authzd_path() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("AUTHZD").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("authzd")))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("authzd"))
                .find(|p| p.is_file())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_and_consistency_read_as_documented() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert!(duration("5").is_err() && duration("5h").is_err());
        assert_eq!(
            consistency("42").unwrap(),
            Consistency::AtLeastAsFresh(Revision(42))
        );
        assert!(consistency("042").is_err());
    }
}
