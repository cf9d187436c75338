//! OTLP traces: a span per RPC, child of the caller's W3C trace, with method and tenant,
//! received by an in-process OTLP collector.

use crate::helpers::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use tonic::metadata::MetadataValue;

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_spans_join_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    let telemetry =
        authz::telemetry::init(authz::config::LogFormat::Text, "warn", Some(&endpoint)).unwrap();

    let app = TestServer::memory().start().await;
    app.tenant("traced").await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut req = tonic::Request::new(perm_check("traced", "u", "view_reports"));
    req.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(format!("00-{trace_id}-{parent_id}-01")).unwrap(),
    );
    app.authz.clone().check(req).await.unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let span = loop {
        telemetry.flush();
        let found = collector
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == "/authz.v1.AuthzService/Check" && hex(&s.trace_id) == trace_id)
            .cloned();
        if let Some(s) = found {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no span for the traced Check arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        hex(&span.parent_span_id),
        parent_id,
        "the RPC span is a child of the caller's span"
    );
    assert_eq!(attribute(&span, "tenant").as_deref(), Some("traced"));
    assert_eq!(
        attribute(&span, "rpc.method").as_deref(),
        Some("/authz.v1.AuthzService/Check")
    );
    // The subscriber is global: stop exporting, or the other tests' spans would keep going to
    // this collector after it is gone.
    telemetry.shutdown();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
