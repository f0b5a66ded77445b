//! dispatch/queue.rs owns the bounded queues of dispatch/ (one per dispatcher thread, and the
//! lifecycle queue) and their accounting of events and bytes (packed running totals, waking
//! blocked senders); it never decides what to drop (the backpressure policy is the
//! dispatcher's) and never runs a callback.

use crate::event::Event;
use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Queue accounting packs an event count and a byte count in one word: the count in the high
/// 24 bits, the bytes in the low 40. The words are running totals (events and bytes pushed so
/// far, or popped so far), compared with wrapping arithmetic: their difference is what the
/// queue holds, exactly, as long as it holds fewer than 2^24 events and 2^40 bytes (the
/// settings' ranges ensure both).
const COUNT_SHIFT: u32 = 40;
const BYTES_MASK: u64 = (1 << COUNT_SHIFT) - 1;
/// With several dispatcher threads, a queue holding this many events copies the frames it takes
/// out of the socket read buffers ([`Dispatcher::push`]).
pub(super) const UNPIN_DEPTH: u64 = 32;
/// How many pushes apart a producer looks at the true depth of a queue for [`UNPIN_DEPTH`].
const UNPIN_SAMPLE: u64 = 16;

fn packed(events: u64, bytes: u64) -> u64 {
    (events << COUNT_SHIFT) | bytes
}

/// Keeps a value on a cache line of its own, so that one thread writing it does not slow
/// down another reading its neighbours.
#[repr(align(128))]
struct Padded<T>(T);

/// The totals the socket threads keep.
struct ProducerTotals {
    pushed: AtomicU64,
    /// The consumer's `popped` as last read by a socket thread: an estimate that is never
    /// ahead of the truth, so room is never overestimated; refreshed only when it says full.
    popped_seen: AtomicU64,
}

/// One dispatcher thread's queue (of events; the lifecycle queue is one of lifecycle messages),
/// with its limits in events and in bytes. The hot path touches no cache line written by the
/// other side: socket threads add to `pushed` (their line) and check room against a stale but
/// safe copy of `popped`; the dispatcher thread adds to `popped` (its line). Both ends are
/// kept, the receiver for `DropOldest`. `None` tells the thread to stop (it takes no room).
pub(super) struct Queue<T = Event> {
    pub(super) tx: Sender<Option<T>>,
    pub(super) rx: Receiver<Option<T>>,
    producers: Padded<ProducerTotals>,
    popped: Padded<AtomicU64>,
    /// Socket threads waiting for room ([`Backpressure::Block`]).
    waiters: Padded<AtomicUsize>,
    room_lock: Mutex<()>,
    room: Condvar,
    capacity: u64,
    capacity_bytes: u64,
    /// Blocked senders are woken once the queue holds at most this many events (and half its
    /// byte capacity): see [`Queue::drained`].
    wake_depth: u64,
    /// How many times `release` woke the waiters.
    #[cfg(test)]
    wakes: AtomicU64,
}

impl<T> Queue<T> {
    /// A queue of at most `capacity` events and `capacity_bytes` bytes whose blocked senders
    /// are woken once it drained to half ([`Queue::drained`]).
    pub(super) fn new(capacity: usize, capacity_bytes: usize) -> Queue<T> {
        Queue::with_wake_depth(capacity, capacity_bytes, capacity / 2)
    }

