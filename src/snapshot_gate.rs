//! snapshot_gate.rs decides, on the dispatcher thread of a topic, whether a snapshot may still be
//! delivered: it never blocks a live event and never holds one back.
//!
//! The rule (docs in [`Snapshots`](crate::Snapshots)): a fetch of topic T *begins* just before
//! its REST request is sent. A live event of T received (read from the socket) after that moment
//! *supersedes* the snapshot: the snapshot is then skipped, because the live stream already
//! carries T's state from after the gap (a presence or routing-status event carries the whole
//! state, not a change). Otherwise the snapshot is delivered, in the topic's queue behind every
//! live event received before the REST answer, and every live event received after it follows
//! it. So a snapshot is never delivered after a live event newer than it, live events are never
//! held, dropped or reordered, and the last thing a listener sees is either the snapshot (no
//! change since the fetch began: it is the server's state) or the latest live event.

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

struct Fetch {
    began: Instant,
    superseded: bool,
}

/// Topics whose snapshot fetch is in flight, shared by the resync engine and the dispatcher.
#[derive(Default)]
pub(crate) struct SnapshotGate {
    /// Entries in `fetches`: lets the dispatcher skip the lock while no fetch is in flight.
    active: AtomicUsize,
    /// Lower-cased individual topic → its fetch. At most one entry per subscribed topic.
    fetches: Mutex<FxHashMap<Box<str>, Fetch>>,
    /// Snapshots skipped because a live event superseded them.
    superseded: AtomicU64,
    /// Snapshots taken out of a queue undelivered (`Backpressure::DropOldest`, a shutdown).
    dropped: AtomicU64,
}

impl SnapshotGate {
    /// Marks the fetch of `topics` (lower-cased individual names) as beginning at `now`.
    pub(crate) fn begin<'a>(&self, topics: impl IntoIterator<Item = &'a str>, now: Instant) {
        let mut fetches = self.fetches.lock();
        for topic in topics {
            fetches.insert(
                topic.into(),
                Fetch {
                    began: now,
                    superseded: false,
                },
            );
        }
        self.active.store(fetches.len(), Ordering::SeqCst);
    }

    /// Forgets the fetch of `topic` (no snapshot will come: the fetch failed).
    pub(crate) fn cancel(&self, topic: &str) {
        let mut fetches = self.fetches.lock();
        fetches.remove(&*topic.to_ascii_lowercase());
        self.active.store(fetches.len(), Ordering::SeqCst);
    }

    /// A queued snapshot of `topic` was dropped before delivery: forgets its fetch (else the
    /// entry stayed until the topic's next snapshot, and every live event of every dispatcher
    /// thread took the `fetches` lock meanwhile) and counts it.
    pub(crate) fn dropped(&self, topic: &str) {
        self.cancel(topic);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A live event of `topic` received at `received` is being delivered.
    pub(crate) fn note_live(&self, topic: &str, received: Instant) {
        if self.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        // Topic names arrive mostly lower-case already: copy only when they are not.
        let lowered;
        let key = if topic.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = topic.to_ascii_lowercase();
            lowered.as_str()
        } else {
            topic
        };
        if let Some(fetch) = self.fetches.lock().get_mut(key) {
            if received >= fetch.began {
                fetch.superseded = true;
            }
        }
    }

    /// The snapshot of `topic` is next in its queue: whether to deliver it (ends its fetch).
    pub(crate) fn admit(&self, topic: &str) -> bool {
        let mut fetches = self.fetches.lock();
        let fetch = fetches.remove(&*topic.to_ascii_lowercase());
        self.active.store(fetches.len(), Ordering::SeqCst);
        let admitted = fetch.is_none_or(|f| !f.superseded);
        if !admitted {
            self.superseded.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Snapshots skipped so far.
    pub(crate) fn superseded(&self) -> u64 {
        self.superseded.load(Ordering::Relaxed)
    }

    /// Snapshots dropped undelivered so far ([`SnapshotGate::dropped`]).
    pub(crate) fn dropped_count(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn snapshot_is_admitted_when_no_live_event_came_after_its_fetch_began() {
        let gate = SnapshotGate::default();
        let before = Instant::now();
        let began = before + Duration::from_millis(10);
        gate.begin(["v2.users.a.presence"], began);
        // An event read before the fetch began is older than the snapshot.
        gate.note_live("v2.users.a.presence", before);
        // Another topic does not matter.
        gate.note_live("v2.users.b.presence", began + Duration::from_secs(1));
        assert!(gate.admit("v2.users.a.presence"));
        assert_eq!(gate.active.load(Ordering::Acquire), 0);
    }

    #[test]
    fn live_event_after_the_fetch_began_supersedes_the_snapshot_in_any_case() {
        let gate = SnapshotGate::default();
        let began = Instant::now();
        gate.begin(["v2.users.a.routingstatus"], began);
        gate.note_live("v2.users.A.routingStatus", began + Duration::from_millis(1));
        assert!(!gate.admit("v2.users.a.routingStatus"));
        assert_eq!(gate.superseded(), 1);
        // The fetch ended: a later snapshot without a fetch is not held back.
        assert!(gate.admit("v2.users.a.routingstatus"));
    }

    #[test]
    fn dropped_snapshot_frees_the_gate_and_is_counted() {
        let gate = SnapshotGate::default();
        gate.begin(["x.a"], Instant::now());
        gate.dropped("X.A");
        assert_eq!(gate.active.load(Ordering::Acquire), 0);
        assert_eq!((gate.dropped_count(), gate.superseded()), (1, 0));
    }

    #[test]
    fn cancelled_fetch_frees_the_gate() {
        let gate = SnapshotGate::default();
        gate.begin(["x.a", "x.b"], Instant::now());
        assert_eq!(gate.active.load(Ordering::Acquire), 2);
        gate.cancel("x.a");
        gate.cancel("X.B");
        assert_eq!(gate.active.load(Ordering::Acquire), 0);
    }
}
