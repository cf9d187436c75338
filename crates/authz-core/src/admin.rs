//! The rules of administration, as pure functions over the acting user's subject.
//!
//! An admin call is made by an **operator** (bootstrap, automation: no rules apply) or by an
//! **actor**, a user of the tenant. For an actor:
//! - the catalog's `[admin]` table says which permissions each operation needs;
//! - to add someone to a group the actor must be a member of it or hold every permission of it;
//! - to grant a permission, or put it into a custom group, the actor must hold it, and only as
//!   far as the actor itself may use it: an actor limited to some resources of a type gives
//!   unscoped access only to users limited at least as narrowly on that type, and scoped
//!   access only on resources within its limit (the **reach** rule);
//! - taking access away is symmetric with giving it: to revoke from, remove from a group,
//!   block, limit or unblock a user, the actor must be able to give that user everything it
//!   holds;
//! - internal (staff-only) permissions and groups do not exist as far as actors can tell;
//! - an actor limited to some resources of a type can only limit others within them.
//!
//! A write's rules are one [`Rule`]: the operations it needs and its [`Effect`]. Stores check
//! it with [`Rule::check`] on [`Facts`] read inside the write's own transaction, after the
//! tenant's lock, so the decision and the write are one step in revision order.
//!
//! One file: every admin rule is a pure function over the same `Actor` and `Facts`, kept together
//! so they can be read and reviewed as one policy.

use crate::catalog::Catalog;
use crate::model::{GroupGrants, ResourceTypeId, ScopedGrant, Subject};
use crate::permset::{PermId, PermSet};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

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
    /// Giving access beyond the actor's own limit on a resource type.
    Reach {
        resource_type: String,
        own: Vec<String>,
        beyond: Vec<String>,
    },
    /// Taking access away from (or giving it back to) a user holding more than the actor.
    TakeAway {
        user: String,
        missing: Vec<String>,
    },
    /// Rows of an import that break a rule, each with its refusals: (row number, user, why).
    Import {
        rows: Vec<(usize, String, Vec<Refusal>)>,
    },
}

impl Refusal {
    /// The admin rule that refused, as metrics and logs label it.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::UnknownActor(_) => "unknown_actor",
            Refusal::BlockedActor(_) => "blocked_actor",
            Refusal::OperatorOnly(_) => "operator_only",
            Refusal::Operation { .. } => "operation",
            Refusal::Group { .. } => "group",
            Refusal::Grant { .. } => "grant",
            Refusal::Restriction { .. } => "restriction",
            Refusal::Reach { .. } => "reach",
            Refusal::TakeAway { .. } => "take_away",
            Refusal::Import { .. } => "import",
        }
    }
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
            Refusal::Reach {
                resource_type,
                own,
                beyond,
            } => write!(
                f,
                "the actor is itself limited to {resource_type} {} and may give access only within that limit: {}",
                own.join(", "),
                beyond.join("; ")
            ),
            Refusal::TakeAway { user, missing } => write!(
                f,
                "the actor may take access away from (or give it back to) `{user}` only when it holds everything `{user}` holds: missing {}",
                missing.join(", ")
            ),
            Refusal::Import { rows } => {
                write!(f, "import refused, nothing applied: ")?;
                for (i, (row, user, why)) in rows.iter().take(20).enumerate() {
                    if i > 0 {
                        write!(f, " | ")?;
                    }
                    let why: Vec<String> = why.iter().map(Refusal::to_string).collect();
                    write!(f, "row {row} (`{user}`): {}", why.join("; "))?;
                }
                if rows.len() > 20 {
                    write!(f, " | and {} more", rows.len() - 20)?;
                }
                Ok(())
            }
        }
    }
}

/// The actor's subject with who they are, for the checks below.
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub subject: &'a Subject,
}

/// Permission keys as an actor may read them: internal permissions are never named, only
/// counted as access an operator must change.
fn keys(catalog: &Catalog, ids: impl IntoIterator<Item = PermId>) -> Vec<String> {
    let mut hidden = false;
    let mut out: Vec<String> = ids
        .into_iter()
        .filter(|p| {
            let internal = catalog.permission(*p).internal;
            hidden |= internal;
            !internal
        })
        .map(|p| catalog.key(p).to_owned())
        .collect();
    if hidden {
        out.push(STAFF_ONLY.to_owned());
    }
    out
}

/// How a refusal mentions internal permissions and groups to an actor: once, however many.
const STAFF_ONLY: &str = "access that only an operator can change";

