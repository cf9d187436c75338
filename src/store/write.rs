//! A write as a value: what it changes ([`Write`]), its name, audit target and what it touches,
//! said once; and what it does to a tenant's data as the memory store holds it
//! ([`Write::apply`]). The Postgres store carries out the same value as statements
//! (`postgres/writes.rs`). Adding a write: the proto, its handler (`grpc/admin.rs`), its
//! application call (`app/`), a variant here, and its statements in `postgres/writes.rs`.

use super::memory::Tenant;
use super::{
    Committed, Grants, GroupDef, GroupInfo, GroupPatch, GroupRef, ImportRow, Result, StoreError,
    Touched, UserInfo, WriteCtx, rules,
};
use authz_core::Catalog;
use authz_core::model::{ResourceTypeId, Restriction, UserStatus};
use std::collections::BTreeSet;

/// An admin write as a value: what it changes. Every store has one entry point for writes,
/// [`Store::write`], with one transaction frame; the write's name, audit target and what it
/// touches are said here, once.
#[derive(Clone, Debug)]
pub enum Write<'a> {
    /// Creates the user or updates its profile fields.
    UpsertUser {
        user_id: &'a str,
        display_name: &'a str,
        email: &'a str,
    },
    /// Creates or updates each user, adds the memberships and direct grants, all in one write.
    /// An empty display name or email in a row leaves the stored one unchanged.
    ImportUsers {
        rows: &'a [ImportRow],
    },
    /// Sets a user's status, creating the user when unknown.
    SetUserStatus {
        user_id: &'a str,
        status: UserStatus,
    },
    CreateGroup {
        def: GroupDef,
    },
    /// Creates a custom group and, when `members_of` is given, makes every member of that group
    /// (system or custom) a member of the new one, in one write.
    DuplicateGroup {
        def: GroupDef,
        members_of: Option<&'a str>,
    },
    UpdateGroup {
        key: &'a str,
        patch: GroupPatch,
        expected_version: Option<u64>,
    },
    DeleteGroup {
        key: &'a str,
        expected_version: Option<u64>,
    },
    /// Adds members, creating users that do not exist yet.
    AddMembers {
        group: GroupRef<'a>,
        user_ids: &'a [String],
    },
    RemoveMembers {
        group: GroupRef<'a>,
        user_ids: &'a [String],
    },
    /// Adds direct grants, creating the user when unknown.
    Grant {
        user_id: &'a str,
        grants: &'a Grants,
    },
    Revoke {
        user_id: &'a str,
        grants: &'a Grants,
    },
    /// Sets (`Some`) or clears (`None`) the user's restriction on one resource type.
    SetRestriction {
        user_id: &'a str,
        resource_type: ResourceTypeId,
        ids: Option<BTreeSet<String>>,
    },
}

impl Write<'_> {
    /// The operation's name in the change log and the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Write::UpsertUser { .. } => "upsert_user",
            Write::ImportUsers { .. } => "import_users",
            Write::SetUserStatus { .. } => "set_user_status",
            Write::CreateGroup { .. } => "create_group",
            Write::DuplicateGroup { .. } => "duplicate_group",
            Write::UpdateGroup { .. } => "update_group",
            Write::DeleteGroup { .. } => "delete_group",
            Write::AddMembers { .. } => "add_members",
            Write::RemoveMembers { .. } => "remove_members",
            Write::Grant { .. } => "grant",
            Write::Revoke { .. } => "revoke",
            Write::SetRestriction { .. } => "set_restriction",
        }
    }

    /// What the audit log says the write aimed at: `user:<id>`, `group:<key>`, `users:<n>`.
    pub fn target(&self) -> String {
        match self {
            Write::UpsertUser { user_id, .. }
            | Write::SetUserStatus { user_id, .. }
            | Write::Grant { user_id, .. }
            | Write::Revoke { user_id, .. }
            | Write::SetRestriction { user_id, .. } => format!("user:{user_id}"),
            Write::ImportUsers { rows } => format!("users:{}", rows.len()),
            Write::CreateGroup { def } | Write::DuplicateGroup { def, .. } => {
                format!("group:{}", def.key)
            }
            Write::UpdateGroup { key, .. } | Write::DeleteGroup { key, .. } => {
                format!("group:{key}")
            }
            Write::AddMembers { group, .. } | Write::RemoveMembers { group, .. } => {
                format!("group:{}", group.key())
            }
        }
    }

    /// The users whose own grants and the custom groups whose grants the write changes, as
    /// far as the request says (a duplicate's copied members are read inside the write).
    pub fn touched(&self) -> Touched {
        match self {
            Write::UpsertUser { user_id, .. }
            | Write::SetUserStatus { user_id, .. }
            | Write::Grant { user_id, .. }
            | Write::Revoke { user_id, .. }
            | Write::SetRestriction { user_id, .. } => Touched::users([(*user_id).to_owned()]),
            Write::ImportUsers { rows } => Touched::users(rows.iter().map(|r| r.user_id.clone())),
            Write::CreateGroup { def } | Write::DuplicateGroup { def, .. } => {
                Touched::group(&def.key)
            }
            Write::UpdateGroup { key, .. } | Write::DeleteGroup { key, .. } => Touched::group(key),
            Write::AddMembers { user_ids, .. } | Write::RemoveMembers { user_ids, .. } => {
                Touched::users(user_ids.iter().cloned())
            }
        }
    }
}

