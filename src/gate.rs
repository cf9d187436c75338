//! The request gate: tower middleware in front of every service.
//!
//! - **Authentication**: callers present `authorization: Bearer <key>`; each key maps to a role.
//!   `check` may call AuthzService, `admin` AdminService (its mutations must name an actor,
//!   enforced by the handlers), `operator` everything. A missing or unknown key is
//!   UNAUTHENTICATED, a role that may not call the service PERMISSION_DENIED. Keys are compared
//!   in constant time and never logged; a key listed with two roles is refused. Under mutual
//!   TLS a verified client certificate whose name is mapped ([`ClientRoles`]) authenticates
//!   without a key; with a key as well, the narrower of the two roles applies. With no keys and
//!   no client roles configured every caller is an operator (the binary then refuses
//!   non-loopback addresses unless told `--insecure` or serving mutual TLS).
//! - **Admission**: at most `max_concurrent` requests run at once; more are shed at once with
//!   RESOURCE_EXHAUSTED rather than queued into collapse. Each request has a deadline, the
//!   server's limit or the caller's `grpc-timeout` if sooner (DEADLINE_EXCEEDED past it).
//!
//! Health and reflection stay open: probes and `grpcurl list` need no key.
//!
//! Longer than most: the last fifth is its unit tests, next to the layer they test.

use crate::metrics::Metrics;
use crate::tls::{ClientNames, PeerInfo};
use crate::transport::ConnInfo;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::body::Body;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Check,
    Admin,
    Operator,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "check" => Some(Role::Check),
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Check => "check",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }

    fn allows(self, service: &str) -> bool {
        match self {
            Role::Operator => true,
            Role::Check => service == "authz.v1.AuthzService",
            Role::Admin => service == "authz.v1.AdminService",
        }
    }

    /// The role that may do only what both may: the other role when one is `operator`, none
    /// for `check` and `admin` (they share no service).
    pub fn narrower(self, other: Role) -> Option<Role> {
        match (self, other) {
            (a, b) if a == b => Some(a),
            (Role::Operator, r) | (r, Role::Operator) => Some(r),
            _ => None,
        }
    }
}

/// Each configured key with its role.
type KeyList = Vec<(Role, Vec<u8>)>;

/// Shortest key accepted: shorter ones are guessable.
pub const MIN_KEY_LEN: usize = 16;

/// The configured keys: from `AUTHZ_API_KEYS` (`role:key,role:key`) and an optional file (one
/// `role:key` a line, `#` comments), re-read by [`Keys::reload`].
pub struct Keys {
    inline: String,
    file: Option<PathBuf>,
    entries: RwLock<Arc<KeyList>>,
}

/// Never shows a key: only how many there are and where they come from.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.read().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("Keys")
            .field("count", &n)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// One configured key and where it was given (`AUTHZ_API_KEYS entry 2`, `/etc/keys line 7`).
struct Entry {
    role: Role,
    key: Vec<u8>,
    place: String,
}

/// Parses `role:key` entries separated by `separator`; `unit` names them in errors (`entry` for
/// the comma-separated list, `line` for a file).
fn parse(text: &str, separator: char, origin: &str, unit: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (i, entry) in text.split(separator).enumerate() {
        let entry = entry.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let place = format!("{origin} {unit} {}", i + 1);
        let Some((role, key)) = entry.split_once(':') else {
            return Err(format!("{place} is not `role:key`"));
        };
        let role = Role::parse(role.trim()).ok_or_else(|| {
            format!(
                "{place}: unknown role {:?}; use check, admin or operator",
                role.trim()
            )
        })?;
        let key = key.trim();
        if key.len() < MIN_KEY_LEN {
            return Err(format!(
                "{place}: the {} key is {} characters; use at least {MIN_KEY_LEN}",
                role.name(),
                key.len()
            ));
        }
        out.push(Entry {
            role,
            key: key.as_bytes().to_vec(),
            place,
        });
    }
    Ok(out)
}

/// Refuses a key given with two different roles: whichever came first would win silently (an
/// operator key "downgraded" by a `check:` line would stay operator). The same key twice with
/// the same role is harmless.
fn refuse_conflicts(entries: &[Entry]) -> Result<(), String> {
    let mut seen: std::collections::HashMap<&[u8], &Entry> = std::collections::HashMap::new();
    for entry in entries {
        match seen.get(entry.key.as_slice()) {
            Some(first) if first.role != entry.role => {
                return Err(format!(
                    "{}: this {} key is already the {} key of {}; a key has one role, so remove one of them",
                    entry.place,
                    entry.role.name(),
                    first.role.name(),
                    first.place
                ));
            }
            Some(_) => {}
            None => {
                seen.insert(&entry.key, entry);
            }
        }
    }
    Ok(())
}

