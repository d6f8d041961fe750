//! The local lab: real Prosody, SIPp and baresip on loopback, the conference emulator that
//! stands in for Jicofo and the videobridge, and checks on recorded audio.
//!
//! Everything binds 127.0.0.1. The test and demo scripts run the whole lab inside a private
//! network and PID namespace (`tests/lab/in-netns.sh`), so nothing can leave the machine and no
//! process survives the run; [`proc::Supervised`] also stops each process when its handle drops.

pub mod audio;
pub mod baresip;
pub mod capture;
pub mod control;
pub mod emulator;
pub mod gateway;
pub mod http;
pub mod kamailio;
pub mod net;
pub mod paths;
pub mod proc;
pub mod prosody;
pub mod scenario;
pub mod sipp;
