//! `authzd catalog diff | apply | history`: catalog changes against files and databases, in
//! text for people and JSON for scripts.

use crate::config::OutputFormat;
use crate::store::catalogs::{Plan, Recorded, describe};
use crate::store::postgres::{PgOptions, PostgresStore};
use authz_core::Catalog;
use authz_core::evolve::{self, Comparison, Mappings, TenantPreview};
use std::fmt::Write as _;
use std::sync::Arc;

/// Exit status of a diff whose change needs `catalog apply`, and of an apply refused for
/// conflicts without a mapping.
pub const INCOMPATIBLE: u8 = 3;

/// Writes to stdout; a reader that went away (`| head`) ends the output quietly.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("authzd: cannot write the output: {e}");
        }
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `catalog diff OLD NEW`.
pub fn diff_files(old: &Catalog, new: &Catalog, output: OutputFormat) -> u8 {
    let c = evolve::compare(Some(old), new, None, &Mappings::default());
    match output {
        OutputFormat::Json => emit(&format!(
            "{}\n",
            serde_json::json!({
                "old": {"name": old.name, "version": old.version, "fingerprint": old.fingerprint},
                "new": {"name": new.name, "version": new.version, "fingerprint": new.fingerprint},
                "compatible": c.compatible(),
                "changes": c.changes,
            })
        )),
        OutputFormat::Text => {
            let mut out = format!("catalog {} → {}\n", describe(old), describe(new));
            changes(&mut out, &c);
            let _ = writeln!(
                out,
                "stored data: not compared; `authzd catalog diff --database-url URL NEW` compares a database's data and previews its users"
            );
            verdict(&mut out, &c, None);
            emit(&out);
        }
    }
    if c.compatible() { 0 } else { INCOMPATIBLE }
}

fn changes(out: &mut String, c: &Comparison) {
    if c.changes.is_empty() {
        let _ = writeln!(out, "changes: none");
        return;
    }
    let _ = writeln!(out, "changes ({}):", c.changes.len());
    // Incompatible ones first: they are what a reader must act on.
    let mut list: Vec<_> = c.changes.iter().collect();
    list.sort_by_key(|x| x.compatible);
    for x in list {
        let _ = writeln!(
            out,
            "  {:<13} {}",
            if x.compatible {
                "compatible"
            } else {
                "INCOMPATIBLE"
            },
            x.detail
        );
    }
}

fn conflicts(out: &mut String, c: &Comparison) {
    if c.conflicts.is_empty() {
        let _ = writeln!(out, "stored data: every stored reference keeps its meaning");
        return;
    }
    let _ = writeln!(out, "stored data conflicts ({}):", c.conflicts.len());
    for x in &c.conflicts {
        match &x.resolved_by {
            Some(m) => {
                let _ = writeln!(out, "  resolved by {m}: {}", x.detail);
            }
            None => {
                let _ = writeln!(
                    out,
                    "  UNRESOLVED: {}\n    to resolve: {}",
                    x.detail, x.resolve
                );
            }
        }
    }
}

fn verdict(out: &mut String, c: &Comparison, plan: Option<&Plan>) {
    if c.compatible() {
        let _ = writeln!(
            out,
            "result: compatible; replicas record it at start (a rolling update is enough)"
        );
        return;
    }
    let unresolved = c.unresolved().count();
    let apply = match plan.and_then(|p| p.applied) {
        Some(_) => return,
        None if unresolved > 0 => format!(
            "; {unresolved} conflict{} need{} a mapping first (see above)",
            if unresolved == 1 { "" } else { "s" },
            if unresolved == 1 { "s" } else { "" }
        ),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "result: INCOMPATIBLE; replicas refuse to start with it until `authzd catalog apply --database-url URL NEW` carries it out{apply}"
    );
}

fn preview(out: &mut String, plan: &Plan) {
    if !plan.rewrites.is_empty() {
        let _ = writeln!(out, "stored keys rewritten ({}):", plan.rewrites.len());
        for r in &plan.rewrites {
            let uses = format!(
                "{} in {}",
                plural(r.uses, "stored grant", "stored grants"),
                plural(r.tenants as u64, "tenant", "tenants")
            );
            if r.to.is_empty() {
                let _ = writeln!(out, "  {} dropped ({uses})", r.from);
            } else {
                let _ = writeln!(out, "  {} → {} ({uses})", r.from, r.to);
            }
        }
    }
    let _ = writeln!(
        out,
        "preview: {} change in {} of {}",
        plural(plan.users_changed, "user", "users"),
        plan.tenants.len(),
        plural(plan.tenants_total as u64, "tenant", "tenants")
    );
    for t in &plan.tenants {
        tenant(out, t);
    }
}

