//! A playout buffer for one incoming RTP stream (a conference speaker, or the phone).
//!
//! Packets go in as they arrive; the mixer takes them out in order, one at a time, as its 20 ms
//! tick needs audio. Each take is a packet, "lost" (conceal it, with the next packet at hand for
//! Opus in-band FEC), or "absent" (nothing to play: not started, or the speaker paused).
//!
//! Order is by sequence number (extended over wrap-around), which also tells a lost packet (a gap
//! in the numbers) from a pause (Opus DTX, a phone's silence suppression: the numbers go on, only
//! the timestamps jump). Playout starts a fixed [`PLAYOUT_DELAY`] after the first packet of a talk
//! spurt and restarts after every underrun, so pauses and clock drift that empties the buffer
//! heal by themselves; drift the other way is cut back when the buffer holds
//! [`MAX_EXCESS`] more than the delay.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the first packet of a talk spurt waits before it plays. 40 ms absorbs 40 ms of
/// arrival jitter (the videobridge forwards with little; a phone over the internet adds 20–40 ms,
/// performance.md §3.4) and keeps one packet of look-ahead for Opus FEC when a packet is lost.
/// The 20 ms tick adds 0–20 ms on top, so 40–60 ms in all; jigasi buffers 120 ms.
pub const PLAYOUT_DELAY: Duration = Duration::from_millis(40);
/// More buffered than the delay plus this is cut back (sender clock faster than ours, or a burst
/// released after a network stall): latency stays bounded.
pub const MAX_EXCESS: Duration = Duration::from_millis(60);
/// A gap longer than this many packets is not concealed packet by packet: playout jumps over it.
const MAX_CONCEALED_RUN: u64 = 5;
/// A sequence number this far from the newest one means the sender restarted (RFC 3550 A.1).
const MAX_SEQ_JUMP: u64 = 1000;
/// A packet this much older than the newest is not reordering (RFC 3550 A.1's MAX_MISORDER):
/// either a stray, or a sender that restarted its numbers lower with the same SSRC (early media
/// then the answer, from some PBXs). The next packet in sequence after it confirms a restart.
const MAX_MISORDER: u64 = 100;
/// Extended sequence numbers start here so reordering before the first packet cannot underflow.
const SEQ_BASE: u64 = 1 << 32;

/// What the buffer hands out for one step of playout.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    /// The next packet, in order.
    Packet { payload_type: u8, payload: Vec<u8> },
    /// The next packet is missing although later ones are here: conceal one frame. `next` is the
    /// packet right after the lost one (payload type, payload), if it arrived: Opus can rebuild
    /// the lost frame from it.
    Lost { next: Option<(u8, &'a [u8])> },
    /// Nothing to play.
    Absent,
}

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Accepted,
    /// Its turn has passed (it was played, concealed or skipped): dropped.
    Late,
    /// Already buffered: dropped.
    Duplicate,
}

/// Reception counters of one stream (cumulative over restarts).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamStats {
    pub packets: u64,
    pub bytes: u64,
    /// Expected minus received, RFC 3550 A.3 (never negative).
    pub lost: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Packets dropped to cut the buffer back to its delay.
    pub dropped: u64,
    /// Interarrival jitter, RFC 3550 §6.4.1, in milliseconds.
    pub jitter_ms: f64,
    /// Times the stream was restarted (new SSRC, sequence or timestamp jump).
    pub restarts: u64,
}

struct Entry {
    payload_type: u8,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Nothing buffered to start from.
    Idle,
    /// A talk spurt began; playout starts at `until`.
    Buffering {
        until: Instant,
    },
    Playing,
}

pub struct JitterBuffer {
    clock_rate: u32,
    ssrc: Option<u32>,
    packets: BTreeMap<u64, Entry>,
    state: State,
    /// The next sequence number to play; older packets are late. `None` before the first play.
    cursor: Option<u64>,
    /// Newest extended sequence number and its timestamp.
    newest: Option<(u64, u32)>,
    /// After a packet far older than the newest: the sequence number that, arriving next,
    /// confirms the sender restarted.
    restart_seq: Option<u16>,
    /// Timestamp units per packet, learnt from consecutive packets (20 ms until then).
    packet_ts: u32,
    /// First extended sequence number of the current run, for the loss count.
    first_seq: Option<u64>,
    /// Packets expected in the runs before the last restart.
    expected_before: u64,
    /// Transit time (arrival in timestamp units since `epoch`, minus the RTP timestamp) of the
    /// previous packet, for the jitter estimate.
    last_transit: Option<f64>,
    epoch: Option<Instant>,
    jitter: f64,
    stats: StreamStats,
}

