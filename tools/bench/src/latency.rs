//! Gateway-added audio latency, each way, by cross-correlating a click.
//!
//! * Phone → bridge: the phone adds a click (an 8 ms chirp across the telephone band) onto one
//!   20 ms frame of its tone and notes when that packet left; the bridge records the gateway's
//!   decoded Opus with each packet's arrival time; the click is found in the recording by
//!   cross-correlation and mapped to the packet that carried it.
//! * Bridge → phone: the first emulated speaker sends, in place of one packet of its loop, the
//!   same click Opus-encoded in the loop's context, noting when it left; the phone records the
//!   gateway's µ-law with each packet's arrival time; same correlation.
//!
//! Both ends map audio to time the same way: a sample `k` samples into a packet is at that
//! packet's send (or arrival) instant plus `k / 8000` s. The figure is "click sample sent → same
//! sample arrived": the gateway's playout buffer, mixing, transcoding (the Opus encoder's
//! look-ahead phone → bridge) and frame alignment. The emulators add only decoding (both decode
//! to 8 kHz as the gateway does), and the click's send side is taken after the speaker's own Opus
//! encoding (where the click is once decoded), so a browser's encoder delay is not counted.
//! Arrival times are kernel receive timestamps at both ends, not when our code got to them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::conference::{Conference, SpeakerClick};
use crate::phone::{self, Call, Dial, Sending, Ticker};

/// The phone leg's rate; the bridge decodes to it too.
pub const RATE: u32 = 8000;
/// The click: a linear chirp over the telephone band (µ-law and Opus at 20 kb/s keep it; the
/// width gives a correlation peak a few samples wide), Hann-windowed, this long.
const CLICK_MS: f64 = 8.0;
const CLICK_FROM_HZ: f64 = 300.0;
const CLICK_TO_HZ: f64 = 3400.0;
/// Its peak: -6 dBFS, well over the -12 dBFS tones, with headroom when mixed with them.
const CLICK_PEAK: f64 = 0.5;
/// Where the click starts in the phone's frame (it must end inside the frame).
const PHONE_OFFSET: usize = 16;
/// Where it starts in the speaker's 48 kHz frame: early, so that it is all in that frame's
/// packet after the Opus encoder's 6.5 ms look-ahead and 2.5 ms window overlap.
const SPEAKER_OFFSET_48K: usize = 48;
/// A found click: the correlation where it peaks stands this far above its RMS elsewhere in
/// the recording (a click through the gateway: 50–230; noise alone: about 4)...
const MIN_PROMINENCE: f64 = 8.0;
/// ...and the window there matches the click's shape this well (normalised cross-correlation,
/// 1 = identical): loosely, as the gateway's 20 kb/s Opus leaves 0.4–0.9 of it.
const MIN_NCC: f64 = 0.25;

/// The phone's tone under the clicks (as the load's phones).
const PHONE_HZ: u32 = 440;
/// Phone → bridge: the bridge records this long after the phone is told to click.
const TO_BRIDGE_WINDOW: Duration = Duration::from_millis(600);
/// Bridge → phone: packets the phone records after the click is asked for; the click waits up
/// to a second for its loop position, then crosses the gateway.
const TO_PHONE_PACKETS: usize = 80;
/// A second of audio received at both ends before the first click: playout buffers running.
const SETTLE_PACKETS: u64 = 50;

#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub phone_to_bridge_ms: Vec<f64>,
    pub bridge_to_phone_ms: Vec<f64>,
    /// Clicks sent but not found, with what the correlation saw instead.
    pub missed: Vec<String>,
}

// The whole API whether or not loadgen's report uses each part (the lab test uses the rest).
#[allow(dead_code)]
impl Latency {
    /// The median of `v` (mean of the middle two for an even count); NaN when empty.
    pub fn median(v: &[f64]) -> f64 {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        }
    }

    /// The largest of `v`; NaN when empty.
    pub fn max(v: &[f64]) -> f64 {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .reduce(f64::max)
            .unwrap_or(f64::NAN)
    }

    /// One line per direction: median and max over the clicks found, and how many.
    pub fn table(&self) -> String {
        let line = |name: &str, v: &[f64]| {
            format!(
                "  {name:<16} median {:6.1} ms  max {:6.1} ms  ({} clicks)\n",
                Latency::median(v),
                Latency::max(v),
                v.len()
            )
        };
        let mut out =
            String::from("gateway-added audio latency (click sent → same sample arrived)\n");
        out += &line("phone → bridge", &self.phone_to_bridge_ms);
        out += &line("bridge → phone", &self.bridge_to_phone_ms);
        for m in &self.missed {
            out += &format!("  missed: {m}\n");
        }
        out
    }
}