impl Keys {
    pub fn load(inline: &str, file: Option<PathBuf>) -> Result<Keys, String> {
        let keys = Keys {
            inline: inline.to_owned(),
            file,
            entries: RwLock::new(Arc::new(Vec::new())),
        };
        keys.reload()?;
        Ok(keys)
    }

    /// Re-reads the keys; on an error the previous keys stay in force.
    pub fn reload(&self) -> Result<usize, String> {
        let mut entries = parse(&self.inline, ',', "AUTHZ_API_KEYS", "entry")?;
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            entries.extend(parse(&text, '\n', &path.display().to_string(), "line")?);
        }
        refuse_conflicts(&entries)?;
        let entries: KeyList = entries.into_iter().map(|e| (e.role, e.key)).collect();
        let n = entries.len();
        if let Ok(mut current) = self.entries.write() {
            *current = Arc::new(entries);
        }
        Ok(n)
    }

    pub fn file(&self) -> Option<&PathBuf> {
        self.file.as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.read().map(|e| e.is_empty()).unwrap_or(true)
    }

    /// The role of a presented key. Every configured key is compared, in constant time.
    fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let entries = self.entries.read().ok()?.clone();
        let mut found = None;
        for (role, key) in entries.iter() {
            if bool::from(key.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(*role);
            }
        }
        found
    }
}

/// A name a client certificate may carry, as the client-roles file spells it: `cn=NAME` (a
/// subject common name), `dns=NAME` (a DNS subject alternative name, compared without case),
/// `uri=URI` (a URI subject alternative name, e.g. a SPIFFE id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ClientName {
    Cn(String),
    Dns(String),
    Uri(String),
}

impl std::fmt::Display for ClientName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientName::Cn(n) => write!(f, "cn={n}"),
            ClientName::Dns(n) => write!(f, "dns={n}"),
            ClientName::Uri(n) => write!(f, "uri={n}"),
        }
    }
}

type ClientMap = std::collections::HashMap<ClientName, Role>;

/// Roles of verified client certificates (mutual TLS), from a file of `role:cn=NAME`,
/// `role:dns=NAME` or `role:uri=URI` lines (`#` comments), re-read by [`ClientRoles::reload`].
/// A certificate gets the role of the names it carries; one whose names map to different roles
/// gets the narrower one (none for `check` and `admin`).
pub struct ClientRoles {
    file: PathBuf,
    entries: RwLock<Arc<ClientMap>>,
}

