//! One call's decisions as a sans-IO state machine: SIP dialog, MUC occupancy, Jingle session and
//! media in; commands for each of them out. It owns no socket, task or clock: the driver feeds it
//! events and the current time, and carries out what it asks. Every rule of reference sections
//! 1.1 and 1.13–1.15 (when to answer, which Reason, what a hangup tears down) lives here; what is
//! particular to a call the room places (Rayo dial-out, section 2) lives in `outbound`.

mod outbound;

pub use outbound::{Dial, RayoAnswer};

use super::convert::{accept, conference_offer, local_answer, session_id};
use crate::config::Settings;
use crate::dialplan::{self, RouteError};
use crate::jingle::{self, Action, AudioOffer, Condition, Element, JingleIq, SourceChange};
use crate::media::{self, ConferenceAnswer, MediaEvent};
use crate::sip::sdp::{self, Negotiated, SdpError, SdpOffer, G711};
use crate::sip::Reason;
use crate::xmpp::{
    self, ErrorCondition, ErrorReply, Inbound, JoinError, JoinRequest, Reply, RoomJid,
};
use outbound::{Outgoing, Phase};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long ICE and DTLS toward the bridge may take before the call is given up.
const MEDIA_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Our codec preference toward the phone (G.722 and Opus join later).
const PHONE_CODECS: [G711; 2] = [G711::Pcmu, G711::Pcma];

/// What the INVITE said, already taken apart by `sip`.
#[derive(Debug, Clone)]
pub struct Invite {
    pub call_id: String,
    /// The caller's display name, else the user part of its URI (jigasi's nick text).
    pub caller: String,
    /// Value of the room header (`sip.room_header`, matched ignoring case).
    pub room_header: Option<String>,
    /// Value of the room password header.
    pub password_header: Option<String>,
    /// The SDP offer.
    pub body: Option<Vec<u8>>,
    /// Our address the INVITE arrived on (for the SDP answer when no public address is set).
    pub local_ip: IpAddr,
}

#[derive(Debug)]
pub enum Input {
    /// ACK for our 200 OK.
    SipAcked,
    /// The caller cancelled before the answer (487 already sent).
    SipCancelled,
    /// The caller hung up (200 already sent).
    SipBye,
    /// The SIP dialog ended for another reason (no ACK, transport failure …).
    SipTerminated(String),
    /// Dial-out: the callee's phone rings (180/183), with early media when a 183 carries SDP.
    CalleeRinging {
        early_sdp: Option<String>,
    },
    /// Dial-out: 200 OK with the callee's SDP answer (ACK already sent).
    CalleeAnswered {
        sdp: String,
    },
    /// Dial-out: a final failure response, or the INVITE could not be sent at all (then the
    /// status is 503, as RFC 3261 §8.1.3.1 treats a transport failure).
    CalleeFailed {
        status: u16,
        reason: String,
    },
    /// Dial-out: the room's dial can no longer be answered (it timed out, or the brewery's
    /// connection went): nobody waits for this call any more.
    RayoExpired(String),
    /// The gateway is stopping without waiting for the call.
    GatewayStopping,
    /// A logged-in XMPP connection is ready for this call.
    XmppReady,
    XmppUnavailable(String),
    Xmpp(Inbound),
    /// Our answer to an IQ of ours came back (`what` says which).
    IqAnswered {
        what: IqPurpose,
        error: Option<String>,
    },
    XmppLost(String),
    /// `media::start` succeeded: the answer for Jicofo and the phone leg's local RTP address.
    MediaStarted {
        answer: ConferenceAnswer,
        phone_local: SocketAddr,
    },
    MediaStartFailed(String),
    Media(MediaEvent),
    /// The deadline from `poll_timeout` passed.
    Timeout,
}

/// Why we sent an IQ, so its answer can be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqPurpose {
    ConferenceRequest,
    TransportInfo,
    SessionAccept,
    SessionTerminate,
}

