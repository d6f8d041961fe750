//! The Jingle IQ payload as Jicofo, browsers and jigasi use it: sessions, contents and the small
//! Jitsi extensions around them. Plain data; [`super::parse`] fills it, [`super::build`] prints it.

use super::rtp::RtpDescription;
use super::transport::IceUdpTransport;

/// A `<jingle xmlns="urn:xmpp:jingle:1">` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JingleIq {
    pub action: Action,
    pub sid: String,
    pub initiator: Option<String>,
    pub responder: Option<String>,
    pub contents: Vec<Content>,
    pub reason: Option<Reason>,
    /// The first `<group xmlns="urn:xmpp:jingle:apps:grouping:0">` (Jicofo sends one, BUNDLE).
    pub group: Option<Group>,
    /// `<bridge-session xmlns="http://jitsi.org/protocol/focus">`: which bridge session serves us.
    pub bridge_session: Option<BridgeSession>,
    /// `<startmuted xmlns="http://jitsi.org/jitmeet/start-muted">` (jigasi ignores it too).
    pub start_muted: Option<StartMuted>,
    /// `<json-message xmlns="http://jitsi.org/jitmeet">` text, kept raw: Jicofo uses it for
    /// JSON-encoded sources, which it sends only to endpoints that advertise the feature (we do not).
    pub json_message: Option<String>,
}

impl JingleIq {
    /// A payload with only the mandatory parts; builders fill in the rest.
    pub fn new(action: Action, sid: impl Into<String>) -> JingleIq {
        JingleIq {
            action,
            sid: sid.into(),
            initiator: None,
            responder: None,
            contents: Vec::new(),
            reason: None,
            group: None,
            bridge_session: None,
            start_muted: None,
            json_message: None,
        }
    }

    /// The content with this name.
    pub fn content(&self, name: &str) -> Option<&Content> {
        self.contents.iter().find(|c| c.name == name)
    }
}

/// The `action` attribute. Values nobody here handles keep their text in [`Action::Other`], so
/// the caller can still answer them (Jicofo itself answers those with feature-not-implemented).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    ContentAccept,
    ContentAdd,
    ContentModify,
    ContentReject,
    ContentRemove,
    DescriptionInfo,
    SecurityInfo,
    SessionAccept,
    SessionInfo,
    SessionInitiate,
    SessionTerminate,
    SourceAdd,
    SourceRemove,
    TransportAccept,
    TransportInfo,
    TransportReject,
    TransportReplace,
    Other(String),
}

impl Action {
    const KNOWN: [Action; 17] = [
        Action::ContentAccept,
        Action::ContentAdd,
        Action::ContentModify,
        Action::ContentReject,
        Action::ContentRemove,
        Action::DescriptionInfo,
        Action::SecurityInfo,
        Action::SessionAccept,
        Action::SessionInfo,
        Action::SessionInitiate,
        Action::SessionTerminate,
        Action::SourceAdd,
        Action::SourceRemove,
        Action::TransportAccept,
        Action::TransportInfo,
        Action::TransportReject,
        Action::TransportReplace,
    ];

    pub fn parse(text: &str) -> Action {
        Action::KNOWN
            .into_iter()
            .find(|a| a.as_str() == text)
            .unwrap_or_else(|| Action::Other(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Action::ContentAccept => "content-accept",
            Action::ContentAdd => "content-add",
            Action::ContentModify => "content-modify",
            Action::ContentReject => "content-reject",
            Action::ContentRemove => "content-remove",
            Action::DescriptionInfo => "description-info",
            Action::SecurityInfo => "security-info",
            Action::SessionAccept => "session-accept",
            Action::SessionInfo => "session-info",
            Action::SessionInitiate => "session-initiate",
            Action::SessionTerminate => "session-terminate",
            Action::SourceAdd => "source-add",
            Action::SourceRemove => "source-remove",
            Action::TransportAccept => "transport-accept",
            Action::TransportInfo => "transport-info",
            Action::TransportReject => "transport-reject",
            Action::TransportReplace => "transport-replace",
            Action::Other(text) => text,
        }
    }
}

/// One `<content>`: a media line with its description and transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Absent in Jicofo's source-add/remove.
    pub creator: Option<Creator>,
    pub name: String,
    pub senders: Option<Senders>,
    pub description: Option<RtpDescription>,
    /// The ICE-UDP transport; for the data content it also carries the `<sctpmap>`.
    pub transport: Option<IceUdpTransport>,
}

