//! Opening a stream and logging in: TCP to the configured host and port (no DNS SRV), plain or
//! STARTTLS, SASL, resource binding. No retries and no reconnects here: a failure is returned,
//! typed, for the caller to decide.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sasl::common::{ChannelBinding, Credentials};
use tokio::io::{AsyncRead, AsyncWrite, BufStream};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::error::{AuthError, Error as XmppError, ProtocolError};
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts,
    XmppStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;
use xmpp_parsers::bind::{BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::{ns, starttls};

use super::error::ConnectError;
use crate::config::{Host, Secret, XmppServer, XmppSettings};

/// How the stream is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tls {
    /// Plain TCP: Prosody without TLS on a private link (docker's internal network, the lab).
    #[default]
    Plain,
    /// STARTTLS, the certificate checked against the system's roots and the XMPP domain.
    StartTls,
    /// STARTTLS accepting any certificate. Only for a server reached over a trusted network
    /// with a self-signed certificate (docker-jitsi-meet's Prosody; jigasi trusts anything).
    StartTlsAcceptAnyCertificate,
}

impl From<crate::config::XmppTls> for Tls {
    fn from(t: crate::config::XmppTls) -> Tls {
        match t {
            crate::config::XmppTls::StartTlsTrustAny => Tls::StartTlsAcceptAnyCertificate,
            crate::config::XmppTls::StartTls => Tls::StartTls,
            crate::config::XmppTls::None => Tls::Plain,
        }
    }
}

/// Who the connection logs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// SASL ANONYMOUS on `domain`: the server makes up a JID.
    Anonymous { domain: String },
    /// An account, `user@domain`. Never falls back to ANONYMOUS.
    Password { jid: String, password: Secret },
}

impl Login {
    fn jid(&self) -> &str {
        match self {
            Login::Anonymous { domain } => domain,
            Login::Password { jid, .. } => jid,
        }
    }
}

/// Time limits of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmppTimeouts {
    /// TCP, TLS, SASL and binding together.
    pub login: Duration,
    /// After this much silence from the server, ping it (XEP-0199).
    pub keepalive: Duration,
    /// And if it still says nothing for this long, the stream is dead.
    pub keepalive_answer: Duration,
    /// How long our IQ requests wait for an answer.
    pub iq: Duration,
}

impl Default for XmppTimeouts {
    fn default() -> Self {
        XmppTimeouts {
            login: Duration::from_secs(10),
            // jigasi pings every 30 s (KEEP_ALIVE_INTERVAL).
            keepalive: Duration::from_secs(30),
            keepalive_answer: Duration::from_secs(10),
            // Smack's reply timeout in jigasi.
            iq: Duration::from_secs(15),
        }
    }
}

/// Everything needed to open one logged-in connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub host: Host,
    pub port: u16,
    pub login: Login,
    pub tls: Tls,
    /// Where `<conference/>` requests go: `focus.<domain>`.
    pub focus_jid: String,
    /// The focus's nick in rooms.
    pub focus_nick: String,
    pub timeouts: XmppTimeouts,
}

impl ConnectOptions {
    /// Per-call connections as docker-jitsi-meet's jigasi makes them: to the first server of
    /// `xmpp.servers`; anonymous on `xmpp.domain`, or with `xmpp.enable_auth` the account
    /// `xmpp.user@xmpp.auth_domain` (anonymous on `xmpp.guest_domain` with `xmpp.enable_guests`).
    pub fn per_call(settings: &XmppSettings, tls: Tls) -> ConnectOptions {
        Self::per_call_on(settings, settings.servers.first(), tls)
    }

    /// Per-call connections to a given server of `xmpp.servers` (`None`: `xmpp.domain` on
    /// `xmpp.port`). A dial-out call goes to the server its Rayo request came through: that
    /// server's shard holds the room.
    pub fn per_call_on(
        settings: &XmppSettings,
        server: Option<&XmppServer>,
        tls: Tls,
    ) -> ConnectOptions {
        let login = match (settings.enable_auth, settings.enable_guests) {
            (false, _) => Login::Anonymous {
                domain: settings.domain.as_str().to_string(),
            },
            (true, true) => Login::Anonymous {
                domain: settings.guest_domain.as_str().to_string(),
            },
            (true, false) => Login::Password {
                jid: settings.login_jid(),
                password: settings.password.clone(),
            },
        };
        ConnectOptions {
            host: server
                .map(|s| s.host.clone())
                .unwrap_or_else(|| Host::Name(settings.domain.clone())),
            port: server.map(|s| s.port).unwrap_or(settings.port),
            login,
            tls,
            focus_jid: format!("focus.{}", settings.domain.as_str()),
            focus_nick: settings.focus_resource.clone(),
            timeouts: XmppTimeouts::default(),
        }
    }

