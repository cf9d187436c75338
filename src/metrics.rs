//! Prometheus metrics, one registry per server (no process globals), served on
//! `--metrics-listen` at `/metrics`.
//!
//! Families (all prefixed `authz_`):
//! - `requests_total{method,code}`, `request_duration_seconds{method,code}`: every RPC, by
//!   gRPC status code (recorded by the request gate);
//! - `check_decisions_total{decision}`: allow / deny of Check and BatchCheck items;
//! - `cache_hits_total`, `cache_misses_total`, `cache_loads_total`, `cache_invalidations_total`,
//!   `cache_bypasses_total`, `cache_entries`, `cache_weight_bytes`;
//! - `invalidation_lag_seconds`: commit → this replica's eviction, per notification;
//! - `listener_connected`, `listener_reconnects_total`, `listener_flushes_total`,
//!   `listener_notifications_total`;
//! - `db_pool_connections`, `db_pool_available`, `db_pool_waiting`;
//! - `catalog_compatible`, `catalog_record`: whether this replica's catalog agrees with the
//!   database's newest catalog record, and that record's id;
//! - `tls_certificate_expiry_seconds`: the server certificate's end of validity (only when
//!   serving TLS).
//! - `connections_open`, `connections_refused_total`, `connections_closed_total{reason}`,
//!   `accept_errors_total`: the transport's limits (see `transport`);
//! - `watch_streams`, `watch_streams_refused_total{limit}`, `watch_reads_total`: open Watch
//!   streams, refusals, and the change-log reads they made.

use crate::app::Authz;
use crate::store::StoreStats;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Each known method's series for code OK, resolved once: the common case records with
    /// no label hashing or lock.
    ok: HashMap<String, (IntCounter, Histogram)>,
    allowed: IntCounter,
    denied: IntCounter,
    invalidation_lag: Histogram,
    refusals: IntCounterVec,
    store: StoreFamilies,
    transport: TransportFamilies,
    /// Serialises scrapes: store counters are copied in, then gathered.
    scrape: Mutex<()>,
    /// Registered when the server serves TLS, so plaintext servers show no such series.
    tls_expiry: OnceLock<Option<IntGauge>>,
}

/// Connection and stream limits.
struct TransportFamilies {
    connections_open: IntGauge,
    connections_refused: IntCounter,
    closed_handshake: IntCounter,
    closed_idle: IntCounter,
    accept_errors: IntCounter,
    watch_streams: IntGauge,
    watch_refused_server: IntCounter,
    watch_refused_tenant: IntCounter,
    watch_reads: IntCounter,
}

/// Why the server closed a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The TLS handshake or the HTTP/2 preface did not finish in time.
    HandshakeTimeout,
    /// No stream was open for the idle timeout.
    Idle,
}

/// Which Watch limit refused a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchLimit {
    Server,
    Tenant,
}

/// Reads one number out of the store's stats.
type Read = fn(&StoreStats) -> u64;

struct StoreFamilies {
    counters: Vec<(IntCounter, Read)>,
    gauges: Vec<(IntGauge, Read)>,
}

/// Latency buckets from 25µs to 2.5s: checks live at the low end, writes higher.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