/// Places one call into `room` on the running gateway, measures `clicks` clicks each way, hangs
/// up. `room` should be a room of its own (its latest session at the bridge is the one used).
pub async fn measure(
    gateway: SocketAddr,
    conference: &Arc<Conference>,
    room: &str,
    clicks: usize,
) -> Result<Latency> {
    let dial = Dial {
        gateway,
        room_header: "Jitsi-Conference-Room".into(),
        room: room.into(),
        tone_hz: PHONE_HZ,
    };
    let call = phone::place(&dial, Duration::from_secs(30))
        .await
        .context("placing the latency call")?;
    let measured = measure_call(&call, conference, room, clicks).await;
    let hung_up = call.hang_up(Duration::from_secs(10)).await;
    let latency = measured?;
    hung_up.context("hanging up the latency call")?;
    Ok(latency)
}

async fn measure_call(
    call: &Call,
    conference: &Arc<Conference>,
    room: &str,
    clicks: usize,
) -> Result<Latency> {
    let ticker = Ticker::default();
    let sending = ticker.send(call, PHONE_HZ);
    let template = click(RATE);
    let conf = conference.clone();
    let r = room.to_string();
    let speaker_click = blocking(move || {
        conf.wait_for(
            "the latency call's session hearing the phone",
            Duration::from_secs(30),
            |s| {
                s.session(&r, None)
                    .filter(|x| x.is_live() && x.rx.packets >= SETTLE_PACKETS)
                    .map(|_| ())
            },
        )?;
        conf.speaker_click(&click(48_000), SPEAKER_OFFSET_48K)
    })
    .await?;
    // Where the click is in its own packet once decoded: the send side of bridge → phone.
    let emitted = correlate(&speaker_click.decoded, &template)
        .filter(Peak::is_click)
        .context("the click does not survive the speaker's Opus encoding")?;
    let settled = call.record(SETTLE_PACKETS as usize);
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .context("the phone hears nothing")?
        .context("the phone's recording was dropped")?;

    let mut latency = Latency::default();
    for k in 0..clicks {
        match to_bridge(&ticker, &sending, conference, room, &template).await? {
            Ok(ms) => latency.phone_to_bridge_ms.push(ms),
            Err(miss) => latency
                .missed
                .push(format!("phone → bridge click {k}: {miss}")),
        }
    }
    for k in 0..clicks {
        match to_phone(
            call,
            conference,
            room,
            &speaker_click,
            emitted.at,
            &template,
        )
        .await?
        {
            Ok(ms) => latency.bridge_to_phone_ms.push(ms),
            Err(miss) => latency
                .missed
                .push(format!("bridge → phone click {k}: {miss}")),
        }
    }
    drop(sending);
    Ok(latency)
}

/// One click phone → bridge: the latency in ms, or why it was not found. The outer error is a
/// failure of the lab (no session, nothing recorded).
async fn to_bridge(
    ticker: &Ticker,
    sending: &Sending,
    conference: &Conference,
    room: &str,
    template: &[i16],
) -> Result<std::result::Result<f64, String>> {
    // Recording first: it starts with the next packet, the click goes out on the next tick.
    let recording = conference.record(room, TO_BRIDGE_WINDOW)?;
    let mut frame = [0i16; phone::FRAME];
    frame[PHONE_OFFSET..PHONE_OFFSET + template.len()].copy_from_slice(template);
    let sent = tokio::time::timeout(Duration::from_secs(1), ticker.click_once(sending, frame))
        .await
        .context("the phone's click was not sent")?
        .context("the phone stopped sending")?;
    let recording = blocking(move || {
        recording
            .recv_timeout(TO_BRIDGE_WINDOW + Duration::from_secs(5))
            .context("the bridge's recording did not complete")
    })
    .await?;
    anyhow::ensure!(
        recording.samples.len() == recording.frame_arrivals.len() * phone::FRAME,
        "the bridge recorded {} samples in {} frames",
        recording.samples.len(),
        recording.frame_arrivals.len()
    );
    let packets: Vec<(usize, Instant)> = recording
        .frame_arrivals
        .iter()
        .enumerate()
        .map(|(i, &t)| (i * phone::FRAME, t))
        .collect();
    Ok(latency_ms(
        &recording.samples,
        &packets,
        template,
        (sent, PHONE_OFFSET as f64),
    ))
}