impl JitterBuffer {
    /// A buffer for a stream with this RTP clock rate, playing out after [`PLAYOUT_DELAY`].
    pub fn new(clock_rate: u32) -> JitterBuffer {
        JitterBuffer {
            clock_rate,
            ssrc: None,
            packets: BTreeMap::new(),
            state: State::Idle,
            cursor: None,
            newest: None,
            restart_seq: None,
            packet_ts: clock_rate / 50,
            first_seq: None,
            expected_before: 0,
            last_transit: None,
            epoch: None,
            jitter: 0.0,
            stats: StreamStats::default(),
        }
    }

    /// Takes in one packet that arrived at `now`.
    pub fn push(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        payload_type: u8,
        payload: &[u8],
    ) -> Pushed {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.restart();
            }
            self.ssrc = Some(ssrc);
        }
        let mut ext = match self.newest {
            None => SEQ_BASE + u64::from(seq),
            Some((newest, _)) => extend(newest, seq),
        };
        if let Some((newest, newest_ts)) = self.newest {
            let backwards_in_time =
                ext == newest + 1 && (timestamp.wrapping_sub(newest_ts) as i32) < 0;
            let confirmed = self.restart_seq == Some(seq);
            if ext.abs_diff(newest) > MAX_SEQ_JUMP || backwards_in_time || confirmed {
                self.restart();
                ext = SEQ_BASE + u64::from(seq);
            } else if ext + MAX_MISORDER < newest {
                self.restart_seq = Some(seq.wrapping_add(1));
                self.stats.late += 1;
                return Pushed::Late;
            }
        }
        self.restart_seq = None;
        self.update_jitter(now, timestamp);

        if self.cursor.is_some_and(|c| ext < c) {
            self.stats.late += 1;
            return Pushed::Late;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        self.stats.packets += 1;
        self.stats.bytes += payload.len() as u64;
        self.first_seq = Some(self.first_seq.map_or(ext, |f| f.min(ext)));
        match self.newest {
            Some((newest, newest_ts)) if ext == newest + 1 => {
                let step = timestamp.wrapping_sub(newest_ts);
                if step > 0 && step < self.clock_rate / 5 {
                    self.packet_ts = step;
                }
                self.newest = Some((ext, timestamp));
            }
            Some((newest, _)) if ext < newest => {}
            _ => self.newest = Some((ext, timestamp)),
        }
        self.packets.insert(
            ext,
            Entry {
                payload_type,
                payload: payload.to_vec(),
            },
        );
        if self.state == State::Idle {
            self.state = State::Buffering {
                until: now + PLAYOUT_DELAY,
            };
        }
        Pushed::Accepted
    }

    /// The next step of playout at `now`.
    pub fn pop(&mut self, now: Instant) -> Playout<'_> {
        match self.state {
            State::Idle => return Playout::Absent,
            State::Buffering { until } if now < until => return Playout::Absent,
            State::Buffering { .. } => {
                let Some(&first) = self.packets.keys().next() else {
                    self.state = State::Idle;
                    return Playout::Absent;
                };
                self.state = State::Playing;
                self.cursor = Some(self.cursor.map_or(first, |c| c.max(first)));
            }
            State::Playing => {}
        }
        let Some(mut cursor) = self.cursor else {
            self.state = State::Idle;
            return Playout::Absent;
        };
        self.cut_back(&mut cursor);
        if let Some(entry) = self.packets.remove(&cursor) {
            self.cursor = Some(cursor + 1);
            return Playout::Packet {
                payload_type: entry.payload_type,
                payload: entry.payload,
            };
        }
        let Some(&first) = self.packets.keys().next() else {
            // Underrun: the speaker paused or the network stalled; start over with the next one.
            self.state = State::Idle;
            return Playout::Absent;
        };
        if first.saturating_sub(cursor) > MAX_CONCEALED_RUN {
            self.cursor = Some(first);
            return Playout::Lost { next: None };
        }
        self.cursor = Some(cursor + 1);
        Playout::Lost {
            next: self
                .packets
                .get(&(cursor + 1))
                .map(|e| (e.payload_type, e.payload.as_slice())),
        }
    }

    pub fn stats(&self) -> StreamStats {
        let expected = self.expected_before + self.expected_in_run();
        let received = self.stats.packets;
        StreamStats {
            lost: expected.saturating_sub(received),
            jitter_ms: self.jitter * 1000.0 / f64::from(self.clock_rate),
            ..self.stats
        }
    }

    fn expected_in_run(&self) -> u64 {
        match (self.first_seq, self.newest) {
            (Some(first), Some((newest, _))) => newest.saturating_sub(first) + 1,
            _ => 0,
        }
    }

    /// Drops the oldest packets while more than delay + [`MAX_EXCESS`] is buffered ahead of the
    /// cursor, down to delay + a third of it (so this happens rarely, not at every tick).
    fn cut_back(&mut self, cursor: &mut u64) {
        let rate = f64::from(self.clock_rate);
        let limit = (PLAYOUT_DELAY + MAX_EXCESS).as_secs_f64() * rate;
        let target = (PLAYOUT_DELAY + MAX_EXCESS / 3).as_secs_f64() * rate;
        let ahead = |jb: &JitterBuffer, c: u64| {
            jb.packets.range(c + 1..).count() as f64 * f64::from(jb.packet_ts)
        };
        if ahead(self, *cursor) <= limit {
            return;
        }
        while ahead(self, *cursor) > target {
            if self.packets.remove(cursor).is_some() {
                self.stats.dropped += 1;
                *cursor += 1;
            } else if let Some(&first) = self.packets.keys().next() {
                *cursor = first;
            } else {
                break;
            }
        }
    }

    fn restart(&mut self) {
        self.expected_before += self.expected_in_run();
        self.packets.clear();
        self.state = State::Idle;
        self.cursor = None;
        self.newest = None;
        self.first_seq = None;
        self.last_transit = None;
        self.stats.restarts += 1;
    }

    fn update_jitter(&mut self, now: Instant, timestamp: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.duration_since(epoch).as_secs_f64() * f64::from(self.clock_rate);
        // Transit time modulo 2^32 keeps timestamp wrap-around from looking like a jump.
        let transit = arrival - f64::from(timestamp);
        if let Some(last) = self.last_transit {
            let mut d = (transit - last).abs();
            d %= 4_294_967_296.0;
            let d = d.min(4_294_967_296.0 - d);
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }
}

