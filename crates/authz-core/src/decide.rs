//! Decisions: checks with optional explanations, effective permissions and allowed resources.
//!
//! Semantics: a check of permission `p` is allowed when the user exists, is active and holds
//! `p` (through a group or a direct grant). On a resource `r` of type `t`, a scoped grant on `r`
//! also counts, and a restriction of the user on `t` that does not list `r` denies whatever the
//! user holds. Actions and inline expressions are evaluated over the same "holds" test.
//!
//! Context flags: every flag a requirement tests takes the value the caller sent, else the
//! catalog's `default` for it; a flag with neither is an error ([`UnsetFlag`]), never false.

use crate::catalog::{Action, Catalog};
use crate::expr::{Expr, FlagId};
use crate::model::{ResourceRef, ResourceTypeId, ScopedGrant, Subject, UserStatus};
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

impl Target<'_> {
    /// The context flags the target tests.
    pub fn flags(&self) -> &[FlagId] {
        match self {
            Target::Permission(_) => &[],
            Target::Action(a) => a.expr.flags(),
            Target::Expression(e) => e.flags(),
        }
    }

    /// `permission `k``, `action `k`` or `expression `src``, for messages.
    pub fn describe(&self, catalog: &Catalog) -> String {
        match self {
            Target::Permission(p) => format!("permission `{}`", catalog.key(*p)),
            Target::Action(a) => format!("action `{}`", a.key),
            Target::Expression(e) => format!("expression `{}`", e.source()),
        }
    }
}

/// One check.
pub struct Query<'a, C: Fn(&str) -> Option<bool>> {
    pub target: Target<'a>,
    pub resource: Option<&'a ResourceRef>,
    /// The context flags the caller sent, by key: `None` for a flag it did not send.
    pub context: C,
    pub explain: bool,
}

/// A context flag the target tests that the caller did not send and the catalog gives no
/// default: the check cannot be decided.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "context flag `{flag}` is required: {target} tests `ctx.{flag}` and the catalog gives it no default; send it in context as true or false"
)]
pub struct UnsetFlag {
    pub flag: String,
    pub target: String,
}

/// The value of every context flag a target tests, each resolved from what the caller sent or
/// the catalog's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagValues(SmallVec<[(FlagId, bool); 4]>);

impl FlagValues {
    /// Resolves every flag `target` tests; a flag with neither a sent value nor a catalog
    /// default is an error.
    pub fn resolve(
        catalog: &Catalog,
        target: Target<'_>,
        sent: impl Fn(&str) -> Option<bool>,
    ) -> Result<FlagValues, UnsetFlag> {
        // A plain loop, and nothing at all for a target without flags (a permission): this is
        // on every check's path.
        let mut values = FlagValues::default();
        for &id in target.flags() {
            let flag = catalog.context_flag(id);
            match sent(&flag.key).or(flag.default) {
                Some(v) => values.0.push((id, v)),
                None => {
                    return Err(UnsetFlag {
                        flag: flag.key.clone(),
                        target: target.describe(catalog),
                    });
                }
            }
        }
        Ok(values)
    }

    /// The value of a flag resolved here. Only flags of the target these values were resolved
    /// for are ever asked, and every one of them has an entry.
    fn get(&self, id: FlagId) -> bool {
        self.0.iter().any(|&(f, v)| f == id && v)
    }
}

/// A denied check's missing permissions; held inline up to four, so a deny allocates nothing.
pub type Missing = SmallVec<[PermId; 4]>;

/// How many of a restriction's resources a denial lists.
pub const RESTRICTION_IDS_SHOWN: usize = 10;

