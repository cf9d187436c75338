//! `authzd catalog test`, run as the real binary: the shipped test files pass case for case, a
//! broken expectation fails and names its case with what was expected and what came, and a file
//! that can't be run is refused with exit code 2 and says what to fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn catalog(name: &str) -> String {
    root().join("catalogs").join(name).display().to_string()
}

fn test_catalog(catalog: &str, tests: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authzd"))
        .args(["catalog", "test", catalog, &tests.display().to_string()])
        .args(extra)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("authzd-catalog-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The cases a test file holds, counted from its TOML, not by the runner.
fn cases_in(tests: &Path) -> usize {
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(tests).unwrap()).unwrap();
    ["checks", "effective", "admin_calls"]
        .iter()
        .map(|k| table.get(*k).and_then(|v| v.as_array()).map_or(0, Vec::len))
        .sum()
}

/// The 1-based line where `needle` starts in `haystack`.
fn line_of(haystack: &str, needle: &str) -> usize {
    let at = haystack
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not found"));
    haystack[..at].matches('\n').count() + 1
}

const SHIPPED: [(&str, &str); 2] = [
    ("maestra.toml", "maestra.tests.toml"),
    ("tooljet.toml", "tooljet.tests.toml"),
];

#[test]
fn the_shipped_test_files_pass_case_for_case() {
    for (cat, tests) in SHIPPED {
        let tests = root().join("catalogs").join(tests);
        let n = cases_in(&tests);
        assert!(n >= 25, "{} has only {n} cases", tests.display());
        let out = test_catalog(&catalog(cat), &tests, &[]);
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {:?}\n{stdout}{}",
            tests.display(),
            out.status,
            text(&out.stderr)
        );
        assert!(
            stdout.ends_with(&format!("\n{n} passed, 0 failed\n")),
            "{stdout}"
        );
        assert!(!stdout.contains("FAIL"), "{stdout}");

        // The same run for scripts: every case, each passed, in the order of the file.
        let out = test_catalog(&catalog(cat), &tests, &["--output", "json"]);
        assert!(out.status.success(), "{out:?}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["passed"], n, "{report}");
        assert_eq!(report["failed"], 0, "{report}");
        let cases = report["cases"].as_array().unwrap();
        assert_eq!(cases.len(), n);
        assert!(cases.iter().all(|c| c["passed"] == true), "{report}");
        let lines: Vec<u64> = cases.iter().map(|c| c["line"].as_u64().unwrap()).collect();
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
    }
}

/// The Maestra file keeps the requirement tables' cases: every one names an action.
#[test]
fn the_maestra_test_file_holds_the_requirement_tables() {
    let tests = root().join("catalogs/maestra.tests.toml");
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(&tests).unwrap()).unwrap();
    let actions = table["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("action").is_some())
        .count();
    assert!(actions >= 59, "{actions} action checks");
    let refusals = table["admin_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("refused").and_then(toml::Value::as_bool) == Some(true))
        .count();
    assert!(refusals >= 3, "{refusals} expected refusals");
}

#[test]
fn a_broken_expectation_fails_and_names_its_case() {
    let dir = scratch("broken");
    let original = std::fs::read_to_string(root().join("catalogs/maestra.tests.toml")).unwrap();
    let n = cases_in(&root().join("catalogs/maestra.tests.toml"));

    // Analysts export customers without personal data only; claim they miss the wrong thing.
    let case = "[[checks]]\nuser = \"analyst\"\naction = \"customers.export_customers\"\ncontext = { include_personal_data = true }\nallowed = false\nmissing = [\"export_personal_data\"]\n";
    assert!(original.contains(case), "the case to break moved");
    let broken = original.replacen(
        case,
        &case.replace("[\"export_personal_data\"]", "[\"export_customers\"]"),
        1,
    );
    let file = dir.join("check.tests.toml");
    std::fs::write(&file, &broken).unwrap();
    let out = test_catalog(&catalog("maestra.toml"), &file, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let line = line_of(
        &broken,
        "[[checks]]\nuser = \"analyst\"\naction = \"customers.export_customers\"\ncontext = { include_personal_data = true }",
    );
    let expected_line = format!(
        "FAIL {}:{line} checks \"analyst: customers.export_customers with include_personal_data\": expected allowed = false, missing = [export_customers], got allowed = false, missing = [export_personal_data] (denied: action `customers.export_customers` is missing export_personal_data)",
        file.display()
    );
    assert!(stdout.contains(&expected_line), "{stdout}");
    assert_eq!(stdout.matches("FAIL").count(), 1, "{stdout}");
    assert!(
        stdout.ends_with(&format!("\n{} passed, 1 failed\n", n - 1)),
        "{stdout}"
    );

    // An admin expectation turned around: the refusal is reported with its reason.
    let case = "name = \"a marketer cannot edit groups\"\nactor = \"marketer\"\nupdate_group = { group = \"email_specialists\", permissions = [\"view_campaign_manager\"] }\nrefused = true\nreason = \"missing edit_permission_groups\"\n";
    assert!(original.contains(case), "the admin case to break moved");
    let broken = original.replacen(
        case,
        "name = \"a marketer cannot edit groups\"\nactor = \"marketer\"\nupdate_group = { group = \"email_specialists\", permissions = [\"view_campaign_manager\"] }\nrefused = false\n",
        1,
    );
    let file = dir.join("admin.tests.toml");
    std::fs::write(&file, &broken).unwrap();
    let out = test_catalog(&catalog("maestra.toml"), &file, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let line = line_of(
        &broken,
        "[[admin_calls]]\nname = \"a marketer cannot edit groups\"",
    );
    assert!(
        stdout.contains(&format!(
            "FAIL {}:{line} admin_calls \"a marketer cannot edit groups\": expected refused = false, got refused = true: the actor may not edit permission groups: missing edit_permission_groups",
            file.display()
        )),
        "{stdout}"
    );

    // The JSON report says the same.
    let out = test_catalog(&catalog("maestra.toml"), &file, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 1, "{report}");
    let failed: Vec<&serde_json::Value> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed[0]["name"], "a marketer cannot edit groups");
    assert_eq!(failed[0]["line"], line);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Admin calls are dry runs: a permitted block leaves the user as the fixtures made it for the
/// cases after it.
#[test]
fn admin_calls_change_nothing() {
    let dir = scratch("dry");
    let file = dir.join("dry.tests.toml");
    std::fs::write(
        &file,
        r#"
[[users]]
id = "ada"
groups = ["admin"]

[[users]]
id = "bob"
groups = ["builder"]

[[admin_calls]]
actor = "ada"
set_user_status = { user = "bob", status = "blocked" }
refused = false

[[admin_calls]]
actor = "ada"
remove_group_members = { group = "builder", users = ["bob"] }
refused = false

[[checks]]
user = "bob"
action = "app.create"
allowed = true

[[effective]]
user = "bob"
roles = ["builder"]
"#,
    )
    .unwrap();
    let out = test_catalog(&catalog("tooljet.toml"), &file, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.ends_with("\n4 passed, 0 failed\n"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_test_file_exits_2_and_says_what_to_fix() {
    let dir = scratch("invalid");
    let run = |name: &str, catalog_file: &str, body: &str| {
        let file = dir.join(name);
        std::fs::write(&file, body).unwrap();
        let out = test_catalog(&catalog(catalog_file), &file, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            !text(&out.stdout).contains("passed"),
            "{name}: nothing is judged: {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "authzd: {} is not a valid test file; nothing was tested:",
                file.display()
            )),
            "{err}"
        );
        err
    };

    // A misspelt field: the TOML error names it, its line, and the fields there are.
    let err = run(
        "field.tests.toml",
        "tooljet.toml",
        "[[users]]\nid = \"ada\"\ngroups = [\"admin\"]\n\n[[checks]]\nuser = \"ada\"\naction = \"app.create\"\nalowed = true\n",
    );
    assert!(err.contains("unknown field `alowed`"), "{err}");
    assert!(err.contains("line 8"), "{err}");
    assert!(err.contains("`allowed`"), "{err}");

    // Unknown names, each with its case, its line and the closest name the catalog has; all
    // of them at once.
    let body = r#"
[[users]]
id = "ana"
groups = ["analyst"]

[[checks]]
name = "open customers"
user = "ana"
action = "customers.opn"
allowed = true

[[checks]]
user = "bob"
action = "customers.open"
allowed = true

[[checks]]
name = "export"
user = "ana"
action = "customers.export_customers"
context = { include_personal_dat = true }
allowed = false
missing = ["export_personel_data"]

[[admin_calls]]
name = "edit"
actor = "ana"
update_group = { group = "marketerz", permissions = ["view_reports"] }
refused = true
"#;
    let err = run("names.tests.toml", "maestra.toml", body);
    for (needle, expected) in [
        (
            "[[users]]",
            "users \"ana\": unknown group `analyst`; did you mean `analysts`?",
        ),
        (
            "[[checks]]\nname = \"open customers\"",
            "checks \"open customers\": unknown action `customers.opn`; did you mean `customers.open`?",
        ),
        (
            "[[checks]]\nuser = \"bob\"",
            "checks \"bob: customers.open\": unknown user `bob`: declare it in [[users]]",
        ),
        (
            "[[checks]]\nname = \"export\"",
            "checks \"export\": unknown context flag `include_personal_dat`; did you mean `include_personal_data`?",
        ),
        (
            "[[checks]]\nname = \"export\"",
            "checks \"export\": unknown permission `export_personel_data`; did you mean `export_personal_data`?",
        ),
        (
            "[[admin_calls]]",
            "admin_calls \"edit\": unknown group `marketerz`; did you mean `marketers`?",
        ),
    ] {
        let line = line_of(body, needle);
        assert!(
            err.contains(&format!("  line {line}: {expected}")),
            "expected line {line}: {expected}\n{err}"
        );
    }

    // A check the service itself refuses as malformed: a flag its action tests is not sent.
    let err = run(
        "flag.tests.toml",
        "tooljet.toml",
        "[[users]]\nid = \"ada\"\ngroups = [\"admin\"]\n\n[[checks]]\nuser = \"ada\"\naction = \"app.open\"\nresource = \"app:1\"\nallowed = true\n",
    );
    assert!(
        err.contains("line 5: checks \"ada: app.open on app:1\": the check is refused as malformed: context flag `released` is required"),
        "{err}"
    );

    // A fixture the service refuses: a custom group key that breaks the key rule.
    let err = run(
        "fixture.tests.toml",
        "tooljet.toml",
        "[[custom_groups]]\nkey = \"App Editors\"\n",
    );
    assert!(
        err.contains(
            "line 1: custom_groups \"App Editors\": group.key \"App Editors\" is not a valid key"
        ) && err.contains("(try `app_editors`)"),
        "{err}"
    );

    // A file written for another catalog.
    let err = run(
        "other.tests.toml",
        "tooljet.toml",
        "catalog = \"maestra\"\n",
    );
    assert!(
        err.contains(
            "the test file is written for catalog `maestra`, and this catalog is `tooljet`"
        ),
        "{err}"
    );

    // Nothing to run against: a test file or a catalog that can't be read or loaded.
    let missing = dir.join("missing.tests.toml");
    let out = test_catalog(&catalog("tooljet.toml"), &missing, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("cannot read test file"),
        "{out:?}"
    );
    let bad_catalog = dir.join("bad.toml");
    std::fs::write(&bad_catalog, "name = \"x\"\n").unwrap();
    let out = test_catalog(
        bad_catalog.to_str().unwrap(),
        &dir.join("other.tests.toml"),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("missing field `version`"),
        "{}",
        text(&out.stderr)
    );

    // The JSON form lists the problems too.
    let file = dir.join("names.tests.toml");
    let out = test_catalog(&catalog("maestra.toml"), &file, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["problems"].as_array().unwrap().len(), 6, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example catalog and test file of docs/catalog.md are valid and pass, and the page
/// documents every `[admin]` key and every operation a test file may name.
#[test]
fn the_examples_and_tables_of_docs_catalog_md_hold() {
    let doc = std::fs::read_to_string(root().join("docs/catalog.md")).unwrap();
    let example = |name: &str| {
        let marker = format!("<!-- example: {name} -->\n```toml\n");
        let start = doc
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} example"))
            + marker.len();
        let len = doc[start..].find("```").unwrap();
        doc[start..start + len].to_owned()
    };
    let dir = scratch("docs");
    let catalog_file = dir.join("acme.toml");
    std::fs::write(&catalog_file, example("catalog")).unwrap();
    let tests_file = dir.join("acme.tests.toml");
    std::fs::write(&tests_file, example("tests")).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_authzd"))
        .args(["catalog", "check", catalog_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    let out = test_catalog(catalog_file.to_str().unwrap(), &tests_file, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let n = cases_in(&tests_file);
    assert!(
        stdout.ends_with(&format!("\n{n} passed, 0 failed\n")),
        "{stdout}"
    );

    for op in authz_core::admin::AdminOp::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", op.key())),
            "docs/catalog.md does not document [admin] `{}`",
            op.key()
        );
    }
    // The runner lists the operations it knows when a case names none.
    let file = dir.join("no-op.tests.toml");
    std::fs::write(
        &file,
        "[[users]]\nid = \"a\"\n[[admin_calls]]\nactor = \"a\"\nrefused = true\n",
    )
    .unwrap();
    let out = test_catalog(catalog_file.to_str().unwrap(), &file, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let list = err
        .split("names no operation; set one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"))
        .trim();
    let ops: Vec<&str> = list.split(", ").collect();
    assert_eq!(ops.len(), 17, "{list}");
    for op in ops {
        assert!(
            doc.contains(&format!("| `{op}` |")),
            "docs/catalog.md does not document the operation `{op}`"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
