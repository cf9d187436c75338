//! TLS: the server's certificate, key and client CA, checked before the server starts, and the
//! handshakes themselves.
//!
//! The server does its own handshakes rather than leaving them to tonic, for two reasons: a
//! refused handshake is logged (at debug) with the peer's address, and a verified client
//! certificate's names are read once per connection, not once per request. Each connection then
//! carries a [`PeerInfo`] in its requests' extensions, where the gate finds the client's names.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server certificate expiring within this long is warned about at start.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// PEM-encoded TLS material, as read from files or made by tests.
#[derive(Clone)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<Vec<u8>>,
}

/// TLS material that has been parsed and checked: the certificate chain is X.509, the key is
/// usable and matches the certificate, the client CA (if any) holds certificates.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    certificate: String,
    not_before: i64,
    not_after: i64,
    not_after_text: String,
    mutual: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("certificate", &self.certificate)
            .field("not_after", &self.not_after_text)
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

/// One PEM input and how errors name it (`the TLS key /etc/authz/tls.key`).
struct Source<'a> {
    name: String,
    pem: &'a [u8],
}

impl ServerTls {
    /// Reads and checks the files; every error names the file it is about.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerTls, String> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| format!("cannot read the TLS {what} {}: {e}", p.display()))
        };
        let cert_pem = read(cert, "certificate")?;
        let key_pem = read(key, "key")?;
        let ca_pem = client_ca.map(|p| read(p, "client CA")).transpose()?;
        Self::build(
            Source {
                name: format!("the TLS certificate {}", cert.display()),
                pem: &cert_pem,
            },
            Source {
                name: format!("the TLS key {}", key.display()),
                pem: &key_pem,
            },
            client_ca.zip(ca_pem.as_deref()).map(|(p, pem)| Source {
                name: format!("the TLS client CA {}", p.display()),
                pem,
            }),
        )
    }

    /// Checks PEM material held in memory.
    pub fn from_pem(pem: &TlsPem) -> Result<ServerTls, String> {
        Self::build(
            Source {
                name: "the TLS certificate".to_owned(),
                pem: &pem.cert,
            },
            Source {
                name: "the TLS key".to_owned(),
                pem: &pem.key,
            },
            pem.client_ca.as_deref().map(|ca| Source {
                name: "the TLS client CA".to_owned(),
                pem: ca,
            }),
        )
    }

    fn build(cert: Source, key: Source, client_ca: Option<Source>) -> Result<ServerTls, String> {
        let chain = certificates(&cert)?;
        let leaf = x509_parser::parse_x509_certificate(&chain[0])
            .map_err(|e| {
                format!(
                    "{}: its first certificate is not valid X.509: {e}",
                    cert.name
                )
            })?
            .1;
        let validity = leaf.validity();
        let (not_before, not_after) = (
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        );
        let not_after_text = validity.not_after.to_string();
        let subject = leaf.subject().to_string();
        for (i, der) in chain.iter().enumerate().skip(1) {
            x509_parser::parse_x509_certificate(der).map_err(|e| {
                format!(
                    "{}: certificate {} of the chain is not valid X.509: {e}",
                    cert.name,
                    i + 1
                )
            })?;
        }

        let private_key = PrivateKeyDer::from_pem_slice(key.pem).map_err(|e| match e {
            pem::Error::NoItemsFound => format!(
                "{}: no PEM private key in it (expected `-----BEGIN PRIVATE KEY-----`, or an RSA or EC key; encrypted keys are not supported)",
                key.name
            ),
            e => format!("{}: not a readable PEM private key: {e}", key.name),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing_key = provider
            .key_provider
            .load_private_key(private_key)
            .map_err(|e| format!("{}: the key cannot be used: {e}", key.name))?;
        let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(format!(
                    "{} does not match {}: the key is not the certificate's (is it the key of another certificate?)",
                    key.name, cert.name
                ));
            }
            Err(e) => return Err(format!("{}: {e}", cert.name)),
        }

        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let builder = match &client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for (i, der) in certificates(ca)?.into_iter().enumerate() {
                    roots.add(der).map_err(|e| {
                        format!("{}: certificate {} cannot be used: {e}", ca.name, i + 1)
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| format!("{}: {e}", ca.name))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            certificate: format!("{} ({subject})", cert.name),
            not_before,
            not_after,
            not_after_text,
            mutual: client_ca.is_some(),
        })
    }

    /// The server certificate's end of validity, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Whether clients must present a certificate (mutual TLS).
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    /// What is wrong with the server certificate's validity at `now` (seconds since the
    /// epoch): expired, expiring within [`EXPIRY_WARNING`], or not valid yet.
    pub fn validity_warning(&self, now: i64) -> Option<String> {
        let left = self.not_after.saturating_sub(now);
        let warn_within = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
        if left <= 0 {
            Some(format!(
                "{} expired on {}: clients will refuse the handshake; renew it",
                self.certificate, self.not_after_text
            ))
        } else if left < warn_within {
            Some(format!(
                "{} expires on {} (in {} days); renew it",
                self.certificate,
                self.not_after_text,
                left / 86_400
            ))
        } else if self.not_before > now {
            Some(format!(
                "{} is not valid yet (from {} seconds since the epoch); check the clock",
                self.certificate, self.not_before
            ))
        } else {
            None
        }
    }
}

