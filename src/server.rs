//! Serving: one function takes a bound listener, the application and a shutdown future, so
//! tests bind port 0 and the binary binds its configured address.

use crate::app::Authz;
use crate::grpc::FILE_DESCRIPTOR_SET;
use crate::grpc::admin::AdminApi;
use crate::grpc::authz::AuthzApi;
use crate::grpc::pb::admin_service_server::AdminServiceServer;
use crate::grpc::pb::authz_service_server::AuthzServiceServer;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::server::TcpConnectInfo;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How the server admits requests.
#[derive(Clone)]
pub struct ServerOptions {
    /// Bearer keys. With none configured and no client roles, every caller is an operator.
    pub keys: Option<Arc<crate::gate::Keys>>,
    /// Requests running at once; more are shed with RESOURCE_EXHAUSTED.
    pub max_concurrent: usize,
    /// Deadline of each request.
    pub request_timeout: Duration,
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Where RPC and decision metrics go.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Serve TLS (and require client certificates, with a client CA).
    pub tls: Option<crate::tls::ServerTls>,
    /// Roles of verified client certificates, by the names they carry (mutual TLS).
    pub client_roles: Option<Arc<crate::gate::ClientRoles>>,
    /// Connection limits, deadlines and HTTP/2 keepalive.
    pub connections: crate::transport::ConnectionOptions,
    /// Watch stream limits.
    pub watch: crate::grpc::watch::WatchOptions,
    /// Where decided checks are logged, if anywhere.
    pub decision_log: Option<Arc<crate::decisions::DecisionLog>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            keys: None,
            max_concurrent: 1024,
            request_timeout: Duration::from_secs(10),
            max_message_bytes: 4 * 1024 * 1024,
            metrics: None,
            tls: None,
            client_roles: None,
            connections: crate::transport::ConnectionOptions::default(),
            watch: crate::grpc::watch::WatchOptions::default(),
            decision_log: None,
        }
    }
}

/// Serves both services, health and reflection on `listener` until `shutdown` completes, then
/// ends every Watch stream (UNAVAILABLE) and lets in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    app: Arc<Authz>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // Liveness: the process answers, whatever the database does. Kubernetes liveness probes
    // ask for this service; readiness probes ask for authz.v1.AuthzService.
    health
        .set_service_status("liveness", tonic_health::ServingStatus::Serving)
        .await;
    let readiness = tokio::spawn(report_readiness(
        app.clone(),
        health,
        options.metrics.clone(),
    ));
    let _stop_reporting = AbortOnDrop(readiness);

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let connections = options.connections.clone();
    let watch = Arc::new(crate::grpc::watch::WatchHub::start(
        app.clone(),
        options.watch.clone(),
        options.metrics.clone(),
    ));
    let closing = watch.clone();
    let shutdown = async move {
        shutdown.await;
        // Watch streams never finish by themselves: end them now, so they neither hold the
        // drain nor wait out the grace period. Their statuses go out before the connections'
        // GOAWAY.
        closing.close_and_flush(Duration::from_secs(1)).await;
    };
    let keys = options.keys.filter(|k| !k.is_empty() || k.file().is_some());
    let gate = crate::gate::GateLayer::new(
        keys,
        options.client_roles,
        options.max_concurrent,
        options.request_timeout,
        options.metrics.clone(),
        Some({
            let app = app.clone();
            Arc::new(move || app.catalog_refusal())
        }),
    );
    let max = options.max_message_bytes;
    let authz = AuthzServiceServer::new(
        AuthzApi::new(app.clone(), options.metrics.clone(), watch)
            .with_decision_log(options.decision_log.clone()),
    )
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let admin = AdminServiceServer::new(
        AdminApi::new(app, options.metrics.clone()).with_max_message_bytes(max),
    )
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(connections.keepalive_interval)
        .http2_keepalive_timeout(Some(connections.keepalive_timeout))
        .max_concurrent_streams(connections.max_streams_per_connection);
    // The activity layer reads the connection's own info, so its type follows the transport.
    macro_rules! serve {
        ($info:ty, $incoming:expr) => {
            builder
                .layer(crate::transport::ActivityLayer::<$info>::new())
                .layer(gate)
                .add_service(health_service)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(authz)
                .add_service(admin)
                .serve_with_incoming_shutdown($incoming, shutdown)
                .await?
        };
    }
    let admission = crate::transport::Admission::new(&connections, options.metrics.clone());
    match &options.tls {
        // The server does its own handshakes (see `tls`) on connections admitted under the cap;
        // the material was checked when it was loaded, so nothing here can fail on it.
        Some(tls) => serve!(
            crate::tls::PeerInfo,
            crate::tls::incoming(listener, tls, admission, &connections)
        ),
        None => serve!(
            TcpConnectInfo,
            crate::transport::Incoming::new(listener, admission, &connections)
        ),
    }
    Ok(())
}

/// Keeps gRPC health in step with the store's readiness (database reachable, listener
/// subscribed): both services and the server as a whole (""). Each change is logged and
/// counted (`authz_ready`, `authz_readiness_changes_total`).
async fn report_readiness(
    app: Arc<Authz>,
    health: tonic_health::server::HealthReporter,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) {
    use tonic_health::ServingStatus;
    let mut last: Option<bool> = None;
    let mut since = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let r = app.readiness();
        if last == Some(r.ready) {
            continue;
        }
        if let Some(m) = &metrics {
            // The first report is where readiness starts, not a change.
            m.readiness(r.ready, last.is_some());
        }
        let after = since.elapsed();
        since = std::time::Instant::now();
        let status = if r.ready {
            match last {
                None => tracing::info!("ready"),
                Some(_) => tracing::info!(not_ready_for = ?after, "ready"),
            }
            ServingStatus::Serving
        } else {
            match last {
                // Starting up: the listener has not subscribed yet. Worth a warning only if
                // it lasts, which `ready` (with `not_ready_for`) or its absence will show.
                None => tracing::info!(reason = %r.reason, "not ready yet"),
                Some(_) => tracing::warn!(reason = %r.reason, "not ready"),
            }
            ServingStatus::NotServing
        };
        for service in ["", "authz.v1.AuthzService", "authz.v1.AdminService"] {
            health.set_service_status(service, status).await;
        }
        last = Some(r.ready);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
