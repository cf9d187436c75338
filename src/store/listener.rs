//! The change listener: one dedicated Postgres connection per replica (never from the pool, so
//! no pool recycling runs `UNLISTEN *` on it), `application_name = authzd-listener`.
//!
//! It LISTENs on the change channel and on a heartbeat channel of its own, and every
//! `heartbeat` sends itself a NOTIFY. Postgres delivers notifications in commit order, so when a
//! heartbeat sent at time T comes back, every change committed before T has been delivered:
//! the cache is "confirmed" up to T. If heartbeats stop coming back (a dead or half-open
//! connection) the listener drops the connection and reconnects with backoff. On every
//! (re)connect it LISTENs first, then asks the cache to flush (notifications sent while it was
//! away are gone), then trusts the cache again. It also LISTENs for new catalog records, and
//! has the replica check each one (and, after a reconnect, the newest) against its catalog.

use super::catalogs::CHANNEL as CATALOG_CHANNEL;
use super::notify::{CHANNEL, Notice};
use super::postgres::describe;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, NoTls};

pub const APPLICATION_NAME: &str = "authzd-listener";

#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// How often the listener sends itself a heartbeat.
    pub heartbeat: Duration,
    /// A heartbeat not back within this long means the connection is dead.
    pub heartbeat_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What the listener hands the cache.
pub trait ListenerSink: Send + Sync + 'static {
    /// A change notification.
    fn notice(&self, notice: Notice);
    /// Everything may have been missed: drop every cached entry.
    fn flush(&self);
    /// The database may record another catalog: check it again.
    fn catalog_changed(&self) {}
}

/// The listener's state, shared with the cache (staleness) and readiness.
pub struct ListenerState {
    start: Instant,
    connected: AtomicBool,
    /// Milliseconds since `start` up to which all commits are known to have been delivered.
    confirmed_ms: AtomicU64,
    backend_pid: AtomicI32,
    reconnects: AtomicU64,
    flushes: AtomicU64,
    notifications: AtomicU64,
    last_error: Mutex<String>,
}

impl Default for ListenerState {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            connected: AtomicBool::new(false),
            confirmed_ms: AtomicU64::new(0),
            backend_pid: AtomicI32::new(0),
            reconnects: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
            last_error: Mutex::new("not connected yet".to_owned()),
        }
    }
}

impl ListenerState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn confirm(&self, at: Instant) {
        let ms =
            u64::try_from(at.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX);
        self.confirmed_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// How long ago the last confirmed point is; `None` before the first subscription.
    pub fn staleness(&self) -> Option<Duration> {
        let confirmed = self.confirmed_ms.load(Ordering::Acquire);
        if confirmed == 0 {
            return None;
        }
        Some(Duration::from_millis(
            self.now_ms().saturating_sub(confirmed),
        ))
    }

    /// True when every commit older than `bound` is known to have been applied to the cache.
    pub fn fresh_within(&self, bound: Duration) -> bool {
        self.staleness().is_some_and(|s| s <= bound)
    }

    /// [`Self::fresh_within`] as of `now` (a clock read the caller shares).
    pub fn fresh_within_at(&self, bound: Duration, now: Instant) -> bool {
        let confirmed = self.confirmed_ms.load(Ordering::Acquire);
        let now_ms = u64::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u64::MAX);
        confirmed != 0 && Duration::from_millis(now_ms.saturating_sub(confirmed)) <= bound
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The listener connection's backend process id (0 when not connected).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid.load(Ordering::Acquire)
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    pub fn notifications(&self) -> u64 {
        self.notifications.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    fn set_error(&self, e: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = e;
        }
    }
}

