//! SIP over TLS towards `sip.server` (`sip.server_transport = tls`).
//!
//! The gateway opens the TLS connection to the registrar / outbound proxy itself and hands it to
//! rsipstack's transport layer, where every request for the server finds it (REGISTER,
//! keep-alives, INVITE, CANCEL, ACK, BYE). The server reaches us on it too: our Contact names
//! the connection's local address, so calls for the account come down the connection we opened
//! (the connection reuse Kamailio and most proxies do for TCP/TLS registrations). Dialling here
//! rather than in rsipstack puts the certificate check under `sip.tls_ca_file` / `sip.tls_verify`
//! (rsipstack's own dial has no opt-out), bounds the dial with a timeout, and turns a failure
//! into a reason an operator can act on. rsipstack's transport gets the same CA certificates for
//! the dial it makes itself when a request finds our connection closed (before the next REGISTER
//! or INVITE reopens it through here).
//!
//! Listening for TLS (`tls` in `sip.transports`) is not supported.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rsipstack::transport::tls::{TlsConfig, TlsConnection};
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::server::lock;
use crate::config::{Host, SipSettings, Transport};

/// How long the TCP connect and, separately, the TLS handshake may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sip.tls_ca_file {}: {problem}", path.display())]
    CaFile { path: PathBuf, problem: String },
    #[error(
        "no CA certificates found on this system ({0}): install them (Debian: ca-certificates) \
         or set sip.tls_ca_file"
    )]
    NoSystemRoots(String),
    #[error("cannot resolve the SIP server {server}: {why}")]
    Resolve { server: String, why: String },
    #[error("cannot connect to the SIP server {server}: {why}")]
    Connect { server: String, why: String },
    #[error("TLS with the SIP server {server} failed: {why}")]
    Handshake { server: String, why: String },
    #[error("SIP stack: {0}")]
    Stack(String),
}

/// Whom we believe: certificates chaining to `store` (`source` names it for errors), or anyone.
enum Trust {
    Roots {
        store: RootCertStore,
        /// The same certificates, PEM, for rsipstack's own dial.
        pem: Vec<u8>,
        source: String,
    },
    Any,
}

/// The TLS connection to `sip.server`: how to open it, and the one that is open.
pub(crate) struct ServerTls {
    host: Host,
    port: u16,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    /// What the certificate must chain to, for error messages.
    trust_source: String,
    /// `sip.public_address`: the Contact's address instead of the connection's local one.
    public_address: Option<std::net::IpAddr>,
    open: Mutex<Option<Flow>>,
    /// One dial at a time: concurrent requests wait for it instead of opening more connections.
    dialing: tokio::sync::Mutex<()>,
    cancel: CancellationToken,
}

/// An open connection.
struct Flow {
    /// Where the server is (rsipstack finds the connection under this address).
    remote: SipAddr,
    /// Our end of it, as the Contact shows it.
    contact: SocketAddr,
    /// Cancelled by rsipstack when it retires the connection (closed, failed, idle).
    closed: CancellationToken,
}

impl ServerTls {
    /// With `sip.server_transport = tls` and a server: its TLS settings, loaded and given to
    /// `layer` as well; `None` otherwise. Fails when the CA certificates cannot be loaded.
    pub fn from_settings(
        settings: &SipSettings,
        layer: &TransportLayer,
        cancel: &CancellationToken,
    ) -> Result<Option<ServerTls>, TlsError> {
        let Some(host) = settings.server.clone() else {
            return Ok(None);
        };
        if settings.server_transport != Transport::Tls {
            return Ok(None);
        }
        let server = format!("{host}:{}", settings.server_port);
        // Not checking is warned about with the configuration's warnings.
        let trust = if !settings.tls_verify {
            Trust::Any
        } else if let Some(path) = &settings.tls_ca_file {
            ca_file(path)?
        } else {
            system_roots()?
        };
        let name = match &host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(domain) => {
                ServerName::try_from(domain.as_str().to_string()).map_err(|e| {
                    TlsError::Handshake {
                        server: server.clone(),
                        why: format!("not a name a certificate can carry: {e}"),
                    }
                })?
            }
        };
        let (config, trust_source) = match trust {
            Trust::Roots { store, pem, source } => {
                layer.set_tls_config(TlsConfig {
                    ca_certs: Some(pem),
                    ..TlsConfig::default()
                });
                (client_config(Some(store))?, source)
            }
            Trust::Any => (client_config(None)?, "any (not checked)".to_string()),
        };
        Ok(Some(ServerTls {
            host,
            port: settings.server_port,
            name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            trust_source,
            public_address: settings.public_address,
            open: Mutex::new(None),
            dialing: tokio::sync::Mutex::new(()),
            cancel: cancel.clone(),
        }))
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The open connection, unless rsipstack has retired it.
    fn current(&self) -> Option<(SipAddr, SocketAddr, CancellationToken)> {
        lock(&self.open)
            .as_ref()
            .filter(|f| !f.closed.is_cancelled())
            .map(|f| (f.remote.clone(), f.contact, f.closed.clone()))
    }

