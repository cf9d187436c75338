//! The client, how it is built, and the one path every call takes: pick the tenant's replica,
//! attach the key and the deadline, retry reads that meet UNAVAILABLE.
//!
//! One file: the builder and the one path every call takes (replica, key, deadline, retries) belong
//! together.

use crate::error::Error;
use crate::pool::{Pool, Replica};
use crate::types::{Consistency, Revision};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The gRPC service whose health says whether a replica is ready.
const READINESS_SERVICE: &str = "authz.v1.AuthzService";

/// Tenants whose newest write revision a client remembers; past this many it forgets them all
/// (their checks then read the cache, as without read-your-writes, until their next write).
const MAX_REMEMBERED_TENANTS: usize = 100_000;

/// TLS settings: the CA that signed the server's certificate (the platform's roots when none is
/// given), a client certificate for mutual TLS, and the name to verify.
///
/// ```
/// use authz_client::Tls;
/// # fn pem(_: &str) -> Vec<u8> { Vec::new() }
/// let tls = Tls::new()
///     .ca_certificate(pem("ca.pem"))
///     .identity(pem("client.pem"), pem("client.key"));
/// ```
#[derive(Clone, Default)]
pub struct Tls {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}

impl Tls {
    /// TLS verified against the platform's trusted roots.
    pub fn new() -> Tls {
        Tls::default()
    }

    /// Trust the server certificate's issuer: a PEM CA certificate (or bundle).
    pub fn ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Tls {
        self.ca = Some(pem.into());
        self
    }

    /// Present this client certificate (mutual TLS): a PEM certificate chain and its PEM
    /// private key.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Tls {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Verify the server certificate for this name instead of the address's host (needed when
    /// connecting by IP, or through a DNS name the certificate does not carry).
    pub fn domain_name(mut self, name: impl Into<String>) -> Tls {
        self.domain = Some(name.into());
        self
    }

    fn config(&self, default_domain: Option<&str>) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new();
        c = match &self.ca {
            Some(pem) => c.ca_certificate(Certificate::from_pem(pem)),
            None => c.with_native_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        if let Some(d) = self.domain.as_deref().or(default_domain) {
            c = c.domain_name(d);
        }
        c
    }
}

/// When and how often reads are retried.
///
/// A read (a check, a batch check, effective permissions, allowed resources, an admin read)
/// that fails with `UNAVAILABLE` is tried again, on the tenant's next ready replica when there
/// are several, after an exponential backoff with full jitter, within the call's deadline.
/// Writes are never retried: a write that failed with `UNAVAILABLE` may have committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retries).
    pub max_attempts: u32,
    /// The backoff before the first retry (doubled before each next one).
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 50 ms then 100 ms (with jitter), at most 1 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The sleep before retry number `retry` (1 for the first retry): full jitter over an
    /// exponential ceiling.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// What a retry is about to happen after: handed to [`ClientBuilder::on_retry`].
#[derive(Debug)]
pub struct RetryEvent<'a> {
    /// The method, e.g. `/authz.v1.AuthzService/Check`.
    pub method: &'static str,
    /// The replica the failed attempt went to.
    pub replica: &'a str,
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Its status.
    pub status: &'a tonic::Status,
}

type RetryHook = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// Where the client finds replicas.
#[derive(Clone, Debug)]
enum Target {
    /// Fixed addresses.
    Addresses(Vec<String>),
    /// A DNS name whose addresses are the replicas, looked up again every health interval.
    Dns { host: String, port: u16 },
}

/// Builds a [`Client`]: where the replicas are, credentials, deadlines, retries.
///
/// ```no_run
/// # async fn f() -> Result<(), authz_client::Error> {
/// use std::time::Duration;
/// let client = authz_client::Client::builder()
///     .endpoints(["http://authz-0:50051", "http://authz-1:50051"])
///     .api_key(std::env::var("AUTHZ_API_KEY").unwrap_or_default())
///     .timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    target: Target,
    api_key: Option<String>,
    tls: Option<Tls>,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    retry: RetryPolicy,
    read_your_writes: bool,
    max_batch: usize,
    batch_concurrency: usize,
    health_interval: Duration,
    on_retry: Option<RetryHook>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("target", &self.target)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("read_your_writes", &self.read_your_writes)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            target: Target::Addresses(Vec::new()),
            api_key: None,
            tls: None,
            timeout: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            read_your_writes: true,
            max_batch: 1000,
            batch_concurrency: 4,
            health_interval: Duration::from_secs(5),
            on_retry: None,
        }
    }
}

