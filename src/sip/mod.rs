//! The SIP side: transports, transactions and dialogs (wrapping rsipstack), the account's
//! registration, outgoing calls, and the SDP offer/answer of the phone leg. See
//! `docs/dial-in.md` and `docs/dial-out.md` for the contracts with `call`.
//!
//! ```text
//!   server        SipServer, IncomingCall, SipDialog, DialogEvent   (the rsipstack users, with
//!   client        registration driver, OutgoingDialog                client and udp)
//!   udp           the screened UDP socket under rsipstack's transport
//!   tls           the TLS connection to sip.server (server_transport = tls)
//!   screen        first look at each datagram: 400/501/505/513 for what the stack cannot take
//!   policy        new call, dialog request, OPTIONS, 403/405/…/481                     (pure)
//!   account       From, REGISTER target, Request-URI of a dialled number               (pure)
//!   registration  RegistrationState, when to register / refresh / keep alive           (pure)
//!   outgoing      OutgoingCall, OutgoingEvent, responses → events, extra headers       (pure)
//!   headers       Headers, NameAddr, Reason                                            (pure)
//!   sdp           offer parsing, negotiation, answers                                  (pure)
//! ```

mod account;
mod client;
mod headers;
mod outgoing;
mod policy;
mod registration;
mod screen;
pub mod sdp;
mod server;
mod tls;
mod udp;

pub use crate::config::Transport;
pub use account::InvalidTarget;
pub use client::OutgoingDialog;
pub use headers::{Headers, InvalidNameAddr, NameAddr, Reason};
pub use outgoing::{InvalidHeader, OutgoingCall, OutgoingEvent};
pub use registration::RegistrationState;
pub use server::{DialogEvent, IncomingCall, SipDialog, SipError, SipServer};
pub use tls::TlsError;

/// SIP settings as the gateway loads them, with `sets` (`key=value`) on top of the defaults.
#[cfg(test)]
pub(crate) fn test_settings(sets: &[&str]) -> crate::config::SipSettings {
    use crate::config::{self, ConfigInput, FlagValue};
    let env = std::collections::BTreeMap::new();
    // The loader insists on the XMPP account; the SIP side does not use it.
    let flags = ["xmpp.password=unused"]
        .iter()
        .chain(sets)
        .map(|s| FlagValue::from_set_arg(s).unwrap())
        .collect();
    let input = ConfigInput {
        file: None,
        env: &env,
        flags,
    };
    match config::load(&input) {
        Ok(loaded) => loaded.settings.sip,
        Err(e) => panic!("settings {sets:?}: {e:?}"),
    }
}