impl Metrics {
    pub fn new() -> Result<Arc<Metrics>, prometheus::Error> {
        let registry = Registry::new_custom(Some("authz".to_owned()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "RPCs served, by method and gRPC status code.",
            ),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "RPC latency until response headers, by method and code.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "code"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new("check_decisions_total", "Check and BatchCheck decisions."),
            &["decision"],
        )?;
        let invalidation_lag = Histogram::with_opts(
            HistogramOpts::new(
                "invalidation_lag_seconds",
                "Commit of a write to this replica's invalidation of what it touched.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(invalidation_lag.clone()))?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "admin_refusals_total",
                "Admin calls refused by an admin rule, by method and rule (an escalation attempt shows here).",
            ),
            &["method", "rule"],
        )?;
        registry.register(Box::new(refusals.clone()))?;
        let counter =
            |name: &str, help: &str, read: Read| -> Result<(IntCounter, Read), prometheus::Error> {
                let c = IntCounter::new(name, help)?;
                registry.register(Box::new(c.clone()))?;
                Ok((c, read))
            };
        let gauge =
            |name: &str, help: &str, read: Read| -> Result<(IntGauge, Read), prometheus::Error> {
                let g = IntGauge::new(name, help)?;
                registry.register(Box::new(g.clone()))?;
                Ok((g, read))
            };
        let store = StoreFamilies {
            counters: vec![
                counter(
                    "cache_hits_total",
                    "Cache lookups answered from the cache.",
                    |s| s.cache_hits,
                )?,
                counter(
                    "cache_misses_total",
                    "Cache lookups that had to load.",
                    |s| s.cache_misses,
                )?,
                counter(
                    "cache_loads_total",
                    "Entries loaded from the database.",
                    |s| s.cache_loads,
                )?,
                counter(
                    "cache_invalidations_total",
                    "Entries invalidated (or flushes).",
                    |s| s.cache_invalidations,
                )?,
                counter(
                    "cache_bypasses_total",
                    "Checks that bypassed the cache (fully consistent, or too stale).",
                    |s| s.cache_bypasses,
                )?,
                counter(
                    "listener_reconnects_total",
                    "Times the change listener reconnected.",
                    |s| s.listener_reconnects,
                )?,
                counter(
                    "listener_flushes_total",
                    "Whole-cache flushes (each subscription, unreadable notifications).",
                    |s| s.listener_flushes,
                )?,
                counter(
                    "listener_notifications_total",
                    "Change notifications received.",
                    |s| s.listener_notifications,
                )?,
            ],
            gauges: vec![
                gauge("cache_entries", "Entries in the cache.", |s| {
                    s.cache_entries
                })?,
                gauge(
                    "cache_weight_bytes",
                    "Estimated bytes held by the cache.",
                    |s| s.cache_weight_bytes,
                )?,
                gauge(
                    "listener_connected",
                    "1 while the change listener is subscribed.",
                    |s| u64::from(s.listener_connected),
                )?,
                gauge(
                    "catalog_compatible",
                    "1 while this replica's catalog agrees with the one the database records; 0 while it refuses to serve.",
                    |s| u64::from(s.catalog_compatible),
                )?,
                gauge(
                    "catalog_record",
                    "Id of the newest catalog record this replica has checked (0: the database records none).",
                    |s| s.catalog_record,
                )?,
                gauge(
                    "db_pool_connections",
                    "Open pooled database connections.",
                    |s| s.pool_size,
                )?,
                gauge(
                    "db_pool_available",
                    "Idle pooled database connections.",
                    |s| s.pool_available,
                )?,
                gauge(
                    "db_pool_waiting",
                    "Requests waiting for a database connection.",
                    |s| s.pool_waiting,
                )?,
            ],
        };
        let closed = IntCounterVec::new(
            Opts::new(
                "connections_closed_total",
                "Connections the server closed itself, by reason (handshake_timeout, idle).",
            ),
            &["reason"],
        )?;
        let watch_refused = IntCounterVec::new(
            Opts::new(
                "watch_streams_refused_total",
                "Watch streams refused with RESOURCE_EXHAUSTED, by the limit reached (server, tenant).",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(closed.clone()))?;
        registry.register(Box::new(watch_refused.clone()))?;
        let plain_counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let plain_gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let transport = TransportFamilies {
            connections_open: plain_gauge("connections_open", "Open gRPC connections.")?,
            connections_refused: plain_counter(
                "connections_refused_total",
                "Connections closed on arrival because --max-connections were open.",
            )?,
            closed_handshake: closed.with_label_values(&["handshake_timeout"]),
            closed_idle: closed.with_label_values(&["idle"]),
            accept_errors: plain_counter(
                "accept_errors_total",
                "Failed accepts (out of file descriptors and the like).",
            )?,
            watch_streams: plain_gauge("watch_streams", "Open Watch streams.")?,
            watch_refused_server: watch_refused.with_label_values(&["server"]),
            watch_refused_tenant: watch_refused.with_label_values(&["tenant"]),
            watch_reads: plain_counter(
                "watch_reads_total",
                "Change-log reads made by Watch streams (none while their tenants are quiet).",
            )?,
        };
        let ok = known_methods()
            .into_iter()
            .map(|m| {
                let handles = (
                    requests.with_label_values(&[m.as_str(), "OK"]),
                    latency.with_label_values(&[m.as_str(), "OK"]),
                );
                (m, handles)
            })
            .collect();
        let allowed = decisions.with_label_values(&["allow"]);
        let denied = decisions.with_label_values(&["deny"]);
        Ok(Arc::new(Metrics {
            registry,
            requests,
            latency,
            ok,
            allowed,
            denied,
            invalidation_lag,
            refusals,
            store,
            transport,
            scrape: Mutex::new(()),
            tls_expiry: OnceLock::new(),
        }))
    }

    /// Records one RPC. A path that names no method of ours is labelled `unknown`, so
    /// arbitrary paths cannot grow the series without bound.
    pub fn request(&self, method: &str, code: &str, took: Duration) {
        if code == "OK" {
            if let Some((count, latency)) = self.ok.get(method) {
                count.inc();
                latency.observe(took.as_secs_f64());
                return;
            }
        }
        let method = if self.ok.contains_key(method) {
            method
        } else {
            "unknown"
        };
        self.requests.with_label_values(&[method, code]).inc();
        self.latency
            .with_label_values(&[method, code])
            .observe(took.as_secs_f64());
    }

    pub fn decision(&self, allowed: bool) {
        self.decisions(u64::from(allowed), u64::from(!allowed));
    }

    /// Records a batch's decisions at once.
    pub fn decisions(&self, allowed: u64, denied: u64) {
        if allowed > 0 {
            self.allowed.inc_by(allowed);
        }
        if denied > 0 {
            self.denied.inc_by(denied);
        }
    }

    /// Whether `path` names a method of the server's own services (labels stay bounded).
    pub fn knows(&self, path: &str) -> bool {
        self.ok.contains_key(path)
    }

    /// Counts one refused admin call. `method` is one of AdminService's (a fixed set) and
    /// `rule` one of the rules' labels.
    pub fn refusal(&self, method: &str, rule: &str) {
        self.refusals.with_label_values(&[method, rule]).inc();
    }

    /// The server certificate's end of validity, in seconds since the Unix epoch.
    pub fn tls_certificate_expiry(&self, not_after: i64) {
        let gauge = self.tls_expiry.get_or_init(|| {
            let gauge = IntGauge::new(
                "tls_certificate_expiry_seconds",
                "End of validity of the server's TLS certificate, in seconds since the Unix epoch.",
            )
            .ok()?;
            self.registry.register(Box::new(gauge.clone())).ok()?;
            Some(gauge)
        });
        if let Some(g) = gauge {
            g.set(not_after);
        }
    }

    pub fn invalidation_lag(&self, lag: Duration) {
        self.invalidation_lag.observe(lag.as_secs_f64());
    }

    pub fn connection_opened(&self) {
        self.transport.connections_open.inc();
    }

    pub fn connection_ended(&self) {
        self.transport.connections_open.dec();
    }

    pub fn connection_refused(&self) {
        self.transport.connections_refused.inc();
    }

    pub fn connection_closed(&self, reason: CloseReason) {
        match reason {
            CloseReason::HandshakeTimeout => self.transport.closed_handshake.inc(),
            CloseReason::Idle => self.transport.closed_idle.inc(),
        }
    }

    pub fn accept_error(&self) {
        self.transport.accept_errors.inc();
    }

    pub fn watch_streams(&self, open: usize) {
        self.transport
            .watch_streams
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    pub fn watch_refused(&self, limit: WatchLimit) {
        match limit {
            WatchLimit::Server => self.transport.watch_refused_server.inc(),
            WatchLimit::Tenant => self.transport.watch_refused_tenant.inc(),
        }
    }

    pub fn watch_read(&self) {
        self.transport.watch_reads.inc();
    }

    /// The Prometheus text exposition, with the store's numbers as of now.
    pub fn render(&self, store: Option<StoreStats>) -> String {
        let _one_at_a_time = self.scrape.lock();
        if let Some(stats) = store {
            for (c, read) in &self.store.counters {
                // Store counters only grow; copy the current value in.
                let v = read(&stats);
                let current = c.get();
                if v >= current {
                    c.inc_by(v - current);
                } else {
                    c.reset();
                    c.inc_by(v);
                }
            }
            for (g, read) in &self.store.gauges {
                g.set(i64::try_from(read(&stats)).unwrap_or(i64::MAX));
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `/package.Service/Method` for every method the server's own services declare.
fn known_methods() -> Vec<String> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(crate::grpc::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                out.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    out
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    app: Arc<Authz>,
) -> std::io::Result<()> {
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            let app = app.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(app.store_stats()),
                )
            }
        }),
    );
    axum::serve(listener, router).await
}