#[derive(Debug)]
pub enum Output {
    Sip(SipCommand),
    Xmpp(XmppCommand),
    Media(MediaCommand),
    /// Dial-out: the answer to the room's Rayo `<dial/>`, once.
    Rayo(RayoAnswer),
    /// The call is over; nothing more will come out.
    Ended(EndSummary),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipCommand {
    Ring,
    Answer {
        sdp: String,
    },
    /// A final non-2xx response to the INVITE.
    Reject {
        code: u16,
        reason: Option<Reason>,
    },
    Bye {
        reason: Option<Reason>,
    },
    /// Dial-out: the INVITE, through the account's proxy.
    Invite {
        to: String,
        /// Extra headers in order: the room header, `JigasiCallDirection: out`, the Rayo ones.
        headers: Vec<(String, String)>,
        sdp: String,
    },
    /// Dial-out: give up on the INVITE before its final response.
    Cancel,
}

#[derive(Debug)]
pub enum XmppCommand {
    /// Take a logged-in connection (from the warm pool).
    Connect,
    /// `<conference/>` to the focus, then the MUC join.
    Join {
        request: JoinRequest,
    },
    Status(String),
    SendIq {
        to: String,
        payload: Element,
        what: IqPurpose,
    },
    Reply {
        to: String,
        id: String,
        reply: Reply,
    },
    /// Leave the room and close the connection.
    Leave,
}

#[derive(Debug)]
pub enum MediaCommand {
    /// `phone` is None on a dial-out before the callee answered.
    Start {
        phone: Option<media::PhoneParams>,
        conference: media::ConferenceOffer,
    },
    /// The callee's address became known (200 OK or early media).
    ConnectPhone(media::PhoneParams),
    /// Replace the conference leg (a new offer after session-terminate or transport-replace);
    /// the phone leg keeps going.
    RestartConference(media::ConferenceOffer),
    StopConference,
    AddSources(Vec<(u32, String)>),
    RemoveSources(Vec<u32>),
    Stop,
}

/// Where a call is, as the operator's figures name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallPhase {
    /// Waiting for a logged-in XMPP connection.
    Connecting,
    /// Joining the room.
    Joining,
    /// In the room, waiting for Jicofo's offer (first, or again after the bridge leg ended).
    WaitingForOffer,
    /// Taking an offer: media starting.
    StartingMedia,
    /// Dial-out: the INVITE is out (or about to be), nothing heard yet.
    Calling,
    /// Dial-out: the callee is ringing.
    Ringing,
    /// Both sides answered; ICE/DTLS to the bridge not up yet.
    ConnectingMedia,
    /// Audio can flow both ways.
    Connected,
    /// Dial-out: the callee is not coming; the reason is shown in the room for a while.
    Failed,
    Ended,
}

impl CallPhase {
    pub const ALL: [CallPhase; 10] = [
        CallPhase::Connecting,
        CallPhase::Joining,
        CallPhase::WaitingForOffer,
        CallPhase::StartingMedia,
        CallPhase::Calling,
        CallPhase::Ringing,
        CallPhase::ConnectingMedia,
        CallPhase::Connected,
        CallPhase::Failed,
        CallPhase::Ended,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CallPhase::Connecting => "connecting",
            CallPhase::Joining => "joining",
            CallPhase::WaitingForOffer => "waiting_for_offer",
            CallPhase::StartingMedia => "starting_media",
            CallPhase::Calling => "calling",
            CallPhase::Ringing => "ringing",
            CallPhase::ConnectingMedia => "connecting_media",
            CallPhase::Connected => "connected",
            CallPhase::Failed => "failed",
            CallPhase::Ended => "ended",
        }
    }
}

/// Who or what ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    Phone,
    Conference,
    Gateway,
}

