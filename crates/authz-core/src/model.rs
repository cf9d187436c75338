//! What the core knows about users and groups, in the form stores hand it over.
//!
//! A check combines one [`UserGrants`] (the user's status, memberships, direct grants and
//! restrictions) with the [`GroupGrants`] of the user's groups. The two are kept apart so a
//! change to a group's permissions touches one group entry, never its members'.

use crate::permset::{PermId, PermSet};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Index of a resource type in its catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceTypeId(pub u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum UserStatus {
    #[default]
    Active,
    Blocked,
}

/// A named resource: `app:42`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRef {
    pub resource_type: ResourceTypeId,
    pub id: String,
}

/// A permission given on one resource only.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScopedGrant {
    pub permission: PermId,
    pub resource: ResourceRef,
}

/// A user limited to these resources of one type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Restriction {
    pub resource_type: ResourceTypeId,
    pub ids: BTreeSet<String>,
}

/// The per-user part of a subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserGrants {
    pub status: UserStatus,
    /// Keys of the user's groups, sorted.
    pub groups: Vec<String>,
    /// Unscoped direct grants.
    pub direct: PermSet,
    pub scoped: Vec<ScopedGrant>,
    pub restrictions: Vec<Restriction>,
}

/// The per-group part of a subject: what membership gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupGrants {
    pub key: String,
    pub permissions: PermSet,
    pub scoped: Vec<ScopedGrant>,
}

/// Everything a decision needs about one user. `user` is `None` for a user the tenant has
/// never seen: such a user holds nothing and is denied. `groups` is the user's groups that
/// exist, in the order of its group list; a decision reads them there, never from
/// `user.groups`, which a cache may leave empty.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub user: Option<Arc<UserGrants>>,
    pub groups: Vec<Arc<GroupGrants>>,
}

impl Subject {
    /// True when the user exists and is active.
    pub fn is_active(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.status == UserStatus::Active)
    }

    /// True when an active user holds `p` unscoped, through a group or directly.
    pub fn has(&self, p: PermId) -> bool {
        match &self.user {
            Some(u) if u.status == UserStatus::Active => {
                u.direct.contains(p) || self.groups.iter().any(|g| g.permissions.contains(p))
            }
            _ => false,
        }
    }

    /// True when an active user holds `p` on `resource`: unscoped, or by a scoped grant on it.
    /// Restrictions are applied by the decision, not here.
    pub fn has_on(&self, p: PermId, resource: &ResourceRef) -> bool {
        if self.has(p) {
            return true;
        }
        let matches = |g: &ScopedGrant| g.permission == p && &g.resource == resource;
        match &self.user {
            Some(u) if u.status == UserStatus::Active => {
                u.scoped.iter().any(matches)
                    || self.groups.iter().any(|g| g.scoped.iter().any(matches))
            }
            _ => false,
        }
    }

    /// The user's restriction on `resource_type`, if any.
    pub fn restriction(&self, resource_type: ResourceTypeId) -> Option<&Restriction> {
        self.user
            .as_ref()?
            .restrictions
            .iter()
            .find(|r| r.resource_type == resource_type)
    }

    /// The union of the user's unscoped permissions (empty unless active).
    pub fn effective(&self) -> PermSet {
        let mut set = PermSet::new();
        if self.is_active() {
            if let Some(u) = &self.user {
                set.union_with(&u.direct);
            }
            for g in &self.groups {
                set.union_with(&g.permissions);
            }
        }
        set
    }
}
