//! Shared pieces of the benchmarks: one generated RBAC data set, and the same data expressed as
//! our subjects, as Cedar policies and entities, and as a casbin model and policy; the Cerbos
//! policies ([`peers`]) and the multi-replica measurements ([`scaling`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_core::model::{Subject, UserGrants};
use authz_core::{Catalog, PermId, PermSet};
use std::sync::Arc;

pub mod peers;
pub mod scaling;

pub const MAESTRA: &str = include_str!("../../catalogs/maestra.toml");

/// A tiny deterministic generator (xorshift), so every run builds the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One generated user: 1–3 of the catalog's customer-visible groups, and for one in five a few
/// direct grants.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub groups: Vec<String>,
    pub direct: Vec<PermId>,
}

pub struct DataSet {
    pub catalog: Arc<Catalog>,
    pub users: Vec<User>,
    /// (user index, permission): about half allowed.
    pub queries: Vec<(usize, PermId)>,
}

pub fn visible_groups(catalog: &Catalog) -> Vec<String> {
    catalog
        .groups()
        .iter()
        .filter(|g| !g.internal)
        .map(|g| g.key.clone())
        .collect()
}

pub fn visible_permissions(catalog: &Catalog) -> Vec<PermId> {
    (0..catalog.permissions().len())
        .map(|i| catalog.resolve(&catalog.permissions()[i].key).unwrap())
        .filter(|p| !catalog.internal_permissions().contains(*p))
        .collect()
}

impl DataSet {
    pub fn generate(users: usize, queries: usize) -> DataSet {
        let catalog = Arc::new(Catalog::from_toml(MAESTRA).unwrap());
        let groups = visible_groups(&catalog);
        let perms = visible_permissions(&catalog);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let users: Vec<User> = (0..users)
            .map(|i| {
                let mut gs: Vec<String> = (0..1 + rng.next(3))
                    .map(|_| groups[rng.next(groups.len())].clone())
                    .collect();
                gs.sort();
                gs.dedup();
                let direct = if rng.next(5) == 0 {
                    (0..1 + rng.next(3))
                        .map(|_| perms[rng.next(perms.len())])
                        .collect()
                } else {
                    Vec::new()
                };
                User {
                    id: format!("user{i}"),
                    groups: gs,
                    direct,
                }
            })
            .collect();
        let n = users.len();
        let queries = (0..queries)
            .map(|_| (rng.next(n), perms[rng.next(perms.len())]))
            .collect();
        DataSet {
            catalog,
            users,
            queries,
        }
    }

    pub fn subject(&self, u: &User) -> Subject {
        let grants = UserGrants {
            groups: u.groups.clone(),
            direct: u.direct.iter().copied().collect::<PermSet>(),
            ..UserGrants::default()
        };
        Subject {
            user: Some(Arc::new(grants)),
            groups: u
                .groups
                .iter()
                .map(|g| self.catalog.group(g).unwrap().grants.clone())
                .collect(),
        }
    }

    pub fn key(&self, p: PermId) -> &str {
        self.catalog.key(p)
    }

    /// The reference answer, from plain sets.
    pub fn expected(&self, user: usize, p: PermId) -> bool {
        let u = &self.users[user];
        u.direct.contains(&p)
            || u.groups.iter().any(|g| {
                self.catalog
                    .group(g)
                    .unwrap()
                    .grants
                    .permissions
                    .contains(p)
            })
    }

    /// The Cedar policies, the way Cedar's documentation models RBAC: a user entity is a
    /// member of its groups (the entity hierarchy), each group's permissions are one action
    /// group (`Action::"group:KEY"`, the parent of each of its permissions' actions), so there
    /// is one policy per group and one policy for every user's direct grants, which are an
    /// attribute of the user (see [`DataSet::cedar_action_parents`]). Eight policies in all,
    /// whatever the number of users.
    pub fn cedar_policies(&self) -> String {
        let mut out = String::new();
        for g in visible_groups(&self.catalog) {
            out.push_str(&format!(
                "permit(principal in Group::\"{g}\", action in Action::\"group:{g}\", resource);\n"
            ));
        }
        out.push_str(
            "permit(principal, action, resource) when { principal.direct.contains(action) };\n",
        );
        out
    }

    /// For each visible permission: its action's parents, the action groups of the groups
    /// granting it (`group:KEY`).
    pub fn cedar_action_parents(&self) -> Vec<(String, Vec<String>)> {
        let groups = visible_groups(&self.catalog);
        visible_permissions(&self.catalog)
            .into_iter()
            .map(|p| {
                let parents = groups
                    .iter()
                    .filter(|g| {
                        self.catalog
                            .group(g)
                            .unwrap()
                            .grants
                            .permissions
                            .contains(p)
                    })
                    .map(|g| format!("group:{g}"))
                    .collect();
                (self.key(p).to_owned(), parents)
            })
            .collect()
    }

    /// casbin's RBAC model (`g = _, _`, role links held by its default role manager) with an
    /// equality matcher: no `keyMatch`, no regex, and the action compared before the role link
    /// is looked up, so a policy line for another action costs one string comparison.
    pub const CASBIN_MODEL: &'static str = "[request_definition]
r = sub, act

[policy_definition]
p = sub, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.act == p.act && g(r.sub, p.sub)
";

    /// The model before: the role link looked up first (for the footnote's comparison).
    pub const CASBIN_MODEL_ROLE_FIRST: &'static str = "[request_definition]
r = sub, act

[policy_definition]
p = sub, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.act == p.act
";

    /// (p rules, g rules) for casbin: a p line per (group, permission) and per direct grant
    /// of a user, a g line per membership.
    pub fn casbin_rules(&self) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        let mut p = Vec::new();
        for g in visible_groups(&self.catalog) {
            for perm in self.catalog.group(&g).unwrap().grants.permissions.iter() {
                p.push(vec![format!("group:{g}"), self.key(perm).to_owned()]);
            }
        }
        let mut g = Vec::new();
        for u in &self.users {
            for perm in &u.direct {
                p.push(vec![u.id.clone(), self.key(*perm).to_owned()]);
            }
            for grp in &u.groups {
                g.push(vec![u.id.clone(), format!("group:{grp}")]);
            }
        }
        p.sort();
        p.dedup();
        (p, g)
    }
}
