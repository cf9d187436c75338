//! Protobuf conventions: `buf lint` on `proto/` (naming, comments on everything), and `buf
//! breaking` of `proto/` against its previous version — the parent of the last commit that
//! changed it, or HEAD while it has uncommitted changes. buf comes from the PyPI package
//! `buf-bin`, installed into a virtualenv under the target dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUF: &str = "buf-bin==1.75.0";
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn buf() -> PathBuf {
    // The tests run in parallel, as threads or as processes: one sets the virtualenv up while
    // the others wait for it, on a file lock.
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("buf-venv");
    let lock = std::fs::File::create(venv.with_extension("lock")).unwrap();
    // Only the tests lock files; the crates keep building on the workspace's older minimum.
    #[allow(clippy::incompatible_msrv)]
    lock.lock().unwrap();
    let buf = venv.join("bin/buf");
    if Command::new(&buf)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return buf;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "cannot create a virtualenv for buf: python3 with venv is needed (Debian/Ubuntu: \
         apt-get install python3-venv)"
    );
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", BUF])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cannot install {BUF} from PyPI (it ships the buf binary): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    buf
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn git(args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap()
}

fn git_ok(args: &[&str]) -> String {
    let o = git(args);
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_proto(to: &Path) {
    let dir = to.join("authz/v1");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(Path::new(ROOT).join("proto/authz/v1")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
}

#[test]
fn buf_lint_passes_and_catches_an_undocumented_field() {
    let buf = buf();
    let out = Command::new(&buf)
        .arg("lint")
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(out.status.success(), "buf lint:\n{}", text(&out));

    // The rules bite: a field without a comment is flagged by name.
    let dir = scratch("buf-lint");
    copy_proto(&dir.join("proto"));
    std::fs::copy(Path::new(ROOT).join("buf.yaml"), dir.join("buf.yaml")).unwrap();
    let common = dir.join("proto/authz/v1/common.proto");
    let edited = std::fs::read_to_string(&common).unwrap().replace(
        "  string id = 2;\n",
        "  string id = 2;\n  string label = 3;\n",
    );
    std::fs::write(&common, edited).unwrap();
    let out = Command::new(&buf)
        .arg("lint")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Field \"label\" should have a non-empty comment"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn buf_breaking_against_the_previous_proto() {
    let buf = buf();
    assert!(
        git(&["rev-parse", "--git-dir"]).status.success(),
        "buf breaking needs the git history: run the tests in a git clone"
    );
    // Uncommitted changes are compared with HEAD; otherwise the last change with what it
    // changed.
    let dirty = !git_ok(&["status", "--porcelain", "--", "proto"]).is_empty();
    let base = if dirty {
        git_ok(&["rev-parse", "HEAD"])
    } else {
        let last = git_ok(&["log", "-1", "--format=%H", "--", "proto"]);
        let parent = git(&["rev-parse", "--verify", "--quiet", &format!("{last}^")]);
        if !parent.status.success() {
            if git_ok(&["rev-parse", "--is-shallow-repository"]) == "true" {
                eprintln!(
                    "skipped buf breaking: this is a shallow clone and the commit before {last} \
                     (the last that changed proto/) is not in it; `git fetch --unshallow` to run it"
                );
                return;
            }
            eprintln!(
                "buf breaking: proto/ has no earlier version than {last}; nothing to compare"
            );
            return;
        }
        String::from_utf8_lossy(&parent.stdout).trim().to_owned()
    };
    let dir = scratch("buf-base");
    let archive = Command::new("git")
        .args(["archive", "--format=tar", &base, "proto"])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        archive.status.success(),
        "git archive {base}: {}",
        text(&archive)
    );
    let tar = dir.join("base.tar");
    std::fs::write(&tar, &archive.stdout).unwrap();
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(untar.status.success(), "tar: {}", text(&untar));

    let mut breaking = Command::new(&buf);
    if git(&["cat-file", "-e", &format!("{base}:buf.yaml")])
        .status
        .success()
    {
        breaking
            .args(["breaking", "proto", "--against"])
            .current_dir(ROOT);
    } else {
        // A base from before buf.yaml (and the language package options it brought) is held
        // to wire and JSON compatibility; from then on, to the file rules of buf.yaml.
        breaking
            .args(["breaking", ".", "--config"])
            .arg(r#"{"version":"v2","breaking":{"use":["WIRE_JSON"]}}"#)
            .arg("--against")
            .current_dir(Path::new(ROOT).join("proto"));
    }
    breaking.arg(dir.join("proto"));
    let out = breaking.output().unwrap();
    assert!(
        out.status.success(),
        "buf breaking against {base}:\n{}",
        text(&out)
    );

    // The check bites: removing a field of the current proto is a breaking change, named.
    let changed = scratch("buf-changed");
    copy_proto(&changed);
    let authz = changed.join("authz/v1/authz.proto");
    let edited = std::fs::read_to_string(&authz).unwrap().replace(
        "  Decision decision = 6;\n}\n\n// A restriction",
        "}\n\n// A restriction",
    );
    std::fs::write(&authz, edited).unwrap();
    let out = Command::new(&buf)
        .arg("breaking")
        .arg(&changed)
        .arg("--against")
        .arg(Path::new(ROOT).join("proto"))
        .args([
            "--config",
            r#"{"version":"v2","breaking":{"use":["FILE"]}}"#,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("\"decision\""), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&changed);
}
