//! Errors at the edge of the `xmpp` module.

use std::time::Duration;

/// Why a connection could not be made. None of these is retried by the connection itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the XMPP server {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("no login to {server} within {after:?}")]
    Timeout { server: String, after: Duration },
    /// The server refused the credentials (SASL `not-authorized` and the like). Final: trying
    /// again with the same settings gives the same answer.
    #[error("the XMPP server refused the login: {condition}")]
    AuthFailed { condition: String },
    #[error("the XMPP server offers no login mechanism we can use here (offered: {offered:?})")]
    NoMechanism { offered: Vec<String> },
    #[error("the XMPP server does not offer STARTTLS, which the settings require")]
    NoStartTls,
    #[error("TLS with the XMPP server failed: {0}")]
    Tls(String),
    #[error("the XMPP server sent a stream error: {0}")]
    StreamError(String),
    #[error("XMPP protocol error while logging in: {0}")]
    Protocol(String),
    #[error("{0:?} is not a valid XMPP address to log in as")]
    InvalidJid(String),
}

/// Why a logged-in connection ended. A connection never reconnects by itself: a call's room
/// occupancy and Jingle session do not survive a new stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Disconnected {
    #[error("the XMPP server closed the stream")]
    ClosedByServer,
    #[error("the XMPP server sent a stream error: {0}")]
    StreamError(String),
    #[error("the XMPP server did not answer a keep-alive in time")]
    KeepAliveTimeout,
    #[error("the XMPP connection failed: {0}")]
    Io(String),
    #[error("the XMPP connection was closed here")]
    Closed,
}

/// Why an IQ request we sent got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IqError {
    #[error("the peer answered with the error {condition} ({text:?})")]
    Remote {
        condition: String,
        text: Option<String>,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection ended before the answer came")]
    Disconnected,
}
