//! What is particular to a call the room places (Rayo dial-out, reference section 2): the Rayo
//! answer once we are in the room, the INVITE once the bridge leg is accepted, the callee's
//! progress as presence status, and a failure shown in the room for a while before leaving.

use super::{
    phone_params, Call, Deadline, EndedBy, Leg, MediaCommand, Output, SipCommand, XmppCommand,
    PHONE_CODECS,
};
use crate::config::Settings;
use crate::jingle::Condition;
use crate::media::PhoneParams;
use crate::sip::sdp;
use crate::xmpp::{ErrorCondition, RayoDial};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a dialled phone may ring before we give up (CANCEL, status "expired").
pub(super) const RING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a failed dial-out keeps its status in the room, so the web UI shows why (jigasi's
/// 5 s).
pub(super) const FAILURE_LINGER: Duration = Duration::from_secs(5);

/// The room's `<dial/>` as the brewery checked it, and an id for the call's logs and SDP.
#[derive(Debug, Clone)]
pub struct Dial {
    pub request: RayoDial,
    pub id: String,
}

/// The answer to the Rayo `<dial/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RayoAnswer {
    /// `<ref uri="xmpp:room@muc/nick"/>`: we are in the room; hangups go to that occupant.
    Ref(String),
    Error {
        condition: ErrorCondition,
        text: String,
    },
}

/// Where the callee is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The INVITE waits for the bridge leg.
    NotInvited,
    Inviting,
    Ringing,
    Answered,
    /// A final failure (or our CANCEL): nothing more goes to the callee.
    Failed,
}

pub(super) struct Outgoing {
    pub(super) dial: Dial,
    pub(super) phase: Phase,
    rayo_pending: bool,
    /// What the phone leg was last connected with (early media, then the answer).
    connected_with: Option<PhoneParams>,
}

impl Call {
    /// A call the room asked for. It joins the room first; the callee is invited once Jicofo's
    /// offer is accepted.
    pub fn outbound(settings: Arc<Settings>, dial: Dial, nick: String, now: Instant) -> Call {
        let room = dial.request.room.clone();
        let password = dial.request.password.clone();
        tracing::info!(room = %room, to = %dial.request.to, "dial");
        let out = Outgoing {
            dial,
            phase: Phase::NotInvited,
            rayo_pending: true,
            connected_with: None,
        };
        let mut call = Call::with_leg(settings, Leg::Out(Box::new(out)), nick, now);
        call.room = Some(room);
        call.password = password;
        call.push_xmpp(XmppCommand::Connect);
        call
    }

    fn outgoing(&mut self) -> Option<&mut Outgoing> {
        match &mut self.leg {
            Leg::Out(out) => Some(out),
            Leg::In(_) => None,
        }
    }

    /// In the room: the dial is answered with the occupant that carries the call.
    pub(super) fn answer_rayo(&mut self) {
        let Some(room) = &self.room else { return };
        let uri = format!("xmpp:{room}/{}", self.nick);
        if let Some(out) = self.outgoing().filter(|o| o.rayo_pending) {
            out.rayo_pending = false;
            self.outputs.push_back(Output::Rayo(RayoAnswer::Ref(uri)));
        }
    }

    /// The call ended before it got into the room: the dial gets an error saying why.
    pub(super) fn refuse_rayo(&mut self, text: &str) {
        if let Some(out) = self.outgoing().filter(|o| o.rayo_pending) {
            out.rayo_pending = false;
            self.outputs.push_back(Output::Rayo(RayoAnswer::Error {
                condition: ErrorCondition::InternalServerError,
                text: format!("Fail to join muc: {text}"),
            }));
        }
    }

    /// The bridge leg is accepted: INVITE the callee with our phone socket in the offer.
    pub(super) fn place_call(&mut self, now: Instant, phone_local: SocketAddr) {
        let Some(room) = self.room.as_ref().map(|r| r.to_string()) else {
            return;
        };
        let phone_gone = self.phone_gone;
        let s = self.settings.clone();
        let Some(out) = self.outgoing() else { return };
        if out.phase != Phase::NotInvited || phone_gone {
            return;
        }
        let ip = s.sip.public_address.unwrap_or(phone_local.ip());
        let sdp = sdp::offer(
            &PHONE_CODECS,
            ip,
            phone_local.port(),
            super::session_id(&out.dial.id),
        );
        let mut headers = vec![
            (s.sip.room_header.as_str().to_owned(), room),
            ("JigasiCallDirection".to_owned(), "out".to_owned()),
        ];
        headers.extend(out.dial.request.headers.iter().cloned());
        let to = out.dial.request.to.clone();
        out.phase = Phase::Inviting;
        tracing::info!(to = %to, "inviting the callee");
        self.push_sip(SipCommand::Invite { to, headers, sdp });
        self.push_xmpp(XmppCommand::Status("calling".into()));
        self.set_deadline(Deadline::Ring, now + RING_TIMEOUT);
    }