impl EndedBy {
    pub fn name(self) -> &'static str {
        match self {
            EndedBy::Phone => "phone",
            EndedBy::Conference => "conference",
            EndedBy::Gateway => "gateway",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndSummary {
    pub by: EndedBy,
    /// The SIP cause sent to the phone (None when the phone ended it).
    pub cause: Option<u16>,
    pub text: String,
    /// INVITE → 200 OK, when the call was answered.
    pub setup: Option<Duration>,
    pub connected: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Waiting for a logged-in XMPP connection.
    Connecting,
    /// Join sent; waiting for our own presence.
    Joining,
    /// In the room, no Jingle session (yet, or any more: `answered` tells which).
    AwaitingOffer,
    /// An offer is being taken: media starting.
    StartingMedia {
        sid: String,
        offer: Box<AudioOffer>,
        /// A transport-replace (answered with transport-accept) rather than a session-initiate.
        replacing: bool,
    },
    /// Answered on both sides; `connected` once ICE/DTLS is up.
    InSession {
        sid: String,
        offer: Box<AudioOffer>,
        connected: bool,
    },
    Ended,
}

/// The phone side: a call that came in, or one the room asked us to place.
enum Leg {
    In(Invite),
    Out(Box<Outgoing>),
}

pub struct Call {
    settings: Arc<Settings>,
    leg: Leg,
    nick: String,
    room: Option<RoomJid>,
    password: Option<String>,
    negotiated: Option<Negotiated>,
    state: State,
    started: Instant,
    /// Phone answered with 200 OK (at this instant).
    answered: Option<Instant>,
    connected_at: Option<Instant>,
    /// The phone side is gone (BYE, CANCEL, dialog ended): send nothing more to it.
    phone_gone: bool,
    xmpp_up: bool,
    joined: bool,
    media_running: bool,
    /// What ending the call tells the focus, when not the default for who ended it.
    terminate_condition: Option<Condition>,
    /// Dial-out: why the callee is not coming, shown in the room until the call ends.
    failure: Option<String>,
    deadlines: Vec<(Instant, Deadline)>,
    /// Other occupants besides the focus, for the registry.
    others: Vec<String>,
    outputs: VecDeque<Output>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Join,
    Invite,
    MediaConnect,
    /// Dial-out: the callee did not answer in time.
    Ring,
    /// Dial-out: a failure's status has been shown long enough.
    Linger,
}

impl Call {
    /// A new call from an INVITE. A call that cannot go anywhere (no room, a hostile room name,
    /// no common codec, a broken offer) is refused here, before anything reaches XMPP.
    pub fn new(settings: Arc<Settings>, invite: Invite, nick: String, now: Instant) -> Call {
        let mut call = Call::with_leg(settings, Leg::In(invite), nick, now);
        call.start();
        call
    }

    fn with_leg(settings: Arc<Settings>, leg: Leg, nick: String, now: Instant) -> Call {
        Call {
            settings,
            leg,
            nick,
            room: None,
            password: None,
            negotiated: None,
            state: State::Connecting,
            started: now,
            answered: None,
            connected_at: None,
            phone_gone: false,
            xmpp_up: false,
            joined: false,
            media_running: false,
            terminate_condition: None,
            failure: None,
            deadlines: Vec::new(),
            others: Vec::new(),
            outputs: VecDeque::new(),
        }
    }

    fn start(&mut self) {
        let s = self.settings.clone();
        let Leg::In(invite) = &self.leg else { return };
        let req = dialplan::Request {
            room: invite.room_header.as_deref(),
            password: invite.password_header.as_deref(),
        };
        let route = match dialplan::route(&req, &s.sip, &s.xmpp) {
            Ok(r) => r,
            Err(e) => return self.refuse_route(e),
        };
        let room = match RoomJid::new(&route.room.node, &route.room.domain) {
            Ok(r) => r,
            Err(e) => {
                return self.refuse_route(RouteError::InvalidRoom {
                    value: route.room.to_string(),
                    why: e.to_string(),
                })
            }
        };
        let offer = match invite.body.as_deref().map(SdpOffer::parse) {
            None => Err(SdpError::NoAudio),
            Some(r) => r,
        };
        let negotiated = match offer.and_then(|o| sdp::negotiate(&o, &PHONE_CODECS)) {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(error = %e, "refusing the call: its SDP offer is unusable");
                return self.refuse(e.status_code(), &e.to_string());
            }
        };
        tracing::info!(room = %room, via = ?route.via, codec = ?negotiated.codec, caller = %invite.caller, "invite");
        self.room = Some(room);
        self.password = route.password;
        self.negotiated = Some(negotiated);
        self.push_sip(SipCommand::Ring);
        self.push_xmpp(XmppCommand::Connect);
    }

    fn refuse_route(&mut self, e: RouteError) {
        tracing::info!(error = %e, "refusing the call");
        let (code, _) = e.sip_status();
        self.refuse(code, &e.to_string());
    }

    /// Ends a call before anything went to XMPP.
    fn refuse(&mut self, code: u16, text: &str) {
        self.push_sip(SipCommand::Reject {
            code,
            reason: Some(Reason::new(code, text)),
        });
        self.finish(self.started, EndedBy::Gateway, Some(code), text);
    }

    pub fn nick(&self) -> &str {
        &self.nick
    }

    pub fn room(&self) -> Option<&RoomJid> {
        self.room.as_ref()
    }

    /// Other occupants of the room (not the focus), as last seen.
    pub fn others_in_room(&self) -> usize {
        self.others.len()
    }

    /// Media to the conference has connected at least once.
    pub fn media_connected(&self) -> bool {
        self.connected_at.is_some()
    }

    /// Our presence is in the room (the call counts as a participant).
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// A call the room asked for (dial-out), as opposed to one that came in.
    pub fn is_outbound(&self) -> bool {
        matches!(self.leg, Leg::Out(_))
    }

    /// Call start (INVITE or dial) → the phone side answered: our 200 OK for a call that came
    /// in, the callee's 200 OK for a dial-out.
    pub fn setup_time(&self) -> Option<Duration> {
        self.answered.map(|a| a - self.started)
    }

    /// Where the call is, in one word, for the operator's figures (`/about/stats`, `/metrics`).
    pub fn phase(&self) -> CallPhase {
        use outbound::Phase;
        let callee = match &self.leg {
            Leg::Out(out) => Some(out.phase),
            Leg::In(_) => None,
        };
        match (&self.state, callee) {
            (State::Ended, _) => CallPhase::Ended,
            (_, Some(Phase::Failed)) => CallPhase::Failed,
            (State::Connecting, _) => CallPhase::Connecting,
            (State::Joining, _) => CallPhase::Joining,
            (State::AwaitingOffer, _) => CallPhase::WaitingForOffer,
            (State::StartingMedia { .. }, _) => CallPhase::StartingMedia,
            (State::InSession { .. }, Some(Phase::NotInvited | Phase::Inviting)) => {
                CallPhase::Calling
            }
            (State::InSession { .. }, Some(Phase::Ringing)) => CallPhase::Ringing,
            (State::InSession { connected, .. }, _) => {
                if *connected {
                    CallPhase::Connected
                } else {
                    CallPhase::ConnectingMedia
                }
            }
        }
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().map(|(t, _)| *t).min()
    }

    fn set_deadline(&mut self, which: Deadline, at: Instant) {
        self.clear_deadline(which);
        self.deadlines.push((at, which));
    }

    fn clear_deadline(&mut self, which: Deadline) {
        self.deadlines.retain(|(_, d)| *d != which);
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.state == State::Ended {
            return;
        }
        // Once the phone side is over (a dial-out's failure shown in the room until the linger
        // ends), its dialog ending as well says nothing new.
        if self.phone_gone
            && matches!(
                input,
                Input::SipCancelled | Input::SipBye | Input::SipTerminated(_)
            )
        {
            return;
        }
        match input {
            Input::SipAcked => {}
            Input::SipCancelled => {
                self.phone_gone = true;
                self.end(now, EndedBy::Phone, None, "the caller cancelled");
            }
            Input::SipBye => {
                self.phone_gone = true;
                let who = match self.leg {
                    Leg::In(_) => "the caller hung up",
                    Leg::Out(_) => "the callee hung up",
                };
                self.end(now, EndedBy::Phone, None, who);
            }
            Input::SipTerminated(why) => {
                self.phone_gone = true;
                self.end(
                    now,
                    EndedBy::Phone,
                    None,
                    &format!("the SIP dialog ended: {why}"),
                );
            }
            Input::CalleeRinging { early_sdp } => self.on_callee_ringing(early_sdp),
            Input::CalleeAnswered { sdp } => self.on_callee_answered(now, &sdp),
            Input::CalleeFailed { status, reason } => self.on_callee_failed(now, status, &reason),
            Input::RayoExpired(why) => {
                tracing::warn!(error = %why, "the dial request expired");
                self.end(now, EndedBy::Gateway, None, "the dial request expired");
            }
            Input::GatewayStopping => self.end(
                now,
                EndedBy::Gateway,
                Some(503),
                "the gateway is shutting down",
            ),
            Input::XmppReady => self.on_xmpp_ready(now),
            Input::XmppUnavailable(why) => {
                tracing::warn!(error = %why, "no XMPP connection for the call");
                self.end(
                    now,
                    EndedBy::Gateway,
                    Some(503),
                    "cannot reach the conference server",
                )
            }
            Input::XmppLost(why) => {
                tracing::warn!(error = %why, "XMPP connection lost");
                self.xmpp_up = false;
                self.joined = false;
                self.end(
                    now,
                    EndedBy::Conference,
                    Some(503),
                    "lost the connection to the conference server",
                );
            }
            Input::Xmpp(inbound) => self.on_inbound(now, inbound),
            Input::IqAnswered { what, error } => {
                if let Some(e) = error {
                    tracing::warn!(?what, error = %e, "the focus refused our IQ");
                    if what == IqPurpose::SessionAccept {
                        self.end(
                            now,
                            EndedBy::Conference,
                            Some(500),
                            "the conference refused our answer",
                        );
                    }
                }
            }
            Input::MediaStarted {
                answer,
                phone_local,
            } => self.on_media_started(now, answer, phone_local),
            Input::MediaStartFailed(why) => {
                tracing::error!(error = %why, "media could not start");
                self.media_running = false;
                self.end(now, EndedBy::Gateway, Some(500), "media could not start");
            }
            Input::Media(ev) => self.on_media(now, ev),
            Input::Timeout => self.on_timeout(now),
        }
    }

    fn on_xmpp_ready(&mut self, now: Instant) {
        let Some(room) = self.room.clone() else {
            return;
        };
        self.xmpp_up = true;
        let s = &self.settings.xmpp;
        // Dial-out shows the dialled destination, as jigasi's `<nick>` does.
        let (display_name, direction) = match &self.leg {
            Leg::In(invite) => (invite.caller.clone(), xmpp::Direction::In),
            Leg::Out(out) => (
                out.dial.request.to.clone(),
                xmpp::Direction::Out {
                    headers: out.dial.request.headers.clone(),
                },
            ),
        };
        let request = JoinRequest {
            room,
            nick: self.nick.clone(),
            display_name,
            password: self.password.clone(),
            region: s.region.clone(),
            stats_id: s.stats_id.clone(),
            direction,
        };
        let timeout = s.muc_join_timeout;
        self.push_xmpp(XmppCommand::Join { request });
        self.state = State::Joining;
        self.set_deadline(Deadline::Join, now + timeout);
    }

    fn on_inbound(&mut self, now: Instant, inbound: Inbound) {
        match inbound {
            Inbound::SelfJoined { occupants } => {
                self.joined = true;
                self.others = occupants
                    .iter()
                    .filter(|o| !o.is_focus)
                    .map(|o| o.nick.clone())
                    .collect();
                tracing::info!(occupants = self.others.len(), "joined muc");
                self.answer_rayo();
                self.push_xmpp(XmppCommand::Status("Initializing Call".into()));
                self.await_offer(now);
            }
            Inbound::JoinFailed(e) => {
                tracing::warn!(error = %e, "the room refused the join");
                let (code, text) = match e {
                    JoinError::PasswordRequired => (403, "the room needs a password"),
                    JoinError::MembersOnly { .. } => (403, "the room is members-only (lobby)"),
                    JoinError::Banned => (403, "banned from the room"),
                    JoinError::RoomFull => (486, "the room is full"),
                    JoinError::NickConflict | JoinError::Other { .. } => {
                        (500, "the room refused the join")
                    }
                };
                self.end(now, EndedBy::Conference, Some(code), text);
            }
            Inbound::OccupantJoined(o) => {
                if !o.is_focus && !self.others.contains(&o.nick) {
                    self.others.push(o.nick);
                }
            }
            Inbound::OccupantLeft { nick } => {
                self.others.retain(|n| *n != nick);
                if nick == self.settings.xmpp.focus_resource {
                    // jigasi: the focus left; the bridge leg is gone but the phone waits for a
                    // new focus to invite us again.
                    tracing::info!("the focus left the room");
                    self.conference_gone(now, 408, "the focus left");
                }
            }
            Inbound::Kicked { reason } => {
                self.joined = false;
                tracing::info!(reason = ?reason, "kicked from the room");
                self.end(
                    now,
                    EndedBy::Conference,
                    Some(403),
                    "kicked from the conference",
                );
            }
            Inbound::RoomDestroyed { reason, .. } => {
                self.joined = false;
                tracing::info!(reason = ?reason, "the room was destroyed");
                self.end(
                    now,
                    EndedBy::Conference,
                    Some(410),
                    "the conference room was destroyed",
                );
            }
            Inbound::IqSet { from, id, payload } => self.on_iq_set(now, from, id, payload),
            Inbound::IqGet { from, id, .. } => {
                self.reply(&from, &id, Err(ErrorCondition::ServiceUnavailable));
            }
            Inbound::IqResult { .. } | Inbound::IqError { .. } | Inbound::Other => {}
        }
    }

    /// True when `from` is the focus's occupant JID in our room.
    fn is_focus(&self, from: &str) -> bool {
        let Some(room) = &self.room else { return false };
        match from.split_once('/') {
            Some((bare, resource)) => {
                bare.eq_ignore_ascii_case(&room.to_string())
                    && resource == self.settings.xmpp.focus_resource
            }
            None => false,
        }
    }

    /// True when `from` is an occupant of our room (Rayo hangups come from the moderator's).
    fn is_in_our_room(&self, from: &str) -> bool {
        let Some(room) = &self.room else { return false };
        from.split_once('/')
            .is_some_and(|(bare, _)| bare.eq_ignore_ascii_case(&room.to_string()))
    }

    fn on_iq_set(&mut self, now: Instant, from: String, id: String, payload: Element) {
        if xmpp::rayo::is_hangup(&payload) {
            if !self.is_in_our_room(&from) {
                tracing::warn!("Rayo hangup from {from}, not an occupant of our room: refused");
                return self.reply(&from, &id, Err(ErrorCondition::NotAllowed));
            }
            self.reply(&from, &id, Ok(()));
            tracing::info!("Rayo hangup from {from}");
            self.terminate_condition = Some(Condition::Success);
            return self.end(
                now,
                EndedBy::Conference,
                None,
                "hung up from the conference",
            );
        }
        if payload.name() == "mute" {
            // Not advertised (audio-mute comes later): answer as jigasi does without it.
            return self.reply(&from, &id, Err(ErrorCondition::ItemNotFound));
        }
        if payload.name() != "jingle" {
            return self.reply(&from, &id, Err(ErrorCondition::FeatureNotImplemented));
        }
        let iq = match JingleIq::parse(&payload) {
            Ok(iq) => iq,
            Err(e) => {
                tracing::warn!(error = %e, "malformed Jingle from {from}");
                return self.reply(&from, &id, Err(ErrorCondition::BadRequest));
            }
        };
        if !self.is_focus(&from) {
            tracing::warn!(
                action = iq.action.as_str(),
                "Jingle from {from}, not the focus: refused"
            );
            return self.reply(&from, &id, Err(ErrorCondition::NotAllowed));
        }
        // Acknowledge first, as jigasi does: the answer (if any) comes as its own IQ.
        self.reply(&from, &id, Ok(()));
        match iq.action {
            Action::SessionInitiate | Action::TransportReplace => self.on_offer(now, &from, iq),
            Action::SourceAdd | Action::SourceRemove => {
                if self.current_sid() != Some(iq.sid.as_str()) {
                    return;
                }
                match iq.source_changes() {
                    Some(SourceChange::Add(s)) => {
                        tracing::info!(sources = s.len(), "source-add");
                        self.push_media(MediaCommand::AddSources(
                            s.into_iter().map(|s| (s.ssrc, s.endpoint)).collect(),
                        ))
                    }
                    Some(SourceChange::Remove(s)) => {
                        tracing::info!(sources = s.len(), "source-remove");
                        self.push_media(MediaCommand::RemoveSources(
                            s.into_iter().map(|s| s.ssrc).collect(),
                        ))
                    }
                    None => {}
                }
            }
            Action::SessionTerminate if self.current_sid() == Some(iq.sid.as_str()) => {
                let why = iq
                    .reason
                    .as_ref()
                    .map(|r| r.condition.as_str().to_owned())
                    .unwrap_or_default();
                tracing::info!(reason = %why, "the focus terminated the Jingle session");
                self.conference_gone(now, 408, "session-terminate from the focus");
            }
            _ => {}
        }
    }

    fn current_sid(&self) -> Option<&str> {
        match &self.state {
            State::StartingMedia { sid, .. } | State::InSession { sid, .. } => Some(sid),
            _ => None,
        }
    }

    fn on_offer(&mut self, now: Instant, from: &str, iq: JingleIq) {
        let replacing = iq.action == Action::TransportReplace;
        if let Some(current) = self.current_sid() {
            if !(replacing && current == iq.sid) {
                // A second session while one is up: refuse it, keep ours (jigasi does the same).
                let el = jingle::session_terminate(
                    &iq.sid,
                    Condition::Success,
                    Some("Call completed elsewhere"),
                );
                self.push_xmpp(XmppCommand::SendIq {
                    to: from.to_owned(),
                    payload: el,
                    what: IqPurpose::SessionTerminate,
                });
                return;
            }
        }
        let offer = match iq.audio_offer() {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the conference's offer");
                let el = jingle::session_terminate(
                    &iq.sid,
                    Condition::IncompatibleParameters,
                    Some(&e.to_string()),
                );
                self.push_xmpp(XmppCommand::SendIq {
                    to: from.to_owned(),
                    payload: el,
                    what: IqPurpose::SessionTerminate,
                });
                return;
            }
        };
        tracing::info!(sources = offer.sources.len(), declined = ?offer.declined, "bridge offer");
        let conference = conference_offer(&offer);
        let restart = self.media_running;
        if restart {
            self.push_media(MediaCommand::RestartConference(conference));
        } else {
            // A dial-out's phone leg connects when the callee answers.
            let phone = match &self.leg {
                Leg::In(_) => match &self.negotiated {
                    Some(neg) => Some(phone_params(neg)),
                    None => return,
                },
                Leg::Out(_) => None,
            };
            self.media_running = true;
            self.push_media(MediaCommand::Start { phone, conference });
        }
        self.clear_deadline(Deadline::Invite);
        self.set_deadline(Deadline::MediaConnect, now + MEDIA_CONNECT_TIMEOUT);
        self.state = State::StartingMedia {
            sid: iq.sid,
            offer: Box::new(offer),
            replacing,
        };
    }

