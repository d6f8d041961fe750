//! jigasi's periodic SIP health check (`HEALTH_CHECK_SIP_URI`): every `health.interval` the
//! gateway calls a URI that auto-answers and plays audio; the check passes when RTP arrives from
//! the callee within 10 s of its answer, and the call is hung up. This is the sans-IO core: when
//! to call, what makes a check fail, when to retry, and the [`Status`] health reads. The tokio
//! side is `driver`.
//!
//! Where jigasi is vague or different, the choices made here:
//! * jigasi gives the whole call 10 s from the INVITE; here the INVITE gets [`ANSWER_TIMEOUT`]
//!   for a 200 OK and then the callee [`RTP_TIMEOUT`] for its first RTP packet, so that a slow
//!   answer and silent media are told apart.
//! * Only an answered call can pass: early media alone is not an answer. RTP that arrives just
//!   before the 200 OK (a race) counts once the call is answered.
//! * Only RTP counts (version 2, not RTCP), and only from the IP address of the callee's SDP
//!   answer (any port: many senders use another socket than the one they receive on).
//! * After a failed check, one retry [`RETRY_AFTER`] later (at most `interval` later, so that
//!   short test intervals work); a failed retry waits for the next regular check, as jigasi.
//! * Regular checks start every `interval` from the first (fixed rate), never overlapping.
//! * Before the first result the check is "pending", which is not a problem until `timeout`
//!   has passed since the start (jigasi reports no result as a failure from the start on).

use crate::sip::sdp::{self, G711};
use crate::sip::{OutgoingEvent, Reason};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(super) mod driver;
#[cfg(test)]
mod tests;

/// How long the INVITE may go unanswered.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the answer the first RTP packet may take (jigasi's `CALL_ESTABLISH_TIMEOUT`).
pub(crate) const RTP_TIMEOUT: Duration = Duration::from_secs(10);
/// jigasi's `CHECK_RETRY_INTERVAL`.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(60);
/// The codecs we offer, as a dial-out does.
pub(crate) const CODECS: [G711; 2] = [G711::Pcmu, G711::Pcma];

/// Why one check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    #[error("the call could not be placed: {0}")]
    Unplaced(String),
    #[error("refused: {status} {reason}")]
    Refused { status: u16, reason: String },
    #[error("not answered within {} s{}", .within.as_secs(), if *.ringing { " (it rang)" } else { "" })]
    NoAnswer { within: Duration, ringing: bool },
    #[error("the answer has no usable audio: {0}")]
    BadAnswer(String),
    #[error("no RTP within {} s of the answer{}", .within.as_secs(), stray_text(*.stray))]
    NoRtp {
        within: Duration,
        /// RTP that came from another address than the answer's: how much, and the last source.
        stray: Option<(u64, SocketAddr)>,
    },
    #[error("the call ended before any RTP: {0}")]
    Ended(String),
}

fn stray_text(stray: Option<(u64, SocketAddr)>) -> String {
    match stray {
        Some((n, from)) => format!(
            " ({n} RTP packets came from {from}, not the answer's address: NAT or a wrong c= line?)"
        ),
        None => String::new(),
    }
}

impl CheckFailure {
    /// The SIP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            CheckFailure::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The figures of a check that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// From the INVITE to the 200 OK.
    pub answer: Duration,
    /// From the 200 OK to the first RTP packet (zero when it came first).
    pub first_rtp: Duration,
}

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// When it ended.
    pub at: Instant,
    /// It was the retry after a failure.
    pub retry: bool,
    /// From the INVITE to the 200 OK, when it was answered.
    pub answer: Option<Duration>,
    pub outcome: Result<Passed, CheckFailure>,
}

/// What health reads: the check's target, its last results and whether one is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The URI called.
    pub target: String,
    /// When the checker started: the reference for "no result yet".
    pub since: Instant,
    /// `health.timeout`: no passed check for this long is a problem.
    pub timeout: Duration,
    /// A check's call is in progress.
    pub running: bool,
    pub last: Option<CheckResult>,
    pub last_success: Option<Instant>,
    pub checks: u64,
    pub failures: u64,
}

/// What health makes of a [`Status`] at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No result yet, and the start is less than `timeout` ago.
    Pending,
    /// The last check passed, less than `timeout` ago.
    Passing,
    /// The last check failed.
    Failed(&'a CheckFailure),
    /// No result at all for `timeout`: since the start (`last_success` `None`), or since the
    /// last check, which passed (a check that never ends, a stuck task).
    Stale { last_success: Option<Instant> },
}

impl Status {
    pub fn verdict(&self, now: Instant) -> Verdict<'_> {
        let overdue = |t: Instant| now.saturating_duration_since(t) > self.timeout;
        match &self.last {
            None if overdue(self.since) => Verdict::Stale { last_success: None },
            None => Verdict::Pending,
            Some(CheckResult {
                outcome: Err(failure),
                ..
            }) => Verdict::Failed(failure),
            Some(CheckResult { at, .. }) if overdue(*at) => Verdict::Stale {
                last_success: Some(*at),
            },
            Some(_) => Verdict::Passing,
        }
    }
}

