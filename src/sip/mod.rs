//! The SIP side: transports, transactions and dialogs (wrapping rsipstack) and the SDP offer/answer
//! of the phone leg. See `docs/dial-in.md` for the contract with `call`.

pub mod sdp;