    pub(super) fn on_callee_ringing(&mut self, early_sdp: Option<String>) {
        let Some(out) = self.outgoing() else { return };
        let first = match out.phase {
            Phase::Inviting => true,
            Phase::Ringing => false,
            _ => return,
        };
        out.phase = Phase::Ringing;
        if first {
            tracing::info!(early_media = early_sdp.is_some(), "the callee is ringing");
            self.push_xmpp(XmppCommand::Status("ringing".into()));
        }
        if let Some(sdp) = early_sdp {
            // Early media that cannot be used is not worth ending the call over: the answer
            // brings its own SDP.
            if let Err(e) = self.connect_callee(&sdp) {
                tracing::info!(error = %e, "early media ignored");
            }
        }
    }

    pub(super) fn on_callee_answered(&mut self, now: Instant, sdp: &str) {
        let Some(out) = self.outgoing() else { return };
        if !matches!(out.phase, Phase::Inviting | Phase::Ringing) {
            return;
        }
        out.phase = Phase::Answered;
        self.answered = Some(now);
        self.clear_deadline(Deadline::Ring);
        if let Err(e) = self.connect_callee(sdp) {
            tracing::warn!(error = %e, "the callee's answer cannot be used");
            return self.end(
                now,
                EndedBy::Gateway,
                Some(488),
                "the callee's answer has no usable audio",
            );
        }
        tracing::info!(
            setup_ms = (now - self.started).as_millis() as u64,
            "the callee answered"
        );
        self.push_xmpp(XmppCommand::Status("Connected".into()));
    }

    /// Points the phone leg at the callee's SDP, unless it already is.
    fn connect_callee(&mut self, sdp: &str) -> Result<(), sdp::SdpError> {
        let neg = sdp::accept_answer(&PHONE_CODECS, sdp.as_bytes())?;
        let params = phone_params(&neg);
        self.negotiated = Some(neg);
        let Some(out) = self.outgoing() else {
            return Ok(());
        };
        if out.connected_with != Some(params) {
            out.connected_with = Some(params);
            self.outputs
                .push_back(Output::Media(MediaCommand::ConnectPhone(params)));
        }
        Ok(())
    }

    pub(super) fn on_callee_failed(&mut self, now: Instant, status: u16, reason: &str) {
        let Some(out) = self.outgoing() else { return };
        if !matches!(out.phase, Phase::Inviting | Phase::Ringing) {
            return;
        }
        let (label, condition) = failure_status(status);
        tracing::info!(status, reason, "the call was not answered: {label}");
        self.fail(now, label, condition, &format!("{status} {reason}"));
    }

    /// Nobody answered: CANCEL, then show "expired" like a 480.
    pub(super) fn ring_timed_out(&mut self, now: Instant) {
        let Some(out) = self.outgoing() else { return };
        if !matches!(out.phase, Phase::Inviting | Phase::Ringing) {
            return;
        }
        tracing::info!("no answer within {} s", RING_TIMEOUT.as_secs());
        self.push_sip(SipCommand::Cancel);
        self.fail(now, "expired", Condition::Expired, "no answer");
    }

    /// The callee is gone for good: show why in the room, then leave.
    fn fail(&mut self, now: Instant, label: &str, condition: Condition, why: &str) {
        if let Some(out) = self.outgoing() {
            out.phase = Phase::Failed;
        }
        self.phone_gone = true;
        self.clear_deadline(Deadline::Ring);
        self.terminate_condition = Some(condition);
        self.failure = Some(format!("the call was not answered ({label}: {why})"));
        self.push_xmpp(XmppCommand::Status(label.to_owned()));
        self.set_deadline(Deadline::Linger, now + FAILURE_LINGER);
    }

    pub(super) fn linger_over(&mut self, now: Instant) {
        let text = self
            .failure
            .take()
            .unwrap_or_else(|| "the call was not answered".into());
        self.end(now, EndedBy::Phone, None, &text);
    }
}

/// The presence status jitsi-meet shows for a final failure, and what the Jingle session ends
/// with: busy (486, 600), expired (408, 480, no answer), rejected (anything else).
fn failure_status(status: u16) -> (&'static str, Condition) {
    match status {
        486 | 600 => ("busy", Condition::Busy),
        408 | 480 => ("expired", Condition::Expired),
        _ => ("rejected", Condition::Decline),
    }
}
