//! The live calls of this process and the totals of those that ended: what the API reports,
//! what the brewery publishes as load, and what a drain waits for.

use super::machine::CallPhase;
use super::stats::{MediaTotals, SetupFigures, Totals};
use crate::media::MediaStats;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Jigasi's `CONFERENCES_THRESHOLD`: the stress level is conferences over this.
const CONFERENCES_THRESHOLD: f64 = 100.0;

/// Jigasi's `conference_sizes`: rooms by member count, the last bucket holding every larger one.
const CONFERENCE_SIZE_BUCKETS: usize = 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Dial-in: the phone called us.
    In,
    /// Dial-out: the room asked us to call.
    Out,
}

/// One live call as its driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub call_id: String,
    pub direction: Direction,
    /// The room, once routed.
    pub room: Option<String>,
    /// Occupants of that room besides us and the focus, as last seen.
    pub others_in_room: usize,
    pub phase: CallPhase,
    /// Our presence is in the room.
    pub joined: bool,
    /// Start → answered on the phone side, once it was.
    pub setup: Option<Duration>,
}

/// What the registry keeps of a live call besides what its driver reports.
#[derive(Debug)]
struct Entry {
    info: CallInfo,
    started: Instant,
    /// The running media's counters; the last values stay once the media stopped.
    media: Option<watch::Receiver<MediaStats>>,
    dropped_media: bool,
    connection_failed: bool,
    migrated: bool,
}

impl Entry {
    fn media_now(&self) -> Option<MediaStats> {
        self.media.as_ref().map(|m| *m.borrow())
    }
}

#[derive(Debug)]
pub struct Registry {
    calls: Mutex<HashMap<u64, Entry>>,
    totals: Mutex<Totals>,
    next_id: AtomicU64,
    /// The load as of the last change, for whoever publishes it (the brewery presence).
    load: watch::Sender<Load>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            calls: Mutex::default(),
            totals: Mutex::default(),
            next_id: AtomicU64::default(),
            load: watch::channel(Load::default()).0,
        }
    }
}

/// What Jicofo balances on: rooms with calls of ours and the people in them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub conferences: usize,
    pub participants: usize,
    pub calls: usize,
}

impl Load {
    /// Jigasi's stress level: conferences over its threshold of 100.
    pub fn stress_level(&self) -> f64 {
        self.conferences as f64 / CONFERENCES_THRESHOLD
    }
}

/// One live call, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    pub direction: Direction,
    pub room: Option<String>,
    pub state: &'static str,
    pub duration_s: f64,
    pub setup_ms: Option<f64>,
    /// The call's media counters, refreshed every second; None before media started.
    pub media: Option<MediaStats>,
}

/// Everything the API reports, read at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Rooms with at least one of our calls.
    pub conferences: usize,
    /// Members of those rooms (jigasi counts every member, not just its calls).
    pub participants: usize,
    pub calls: usize,
    pub stress_level: f64,
    /// Jigasi's `conference_sizes`: index n counts our rooms of n members (the last, 21 or more).
    pub conference_sizes: Vec<usize>,
    /// Live calls per phase, every phase listed.
    pub by_phase: Vec<(CallPhase, usize)>,
    pub total_calls: u64,
    pub total_calls_with_connected_media: u64,
    pub total_conferences_completed: u64,
    pub total_participants: u64,
    /// Seconds of calls: ended ones, plus the live ones so far.
    pub total_call_seconds: f64,
    pub total_calls_with_dropped_media: u64,
    pub total_count_dropped_media: u64,
    pub total_calls_with_connection_failed: u64,
    pub total_calls_with_jvb_migrate: u64,
    pub total_calls_jvb_no_media: u64,
    /// RTP counters of every call, ended and live (so they only grow).
    pub media: MediaTotals,
    pub setup_in: SetupFigures,
    pub setup_out: SetupFigures,
    pub live: Vec<LiveCall>,
}

/// Removes its call from the registry when dropped, however the call's task ends.
#[derive(Debug)]
pub struct Registration<'a> {
    registry: &'a Registry,
    id: u64,
}

