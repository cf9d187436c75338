//! The catalog: permissions, system groups, actions, resource types and context flags of one
//! deployment, read from a TOML file, validated, and compiled into dense indexes.
//!
//! Permission and group keys are never written in the file: they are derived from the display
//! names by [`key_from_name`], so they always follow the key rule. Aliases are alternative
//! names (the source documents spell some permissions two ways); an alias resolves to its
//! permission wherever a key is accepted.
//!
//! Longer than most: the file format and its compiled form share every private index; the last
//! fifth is its unit tests.

use crate::admin::AdminOp;
use crate::expr::{Expr, ExprError, FlagId, Names};
use crate::key::{is_valid_key, key_from_name};
use crate::model::{GroupGrants, ResourceTypeId, Subject, UserGrants};
use crate::permset::{PermId, PermSet};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A catalog index by key. The keys are the catalog's own (callers only look them up), so a
/// fast hasher is safe: nobody outside can fill a bucket.
type Index<V> = HashMap<String, V, ahash::RandomState>;

/// Why a catalog was refused. Each variant names the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid TOML: {0}")]
    Syntax(String),
    #[error("catalog field `{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("permission name {name:?} has no letters or digits, so it has no key")]
    NoKey { name: String },
    #[error("duplicate permission `{key}` (names {first:?} and {second:?})")]
    DuplicatePermission {
        key: String,
        first: String,
        second: String,
    },
    #[error("alias {alias:?} of `{permission}` clashes with `{other}`")]
    AliasClash {
        alias: String,
        permission: String,
        other: String,
    },
    #[error("duplicate group `{key}`")]
    DuplicateGroup { key: String },
    #[error("group `{group}` names unknown permission `{permission}`")]
    UnknownPermissionInGroup { group: String, permission: String },
    #[error("group `{group}` lists permission `{permission}` twice")]
    RepeatedPermissionInGroup { group: String, permission: String },
    #[error(
        "group `{group}` is not internal but holds internal permission `{permission}`; mark the group internal or the permission not"
    )]
    InternalPermissionInPublicGroup { group: String, permission: String },
    #[error("group `{group}`: key `{key}` does not match the key of its name, `{expected}`")]
    GroupKeyMismatch {
        group: String,
        key: String,
        expected: String,
    },
    #[error("duplicate action `{key}`")]
    DuplicateAction { key: String },
    #[error("action key {key:?} is invalid: use dot-separated parts of a-z, 0-9 and `_`")]
    InvalidActionKey { key: String },
    #[error("action `{action}`: {error}")]
    Expression { action: String, error: ExprError },
    #[error("duplicate resource type `{key}`")]
    DuplicateResourceType { key: String },
    #[error("resource type {key:?} is not a valid key (a-z, 0-9 and `_`)")]
    InvalidResourceType { key: String },
    #[error("duplicate context flag `{key}`")]
    DuplicateFlag { key: String },
    #[error("context flag {key:?} is not a valid key (a-z, 0-9 and `_`)")]
    InvalidFlag { key: String },
    #[error("duplicate role `{key}`")]
    DuplicateRole { key: String },
    #[error("role key {key:?} is not a valid key (a-z, 0-9 and `_`)")]
    InvalidRole { key: String },
    #[error("role `{role}`: {error}")]
    RoleExpression { role: String, error: ExprError },
    #[error("role `{role}` uses a context flag; roles depend on permissions only")]
    RoleFlag { role: String },
    #[error("[admin] names unknown operation `{key}`; operations are: {known}")]
    UnknownAdminOperation { key: String, known: String },
    #[error("[admin] `{op}`: {error}")]
    AdminExpression { op: String, error: ExprError },
    #[error(
        "[admin] `{op}` uses a context flag; admin requirements depend on permissions only (an admin call carries no context)"
    )]
    AdminFlag { op: String },
    #[error(
        "{name:?} has the key `{key}`, which expressions read as the constant {key}; choose another name or alias"
    )]
    ReservedKey { name: String, key: String },
    #[error("catalog has {count} permissions; at most {max} are supported")]
    TooManyPermissions { count: usize, max: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    resource_types: Vec<FileResourceType>,
    #[serde(default)]
    context_flags: Vec<FileFlag>,
    #[serde(default)]
    permissions: Vec<FilePermission>,
    #[serde(default)]
    groups: Vec<FileGroup>,
    #[serde(default)]
    actions: Vec<FileAction>,
    /// Roles derived from permissions, e.g. ToolJet's Admin / Builder / End-user.
    #[serde(default)]
    roles: Vec<FileRole>,
    /// Admin operation → requirement expression, e.g. `edit_groups = "edit_permission_groups"`.
    #[serde(default)]
    admin: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileResourceType {
    key: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFlag {
    key: String,
    #[serde(default)]
    description: String,
    /// The value of the flag when a check does not send it. Without one, a check whose
    /// requirement tests the flag must send it.
    default: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePermission {
    name: String,
    #[serde(default)]
    section: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    name: String,
    /// Optional; when given it must equal the key of `name`.
    key: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRole {
    key: String,
    #[serde(default)]
    name: String,
    /// Holds for a user whose unscoped permissions satisfy it (no context flags).
    expression: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAction {
    key: String,
    #[serde(default)]
    description: String,
    expression: String,
}

#[derive(Debug, Clone)]
pub struct Permission {
    pub id: PermId,
    pub key: String,
    pub name: String,
    pub section: String,
    pub description: String,
    pub internal: bool,
    /// Alternative names, as written in the catalog.
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SystemGroup {
    pub key: String,
    pub name: String,
    pub description: String,
    pub internal: bool,
    /// The group's permissions in the shape a check combines.
    pub grants: Arc<GroupGrants>,
}

#[derive(Debug, Clone)]
pub struct Action {
    pub key: String,
    pub description: String,
    pub expr: Expr,
}

/// A named role a user has when their permissions satisfy its expression.
#[derive(Debug, Clone)]
pub struct Role {
    pub key: String,
    pub name: String,
    pub expr: Expr,
}

#[derive(Debug, Clone)]
pub struct ResourceType {
    pub id: ResourceTypeId,
    pub key: String,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct ContextFlag {
    pub id: FlagId,
    pub key: String,
    pub description: String,
    /// The value a check that does not send the flag gets; `None`: the check must send it.
    pub default: Option<bool>,
}

/// A validated, compiled catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub name: String,
    pub version: String,
    pub description: String,
    /// A fingerprint of the file's bytes, so two replicas can tell they run the same catalog.
    pub fingerprint: String,
    /// The file's text, as read: what a database records of the catalog it is served with.
    pub source: String,
    permissions: Vec<Permission>,
    /// Keys and alias keys → permission.
    index: Index<PermId>,
    internal: PermSet,
    groups: Vec<SystemGroup>,
    group_index: Index<usize>,
    actions: Vec<Action>,
    action_index: Index<usize>,
    resource_types: Vec<ResourceType>,
    resource_type_index: Index<ResourceTypeId>,
    flags: Vec<ContextFlag>,
    flag_index: Index<FlagId>,
    admin: HashMap<AdminOp, Expr>,
    roles: Vec<Role>,
}

impl Catalog {
    /// A user's subject: its own grants and each of its groups' — a system group's from this
    /// catalog, a custom group's from `custom` (a key `custom` does not know gives nothing).
    /// Every store assembles subjects here.
    pub fn subject(
        &self,
        user: Arc<UserGrants>,
        mut custom: impl FnMut(&str) -> Option<Arc<GroupGrants>>,
    ) -> Subject {
        let groups = user
            .groups
            .iter()
            .filter_map(|k| self.system_grants(k).or_else(|| custom(k)))
            .collect();
        Subject {
            user: Some(user),
            groups,
        }
    }

    /// The grants of the system group `key`, or `None` when the key is a custom group's: a
    /// catalog group's key always means the catalog's group.
    pub fn system_grants(&self, key: &str) -> Option<Arc<GroupGrants>> {
        self.system_index(key)
            .map(|i| self.groups[i].grants.clone())
    }

    /// The index in [`Self::groups`] of the system group `key`, under the same rule as
    /// [`Self::system_grants`].
    pub fn system_index(&self, key: &str) -> Option<usize> {
        self.group_index.get(key).copied()
    }

    /// Parses and validates a catalog file.
    pub fn from_toml(text: &str) -> Result<Catalog, CatalogError> {
        let file: File = toml::from_str(text).map_err(|e| CatalogError::Syntax(e.to_string()))?;
        compile(file, fingerprint(text.as_bytes()), text.to_owned())
    }

    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    pub fn permission(&self, id: PermId) -> &Permission {
        &self.permissions[id.index()]
    }

    /// Resolves a permission key or alias key.
    pub fn resolve(&self, key: &str) -> Option<PermId> {
        self.index.get(key).copied()
    }

    pub fn key(&self, id: PermId) -> &str {
        &self.permissions[id.index()].key
    }

    /// Every internal (staff-only) permission.
    pub fn internal_permissions(&self) -> &PermSet {
        &self.internal
    }

    pub fn groups(&self) -> &[SystemGroup] {
        &self.groups
    }

    pub fn group(&self, key: &str) -> Option<&SystemGroup> {
        self.group_index.get(key).map(|&i| &self.groups[i])
    }

    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    pub fn action(&self, key: &str) -> Option<&Action> {
        self.action_index.get(key).map(|&i| &self.actions[i])
    }

    pub fn resource_types(&self) -> &[ResourceType] {
        &self.resource_types
    }

    pub fn resource_type(&self, key: &str) -> Option<ResourceTypeId> {
        self.resource_type_index.get(key).copied()
    }

    pub fn resource_type_key(&self, id: ResourceTypeId) -> &str {
        &self.resource_types[usize::from(id.0)].key
    }

    pub fn context_flags(&self) -> &[ContextFlag] {
        &self.flags
    }

    /// The declared context flag with this key.
    pub fn flag(&self, key: &str) -> Option<FlagId> {
        self.flag_index.get(key).copied()
    }

    pub fn context_flag(&self, id: FlagId) -> &ContextFlag {
        &self.flags[id.index()]
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// The keys of the roles a set of (unscoped, effective) permissions gives.
    pub fn roles_of(&self, perms: &PermSet) -> Vec<&str> {
        let has = |p: PermId| perms.contains(p);
        // Roles test no context flags (refused at load), so no flag value is ever read.
        self.roles
            .iter()
            .filter(|r| r.expr.holds(&has, &|_: FlagId| false))
            .map(|r| r.key.as_str())
            .collect()
    }

    /// What an actor needs for an admin operation; `None` when only operators may do it.
    pub fn admin_requirement(&self, op: AdminOp) -> Option<&Expr> {
        self.admin.get(&op)
    }

    /// Parses an inline expression against this catalog's permissions and context flags.
    pub fn parse_expression(&self, source: &str) -> Result<Expr, ExprError> {
        Expr::parse(
            source,
            &Resolver {
                index: &self.index,
                permissions: &self.permissions,
                flags: &self.flag_index,
                flag_list: &self.flags,
            },
        )
    }

    /// Permission keys of a set, in catalog order.
    pub fn keys<'a>(&'a self, set: &'a PermSet) -> impl Iterator<Item = &'a str> + 'a {
        set.iter().map(|p| self.key(p))
    }
}

/// The catalog's names as expressions resolve them, at load and per request alike.
struct Resolver<'a> {
    index: &'a Index<PermId>,
    permissions: &'a [Permission],
    flags: &'a Index<FlagId>,
    flag_list: &'a [ContextFlag],
}

impl Names for Resolver<'_> {
    fn permission(&self, key: &str) -> Option<PermId> {
        self.index.get(key).copied()
    }
    fn flag(&self, key: &str) -> Option<FlagId> {
        self.flags.get(key).copied()
    }
    fn permission_keys(&self) -> Vec<&str> {
        self.permissions.iter().map(|p| p.key.as_str()).collect()
    }
    fn flag_keys(&self) -> Vec<&str> {
        self.flag_list.iter().map(|f| f.key.as_str()).collect()
    }
}

fn compile(file: File, fingerprint: String, source: String) -> Result<Catalog, CatalogError> {
    if file.name.trim().is_empty() {
        return Err(CatalogError::Empty { field: "name" });
    }
    if file.version.trim().is_empty() {
        return Err(CatalogError::Empty { field: "version" });
    }
    let max = usize::from(u16::MAX);
    if file.permissions.len() > max {
        return Err(CatalogError::TooManyPermissions {
            count: file.permissions.len(),
            max,
        });
    }

    let mut resource_types = Vec::new();
    let mut resource_type_index = Index::default();
    for (i, rt) in file.resource_types.into_iter().enumerate() {
        if !is_valid_key(&rt.key) {
            return Err(CatalogError::InvalidResourceType { key: rt.key });
        }
        let id =
            ResourceTypeId(
                u16::try_from(i).map_err(|_| CatalogError::DuplicateResourceType {
                    key: rt.key.clone(),
                })?,
            );
        if resource_type_index.insert(rt.key.clone(), id).is_some() {
            return Err(CatalogError::DuplicateResourceType { key: rt.key });
        }
        resource_types.push(ResourceType {
            id,
            key: rt.key,
            description: rt.description,
        });
    }

    let mut flags: Vec<ContextFlag> = Vec::new();
    let mut flag_index: Index<FlagId> = Index::default();
    for (i, f) in file.context_flags.into_iter().enumerate() {
        if !is_valid_key(&f.key) {
            return Err(CatalogError::InvalidFlag { key: f.key });
        }
        let id =
            FlagId(u16::try_from(i).map_err(|_| CatalogError::InvalidFlag { key: f.key.clone() })?);
        if flag_index.insert(f.key.clone(), id).is_some() {
            return Err(CatalogError::DuplicateFlag { key: f.key });
        }
        flags.push(ContextFlag {
            id,
            key: f.key,
            description: f.description,
            default: f.default,
        });
    }

    // Permissions first, then aliases, so an alias that clashes with any permission key is found
    // whatever the order of the file.
    let mut permissions: Vec<Permission> = Vec::with_capacity(file.permissions.len());
    let mut index: Index<PermId> = Index::default();
    let mut internal = PermSet::new();
    for (i, p) in file.permissions.into_iter().enumerate() {
        let key = key_from_name(&p.name);
        if key.is_empty() {
            return Err(CatalogError::NoKey { name: p.name });
        }
        if is_reserved(&key) {
            return Err(CatalogError::ReservedKey { name: p.name, key });
        }
        let id = PermId(
            u16::try_from(i).map_err(|_| CatalogError::TooManyPermissions { count: i, max })?,
        );
        if let Some(prev) = index.insert(key.clone(), id) {
            return Err(CatalogError::DuplicatePermission {
                key,
                first: permissions[prev.index()].name.clone(),
                second: p.name,
            });
        }
        if p.internal {
            internal.insert(id);
        }
        permissions.push(Permission {
            id,
            key,
            name: p.name,
            section: p.section,
            description: p.description,
            internal: p.internal,
            aliases: p.aliases,
        });
    }
    for p in &permissions {
        for alias in &p.aliases {
            let alias_key = key_from_name(alias);
            if is_reserved(&alias_key) {
                return Err(CatalogError::ReservedKey {
                    name: alias.clone(),
                    key: alias_key,
                });
            }
            if alias_key.is_empty() || alias.trim() == p.name {
                return Err(CatalogError::AliasClash {
                    alias: alias.clone(),
                    permission: p.key.clone(),
                    other: p.key.clone(),
                });
            }
            match index.get(&alias_key) {
                // A spelling variant whose key is the permission's own (curly vs straight
                // quotes) is recorded, and resolves by key already.
                Some(&existing) if existing == p.id => {}
                Some(&existing) => {
                    return Err(CatalogError::AliasClash {
                        alias: alias.clone(),
                        permission: p.key.clone(),
                        other: permissions[existing.index()].key.clone(),
                    });
                }
                None => {
                    index.insert(alias_key, p.id);
                }
            }
        }
    }

    let mut groups = Vec::new();
    let mut group_index = Index::default();
    for g in file.groups {
        let expected = key_from_name(&g.name);
        if expected.is_empty() {
            return Err(CatalogError::NoKey { name: g.name });
        }
        if let Some(key) = &g.key {
            if *key != expected {
                return Err(CatalogError::GroupKeyMismatch {
                    group: g.name,
                    key: key.clone(),
                    expected,
                });
            }
        }
        let mut set = PermSet::new();
        for k in &g.permissions {
            let Some(p) = index.get(k).copied() else {
                return Err(CatalogError::UnknownPermissionInGroup {
                    group: expected,
                    permission: k.clone(),
                });
            };
            if !set.insert(p) {
                return Err(CatalogError::RepeatedPermissionInGroup {
                    group: expected,
                    permission: k.clone(),
                });
            }
            if internal.contains(p) && !g.internal {
                return Err(CatalogError::InternalPermissionInPublicGroup {
                    group: expected,
                    permission: k.clone(),
                });
            }
        }
        if group_index.insert(expected.clone(), groups.len()).is_some() {
            return Err(CatalogError::DuplicateGroup { key: expected });
        }
        groups.push(SystemGroup {
            key: expected.clone(),
            name: g.name,
            description: g.description,
            internal: g.internal,
            grants: Arc::new(GroupGrants {
                key: expected,
                permissions: set,
                scoped: Vec::new(),
            }),
        });
    }

    let names = Resolver {
        index: &index,
        permissions: &permissions,
        flags: &flag_index,
        flag_list: &flags,
    };
    let mut actions = Vec::new();
    let mut action_index = Index::default();
    for a in file.actions {
        if a.key.split('.').any(|part| !is_valid_key(part)) {
            return Err(CatalogError::InvalidActionKey { key: a.key });
        }
        let expr =
            Expr::parse(&a.expression, &names).map_err(|error| CatalogError::Expression {
                action: a.key.clone(),
                error,
            })?;
        if action_index.insert(a.key.clone(), actions.len()).is_some() {
            return Err(CatalogError::DuplicateAction { key: a.key });
        }
        actions.push(Action {
            key: a.key,
            description: a.description,
            expr,
        });
    }

    let mut roles: Vec<Role> = Vec::new();
    for r in file.roles {
        if !is_valid_key(&r.key) {
            return Err(CatalogError::InvalidRole { key: r.key });
        }
        if roles.iter().any(|x| x.key == r.key) {
            return Err(CatalogError::DuplicateRole { key: r.key });
        }
        let expr =
            Expr::parse(&r.expression, &names).map_err(|error| CatalogError::RoleExpression {
                role: r.key.clone(),
                error,
            })?;
        if !expr.flags().is_empty() {
            return Err(CatalogError::RoleFlag { role: r.key });
        }
        roles.push(Role {
            name: if r.name.is_empty() {
                r.key.clone()
            } else {
                r.name
            },
            key: r.key,
            expr,
        });
    }

    let mut admin = HashMap::new();
    for (key, source) in file.admin {
        let Some(op) = AdminOp::from_key(&key) else {
            let known: Vec<&str> = AdminOp::ALL.iter().map(|o| o.key()).collect();
            return Err(CatalogError::UnknownAdminOperation {
                key,
                known: known.join(", "),
            });
        };
        let expr = Expr::parse(&source, &names).map_err(|error| CatalogError::AdminExpression {
            op: key.clone(),
            error,
        })?;
        // An admin call has no context: a flag there would have no value to read.
        if !expr.flags().is_empty() {
            return Err(CatalogError::AdminFlag { op: key });
        }
        admin.insert(op, expr);
    }

    Ok(Catalog {
        name: file.name,
        version: file.version,
        description: file.description,
        fingerprint,
        source,
        permissions,
        index,
        internal,
        groups,
        group_index,
        actions,
        action_index,
        resource_types,
        resource_type_index,
        flags,
        flag_index,
        admin,
        roles,
    })
}

/// Keys that expressions read as constants, never as permissions.
fn is_reserved(key: &str) -> bool {
    key == "true" || key == "false"
}

/// FNV-1a over the file's bytes: enough to tell two catalog files apart, not a security hash.
fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
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
aliases = ["Edit the flows"]
[[permissions]]
name = "View system tasks"
internal = true
[[groups]]
name = "Flow editors"
permissions = ["edit_flows", "view_brands"]
[[actions]]
key = "flows.add"
expression = "edit_flows & (!ctx.multibrand | view_brands)"
"#;

    fn load(extra: &str) -> Result<Catalog, CatalogError> {
        Catalog::from_toml(&format!("{BASE}{extra}"))
    }

    fn error(extra: &str) -> String {
        load(extra).expect_err(extra).to_string()
    }

    #[test]
    fn compiles_and_indexes() {
        let c = load("").unwrap();
        assert_eq!(c.permissions().len(), 3);
        assert_eq!(c.resolve("edit_flows"), c.resolve("edit_the_flows"));
        assert!(c.resolve("edit_the_flows").is_some());
        assert_eq!(c.group("flow_editors").unwrap().grants.permissions.len(), 2);
        assert_eq!(
            c.action("flows.add").unwrap().expr.flags(),
            [c.flag("multibrand").unwrap()]
        );
        assert_eq!(c.context_flag(c.flag("multibrand").unwrap()).default, None);
        assert_eq!(c.resource_type("folder"), Some(ResourceTypeId(0)));
        assert_eq!(c.internal_permissions().len(), 1);
        assert_eq!(c.fingerprint.len(), 16);
    }

    #[test]
    fn validation_errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[[permissions]]\nname = \"View  brands!\"",
                "duplicate permission `view_brands`",
            ),
            (
                "[[permissions]]\nname = \"X\"\naliases = [\"View brands\"]",
                "alias \"View brands\" of `x` clashes with `view_brands`",
            ),
            (
                "[[permissions]]\nname = \"Y\"\naliases = [\"Edit the flows\"]",
                "clashes with `edit_flows`",
            ),
            ("[[permissions]]\nname = \"“”\"", "has no letters or digits"),
            (
                "[[groups]]\nname = \"G\"\npermissions = [\"nope\"]",
                "group `g` names unknown permission `nope`",
            ),
            (
                "[[groups]]\nname = \"G\"\npermissions = [\"view_brands\", \"view_brands\"]",
                "lists permission `view_brands` twice",
            ),
            (
                "[[groups]]\nname = \"G\"\npermissions = [\"view_system_tasks\"]",
                "holds internal permission `view_system_tasks`",
            ),
            (
                "[[groups]]\nname = \"Flow editors\"",
                "duplicate group `flow_editors`",
            ),
            (
                "[[groups]]\nname = \"G h\"\nkey = \"gh\"",
                "does not match the key of its name, `g_h`",
            ),
            (
                "[[actions]]\nkey = \"flows.add\"\nexpression = \"true\"",
                "duplicate action `flows.add`",
            ),
            (
                "[[actions]]\nkey = \"Flows\"\nexpression = \"true\"",
                "action key \"Flows\" is invalid",
            ),
            (
                "[[actions]]\nkey = \"a\"\nexpression = \"view_brands & edit_flow\"",
                "action `a`: unknown permission `edit_flow`; did you mean `edit_flows`? at position 15",
            ),
            (
                "[[actions]]\nkey = \"a\"\nexpression = \"(view_brands\"",
                "action `a`: missing `)`",
            ),
            (
                "[[actions]]\nkey = \"a\"\nexpression = \"ctx.other\"",
                "action `a`: undeclared context flag `ctx.other`; the catalog declares: multibrand at position 1",
            ),
            (
                "[[actions]]\nkey = \"a\"\nexpression = \"!ctx.multibrnad\"",
                "did you mean `ctx.multibrand`? at position 2",
            ),
            (
                "[[roles]]\nkey = \"r\"\nexpression = \"view_brands | ctx.multibrand\"",
                "role `r` uses a context flag",
            ),
            (
                "[admin]\nedit_groups = \"!ctx.multibrand | view_brands\"",
                "[admin] `edit_groups` uses a context flag",
            ),
            (
                "[admin]\nedit_groups = \"!ctx.nope | view_brands\"",
                "[admin] `edit_groups`: undeclared context flag `ctx.nope`",
            ),
            (
                "[[context_flags]]\nkey = \"x\"\ndefault = \"no\"",
                "invalid type",
            ),
            (
                "[[resource_types]]\nkey = \"folder\"",
                "duplicate resource type `folder`",
            ),
            (
                "[[resource_types]]\nkey = \"Folder\"",
                "resource type \"Folder\" is not a valid key",
            ),
            (
                "[[context_flags]]\nkey = \"multibrand\"",
                "duplicate context flag `multibrand`",
            ),
            ("[[permissions]]\nnam = \"x\"", "unknown field `nam`"),
            (
                "[admin]\nedit_everything = \"view_brands\"",
                "[admin] names unknown operation `edit_everything`",
            ),
            (
                "[admin]\nedit_groups = \"view_brandz\"",
                "[admin] `edit_groups`: unknown permission `view_brandz`; did you mean `view_brands`? at position 1",
            ),
            ("[[permissions]", "not valid TOML"),
            (
                "[[permissions]]\nname = \"True\"",
                "has the key `true`, which expressions read as the constant true",
            ),
            (
                "[[permissions]]\nname = \"X\"\naliases = [\"false\"]",
                "has the key `false`",
            ),
        ];
        for (extra, expected) in cases {
            let msg = error(extra);
            assert!(
                msg.contains(expected),
                "for {extra:?}: got {msg:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn fingerprint_tells_files_apart() {
        assert_ne!(fingerprint(b"a"), fingerprint(b"b"));
        assert_eq!(fingerprint(b"a"), fingerprint(b"a"));
    }
}
