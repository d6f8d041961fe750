//! The figures kept about calls that have ended, and the pure arithmetic over them: media totals
//! per leg, setup-time percentiles and histogram buckets. The registry owns one [`Totals`].

use crate::media::{LegStats, MediaStats};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// Setup times kept for the percentiles: the most recent ones, so the figures follow the
/// gateway's current behaviour rather than its whole life.
const RECENT_SETUPS: usize = 1024;

/// Upper bounds (seconds) of the setup-time histogram's buckets. Dial-in setups are tens of
/// milliseconds; a dial-out's includes the callee picking up, up to the ring timeout.
pub const SETUP_BUCKETS_S: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One leg's RTP counters summed over calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LegTotals {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub lost: u64,
    pub late: u64,
    pub concealed_frames: u64,
}

impl LegTotals {
    pub fn add(&mut self, s: &LegStats) {
        self.packets_in += s.packets_in;
        self.packets_out += s.packets_out;
        self.bytes_in += s.bytes_in;
        self.bytes_out += s.bytes_out;
        self.lost += s.lost;
        self.late += s.late;
        self.concealed_frames += s.concealed_frames;
    }
}

/// Both legs' counters summed over calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MediaTotals {
    pub phone: LegTotals,
    pub conference: LegTotals,
}

impl MediaTotals {
    pub fn add(&mut self, s: &MediaStats) {
        self.phone.add(&s.phone);
        self.conference.add(&s.conference);
    }
}

/// Setup times of one direction: a histogram over the process's life and the recent values.
#[derive(Debug, Clone, Default)]
pub struct Setups {
    recent: VecDeque<Duration>,
    /// Count per bucket of [`SETUP_BUCKETS_S`] (not cumulative), then the overflow.
    buckets: [u64; SETUP_BUCKETS_S.len() + 1],
    count: u64,
    sum_s: f64,
}

/// What the API shows of one direction's setup times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetupFigures {
    /// Setups since the gateway started.
    pub count: u64,
    pub sum_s: f64,
    /// Cumulative counts: setups at or under each bound of [`SETUP_BUCKETS_S`].
    #[serde(skip)]
    pub cumulative: Vec<(f64, u64)>,
    /// Over the most recent setups (up to 1024); None before the first.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Setups {
    pub fn record(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = SETUP_BUCKETS_S
            .iter()
            .position(|&bound| s <= bound)
            .unwrap_or(SETUP_BUCKETS_S.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_s += s;
        if self.recent.len() == RECENT_SETUPS {
            self.recent.pop_front();
        }
        self.recent.push_back(d);
    }

    pub fn figures(&self) -> SetupFigures {
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut running = 0;
        let cumulative = SETUP_BUCKETS_S
            .iter()
            .zip(self.buckets)
            .map(|(&bound, n)| {
                running += n;
                (bound, running)
            })
            .collect();
        SetupFigures {
            count: self.count,
            sum_s: self.sum_s,
            cumulative,
            p50_ms: percentile(&sorted, 50.0).map(ms),
            p90_ms: percentile(&sorted, 90.0).map(ms),
            p99_ms: percentile(&sorted, 99.0).map(ms),
            max_ms: sorted.last().copied().map(ms),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Counters over the calls that have ended (and a few that count at the moment they happen),
/// in jigasi's terms where it has one.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub calls: u64,
    pub calls_with_connected_media: u64,
    /// Rooms whose last call of ours ended.
    pub conferences_completed: u64,
    /// Calls that joined a room.
    pub participants: u64,
    /// Summed durations of ended calls.
    pub call_seconds: f64,
    /// Calls during which the phone's RTP stopped at least once.
    pub calls_with_dropped_media: u64,
    /// Times the phone's RTP stopped.
    pub dropped_media: u64,
    /// Calls whose bridge leg failed (ICE/DTLS, or it never came up).
    pub calls_with_connection_failed: u64,
    /// Calls moved to a new bridge leg by a re-invite (jigasi's JVB migration).
    pub calls_with_jvb_migrate: u64,
    /// Calls answered on the phone side that never received audio from the bridge.
    pub calls_jvb_no_media: u64,
    pub media: MediaTotals,
    pub setup_in: Setups,
    pub setup_out: Setups,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentiles_are_nearest_rank_over_the_recent_setups() {
        let mut s = Setups::default();
        assert_eq!(s.figures().p50_ms, None);
        for v in 1..=100 {
            s.record(ms(v));
        }
        let f = s.figures();
        assert_eq!(
            (f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms),
            (Some(50.0), Some(90.0), Some(99.0), Some(100.0))
        );
        assert_eq!(f.count, 100);
        assert!((f.sum_s - 5.05).abs() < 1e-9, "{}", f.sum_s);
    }

    #[test]
    fn only_the_most_recent_setups_make_the_percentiles_but_all_are_counted() {
        let mut s = Setups::default();
        for _ in 0..RECENT_SETUPS {
            s.record(ms(900));
        }
        for _ in 0..RECENT_SETUPS {
            s.record(ms(20));
        }
        let f = s.figures();
        assert_eq!(f.max_ms, Some(20.0));
        assert_eq!(f.count, 2 * RECENT_SETUPS as u64);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_the_overflow_only_in_the_count() {
        let mut s = Setups::default();
        for v in [5, 10, 40, 3000, 120_000] {
            s.record(ms(v));
        }
        let f = s.figures();
        let at = |bound: f64| f.cumulative.iter().find(|(b, _)| *b == bound).unwrap().1;
        assert_eq!(at(0.01), 2, "a value on a bound is in that bucket");
        assert_eq!(at(0.05), 3);
        assert_eq!(at(2.5), 3);
        assert_eq!(at(5.0), 4);
        assert_eq!(at(60.0), 4);
        assert_eq!(f.count, 5);
    }

    #[test]
    fn media_totals_add_both_legs() {
        let mut t = MediaTotals::default();
        let leg = LegStats {
            packets_in: 10,
            lost: 2,
            concealed_frames: 3,
            ..LegStats::default()
        };
        t.add(&MediaStats {
            phone: leg,
            conference: leg,
        });
        t.add(&MediaStats {
            phone: leg,
            conference: LegStats::default(),
        });
        assert_eq!((t.phone.packets_in, t.phone.lost), (20, 4));
        assert_eq!(t.conference.concealed_frames, 3);
    }
}