    fn on_media_started(
        &mut self,
        now: Instant,
        answer: ConferenceAnswer,
        phone_local: SocketAddr,
    ) {
        let State::StartingMedia {
            sid,
            offer,
            replacing,
        } = std::mem::replace(&mut self.state, State::AwaitingOffer)
        else {
            return;
        };
        if let (Leg::In(invite), None, false) = (&self.leg, self.answered, self.phone_gone) {
            let Some(neg) = &self.negotiated else { return };
            let ip =
                self.settings
                    .sip
                    .public_address
                    .unwrap_or(if phone_local.ip().is_unspecified() {
                        invite.local_ip
                    } else {
                        phone_local.ip()
                    });
            let sdp = sdp::answer(neg, ip, phone_local.port(), session_id(&invite.call_id));
            self.push_sip(SipCommand::Answer { sdp });
            self.answered = Some(now);
            tracing::info!(
                setup_ms = (now - self.started).as_millis() as u64,
                "answered phone 200 OK"
            );
        }
        let local = local_answer(&answer);
        let Some(room) = self.room.clone() else {
            return;
        };
        let focus = format!("{}/{}", room, self.settings.xmpp.focus_resource);
        let our_jid = format!("{}/{}", room, self.nick);
        self.push_xmpp(XmppCommand::SendIq {
            to: focus.clone(),
            payload: jingle::transport_info(&sid, &local),
            what: IqPurpose::TransportInfo,
        });
        self.push_xmpp(XmppCommand::SendIq {
            to: focus,
            payload: accept(&sid, &our_jid, &local, &offer, replacing),
            what: IqPurpose::SessionAccept,
        });
        self.state = State::InSession {
            sid,
            offer,
            connected: false,
        };
        // jigasi's order for dial-out: the bridge leg accepted, then the INVITE.
        self.place_call(now, phone_local);
    }

