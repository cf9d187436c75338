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

use crate::app::{
    AdminCall, AuditFilter, Authz, CheckInput, DuplicateInput, GroupInput, ImportInput,
    ResourceInput, TargetInput, WriteMode,
};
use crate::config::{CatalogTestArgs, OutputFormat};
use crate::error::Error;
use crate::ids::{By, GroupKey, Paging, TenantId, UserId, UserIds};
use crate::store::Consistency;
use crate::store::memory::MemoryStore;
use authz_core::Catalog;
use authz_core::decide;
use authz_core::key::{closest, key_from_name};
use authz_core::model::UserStatus;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// The tenant the fixtures are written into.
const TENANT: &str = "catalog-test";

// ---- The file format ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The `name` of the catalog the file is written for; checked when given.
    catalog: Option<String>,
    #[serde(default)]
    custom_groups: Vec<Spanned<GroupFixture>>,
    #[serde(default)]
    users: Vec<Spanned<UserFixture>>,
    #[serde(default)]
    checks: Vec<Spanned<CheckCase>>,
    #[serde(default)]
    effective: Vec<Spanned<EffectiveCase>>,
    #[serde(default)]
    admin_calls: Vec<Spanned<AdminCase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFixture {
    key: String,
    /// Defaults to the key.
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: Vec<String>,
    /// Scoped grants, `permission@type:id`.
    #[serde(default)]
    scoped: Vec<String>,
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    #[default]
    Active,
    Blocked,
}

