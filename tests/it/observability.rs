//! What an operator watches, in `deploy/observability`: the Prometheus rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`); the Grafana dashboard
//! is well formed and its queries, like the rules', name only metrics authzd exports (or the
//! rules record); and a real Prometheus scraping a running authzd gets its metrics, evaluates
//! every rule without error, records a series for each recording rule and answers every
//! dashboard query.
//!
//! promtool and prometheus come from PATH, or from Debian's `prometheus` package, which the
//! first run downloads (`apt-get download`, after `apt-get update` when run as root and the
//! package lists are empty) and unpacks under the target directory: nothing is installed on
//! the machine and no service is started.

use crate::daemon::{Authzd, eventually, free_port};
use authz::grpc::pb;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const HOW_TO_GET_PROMETHEUS: &str = "the observability tests need promtool and prometheus: \
put both on PATH, or let the tests fetch Debian's `prometheus` package (needs apt-get and \
dpkg-deb, and the package lists: `apt-get update` as root), or install it \
(Debian/Ubuntu: `apt-get install prometheus`; elsewhere: https://prometheus.io/download/)";

fn observability() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/observability")
}

struct Tools {
    promtool: PathBuf,
    prometheus: PathBuf,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    match TOOLS.get_or_init(find_or_fetch) {
        Ok(tools) => tools,
        Err(e) => panic!("{e}\n{HOW_TO_GET_PROMETHEUS}"),
    }
}

fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file() && runs(p))
}

fn find_or_fetch() -> Result<Tools, String> {
    if let (Some(promtool), Some(prometheus)) = (on_path("promtool"), on_path("prometheus")) {
        return Ok(Tools {
            promtool,
            prometheus,
        });
    }
    let unpacked = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("prometheus-deb");
    let tools = Tools {
        promtool: unpacked.join("usr/bin/promtool"),
        prometheus: unpacked.join("usr/bin/prometheus"),
    };
    if runs(&tools.promtool) && runs(&tools.prometheus) {
        return Ok(tools);
    }
    // Test processes run side by side: each downloads and unpacks into directories of its own
    // and renames the result into place, so none removes another's files midway.
    let pid = std::process::id();
    let download =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("prometheus-deb-download.{pid}"));
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).map_err(|e| format!("cannot create {download:?}: {e}"))?;
    let fetch = || {
        Command::new("apt-get")
            .args(["download", "-q", "prometheus"])
            .current_dir(&download)
            .output()
    };
    let mut out = fetch().map_err(|e| format!("cannot run apt-get: {e}"))?;
    if !out.status.success() && is_root() {
        // A fresh machine has no package lists yet.
        let update = Command::new("apt-get")
            .args(["update", "-q", "-o", "DPkg::Lock::Timeout=300"])
            .output()
            .map_err(|e| format!("cannot run apt-get update: {e}"))?;
        if !update.status.success() {
            return Err(format!(
                "apt-get update failed: {}",
                String::from_utf8_lossy(&update.stderr)
            ));
        }
        out = fetch().map_err(|e| format!("cannot run apt-get: {e}"))?;
    }
    if !out.status.success() {
        return Err(format!(
            "apt-get download prometheus failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let deb = std::fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download prometheus left no .deb file")?;
    let staged = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("prometheus-deb.{pid}"));
    let _ = std::fs::remove_dir_all(&staged);
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&staged)
        .output()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    let _ = std::fs::remove_dir_all(&download);
    if !out.status.success() {
        return Err(format!(
            "dpkg-deb -x {deb:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // A rename onto a directory with files fails: another process's copy, put in place first,
    // is kept; one that does not run (left half unpacked by an older run) is replaced.
    if std::fs::rename(&staged, &unpacked).is_err()
        && !(runs(&tools.promtool) && runs(&tools.prometheus))
    {
        let _ = std::fs::remove_dir_all(&unpacked);
        let _ = std::fs::rename(&staged, &unpacked);
    }
    let _ = std::fs::remove_dir_all(&staged);
    if !(runs(&tools.promtool) && runs(&tools.prometheus)) {
        return Err(format!(
            "the unpacked {deb:?} has no working usr/bin/promtool and usr/bin/prometheus"
        ));
    }
    Ok(tools)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(&tools().promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn rules_text() -> String {
    std::fs::read_to_string(observability().join("authzd-rules.yaml")).unwrap()
}

/// `(record names, every expression)` of the rules file, read line by line (it keeps every
/// `expr` on one line or in a `|` block).
fn rules() -> (Vec<String>, Vec<String>) {
    let text = rules_text();
    let mut records = Vec::new();
    let mut exprs = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- record: ") {
            records.push(name.trim().to_owned());
        }
        if let Some(expr) = t.strip_prefix("expr: ") {
            if expr.trim() == "|" {
                let indent = lines.peek().map_or(0, |l| l.len() - l.trim_start().len());
                let mut block = String::new();
                while let Some(l) = lines.peek() {
                    if l.trim().is_empty() || l.len() - l.trim_start().len() < indent {
                        break;
                    }
                    block.push_str(l.trim());
                    block.push('\n');
                    lines.next();
                }
                exprs.push(block);
            } else {
                exprs.push(expr.trim().to_owned());
            }
        }
    }
    (records, exprs)
}

fn alerts() -> Vec<String> {
    rules_text()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert: "))
        .map(|a| a.trim().to_owned())
        .collect()
}

/// The metric names a PromQL expression reads: identifiers outside label matchers, range
/// selectors and `by (...)`-style label lists, that do not call a function and are not
/// keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations may put their `by (...)` before the parenthesis, so they are keywords.
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let (mut braces, mut brackets) = (0usize, 0usize);
    let mut label_list = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            ')' if label_list => label_list = false,
            c if c.is_ascii_digit() || c == '$' => {
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || matches!(chars[i + 1], '.' | '_'))
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || matches!(chars[i + 1], '_' | ':'))
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
                if braces > 0 || brackets > 0 || label_list {
                } else if LABEL_LISTS.contains(&word.as_str()) {
                    label_list = next == Some(&'(');
                } else if KEYWORDS.contains(&word.as_str()) || next == Some(&'(') {
                } else {
                    out.insert(word);
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Every name `/metrics` can show, by asking a server's metrics with every optional family
/// switched on (a store with a cache, TLS, the decision log, a busy tenant).
fn exported_names() -> HashSet<String> {
    let m = authz::metrics::Metrics::new().unwrap();
    m.build_info("maestra", "1");
    m.tls_certificate_expiry(0);
    let _ = m.decision_log();
    m.tenant_request("t", true);
    m.refusal("GetUser", "key");
    m.request(
        "/authz.v1.AuthzService/Check",
        "UNAVAILABLE",
        Duration::ZERO,
    );
    m.invalidation_lag(Duration::ZERO);
    let text = m.render(Some(authz::store::StoreStats::default()));
    names_in_exposition(&text)
}

/// The series names an exposition's `# TYPE` lines declare (histograms as their `_bucket`,
/// `_sum` and `_count`).
fn names_in_exposition(text: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        }
        out.insert(name.to_owned());
    }
    out
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(observability().join("authzd-dashboard.json")).unwrap(),
    )
    .unwrap()
}