impl ClientBuilder {
    /// Adds a replica's address: `host:port`, or a URL (`http://host:port`,
    /// `https://host:port`). Without a scheme, `https` is used when [`tls`](Self::tls) is set.
    pub fn endpoint(mut self, address: impl Into<String>) -> Self {
        let address = address.into();
        match &mut self.target {
            Target::Addresses(list) => list.push(address),
            Target::Dns { .. } => self.target = Target::Addresses(vec![address]),
        }
        self
    }

    /// Adds several replicas' addresses (see [`endpoint`](Self::endpoint)).
    pub fn endpoints<I, S>(mut self, addresses: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for a in addresses {
            self = self.endpoint(a);
        }
        self
    }

    /// Every address a DNS name resolves to is a replica (a Kubernetes headless Service, say):
    /// `authz-headless.auth.svc:50051`. The name is looked up when the client connects and
    /// again every [`health_interval`](Self::health_interval); with TLS, certificates are
    /// verified for the name.
    pub fn dns(mut self, host_and_port: &str) -> Result<Self, Error> {
        let (host, port) = host_and_port.rsplit_once(':').ok_or_else(|| {
            Error::Config(format!(
                "dns {host_and_port:?} has no port: write it host:port"
            ))
        })?;
        let port = port
            .parse()
            .map_err(|_| Error::Config(format!("dns {host_and_port:?}: {port:?} is not a port")))?;
        self.target = Target::Dns {
            host: host.to_owned(),
            port,
        };
        Ok(self)
    }

