//! Connections to Prosody (wrapping tokio-xmpp): MUC join/leave/presence, IQ routing, the brewery,
//! Rayo and mute IQs. Built in the dial-in and dial-out issues.