/// Every PEM certificate of a source, at least one.
fn certificates(source: &Source) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(source.pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not readable PEM: {e}", source.name))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in it (expected `-----BEGIN CERTIFICATE-----`)",
            source.name
        ));
    }
    Ok(chain)
}

/// The names a verified client certificate carries: its subject's common names, its DNS names
/// (lower-cased) and its URIs (subject alternative names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientNames {
    pub common_names: Vec<String>,
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
}

impl ClientNames {
    /// The names of a DER certificate, or `None` when it cannot be read.
    pub fn of(der: &[u8]) -> Option<ClientNames> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut names = ClientNames {
            common_names: cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_owned)
                .collect(),
            ..ClientNames::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.dns_names.push(d.to_ascii_lowercase()),
                    GeneralName::URI(u) => names.uris.push((*u).to_owned()),
                    _ => {}
                }
            }
        }
        Some(names)
    }
}

/// What the server knows of a connection's peer; every request on a TLS connection carries it
/// in its extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote_addr: SocketAddr,
    /// The names of the client's verified certificate (mutual TLS).
    pub client: Option<Arc<ClientNames>>,
}

/// An accepted TLS connection.
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts connections on `listener` and hands over those whose handshake succeeds; each
/// handshake runs on its own task, so a slow client holds up no one. Refused handshakes are
/// logged at debug with the peer's address. Accepting stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: &ServerTls,
    admission: crate::transport::Admission,
    options: &crate::transport::ConnectionOptions,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<crate::transport::Conn<TlsConnection>>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let options = options.clone();
    let handshake_timeout = options.handshake_timeout;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    admission.failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // The connection cap counts from the TCP accept, before the handshake's work.
            let Some(slot) = admission.admit() else {
                continue;
            };
            // Checks are small request/response pairs: don't let Nagle hold them back.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let options = options.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %remote_addr, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(
                            peer = %remote_addr,
                            timeout = ?handshake_timeout,
                            "TLS handshake refused: not finished in time"
                        );
                        return;
                    }
                };
                let client = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| {
                        let names = ClientNames::of(leaf);
                        if names.is_none() {
                            tracing::debug!(peer = %remote_addr, "the client certificate's names cannot be read");
                        }
                        names
                    })
                    .map(Arc::new);
                let connection = TlsConnection {
                    stream,
                    peer: PeerInfo {
                        remote_addr,
                        client,
                    },
                };
                // The HTTP/2 preface, in the clear now, gets its own deadline from here.
                let conn = crate::transport::Conn::new(connection, slot, &options);
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(not_after: (i32, u8, u8)) -> TlsPem {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        TlsPem {
            cert: params.self_signed(&key).unwrap().pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
            client_ca: None,
        }
    }

    #[test]
    fn validity_warnings() {
        let tls = ServerTls::from_pem(&pem((2030, 1, 1))).unwrap();
        let end = tls.not_after();
        assert_eq!(end, 1_893_456_000);
        assert_eq!(tls.validity_warning(end - 30 * 86_400), None);
        let soon = tls.validity_warning(end - 3 * 86_400 - 60).unwrap();
        assert!(
            soon.contains("expires on") && soon.contains("in 3 days"),
            "{soon}"
        );
        let expired = tls.validity_warning(end + 1).unwrap();
        assert!(expired.contains("expired on"), "{expired}");
        let early = tls.validity_warning(1_500_000_000).unwrap();
        assert!(early.contains("not valid yet"), "{early}");
    }

    #[test]
    fn material_errors_say_what_is_wrong() {
        let a = pem((2030, 1, 1));
        let b = pem((2030, 1, 1));
        let mismatched = TlsPem {
            key: b.key.clone(),
            ..a.clone()
        };
        let err = ServerTls::from_pem(&mismatched).unwrap_err();
        assert!(
            err.contains("the TLS key does not match the TLS certificate"),
            "{err}"
        );
        let swapped = TlsPem {
            cert: a.key.clone(),
            key: a.cert.clone(),
            client_ca: None,
        };
        let err = ServerTls::from_pem(&swapped).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let bad_ca = TlsPem {
            client_ca: Some(b"garbage".to_vec()),
            ..a
        };
        let err = ServerTls::from_pem(&bad_ca).unwrap_err();
        assert!(
            err.starts_with("the TLS client CA: no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn client_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["Billing.Internal".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.test/billing".try_into().unwrap(),
        ));
        let cert = params.self_signed(&key).unwrap();
        let names = ClientNames::of(cert.der()).unwrap();
        assert_eq!(names.common_names, ["billing"]);
        assert_eq!(names.dns_names, ["billing.internal"]);
        assert_eq!(names.uris, ["spiffe://example.test/billing"]);
        assert_eq!(ClientNames::of(b"not a certificate"), None);
    }
}
