//! The live calls of this process: what the API reports, what the brewery publishes as load,
//! and what a drain waits for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::watch;

/// One live call as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub call_id: String,
    /// The room, once routed.
    pub room: Option<String>,
    /// Occupants of that room besides us and the focus, as last seen.
    pub others_in_room: usize,
    pub state: &'static str,
}

#[derive(Debug)]
pub struct Registry {
    calls: Mutex<HashMap<u64, CallInfo>>,
    next_id: AtomicU64,
    total: AtomicU64,
    total_with_media: AtomicU64,
    /// The load as of the last change, for whoever publishes it (the brewery presence).
    load: watch::Sender<Load>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            calls: Mutex::default(),
            next_id: AtomicU64::default(),
            total: AtomicU64::default(),
            total_with_media: AtomicU64::default(),
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

/// Figures in jigasi's terms (`/about/stats`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Rooms with at least one of our calls.
    pub conferences: usize,
    /// Members of those rooms (jigasi counts every member, not just its calls).
    pub participants: usize,
    pub calls: usize,
    pub total_calls: u64,
    pub total_calls_with_connected_media: u64,
}

/// Removes its call from the registry when dropped, however the call's task ends.
#[derive(Debug)]
pub struct Registration<'a> {
    registry: &'a Registry,
    id: u64,
}

impl Registry {
    pub fn register(&self, call_id: &str) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            CallInfo {
                call_id: call_id.to_owned(),
                room: None,
                others_in_room: 0,
                state: "new",
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
        let s = self.snapshot();
        let load = Load {
            conferences: s.conferences,
            participants: s.participants,
            calls: s.calls,
        };
        self.load
            .send_if_modified(|l| std::mem::replace(l, load) != load);
    }

    pub fn snapshot(&self) -> Snapshot {
        let calls = self.lock();
        let mut rooms: HashMap<&str, usize> = HashMap::new();
        for c in calls.values() {
            if let Some(room) = &c.room {
                // Every call in a room sees the same others; count ourselves once per call.
                let members = rooms.entry(room).or_insert(c.others_in_room);
                *members = (*members).max(c.others_in_room);
            }
        }
        let ours_per_room = |room: &str| {
            calls
                .values()
                .filter(|c| c.room.as_deref() == Some(room))
                .count()
        };
        Snapshot {
            conferences: rooms.len(),
            participants: rooms
                .iter()
                .map(|(r, others)| others + ours_per_room(r))
                .sum(),
            calls: calls.len(),
            total_calls: self.total.load(Ordering::Relaxed),
            total_calls_with_connected_media: self.total_with_media.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CallInfo>> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registration<'_> {
    pub fn update(&self, f: impl FnOnce(&mut CallInfo)) {
        let changed = match self.registry.lock().get_mut(&self.id) {
            Some(info) => {
                let before = info.clone();
                f(info);
                *info != before
            }
            None => false,
        };
        if changed {
            self.registry.publish();
        }
    }

    pub fn media_connected(&self) {
        self.registry
            .total_with_media
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.registry.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_count_while_registered_and_rooms_count_members_once() {
        let reg = Registry::default();
        let a = reg.register("a");
        let b = reg.register("b");
        a.update(|c| (c.room, c.others_in_room) = (Some("r1".into()), 3));
        b.update(|c| (c.room, c.others_in_room) = (Some("r1".into()), 3));
        let s = reg.snapshot();
        assert_eq!(
            (s.conferences, s.participants, s.calls, s.total_calls),
            (1, 5, 2, 2)
        );
        drop(a);
        drop(b);
        let s = reg.snapshot();
        assert_eq!(
            (s.conferences, s.participants, s.calls, s.total_calls),
            (0, 0, 0, 2)
        );
    }

    #[test]
    fn the_load_is_published_when_it_changes_and_only_then() {
        let reg = Registry::default();
        let mut load = reg.load();
        let a = reg.register("a");
        assert!(load.has_changed().unwrap());
        assert_eq!(load.borrow_and_update().calls, 1);
        a.update(|c| (c.room, c.others_in_room) = (Some("r1".into()), 2));
        assert_eq!(
            *load.borrow_and_update(),
            Load {
                conferences: 1,
                participants: 3,
                calls: 1
            }
        );
        a.update(|c| c.state = "live");
        assert!(!load.has_changed().unwrap(), "the state is not load");
        drop(a);
        assert_eq!(*load.borrow_and_update(), Load::default());
    }
}
