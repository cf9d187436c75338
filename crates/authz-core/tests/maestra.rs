//! The default catalog against the source documents: group lists, key rule and the names of
//! the requirement tables. The documents' facts are checked two ways: against the seed files
//! themselves when they sit beside the repository (`../shared/seeds`, or `AUTHZ_SEEDS_DIR`),
//! and against the lists below, which hold up whether or not the seeds are present.
//!
//! The requirement tables' cases (an action, a user's groups and flags, allowed or not, what is
//! missing) are in `catalogs/maestra.tests.toml`, which `authzd catalog test` runs
//! (`tests/it/catalog_test.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_core::Catalog;
use authz_core::decide::{Query, Target, decide};
use authz_core::key::key_from_name;
use authz_core::model::{Subject, UserGrants};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

const MAESTRA: &str = include_str!("../../../catalogs/maestra.toml");
const TOOLJET: &str = include_str!("../../../catalogs/tooljet.toml");

fn catalog() -> Catalog {
    Catalog::from_toml(MAESTRA).unwrap()
}

const STANDARD_GROUPS: [(&str, usize); 7] = [
    ("owners", 162),
    ("marketers", 108),
    ("analysts", 45),
    ("client_developers", 12),
    ("accountants", 4),
    ("layout_of_email_templates", 12),
    ("api", 24),
];

#[test]
fn both_catalogs_load() {
    let c = catalog();
    assert_eq!(c.name, "maestra");
    assert_eq!(c.permissions().len(), 167);
    assert_eq!(
        c.resource_types()
            .iter()
            .map(|t| t.key.as_str())
            .collect::<Vec<_>>(),
        ["folder", "brand"]
    );
    let t = Catalog::from_toml(TOOLJET).unwrap();
    assert_eq!(
        t.resource_types()
            .iter()
            .map(|t| t.key.as_str())
            .collect::<Vec<_>>(),
        ["app", "data_source", "folder"]
    );
}

#[test]
fn standard_groups_have_their_listed_sizes() {
    let c = catalog();
    for (key, n) in STANDARD_GROUPS {
        let g = c.group(key).unwrap_or_else(|| panic!("group {key}"));
        assert_eq!(g.grants.permissions.len(), n, "{key}");
        assert!(!g.internal, "{key}");
    }
    let public: Vec<&str> = c
        .groups()
        .iter()
        .filter(|g| !g.internal)
        .map(|g| g.key.as_str())
        .collect();
    assert_eq!(
        public.len(),
        7,
        "exactly the seven standard groups are visible: {public:?}"
    );
}

#[test]
fn owners_hold_every_customer_visible_listed_permission_and_nothing_else() {
    let c = catalog();
    let owners = &c.group("owners").unwrap().grants.permissions;
    let only_in_tables = [
        "view_users",
        "export_statuses",
        "manage_security_policy_partial_access",
    ];
    for p in c.permissions() {
        let expected = !p.internal && !only_in_tables.contains(&p.key.as_str());
        assert_eq!(owners.contains(p.id), expected, "owners and `{}`", p.key);
    }
    // Every standard group is within Owners.
    for (key, _) in STANDARD_GROUPS {
        assert!(
            c.group(key).unwrap().grants.permissions.is_subset(owners),
            "{key} ⊆ owners"
        );
    }
}

#[test]
fn internal_and_table_only_permissions() {
    let c = catalog();
    for k in ["view_system_tasks", "view_all_system_tasks"] {
        assert!(
            c.permission(c.resolve(k).unwrap()).internal,
            "{k} is internal"
        );
    }
    for k in [
        "view_users",
        "export_statuses",
        "manage_security_policy_partial_access",
    ] {
        let p = c.permission(c.resolve(k).unwrap());
        assert!(!p.internal, "{k}");
        for (g, _) in STANDARD_GROUPS {
            assert!(
                !c.group(g).unwrap().grants.permissions.contains(p.id),
                "no standard group holds {k}"
            );
        }
    }
    let staff = c.group("maestra_staff").unwrap();
    assert!(staff.internal);
}

