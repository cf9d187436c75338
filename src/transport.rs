//! Connections: the limits the server applies beneath HTTP/2.
//!
//! - **A cap on open connections** (`max_connections`). A connection accepted past it is closed
//!   at once, counted (`authz_connections_refused_total`) and warned about at most every ten
//!   seconds. The cap keeps the process inside its file-descriptor limit: past that limit new
//!   clients would time out and nothing would say why.
//! - **A handshake deadline** (`handshake_timeout`). A new connection must send the HTTP/2
//!   client preface (the magic string and its first SETTINGS frame) within it, or it is closed:
//!   connections that send nothing, or half a preface, hold nothing for long.
//! - **An idle timeout** (`idle_timeout`). A connection with no open stream for that long is
//!   closed. [`ActivityLayer`] counts a connection's streams from the request to the end of its
//!   response body, so a Watch stream keeps its connection however quiet it is, and a client's
//!   pings do not keep an unused connection.
//! - Failed accepts (out of file descriptors and the like) back off briefly rather than spin,
//!   and are counted and warned about (rate-limited).
//!
//! HTTP/2 keepalive pings and the per-connection stream limit are hyper's, set in `server`.

use crate::metrics::{CloseReason, Metrics};
use crate::telemetry::Throttled;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::transport::server::Connected;

/// How the server treats connections.
#[derive(Clone, Debug)]
pub struct ConnectionOptions {
    /// Connections open at once; more are closed on arrival.
    pub max_connections: usize,
    /// A new connection must finish its TLS handshake and send the HTTP/2 preface within this.
    pub handshake_timeout: Duration,
    /// A connection with no open stream for this long is closed; `None` keeps it.
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 PING every this long on a connection that sent nothing meanwhile; `None`: never.
    pub keepalive_interval: Option<Duration>,
    /// A PING not answered within this closes the connection.
    pub keepalive_timeout: Duration,
    /// Concurrent streams a client may open on one connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams_per_connection: u32,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
            max_streams_per_connection: 256,
        }
    }
}

/// How long accepting pauses after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Connections refused in one poll before the accept loop yields to other tasks.
const REFUSALS_PER_POLL: usize = 64;
/// Repeated warnings (refused connections, failed accepts) are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The listener's connections, each admitted under the cap and wrapped in a [`Conn`].
pub struct Incoming {
    listener: TcpListener,
    admission: Admission,
    options: ConnectionOptions,
    backoff: Option<Pin<Box<Sleep>>>,
}

/// The connection cap: a place for each open connection, and what happens at the cap.
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    metrics: Option<Arc<Metrics>>,
    refused: Throttled,
    failed: Throttled,
}

impl Admission {
    pub fn new(options: &ConnectionOptions, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(options.max_connections.max(1))),
            limit: options.max_connections,
            metrics,
            refused: Throttled::new(WARN_EVERY),
            failed: Throttled::new(WARN_EVERY),
        }
    }

    /// A place under the cap for an accepted connection, or `None` at the cap (counted, and
    /// warned about at most every few seconds): the caller drops the connection at once.
    pub fn admit(&self) -> Option<Slot> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            if let Some(m) = &self.metrics {
                m.connection_refused();
            }
            if let Some(n) = self.refused.occurred() {
                tracing::warn!(
                    refused = n,
                    limit = self.limit,
                    "refusing connections: the server has --max-connections open; raise it (and the open-file limit) or add replicas"
                );
            }
            return None;
        };
        Some(Slot::new(permit, self.metrics.clone()))
    }

    /// A failed accept: counted and warned about; the caller backs off.
    pub fn failed(&self, e: &io::Error) {
        if let Some(m) = &self.metrics {
            m.accept_error();
        }
        if let Some(n) = self.failed.occurred() {
            tracing::warn!(error = %e, failures = n, "cannot accept connections (is the open-file limit reached?); retrying");
        }
    }
}

impl Incoming {
    /// Accepts plain-text connections on `listener` under `admission`'s cap and `options`.
    pub fn new(listener: TcpListener, admission: Admission, options: &ConnectionOptions) -> Self {
        Self {
            listener,
            admission,
            options: options.clone(),
            backoff: None,
        }
    }

    fn admit(&mut self, tcp: TcpStream) -> Option<Conn<TcpStream>> {
        // Dropped at the cap: the client sees the connection closed at once.
        let slot = self.admission.admit()?;
        // Checks are small request/response pairs: don't let Nagle hold them back.
        let _ = tcp.set_nodelay(true);
        Some(Conn::new(tcp, slot, &self.options))
    }

    fn failed(&mut self, e: &io::Error) {
        self.admission.failed(e);
        self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
    }
}

