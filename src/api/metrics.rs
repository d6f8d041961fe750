//! `/metrics` in the Prometheus text exposition format (version 0.0.4): the gateway's load and
//! totals, the drain, and whether the brewery connections and the SIP registration are in place.
//! Names follow Prometheus conventions: a `jitsi_sip_gateway_` prefix, `_total` on counters.

use crate::call::Snapshot;
use std::fmt::Write;

/// What the metrics are made from, read once per scrape.
pub(super) struct Sample<'a> {
    pub calls: &'a Snapshot,
    pub draining: bool,
    /// Problems the health check names (none: healthy).
    pub problems: usize,
}

pub(super) fn render(s: &Sample<'_>) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let name = format!("jitsi_sip_gateway_{name}");
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    let c = s.calls;
    metric(
        "conferences",
        "gauge",
        "Rooms with at least one call of this gateway.",
        c.conferences as f64,
    );
    metric(
        "participants",
        "gauge",
        "Members of those rooms, as jigasi counts them.",
        c.participants as f64,
    );
    metric("calls", "gauge", "Calls in progress.", c.calls as f64);
    metric(
        "calls_total",
        "counter",
        "Calls started since the gateway started.",
        c.total_calls as f64,
    );
    metric(
        "calls_with_connected_media_total",
        "counter",
        "Calls whose conference media connected.",
        c.total_calls_with_connected_media as f64,
    );
    metric(
        "graceful_shutdown",
        "gauge",
        "1 while draining: no new calls are taken.",
        f64::from(u8::from(s.draining)),
    );
    metric(
        "healthy",
        "gauge",
        "1 when /about/health answers 200.",
        f64::from(u8::from(s.problems == 0)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_type_and_one_sample_with_the_prefix() {
        let calls = Snapshot {
            conferences: 2,
            participants: 7,
            calls: 3,
            total_calls: 10,
            total_calls_with_connected_media: 9,
        };
        let text = render(&Sample {
            calls: &calls,
            draining: true,
            problems: 1,
        });
        assert!(text.contains("# TYPE jitsi_sip_gateway_calls_total counter\n"));
        assert!(text.contains("\njitsi_sip_gateway_participants 7\n"));
        assert!(text.contains("\njitsi_sip_gateway_graceful_shutdown 1\n"));
        assert!(text.contains("\njitsi_sip_gateway_healthy 0\n"));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 7);
        assert!(samples.iter().all(|l| l.starts_with("jitsi_sip_gateway_")));
        assert!(text.ends_with('\n'));
    }
}
