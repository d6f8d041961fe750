//! `/metrics` in the Prometheus text exposition format (version 0.0.4): the gateway's load and
//! totals, calls by state, setup times, RTP counters per leg, the drain, and whether the brewery
//! connections and the SIP registration are in place. Names follow Prometheus conventions: a
//! `jitsi_sip_gateway_` prefix, base units (seconds), `_total` on counters.

use crate::call::{CallPhase, LegTotals, SetupFigures, Snapshot};
use std::fmt::Write;

const PREFIX: &str = "jitsi_sip_gateway_";

/// What the metrics are made from, read once per scrape.
pub(super) struct Sample<'a> {
    pub calls: &'a Snapshot,
    pub draining: bool,
    /// Problems the health check names (none: healthy).
    pub problems: usize,
}

/// Writes metric families: each a HELP and TYPE line, then its samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = write!(
            self.0,
            "# HELP {PREFIX}{name} {help}\n# TYPE {PREFIX}{name} {kind}\n"
        );
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.0, "{PREFIX}{name}");
        if !labels.is_empty() {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = write!(self.0, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// One sample per leg, from the leg's totals.
    fn per_leg(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        legs: [&LegTotals; 2],
        f: fn(&LegTotals) -> u64,
    ) {
        self.family(name, kind, help);
        for (leg, totals) in ["phone", "conference"].into_iter().zip(legs) {
            self.sample(name, &[("leg", leg)], f(totals) as f64);
        }
    }

    fn setup_histogram(&mut self, direction: &str, f: &SetupFigures) {
        let name = "call_setup_seconds";
        for (bound, n) in &f.cumulative {
            self.sample(
                &format!("{name}_bucket"),
                &[("direction", direction), ("le", &bound.to_string())],
                *n as f64,
            );
        }
        let labels = [("direction", direction), ("le", "+Inf")];
        self.sample(&format!("{name}_bucket"), &labels, f.count as f64);
        self.sample(&format!("{name}_sum"), &labels[..1], f.sum_s);
        self.sample(&format!("{name}_count"), &labels[..1], f.count as f64);
    }
}

pub(super) fn render(s: &Sample<'_>) -> String {
    let mut out = Out(String::new());
    let c = s.calls;
    out.single(
        "conferences",
        "gauge",
        "Rooms with at least one call of this gateway.",
        c.conferences as f64,
    );
    out.single(
        "participants",
        "gauge",
        "Members of those rooms, as jigasi counts them.",
        c.participants as f64,
    );
    out.single(
        "stress_level",
        "gauge",
        "Jigasi's stress level: conferences / 100.",
        c.stress_level,
    );
    out.family("calls", "gauge", "Calls in progress, by state.");
    for (phase, n) in &c.by_phase {
        if *phase != CallPhase::Ended {
            out.sample("calls", &[("state", phase.name())], *n as f64);
        }
    }
    let counters: [(&str, &str, f64); 10] = [
        (
            "calls_total",
            "Calls started since the gateway started.",
            c.total_calls as f64,
        ),
        (
            "calls_with_connected_media_total",
            "Calls whose conference media connected.",
            c.total_calls_with_connected_media as f64,
        ),
        (
            "conferences_completed_total",
            "Rooms whose last call of this gateway ended.",
            c.total_conferences_completed as f64,
        ),
        (
            "participants_total",
            "Calls that joined a room.",
            c.total_participants as f64,
        ),
        (
            "call_seconds_total",
            "Summed duration of calls, ended and in progress.",
            c.total_call_seconds,
        ),
        (
            "calls_with_dropped_media_total",
            "Calls during which the phone's RTP stopped.",
            c.total_calls_with_dropped_media as f64,
        ),
        (
            "dropped_media_total",
            "Times a phone's RTP stopped.",
            c.total_count_dropped_media as f64,
        ),
        (
            "calls_with_connection_failed_total",
            "Calls whose bridge leg failed or never connected.",
            c.total_calls_with_connection_failed as f64,
        ),
        (
            "calls_with_jvb_migrate_total",
            "Calls moved to a new bridge leg by a re-invite.",
            c.total_calls_with_jvb_migrate as f64,
        ),
        (
            "calls_jvb_no_media_total",
            "Answered calls that never received audio from the bridge.",
            c.total_calls_jvb_no_media as f64,
        ),
    ];
    for (name, help, value) in counters {
        out.single(name, "counter", help, value);
    }
    out.family(
        "call_setup_seconds",
        "histogram",
        "Call start to answer: INVITE to our 200 OK (in), dial to the callee's 200 OK (out).",
    );
    out.setup_histogram("in", &c.setup_in);
    out.setup_histogram("out", &c.setup_out);
    let legs = [&c.media.phone, &c.media.conference];
    out.per_leg(
        "rtp_packets_received_total",
        "counter",
        "RTP packets received, per leg.",
        legs,
        |l| l.packets_in,
    );
    out.per_leg(
        "rtp_packets_sent_total",
        "counter",
        "RTP packets sent, per leg.",
        legs,
        |l| l.packets_out,
    );
    out.per_leg(
        "rtp_packets_lost_total",
        "counter",
        "Incoming RTP packets that never arrived, per leg.",
        legs,
        |l| l.lost,
    );
    out.per_leg(
        "rtp_packets_late_total",
        "counter",
        "Incoming RTP packets that came after their playout time, per leg.",
        legs,
        |l| l.late,
    );
    out.per_leg(
        "concealed_frames_total",
        "counter",
        "20 ms frames filled by loss concealment, per leg of arrival.",
        legs,
        |l| l.concealed_frames,
    );
    out.family(
        "rtp_jitter_max_seconds",
        "gauge",
        "Largest interarrival jitter among calls in progress, per leg.",
    );
    for leg in ["phone", "conference"] {
        let max_ms = c
            .live
            .iter()
            .filter_map(|call| call.media)
            .map(|m| match leg {
                "phone" => m.phone.jitter_ms,
                _ => m.conference.jitter_ms,
            })
            .fold(0.0, f64::max);
        out.sample("rtp_jitter_max_seconds", &[("leg", leg)], max_ms / 1000.0);
    }
    out.single(
        "graceful_shutdown",
        "gauge",
        "1 while draining: no new calls are taken.",
        f64::from(u8::from(s.draining)),
    );
    out.single(
        "healthy",
        "gauge",
        "1 when /about/health answers 200.",
        f64::from(u8::from(s.problems == 0)),
    );
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Direction, Registry};
    use std::time::Duration;

    fn text() -> String {
        let reg = Registry::default();
        let a = reg.register("a", Direction::In);
        a.update(|c| {
            c.phase = CallPhase::Connected;
            c.setup = Some(Duration::from_millis(40));
        });
        let calls = reg.snapshot();
        render(&Sample {
            calls: &calls,
            draining: true,
            problems: 1,
        })
    }

    #[test]
    fn every_family_has_help_and_type_and_every_sample_the_prefix() {
        let text = text();
        assert!(text.ends_with('\n'));
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with("# HELP ") {
                assert!(line.starts_with(PREFIX), "{line}");
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| typed.contains(&f.to_string()))
                    })
                    .unwrap_or(name);
                assert_eq!(typed.last().map(String::as_str), Some(family), "{line}");
            }
        }
        assert!(text.contains("# TYPE jitsi_sip_gateway_calls_total counter\n"));
        assert!(text.contains("\njitsi_sip_gateway_graceful_shutdown 1\n"));
        assert!(text.contains("\njitsi_sip_gateway_healthy 0\n"));
    }

    #[test]
    fn calls_are_labelled_by_state_and_setups_form_a_histogram_per_direction() {
        let text = text();
        assert!(text.contains("\njitsi_sip_gateway_calls{state=\"connected\"} 1\n"));
        assert!(text.contains("\njitsi_sip_gateway_calls{state=\"ringing\"} 0\n"));
        assert!(!text.contains("state=\"ended\""));
        assert!(text.contains(
            "\njitsi_sip_gateway_call_setup_seconds_bucket{direction=\"in\",le=\"0.025\"} 0\n"
        ));
        assert!(text.contains(
            "\njitsi_sip_gateway_call_setup_seconds_bucket{direction=\"in\",le=\"0.05\"} 1\n"
        ));
        assert!(text.contains(
            "\njitsi_sip_gateway_call_setup_seconds_bucket{direction=\"in\",le=\"+Inf\"} 1\n"
        ));
        assert!(
            text.contains("\njitsi_sip_gateway_call_setup_seconds_count{direction=\"out\"} 0\n")
        );
        assert!(text.contains("\njitsi_sip_gateway_rtp_packets_lost_total{leg=\"phone\"} 0\n"));
    }
}