    /// The brewery (control) connection to `server`: always the account
    /// `xmpp.user@xmpp.auth_domain`, over `xmpp.tls`.
    pub fn brewery(settings: &XmppSettings, server: &XmppServer) -> ConnectOptions {
        ConnectOptions {
            host: server.host.clone(),
            port: server.port,
            login: Login::Password {
                jid: settings.login_jid(),
                password: settings.password.clone(),
            },
            tls: settings.tls.into(),
            focus_jid: format!("focus.{}", settings.domain.as_str()),
            focus_nick: settings.focus_resource.clone(),
            timeouts: XmppTimeouts::default(),
        }
    }

    pub(super) fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The stream type of every connection: plain or TLS behind one box.
pub(super) type Stream = XmppStream<BufStream<Box<dyn Io>>>;

pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl fmt::Debug for dyn Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Io")
    }
}

/// Opens a stream and logs in, all within `timeouts.login`. Returns the bound JID and the
/// stream, ready for stanzas.
pub(super) async fn login(opts: &ConnectOptions) -> Result<(FullJid, Stream), ConnectError> {
    let server = opts.server();
    tokio::time::timeout(opts.timeouts.login, login_now(opts))
        .await
        .map_err(|_| ConnectError::Timeout {
            server,
            after: opts.timeouts.login,
        })?
}

async fn login_now(opts: &ConnectOptions) -> Result<(FullJid, Stream), ConnectError> {
    let jid = Jid::new(opts.login.jid())
        .map_err(|_| ConnectError::InvalidJid(opts.login.jid().to_string()))?;
    let connector = Connector {
        host: opts.host.clone(),
        port: opts.port,
        tls: opts.tls,
    };
    let timeouts = Timeouts {
        read_timeout: opts.timeouts.keepalive,
        response_timeout: opts.timeouts.keepalive_answer,
    };
    let server = opts.server();
    let (pending, _) = connector
        .connect(&jid, ns::JABBER_CLIENT, timeouts)
        .await
        .map_err(|e| connect_error(&server, e))?;
    let (features, stream) = pending
        .recv_features::<FallibleStreamElement>()
        .await
        .map_err(|e| connect_error(&server, e.into()))?;

    let (mechanisms, credentials) = sasl_choice(&opts.login, &features.sasl_mechanisms)?;
    let stream = tokio_xmpp::client_login(stream, mechanisms, credentials)
        .await
        .map_err(|e| connect_error(&server, e))?;
    let pending = stream
        .send_header(StreamHeader {
            to: Some(Cow::Borrowed(jid.domain().as_str())),
            from: None,
            id: None,
        })
        .await
        .map_err(|e| connect_error(&server, e.into()))?;
    let (_, mut stream) = pending
        .recv_features::<FallibleStreamElement>()
        .await
        .map_err(|e| connect_error(&server, e.into()))?;
    let bound = bind(&mut stream)
        .await
        .map_err(|e| connect_error(&server, e))?;
    Ok((bound, stream))
}

/// The SASL mechanisms to try and the credentials for them. tokio-xmpp takes the first of
/// SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, ANONYMOUS that it is given, so the choice is made here: an
/// anonymous login only ever offers ANONYMOUS, an account login never does.
fn sasl_choice(
    login: &Login,
    offered: &BTreeSet<String>,
) -> Result<(BTreeSet<String>, Credentials), ConnectError> {
    let (usable, credentials): (BTreeSet<String>, _) = match login {
        Login::Anonymous { .. } => (
            offered
                .iter()
                .filter(|m| *m == "ANONYMOUS")
                .cloned()
                .collect(),
            // tokio-xmpp builds every mechanism before picking one, and SCRAM's constructor
            // fails without a user name and password, so it gets placeholders it never sends.
            Credentials::default()
                .with_username("anonymous")
                .with_password("")
                .with_channel_binding(ChannelBinding::None),
        ),
        Login::Password { jid, password } => {
            let user = jid.split_once('@').map(|(u, _)| u).unwrap_or(jid);
            (
                offered
                    .iter()
                    .filter(|m| *m != "ANONYMOUS")
                    .cloned()
                    .collect(),
                Credentials::default()
                    .with_username(user)
                    .with_password(password.expose())
                    .with_channel_binding(ChannelBinding::None),
            )
        }
    };
    if usable.is_empty() {
        return Err(ConnectError::NoMechanism {
            offered: offered.iter().cloned().collect(),
        });
    }
    Ok((usable, credentials))
}

