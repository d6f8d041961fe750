//! jitsi-sip-gateway: a SIP gateway for Jitsi Meet.
//!
//! Modules and the direction of their dependencies (enforced by `tests/module_deps.rs`):
//!
//! ```text
//!   config ◀── everything may read settings
//!   sip      (SIP stack, SDP of the phone leg)      uses: config
//!   xmpp     (Prosody connections, MUC, IQ, Rayo)   uses: config
//!   jingle   (Jitsi's Jingle dialect, typed)        uses: (nothing)
//!   media    (codecs, mixer, RTP, WebRTC leg)       uses: config
//!   dialplan (number → room / IVR / reject)         uses: config
//!   call     (one call's state machine, registry)   uses: sip, xmpp, jingle, media, dialplan, config
//!   api      (HTTP health, stats, metrics, drain)   uses: call, config
//!   gateway  (starts them, takes calls, drains)     uses: all of the above
//! ```
//!
//! `main.rs` parses the command line and runs `gateway`.

pub mod api;
pub mod call;
pub mod config;
pub mod dialplan;
pub mod gateway;
pub mod jingle;
pub mod logging;
pub mod media;
pub mod sip;
pub mod xmpp;