    /// A queue whose blocked senders are woken once it holds at most `wake_depth` events.
    pub(super) fn with_wake_depth(
        capacity: usize,
        capacity_bytes: usize,
        wake_depth: usize,
    ) -> Queue<T> {
        // The limits are this struct's accounting, not the channel's: the channel is a list of
        // blocks of 31 slots, allocated as events arrive and freed as the thread takes them out,
        // so an idle queue holds no slots at all. An array sized for the capacity was allocated
        // and touched at `build()`: 1 025 slots of 168 bytes, 172 KiB of every client's memory
        // (its own mapping in /proc/self/smaps), most of it never used by a client of few
        // events (issue 20: 100 clients held 17 MiB of such arrays). The price, profiled
        // (callgrind, 50 000 small events): crossbeam zeroes each block of 31 slots it
        // allocates, about 210 instructions per event on the socket thread (11 302 -> 11 515
        // for the whole process, +1.9 %); events/s and CPU time per event did not change
        // beyond the noise (benches/load_process), the socket thread not being the bottleneck.
        let (tx, rx) = unbounded();
        Queue {
            tx,
            rx,
            producers: Padded(ProducerTotals {
                pushed: AtomicU64::new(0),
                popped_seen: AtomicU64::new(0),
            }),
            popped: Padded(AtomicU64::new(0)),
            waiters: Padded(AtomicUsize::new(0)),
            room_lock: Mutex::new(()),
            room: Condvar::new(),
            capacity: capacity as u64,
            capacity_bytes: capacity_bytes as u64,
            wake_depth: wake_depth as u64,
            #[cfg(test)]
            wakes: AtomicU64::new(0),
        }
    }

    /// Whether an event of `bytes` fits when the queue holds `held` (packed). An empty queue
    /// takes any one event, so one bigger than the byte capacity is not refused for ever.
    fn fits(&self, held: u64, bytes: u64) -> bool {
        let events = held >> COUNT_SHIFT;
        events < self.capacity
            && (events == 0 || (held & BYTES_MASK) + bytes <= self.capacity_bytes)
    }

    /// Reserves room for one event of `bytes`, if it fits.
    pub(super) fn try_reserve(&self, bytes: u64) -> bool {
        let totals = &self.producers.0;
        // `popped_seen` first: it is never ahead of `popped`, which is never ahead of `pushed`
        // read after it, so the difference is never negative.
        let mut seen = totals.popped_seen.load(Ordering::SeqCst);
        let mut pushed = totals.pushed.load(Ordering::SeqCst);
        loop {
            if !self.fits(pushed.wrapping_sub(seen), bytes) {
                // Full by the estimate: look at what the dispatcher thread really took.
                seen = self.popped.0.load(Ordering::SeqCst);
                totals.popped_seen.store(seen, Ordering::SeqCst);
                pushed = totals.pushed.load(Ordering::SeqCst);
                if !self.fits(pushed.wrapping_sub(seen), bytes) {
                    return false;
                }
            }
            match totals.pushed.compare_exchange_weak(
                pushed,
                pushed.wrapping_add(packed(1, bytes)),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => pushed = now,
            }
        }
    }

    /// Whether the queue holds at least [`UNPIN_DEPTH`] events, by the producers' estimate
    /// (never below the truth), brought up to date every [`UNPIN_SAMPLE`] pushes: one read of
    /// the dispatcher thread's counter per sample, not per event.
    pub(super) fn backed_up(&self) -> bool {
        let totals = &self.producers.0;
        let mut seen = totals.popped_seen.load(Ordering::SeqCst);
        let pushed = totals.pushed.load(Ordering::SeqCst);
        if (pushed >> COUNT_SHIFT) % UNPIN_SAMPLE == 0 {
            seen = self.popped.0.load(Ordering::SeqCst);
            totals.popped_seen.store(seen, Ordering::SeqCst);
        }
        (pushed.wrapping_sub(seen) >> COUNT_SHIFT) >= UNPIN_DEPTH
    }

    /// Frees the room of one event taken out of the queue. Blocked socket threads are woken
    /// once the queue has drained to half its limits (see [`Queue::drained`]), not at every
    /// freed slot.
    pub(super) fn release(&self, bytes: u64) {
        // A read-modify-write (never a plain store): `DropOldest` takes events out from a
        // socket thread too. SeqCst, so a waiter that announced itself is seen below.
        let popped = self
            .popped
            .0
            .fetch_add(packed(1, bytes), Ordering::SeqCst)
            .wrapping_add(packed(1, bytes));
        if self.waiters.0.load(Ordering::SeqCst) > 0 {
            let held = self
                .producers
                .0
                .pushed
                .load(Ordering::SeqCst)
                .wrapping_sub(popped);
            if self.drained(held) {
                let _room = self.room_lock.lock();
                #[cfg(test)]
                self.wakes.fetch_add(1, Ordering::Relaxed);
                self.room.notify_all();
            }
        }
    }