#[test]
fn aliases_resolve_the_documents_contradictions() {
    let c = catalog();
    let cases = [
        ("View billing detalization", "view_billing_details"),
        ("View promo code", "view_promo_codes"),
        (
            "View and edit \"MMS and messengers\" messages",
            "view_and_edit_mms_and_messengers_messages",
        ),
        (
            "View and edit “MMS and messengers” messages",
            "view_and_edit_mms_and_messengers_messages",
        ),
    ];
    for (name, key) in cases {
        let p = c
            .resolve(&key_from_name(name))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(c.key(p), key, "{name}");
    }
    // Each contradiction is recorded explicitly as an alias.
    for (alias, key) in [
        ("View billing detalization", "view_billing_details"),
        ("View promo code", "view_promo_codes"),
        (
            "View and edit \"MMS and messengers\" messages",
            "view_and_edit_mms_and_messengers_messages",
        ),
    ] {
        let p = c.permission(c.resolve(key).unwrap());
        assert!(
            p.aliases.iter().any(|a| a == alias),
            "{key} lists alias {alias:?}"
        );
    }
}

#[test]
fn keys_follow_the_key_rule() {
    let c = catalog();
    for p in c.permissions() {
        assert_eq!(p.key, key_from_name(&p.name));
    }
    for g in c.groups() {
        assert_eq!(g.key, key_from_name(&g.name));
    }
    assert!(c.resolve("export_customers").is_some());
    assert!(
        c.resolve("view_and_edit_mms_and_messengers_messages")
            .is_some()
    );
}

// ---- Against the seed documents themselves ----

fn seeds_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("AUTHZ_SEEDS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seeds"));
    if dir.is_dir() {
        return Some(dir);
    }
    // CI always has the seeds beside the repository; there a missing folder is a failure.
    assert!(
        std::env::var_os("CI").is_none(),
        "seed documents not found at {}; set AUTHZ_SEEDS_DIR",
        dir.display()
    );
    eprintln!(
        "seed documents not found at {}; document cross-checks skipped",
        dir.display()
    );
    None
}

fn seed(dir: &std::path::Path, prefix: &str) -> String {
    let entry = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("seed {prefix}* in {}", dir.display()));
    std::fs::read_to_string(entry).unwrap()
}

/// Group name → listed permission names, from the standard-groups document.
fn listed_groups(text: &str) -> BTreeMap<String, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_list = false;
    for (i, line) in lines.iter().enumerate() {
        if lines
            .get(i + 1)
            .is_some_and(|n| n.starts_with("Use it for"))
        {
            current = Some(line.trim().to_owned());
            in_list = false;
        } else if line.trim() == "Full permission list" {
            in_list = true;
        } else if let (true, Some(g), Some(item)) = (in_list, &current, line.strip_prefix("- ")) {
            groups
                .entry(g.clone())
                .or_default()
                .push(item.trim().to_owned());
        } else if in_list {
            in_list = false;
        }
    }
    groups
}

#[test]
fn groups_match_the_standard_groups_document() {
    let Some(dir) = seeds_dir() else { return };
    let c = catalog();
    let listed = listed_groups(&seed(&dir, "001_"));
    assert_eq!(listed.len(), 7, "{:?}", listed.keys());
    for (name, perms) in &listed {
        let group = c
            .group(&key_from_name(name))
            .unwrap_or_else(|| panic!("group {name}"));
        let expected: BTreeSet<String> = perms.iter().map(|p| key_from_name(p)).collect();
        assert_eq!(
            expected.len(),
            perms.len(),
            "{name} lists distinct permissions"
        );
        let actual: BTreeSet<String> = c
            .keys(&group.grants.permissions)
            .map(str::to_owned)
            .collect();
        assert_eq!(actual, expected, "group {name}");
        for p in perms {
            let id = c.resolve(&key_from_name(p)).unwrap();
            assert_eq!(c.permission(id).name, *p, "display name of {p}");
        }
    }
}

