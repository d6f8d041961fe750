//! The SIP side: transports, transactions and dialogs (wrapping rsipstack) and the SDP offer/answer
//! of the phone leg. See `docs/dial-in.md` for the contract with `call`.
//!
//! ```text
//!   server   SipServer, IncomingCall, SipDialog, DialogEvent (the only rsipstack users,
//!   udp        with udp: the screened UDP socket under rsipstack's transport)
//!   screen   first look at each datagram: 400/501/505/513 for what the stack cannot take
//!   policy   new call, dialog request, OPTIONS, or 405/406/415/416/420/481   (pure)
//!   headers  Headers, NameAddr, Reason                                         (pure)
//!   sdp      offer parsing, negotiation, answers                              (pure)
//! ```

mod headers;
mod policy;
mod screen;
pub mod sdp;
mod server;
mod udp;

pub use crate::config::Transport;
pub use headers::{Headers, InvalidNameAddr, NameAddr, Reason};
pub use server::{DialogEvent, IncomingCall, SipDialog, SipError, SipServer};
