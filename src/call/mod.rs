//! One call's state machine (SIP dialog + MUC occupancy + Jingle session + media), its driver and
//! the call registry.

mod convert;
mod driver;
mod machine;
mod phone;
mod registry;
mod stats;

#[cfg(test)]
mod outbound_tests;
#[cfg(test)]
mod tests;

pub use driver::{run, run_outbound, CallContext};
pub use machine::{
    Call, CallPhase, Dial, EndSummary, EndedBy, Input, Invite, IqPurpose, MediaCommand, Output,
    RayoAnswer, SipCommand, XmppCommand,
};
pub use registry::{CallInfo, Direction, LiveCall, Load, Registration, Registry, Snapshot};
pub use stats::{LegTotals, MediaTotals, SetupFigures, SETUP_BUCKETS_S};
