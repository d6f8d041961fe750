//! Connections to Prosody (wrapping tokio-xmpp): MUC join/leave/presence, IQ routing, the warm
//! connection pool, the brewery and Rayo. See `docs/dial-in.md` and `docs/dial-out.md` for the
//! contracts.
//!
//! One job per file:
//!
//! ```text
//!   address     RoomJid (as the server spells it), endpoint nicks
//!   disco       our disco#info features and XEP-0115 caps hash
//!   stanzas     builders: jigasi room presence, focus request, IQ requests/results/errors
//!   muc         room presences → joined / refused / occupant came or went / kicked / destroyed
//!   inbound     the Inbound event type and the classifier of inbound stanzas
//!   session     sans-IO core of a connection: answers disco and ping, matches IQ answers
//!   connect     TCP / STARTTLS, SASL, binding (ConnectOptions from the settings)
//!   connection  the tokio task around a session; never reconnects
//!   pool        logged-in connections kept warm
//!   rayo        Rayo dial / ref / hangup (dial-out requests)
//!   brewery     the control connection: brewery room, load stats, Rayo dials; reconnects
//!   backoff     pauses between failing attempts
//!   error       errors at the module's edge
//! ```
//!
//! tokio-xmpp and xmpp-parsers types stay inside; the one exception is the XML element type
//! (`Element`), which carries IQ payloads to `jingle` unchanged.

mod address;
mod backoff;
mod brewery;
mod connect;
mod connection;
mod disco;
mod error;
mod inbound;
mod muc;
mod pool;
pub mod rayo;
mod session;
mod stanzas;

pub use address::{random_endpoint_nick, AddressError, RoomJid};
pub use brewery::{Brewery, BreweryState, BreweryStats, RayoExpired, RayoRequest};
pub use connect::{ConnectOptions, Login, Tls, XmppTimeouts};
pub use connection::{Connection, PendingIq, SendError};
pub use disco::{CAPS_NODE, FEATURES};
pub use error::{ConnectError, Disconnected, IqError};
pub use inbound::Inbound;
pub use muc::{JoinError, Occupant};
pub use pool::{Pool, PoolStats};
pub use rayo::{DialError, RayoDial};
pub use stanzas::{
    conference_request, Direction, ErrorCondition, ErrorReply, IqKind, JoinRequest, Reply,
};
pub use xmpp_parsers::minidom::Element;
