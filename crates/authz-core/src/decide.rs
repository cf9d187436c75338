//! Decisions: checks with optional explanations, effective permissions and allowed resources.
//!
//! Semantics: a check of permission `p` is allowed when the user exists, is active and holds
//! `p` (through a group or a direct grant). On a resource `r` of type `t`, a scoped grant on `r`
//! also counts, and a restriction of the user on `t` that does not list `r` denies whatever the
//! user holds. Actions and inline expressions are evaluated over the same "holds" test.

use crate::catalog::{Action, Catalog};
use crate::expr::Expr;
use crate::model::{ResourceRef, ScopedGrant, Subject, UserStatus};
use crate::permset::PermId;
use smallvec::{SmallVec, smallvec};
use std::collections::BTreeSet;

/// What is being asked.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Permission(PermId),
    Action(&'a Action),
    Expression(&'a Expr),
}

/// One check.
pub struct Query<'a, F: Fn(&str) -> bool> {
    pub target: Target<'a>,
    pub resource: Option<&'a ResourceRef>,
    /// Context flags supplied by the caller; a flag it did not supply is false.
    pub flag: F,
    pub explain: bool,
}

/// A denied check's missing permissions; held inline up to four, so a deny allocates nothing.
pub type Missing = SmallVec<[PermId; 4]>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Permissions that would make a denied check pass (empty when no permission can).
    pub missing: Missing,
    pub explanation: Option<Explanation>,
}

/// Where a permission comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Group(String),
    Direct,
    /// A scoped grant on the checked resource, from a group (`Some`) or direct (`None`).
    Scoped {
        group: Option<String>,
    },
}