impl std::fmt::Debug for ClientRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.read().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("ClientRoles")
            .field("count", &n)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn parse_client_roles(text: &str, origin: &str) -> Result<ClientMap, String> {
    let mut out = ClientMap::new();
    let mut lines = std::collections::HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let place = format!("{origin} line {}", i + 1);
        let Some((role, name)) = line.split_once(':') else {
            return Err(format!(
                "{place} is not `role:cn=NAME`, `role:dns=NAME` or `role:uri=URI`"
            ));
        };
        let role = Role::parse(role.trim()).ok_or_else(|| {
            format!(
                "{place}: unknown role {:?}; use check, admin or operator",
                role.trim()
            )
        })?;
        let name = match name.trim().split_once('=') {
            Some((kind, value)) if !value.trim().is_empty() => {
                let value = value.trim();
                match kind.trim() {
                    "cn" => ClientName::Cn(value.to_owned()),
                    "dns" => ClientName::Dns(value.to_ascii_lowercase()),
                    "uri" => ClientName::Uri(value.to_owned()),
                    other => {
                        return Err(format!(
                            "{place}: unknown name kind {other:?}; use cn=, dns= or uri="
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "{place}: name the certificate as cn=NAME, dns=NAME or uri=URI"
                ));
            }
        };
        if let Some(first) = out.get(&name).filter(|r| **r != role) {
            return Err(format!(
                "{place}: `{name}` is already mapped to {} at line {}; a name has one role, so remove one of them",
                first.name(),
                lines.get(&name).copied().unwrap_or(0)
            ));
        }
        lines.entry(name.clone()).or_insert(i + 1);
        out.insert(name, role);
    }
    Ok(out)
}

impl ClientRoles {
    pub fn load(file: PathBuf) -> Result<ClientRoles, String> {
        let roles = ClientRoles {
            file,
            entries: RwLock::new(Arc::new(ClientMap::new())),
        };
        roles.reload()?;
        Ok(roles)
    }

    /// Re-reads the file; on an error the previous mapping stays in force.
    pub fn reload(&self) -> Result<usize, String> {
        let text = std::fs::read_to_string(&self.file)
            .map_err(|e| format!("cannot read {}: {e}", self.file.display()))?;
        let entries = parse_client_roles(&text, &self.file.display().to_string())?;
        let n = entries.len();
        if let Ok(mut current) = self.entries.write() {
            *current = Arc::new(entries);
        }
        Ok(n)
    }

    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// The role of a certificate with these names: `Ok(None)` when none is mapped, an error
    /// when its names map to roles that share no service.
    fn role_of(&self, names: &ClientNames) -> Result<Option<Role>, String> {
        let Ok(entries) = self.entries.read().map(|e| e.clone()) else {
            return Ok(None);
        };
        let candidates = names
            .common_names
            .iter()
            .map(|n| ClientName::Cn(n.clone()))
            .chain(names.dns_names.iter().map(|n| ClientName::Dns(n.clone())))
            .chain(names.uris.iter().map(|n| ClientName::Uri(n.clone())));
        let mut role: Option<Role> = None;
        for name in candidates {
            let Some(mapped) = entries.get(&name).copied() else {
                continue;
            };
            role = match role {
                None => Some(mapped),
                Some(r) => Some(r.narrower(mapped).ok_or_else(|| {
                    format!(
                        "the client certificate's names map to both the {} and the {} role, which share no service",
                        r.name(),
                        mapped.name()
                    )
                })?),
            };
        }
        Ok(role)
    }
}

/// Admission and authentication settings.
#[derive(Clone)]
pub struct GateLayer {
    shared: Arc<Shared>,
}

/// What every request through the gate reads: one `Arc` clone per request.
struct Shared {
    keys: Option<Arc<Keys>>,
    clients: Option<Arc<ClientRoles>>,
    /// Requests running now; admission refuses past `max_concurrent`. Nothing waits for a
    /// place, so a counter is enough (no semaphore and its wait queue's lock).
    running: AtomicUsize,
    max_concurrent: usize,
    timeout: Duration,
    metrics: Option<Arc<Metrics>>,
    refusal: Option<Refusal>,
    /// The server's failures already logged, so a flood of them is a line a second.
    faults: crate::telemetry::FaultLog,
}

/// Why the server does not serve the two services right now (its catalog disagrees with the
/// database's), or `None`.
pub type Refusal = Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl GateLayer {
    /// With neither `keys` nor `clients`, every caller is an operator. While `refusal` gives a
    /// reason, every authenticated call is answered UNAVAILABLE with it.
    pub fn new(
        keys: Option<Arc<Keys>>,
        clients: Option<Arc<ClientRoles>>,
        max_concurrent: usize,
        timeout: Duration,
        metrics: Option<Arc<Metrics>>,
        refusal: Option<Refusal>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                keys,
                clients,
                running: AtomicUsize::new(0),
                max_concurrent: max_concurrent.max(1),
                timeout,
                metrics,
                refusal,
                faults: crate::telemetry::FaultLog::default(),
            }),
        }
    }
}

/// A place among the running requests, given back when the request is done.
pub struct Running(Arc<Shared>);

