//! Prometheus metrics, one registry per server (no process globals), served on
//! `--metrics-listen` at `/metrics`.
//!
//! Families (all prefixed `authz_` but the process ones):
//! - `requests_total{service,method,code}`, `request_duration_seconds{service,method,code}`:
//!   every RPC, by service (`authz.v1.AuthzService`), method (`Check`) and gRPC status code
//!   (recorded by the request gate); a path that names no method of ours is `unknown`;
//! - `tenant_requests_total{tenant}`, `tenant_request_errors_total{tenant}`: the same, for the
//!   `--metrics-top-tenants` busiest tenants only (see [`TenantTop`]);
//! - `check_decisions_total{decision}`: allow / deny of Check and BatchCheck items;
//! - `admin_refusals_total{method,rule}`: admin calls an admin rule refused;
//! - `build_info{version,catalog,catalog_version}`, `ready`, `readiness_changes_total`;
//! - only when the store has a cache (Postgres): `cache_hits_total`, `cache_misses_total`,
//!   `cache_loads_total`, `cache_invalidations_total`, `cache_bypasses_total`,
//!   `cache_entries`, `cache_weight_bytes`, `cache_max_staleness_seconds`;
//!   `listener_connected`, `listener_staleness_seconds`, `listener_reconnects_total`,
//!   `listener_flushes_total`, `listener_notifications_total`; `db_pool_connections`,
//!   `db_pool_available`, `db_pool_waiting`; `catalog_compatible`, `catalog_record`;
//! - `invalidation_lag_seconds`: commit → this replica's eviction, per notification;
//! - `tls_certificate_expiry_seconds`: the server certificate's end of validity (only when
//!   serving TLS);
//! - `connections_open`, `connections_refused_total`, `connections_closed_total{reason}`,
//!   `accept_errors_total`: the transport's limits (see `transport`);
//! - `watch_streams`, `watch_streams_refused_total{limit}`, `watch_reads_total`: open Watch
//!   streams, refusals, and the change-log reads they made;
//! - `decision_log_records_total`, `decision_log_dropped_total` (only with `--decision-log`);
//! - `process_*` (Linux): CPU seconds, resident and virtual memory, open and maximum file
//!   descriptors, threads, start time.
//!
//! One file: every metric family is declared and documented in one place, so what `/metrics`
//! exports can be read top to bottom against the dashboard.

use crate::app::Authz;
use crate::store::StoreStats;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How metrics are kept.
#[derive(Clone, Debug)]
pub struct MetricsOptions {
    /// How many of the busiest tenants get series of their own; 0: none.
    pub top_tenants: usize,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        Self { top_tenants: 10 }
    }
}

pub struct Metrics {
    registry: Registry,
    /// The cache, listener, pool and catalog families: exported only while the store reports
    /// them, so a memory-store server shows no listener that is "down".
    store_registry: Registry,
    /// `process_*`, without the `authz_` prefix (the names every exporter uses).
    process_registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Each known method's path (`/authz.v1.AuthzService/Check`) with its series for code OK,
    /// resolved once: the common case records with no label hashing or lock.
    ok: HashMap<String, Known, ahash::RandomState>,
    allowed: IntCounter,
    denied: IntCounter,
    invalidation_lag: Histogram,
    refusals: IntCounterVec,
    ready: IntGauge,
    readiness_changes: IntCounter,
    tenants: Option<TenantTop>,
    store: StoreFamilies,
    transport: TransportFamilies,
    /// Serialises scrapes: store counters are copied in, then gathered.
    scrape: Mutex<()>,
    /// Registered when the server serves TLS, so plaintext servers show no such series.
    tls_expiry: OnceLock<Option<IntGauge>>,
    build_info: OnceLock<Option<IntGaugeVec>>,
    decision_log: OnceLock<Option<DecisionLogCounters>>,
}

/// A method of ours: its labels and its series for code OK.
struct Known {
    service: String,
    method: String,
    count: IntCounter,
    latency: Histogram,
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

/// The decision log's counters: records written, records dropped because the writer fell
/// behind.
#[derive(Clone)]
pub struct DecisionLogCounters {
    pub written: IntCounter,
    pub dropped: IntCounter,
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
    staleness: Gauge,
    max_staleness: Gauge,
}

/// Latency buckets from 25µs to 2.5s: checks live at the low end, writes higher.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

/// Invalidation lag buckets from 1ms to 60s: far enough past any staleness bound that a lag
/// above it is measured, not clipped at the last bucket.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    /// Metrics with the default options (the 10 busiest tenants get series).
    pub fn new() -> Result<Arc<Metrics>, prometheus::Error> {
        Self::with_options(&MetricsOptions::default())
    }