/// `(panel title, expression)` for every query of the dashboard.
fn dashboard_queries(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap_or_default().to_owned(),
                t["expr"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (job, le) (rate(authz_x_bucket{job=~"$job",code!="OK"}[$__rate_interval])) / on (job) group_left (a) b:c:d > 0.5"#
        ),
        ["authz_x_bucket", "b:c:d"]
    );
    assert_eq!(
        names(
            "histogram_quantile(0.99, sum without (instance) (rate(x_total[5m] offset 1h))) and bool up"
        ),
        ["up", "x_total"]
    );
    assert_eq!(names("(a - time()) / 86400 < 14 * 86400"), ["a"]);
    assert_eq!(names("topk(10, sum by (tenant) (x))"), ["x"]);
}

/// `promtool check rules` accepts the rules, `promtool test rules` passes their unit tests, and
/// both catch a broken copy: a rule that does not parse, an alert whose threshold moved.
#[test]
fn rules_pass_promtool_and_their_unit_tests() {
    let dir = observability();
    let (ok, out) = promtool(&["check", "rules", "authzd-rules.yaml"], &dir);
    assert!(ok, "{out}");
    let (records, exprs) = rules();
    let count = records.len() + alerts().len();
    assert_eq!(exprs.len(), count);
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}"
    );
    let (ok, out) = promtool(&["test", "rules", "authzd-rules.test.yaml"], &dir);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    let broken = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rules-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&broken);
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(
        dir.join("authzd-rules.test.yaml"),
        broken.join("authzd-rules.test.yaml"),
    )
    .unwrap();
    let text = rules_text();
    let moved = "expr: job:authz_request_errors:ratio_rate5m > 0.05";
    assert!(text.contains(moved));
    std::fs::write(
        broken.join("authzd-rules.yaml"),
        text.replace(moved, "expr: job:authz_request_errors:ratio_rate5m > 0.5"),
    )
    .unwrap();
    let (ok, out) = promtool(&["test", "rules", "authzd-rules.test.yaml"], &broken);
    assert!(!ok, "{out}");
    assert!(out.contains("AuthzErrorRatioHigh"), "{out}");
    std::fs::write(
        broken.join("authzd-rules.yaml"),
        text.replace(
            "expr: authz_catalog_compatible == 0",
            "expr: authz_catalog_compatible == (",
        ),
    )
    .unwrap();
    let (ok, out) = promtool(&["check", "rules", "authzd-rules.yaml"], &broken);
    assert!(!ok, "{out}");
    let _ = std::fs::remove_dir_all(&broken);
}