impl Running {
    fn take(shared: &Arc<Shared>) -> Option<Running> {
        if shared.running.fetch_add(1, Ordering::AcqRel) >= shared.max_concurrent {
            shared.running.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Running(shared.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The canonical name of a gRPC status code, as metrics label it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    shared: Arc<Shared>,
}

fn refuse(status: Status) -> http::Response<Body> {
    status.into_http()
}

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// The status of a response as far as its headers tell: errors are trailers-only responses
/// with `grpc-status` in the headers; a response without it has started successfully.
fn response_code(response: &http::Response<Body>) -> &'static str {
    let code = response
        .headers()
        .get(GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    code_name(code)
}

/// The service a request path names (`authz.v1.AuthzService` of
/// `/authz.v1.AuthzService/Check`).
fn service_of(path: &str) -> &str {
    let path = path.strip_prefix('/').unwrap_or(path);
    // A byte scan: paths are short, and `/` is ASCII.
    match path.bytes().position(|b| b == b'/') {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    }
}

impl<S> tower::Service<http::Request<Body>> for Gate<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = GateCall<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // Take the service that was polled ready; leave a clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let service = service_of(req.uri().path());
        if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
            return GateCall::Open {
                call: inner.call(req),
            };
        }
        let start = std::time::Instant::now();
        let shared = &self.shared;
        let span = crate::telemetry::rpc_span(req.uri().path(), req.headers());
        let peer = crate::telemetry::rpc_lines()
            .then(|| peer_address(&req))
            .flatten();
        let mut facts = crate::telemetry::RequestFacts {
            traced: !span.is_disabled(),
            ..Default::default()
        };
        let admitted = admit(shared, service, &req, start, &mut facts);
        let done = Done {
            shared: shared.clone(),
            // The path outlives the request, for the metrics and the log line: a
            // reference-counted copy, not a new string.
            path: req.uri().path_and_query().cloned(),
            start,
            peer,
        };
        let (running, deadline) = match admitted {
            Ok(admitted) => admitted,
            Err(refused) => {
                return GateCall::Refused {
                    response: Some(refuse(refused)),
                    facts,
                    done: Some(done),
                };
            }
        };
        let call = {
            let _inside = span.enter();
            inner.call(req)
        };
        // The handler runs inside: it records its tenant and revision in `facts`.
        GateCall::Admitted {
            call: crate::telemetry::with_facts(
                facts,
                tracing::Instrument::instrument(deadline.run(call), span),
            ),
            done: Some(done),
            running: Some(running),
        }
    }
}

pin_project_lite::pin_project! {
    /// The gate's response future: no allocation of its own, whatever the service's future.
    #[project = GateCallProj]
    pub enum GateCall<F> {
        /// Health and reflection: not gated.
        Open { #[pin] call: F },
        /// Refused before the service saw it.
        Refused {
            response: Option<http::Response<Body>>,
            facts: crate::telemetry::RequestFacts,
            done: Option<Done>,
        },
        /// Admitted: the service's call, under its deadline, with the request's facts.
        Admitted {
            #[pin]
            call: tokio::task::futures::TaskLocalFuture<
                std::cell::RefCell<crate::telemetry::RequestFacts>,
                tracing::instrument::Instrumented<Deadline<F>>,
            >,
            done: Option<Done>,
            running: Option<Running>,
        },
    }
}

impl<F, E> Future for GateCall<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GateCallProj::Open { call } => call.poll(cx),
            GateCallProj::Refused {
                response,
                facts,
                done,
            } => {
                let response = response.take().unwrap_or_default();
                if let Some(done) = done.take() {
                    done.finish(&response, facts);
                }
                Poll::Ready(Ok(response))
            }
            GateCallProj::Admitted {
                mut call,
                done,
                running,
            } => {
                let out = std::task::ready!(call.as_mut().poll(cx));
                let facts = call
                    .take_value()
                    .map(std::cell::RefCell::into_inner)
                    .unwrap_or_default();
                if let (Ok(response), Some(done)) = (&out, done.take()) {
                    done.finish(response, &facts);
                }
                drop(running.take());
                Poll::Ready(out)
            }
        }
    }
}

/// What the gate records once a request has answered.
pub struct Done {
    shared: Arc<Shared>,
    path: Option<http::uri::PathAndQuery>,
    start: std::time::Instant,
    peer: Option<std::net::SocketAddr>,
}

impl Done {
    /// Counts and logs the answer.
    fn finish(self, response: &http::Response<Body>, facts: &crate::telemetry::RequestFacts) {
        finish(
            &self.shared,
            self.path,
            response,
            self.start,
            facts,
            self.peer,
        );
    }
}

/// Counts and logs a request that has answered.
fn finish(
    shared: &Shared,
    path: Option<http::uri::PathAndQuery>,
    response: &http::Response<Body>,
    start: std::time::Instant,
    facts: &crate::telemetry::RequestFacts,
    peer: Option<std::net::SocketAddr>,
) {
    let path = path.as_ref().map_or("", |p| p.path());
    let code = response_code(response);
    let took = start.elapsed();
    if let Some(m) = &shared.metrics {
        m.request(path, code, took);
        if let Some(tenant) = &facts.tenant {
            m.tenant_request(tenant, code != "OK");
        }
    }
    let status = (code != "OK")
        .then(|| Status::from_header_map(response.headers()))
        .flatten();
    crate::telemetry::log_rpc(
        &crate::telemetry::Finished {
            path,
            code,
            message: status.as_ref().map(Status::message),
            took,
            facts,
            peer,
        },
        &shared.faults,
    );
}