impl Registry {
    pub fn register(&self, call_id: &str, direction: Direction) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.totals().calls += 1;
        self.lock().insert(
            id,
            Entry {
                info: CallInfo {
                    call_id: call_id.to_owned(),
                    direction,
                    room: None,
                    others_in_room: 0,
                    phase: CallPhase::Connecting,
                    joined: false,
                    setup: None,
                },
                started: Instant::now(),
                media: None,
                dropped_media: false,
                connection_failed: false,
                migrated: false,
            },
        );
        self.publish();
        Registration { registry: self, id }
    }

    /// The load now and at every change.
    pub fn load(&self) -> watch::Receiver<Load> {
        self.load.subscribe()
    }

    fn publish(&self) {
        let load = {
            let calls = self.lock();
            load_of(&rooms(&calls), calls.len())
        };
        self.load
            .send_if_modified(|l| std::mem::replace(l, load) != load);
    }

    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let calls = self.lock();
        let totals = self.totals().clone();
        let rooms = rooms(&calls);
        let mut conference_sizes = vec![0; CONFERENCE_SIZE_BUCKETS];
        for &members in rooms.values() {
            conference_sizes[members.min(CONFERENCE_SIZE_BUCKETS - 1)] += 1;
        }
        let by_phase = CallPhase::ALL
            .iter()
            .map(|&p| (p, calls.values().filter(|e| e.info.phase == p).count()))
            .collect();
        let mut media = totals.media;
        let mut live_seconds = 0.0;
        let mut live: Vec<LiveCall> = calls
            .values()
            .map(|e| {
                let m = e.media_now();
                if let Some(m) = &m {
                    media.add(m);
                }
                let duration_s = (now - e.started).as_secs_f64();
                live_seconds += duration_s;
                LiveCall {
                    call_id: e.info.call_id.clone(),
                    direction: e.info.direction,
                    room: e.info.room.clone(),
                    state: e.info.phase.name(),
                    duration_s,
                    setup_ms: e.info.setup.map(|d| d.as_secs_f64() * 1000.0),
                    media: m,
                }
            })
            .collect();
        live.sort_by(|a, b| b.duration_s.total_cmp(&a.duration_s));
        let load = load_of(&rooms, calls.len());
        Snapshot {
            conferences: load.conferences,
            participants: load.participants,
            calls: load.calls,
            stress_level: load.stress_level(),
            conference_sizes,
            by_phase,
            total_calls: totals.calls,
            total_calls_with_connected_media: totals.calls_with_connected_media,
            total_conferences_completed: totals.conferences_completed,
            total_participants: totals.participants,
            total_call_seconds: totals.call_seconds + live_seconds,
            total_calls_with_dropped_media: totals.calls_with_dropped_media,
            total_count_dropped_media: totals.dropped_media,
            total_calls_with_connection_failed: totals.calls_with_connection_failed,
            total_calls_with_jvb_migrate: totals.calls_with_jvb_migrate,
            total_calls_jvb_no_media: totals.calls_jvb_no_media,
            media,
            setup_in: totals.setup_in.figures(),
            setup_out: totals.setup_out.figures(),
            live,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn load_of(rooms: &HashMap<&str, usize>, calls: usize) -> Load {
    Load {
        conferences: rooms.len(),
        participants: rooms.values().sum(),
        calls,
    }
}

/// Members per room with calls of ours: the others every call there last saw, plus our calls.
fn rooms(calls: &HashMap<u64, Entry>) -> HashMap<&str, usize> {
    let mut others: HashMap<&str, (usize, usize)> = HashMap::new();
    for e in calls.values() {
        if let Some(room) = &e.info.room {
            // Every call in a room sees the same others; count each of ours once.
            let (o, ours) = others.entry(room).or_default();
            *o = (*o).max(e.info.others_in_room);
            *ours += 1;
        }
    }
    others
        .into_iter()
        .map(|(room, (o, ours))| (room, o + ours))
        .collect()
}

impl Registration<'_> {
    pub fn update(&self, f: impl FnOnce(&mut CallInfo)) {
        let (changed, newly_joined, newly_set_up) = match self.registry.lock().get_mut(&self.id) {
            Some(entry) => {
                let before = entry.info.clone();
                f(&mut entry.info);
                let info = &entry.info;
                (
                    *info != before,
                    info.joined && !before.joined,
                    info.setup
                        .filter(|_| before.setup.is_none())
                        .map(|d| (d, info.direction)),
                )
            }
            None => (false, false, None),
        };
        if newly_joined || newly_set_up.is_some() {
            let mut totals = self.registry.totals();
            if newly_joined {
                totals.participants += 1;
            }
            match newly_set_up {
                Some((d, Direction::In)) => totals.setup_in.record(d),
                Some((d, Direction::Out)) => totals.setup_out.record(d),
                None => {}
            }
        }
        if changed {
            self.registry.publish();
        }
    }

    pub fn media_connected(&self) {
        self.registry.totals().calls_with_connected_media += 1;
    }

    /// The call's media runs: its counters are read from here on.
    pub fn media_started(&self, stats: watch::Receiver<MediaStats>) {
        self.with_entry(|e| e.media = Some(stats));
    }

    /// The phone's RTP stopped (jigasi's dropped media).
    pub fn phone_media_dropped(&self) {
        let first = self.with_entry(|e| !std::mem::replace(&mut e.dropped_media, true));
        let mut totals = self.registry.totals();
        totals.dropped_media += 1;
        if first == Some(true) {
            totals.calls_with_dropped_media += 1;
        }
    }

    /// The bridge leg failed or never came up.
    pub fn conference_failed(&self) {
        if self.with_entry(|e| !std::mem::replace(&mut e.connection_failed, true)) == Some(true) {
            self.registry.totals().calls_with_connection_failed += 1;
        }
    }

    /// A re-invite moved the call to a new bridge leg.
    pub fn conference_replaced(&self) {
        if self.with_entry(|e| !std::mem::replace(&mut e.migrated, true)) == Some(true) {
            self.registry.totals().calls_with_jvb_migrate += 1;
        }
    }

    fn with_entry<T>(&self, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        self.registry.lock().get_mut(&self.id).map(f)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let (entry, room_empty) = {
            let mut calls = self.registry.lock();
            let Some(entry) = calls.remove(&self.id) else {
                return;
            };
            let room_empty = entry.info.joined
                && entry.info.room.as_ref().is_some_and(|room| {
                    !calls
                        .values()
                        .any(|e| e.info.joined && e.info.room.as_ref() == Some(room))
                });
            (entry, room_empty)
        };
        {
            let mut totals = self.registry.totals();
            totals.call_seconds += entry.started.elapsed().as_secs_f64();
            if room_empty {
                totals.conferences_completed += 1;
            }
            let media = entry.media_now();
            if let Some(m) = &media {
                totals.media.add(m);
            }
            let heard_bridge = media.is_some_and(|m| m.conference.packets_in > 0);
            if entry.info.setup.is_some() && !heard_bridge {
                totals.calls_jvb_no_media += 1;
            }
        }
        self.registry.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::LegStats;

    fn in_room(reg: &Registration<'_>, room: &str, others: usize) {
        reg.update(|c| {
            (c.room, c.others_in_room, c.joined) = (Some(room.into()), others, true);
        });
    }

    #[test]
    fn calls_count_while_registered_and_rooms_count_members_once() {
        let reg = Registry::default();
        let a = reg.register("a", Direction::In);
        let b = reg.register("b", Direction::In);
        in_room(&a, "r1", 3);
        in_room(&b, "r1", 3);
        let s = reg.snapshot();
        assert_eq!(
            (s.conferences, s.participants, s.calls, s.total_calls),
            (1, 5, 2, 2)
        );
        assert_eq!(s.conference_sizes[5], 1);
        assert_eq!(s.conference_sizes.iter().sum::<usize>(), 1);
        assert_eq!(s.total_participants, 2);
        drop(a);
        assert_eq!(
            reg.snapshot().total_conferences_completed,
            0,
            "b is still in the room"
        );
        drop(b);
        let s = reg.snapshot();
        assert_eq!(
            (s.conferences, s.participants, s.calls, s.total_calls),
            (0, 0, 0, 2)
        );
        assert_eq!(s.total_conferences_completed, 1);
    }

    #[test]
    fn the_load_is_published_when_it_changes_and_only_then() {
        let reg = Registry::default();
        let mut load = reg.load();
        let a = reg.register("a", Direction::Out);
        assert!(load.has_changed().unwrap());
        assert_eq!(load.borrow_and_update().calls, 1);
        in_room(&a, "r1", 2);
        assert_eq!(
            *load.borrow_and_update(),
            Load {
                conferences: 1,
                participants: 3,
                calls: 1
            }
        );
        a.update(|c| c.phase = CallPhase::Connected);
        assert!(!load.has_changed().unwrap(), "the phase is not load");
        drop(a);
        assert_eq!(*load.borrow_and_update(), Load::default());
    }

    #[test]
    fn phases_are_counted_and_every_phase_is_listed() {
        let reg = Registry::default();
        let a = reg.register("a", Direction::In);
        let _b = reg.register("b", Direction::Out);
        a.update(|c| c.phase = CallPhase::Connected);
        let s = reg.snapshot();
        assert_eq!(s.by_phase.len(), CallPhase::ALL.len());
        let count = |p| s.by_phase.iter().find(|(q, _)| *q == p).unwrap().1;
        assert_eq!(count(CallPhase::Connected), 1);
        assert_eq!(count(CallPhase::Connecting), 1);
        assert_eq!(count(CallPhase::Ringing), 0);
    }

    #[test]
    fn a_setup_is_recorded_once_per_call_in_its_direction() {
        let reg = Registry::default();
        let a = reg.register("a", Direction::In);
        a.update(|c| c.setup = Some(Duration::from_millis(40)));
        a.update(|c| c.phase = CallPhase::Connected);
        let o = reg.register("o", Direction::Out);
        o.update(|c| c.setup = Some(Duration::from_secs(3)));
        let s = reg.snapshot();
        assert_eq!((s.setup_in.count, s.setup_in.p50_ms), (1, Some(40.0)));
        assert_eq!((s.setup_out.count, s.setup_out.max_ms), (1, Some(3000.0)));
        assert_eq!(
            s.live.iter().find(|c| c.call_id == "a").unwrap().setup_ms,
            Some(40.0)
        );
    }

    #[test]
    fn media_counters_are_live_while_the_call_runs_and_kept_in_the_totals_after() {
        let reg = Registry::default();
        let a = reg.register("a", Direction::In);
        a.update(|c| c.setup = Some(Duration::from_millis(40)));
        let (tx, rx) = watch::channel(MediaStats::default());
        a.media_started(rx);
        let leg = |n| LegStats {
            packets_in: n,
            lost: 1,
            ..LegStats::default()
        };
        tx.send_replace(MediaStats {
            phone: leg(50),
            conference: leg(40),
        });
        let s = reg.snapshot();
        assert_eq!(s.media.phone.packets_in, 50);
        assert_eq!(s.live[0].media.unwrap().conference.packets_in, 40);
        tx.send_replace(MediaStats {
            phone: leg(100),
            conference: leg(90),
        });
        drop(tx);
        drop(a);
        let s = reg.snapshot();
        assert_eq!(
            (s.media.phone.packets_in, s.media.conference.lost),
            (100, 1)
        );
        assert_eq!(s.total_calls_jvb_no_media, 0);
        assert!(s.live.is_empty());
    }

    #[test]
    fn an_answered_call_that_never_heard_the_bridge_counts_as_jvb_no_media() {
        let reg = Registry::default();
        let a = reg.register("a", Direction::In);
        a.update(|c| c.setup = Some(Duration::from_millis(40)));
        a.media_started(watch::channel(MediaStats::default()).1);
        let unanswered = reg.register("b", Direction::In);
        drop(a);
        drop(unanswered);
        assert_eq!(reg.snapshot().total_calls_jvb_no_media, 1);
    }

    #[test]
    fn dropped_media_counts_events_and_calls_and_failures_count_calls_once() {
        let reg = Registry::default();
        let a = reg.register("a", Direction::In);
        a.phone_media_dropped();
        a.phone_media_dropped();
        a.conference_failed();
        a.conference_failed();
        a.conference_replaced();
        let s = reg.snapshot();
        assert_eq!(
            (
                s.total_count_dropped_media,
                s.total_calls_with_dropped_media,
                s.total_calls_with_connection_failed,
                s.total_calls_with_jvb_migrate
            ),
            (2, 1, 1, 1)
        );
    }
}
