//! When to REGISTER, when to send a keep-alive, and what the registration's state is: a sans-IO
//! machine. `client` runs it: it sends what [`Refresher::handle_timeout`] asks for and feeds the
//! outcome back with [`Refresher::handle_outcome`].
//!
//! Refreshes come well before the binding expires (a quarter of the expiry early, and at least
//! one transaction timeout early when the expiry allows it); after a failure the next attempt
//! waits 1 s, doubling to 60 s, so a wrong password never becomes a tight loop.

use std::time::{Duration, Instant};

use crate::config::KeepAliveMethod;

/// Where the account's registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// No account, `sip.register = false` (a trunk), or the server has shut down.
    Disabled,
    /// The first REGISTER is under way.
    Registering,
    /// The registrar accepted the binding for `expires_in` (what it granted).
    Registered { expires_in: Duration },
    /// The last attempt failed: why, the final status when there was one, and when the next
    /// attempt goes out (`Duration::MAX`: never, the account cannot be written as a SIP URI).
    Failed {
        reason: String,
        status: Option<u16>,
        retry_in: Duration,
    },
}

/// The longest wait between two attempts after failures.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a UDP transaction may take to time out (64·T1): a refresh leaves at least this much
/// of the binding's lifetime when the lifetime allows it.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(32);

/// When to refresh a binding the registrar granted for `granted`.
pub(crate) fn refresh_delay(granted: Duration) -> Duration {
    let margin = (granted / 4).max((granted / 2).min(TRANSACTION_TIMEOUT));
    granted.saturating_sub(margin).max(Duration::from_secs(1))
}

/// The wait after the `failures`-th failure in a row (1 s, 2 s, 4 s … 60 s).
pub(crate) fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    (Duration::from_secs(1) * (1 << doublings)).min(MAX_BACKOFF)
}

/// What one REGISTER transaction ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx; the lifetime the registrar granted.
    Registered { granted: Duration },
    /// A final failure response (after credentials, when we had them and were challenged).
    Rejected {
        status: u16,
        phrase: String,
        /// Credentials were configured (so a final 401/407 means they were refused).
        had_credentials: bool,
        /// 423's `Min-Expires`.
        min_expires: Option<Duration>,
    },
    /// No final response: the transaction timed out or the transport failed.
    NoResponse { error: String },
    /// Not sent: the registrar cannot be reached (the TLS connection to it failed); `error`
    /// says why and becomes the state's reason as it is.
    Unreachable { error: String },
}

/// What the driver must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Register,
    KeepAlive(KeepAliveMethod),
}

#[derive(Debug)]
pub(crate) struct Refresher {
    /// The lifetime each REGISTER asks for (raised by a 423's Min-Expires).
    requested: Duration,
    keep_alive: KeepAliveMethod,
    keep_alive_interval: Duration,
    failures: u32,
    /// Due time of the next REGISTER; `None` while one is under way.
    next_register: Option<Instant>,
    /// Due time of the next OPTIONS / CRLF keep-alive; only while registered.
    next_keep_alive: Option<Instant>,
    ever_registered: bool,
    state: RegistrationState,
}

impl Refresher {
    /// A machine that registers at once.
    pub fn new(
        now: Instant,
        expiry: Duration,
        keep_alive: KeepAliveMethod,
        keep_alive_interval: Duration,
    ) -> Self {
        Refresher {
            requested: expiry,
            keep_alive,
            keep_alive_interval,
            failures: 0,
            next_register: Some(now),
            next_keep_alive: None,
            ever_registered: false,
            state: RegistrationState::Registering,
        }
    }

    pub fn state(&self) -> &RegistrationState {
        &self.state
    }

    /// The lifetime to ask for in the next REGISTER.
    pub fn requested(&self) -> Duration {
        self.requested
    }

    /// Whether some REGISTER ever succeeded (then shutting down sends Expires: 0).
    pub fn ever_registered(&self) -> bool {
        self.ever_registered
    }