/// The caller's address, from the connection's info (plaintext or TLS).
fn peer_address(req: &http::Request<Body>) -> Option<std::net::SocketAddr> {
    req.extensions()
        .get::<ConnInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(|c| c.inner.remote_addr())
        .or_else(|| {
            req.extensions()
                .get::<ConnInfo<PeerInfo>>()
                .map(|c| c.inner.remote_addr)
        })
}

/// When an admitted request must have answered, and why that is its deadline.
struct Limit {
    at: tokio::time::Instant,
    /// The caller's own deadline, when it is the sooner one.
    client: Option<Duration>,
    server: Duration,
}

impl Limit {
    /// Runs `call` under the deadline: past it, the answer is DEADLINE_EXCEEDED.
    fn run<F>(self, call: F) -> Deadline<F> {
        Deadline {
            call,
            limit: self,
            timer: None,
        }
    }

    fn exceeded(&self) -> Status {
        Status::deadline_exceeded(match self.client {
            Some(_) => {
                "the caller's deadline (grpc-timeout) passed before the request finished".to_owned()
            }
            None => format!(
                "the request did not finish within the server's {:?} limit",
                self.server
            ),
        })
    }
}

pin_project_lite::pin_project! {
    /// A call under its deadline. The timer is armed only if the call does not answer at once
    /// (a cache hit answers in its first poll, and never touches the timer wheel).
    pub struct Deadline<F> {
        #[pin]
        call: F,
        limit: Limit,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F, E> Future for Deadline<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.call.poll(cx) {
            return Poll::Ready(out);
        }
        let at = this.limit.at;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        std::task::ready!(timer.as_mut().poll(cx));
        Poll::Ready(Ok(refuse(this.limit.exceeded())))
    }
}

/// Authenticates, authorizes and admits one request: its place among the running requests
/// and its deadline, or the status it is refused with.
fn admit(
    shared: &Arc<Shared>,
    service: &str,
    req: &http::Request<Body>,
    arrived: std::time::Instant,
    facts: &mut crate::telemetry::RequestFacts,
) -> Result<(Running, Limit), Status> {
    let (role, credential) = authenticate(shared, req)?;
    facts.role = Some(role);
    if !role.allows(service) {
        let msg = format!("{} may not call {service}", credential.describe(role));
        // A credential reaching for a service its role lacks is an escalation attempt: logged
        // and counted with the admin refusals.
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        tracing::info!(method = %method, rule = "role", reason = %msg, "admin call refused");
        if let Some(m) = &shared.metrics {
            m.refusal(
                if m.knows(req.uri().path()) {
                    method
                } else {
                    "unknown"
                },
                "role",
            );
        }
        return Err(Status::permission_denied(msg));
    }
    if let Some(reason) = shared.refusal.as_ref().and_then(|r| r()) {
        return Err(Status::unavailable(reason));
    }
    let Some(running) = Running::take(shared) else {
        return Err(Status::resource_exhausted(format!(
            "the server is at its limit of {} concurrent requests; retry with backoff",
            shared.max_concurrent
        )));
    };
    // The caller's own deadline (`grpc-timeout`) when it is the sooner one. tonic's outer timer
    // would answer CANCELLED at that instant, and the caller's own timer fires then too; this
    // one fires a tenth earlier (at most 50 ms) so the caller gets DEADLINE_EXCEEDED, the code
    // the gRPC spec gives an expired deadline, even from a busy server.
    let server = shared.timeout;
    let client = grpc_timeout(req.headers())
        .filter(|c| *c < server)
        .map(|c| c.saturating_sub((c / 10).min(Duration::from_millis(50))));
    // The deadline starts when the request arrived, not at the future's first poll: tonic's
    // timer started then, and ours must stay the earlier one.
    let at = tokio::time::Instant::from_std(arrived) + client.unwrap_or(server);
    Ok((running, Limit { at, client, server }))
}

