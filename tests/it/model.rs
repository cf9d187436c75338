//! Model-based property tests: random sequences of admin operations applied to the service and
//! to a naive reference model made of plain sets, compared after every step; and the delegation
//! rule as a property. On both stores.
//!
//! Cases per property: 12 by default, 48 with `AUTHZ_SLOW_TESTS` set (`.ci/run` sets it), or
//! `PROPTEST_CASES`. A failure prints the shrunk operation sequence.
//!
//! Long: the reference model and the properties that compare the service with it belong together.

use crate::helpers::*;
use authz::grpc::pb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use tonic::Code;

const USERS: usize = 3;
const BRANDS: [&str; 2] = ["b0", "b1"];
/// Groups the operations name: two system groups, then two custom ones.
const GROUPS: [&str; 4] = ["analysts", "accountants", "c0", "c1"];
const SYSTEM: usize = 2;
const POOL: usize = 6;

/// A catalog and one of its resource types, for the properties that run on every one: which
/// groups the operations name (two system groups, then two custom ones) and the permissions an
/// actor needs for every admin operation.
#[derive(Clone, Copy, Debug)]
struct Setting {
    catalog: &'static str,
    groups: [&'static str; 4],
    resource_type: &'static str,
    admin: &'static [&'static str],
}

const MAESTRA_ADMIN: &[&str] = &[
    "edit_permission_groups",
    "view_permission_groups",
    "edit_users",
    "view_users",
    "limit_staff_campaign_access",
];
const TOOLJET_ADMIN: &[&str] = &["manage_users", "manage_groups"];

const MAESTRA_BRANDS: Setting = Setting {
    catalog: MAESTRA,
    groups: GROUPS,
    resource_type: "brand",
    admin: MAESTRA_ADMIN,
};

/// Every resource type of both shipped catalogs.
const SETTINGS: [Setting; 5] = [
    MAESTRA_BRANDS,
    Setting {
        resource_type: "folder",
        ..MAESTRA_BRANDS
    },
    Setting {
        catalog: TOOLJET,
        groups: ["builder", "end_user", "c0", "c1"],
        resource_type: "app",
        admin: TOOLJET_ADMIN,
    },
    Setting {
        catalog: TOOLJET,
        groups: ["builder", "end_user", "c0", "c1"],
        resource_type: "data_source",
        admin: TOOLJET_ADMIN,
    },
    Setting {
        catalog: TOOLJET,
        groups: ["builder", "end_user", "c0", "c1"],
        resource_type: "folder",
        admin: TOOLJET_ADMIN,
    },
];

fn cases() -> u32 {
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if crate::slow() { 48 } else { 12 }
}

fn user(i: usize) -> String {
    format!("u{i}")
}

#[derive(Clone, Debug)]
enum Op {
    Add {
        user: usize,
        group: usize,
    },
    Remove {
        user: usize,
        group: usize,
    },
    Grant {
        user: usize,
        perms: Vec<usize>,
        brand: Option<usize>,
    },
    Revoke {
        user: usize,
        perms: Vec<usize>,
        brand: Option<usize>,
    },
    CreateGroup {
        group: usize,
        perms: Vec<usize>,
    },
    SetGroupPerms {
        group: usize,
        perms: Vec<usize>,
    },
    DeleteGroup {
        group: usize,
    },
    SetStatus {
        user: usize,
        blocked: bool,
    },
    Restrict {
        user: usize,
        brands: Vec<usize>,
    },
    Duplicate {
        from: usize,
        to: usize,
        members: bool,
    },
    Import {
        user: usize,
        group: usize,
        perms: Vec<usize>,
    },
}

fn perms() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::btree_set(0..POOL, 1..=3).prop_map(|s| s.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let g = 0..GROUPS.len();
    let c = SYSTEM..GROUPS.len();
    prop_oneof![
        3 => (u.clone(), g.clone()).prop_map(|(user, group)| Op::Add { user, group }),
        2 => (u.clone(), g.clone()).prop_map(|(user, group)| Op::Remove { user, group }),
        3 => (u.clone(), perms(), prop::option::of(0..BRANDS.len()))
            .prop_map(|(user, perms, brand)| Op::Grant { user, perms, brand }),
        2 => (u.clone(), perms(), prop::option::of(0..BRANDS.len()))
            .prop_map(|(user, perms, brand)| Op::Revoke { user, perms, brand }),
        2 => (c.clone(), perms()).prop_map(|(group, perms)| Op::CreateGroup { group, perms }),
        2 => (c.clone(), perms()).prop_map(|(group, perms)| Op::SetGroupPerms { group, perms }),
        1 => c.clone().prop_map(|group| Op::DeleteGroup { group }),
        1 => (u.clone(), any::<bool>()).prop_map(|(user, blocked)| Op::SetStatus { user, blocked }),
        1 => (u.clone(), prop::collection::btree_set(0..BRANDS.len(), 0..=1))
            .prop_map(|(user, b)| Op::Restrict { user, brands: b.into_iter().collect() }),
        1 => (g.clone(), c, any::<bool>())
            .prop_map(|(from, to, members)| Op::Duplicate { from, to, members }),
        1 => (u, g, perms()).prop_map(|(user, group, perms)| Op::Import { user, group, perms }),
    ]
}