/// A refusal's list without repeats (the staff-only phrase above all), in order.
fn tidy(items: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

fn grant_text(catalog: &Catalog, g: &ScopedGrant) -> String {
    if catalog.permission(g.permission).internal {
        return STAFF_ONLY.to_owned();
    }
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
            missing: tidy(missing),
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
        Err(Refusal::Grant {
            missing: tidy(missing),
        })
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

/// Where an actor's limits stop what it gives: access a recipient would get beyond the
/// actor's own reach, as readable items (empty: within reach). `recipient` is `None` for a
/// grant that reaches no user yet (a new group without members): only scoped grants count.
fn beyond_reach(
    catalog: &Catalog,
    actor: &Subject,
    recipient: Option<(&str, &Subject)>,
    perms: &PermSet,
    scoped: &[ScopedGrant],
) -> Result<(), Refusal> {
    let Some(user) = actor.user.as_ref() else {
        return Ok(());
    };
    for own in &user.restrictions {
        let type_key = catalog.resource_type_key(own.resource_type);
        let mut beyond: Vec<String> = scoped
            .iter()
            .filter(|g| g.resource.resource_type == own.resource_type)
            .filter(|g| !own.ids.contains(&g.resource.id))
            .map(|g| grant_text(catalog, g))
            .collect();
        if let Some((id, r)) = recipient {
            let narrow = r
                .restriction(own.resource_type)
                .is_some_and(|theirs| theirs.ids.is_subset(&own.ids));
            if !perms.is_empty() && !narrow {
                beyond.push(format!(
                    "{} to `{id}`, who is not limited to {type_key} within it",
                    keys(catalog, perms.iter()).join(", ")
                ));
            }
        }
        if !beyond.is_empty() {
            return Err(Refusal::Reach {
                resource_type: type_key.to_owned(),
                own: own.ids.iter().cloned().collect(),
                beyond: tidy(beyond),
            });
        }
    }
    Ok(())
}

/// To give `perms` and `scoped` to a recipient: hold each, and give only within reach.
pub fn may_give_to(
    catalog: &Catalog,
    actor: &Actor<'_>,
    recipient: Option<(&str, &Subject)>,
    perms: &PermSet,
    scoped: &[ScopedGrant],
) -> Result<(), Refusal> {
    may_give(catalog, actor, perms, scoped)?;
    beyond_reach(catalog, actor.subject, recipient, perms, scoped)
}

/// To take access away from a user, or give it back (unblocking, lifting a limit): the actor
/// must be able to give the user everything it holds while active.
pub fn may_take_from(
    catalog: &Catalog,
    actor: &Actor<'_>,
    user_id: &str,
    target: &Subject,
) -> Result<(), Refusal> {
    let Some(user) = &target.user else {
        return Ok(());
    };
    let mut active = (**user).clone();
    active.status = crate::model::UserStatus::Active;
    let target = Subject {
        user: Some(Arc::new(active)),
        groups: target.groups.clone(),
    };
    let perms = target.effective();
    let scoped: Vec<ScopedGrant> = crate::decide::scoped_grants(&target)
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    let refuse = |missing: Vec<String>| Refusal::TakeAway {
        user: user_id.to_owned(),
        missing,
    };
    match may_give_to(catalog, actor, Some((user_id, &target)), &perms, &scoped) {
        Ok(()) => Ok(()),
        Err(Refusal::Grant { missing }) => Err(refuse(missing)),
        Err(Refusal::Reach { beyond, .. }) => Err(refuse(beyond)),
        Err(other) => Err(other),
    }
}

/// One row of an import, as the rules see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportGrant {
    pub user_id: String,
    pub groups: Vec<String>,
    pub direct: PermSet,
    /// The row sets a display name or email: a change to who the user is.
    pub profile: bool,
}

/// What an admin write gives or takes away: what its rules depend on beyond the operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond the operation's requirement (an empty group's deletion, a new user).
    #[default]
    Nothing,
    /// A user's profile (name, email) set: who the user is, so as for taking access away.
    Profile { user: String },
    /// Direct grants to one user.
    Give {
        user: String,
        permissions: PermSet,
        scoped: Vec<ScopedGrant>,
    },
    /// Memberships of users in one group.
    Assign { group: String, users: Vec<String> },
    /// Revoking, removing from a group, blocking: access taken from each user.
    TakeFrom { users: Vec<String> },
    /// Unblocking: everything the user holds is given back.
    Unblock { user: String },
    /// Limiting a user to listed resources of one type (`Some`), or lifting the limit.
    Restrict {
        user: String,
        resource_type: ResourceTypeId,
        ids: Option<BTreeSet<String>>,
    },
    /// A new custom group with these grants; with `members_of`, that group's members join it.
    NewGroup {
        permissions: PermSet,
        scoped: Vec<ScopedGrant>,
        members_of: Option<String>,
    },
    /// A custom group's permissions and/or scoped grants replaced.
    EditGroup {
        group: String,
        permissions: Option<PermSet>,
        scoped: Option<Vec<ScopedGrant>>,
    },
    /// Users created or updated with memberships and direct grants.
    Import { rows: Vec<ImportGrant> },
}

