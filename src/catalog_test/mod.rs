//! `authzd catalog test CATALOG TESTS`: a file of fixtures and expectations run against a
//! catalog, answered the way the service itself answers.
//!
//! The fixtures (custom groups; users with their status, memberships, direct and scoped grants
//! and restrictions) are written into one tenant of an embedded [`MemoryStore`] as operator
//! calls of the [`Authz`] application. Every expectation is then asked through the same
//! application API the gRPC server calls: checks through [`Authz::check`], effective permissions
//! and roles from [`Authz::subject`] as GetEffectivePermissions computes them, and admin calls
//! as dry runs, so they change nothing and every case sees the fixtures as written. The runner
//! itself decides nothing.
//!
//! Exit codes: 0 when every case passes, 1 when one fails, 2 when nothing could be judged: the
//! catalog or the test file can't be read, or the test file is invalid (an unknown field or
//! name, a fixture or a case the application refuses as malformed). Every problem of an invalid
//! file is listed with its line.
//!
//! The format is documented in `docs/catalog.md`, "Testing a catalog".

mod file;
mod run;
mod validate;

use file::*;
use run::*;
use validate::*;

use crate::app::{
    AdminCall, AuditFilter, Authz, CheckInput, Direction, DuplicateInput, GroupInput, ImportInput,
    ResourceInput, TargetInput, WriteMode,
};
use crate::config::{CatalogTestArgs, OutputFormat};
use crate::error::Error;
use crate::ids::{By, GroupKey, Paging, TenantId, UserId, UserIds};
use crate::store::Consistency;
use crate::store::memory::MemoryStore;
use authz_core::Catalog;
use authz_core::key::{closest, key_from_name};
use authz_core::model::UserStatus;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// The tenant the fixtures are written into.
pub(super) const TENANT: &str = "catalog-test";

// ---- Reports ----

/// A test file that cannot be run as written: every problem found.
#[derive(Debug)]
pub struct Invalid {
    pub problems: Vec<Problem>,
}

#[derive(Debug)]
pub struct Problem {
    /// 1-based line in the test file, when the problem has one.
    pub line: Option<usize>,
    /// The fixture or case, as `users "alice"` or `checks "name"`.
    pub item: Option<String>,
    pub message: String,
}