/// What a request authenticated with.
#[derive(Clone, Copy)]
enum Credential {
    /// No credentials are configured: everyone is an operator.
    Open,
    Key,
    Certificate,
    /// A mapped client certificate and a key: the narrower of their roles.
    Both,
}

impl Credential {
    /// `a `check` key`, as refusals name the caller.
    fn describe(self, role: Role) -> String {
        let role = role.name();
        match self {
            Credential::Open => format!("the `{role}` role"),
            Credential::Key => {
                let a = if role.starts_with(['a', 'o']) {
                    "an"
                } else {
                    "a"
                };
                format!("{a} `{role}` key")
            }
            Credential::Certificate => format!("a client certificate with the `{role}` role"),
            Credential::Both => {
                format!(
                    "the `{role}` role (the narrower of the client certificate's and the key's)"
                )
            }
        }
    }
}

/// The key of an `authorization: Bearer <key>` header (the scheme in any case, RFC 7235).
fn bearer(value: &http::HeaderValue) -> Option<&str> {
    let (scheme, key) = value.to_str().ok()?.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// The caller's role: from its bearer key, from its verified client certificate's names, or
/// the narrower of both when it presents both. A presented key must be valid either way.
fn authenticate(layer: &Shared, req: &http::Request<Body>) -> Result<(Role, Credential), Status> {
    if layer.keys.is_none() && layer.clients.is_none() {
        return Ok((Role::Operator, Credential::Open));
    }
    let names = req
        .extensions()
        .get::<ConnInfo<PeerInfo>>()
        .and_then(|c| c.inner.client.as_deref());
    let from_certificate = match (&layer.clients, names) {
        (Some(clients), Some(names)) => {
            clients.role_of(names).map_err(Status::permission_denied)?
        }
        _ => None,
    };
    let mut headers = req.headers().get_all(http::header::AUTHORIZATION).iter();
    let presented = match (headers.next(), headers.next()) {
        (None, _) => None,
        // Which of two would count is a guess a proxy and the server could make differently.
        (Some(_), Some(_)) => {
            return Err(Status::unauthenticated(
                "more than one authorization header; send exactly one: `authorization: Bearer <key>`",
            ));
        }
        (Some(value), None) => Some(bearer(value).ok_or_else(|| {
            Status::unauthenticated(
                "the authorization header is not `Bearer <key>` (the scheme, one space, a key of printable characters)",
            )
        })?),
    };
    let from_key = match presented {
        None => None,
        Some(presented) => Some(
            layer
                .keys
                .as_ref()
                .and_then(|keys| keys.role_of(presented.as_bytes()))
                .ok_or_else(|| Status::unauthenticated("unknown API key"))?,
        ),
    };
    match (from_certificate, from_key) {
        (Some(role), None) => Ok((role, Credential::Certificate)),
        (None, Some(role)) => Ok((role, Credential::Key)),
        (Some(certificate), Some(key)) => certificate
            .narrower(key)
            .map(|role| (role, Credential::Both))
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "the client certificate's `{}` role and the `{}` key share no service; present one of them",
                    certificate.name(),
                    key.name()
                ))
            }),
        (None, None) => Err(Status::unauthenticated(if layer.clients.is_some() {
            "missing credentials: send the header `authorization: Bearer <key>`, or connect with a client certificate whose name is mapped to a role"
        } else {
            "missing credentials: send the header `authorization: Bearer <key>`"
        })),
    }
}