/// An admin write as the rules see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// The operations the catalog's `[admin]` table must allow the actor.
    pub ops: Vec<AdminOp>,
    pub effect: Effect,
}

/// What a rule reads besides the actor: users' subjects (by id, and every member of the named
/// groups) and custom groups' grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub users: BTreeSet<String>,
    pub members_of: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

/// The state a rule decides on, read inside the write. A user or custom group missing here
/// does not exist (the write itself reports a missing group).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub actor: Subject,
    pub users: HashMap<String, Subject>,
    pub groups: HashMap<String, Arc<GroupGrants>>,
}

impl Facts {
    fn user(&self, id: &str) -> Subject {
        self.users.get(id).cloned().unwrap_or_default()
    }

    /// A group's grants: the catalog's for a system group, the stored ones for a custom group.
    fn group(&self, catalog: &Catalog, key: &str) -> Option<Arc<GroupGrants>> {
        match catalog.group(key) {
            Some(g) => Some(g.grants.clone()),
            None => self.groups.get(key).cloned(),
        }
    }

    /// The loaded users that are members of `group`, sorted by id.
    fn members<'f>(&'f self, group: &str) -> Vec<(&'f str, &'f Subject)> {
        let mut out: Vec<(&str, &Subject)> = self
            .users
            .iter()
            .filter(|(_, s)| {
                s.user
                    .as_ref()
                    .is_some_and(|u| u.groups.iter().any(|g| g == group))
            })
            .map(|(id, s)| (id.as_str(), s))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }
}

impl Rule {
    pub fn new(op: AdminOp, effect: Effect) -> Self {
        Self {
            ops: vec![op],
            effect,
        }
    }

    /// The custom groups [`Rule::check`] reads, whatever the actor.
    pub fn groups(&self) -> BTreeSet<String> {
        match &self.effect {
            Effect::Assign { group, .. } | Effect::EditGroup { group, .. } => {
                [group.clone()].into()
            }
            Effect::Import { rows } => rows.iter().flat_map(|r| r.groups.clone()).collect(),
            _ => BTreeSet::new(),
        }
    }

    /// What [`Rule::check`] needs read, given the actor and the groups of [`Rule::groups`] as
    /// read inside the write (a custom group missing there does not exist).
    pub fn needs(
        &self,
        catalog: &Catalog,
        actor: &Subject,
        groups: &HashMap<String, Arc<GroupGrants>>,
    ) -> Needs {
        let mut needs = Needs {
            groups: self.groups(),
            ..Needs::default()
        };
        let restricted = actor
            .user
            .as_ref()
            .is_some_and(|u| !u.restrictions.is_empty());
        match &self.effect {
            Effect::Nothing => {}
            Effect::Give { user, .. }
            | Effect::Unblock { user }
            | Effect::Restrict { user, .. }
            | Effect::Profile { user } => {
                needs.users.insert(user.clone());
            }
            Effect::Assign { users, .. } | Effect::TakeFrom { users } => {
                needs.users.extend(users.iter().cloned())
            }
            Effect::NewGroup { members_of, .. } => {
                if let Some(g) = members_of.as_ref().filter(|_| restricted) {
                    needs.members_of.insert(g.clone());
                }
            }
            Effect::EditGroup { group, .. } => {
                // Members are read when the edit reaches them: a restricted actor adds access
                // (reach), or something is taken out of the group (removal).
                let current = groups.get(group).cloned().unwrap_or_default();
                let (_, removes) = self.group_change(catalog, &current);
                if restricted || removes {
                    needs.members_of.insert(group.clone());
                }
            }
            Effect::Import { rows } => needs.users.extend(rows.iter().map(|r| r.user_id.clone())),
        }
        needs
    }

    /// What an [`Effect::EditGroup`] adds to the group (permissions, scoped grants) and whether
    /// it takes anything out of it. Internal permissions are outside an actor's edit (stores
    /// keep them), so they never count as taken out.
    fn group_change(
        &self,
        catalog: &Catalog,
        current: &GroupGrants,
    ) -> ((PermSet, Vec<ScopedGrant>), bool) {
        let Effect::EditGroup {
            permissions,
            scoped,
            ..
        } = &self.effect
        else {
            return ((PermSet::new(), Vec::new()), false);
        };
        let mut added = permissions.clone().unwrap_or_default();
        added.difference_with(&current.permissions);
        let added_scoped: Vec<ScopedGrant> = scoped
            .iter()
            .flatten()
            .filter(|g| !current.scoped.contains(g))
            .cloned()
            .collect();
        let internal = catalog.internal_permissions();
        let removes_perms = permissions.as_ref().is_some_and(|new| {
            current
                .permissions
                .iter()
                .any(|p| !new.contains(p) && !internal.contains(p))
        });
        let removes_scoped = scoped.as_ref().is_some_and(|new| {
            current
                .scoped
                .iter()
                .any(|g| !new.contains(g) && !internal.contains(g.permission))
        });
        ((added, added_scoped), removes_perms || removes_scoped)
    }