/// A restriction that denied a check: the user is limited to other resources of the type, so
/// no permission makes the check pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestrictionDenial {
    pub resource_type: ResourceTypeId,
    /// The first [`RESTRICTION_IDS_SHOWN`] resources the user is limited to, sorted.
    pub allowed_ids: Vec<String>,
    /// How many resources the restriction lists in all.
    pub allowed_count: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Permissions that would make a denied check pass: empty when no permission can (a
    /// restriction, a blocked or unknown user, a flag or a negation).
    pub missing: Missing,
    /// Set when a restriction on the resource's type denied the check (boxed: rare, and a
    /// decision is moved on every check).
    pub denied_by_restriction: Option<Box<RestrictionDenial>>,
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

/// Decides one query for one subject. A context flag the target tests that has no value is an
/// error, whoever the subject is.
pub fn decide<C: Fn(&str) -> Option<bool>>(
    catalog: &Catalog,
    subject: &Subject,
    query: &Query<'_, C>,
) -> Result<Decision, UnsetFlag> {
    let flags = FlagValues::resolve(catalog, query.target, &query.context)?;
    let flag = |f: FlagId| flags.get(f);
    let has = |p: PermId| match query.resource {
        Some(r) => subject.has_on(p, r),
        None => subject.has(p),
    };
    let restricted_out = query.resource.and_then(|r| {
        subject
            .restriction(r.resource_type)
            .filter(|rest| !rest.ids.contains(&r.id))
            .map(|rest| (r, rest))
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
        Target::Action(action) => evaluate(&action.expr, &has, &flag, query.explain),
        Target::Expression(expr) => evaluate(expr, &has, &flag, query.explain),
    };
    let active = subject.is_active();
    let allowed = active && requirement_holds && restricted_out.is_none();
    // An inactive user, or one a restriction keeps off the resource, is missing nothing that a
    // grant would fix: reporting permissions there would send the caller to grant in vain.
    let denied_by_restriction = restricted_out.filter(|_| active).map(|(r, rest)| {
        Box::new(RestrictionDenial {
            resource_type: r.resource_type,
            allowed_ids: rest
                .ids
                .iter()
                .take(RESTRICTION_IDS_SHOWN)
                .cloned()
                .collect(),
            allowed_count: rest.ids.len(),
        })
    });
    let fixable = active && denied_by_restriction.is_none();
    let explanation = query.explain.then(|| {
        explain(
            catalog,
            subject,
            query,
            allowed,
            &missing,
            restricted_out.map(|(r, _)| r.clone()),
            denied_by_restriction.as_deref(),
            failed_parts,
        )
    });
    let missing = if fixable && !requirement_holds {
        missing
    } else {
        Missing::new()
    };
    Ok(Decision {
        allowed,
        missing,
        denied_by_restriction,
        explanation,
    })
}

fn evaluate(
    expr: &Expr,
    has: &impl Fn(PermId) -> bool,
    flag: &impl Fn(FlagId) -> bool,
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

#[allow(clippy::too_many_arguments)]
fn explain<C: Fn(&str) -> Option<bool>>(
    catalog: &Catalog,
    subject: &Subject,
    query: &Query<'_, C>,
    allowed: bool,
    missing: &[PermId],
    denied_by_restriction: Option<ResourceRef>,
    restriction: Option<&RestrictionDenial>,
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
    let target = query.target.describe(catalog);
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
            } else if let (Some(r), Some(rest)) = (&denied_by_restriction, restriction) {
                let mut ids = rest.allowed_ids.join(", ");
                if rest.allowed_count > rest.allowed_ids.len() {
                    ids.push_str(&format!(
                        " and {} more",
                        rest.allowed_count - rest.allowed_ids.len()
                    ));
                }
                let mut summary = format!(
                    "denied: the user is restricted to {} {ids}, and {} is not one of them; no permission changes that",
                    catalog.resource_type_key(r.resource_type),
                    resource_text(r)
                );
                if !missing.is_empty() {
                    let keys: Vec<&str> = missing.iter().map(|p| catalog.key(*p)).collect();
                    summary.push_str(&format!(
                        " (on an allowed {} the user would also need {})",
                        catalog.resource_type_key(r.resource_type),
                        keys.join(", ")
                    ));
                }
                summary
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
[[context_flags]]
key = "large"
[[context_flags]]
key = "draft"
default = false
[[groups]]
name = "Editors"
permissions = ["edit_folders"]
[[actions]]
key = "reports.big"
expression = "view_reports | !ctx.large"
[[actions]]
key = "reports.draft"
expression = "edit_folders & (!ctx.draft | view_reports)"
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
                context: |_: &str| None,
                explain: true,
            };
            decide(&self.c, s, &q).unwrap()
        }
        fn action(
            &self,
            s: &Subject,
            key: &str,
            sent: &[(&str, bool)],
        ) -> Result<Decision, UnsetFlag> {
            let q = Query {
                target: Target::Action(self.c.action(key).unwrap()),
                resource: None,
                context: |f: &str| sent.iter().find(|(k, _)| *k == f).map(|(_, v)| *v),
                explain: false,
            };
            decide(&self.c, s, &q)
        }
    }

    #[test]
    fn a_flag_without_value_or_default_is_an_error_not_false() {
        let f = Fixture::new();
        let s = f.subject(UserStatus::Active, None, &[]);
        // `!ctx.large` would pass if an unsent flag read as false.
        let e = f.action(&s, "reports.big", &[]).unwrap_err();
        assert_eq!(e.flag, "large");
        assert!(
            e.to_string()
                .contains("action `reports.big` tests `ctx.large`"),
            "{e}"
        );
        assert!(
            f.action(&s, "reports.big", &[("large", false)])
                .unwrap()
                .allowed
        );
        let d = f.action(&s, "reports.big", &[("large", true)]).unwrap();
        assert_eq!(
            (d.allowed, d.missing.to_vec()),
            (false, vec![f.p("view_reports")])
        );
        // Unknown and blocked users are refused the same way: the error does not depend on them.
        assert!(f.action(&Subject::default(), "reports.big", &[]).is_err());
        // A flag with a catalog default takes it when not sent, and the sent value otherwise.
        assert!(f.action(&s, "reports.draft", &[]).unwrap().allowed);
        assert!(
            !f.action(&s, "reports.draft", &[("draft", true)])
                .unwrap()
                .allowed
        );
        // Flags the target does not test need no value.
        assert!(f.check(&s, "edit_folders", None).allowed);
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
        let denial = d.denied_by_restriction.clone().unwrap();
        assert_eq!(denial.allowed_ids, ["a", "b"]);
        assert_eq!(denial.allowed_count, 2);
        let e = d.explanation.unwrap();
        assert_eq!(e.denied_by_restriction, Some(f.folder("c")));
        assert!(
            e.summary
                .contains("restricted to folder a, b, and folder:c is not one of them"),
            "{}",
            e.summary
        );
        // Not holding the permission either: still the restriction, not the permission, is
        // reported, since granting it would change nothing.
        let d = f.check(&s, "view_reports", Some("c"));
        assert!(d.missing.is_empty());
        assert!(d.denied_by_restriction.is_some());
        let summary = d.explanation.unwrap().summary;
        assert!(
            summary.contains("would also need view_reports"),
            "{summary}"
        );
        // On an allowed resource the missing permission is reported as usual.
        let d = f.check(&s, "view_reports", Some("a"));
        assert_eq!(d.missing.to_vec(), vec![f.p("view_reports")]);
        assert!(d.denied_by_restriction.is_none());
        // A long restriction lists its first resources and the count.
        let many: Vec<String> = (0..25).map(|i| format!("f{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let wide = f.subject(UserStatus::Active, Some(&many), &[]);
        let denial = f
            .check(&wide, "edit_folders", Some("x"))
            .denied_by_restriction
            .unwrap();
        assert_eq!(denial.allowed_ids.len(), RESTRICTION_IDS_SHOWN);
        assert_eq!(denial.allowed_count, 25);
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
        assert!(d.denied_by_restriction.is_none());
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