/// How to end the check's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HangUp {
    /// It was answered and is still up: BYE, with a Reason on failures.
    Bye(Option<Reason>),
    /// Not answered yet: CANCEL.
    Cancel,
    /// The call is over already: only release the socket.
    Release,
}

/// What the core hears.
#[derive(Debug)]
pub enum Input<'a> {
    /// The call could not be placed (no socket, a URI the stack refuses, no TLS connection).
    Unplaced(String),
    /// Something happened to the call; `None`: its event stream ended.
    Call(Option<OutgoingEvent>),
    /// A datagram on the check's RTP socket.
    Datagram { from: SocketAddr, data: &'a [u8] },
    /// The gateway is stopping: end the call in progress without a result.
    Stop,
}

/// What the core asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bind an RTP socket, offer it ([`CODECS`]) and INVITE the target.
    Place,
    /// Send audio to the callee until the call ends: it keeps NAT bindings open and gives an
    /// echo target something to return (jigasi plays a prompt for the same reason).
    SendAudio {
        to: SocketAddr,
        codec: G711,
        payload_type: u8,
    },
    HangUp(HangUp),
    /// A check ended (the call is hung up with the `HangUp` just before).
    Finished(CheckResult),
}

/// One check's call.
#[derive(Debug)]
struct Attempt {
    started: Instant,
    retry: bool,
    step: Step,
    /// When the 200 OK came.
    answered: Option<Instant>,
    ringing: bool,
    /// Where the first RTP packet before the answer came from.
    early_rtp: Option<SocketAddr>,
    /// RTP from elsewhere than the answer's address: count and last source.
    stray: Option<(u64, SocketAddr)>,
}

#[derive(Debug)]
enum Step {
    /// INVITE out (or about to be), waiting for the answer.
    Inviting,
    /// Answered; RTP is expected from `from`'s IP address.
    Answered { at: Instant, from: SocketAddr },
}

#[derive(Debug)]
enum Phase {
    Idle { due: Instant, retry: bool },
    Calling(Attempt),
    Stopped,
}

/// The periodic check. Feed it [`Input`]s and timeouts; take its [`Output`]s.
#[derive(Debug)]
pub struct SipCheck {
    interval: Duration,
    phase: Phase,
    /// When the next regular check is due (fixed rate from the first one).
    next_regular: Instant,
    status: Status,
    outputs: VecDeque<Output>,
}

