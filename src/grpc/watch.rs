//! Watch streams: each replays its tenant's change log, then follows it as one hub per server
//! fans commit announcements out to the open streams.
//!
//! An open stream costs no database work while its tenant is quiet. The hub follows the store's
//! commit announcements (this replica's own commits, and every replica's through the change
//! listener) and keeps, for each watched tenant, the latest revision announced. A stream reads
//! the change log only when that revision passes the last change it sent. When announcements may
//! have been missed (the listener subscribed again, or the hub fell behind the announcements)
//! the hub reads the latest revision of every watched tenant in one query, and it does the same
//! every [`WatchOptions::resync_every`] as a safety net: one query per server, whatever the
//! number of streams.
//!
//! Streams are capped per server and per tenant (RESOURCE_EXHAUSTED past either). When the
//! server shuts down every stream ends at once with UNAVAILABLE, so clients reconnect elsewhere
//! instead of holding the drain open.

use super::convert;
use super::pb;
use super::status::to_status;
use crate::app::Authz;
use crate::ids::TenantId;
use crate::metrics::{Metrics, WatchLimit};
use crate::store::{CommitEvent, Revision};
use crate::telemetry::Throttled;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tonic::Status;

/// How many Watch streams the server keeps open, and how often it re-reads the watched
/// tenants' revisions as a safety net.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Open streams on this server; more are refused with RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Open streams of one tenant on this server.
    pub max_streams_per_tenant: usize,
    /// The hub re-reads every watched tenant's latest revision this often (one query), in case
    /// an announcement was lost.
    pub resync_every: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            max_streams: 1000,
            max_streams_per_tenant: 100,
            resync_every: Duration::from_secs(30),
        }
    }
}

/// The message of the status a stream ends with when the server shuts down.
pub const SHUTTING_DOWN: &str =
    "the server is shutting down; reconnect and resume the Watch from the last revision received";

/// How long shutdown waits after the streams' final statuses are sent, before GOAWAY.
const LINGER: Duration = Duration::from_millis(250);