/// Every alert the operations guide promises is in the rules, and every alert is explained in
/// the guide.
#[test]
fn every_alert_is_documented() {
    let alerts = alerts();
    for wanted in [
        "AuthzListenerDown",
        "AuthzInvalidationLagHigh",
        "AuthzErrorRatioHigh",
        "AuthzCacheBypassHigh",
        "AuthzReadinessFlapping",
        "AuthzCatalogIncompatible",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "no alert {wanted}");
    }
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    for alert in &alerts {
        assert!(
            guide.contains(&format!("`{alert}`")),
            "docs/operations.md does not explain {alert}"
        );
    }
}

/// The dashboard is a Grafana dashboard that lays out, and every query it and the rules make
/// names a metric authzd exports or a rule records.
#[test]
fn the_dashboard_is_well_formed_and_asks_only_for_what_authzd_exports() {
    let d = dashboard();
    assert_eq!(d["uid"], "authzd");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let variables: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    let panels = d["panels"].as_array().unwrap();
    let mut ids = HashSet::new();
    let mut areas: Vec<(u64, u64, u64, u64, &str)> = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(
            w > 0 && h > 0 && x + w <= 24,
            "{title} does not fit the grid"
        );
        for (ox, oy, ow, oh, other) in &areas {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "{title} overlaps {other}");
        }
        areas.push((x, y, w, h, title));
        if p["type"] == "row" {
            continue;
        }
        assert!(!title.is_empty());
        assert!(
            p["description"].as_str().is_some_and(|s| !s.is_empty()),
            "{title} has no description"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        let refs: HashSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds repeat");
    }
    let exported = exported_names();
    let (records, rule_exprs) = rules();
    let known: HashSet<&str> = exported
        .iter()
        .map(String::as_str)
        .chain(records.iter().map(String::as_str))
        .collect();
    let queries = dashboard_queries(&d);
    let mut used = HashSet::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: {expr} reads no metric");
        for name in names.iter().cloned() {
            assert!(
                known.contains(name.as_str()),
                "{title}: `{name}` is neither exported by authzd nor recorded by a rule"
            );
            used.insert(name);
        }
        // Every query follows the job and instance variables (a recorded series has no
        // instance).
        assert!(
            expr.contains("job=~\"$job\""),
            "{title}: {expr} ignores $job"
        );
        if !names.iter().any(|n| n.contains(':')) {
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores $instance"
            );
        }
    }
    for expr in &rule_exprs {
        for name in metric_names(expr) {
            assert!(
                known.contains(name.as_str()),
                "the rule `{expr}` reads `{name}`, which authzd does not export"
            );
        }
    }
    // What the dashboard is for: traffic, errors, latency, the cache helping, invalidations
    // in time, listener up, readiness, the admin API probed, the hot tenants, the catalog.
    for family in [
        "authz_requests_total",
        "authz_request_duration_seconds_bucket",
        "job:authz_request_errors:ratio_rate5m",
        "authz_cache_hits_total",
        "authz_cache_misses_total",
        "authz_cache_entries",
        "authz_cache_weight_bytes",
        "authz_invalidation_lag_seconds_bucket",
        "authz_cache_max_staleness_seconds",
        "authz_listener_connected",
        "authz_ready",
        "authz_readiness_changes_total",
        "authz_admin_refusals_total",
        "authz_tenant_requests_total",
        "authz_catalog_compatible",
        "authz_build_info",
        "authz_watch_streams",
        "process_resident_memory_bytes",
    ] {
        assert!(
            used.contains(family),
            "the dashboard does not show {family}"
        );
    }
}