/// The reference: plain sets, and the semantics in a dozen lines.
#[derive(Clone, Debug, Default)]
struct Model {
    /// System groups' permissions, as the service publishes them.
    system: BTreeMap<String, BTreeSet<String>>,
    custom: BTreeMap<String, BTreeSet<String>>,
    users: BTreeMap<String, UserModel>,
}

#[derive(Clone, Debug, Default)]
struct UserModel {
    blocked: bool,
    groups: BTreeSet<String>,
    direct: BTreeSet<String>,
    scoped: BTreeSet<(String, String)>,
    restriction: Option<BTreeSet<String>>,
}

impl Model {
    fn group_perms(&self, g: &str) -> Option<&BTreeSet<String>> {
        self.system.get(g).or_else(|| self.custom.get(g))
    }

    /// What GetEffectivePermissions lists: nothing for an unknown or blocked user.
    fn effective(&self, u: &str) -> BTreeSet<String> {
        let Some(m) = self.users.get(u).filter(|m| !m.blocked) else {
            return BTreeSet::new();
        };
        let mut out = m.direct.clone();
        for g in &m.groups {
            out.extend(self.group_perms(g).into_iter().flatten().cloned());
        }
        out
    }

    fn allowed(&self, u: &str, perm: &str, brand: Option<&str>) -> bool {
        let Some(m) = self.users.get(u) else {
            return false;
        };
        if m.blocked {
            return false;
        }
        if let (Some(b), Some(only)) = (brand, &m.restriction)
            && !only.contains(b)
        {
            return false;
        }
        self.effective(u).contains(perm)
            || brand.is_some_and(|b| m.scoped.contains(&(perm.to_owned(), b.to_owned())))
    }

    /// Applies `op` and returns the status code the service must answer with.
    fn apply(&mut self, op: &Op, pool: &[String]) -> Code {
        let names = |ix: &[usize]| ix.iter().map(|&i| pool[i].clone()).collect::<BTreeSet<_>>();
        match op {
            Op::Add { user: u, group } | Op::Remove { user: u, group } => {
                let g = GROUPS[*group];
                if self.group_perms(g).is_none() {
                    return Code::NotFound;
                }
                if matches!(op, Op::Add { .. }) {
                    let m = self.users.entry(user(*u)).or_default();
                    m.groups.insert(g.to_owned());
                } else if let Some(m) = self.users.get_mut(&user(*u)) {
                    // Removing is no way to create a user.
                    m.groups.remove(g);
                }
            }
            Op::Grant {
                user: u,
                perms,
                brand,
            }
            | Op::Revoke {
                user: u,
                perms,
                brand,
            } => {
                let grant = matches!(op, Op::Grant { .. });
                // Revoking from a user the tenant does not have is a typo, not a no-op.
                if !grant && !self.users.contains_key(&user(*u)) {
                    return Code::NotFound;
                }
                let m = self.users.entry(user(*u)).or_default();
                for p in names(perms) {
                    match brand {
                        Some(b) => {
                            let k = (p, BRANDS[*b].to_owned());
                            if grant {
                                m.scoped.insert(k);
                            } else {
                                m.scoped.remove(&k);
                            }
                        }
                        None if grant => {
                            m.direct.insert(p);
                        }
                        None => {
                            m.direct.remove(&p);
                        }
                    }
                }
            }
            Op::CreateGroup { group, perms } => {
                let g = GROUPS[*group];
                if self.custom.contains_key(g) {
                    return Code::AlreadyExists;
                }
                self.custom.insert(g.to_owned(), names(perms));
            }
            Op::SetGroupPerms { group, perms } => match self.custom.get_mut(GROUPS[*group]) {
                Some(p) => *p = names(perms),
                None => return Code::NotFound,
            },
            Op::DeleteGroup { group } => {
                let g = GROUPS[*group];
                if !self.custom.contains_key(g) {
                    return Code::NotFound;
                }
                if self.users.values().any(|m| m.groups.contains(g)) {
                    return Code::FailedPrecondition;
                }
                self.custom.remove(g);
            }
            Op::SetStatus { user: u, blocked } => {
                self.users.entry(user(*u)).or_default().blocked = *blocked;
            }
            Op::Restrict { user: u, brands } => {
                let m = self.users.entry(user(*u)).or_default();
                m.restriction = if brands.is_empty() {
                    None
                } else {
                    Some(brands.iter().map(|&b| BRANDS[b].to_owned()).collect())
                };
            }
            Op::Duplicate { from, to, members } => {
                let (from, to) = (GROUPS[*from], GROUPS[*to]);
                let Some(perms) = self.group_perms(from).cloned() else {
                    return Code::NotFound;
                };
                if self.custom.contains_key(to) {
                    return Code::AlreadyExists;
                }
                self.custom.insert(to.to_owned(), perms);
                if *members {
                    for m in self.users.values_mut() {
                        if m.groups.contains(from) {
                            m.groups.insert(to.to_owned());
                        }
                    }
                }
            }
            Op::Import {
                user: u,
                group,
                perms,
            } => {
                let g = GROUPS[*group];
                if self.group_perms(g).is_none() {
                    return Code::InvalidArgument;
                }
                let m = self.users.entry(user(*u)).or_default();
                m.groups.insert(g.to_owned());
                m.direct.extend(names(perms));
            }
        }
        Code::Ok
    }
}

