//! The decision log (`--decision-log`): one JSON line per decided Check or BatchCheck item, for
//! audits of who was allowed what. Off by default.
//!
//! A line says when, through which method and with which caller role, for which tenant and
//! user, what was asked (a permission, an action or an expression, the resource, the context
//! flags), whether it was allowed, what was missing or which restriction denied it, and the
//! revision it was decided at. `--decision-log-mask` writes chosen fields as `***`;
//! `--decision-log-sample` writes an even fraction of the decisions.
//!
//! The check path never waits on the log: lines go through a bounded queue to a writer thread,
//! and when the writer falls behind (a slow disk) lines are dropped and counted
//! (`authz_decision_log_dropped_total`) rather than slowing checks down.

use crate::app::{ResourceInput, TargetInput};
use crate::config::MaskedField;
use crate::metrics::DecisionLogCounters;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

/// Lines queued for the writer at most; past it, decisions are dropped and counted.
const QUEUE: usize = 65_536;

/// How a masked field is written.
const MASKED: &str = "***";

/// Where the decision log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
    /// A file, appended to, reopened on [`DecisionLog::reopen`].
    File(PathBuf),
}

impl Target {
    /// `stdout`, `stderr` (or `-` for stdout), else a file path.
    pub fn parse(s: &str) -> Target {
        match s {
            "stdout" | "-" => Target::Stdout,
            "stderr" => Target::Stderr,
            path => Target::File(PathBuf::from(path)),
        }
    }
}

/// One decision, as the Authz service hands it over.
pub struct Decision<'a> {
    /// `Check` or `BatchCheck`.
    pub method: &'static str,
    /// The caller's role.
    pub role: &'static str,
    pub tenant: &'a str,
    pub user: &'a str,
    pub target: Option<&'a TargetInput>,
    pub resource: Option<&'a ResourceInput>,
    pub context: &'a HashMap<String, bool>,
    pub allowed: bool,
    pub missing: &'a [String],
    /// The resource type whose restriction denied the check.
    pub restricted_by: Option<&'a str>,
    pub revision: u64,
    /// The item's position in a BatchCheck.
    pub item: Option<usize>,
}

enum Message {
    Line(String),
    Reopen,
    Flush(std::sync::mpsc::Sender<()>),
}

pub struct DecisionLog {
    tx: SyncSender<Message>,
    rate: f64,
    seen: AtomicU64,
    mask_user: bool,
    mask_resource: bool,
    mask_context: bool,
    counters: Option<DecisionLogCounters>,
}

impl DecisionLog {
    /// Opens the log (a file is created or appended to now, so a path that cannot be written
    /// stops the start) and starts its writer thread. `rate` is the fraction of decisions
    /// written (0 < rate ≤ 1).
    pub fn open(
        target: Target,
        rate: f64,
        mask: &[MaskedField],
        counters: Option<DecisionLogCounters>,
    ) -> Result<Arc<DecisionLog>, String> {
        let out = open(&target)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let written = counters.as_ref().map(|c| c.written.clone());
        std::thread::Builder::new()
            .name("decision-log".to_owned())
            .spawn(move || write_lines(&target, out, &rx, written.as_ref()))
            .map_err(|e| format!("cannot start the decision log's writer: {e}"))?;
        Ok(Arc::new(DecisionLog {
            tx,
            rate,
            seen: AtomicU64::new(0),
            mask_user: mask.contains(&MaskedField::User),
            mask_resource: mask.contains(&MaskedField::Resource),
            mask_context: mask.contains(&MaskedField::Context),
            counters,
        }))
    }

    /// Whether this decision is in the sample: of every `n` decisions, `rate × n` (rounded
    /// down) are, evenly spread.
    fn sampled(&self) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        let k = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((k + 1.0) * self.rate).floor() > (k * self.rate).floor()
    }

    /// Queues one decision's line (if sampled); never blocks.
    pub fn record(&self, d: &Decision<'_>) {
        if !self.sampled() {
            return;
        }
        let mut line = self.render(d).to_string();
        line.push('\n');
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                if let Some(c) = &self.counters {
                    c.dropped.inc();
                }
            }
        }
    }

    fn render(&self, d: &Decision<'_>) -> serde_json::Value {
        use serde_json::{Value, json};
        let mut time = String::new();
        {
            use tracing_subscriber::fmt::time::FormatTime;
            let _ = tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut time));
        }
        let mut line = serde_json::Map::new();
        line.insert("time".into(), Value::String(time));
        line.insert("method".into(), d.method.into());
        if let Some(item) = d.item {
            line.insert("item".into(), item.into());
        }
        line.insert("role".into(), d.role.into());
        line.insert("tenant".into(), d.tenant.into());
        line.insert(
            "user".into(),
            if self.mask_user { MASKED } else { d.user }.into(),
        );
        match d.target {
            Some(TargetInput::Permission(p)) => line.insert("permission".into(), p.as_str().into()),
            Some(TargetInput::Action(a)) => line.insert("action".into(), a.as_str().into()),
            Some(TargetInput::Expression(e)) => line.insert("expression".into(), e.as_str().into()),
            None => None,
        };
        if let Some(r) = d.resource {
            let id = if self.mask_resource { MASKED } else { &r.id };
            line.insert(
                "resource".into(),
                json!({ "type": r.resource_type, "id": id }),
            );
        }
        if !d.context.is_empty() {
            let context = if self.mask_context {
                Value::String(MASKED.into())
            } else {
                let sorted: std::collections::BTreeMap<_, _> = d.context.iter().collect();
                json!(sorted)
            };
            line.insert("context".into(), context);
        }
        line.insert("allowed".into(), d.allowed.into());
        if !d.missing.is_empty() {
            line.insert("missing".into(), json!(d.missing));
        }
        if let Some(t) = d.restricted_by {
            line.insert("denied_by_restriction".into(), t.into());
        }
        line.insert("revision".into(), d.revision.to_string().into());
        Value::Object(line)
    }

    /// Reopens a file target (after log rotation moved it away).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Message::Reopen);
    }

    /// Waits (at most `patience`) until every line queued so far is written out.
    pub fn flush(&self, patience: Duration) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(patience);
        }
    }
}