    /// Sends `authorization: Bearer KEY` with every call. The key is never logged or shown by
    /// `Debug`. An empty key sends nothing.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.api_key = (!key.is_empty()).then_some(key);
        self
    }

    /// Connects over TLS (mutual TLS with [`Tls::identity`]).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The default deadline of every call, retries included (10 s unless set; `None`: no
    /// deadline). Calls can set their own. Admin calls also send it to the server
    /// (`grpc-timeout`), which stops working on a call whose caller has given up; checks, which
    /// the server answers in microseconds, do not (it would cost the server a timer per check,
    /// and its own `--request-timeout` bounds them).
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }

    /// The longest wait for a connection to a replica (2 s unless set).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How reads are retried on `UNAVAILABLE` ([`RetryPolicy::default`] unless set).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Called before each retry, with the failed attempt (for logs or metrics).
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(hook));
        self
    }

    /// Read-your-writes without token plumbing (on unless turned off): the client remembers,
    /// per tenant, the newest revision its own writes returned, and sends it as
    /// `at_least_as_fresh` with every read of that tenant that sets no consistency of its own.
    /// A check made right after a write through the same client therefore sees the write, on
    /// any replica.
    pub fn read_your_writes(mut self, on: bool) -> Self {
        self.read_your_writes = on;
        self
    }

    /// Items per BatchCheck request (1000 unless set; keep it at most the server's
    /// `--max-batch`). Larger batches are split into requests of this size, sent concurrently,
    /// and their answers put back in order.
    pub fn max_batch(mut self, items: usize) -> Self {
        self.max_batch = items.max(1);
        self
    }

    /// How many requests of one split batch are in flight at once (4 unless set).
    pub fn batch_concurrency(mut self, requests: usize) -> Self {
        self.batch_concurrency = requests.max(1);
        self
    }

    /// With several replicas (or a DNS name): how often each replica's readiness is asked
    /// (gRPC health of `authz.v1.AuthzService`) and the DNS name looked up again (5 s unless
    /// set). A replica that is not ready gets no calls until it is ready again.
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Builds the client and asks every replica whether it is ready. Fails when the
    /// configuration is wrong or no replica can be reached at all; replicas that are reachable
    /// but not ready are skipped until they are.
    pub async fn connect(self) -> Result<Client, Error> {
        let client = self.connect_lazy().await?;
        let replicas = client.inner.pool.replicas();
        let probes = replicas
            .iter()
            .map(|r| probe(r.clone(), client.inner.connect_timeout));
        let reached = futures_util::future::join_all(probes).await;
        if !reached.iter().any(|r| r.is_ok()) {
            let why: Vec<String> = replicas
                .iter()
                .zip(&reached)
                .filter_map(|(r, e)| e.as_ref().err().map(|e| format!("{}: {e}", r.id)))
                .collect();
            return Err(Error::Status(tonic::Status::unavailable(format!(
                "no authz replica could be reached ({})",
                why.join("; ")
            ))));
        }
        Ok(client)
    }

    /// Builds the client without contacting any replica: connections are made on first use.
    pub async fn connect_lazy(self) -> Result<Client, Error> {
        let key = self
            .api_key
            .as_deref()
            .map(|k| {
                MetadataValue::try_from(format!("Bearer {k}")).map_err(|_| {
                    Error::Config(
                        "the API key holds characters a header cannot carry (use printable ASCII)"
                            .to_owned(),
                    )
                })
            })
            .transpose()?;
        let replicas = self.resolve().await?;
        let several = replicas.len() > 1 || matches!(self.target, Target::Dns { .. });
        let inner = Arc::new(Inner {
            pool: Pool::new(replicas),
            key,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            retry: self.retry,
            on_retry: self.on_retry.clone(),
            read_your_writes: self.read_your_writes,
            freshness: Freshness::default(),
            max_batch: self.max_batch,
            batch_concurrency: self.batch_concurrency,
            health: std::sync::Mutex::new(None),
        });
        if several {
            let task = tokio::spawn(watch_health(Arc::downgrade(&inner), self));
            if let Ok(mut h) = inner.health.lock() {
                *h = Some(task.abort_handle());
            }
        }
        Ok(Client { inner })
    }

    /// The replicas the target names now.
    async fn resolve(&self) -> Result<Vec<Arc<Replica>>, Error> {
        match &self.target {
            Target::Addresses(list) if list.is_empty() => Err(Error::Config(
                "no endpoint: call endpoint(\"host:port\"), endpoints([...]) or dns(\"name:port\")"
                    .to_owned(),
            )),
            Target::Addresses(list) => list
                .iter()
                .map(|a| {
                    let url = self.url(a);
                    let (calls, streams) = self.channels(&url, None)?;
                    Ok(Arc::new(Replica::new(url, calls, streams)))
                })
                .collect(),
            Target::Dns { host, port } => {
                let addrs: Vec<std::net::SocketAddr> =
                    tokio::net::lookup_host((host.as_str(), *port))
                        .await
                        .map_err(|e| {
                            Error::Status(tonic::Status::unavailable(format!(
                                "cannot resolve {host}:{port}: {e}"
                            )))
                        })?
                        .collect();
                let mut urls: Vec<String> = addrs
                    .iter()
                    .map(|a| format!("{}://{a}", self.scheme()))
                    .collect();
                urls.sort();
                urls.dedup();
                urls.into_iter()
                    .map(|url| {
                        let (calls, streams) = self.channels(&url, Some(host))?;
                        Ok(Arc::new(Replica::new(url, calls, streams)))
                    })
                    .collect()
            }
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn url(&self, address: &str) -> String {
        if address.contains("://") {
            address.to_owned()
        } else {
            format!("{}://{address}", self.scheme())
        }
    }

    /// A replica's two channels: one for calls, as lean as the generated stubs' default (a
    /// call's deadline is what finds a dead connection), and one for Watch streams with HTTP/2
    /// keepalive (a quiet stream has no deadline). Both connect on first use.
    fn channels(&self, url: &str, tls_domain: Option<&str>) -> Result<(Channel, Channel), Error> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Config(format!("{url:?} is not an address: {e}")))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(Duration::from_secs(60)));
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.config(tls_domain))
                .map_err(|e| Error::Config(format!("TLS for {url}: {e}")))?;
        } else if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(Tls::new().config(tls_domain))
                .map_err(|e| Error::Config(format!("TLS for {url}: {e}")))?;
        }
        let streams = endpoint
            .clone()
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok((endpoint.connect_lazy(), streams.connect_lazy()))
    }
}

