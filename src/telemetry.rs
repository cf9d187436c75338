//! Logs and traces. Logs go to stderr as text or JSON (`RUST_LOG` sets levels); text is
//! coloured only on a terminal (and never with `NO_COLOR` set). When an OTLP endpoint is
//! configured (`OTEL_EXPORTER_OTLP_ENDPOINT`), spans are exported over OTLP/gRPC; the gate
//! opens a span per RPC whose parent is the W3C `traceparent` of the request.
//!
//! The gate logs every RPC once it has answered ([`log_rpc`]): one line at debug under the
//! target `authz::rpc` (`RUST_LOG=info,authz::rpc=debug`), and the server's own failures
//! (INTERNAL, UNAVAILABLE, ...) at warn or error, at most once a second per method and code
//! with the number held back. Handlers tell it the tenant and the revision they answered at
//! through a task-local ([`tenant`], [`answered_at`]); nothing else of a request is logged (no
//! key, no context value).

use crate::config::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the trace exporter alive; flushes it on [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports every finished span now.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }

    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: logs (`RUST_LOG`, else `default_filter`), plus OTLP export to
/// `otlp_endpoint` when given.
pub fn init(
    format: LogFormat,
    default_filter: &str,
    otlp_endpoint: Option<&str>,
) -> Result<Telemetry, String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Each layer filters for itself: quiet logs must not silence the RPC spans.
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .map_event_format(EmbedJson)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = match otlp_endpoint {
        None => None,
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| format!("cannot set up OTLP export to {endpoint}: {e}"))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("authzd")
                            .build(),
                    )
                    .build(),
            )
        }
    };
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("authzd"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    tracing_subscriber::registry()
        .with(traces)
        .with(logs)
        .try_init()
        .map_err(|e| format!("cannot install logging: {e}"))?;
    Ok(Telemetry { provider })
}

/// Reads W3C trace context from request headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The RPC's span, child of the caller's trace when the request carries one.
pub fn rpc_span(method: &str, headers: &http::HeaderMap) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "rpc",
        otel.name = %method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %method,
        tenant = tracing::field::Empty,
    );
    // No subscriber wants the span (quiet logs, no trace export): skip reading the headers.
    if span.is_disabled() {
        return span;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
    span
}

/// Records the request's tenant on the current RPC span, and for the gate's RPC log line and
/// per-tenant metrics (an id that is not a valid one is left out).
pub fn tenant(tenant_id: &str) {
    let _ = FACTS.try_with(|f| {
        let mut f = f.borrow_mut();
        if f.traced {
            tracing::Span::current().record("tenant", tenant_id);
        }
        if crate::validate::id("tenant_id", tenant_id).is_ok() {
            f.tenant = Some(tenant_id.to_owned());
        }
    });
}

/// The role the gate authenticated the running request's caller with; `None` outside a
/// request the gate admitted.
pub fn caller_role() -> Option<crate::gate::Role> {
    FACTS.try_with(|f| f.borrow().role).ok().flatten()
}

/// Records the revision an answer was decided or committed at, for the RPC log line.
pub fn answered_at(revision: &str) {
    if let Ok(r) = revision.parse::<u64>() {
        let _ = FACTS.try_with(|f| f.borrow_mut().revision = Some(r));
    }
}

/// What an RPC's handler tells the gate about it, and what the gate knows of the caller.
#[derive(Debug, Default)]
pub struct RequestFacts {
    /// The tenant the request names (a valid id), if any.
    pub tenant: Option<String>,
    /// The revision the answer carries, if any.
    pub revision: Option<u64>,
    /// The caller's role, once the gate has authenticated it.
    pub role: Option<crate::gate::Role>,
    /// Whether the request's RPC span is recorded (logs at info, or trace export).
    pub traced: bool,
}

tokio::task_local! {
    static FACTS: std::cell::RefCell<RequestFacts>;
}

/// Runs `f` (an RPC's handler) with `facts` for [`tenant`] and [`answered_at`] to fill in;
/// `take_value` on the pinned future gives them back once it is done.
pub fn with_facts<F: std::future::Future>(
    facts: RequestFacts,
    f: F,
) -> tokio::task::futures::TaskLocalFuture<std::cell::RefCell<RequestFacts>, F> {
    FACTS.scope(std::cell::RefCell::new(facts), f)
}