impl From<Status> for UserStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Active => UserStatus::Active,
            Status::Blocked => UserStatus::Blocked,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFixture {
    id: String,
    #[serde(default)]
    status: Status,
    /// System and custom groups.
    #[serde(default)]
    groups: Vec<String>,
    /// Unscoped direct grants.
    #[serde(default)]
    permissions: Vec<String>,
    /// Scoped direct grants, `permission@type:id`.
    #[serde(default)]
    scoped: Vec<String>,
    /// Resource type → the only resources of that type the user may use.
    #[serde(default)]
    restrictions: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckCase {
    name: Option<String>,
    user: String,
    permission: Option<String>,
    action: Option<String>,
    expression: Option<String>,
    /// `type:id`.
    resource: Option<String>,
    #[serde(default)]
    context: BTreeMap<String, bool>,
    allowed: Option<bool>,
    /// The exact missing permissions (any order).
    missing: Option<Vec<String>>,
    denied_by_restriction: Option<bool>,
    /// The check is answered with an error whose message contains this.
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectiveCase {
    name: Option<String>,
    user: String,
    /// The exact set of unscoped effective permissions.
    permissions: Option<Vec<String>>,
    #[serde(default)]
    includes: Vec<String>,
    #[serde(default)]
    excludes: Vec<String>,
    /// The exact set of roles.
    roles: Option<Vec<String>>,
    /// The exact set of scoped grants, `permission@type:id`.
    scoped: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminCase {
    name: Option<String>,
    actor: String,
    /// Refused (or not) by the admin rules.
    refused: Option<bool>,
    /// With `refused = true`: text the refusal contains.
    reason: Option<String>,
    /// The call fails, for whatever reason, with a message containing this.
    error: Option<String>,
    grant_permissions: Option<GrantOp>,
    revoke_permissions: Option<GrantOp>,
    create_group: Option<CreateGroupOp>,
    update_group: Option<UpdateGroupOp>,
    delete_group: Option<GroupOp>,
    duplicate_group: Option<DuplicateGroupOp>,
    add_group_members: Option<MembersOp>,
    remove_group_members: Option<MembersOp>,
    set_user_status: Option<StatusOp>,
    set_restrictions: Option<RestrictOp>,
    upsert_user: Option<ProfileOp>,
    import_users: Option<ImportOp>,
    get_user: Option<UserOp>,
    list_users: Option<ListUsersOp>,
    get_group: Option<GroupOp>,
    list_groups: Option<NoOperands>,
    list_audit_events: Option<NoOperands>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantOp {
    user: String,
    permissions: Vec<String>,
    /// `type:id`: the grant is scoped to this resource.
    resource: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroupOp {
    key: String,
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    scoped: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateGroupOp {
    group: String,
    name: Option<String>,
    description: Option<String>,
    permissions: Option<Vec<String>>,
    scoped: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupOp {
    group: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DuplicateGroupOp {
    group: String,
    new_key: String,
    #[serde(default)]
    new_name: String,
    #[serde(default)]
    copy_permissions: bool,
    #[serde(default)]
    copy_scoped_grants: bool,
    #[serde(default)]
    copy_members: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersOp {
    group: String,
    users: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusOp {
    user: String,
    status: Status,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestrictOp {
    user: String,
    resource_type: String,
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    clear: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileOp {
    user: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportOp {
    rows: Vec<ImportRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRow {
    user: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserOp {
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListUsersOp {
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOperands {}

/// The one operation an admin case names.
enum Op<'a> {
    Grant(&'a GrantOp),
    Revoke(&'a GrantOp),
    CreateGroup(&'a CreateGroupOp),
    UpdateGroup(&'a UpdateGroupOp),
    DeleteGroup(&'a GroupOp),
    DuplicateGroup(&'a DuplicateGroupOp),
    AddMembers(&'a MembersOp),
    RemoveMembers(&'a MembersOp),
    SetStatus(&'a StatusOp),
    Restrict(&'a RestrictOp),
    Upsert(&'a ProfileOp),
    Import(&'a ImportOp),
    GetUser(&'a UserOp),
    ListUsers(&'a ListUsersOp),
    GetGroup(&'a GroupOp),
    ListGroups,
    ListAudit,
}

impl AdminCase {
    /// Every operation an admin case may name, with what this case sets for it.
    fn slots(&self) -> [(&'static str, Option<Op<'_>>); 17] {
        [
            (
                "grant_permissions",
                self.grant_permissions.as_ref().map(Op::Grant),
            ),
            (
                "revoke_permissions",
                self.revoke_permissions.as_ref().map(Op::Revoke),
            ),
            (
                "create_group",
                self.create_group.as_ref().map(Op::CreateGroup),
            ),
            (
                "update_group",
                self.update_group.as_ref().map(Op::UpdateGroup),
            ),
            (
                "delete_group",
                self.delete_group.as_ref().map(Op::DeleteGroup),
            ),
            (
                "duplicate_group",
                self.duplicate_group.as_ref().map(Op::DuplicateGroup),
            ),
            (
                "add_group_members",
                self.add_group_members.as_ref().map(Op::AddMembers),
            ),
            (
                "remove_group_members",
                self.remove_group_members.as_ref().map(Op::RemoveMembers),
            ),
            (
                "set_user_status",
                self.set_user_status.as_ref().map(Op::SetStatus),
            ),
            (
                "set_restrictions",
                self.set_restrictions.as_ref().map(Op::Restrict),
            ),
            ("upsert_user", self.upsert_user.as_ref().map(Op::Upsert)),
            ("import_users", self.import_users.as_ref().map(Op::Import)),
            ("get_user", self.get_user.as_ref().map(Op::GetUser)),
            ("list_users", self.list_users.as_ref().map(Op::ListUsers)),
            ("get_group", self.get_group.as_ref().map(Op::GetGroup)),
            (
                "list_groups",
                self.list_groups.as_ref().map(|_| Op::ListGroups),
            ),
            (
                "list_audit_events",
                self.list_audit_events.as_ref().map(|_| Op::ListAudit),
            ),
        ]
    }

    /// The operations the case names, with their keys.
    fn operations(&self) -> Vec<(&'static str, Op<'_>)> {
        self.slots()
            .into_iter()
            .filter_map(|(key, op)| op.map(|op| (key, op)))
            .collect()
    }

    /// The case's operation, once validation has made sure there is exactly one.
    fn operation(&self) -> Option<(&'static str, Op<'_>)> {
        self.operations().into_iter().next()
    }
}

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

/// One expectation of the file.
#[derive(Clone, Copy)]
enum Case<'a> {
    Check(&'a CheckCase),
    Effective(&'a EffectiveCase),
    Admin(&'a AdminCase),
}

impl TestFile {
    /// Every case with its line, in the order of the file.
    fn cases(&self, lines: &Lines) -> Vec<(usize, Case<'_>)> {
        let mut cases: Vec<(usize, Case<'_>)> = self
            .checks
            .iter()
            .map(|c| (lines.of(c), Case::Check(c.get_ref())))
            .chain(
                self.effective
                    .iter()
                    .map(|c| (lines.of(c), Case::Effective(c.get_ref()))),
            )
            .chain(
                self.admin_calls
                    .iter()
                    .map(|c| (lines.of(c), Case::Admin(c.get_ref()))),
            )
            .collect();
        cases.sort_by_key(|(line, _)| *line);
        cases
    }
}

impl Case<'_> {
    /// The array the case is written in.
    fn kind(&self) -> &'static str {
        match self {
            Case::Check(_) => "checks",
            Case::Effective(_) => "effective",
            Case::Admin(_) => "admin_calls",
        }
    }

    /// The case's `name`, or one made of what it asks.
    fn name(&self) -> String {
        match self {
            Case::Check(c) => c.name.clone().unwrap_or_else(|| {
                let target = c
                    .action
                    .as_deref()
                    .or(c.permission.as_deref())
                    .or(c.expression.as_deref())
                    .unwrap_or("");
                let mut name = format!("{}: {target}", c.user);
                if let Some(r) = &c.resource {
                    name.push_str(&format!(" on {r}"));
                }
                let set: Vec<&str> = c
                    .context
                    .iter()
                    .filter(|(_, v)| **v)
                    .map(|(k, _)| k.as_str())
                    .collect();
                if !set.is_empty() {
                    name.push_str(&format!(" with {}", set.join(", ")));
                }
                name
            }),
            Case::Effective(c) => c
                .name
                .clone()
                .unwrap_or_else(|| format!("{}: effective permissions", c.user)),
            Case::Admin(c) => c.name.clone().unwrap_or_else(|| {
                let op = c.operations().first().map_or("(no operation)", |(k, _)| *k);
                format!("{}: {op}", c.actor)
            }),
        }
    }

    /// `checks "name"`, for messages.
    fn label(&self) -> String {
        format!("{} {:?}", self.kind(), self.name())
    }
}

/// Line numbers of byte offsets.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn of<T>(&self, item: &Spanned<T>) -> usize {
        let at = item.span().start;
        self.starts.partition_point(|s| *s <= at).max(1)
    }
}

// ---- Validation: every name the file uses, before anything runs ----

struct Validator<'a> {
    catalog: &'a Catalog,
    file: &'a TestFile,
    lines: &'a Lines,
    users: BTreeSet<&'a str>,
    custom_groups: BTreeSet<&'a str>,
    problems: Vec<Problem>,
}

impl<'a> Validator<'a> {
    fn new(catalog: &'a Catalog, file: &'a TestFile, lines: &'a Lines) -> Self {
        Self {
            catalog,
            file,
            lines,
            users: file.users.iter().map(|u| u.get_ref().id.as_str()).collect(),
            custom_groups: file
                .custom_groups
                .iter()
                .map(|g| g.get_ref().key.as_str())
                .collect(),
            problems: Vec::new(),
        }
    }

    fn validate(mut self) -> Vec<Problem> {
        let file = self.file;
        let mut seen_groups = BTreeSet::new();
        for g in &file.custom_groups {
            let group = g.get_ref();
            let mut errs = Vec::new();
            if !seen_groups.insert(group.key.as_str()) {
                errs.push(format!("custom group `{}` is declared twice", group.key));
            }
            if self.catalog.group(&group.key).is_some() {
                errs.push(format!(
                    "`{}` is a system group of the catalog; give the custom group another key",
                    group.key
                ));
            }
            self.permissions(&group.permissions, &mut errs);
            self.scoped_list(&group.scoped, &mut errs);
            self.report(g, format!("custom_groups {:?}", group.key), errs);
        }
        let mut seen_users = BTreeSet::new();
        for u in &file.users {
            let user = u.get_ref();
            let mut errs = Vec::new();
            if !seen_users.insert(user.id.as_str()) {
                errs.push(format!("user `{}` is declared twice", user.id));
            }
            for g in &user.groups {
                self.group(g, &mut errs);
            }
            self.permissions(&user.permissions, &mut errs);
            self.scoped_list(&user.scoped, &mut errs);
            for (t, ids) in &user.restrictions {
                self.resource_type(t, &mut errs);
                if ids.is_empty() {
                    errs.push(format!(
                        "restrictions.{t} is empty: list the resources the user is limited to, or leave the type out"
                    ));
                }
            }
            self.report(u, format!("users {:?}", user.id), errs);
        }
        for (line, case) in file.cases(self.lines) {
            let mut errs = Vec::new();
            match case {
                Case::Check(c) => self.check(c, &mut errs),
                Case::Effective(c) => self.effective(c, &mut errs),
                Case::Admin(c) => self.admin(c, &mut errs),
            }
            self.problems
                .extend(errs.into_iter().map(|message| Problem {
                    line: Some(line),
                    item: Some(case.label()),
                    message,
                }));
        }
        self.problems
    }

    fn report<T>(&mut self, item: &Spanned<T>, label: String, errs: Vec<String>) {
        let line = self.lines.of(item);
        for message in errs {
            self.problems.push(Problem {
                line: Some(line),
                item: Some(label.clone()),
                message,
            });
        }
    }

    fn user(&self, id: &str, errs: &mut Vec<String>) {
        if self.users.contains(id) {
            return;
        }
        errs.push(match closest(id, self.users.iter().copied()) {
            Some(c) => format!("unknown user `{id}`; did you mean `{c}`?"),
            None => format!("unknown user `{id}`: declare it in [[users]]"),
        });
    }

    fn group(&self, key: &str, errs: &mut Vec<String>) {
        if self.catalog.group(key).is_some() || self.custom_groups.contains(key) {
            return;
        }
        let known = self
            .catalog
            .groups()
            .iter()
            .map(|g| g.key.as_str())
            .chain(self.custom_groups.iter().copied());
        let by_rule = key_from_name(key);
        errs.push(
            if by_rule != key
                && (self.catalog.group(&by_rule).is_some()
                    || self.custom_groups.contains(by_rule.as_str()))
            {
                format!("unknown group `{key}`; did you mean `{by_rule}`?")
            } else {
                match closest(key, known) {
                    Some(c) => format!("unknown group `{key}`; did you mean `{c}`?"),
                    None => format!(
                        "unknown group `{key}`: neither a system group of the catalog nor a custom group of [[custom_groups]]"
                    ),
                }
            },
        );
    }

    fn permission(&self, key: &str, errs: &mut Vec<String>) {
        if self.catalog.resolve(key).is_some() {
            return;
        }
        let by_rule = key_from_name(key);
        let hint = if by_rule != key && self.catalog.resolve(&by_rule).is_some() {
            Some(by_rule)
        } else {
            closest(
                &by_rule,
                self.catalog.permissions().iter().map(|p| p.key.as_str()),
            )
            .map(str::to_owned)
        };
        errs.push(match hint {
            Some(h) => format!("unknown permission `{key}`; did you mean `{h}`?"),
            None => format!("unknown permission `{key}`: the catalog has no such permission"),
        });
    }

    fn permissions(&self, keys: &[String], errs: &mut Vec<String>) {
        for k in keys {
            self.permission(k, errs);
        }
    }

    fn resource_type(&self, key: &str, errs: &mut Vec<String>) {
        if self.catalog.resource_type(key).is_some() {
            return;
        }
        let known: Vec<&str> = self
            .catalog
            .resource_types()
            .iter()
            .map(|t| t.key.as_str())
            .collect();
        errs.push(match closest(key, known.iter().copied()) {
            Some(c) => format!("unknown resource type `{key}`; did you mean `{c}`?"),
            None if known.is_empty() => {
                format!("unknown resource type `{key}`: the catalog declares no resource types")
            }
            None => format!(
                "unknown resource type `{key}`; the catalog has: {}",
                known.join(", ")
            ),
        });
    }

    /// `type:id`.
    fn resource(&self, text: &str, errs: &mut Vec<String>) {
        match split_resource(text) {
            Some((t, _)) => self.resource_type(t, errs),
            None => errs.push(format!(
                "resource {text:?} is not `type:id` (e.g. `folder:spring`)"
            )),
        }
    }

    /// `permission@type:id`.
    fn scoped(&self, text: &str, errs: &mut Vec<String>) {
        match split_scoped(text) {
            Some((p, t, _)) => {
                self.permission(p, errs);
                self.resource_type(t, errs);
            }
            None => errs.push(format!(
                "scoped grant {text:?} is not `permission@type:id` (e.g. `edit_app@app:42`)"
            )),
        }
    }

    fn scoped_list(&self, list: &[String], errs: &mut Vec<String>) {
        for s in list {
            self.scoped(s, errs);
        }
    }

    fn role(&self, key: &str, errs: &mut Vec<String>) {
        let roles = self.catalog.roles();
        if roles.iter().any(|r| r.key == key) {
            return;
        }
        errs.push(match closest(key, roles.iter().map(|r| r.key.as_str())) {
            Some(c) => format!("unknown role `{key}`; did you mean `{c}`?"),
            None if roles.is_empty() => {
                format!("unknown role `{key}`: the catalog declares no [[roles]]")
            }
            None => {
                let keys: Vec<&str> = roles.iter().map(|r| r.key.as_str()).collect();
                format!(
                    "unknown role `{key}`: the catalog's roles are {}",
                    keys.join(", ")
                )
            }
        });
    }

    fn effective(&self, c: &EffectiveCase, errs: &mut Vec<String>) {
        self.user(&c.user, errs);
        if let Some(p) = &c.permissions {
            self.permissions(p, errs);
        }
        self.permissions(&c.includes, errs);
        self.permissions(&c.excludes, errs);
        for r in c.roles.iter().flatten() {
            self.role(r, errs);
        }
        if let Some(s) = &c.scoped {
            self.scoped_list(s, errs);
        }
        if c.permissions.is_none()
            && c.includes.is_empty()
            && c.excludes.is_empty()
            && c.roles.is_none()
            && c.scoped.is_none()
        {
            errs.push(
                "expects nothing: set permissions, includes, excludes, roles or scoped".to_owned(),
            );
        }
    }

    fn check(&self, c: &CheckCase, errs: &mut Vec<String>) {
        self.user(&c.user, errs);
        let targets = [&c.permission, &c.action, &c.expression]
            .iter()
            .filter(|t| t.is_some())
            .count();
        if targets != 1 {
            errs.push("set exactly one of permission, action or expression".to_owned());
        }
        if let Some(p) = &c.permission {
            self.permission(p, errs);
        }
        if let Some(a) = &c.action {
            if self.catalog.action(a).is_none() {
                let keys = self.catalog.actions().iter().map(|x| x.key.as_str());
                errs.push(match closest(a, keys) {
                    Some(k) => format!("unknown action `{a}`; did you mean `{k}`?"),
                    None => format!(
                        "unknown action `{a}`: `authzd catalog check` lists the catalog; actions are `<page>.<row>` keys"
                    ),
                });
            }
        }
        if let Some(e) = &c.expression {
            if let Err(err) = self.catalog.parse_expression(e) {
                errs.push(format!("expression: {err}"));
            }
        }
        if let Some(r) = &c.resource {
            self.resource(r, errs);
        }
        for flag in c.context.keys() {
            if self.catalog.flag(flag).is_none() {
                let keys = self.catalog.context_flags().iter().map(|f| f.key.as_str());
                errs.push(match closest(flag, keys) {
                    Some(k) => format!("unknown context flag `{flag}`; did you mean `{k}`?"),
                    None => {
                        format!("unknown context flag `{flag}`: the catalog does not declare it")
                    }
                });
            }
        }
        if let Some(missing) = &c.missing {
            self.permissions(missing, errs);
        }
        match (c.allowed, &c.error) {
            (Some(_), Some(_)) => errs.push(
                "set either allowed (a decision) or error (a refused check), not both".to_owned(),
            ),
            (None, None) => {
                errs.push("expects nothing: set allowed = true or false (or error)".to_owned())
            }
            (None, Some(_)) if c.missing.is_some() || c.denied_by_restriction.is_some() => errs
                .push("missing and denied_by_restriction describe a decision: set allowed too".to_owned()),
            (Some(true), _) if c.missing.as_ref().is_some_and(|m| !m.is_empty()) => {
                errs.push("an allowed check misses nothing: remove missing or set allowed = false".to_owned())
            }
            (Some(true), _) if c.denied_by_restriction == Some(true) => errs.push(
                "an allowed check is not denied by a restriction: remove denied_by_restriction or set allowed = false"
                    .to_owned(),
            ),
            _ => {}
        }
    }

    fn admin(&self, c: &AdminCase, errs: &mut Vec<String>) {
        self.user(&c.actor, errs);
        match (c.refused, &c.error) {
            (Some(_), Some(_)) => errs.push(
                "set either refused (by the admin rules) or error (any failure), not both"
                    .to_owned(),
            ),
            (None, None) => {
                errs.push("expects nothing: set refused = true or false (or error)".to_owned())
            }
            _ => {}
        }
        if c.reason.is_some() && c.refused != Some(true) {
            errs.push("reason describes a refusal: set refused = true".to_owned());
        }
        let ops = c.operations();
        match ops.as_slice() {
            [] => {
                let keys: Vec<&str> = c.slots().iter().map(|(k, _)| *k).collect();
                errs.push(format!(
                    "names no operation; set one of {}",
                    keys.join(", ")
                ));
            }
            [(_, op)] => self.operation(op, errs),
            more => {
                let keys: Vec<&str> = more.iter().map(|(k, _)| *k).collect();
                errs.push(format!(
                    "names {} operations ({}); an admin call makes one",
                    keys.len(),
                    keys.join(", ")
                ));
            }
        }
    }

    fn operation(&self, op: &Op<'_>, errs: &mut Vec<String>) {
        match op {
            Op::Grant(g) | Op::Revoke(g) => {
                self.user(&g.user, errs);
                self.permissions(&g.permissions, errs);
                if let Some(r) = &g.resource {
                    self.resource(r, errs);
                }
            }
            Op::CreateGroup(g) => {
                self.permissions(&g.permissions, errs);
                self.scoped_list(&g.scoped, errs);
            }
            Op::UpdateGroup(g) => {
                self.group(&g.group, errs);
                if let Some(p) = &g.permissions {
                    self.permissions(p, errs);
                }
                if let Some(s) = &g.scoped {
                    self.scoped_list(s, errs);
                }
                if g.name.is_none()
                    && g.description.is_none()
                    && g.permissions.is_none()
                    && g.scoped.is_none()
                {
                    errs.push(
                        "update_group changes nothing: set name, description, permissions or scoped"
                            .to_owned(),
                    );
                }
            }
            Op::DeleteGroup(g) | Op::GetGroup(g) => self.group(&g.group, errs),
            Op::DuplicateGroup(d) => self.group(&d.group, errs),
            Op::AddMembers(m) | Op::RemoveMembers(m) => {
                self.group(&m.group, errs);
                for u in &m.users {
                    self.user(u, errs);
                }
            }
            Op::SetStatus(s) => self.user(&s.user, errs),
            Op::Restrict(r) => {
                self.user(&r.user, errs);
                self.resource_type(&r.resource_type, errs);
            }
            // A profile or an import may name new users.
            Op::Upsert(_) => {}
            Op::Import(i) => {
                for row in &i.rows {
                    for g in &row.groups {
                        self.group(g, errs);
                    }
                    self.permissions(&row.permissions, errs);
                }
            }
            Op::GetUser(u) => self.user(&u.user, errs),
            Op::ListUsers(l) => {
                if let Some(g) = &l.group {
                    self.group(g, errs);
                }
            }
            Op::ListGroups | Op::ListAudit => {}
        }
    }
}

fn split_resource(text: &str) -> Option<(&str, &str)> {
    text.split_once(':')
        .filter(|(t, id)| !t.is_empty() && !id.is_empty())
}

fn split_scoped(text: &str) -> Option<(&str, &str, &str)> {
    let (p, r) = text.split_once('@')?;
    let (t, id) = split_resource(r)?;
    (!p.is_empty()).then_some((p, t, id))
}

fn resource_input(text: &str) -> Option<ResourceInput> {
    split_resource(text).map(|(t, id)| ResourceInput {
        resource_type: t.to_owned(),
        id: id.to_owned(),
    })
}

fn scoped_inputs(list: &[String]) -> Vec<(String, ResourceInput)> {
    list.iter()
        .filter_map(|s| split_scoped(s))
        .map(|(p, t, id)| {
            (
                p.to_owned(),
                ResourceInput {
                    resource_type: t.to_owned(),
                    id: id.to_owned(),
                },
            )
        })
        .collect()
}

// ---- Running: fixtures as operator writes, cases through the application ----

struct Runner {
    app: Authz,
    catalog: Arc<Catalog>,
    tenant: TenantId,
}

/// A case's result before it is named.
enum Judged {
    Outcome(Judgement),
    /// The application refused the case's input as malformed: the file must be fixed.
    Invalid(String),
}

struct Judgement {
    passed: bool,
    expected: String,
    got: String,
    explanation: Option<String>,
}

impl Judgement {
    fn named(self, kind: &'static str, name: String, line: usize) -> Outcome {
        Outcome {
            kind,
            name,
            line,
            passed: self.passed,
            expected: self.expected,
            got: self.got,
            explanation: self.explanation,
        }
    }
}

/// `[a, b]`.
fn list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
    format!("[{}]", items.join(", "))
}

impl Runner {
    async fn load_fixtures(&self, file: &TestFile, lines: &Lines) -> Result<(), Invalid> {
        let app = &self.app;
        let op = &AdminCall {
            by: By::Operator,
            mode: WriteMode::Commit,
        };
        let tenant = &self.tenant;
        let fail = |line: usize, item: String, e: Error| Invalid {
            problems: vec![Problem {
                line: Some(line),
                item: Some(item),
                message: e.to_string(),
            }],
        };
        app.create_tenant(tenant, "catalog test")
            .await
            .map_err(|e| Invalid {
                problems: vec![Problem::file(e.to_string())],
            })?;
        for g in &file.custom_groups {
            let group = g.get_ref();
            let input = GroupInput {
                key: group.key.clone(),
                name: group.name.clone().unwrap_or_else(|| group.key.clone()),
                description: group.description.clone(),
                permissions: group.permissions.clone(),
                scoped_grants: scoped_inputs(&group.scoped),
            };
            app.create_group(tenant, op, &input)
                .await
                .map_err(|e| fail(lines.of(g), format!("custom_groups {:?}", group.key), e))?;
        }
        for u in &file.users {
            let user = u.get_ref();
            let at = |e: Error| fail(lines.of(u), format!("users {:?}", user.id), e);
            let id = UserId::parse("id", user.id.as_str()).map_err(at)?;
            app.upsert_user(tenant, op, &id, "", "").await.map_err(at)?;
            for g in &user.groups {
                let key = GroupKey::parse("groups", g.as_str()).map_err(at)?;
                let users = UserIds::parse("id", vec![user.id.clone()]).map_err(at)?;
                app.add_members(tenant, op, &key, &users)
                    .await
                    .map_err(at)?;
            }
            if !user.permissions.is_empty() {
                app.grant(tenant, op, &id, &user.permissions, None)
                    .await
                    .map_err(at)?;
            }
            for (permission, resource) in scoped_inputs(&user.scoped) {
                app.grant(tenant, op, &id, &[permission], Some(&resource))
                    .await
                    .map_err(at)?;
            }
            for (resource_type, ids) in &user.restrictions {
                app.set_restrictions(tenant, op, &id, resource_type, ids, false)
                    .await
                    .map_err(at)?;
            }
            if user.status == Status::Blocked {
                app.set_user_status(tenant, op, &id, Some(UserStatus::Blocked))
                    .await
                    .map_err(at)?;
            }
        }
        Ok(())
    }

    fn canonical(&self, key: &str) -> String {
        self.catalog
            .resolve(key)
            .map_or_else(|| key.to_owned(), |p| self.catalog.key(p).to_owned())
    }

    /// Permission keys as the catalog names them (aliases resolved), sorted.
    fn canonical_set(&self, keys: &[String]) -> BTreeSet<String> {
        keys.iter().map(|k| self.canonical(k)).collect()
    }

    /// `permission@type:id` with the permission's key resolved.
    fn canonical_scoped(&self, list: &[String]) -> BTreeSet<String> {
        list.iter()
            .map(|s| match split_scoped(s) {
                Some((p, t, id)) => format!("{}@{t}:{id}", self.canonical(p)),
                None => s.clone(),
            })
            .collect()
    }

    async fn check(&self, c: &CheckCase) -> Judged {
        let target = if let Some(p) = &c.permission {
            TargetInput::Permission(p.clone())
        } else if let Some(a) = &c.action {
            TargetInput::Action(a.clone())
        } else {
            TargetInput::Expression(c.expression.clone().unwrap_or_default())
        };
        let input = CheckInput {
            user_id: c.user.clone(),
            target: Some(target),
            resource: c.resource.as_deref().and_then(resource_input),
            context: c.context.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            explain: true,
        };
        let result = self
            .app
            .check(&self.tenant, &input, Consistency::Full)
            .await;
        let mut expected = Vec::new();
        if let Some(a) = c.allowed {
            expected.push(format!("allowed = {a}"));
        }
        if let Some(m) = &c.missing {
            expected.push(format!("missing = {}", list(self.canonical_set(m))));
        }
        if let Some(r) = c.denied_by_restriction {
            expected.push(format!("denied_by_restriction = {r}"));
        }
        if let Some(e) = &c.error {
            expected.push(format!("an error containing {e:?}"));
        }
        let expected = expected.join(", ");
        let (checked, _) = match result {
            Ok(done) => done,
            Err(e) => {
                let message = e.to_string();
                return match &c.error {
                    Some(part) => Judged::Outcome(Judgement {
                        passed: message.contains(part.as_str()),
                        expected,
                        got: format!("error: {message}"),
                        explanation: None,
                    }),
                    None if matches!(e, Error::Invalid(_)) => Judged::Invalid(format!(
                        "the check is refused as malformed: {message} (fix the case, or expect it with `error = \"...\"`)"
                    )),
                    None => Judged::Outcome(Judgement {
                        passed: false,
                        expected,
                        got: format!("error: {message}"),
                        explanation: None,
                    }),
                };
            }
        };
        let d = &checked.decision;
        let missing: BTreeSet<String> = d
            .missing
            .iter()
            .map(|p| self.catalog.key(*p).to_owned())
            .collect();
        let mut got = format!("allowed = {}", d.allowed);
        if !d.allowed {
            got.push_str(&format!(", missing = {}", list(&missing)));
        }
        if let Some(r) = &d.denied_by_restriction {
            got.push_str(&format!(
                ", denied_by_restriction = true (limited to {} {})",
                self.catalog.resource_type_key(r.resource_type),
                r.allowed_ids.join(", ")
            ));
        }
        let passed = c.error.is_none()
            && c.allowed == Some(d.allowed)
            && c.missing
                .as_ref()
                .is_none_or(|m| self.canonical_set(m) == missing)
            && c.denied_by_restriction
                .is_none_or(|r| r == d.denied_by_restriction.is_some());
        Judged::Outcome(Judgement {
            passed,
            expected,
            got,
            explanation: d.explanation.as_ref().map(|e| e.summary.clone()),
        })
    }

    async fn effective(&self, c: &EffectiveCase) -> Judged {
        // GetEffectivePermissions' own reading of a user.
        let user = match UserId::parse("user", c.user.as_str()) {
            Ok(u) => u,
            Err(e) => return Judged::Invalid(e.to_string()),
        };
        let (subject, _) = match self
            .app
            .subject(&self.tenant, &user, Consistency::Full)
            .await
        {
            Ok(s) => s,
            Err(e) => return Judged::Invalid(e.to_string()),
        };
        let catalog = &self.catalog;
        let effective = decide::effective_permissions(&subject);
        let held: BTreeSet<String> = effective
            .iter()
            .map(|e| catalog.key(e.permission).to_owned())
            .collect();
        let sources: HashMap<&str, String> = effective
            .iter()
            .map(|e| {
                let from: Vec<String> = e.sources.iter().map(|s| s.render(catalog, None)).collect();
                (catalog.key(e.permission), from.join(", "))
            })
            .collect();
        let roles: BTreeSet<String> = self.app.roles_of(&subject).into_iter().collect();
        let scoped: BTreeSet<String> = decide::scoped_grants(&subject)
            .into_iter()
            .map(|(g, _)| {
                format!(
                    "{}@{}:{}",
                    catalog.key(g.permission),
                    catalog.resource_type_key(g.resource.resource_type),
                    g.resource.id
                )
            })
            .collect();
        let mut expected = Vec::new();
        let mut wrong = Vec::new();
        if let Some(p) = &c.permissions {
            let want = self.canonical_set(p);
            expected.push(format!("permissions = {}", list(&want)));
            if want != held {
                let extra: Vec<&String> = held.difference(&want).collect();
                let lacking: Vec<&String> = want.difference(&held).collect();
                let mut diff = Vec::new();
                if !extra.is_empty() {
                    diff.push(format!("also holds {}", list(extra)));
                }
                if !lacking.is_empty() {
                    diff.push(format!("lacks {}", list(lacking)));
                }
                wrong.push(format!("permissions: {}", diff.join("; ")));
            }
        }
        if !c.includes.is_empty() {
            let want = self.canonical_set(&c.includes);
            expected.push(format!("includes = {}", list(&want)));
            let lacking: Vec<&String> = want.difference(&held).collect();
            if !lacking.is_empty() {
                wrong.push(format!("lacks {}", list(lacking)));
            }
        }
        if !c.excludes.is_empty() {
            let want = self.canonical_set(&c.excludes);
            expected.push(format!("excludes = {}", list(&want)));
            let present: Vec<String> = want
                .intersection(&held)
                .map(|k| {
                    format!(
                        "{k} (from {})",
                        sources.get(k.as_str()).map_or("", String::as_str)
                    )
                })
                .collect();
            if !present.is_empty() {
                wrong.push(format!("holds {}", present.join(", ")));
            }
        }
        if let Some(r) = &c.roles {
            let want: BTreeSet<String> = r.iter().cloned().collect();
            expected.push(format!("roles = {}", list(&want)));
            if want != roles {
                wrong.push(format!("roles = {}", list(&roles)));
            }
        }
        if let Some(s) = &c.scoped {
            let want = self.canonical_scoped(s);
            expected.push(format!("scoped = {}", list(&want)));
            if want != scoped {
                wrong.push(format!("scoped = {}", list(&scoped)));
            }
        }
        let passed = wrong.is_empty();
        Judged::Outcome(Judgement {
            passed,
            expected: expected.join(", "),
            got: if passed {
                "as expected".to_owned()
            } else {
                wrong.join("; ")
            },
            explanation: None,
        })
    }

    async fn admin(&self, c: &AdminCase, op: Op<'_>) -> Judged {
        let result = self.call(&c.actor, op).await;
        let mut expected = match (c.refused, &c.error) {
            (Some(true), _) => "refused = true".to_owned(),
            (Some(false), _) => "refused = false".to_owned(),
            (None, Some(e)) => format!("an error containing {e:?}"),
            (None, None) => String::new(),
        };
        if let Some(r) = &c.reason {
            expected.push_str(&format!(", reason containing {r:?}"));
        }
        let (got, passed) = match &result {
            Ok(()) => (
                "refused = false (the call would succeed)".to_owned(),
                c.refused == Some(false),
            ),
            Err(e) if e.refused_by().is_some() => {
                let message = e.to_string();
                let passed = match (c.refused, &c.error) {
                    (Some(refused), _) => {
                        refused
                            && c.reason
                                .as_ref()
                                .is_none_or(|r| message.contains(r.as_str()))
                    }
                    (None, Some(part)) => message.contains(part.as_str()),
                    (None, None) => false,
                };
                (format!("refused = true: {message}"), passed)
            }
            Err(e) => {
                let message = e.to_string();
                match &c.error {
                    Some(part) => (format!("error: {message}"), message.contains(part.as_str())),
                    None if matches!(e, Error::Invalid(_)) => {
                        return Judged::Invalid(format!(
                            "the call is refused as malformed: {message} (fix the case, or expect it with `error = \"...\"`)"
                        ));
                    }
                    None => (format!("error (not an admin refusal): {message}"), false),
                }
            }
        };
        Judged::Outcome(Judgement {
            passed,
            expected,
            got,
            explanation: None,
        })
    }

    /// The operation as `actor`, a dry run for every write.
    async fn call(&self, actor: &str, op: Op<'_>) -> Result<(), Error> {
        let app = &self.app;
        let tenant = &self.tenant;
        let actor = &By::parse("actor", actor)?;
        let call = &AdminCall {
            by: actor.clone(),
            mode: WriteMode::DryRun,
        };
        let user = |id: &str| UserId::parse("user", id);
        let group = |key: &str| GroupKey::parse("group", key);
        match op {
            Op::Grant(g) => {
                let resource = g.resource.as_deref().and_then(resource_input);
                app.grant(
                    tenant,
                    call,
                    &user(&g.user)?,
                    &g.permissions,
                    resource.as_ref(),
                )
                .await
                .map(drop)
            }
            Op::Revoke(g) => {
                let resource = g.resource.as_deref().and_then(resource_input);
                app.revoke(
                    tenant,
                    call,
                    &user(&g.user)?,
                    &g.permissions,
                    resource.as_ref(),
                )
                .await
                .map(drop)
            }
            Op::CreateGroup(g) => {
                let input = GroupInput {
                    key: g.key.clone(),
                    name: g.name.clone().unwrap_or_else(|| g.key.clone()),
                    description: g.description.clone(),
                    permissions: g.permissions.clone(),
                    scoped_grants: scoped_inputs(&g.scoped),
                };
                app.create_group(tenant, call, &input).await.map(drop)
            }
            Op::UpdateGroup(g) => {
                let mut mask = Vec::new();
                let mut input = GroupInput {
                    key: g.group.clone(),
                    ..GroupInput::default()
                };
                if let Some(n) = &g.name {
                    mask.push("name".to_owned());
                    input.name = n.clone();
                }
                if let Some(d) = &g.description {
                    mask.push("description".to_owned());
                    input.description = d.clone();
                }
                if let Some(p) = &g.permissions {
                    mask.push("permissions".to_owned());
                    input.permissions = p.clone();
                }
                if let Some(s) = &g.scoped {
                    mask.push("scoped_grants".to_owned());
                    input.scoped_grants = scoped_inputs(s);
                }
                app.update_group(tenant, call, &group(&g.group)?, &input, &mask, None)
                    .await
                    .map(drop)
            }
            Op::DeleteGroup(g) => app
                .delete_group(tenant, call, &group(&g.group)?, None)
                .await
                .map(drop),
            Op::DuplicateGroup(d) => {
                let input = DuplicateInput {
                    source_group_key: group(&d.group)?,
                    new_key: d.new_key.clone(),
                    new_name: d.new_name.clone(),
                    copy_permissions: d.copy_permissions,
                    copy_scoped_grants: d.copy_scoped_grants,
                    copy_members: d.copy_members,
                };
                app.duplicate_group(tenant, call, &input).await.map(drop)
            }
            Op::AddMembers(m) => app
                .add_members(
                    tenant,
                    call,
                    &group(&m.group)?,
                    &UserIds::parse("users", m.users.clone())?,
                )
                .await
                .map(drop),
            Op::RemoveMembers(m) => app
                .remove_members(
                    tenant,
                    call,
                    &group(&m.group)?,
                    &UserIds::parse("users", m.users.clone())?,
                )
                .await
                .map(drop),
            Op::SetStatus(s) => app
                .set_user_status(tenant, call, &user(&s.user)?, Some(s.status.into()))
                .await
                .map(drop),
            Op::Restrict(r) => app
                .set_restrictions(
                    tenant,
                    call,
                    &user(&r.user)?,
                    &r.resource_type,
                    &r.ids,
                    r.clear,
                )
                .await
                .map(drop),
            Op::Upsert(p) => app
                .upsert_user(tenant, call, &user(&p.user)?, &p.display_name, &p.email)
                .await
                .map(drop),
            Op::Import(i) => {
                let rows: Vec<ImportInput> = i
                    .rows
                    .iter()
                    .map(|r| ImportInput {
                        user_id: r.user.clone(),
                        display_name: r.display_name.clone(),
                        email: r.email.clone(),
                        group_keys: r.groups.clone(),
                        permissions: r.permissions.clone(),
                    })
                    .collect();
                app.import_users(tenant, call, &rows).await.map(drop)
            }
            Op::GetUser(u) => app
                .get_user(tenant, actor, &user(&u.user)?, Consistency::Full)
                .await
                .map(drop),
            Op::ListUsers(l) => app
                .list_users(
                    tenant,
                    actor,
                    l.group.as_deref().map(group).transpose()?.as_ref(),
                    &Paging::default(),
                    Consistency::Full,
                )
                .await
                .map(drop),
            Op::GetGroup(g) => app
                .get_group(tenant, actor, &group(&g.group)?)
                .await
                .map(drop),
            Op::ListGroups => app
                .list_groups(tenant, actor, &Paging::default())
                .await
                .map(drop),
            Op::ListAudit => app
                .list_audit(tenant, actor, AuditFilter::default())
                .await
                .map(drop),
        }
    }
}