/// What a write is, for its audit record and its invalidations: its name, its target and
/// what it touches.
pub(crate) struct Op {
    pub name: &'static str,
    pub target: String,
    pub touched: Touched,
}

impl Op {
    pub fn of(write: &Write<'_>) -> Self {
        Op {
            name: write.name(),
            target: write.target(),
            touched: write.touched(),
        }
    }
}

/// What a write returns besides its revision and preview.
#[derive(Clone, Debug)]
pub enum Written {
    Nothing,
    User(UserInfo),
    Group(GroupInfo),
}

impl Committed<Written> {
    /// The user a user write returns.
    pub fn user(self) -> Result<Committed<UserInfo>> {
        self.expect("user", |w| match w {
            Written::User(u) => Some(u),
            _ => None,
        })
    }

    /// The group a group write returns.
    pub fn group(self) -> Result<Committed<GroupInfo>> {
        self.expect("group", |w| match w {
            Written::Group(g) => Some(g),
            _ => None,
        })
    }

    /// The value `pick` takes out of a `what` write; any other is a store's mistake.
    fn expect<U>(
        self,
        what: &str,
        pick: impl FnOnce(Written) -> Option<U>,
    ) -> Result<Committed<U>> {
        let Committed {
            value,
            revision,
            preview,
            touched,
        } = self;
        let kind = match &value {
            Written::Nothing => "nothing",
            Written::User(_) => "a user",
            Written::Group(_) => "a group",
        };
        match pick(value) {
            Some(value) => Ok(Committed {
                value,
                revision,
                preview,
                touched,
            }),
            None => Err(StoreError::Internal(format!(
                "a {what} write returned {kind}"
            ))),
        }
    }

    /// A write that returns nothing.
    pub fn nothing(self) -> Committed<()> {
        self.map(|_| ())
    }
}