impl Content {
    pub fn new(name: impl Into<String>) -> Content {
        Content {
            creator: None,
            name: name.into(),
            senders: None,
            description: None,
            transport: None,
        }
    }

    /// The media of the description (`audio`, `video`, `application`), if it says.
    pub fn media(&self) -> Option<&str> {
        self.description.as_ref()?.media.as_deref()
    }

    /// Whether this is the SCTP data channel content (an `<sctpmap>` in its transport).
    pub fn is_data(&self) -> bool {
        self.transport.as_ref().is_some_and(|t| t.sctpmap.is_some())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Creator {
    Initiator,
    Responder,
}

impl Creator {
    pub fn parse(text: &str) -> Option<Creator> {
        [Creator::Initiator, Creator::Responder]
            .into_iter()
            .find(|c| c.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Creator::Initiator => "initiator",
            Creator::Responder => "responder",
        }
    }
}

/// Who sends on a content. `rejected` is lib-jitsi-meet's marker for a refused m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Senders {
    Both,
    Initiator,
    Responder,
    None,
    Rejected,
}

impl Senders {
    pub fn parse(text: &str) -> Option<Senders> {
        [
            Senders::Both,
            Senders::Initiator,
            Senders::Responder,
            Senders::None,
            Senders::Rejected,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Senders::Both => "both",
            Senders::Initiator => "initiator",
            Senders::Responder => "responder",
            Senders::None => "none",
            Senders::Rejected => "rejected",
        }
    }
}

/// `<reason>`: a condition element and an optional `<text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub condition: Condition,
    pub text: Option<String>,
}

/// The reason conditions of XEP-0166; unknown ones keep their element name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Condition {
    AlternativeSession,
    Busy,
    Cancel,
    ConnectivityError,
    Decline,
    Expired,
    FailedApplication,
    FailedTransport,
    GeneralError,
    Gone,
    IncompatibleParameters,
    MediaError,
    SecurityError,
    Success,
    Timeout,
    UnsupportedApplications,
    UnsupportedTransports,
    Other(String),
}

impl Condition {
    const KNOWN: [Condition; 17] = [
        Condition::AlternativeSession,
        Condition::Busy,
        Condition::Cancel,
        Condition::ConnectivityError,
        Condition::Decline,
        Condition::Expired,
        Condition::FailedApplication,
        Condition::FailedTransport,
        Condition::GeneralError,
        Condition::Gone,
        Condition::IncompatibleParameters,
        Condition::MediaError,
        Condition::SecurityError,
        Condition::Success,
        Condition::Timeout,
        Condition::UnsupportedApplications,
        Condition::UnsupportedTransports,
    ];

    pub fn parse(name: &str) -> Condition {
        Condition::KNOWN
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or_else(|| Condition::Other(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Condition::AlternativeSession => "alternative-session",
            Condition::Busy => "busy",
            Condition::Cancel => "cancel",
            Condition::ConnectivityError => "connectivity-error",
            Condition::Decline => "decline",
            Condition::Expired => "expired",
            Condition::FailedApplication => "failed-application",
            Condition::FailedTransport => "failed-transport",
            Condition::GeneralError => "general-error",
            Condition::Gone => "gone",
            Condition::IncompatibleParameters => "incompatible-parameters",
            Condition::MediaError => "media-error",
            Condition::SecurityError => "security-error",
            Condition::Success => "success",
            Condition::Timeout => "timeout",
            Condition::UnsupportedApplications => "unsupported-applications",
            Condition::UnsupportedTransports => "unsupported-transports",
            Condition::Other(name) => name,
        }
    }
}

/// `<group semantics="BUNDLE"><content name="audio"/>…</group>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub semantics: String,
    pub contents: Vec<String>,
}

impl Group {
    pub fn bundle(contents: impl IntoIterator<Item = impl Into<String>>) -> Group {
        Group {
            semantics: "BUNDLE".into(),
            contents: contents.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSession {
    pub id: Option<String>,
    pub region: Option<String>,
    pub restart: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartMuted {
    pub audio: Option<bool>,
    pub video: Option<bool>,
}