    /// Where requests for the server go while a connection is open (an INVITE's destination).
    pub fn destination(&self) -> Option<SipAddr> {
        self.current().map(|(remote, _, _)| remote)
    }

    /// Makes sure a connection to the server is open. Returns our Contact address on it when it
    /// had to open a new one (the old Contact no longer reaches us), `None` when one was open.
    pub async fn connect(&self, layer: &TransportLayer) -> Result<Option<SocketAddr>, TlsError> {
        let _dialing = self.dialing.lock().await;
        if self.current().is_some() {
            return Ok(None);
        }
        let server = self.server();
        let (remote, addr) = self.resolve(layer).await?;
        let tcp = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(TlsError::Connect {
                    server,
                    why: format!("{addr}: {e}"),
                })
            }
            Err(_) => {
                return Err(TlsError::Connect {
                    server,
                    why: format!("{addr}: no answer within {} s", DIAL_TIMEOUT.as_secs()),
                })
            }
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().map_err(|e| TlsError::Connect {
            server: server.clone(),
            why: e.to_string(),
        })?;
        let handshake = self.connector.connect(self.name.clone(), tcp);
        let stream = match tokio::time::timeout(DIAL_TIMEOUT, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(TlsError::Handshake {
                    server,
                    why: describe_io(&e, &self.trust_source),
                })
            }
            Err(_) => {
                return Err(TlsError::Handshake {
                    server,
                    why: format!("no handshake within {} s", DIAL_TIMEOUT.as_secs()),
                })
            }
        };
        let closed = self.cancel.child_token();
        let connection =
            TlsConnection::from_client_stream(stream, remote.clone(), Some(closed.clone()))
                .await
                .map_err(|e| TlsError::Stack(e.to_string()))?;
        layer.add_connection(SipConnection::Tls(connection));
        let contact = SocketAddr::new(self.public_address.unwrap_or(local.ip()), local.port());
        info!(%server, %local, "TLS connection to the SIP server open");
        *lock(&self.open) = Some(Flow {
            remote,
            contact,
            closed,
        });
        Ok(Some(contact))
    }

    /// Returns when the open connection closes; never while none is open.
    pub async fn closed(&self) {
        match self.current() {
            Some((_, _, closed)) => closed.cancelled_owned().await,
            None => std::future::pending().await,
        }
    }

    /// The server's address as rsipstack's transport layer resolves it (its resolver, not the
    /// system's: requests find the connection under exactly that address).
    async fn resolve(&self, layer: &TransportLayer) -> Result<(SipAddr, SocketAddr), TlsError> {
        let tls = Some(rsipstack::sip::Transport::Tls);
        let remote = match &self.host {
            Host::Ip(ip) => SipAddr {
                r#type: tls,
                addr: SocketAddr::new(*ip, self.port).into(),
            },
            Host::Name(name) => {
                let target = SipAddr {
                    r#type: tls,
                    addr: rsipstack::sip::HostWithPort {
                        host: rsipstack::sip::Host::Domain(name.as_str().to_string().into()),
                        port: Some(self.port.into()),
                    },
                };
                layer
                    .inner
                    .domain_resolver
                    .resolve(&target)
                    .await
                    .map_err(|e| TlsError::Resolve {
                        server: self.server(),
                        why: e.to_string(),
                    })?
            }
        };
        let addr = remote.get_socketaddr().map_err(|e| TlsError::Resolve {
            server: self.server(),
            why: e.to_string(),
        })?;
        Ok((remote, addr))
    }
}

/// The CA certificates of `sip.tls_ca_file`.
fn ca_file(path: &Path) -> Result<Trust, TlsError> {
    let error = |problem: String| TlsError::CaFile {
        path: path.to_path_buf(),
        problem,
    };
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error("no certificate in it (expected PEM)".to_string()));
    }
    let mut store = RootCertStore::empty();
    for cert in certs {
        store
            .add(cert)
            .map_err(|e| error(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Trust::Roots {
        store,
        pem,
        source: format!("sip.tls_ca_file ({})", path.display()),
    })
}

/// The system's CA certificates (`/etc/ssl/certs` and the like, `SSL_CERT_FILE`), as OpenSSL
/// finds them.
fn system_roots() -> Result<Trust, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let mut pem = Vec::new();
    for cert in &found.certs {
        // The odd unparseable certificate in a system bundle is skipped, as OpenSSL does.
        if store.add(cert.clone()).is_ok() {
            pem.extend(pem_of(cert));
        }
    }
    if store.is_empty() {
        let why = match found.errors.first() {
            Some(e) => e.to_string(),
            None => "none in the usual places".to_string(),
        };
        return Err(TlsError::NoSystemRoots(why));
    }
    Ok(Trust::Roots {
        store,
        pem,
        source: "the system's CA certificates".to_string(),
    })
}

fn pem_of(cert: &CertificateDer<'_>) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

/// A client configuration that checks certificates against `roots`, or not at all.
fn client_config(roots: Option<RootCertStore>) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Stack(e.to_string()))?;
    Ok(match roots {
        Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    })
}