impl Source {
    /// The wire form: `group:<key>`, `direct`, `group:<key>@<type>:<id>` or `direct@<type>:<id>`.
    pub fn render(&self, catalog: &Catalog, resource: Option<&ResourceRef>) -> String {
        let on = |prefix: String| match resource {
            Some(r) => format!(
                "{prefix}@{}:{}",
                catalog.resource_type_key(r.resource_type),
                r.id
            ),
            None => prefix,
        };
        match self {
            Source::Group(g) => format!("group:{g}"),
            Source::Direct => "direct".to_owned(),
            Source::Scoped { group: Some(g) } => on(format!("group:{g}")),
            Source::Scoped { group: None } => on("direct".to_owned()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserState {
    Active,
    Blocked,
    Unknown,
}

/// Whether a permission relevant to the check is held, and through what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionTrace {
    pub permission: PermId,
    pub held: bool,
    pub sources: Vec<Source>,
}

/// The check in RBAC terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub user: UserState,
    pub permissions: Vec<PermissionTrace>,
    /// Set when a restriction on the resource's type denied the check.
    pub denied_by_restriction: Option<ResourceRef>,
    /// The source text of each failing part of the requirement.
    pub failed_parts: Vec<String>,
    /// One sentence that says why.
    pub summary: String,
}

/// Decides one query for one subject.
pub fn decide<F: Fn(&str) -> bool>(
    catalog: &Catalog,
    subject: &Subject,
    query: &Query<'_, F>,
) -> Decision {
    let has = |p: PermId| match query.resource {
        Some(r) => subject.has_on(p, r),
        None => subject.has(p),
    };
    let restricted_out = query.resource.filter(|r| {
        subject
            .restriction(r.resource_type)
            .is_some_and(|rest| !rest.ids.contains(&r.id))
    });
    // The requirement is evaluated even when the user is inactive or restricted out: `has`
    // answers false for inactive users, and the missing permissions are still worth reporting.
    let (requirement_holds, missing, failed_parts) = match query.target {
        Target::Permission(p) => {
            let ok = has(p);
            let missing = if ok { Missing::new() } else { smallvec![p] };
            // Only an explanation shows the failing parts: no string is built otherwise.
            let failed = if ok || !query.explain {
                Vec::new()
            } else {
                vec![catalog.key(p).to_owned()]
            };
            (ok, missing, failed)
        }
        Target::Action(action) => evaluate(&action.expr, &has, &query.flag, query.explain),
        Target::Expression(expr) => evaluate(expr, &has, &query.flag, query.explain),
    };
    let active = subject.is_active();
    let allowed = active && requirement_holds && restricted_out.is_none();
    // An inactive user is missing nothing that a grant would fix.
    let missing = if active && !requirement_holds {
        missing
    } else {
        Missing::new()
    };
    let explanation = query.explain.then(|| {
        explain(
            catalog,
            subject,
            query,
            allowed,
            &missing,
            restricted_out.cloned(),
            failed_parts,
        )
    });
    Decision {
        allowed,
        missing,
        explanation,
    }
}

fn evaluate(
    expr: &Expr,
    has: &impl Fn(PermId) -> bool,
    flag: &impl Fn(&str) -> bool,
    explain: bool,
) -> (bool, Missing, Vec<String>) {
    // `evaluate` decides with `holds` first and allocates nothing when the expression holds.
    let out = expr.evaluate(has, flag);
    let failed = if explain {
        out.failed_parts
    } else {
        Vec::new()
    };
    (out.allowed, Missing::from_vec(out.missing), failed)
}

fn target_permissions(target: Target<'_>) -> Vec<PermId> {
    match target {
        Target::Permission(p) => vec![p],
        Target::Action(a) => a.expr.permissions().iter().collect(),
        Target::Expression(e) => e.permissions().iter().collect(),
    }
}

/// Every source of `p` for `subject` (on `resource`, when given), ignoring status.
pub fn sources(subject: &Subject, p: PermId, resource: Option<&ResourceRef>) -> Vec<Source> {
    let mut out = Vec::new();
    let Some(user) = &subject.user else {
        return out;
    };
    for g in &subject.groups {
        if g.permissions.contains(p) {
            out.push(Source::Group(g.key.clone()));
        }
    }
    if user.direct.contains(p) {
        out.push(Source::Direct);
    }
    if let Some(r) = resource {
        let on = |s: &ScopedGrant| s.permission == p && &s.resource == r;
        for g in &subject.groups {
            if g.scoped.iter().any(on) {
                out.push(Source::Scoped {
                    group: Some(g.key.clone()),
                });
            }
        }
        if user.scoped.iter().any(on) {
            out.push(Source::Scoped { group: None });
        }
    }
    out
}

fn explain<F: Fn(&str) -> bool>(
    catalog: &Catalog,
    subject: &Subject,
    query: &Query<'_, F>,
    allowed: bool,
    missing: &[PermId],
    denied_by_restriction: Option<ResourceRef>,
    failed_parts: Vec<String>,
) -> Explanation {
    let user = match &subject.user {
        None => UserState::Unknown,
        Some(u) if u.status == UserStatus::Blocked => UserState::Blocked,
        Some(_) => UserState::Active,
    };
    let permissions: Vec<PermissionTrace> = target_permissions(query.target)
        .into_iter()
        .map(|p| {
            let sources = sources(subject, p, query.resource);
            PermissionTrace {
                permission: p,
                held: !sources.is_empty(),
                sources,
            }
        })
        .collect();
    let target = match query.target {
        Target::Permission(p) => format!("permission `{}`", catalog.key(p)),
        Target::Action(a) => format!("action `{}`", a.key),
        Target::Expression(e) => format!("expression `{}`", e.source()),
    };
    let resource_text =
        |r: &ResourceRef| format!("{}:{}", catalog.resource_type_key(r.resource_type), r.id);
    let summary = match user {
        UserState::Unknown => {
            format!("denied: the user is not known to this tenant, so holds nothing ({target})")
        }
        UserState::Blocked => format!("denied: the user is blocked ({target})"),
        UserState::Active => {
            if allowed {
                let given: Vec<String> = permissions
                    .iter()
                    .filter(|t| t.held)
                    .map(|t| {
                        let from: Vec<String> = t
                            .sources
                            .iter()
                            .map(|s| s.render(catalog, query.resource))
                            .collect();
                        format!("`{}` from {}", catalog.key(t.permission), from.join(", "))
                    })
                    .collect();
                if given.is_empty() {
                    format!("allowed: {target} needs no permission")
                } else {
                    format!("allowed: {target} is satisfied by {}", given.join("; "))
                }
            } else if let Some(r) = &denied_by_restriction {
                format!(
                    "denied: the user is restricted to listed {} resources and {} is not one of them",
                    catalog.resource_type_key(r.resource_type),
                    resource_text(r)
                )
            } else if missing.is_empty() {
                format!(
                    "denied: {target} fails at {}, which no permission can satisfy",
                    failed_parts.join(", ")
                )
            } else {
                let keys: Vec<&str> = missing.iter().map(|p| catalog.key(*p)).collect();
                format!("denied: {target} is missing {}", keys.join(", "))
            }
        }
    };
    Explanation {
        user,
        permissions,
        denied_by_restriction,
        failed_parts,
        summary,
    }
}

/// One entry of a user's effective permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectivePermission {
    pub permission: PermId,
    pub sources: Vec<Source>,
}

/// The user's unscoped effective permissions with their sources, in catalog order. Empty
/// for an unknown or blocked user.
pub fn effective_permissions(subject: &Subject) -> Vec<EffectivePermission> {
    subject
        .effective()
        .iter()
        .map(|p| EffectivePermission {
            permission: p,
            sources: sources(subject, p, None),
        })
        .collect()
}

/// Every scoped grant of an active user, from groups and direct, with its source.
pub fn scoped_grants(subject: &Subject) -> Vec<(ScopedGrant, Source)> {
    let mut out = Vec::new();
    let Some(user) = subject.user.as_ref().filter(|_| subject.is_active()) else {
        return out;
    };
    for g in &subject.groups {
        for s in &g.scoped {
            out.push((
                s.clone(),
                Source::Scoped {
                    group: Some(g.key.clone()),
                },
            ));
        }
    }
    for s in &user.scoped {
        out.push((s.clone(), Source::Scoped { group: None }));
    }
    out.sort();
    out
}

/// Which resources of one type a user may use a permission on.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AllowedResources {
    /// Every resource of the type (the user holds the permission unscoped and is not restricted).
    pub all: bool,
    /// When not `all`: the resources allowed, sorted.
    pub ids: Vec<String>,
}

