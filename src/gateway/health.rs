//! Whether the gateway can take calls, from the states of its brewery connections, of its SIP
//! registration and of the periodic SIP health check, and the JSON `/about/health` answers with.
//! Pure.

use super::sip_check::{self, Verdict};
use crate::api::HealthReport;
use crate::sip::RegistrationState;
use crate::xmpp::BreweryState;
use serde_json::{json, Value};
use std::time::Instant;

/// One brewery connection as health sees it: the server entry it serves and its state.
pub(super) struct BreweryView<'a> {
    pub server: &'a str,
    pub state: &'a BreweryState,
}

/// The SIP health check's status (`None`: `health.sip_uri` unset) and the time to judge it at.
pub(super) struct SipCheckView<'a> {
    pub status: &'a sip_check::Status,
    pub now: Instant,
}

/// Healthy when every brewery connection is in its room (Jicofo can send it dials), the SIP
/// account, when one registers, is registered, and the SIP health check, when configured, is not
/// failing. Each problem is one line an operator can act on.
pub(super) fn report(
    breweries: &[BreweryView<'_>],
    require_brewery: bool,
    sip: &RegistrationState,
    check: Option<SipCheckView<'_>>,
) -> HealthReport {
    // Brewery problems count only when the brewery is required (a dial-in-only deployment has
    // no Jicofo brewery to join); its state is shown either way.
    let mut problems = Vec::new();
    let brewery: Vec<Value> = breweries
        .iter()
        .map(|b| {
            let (state, extra) = match b.state {
                BreweryState::Connecting => {
                    problems.push(format!("brewery on {}: not joined yet", b.server));
                    ("connecting", json!({}))
                }
                BreweryState::Joined { nick } => ("joined", json!({ "nick": nick })),
                BreweryState::Lost { reason, retry_in } => {
                    problems.push(format!(
                        "brewery on {}: not in the room ({reason}); next try in {} s",
                        b.server,
                        retry_in.as_secs()
                    ));
                    (
                        "lost",
                        json!({ "reason": reason, "retry_in_s": retry_in.as_secs() }),
                    )
                }
                BreweryState::Stopped => {
                    problems.push(format!("brewery on {}: stopped", b.server));
                    ("stopped", json!({}))
                }
            };
            let mut v = json!({ "server": b.server, "state": state, "required": require_brewery });
            merge(&mut v, extra);
            v
        })
        .collect();
    if !require_brewery {
        // The brewery's are the only problems so far.
        problems.clear();
    }
    let sip_registration = match sip {
        RegistrationState::Disabled => json!({ "state": "disabled" }),
        RegistrationState::Registering => {
            problems.push("SIP registration: not registered yet".to_string());
            json!({ "state": "registering" })
        }
        RegistrationState::Registered { expires_in } => {
            json!({ "state": "registered", "expires_in_s": expires_in.as_secs() })
        }
        RegistrationState::Failed {
            reason,
            status,
            retry_in,
        } => {
            // Duration::MAX: the account cannot be used at all; no retry is coming.
            let retry = (*retry_in != std::time::Duration::MAX).then_some(retry_in.as_secs());
            problems.push(match retry {
                Some(s) => format!("SIP registration failed: {reason}; next try in {s} s"),
                None => format!("SIP registration failed: {reason}; not retrying"),
            });
            json!({ "state": "failed", "reason": reason, "status": status, "retry_in_s": retry })
        }
    };
    let sip_health_check = match check {
        Some(view) => sip_check_detail(&view, &mut problems),
        None => json!({ "state": "disabled" }),
    };
    HealthReport {
        detail: json!({
            "brewery": brewery,
            "sip_registration": sip_registration,
            "sip_health_check": sip_health_check,
        }),
        problems,
    }
}

/// The `sip_health_check` detail, and its problem line when it is failing.
fn sip_check_detail(view: &SipCheckView<'_>, problems: &mut Vec<String>) -> Value {
    let s = view.status;
    let ago = |t: Instant| view.now.saturating_duration_since(t).as_secs();
    let last_success = match s.last_success {
        Some(t) => format!("last success {} s ago", ago(t)),
        None => "no success yet".to_string(),
    };
    let state = match s.verdict(view.now) {
        Verdict::Pending => "pending",
        Verdict::Passing => "passing",
        Verdict::Failed(failure) => {
            problems.push(format!(
                "SIP health check to {}: {failure} ({last_success})",
                s.target
            ));
            "failed"
        }
        Verdict::Stale { last_success: None } => {
            problems.push(format!(
                "SIP health check to {}: no result {} s after the start (timeout {} s)",
                s.target,
                ago(s.since),
                s.timeout.as_secs()
            ));
            "stale"
        }
        Verdict::Stale {
            last_success: Some(_),
        } => {
            problems.push(format!(
                "SIP health check to {}: no check completed for {} s ({last_success}; timeout {} s)",
                s.target,
                s.last.as_ref().map_or(0, |l| ago(l.at)),
                s.timeout.as_secs()
            ));
            "stale"
        }
    };
    let last = s.last.as_ref().map(|l| {
        let answer_ms = l.answer.map(|d| d.as_millis() as u64);
        match &l.outcome {
            Ok(passed) => json!({
                "result": "success",
                "ago_s": ago(l.at),
                "retry": l.retry,
                "answer_ms": answer_ms,
                "rtp_ms": passed.first_rtp.as_millis() as u64,
            }),
            Err(failure) => json!({
                "result": "failure",
                "ago_s": ago(l.at),
                "retry": l.retry,
                "reason": failure.to_string(),
                "status": failure.status(),
                "answer_ms": answer_ms,
            }),
        }
    });
    json!({
        "target": s.target,
        "state": state,
        "running": s.running,
        "last": last,
        "last_success_ago_s": s.last_success.map(ago),
        "checks": s.checks,
        "failures": s.failures,
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn joined() -> BreweryState {
        BreweryState::Joined { nick: "abc".into() }
    }

    #[test]
    fn joined_everywhere_and_registered_is_healthy() {
        let states = [joined(), joined()];
        let views: Vec<_> = ["a", "b"]
            .iter()
            .zip(&states)
            .map(|(server, state)| BreweryView { server, state })
            .collect();
        let r = report(
            &views,
            true,
            &RegistrationState::Registered {
                expires_in: Duration::from_secs(600),
            },
            None,
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.detail["brewery"][1]["state"], "joined");
        assert_eq!(r.detail["sip_registration"]["expires_in_s"], 600);
        let trunk = report(&views, true, &RegistrationState::Disabled, None);
        assert!(trunk.problems.is_empty(), "a trunk has nothing to register");
    }

    #[test]
    fn a_brewery_that_is_not_required_is_shown_but_is_no_problem() {
        let lost = BreweryState::Lost {
            reason: "Room creation is restricted".into(),
            retry_in: Duration::from_secs(30),
        };
        let views = [BreweryView {
            server: "xmpp.meet.jitsi",
            state: &lost,
        }];
        let r = report(&views, false, &RegistrationState::Disabled, None);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.detail["brewery"][0]["state"], "lost");
        assert_eq!(r.detail["brewery"][0]["required"], false);
        let required = report(&views, true, &RegistrationState::Disabled, None);
        assert_eq!(required.problems.len(), 1, "{:?}", required.problems);
    }

    #[test]
    fn one_lost_shard_or_a_refused_registration_is_named() {
        let lost = BreweryState::Lost {
            reason: "stream closed".into(),
            retry_in: Duration::from_secs(4),
        };
        let j = joined();
        let views = [
            BreweryView {
                server: "shard-a",
                state: &j,
            },
            BreweryView {
                server: "shard-b",
                state: &lost,
            },
        ];
        let r = report(
            &views,
            true,
            &RegistrationState::Failed {
                reason: "401 Unauthorized after credentials: wrong password?".into(),
                status: Some(401),
                retry_in: Duration::from_secs(8),
            },
            None,
        );
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].contains("shard-b") && r.problems[0].contains("stream closed"));
        assert!(r.problems[1].starts_with("SIP registration failed: 401"));
        assert_eq!(r.detail["sip_registration"]["status"], 401);
        assert_eq!(r.detail["sip_registration"]["retry_in_s"], 8);
        assert_eq!(r.detail["brewery"][1]["retry_in_s"], 4);
    }

    fn check_status(t0: Instant) -> sip_check::Status {
        sip_check::Status {
            target: "sip:echo@pbx.example.com".into(),
            since: t0,
            timeout: Duration::from_secs(600),
            running: false,
            last: None,
            last_success: None,
            checks: 0,
            failures: 0,
        }
    }

    fn with_check(status: &sip_check::Status, now: Instant) -> HealthReport {
        let j = joined();
        let views = [BreweryView {
            server: "s",
            state: &j,
        }];
        let check = SipCheckView { status, now };
        report(&views, true, &RegistrationState::Disabled, Some(check))
    }

    #[test]
    fn a_failed_sip_check_is_a_problem_naming_the_target_the_reason_and_the_last_success() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut s = check_status(t0);
        let r = with_check(&s, t0 + secs(5));
        assert!(r.problems.is_empty(), "pending: {:?}", r.problems);
        assert_eq!(r.detail["sip_health_check"]["state"], "pending");
        assert_eq!(r.detail["sip_health_check"]["last"], Value::Null);

        s.last_success = Some(t0 + secs(1));
        s.last = Some(sip_check::CheckResult {
            at: t0 + secs(300),
            retry: false,
            answer: Some(Duration::from_millis(120)),
            outcome: Err(sip_check::CheckFailure::NoRtp {
                within: secs(10),
                stray: None,
            }),
        });
        (s.checks, s.failures) = (2, 1);
        let r = with_check(&s, t0 + secs(313));
        assert_eq!(
            r.problems,
            [
                "SIP health check to sip:echo@pbx.example.com: no RTP within 10 s of the answer \
              (last success 312 s ago)"
            ]
        );
        let d = &r.detail["sip_health_check"];
        assert_eq!(d["state"], "failed");
        assert_eq!(d["last"]["result"], "failure");
        assert_eq!(d["last"]["answer_ms"], 120);
        assert_eq!(d["last"]["ago_s"], 13);
        assert_eq!(d["last_success_ago_s"], 312);
        assert_eq!(
            (d["checks"].as_u64(), d["failures"].as_u64()),
            (Some(2), Some(1))
        );

        s.last = Some(sip_check::CheckResult {
            at: t0 + secs(320),
            retry: true,
            answer: Some(Duration::from_millis(90)),
            outcome: Ok(sip_check::Passed {
                answer: Duration::from_millis(90),
                first_rtp: Duration::from_millis(40),
            }),
        });
        s.last_success = Some(t0 + secs(320));
        let r = with_check(&s, t0 + secs(321));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let d = &r.detail["sip_health_check"];
        assert_eq!(d["state"], "passing");
        assert_eq!(d["last"]["rtp_ms"], 40);
        assert_eq!(d["last"]["retry"], true);
        // Then nothing for longer than the timeout.
        let r = with_check(&s, t0 + secs(1000));
        assert_eq!(r.problems.len(), 1);
        assert!(
            r.problems[0].contains("no check completed for 680 s"),
            "{:?}",
            r.problems
        );
        assert_eq!(r.detail["sip_health_check"]["state"], "stale");
    }

    #[test]
    fn without_a_sip_check_the_detail_says_disabled() {
        let r = report(&[], true, &RegistrationState::Disabled, None);
        assert_eq!(r.detail["sip_health_check"], json!({ "state": "disabled" }));
    }

    #[test]
    fn before_the_first_join_and_registration_it_is_not_healthy_yet() {
        let c = BreweryState::Connecting;
        let r = report(
            &[BreweryView {
                server: "s",
                state: &c,
            }],
            true,
            &RegistrationState::Registering,
            None,
        );
        assert_eq!(r.problems.len(), 2);
        assert_eq!(r.detail["sip_registration"]["state"], "registering");
    }
}