/// Whether text logs on `stream` get ANSI colours: only on a terminal, and not when `NO_COLOR`
/// is set (<https://no-color.org>). Logs written to a file or a pipe stay plain.
fn colour(stream: &impl std::io::IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The field whose text, when it is a JSON object, the JSON log format embeds as an object
/// rather than as a string (the start-up configuration).
pub const EMBEDDED_JSON_FIELD: &str = "config";

/// The JSON event format, with the [`EMBEDDED_JSON_FIELD`] of an event embedded as a JSON
/// value: `"config":{"listen":...}` rather than `"config":"{\"listen\":...}"`. Only events
/// that have the field pay for it; the rest of the line is left exactly as formatted.
struct EmbedJson<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for EmbedJson<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if event
            .metadata()
            .fields()
            .field(EMBEDDED_JSON_FIELD)
            .is_none()
        {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        let mut text = None;
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                if field.name() == EMBEDDED_JSON_FIELD {
                    text = Some(format!("{value:?}"));
                }
            },
        );
        writer.write_str(&embed(&line, text.as_deref()))
    }
}

/// `line` with the field's quoted text replaced by the text itself, when it is a JSON object.
fn embed(line: &str, text: Option<&str>) -> String {
    let Some(text) = text else {
        return line.to_owned();
    };
    let is_object = serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object());
    let Ok(quoted) = serde_json::to_string(text) else {
        return line.to_owned();
    };
    let field = format!("\"{EMBEDDED_JSON_FIELD}\":{quoted}");
    if !is_object || !line.contains(&field) {
        return line.to_owned();
    }
    line.replacen(&field, &format!("\"{EMBEDDED_JSON_FIELD}\":{text}"), 1)
}

/// How an RPC ended, for [`log_rpc`].
pub struct Finished<'a> {
    /// The request path, `/authz.v1.AuthzService/Check`.
    pub path: &'a str,
    /// The canonical code name (`OK`, `UNAVAILABLE`, ...).
    pub code: &'static str,
    /// The status message, for a response that is not OK.
    pub message: Option<&'a str>,
    pub took: std::time::Duration,
    pub facts: &'a RequestFacts,
    /// The caller's address, when known.
    pub peer: Option<std::net::SocketAddr>,
}

/// Whether the per-RPC debug line is wanted (so the gate reads the peer only then).
pub fn rpc_lines() -> bool {
    tracing::enabled!(target: "authz::rpc", tracing::Level::DEBUG)
}

/// Logs an RPC that has answered: one line at debug under `authz::rpc`, and, when the code is
/// the server's failure, a warning (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) or an
/// error (INTERNAL, UNKNOWN, DATA_LOSS) with the status message, which carries the cause chain.
/// Failures are logged at most once a second per method and code (`faults`), with the number
/// of those held back since the last line.
pub fn log_rpc(done: &Finished<'_>, faults: &FaultLog) {
    let line = rpc_lines();
    let fault = fault_level(done.code, done.message);
    if !line && fault.is_none() {
        return;
    }
    let (service, method) = split_path(done.path);
    let tenant = done.facts.tenant.as_deref().unwrap_or("");
    let latency_ms = (done.took.as_secs_f64() * 1e6).round() / 1e3;
    if line {
        tracing::debug!(
            target: "authz::rpc",
            service,
            method,
            tenant,
            code = done.code,
            latency_ms,
            revision = done.facts.revision,
            role = done.facts.role.map(crate::gate::Role::name),
            peer = done.peer.map(tracing::field::display),
            error = done.message,
            "rpc"
        );
    }
    let Some(level) = fault else {
        return;
    };
    let Some(count) = faults.occurred(done.path, done.code) else {
        return;
    };
    let error = done.message.unwrap_or("");
    let held_back = count - 1;
    match level {
        tracing::Level::ERROR => tracing::error!(
            target: "authz::rpc",
            service, method, tenant, code = done.code, latency_ms, error, held_back,
            "request failed"
        ),
        _ => tracing::warn!(
            target: "authz::rpc",
            service, method, tenant, code = done.code, latency_ms, error, held_back,
            "request failed"
        ),
    }
}

