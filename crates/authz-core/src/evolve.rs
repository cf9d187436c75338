//! Catalog evolution: what changes between two catalogs, whether stored data keeps its meaning,
//! and what a change does to each user.
//!
//! A change is **compatible** when replicas on both catalogs can serve side by side: every
//! question both can answer gets the same answer and explanation, and every stored reference
//! means what it meant, including what replicas on the new catalog write. That is additions
//! older replicas never meet (permissions, also in an existing group; aliases, actions, roles,
//! resource types, flags) and changed descriptions or names that keep the key. Everything else
//! is **incompatible**: a removal, a rename (new replicas store the new key), a new system group
//! (its members look like non-members to older replicas), a changed or reworded requirement, a
//! flag's default, a group whose existing permissions change, a merge, a changed `[admin]` rule.
//!
//! Stored data is checked separately ([`Usage`]): a reference the new catalog does not know, or
//! one that would start to mean something it did not (a stored key a new permission takes, a
//! custom group whose key a new system group takes, leftover memberships a new system group
//! would adopt) is a [`Conflict`]. Conflicts are resolved only by declared [`Mappings`], which
//! `catalog apply` carries out; nothing is ever dropped or reinterpreted silently.
//!
//! Long: the comparison, the stored-data conflicts, the mappings and the preview are one algorithm
//! over the same two catalogs and their private indexes; its unit tests are the last fifth.

use crate::admin::AdminOp;
use crate::catalog::Catalog;
use crate::expr::{Expr, FlagId};
use crate::permset::PermId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One difference between two catalogs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What kind of item changed and how, e.g. `permission_added`, `action_changed`.
    pub kind: &'static str,
    /// The key of the item.
    pub key: String,
    pub compatible: bool,
    /// One sentence for people.
    pub detail: String,
}

/// Where a stored key is used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Uses {
    /// Tenants that use it.
    pub tenants: BTreeSet<String>,
    /// How many stored rows or array entries use it.
    pub count: u64,
}

impl Uses {
    pub fn add(&mut self, tenant: &str, count: u64) {
        self.tenants.insert(tenant.to_owned());
        self.count += count;
    }

    fn describe(&self, what: Noun) -> String {
        let names: Vec<&str> = self.tenants.iter().take(5).map(String::as_str).collect();
        let more = self.tenants.len().saturating_sub(names.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!(
            "{} {} in {} tenant{} ({}{more})",
            self.count,
            what.0
                .get(usize::from(self.count != 1))
                .copied()
                .unwrap_or(what.0[0]),
            self.tenants.len(),
            if self.tenants.len() == 1 { "" } else { "s" },
            names.join(", ")
        )
    }
}

/// A noun in the singular and the plural.
#[derive(Clone, Copy)]
struct Noun([&'static str; 2]);

const GRANTS: Noun = Noun(["stored grant", "stored grants"]);
const MEMBERS: Noun = Noun(["member", "members"]);
const MEMBERSHIPS: Noun = Noun(["membership", "memberships"]);
const CUSTOM_GROUPS: Noun = Noun(["custom group", "custom groups"]);
const TYPE_USES: Noun = Noun([
    "scoped grant or restriction",
    "scoped grants or restrictions",
]);

/// What a database stores that a catalog gives meaning to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Stored permission keys: direct grants, custom groups' permissions, scoped grants.
    pub permissions: BTreeMap<String, Uses>,
    /// Memberships in group keys with no custom group: system groups, or leftovers of removed
    /// ones.
    pub system_memberships: BTreeMap<String, Uses>,
    /// Custom groups whose key is a system group key of one of the catalogs compared.
    pub custom_groups: BTreeMap<String, Uses>,
    /// Resource types of scoped grants and restrictions.
    pub resource_types: BTreeMap<String, Uses>,
}

/// Stored data the new catalog would drop or read differently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// e.g. `removed_permission_in_use`, `group_key_taken`.
    pub kind: &'static str,
    pub key: String,
    pub detail: String,
    /// How to resolve it.
    pub resolve: String,
    /// The declared mapping that resolves it, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
}

/// Declared ways to carry stored data over an incompatible change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mappings {
    /// Removed (or leftover) system group → the group its members move to.
    pub move_members: BTreeMap<String, String>,
    /// Removed (or leftover) system groups whose memberships are dropped.
    pub drop_members: BTreeSet<String>,
    /// Stored permission keys the new catalog does not know, dropped everywhere.
    pub drop_permissions: BTreeSet<String>,
    /// Custom group → its new key (when a system group takes the old one).
    pub rename_groups: BTreeMap<String, String>,
    /// Resource types the new catalog does not know: their scoped grants and restrictions are
    /// dropped.
    pub drop_resource_types: BTreeSet<String>,
}

impl Mappings {
    pub fn is_empty(&self) -> bool {
        self == &Mappings::default()
    }