pub fn allowed_resources(
    subject: &Subject,
    p: PermId,
    resource_type: crate::model::ResourceTypeId,
) -> AllowedResources {
    if !subject.is_active() {
        return AllowedResources::default();
    }
    let restriction = subject.restriction(resource_type);
    if subject.has(p) {
        return match restriction {
            None => AllowedResources {
                all: true,
                ids: Vec::new(),
            },
            Some(r) => AllowedResources {
                all: false,
                ids: r.ids.iter().cloned().collect(),
            },
        };
    }
    let mut ids = BTreeSet::new();
    let user_scoped = subject.user.iter().flat_map(|u| u.scoped.iter());
    let group_scoped = subject.groups.iter().flat_map(|g| g.scoped.iter());
    for s in user_scoped.chain(group_scoped) {
        if s.permission == p
            && s.resource.resource_type == resource_type
            && restriction.is_none_or(|r| r.ids.contains(&s.resource.id))
        {
            ids.insert(s.resource.id.clone());
        }
    }
    AllowedResources {
        all: false,
        ids: ids.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GroupGrants, Restriction, UserGrants};
    use std::sync::Arc;

    const CATALOG: &str = r#"
name = "t"
version = "1"
[[resource_types]]
key = "folder"
[[permissions]]
name = "Edit folders"
[[permissions]]
name = "View reports"
[[groups]]
name = "Editors"
permissions = ["edit_folders"]
"#;

    struct Fixture {
        c: Catalog,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                c: Catalog::from_toml(CATALOG).unwrap(),
            }
        }
        fn p(&self, k: &str) -> PermId {
            self.c.resolve(k).unwrap()
        }
        fn folder(&self, id: &str) -> ResourceRef {
            ResourceRef {
                resource_type: self.c.resource_type("folder").unwrap(),
                id: id.into(),
            }
        }
        fn subject(
            &self,
            status: UserStatus,
            restricted_to: Option<&[&str]>,
            scoped: &[(&str, &str)],
        ) -> Subject {
            let restrictions = restricted_to
                .map(|ids| {
                    vec![Restriction {
                        resource_type: self.c.resource_type("folder").unwrap(),
                        ids: ids.iter().map(|s| s.to_string()).collect(),
                    }]
                })
                .unwrap_or_default();
            Subject {
                user: Some(Arc::new(UserGrants {
                    status,
                    groups: vec!["editors".into()],
                    scoped: scoped
                        .iter()
                        .map(|(p, r)| ScopedGrant {
                            permission: self.p(p),
                            resource: self.folder(r),
                        })
                        .collect(),
                    restrictions,
                    ..UserGrants::default()
                })),
                groups: vec![Arc::new(GroupGrants {
                    key: "editors".into(),
                    permissions: [self.p("edit_folders")].into_iter().collect(),
                    scoped: Vec::new(),
                })],
            }
        }
        fn check(&self, s: &Subject, perm: &str, on: Option<&str>) -> Decision {
            let r = on.map(|id| self.folder(id));
            let q = Query {
                target: Target::Permission(self.p(perm)),
                resource: r.as_ref(),
                flag: |_: &str| false,
                explain: true,
            };
            decide(&self.c, s, &q)
        }
    }

    #[test]
    fn restrictions_deny_other_resources_of_their_type() {
        let f = Fixture::new();
        let s = f.subject(UserStatus::Active, Some(&["a", "b"]), &[]);
        assert!(f.check(&s, "edit_folders", Some("a")).allowed);
        let d = f.check(&s, "edit_folders", Some("c"));
        assert!(!d.allowed);
        assert!(
            d.missing.is_empty(),
            "a restriction is not fixed by a permission"
        );
        let e = d.explanation.unwrap();
        assert_eq!(e.denied_by_restriction, Some(f.folder("c")));
        assert!(e.summary.contains("restricted"), "{}", e.summary);
        // Without a resource the restriction does not apply.
        assert!(f.check(&s, "edit_folders", None).allowed);
        assert_eq!(
            allowed_resources(
                &s,
                f.p("edit_folders"),
                f.c.resource_type("folder").unwrap()
            ),
            AllowedResources {
                all: false,
                ids: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn scoped_grants_count_only_on_their_resource() {
        let f = Fixture::new();
        let s = f.subject(UserStatus::Active, None, &[("view_reports", "x")]);
        assert!(f.check(&s, "view_reports", Some("x")).allowed);
        assert!(!f.check(&s, "view_reports", Some("y")).allowed);
        assert!(!f.check(&s, "view_reports", None).allowed);
        let d = f.check(&s, "view_reports", Some("x"));
        assert_eq!(
            d.explanation.unwrap().permissions[0].sources,
            vec![Source::Scoped { group: None }]
        );
        assert_eq!(
            allowed_resources(
                &s,
                f.p("view_reports"),
                f.c.resource_type("folder").unwrap()
            ),
            AllowedResources {
                all: false,
                ids: vec!["x".into()]
            }
        );
        assert!(
            allowed_resources(
                &s,
                f.p("edit_folders"),
                f.c.resource_type("folder").unwrap()
            )
            .all
        );
    }

    #[test]
    fn blocked_and_unknown_users_are_denied_everything() {
        let f = Fixture::new();
        let blocked = f.subject(UserStatus::Blocked, None, &[("view_reports", "x")]);
        let d = f.check(&blocked, "edit_folders", None);
        assert!(!d.allowed);
        assert!(d.missing.is_empty());
        assert_eq!(d.explanation.unwrap().user, UserState::Blocked);
        assert!(!f.check(&blocked, "view_reports", Some("x")).allowed);
        assert!(effective_permissions(&blocked).is_empty());
        assert!(scoped_grants(&blocked).is_empty());
        let unknown = Subject::default();
        let d = f.check(&unknown, "edit_folders", None);
        assert!(!d.allowed);
        assert_eq!(d.explanation.unwrap().user, UserState::Unknown);
    }

    #[test]
    fn effective_permissions_name_their_sources() {
        let f = Fixture::new();
        let mut s = f.subject(UserStatus::Active, None, &[]);
        let mut user = (**s.user.as_ref().unwrap()).clone();
        user.direct.insert(f.p("edit_folders"));
        s.user = Some(Arc::new(user));
        let e = effective_permissions(&s);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].sources,
            vec![Source::Group("editors".into()), Source::Direct]
        );
    }
}
