//! The live calls of this process: what the API reports and what a drain waits for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

#[derive(Debug, Default)]
pub struct Registry {
    calls: Mutex<HashMap<u64, CallInfo>>,
    next_id: AtomicU64,
    total: AtomicU64,
    total_with_media: AtomicU64,
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
        Registration { registry: self, id }
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
        if let Some(info) = self.registry.lock().get_mut(&self.id) {
            f(info);
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
}