/// RFC 6120 resource binding; the server picks the resource.
async fn bind(stream: &mut Stream) -> Result<FullJid, XmppError> {
    const ID: &str = "bind-1";
    let request = Iq::from_set(ID, BindQuery::new(None));
    stream
        .send(&XmppStreamElement::Stanza(Stanza::Iq(request)))
        .await?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(Stanza::Iq(iq)))))
                if iq.id() == ID =>
            {
                return match iq {
                    Iq::Result {
                        payload: Some(payload),
                        ..
                    } => BindResponse::try_from(payload)
                        .map(|b| b.jid)
                        .map_err(|_| ProtocolError::InvalidBindResponse.into()),
                    _ => Err(ProtocolError::InvalidBindResponse.into()),
                };
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(XmppError::StreamError(e))
            }
            // Nothing else is expected before binding; nothing else matters either.
            Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::HardError(e))) => return Err(e.into()),
            Some(Err(ReadError::ParseError(e))) => return Err(ProtocolError::Parsers(e).into()),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(XmppError::Disconnected)
            }
        }
    }
}

fn connect_error(server: &str, e: XmppError) -> ConnectError {
    match e {
        // tokio-rustls reports handshake failures (an untrusted certificate, …) as I/O errors.
        XmppError::Io(e)
            if e.get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
        {
            ConnectError::Tls(e.to_string())
        }
        XmppError::Io(e) => ConnectError::Unreachable {
            server: server.to_string(),
            reason: e.to_string(),
        },
        XmppError::Auth(AuthError::Fail(condition)) => ConnectError::AuthFailed {
            condition: xmpp_parsers::minidom::Element::from(condition)
                .name()
                .to_string(),
        },
        XmppError::Auth(AuthError::NoMechanism) => ConnectError::NoMechanism {
            offered: Vec::new(),
        },
        XmppError::Protocol(ProtocolError::NoTls) => ConnectError::NoStartTls,
        XmppError::Connection(e) => ConnectError::Tls(e.to_string()),
        XmppError::StreamError(e) => ConnectError::StreamError(e.to_string()),
        XmppError::Disconnected => ConnectError::Unreachable {
            server: server.to_string(),
            reason: "the server closed the stream".into(),
        },
        other => ConnectError::Protocol(other.to_string()),
    }
}

/// TCP (and TLS) to a fixed host and port: the deployment names its Prosody, no SRV lookup.
#[derive(Debug, Clone)]
struct Connector {
    host: Host,
    port: u16,
    tls: Tls,
}

#[derive(Debug)]
struct TlsFailure(String);

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}
impl tokio_xmpp::connect::ServerConnectorError for TlsFailure {}

impl Connector {
    async fn tcp(&self) -> std::io::Result<TcpStream> {
        let stream = match &self.host {
            Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, self.port)).await?,
            Host::Name(name) => TcpStream::connect((name.as_str(), self.port)).await?,
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl ServerConnector for Connector {
    type Stream = BufStream<Box<dyn Io>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), XmppError> {
        let domain = jid.domain().as_str();
        let header = || StreamHeader {
            to: Some(Cow::Borrowed(domain)),
            from: None,
            id: None,
        };
        let tcp = self.tcp().await?;
        let io: Box<dyn Io> = match self.tls {
            Tls::Plain => Box::new(tcp),
            Tls::StartTls | Tls::StartTlsAcceptAnyCertificate => {
                let plain = initiate_stream(buffered(tcp), ns, header(), timeouts).await?;
                let (features, stream) = plain.recv_features::<FallibleStreamElement>().await?;
                if !features.can_starttls() {
                    return Err(ProtocolError::NoTls.into());
                }
                if self.tls == Tls::StartTls {
                    let (tls, _) = tokio_xmpp::connect::starttls::starttls(stream, domain).await?;
                    Box::new(tls)
                } else {
                    Box::new(starttls_accepting_any_certificate(stream, domain).await?)
                }
            }
        };
        let stream = initiate_stream(buffered(io), ns, header(), timeouts).await?;
        Ok((stream, ChannelBinding::None))
    }
}