impl Write<'_> {
    /// What the write touches beyond what the request says, read under the tenant's lock: a
    /// duplicate's copied members.
    pub(in crate::store) fn plan(&self, t: &Tenant, touched: &mut Touched) {
        if let Write::DuplicateGroup {
            members_of: Some(source),
            ..
        } = self
        {
            touched.users = t.members_of(source);
        }
    }

    /// Carries the write out on a tenant's data. It validates before it changes anything, so
    /// an error leaves the tenant as it was.
    pub(in crate::store) fn apply(
        &self,
        t: &mut Tenant,
        catalog: &Catalog,
        ctx: &WriteCtx,
    ) -> Result<Written> {
        Ok(match self {
            Write::UpsertUser {
                user_id,
                display_name,
                email,
            } => {
                let row = t.users.entry((*user_id).to_owned()).or_default();
                row.display_name = (*display_name).to_owned();
                row.email = (*email).to_owned();
                let row = row.clone();
                Written::User(t.user_info(user_id, &row))
            }
            Write::ImportUsers { rows } => {
                for r in rows.iter() {
                    for g in &r.groups {
                        if catalog.group(g).is_none() && !t.groups.contains_key(g) {
                            return Err(StoreError::GroupNotFound(g.clone()));
                        }
                    }
                }
                for r in rows.iter() {
                    // An empty profile field leaves the stored one as it is.
                    let row = t.users.entry(r.user_id.clone()).or_default();
                    if !r.display_name.is_empty() {
                        row.display_name = r.display_name.clone();
                    }
                    if !r.email.is_empty() {
                        row.email = r.email.clone();
                    }
                    t.edit_user(&r.user_id, |g| g.direct.union_with(&r.direct));
                    for key in &r.groups {
                        t.join(&r.user_id, key);
                    }
                }
                Written::Nothing
            }
            Write::SetUserStatus { user_id, status } => {
                let status: UserStatus = *status;
                t.edit_user(user_id, |g| g.status = status);
                let row = t.users.get(*user_id).cloned().unwrap_or_default();
                Written::User(t.user_info(user_id, &row))
            }
            Write::CreateGroup { def } => Written::Group(t.insert_group(def.clone())?),
            Write::DuplicateGroup { def, members_of } => {
                let members = members_of.map(|m| t.members_of(m)).unwrap_or_default();
                let mut info = t.insert_group(def.clone())?;
                for u in &members {
                    t.join(u, &def.key);
                }
                info.member_count = members.len() as u64;
                Written::Group(info)
            }
            Write::UpdateGroup {
                key,
                patch,
                expected_version,
            } => {
                let row = t.versioned_group(key, *expected_version)?;
                let kept = rules::kept_on_edit(catalog, ctx.actor.is_some());
                let mut grants = (*row.grants).clone();
                let mut row = row.clone();
                if let Some(name) = &patch.name {
                    row.name = name.clone();
                }
                if let Some(description) = &patch.description {
                    row.description = description.clone();
                }
                if let Some(p) = &patch.permissions {
                    let mut p = p.clone();
                    for k in grants.permissions.iter().filter(|k| kept.contains(*k)) {
                        p.insert(k);
                    }
                    grants.permissions = p;
                }
                if let Some(s) = &patch.scoped {
                    let mut s = s.clone();
                    s.extend(
                        grants
                            .scoped
                            .iter()
                            .filter(|g| kept.contains(g.permission))
                            .cloned(),
                    );
                    s.sort();
                    s.dedup();
                    grants.scoped = s;
                }
                row.grants = std::sync::Arc::new(grants);
                row.version += 1;
                let info = t.group_info(key, &row);
                t.groups.insert((*key).to_owned(), row);
                Written::Group(info)
            }
            Write::DeleteGroup {
                key,
                expected_version,
            } => {
                t.versioned_group(key, *expected_version)?;
                rules::check_empty(key, t.members.get(*key).map_or(0, |m| m.len() as u64))?;
                t.groups.remove(*key);
                t.members.remove(*key);
                Written::Nothing
            }
            Write::AddMembers { group, user_ids } => {
                t.check_group(*group)?;
                for u in user_ids.iter() {
                    t.join(u, group.key());
                }
                Written::Nothing
            }
            Write::RemoveMembers { group, user_ids } => {
                t.check_group(*group)?;
                let key = group.key();
                for u in user_ids.iter() {
                    if t.users.contains_key(u) {
                        t.edit_user(u, |g| g.groups.retain(|x| x != key));
                    }
                    if let Some(m) = t.members.get_mut(key) {
                        m.remove(u);
                    }
                }
                Written::Nothing
            }
            Write::Grant { user_id, grants } => {
                t.edit_user(user_id, |g| match grants {
                    Grants::Unscoped(set) => g.direct.union_with(set),
                    Grants::Scoped(list) => {
                        for s in list {
                            if !g.scoped.contains(s) {
                                g.scoped.push(s.clone());
                            }
                        }
                        g.scoped.sort();
                    }
                });
                Written::Nothing
            }
            Write::Revoke { user_id, grants } => {
                if !t.users.contains_key(*user_id) {
                    return Err(StoreError::UserNotFound((*user_id).to_owned()));
                }
                t.edit_user(user_id, |g| match grants {
                    Grants::Unscoped(set) => g.direct.difference_with(set),
                    Grants::Scoped(list) => g.scoped.retain(|s| !list.contains(s)),
                });
                Written::Nothing
            }
            Write::SetRestriction {
                user_id,
                resource_type,
                ids,
            } => {
                let resource_type: ResourceTypeId = *resource_type;
                t.edit_user(user_id, |g| {
                    g.restrictions.retain(|r| r.resource_type != resource_type);
                    if let Some(ids) = ids {
                        g.restrictions.push(Restriction {
                            resource_type,
                            ids: ids.clone(),
                        });
                        g.restrictions.sort_by_key(|r| r.resource_type);
                    }
                });
                Written::Nothing
            }
        })
    }
}
