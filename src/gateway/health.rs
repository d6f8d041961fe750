//! Whether the gateway can take calls, from the states of its brewery connections and of its SIP
//! registration, and the JSON `/about/health` answers with. Pure.

use crate::api::HealthReport;
use crate::sip::RegistrationState;
use crate::xmpp::BreweryState;
use serde_json::{json, Value};

/// One brewery connection as health sees it: the server entry it serves and its state.
pub(super) struct BreweryView<'a> {
    pub server: &'a str,
    pub state: &'a BreweryState,
}

/// Healthy when every brewery connection is in its room (Jicofo can send it dials) and the SIP
/// account, when one registers, is registered. Each problem is one line an operator can act on.
pub(super) fn report(breweries: &[BreweryView<'_>], sip: &RegistrationState) -> HealthReport {
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
            let mut v = json!({ "server": b.server, "state": state });
            merge(&mut v, extra);
            v
        })
        .collect();
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
    HealthReport {
        detail: json!({ "brewery": brewery, "sip_registration": sip_registration }),
        problems,
    }
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
            &RegistrationState::Registered {
                expires_in: Duration::from_secs(600),
            },
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.detail["brewery"][1]["state"], "joined");
        assert_eq!(r.detail["sip_registration"]["expires_in_s"], 600);
        let trunk = report(&views, &RegistrationState::Disabled);
        assert!(trunk.problems.is_empty(), "a trunk has nothing to register");
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
            &RegistrationState::Failed {
                reason: "401 Unauthorized after credentials: wrong password?".into(),
                status: Some(401),
                retry_in: Duration::from_secs(8),
            },
        );
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r.problems[0].contains("shard-b") && r.problems[0].contains("stream closed"));
        assert!(r.problems[1].starts_with("SIP registration failed: 401"));
        assert_eq!(r.detail["sip_registration"]["status"], 401);
        assert_eq!(r.detail["sip_registration"]["retry_in_s"], 8);
        assert_eq!(r.detail["brewery"][1]["retry_in_s"], 4);
    }

    #[test]
    fn before_the_first_join_and_registration_it_is_not_healthy_yet() {
        let c = BreweryState::Connecting;
        let r = report(
            &[BreweryView {
                server: "s",
                state: &c,
            }],
            &RegistrationState::Registering,
        );
        assert_eq!(r.problems.len(), 2);
        assert_eq!(r.detail["sip_registration"]["state"], "registering");
    }
}
