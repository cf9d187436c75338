//! Logs and traces. Logs go to stderr as text or JSON (`RUST_LOG` sets levels). When an OTLP
//! endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`), spans are exported over OTLP/gRPC;
//! the gate opens a span per RPC whose parent is the W3C `traceparent` of the request.

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
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
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

/// Records the request's tenant on the current RPC span.
pub fn tenant(tenant_id: &str) {
    tracing::Span::current().record("tenant", tenant_id);
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
    use super::Throttled;
    use std::time::Duration;

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
