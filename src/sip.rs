//! The SIP side: transports, transactions and dialogs (wrapping rsipstack), REGISTER, digest auth,
//! and the SDP offer/answer of the phone leg. Built in the dial-in issue.