/// Every permission name the requirement tables mention (in backticks).
fn table_names(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_permission_the_requirement_tables_name_is_in_the_catalog_and_used_by_an_action() {
    let Some(dir) = seeds_dir() else { return };
    let c = catalog();
    let mut used = authz_core::PermSet::new();
    for a in c.actions() {
        used.union_with(a.expr.permissions());
    }
    let names = table_names(&seed(&dir, "004_"));
    assert!(names.len() > 100, "found {} names", names.len());
    for name in names {
        let p = c
            .resolve(&key_from_name(&name))
            .unwrap_or_else(|| panic!("the tables name {name:?}, the catalog does not"));
        assert!(used.contains(p), "no action requires {name:?}");
    }
}

// ---- Every action, for owners ----

/// A subject in the given system groups, plus direct grants.
fn subject(c: &Catalog, groups: &[&str], direct: &[&str]) -> Subject {
    Subject {
        user: Some(Arc::new(UserGrants {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            direct: direct.iter().map(|k| c.resolve(k).unwrap()).collect(),
            ..UserGrants::default()
        })),
        groups: groups
            .iter()
            .map(|g| c.group(g).unwrap().grants.clone())
            .collect(),
    }
}

#[test]
fn owners_can_do_every_action_without_staff_or_table_only_permissions() {
    let c = catalog();
    let owners = subject(&c, &["owners"], &[]);
    let everything = subject(
        &c,
        &["owners", "maestra_staff"],
        &[
            "view_users",
            "export_statuses",
            "manage_security_policy_partial_access",
        ],
    );
    let extra: BTreeSet<&str> = [
        "view_users",
        "export_statuses",
        "manage_security_policy_partial_access",
        "view_system_tasks",
        "view_all_system_tasks",
    ]
    .into();
    for a in c.actions() {
        let q = Query {
            target: Target::Action(a),
            resource: None,
            context: |_: &str| Some(true),
            explain: false,
        };
        assert!(
            decide(&c, &everything, &q).unwrap().allowed,
            "{} with every permission and every flag",
            a.key
        );
        let needs_extra = c.keys(a.expr.permissions()).any(|k| extra.contains(k));
        if !needs_extra {
            assert!(
                decide(&c, &owners, &q).unwrap().allowed,
                "owners may {}",
                a.key
            );
        }
    }
}

#[test]
fn tooljet_scoped_grants() {
    use authz_core::model::{ResourceRef, ScopedGrant};
    let c = Catalog::from_toml(TOOLJET).unwrap();
    let app = c.resource_type("app").unwrap();
    let r42 = ResourceRef {
        resource_type: app,
        id: "42".into(),
    };
    let r7 = ResourceRef {
        resource_type: app,
        id: "7".into(),
    };
    let s = Subject {
        user: Some(Arc::new(UserGrants {
            groups: vec!["end_user".into()],
            ..UserGrants::default()
        })),
        groups: vec![
            c.group("end_user").unwrap().grants.clone(),
            Arc::new(authz_core::model::GroupGrants {
                key: "app_42_editors".into(),
                permissions: Default::default(),
                scoped: vec![ScopedGrant {
                    permission: c.resolve("edit_app").unwrap(),
                    resource: r42.clone(),
                }],
            }),
        ],
    };
    let edit = c.action("app.edit").unwrap();
    let on = |r: &ResourceRef| {
        let q = Query {
            target: Target::Action(edit),
            resource: Some(r),
            context: |_: &str| Some(false),
            explain: true,
        };
        decide(&c, &s, &q).unwrap()
    };
    assert!(on(&r42).allowed);
    let denied = on(&r7);
    assert!(!denied.allowed);
    assert_eq!(denied.missing.as_slice(), [c.resolve("edit_app").unwrap()]);
    let allowed = authz_core::decide::allowed_resources(&s, c.resolve("edit_app").unwrap(), app);
    assert_eq!(
        allowed,
        authz_core::decide::AllowedResources {
            all: false,
            ids: vec!["42".into()]
        }
    );
}
