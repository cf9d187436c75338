//! The Python example (`examples/python/check.py`) against the real server, with stubs
//! generated from `proto/` by grpcio-tools, installed from PyPI into a virtualenv under the
//! target dir. (The axum service and the authzctl walk-through run in their own crates'
//! tests.)

use crate::helpers::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A virtualenv with the example's requirements, made on first use.
fn venv_python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-example-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, google.protobuf"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "cannot create a virtualenv for the Python example: python3 with venv is needed \
             (Debian/Ubuntu: apt-get install python3-venv)"
        );
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "-r"])
            .arg(Path::new(ROOT).join("examples/python/requirements.txt"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot install examples/python/requirements.txt from PyPI (grpcio, grpcio-tools, \
             protobuf): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_checks_with_generated_stubs() {
    let python = venv_python();
    let generated = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("python-stubs-{}", std::process::id()));
    std::fs::create_dir_all(&generated).unwrap();
    let protos: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("proto/authz/v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(Path::new(ROOT).join("proto"))
        .arg(format!("--python_out={}", generated.display()))
        .arg(format!("--grpc_python_out={}", generated.display()))
        .args(&protos)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "grpc_tools.protoc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let app = TestServer::memory().start().await;
    let out = tokio::process::Command::new(&python)
        .arg(Path::new(ROOT).join("examples/python/check.py"))
        .env("PYTHONPATH", &generated)
        .env("AUTHZ_SERVER", app.addr.to_string())
        .env_remove("AUTHZ_API_KEY")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let json_end = stdout.find("\nbatch:").unwrap();
    let answers: serde_json::Value = serde_json::from_str(&stdout[..json_end]).unwrap();
    // JSON shows the decision of a denial, though it leaves out `allowed: false`.
    assert_eq!(answers["delete_customers"]["decision"], "DECISION_DENIED");
    assert!(answers["delete_customers"].get("allowed").is_none());
    assert_eq!(
        answers["delete_customers"]["missingPermissions"],
        serde_json::json!(["delete_customers"])
    );
    assert!(answers["delete_customers"]["explanation"]["summary"].is_string());
    assert_eq!(answers["export_customers"]["decision"], "DECISION_ALLOWED");
    assert_eq!(answers["export_customers"]["revision"], "2");
    let lines: Vec<&str> = stdout[json_end..]
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines[0], "batch: DECISION_ALLOWED ");
    assert_eq!(lines[1], "batch: DECISION_ALLOWED ");
    assert!(
        lines[2].starts_with("batch: DECISION_UNSPECIFIED ")
            && lines[2].contains("no_such_permission"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("error: INVALID_ARGUMENT") && lines[3].contains("export_customer"),
        "{}",
        lines[3]
    );
    let _ = std::fs::remove_dir_all(&generated);
    app.stop().await;
}
