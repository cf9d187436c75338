//! TLS and mutual TLS on the real server, with a throwaway PKI: encryption, client
//! certificates and their roles, and what the binary says about bad or expiring material.

use crate::binary::Daemon;
use crate::helpers::assert_status;
use authz::app::Authz;
use authz::gate::{ClientRoles, Keys};
use authz::grpc::pb;
use authz::grpc::pb::admin_service_client::AdminServiceClient;
use authz::grpc::pb::authz_service_client::AuthzServiceClient;
use authz::server::ServerOptions;
use authz::store::memory::MemoryStore;
use authz::tls::{ServerTls, TlsPem};
use authz_core::Catalog;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn new_ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A certificate for DNS `names`, signed by `ca`: (certificate PEM, key PEM).
pub fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
    leaf_with(ca, names, |_| {})
}

/// A certificate for DNS `names`, adjusted by `edit` (subject, URIs, validity), signed by `ca`.
pub fn leaf_with(
    ca: &Ca,
    names: &[&str],
    edit: impl FnOnce(&mut CertificateParams),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    edit(&mut params);
    (
        params.signed_by(&key, &ca.issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

async fn serve_with(options: ServerOptions) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let catalog = Arc::new(Catalog::from_toml(crate::helpers::MAESTRA).unwrap());
    let app = Arc::new(Authz::new(
        catalog.clone(),
        Arc::new(MemoryStore::new(catalog)),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(authz::server::run(listener, app, options, async {
        let _ = rx.await;
    }));
    (port, tx)
}

async fn serve(tls: TlsPem) -> (u16, tokio::sync::oneshot::Sender<()>) {
    serve_with(ServerOptions {
        tls: Some(ServerTls::from_pem(&tls).unwrap()),
        ..ServerOptions::default()
    })
    .await
}

async fn connect(
    port: u16,
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))
}

async fn call(port: u16, ca_pem: &str, identity: Option<&(String, String)>) -> Result<(), String> {
    let channel = connect(port, ca_pem, identity).await?;
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

/// Under TLS the connection limits hold too: the cap counts from the TCP accept, and a client
/// that finishes the TLS handshake but never sends the HTTP/2 preface is closed at the
/// handshake deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_are_capped_and_held_to_the_handshake_deadline() {
    use tokio::io::AsyncReadExt;
    use tokio_rustls::rustls;
    let ca = new_ca();
    let (cert, key) = leaf(&ca, &["localhost"]);
    let pem = TlsPem {
        cert: cert.into_bytes(),
        key: key.into_bytes(),
        client_ca: None,
    };
    let options = |max_connections: usize| ServerOptions {
        tls: Some(ServerTls::from_pem(&pem).unwrap()),
        connections: authz::transport::ConnectionOptions {
            max_connections,
            handshake_timeout: std::time::Duration::from_secs(1),
            ..Default::default()
        },
        ..ServerOptions::default()
    };

    // One connection allowed: a second client is turned away while the first is served.
    let (port, _stop) = serve_with(options(1)).await;
    let first = connect(port, &ca.pem, None).await.unwrap();
    let mut admin = AdminServiceClient::new(first);
    admin.get_catalog(pb::GetCatalogRequest {}).await.unwrap();
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        call(port, &ca.pem, None),
    )
    .await
    .expect("a refused connection answers at once");
    assert!(second.is_err(), "past the cap: {second:?}");
    admin.get_catalog(pb::GetCatalogRequest {}).await.unwrap();

    // A finished TLS handshake, then silence: closed at the deadline, not held open.
    let (port, _stop) = serve_with(options(8)).await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile_certs(&ca.pem) {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the TLS handshake");
    // The server's own preface may come first; then the connection must end.
    let drained = async {
        let mut buf = [0u8; 256];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), drained)
        .await
        .expect("the server closes a silent connection at the handshake deadline");
}

/// The certificates of a PEM text.
fn rustls_pemfile_certs(
    pem: &str,
) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
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

const CHECK_KEY: &str = "check-key-0123456789";
const ADMIN_KEY: &str = "admin-key-0123456789";
const OPERATOR_KEY: &str = "operator-key-0123456";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("authz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keyed<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(key) = key {
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {key}")).unwrap(),
        );
    }
    r
}

