//! Health, reflection and shutdown: what operators and grpcurl rely on.

use crate::helpers::*;
use authz::grpc::pb;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn health_per_service() {
    let app = TestServer::memory().start().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in [
        "",
        "liveness",
        "authz.v1.AuthzService",
        "authz.v1.AdminService",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    use tokio_stream::StreamExt;
    let app = TestServer::memory().start().await;
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(app.channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("{resp:?}")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for s in [
            "authz.v1.AuthzService",
            "authz.v1.AdminService",
            "grpc.health.v1.Health",
        ] {
            assert!(names.contains(&s.to_string()), "v1 lists {s}: {names:?}");
        }
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(app.channel.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "authz.v1.AuthzService".into(),
            )),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.next().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else {
            panic!("{resp:?}")
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes() {
    let app = TestServer::memory().start().await;
    app.tenant("t").await;
    let mut admin = app.admin.clone();
    let r = admin
        .get_tenant(pb::GetTenantRequest {
            tenant_id: "t".into(),
            actor_user_id: String::new(),
        })
        .await;
    assert!(r.is_ok());
    tokio::time::timeout(std::time::Duration::from_secs(10), app.stop())
        .await
        .expect("server stops within 10s");
}