/// The fan-out point of every Watch stream of one server.
pub struct WatchHub {
    shared: Arc<Shared>,
    pump: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHub {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

struct Shared {
    options: WatchOptions,
    state: Mutex<State>,
    closing: watch::Sender<bool>,
    /// Response streams not yet dropped (by hyper, once their end is handed to HTTP/2).
    bodies: Arc<watch::Sender<usize>>,
    metrics: Option<Arc<Metrics>>,
    refusals: Throttled,
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, Watched>,
    open: usize,
}

/// A watched tenant: the latest revision announced, and how many streams watch it.
struct Watched {
    latest: watch::Sender<Revision>,
    streams: usize,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock's data is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raises a watched tenant's latest revision; unwatched tenants are ignored.
    fn announce(&self, tenant: &str, revision: Revision) {
        if let Some(w) = self.state().tenants.get(tenant) {
            w.latest.send_if_modified(|latest| {
                let newer = revision > *latest;
                if newer {
                    *latest = revision;
                }
                newer
            });
        }
    }

    fn watched(&self) -> Vec<String> {
        self.state().tenants.keys().cloned().collect()
    }

    fn refuse(&self, limit: WatchLimit, message: String) -> Status {
        if let Some(m) = &self.metrics {
            m.watch_refused(limit);
        }
        if let Some(n) = self.refusals.occurred() {
            tracing::warn!(refused = n, "{message}");
        }
        Status::resource_exhausted(message)
    }
}

impl WatchHub {
    /// Starts the hub's task, which follows `app`'s commit announcements until the hub is
    /// dropped.
    pub fn start(app: Arc<Authz>, options: WatchOptions, metrics: Option<Arc<Metrics>>) -> Self {
        let shared = Arc::new(Shared {
            options,
            state: Mutex::new(State::default()),
            closing: watch::channel(false).0,
            bodies: Arc::new(watch::channel(0).0),
            metrics,
            refusals: Throttled::new(Duration::from_secs(10)),
        });
        // Subscribed here, before any stream can register, so no announcement falls between.
        let commits = app.commits();
        let pump = tokio::spawn(pump(app, shared.clone(), commits));
        Self { shared, pump }
    }

    /// Registers one stream of `tenant`, or refuses it: RESOURCE_EXHAUSTED at a limit,
    /// UNAVAILABLE once the server is shutting down. Register before reading the change log,
    /// so no commit falls between the read and the wait.
    pub fn subscribe(&self, tenant: &TenantId) -> Result<Subscription, Status> {
        let shared = &self.shared;
        if *shared.closing.borrow() {
            return Err(Status::unavailable(SHUTTING_DOWN));
        }
        let mut state = shared.state();
        let options = &shared.options;
        if state.open >= options.max_streams {
            drop(state);
            return Err(shared.refuse(
                WatchLimit::Server,
                format!(
                    "the server has its limit of {} Watch streams open; close streams you no longer need, use another replica, or raise --max-watch-streams",
                    options.max_streams
                ),
            ));
        }
        let streams = state.tenants.get(tenant.as_str()).map_or(0, |w| w.streams);
        if streams >= options.max_streams_per_tenant {
            drop(state);
            return Err(shared.refuse(
                WatchLimit::Tenant,
                format!(
                    "tenant `{tenant}` has its limit of {} Watch streams open on this server; close streams you no longer need, or raise --max-watch-streams-per-tenant",
                    options.max_streams_per_tenant
                ),
            ));
        }
        let watched = state
            .tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Watched {
                latest: watch::channel(0).0,
                streams: 0,
            });
        watched.streams += 1;
        let latest = watched.latest.subscribe();
        state.open += 1;
        let open = state.open;
        drop(state);
        if let Some(m) = &shared.metrics {
            m.watch_streams(open);
        }
        Ok(Subscription {
            shared: shared.clone(),
            tenant: tenant.clone(),
            latest,
            closing: shared.closing.subscribe(),
        })
    }

    /// Ends every open stream at once (UNAVAILABLE) and refuses new ones.
    pub fn close(&self) {
        self.shared.closing.send_replace(true);
    }

    /// Ends every open stream, then waits (at most `patience`) until each one's final status
    /// has been handed to HTTP/2, and a moment more, so clients read the statuses before the
    /// connections' GOAWAY: a client that sees the GOAWAY first may close the connection and
    /// drop the statuses it had received but not yet read.
    pub async fn close_and_flush(&self, patience: Duration) {
        self.close();
        let mut bodies = self.shared.bodies.subscribe();
        if *bodies.borrow_and_update() == 0 {
            return;
        }
        let flushed = async {
            let _ = bodies.wait_for(|open| *open == 0).await;
            tokio::time::sleep(LINGER).await;
        };
        let _ = tokio::time::timeout(patience, flushed).await;
    }

    /// The Watch stream of a registered subscription: the change log replayed after `after`,
    /// then read again as this hub announces the tenant's commits.
    pub fn follow(
        &self,
        app: Arc<Authz>,
        subscription: Subscription,
        after: Revision,
    ) -> WatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BATCH);
        let stream = self.respond(
            &subscription,
            tokio_stream::wrappers::ReceiverStream::new(rx),
        );
        let metrics = self.shared.metrics.clone();
        tokio::spawn(follow(app, metrics, subscription, after, tx));
        Box::pin(stream)
    }

    /// A response stream of this hub: it ends with UNAVAILABLE when the hub closes.
    fn respond<S>(&self, subscription: &Subscription, inner: S) -> Closing<S> {
        self.shared.bodies.send_modify(|open| *open += 1);
        Closing {
            inner,
            closed: Some(Box::pin(subscription.closed())),
            bodies: self.shared.bodies.clone(),
        }
    }
}

/// Changes read from the log per query.
const WATCH_BATCH: usize = 100;

/// A Watch response stream, as AuthzService returns it.
pub type WatchStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

/// Most bytes of user ids one Watch message lists; a change touching more says `all_users`
/// instead (as its NOTIFY does), so every change fits in a message.
const WATCH_MAX_USER_BYTES: usize = 256 * 1024;

fn change_out(c: crate::store::Change) -> pb::WatchResponse {
    let user_bytes: usize = c.touched.users.iter().map(|u| u.len() + 3).sum();
    let too_many = user_bytes > WATCH_MAX_USER_BYTES;
    pb::WatchResponse {
        revision: convert::revision(c.revision),
        commit_time: Some(convert::timestamp(c.committed_at)),
        operation: c.operation,
        user_ids: if too_many {
            Vec::new()
        } else {
            c.touched.users
        },
        group_keys: c.touched.groups,
        all_users: c.touched.all_users || too_many,
    }
}

/// Completes once this replica refuses to serve (its catalog no longer agrees with the
/// database's); looks once a second, without touching the database.
async fn catalog_refused(app: &Authz) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if app.catalog_refusal().is_some() {
            return;
        }
    }
}

