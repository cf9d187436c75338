//! TLS and mutual TLS on the real server, with a throwaway PKI.

use authz::app::Authz;
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::server::{ServerOptions, TlsPem};
use authz::store::memory::MemoryStore;
use authz_core::Catalog;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::sync::Arc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A certificate for `names`, signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    (
        params.signed_by(&key, &ca.issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

async fn serve(tls: TlsPem) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let catalog = Arc::new(Catalog::from_toml(crate::helpers::MAESTRA).unwrap());
    let app = Arc::new(Authz::new(
        catalog.clone(),
        Arc::new(MemoryStore::new(catalog)),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let options = ServerOptions {
        tls: Some(tls),
        ..ServerOptions::default()
    };
    tokio::spawn(authz::server::run(listener, app, options, async {
        let _ = rx.await;
    }));
    (port, tx)
}

async fn call(port: u16, ca_pem: &str, identity: Option<&(String, String)>) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    AdminServiceClient::new(channel)
        .get_catalog(pb::GetCatalogRequest {})
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e}"))
}

#[tokio::test]
async fn tls_serves_encrypted_and_refuses_plaintext() {
    let ca = new_ca();
    let (cert, key) = leaf(&ca, &["localhost"]);
    let (port, _stop) = serve(TlsPem {
        cert: cert.into_bytes(),
        key: key.into_bytes(),
        client_ca: None,
    })
    .await;
    call(port, &ca.pem, None).await.unwrap();
    // A plaintext client gets nowhere.
    let plain = async {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        AdminServiceClient::new(channel)
            .get_catalog(pb::GetCatalogRequest {})
            .await
            .map_err(|e| e.to_string())
    };
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(5), plain)
            .await
            .map_or(true, |r| r.is_err())
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let ca = new_ca();
    let (cert, key) = leaf(&ca, &["localhost"]);
    let tls = TlsPem {
        cert: cert.into_bytes(),
        key: key.into_bytes(),
        client_ca: Some(ca.pem.clone().into_bytes()),
    };
    let (port, _stop) = serve(tls).await;
    let client = leaf(&ca, &["billing-service"]);
    call(port, &ca.pem, Some(&client)).await.unwrap();
    assert!(
        call(port, &ca.pem, None).await.is_err(),
        "no client certificate"
    );
    let stranger = new_ca();
    let foreign = leaf(&stranger, &["intruder"]);
    assert!(
        call(port, &ca.pem, Some(&foreign)).await.is_err(),
        "a certificate from another CA"
    );
}