    fn on_media(&mut self, now: Instant, ev: MediaEvent) {
        match ev {
            MediaEvent::ConferenceConnected => {
                if let State::InSession { connected, .. } = &mut self.state {
                    if !*connected {
                        *connected = true;
                        self.clear_deadline(Deadline::MediaConnect);
                        self.connected_at.get_or_insert(now);
                        tracing::info!(
                            after_ms = (now - self.started).as_millis() as u64,
                            "conference media connected"
                        );
                        // A dial-out is "Connected" when the callee answers.
                        if matches!(self.leg, Leg::In(_)) {
                            self.push_xmpp(XmppCommand::Status("Connected".into()));
                        }
                    }
                }
            }
            // Only the current session's media counts: a failure reported after the session
            // ended (the bridge closing DTLS as its session-terminate travels) is old news.
            MediaEvent::ConferenceFailed(why)
                if matches!(
                    self.state,
                    State::StartingMedia { .. } | State::InSession { .. }
                ) =>
            {
                // Jicofo re-invites a participant whose bridge failed: keep the phone and wait.
                tracing::warn!(error = %why, "conference media failed");
                self.conference_gone(now, 500, "media to the conference failed");
            }
            _ => {}
        }
    }

    /// The bridge leg ended while the room and the phone remain: wait for a new offer until the
    /// invite timeout (jigasi's "call-resume"), or end now when that timeout is off.
    fn conference_gone(&mut self, now: Instant, cause: u16, what: &str) {
        if matches!(
            self.state,
            State::StartingMedia { .. } | State::InSession { .. }
        ) {
            self.push_media(MediaCommand::StopConference);
        }
        if self.settings.call.invite_timeout.is_none() {
            return self.end(now, EndedBy::Conference, Some(cause), what);
        }
        self.await_offer(now);
    }

