//! Keeps the benchmark harness working: `scripts/bench.sh --smoke` on a small data set in a
//! fresh database (every step of the full suite, seconds each, no targets checked). Slow:
//! runs with `AUTHZ_SLOW_TESTS` set.
//!
//! A test binary of its own: cargo runs test binaries one after another, so the harness's
//! builds and load never overlap the timing-bounded fault scenarios in `it`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Shared with the `it` suite, which uses more of it.
#[allow(dead_code)]
#[path = "it/pg.rs"]
mod pg;

fn slow() -> bool {
    std::env::var_os("AUTHZ_SLOW_TESTS").is_some_and(|v| !v.is_empty() && v != "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_harness_runs_end_to_end() {
    if !slow() {
        eprintln!("skipped: set AUTHZ_SLOW_TESTS=1 to run the benchmark smoke run");
        return;
    }
    let (url, _) = pg::fresh_database().await;
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tokio::process::Command::new("bash")
        .arg(format!("{root}/scripts/bench.sh"))
        .arg("--smoke")
        .env("AUTHZ_BENCH_DATABASE_URL", &url)
        // `cargo test` holds the lock on its own target directory while tests run.
        .env("CARGO_TARGET_DIR", format!("{root}/target/bench-smoke"))
        .current_dir(root)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench.sh --smoke failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = std::fs::read_to_string(format!("{root}/target/benchmarks-smoke.md")).unwrap();
    for section in [
        "## In-process decision",
        "### Postgres paths",
        "### Full in-process path",
        "### gRPC on loopback",
        "| cerbos |",
        "| authz-check |",
        "| echo |",
        "### Check through the client vs raw tonic stubs",
        "| client / stubs |",
        "### Replicas on one Postgres",
        "### Large data set",
    ] {
        assert!(
            report.contains(section),
            "{section} missing from:\n{report}"
        );
    }
}