/// Feeds one Watch: replays the log after `after`, then reads it again each time the hub
/// announces a revision past what was sent, until the client goes away or the server shuts
/// down. Between announcements it does no database work.
async fn follow(
    app: Arc<Authz>,
    metrics: Option<Arc<Metrics>>,
    mut subscription: Subscription,
    mut after: u64,
    tx: tokio::sync::mpsc::Sender<Result<pb::WatchResponse, Status>>,
) {
    let tenant = subscription.tenant().clone();
    loop {
        // What was announced before this read; the read covers it.
        let announced = subscription.latest();
        loop {
            // A replica whose catalog the database no longer agrees with streams nothing more:
            // the client resumes from the last revision on an updated replica.
            if let Some(reason) = app.catalog_refusal() {
                let _ = tx.send(Err(Status::unavailable(reason))).await;
                return;
            }
            if let Some(m) = &metrics {
                m.watch_read();
            }
            let changes = tokio::select! {
                changes = app.changes_since(&tenant, after, WATCH_BATCH) => changes,
                () = tx.closed() => return,
            };
            let changes = match changes {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(to_status(e))).await;
                    return;
                }
            };
            let full = changes.len() == WATCH_BATCH;
            for c in changes {
                after = c.revision;
                if tx.send(Ok(change_out(c))).await.is_err() {
                    return;
                }
            }
            if !full {
                break;
            }
        }
        // Wait for a revision past both what was sent and what was announced (an announced
        // revision the read did not find would otherwise be read again and again).
        tokio::select! {
            more = subscription.wait_past(after.max(announced)) => if !more { return },
            () = tx.closed() => return,
            // A quiet tenant's stream learns this way that its replica stopped serving.
            () = catalog_refused(&app) => {
                if let Some(reason) = app.catalog_refusal() {
                    let _ = tx.send(Err(Status::unavailable(reason))).await;
                }
                return;
            }
        }
    }
}

/// Follows the announcements; re-reads the watched tenants' revisions when some may have been
/// missed, and every `resync_every`.
async fn pump(app: Arc<Authz>, shared: Arc<Shared>, mut commits: crate::store::CommitSignal) {
    use tokio::sync::broadcast::error::RecvError;
    let mut tick = tokio::time::interval(shared.options.resync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // After a failed re-read, try again soon rather than at the next tick.
    let mut retry: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let retry_due = async {
            match retry.as_mut() {
                Some(sleep) => sleep.as_mut().await,
                None => std::future::pending().await,
            }
        };
        let resync = tokio::select! {
            event = commits.recv() => match event {
                Ok(CommitEvent::Committed(tenant, revision)) => {
                    shared.announce(&tenant, revision);
                    false
                }
                Ok(CommitEvent::Resync) | Err(RecvError::Lagged(_)) => true,
                // The store is gone: nothing will be announced again.
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => true,
            () = retry_due => true,
        };
        if !resync {
            continue;
        }
        retry = None;
        let tenants = shared.watched();
        if tenants.is_empty() {
            continue;
        }
        match app.latest_revisions(&tenants).await {
            Ok(latest) => {
                for (tenant, revision) in latest {
                    shared.announce(&tenant, revision);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the watched tenants' revisions; Watch streams may lag until it succeeds");
                retry = Some(Box::pin(tokio::time::sleep(Duration::from_secs(1))));
            }
        }
    }
}

/// One registered stream: the tenant's latest announced revision, and the shutdown signal.
pub struct Subscription {
    shared: Arc<Shared>,
    tenant: TenantId,
    latest: watch::Receiver<Revision>,
    closing: watch::Receiver<bool>,
}

impl Subscription {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The latest revision announced for the tenant so far.
    pub fn latest(&self) -> Revision {
        *self.latest.borrow()
    }

    /// Waits until a revision past `after` is announced: true then, false when the server is
    /// shutting down.
    pub async fn wait_past(&mut self, after: Revision) -> bool {
        tokio::select! {
            r = self.latest.wait_for(|latest| *latest > after) => r.is_ok(),
            _ = self.closing.wait_for(|closing| *closing) => false,
        }
    }

    /// Completes when the server starts shutting down.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut closing = self.closing.clone();
        async move {
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.open = state.open.saturating_sub(1);
        if let Some(w) = state.tenants.get_mut(self.tenant.as_str()) {
            w.streams = w.streams.saturating_sub(1);
            if w.streams == 0 {
                state.tenants.remove(self.tenant.as_str());
            }
        }
        let open = state.open;
        drop(state);
        if let Some(m) = &self.shared.metrics {
            m.watch_streams(open);
        }
    }
}

/// A Watch response stream that ends with UNAVAILABLE as soon as the server shuts down, even
/// when the client has stopped reading.
pub struct Closing<S> {
    inner: S,
    closed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    bodies: Arc<watch::Sender<usize>>,
}

impl<S> Drop for Closing<S> {
    fn drop(&mut self) {
        self.bodies
            .send_modify(|open| *open = open.saturating_sub(1));
    }
}

impl<S> tokio_stream::Stream for Closing<S>
where
    S: tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Unpin,
{
    type Item = Result<pb::WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(closed) = self.closed.as_mut() else {
            return Poll::Ready(None);
        };
        if closed.as_mut().poll(cx).is_ready() {
            self.closed = None;
            return Poll::Ready(Some(Err(Status::unavailable(SHUTTING_DOWN))));
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.closed = None;
        }
        polled
    }
}