/// Why a handshake failed, for the operator: what is wrong with the certificate when that is
/// it (`trusted`: what it should have chained to).
fn describe_io(e: &std::io::Error, trusted: &str) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => describe(tls, trusted),
        None => e.to_string(),
    }
}

fn describe(e: &rustls::Error, trusted: &str) -> String {
    let rustls::Error::InvalidCertificate(cert) = e else {
        return match e {
            rustls::Error::AlertReceived(alert) => {
                format!("the server ended the handshake ({alert:?})")
            }
            other => other.to_string(),
        };
    };
    match cert {
        CertificateError::UnknownIssuer => format!(
            "its certificate is not signed by a CA in {trusted} (set sip.tls_ca_file to the \
             certificate of the CA that signed it)"
        ),
        CertificateError::BadSignature => format!(
            "its certificate is not signed by a CA in {trusted} (one of the same name is \
             there, but its signature does not match)"
        ),
        CertificateError::NotValidForName => {
            "its certificate is not for the name or address in sip.server".to_string()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "its certificate is not for {} (it names {})",
            expected.to_str(),
            presented.join(", ")
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "its certificate has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "its certificate is not valid yet (or our clock is wrong)".to_string()
        }
        _ => format!("its certificate was refused: {e}"),
    }
}

/// `sip.tls_verify = false`: any certificate, but the handshake's signatures are still checked
/// (the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::test_settings;

    fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file
    }

    fn ca_file_error(path: &Path) -> String {
        match ca_file(path) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{} accepted", path.display()),
        }
    }

    #[test]
    fn pem_written_for_rsipstack_reads_back_as_the_same_certificate() {
        let der = CertificateDer::from((0..=255u8).cycle().take(700).collect::<Vec<_>>());
        let pem = pem_of(&der);
        let text = String::from_utf8(pem.clone()).unwrap();
        assert!(text.lines().all(|l| l.len() <= 64), "{text}");
        let back: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, [der]);
    }

    #[test]
    fn a_ca_file_that_is_missing_empty_or_not_a_ca_says_so_naming_the_file() {
        let missing = Path::new("/nonexistent/sip-ca.pem");
        assert!(
            ca_file_error(missing)
                .starts_with("sip.tls_ca_file /nonexistent/sip-ca.pem: cannot read it:"),
            "{}",
            ca_file_error(missing)
        );
        let empty = temp_file(b"# nothing here\n");
        assert!(
            ca_file_error(empty.path()).ends_with("no certificate in it (expected PEM)"),
            "{}",
            ca_file_error(empty.path())
        );
        // PEM, but not a certificate anyone could check a chain against.
        let junk = temp_file(&pem_of(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])));
        assert!(
            ca_file_error(junk.path()).contains("not a usable CA certificate"),
            "{}",
            ca_file_error(junk.path())
        );
    }

    #[tokio::test]
    async fn tls_settings_apply_only_to_a_tls_server() {
        let layer = TransportLayer::new(CancellationToken::new());
        let cancel = CancellationToken::new();
        let udp = test_settings(&["sip.uri=gw@pbx.example.com", "sip.tls_ca_file=/missing"]);
        assert!(ServerTls::from_settings(&udp, &layer, &cancel)
            .unwrap()
            .is_none());
        let tls = test_settings(&[
            "sip.uri=gw@pbx.example.com",
            "sip.server_transport=tls",
            "sip.tls_ca_file=/missing",
        ]);
        let err = ServerTls::from_settings(&tls, &layer, &cancel)
            .err()
            .expect("a missing CA file is an error at start");
        assert!(matches!(err, TlsError::CaFile { .. }), "{err}");
        // Not checking needs no CA certificates at all.
        let any = test_settings(&[
            "sip.uri=gw@pbx.example.com",
            "sip.server_transport=tls",
            "sip.tls_verify=false",
        ]);
        let server = ServerTls::from_settings(&any, &layer, &cancel)
            .unwrap()
            .unwrap();
        assert_eq!(server.server(), "pbx.example.com:5060");
        assert!(server.destination().is_none(), "nothing open yet");
    }

    #[test]
    fn certificate_failures_say_what_is_wrong_and_what_to_set() {
        let trusted = "the system's CA certificates";
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            describe(&unknown, trusted),
            "its certificate is not signed by a CA in the system's CA certificates (set \
             sip.tls_ca_file to the certificate of the CA that signed it)"
        );
        let wrong_name =
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("pbx.example.com").unwrap(),
                presented: vec!["DnsName(\"other.example.com\")".into()],
            });
        assert_eq!(
            describe(&wrong_name, trusted),
            "its certificate is not for pbx.example.com (it names DnsName(\"other.example.com\"))"
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(describe(&expired, trusted), "its certificate has expired");
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(
            describe(&alert, trusted),
            "the server ended the handshake (HandshakeFailure)"
        );
        // Through tokio-rustls, the rustls error travels inside an io::Error.
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        assert!(describe_io(&io, trusted).starts_with("its certificate is not signed"));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(describe_io(&reset, trusted), reset.to_string());
    }
}