    /// Whether a queue holding `held` (packed) has drained far enough to wake the socket
    /// threads waiting for room: to half its capacity in events (its `wake_depth`; the
    /// lifecycle queue's is one below its capacity) and in bytes. Waking them at
    /// every freed slot made a full queue cost two thread switches per event (the waiter
    /// queued one event and blocked again; profiled: a third of the client's CPU at full load);
    /// from half, a woken socket thread queues up to half a queue without blocking. An empty
    /// queue always counts as drained, so a waiter for an event bigger than half the byte
    /// capacity is still woken.
    fn drained(&self, held: u64) -> bool {
        let events = held >> COUNT_SHIFT;
        events == 0 || (events <= self.wake_depth && (held & BYTES_MASK) <= self.capacity_bytes / 2)
    }

    /// What the queue holds now (packed).
    fn held(&self) -> u64 {
        let popped = self.popped.0.load(Ordering::SeqCst);
        self.producers
            .0
            .pushed
            .load(Ordering::SeqCst)
            .wrapping_sub(popped)
    }

    /// Waits up to `timeout` for room for an event of `bytes` (returns at once if it fits);
    /// once blocked, it is woken when the queue has drained to half ([`Queue::drained`]).
    pub(super) fn wait_for_room(&self, bytes: u64, timeout: Duration) {
        let mut room = self.room_lock.lock();
        self.waiters.0.fetch_add(1, Ordering::SeqCst);
        // Checked after announcing the wait and under the lock `release` takes to notify: a
        // release either happened before this check or notifies this wait.
        if !self.fits(self.held(), bytes) {
            self.room.wait_for(&mut room, timeout);
        }
        self.waiters.0.fetch_sub(1, Ordering::SeqCst);
    }

    pub(super) fn len(&self) -> usize {
        (self.held() >> COUNT_SHIFT) as usize
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn queue_limits_count_events_and_bytes_and_an_empty_queue_takes_any_event() {
        let queue = Queue::<Event>::new(4, 1000);
        assert!(
            queue.try_reserve(5000),
            "an empty queue takes one big event"
        );
        assert!(!queue.try_reserve(1), "then it is full by bytes");
        queue.release(5000);
        assert!(queue.try_reserve(400));
        assert!(queue.try_reserve(400));
        assert!(!queue.try_reserve(201), "1001 bytes would not fit");
        assert!(queue.try_reserve(200));
        assert!(queue.try_reserve(0));
        assert!(!queue.try_reserve(0), "4 events: full by count");
        assert_eq!(queue.len(), 4);
        for bytes in [400, 400, 200, 0] {
            queue.release(bytes);
        }
        assert_eq!(queue.held(), 0);
    }

    #[test]
    fn a_blocked_push_wakes_when_room_is_freed() {
        let queue = Arc::new(Queue::<Event>::new(1, 1 << 20));
        assert!(queue.try_reserve(10));
        let q = queue.clone();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            while !q.try_reserve(10) {
                q.wait_for_room(10, Duration::from_secs(30));
                assert!(started.elapsed() < Duration::from_secs(30));
            }
        });
        while queue.waiters.0.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        queue.release(10);
        waiter.join().unwrap();
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn blocked_pushes_are_woken_once_the_queue_drained_to_half_not_per_freed_slot() {
        let queue = Queue::<Event>::new(8, 1 << 20);
        for _ in 0..8 {
            assert!(queue.try_reserve(10));
        }
        // A socket thread announced that it waits (as `wait_for_room` does).
        queue.waiters.0.fetch_add(1, Ordering::SeqCst);
        for _ in 0..3 {
            queue.release(10);
        }
        assert_eq!(
            queue.wakes.load(Ordering::Relaxed),
            0,
            "5 of 8 held: no wake-up"
        );
        queue.release(10);
        assert_eq!(queue.wakes.load(Ordering::Relaxed), 1, "4 of 8 held: woken");
        queue.waiters.0.fetch_sub(1, Ordering::SeqCst);
        // Over half by bytes counts too; an emptied queue always wakes (one event bigger
        // than half the byte capacity is still waited for).
        let queue = Queue::<Event>::new(4, 1000);
        assert!(!queue.drained(packed(1, 5000)));
        assert!(queue.drained(0));
        assert!(queue.drained(packed(2, 500)));
        assert!(!queue.drained(packed(2, 501)));
        assert!(!queue.drained(packed(3, 30)));
    }

