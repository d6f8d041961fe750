//! The Jitsi dialect of Jingle as typed values, parsed from and built to XML (see
//! `docs/dial-in.md` for the contract with `call`).
//!
//! xmpp-parsers' Jingle types lose what Jicofo sends (source-add/remove do not parse; `ssrc-info`
//! owners, ICE credentials and the colibri web socket are dropped), so this module reads and writes
//! the XML itself. Pure: no I/O. One job per file:
//!
//! ```text
//!   model      JingleIq, Action, Content, Reason, group, bridge-session, startmuted
//!   rtp        RtpDescription: payload types, header extensions, sources, ssrc groups
//!   transport  IceUdpTransport: ICE credentials, candidates, DTLS fingerprints, sctpmap
//!   parse*     XML → model (typed errors, never a panic)   build   model → XML (Jitsi's order)
//!   offer      session-initiate → AudioOffer, source-add/remove → SourceChange
//!   answer     LocalAnswer → transport-info, session-accept; session-terminate
//!   xml ns     minidom helpers, namespaces                 errors  JingleError, OfferError
//! ```

mod answer;
mod build;
mod errors;
mod model;
mod ns;
mod offer;
mod parse;
mod parse_rtp;
mod parse_transport;
mod rtp;
mod transport;
mod xml;

#[cfg(test)]
mod tests;

/// The XML element type that crosses module borders (`xmpp` hands it to `call`, `call` to us).
pub type Element = xmpp_parsers::minidom::Element;

pub use answer::{
    session_accept, session_terminate, transport_info, LocalAnswer, LocalFingerprint, Msid,
};
pub use errors::{JingleError, OfferError};
pub use model::{
    Action, BridgeSession, Condition, Content, Creator, Group, JingleIq, Reason, Senders,
    StartMuted,
};
pub use offer::{endpoint_id, AudioOffer, SourceChange, SourceOwner, AUDIO_LEVEL_URI};
pub use rtp::{HdrExt, Parameter, PayloadType, RtcpFb, RtpDescription, Source, SsrcGroup};
pub use transport::{
    Candidate, CandidateType, Fingerprint, IceUdpTransport, Protocol, SctpMap, Setup, TcpType,
};