    /// Decides the write for `actor_id` on `facts`: the actor exists and is active, holds what
    /// each operation requires, and the effect keeps every rule.
    pub fn check(&self, catalog: &Catalog, actor_id: &str, facts: &Facts) -> Result<(), Refusal> {
        let actor = Actor {
            user_id: actor_id,
            subject: &facts.actor,
        };
        if self.ops.is_empty() {
            // Every write names its operation; a rule without one refuses rather than allows.
            return Err(Refusal::OperatorOnly(AdminOp::EditUsers));
        }
        for op in &self.ops {
            authorize(catalog, &actor, *op)?;
        }
        let take_from = |u: &str| may_take_from(catalog, &actor, u, &facts.user(u));
        match &self.effect {
            Effect::Nothing => Ok(()),
            Effect::Give {
                user,
                permissions,
                scoped,
            } => may_give_to(
                catalog,
                &actor,
                Some((user, &facts.user(user))),
                permissions,
                scoped,
            ),
            Effect::Assign { group, users } => {
                let Some(grants) = facts.group(catalog, group) else {
                    return Ok(());
                };
                may_assign(catalog, &actor, &grants)?;
                for u in users {
                    beyond_reach(
                        catalog,
                        &facts.actor,
                        Some((u, &facts.user(u))),
                        &grants.permissions,
                        &grants.scoped,
                    )?;
                }
                Ok(())
            }
            Effect::TakeFrom { users } => users.iter().try_for_each(|u| take_from(u)),
            Effect::Unblock { user } | Effect::Profile { user } => take_from(user),
            Effect::Restrict {
                user,
                resource_type,
                ids,
            } => {
                may_restrict(catalog, &actor, *resource_type, ids.as_ref())?;
                take_from(user)
            }
            Effect::NewGroup {
                permissions,
                scoped,
                members_of,
            } => {
                may_give_to(catalog, &actor, None, permissions, scoped)?;
                if let Some(source) = members_of {
                    for (id, member) in facts.members(source) {
                        beyond_reach(
                            catalog,
                            &facts.actor,
                            Some((id, member)),
                            permissions,
                            scoped,
                        )?;
                    }
                }
                Ok(())
            }
            Effect::EditGroup { group, .. } => {
                let current = facts.group(catalog, group).unwrap_or_default();
                let ((added, added_scoped), removes) = self.group_change(catalog, &current);
                may_give_to(catalog, &actor, None, &added, &added_scoped)?;
                for (id, member) in facts.members(group) {
                    beyond_reach(
                        catalog,
                        &facts.actor,
                        Some((id, member)),
                        &added,
                        &added_scoped,
                    )?;
                    // Taking permissions out of a group takes them from every member.
                    if removes {
                        may_take_from(catalog, &actor, id, member)?;
                    }
                }
                Ok(())
            }
            Effect::Import { rows } => {
                let mut refused = Vec::new();
                for (i, row) in rows.iter().enumerate() {
                    let recipient = facts.user(&row.user_id);
                    let mut why = Vec::new();
                    // Setting who an existing user is (name, email) is as for taking away.
                    if row.profile {
                        if let Err(r) = take_from(&row.user_id) {
                            why.push(r);
                        }
                    }
                    for key in &row.groups {
                        let Some(grants) = facts.group(catalog, key) else {
                            continue;
                        };
                        if let Err(r) = may_assign(catalog, &actor, &grants).and_then(|()| {
                            beyond_reach(
                                catalog,
                                &facts.actor,
                                Some((&row.user_id, &recipient)),
                                &grants.permissions,
                                &grants.scoped,
                            )
                        }) {
                            why.push(r);
                        }
                    }
                    if let Err(r) = may_give_to(
                        catalog,
                        &actor,
                        Some((&row.user_id, &recipient)),
                        &row.direct,
                        &[],
                    ) {
                        why.push(r);
                    }
                    if !why.is_empty() {
                        refused.push((i + 1, row.user_id.clone(), why));
                    }
                }
                if refused.is_empty() {
                    Ok(())
                } else {
                    Err(Refusal::Import { rows: refused })
                }
            }
        }
    }
}
