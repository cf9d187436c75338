//! The rules of administration, as pure functions over the acting user's subject.
//!
//! An admin call is made by an **operator** (bootstrap, automation: no rules apply) or by an
//! **actor**, a user of the tenant. For an actor:
//! - the catalog's `[admin]` table says which permissions each operation needs;
//! - to add someone to a group the actor must be a member of it or hold every permission of it;
//! - to grant a permission, or put it into a custom group, the actor must hold it;
//! - internal (staff-only) permissions and groups do not exist as far as actors can tell;
//! - an actor limited to some resources of a type can only limit others within them.

use crate::catalog::Catalog;
use crate::model::{GroupGrants, ResourceTypeId, ScopedGrant, Subject};
use crate::permset::{PermId, PermSet};
use std::collections::BTreeSet;
use std::fmt;

/// The operations the catalog's `[admin]` table gives requirements for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdminOp {
    /// Read groups.
    ViewGroups,
    /// Create, edit, duplicate and delete custom groups.
    EditGroups,
    /// Read users and their grants.
    ViewUsers,
    /// Create users, change profiles, memberships and direct grants.
    EditUsers,
    /// Block and unblock users.
    BlockUsers,
    /// Limit users to listed resources.
    RestrictUsers,
    /// Read the audit log.
    ViewAudit,
}

impl AdminOp {
    pub const ALL: [AdminOp; 7] = [
        AdminOp::ViewGroups,
        AdminOp::EditGroups,
        AdminOp::ViewUsers,
        AdminOp::EditUsers,
        AdminOp::BlockUsers,
        AdminOp::RestrictUsers,
        AdminOp::ViewAudit,
    ];

    pub fn key(self) -> &'static str {
        match self {
            AdminOp::ViewGroups => "view_groups",
            AdminOp::EditGroups => "edit_groups",
            AdminOp::ViewUsers => "view_users",
            AdminOp::EditUsers => "edit_users",
            AdminOp::BlockUsers => "block_users",
            AdminOp::RestrictUsers => "restrict_users",
            AdminOp::ViewAudit => "view_audit",
        }
    }

    pub fn from_key(key: &str) -> Option<AdminOp> {
        AdminOp::ALL.into_iter().find(|op| op.key() == key)
    }

    fn describe(self) -> &'static str {
        match self {
            AdminOp::ViewGroups => "view permission groups",
            AdminOp::EditGroups => "edit permission groups",
            AdminOp::ViewUsers => "view users",
            AdminOp::EditUsers => "edit users",
            AdminOp::BlockUsers => "block users",
            AdminOp::RestrictUsers => "limit users to resources",
            AdminOp::ViewAudit => "read the audit log",
        }
    }
}

/// Why an actor may not do something. The message lists exactly what the actor lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    UnknownActor(String),
    BlockedActor(String),
    /// The catalog gives actors no way to do this.
    OperatorOnly(AdminOp),
    /// The operation needs permissions the actor lacks.
    Operation {
        op: AdminOp,
        missing: Vec<String>,
    },
    /// Adding to a group the actor is not in and does not fully hold.
    Group {
        group: String,
        missing: Vec<String>,
    },
    /// Granting, or putting into a group, permissions the actor lacks.
    Grant {
        missing: Vec<String>,
    },
    /// Limiting someone beyond the actor's own limit on a resource type.
    Restriction {
        resource_type: String,
        outside: Vec<String>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownActor(a) => write!(f, "actor `{a}` is not a user of this tenant"),
            Refusal::BlockedActor(a) => write!(f, "actor `{a}` is blocked"),
            Refusal::OperatorOnly(op) => write!(
                f,
                "only an operator may {} with this catalog",
                op.describe()
            ),
            Refusal::Operation { op, missing } => {
                write!(
                    f,
                    "the actor may not {}: missing {}",
                    op.describe(),
                    missing.join(", ")
                )
            }
            Refusal::Group { group, missing } => write!(
                f,
                "the actor may not assign group `{group}`: not a member of it, and missing {} of its permissions",
                missing.join(", ")
            ),
            Refusal::Grant { missing } => {
                write!(
                    f,
                    "the actor may only give permissions it holds: missing {}",
                    missing.join(", ")
                )
            }
            Refusal::Restriction {
                resource_type,
                outside,
            } => write!(
                f,
                "the actor is itself limited to listed {resource_type} resources and may not give access beyond them: {}",
                if outside.is_empty() {
                    "lifting the limit".to_owned()
                } else {
                    outside.join(", ")
                }
            ),
        }
    }
}

