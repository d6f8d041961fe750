//! Connections to Prosody (wrapping tokio-xmpp): MUC join/leave/presence, IQ routing, the warm
//! connection pool. See `docs/dial-in.md` for the contract with `call`.