/// Asks a replica's health; sets and returns whether it could be reached.
async fn probe(replica: Arc<Replica>, timeout: Duration) -> Result<(), tonic::Status> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = tonic_health::pb::health_client::HealthClient::new(replica.channel.clone());
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: READINESS_SERVICE.to_owned(),
    });
    req.set_timeout(timeout);
    let answer = tokio::time::timeout(timeout, health.check(req))
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("health check timed out")));
    match answer {
        Ok(r) => {
            replica.set_ready(r.into_inner().status() == ServingStatus::Serving);
            Ok(())
        }
        // A server that answers health but does not report this service (yet) is reachable:
        // only NOT_SERVING or no answer takes a replica out.
        Err(s) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::Unimplemented) => {
            replica.set_ready(true);
            Ok(())
        }
        Err(s) => {
            replica.set_ready(false);
            Err(s)
        }
    }
}

/// Every interval: look the DNS name up again (keeping the channels of replicas that stay) and
/// ask every replica's health. Ends when the client is dropped.
async fn watch_health(inner: std::sync::Weak<Inner>, builder: ClientBuilder) {
    let mut tick = tokio::time::interval(builder.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if matches!(builder.target, Target::Dns { .. }) {
            match builder.resolve().await {
                Ok(fresh) if !fresh.is_empty() => {
                    let current = inner.pool.replicas();
                    let merged: Vec<Arc<Replica>> = fresh
                        .into_iter()
                        .map(|f| current.iter().find(|c| c.id == f.id).cloned().unwrap_or(f))
                        .collect();
                    let changed = merged.len() != current.len()
                        || merged.iter().zip(current.iter()).any(|(a, b)| a.id != b.id);
                    if changed {
                        tracing::debug!(replicas = merged.len(), "replica addresses changed");
                        inner.pool.replace(merged);
                    }
                }
                Ok(_) => tracing::debug!("DNS answered no address; keeping the replicas"),
                Err(e) => tracing::debug!(error = %e, "DNS lookup failed; keeping the replicas"),
            }
        }
        let timeout = builder.health_interval.min(inner.connect_timeout);
        let replicas = inner.pool.replicas();
        futures_util::future::join_all(replicas.iter().map(|r| probe(r.clone(), timeout))).await;
    }
}

/// The newest revision the client's own writes returned, per tenant.
#[derive(Default)]
struct Freshness {
    any: AtomicBool,
    seen: RwLock<HashMap<String, u64>>,
}

impl Freshness {
    fn get(&self, tenant: &str) -> Option<Revision> {
        // A client that never wrote pays one atomic load.
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let seen = self.seen.read().ok()?;
        seen.get(tenant).copied().map(Revision)
    }

    fn record(&self, tenant: &str, revision: Revision) {
        let Ok(mut seen) = self.seen.write() else {
            return;
        };
        if seen.len() >= MAX_REMEMBERED_TENANTS && !seen.contains_key(tenant) {
            seen.clear();
        }
        let newest = seen.entry(tenant.to_owned()).or_insert(0);
        *newest = (*newest).max(revision.0);
        self.any.store(true, Ordering::Release);
    }
}

/// Whether a call may be tried again after UNAVAILABLE, which channel it takes, and whether
/// the server is told its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A check (Check, BatchCheck, effective permissions, allowed resources): retried. The
    /// server answers in microseconds and its `--request-timeout` bounds the rest, so the
    /// deadline is the client's alone: sending it would cost the server a timer per check.
    Check,
    /// An admin read: retried; the server is sent the deadline (`grpc-timeout`).
    Read,
    /// A write: never retried; the server is sent the deadline.
    Write,
    /// Opening a Watch stream: retried like a read, on the replica's stream channel.
    Stream,
}