impl SipCheck {
    /// The first check is due at once.
    pub fn new(now: Instant, target: String, interval: Duration, timeout: Duration) -> SipCheck {
        SipCheck {
            interval,
            phase: Phase::Idle {
                due: now,
                retry: false,
            },
            next_regular: now,
            status: Status {
                target,
                since: now,
                timeout,
                running: false,
                last: None,
                last_success: None,
                checks: 0,
                failures: 0,
            },
            outputs: VecDeque::new(),
        }
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`SipCheck::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Idle { due, .. } => Some(*due),
            Phase::Calling(a) => Some(match a.step {
                Step::Inviting => a.started + ANSWER_TIMEOUT,
                Step::Answered { at, .. } => at + RTP_TIMEOUT,
            }),
            Phase::Stopped => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|due| now < due) {
            return;
        }
        match &self.phase {
            Phase::Idle { retry, .. } => {
                let retry = *retry;
                if !retry {
                    self.next_regular = now + self.interval;
                }
                self.phase = Phase::Calling(Attempt {
                    started: now,
                    retry,
                    step: Step::Inviting,
                    answered: None,
                    ringing: false,
                    early_rtp: None,
                    stray: None,
                });
                self.status.running = true;
                self.outputs.push_back(Output::Place);
            }
            Phase::Calling(a) => match a.step {
                Step::Inviting => {
                    let failure = CheckFailure::NoAnswer {
                        within: ANSWER_TIMEOUT,
                        ringing: a.ringing,
                    };
                    self.finish(now, HangUp::Cancel, Err(failure));
                }
                Step::Answered { .. } => {
                    let failure = CheckFailure::NoRtp {
                        within: RTP_TIMEOUT,
                        stray: a.stray,
                    };
                    let reason = Reason::new(408, "health check: no RTP");
                    self.finish(now, HangUp::Bye(Some(reason)), Err(failure));
                }
            },
            Phase::Stopped => {}
        }
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        if let Input::Stop = input {
            if let Phase::Calling(a) = &self.phase {
                let hang_up = match a.step {
                    Step::Inviting => HangUp::Cancel,
                    Step::Answered { .. } => {
                        HangUp::Bye(Some(Reason::new(503, "the gateway is shutting down")))
                    }
                };
                self.outputs.push_back(Output::HangUp(hang_up));
            }
            self.phase = Phase::Stopped;
            self.status.running = false;
            return;
        }
        let Phase::Calling(attempt) = &mut self.phase else {
            // Late events of a call already ended, or RTP after it: nothing to decide.
            return;
        };
        match input {
            Input::Unplaced(error) => {
                self.finish(now, HangUp::Release, Err(CheckFailure::Unplaced(error)))
            }
            Input::Datagram { from, data } => {
                // Only RTP counts: not RTCP, not STUN, not anything else.
                if crate::media::rtp::RtpPacket::parse(data).is_err() {
                    return;
                }
                match attempt.step {
                    Step::Inviting => {
                        attempt.early_rtp.get_or_insert(from);
                    }
                    Step::Answered { at, from: expected } => {
                        if same_source(expected, from) {
                            let passed = Passed {
                                answer: at - attempt.started,
                                first_rtp: now - at,
                            };
                            self.finish(now, HangUp::Bye(None), Ok(passed));
                        } else {
                            let count = attempt.stray.map_or(0, |(n, _)| n);
                            attempt.stray = Some((count + 1, from));
                        }
                    }
                }
            }
            Input::Call(event) => self.on_call_event(now, event),
            Input::Stop => {}
        }
    }

    fn on_call_event(&mut self, now: Instant, event: Option<OutgoingEvent>) {
        let Phase::Calling(attempt) = &mut self.phase else {
            return;
        };
        match event {
            Some(OutgoingEvent::Trying) | Some(OutgoingEvent::Info { .. }) => {}
            Some(OutgoingEvent::Ringing { .. }) => attempt.ringing = true,
            Some(OutgoingEvent::Answered { sdp }) if attempt.answered.is_none() => {
                attempt.answered = Some(now);
                let neg = match sdp::accept_answer(&CODECS, sdp.as_bytes()) {
                    Ok(neg) => neg,
                    Err(e) => {
                        let reason = Reason::new(488, "health check: no usable audio");
                        let failure = CheckFailure::BadAnswer(e.to_string());
                        self.finish(now, HangUp::Bye(Some(reason)), Err(failure));
                        return;
                    }
                };
                let from = neg.remote_rtp;
                attempt.step = Step::Answered { at: now, from };
                self.outputs.push_back(Output::SendAudio {
                    to: from,
                    codec: neg.codec,
                    payload_type: neg.codec_pt,
                });
                // RTP that raced the 200 OK.
                if let Some(early_from) = attempt.early_rtp {
                    if same_source(from, early_from) {
                        let passed = Passed {
                            answer: now - attempt.started,
                            first_rtp: Duration::ZERO,
                        };
                        self.finish(now, HangUp::Bye(None), Ok(passed));
                    }
                }
            }
            Some(OutgoingEvent::Answered { .. }) => {}
            Some(OutgoingEvent::Renegotiated(neg)) => {
                if let Step::Answered { from, .. } = &mut attempt.step {
                    *from = neg.remote_rtp;
                    self.outputs.push_back(Output::SendAudio {
                        to: neg.remote_rtp,
                        codec: neg.codec,
                        payload_type: neg.codec_pt,
                    });
                }
            }
            Some(OutgoingEvent::Failed { status, reason }) => {
                let failure = CheckFailure::Refused { status, reason };
                self.finish(now, HangUp::Release, Err(failure));
            }
            Some(OutgoingEvent::Bye) => {
                let failure = CheckFailure::Ended("the callee hung up".into());
                self.finish(now, HangUp::Release, Err(failure));
            }
            Some(OutgoingEvent::Terminated { why }) => {
                self.finish(now, HangUp::Release, Err(CheckFailure::Ended(why)));
            }
            None => {
                let failure = CheckFailure::Ended("the SIP stack dropped the call".into());
                self.finish(now, HangUp::Release, Err(failure));
            }
        }
    }

    /// Ends the attempt in progress: hang up, report, schedule the next check.
    fn finish(&mut self, now: Instant, hang_up: HangUp, outcome: Result<Passed, CheckFailure>) {
        let Phase::Calling(attempt) = &self.phase else {
            return;
        };
        let retry = attempt.retry;
        let answer = attempt.answered.map(|at| at - attempt.started);
        let failed = outcome.is_err();
        let result = CheckResult {
            at: now,
            retry,
            answer,
            outcome,
        };
        let s = &mut self.status;
        s.running = false;
        s.checks += 1;
        if failed {
            s.failures += 1;
        } else {
            s.last_success = Some(now);
        }
        s.last = Some(result.clone());
        self.outputs.push_back(Output::HangUp(hang_up));
        self.outputs.push_back(Output::Finished(result));

        let regular = self.next_regular.max(now);
        let retry_at = now + RETRY_AFTER.min(self.interval);
        self.phase = if failed && !retry && retry_at < regular {
            Phase::Idle {
                due: retry_at,
                retry: true,
            }
        } else {
            Phase::Idle {
                due: regular,
                retry: false,
            }
        };
    }
}

/// Whether RTP from `from` comes from the callee whose answer named `expected`: the same IP;
/// any IP when the answer named none (0.0.0.0).
fn same_source(expected: SocketAddr, from: SocketAddr) -> bool {
    expected.ip().is_unspecified() || expected.ip() == from.ip()
}