    /// Refuses mappings that could not mean what they say against `new`: dropping a
    /// permission or resource type the catalog still has, moving members into nothing, renaming
    /// a group onto a system group or an invalid key.
    pub fn validate(&self, new: &Catalog) -> Result<(), String> {
        let mut errors = Vec::new();
        for t in &self.drop_resource_types {
            if new.resource_type(t).is_some() {
                errors.push(format!(
                    "--drop-resource-type {t}: the new catalog has it; change the grants through the API instead"
                ));
            }
        }
        for (from, to) in &self.move_members {
            if from == to {
                errors.push(format!(
                    "--move-members {from}={to}: moves the members into the group they leave"
                ));
            }
            if new.group(from).is_some() {
                errors.push(format!(
                    "--move-members {from}={to}: `{from}` is a system group of the new catalog; its members stay"
                ));
            }
            if !crate::key::is_valid_key(to) {
                errors.push(format!(
                    "--move-members {from}={to}: `{to}` is not a group key"
                ));
            }
            if self.drop_members.contains(from) {
                errors.push(format!(
                    "`{from}` is both moved (--move-members) and dropped (--drop-members)"
                ));
            }
        }
        for g in &self.drop_members {
            if new.group(g).is_some() {
                errors.push(format!(
                    "--drop-members {g}: `{g}` is a system group of the new catalog; remove its members through the API"
                ));
            }
        }
        let mut targets = BTreeSet::new();
        for (from, to) in &self.rename_groups {
            if from == to {
                errors.push(format!(
                    "--rename-group {from}={to}: renames the group to its own key"
                ));
                continue;
            }
            if !crate::key::is_valid_key(to) {
                errors.push(format!(
                    "--rename-group {from}={to}: `{to}` is not a valid key (a-z, 0-9 and `_`)"
                ));
            }
            if new.group(to).is_some() {
                errors.push(format!(
                    "--rename-group {from}={to}: `{to}` is a system group of the new catalog"
                ));
            }
            if !targets.insert(to) || self.rename_groups.contains_key(to) {
                errors.push(format!(
                    "--rename-group {from}={to}: `{to}` is the target or source of another rename"
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

/// Most lines a [`Comparison::report`] holds (refused starts, replicas that stop serving).
const REPORT_LINES: usize = 20;

/// Two catalogs compared, with stored data when a database was read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Comparison {
    pub changes: Vec<Change>,
    pub conflicts: Vec<Conflict>,
    /// Set when stored data was compared too.
    pub data_checked: bool,
    /// Declared mappings that resolve no conflict, each with why: `catalog apply` refuses them
    /// (a mapping is never carried out for nothing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unused_mappings: Vec<String>,
}

impl Comparison {
    /// True when nothing changes meaning: a replica may serve either catalog.
    pub fn compatible(&self) -> bool {
        self.changes.iter().all(|c| c.compatible) && self.conflicts.is_empty()
    }

    pub fn incompatible_changes(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| !c.compatible)
    }

    /// Conflicts no declared mapping resolves: `catalog apply` refuses while there are any.
    pub fn unresolved(&self) -> impl Iterator<Item = &Conflict> {
        self.conflicts.iter().filter(|c| c.resolved_by.is_none())
    }

    /// Every incompatible change and unresolved conflict, one per line, with how to resolve
    /// conflicts: what a refused start prints.
    pub fn report(&self) -> String {
        // Stored data first: each needs a decision (a mapping) before anything can go ahead.
        let mut lines = Vec::new();
        for c in self.unresolved() {
            lines.push(format!("  - {} ({})", c.detail, c.resolve));
        }
        for c in self.incompatible_changes() {
            lines.push(format!("  - {}", c.detail));
        }
        if lines.len() > REPORT_LINES {
            let more = lines.len() - REPORT_LINES;
            lines.truncate(REPORT_LINES);
            lines.push(format!(
                "  - … and {more} more (`authzd catalog diff` lists them all)"
            ));
        }
        lines.join("\n")
    }
}

/// Compares `new` with `old` (the catalog the database records; `None` when it records none
/// yet) and, when `usage` is given, the stored data with both.
pub fn compare(
    old: Option<&Catalog>,
    new: &Catalog,
    usage: Option<&Usage>,
    mappings: &Mappings,
) -> Comparison {
    let mut out = Comparison {
        changes: old.map(|o| catalog_changes(o, new)).unwrap_or_default(),
        data_checked: usage.is_some(),
        ..Comparison::default()
    };
    if let Some(usage) = usage {
        out.conflicts = data_conflicts(old, new, usage, mappings);
        out.unused_mappings = unused_mappings(new, usage, mappings, &out.conflicts);
    }
    out
}

/// The declared mappings no conflict needs, each with why.
fn unused_mappings(
    new: &Catalog,
    usage: &Usage,
    m: &Mappings,
    conflicts: &[Conflict],
) -> Vec<String> {
    let used: BTreeSet<&str> = conflicts
        .iter()
        .filter_map(|c| c.resolved_by.as_deref())
        .collect();
    let mut out = Vec::new();
    for k in &m.drop_permissions {
        let flag = format!("--drop-permission {k}");
        if used.contains(flag.as_str()) {
            continue;
        }
        out.push(match (usage.permissions.contains_key(k), new.resolve(k)) {
            (false, _) => format!("{flag}: no stored grant uses `{k}`"),
            (true, Some(p)) => format!(
                "{flag}: `{k}` keeps its meaning in the new catalog (`{}`); revoke it through the API instead",
                new.key(p)
            ),
            (true, None) => format!("{flag}: resolves no conflict"),
        });
    }
    for t in &m.drop_resource_types {
        let flag = format!("--drop-resource-type {t}");
        if !used.contains(flag.as_str()) {
            out.push(if usage.resource_types.contains_key(t) {
                format!("{flag}: `{t}` keeps its meaning in the new catalog; change the grants through the API instead")
            } else {
                format!("{flag}: no scoped grant or restriction uses `{t}`")
            });
        }
    }
    for (from, to) in &m.move_members {
        let flag = format!("--move-members {from}={to}");
        if !used.contains(flag.as_str()) {
            out.push(format!(
                "{flag}: no conflict needs it (nobody is a member of a removed group `{from}`)"
            ));
        }
    }
    for g in &m.drop_members {
        let flag = format!("--drop-members {g}");
        if !used.contains(flag.as_str()) {
            out.push(format!(
                "{flag}: no conflict needs it (nobody is a member of a removed group `{g}`)"
            ));
        }
    }
    for (from, to) in &m.rename_groups {
        let flag = format!("--rename-group {from}={to}");
        if !used.contains(flag.as_str()) {
            out.push(format!(
                "{flag}: no conflict needs it (no new system group takes the key `{from}`); rename custom groups through the API"
            ));
        }
    }
    out
}

// ---- Catalog against catalog ----

/// Old permission id → new permission id, for every old permission whose key the new catalog
/// resolves (directly or as an alias).
fn permission_map(old: &Catalog, new: &Catalog) -> HashMap<PermId, PermId> {
    old.permissions()
        .iter()
        .filter_map(|p| new.resolve(&p.key).map(|n| (p.id, n)))
        .collect()
}

fn change(kind: &'static str, key: &str, compatible: bool, detail: String) -> Change {
    Change {
        kind,
        key: key.to_owned(),
        compatible,
        detail,
    }
}

fn catalog_changes(old: &Catalog, new: &Catalog) -> Vec<Change> {
    let mut out = Vec::new();
    if old.name != new.name {
        out.push(change(
            "catalog_renamed",
            &new.name,
            false,
            format!(
                "the catalog changes from `{}` to `{}`: a different catalog",
                old.name, new.name
            ),
        ));
    }
    if old.version != new.version {
        out.push(change(
            "version_changed",
            &new.version,
            true,
            format!("version {} → {}", old.version, new.version),
        ));
    }
    let map = permission_map(old, new);
    permissions(old, new, &map, &mut out);
    groups(old, new, &map, &mut out);
    actions(old, new, &map, &mut out);
    resource_types(old, new, &mut out);
    flags(old, new, &mut out);
    roles(old, new, &map, &mut out);
    admin(old, new, &map, &mut out);
    out
}

fn permissions(old: &Catalog, new: &Catalog, map: &HashMap<PermId, PermId>, out: &mut Vec<Change>) {
    let mut images: HashMap<PermId, Vec<&str>> = HashMap::new();
    for p in old.permissions() {
        let Some(&n) = map.get(&p.id) else {
            out.push(change(
                "permission_removed",
                &p.key,
                false,
                format!("permission `{}` is removed", p.key),
            ));
            continue;
        };
        images.entry(n).or_default().push(&p.key);
        let np = new.permission(n);
        if np.key != p.key {
            // Replicas on the new catalog store the new key, which replicas on the old one
            // cannot read: a rename is carried out by `catalog apply`, which rewrites stored keys.
            out.push(change(
                "permission_renamed",
                &p.key,
                false,
                format!(
                    "permission `{}` is renamed `{}` (the old key stays as an alias; `catalog apply` rewrites stored keys to the new one)",
                    p.key, np.key
                ),
            ));
        }
        if np.internal != p.internal {
            out.push(change(
                "permission_internal_changed",
                &np.key,
                false,
                format!(
                    "permission `{}` becomes {}",
                    np.key,
                    if np.internal {
                        "internal (staff-only)"
                    } else {
                        "visible to tenants (no longer internal)"
                    }
                ),
            ));
        }
        if np.key == p.key
            && (np.name != p.name || np.description != p.description || np.section != p.section)
        {
            out.push(change(
                "permission_described",
                &np.key,
                true,
                format!(
                    "permission `{}`: name, section or description changes",
                    np.key
                ),
            ));
        }
        for alias in &np.aliases {
            if old.resolve(&crate::key::key_from_name(alias)) != Some(p.id) {
                out.push(change(
                    "alias_added",
                    &np.key,
                    true,
                    format!("permission `{}` gains the alias {alias:?}", np.key),
                ));
            }
        }
        for alias in &p.aliases {
            let k = crate::key::key_from_name(alias);
            if new.resolve(&k) != Some(n) {
                out.push(change(
                    "alias_removed",
                    &p.key,
                    false,
                    format!(
                        "alias {alias:?} of `{}` no longer names it: callers and stored data using `{k}` lose it",
                        p.key
                    ),
                ));
            }
        }
    }
    for (n, olds) in &images {
        if olds.len() > 1 {
            out.push(change(
                "permissions_merged",
                new.key(*n),
                false,
                format!(
                    "permissions {} become one, `{}`: whoever holds one holds all",
                    quoted(olds.iter().copied()),
                    new.key(*n)
                ),
            ));
        }
    }
    let image: BTreeSet<PermId> = map.values().copied().collect();
    for p in new.permissions() {
        if !image.contains(&p.id) {
            out.push(change(
                "permission_added",
                &p.key,
                true,
                format!(
                    "permission `{}` is added{}",
                    p.key,
                    if p.internal { " (internal)" } else { "" }
                ),
            ));
        }
    }
}

fn quoted<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    keys.map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn groups(old: &Catalog, new: &Catalog, map: &HashMap<PermId, PermId>, out: &mut Vec<Change>) {
    let image: BTreeSet<PermId> = map.values().copied().collect();
    for g in old.groups() {
        let Some(ng) = new.group(&g.key) else {
            out.push(change(
                "group_removed",
                &g.key,
                false,
                format!("system group `{}` is removed", g.key),
            ));
            continue;
        };
        let before: BTreeSet<PermId> = g
            .grants
            .permissions
            .iter()
            .filter_map(|p| map.get(&p).copied())
            .collect();
        let lost_outright: Vec<&str> = g
            .grants
            .permissions
            .iter()
            .filter(|p| !map.contains_key(p))
            .map(|p| old.key(p))
            .collect();
        let after: BTreeSet<PermId> = ng.grants.permissions.iter().collect();
        let gained_old: Vec<&str> = after
            .iter()
            .filter(|p| image.contains(p) && !before.contains(p))
            .map(|p| new.key(*p))
            .collect();
        let gained_new: Vec<&str> = after
            .iter()
            .filter(|p| !image.contains(p))
            .map(|p| new.key(*p))
            .collect();
        let lost: Vec<&str> = before
            .iter()
            .filter(|p| !after.contains(p))
            .map(|p| new.key(*p))
            .chain(lost_outright)
            .collect();
        if !gained_old.is_empty() || !lost.is_empty() {
            let mut parts = Vec::new();
            if !gained_old.is_empty() {
                parts.push(format!("gains {}", quoted(gained_old.iter().copied())));
            }
            if !lost.is_empty() {
                parts.push(format!("loses {}", quoted(lost.iter().copied())));
            }
            out.push(change(
                "group_permissions_changed",
                &g.key,
                false,
                format!(
                    "system group `{}` {}: its members' access changes",
                    g.key,
                    parts.join(" and ")
                ),
            ));
        }
        if !gained_new.is_empty() {
            out.push(change(
                "group_gains_new_permissions",
                &g.key,
                true,
                format!(
                    "system group `{}` gains the new {} (an actor must hold it too to assign the group)",
                    g.key,
                    quoted(gained_new.iter().copied())
                ),
            ));
        }
        if ng.internal != g.internal {
            out.push(change(
                "group_internal_changed",
                &g.key,
                false,
                format!(
                    "system group `{}` becomes {}",
                    g.key,
                    if ng.internal {
                        "internal"
                    } else {
                        "visible to tenants"
                    }
                ),
            ));
        }
        if ng.name != g.name || ng.description != g.description {
            out.push(change(
                "group_described",
                &g.key,
                true,
                format!("system group `{}`: name or description changes", g.key),
            ));
        }
    }
    for g in new.groups() {
        if old.group(&g.key).is_none() {
            // Members added on replicas that know the group are unknown to replicas that do
            // not: they would read those users without the group's permissions (and a negated
            // requirement would then hold). Carried out by `catalog apply`.
            let n = g.grants.permissions.len();
            out.push(change(
                "group_added",
                &g.key,
                false,
                format!(
                    "system group `{}` is added with {n} permission{}",
                    g.key,
                    if n == 1 { "" } else { "s" }
                ),
            ));
        }
    }
}

/// How a requirement changes between two catalogs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requirement {
    /// The same words, each permission the same one: the same decisions and explanations.
    Same,
    /// Other words with the same decisions, but explanations (missing permissions) may differ.
    Reworded,
    Changed,
}

fn requirement(
    old: &Catalog,
    a: &Expr,
    new: &Catalog,
    b: &Expr,
    map: &HashMap<PermId, PermId>,
) -> Requirement {
    let old_name = |k: &str| match old.resolve(k).and_then(|p| map.get(&p)) {
        Some(n) => new.key(*n).to_owned(),
        // A permission the new catalog lacks can name nothing there.
        None => format!("{k} (removed)"),
    };
    let new_name = |k: &str| {
        new.resolve(k)
            .map_or(k.to_owned(), |p| new.key(p).to_owned())
    };
    if a.words(&old_name) == b.words(&new_name) {
        return Requirement::Same;
    }
    let old_flags: BTreeSet<&str> = a
        .flags()
        .iter()
        .map(|f| old.context_flag(*f).key.as_str())
        .collect();
    // A flag the old requirement did not test must now be sent: a check that was answered
    // would be refused.
    let more_flags = b
        .flags()
        .iter()
        .any(|f| !old_flags.contains(new.context_flag(*f).key.as_str()));
    if !more_flags && same_meaning(old, a, new, b, map) {
        Requirement::Reworded
    } else {
        Requirement::Changed
    }
}

/// Says how a requirement changed, for a change's detail.
fn requirement_detail(what: &str, a: &Expr, b: &Expr, how: Requirement) -> String {
    match how {
        Requirement::Reworded => format!(
            "{what} is reworded from `{}` to `{}`: the same decisions, but explanations (missing permissions) may differ",
            a.source(),
            b.source()
        ),
        _ if a.source() == b.source() => format!(
            "{what} requires `{}`, whose names now stand for other permissions",
            b.source()
        ),
        _ => format!(
            "{what} requires `{}` instead of `{}`",
            b.source(),
            a.source()
        ),
    }
}

/// Whether two expressions, one over each catalog, give the same answer for every holding of
/// permissions and every flag value. Decided exactly by enumeration up to 16 variables; past
/// that, only identical source text counts as the same.
fn same_meaning(
    old: &Catalog,
    a: &Expr,
    new: &Catalog,
    b: &Expr,
    map: &HashMap<PermId, PermId>,
) -> bool {
    // The variables, named in the new catalog.
    let mut perms: Vec<PermId> = Vec::new();
    for p in a.permissions().iter() {
        match map.get(&p) {
            Some(n) => {
                if !perms.contains(n) {
                    perms.push(*n);
                }
            }
            // A permission the new catalog does not have: the meaning cannot be kept.
            None => return false,
        }
    }
    for p in b.permissions().iter() {
        if !perms.contains(&p) {
            // A permission only the new side names: no old holder had it, but a system group
            // of the new catalog may give it, so answers can differ.
            return false;
        }
    }
    let mut flags: Vec<String> = Vec::new();
    for f in a.flags() {
        flags.push(old.context_flag(*f).key.clone());
    }
    for f in b.flags() {
        let k = &new.context_flag(*f).key;
        if !flags.contains(k) {
            flags.push(k.clone());
        }
    }
    let n = perms.len() + flags.len();
    if n > 16 {
        return a.source() == b.source() && a.permissions().len() == b.permissions().len();
    }
    let perm_bit = |p: PermId| perms.iter().position(|x| *x == p);
    let flag_bit = |k: &str| flags.iter().position(|x| x == k).map(|i| i + perms.len());
    for bits in 0u32..(1 << n) {
        let on = |i: Option<usize>| i.is_some_and(|i| bits & (1 << i) != 0);
        let old_answer = a.holds(
            &|p: PermId| on(map.get(&p).and_then(|n| perm_bit(*n))),
            &|f: FlagId| on(flag_bit(&old.context_flag(f).key)),
        );
        let new_answer = b.holds(&|p: PermId| on(perm_bit(p)), &|f: FlagId| {
            on(flag_bit(&new.context_flag(f).key))
        });
        if old_answer != new_answer {
            return false;
        }
    }
    true
}

fn actions(old: &Catalog, new: &Catalog, map: &HashMap<PermId, PermId>, out: &mut Vec<Change>) {
    for a in old.actions() {
        match new.action(&a.key) {
            None => out.push(change(
                "action_removed",
                &a.key,
                false,
                format!("action `{}` is removed", a.key),
            )),
            Some(na) => {
                let how = requirement(old, &a.expr, new, &na.expr, map);
                if how != Requirement::Same {
                    out.push(change(
                        if how == Requirement::Reworded {
                            "action_reworded"
                        } else {
                            "action_changed"
                        },
                        &a.key,
                        false,
                        requirement_detail(&format!("action `{}`", a.key), &a.expr, &na.expr, how),
                    ));
                } else if na.description != a.description {
                    out.push(change(
                        "action_described",
                        &a.key,
                        true,
                        format!("action `{}`: description changes", a.key),
                    ));
                }
            }
        }
    }
    for a in new.actions() {
        if old.action(&a.key).is_none() {
            out.push(change(
                "action_added",
                &a.key,
                true,
                format!("action `{}` is added", a.key),
            ));
        }
    }
}

fn resource_types(old: &Catalog, new: &Catalog, out: &mut Vec<Change>) {
    for t in old.resource_types() {
        if new.resource_type(&t.key).is_none() {
            out.push(change(
                "resource_type_removed",
                &t.key,
                false,
                format!("resource type `{}` is removed", t.key),
            ));
        }
    }
    for t in new.resource_types() {
        if old.resource_type(&t.key).is_none() {
            out.push(change(
                "resource_type_added",
                &t.key,
                true,
                format!("resource type `{}` is added", t.key),
            ));
        }
    }
}

fn flags(old: &Catalog, new: &Catalog, out: &mut Vec<Change>) {
    for f in old.context_flags() {
        let Some(id) = new.flag(&f.key) else {
            out.push(change(
                "flag_removed",
                &f.key,
                false,
                format!("context flag `{}` is removed", f.key),
            ));
            continue;
        };
        let nf = new.context_flag(id);
        match (f.default, nf.default) {
            (a, b) if a == b => {}
            // Even a new default changes answers: a check that left the flag out was refused,
            // and is now decided as if it had sent the default.
            (a, b) => out.push(change(
                "flag_default_changed",
                &f.key,
                false,
                format!(
                    "context flag `{}`: default {} → {}; checks that leave it out answer differently",
                    f.key,
                    describe_default(a),
                    describe_default(b)
                ),
            )),
        }
    }
    for f in new.context_flags() {
        if old.flag(&f.key).is_none() {
            out.push(change(
                "flag_added",
                &f.key,
                true,
                format!("context flag `{}` is added", f.key),
            ));
        }
    }
}

fn describe_default(d: Option<bool>) -> &'static str {
    match d {
        None => "none (must be sent)",
        Some(true) => "true",
        Some(false) => "false",
    }
}

fn roles(old: &Catalog, new: &Catalog, map: &HashMap<PermId, PermId>, out: &mut Vec<Change>) {
    for r in old.roles() {
        match new.roles().iter().find(|x| x.key == r.key) {
            None => out.push(change(
                "role_removed",
                &r.key,
                false,
                format!("role `{}` is removed", r.key),
            )),
            Some(nr) => match requirement(old, &r.expr, new, &nr.expr, map) {
                Requirement::Same if nr.name == r.name => {}
                Requirement::Same => out.push(change(
                    "role_described",
                    &r.key,
                    true,
                    format!("role `{}`: its name changes to {:?}", r.key, nr.name),
                )),
                how => out.push(change(
                    "role_changed",
                    &r.key,
                    false,
                    requirement_detail(&format!("role `{}`", r.key), &r.expr, &nr.expr, how),
                )),
            },
        }
    }
    for r in new.roles() {
        if !old.roles().iter().any(|x| x.key == r.key) {
            out.push(change(
                "role_added",
                &r.key,
                true,
                format!("role `{}` is added", r.key),
            ));
        }
    }
}

fn admin(old: &Catalog, new: &Catalog, map: &HashMap<PermId, PermId>, out: &mut Vec<Change>) {
    for op in AdminOp::ALL {
        let detail = match (old.admin_requirement(op), new.admin_requirement(op)) {
            (None, None) => continue,
            (Some(a), Some(b)) => match requirement(old, a, new, b, map) {
                Requirement::Same => continue,
                how => requirement_detail(&format!("[admin] `{}`", op.key()), a, b, how),
            },
            (None, Some(b)) => format!(
                "[admin] `{}` becomes open to actors holding `{}` (was operator-only)",
                op.key(),
                b.source()
            ),
            (Some(a), None) => format!(
                "[admin] `{}` becomes operator-only (actors holding `{}` could)",
                op.key(),
                a.source()
            ),
        };
        out.push(change("admin_changed", op.key(), false, detail));
    }
}

// ---- Stored data against both catalogs ----

fn conflict(kind: &'static str, key: &str, detail: String, resolve: String) -> Conflict {
    Conflict {
        kind,
        key: key.to_owned(),
        detail,
        resolve,
        resolved_by: None,
    }
}

fn data_conflicts(
    old: Option<&Catalog>,
    new: &Catalog,
    usage: &Usage,
    m: &Mappings,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    // Without a recorded catalog, the stored data is read as the new catalog reads it: only
    // what the new catalog cannot read is a conflict.
    let old_knows_perm = |k: &str| old.map_or(new.resolve(k).is_some(), |o| o.resolve(k).is_some());
    for (k, uses) in &usage.permissions {
        let mut c = match (old_knows_perm(k), new.resolve(k)) {
            (_, Some(_)) if old.is_none() => continue,
            // Known to both: it must name the same permission in both (a key or alias may have
            // moved to another permission).
            (true, Some(p)) => match old.and_then(|o| o.resolve(k).map(|q| o.key(q))) {
                Some(was) if new.resolve(was) != Some(p) => conflict(
                    "stored_key_changes_meaning",
                    k,
                    format!(
                        "stored key `{k}` named permission `{was}` in the recorded catalog but would name `{}`: {}",
                        new.key(p),
                        uses.describe(GRANTS)
                    ),
                    format!(
                        "keep `{k}` naming `{was}` (as its key or an alias), or pass --drop-permission {k}"
                    ),
                ),
                _ => continue,
            },
            (true, None) => conflict(
                "removed_permission_in_use",
                k,
                format!(
                    "permission `{k}` is removed but is still used by {}",
                    uses.describe(GRANTS)
                ),
                format!(
                    "keep it in the catalog, make `{k}` an alias of the permission that replaces it, or pass --drop-permission {k}"
                ),
            ),
            (false, Some(p)) => conflict(
                "stored_key_gains_meaning",
                k,
                format!(
                    "stored key `{k}`, unknown to the recorded catalog, would become permission `{}`: {}",
                    new.key(p),
                    uses.describe(GRANTS)
                ),
                format!("pass --drop-permission {k}, or pick another key for the new permission"),
            ),
            (false, None) => conflict(
                "unknown_permission_stored",
                k,
                format!(
                    "stored permission `{k}` is not in the catalog: {}",
                    uses.describe(GRANTS)
                ),
                format!("add `{k}` (or an alias) to the catalog, or pass --drop-permission {k}"),
            ),
        };
        if m.drop_permissions.contains(k) {
            c.resolved_by = Some(format!("--drop-permission {k}"));
        }
        out.push(c);
    }
    let old_has_group = |g: &str| old.map_or(new.group(g).is_some(), |o| o.group(g).is_some());
    for (g, uses) in &usage.system_memberships {
        let mut c = match (old_has_group(g), new.group(g).is_some()) {
            (_, true) if old.is_none() => continue,
            (true, true) => continue,
            (true, false) => conflict(
                "removed_group_has_members",
                g,
                format!(
                    "system group `{g}` is removed but has {}",
                    uses.describe(MEMBERS)
                ),
                format!(
                    "pass --move-members {g}=GROUP to move them, or --drop-members {g} to drop the memberships"
                ),
            ),
            (false, true) => conflict(
                "leftover_members_adopted",
                g,
                format!(
                    "leftover memberships of a removed group `{g}` ({}) would make those users members of the new system group `{g}`",
                    uses.describe(MEMBERSHIPS)
                ),
                format!("pass --drop-members {g} (or --move-members {g}=GROUP)"),
            ),
            (false, false) => conflict(
                "leftover_members",
                g,
                format!(
                    "memberships of `{g}`, which is neither a system nor a custom group: {}",
                    uses.describe(MEMBERSHIPS)
                ),
                format!("pass --drop-members {g} or --move-members {g}=GROUP"),
            ),
        };
        if let Some(to) = m.move_members.get(g) {
            c.resolved_by = Some(format!("--move-members {g}={to}"));
        } else if m.drop_members.contains(g) {
            c.resolved_by = Some(format!("--drop-members {g}"));
        }
        out.push(c);
    }
    for (g, uses) in &usage.custom_groups {
        if new.group(g).is_none() {
            continue;
        }
        let mut c = conflict(
            "group_key_taken",
            g,
            format!(
                "system group `{g}` takes the key of a custom group: {}; its members would get the system group's permissions",
                uses.describe(CUSTOM_GROUPS)
            ),
            format!("pass --rename-group {g}=NEW_KEY to give the custom group another key"),
        );
        if let Some(to) = m.rename_groups.get(g) {
            c.resolved_by = Some(format!("--rename-group {g}={to}"));
        }
        out.push(c);
    }
    let old_has_type = |t: &str| {
        old.map_or(new.resource_type(t).is_some(), |o| {
            o.resource_type(t).is_some()
        })
    };
    for (t, uses) in &usage.resource_types {
        let mut c = match (old_has_type(t), new.resource_type(t).is_some()) {
            (_, true) if old.is_none() => continue,
            (true, true) => continue,
            (true, false) => conflict(
                "resource_type_in_use",
                t,
                format!(
                    "resource type `{t}` is removed but is still used by {}",
                    uses.describe(TYPE_USES)
                ),
                format!("keep the type, or pass --drop-resource-type {t}"),
            ),
            (false, true) => conflict(
                "stored_type_gains_meaning",
                t,
                format!(
                    "stored resource type `{t}`, unknown to the recorded catalog, would start to count: {}",
                    uses.describe(TYPE_USES)
                ),
                format!("pass --drop-resource-type {t}, or name the new type differently"),
            ),
            (false, false) => conflict(
                "unknown_resource_type_stored",
                t,
                format!(
                    "stored resource type `{t}` is not in the catalog: {}",
                    uses.describe(TYPE_USES)
                ),
                format!("add the type to the catalog, or pass --drop-resource-type {t}"),
            ),
        };
        if m.drop_resource_types.contains(t) {
            c.resolved_by = Some(format!("--drop-resource-type {t}"));
        }
        out.push(c);
    }
    out
}

// ---- What a change does to each user ----

/// A user as stored: keys, not ids, so any catalog can read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredUser {
    pub id: String,
    pub active: bool,
    pub direct: Vec<String>,
    pub groups: Vec<String>,
    /// (permission, resource type, resource id).
    pub scoped: Vec<(String, String, String)>,
    /// Resource types the user is limited on.
    pub restricted: Vec<String>,
}

/// A custom group as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredGroup {
    pub key: String,
    pub permissions: Vec<String>,
    pub scoped: Vec<(String, String, String)>,
}