    fn await_offer(&mut self, now: Instant) {
        self.state = State::AwaitingOffer;
        self.clear_deadline(Deadline::Join);
        self.clear_deadline(Deadline::MediaConnect);
        match self.settings.call.invite_timeout {
            Some(t) => self.set_deadline(Deadline::Invite, now + t),
            None => self.clear_deadline(Deadline::Invite),
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        while let Some(i) = self
            .deadlines
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= now)
            .min_by_key(|(_, (at, _))| *at)
            .map(|(i, _)| i)
        {
            let (_, which) = self.deadlines.remove(i);
            self.on_deadline(now, which);
        }
    }

    fn on_deadline(&mut self, now: Instant, which: Deadline) {
        match which {
            Deadline::Join => self.end(
                now,
                EndedBy::Gateway,
                Some(408),
                "joining the room timed out",
            ),
            Deadline::Invite => self.end(
                now,
                EndedBy::Gateway,
                Some(408),
                "No invite from conference focus",
            ),
            Deadline::MediaConnect => self.end(
                now,
                EndedBy::Gateway,
                Some(408),
                "media connection to the conference timed out",
            ),
            Deadline::Ring => self.ring_timed_out(now),
            Deadline::Linger => self.linger_over(now),
        }
    }

    /// Ends the call: tells the phone (BYE, or a final response if unanswered) unless the phone
    /// ended it, ends the Jingle session unless the conference ended it, stops media, leaves.
    fn end(&mut self, now: Instant, by: EndedBy, cause: Option<u16>, text: &str) {
        if self.state == State::Ended {
            return;
        }
        if !self.phone_gone {
            self.hang_up_phone(cause, text);
            self.phone_gone = true;
        }
        if let Some(sid) = self.current_sid().map(str::to_owned) {
            let condition = match (self.terminate_condition.take(), by) {
                (Some(c), _) => Some(c),
                (None, EndedBy::Conference) => None,
                (None, EndedBy::Phone) => Some(Condition::Success),
                (None, EndedBy::Gateway) => Some(Condition::GeneralError),
            };
            if let (true, Some(condition)) = (self.joined, condition) {
                if let Some(room) = &self.room {
                    let to = format!("{}/{}", room, self.settings.xmpp.focus_resource);
                    let payload = jingle::session_terminate(&sid, condition, Some(text));
                    self.push_xmpp(XmppCommand::SendIq {
                        to,
                        payload,
                        what: IqPurpose::SessionTerminate,
                    });
                }
            }
        }
        if self.media_running {
            self.push_media(MediaCommand::Stop);
            self.media_running = false;
        }
        if self.xmpp_up {
            self.push_xmpp(XmppCommand::Leave);
            self.xmpp_up = false;
        }
        self.finish(now, by, cause.filter(|_| by != EndedBy::Phone), text);
    }

