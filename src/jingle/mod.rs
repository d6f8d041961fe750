//! The Jitsi dialect of Jingle as typed values, parsed from and built to XML (see
//! `docs/dial-in.md` for the contract with `call`).