/// The actor's subject with who they are, for the checks below.
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub subject: &'a Subject,
}

fn keys(catalog: &Catalog, ids: impl IntoIterator<Item = PermId>) -> Vec<String> {
    ids.into_iter().map(|p| catalog.key(p).to_owned()).collect()
}

fn grant_text(catalog: &Catalog, g: &ScopedGrant) -> String {
    format!(
        "{}@{}:{}",
        catalog.key(g.permission),
        catalog.resource_type_key(g.resource.resource_type),
        g.resource.id
    )
}

/// The actor exists, is active and holds what the catalog requires for `op`.
pub fn authorize(catalog: &Catalog, actor: &Actor<'_>, op: AdminOp) -> Result<(), Refusal> {
    if actor.subject.user.is_none() {
        return Err(Refusal::UnknownActor(actor.user_id.to_owned()));
    }
    if !actor.subject.is_active() {
        return Err(Refusal::BlockedActor(actor.user_id.to_owned()));
    }
    let Some(expr) = catalog.admin_requirement(op) else {
        return Err(Refusal::OperatorOnly(op));
    };
    let has = |p: PermId| actor.subject.has(p);
    let out = expr.evaluate(&has, &|_| false);
    if out.allowed {
        Ok(())
    } else {
        Err(Refusal::Operation {
            op,
            missing: keys(catalog, out.missing),
        })
    }
}

/// To add someone to a group: be in it, or hold every permission (and scoped grant) it gives.
pub fn may_assign(
    catalog: &Catalog,
    actor: &Actor<'_>,
    group: &GroupGrants,
) -> Result<(), Refusal> {
    let member = actor
        .subject
        .user
        .as_ref()
        .is_some_and(|u| u.groups.contains(&group.key));
    if member {
        return Ok(());
    }
    let mut missing: Vec<String> = keys(
        catalog,
        group.permissions.iter().filter(|p| !actor.subject.has(*p)),
    );
    missing.extend(
        group
            .scoped
            .iter()
            .filter(|g| !actor.subject.has_on(g.permission, &g.resource))
            .map(|g| grant_text(catalog, g)),
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Group {
            group: group.key.clone(),
            missing,
        })
    }
}

/// To grant permissions, or put them into a group: hold each (scoped ones on their resource).
pub fn may_give(
    catalog: &Catalog,
    actor: &Actor<'_>,
    perms: &PermSet,
    scoped: &[ScopedGrant],
) -> Result<(), Refusal> {
    let mut missing = keys(catalog, perms.iter().filter(|p| !actor.subject.has(*p)));
    missing.extend(
        scoped
            .iter()
            .filter(|g| !actor.subject.has_on(g.permission, &g.resource))
            .map(|g| grant_text(catalog, g)),
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Grant { missing })
    }
}

/// To limit a user on a resource type: an actor limited on that type may only set limits within
/// its own list, and may not lift a limit.
pub fn may_restrict(
    catalog: &Catalog,
    actor: &Actor<'_>,
    resource_type: ResourceTypeId,
    ids: Option<&BTreeSet<String>>,
) -> Result<(), Refusal> {
    let Some(own) = actor.subject.restriction(resource_type) else {
        return Ok(());
    };
    let outside: Vec<String> = match ids {
        None => Vec::new(),
        Some(ids) => ids.difference(&own.ids).cloned().collect(),
    };
    if ids.is_some() && outside.is_empty() {
        return Ok(());
    }
    Err(Refusal::Restriction {
        resource_type: catalog.resource_type_key(resource_type).to_owned(),
        outside,
    })
}