    /// Tells the phone the call is over: BYE once answered; before that, a final response to a
    /// caller, a CANCEL to a callee. `cause: None` is a normal hangup (no Reason header).
    fn hang_up_phone(&mut self, cause: Option<u16>, text: &str) {
        let reason = cause.map(|code| Reason::new(code, text));
        let cmd = match &self.leg {
            Leg::In(_) if self.answered.is_some() => SipCommand::Bye { reason },
            // jigasi refuses an unanswered call it gives up on with 486.
            Leg::In(_) => SipCommand::Reject {
                code: cause.unwrap_or(486),
                reason,
            },
            Leg::Out(out) => match out.phase {
                Phase::Answered => SipCommand::Bye { reason },
                Phase::Inviting | Phase::Ringing => SipCommand::Cancel,
                Phase::NotInvited | Phase::Failed => return,
            },
        };
        self.push_sip(cmd);
    }

    fn finish(&mut self, now: Instant, by: EndedBy, cause: Option<u16>, text: &str) {
        let summary = EndSummary {
            by,
            cause,
            text: text.to_owned(),
            setup: self.answered.map(|t| t - self.started),
            connected: self.connected_at.map(|t| t - self.started),
        };
        // One line an operator can read the call from: who ended it, the SIP cause sent (absent
        // when the phone ended it), how long it lasted and how long it took to answer.
        tracing::info!(
            by = by.name(),
            cause,
            reason = %text,
            duration_s = ((now - self.started).as_secs_f64() * 1000.0).round() / 1000.0,
            setup_ms = summary.setup.map(|d| d.as_millis() as u64),
            "call ended"
        );
        self.refuse_rayo(text);
        self.state = State::Ended;
        self.deadlines.clear();
        self.outputs.push_back(Output::Ended(summary));
    }

    fn reply(&mut self, to: &str, id: &str, r: Result<(), ErrorCondition>) {
        let reply = match r {
            Ok(()) => Reply::Result(None),
            Err(c) => Reply::Error(ErrorReply::new(c)),
        };
        self.push_xmpp(XmppCommand::Reply {
            to: to.to_owned(),
            id: id.to_owned(),
            reply,
        });
    }

    fn push_sip(&mut self, c: SipCommand) {
        self.outputs.push_back(Output::Sip(c));
    }

    fn push_xmpp(&mut self, c: XmppCommand) {
        self.outputs.push_back(Output::Xmpp(c));
    }

    fn push_media(&mut self, c: MediaCommand) {
        self.outputs.push_back(Output::Media(c));
    }
}

fn phone_params(neg: &Negotiated) -> media::PhoneParams {
    media::PhoneParams {
        codec: match neg.codec {
            G711::Pcmu => media::G711::Pcmu,
            G711::Pcma => media::G711::Pcma,
        },
        codec_pt: neg.codec_pt,
        telephone_event_pt: neg.telephone_event_pt,
        remote_rtp: neg.remote_rtp,
    }
}