/// One tenant's stored users and custom groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantData {
    pub tenant_id: String,
    pub users: Vec<StoredUser>,
    pub groups: Vec<StoredGroup>,
}

/// What a user holds under one catalog, named in the new catalog's keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub permissions: BTreeSet<String>,
    /// `permission on type:id`.
    pub scoped: BTreeSet<String>,
    pub restricted: BTreeSet<String>,
    pub roles: BTreeSet<String>,
}

/// How one user's access changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserChange {
    pub user_id: String,
    /// The user is blocked: the change applies when it is unblocked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub blocked: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gained: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scoped_gained: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scoped_lost: Vec<String>,
    /// Restrictions that no longer apply: the user is no longer limited on these types.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restrictions_lifted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles_gained: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles_lost: Vec<String>,
}

/// What happens to one custom or system group of a tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupChange {
    pub group: String,
    pub detail: String,
    pub members: u64,
}

/// One tenant's preview.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TenantPreview {
    pub tenant_id: String,
    /// Users whose access changes (all of them, even past the listed ones).
    pub users_changed: u64,
    pub users: Vec<UserChange>,
    /// More users changed than are listed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupChange>,
}

impl TenantPreview {
    pub fn is_empty(&self) -> bool {
        self.users_changed == 0 && self.groups.is_empty()
    }
}

