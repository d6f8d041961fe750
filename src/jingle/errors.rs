//! Why a Jingle payload could not be read, or an offer could not be taken.

/// A `<jingle>` payload that is malformed. The caller answers it with an XMPP `bad-request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JingleError {
    #[error("expected <jingle xmlns='urn:xmpp:jingle:1'>, got <{name} xmlns='{ns}'>")]
    NotJingle { name: String, ns: String },
    #[error("<{element}> lacks '{attribute}'")]
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
    },
    #[error("<{element}> lacks a <{child}>")]
    MissingChild {
        element: &'static str,
        child: &'static str,
    },
    #[error("<{element}> has no value")]
    MissingText { element: &'static str },
    #[error("<{element} {attribute}='{value}'> is not a number")]
    BadNumber {
        element: &'static str,
        attribute: &'static str,
        value: String,
    },
    #[error("<{element} {attribute}='{value}'> is out of range")]
    OutOfRange {
        element: &'static str,
        attribute: &'static str,
        value: String,
    },
    #[error("<{element} {attribute}='{value}'> is not an IP address")]
    BadIp {
        element: &'static str,
        attribute: &'static str,
        value: String,
    },
    #[error("<{element} {attribute}='{value}'> is not an allowed value")]
    BadValue {
        element: &'static str,
        attribute: &'static str,
        value: String,
    },
}

/// A well-formed session-initiate that the gateway cannot accept. The caller ends the session with
/// a session-terminate (jigasi: `incompatible-parameters`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the offer has no audio content")]
    NoAudioContent,
    #[error("the audio content offers no opus/48000/2")]
    NoOpus,
    #[error("neither the audio content nor its BUNDLE group has a transport")]
    NoTransport,
    #[error("the transport lacks the ICE ufrag or pwd")]
    MissingIceCredentials,
    #[error("the transport has no DTLS fingerprint")]
    NoFingerprint,
    #[error(
        "the bridge's DTLS setup is {}, but we can only be the DTLS client (needs actpass or passive)",
        .0.map_or("missing", |s| s.as_str())
    )]
    BadSetup(Option<super::Setup>),
}
