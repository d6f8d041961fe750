//! The Jitsi dialect of Jingle (session-initiate, source-add/remove, transport-info, …) as typed
//! values, parsed from and built to XML. Built in the dial-in issue.