/// The `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The running request's caller's role, as the gate recorded it. Outside a request the gate
/// admitted there is none to trust: the narrowest role, so a handler reached some other way
/// can decide nothing but checks.
pub fn role() -> Role {
    crate::telemetry::caller_role().unwrap_or(Role::Check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_an_admitted_request_the_role_is_the_narrowest() {
        assert_eq!(role(), Role::Check);
    }

    #[tokio::test]
    async fn inside_an_admitted_request_the_role_is_the_gates() {
        let facts = crate::telemetry::RequestFacts {
            role: Some(Role::Admin),
            ..Default::default()
        };
        let seen = crate::telemetry::with_facts(facts, async { role() }).await;
        assert_eq!(seen, Role::Admin);
    }

    #[test]
    fn grpc_timeout_headers() {
        let parse = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", http::HeaderValue::from_str(v).unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(parse("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn keys_parse_and_validate() {
        let k = Keys::load("check:aaaaaaaaaaaaaaaa, admin:bbbbbbbbbbbbbbbb", None).unwrap();
        assert_eq!(k.role_of(b"aaaaaaaaaaaaaaaa"), Some(Role::Check));
        assert_eq!(k.role_of(b"bbbbbbbbbbbbbbbb"), Some(Role::Admin));
        assert_eq!(k.role_of(b"bbbbbbbbbbbbbbb"), None);
        assert_eq!(k.role_of(b""), None);
        assert!(
            Keys::load("root:aaaaaaaaaaaaaaaa", None)
                .unwrap_err()
                .contains("unknown role \"root\"")
        );
        assert!(
            Keys::load("check:short", None)
                .unwrap_err()
                .contains("at least 16")
        );
        assert!(
            Keys::load("checkaaaaaaaaaaaaaaaaaa", None)
                .unwrap_err()
                .contains("not `role:key`")
        );
        assert!(Keys::load("", None).unwrap().is_empty());
        let shown = format!("{k:?}");
        assert!(
            shown.contains("count: 2") && !shown.contains("aaaa"),
            "{shown}"
        );
    }

    #[test]
    fn a_key_has_one_role() {
        let err = Keys::load(
            "operator:aaaaaaaaaaaaaaaa, check:bbbbbbbbbbbbbbbb, check:aaaaaaaaaaaaaaaa",
            None,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "AUTHZ_API_KEYS entry 3: this check key is already the operator key of AUTHZ_API_KEYS entry 1; a key has one role, so remove one of them"
        );
        // The same key twice with the same role is harmless.
        let k = Keys::load("check:aaaaaaaaaaaaaaaa,check:aaaaaaaaaaaaaaaa", None).unwrap();
        assert_eq!(k.role_of(b"aaaaaaaaaaaaaaaa"), Some(Role::Check));
    }

    #[test]
    fn narrower_roles() {
        use Role::*;
        assert_eq!(Operator.narrower(Check), Some(Check));
        assert_eq!(Admin.narrower(Operator), Some(Admin));
        assert_eq!(Check.narrower(Check), Some(Check));
        assert_eq!(Check.narrower(Admin), None);
    }

    #[test]
    fn client_roles_parse() {
        let map = parse_client_roles(
            "# comment\ncheck:dns=Billing.Internal\n\noperator: cn = ops console\nadmin:uri=spiffe://x/y\ncheck:dns=billing.internal\n",
            "roles",
        )
        .unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(
            map.get(&ClientName::Dns("billing.internal".into())),
            Some(&Role::Check)
        );
        assert_eq!(
            map.get(&ClientName::Cn("ops console".into())),
            Some(&Role::Operator)
        );
        for (text, error) in [
            ("check", "roles line 1 is not `role:cn=NAME`"),
            ("root:cn=x", "roles line 1: unknown role \"root\""),
            ("check:email=x", "roles line 1: unknown name kind \"email\""),
            ("check:dns=", "roles line 1: name the certificate as"),
            (
                "check:cn=a\nadmin:cn=a",
                "roles line 2: `cn=a` is already mapped to check at line 1",
            ),
        ] {
            let err = parse_client_roles(text, "roles").unwrap_err();
            assert!(err.contains(error), "{text:?}: {err}");
        }
        let roles = ClientRoles {
            file: PathBuf::new(),
            entries: RwLock::new(Arc::new(
                parse_client_roles("check:dns=a\noperator:cn=b\nadmin:uri=c", "roles").unwrap(),
            )),
        };
        let names = |cn: &[&str], dns: &[&str], uri: &[&str]| ClientNames {
            common_names: cn.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            uris: uri.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            roles.role_of(&names(&["b"], &[], &[])),
            Ok(Some(Role::Operator))
        );
        assert_eq!(
            roles.role_of(&names(&["b"], &["a"], &[])),
            Ok(Some(Role::Check))
        );
        assert_eq!(roles.role_of(&names(&["a"], &["b"], &["x"])), Ok(None));
        assert!(roles.role_of(&names(&[], &["a"], &["c"])).is_err());
    }

    #[test]
    fn roles_reach_their_services() {
        assert!(Role::Check.allows("authz.v1.AuthzService"));
        assert!(!Role::Check.allows("authz.v1.AdminService"));
        assert!(Role::Admin.allows("authz.v1.AdminService"));
        assert!(!Role::Admin.allows("authz.v1.AuthzService"));
        assert!(Role::Operator.allows("authz.v1.AdminService"));
    }
}