/// The extended sequence number of `seq` closest to `reference`.
fn extend(reference: u64, seq: u16) -> u64 {
    let low = reference & 0xFFFF;
    let base = reference - low;
    let seq = u64::from(seq);
    [
        base.wrapping_sub(0x1_0000).wrapping_add(seq),
        base.wrapping_add(seq),
        base.wrapping_add(0x1_0000).wrapping_add(seq),
    ]
    .into_iter()
    .min_by_key(|c| c.abs_diff(reference))
    .unwrap_or(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Run {
        jb: JitterBuffer,
        t0: Instant,
    }

    impl Run {
        fn new() -> Run {
            Run {
                jb: JitterBuffer::new(8000),
                t0: Instant::now(),
            }
        }
        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }
        fn push(&mut self, ms: u64, seq: u16) -> Pushed {
            let ts = u32::from(seq).wrapping_mul(160);
            self.push_ts(ms, seq, ts)
        }
        fn push_ts(&mut self, ms: u64, seq: u16, ts: u32) -> Pushed {
            let now = self.at(ms);
            self.jb.push(now, 1, seq, ts, 0, &seq.to_be_bytes())
        }
        /// What one pop at `ms` gives, as a short label: "seq", "lost(next)", "lost" or "-".
        fn pop(&mut self, ms: u64) -> String {
            let now = self.at(ms);
            match self.jb.pop(now) {
                Playout::Packet { payload, .. } => {
                    u16::from_be_bytes([payload[0], payload[1]]).to_string()
                }
                Playout::Lost { next: Some((_, n)) } => {
                    format!("lost({})", u16::from_be_bytes([n[0], n[1]]))
                }
                Playout::Lost { next: None } => "lost".into(),
                Playout::Absent => "-".into(),
            }
        }
    }

    #[test]
    fn playout_starts_after_the_delay_and_then_goes_in_order() {
        let mut r = Run::new();
        r.push(0, 100);
        assert_eq!(r.pop(10), "-");
        assert_eq!(r.pop(30), "-");
        r.push(20, 101);
        r.push(40, 102);
        assert_eq!(r.pop(41), "100");
        assert_eq!(r.pop(61), "101");
        r.push(60, 103);
        assert_eq!(r.pop(81), "102");
        assert_eq!(r.pop(101), "103");
    }

    #[test]
    fn reordered_packets_come_out_in_sequence() {
        let mut r = Run::new();
        for (ms, seq) in [(0, 10), (5, 12), (6, 11), (30, 14), (31, 13)] {
            assert_eq!(r.push(ms, seq), Pushed::Accepted);
        }
        let out: Vec<String> = (0..5).map(|i| r.pop(40 + 20 * i)).collect();
        assert_eq!(out, ["10", "11", "12", "13", "14"]);
    }

    #[test]
    fn a_missing_packet_is_reported_lost_with_the_next_one_for_fec() {
        let mut r = Run::new();
        r.push(0, 1);
        r.push(20, 2);
        r.push(60, 4);
        r.push(80, 5);
        assert_eq!(r.pop(40), "1");
        assert_eq!(r.pop(60), "2");
        assert_eq!(r.pop(80), "lost(4)");
        assert_eq!(r.pop(100), "4");
        assert_eq!(r.pop(120), "5");
        assert_eq!(r.jb.stats().lost, 1);
    }

    #[test]
    fn two_missing_packets_give_one_fec_chance_only_for_the_second() {
        let mut r = Run::new();
        r.push(0, 1);
        r.push(20, 4);
        r.push(30, 5);
        assert_eq!(r.pop(40), "1");
        assert_eq!(r.pop(60), "lost");
        assert_eq!(r.pop(80), "lost(4)");
        assert_eq!(r.pop(100), "4");
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped() {
        let mut r = Run::new();
        r.push(0, 7);
        assert_eq!(r.push(1, 7), Pushed::Duplicate);
        r.push(20, 9);
        assert_eq!(r.pop(40), "7");
        assert_eq!(r.pop(60), "lost(9)");
        // 8 arrives after its turn was concealed.
        assert_eq!(r.push(61, 8), Pushed::Late);
        assert_eq!(r.push(62, 7), Pushed::Late);
        assert_eq!(r.pop(80), "9");
        let s = r.jb.stats();
        assert_eq!((s.duplicates, s.late, s.packets), (1, 2, 2));
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let mut r = Run::new();
        r.push(0, 65534);
        r.push(10, 0); // before 65535: reordered across the wrap
        r.push(11, 65535);
        r.push(20, 1);
        let out: Vec<String> = (0..4).map(|i| r.pop(40 + 20 * i)).collect();
        assert_eq!(out, ["65534", "65535", "0", "1"]);
        assert_eq!(r.jb.stats().lost, 0);
    }

    #[test]
    fn a_pause_is_absent_not_lost_and_playout_restarts_after_the_delay() {
        let mut r = Run::new();
        r.push(0, 1);
        r.push(20, 2);
        assert_eq!(r.pop(40), "1");
        assert_eq!(r.pop(60), "2");
        // DTX: nothing for a second, then the numbers go on with a timestamp jump.
        assert_eq!(r.pop(80), "-");
        assert_eq!(r.pop(500), "-");
        r.push_ts(1000, 3, 8160);
        assert_eq!(r.pop(1010), "-");
        assert_eq!(r.pop(1041), "3");
        assert_eq!(r.jb.stats().lost, 0);
    }

    #[test]
    fn a_new_ssrc_restarts_the_stream() {
        let mut r = Run::new();
        r.push(0, 500);
        assert_eq!(r.pop(40), "500");
        let now = r.at(50);
        r.jb.push(now, 2, 3, 99, 0, &3u16.to_be_bytes());
        assert_eq!(r.pop(60), "-"); // waits the delay again
        assert_eq!(r.pop(91), "3"); // and does not count 3 as late after 500
        assert_eq!(r.jb.stats().restarts, 1);
    }

    #[test]
    fn a_sequence_jump_or_a_timestamp_going_back_restarts() {
        let mut r = Run::new();
        r.push(0, 10);
        assert_eq!(r.pop(40), "10");
        r.push(50, 30000);
        assert_eq!(r.jb.stats().restarts, 1);
        assert_eq!(r.pop(100), "30000");
        r.push_ts(110, 30001, 5);
        assert_eq!(r.jb.stats().restarts, 2);
        assert_eq!(r.pop(111), "-");
        assert_eq!(r.pop(151), "30001");
    }

    #[test]
    fn numbers_restarting_a_few_hundred_lower_restart_the_stream_on_the_second_packet() {
        let mut r = Run::new();
        r.push(0, 1000);
        r.push(20, 1001);
        assert_eq!(r.pop(40), "1000");
        assert_eq!(r.pop(60), "1001");
        // The answer after early media: the same SSRC, numbers from 700 again.
        assert_eq!(r.push(70, 700), Pushed::Late);
        assert_eq!(r.push(90, 701), Pushed::Accepted);
        assert_eq!(r.jb.stats().restarts, 1);
        r.push(110, 702);
        assert_eq!(r.pop(131), "701");
        assert_eq!(r.pop(151), "702");
    }

    #[test]
    fn one_stray_packet_from_long_ago_is_dropped_without_a_restart() {
        let mut r = Run::new();
        r.push(0, 1000);
        assert_eq!(r.pop(40), "1000");
        assert_eq!(r.push(45, 700), Pushed::Late);
        assert_eq!(r.push(50, 1001), Pushed::Accepted);
        assert_eq!(r.pop(60), "1001");
        // 701 after an in-sequence packet is another stray, not a confirmation.
        assert_eq!(r.push(65, 701), Pushed::Late);
        assert_eq!(r.jb.stats().restarts, 0);
    }

    #[test]
    fn a_burst_after_a_stall_is_cut_back_to_the_delay() {
        let mut r = Run::new();
        r.push(0, 1);
        assert_eq!(r.pop(40), "1");
        assert_eq!(r.pop(60), "-"); // the network stalls
        for seq in 2..=12 {
            r.push(300, seq); // and releases 220 ms of packets at once
        }
        assert_eq!(r.pop(340), "9");
        assert_eq!(r.jb.stats().dropped, 7);
        let rest: Vec<String> = (0..4).map(|i| r.pop(360 + 20 * i)).collect();
        assert_eq!(rest, ["10", "11", "12", "-"]);
    }

    #[test]
    fn a_long_gap_is_skipped_rather_than_concealed_frame_by_frame() {
        let mut r = Run::new();
        r.push(0, 1);
        r.push(20, 2);
        assert_eq!(r.pop(40), "1");
        r.push(45, 40);
        assert_eq!(r.pop(60), "2");
        assert_eq!(r.pop(80), "lost");
        assert_eq!(r.pop(100), "40");
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_arrival_spread() {
        let mut steady = Run::new();
        for i in 0..50u16 {
            steady.push(u64::from(i) * 20, i);
        }
        assert!(steady.jb.stats().jitter_ms < 0.01);
        let mut shaky = Run::new();
        for i in 0..50u16 {
            let wobble = if i % 2 == 0 { 0 } else { 15 };
            shaky.push(u64::from(i) * 20 + wobble, i);
        }
        let j = shaky.jb.stats().jitter_ms;
        assert!(j > 5.0 && j < 20.0, "jitter {j}");
    }

    #[test]
    fn twenty_ms_packets_pop_one_per_tick_without_drift() {
        let mut r = Run::new();
        let mut out = Vec::new();
        for i in 0..500u64 {
            r.push(i * 20, i as u16);
            out.push(r.pop(i * 20 + 5));
        }
        assert!(out[..2].iter().all(|s| s == "-"));
        assert!(out[3..].iter().all(|s| s != "-" && !s.starts_with("lost")));
        assert_eq!(r.jb.stats().dropped, 0);
    }

    #[test]
    fn arbitrary_packet_sequences_never_panic_and_never_play_twice() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(8000);
        let mut played = std::collections::HashSet::new();
        let mut runs = 0;
        let mut ssrc = 1u32;
        for step in 0..20_000u64 {
            let now = t0 + Duration::from_millis(step * 3);
            let r = next();
            if r % 500 == 0 {
                ssrc += 1; // a new stream now and then
            }
            // Mostly nearby sequence numbers, sometimes anything at all; timestamps likewise.
            let seq = if r % 7 == 0 {
                (r >> 16) as u16
            } else {
                (step / 2 + (r >> 40) % 8) as u16
            };
            let ts = if r % 11 == 0 {
                (r >> 8) as u32
            } else {
                u32::from(seq) * 160
            };
            jb.push(now, ssrc, seq, ts, 0, &seq.to_be_bytes());
            if jb.stats().restarts != runs {
                runs = jb.stats().restarts;
                played.clear();
            }
            if r % 3 == 0 {
                if let Playout::Packet { payload, .. } = jb.pop(now) {
                    let seq = u16::from_be_bytes([payload[0], payload[1]]);
                    assert!(played.insert(seq), "{seq} played twice in one run");
                }
            }
        }
        assert!(runs > 10, "the sequence should exercise restarts ({runs})");
    }
}
