//! A tenant's data as the memory store holds it: plain collections, the subject and access of
//! each user read from them, and what a write's frame needs (affected users, snapshots). Writes
//! change it through [`crate::store::Write::apply`].

use crate::store::{
    Access, Change, GroupDef, GroupInfo, GroupRef, PREVIEW_LIMIT, Page, PageRequest, Result,
    Revision, StoreError, Touched, UserInfo,
};
use authz_core::Catalog;
use authz_core::admin::{Facts, Rule};
use authz_core::model::{GroupGrants, Subject, UserGrants};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Clone)]
pub(in crate::store) struct Tenant {
    pub(in crate::store) display_name: String,
    pub(in crate::store) created_at: SystemTime,
    pub(in crate::store) revision: Revision,
    pub(in crate::store) users: BTreeMap<String, UserRow>,
    pub(in crate::store) groups: BTreeMap<String, GroupRow>,
    /// Group key (system or custom) → member ids.
    pub(in crate::store) members: BTreeMap<String, BTreeSet<String>>,
    /// The latest changes, oldest first.
    pub(in crate::store) changes: VecDeque<Change>,
}

#[derive(Clone, Default)]
pub(in crate::store) struct UserRow {
    pub(in crate::store) display_name: String,
    pub(in crate::store) email: String,
    /// Shared with checks; replaced, never mutated in place, on every write.
    pub(in crate::store) grants: Arc<UserGrants>,
}

#[derive(Clone)]
pub(in crate::store) struct GroupRow {
    pub(in crate::store) name: String,
    pub(in crate::store) description: String,
    pub(in crate::store) version: u64,
    pub(in crate::store) grants: Arc<GroupGrants>,
}

impl Tenant {
    /// A user's subject: its grants and its groups' (`None`: no such user).
    pub(in crate::store) fn subject(&self, catalog: &Catalog, user_id: &str) -> Option<Subject> {
        let row = self.users.get(user_id)?;
        Some(catalog.subject(row.grants.clone(), |k| {
            self.groups.get(k).map(|g| g.grants.clone())
        }))
    }

    /// What an admin rule decides on, as the tenant is now.
    pub(in crate::store) fn facts(&self, catalog: &Catalog, actor: &str, rule: &Rule) -> Facts {
        let actor = self.subject(catalog, actor).unwrap_or_default();
        let groups =
            |keys: &BTreeSet<String>| -> std::collections::HashMap<String, Arc<GroupGrants>> {
                keys.iter()
                    .filter_map(|k| self.groups.get(k).map(|g| (k.clone(), g.grants.clone())))
                    .collect()
            };
        let needs = rule.needs(catalog, &actor, &groups(&rule.groups()));
        let mut ids = needs.users;
        for g in &needs.members_of {
            if let Some(m) = self.members.get(g) {
                ids.extend(m.iter().cloned());
            }
        }
        Facts {
            actor,
            users: ids
                .into_iter()
                .filter_map(|id| self.subject(catalog, &id).map(|s| (id, s)))
                .collect(),
            groups: groups(&needs.groups),
        }
    }

    /// The users whose effective permissions a write touching `touched` can change: the
    /// touched users and the members of touched groups, at most `PREVIEW_LIMIT`.
    pub(in crate::store) fn affected(&self, touched: &Touched) -> (Vec<String>, bool) {
        let mut ids: BTreeSet<String> = touched.users.iter().cloned().collect();
        for g in &touched.groups {
            if let Some(m) = self.members.get(g) {
                ids.extend(m.iter().cloned());
            }
        }
        let truncated = ids.len() > PREVIEW_LIMIT;
        (ids.into_iter().take(PREVIEW_LIMIT).collect(), truncated)
    }

    /// Each user's access (empty when blocked or unknown).
    pub(in crate::store) fn effective(
        &self,
        catalog: &Catalog,
        users: &[String],
    ) -> BTreeMap<String, Access> {
        users
            .iter()
            .map(|u| {
                let access = self
                    .subject(catalog, u)
                    .map(|s| Access::of(&s))
                    .unwrap_or_default();
                (u.clone(), access)
            })
            .collect()
    }

    pub(in crate::store) fn snapshot(
        &self,
        catalog: &Catalog,
        touched: &Touched,
    ) -> serde_json::Value {
        let users: Vec<(String, Option<UserInfo>)> = if touched.all_users {
            Vec::new()
        } else {
            touched
                .users
                .iter()
                .map(|u| {
                    (
                        u.clone(),
                        self.users.get(u).map(|row| self.user_info(u, row)),
                    )
                })
                .collect()
        };
        let groups: Vec<(String, Option<GroupInfo>)> = touched
            .groups
            .iter()
            .map(|g| {
                (
                    g.clone(),
                    self.groups.get(g).map(|row| self.group_info(g, row)),
                )
            })
            .collect();
        crate::store::snapshot_json(catalog, &users, &groups)
    }