/// Each call has its own XMPP stream, so its buffers count per call: 4 KB each way (tokio's
/// default is 8 KB) holds a Jingle offer or answer in one or two reads or writes.
fn buffered<T: AsyncRead + AsyncWrite>(io: T) -> BufStream<T> {
    const BUFFER: usize = 4096;
    BufStream::with_capacity(BUFFER, BUFFER, io)
}

/// `<starttls/>`, then TLS whatever certificate the server shows. The handshake signatures are
/// still checked; only the certificate's origin is not.
async fn starttls_accepting_any_certificate(
    mut stream: XmppStream<BufStream<TcpStream>>,
    domain: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, XmppError> {
    stream
        .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
            starttls::Request,
        )))
        .await?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Starttls(
                starttls::Nonza::Proceed(_),
            )))) => break,
            Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::HardError(e))) => return Err(e.into()),
            Some(Err(ReadError::ParseError(e))) => return Err(ProtocolError::Parsers(e).into()),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(XmppError::Disconnected)
            }
        }
    }
    let tcp = stream.into_inner().into_inner();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFailure(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(domain.to_string())
        .map_err(|e| TlsFailure(e.to_string()))?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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

    fn offered(m: &[&str]) -> BTreeSet<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn anonymous_login_offers_only_anonymous() {
        let login = Login::Anonymous {
            domain: "meet.jitsi".into(),
        };
        let (mechs, _) = sasl_choice(&login, &offered(&["ANONYMOUS", "PLAIN"])).unwrap();
        assert_eq!(mechs, offered(&["ANONYMOUS"]));
        assert_eq!(
            sasl_choice(&login, &offered(&["SCRAM-SHA-1", "PLAIN"])).unwrap_err(),
            ConnectError::NoMechanism {
                offered: vec!["PLAIN".into(), "SCRAM-SHA-1".into()]
            }
        );
    }

    fn settings(set: &[(&str, &str)]) -> XmppSettings {
        let mut flags = vec![crate::config::FlagValue::new(
            "--set",
            "xmpp.password",
            "pw",
        )];
        flags.extend(
            set.iter()
                .map(|(k, v)| crate::config::FlagValue::new("--set", *k, *v)),
        );
        crate::config::load(&crate::config::ConfigInput {
            file: None,
            env: &Default::default(),
            flags,
        })
        .unwrap()
        .settings
        .xmpp
    }

    #[test]
    fn per_call_connections_are_anonymous_on_the_main_domain_by_default() {
        let opts = ConnectOptions::per_call(
            &settings(&[("xmpp.servers", "prosody.internal:5333:a, other:5222:b")]),
            Tls::Plain,
        );
        assert_eq!(
            opts.login,
            Login::Anonymous {
                domain: "meet.jitsi".into()
            }
        );
        assert_eq!(opts.server(), "prosody.internal:5333");
        assert_eq!(opts.focus_jid, "focus.meet.jitsi");
        assert_eq!(opts.focus_nick, "focus");
    }

    #[test]
    fn per_call_connections_with_auth_use_the_account_or_the_guest_domain() {
        let auth = ConnectOptions::per_call(&settings(&[("xmpp.enable_auth", "true")]), Tls::Plain);
        assert!(matches!(
            &auth.login,
            Login::Password { jid, password } if jid == "jigasi@auth.meet.jitsi" && password.expose() == "pw"
        ));
        let guests = ConnectOptions::per_call(
            &settings(&[("xmpp.enable_auth", "true"), ("xmpp.enable_guests", "true")]),
            Tls::Plain,
        );
        assert_eq!(
            guests.login,
            Login::Anonymous {
                domain: "guest.meet.jitsi".into()
            }
        );
    }

    #[test]
    fn account_login_never_falls_back_to_anonymous() {
        let login = Login::Password {
            jid: "jigasi@auth.meet.jitsi".into(),
            password: settings(&[]).password,
        };
        let (mechs, _) =
            sasl_choice(&login, &offered(&["ANONYMOUS", "SCRAM-SHA-1", "PLAIN"])).unwrap();
        assert_eq!(mechs, offered(&["PLAIN", "SCRAM-SHA-1"]));
        assert!(matches!(
            sasl_choice(&login, &offered(&["ANONYMOUS"])),
            Err(ConnectError::NoMechanism { .. })
        ));
    }
}