/// Calls AuthzService (Check, on a tenant that does not exist: NOT_FOUND once past the gate)
/// and AdminService (GetCatalog) with an optional key.
async fn both_services(channel: &Channel, key: Option<&str>) -> (Code, Code) {
    let check = AuthzServiceClient::new(channel.clone())
        .check(keyed(
            crate::helpers::perm_check("t", "u", "view_reports"),
            key,
        ))
        .await;
    let catalog = AdminServiceClient::new(channel.clone())
        .get_catalog(keyed(pb::GetCatalogRequest {}, key))
        .await;
    (
        check.map_or_else(|s| s.code(), |_| Code::Ok),
        catalog.map_or_else(|s| s.code(), |_| Code::Ok),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_mapped_to_roles_need_no_key() {
    let dir = temp_dir("client-roles");
    let ca = new_ca();
    let (cert, key) = leaf(&ca, &["localhost"]);
    let roles_file = dir.join("client-roles");
    std::fs::write(
        &roles_file,
        "# services and their roles\n\
         check:dns=Billing.Internal\n\
         operator:cn=ops console\n\
         admin:uri=spiffe://example.test/admin-ui\n",
    )
    .unwrap();
    let roles = Arc::new(ClientRoles::load(roles_file.clone()).unwrap());
    let keys = Keys::load(
        &format!("check:{CHECK_KEY},admin:{ADMIN_KEY},operator:{OPERATOR_KEY}"),
        None,
    )
    .unwrap();
    let (port, _stop) = serve_with(ServerOptions {
        tls: Some(
            ServerTls::from_pem(&TlsPem {
                cert: cert.into_bytes(),
                key: key.into_bytes(),
                client_ca: Some(ca.pem.clone().into_bytes()),
            })
            .unwrap(),
        ),
        keys: Some(Arc::new(keys)),
        client_roles: Some(roles.clone()),
        ..ServerOptions::default()
    })
    .await;
    // A DNS name (compared without case), a subject common name, a URI.
    let billing = connect(port, &ca.pem, Some(&leaf(&ca, &["billing.internal"])))
        .await
        .unwrap();
    let ops = connect(
        port,
        &ca.pem,
        Some(&leaf_with(&ca, &[], |p| {
            p.distinguished_name.push(DnType::CommonName, "ops console");
        })),
    )
    .await
    .unwrap();
    let admin_ui = connect(
        port,
        &ca.pem,
        Some(&leaf_with(&ca, &[], |p| {
            p.subject_alt_names.push(SanType::URI(
                "spiffe://example.test/admin-ui".try_into().unwrap(),
            ));
        })),
    )
    .await
    .unwrap();
    let stranger = connect(port, &ca.pem, Some(&leaf(&ca, &["stranger.internal"])))
        .await
        .unwrap();

    // Mapped certificates act in their role without a key.
    assert_eq!(
        both_services(&billing, None).await,
        (Code::NotFound, Code::PermissionDenied)
    );
    assert_status(
        AdminServiceClient::new(billing.clone())
            .get_catalog(pb::GetCatalogRequest {})
            .await,
        Code::PermissionDenied,
        &["a client certificate with the `check` role may not call authz.v1.AdminService"],
    );
    assert_eq!(both_services(&ops, None).await, (Code::NotFound, Code::Ok));
    AdminServiceClient::new(ops.clone())
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "t".into(),
            display_name: "T".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        both_services(&admin_ui, None).await,
        (Code::PermissionDenied, Code::Ok)
    );

    // An unmapped certificate still needs a key, and its key's role applies.
    assert_status(
        AuthzServiceClient::new(stranger.clone())
            .check(crate::helpers::perm_check("t", "u", "view_reports"))
            .await,
        Code::Unauthenticated,
        &["authorization: Bearer", "client certificate"],
    );
    assert_eq!(
        both_services(&stranger, Some(CHECK_KEY)).await,
        (Code::Ok, Code::PermissionDenied)
    );
    assert_eq!(
        both_services(&stranger, Some(OPERATOR_KEY)).await,
        (Code::Ok, Code::Ok)
    );

    // A certificate and a key: the key must be valid, and the narrower role applies.
    assert_eq!(
        both_services(&billing, Some("not-a-key-at-all-000")).await,
        (Code::Unauthenticated, Code::Unauthenticated)
    );
    assert_eq!(
        both_services(&billing, Some(OPERATOR_KEY)).await,
        (Code::Ok, Code::PermissionDenied),
        "a check certificate with an operator key stays check"
    );
    assert_eq!(
        both_services(&ops, Some(CHECK_KEY)).await,
        (Code::Ok, Code::PermissionDenied),
        "an operator certificate with a check key acts as check"
    );
    assert_status(
        AuthzServiceClient::new(billing.clone())
            .check(keyed(
                crate::helpers::perm_check("t", "u", "view_reports"),
                Some(ADMIN_KEY),
            ))
            .await,
        Code::PermissionDenied,
        &["`check` role and the `admin` key share no service"],
    );

    // The mapping is re-read: a name moves to another role; a file giving one name two roles
    // is refused and the mapping in force stays.
    std::fs::write(&roles_file, "admin:dns=billing.internal\n").unwrap();
    assert_eq!(roles.reload().unwrap(), 1);
    assert_eq!(
        both_services(&billing, None).await,
        (Code::PermissionDenied, Code::Ok)
    );
    assert_eq!(
        both_services(&ops, None).await,
        (Code::Unauthenticated, Code::Unauthenticated)
    );
    std::fs::write(
        &roles_file,
        "admin:dns=billing.internal\n\ncheck:dns=billing.internal\n",
    )
    .unwrap();
    let err = roles.reload().unwrap_err();
    assert!(
        err.contains(&format!("{} line 3", roles_file.display()))
            && err.contains("already mapped to admin at line 1"),
        "{err}"
    );
    assert_eq!(
        both_services(&billing, None).await,
        (Code::PermissionDenied, Code::Ok)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes TLS material into `dir`: (certificate, key, CA) paths.
fn write_pki(dir: &Path, ca: &Ca, server: &(String, String)) -> (PathBuf, PathBuf, PathBuf) {
    let (cert, key, ca_file) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
    std::fs::write(&cert, &server.0).unwrap();
    std::fs::write(&key, &server.1).unwrap();
    std::fs::write(&ca_file, &ca.pem).unwrap();
    (cert, key, ca_file)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_material_stops_the_start_naming_the_file() {
    let dir = temp_dir("bad-tls");
    let ca = new_ca();
    let (cert, key, ca_file) = write_pki(&dir, &ca, &leaf(&ca, &["localhost"]));
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, leaf(&ca, &["localhost"]).1).unwrap();
    let not_pem = dir.join("not-pem.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let roles = dir.join("client-roles");
    std::fs::write(
        &roles,
        "check:dns=billing.internal\noperator:dns=billing.internal\n",
    )
    .unwrap();
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--log-format", "json"];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            serve(&["--tls-cert", path(&cert), "--tls-key", path(&other_key)]),
            vec![
                format!("the TLS key {} does not match", other_key.display()),
                format!("the TLS certificate {}", cert.display()),
            ],
        ),
        (
            serve(&["--tls-cert", path(&not_pem), "--tls-key", path(&key)]),
            vec![format!(
                "the TLS certificate {}: no PEM certificate",
                not_pem.display()
            )],
        ),
        (
            serve(&["--tls-cert", path(&cert), "--tls-key", path(&cert)]),
            vec![format!(
                "the TLS key {}: no PEM private key",
                cert.display()
            )],
        ),
        (
            serve(&[
                "--tls-cert",
                path(&cert),
                "--tls-key",
                path(&key),
                "--tls-client-ca",
                path(&not_pem),
            ]),
            vec![format!(
                "the TLS client CA {}: no PEM certificate",
                not_pem.display()
            )],
        ),
        (
            serve(&[
                "--tls-cert",
                path(&cert),
                "--tls-key",
                path(&key),
                "--tls-client-ca",
                path(&ca_file),
                "--tls-client-roles",
                path(&roles),
            ]),
            vec![format!(
                "{} line 2: `dns=billing.internal` is already mapped to check at line 1",
                roles.display()
            )],
        ),
    ];
    for (args, expected) in cases {
        let (status, stderr) = crate::binary::run_to_exit(&args, &[]).await;
        assert!(!status.success(), "{args:?} started:\n{stderr}");
        for part in &expected {
            assert!(
                stderr.contains(part.as_str()),
                "{args:?}: {part:?} not in\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("authzd serving") && !stderr.contains("\"message\":\"ready\""),
            "{args:?} got as far as serving:\n{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_warned_about_and_its_expiry_exported() {
    let dir = temp_dir("expired-tls");
    let ca = new_ca();
    let expired = leaf_with(&ca, &["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    });
    let (cert, key, _) = write_pki(&dir, &ca, &expired);
    let metrics_port = crate::binary::free_port();
    let mut daemon = Daemon::start(
        &[
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ],
        &[],
    )
    .await;
    let warning = daemon.wait_for_log("expired on").await;
    assert!(
        warning.contains("WARN") && warning.contains(&cert.display().to_string()),
        "{warning}"
    );
    daemon.wait_for_log("metrics at /metrics").await;
    let text = crate::metrics::scrape(format!("127.0.0.1:{metrics_port}").parse().unwrap()).await;
    // 2020-01-01T00:00:00Z.
    assert_eq!(
        crate::metrics::value(&text, "authz_tls_certificate_expiry_seconds"),
        1_577_836_800.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_are_logged_with_the_peer_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = temp_dir("handshake-log");
    let ca = new_ca();
    let (cert, key, ca_file) = write_pki(&dir, &ca, &leaf(&ca, &["localhost"]));
    let mut daemon = Daemon::start(
        &[
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--tls-client-ca",
            path(&ca_file),
        ],
        &[("RUST_LOG", "info,authz::tls=debug")],
    )
    .await;
    daemon.wait_for_log("\"message\":\"ready\"").await;
    // Plaintext where a handshake is expected.
    let mut plain = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
    let peer = plain.local_addr().unwrap().to_string();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest).await;
    let line = daemon.wait_for_log(&format!("\"peer\":\"{peer}\"")).await;
    assert!(line.contains("TLS handshake refused"), "{line}");
    // A client without a certificate, under mutual TLS.
    assert!(call(daemon.addr.port(), &ca.pem, None).await.is_err());
    let line = daemon.wait_for_log("TLS handshake refused").await;
    assert!(line.contains("\"peer\":\"127.0.0.1:"), "{line}");
    // A client with one is served.
    call(daemon.addr.port(), &ca.pem, Some(&leaf(&ca, &["client"])))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