/// One click bridge → phone (see [`to_bridge`]). `emitted`: where the click is in the decoded
/// click packet.
async fn to_phone(
    call: &Call,
    conference: &Arc<Conference>,
    room: &str,
    click: &Arc<SpeakerClick>,
    emitted: f64,
    template: &[i16],
) -> Result<std::result::Result<f64, String>> {
    let heard = call.record(TO_PHONE_PACKETS);
    let sent = conference.inject_click(room, click)?;
    let sent = blocking(move || {
        sent.recv_timeout(Duration::from_secs(5))
            .context("the bridge did not send the click")
    })
    .await?;
    let heard = tokio::time::timeout(Duration::from_secs(10), heard)
        .await
        .context("the phone's recording did not complete")?
        .context("the phone's recording was dropped")?;
    Ok(latency_ms(
        &heard.samples,
        &heard.packets,
        template,
        (sent, emitted),
    ))
}

/// The latency of the click in `samples` (packets starting at `packets[i].0` arrived at
/// `packets[i].1`), sent at `sent.0` `sent.1` samples into its packet: ms, or why not found.
fn latency_ms(
    samples: &[i16],
    packets: &[(usize, Instant)],
    template: &[i16],
    sent: (Instant, f64),
) -> std::result::Result<f64, String> {
    let peak = correlate(samples, template)
        .ok_or_else(|| format!("nothing to correlate ({} samples)", samples.len()))?;
    if !peak.is_click() {
        return Err(format!("best match {peak:?} is not the click"));
    }
    let (arrived, offset) = stream_time(packets, peak.at)
        .ok_or_else(|| format!("no packet for sample {:.1}", peak.at))?;
    Ok(ms_between(sent.0, arrived) + (offset - sent.1) * 1000.0 / f64::from(RATE))
}

/// The packet carrying sample `at` (the last one starting at or before it): its arrival, and
/// how far into it `at` is, in samples.
fn stream_time(packets: &[(usize, Instant)], at: f64) -> Option<(Instant, f64)> {
    let i = packets.partition_point(|&(start, _)| start as f64 <= at.floor());
    let &(start, arrived) = packets.get(i.checked_sub(1)?)?;
    Some((arrived, at - start as f64))
}

/// `to - from` in ms, negative if `to` is earlier.
fn ms_between(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(from - to).as_secs_f64() * 1000.0,
    }
}

/// The click at `rate`: the same continuous waveform at any rate (so the 48 kHz one the speaker
/// encodes is the 8 kHz one the correlation looks for).
pub fn click(rate: u32) -> Vec<i16> {
    let d = CLICK_MS / 1000.0;
    let n = (f64::from(rate) * d).round() as usize;
    let sweep = (CLICK_TO_HZ - CLICK_FROM_HZ) / d;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let phase = 2.0 * std::f64::consts::PI * (CLICK_FROM_HZ * t + sweep * t * t / 2.0);
            let window = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * t / d).cos();
            (CLICK_PEAK * 32_767.0 * window * phase.sin()) as i16
        })
        .collect()
}

/// The best match of `template` in `samples`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Where the template starts, in samples (refined between samples by a parabola).
    pub at: f64,
    /// Normalised cross-correlation of the template and the window there (1: the same shape).
    pub ncc: f64,
    /// The correlation there over its RMS at every lag further than a template length away.
    pub prominence: f64,
}

impl Peak {
    /// Whether this is the click rather than the best of what happened to be there.
    pub fn is_click(&self) -> bool {
        self.ncc >= MIN_NCC && self.prominence >= MIN_PROMINENCE
    }
}