    /// When [`Refresher::handle_timeout`] has something to do next; `None` while a REGISTER is
    /// under way and nothing else is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_register, self.next_keep_alive) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<Action> {
        if self.next_register.is_some_and(|due| due <= now) {
            self.next_register = None;
            self.next_keep_alive = None;
            return Some(Action::Register);
        }
        if self.next_keep_alive.is_some_and(|due| due <= now) {
            self.next_keep_alive = Some(now + self.keep_alive_interval);
            return Some(Action::KeepAlive(self.keep_alive));
        }
        None
    }

    /// Takes the outcome of the REGISTER that [`Action::Register`] asked for; returns the new
    /// state.
    pub fn handle_outcome(&mut self, now: Instant, outcome: Outcome) -> &RegistrationState {
        match outcome {
            Outcome::Registered { granted } => {
                self.failures = 0;
                self.ever_registered = true;
                let mut refresh = refresh_delay(granted);
                match self.keep_alive {
                    KeepAliveMethod::Register => refresh = refresh.min(self.keep_alive_interval),
                    KeepAliveMethod::Options | KeepAliveMethod::Crlf => {
                        self.next_keep_alive = Some(now + self.keep_alive_interval);
                    }
                    KeepAliveMethod::None => {}
                }
                self.next_register = Some(now + refresh);
                self.state = RegistrationState::Registered {
                    expires_in: granted,
                };
            }
            Outcome::Rejected {
                status: 423,
                min_expires: Some(min),
                ..
            } if min > self.requested => {
                // Interval Too Brief: ask again at once for what the registrar takes.
                self.requested = min;
                self.next_register = Some(now);
            }
            Outcome::Rejected {
                status,
                phrase,
                had_credentials,
                ..
            } => self.fail(
                now,
                describe_rejection(status, &phrase, had_credentials),
                Some(status),
            ),
            Outcome::NoResponse { error } => self.fail(
                now,
                format!("no response from the registrar ({error})"),
                None,
            ),
            Outcome::Unreachable { error } => self.fail(now, error, None),
        }
        &self.state
    }

    /// Register again now rather than at the next refresh: a keep-alive got no answer at all
    /// (the registrar restarted, the NAT binding changed). Nothing while a REGISTER runs.
    pub fn register_now(&mut self, now: Instant) {
        if self.next_register.is_some() {
            self.next_register = Some(now);
            self.next_keep_alive = None;
        }
    }

    fn fail(&mut self, now: Instant, reason: String, status: Option<u16>) {
        self.failures += 1;
        let retry_in = backoff(self.failures);
        self.next_register = Some(now + retry_in);
        self.state = RegistrationState::Failed {
            reason,
            status,
            retry_in,
        };
    }
}