/// The data as it will be after the mappings: what `catalog apply` writes.
pub fn mapped(data: &TenantData, new: &Catalog, m: &Mappings) -> TenantData {
    let canon = |k: &str| {
        new.resolve(k)
            .map_or(k.to_owned(), |p| new.key(p).to_owned())
    };
    let keep_perm = |k: &String| !m.drop_permissions.contains(k);
    let keep_type = |(p, t, _): &(String, String, String)| {
        !m.drop_permissions.contains(p) && !m.drop_resource_types.contains(t)
    };
    let perms = |keys: &[String]| -> Vec<String> {
        let set: BTreeSet<String> = keys
            .iter()
            .filter(|k| keep_perm(k))
            .map(|k| canon(k))
            .collect();
        set.into_iter().collect()
    };
    let scoped = |list: &[(String, String, String)]| -> Vec<(String, String, String)> {
        let set: BTreeSet<(String, String, String)> = list
            .iter()
            .filter(|s| keep_type(s))
            .map(|(p, t, id)| (canon(p), t.clone(), id.clone()))
            .collect();
        set.into_iter().collect()
    };
    let custom: BTreeSet<&str> = data.groups.iter().map(|g| g.key.as_str()).collect();
    let group_key = |g: &str| -> Option<String> {
        if custom.contains(g) {
            return Some(
                m.rename_groups
                    .get(g)
                    .cloned()
                    .unwrap_or_else(|| g.to_owned()),
            );
        }
        if m.drop_members.contains(g) {
            return None;
        }
        Some(
            m.move_members
                .get(g)
                .cloned()
                .unwrap_or_else(|| g.to_owned()),
        )
    };
    TenantData {
        tenant_id: data.tenant_id.clone(),
        users: data
            .users
            .iter()
            .map(|u| {
                let groups: BTreeSet<String> =
                    u.groups.iter().filter_map(|g| group_key(g)).collect();
                StoredUser {
                    id: u.id.clone(),
                    active: u.active,
                    direct: perms(&u.direct),
                    groups: groups.into_iter().collect(),
                    scoped: scoped(&u.scoped),
                    restricted: u
                        .restricted
                        .iter()
                        .filter(|t| !m.drop_resource_types.contains(*t))
                        .cloned()
                        .collect(),
                }
            })
            .collect(),
        groups: data
            .groups
            .iter()
            .map(|g| StoredGroup {
                key: m
                    .rename_groups
                    .get(&g.key)
                    .cloned()
                    .unwrap_or_else(|| g.key.clone()),
                permissions: perms(&g.permissions),
                scoped: scoped(&g.scoped),
            })
            .collect(),
    }
}