/// Cross-correlates `template` over `samples`, both whitened by a predictor fitted to
/// `samples`, and returns the lag of the largest positive correlation (codecs keep a click's
/// polarity); `None` when nothing correlates at all or there is too little recording around
/// the peak to judge it by.
pub fn correlate(samples: &[i16], template: &[i16]) -> Option<Peak> {
    if template.is_empty() || samples.len() < 3 * (template.len() + WHITEN_ORDER) {
        return None;
    }
    let x: Vec<f64> = samples.iter().map(|&v| f64::from(v)).collect();
    let a = whitener(&x)?;
    // Lags from WHITEN_ORDER on: before, the filter would run on the silence before the
    // recording, an edge that correlates with anything.
    let skip = a.len() - 1;
    let x = fir(&a, &x);
    let x = &x[skip..];
    // The template's whitened tail runs on past its end, as the click's does in the recording.
    let t: Vec<f64> = template
        .iter()
        .map(|&v| f64::from(v))
        .chain(std::iter::repeat_n(0.0, WHITEN_ORDER))
        .collect();
    let t = fir(&a, &t);
    let m = t.len();
    let energy_t: f64 = t.iter().map(|v| v * v).sum();
    let y: Vec<f64> = x
        .windows(m)
        .map(|w| w.iter().zip(&t).map(|(a, b)| a * b).sum())
        .collect();
    let (best, &peak) = y.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    if peak <= 0.0 || energy_t <= 0.0 {
        return None;
    }
    let energy_x: f64 = x[best..best + m].iter().map(|v| v * v).sum();
    let ncc = peak / (energy_x * energy_t).sqrt();
    let (sum, count) = y
        .iter()
        .enumerate()
        .filter(|(l, _)| l.abs_diff(best) > m)
        .fold((0.0, 0usize), |(s, c), (_, v)| (s + v * v, c + 1));
    if count < m {
        return None;
    }
    let rms = (sum / count as f64).sqrt();
    let prominence = if rms > 0.0 { peak / rms } else { f64::INFINITY };
    // The vertex of the parabola through the peak and its neighbours.
    let refine = match (best.checked_sub(1).map(|i| y[i]), y.get(best + 1)) {
        (Some(a), Some(&c)) if a - 2.0 * peak + c < 0.0 => {
            (0.5 * (a - c) / (a - 2.0 * peak + c)).clamp(-0.5, 0.5)
        }
        _ => 0.0,
    };
    Some(Peak {
        at: (best + skip) as f64 + refine,
        ncc,
        prominence,
    })
}

/// The order of the whitening predictor: enough for the lines of a few voices and tones.
const WHITEN_ORDER: usize = 32;

/// The prediction-error filter (1, a1, …, ap) of `x` (autocorrelation method, Levinson–Durbin):
/// the steady tones and voices under a click are predictable and cancel, the click is not and
/// stays, so they no longer swamp its correlation. `None` for silence.
fn whitener(x: &[f64]) -> Option<Vec<f64>> {
    let p = WHITEN_ORDER.min(x.len().saturating_sub(1));
    let mut r: Vec<f64> = (0..=p)
        .map(|k| x[k..].iter().zip(x).map(|(a, b)| a * b).sum())
        .collect();
    if r[0] <= 0.0 {
        return None;
    }
    // A -40 dB noise floor keeps the recursion stable on pure tones.
    r[0] *= 1.0 + 1e-4;
    let mut a = vec![0.0; p + 1];
    a[0] = 1.0;
    let mut err = r[0];
    for i in 1..=p {
        let acc: f64 = (0..i).map(|j| a[j] * r[i - j]).sum();
        let k = -acc / err;
        let prev = a.clone();
        for j in 1..i {
            a[j] = prev[j] + k * prev[i - j];
        }
        a[i] = k;
        err *= 1.0 - k * k;
        if err <= 0.0 {
            break;
        }
    }
    Some(a)
}

/// `x` through the FIR filter `a` (from silence), as long as `x`.
fn fir(a: &[f64], x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|n| {
            a.iter()
                .take(n + 1)
                .enumerate()
                .map(|(k, c)| c * x[n - k])
                .sum()
        })
        .collect()
}

