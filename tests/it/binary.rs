//! The `authzd` binary: catalog checking and start-up refusals.

use std::process::Command;

fn authzd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_authzd"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn catalog_check_summarises_valid_catalogs() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = authzd(&["catalog", "check", &format!("{root}/catalogs/maestra.toml")]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("catalog maestra"), "{text}");
    assert!(text.contains("167 (2 internal, 3 aliases)"), "{text}");
    assert!(text.contains("actions:        221"), "{text}");
    let out = authzd(&["catalog", "check", &format!("{root}/catalogs/tooljet.toml")]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn catalog_check_names_the_error() {
    let dir = std::env::temp_dir().join(format!("authzd-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "name = \"x\"\nversion = \"1\"\n[[permissions]]\nname = \"A\"\n[[actions]]\nkey = \"a.b\"\nexpression = \"a & (b\"\n",
    )
    .unwrap();
    let out = authzd(&["catalog", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("action `a.b`") && err.contains("unknown permission `b` at position 6"),
        "{err}"
    );
    let out = authzd(&["catalog", "check", "/nonexistent/catalog.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read catalog"));
}

#[test]
fn refuses_an_unauthenticated_public_listener() {
    let out = authzd(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve on 0.0.0.0:0") && err.contains("--insecure"),
        "{err}"
    );
}