    #[test]
    fn a_blocked_push_into_a_full_queue_of_eight_is_woken_as_it_drains() {
        let queue = Arc::new(Queue::<Event>::new(8, 1 << 20));
        for _ in 0..8 {
            assert!(queue.try_reserve(10));
        }
        let q = queue.clone();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let mut queued = 0;
            while queued < 4 {
                if q.try_reserve(10) {
                    queued += 1;
                } else {
                    q.wait_for_room(10, Duration::from_secs(30));
                    assert!(started.elapsed() < Duration::from_secs(30), "never woken");
                }
            }
        });
        while queue.waiters.0.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        for _ in 0..8 {
            queue.release(10);
        }
        waiter.join().unwrap();
        assert_eq!(queue.len(), 4);
    }

    /// Issue 20: the channel grows with what the queue holds (it is no longer an array sized
    /// for the capacity), so the limits are the accounting's alone; they still hold exactly,
    /// by count and by bytes, through fills and drains of more than a block of slots.
    #[test]
    fn a_growing_queue_holds_exactly_its_capacity_in_events_and_in_bytes() {
        let queue = Queue::<u32>::new(100, 1 << 20);
        for round in 0..3 {
            let mut queued = 0;
            while queue.try_reserve(10) {
                queue.tx.send(Some(queued)).unwrap();
                queued += 1;
            }
            assert_eq!(queued, 100, "round {round}: full at the capacity in events");
            assert_eq!(queue.rx.len(), 100);
            // Drained in order, each taken out freeing its room.
            for expected in 0..queued {
                assert_eq!(queue.rx.try_recv().unwrap(), Some(expected));
                queue.release(10);
            }
            assert_eq!(queue.held(), 0);
        }
        let queue = Queue::<u32>::new(1_000_000, 1000);
        let mut queued = 0;
        while queue.try_reserve(30) {
            queue.tx.send(Some(queued)).unwrap();
            queued += 1;
        }
        assert_eq!(
            queued, 33,
            "full at the capacity in bytes: 33 × 30 ≤ 1000 < 34 × 30"
        );
        assert_eq!(queue.rx.len(), 33);
    }

    /// The lifecycle queue's kind (wake depth one below the capacity) wakes a blocked sender
    /// at the first freed slot, as a bounded channel did.
    #[test]
    fn a_queue_waking_at_every_freed_slot_wakes_a_blocked_sender_at_once() {
        let queue = Queue::<u32>::with_wake_depth(8, 1 << 20, 7);
        for _ in 0..8 {
            assert!(queue.try_reserve(0));
        }
        queue.waiters.0.fetch_add(1, Ordering::SeqCst);
        queue.release(0);
        assert_eq!(queue.wakes.load(Ordering::Relaxed), 1, "7 of 8 held: woken");
        queue.waiters.0.fetch_sub(1, Ordering::SeqCst);
        assert!(queue.try_reserve(0));
        assert!(!queue.try_reserve(0), "8 of 8 again");
    }
}