/// Every user's access under `catalog`, named by `name` (a key of `catalog` → the key to show).
/// Users are read as grants held: a blocked user's view is what it holds once unblocked.
pub fn views(
    data: &TenantData,
    catalog: &Catalog,
    name: &dyn Fn(&str) -> String,
) -> BTreeMap<String, UserView> {
    let custom: HashMap<&str, &StoredGroup> =
        data.groups.iter().map(|g| (g.key.as_str(), g)).collect();
    let mut out = BTreeMap::new();
    for u in &data.users {
        let mut set = crate::permset::PermSet::new();
        let mut scoped = BTreeSet::new();
        let add_scoped = |scoped: &mut BTreeSet<String>, (p, t, id): &(String, String, String)| {
            if let (Some(p), Some(_)) = (catalog.resolve(p), catalog.resource_type(t)) {
                scoped.insert(format!("{} on {t}:{id}", name(catalog.key(p))));
            }
        };
        for k in &u.direct {
            if let Some(p) = catalog.resolve(k) {
                set.insert(p);
            }
        }
        for s in &u.scoped {
            add_scoped(&mut scoped, s);
        }
        for g in &u.groups {
            // A system group's key always means the system group (a custom group cannot
            // take it), as the stores read it.
            if let Some(sys) = catalog.group(g) {
                set.union_with(&sys.grants.permissions);
            } else if let Some(c) = custom.get(g.as_str()) {
                for k in &c.permissions {
                    if let Some(p) = catalog.resolve(k) {
                        set.insert(p);
                    }
                }
                for s in &c.scoped {
                    add_scoped(&mut scoped, s);
                }
            }
        }
        let roles = catalog
            .roles_of(&set)
            .into_iter()
            .map(str::to_owned)
            .collect();
        out.insert(
            u.id.clone(),
            UserView {
                permissions: catalog.keys(&set).map(name).collect(),
                scoped,
                restricted: u
                    .restricted
                    .iter()
                    .filter(|t| catalog.resource_type(t).is_some())
                    .cloned()
                    .collect(),
                roles,
            },
        );
    }
    out
}