/// Why a REGISTER was refused, in words an operator can act on.
pub(crate) fn describe_rejection(status: u16, phrase: &str, had_credentials: bool) -> String {
    match status {
        401 | 407 if had_credentials => {
            format!("{status} {phrase} after credentials: wrong password or user name")
        }
        401 | 407 => format!(
            "{status} {phrase}: the registrar wants credentials and sip.password is not set"
        ),
        _ => format!("{status} {phrase}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPIRY: Duration = Duration::from_secs(600);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn refresher(now: Instant, keep_alive: KeepAliveMethod) -> Refresher {
        Refresher::new(now, EXPIRY, keep_alive, secs(25))
    }

    fn wrong_password() -> Outcome {
        Outcome::Rejected {
            status: 401,
            phrase: "Unauthorized".into(),
            had_credentials: true,
            min_expires: None,
        }
    }

    fn registered(s: u64) -> Outcome {
        Outcome::Registered { granted: secs(s) }
    }

    #[test]
    fn refreshes_come_well_before_the_binding_expires() {
        assert_eq!(refresh_delay(secs(600)), secs(450));
        assert_eq!(refresh_delay(secs(3600)), secs(2700));
        // Short lifetimes keep half of it as margin (a UDP transaction may take 32 s).
        assert_eq!(refresh_delay(secs(60)), secs(30));
        assert_eq!(refresh_delay(secs(15)), Duration::from_millis(7500));
        assert_eq!(refresh_delay(secs(1)), secs(1));
    }

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn registers_at_once_then_refreshes_at_the_granted_lifetime() {
        let t0 = Instant::now();
        let mut r = refresher(t0, KeepAliveMethod::None);
        assert_eq!(r.state(), &RegistrationState::Registering);
        assert_eq!(r.poll_timeout(), Some(t0));
        assert_eq!(r.handle_timeout(t0), Some(Action::Register));
        assert_eq!(
            r.poll_timeout(),
            None,
            "nothing else while the REGISTER runs"
        );
        // The registrar grants less than asked: the refresh follows the grant.
        let state = r.handle_outcome(t0, registered(120)).clone();
        assert_eq!(
            state,
            RegistrationState::Registered {
                expires_in: secs(120)
            }
        );
        assert_eq!(r.poll_timeout(), Some(t0 + secs(88)));
        assert_eq!(r.handle_timeout(t0 + secs(87)), None);
        assert_eq!(r.handle_timeout(t0 + secs(88)), Some(Action::Register));
        assert!(r.ever_registered());
    }

    #[test]
    fn a_wrong_password_backs_off_instead_of_looping() {
        let t0 = Instant::now();
        let mut r = refresher(t0, KeepAliveMethod::Options);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert_eq!(r.handle_timeout(now), Some(Action::Register));
            match r.handle_outcome(now, wrong_password()).clone() {
                RegistrationState::Failed {
                    reason,
                    status,
                    retry_in,
                } => {
                    assert_eq!(status, Some(401));
                    assert!(reason.contains("wrong password"), "{reason}");
                    waits.push(retry_in.as_secs());
                    assert_eq!(r.poll_timeout(), Some(now + retry_in));
                    now += retry_in;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(!r.ever_registered());
        // A success resets the backoff.
        r.handle_timeout(now);
        r.handle_outcome(now, registered(600));
        r.handle_timeout(now + secs(450));
        r.handle_outcome(now + secs(450), wrong_password());
        assert!(matches!(
            r.state(),
            RegistrationState::Failed { retry_in, .. } if *retry_in == secs(1)
        ));
    }

    #[test]
    fn no_response_is_a_failure_without_status() {
        let t0 = Instant::now();
        let mut r = refresher(t0, KeepAliveMethod::None);
        r.handle_timeout(t0);
        let state = r.handle_outcome(
            t0,
            Outcome::NoResponse {
                error: "transaction timeout".into(),
            },
        );
        assert!(matches!(
            state,
            RegistrationState::Failed { status: None, reason, .. } if reason.contains("timeout")
        ));
    }

    #[test]
    fn an_unreachable_registrar_fails_with_its_reason_as_is_and_backs_off() {
        let t0 = Instant::now();
        let mut r = refresher(t0, KeepAliveMethod::Options);
        let why = "TLS with the SIP server 192.0.2.1:5061 failed: its certificate has expired";
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..3 {
            assert_eq!(r.handle_timeout(now), Some(Action::Register));
            let state = r.handle_outcome(now, Outcome::Unreachable { error: why.into() });
            let RegistrationState::Failed {
                reason,
                status,
                retry_in,
            } = state.clone()
            else {
                panic!("{state:?}")
            };
            assert_eq!((reason.as_str(), status), (why, None));
            waits.push(retry_in);
            now = r.poll_timeout().unwrap();
        }
        assert_eq!(waits, [secs(1), secs(2), secs(4)]);
    }

    #[test]
    fn interval_too_brief_asks_again_at_once_for_min_expires() {
        let t0 = Instant::now();
        let mut r = Refresher::new(t0, secs(30), KeepAliveMethod::None, secs(25));
        r.handle_timeout(t0);
        let too_brief = |min| Outcome::Rejected {
            status: 423,
            phrase: "Interval Too Brief".into(),
            had_credentials: false,
            min_expires: Some(secs(min)),
        };
        r.handle_outcome(t0, too_brief(60));
        assert_eq!(r.requested(), secs(60));
        assert_eq!(r.handle_timeout(t0), Some(Action::Register));
        // The same answer again is a failure, not a loop.
        assert!(matches!(
            r.handle_outcome(t0, too_brief(60)),
            RegistrationState::Failed {
                status: Some(423),
                ..
            }
        ));
    }

    #[test]
    fn options_and_crlf_keep_alives_run_only_while_registered() {
        for method in [KeepAliveMethod::Options, KeepAliveMethod::Crlf] {
            let t0 = Instant::now();
            let mut r = refresher(t0, method);
            r.handle_timeout(t0);
            assert_eq!(r.poll_timeout(), None);
            r.handle_outcome(t0, registered(600));
            assert_eq!(r.poll_timeout(), Some(t0 + secs(25)));
            assert_eq!(
                r.handle_timeout(t0 + secs(25)),
                Some(Action::KeepAlive(method))
            );
            assert_eq!(
                r.handle_timeout(t0 + secs(50)),
                Some(Action::KeepAlive(method))
            );
            // A refresh stops them until it succeeds.
            assert_eq!(r.handle_timeout(t0 + secs(450)), Some(Action::Register));
            assert_eq!(r.poll_timeout(), None);
            r.handle_outcome(t0 + secs(450), wrong_password());
            assert_eq!(r.handle_timeout(t0 + secs(451)), Some(Action::Register));
        }
    }

    #[test]
    fn register_keep_alive_refreshes_every_interval() {
        let t0 = Instant::now();
        let mut r = refresher(t0, KeepAliveMethod::Register);
        r.handle_timeout(t0);
        r.handle_outcome(t0, registered(600));
        assert_eq!(r.poll_timeout(), Some(t0 + secs(25)));
        assert_eq!(r.handle_timeout(t0 + secs(25)), Some(Action::Register));
    }

    #[test]
    fn a_lost_keep_alive_registers_again_now() {
        let t0 = Instant::now();
        let mut r = refresher(t0, KeepAliveMethod::Options);
        r.handle_timeout(t0);
        r.handle_outcome(t0, registered(600));
        r.handle_timeout(t0 + secs(25));
        r.register_now(t0 + secs(40));
        assert_eq!(r.poll_timeout(), Some(t0 + secs(40)));
        assert_eq!(r.handle_timeout(t0 + secs(40)), Some(Action::Register));
        // While a REGISTER runs, a late keep-alive verdict changes nothing.
        r.register_now(t0 + secs(41));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn rejections_say_what_to_fix() {
        assert_eq!(
            describe_rejection(401, "Unauthorized", true),
            "401 Unauthorized after credentials: wrong password or user name"
        );
        assert!(
            describe_rejection(407, "Proxy Authentication Required", false)
                .contains("sip.password is not set")
        );
        assert_eq!(
            describe_rejection(403, "Forbidden auth ID", true),
            "403 Forbidden auth ID"
        );
    }
}
