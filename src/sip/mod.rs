//! The SIP side: transports, transactions and dialogs (wrapping rsipstack) and the SDP offer/answer
//! of the phone leg. See `docs/dial-in.md` for the contract with `call`.

mod headers;
mod policy;
mod screen;
pub mod sdp;

pub use headers::{Headers, InvalidNameAddr, NameAddr, Reason};
