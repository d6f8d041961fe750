//! An outgoing call as the gateway sees it: what to dial ([`OutgoingCall`]), what happens to it
//! ([`OutgoingEvent`]), and the pure rules between the two: which responses become which event,
//! how the call ends, which extra headers may go on the INVITE. `client` drives the stack.

use super::sdp::Negotiated;

/// A call to place (dial-out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingCall {
    /// What the room dialled: a number or user name (becomes `sip:<prefix><to>@<account
    /// domain>`), or a SIP URI (`sip:`/`sips:`, or `user@host`), dialled as it is.
    pub to: String,
    /// The display name of our From.
    pub display_name: Option<String>,
    /// Extra headers, in order, verbatim (room header, JigasiCallDirection, Rayo headers).
    pub headers: Vec<(String, String)>,
    /// Our SDP offer.
    pub sdp_offer: String,
}

/// What happens to an outgoing call. The stream ends after exactly one of `Failed`, `Bye` and
/// `Terminated` (unless the server shuts down first: then it just ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutgoingEvent {
    /// 100 Trying: a proxy or the callee has the INVITE.
    Trying,
    /// 180, or 183; with the SDP when it carries one (early media). Repeated only when a later
    /// one brings an SDP the previous ones did not.
    Ringing { early_sdp: Option<String> },
    /// 200 OK, the ACK sent; the callee's SDP answer.
    Answered { sdp: String },
    /// A final failure response (`status` 300-699), or 408 when nothing answered and 503 when
    /// the request could not be sent (RFC 3261 §8.1.3.1).
    Failed { status: u16, reason: String },
    /// The callee hung up (its BYE answered 200).
    Bye,
    /// The call ended otherwise: cancelled or hung up by us, or a broken answer.
    Terminated { why: String },
    /// An INFO inside the call (DTMF, jigasi's JSON); answered 200.
    Info {
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// A re-INVITE from the callee was answered 200 with the codec of the call; its RTP
    /// address or direction may have changed.
    Renegotiated(Negotiated),
}

/// Turns the provisional responses of one INVITE into events, without repeats.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    trying: bool,
    ringing: bool,
    early_sdp: Option<String>,
}

/// How the INVITE transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Final {
    /// 2xx with its body (empty when it had none).
    Answered {
        sdp: String,
    },
    Rejected {
        status: u16,
        phrase: String,
    },
    /// No final response within the transaction's time.
    NoResponse,
    /// The request could not be sent.
    Unsent {
        error: String,
    },
}

/// What the call does after the final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterFinal {
    /// Report `Answered` and serve the dialog.
    Up { sdp: String },
    /// The call is over: this is its last event.
    Over(OutgoingEvent),
    /// Answered without an SDP answer (and no early one to fall back on): BYE, then this event.
    HangUp(OutgoingEvent),
}

impl Progress {
    /// A provisional response: its status and its SDP body, if any.
    pub fn provisional(&mut self, status: u16, sdp: Option<String>) -> Option<OutgoingEvent> {
        match status {
            100 if !self.trying => {
                self.trying = true;
                Some(OutgoingEvent::Trying)
            }
            180 | 183 => {
                let new_sdp = sdp.is_some() && sdp != self.early_sdp;
                if self.ringing && !new_sdp {
                    return None;
                }
                self.ringing = true;
                if new_sdp {
                    self.early_sdp.clone_from(&sdp);
                }
                Some(OutgoingEvent::Ringing { early_sdp: sdp })
            }
            _ => None,
        }
    }

    /// The end of the INVITE transaction; `cancelled` when we sent CANCEL (then nothing
    /// that follows is a failure of the callee).
    pub fn finish(&self, outcome: Final, cancelled: bool) -> AfterFinal {
        let over = |event| AfterFinal::Over(event);
        match (outcome, cancelled) {
            (Final::Answered { .. }, true) => over(OutgoingEvent::Terminated {
                why: "cancelled; the 200 OK that crossed the CANCEL was ended with BYE".into(),
            }),
            (_, true) => over(OutgoingEvent::Terminated {
                why: "cancelled".into(),
            }),
            (Final::Answered { sdp }, false) => {
                match Some(sdp)
                    .filter(|s| !s.trim().is_empty())
                    .or_else(|| self.early_sdp.clone())
                {
                    Some(sdp) => AfterFinal::Up { sdp },
                    None => AfterFinal::HangUp(OutgoingEvent::Terminated {
                        why: "answered without an SDP answer; BYE sent".into(),
                    }),
                }
            }
            (Final::Rejected { status, phrase }, false) => over(OutgoingEvent::Failed {
                status,
                reason: phrase,
            }),
            (Final::NoResponse, false) => over(OutgoingEvent::Failed {
                status: 408,
                reason: "Request Timeout (no final response)".into(),
            }),
            (Final::Unsent { error }, false) => over(OutgoingEvent::Failed {
                status: 503,
                reason: format!("Service Unavailable (not sent: {error})"),
            }),
        }
    }
}

/// Why extra headers cannot go on an INVITE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHeader {
    #[error("header name {0:?} is not a SIP token")]
    Name(String),
    #[error("the value of header {0} has line breaks or control characters")]
    Value(String),
    #[error("header {0} is the stack's to write")]
    Reserved(String),
}

/// Headers whose value the stack owns (a copy would make the request ambiguous or reroute it),
/// with their compact forms.
const RESERVED: &[&str] = &[
    "via",
    "v",
    "from",
    "f",
    "to",
    "t",
    "call-id",
    "i",
    "cseq",
    "contact",
    "m",
    "content-length",
    "l",
    "content-type",
    "c",
    "max-forwards",
    "route",
    "record-route",
    "authorization",
    "proxy-authorization",
];