fn tenant(out: &mut String, t: &TenantPreview) {
    let _ = writeln!(
        out,
        "  tenant {}: {}",
        t.tenant_id,
        plural(t.users_changed, "user", "users")
    );
    for g in &t.groups {
        let _ = writeln!(
            out,
            "    group {}: {} ({})",
            g.group,
            g.detail,
            plural(g.members, "member", "members")
        );
    }
    for u in &t.users {
        let mut parts = Vec::new();
        let mut part = |label: &str, items: &[String]| {
            if !items.is_empty() {
                parts.push(format!("{label} {}", items.join(", ")));
            }
        };
        part("gains", &u.gained);
        part("loses", &u.lost);
        part("gains scoped", &u.scoped_gained);
        part("loses scoped", &u.scoped_lost);
        part("no longer limited on", &u.restrictions_lifted);
        part("gains role", &u.roles_gained);
        part("loses role", &u.roles_lost);
        let blocked = if u.blocked { " (blocked)" } else { "" };
        let _ = writeln!(out, "    {}{blocked}: {}", u.user_id, parts.join("; "));
    }
    if t.truncated {
        let _ = writeln!(
            out,
            "    … and {} more users (listed in full with --output json up to the same limit; the counts are exact)",
            t.users_changed - t.users.len() as u64
        );
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

async fn open(url: &str, catalog: Arc<Catalog>) -> Result<PostgresStore, String> {
    let store = PostgresStore::new(catalog, &PgOptions::new(url)).map_err(|e| e.to_string())?;
    store.check_schema().await.map_err(|e| {
        // `catalog` commands never migrate: say the one command that does.
        e.to_string().replace(
            crate::store::postgres::RUN_MIGRATE,
            "run `authzd migrate --database-url URL` first",
        )
    })?;
    Ok(store)
}

/// `catalog diff --database-url URL NEW` and `catalog apply`.
pub fn plan(
    url: &str,
    new: Catalog,
    mappings: &Mappings,
    apply: bool,
    output: OutputFormat,
) -> Result<u8, String> {
    let new = Arc::new(new);
    let plan = runtime()?.block_on(async {
        let store = open(url, new.clone()).await?;
        store.plan_catalog(&new, mappings, apply).await
    })?;
    let unresolved = plan.comparison.unresolved().count();
    match output {
        OutputFormat::Json => emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?
        )),
        OutputFormat::Text => {
            let mut out = String::new();
            let recorded = plan
                .recorded
                .as_ref()
                .map_or("none yet".to_owned(), Recorded::describe);
            let _ = writeln!(out, "database records: {recorded}");
            let _ = writeln!(out, "new catalog:      {}", describe(&new));
            changes(&mut out, &plan.comparison);
            conflicts(&mut out, &plan.comparison);
            preview(&mut out, &plan);
            verdict(&mut out, &plan.comparison, Some(&plan));
            if apply {
                match plan.applied {
                    Some(id) => {
                        let events = match plan.tenants_total {
                            1 => "an audit event in its 1 tenant".to_owned(),
                            n => format!("one audit event in each of its {n} tenants"),
                        };
                        let _ = writeln!(
                            out,
                            "applied: recorded as catalog record {id}; {events}; every replica notified"
                        );
                    }
                    None if unresolved > 0 => {
                        let _ = writeln!(out, "nothing applied");
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "nothing applied: the database already records this catalog"
                        );
                    }
                }
            }
            emit(&out);
        }
    }
    Ok(match (apply, plan.applied) {
        (true, Some(_)) => 0,
        (true, None) if unresolved > 0 => INCOMPATIBLE,
        (true, None) => 0,
        (false, _) if plan.compatible => 0,
        (false, _) => INCOMPATIBLE,
    })
}

/// `catalog history`.
pub fn history(
    url: &str,
    catalog: Catalog,
    show: Option<i64>,
    output: OutputFormat,
) -> Result<u8, String> {
    let records = runtime()?.block_on(async {
        let store = open(url, Arc::new(catalog)).await?;
        store.catalog_history().await.map_err(|e| e.to_string())
    })?;
    if let Some(id) = show {
        let r = records
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| format!("the database has no catalog record {id}"))?;
        match output {
            OutputFormat::Text => emit(&r.source),
            OutputFormat::Json => emit(&format!(
                "{}\n",
                serde_json::json!({"id": r.id, "name": r.name, "version": r.version, "fingerprint": r.fingerprint, "source": r.source})
            )),
        }
        return Ok(0);
    }
    match output {
        OutputFormat::Json => emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?
        )),
        OutputFormat::Text => {
            let mut out = String::new();
            if records.is_empty() {
                out.push_str("the database records no catalog yet (the first start records one)\n");
            }
            for r in &records {
                let _ = write!(
                    out,
                    "{:>4}  {}  {:<10} {} {} (fingerprint {})",
                    r.id, r.recorded_at, r.how, r.name, r.version, r.fingerprint
                );
                let mappings = r.mappings.as_object().map(|m| {
                    m.iter()
                        .filter(|(_, v)| {
                            v.as_array().is_some_and(|a| !a.is_empty())
                                || v.as_object().is_some_and(|o| !o.is_empty())
                        })
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                });
                if let Some(m) = mappings.filter(|m| !m.is_empty()) {
                    let _ = write!(out, "; mappings: {}", m.join(", "));
                }
                out.push('\n');
            }
            emit(&out);
        }
    }
    Ok(0)
}