/// Runs the listener until the task is aborted.
pub async fn run(
    mut config: tokio_postgres::Config,
    sink: Arc<dyn ListenerSink>,
    state: Arc<ListenerState>,
    options: ListenerOptions,
) {
    config.application_name(APPLICATION_NAME);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(5));
    config.keepalives_interval(Duration::from_secs(2));
    config.keepalives_retries(3);
    config.connect_timeout(options.heartbeat_timeout);
    let channel = heartbeat_channel();
    let mut backoff = Duration::from_millis(50);
    loop {
        let subscribed_at = Instant::now();
        let result = session(&config, &channel, &*sink, &state, &options).await;
        state.connected.store(false, Ordering::Release);
        state.backend_pid.store(0, Ordering::Release);
        let e = match result {
            Ok(()) => "connection closed".to_owned(),
            Err(e) => e,
        };
        tracing::warn!(error = %e, "change listener disconnected; the cache is trusted only within the staleness bound");
        state.set_error(e);
        if subscribed_at.elapsed() > options.max_backoff * 2 {
            backoff = Duration::from_millis(50);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(options.max_backoff);
        state.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// One connection's life: subscribe, flush, then relay notifications and heartbeats until the
/// connection fails.
async fn session(
    config: &tokio_postgres::Config,
    channel: &str,
    sink: &dyn ListenerSink,
    state: &ListenerState,
    options: &ListenerOptions,
) -> Result<(), String> {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connect: {}", describe(&e)))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Notifications arrive only through `poll_message`, which also drives the connection.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(Ok(n)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(describe(&e)));
                    return;
                }
            }
        }
        let _ = tx.send(Err("connection closed by the server".to_owned()));
    });
    let _abort = AbortOnDrop(driver);

    let setup = async {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        client
            .batch_execute(&format!(
                "LISTEN {CHANNEL}; LISTEN {CATALOG_CHANNEL}; LISTEN {channel}"
            ))
            .await?;
        Ok::<_, tokio_postgres::Error>(pid)
    };
    let pid = tokio::time::timeout(options.heartbeat_timeout, setup)
        .await
        .map_err(|_| "LISTEN timed out".to_owned())?
        .map_err(|e| format!("LISTEN: {}", describe(&e)))?;
    // LISTEN is committed: from here on nothing is missed. Whatever was cached before may have
    // missed changes, so drop it, then trust the cache again.
    let subscribed = Instant::now();
    sink.flush();
    // A catalog record announced while the listener was away is looked at again too.
    sink.catalog_changed();
    state.flushes.fetch_add(1, Ordering::Relaxed);
    state.confirm(subscribed);
    state.backend_pid.store(pid, Ordering::Release);
    state.connected.store(true, Ordering::Release);
    tracing::info!(
        backend_pid = pid,
        reconnects = state.reconnects(),
        "change listener subscribed"
    );
    tracing::info!(
        reason = "the change listener subscribed: changes committed while it was not listening may have been missed",
        "cache flushed"
    );

    let mut sent: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut seq: u64 = 0;
    let mut last_back = Instant::now();
    let mut ticker = tokio::time::interval(options.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if last_back.elapsed() > options.heartbeat_timeout {
                    return Err(format!("no heartbeat came back for {:?}", last_back.elapsed()));
                }
                seq += 1;
                sent.insert(seq, Instant::now());
                let payload = seq.to_string();
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&channel, &payload];
                match tokio::time::timeout(options.heartbeat_timeout, client.execute("SELECT pg_notify($1, $2)", &params)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("heartbeat: {}", describe(&e))),
                    Err(_) => return Err("heartbeat NOTIFY timed out".to_owned()),
                }
            }
            message = rx.recv() => {
                let n = match message {
                    Some(Ok(n)) => n,
                    Some(Err(e)) => return Err(e),
                    None => return Err("connection task ended".to_owned()),
                };
                if n.channel() == channel {
                    if let Ok(s) = n.payload().parse::<u64>() {
                        if let Some(at) = sent.get(&s).copied() {
                            state.confirm(at);
                            last_back = Instant::now();
                        }
                        sent = sent.split_off(&(s + 1));
                    }
                    continue;
                }
                state.notifications.fetch_add(1, Ordering::Relaxed);
                if n.channel() == CATALOG_CHANNEL {
                    sink.catalog_changed();
                    continue;
                }
                match Notice::decode(n.payload()) {
                    Ok(notice) => sink.notice(notice),
                    Err(e) => {
                        // Never drop a change: an unreadable one flushes everything.
                        tracing::error!(error = %e, "unreadable change notification; flushing the cache");
                        sink.flush();
                        tracing::info!(reason = "an unreadable change notification", "cache flushed");
                        state.flushes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// A heartbeat channel unique to this listener, so replicas ignore each other's heartbeats.
fn heartbeat_channel() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "authz_hb_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