    pub fn with_options(options: &MetricsOptions) -> Result<Arc<Metrics>, prometheus::Error> {
        let registry = Registry::new_custom(Some("authz".to_owned()), None)?;
        let store_registry = Registry::new_custom(Some("authz".to_owned()), None)?;
        let process_registry = Registry::new();
        #[cfg(target_os = "linux")]
        process_registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "RPCs served, by service, method and gRPC status code.",
            ),
            &["service", "method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "RPC latency until response headers, by service, method and code.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["service", "method", "code"],
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
            .buckets(LAG_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        store_registry.register(Box::new(invalidation_lag.clone()))?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "admin_refusals_total",
                "Admin calls refused by an admin rule, by method and rule (an escalation attempt shows here).",
            ),
            &["method", "rule"],
        )?;
        registry.register(Box::new(refusals.clone()))?;
        let ready = IntGauge::new(
            "ready",
            "1 while the server reports SERVING on its readiness health check.",
        )?;
        let readiness_changes = IntCounter::new(
            "readiness_changes_total",
            "Times readiness changed (ready to not ready or back).",
        )?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(readiness_changes.clone()))?;
        let tenants = match options.top_tenants {
            0 => None,
            top => Some(TenantTop::new(top, &registry)?),
        };
        let counter =
            |name: &str, help: &str, read: Read| -> Result<(IntCounter, Read), prometheus::Error> {
                let c = IntCounter::new(name, help)?;
                store_registry.register(Box::new(c.clone()))?;
                Ok((c, read))
            };
        let gauge =
            |name: &str, help: &str, read: Read| -> Result<(IntGauge, Read), prometheus::Error> {
                let g = IntGauge::new(name, help)?;
                store_registry.register(Box::new(g.clone()))?;
                Ok((g, read))
            };
        let staleness = Gauge::new(
            "listener_staleness_seconds",
            "Age of the newest point up to which every commit is known to have reached this replica's cache (+Inf before the first subscription).",
        )?;
        let max_staleness = Gauge::new(
            "cache_max_staleness_seconds",
            "The staleness bound (--max-staleness): past it, checks stop trusting the cache.",
        )?;
        store_registry.register(Box::new(staleness.clone()))?;
        store_registry.register(Box::new(max_staleness.clone()))?;
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
            staleness,
            max_staleness,
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
            .map(|(path, service, method)| {
                let known = Known {
                    count: requests.with_label_values(&[&service, &method, "OK"]),
                    latency: latency.with_label_values(&[&service, &method, "OK"]),
                    service,
                    method,
                };
                (path, known)
            })
            .collect();
        let allowed = decisions.with_label_values(&["allow"]);
        let denied = decisions.with_label_values(&["deny"]);
        Ok(Arc::new(Metrics {
            registry,
            store_registry,
            process_registry,
            requests,
            latency,
            ok,
            allowed,
            denied,
            invalidation_lag,
            refusals,
            ready,
            readiness_changes,
            tenants,
            store,
            transport,
            scrape: Mutex::new(()),
            tls_expiry: OnceLock::new(),
            build_info: OnceLock::new(),
            decision_log: OnceLock::new(),
        }))
    }

    /// Records one RPC by its path. A path that names no method of ours is labelled
    /// `unknown` (service and method), so arbitrary paths cannot grow the series without bound.
    pub fn request(&self, path: &str, code: &str, took: Duration) {
        let known = self.ok.get(path);
        if code == "OK" {
            if let Some(k) = known {
                k.count.inc();
                k.latency.observe(took.as_secs_f64());
                return;
            }
        }
        let (service, method) = known.map_or(("unknown", "unknown"), |k| {
            (k.service.as_str(), k.method.as_str())
        });
        self.requests
            .with_label_values(&[service, method, code])
            .inc();
        self.latency
            .with_label_values(&[service, method, code])
            .observe(took.as_secs_f64());
    }

    /// Counts one RPC of `tenant` for the busiest-tenants series (a no-op when they are off).
    pub fn tenant_request(&self, tenant: &str, failed: bool) {
        if let Some(t) = &self.tenants {
            t.record(tenant, failed);
        }
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

    /// The service and method a path names, when it names one of ours.
    pub fn method_of(&self, path: &str) -> Option<(&str, &str)> {
        self.ok
            .get(path)
            .map(|k| (k.service.as_str(), k.method.as_str()))
    }

    /// Counts one refused admin call. `method` is one of AdminService's (a fixed set) and
    /// `rule` one of the rules' labels.
    pub fn refusal(&self, method: &str, rule: &str) {
        self.refusals.with_label_values(&[method, rule]).inc();
    }

    /// Readiness as health reports it; `changed` when it differs from the previous report.
    pub fn readiness(&self, ready: bool, changed: bool) {
        self.ready.set(i64::from(ready));
        if changed {
            self.readiness_changes.inc();
        }
    }

    /// `authz_build_info{version,catalog,catalog_version} 1`: what this replica runs.
    pub fn build_info(&self, catalog: &str, catalog_version: &str) {
        let info = self.build_info.get_or_init(|| {
            let info = IntGaugeVec::new(
                Opts::new(
                    "build_info",
                    "Always 1: the authzd version and the catalog this replica serves.",
                ),
                &["version", "catalog", "catalog_version"],
            )
            .ok()?;
            self.registry.register(Box::new(info.clone())).ok()?;
            Some(info)
        });
        if let Some(info) = info {
            info.reset();
            info.with_label_values(&[env!("CARGO_PKG_VERSION"), catalog, catalog_version])
                .set(1);
        }
    }

    /// The configured staleness bound, for comparisons on a dashboard or in an alert.
    pub fn max_staleness(&self, bound: Duration) {
        self.store.max_staleness.set(bound.as_secs_f64());
    }

    /// The decision log's counters, registered on first use (servers without a decision log
    /// show no such series).
    pub fn decision_log(&self) -> Option<DecisionLogCounters> {
        self.decision_log
            .get_or_init(|| {
                let written = IntCounter::new(
                    "decision_log_records_total",
                    "Decisions written to the decision log (after sampling).",
                )
                .ok()?;
                let dropped = IntCounter::new(
                    "decision_log_dropped_total",
                    "Decisions the decision log dropped because its writer fell behind.",
                )
                .ok()?;
                self.registry.register(Box::new(written.clone())).ok()?;
                self.registry.register(Box::new(dropped.clone())).ok()?;
                Some(DecisionLogCounters { written, dropped })
            })
            .clone()
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

    /// The Prometheus text exposition, with the store's numbers as of now. The store's
    /// families are shown only when the store has them.
    pub fn render(&self, store: Option<StoreStats>) -> String {
        let _one_at_a_time = self.scrape.lock();
        if let Some(t) = &self.tenants {
            t.rank(Instant::now());
        }
        let mut families = self.registry.gather();
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
            self.store.staleness.set(
                stats
                    .listener_staleness
                    .map_or(f64::INFINITY, |d| d.as_secs_f64()),
            );
            families.extend(self.store_registry.gather());
        }
        families.extend(self.process_registry.gather());
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The busiest tenants' series. Every RPC that names a tenant is counted in memory (for at
/// most [`TenantTop::capacity`] tenants); at each scrape the tenants are ranked by their recent
/// traffic (an exponentially decaying count, half-life [`HALF_LIFE`], decayed by the time
/// between rankings, so several scrapers rank alike) and only the `top` first are exported,
/// with their counts since this replica started (or since they were last tracked). A tenant
/// that leaves the top loses its series; one that enters gets it. So each family has at most
/// `top` series per replica, whatever tenant ids callers send.
struct TenantTop {
    top: usize,
    capacity: usize,
    /// Read on every RPC without a lock; replaced whole (under `writer`) when a tenant is
    /// added or the quietest are dropped.
    tracked: arc_swap::ArcSwap<Tracked>,
    writer: Mutex<()>,
    ranking: Mutex<Ranking>,
    requests: IntCounterVec,
    errors: IntCounterVec,
}

type Tracked = HashMap<Box<str>, Arc<TenantCount>, ahash::RandomState>;

#[derive(Default)]
struct TenantCount {
    requests: AtomicU64,
    errors: AtomicU64,
}

#[derive(Default)]
struct Ranking {
    at: Option<Instant>,
    /// Per tracked tenant: decayed score, and the request count it was last ranked at.
    scores: HashMap<Box<str>, (f64, u64)>,
    exported: HashSet<Box<str>>,
}

/// Half-life of a tenant's ranking score: the ranking follows what is hot now.
const HALF_LIFE: Duration = Duration::from_secs(60);

impl TenantTop {
    fn new(top: usize, registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "tenant_requests_total",
                "RPCs of the busiest tenants (--metrics-top-tenants), by tenant.",
            ),
            &["tenant"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tenant_request_errors_total",
                "RPCs of the busiest tenants that did not answer OK, by tenant.",
            ),
            &["tenant"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self {
            top,
            capacity: (top * 100).max(1000),
            tracked: arc_swap::ArcSwap::from_pointee(Tracked::default()),
            writer: Mutex::new(()),
            ranking: Mutex::new(Ranking::default()),
            requests,
            errors,
        })
    }

    fn record(&self, tenant: &str, failed: bool) {
        let count = |c: &TenantCount| {
            c.requests.fetch_add(1, Ordering::Relaxed);
            if failed {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
        };
        if let Some(c) = self.tracked.load().get(tenant) {
            count(c);
            return;
        }
        let Ok(_writing) = self.writer.lock() else {
            return;
        };
        let tracked = self.tracked.load_full();
        if let Some(c) = tracked.get(tenant) {
            count(c);
            return;
        }
        // Full: the next ranking makes room by dropping the quietest.
        if tracked.len() >= self.capacity {
            return;
        }
        let mut next = Tracked::clone(&tracked);
        let c = Arc::new(TenantCount::default());
        count(&c);
        next.insert(tenant.into(), c);
        self.tracked.store(Arc::new(next));
    }

    /// Ranks the tracked tenants and exports the busiest `top`.
    fn rank(&self, now: Instant) {
        let Ok(mut ranking) = self.ranking.lock() else {
            return;
        };
        let decay = ranking.at.map_or(1.0, |at| {
            0.5f64.powf(now.saturating_duration_since(at).as_secs_f64() / HALF_LIFE.as_secs_f64())
        });
        ranking.at = Some(now);
        let mut ranked: Vec<(Box<str>, f64, u64, u64)> = {
            let tracked = self.tracked.load();
            tracked
                .iter()
                .map(|(tenant, c)| {
                    let requests = c.requests.load(Ordering::Relaxed);
                    let errors = c.errors.load(Ordering::Relaxed);
                    let (score, seen) = ranking.scores.entry(tenant.clone()).or_insert((0.0, 0));
                    *score = *score * decay + requests.saturating_sub(*seen) as f64;
                    *seen = requests;
                    (tenant.clone(), *score, requests, errors)
                })
                .collect()
        };
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let top: HashSet<Box<str>> = ranked
            .iter()
            .take(self.top)
            .filter(|r| r.1 > 0.0)
            .map(|r| r.0.clone())
            .collect();
        for gone in ranking.exported.difference(&top) {
            let _ = self.requests.remove_label_values(&[gone]);
            let _ = self.errors.remove_label_values(&[gone]);
        }
        for (tenant, _, requests, errors) in ranked.iter().filter(|r| top.contains(&r.0)) {
            set_counter(&self.requests.with_label_values(&[tenant]), *requests);
            set_counter(&self.errors.with_label_values(&[tenant]), *errors);
        }
        // Room for tenants not tracked yet: the quietest half goes once three quarters are
        // taken (never one of the exported).
        if ranked.len() > self.capacity / 4 * 3 {
            let drop: Vec<Box<str>> = ranked
                .iter()
                .rev()
                .filter(|r| !top.contains(&r.0))
                .take(ranked.len() - self.capacity / 2)
                .map(|r| r.0.clone())
                .collect();
            if let Ok(_writing) = self.writer.lock() {
                let mut next = Tracked::clone(&self.tracked.load_full());
                for tenant in &drop {
                    next.remove(tenant);
                    ranking.scores.remove(tenant);
                }
                self.tracked.store(Arc::new(next));
            }
        }
        ranking.exported = top;
    }
}

/// Sets a counter that mirrors a count kept elsewhere.
fn set_counter(c: &IntCounter, value: u64) {
    let current = c.get();
    if value >= current {
        c.inc_by(value - current);
    } else {
        c.reset();
        c.inc_by(value);
    }
}

/// `(/package.Service/Method, package.Service, Method)` for every method the server's own
/// services declare.
fn known_methods() -> Vec<(String, String, String)> {
    use prost::Message;
    let Ok(set) = prost_types::FileDescriptorSet::decode(crate::grpc::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            for method in &service.method {
                out.push((
                    format!("/{full}/{}", method.name()),
                    full.clone(),
                    method.name().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn series(text: &str, prefix: &str) -> Vec<String> {
        let mut out: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect();
        out.sort();
        out
    }

    #[test]
    fn only_the_busiest_tenants_get_series() {
        let m = Metrics::with_options(&MetricsOptions { top_tenants: 2 }).unwrap();
        for (tenant, n) in [("a", 5), ("b", 9), ("c", 1)] {
            for i in 0..n {
                m.tenant_request(tenant, i == 0);
            }
        }
        let text = m.render(None);
        assert_eq!(
            series(&text, "authz_tenant_requests_total{"),
            [
                "authz_tenant_requests_total{tenant=\"a\"} 5",
                "authz_tenant_requests_total{tenant=\"b\"} 9"
            ]
        );
        assert_eq!(
            series(&text, "authz_tenant_request_errors_total{"),
            [
                "authz_tenant_request_errors_total{tenant=\"a\"} 1",
                "authz_tenant_request_errors_total{tenant=\"b\"} 1"
            ]
        );
        // `c` gets busy: it enters the top, and the quieter of the others leaves it. The scores
        // of `a` and `b` are decayed by the time between rankings, so traffic now outweighs
        // traffic before.
        for _ in 0..20 {
            m.tenant_request("c", false);
        }
        let later = Instant::now() + Duration::from_secs(600);
        m.tenants.as_ref().unwrap().rank(later);
        let text = m.render(None);
        assert_eq!(
            series(&text, "authz_tenant_requests_total{"),
            [
                "authz_tenant_requests_total{tenant=\"b\"} 9",
                "authz_tenant_requests_total{tenant=\"c\"} 21"
            ]
        );
    }

    #[test]
    fn tracked_tenants_are_bounded() {
        let m = Metrics::with_options(&MetricsOptions { top_tenants: 1 }).unwrap();
        let top = m.tenants.as_ref().unwrap();
        for i in 0..5000 {
            m.tenant_request(&format!("t{i}"), false);
        }
        assert_eq!(top.tracked.load().len(), top.capacity);
        let text = m.render(None);
        assert_eq!(series(&text, "authz_tenant_requests_total{").len(), 1);
        assert!(top.tracked.load().len() <= top.capacity / 2);
        // Room again for a tenant never seen.
        m.tenant_request("newcomer", false);
        assert!(top.tracked.load().contains_key("newcomer"));
    }

    #[test]
    fn no_tenant_series_when_off() {
        let m = Metrics::with_options(&MetricsOptions { top_tenants: 0 }).unwrap();
        m.tenant_request("a", false);
        assert!(!m.render(None).contains("authz_tenant_"));
    }

    #[test]
    fn methods_are_labelled_by_service_and_name() {
        let m = Metrics::new().unwrap();
        m.request(
            "/authz.v1.AuthzService/Check",
            "OK",
            Duration::from_micros(50),
        );
        m.request(
            "/authz.v1.AdminService/CreateTenant",
            "ALREADY_EXISTS",
            Duration::from_millis(2),
        );
        m.request("/evil/path", "UNIMPLEMENTED", Duration::from_millis(1));
        let text = m.render(None);
        for line in [
            "authz_requests_total{code=\"OK\",method=\"Check\",service=\"authz.v1.AuthzService\"} 1",
            "authz_requests_total{code=\"ALREADY_EXISTS\",method=\"CreateTenant\",service=\"authz.v1.AdminService\"} 1",
            "authz_requests_total{code=\"UNIMPLEMENTED\",method=\"unknown\",service=\"unknown\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert!(!text.contains("evil"));
        // No store: no cache or listener families.
        assert!(!text.contains("authz_listener_connected"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    }
}