fn open(target: &Target) -> Result<Box<dyn Write + Send>, String> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::BufWriter::new(std::io::stdout())),
        Target::Stderr => Box::new(std::io::BufWriter::new(std::io::stderr())),
        Target::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the decision log {}: {e}", path.display()))?;
            Box::new(std::io::BufWriter::new(file))
        }
    })
}

/// The writer thread: writes lines as they come, flushing whenever the queue runs dry, until
/// the log is dropped.
fn write_lines(
    target: &Target,
    mut out: Box<dyn Write + Send>,
    rx: &Receiver<Message>,
    written: Option<&prometheus::IntCounter>,
) {
    let failures = crate::telemetry::Throttled::new(Duration::from_secs(10));
    loop {
        let message = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                let _ = out.flush();
                match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match message {
            Message::Line(line) => match out.write_all(line.as_bytes()) {
                Ok(()) => {
                    if let Some(w) = written {
                        w.inc();
                    }
                }
                Err(e) => {
                    if let Some(n) = failures.occurred() {
                        tracing::warn!(error = %e, failed = n, "cannot write the decision log");
                    }
                }
            },
            Message::Reopen => {
                let _ = out.flush();
                if let Target::File(path) = target {
                    match open(target) {
                        Ok(new) => {
                            out = new;
                            tracing::info!(file = %path.display(), "decision log reopened");
                        }
                        Err(e) => tracing::error!(
                            error = %e,
                            "decision log not reopened; writing on to the file already open"
                        ),
                    }
                }
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(name: &str, rate: f64, mask: &[MaskedField]) -> (Arc<DecisionLog>, PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "authzd-decisions-{}-{name}.log",
            std::process::id(),
        ));
        let _ = std::fs::remove_file(&path);
        (
            DecisionLog::open(Target::File(path.clone()), rate, mask, None).unwrap(),
            path,
        )
    }

    fn decision<'a>(
        target: &'a TargetInput,
        resource: &'a ResourceInput,
        context: &'a HashMap<String, bool>,
        missing: &'a [String],
    ) -> Decision<'a> {
        Decision {
            method: "Check",
            role: "check",
            tenant: "acme",
            user: "alice",
            target: Some(target),
            resource: Some(resource),
            context,
            allowed: false,
            missing,
            restricted_by: None,
            revision: 7,
            item: None,
        }
    }

    #[test]
    fn lines_say_who_asked_what_and_the_answer() {
        let (log, path) = log("lines", 1.0, &[]);
        let target = TargetInput::Action("customers.export_customers".into());
        let resource = ResourceInput {
            resource_type: "folder".into(),
            id: "spring".into(),
        };
        let context = HashMap::from([("include_personal_data".to_owned(), true)]);
        let missing = vec!["export_personal_data".to_owned()];
        log.record(&decision(&target, &resource, &context, &missing));
        log.flush(Duration::from_secs(10));
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["action"], "customers.export_customers");
        assert_eq!(
            v["resource"],
            serde_json::json!({"type": "folder", "id": "spring"})
        );
        assert_eq!(
            v["context"],
            serde_json::json!({"include_personal_data": true})
        );
        assert_eq!(v["allowed"], false);
        assert_eq!(v["missing"], serde_json::json!(["export_personal_data"]));
        assert_eq!(v["revision"], "7");
        assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn masked_fields_are_not_written() {
        let mask = [
            MaskedField::User,
            MaskedField::Resource,
            MaskedField::Context,
        ];
        let (log, path) = log("masked", 1.0, &mask);
        let target = TargetInput::Permission("view_reports".into());
        let resource = ResourceInput {
            resource_type: "folder".into(),
            id: "secret-folder".into(),
        };
        let context = HashMap::from([("multibrand".to_owned(), true)]);
        log.record(&decision(&target, &resource, &context, &[]));
        log.flush(Duration::from_secs(10));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("alice")
                && !text.contains("secret-folder")
                && !text.contains("multibrand"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(v["user"], "***");
        assert_eq!(v["resource"]["type"], "folder");
        assert_eq!(v["resource"]["id"], "***");
        assert_eq!(v["context"], "***");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sampling_writes_an_even_fraction() {
        let (log, path) = log("sampled", 0.25, &[]);
        let target = TargetInput::Permission("view_reports".into());
        let resource = ResourceInput {
            resource_type: "folder".into(),
            id: "f".into(),
        };
        let context = HashMap::new();
        for _ in 0..100 {
            log.record(&decision(&target, &resource, &context, &[]));
        }
        log.flush(Duration::from_secs(10));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 25);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_unwritable_file_is_refused_at_open() {
        let err = DecisionLog::open(
            Target::File(PathBuf::from("/nonexistent-dir/decisions.log")),
            1.0,
            &[],
            None,
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("cannot open the decision log /nonexistent-dir/decisions.log: "),
            "{err}"
        );
    }
}