/// The key a permission of `old` is shown by: its key in `new` when `new` has it.
pub fn new_name<'a>(new: &'a Catalog) -> impl Fn(&str) -> String + 'a {
    move |k: &str| {
        new.resolve(k)
            .map_or(k.to_owned(), |p| new.key(p).to_owned())
    }
}

fn diff_sets(a: &BTreeSet<String>, b: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (
        b.difference(a).cloned().collect(),
        a.difference(b).cloned().collect(),
    )
}

/// Who gains or loses what in one tenant when `new` (with `mappings`) replaces `old`; `old`
/// is `None` when the database records no catalog. At most `limit` users are listed.
pub fn preview(
    old: Option<&Catalog>,
    new: &Catalog,
    mappings: &Mappings,
    data: &TenantData,
    limit: usize,
) -> TenantPreview {
    let old_cat = old.unwrap_or(new);
    // An old permission is shown by its new key, unless several old permissions become that
    // one (a merge): then by its own, so the preview shows who gains the merged permission.
    let merged: BTreeSet<String> = {
        let mut seen: HashMap<PermId, usize> = HashMap::new();
        for p in old_cat.permissions() {
            if let Some(n) = new.resolve(&p.key) {
                *seen.entry(n).or_default() += 1;
            }
        }
        old_cat
            .permissions()
            .iter()
            .filter(|p| {
                new.resolve(&p.key)
                    .is_some_and(|n| seen.get(&n).copied().unwrap_or(0) > 1)
            })
            .map(|p| p.key.clone())
            .collect()
    };
    let to_new = new_name(new);
    let name = |k: &str| {
        if merged.contains(k) {
            k.to_owned()
        } else {
            to_new(k)
        }
    };
    let before = views(data, old_cat, &name);
    let after_data = mapped(data, new, mappings);
    let after = views(&after_data, new, &|k: &str| k.to_owned());
    let mut out = TenantPreview {
        tenant_id: data.tenant_id.clone(),
        ..TenantPreview::default()
    };
    for u in &data.users {
        let (Some(b), Some(a)) = (before.get(&u.id), after.get(&u.id)) else {
            continue;
        };
        if a == b {
            continue;
        }
        out.users_changed += 1;
        if out.users.len() >= limit {
            out.truncated = true;
            continue;
        }
        let (gained, lost) = diff_sets(&b.permissions, &a.permissions);
        let (scoped_gained, scoped_lost) = diff_sets(&b.scoped, &a.scoped);
        let (_, restrictions_lifted) = diff_sets(&b.restricted, &a.restricted);
        let (roles_gained, roles_lost) = diff_sets(&b.roles, &a.roles);
        out.users.push(UserChange {
            user_id: u.id.clone(),
            blocked: !u.active,
            gained,
            lost,
            scoped_gained,
            scoped_lost,
            restrictions_lifted,
            roles_gained,
            roles_lost,
        });
    }
    // Groups: renamed custom groups, moved or dropped memberships, custom groups losing
    // dropped permissions.
    let mut members: BTreeMap<&str, u64> = BTreeMap::new();
    for u in &data.users {
        for g in &u.groups {
            *members.entry(g.as_str()).or_default() += 1;
        }
    }
    let custom: BTreeSet<&str> = data.groups.iter().map(|g| g.key.as_str()).collect();
    for g in &data.groups {
        let n = members.get(g.key.as_str()).copied().unwrap_or(0);
        if let Some(to) = mappings.rename_groups.get(&g.key) {
            out.groups.push(GroupChange {
                group: g.key.clone(),
                detail: format!("custom group renamed `{to}`"),
                members: n,
            });
        }
        let dropped: Vec<&str> = g
            .permissions
            .iter()
            .filter(|k| mappings.drop_permissions.contains(*k))
            .map(String::as_str)
            .collect();
        if !dropped.is_empty() {
            out.groups.push(GroupChange {
                group: g.key.clone(),
                detail: format!("custom group loses {}", quoted(dropped.into_iter())),
                members: n,
            });
        }
    }
    for (g, n) in &members {
        if custom.contains(g) {
            continue;
        }
        let detail = if let Some(to) = mappings.move_members.get(*g) {
            format!("members move to `{to}`")
        } else if mappings.drop_members.contains(*g) {
            "memberships dropped".to_owned()
        } else {
            continue;
        };
        out.groups.push(GroupChange {
            group: (*g).to_owned(),
            detail,
            members: *n,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BASE: &str = r#"
name = "t"
version = "1"
[[resource_types]]
key = "folder"
[[context_flags]]
key = "multibrand"
[[permissions]]
name = "View brands"
[[permissions]]
name = "Edit flows"
[[permissions]]
name = "Send test messages"
[[groups]]
name = "Editors"
permissions = ["edit_flows"]
[[actions]]
key = "flows.add"
expression = "edit_flows & (!ctx.multibrand | view_brands)"
[[roles]]
key = "editor"
expression = "edit_flows"
[admin]
edit_groups = "edit_flows"
"#;

    fn cat(text: &str) -> Catalog {
        Catalog::from_toml(text).unwrap()
    }

    fn kinds(c: &Comparison) -> Vec<(&'static str, &str, bool)> {
        c.changes
            .iter()
            .map(|x| (x.kind, x.key.as_str(), x.compatible))
            .collect()
    }

    #[test]
    fn identical_and_additions_are_compatible() {
        // (A new system group is not an addition replicas on the old catalog can read: see
        // `a_new_system_group_is_carried_out_by_apply`.)
        let old = cat(BASE);
        assert!(
            compare(Some(&old), &old, None, &Mappings::default())
                .changes
                .is_empty()
        );
        let new = cat(&BASE
            .replace(
                "[[groups]]",
                "[[permissions]]\nname = \"Run flows\"\naliases = [\"Start flows\"]\n[[groups]]",
            )
            .replace(
                "permissions = [\"edit_flows\"]",
                "permissions = [\"edit_flows\", \"run_flows\"]",
            ));
        let c = compare(Some(&old), &new, None, &Mappings::default());
        assert!(c.compatible(), "{:?}", kinds(&c));
        assert_eq!(
            kinds(&c),
            [
                ("permission_added", "run_flows", true),
                ("group_gains_new_permissions", "editors", true)
            ]
        );
    }

    #[test]
    fn a_reworded_requirement_is_not_passed_as_the_same() {
        let old = cat(BASE);
        let reworded = cat(&BASE.replace(
            "edit_flows & (!ctx.multibrand | view_brands)",
            "(view_brands | !ctx.multibrand) & edit_flows",
        ));
        let c = compare(Some(&old), &reworded, None, &Mappings::default());
        assert_eq!(kinds(&c), [("action_reworded", "flows.add", false)]);
        assert!(c.report().contains("the same decisions, but explanations"));
        // Whitespace is no rewording.
        let spaced = cat(&BASE.replace(
            "edit_flows & (!ctx.multibrand | view_brands)",
            "edit_flows  &  ( !ctx.multibrand|view_brands )",
        ));
        assert!(compare(Some(&old), &spaced, None, &Mappings::default()).compatible());
        // A tautology over a new flag decides the same, but checks must now send the flag.
        let flagged = cat(&BASE
            .replace(
                "[[permissions]]\nname = \"View brands\"",
                "[[context_flags]]\nkey = \"draft\"\n[[permissions]]\nname = \"View brands\"",
            )
            .replace(
                "edit_flows & (!ctx.multibrand | view_brands)",
                "edit_flows & (!ctx.multibrand | view_brands) & (ctx.draft | !ctx.draft)",
            ));
        let c = compare(Some(&old), &flagged, None, &Mappings::default());
        assert!(
            kinds(&c).contains(&("action_changed", "flows.add", false)),
            "{:?}",
            kinds(&c)
        );
        let changed = cat(&BASE.replace(
            "edit_flows & (!ctx.multibrand | view_brands)",
            "edit_flows | view_brands",
        ));
        let c = compare(Some(&old), &changed, None, &Mappings::default());
        assert_eq!(kinds(&c), [("action_changed", "flows.add", false)]);
    }

    #[test]
    fn a_new_system_group_is_carried_out_by_apply() {
        let old = cat(BASE);
        let new = cat(&format!(
            "{BASE}\n[[groups]]\nname = \"Readers\"\npermissions = [\"view_brands\"]\n"
        ));
        let c = compare(Some(&old), &new, None, &Mappings::default());
        assert_eq!(kinds(&c), [("group_added", "readers", false)]);
        assert!(
            c.report()
                .contains("system group `readers` is added with 1 permission")
        );
    }

    #[test]
    fn a_merge_shows_who_gains_the_merged_permission() {
        let old = cat(BASE);
        let merged = cat(&BASE
            .replace("[[permissions]]\nname = \"Send test messages\"\n", "")
            .replace(
                "name = \"View brands\"",
                "name = \"View brands\"\naliases = [\"Send test messages\"]",
            ));
        let data = TenantData {
            tenant_id: "acme".into(),
            users: vec![StoredUser {
                id: "pam".into(),
                active: true,
                direct: vec!["send_test_messages".into()],
                ..StoredUser::default()
            }],
            groups: vec![],
        };
        let p = preview(Some(&old), &merged, &Mappings::default(), &data, 10);
        assert_eq!(p.users_changed, 1);
        assert_eq!(p.users[0].gained, ["view_brands"]);
        assert_eq!(p.users[0].lost, ["send_test_messages"]);
    }

    #[test]
    fn a_flag_gaining_a_default_changes_answers() {
        let old = cat(BASE);
        let new = cat(&BASE.replace(
            "key = \"multibrand\"",
            "key = \"multibrand\"\ndefault = false",
        ));
        let c = compare(Some(&old), &new, None, &Mappings::default());
        assert_eq!(kinds(&c), [("flag_default_changed", "multibrand", false)]);
    }

    #[test]
    fn a_stored_key_that_would_name_another_permission_conflicts() {
        // `edit_flows` was renamed `modify_flows` (the old key an alias); then the alias goes
        // and a new, unrelated permission takes the old key.
        let renamed = cat(&BASE.replace(
            "name = \"Edit flows\"",
            "name = \"Modify flows\"\naliases = [\"Edit flows\"]",
        ));
        let taken = cat(&BASE.replace(
            "name = \"Edit flows\"",
            "name = \"Modify flows\"\n[[permissions]]\nname = \"Edit flows\"",
        ));
        let u = usage(&["edit_flows"], &[], &[]);
        let c = compare(Some(&renamed), &taken, Some(&u), &Mappings::default());
        let got: Vec<(&str, &str)> = c
            .conflicts
            .iter()
            .map(|c| (c.kind, c.key.as_str()))
            .collect();
        assert_eq!(got, [("stored_key_changes_meaning", "edit_flows")]);
        assert!(c.conflicts[0].detail.contains(
            "named permission `modify_flows` in the recorded catalog but would name `edit_flows`"
        ));
        let m = Mappings {
            drop_permissions: ["edit_flows".into()].into(),
            ..Mappings::default()
        };
        let c = compare(Some(&renamed), &taken, Some(&u), &m);
        assert_eq!(c.unresolved().count(), 0);
        assert!(c.unused_mappings.is_empty(), "{:?}", c.unused_mappings);
    }

    #[test]
    fn mappings_that_resolve_nothing_are_named() {
        let old = cat(BASE);
        let u = usage(&["edit_flows"], &["editors"], &[]);
        let m = Mappings {
            drop_permissions: ["edit_flows".into(), "nope".into()].into(),
            drop_members: ["ghosts".into()].into(),
            rename_groups: [("support".into(), "s2".into())].into(),
            ..Mappings::default()
        };
        let c = compare(Some(&old), &old, Some(&u), &m);
        let all = c.unused_mappings.join("\n");
        assert!(
            all.contains("--drop-permission edit_flows: `edit_flows` keeps its meaning"),
            "{all}"
        );
        assert!(
            all.contains("--drop-permission nope: no stored grant uses `nope`"),
            "{all}"
        );
        assert!(
            all.contains("--drop-members ghosts: no conflict needs it"),
            "{all}"
        );
        assert!(
            all.contains("--rename-group support=s2: no conflict needs it"),
            "{all}"
        );
    }

    #[test]
    fn a_rename_through_an_alias_and_a_merge_are_carried_out_by_apply() {
        let old = cat(BASE);
        let renamed = cat(&BASE.replace(
            "name = \"Send test messages\"",
            "name = \"Send test emails\"\naliases = [\"Send test messages\"]",
        ));
        // Stored data keeps its meaning (the old key resolves), but replicas on the new
        // catalog would store a key older ones cannot read.
        let u = usage(&["send_test_messages"], &[], &[]);
        let c = compare(Some(&old), &renamed, Some(&u), &Mappings::default());
        assert!(c.conflicts.is_empty(), "{:?}", c.conflicts);
        assert_eq!(
            kinds(&c),
            [("permission_renamed", "send_test_messages", false)]
        );
        let merged = cat(&BASE
            .replace("[[permissions]]\nname = \"Send test messages\"\n", "")
            .replace(
                "name = \"View brands\"",
                "name = \"View brands\"\naliases = [\"Send test messages\"]",
            ));
        let c = compare(Some(&old), &merged, None, &Mappings::default());
        assert!(kinds(&c).contains(&("permissions_merged", "view_brands", false)));
    }

    #[test]
    fn removals_and_changed_rules_are_incompatible() {
        let old = cat(BASE);
        let new = cat(&BASE
            .replace(
                "permissions = [\"edit_flows\"]",
                "permissions = [\"edit_flows\", \"view_brands\"]",
            )
            .replace(
                "edit_groups = \"edit_flows\"",
                "edit_groups = \"view_brands\"",
            )
            .replace("[[resource_types]]\nkey = \"folder\"\n", ""));
        let c = compare(Some(&old), &new, None, &Mappings::default());
        assert_eq!(
            kinds(&c),
            [
                ("group_permissions_changed", "editors", false),
                ("resource_type_removed", "folder", false),
                ("admin_changed", "edit_groups", false)
            ]
        );
        assert!(!c.compatible());
        assert!(
            c.report()
                .contains("system group `editors` gains `view_brands`")
        );
    }

    fn usage(perms: &[&str], memberships: &[&str], custom: &[&str]) -> Usage {
        let uses = || {
            let mut u = Uses::default();
            u.add("acme", 1);
            u
        };
        Usage {
            permissions: perms.iter().map(|k| (k.to_string(), uses())).collect(),
            system_memberships: memberships
                .iter()
                .map(|k| (k.to_string(), uses()))
                .collect(),
            custom_groups: custom.iter().map(|k| (k.to_string(), uses())).collect(),
            resource_types: BTreeMap::new(),
        }
    }

    #[test]
    fn stored_data_conflicts_name_their_resolution_and_mappings_resolve_them() {
        let old = cat(BASE);
        let new = cat(&BASE
            .replace("[[permissions]]\nname = \"Send test messages\"\n", "")
            .replace("name = \"Editors\"", "name = \"Support\""));
        let u = usage(
            &["send_test_messages", "edit_flows"],
            &["editors"],
            &["support"],
        );
        let c = compare(Some(&old), &new, Some(&u), &Mappings::default());
        let got: Vec<(&str, &str)> = c
            .conflicts
            .iter()
            .map(|c| (c.kind, c.key.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("removed_permission_in_use", "send_test_messages"),
                ("removed_group_has_members", "editors"),
                ("group_key_taken", "support")
            ]
        );
        assert!(c.report().contains("--drop-permission send_test_messages"));
        let m = Mappings {
            drop_permissions: ["send_test_messages".into()].into(),
            move_members: [("editors".into(), "support".into())].into(),
            rename_groups: [("support".into(), "support_team".into())].into(),
            ..Mappings::default()
        };
        m.validate(&new).unwrap();
        let c = compare(Some(&old), &new, Some(&u), &m);
        assert_eq!(c.unresolved().count(), 0);
        // Without a recorded catalog only what the catalog cannot read conflicts.
        let c = compare(None, &old, Some(&u), &Mappings::default());
        assert!(c.conflicts.is_empty(), "{:?}", c.conflicts);
    }

    #[test]
    fn mappings_that_would_lose_meaning_are_refused() {
        let new = cat(BASE);
        let m = Mappings {
            move_members: [
                ("editors".into(), "x".into()),
                ("gone".into(), "gone".into()),
            ]
            .into(),
            rename_groups: [("a".into(), "editors".into())].into(),
            ..Mappings::default()
        };
        let e = m.validate(&new).unwrap_err();
        assert!(
            e.contains("--move-members gone=gone: moves the members into the group they leave"),
            "{e}"
        );
        assert!(
            e.contains("`editors` is a system group of the new catalog; its members stay"),
            "{e}"
        );
        assert!(e.contains("--rename-group a=editors"), "{e}");
    }

    #[test]
    fn preview_shows_who_gains_and_loses_what() {
        let old = cat(BASE);
        let new = cat(&BASE
            .replace("[[permissions]]\nname = \"Send test messages\"\n", "")
            .replace(
                "permissions = [\"edit_flows\"]",
                "permissions = [\"edit_flows\", \"view_brands\"]",
            ));
        let data = TenantData {
            tenant_id: "acme".into(),
            users: vec![
                StoredUser {
                    id: "ann".into(),
                    active: true,
                    groups: vec!["editors".into()],
                    ..StoredUser::default()
                },
                StoredUser {
                    id: "bob".into(),
                    active: false,
                    direct: vec!["send_test_messages".into(), "edit_flows".into()],
                    scoped: vec![("send_test_messages".into(), "folder".into(), "f1".into())],
                    ..StoredUser::default()
                },
                StoredUser {
                    id: "cy".into(),
                    active: true,
                    direct: vec!["view_brands".into()],
                    ..StoredUser::default()
                },
            ],
            groups: vec![],
        };
        let m = Mappings {
            drop_permissions: ["send_test_messages".into()].into(),
            ..Mappings::default()
        };
        let p = preview(Some(&old), &new, &m, &data, 10);
        assert_eq!(p.users_changed, 2);
        assert_eq!(p.users[0].user_id, "ann");
        assert_eq!(p.users[0].gained, ["view_brands"]);
        assert_eq!(p.users[1].user_id, "bob");
        assert!(p.users[1].blocked);
        assert_eq!(p.users[1].lost, ["send_test_messages"]);
        assert_eq!(p.users[1].scoped_lost, ["send_test_messages on folder:f1"]);
        let p = preview(Some(&old), &new, &m, &data, 1);
        assert!(p.truncated && p.users.len() == 1 && p.users_changed == 2);
    }
}