/// The level of a status code that means the server failed, not the caller. A request whose
/// body the client stopped sending (it reset the stream or closed the connection: tonic
/// answers UNKNOWN "h2 protocol error") is the caller's doing, left to the debug line.
fn fault_level(code: &str, message: Option<&str>) -> Option<tracing::Level> {
    if code == "UNKNOWN" && message.is_some_and(|m| m.starts_with("h2 protocol error")) {
        return None;
    }
    match code {
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => Some(tracing::Level::ERROR),
        "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "RESOURCE_EXHAUSTED" => Some(tracing::Level::WARN),
        _ => None,
    }
}

/// `/authz.v1.AuthzService/Check` → (`authz.v1.AuthzService`, `Check`).
fn split_path(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", path))
}

/// Failures already logged, per method and code, each let through once a second.
#[derive(Default)]
pub struct FaultLog {
    seen: std::sync::Mutex<std::collections::HashMap<(String, &'static str), Throttled>>,
}

/// Distinct (path, code) pairs tracked; past it, unknown paths share one entry.
const FAULT_KEYS: usize = 1024;

impl FaultLog {
    /// `Some(n)`: log now, `n` failures (this one included) since the last line.
    fn occurred(&self, path: &str, code: &'static str) -> Option<u64> {
        let Ok(mut seen) = self.seen.lock() else {
            return Some(1);
        };
        let key = if seen.len() >= FAULT_KEYS && !seen.contains_key(&(path.to_owned(), code)) {
            ("(other)".to_owned(), code)
        } else {
            (path.to_owned(), code)
        };
        seen.entry(key)
            .or_insert_with(|| Throttled::new(std::time::Duration::from_secs(1)))
            .occurred()
    }
}

/// Lets a warning that can repeat many times a second through at most once per interval, and
/// counts the occurrences it held back, so a flood of refusals is one log line every few
/// seconds rather than one per refusal.
pub struct Throttled {
    every: std::time::Duration,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl Throttled {
    pub const fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Records one occurrence. `Some(n)` means: log it now, with `n` occurrences (this one
    /// included) since the last line.
    pub fn occurred(&self) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else {
            return Some(1);
        };
        let (last, held) = &mut *state;
        *held += 1;
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.every) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::{Throttled, embed, fault_level, split_path};
    use std::time::Duration;
    use tracing::Level;

    #[test]
    fn an_embedded_object_replaces_its_quoted_text() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"effective configuration","config":"{\"listen\":\"127.0.0.1:1\",\"max_staleness\":\"5s\"}"},"target":"authzd"}"#;
        let text = r#"{"listen":"127.0.0.1:1","max_staleness":"5s"}"#;
        let out = embed(line, Some(text));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["fields"]["config"]["max_staleness"], "5s");
        assert_eq!(v["target"], "authzd");
        // Not an object: left as a string.
        let plain = r#"{"fields":{"config":"x"}}"#;
        assert_eq!(embed(plain, Some("x")), plain);
    }

    #[test]
    fn a_client_that_goes_away_is_not_a_server_fault() {
        let gone = Some("h2 protocol error: error reading a body from connection");
        assert_eq!(fault_level("UNKNOWN", gone), None);
        assert_eq!(
            fault_level("UNKNOWN", Some("panicked: index out of bounds")),
            Some(Level::ERROR)
        );
        assert_eq!(fault_level("INTERNAL", gone), Some(Level::ERROR));
        assert_eq!(fault_level("UNAVAILABLE", None), Some(Level::WARN));
        assert_eq!(fault_level("INVALID_ARGUMENT", None), None);
    }

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/authz.v1.AuthzService/Check"),
            ("authz.v1.AuthzService", "Check")
        );
        assert_eq!(split_path("/nonsense"), ("", "/nonsense"));
    }

    #[test]
    fn throttled_lets_one_line_through_per_interval() {
        let t = Throttled::new(Duration::from_secs(3600));
        assert_eq!(t.occurred(), Some(1));
        for _ in 0..100 {
            assert_eq!(t.occurred(), None);
        }
        let t = Throttled::new(Duration::ZERO);
        assert_eq!(t.occurred(), Some(1));
        assert_eq!(t.occurred(), Some(1));
    }
}
