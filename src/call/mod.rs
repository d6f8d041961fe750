//! One call's state machine (SIP dialog + MUC occupancy + Jingle session + media), its driver and
//! the call registry.

mod driver;
mod machine;
mod registry;

#[cfg(test)]
mod tests;

pub use driver::{run, CallContext};
pub use machine::{
    Call, EndSummary, EndedBy, Input, Invite, IqPurpose, MediaCommand, Output, SipCommand,
    XmppCommand,
};
pub use registry::{CallInfo, Registration, Registry, Snapshot};
