//! The Kubernetes manifests, rendered and validated against the Kubernetes schemas by the
//! `kubernetes-validate` package (installed from PyPI into a virtualenv under the target dir).

use std::path::{Path, PathBuf};
use std::process::Command;

const VALIDATOR: &str = "kubernetes-validate==1.37.0";

fn venv_python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("k8s-validate-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import kubernetes_validate, yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "cannot create a virtualenv: python3 with venv is needed"
        );
        let out = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", VALIDATOR])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot install {VALIDATOR}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    python
}

fn validate(root: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/validate.py");
    let out = Command::new(venv_python())
        .arg(script)
        .arg("1.33.0")
        .arg(root)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn manifests_validate_and_the_validator_catches_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let (ok, text) = validate(&root);
    assert!(ok, "{text}");
    for resource in [
        "Deployment/authzd (overlays/central)",
        "PodDisruptionBudget/authzd (overlays/central)",
        "HorizontalPodAutoscaler/authzd (overlays/central)",
        "Job/authzd-migrate (overlays/central)",
        "Deployment/shop-api (overlays/sidecar)",
    ] {
        assert!(
            text.contains(&format!("ok {resource}")),
            "{resource} not validated:\n{text}"
        );
    }
    // The same tree with one wrong field fails, naming the resource.
    let broken = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("k8s-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&broken);
    copy_dir(&root, &broken);
    let deployment = broken.join("base/deployment.yaml");
    let text = std::fs::read_to_string(&deployment)
        .unwrap()
        .replace("replicas: 3", "replicas: three");
    std::fs::write(&deployment, text).unwrap();
    let (ok, text) = validate(&broken);
    assert!(!ok, "{text}");
    assert!(text.contains("FAILED Deployment/authzd (base)"), "{text}");
    let _ = std::fs::remove_dir_all(&broken);
}