pub(crate) struct Inner {
    pool: Pool,
    key: Option<MetadataValue<Ascii>>,
    pub(crate) timeout: Option<Duration>,
    connect_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    on_retry: Option<RetryHook>,
    read_your_writes: bool,
    freshness: Freshness,
    pub(crate) max_batch: usize,
    pub(crate) batch_concurrency: usize,
    health: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The health task holds only a weak reference; stop it with the client.
        if let Some(task) = self.health.lock().ok().and_then(|mut h| h.take()) {
            task.abort();
        }
    }
}

/// A client of the authz service: cheap to clone (clones share connections and what the client
/// remembers), safe to use from many tasks.
///
/// ```no_run
/// # async fn f() -> Result<(), authz_client::Error> {
/// let client = authz_client::Client::connect("http://127.0.0.1:50051").await?;
/// let decision = client
///     .check("acme", "alice")
///     .permission("export_customers")
///     .resource("folder", "f1")
///     .await?;
/// if !decision.allowed {
///     println!("denied; missing {:?}", decision.missing_permissions);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("replicas", &self.replicas())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder for every setting.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to one replica with the defaults (no key, no TLS for `http://`).
    pub async fn connect(address: impl Into<String>) -> Result<Client, Error> {
        Client::builder().endpoint(address).connect().await
    }

    /// The replicas' addresses and whether each is ready now.
    pub fn replicas(&self) -> Vec<(String, bool)> {
        self.inner
            .pool
            .replicas()
            .iter()
            .map(|r| (r.id.clone(), r.is_ready()))
            .collect()
    }

    /// The replica a tenant's calls go to now (its own, or the next ready one).
    pub fn replica_for(&self, tenant: &str) -> Option<String> {
        self.inner.pool.pick(tenant, &[]).map(|r| r.id.clone())
    }

    /// Asks every replica whether it is ready now, rather than at the next health interval.
    pub async fn refresh_health(&self) {
        let replicas = self.inner.pool.replicas();
        let timeout = self.inner.connect_timeout;
        futures_util::future::join_all(replicas.iter().map(|r| probe(r.clone(), timeout))).await;
    }

    /// The newest revision this client's own writes to the tenant returned, which its reads of
    /// the tenant send as `at_least_as_fresh`.
    pub fn last_write(&self, tenant: &str) -> Option<Revision> {
        self.inner.freshness.get(tenant)
    }

    /// Remembers a revision of a write made elsewhere (another service handed it over), so
    /// this client's reads of the tenant are at least that fresh.
    pub fn remember_write(&self, tenant: &str, revision: Revision) {
        self.inner.freshness.record(tenant, revision);
    }

    /// The consistency a read sends: the caller's, else read-your-writes, else the server's
    /// default.
    pub(crate) fn consistency(
        &self,
        tenant: &str,
        asked: Option<Consistency>,
    ) -> Option<crate::proto::Consistency> {
        match asked {
            Some(c) => Some(c.to_proto()),
            None if self.inner.read_your_writes => self
                .inner
                .freshness
                .get(tenant)
                .map(|r| Consistency::AtLeastAsFresh(r).to_proto()),
            None => None,
        }
    }

    /// Records a write's revision for read-your-writes.
    pub(crate) fn wrote(&self, tenant: &str, token: &str) {
        if let Some(r) = Revision::parse(token) {
            self.inner.freshness.record(tenant, r);
        }
    }

    /// Runs one call: on the tenant's replica, with the key and the deadline, retrying a read
    /// that meets UNAVAILABLE on the next ready replica after a backoff. `attempt` makes the
    /// request anew for each attempt.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        method: &'static str,
        tenant: &str,
        kind: Kind,
        timeout: Option<Duration>,
        mut attempt: F,
    ) -> Result<tonic::Response<T>, Error>
    where
        F: FnMut(Channel, RequestMeta) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let inner = &self.inner;
        let timeout = timeout.or(inner.timeout);
        let deadline = timeout.map(|t| Instant::now() + t);
        let max_attempts = match kind {
            Kind::Check | Kind::Read | Kind::Stream => inner.retry.max_attempts.max(1),
            Kind::Write => 1,
        };
        let mut tried: Vec<String> = Vec::new();
        let mut n = 0;
        loop {
            n += 1;
            let Some(replica) = inner.pool.pick(tenant, &tried) else {
                return Err(Error::Config("the client has no replicas".to_owned()));
            };
            let meta = RequestMeta {
                key: inner.key.clone(),
                // The first attempt states the whole timeout: the same `grpc-timeout` on every
                // call, which HTTP/2 header compression then sends as an index. Retries state
                // what is left.
                timeout: match (kind, n, timeout, deadline) {
                    (Kind::Check | Kind::Stream, ..) => None,
                    (_, 1, t, _) => t,
                    (.., d) => d.map(|d| d.saturating_duration_since(Instant::now())),
                },
            };
            let channel = match kind {
                Kind::Stream => replica.streams.clone(),
                Kind::Check | Kind::Read | Kind::Write => replica.channel.clone(),
            };
            let fut = attempt(channel, meta);
            let result = match deadline {
                Some(d) => match tokio::time::timeout_at(d, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(deadline_passed(method, timeout)),
                },
                None => fut.await,
            };
            let status = match result {
                Ok(r) => return Ok(r),
                Err(s) => s,
            };
            if status.code() != tonic::Code::Unavailable {
                return Err(status.into());
            }
            // This replica cannot serve now: its tenants go to their next one until its
            // health says it is ready again.
            if inner.pool.replicas().len() > 1 {
                replica.set_ready(false);
            }
            if n >= max_attempts {
                return Err(status.into());
            }
            let pause = inner.retry.backoff(n);
            if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                return Err(status.into());
            }
            if let Some(hook) = &inner.on_retry {
                hook(&RetryEvent {
                    method,
                    replica: &replica.id,
                    attempt: n,
                    status: &status,
                });
            }
            tracing::debug!(method, replica = %replica.id, attempt = n, error = %status.message(), "retrying");
            if !tried.contains(&replica.id) {
                tried.push(replica.id.clone());
            }
            tokio::time::sleep(pause).await;
        }
    }
}