/// Errors of one connection that came and went before it was accepted.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Conn<TcpStream>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        for _ in 0..REFUSALS_PER_POLL {
            if let Some(backoff) = this.backoff.as_mut() {
                ready!(backoff.as_mut().poll(cx));
                this.backoff = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((tcp, _)) => {
                    if let Some(conn) = this.admit(tcp) {
                        return Poll::Ready(Some(Ok(conn)));
                    }
                }
                Err(e) if transient(&e) => {}
                Err(e) => this.failed(&e),
            }
        }
        // A flood of refusals: let other tasks run before accepting more.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// One place under the connection cap, given back when the connection is dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Option<Arc<Metrics>>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, metrics: Option<Arc<Metrics>>) -> Self {
        if let Some(m) = &metrics {
            m.connection_opened();
        }
        Self {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.connection_ended();
        }
    }
}

/// A connection's open streams, counted by [`ActivityLayer`].
#[derive(Debug)]
pub struct Activity {
    streams: AtomicUsize,
    /// When the last stream ended (or the connection opened); written only then, read only
    /// when the connection's timer fires.
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            streams: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    /// When the connection became idle; `None` while a stream is open.
    fn idle_since(&self) -> Option<Instant> {
        if self.streams.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One open stream; dropped when its response is done (for a streaming one, with its body).
struct StreamGuard(Arc<Activity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // Nobody is woken: the connection's timer looks at the count when it fires.
        if self.0.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }
}

/// What every request on a [`Conn`] carries in its extensions: the wrapped stream's own
/// connection info, and the connection's stream count.
#[derive(Clone, Debug)]
pub struct ConnInfo<I> {
    pub inner: I,
    activity: Arc<Activity>,
}

/// The client connection preface: 24 bytes of magic, then a SETTINGS frame (9-byte header and
/// its payload). Only its length is tracked here; hyper checks the content.
struct Preface {
    seen: usize,
    needed: usize,
    header: [u8; FRAME_HEADER],
}

const MAGIC_LEN: usize = 24;
const FRAME_HEADER: usize = 9;

impl Preface {
    fn new() -> Self {
        Self {
            seen: 0,
            needed: MAGIC_LEN + FRAME_HEADER,
            header: [0; FRAME_HEADER],
        }
    }

    /// Counts bytes read; true once the whole preface has arrived.
    fn consume(&mut self, data: &[u8]) -> bool {
        for &b in data {
            if self.seen >= self.needed {
                break;
            }
            if let Some(slot) = self
                .seen
                .checked_sub(MAGIC_LEN)
                .and_then(|i| self.header.get_mut(i))
            {
                *slot = b;
            }
            self.seen += 1;
            if self.seen == MAGIC_LEN + FRAME_HEADER {
                let [a, b, c, ..] = self.header;
                let payload = u32::from_be_bytes([0, a, b, c]);
                self.needed += usize::try_from(payload).unwrap_or(usize::MAX - self.needed);
            }
        }
        self.seen >= self.needed
    }
}

/// An accepted connection under the server's deadlines; it holds its place under the cap until
/// dropped.
pub struct Conn<S> {
    io: S,
    activity: Arc<Activity>,
    _slot: Slot,
    /// `Some` until the whole preface has arrived.
    preface: Option<Preface>,
    handshake_deadline: Instant,
    idle_timeout: Option<Duration>,
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    /// The waker the timer was last polled with: while the task is the same and the timer has
    /// not fired, a read that waits need not poll the timer again.
    armed: Option<Waker>,
    /// Closed by a deadline: reads see end of stream.
    closed: bool,
    metrics: Option<Arc<Metrics>>,
}

impl<S> Conn<S> {
    /// A connection holding `slot`, under the handshake deadline from now (its HTTP/2 preface,
    /// read in the clear: under TLS, after the TLS handshake) and then the idle timeout.
    pub fn new(io: S, slot: Slot, options: &ConnectionOptions) -> Self {
        let handshake_deadline = Instant::now() + options.handshake_timeout;
        let metrics = slot.metrics.clone();
        Self {
            io,
            activity: Arc::new(Activity::new()),
            _slot: slot,
            preface: Some(Preface::new()),
            handshake_deadline,
            idle_timeout: options.idle_timeout,
            timer: Box::pin(tokio::time::sleep_until(handshake_deadline)),
            timer_at: handshake_deadline,
            armed: None,
            closed: false,
            metrics,
        }
    }

    /// The deadline that applies now, if it has passed: the handshake's until the preface has
    /// arrived, then the idle timeout's while no stream is open.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<CloseReason> {
        let idle = match self.preface {
            Some(_) => None,
            None => Some(self.idle_timeout?),
        };
        // The timer is moved only when it fires: then the deadline in force is worked out and,
        // if it has not passed, the timer is re-armed to it. Requests come and go without a
        // timer update or a wake-up each; an idle connection is closed between one and two
        // idle timeouts after its last stream ended.
        let waker = cx.waker();
        if self.armed.as_ref().is_some_and(|w| w.will_wake(waker)) && !self.timer.is_elapsed() {
            return None;
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            self.armed = Some(waker.clone());
            return None;
        }
        let now = Instant::now();
        let (due, reason) = match idle {
            None => (self.handshake_deadline, CloseReason::HandshakeTimeout),
            Some(idle) => match self.activity.idle_since() {
                // A stream is open: look again an idle timeout from now.
                None => (now + idle, CloseReason::Idle),
                Some(since) => (since + idle, CloseReason::Idle),
            },
        };
        if now < due {
            self.timer.as_mut().reset(due);
            self.timer_at = due;
            // Registers the waker for the new deadline, which has not passed.
            let _ = self.timer.as_mut().poll(cx);
            self.armed = Some(waker.clone());
            return None;
        }
        self.closed = true;
        if let Some(m) = &self.metrics {
            m.connection_closed(reason);
        }
        Some(reason)
    }