/// Runs blocking work (the conference side's API) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow!("a blocking task failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::{ulaw_decode, ulaw_encode};
    use audiopus::coder::{Decoder, Encoder};
    use audiopus::{Application, Bitrate, Channels, SampleRate, Signal};
    use std::f64::consts::PI;

    fn tone(hz: f64, peak_dbfs: f64, n: usize) -> Vec<i16> {
        let a = 32_767.0 * 10f64.powf(peak_dbfs / 20.0);
        (0..n)
            .map(|i| (a * (2.0 * PI * hz * i as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    fn mix(into: &mut [i16], add: &[i16], at: usize) {
        for (x, &c) in into[at..].iter_mut().zip(add) {
            *x = x.saturating_add(c);
        }
    }

    /// White noise from a fixed seed, at `rms` of full scale.
    fn noise(n: usize, rms: f64, seed: u64) -> Vec<i16> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                // Sum of 4 uniforms: near enough Gaussian; xorshift, so no dependency.
                let mut u = 0.0;
                for _ in 0..4 {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    u += (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                }
                (u * (3.0f64).sqrt() * rms * 32_767.0) as i16
            })
            .collect()
    }

    /// Voice-like background at the phone with five speakers: harmonics of 120 Hz and tones
    /// inside the click's band, together louder than the click.
    fn busy_room(n: usize) -> Vec<i16> {
        let mut x = vec![0i16; n];
        for hz in [1900.0, 2200.0, 2500.0, 2800.0, 3100.0] {
            mix(&mut x, &tone(hz, -18.0, n), 0);
        }
        for h in 1..=12 {
            mix(
                &mut x,
                &tone(120.0 * f64::from(h), -24.0 - f64::from(h), n),
                0,
            );
        }
        x
    }

    #[test]
    fn a_delayed_click_over_a_tone_is_found_where_it_is() {
        let c = click(RATE);
        for at in [500, 1234, 3000] {
            let mut x = tone(440.0, -12.0, 4000);
            mix(&mut x, &c, at);
            let p = correlate(&x, &c).unwrap();
            assert!(p.is_click(), "{p:?}");
            assert!((p.at - at as f64).abs() <= 1.0, "{at}: {p:?}");
        }
    }

    #[test]
    fn a_click_through_mu_law_is_found_to_the_sample() {
        let c = click(RATE);
        let mut x = tone(440.0, -12.0, 8000);
        mix(&mut x, &c, 4321);
        let x: Vec<i16> = x.iter().map(|&s| ulaw_decode(ulaw_encode(s))).collect();
        let p = correlate(&x, &c).unwrap();
        assert!(p.is_click(), "{p:?}");
        assert!((p.at - 4321.0).abs() <= 1.0, "{p:?}");
    }

    /// Through the gateway's Opus (8 kHz, 20 kb/s, voice, complexity 5) and a decoder at 8 kHz:
    /// the click lands the encoder's look-ahead later.
    #[test]
    fn a_click_through_opus_is_found_a_look_ahead_later() {
        let c = click(RATE);
        for at in [2000usize, 2345, 4567] {
            let mut enc =
                Encoder::new(SampleRate::Hz8000, Channels::Mono, Application::Voip).unwrap();
            enc.set_complexity(5).unwrap();
            enc.set_bitrate(Bitrate::BitsPerSecond(20_000)).unwrap();
            enc.set_signal(Signal::Voice).unwrap();
            let lookahead = enc.lookahead().unwrap() as usize;
            let mut dec = Decoder::new(SampleRate::Hz8000, Channels::Mono).unwrap();
            let mut x = tone(440.0, -12.0, 8000);
            mix(&mut x, &c, at);
            let mut out = Vec::new();
            let (mut packet, mut pcm) = ([0u8; 400], [0i16; 160]);
            for frame in x.chunks_exact(160) {
                let n = enc.encode(frame, &mut packet).unwrap();
                let p = audiopus::packet::Packet::try_from(&packet[..n]).unwrap();
                let s = audiopus::MutSignals::try_from(&mut pcm[..]).unwrap();
                let got = dec.decode(Some(p), s, false).unwrap();
                out.extend_from_slice(&pcm[..got]);
            }
            let p = correlate(&out, &c).unwrap();
            assert!(p.is_click(), "{at}: {p:?}");
            let expected = (at + lookahead) as f64;
            assert!(
                (p.at - expected).abs() <= 1.0,
                "{at}: {p:?}, expected {expected}"
            );
        }
    }

    #[test]
    fn a_click_under_a_busy_room_is_still_found() {
        let c = click(RATE);
        let mut x = busy_room(12_800);
        mix(&mut x, &c, 7000);
        let x: Vec<i16> = x.iter().map(|&s| ulaw_decode(ulaw_encode(s))).collect();
        let p = correlate(&x, &c).unwrap();
        assert!(p.is_click(), "{p:?}");
        assert!((p.at - 7000.0).abs() <= 1.0, "{p:?}");
    }

    #[test]
    fn without_a_click_nothing_is_found() {
        let c = click(RATE);
        let backgrounds = [
            ("tone", tone(440.0, -12.0, 12_800)),
            ("speaker tones", {
                let mut x = tone(600.0, -12.0, 12_800);
                mix(&mut x, &tone(1100.0, -12.0, 12_800), 0);
                mix(&mut x, &tone(900.0, -12.0, 12_800), 0);
                x
            }),
            ("busy room", busy_room(12_800)),
            ("speaker tones in the click's band", {
                let mut x = tone(1900.0, -12.0, 12_800);
                mix(&mut x, &tone(2200.0, -12.0, 12_800), 0);
                mix(&mut x, &tone(2500.0, -12.0, 12_800), 0);
                x
            }),
            ("noise", noise(12_800, 0.1, 7)),
            ("faint noise", noise(12_800, 0.0005, 11)),
            ("silence", vec![0; 12_800]),
        ];
        for (name, x) in backgrounds {
            if let Some(p) = correlate(&x, &c) {
                assert!(!p.is_click(), "{name}: {p:?}");
            }
        }
        // Too short to judge a peak by.
        assert_eq!(correlate(&c, &c), None);
        assert_eq!(correlate(&[], &c), None);
    }

    #[test]
    fn the_48k_click_is_the_8k_click() {
        let (c8, c48) = (click(8000), click(48_000));
        assert_eq!((c8.len(), c48.len()), (64, 384));
        for (i, &s) in c8.iter().enumerate() {
            assert!((i32::from(s) - i32::from(c48[6 * i])).abs() <= 1, "{i}");
        }
        assert!(PHONE_OFFSET + c8.len() <= phone::FRAME);
    }

    #[test]
    fn a_sample_maps_to_the_packet_that_carried_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let packets = [(0, t0), (160, t0 + ms(20)), (480, t0 + ms(45))];
        assert_eq!(stream_time(&packets, 10.5), Some((t0, 10.5)));
        assert_eq!(stream_time(&packets, 160.0), Some((t0 + ms(20), 0.0)));
        // 320..480 was lost: the packet before it is the nearest, its samples are not there.
        assert_eq!(stream_time(&packets, 500.0), Some((t0 + ms(45), 20.0)));
        assert_eq!(stream_time(&[], 5.0), None);
        // A click sent 16 samples into a packet at t0, arrived 20 samples into one at t0 + 45 ms.
        let mut samples = tone(440.0, -12.0, 640);
        mix(&mut samples, &click(RATE), 500);
        let got = latency_ms(&samples, &packets, &click(RATE), (t0, 16.0)).unwrap();
        assert!((got - 45.5).abs() < 0.2, "{got}");
        // No click: an error saying what was seen, not a lag.
        let plain = tone(440.0, -12.0, 640);
        assert!(latency_ms(&plain, &packets, &click(RATE), (t0, 16.0)).is_err());
        assert!(ms_between(t0 + ms(5), t0) < -4.9);
    }

    /// The speaker's click as the bridge sends it: Opus-encoded in its loop (a voice and a tone
    /// under it) and decoded at 8 kHz, it is where the encoder's look-ahead puts it.
    #[test]
    fn the_speakers_click_is_found_in_its_decoded_packet() {
        let c = crate::conference::speaker_click(
            -12.0,
            crate::conference::SpeakerSignal::VoiceAndTone,
            &click(48_000),
            SPEAKER_OFFSET_48K,
        )
        .unwrap();
        let p = correlate(&c.decoded, &click(RATE)).unwrap();
        assert!(p.is_click(), "{p:?}");
        // 1 ms in, plus libopus's 6.5 ms look-ahead at 48 kHz.
        let expected = (SPEAKER_OFFSET_48K + 312) as f64 / 6.0;
        assert!((p.at - expected).abs() <= 1.0, "{p:?}, expected {expected}");
    }

    #[test]
    fn median_and_max() {
        assert_eq!(Latency::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(Latency::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(Latency::median(&[]).is_nan());
        assert_eq!(Latency::max(&[3.0, 7.0, 2.0]), 7.0);
        assert!(Latency::max(&[]).is_nan());
    }
}