    pub(in crate::store) fn user_info(&self, user_id: &str, row: &UserRow) -> UserInfo {
        let g = &row.grants;
        UserInfo {
            user_id: user_id.to_owned(),
            display_name: row.display_name.clone(),
            email: row.email.clone(),
            status: g.status,
            groups: g.groups.clone(),
            direct: g.direct.clone(),
            scoped: g.scoped.clone(),
            restrictions: g.restrictions.clone(),
            effective: authz_core::PermSet::new(),
        }
    }

    /// A user as admin reads show it: with its effective permissions, under the same lock.
    pub(in crate::store) fn user_view(
        &self,
        catalog: &Catalog,
        user_id: &str,
        row: &UserRow,
    ) -> UserInfo {
        let mut info = self.user_info(user_id, row);
        if let Some(subject) = self.subject(catalog, user_id) {
            info.effective = subject.effective();
        }
        info
    }

    pub(in crate::store) fn group_info(&self, key: &str, row: &GroupRow) -> GroupInfo {
        GroupInfo {
            def: GroupDef {
                key: key.to_owned(),
                name: row.name.clone(),
                description: row.description.clone(),
                permissions: row.grants.permissions.clone(),
                scoped: row.grants.scoped.clone(),
            },
            version: row.version,
            member_count: self.members.get(key).map_or(0, |m| m.len() as u64),
        }
    }

    /// Adds a new custom group; `GroupExists` when the key is taken.
    pub(in crate::store) fn insert_group(&mut self, def: GroupDef) -> Result<GroupInfo> {
        if self.groups.contains_key(&def.key) {
            return Err(StoreError::GroupExists(def.key));
        }
        let row = GroupRow {
            name: def.name,
            description: def.description,
            version: 1,
            grants: Arc::new(GroupGrants {
                key: def.key.clone(),
                permissions: def.permissions,
                scoped: def.scoped,
            }),
        };
        let info = self.group_info(&def.key, &row);
        self.groups.insert(def.key, row);
        Ok(info)
    }

    /// The members of a group (system or custom), in id order.
    pub(in crate::store) fn members_of(&self, key: &str) -> Vec<String> {
        self.members
            .get(key)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes a user (created when unknown) a member of a group.
    pub(in crate::store) fn join(&mut self, user_id: &str, key: &str) {
        self.edit_user(user_id, |g| {
            if let Err(at) = g.groups.binary_search_by(|x| x.as_str().cmp(key)) {
                g.groups.insert(at, key.to_owned());
            }
        });
        self.members
            .entry(key.to_owned())
            .or_default()
            .insert(user_id.to_owned());
    }

    /// Changes a user's grants, creating the user when unknown.
    pub(in crate::store) fn edit_user(&mut self, user_id: &str, f: impl FnOnce(&mut UserGrants)) {
        let row = self.users.entry(user_id.to_owned()).or_default();
        let mut grants = (*row.grants).clone();
        f(&mut grants);
        row.grants = Arc::new(grants);
    }

    /// A custom group's row, after the check of the version the caller expects.
    pub(in crate::store) fn versioned_group(
        &self,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<&GroupRow> {
        let row = self
            .groups
            .get(key)
            .ok_or_else(|| StoreError::GroupNotFound(key.to_owned()))?;
        crate::store::rules::check_version(key, expected_version, row.version)?;
        Ok(row)
    }

    pub(in crate::store) fn check_group(&self, group: GroupRef<'_>) -> Result<()> {
        match group {
            GroupRef::System(_) => Ok(()),
            GroupRef::Custom(k) if self.groups.contains_key(k) => Ok(()),
            GroupRef::Custom(k) => Err(StoreError::GroupNotFound(k.to_owned())),
        }
    }
}

pub(super) fn page<T, K: AsRef<str>>(
    items: impl Iterator<Item = (K, T)>,
    req: &PageRequest,
) -> Page<T> {
    let mut out: Vec<T> = items
        .filter(|(k, _)| req.after.as_deref().is_none_or(|a| k.as_ref() > a))
        .take(req.size + 1)
        .map(|(_, v)| v)
        .collect();
    let more = out.len() > req.size;
    out.truncate(req.size);
    Page { items: out, more }
}