/// Checks the extra headers of an outgoing call: they come from a room (Rayo `<header/>`s),
/// so nothing in them may add headers of its own or replace the ones the stack writes.
pub(crate) fn check_extra_headers(headers: &[(String, String)]) -> Result<(), InvalidHeader> {
    for (name, value) in headers {
        let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(InvalidHeader::Name(name.clone()));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(InvalidHeader::Value(name.clone()));
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(InvalidHeader::Reserved(name.clone()));
        }
    }
    Ok(())
}

/// A display name as the inside of a quoted string (the stack adds the quotes): `"` and `\`
/// escaped, line breaks and other controls turned into spaces; `None` when nothing is left.
pub(crate) fn display_name_text(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    (!out.trim().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\n";

    #[test]
    fn trying_then_ringing_once_each() {
        let mut p = Progress::default();
        assert_eq!(p.provisional(100, None), Some(OutgoingEvent::Trying));
        assert_eq!(p.provisional(100, None), None);
        assert_eq!(
            p.provisional(180, None),
            Some(OutgoingEvent::Ringing { early_sdp: None })
        );
        assert_eq!(p.provisional(180, None), None);
        assert_eq!(p.provisional(183, None), None);
        // Queued, forwarded: nothing the room shows.
        assert_eq!(p.provisional(182, None), None);
    }

    #[test]
    fn early_media_is_reported_when_it_arrives_even_after_ringing() {
        let mut p = Progress::default();
        p.provisional(180, None);
        assert_eq!(
            p.provisional(183, Some(SDP.into())),
            Some(OutgoingEvent::Ringing {
                early_sdp: Some(SDP.into())
            })
        );
        assert_eq!(p.provisional(183, Some(SDP.into())), None, "same SDP again");
        assert_eq!(p.provisional(180, None), None);
    }

    #[test]
    fn answered_carries_the_sdp_of_the_200_or_else_the_early_one() {
        let mut p = Progress::default();
        assert_eq!(
            p.finish(
                Final::Answered {
                    sdp: "answer".into()
                },
                false
            ),
            AfterFinal::Up {
                sdp: "answer".into()
            }
        );
        assert!(matches!(
            p.finish(Final::Answered { sdp: String::new() }, false),
            AfterFinal::HangUp(OutgoingEvent::Terminated { .. })
        ));
        p.provisional(183, Some(SDP.into()));
        assert_eq!(
            p.finish(Final::Answered { sdp: String::new() }, false),
            AfterFinal::Up { sdp: SDP.into() }
        );
    }

    #[test]
    fn failures_keep_the_status_and_phrase() {
        let p = Progress::default();
        let busy = Final::Rejected {
            status: 486,
            phrase: "Busy Here".into(),
        };
        assert_eq!(
            p.finish(busy, false),
            AfterFinal::Over(OutgoingEvent::Failed {
                status: 486,
                reason: "Busy Here".into()
            })
        );
        assert!(matches!(
            p.finish(Final::NoResponse, false),
            AfterFinal::Over(OutgoingEvent::Failed { status: 408, .. })
        ));
        assert!(matches!(
            p.finish(Final::Unsent { error: "no route".into() }, false),
            AfterFinal::Over(OutgoingEvent::Failed { status: 503, reason }) if reason.contains("no route")
        ));
    }

    #[test]
    fn after_our_cancel_nothing_is_a_failure() {
        let p = Progress::default();
        let terminated = Final::Rejected {
            status: 487,
            phrase: "Request Terminated".into(),
        };
        for outcome in [
            terminated,
            Final::NoResponse,
            Final::Answered { sdp: SDP.into() },
        ] {
            assert!(matches!(
                p.finish(outcome, true),
                AfterFinal::Over(OutgoingEvent::Terminated { why }) if why.contains("cancelled")
            ));
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rayo_headers_pass_verbatim() {
        let ok = pairs(&[
            ("Jitsi-Conference-Room", "room1@conference.example.com"),
            ("JigasiCallDirection", "out"),
            ("X-outbound-call-initiator-user", "a b\tc"),
        ]);
        assert_eq!(check_extra_headers(&ok), Ok(()));
    }

    #[test]
    fn headers_that_would_inject_or_override_are_refused() {
        assert_eq!(
            check_extra_headers(&pairs(&[("X-A", "1\r\nVia: SIP/2.0/UDP evil")])),
            Err(InvalidHeader::Value("X-A".into()))
        );
        assert_eq!(
            check_extra_headers(&pairs(&[("X A", "1")])),
            Err(InvalidHeader::Name("X A".into()))
        );
        assert_eq!(
            check_extra_headers(&pairs(&[("X:A", "1")])),
            Err(InvalidHeader::Name("X:A".into()))
        );
        for reserved in ["Via", "call-id", "t", "Route", "Contact", "CSeq"] {
            assert_eq!(
                check_extra_headers(&pairs(&[(reserved, "x")])),
                Err(InvalidHeader::Reserved(reserved.into()))
            );
        }
    }

    #[test]
    fn display_names_cannot_leave_their_quotes() {
        assert_eq!(display_name_text("Room 1").as_deref(), Some("Room 1"));
        assert_eq!(
            display_name_text("a \"b\" \\c").as_deref(),
            Some("a \\\"b\\\" \\\\c")
        );
        assert_eq!(
            display_name_text("x\r\nVia: y").as_deref(),
            Some("x  Via: y")
        );
        assert_eq!(display_name_text(" \t "), None);
    }
}
