//! One call's state machine (SIP dialog + MUC occupancy + Jingle session + media) and the call
//! registry.

mod registry;

pub use registry::{CallInfo, Registration, Registry, Snapshot};