/// `GET path` over HTTP/1.0 (no chunked bodies): the status line's code and the body.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.ok()?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query; `Err` with Prometheus' error for a query it refuses.
async fn query(port: u16, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let (_, body) = http_get(port, &format!("/api/v1/query?query={}", encode(expr)))
        .await
        .ok_or("no answer")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    if v["status"] != "success" {
        return Err(body);
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// A dashboard query as Grafana sends it with every job and instance selected.
fn as_grafana_sends_it(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

/// A real Prometheus scrapes a running authzd on Postgres with the rules loaded: the scrape
/// succeeds, every rule evaluates without error, every recording rule produces a series, no
/// alert fires on the healthy server, and every dashboard query is one Prometheus answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_authzd_and_records_every_rule() {
    let tools = tools();
    let (url, _) = crate::pg::fresh_database().await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let decisions = dir.join("decisions.log");
    let authzd = Authzd::start(&[
        "--database-url",
        &url,
        "--migrate",
        "--decision-log",
        decisions.to_str().unwrap(),
    ])
    .await;
    let channel = authzd.channel().await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    let authz = pb::authz_service_client::AuthzServiceClient::new(channel);
    admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            display_name: "Acme".into(),
        })
        .await
        .unwrap();
    admin
        .add_group_members(pb::AddGroupMembersRequest {
            tenant_id: "acme".into(),
            group_key: "analysts".into(),
            user_ids: vec!["alice".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    // A refused admin call, so the refusals have a series.
    let refused = admin
        .add_group_members(pb::AddGroupMembersRequest {
            tenant_id: "acme".into(),
            group_key: "owners".into(),
            user_ids: vec!["alice".into()],
            actor_user_id: "alice".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
    // Checks keep coming while Prometheus scrapes, so rates are rates.
    let traffic = tokio::spawn(async move {
        let mut authz = authz;
        loop {
            let _ = authz
                .check(crate::helpers::perm_check("acme", "alice", "view_reports"))
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: authzd\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            observability().join("authzd-rules.yaml").display(),
            authzd.metrics_port
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = tokio::process::Command::new(&tools.prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let prometheus_log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();

    // Generous patience for a loaded machine; nothing here is timed, only awaited.
    let patience = Duration::from_secs(180);
    let until = |what: String| {
        let deadline = Instant::now() + patience;
        move || {
            assert!(
                Instant::now() < deadline,
                "gave up waiting: {what}\nprometheus log:\n{}",
                prometheus_log()
            );
        }
    };
    let still = until("the scrape of authzd to succeed".into());
    loop {
        if let Some((200, body)) = http_get(port, "/api/v1/targets").await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let targets = v["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if targets.len() == 1 && targets[0]["health"] == "up" {
                assert_eq!(targets[0]["lastError"], "");
                break;
            }
        }
        still();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (records, _) = rules();
    for record in &records {
        let still = until(format!("a series of the recording rule {record}"));
        loop {
            if query(port, record).await.is_ok_and(|r| !r.is_empty()) {
                break;
            }
            still();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Every rule has been evaluated, and none failed.
    let still = until("every rule to be evaluated".into());
    loop {
        let (_, body) = http_get(port, "/api/v1/rules").await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rules: Vec<serde_json::Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        for r in &rules {
            assert_ne!(r["health"], "err", "{r}");
        }
        if rules.len() == records.len() + alerts().len()
            && rules.iter().all(|r| r["health"] == "ok")
        {
            break;
        }
        still();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let firing = query(port, "ALERTS{alertstate=\"firing\"}").await.unwrap();
    assert!(firing.is_empty(), "alerts on a healthy server: {firing:?}");
    // The scrape carries what the dashboard needs from a running server.
    let scraped = query(port, "count by (__name__) ({job=\"authzd\"})")
        .await
        .unwrap();
    let scraped: HashSet<String> = scraped
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_owned))
        .collect();
    for name in [
        "authz_build_info",
        "authz_ready",
        "authz_listener_connected",
        "authz_listener_staleness_seconds",
        "authz_tenant_requests_total",
        "authz_decision_log_records_total",
        "process_cpu_seconds_total",
    ] {
        assert!(scraped.contains(name), "{name} not scraped: {scraped:?}");
    }
    for (title, expr) in dashboard_queries(&dashboard()) {
        let result = query(port, &as_grafana_sends_it(&expr)).await;
        assert!(result.is_ok(), "{title}: {expr}: {result:?}");
    }
    let hit_ratio = eventually("a cache hit ratio", || async {
        query(port, "job:authz_cache_hit_ratio:rate5m")
            .await
            .ok()
            .and_then(|r| r.first()?["value"][1].as_str()?.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    })
    .await;
    assert!((0.0..=1.0).contains(&hit_ratio), "{hit_ratio}");
    traffic.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