impl Problem {
    fn file(message: String) -> Self {
        Self {
            line: None,
            item: None,
            message,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(item) = &self.item {
            write!(f, "{item}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// One judged case.
#[derive(Debug)]
pub struct Outcome {
    /// `checks`, `effective` or `admin_calls`.
    pub kind: &'static str,
    pub name: String,
    pub line: usize,
    pub passed: bool,
    pub expected: String,
    pub got: String,
    /// The decision's explanation summary, for checks.
    pub explanation: Option<String>,
}

#[derive(Debug)]
pub struct Report {
    pub catalog: String,
    pub catalog_version: String,
    pub users: usize,
    pub custom_groups: usize,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }
}

// ---- The command ----

/// Runs the command: prints the report and returns the exit code (0 passed, 1 failed, 2 the
/// catalog or the test file could not be used).
pub fn main(args: &CatalogTestArgs) -> u8 {
    let label = args.tests.display().to_string();
    let started = load(&args.catalog, &args.tests).and_then(|loaded| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| (loaded, runtime))
            .map_err(|e| format!("cannot start the runtime: {e}"))
    });
    let ((catalog, text), runtime) = match started {
        Ok(started) => started,
        Err(e) => {
            match args.output {
                OutputFormat::Text => eprintln!("authzd: {e}; nothing was tested"),
                OutputFormat::Json => {
                    println!("{}", serde_json::json!({ "file": label, "error": e }))
                }
            }
            return 2;
        }
    };
    match (runtime.block_on(run(Arc::new(catalog), &text)), args.output) {
        (Ok(report), OutputFormat::Text) => {
            print_text(&label, &report, args.verbose);
            exit(&report)
        }
        (Ok(report), OutputFormat::Json) => {
            println!("{}", report_json(&label, &report));
            exit(&report)
        }
        (Err(invalid), OutputFormat::Text) => {
            eprintln!("authzd: {label} is not a valid test file; nothing was tested:");
            for p in &invalid.problems {
                let text = p.to_string();
                let mut lines = text.lines();
                if let Some(first) = lines.next() {
                    eprintln!("  {first}");
                }
                for more in lines {
                    eprintln!("    {more}");
                }
            }
            2
        }
        (Err(invalid), OutputFormat::Json) => {
            let problems: Vec<serde_json::Value> = invalid
                .problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "line": p.line,
                        "item": p.item,
                        "message": p.message,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({ "file": label, "valid": false, "problems": problems })
            );
            2
        }
    }
}

fn exit(report: &Report) -> u8 {
    u8::from(report.failed() != 0)
}

/// The catalog, compiled, and the test file's text.
fn load(catalog: &Path, tests: &Path) -> Result<(Catalog, String), String> {
    let text = std::fs::read_to_string(catalog)
        .map_err(|e| format!("cannot read catalog {}: {e}", catalog.display()))?;
    let catalog =
        Catalog::from_toml(&text).map_err(|e| format!("catalog {}: {e}", catalog.display()))?;
    let tests = std::fs::read_to_string(tests)
        .map_err(|e| format!("cannot read test file {}: {e}", tests.display()))?;
    Ok((catalog, tests))
}

fn print_text(label: &str, report: &Report, verbose: bool) {
    println!(
        "{label}: catalog {} version {}; {}, {}; {}",
        report.catalog,
        report.catalog_version,
        count(report.users, "user"),
        count(report.custom_groups, "custom group"),
        count(report.outcomes.len(), "case"),
    );
    for o in &report.outcomes {
        if o.passed {
            if verbose {
                println!("ok   {label}:{} {} {:?}", o.line, o.kind, o.name);
            }
            continue;
        }
        let mut line = format!(
            "FAIL {label}:{} {} {:?}: expected {}, got {}",
            o.line, o.kind, o.name, o.expected, o.got
        );
        if let Some(e) = &o.explanation {
            line.push_str(&format!(" ({e})"));
        }
        println!("{line}");
    }
    println!("{} passed, {} failed", report.passed(), report.failed());
}

/// `1 case`, `2 cases`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn report_json(label: &str, report: &Report) -> serde_json::Value {
    let cases: Vec<serde_json::Value> = report
        .outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "kind": o.kind,
                "name": o.name,
                "line": o.line,
                "passed": o.passed,
                "expected": o.expected,
                "got": o.got,
                "explanation": o.explanation,
            })
        })
        .collect();
    serde_json::json!({
        "file": label,
        "valid": true,
        "catalog": { "name": report.catalog, "version": report.catalog_version },
        "passed": report.passed(),
        "failed": report.failed(),
        "cases": cases,
    })
}

/// Runs a test file's text against a catalog.
pub async fn run(catalog: Arc<Catalog>, text: &str) -> Result<Report, Invalid> {
    let file: TestFile = toml::from_str(text).map_err(|e| Invalid {
        problems: vec![Problem::file(e.to_string().trim_end().to_owned())],
    })?;
    if let Some(name) = &file.catalog {
        if *name != catalog.name {
            return Err(Invalid {
                problems: vec![Problem::file(format!(
                    "the test file is written for catalog `{name}`, and this catalog is `{}`: run it against `{name}`, or change `catalog`",
                    catalog.name
                ))],
            });
        }
    }
    let lines = Lines::new(text);
    let problems = Validator::new(&catalog, &file, &lines).validate();
    if !problems.is_empty() {
        return Err(Invalid { problems });
    }
    let runner = Runner {
        app: Authz::new(catalog.clone(), Arc::new(MemoryStore::new(catalog.clone()))),
        catalog: catalog.clone(),
        tenant: TenantId::parse("tenant_id", TENANT).map_err(|e| Invalid {
            problems: vec![Problem::file(e.to_string())],
        })?,
    };
    runner.load_fixtures(&file, &lines).await?;
    // In the order of the file: admin calls are dry runs, so no case sees another's effect.
    let mut outcomes = Vec::new();
    let mut problems = Vec::new();
    for (line, case) in file.cases(&lines) {
        let judged = match case {
            Case::Check(c) => runner.check(c).await,
            Case::Effective(c) => runner.effective(c).await,
            Case::Admin(c) => match c.operation() {
                Some((_, op)) => runner.admin(c, op).await,
                None => continue,
            },
        };
        match judged {
            Judged::Outcome(o) => outcomes.push(o.named(case.kind(), case.name(), line)),
            Judged::Invalid(message) => problems.push(Problem {
                line: Some(line),
                item: Some(case.label()),
                message,
            }),
        }
    }
    if !problems.is_empty() {
        return Err(Invalid { problems });
    }
    Ok(Report {
        catalog: catalog.name.clone(),
        catalog_version: catalog.version.clone(),
        users: file.users.len(),
        custom_groups: file.custom_groups.len(),
        outcomes,
    })
}