fn deadline_passed(method: &str, timeout: Option<Duration>) -> tonic::Status {
    tonic::Status::deadline_exceeded(format!(
        "{method} did not finish within its deadline of {:?}",
        timeout.unwrap_or_default()
    ))
}

/// What each attempt's request carries besides its message.
pub(crate) struct RequestMeta {
    key: Option<MetadataValue<Ascii>>,
    timeout: Option<Duration>,
}

impl RequestMeta {
    /// Wraps a message into a request with the key and the remaining deadline.
    pub fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut req = tonic::Request::new(message);
        if let Some(k) = &self.key {
            req.metadata_mut().insert("authorization", k.clone());
        }
        if let Some(t) = self.timeout {
            req.set_timeout(t);
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        for _ in 0..100 {
            assert!(p.backoff(1) <= Duration::from_millis(100));
            assert!(p.backoff(2) <= Duration::from_millis(200));
            assert!(p.backoff(5) <= Duration::from_millis(300));
            assert!(p.backoff(64) <= Duration::from_millis(300));
        }
    }

    #[test]
    fn the_newest_write_per_tenant_is_remembered() {
        let f = Freshness::default();
        assert_eq!(f.get("t"), None);
        f.record("t", Revision(5));
        f.record("t", Revision(3));
        f.record("u", Revision(9));
        assert_eq!(f.get("t"), Some(Revision(5)));
        assert_eq!(f.get("u"), Some(Revision(9)));
        assert_eq!(f.get("v"), None);
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let b = Client::builder().api_key("s3cr3t-key-of-16+chars");
        let shown = format!("{b:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