fn group_msg(key: &str, perms: BTreeSet<String>) -> pb::Group {
    pb::Group {
        key: key.into(),
        name: format!("Group {key}"),
        permissions: perms.into_iter().collect(),
        ..Default::default()
    }
}

fn resource(s: &Setting, brand: Option<usize>) -> Option<pb::Resource> {
    brand.map(|b| pb::Resource {
        r#type: s.resource_type.into(),
        id: BRANDS[b].into(),
    })
}

/// Sends `op` to the service as `actor` ("" for an operator); returns the status code.
async fn send(
    app: &TestApp,
    s: &Setting,
    tenant: &str,
    op: &Op,
    pool: &[String],
    actor: &str,
) -> Code {
    let names = |ix: &[usize]| ix.iter().map(|&i| pool[i].clone()).collect::<Vec<_>>();
    let mut admin = app.admin.clone();
    let t = tenant.to_owned();
    let a = actor.to_owned();
    let result = match op {
        Op::Add { user: u, group } => admin
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: t,
                group_key: s.groups[*group].into(),
                user_ids: vec![user(*u)],
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Remove { user: u, group } => admin
            .remove_group_members(pb::RemoveGroupMembersRequest {
                tenant_id: t,
                group_key: s.groups[*group].into(),
                user_ids: vec![user(*u)],
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Grant {
            user: u,
            perms,
            brand,
        } => admin
            .grant_permissions(pb::GrantPermissionsRequest {
                tenant_id: t,
                user_id: user(*u),
                permissions: names(perms),
                resource: resource(s, *brand),
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Revoke {
            user: u,
            perms,
            brand,
        } => admin
            .revoke_permissions(pb::RevokePermissionsRequest {
                tenant_id: t,
                user_id: user(*u),
                permissions: names(perms),
                resource: resource(s, *brand),
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::CreateGroup { group, perms } => admin
            .create_group(pb::CreateGroupRequest {
                tenant_id: t,
                group: Some(group_msg(
                    s.groups[*group],
                    names(perms).into_iter().collect(),
                )),
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::SetGroupPerms { group, perms } => admin
            .update_group(pb::UpdateGroupRequest {
                tenant_id: t,
                group_key: s.groups[*group].into(),
                group: Some(group_msg(
                    s.groups[*group],
                    names(perms).into_iter().collect(),
                )),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["permissions".into()],
                }),
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::DeleteGroup { group } => admin
            .delete_group(pb::DeleteGroupRequest {
                tenant_id: t,
                group_key: s.groups[*group].into(),
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::SetStatus { user: u, blocked } => admin
            .set_user_status(pb::SetUserStatusRequest {
                tenant_id: t,
                user_id: user(*u),
                status: if *blocked {
                    pb::UserStatus::Blocked
                } else {
                    pb::UserStatus::Active
                } as i32,
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Restrict { user: u, brands } => admin
            .set_restrictions(pb::SetRestrictionsRequest {
                tenant_id: t,
                user_id: user(*u),
                resource_type: s.resource_type.into(),
                resource_ids: brands.iter().map(|&b| BRANDS[b].to_owned()).collect(),
                clear: brands.is_empty(),
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Duplicate { from, to, members } => admin
            .duplicate_group(pb::DuplicateGroupRequest {
                tenant_id: t,
                source_group_key: s.groups[*from].into(),
                new_key: s.groups[*to].into(),
                copy_permissions: true,
                copy_members: *members,
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Import {
            user: u,
            group,
            perms,
        } => admin
            .import_users(pb::ImportUsersRequest {
                tenant_id: t,
                rows: vec![pb::ImportRow {
                    user_id: user(*u),
                    group_keys: vec![s.groups[*group].into()],
                    permissions: names(perms),
                    ..Default::default()
                }],
                actor_user_id: a,
                ..Default::default()
            })
            .await
            .map(drop),
    };
    match result {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// What the service says: every user's effective permissions, and every pool check with no
/// resource and on each brand.
type Observed = (BTreeMap<String, BTreeSet<String>>, Vec<bool>);

async fn observe(
    app: &TestApp,
    s: &Setting,
    tenant: &str,
    users: &[String],
    pool: &[String],
) -> Observed {
    let mut effective = BTreeMap::new();
    let mut items = Vec::new();
    for u in users {
        let r = app
            .authz
            .clone()
            .get_effective_permissions(pb::GetEffectivePermissionsRequest {
                tenant_id: tenant.into(),
                user_id: u.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        effective.insert(
            u.clone(),
            r.permissions.into_iter().map(|p| p.key).collect(),
        );
        for p in pool {
            for brand in [None, Some(0), Some(1)] {
                items.push(pb::BatchCheckItem {
                    user_id: u.clone(),
                    target: Some(pb::batch_check_item::Target::Permission(p.clone())),
                    resource: resource(s, brand),
                    ..Default::default()
                });
            }
        }
    }
    let results = app
        .authz
        .clone()
        .batch_check(pb::BatchCheckRequest {
            tenant_id: tenant.into(),
            items,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    (effective, results.iter().map(|r| r.allowed).collect())
}

fn expected(model: &Model, users: &[String], pool: &[String]) -> Observed {
    let effective = users
        .iter()
        .map(|u| (u.clone(), model.effective(u)))
        .collect();
    let mut checks = Vec::new();
    for u in users {
        for p in pool {
            for brand in [None, Some(BRANDS[0]), Some(BRANDS[1])] {
                checks.push(model.allowed(u, p, brand));
            }
        }
    }
    (effective, checks)
}

async fn system_perms(app: &TestApp, key: &str) -> BTreeSet<String> {
    app.admin
        .clone()
        .get_group(pb::GetGroupRequest {
            tenant_id: "setup".into(),
            group_key: key.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap()
        .permissions
        .into_iter()
        .collect()
}

/// The pool: two of the first system group's permissions, one of the second's, and three in
/// neither, all taken from what the service publishes.
async fn pool_and_system(
    app: &TestApp,
    s: &Setting,
) -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    app.tenant("setup").await;
    let mut system = BTreeMap::new();
    for g in &s.groups[..SYSTEM] {
        system.insert(g.to_string(), system_perms(app, g).await);
    }
    let a = &system[s.groups[0]];
    let b = &system[s.groups[1]];
    let all: Vec<String> = app
        .admin
        .clone()
        .list_permissions(pb::ListPermissionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .permissions
        .into_iter()
        .filter(|p| !p.internal)
        .map(|p| p.key)
        .collect();
    let mut pool: Vec<String> = a.iter().take(2).cloned().collect();
    pool.extend(b.iter().filter(|p| !a.contains(*p)).take(1).cloned());
    pool.extend(
        all.iter()
            .filter(|p| !a.contains(*p) && !b.contains(*p))
            .take(POOL - pool.len())
            .cloned(),
    );
    assert_eq!(pool.len(), POOL, "the catalog is too small for the pool");
    (pool, system)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

static TENANTS: AtomicUsize = AtomicUsize::new(0);

fn next_tenant(prefix: &str) -> String {
    format!("{prefix}{}", TENANTS.fetch_add(1, Ordering::Relaxed))
}

/// The service and the model agree on every status code, every user's effective permissions
/// and every check, after every step.
fn the_service_behaves_like_the_model(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(TestServer::on(backend).start());
    let (pool, system) = rt.block_on(pool_and_system(&app, &MAESTRA_BRANDS));
    let users: Vec<String> = (0..USERS).map(user).collect();
    let steps = AtomicUsize::new(0);
    let result = runner().run(&prop::collection::vec(op(), 1..30), |ops| {
        rt.block_on(async {
            let tenant = next_tenant("m");
            app.tenant(&tenant).await;
            let mut model = Model {
                system: system.clone(),
                ..Model::default()
            };
            for (i, op) in ops.iter().enumerate() {
                let want = model.apply(op, &pool);
                let got = send(&app, &MAESTRA_BRANDS, &tenant, op, &pool, "").await;
                prop_assert_eq!(got, want, "status of step {} {:?}", i, op);
                let seen = observe(&app, &MAESTRA_BRANDS, &tenant, &users, &pool).await;
                prop_assert_eq!(
                    seen,
                    expected(&model, &users, &pool),
                    "state after step {} {:?}",
                    i,
                    op
                );
                let counts: BTreeMap<String, i64> = app
                    .admin
                    .clone()
                    .list_groups(pb::ListGroupsRequest {
                        tenant_id: tenant.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .groups
                    .into_iter()
                    .filter(|g| !g.system)
                    .map(|g| (g.key, g.member_count))
                    .collect();
                let want: BTreeMap<String, i64> = model
                    .custom
                    .keys()
                    .map(|g| {
                        let n = model
                            .users
                            .values()
                            .filter(|m| m.groups.contains(g))
                            .count();
                        (g.clone(), n as i64)
                    })
                    .collect();
                prop_assert_eq!(counts, want, "member counts after step {} {:?}", i, op);
                steps.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), TestCaseError>(())
        })
    });
    if let Err(e) = result {
        panic!("{backend:?}: {e}");
    }
    eprintln!(
        "{backend:?}: {} cases, {} steps compared with the model",
        cases(),
        steps.load(Ordering::Relaxed)
    );
}

/// What the actor holds from the start of a delegation run.
/// No sequence of an actor's operations raises anyone — the actor included — above what the
/// actor held: every permission anyone gains, and every check that turns from deny to allow,
/// is one the actor itself passed at the start. And none takes anything from a user who held
/// more than the actor: such a user's passing checks all still pass. Actors come restricted to
/// resources or not, and each case runs on one resource type of one of the shipped catalogs.
fn no_actor_sequence_raises_anyone_above_the_actor(backend: Backend) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let maestra = rt.block_on(TestServer::on(backend).start());
    let tooljet = rt.block_on(TestServer::on(backend).catalog(TOOLJET).start());
    let app_of = |s: &Setting| {
        if s.catalog == MAESTRA {
            &maestra
        } else {
            &tooljet
        }
    };
    let pools: Vec<Vec<String>> = [&maestra, &tooljet]
        .iter()
        .zip([SETTINGS[0], SETTINGS[2]])
        .map(|(app, s)| rt.block_on(pool_and_system(app, &s)).0)
        .collect();
    let pool_of = |s: &Setting| &pools[usize::from(s.catalog != MAESTRA)];
    let mut users: Vec<String> = (0..USERS).map(user).collect();
    users.push("actor".into());
    let (succeeded, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let restricted_cases = AtomicUsize::new(0);
    let strategy = (
        0..SETTINGS.len(),
        prop::collection::btree_set(0..POOL, 0..POOL),
        prop::option::of(prop::collection::btree_set(0..BRANDS.len(), 1..=1)),
        prop::collection::vec(op(), 1..25),
    );
    let result = runner().run(&strategy, |(setting, actor_pool, actor_limit, ops)| {
        let s = &SETTINGS[setting];
        let app = app_of(s);
        let pool = pool_of(s);
        rt.block_on(async {
            let tenant = next_tenant("d");
            app.tenant(&tenant).await;
            // The operator sets the scene: the actor, a blocked owner, a restricted analyst
            // holding pool permissions the actor may lack, and a custom group with all of them.
            let mut actor_perms: Vec<usize> = actor_pool.into_iter().collect();
            let setup_ops = [
                Op::CreateGroup {
                    group: SYSTEM,
                    perms: (0..POOL).collect(),
                },
                Op::Add { user: 0, group: 0 },
                Op::Grant {
                    user: 0,
                    perms: vec![3, 4],
                    brand: None,
                },
                Op::Restrict {
                    user: 0,
                    brands: vec![0],
                },
                Op::Add { user: 1, group: 2 },
                Op::SetStatus {
                    user: 1,
                    blocked: true,
                },
                Op::Grant {
                    user: 2,
                    perms: vec![0, 5],
                    brand: Some(1),
                },
            ];
            for op in &setup_ops {
                assert_eq!(send(app, s, &tenant, op, pool, "").await, Code::Ok, "{op:?}");
            }
            let mut grant = pb::GrantPermissionsRequest {
                tenant_id: tenant.clone(),
                user_id: "actor".into(),
                permissions: s.admin.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            };
            grant
                .permissions
                .extend(actor_perms.drain(..).map(|i| pool[i].clone()));
            app.admin.clone().grant_permissions(grant).await.unwrap();
            if let Some(limit) = &actor_limit {
                restricted_cases.fetch_add(1, Ordering::Relaxed);
                app.admin
                    .clone()
                    .set_restrictions(pb::SetRestrictionsRequest {
                        tenant_id: tenant.clone(),
                        user_id: "actor".into(),
                        resource_type: s.resource_type.into(),
                        resource_ids: limit.iter().map(|&b| BRANDS[b].to_owned()).collect(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
            let (start_eff, start_checks) = observe(app, s, &tenant, &users, pool).await;
            let actor_eff = start_eff["actor"].clone();
            let per_user = pool.len() * 3;
            let actor_ix = users.len() - 1;
            let actor_checks = &start_checks[actor_ix * per_user..(actor_ix + 1) * per_user];
            // Users who pass a check the actor does not are out of its reach: it may take
            // nothing from them.
            let beyond: Vec<bool> = (0..users.len())
                .map(|u| {
                    (0..per_user).any(|k| start_checks[u * per_user + k] && !actor_checks[k])
                })
                .collect();
            for (i, op) in ops.iter().enumerate() {
                match send(app, s, &tenant, op, pool, "actor").await {
                    Code::Ok => succeeded.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
                let (eff, checks) = observe(app, s, &tenant, &users, pool).await;
                for u in &users {
                    let gained: Vec<&String> = eff[u]
                        .difference(&start_eff[u])
                        .filter(|p| !actor_eff.contains(*p))
                        .collect();
                    prop_assert!(
                        gained.is_empty(),
                        "{:?} step {} {:?}: {} gained {:?}, which the actor does not hold",
                        s.resource_type,
                        i,
                        op,
                        u,
                        gained
                    );
                }
                for (k, (&now, &before)) in checks.iter().zip(&start_checks).enumerate() {
                    let actor_passes = actor_checks[k % per_user];
                    let check = || {
                        format!(
                            "check {} ({} on {:?} {:?})",
                            k % per_user,
                            pool[(k % per_user) / 3],
                            s.resource_type,
                            [None, Some(BRANDS[0]), Some(BRANDS[1])][k % 3]
                        )
                    };
                    prop_assert!(
                        !now || before || actor_passes,
                        "step {} {:?}: {} now passes {}, which the actor does not (actor limited to {:?})",
                        i,
                        op,
                        users[k / per_user],
                        check(),
                        actor_limit
                    );
                    prop_assert!(
                        now || !before || !beyond[k / per_user],
                        "step {} {:?}: {} lost {}, although it held more than the actor",
                        i,
                        op,
                        users[k / per_user],
                        check()
                    );
                }
            }
            Ok::<(), TestCaseError>(())
        })
    });
    if let Err(e) = result {
        panic!("{backend:?}: {e}");
    }
    let (ok, no) = (
        succeeded.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    eprintln!(
        "{backend:?}: actor operations: {ok} committed, {no} refused; {} restricted actors",
        restricted_cases.load(Ordering::Relaxed)
    );
    assert!(
        ok > 0 && no > 0,
        "a property that nothing passes or nothing fails proves little: {ok} ok, {no} refused"
    );
}

mod memory {
    #[test]
    fn the_service_behaves_like_the_model() {
        super::the_service_behaves_like_the_model(crate::helpers::Backend::Memory)
    }
    #[test]
    fn no_actor_sequence_raises_anyone_above_the_actor() {
        super::no_actor_sequence_raises_anyone_above_the_actor(crate::helpers::Backend::Memory)
    }
}

mod postgres {
    #[test]
    fn the_service_behaves_like_the_model() {
        super::the_service_behaves_like_the_model(crate::helpers::Backend::Postgres)
    }
    #[test]
    fn no_actor_sequence_raises_anyone_above_the_actor() {
        super::no_actor_sequence_raises_anyone_above_the_actor(crate::helpers::Backend::Postgres)
    }
}