    /// While the preface is awaited, a write that cannot proceed (a client that does not read)
    /// is held to the handshake deadline too.
    fn write_blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.preface.is_some() && self.expired(cx).is_some() {
            return Poll::Ready(Err(handshake_timed_out()));
        }
        Poll::Pending
    }
}

fn handshake_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client did not send the HTTP/2 preface in time",
    )
}

impl<S: Connected> Connected for Conn<S> {
    type ConnectInfo = ConnInfo<S::ConnectInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            inner: self.io.connect_info(),
            activity: self.activity.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(preface) = this.preface.as_mut() {
                    let read = buf.filled().get(before..).unwrap_or_default();
                    if preface.consume(read) {
                        this.preface = None;
                        // From the handshake deadline to the idle timeout's, once.
                        if let Some(idle) = this.idle_timeout {
                            let due = Instant::now() + idle;
                            this.timer.as_mut().reset(due);
                            this.timer_at = due;
                            this.armed = None;
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.expired(cx) {
                None => Poll::Pending,
                Some(CloseReason::HandshakeTimeout) => Poll::Ready(Err(handshake_timed_out())),
                // No stream is open: end of stream closes the connection cleanly.
                Some(CloseReason::Idle) => Poll::Ready(Ok(())),
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.write_blocked(cx).map_ok(|()| 0),
            done => done,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.write_blocked(cx).map_ok(|()| 0),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.write_blocked(cx),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Tower middleware that counts each connection's open streams (for the idle timeout).
pub struct ActivityLayer<I>(PhantomData<fn() -> I>);

impl<I> ActivityLayer<I> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<I> Default for ActivityLayer<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I> Clone for ActivityLayer<I> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<S, I> tower::Layer<S> for ActivityLayer<I> {
    type Service = Tracked<S, I>;

    fn layer(&self, inner: S) -> Tracked<S, I> {
        Tracked {
            inner,
            _info: PhantomData,
        }
    }
}

pub struct Tracked<S, I> {
    inner: S,
    _info: PhantomData<fn() -> I>,
}

impl<S: Clone, I> Clone for Tracked<S, I> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _info: PhantomData,
        }
    }
}

impl<S, I> tower::Service<http::Request<Body>> for Tracked<S, I>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    I: Clone + Send + Sync + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = TrackedCall<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let guard = req
            .extensions()
            .get::<ConnInfo<I>>()
            .map(|info| info.activity.begin());
        // A unary call's stream ends with its response; only a streaming one (Watch) lives on
        // in its body, which then holds the stream's place.
        let streaming = req.uri().path().ends_with("/Watch");
        TrackedCall {
            call: self.inner.call(req),
            guard,
            streaming,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call under [`ActivityLayer`]: its stream counts as open until the call is done (and
    /// its response body too, for a streaming call).
    pub struct TrackedCall<F> {
        #[pin]
        call: F,
        guard: Option<StreamGuard>,
        streaming: bool,
    }
}

impl<F, E> Future for TrackedCall<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.call.poll(cx))?;
        Poll::Ready(Ok(match this.guard.take() {
            Some(guard) if *this.streaming => response.map(|body| {
                Body::new(GuardedBody {
                    inner: body,
                    _guard: guard,
                })
            }),
            _ => response,
        }))
    }
}

/// A response body that holds its stream's place in the connection's count until it is
/// dropped (sent whole, or reset).
struct GuardedBody {
    inner: Body,
    _guard: StreamGuard,
}

impl http_body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::Preface;

    #[test]
    fn the_preface_ends_after_its_settings_frame() {
        let mut p = Preface::new();
        let magic = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert!(!p.consume(magic));
        // A SETTINGS frame with one 6-byte setting, read in two pieces.
        assert!(!p.consume(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3]));
        assert!(p.consume(&[0, 0, 0, 100, 0xff, 0xff]));
        // An empty SETTINGS frame at once, followed by more frames.
        let mut p = Preface::new();
        let mut all = magic.to_vec();
        all.extend([0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 4, 8, 0, 0, 0, 0, 0]);
        assert!(p.consume(&all));
        // Half a preface is not one.
        let mut p = Preface::new();
        assert!(!p.consume(&magic[..10]));
    }
}
