//! dispatch.rs owns the dispatcher threads: bounded queues, the backpressure policy, per-topic
//! ordering, and the lifecycle thread. It never reads a socket and never blocks a socket thread
//! for long: only under [`Backpressure::Block`] (until there is room), and for at most 200 ms
//! when an important lifecycle event (gap, disconnect, stop) finds the lifecycle queue full.
//!
//! Events are sharded by a case-insensitive hash of their topic, so all events of one topic go
//! through one queue and one thread, in the order the socket thread pushed them; different
//! topics run in parallel on different threads. Each thread caches, per topic name, the listeners
//! that match it, and refreshes the cache when the registry's version changes.

use crate::config::Backpressure;
use crate::event::{Event, Lifecycle};
use crate::lag::{LagAlarm, LagRecorder, WINDOW};
use crate::listener::{Changes, Listener, Registry};
use crate::snapshot_gate::SnapshotGate;
use crate::threads::join_until;
use crate::topic::MAX_TOPIC_LEN;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

thread_local! {
    /// Whether this thread is one of the dispatcher or lifecycle threads (runs callbacks).
    static CALLBACK_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread runs callbacks (a dispatcher or the lifecycle thread).
pub(crate) fn on_callback_thread() -> bool {
    CALLBACK_THREAD.with(|c| c.get())
}

/// How often a socket thread blocked by [`Backpressure::Block`] checks for shutdown.
const BLOCK_POLL: Duration = Duration::from_millis(50);
/// The least time between two [`Lifecycle::Dropped`] reports.
const DROP_REPORT_EVERY: Duration = Duration::from_millis(100);
/// How long an important lifecycle event waits for room in a full lifecycle queue.
const IMPORTANT_WAIT: Duration = Duration::from_millis(200);
/// Bytes of lifecycle events the lifecycle queue holds at most (see [`lifecycle_bytes`]).
const LIFECYCLE_BYTES: u64 = 16 << 20;
/// Capacity of the lifecycle queue.
const LIFECYCLE_CAPACITY: usize = 4096;

/// What happened to an event handed to [`Dispatcher::push`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Queued after waiting this long for room ([`Backpressure::Block`]).
    QueuedAfter(Duration),
    /// The event itself was dropped (queue full under `DropNewest`, or shutting down).
    DroppedNewest,
    /// An older event was dropped to make room.
    DroppedOldest,
}

enum LifecycleMsg {
    /// Boxed: the queue is an array of 4096 slots allocated (and touched) at `build()`; a
    /// slot of a pointer instead of a whole `Lifecycle` saves about half a MiB of every
    /// client's memory, for one allocation per lifecycle event (they are rare).
    Event(Box<Lifecycle>),
    DropsPending,
    Stop,
}

/// Where lifecycle events go: a bounded queue read by the lifecycle thread.
pub(crate) struct LifecycleSink {
    tx: Sender<LifecycleMsg>,
    /// Lifecycle events lost because the queue was full (in events or in bytes).
    pub(crate) lost: AtomicU64,
    /// The bytes of the events in the queue, by [`lifecycle_bytes`].
    queued_bytes: AtomicU64,
    drops_pending: AtomicBool,
    /// Events dropped by the backpressure policy since start.
    pub(crate) dropped_total: AtomicU64,
    pub(crate) listener_panics: AtomicU64,
    /// Told of every [`Lifecycle::Gap`] (the resync engine); must not block.
    pub(crate) gap_tap: std::sync::OnceLock<GapTap>,
}

/// A function told of every gap: the channel and its topics.
pub(crate) type GapTap =
    Box<dyn Fn(&crate::channel_id::ChannelId, &[crate::topic::Topic]) + Send + Sync>;

/// What a lifecycle event weighs in the lifecycle queue: its own size and, roughly, the text
/// and lists it holds.
fn lifecycle_bytes(event: &Lifecycle) -> u64 {
    const PER_TOPIC: usize = std::mem::size_of::<crate::topic::Topic>() + 64;
    const PER_RESULT: usize = 256;
    let held = match event {
        Lifecycle::SystemMessage { message, .. } => {
            message.topic.len()
                + message.event_body.len()
                + [
                    &message.system_topic_type,
                    &message.reason,
                    &message.message,
                ]
                .iter()
                .map(|text| text.as_ref().map_or(0, String::len))
                .sum::<usize>()
        }
        Lifecycle::MalformedMessage {
            reason, excerpt, ..
        } => reason.len() + excerpt.len(),
        Lifecycle::UnroutedMessage { topic, .. } => topic.len(),
        Lifecycle::ListenerPanicked {
            pattern,
            topic,
            message,
        } => pattern.len() + topic.len() + message.len(),
        Lifecycle::Gap { topics, .. }
        | Lifecycle::Unsubscribed { topics, .. }
        | Lifecycle::Resynced { topics, .. } => topics.len() * PER_TOPIC,
        Lifecycle::Subscribed { results, .. } => results.len() * PER_RESULT,
        _ => 0,
    };
    (std::mem::size_of::<Lifecycle>() + held) as u64
}

/// Logs a lifecycle event at the level its kind deserves.
fn log_lifecycle(event: &Lifecycle) {
    let level = match event {
        Lifecycle::Disconnected { .. }
        | Lifecycle::Gap { .. }
        | Lifecycle::Reconnecting { .. }
        | Lifecycle::TokenRefreshFailed { .. }
        | Lifecycle::RequestFailed { .. }
        | Lifecycle::MalformedMessage { .. }
        | Lifecycle::Dropped { .. }
        | Lifecycle::DispatchLagHigh { .. }
        | Lifecycle::ListenerPanicked { .. }
        | Lifecycle::TooManyListeners { .. }
        | Lifecycle::ResyncFailed { .. } => log::Level::Warn,
        Lifecycle::RetryBudgetExhausted { .. } | Lifecycle::PermanentFailure { .. } => {
            log::Level::Error
        }
        _ => log::Level::Info,
    };
    if !log::log_enabled!(level) {
        return;
    }
    // One readable line, like `tail --lifecycle-format text`: the event's name, the
    // channel (its id shortened) and what happened (`Display`, which never shows a secret).
    match event.channel() {
        Some(channel) => log::log!(level, "{} channel={channel}: {event}", event.name()),
        None => log::log!(level, "{}: {event}", event.name()),
    }
}

impl LifecycleSink {
    /// A sink queueing into `tx`, with every count at zero.
    fn new(tx: Sender<LifecycleMsg>) -> LifecycleSink {
        LifecycleSink {
            tx,
            lost: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            drops_pending: AtomicBool::new(false),
            dropped_total: AtomicU64::new(0),
            listener_panics: AtomicU64::new(0),
            gap_tap: std::sync::OnceLock::new(),
        }
    }

    /// Logs the event and queues it for lifecycle listeners, waiting for room until `stop`:
    /// for a thread that may be slowed down by a slow lifecycle listener rather than lose a
    /// report (the resync thread, whose per-topic reports can outnumber the queue).
    pub(crate) fn emit_waiting(&self, event: Lifecycle, stop: &AtomicBool) {
        log_lifecycle(&event);
        let bytes = lifecycle_bytes(&event);
        self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        let mut message = LifecycleMsg::Event(Box::new(event));
        loop {
            match self.tx.send_timeout(message, BLOCK_POLL) {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(back)) if !stop.load(Ordering::Acquire) => {
                    message = back
                }
                Err(_) => return self.count_lost(bytes),
            }
        }
    }

    /// Logs the event and queues it for lifecycle listeners.
    pub(crate) fn emit(&self, event: Lifecycle) {
        log_lifecycle(&event);
        // Events users act on (resync after a gap, a stopped channel) wait briefly for room;
        // the rest never hold up a socket thread. Either way a loss is counted.
        let important = matches!(
            event,
            Lifecycle::Gap { .. }
                | Lifecycle::Disconnected { .. }
                | Lifecycle::Connected { .. }
                | Lifecycle::ChannelReplaced { .. }
                | Lifecycle::RetryBudgetExhausted { .. }
                | Lifecycle::PermanentFailure { .. }
        );
        if let (
            Lifecycle::Gap {
                channel, topics, ..
            },
            Some(tap),
        ) = (&event, self.gap_tap.get())
        {
            tap(channel, topics);
        }
        // Reports may quote outside input (a system message's body, a malformed frame's
        // reason): the queue is bounded in bytes too. Important events are few and small and
        // always get their chance.
        let bytes = lifecycle_bytes(&event);
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        let sent = if important {
            self.tx
                .send_timeout(LifecycleMsg::Event(Box::new(event)), IMPORTANT_WAIT)
                .is_ok()
        } else {
            queued + bytes <= LIFECYCLE_BYTES
                && self
                    .tx
                    .try_send(LifecycleMsg::Event(Box::new(event)))
                    .is_ok()
        };
        if !sent {
            self.count_lost(bytes);
        }
    }

    /// A report of `bytes` could not be queued: it is counted as lost.
    fn count_lost(&self, bytes: u64) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    fn note_dropped(&self) {
        self.dropped_total.fetch_add(1, Ordering::AcqRel);
        if !self.drops_pending.swap(true, Ordering::AcqRel)
            && self.tx.try_send(LifecycleMsg::DropsPending).is_err()
        {
            // Not queued: let a later drop try again rather than silence reports for good.
            self.drops_pending.store(false, Ordering::Release);
        }
    }
}

/// Queue accounting packs an event count and a byte count in one word: the count in the high
/// 24 bits, the bytes in the low 40. The words are running totals (events and bytes pushed so
/// far, or popped so far), compared with wrapping arithmetic: their difference is what the
/// queue holds, exactly, as long as it holds fewer than 2^24 events and 2^40 bytes (the
/// settings' ranges ensure both).
const COUNT_SHIFT: u32 = 40;
const BYTES_MASK: u64 = (1 << COUNT_SHIFT) - 1;
/// Queues of up to this many events are arrays allocated at `build()` (about 150 bytes a
/// slot: 600 KiB at most), the fastest kind; larger ones are lists of small blocks allocated
/// as events arrive and freed as they leave.
const EAGER_SLOTS: usize = 4096;

/// With several dispatcher threads, a queue holding this many events copies the frames it takes
/// out of the socket read buffers ([`Dispatcher::push`]).
const UNPIN_DEPTH: u64 = 32;
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

/// One dispatcher thread's queue, with its limits in events and in bytes. The hot path touches
/// no cache line written by the other side: socket threads add to `pushed` (their line) and
/// check room against a stale but safe copy of `popped`; the dispatcher thread adds to `popped`
/// (its line). Both ends are kept, the receiver for `DropOldest`. `None` tells the thread to
/// stop (it takes no room; the channel has one slot more for it).
struct Queue {
    tx: Sender<Option<Event>>,
    rx: Receiver<Option<Event>>,
    producers: Padded<ProducerTotals>,
    popped: Padded<AtomicU64>,
    /// Socket threads waiting for room ([`Backpressure::Block`]).
    waiters: Padded<AtomicUsize>,
    room_lock: Mutex<()>,
    room: Condvar,
    capacity: u64,
    capacity_bytes: u64,
    /// How many times `release` woke the waiters.
    #[cfg(test)]
    wakes: AtomicU64,
}

impl Queue {
    fn new(capacity: usize, capacity_bytes: usize) -> Queue {
        let (tx, rx) = if capacity <= EAGER_SLOTS {
            bounded(capacity + 1)
        } else {
            unbounded()
        };
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
    fn try_reserve(&self, bytes: u64) -> bool {
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
    fn backed_up(&self) -> bool {
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
    fn release(&self, bytes: u64) {
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
    /// threads waiting for room: to half its capacity in events and in bytes. Waking them at
    /// every freed slot made a full queue cost two thread switches per event (the waiter
    /// queued one event and blocked again; profiled: a third of the client's CPU at full load);
    /// from half, a woken socket thread queues up to half a queue without blocking. An empty
    /// queue always counts as drained, so a waiter for an event bigger than half the byte
    /// capacity is still woken.
    fn drained(&self, held: u64) -> bool {
        let events = held >> COUNT_SHIFT;
        events == 0
            || (events <= self.capacity / 2 && (held & BYTES_MASK) <= self.capacity_bytes / 2)
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
    fn wait_for_room(&self, bytes: u64, timeout: Duration) {
        let mut room = self.room_lock.lock();
        self.waiters.0.fetch_add(1, Ordering::SeqCst);
        // Checked after announcing the wait and under the lock `release` takes to notify: a
        // release either happened before this check or notifies this wait.
        if !self.fits(self.held(), bytes) {
            self.room.wait_for(&mut room, timeout);
        }
        self.waiters.0.fetch_sub(1, Ordering::SeqCst);
    }

    fn len(&self) -> usize {
        (self.held() >> COUNT_SHIFT) as usize
    }
}

/// The dispatcher threads and the lifecycle thread of one client.
pub(crate) struct Dispatcher {
    /// One per dispatcher thread, shared with it.
    queues: Vec<Arc<Queue>>,
    policy: Backpressure,
    pub(crate) lifecycle: Arc<LifecycleSink>,
    /// Queue wait measurements, one per dispatcher thread.
    pub(crate) lag: Vec<Arc<LagRecorder>>,
    /// Decides whether a snapshot may still be delivered (snapshot_gate.rs).
    pub(crate) gate: Arc<SnapshotGate>,
    /// The threads not joined yet: a shutdown that timed out leaves them here so that a later
    /// one can join them.
    threads: Mutex<Vec<JoinHandle<()>>>,
    lifecycle_thread: Mutex<Option<JoinHandle<()>>>,
    /// Set by `shutdown`: threads end once their queue is empty even if their stop marker
    /// could not be queued.
    closing: Arc<AtomicBool>,
}

/// The limits of each dispatcher queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    /// Events.
    pub capacity: usize,
    /// Bytes of queued events ([`Event::queued_bytes`]).
    pub capacity_bytes: usize,
}

impl Dispatcher {
    pub(crate) fn start(
        registry: Arc<Registry>,
        threads: usize,
        limits: QueueLimits,
        policy: Backpressure,
        lag_threshold: Duration,
    ) -> std::io::Result<Dispatcher> {
        let (ltx, lrx) = bounded(LIFECYCLE_CAPACITY);
        let lifecycle = Arc::new(LifecycleSink::new(ltx));
        let gate = Arc::new(SnapshotGate::default());
        let closing = Arc::new(AtomicBool::new(false));
        let lifecycle_thread = {
            let (registry, sink, closing) = (registry.clone(), lifecycle.clone(), closing.clone());
            std::thread::Builder::new()
                .name("genesys-lifecycle".into())
                .spawn(move || {
                    CALLBACK_THREAD.with(|c| c.set(true));
                    run_lifecycle(lrx, registry, sink, &closing)
                })?
        };
        let mut queues = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        let mut lag = Vec::with_capacity(threads);
        for index in 0..threads {
            let queue = Arc::new(Queue::new(limits.capacity, limits.capacity_bytes));
            let recorder = Arc::new(LagRecorder::new());
            let shard = Shard {
                queue: queue.clone(),
                registry: registry.clone(),
                sink: lifecycle.clone(),
                lag: recorder.clone(),
                lag_threshold,
                closing: closing.clone(),
                gate: gate.clone(),
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("genesys-dispatch-{index}"))
                    .spawn(move || shard.run())?,
            );
            queues.push(queue);
            lag.push(recorder);
        }
        Ok(Dispatcher {
            queues,
            policy,
            lifecycle,
            lag,
            gate,
            closing,
            threads: Mutex::new(handles),
            lifecycle_thread: Mutex::new(Some(lifecycle_thread)),
        })
    }

    fn shard_of(&self, topic: &str) -> usize {
        if self.queues.len() == 1 {
            // One dispatcher thread: no hash over the topic on the socket thread's hot path.
            return 0;
        }
        // FNV-1a over the lower-cased bytes: all spellings of a topic share a queue.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in topic.bytes() {
            hash ^= u64::from(b.to_ascii_lowercase());
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % self.queues.len() as u64) as usize
    }

    /// Queues one event per the backpressure policy. Under `Block`, waits for room unless `stop`
    /// becomes true (then the event is dropped and counted).
    pub(crate) fn push(&self, mut event: Event, stop: &AtomicBool) -> Pushed {
        let queue = &self.queues[self.shard_of(event.topic())];
        // A frame is a slice of its socket's read buffer, kept allocated while any frame of it
        // is queued. One queue holds a contiguous run of frames, so the buffers it keeps are
        // about the bytes it holds. With several queues, one queue's frames can be sparse in
        // the buffers (a slow listener of a rare topic, the others flowing): 1 024 of them
        // could keep 1 024 buffers, 32 MiB, for 400 KB counted. A queue deep enough to be
        // backed up gives its events copies of their own: at most UNPIN_DEPTH events of a queue
        // share buffers with others (each was queued behind fewer than that many), so buffers
        // add at most UNPIN_DEPTH × 32 KiB, 1 MiB, to what each queue counts.
        if self.queues.len() > 1 && queue.backed_up() {
            event.unpin();
        }
        let bytes = event.queued_bytes() as u64;
        if queue.try_reserve(bytes) {
            // Never disconnected: the queue holds a receiver.
            let _ = queue.tx.send(Some(event));
            return Pushed::Queued;
        }
        match self.policy {
            Backpressure::DropNewest => {
                self.count_drop(&event);
                Pushed::DroppedNewest
            }
            Backpressure::DropOldest => loop {
                match queue.rx.try_recv() {
                    Ok(Some(oldest)) => {
                        queue.release(oldest.queued_bytes() as u64);
                        self.count_drop(&oldest);
                    }
                    Ok(None) => {
                        // Took the stop marker of a shutdown: put it back and give up.
                        let _ = queue.tx.send(None);
                        self.count_drop(&event);
                        return Pushed::DroppedNewest;
                    }
                    // Empty: the thread took the rest and frees its room in a moment.
                    Err(_) => std::thread::yield_now(),
                }
                if queue.try_reserve(bytes) {
                    let _ = queue.tx.send(Some(event));
                    return Pushed::DroppedOldest;
                }
            },
            Backpressure::Block => {
                let started = Instant::now();
                loop {
                    if stop.load(Ordering::Acquire) {
                        self.count_drop(&event);
                        return Pushed::DroppedNewest;
                    }
                    queue.wait_for_room(bytes, BLOCK_POLL);
                    if queue.try_reserve(bytes) {
                        let _ = queue.tx.send(Some(event));
                        return Pushed::QueuedAfter(started.elapsed());
                    }
                }
            }
        }
    }

    /// Queues a snapshot in its topic's queue behind the events already there, waiting for
    /// room whatever the policy (snapshots are never dropped), until `stop` becomes true.
    /// Returns whether it was queued.
    pub(crate) fn push_snapshot(&self, event: Event, stop: &AtomicBool) -> bool {
        let queue = &self.queues[self.shard_of(event.topic())];
        let bytes = event.queued_bytes() as u64;
        loop {
            if queue.try_reserve(bytes) {
                let _ = queue.tx.send(Some(event));
                return true;
            }
            if stop.load(Ordering::Acquire) {
                return false;
            }
            queue.wait_for_room(bytes, BLOCK_POLL);
        }
    }

    fn count_drop(&self, event: &Event) {
        event
            .origin
            .stats
            .dispatch
            .dropped
            .fetch_add(1, Ordering::Relaxed);
        self.lifecycle.note_dropped();
    }

    /// Events waiting in each queue.
    pub(crate) fn queue_depths(&self) -> Vec<usize> {
        self.queues.iter().map(|q| q.len()).collect()
    }

    /// Stops the dispatcher threads after they drain their queues, then the lifecycle thread.
    /// Waits until `deadline`; threads still busy in a callback then are left to finish alone,
    /// and a later call joins them. Returns whether every thread was joined.
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        let me = std::thread::current().id();
        // The stop marker goes behind the queued events: each thread drains its queue first.
        // (Markers take no room, so this never waits.) Sent once: a later call only joins.
        if !self.closing.load(Ordering::Acquire) {
            for queue in &self.queues {
                let _ = queue.tx.send(None);
            }
        }
        let mut all = true;
        {
            let mut threads = self.threads.lock();
            let mut left = Vec::new();
            for handle in threads.drain(..) {
                // Shutdown called from a callback runs on one of our threads: that thread
                // cannot join itself; it ends after the callback returns.
                if handle.thread().id() == me {
                    continue;
                }
                if let Some(handle) = join_until(handle, deadline) {
                    all = false;
                    left.push(handle);
                }
            }
            *threads = left;
        }
        // Set once the other dispatcher threads are done, so the lifecycle thread does not end
        // before their last events are queued.
        let first = !self.closing.swap(true, Ordering::AcqRel);
        let mut lifecycle_thread = self.lifecycle_thread.lock();
        let own = lifecycle_thread
            .as_ref()
            .is_some_and(|h| h.thread().id() == me);
        if first && own {
            // Called from a lifecycle callback: this thread is the queue's only reader.
            let _ = self.lifecycle.tx.try_send(LifecycleMsg::Stop);
        } else if first {
            let _ = self.lifecycle.tx.send_timeout(
                LifecycleMsg::Stop,
                deadline.saturating_duration_since(Instant::now()),
            );
        }
        if own {
            lifecycle_thread.take();
        } else if let Some(handle) = lifecycle_thread.take() {
            if let Some(handle) = join_until(handle, deadline) {
                all = false;
                *lifecycle_thread = Some(handle);
            }
        }
        all
    }
}

type Route = Arc<[Arc<Listener<Event>>]>;

/// Bytes of routes one dispatcher thread remembers before it forgets them all: topic names
/// come from the service, but a wrong or hostile one may send any number of names of any
/// length, so the cache is bounded by its size, not by its entry count.
const ROUTE_CACHE_BYTES: usize = 16 << 20;
/// Topic names longer than this are routed without caching: the service's names are at most
/// [`MAX_TOPIC_LEN`] characters.
const CACHED_TOPIC_MAX: usize = 4 * MAX_TOPIC_LEN;
/// What one cached route costs besides its topic name (twice: map key and index) and its
/// listeners: hash map slots, boxes and trie nodes, roughly.
const ROUTE_OVERHEAD: usize = 160;

/// A dispatcher thread's routes: per topic name as received, the listeners that match it.
///
/// An index of the cached names by lower-cased segments lets a listener change forget exactly
/// the routes its pattern matches (walking the pattern's path, every child at a `*`), so one
/// `on` or guard drop never costs a rescan of all cached topics, and the other topics keep
/// their routes.
#[derive(Default)]
struct RouteCache {
    routes: FxHashMap<Box<str>, Route>,
    index: IndexNode,
    bytes: usize,
}

/// The cached topic names, by lower-cased segment.
#[derive(Default)]
struct IndexNode {
    children: FxHashMap<Box<str>, IndexNode>,
    /// The names as received (usually one spelling) whose segments end here.
    names: Vec<Box<str>>,
}

impl IndexNode {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.names.is_empty()
    }

    fn insert(&mut self, segments: &[&str], name: Box<str>) {
        match segments.split_first() {
            None => self.names.push(name),
            Some((first, rest)) => self
                .children
                .entry((*first).into())
                .or_default()
                .insert(rest, name),
        }
    }

    /// Takes out the names matched by the pattern `segments` (`*` matches any one segment).
    fn take_matching(&mut self, segments: &[&str], out: &mut Vec<Box<str>>) {
        let Some((first, rest)) = segments.split_first() else {
            out.append(&mut self.names);
            return;
        };
        if *first == "*" {
            self.children.retain(|_, child| {
                child.take_matching(rest, out);
                !child.is_empty()
            });
        } else if let Some(child) = self.children.get_mut(*first) {
            child.take_matching(rest, out);
            if child.is_empty() {
                self.children.remove(*first);
            }
        }
    }
}

fn route_cost(topic: &str, route: &Route) -> usize {
    2 * topic.len() + route.len() * std::mem::size_of::<Arc<Listener<Event>>>() + ROUTE_OVERHEAD
}

impl RouteCache {
    fn get(&self, topic: &str) -> Option<&Route> {
        self.routes.get(topic)
    }

    fn insert(&mut self, topic: &str, route: Route) {
        if topic.len() > CACHED_TOPIC_MAX {
            return;
        }
        let cost = route_cost(topic, &route);
        if self.bytes + cost > ROUTE_CACHE_BYTES {
            *self = RouteCache::default();
        }
        let lower = topic.to_ascii_lowercase();
        let segments: Vec<&str> = lower.split('.').collect();
        self.index.insert(&segments, topic.into());
        self.routes.insert(topic.into(), route);
        self.bytes += cost;
    }

    /// Forgets the routes of the topics `pattern` (lower-cased, `*` segments) matches.
    fn forget_matching(&mut self, pattern: &str) {
        let segments: Vec<&str> = pattern.split('.').collect();
        let mut names = Vec::new();
        self.index.take_matching(&segments, &mut names);
        for name in names {
            if let Some(route) = self.routes.remove(&name) {
                self.bytes -= route_cost(&name, &route);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.routes.len()
    }
}

/// One dispatcher thread's inputs.
struct Shard {
    queue: Arc<Queue>,
    registry: Arc<Registry>,
    sink: Arc<LifecycleSink>,
    lag: Arc<LagRecorder>,
    lag_threshold: Duration,
    closing: Arc<AtomicBool>,
    gate: Arc<SnapshotGate>,
}

impl Shard {
    fn run(self) {
        CALLBACK_THREAD.with(|c| c.set(true));
        let Shard {
            queue,
            registry,
            sink,
            lag,
            lag_threshold,
            closing,
            gate,
        } = self;
        run_shard(
            &queue,
            &registry,
            &sink,
            &lag,
            lag_threshold,
            &closing,
            &gate,
        );
    }
}

fn run_shard(
    queue: &Queue,
    registry: &Registry,
    sink: &LifecycleSink,
    lag: &LagRecorder,
    lag_threshold: Duration,
    closing: &AtomicBool,
    gate: &SnapshotGate,
) {
    let mut version = 0;
    // Set once a shutdown cleared the listeners: what is still queued behind it (a shutdown
    // called from a callback of this thread) can no longer be delivered.
    let mut cleared = false;
    let mut routes = RouteCache::default();
    let mut alarm = LagAlarm::new(lag_threshold, Instant::now());
    loop {
        if closing.load(Ordering::Acquire) && queue.rx.is_empty() {
            break;
        }
        let Ok(Some(mut event)) = queue.rx.recv() else {
            break;
        };
        queue.release(event.queued_bytes() as u64);
        let dequeued = Instant::now();
        if dequeued.saturating_duration_since(alarm.window_started) >= WINDOW {
            alarm.window_started = dequeued;
            if let Some(p99) = alarm.window_ended(lag.turn().p99) {
                sink.emit(Lifecycle::DispatchLagHigh {
                    p99,
                    threshold: lag_threshold,
                });
            }
        }
        lag.record(dequeued.saturating_duration_since(event.received_instant));
        if registry.version() != version {
            let (changes, now) = registry.changes_since(version);
            version = now;
            match changes {
                Changes::Patterns(patterns) => {
                    for pattern in &patterns {
                        routes.forget_matching(pattern);
                    }
                }
                Changes::Everything => routes = RouteCache::default(),
                Changes::Cleared => {
                    routes = RouteCache::default();
                    cleared = true;
                }
            }
        }
        if cleared {
            event
                .origin
                .stats
                .dispatch
                .dropped
                .fetch_add(1, Ordering::Relaxed);
            sink.note_dropped();
            continue;
        }
        // A notification queued by its first key alone: its envelope is parsed here, off the
        // socket thread (message::notification_topic).
        if let Err(malformed) = event.locate() {
            report_malformed(&event, malformed, sink);
            continue;
        }
        let topic = event.topic();
        // The order and freshness rule of snapshots (snapshot_gate.rs).
        if event.is_snapshot() {
            if !gate.admit(topic) {
                continue;
            }
        } else {
            gate.note_live(topic, event.received_instant);
        }
        if let Some(route) = routes.get(topic) {
            deliver(&event, route, false, sink);
            continue;
        }
        let route: Route = registry.route(topic).into();
        deliver(&event, &route, true, sink);
        routes.insert(topic, route);
    }
}

/// A queued notification whose envelope proved malformed: counted (the channel's `malformed`,
/// and no longer `received`) and reported as the socket thread reports one.
fn report_malformed(
    event: &Event,
    malformed: crate::message::MalformedFrame,
    sink: &LifecycleSink,
) {
    event
        .origin
        .stats
        .dispatch
        .malformed
        .fetch_add(1, Ordering::Release);
    sink.emit(Lifecycle::malformed_frame(
        event.channel_id(),
        event.frame_json(),
        malformed,
    ));
}

/// The topic name as a lifecycle event carries it: whole up to 4 × [`MAX_TOPIC_LEN`] bytes,
/// else cut with `…`. The service's names are far shorter; a broken or hostile server's could
/// be megabytes, and 4096 of them waiting in the lifecycle queue would be gigabytes.
fn reported_topic(event: &Event) -> String {
    crate::message::shortened(event.topic(), CACHED_TOPIC_MAX).into_owned()
}

fn deliver(
    event: &Event,
    route: &[Arc<Listener<Event>>],
    first_of_topic: bool,
    sink: &LifecycleSink,
) {
    let mut reached = false;
    for listener in route {
        match listener.call(event) {
            Ok(called) => reached |= called,
            Err(message) => {
                reached = true;
                sink.listener_panics.fetch_add(1, Ordering::Relaxed);
                sink.emit(Lifecycle::ListenerPanicked {
                    pattern: listener
                        .pattern
                        .as_ref()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                    topic: reported_topic(event),
                    message,
                });
            }
        }
    }
    if reached {
        event
            .origin
            .stats
            .dispatch
            .delivered
            .fetch_add(1, Ordering::Relaxed);
    } else {
        // Every unrouted event is counted. The lifecycle event goes out for the first event
        // of a topic with no listener (`first_of_topic`, when its empty route is cached) and
        // whenever the matching listeners all turned out to be retired: a busy topic with no
        // listener cannot flood the lifecycle queue or the log.
        event
            .origin
            .stats
            .dispatch
            .unrouted
            .fetch_add(1, Ordering::Relaxed);
        if first_of_topic || !route.is_empty() {
            sink.emit(Lifecycle::UnroutedMessage {
                channel: event.channel_id().clone(),
                topic: reported_topic(event),
            });
        }
    }
}

fn run_lifecycle(
    rx: Receiver<LifecycleMsg>,
    registry: Arc<Registry>,
    sink: Arc<LifecycleSink>,
    closing: &AtomicBool,
) {
    let mut report_due: Option<Instant> = None;
    let mut reported: u64 = 0;
    loop {
        if closing.load(Ordering::Acquire) && rx.is_empty() {
            report_drops(&registry, &sink, &mut reported);
            return;
        }
        let msg = match report_due {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => rx.recv_deadline(due),
        };
        match msg {
            Ok(LifecycleMsg::Event(event)) => {
                sink.queued_bytes
                    .fetch_sub(lifecycle_bytes(&event), Ordering::AcqRel);
                deliver_lifecycle(&event, &registry, &sink);
            }
            Ok(LifecycleMsg::DropsPending) => {
                report_due.get_or_insert_with(|| Instant::now() + DROP_REPORT_EVERY);
            }
            Ok(LifecycleMsg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                report_drops(&registry, &sink, &mut reported);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if report_due.is_some_and(|due| Instant::now() >= due) {
            report_due = None;
            report_drops(&registry, &sink, &mut reported);
        }
    }
}

fn report_drops(registry: &Registry, sink: &LifecycleSink, reported: &mut u64) {
    sink.drops_pending.store(false, Ordering::Release);
    let total = sink.dropped_total.load(Ordering::Acquire);
    if total > *reported {
        let event = Lifecycle::Dropped {
            count: total - *reported,
            total,
        };
        *reported = total;
        log::warn!("{event:?}");
        deliver_lifecycle(&event, registry, sink);
    }
}

fn deliver_lifecycle(event: &Lifecycle, registry: &Registry, sink: &LifecycleSink) {
    let listeners = registry.lifecycle_listeners();
    for listener in &listeners {
        if let Err(message) = listener.call(event) {
            sink.listener_panics.fetch_add(1, Ordering::Relaxed);
            log::error!("a lifecycle listener panicked: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(n: usize) -> Route {
        let registry = Registry::new(usize::MAX);
        let listeners: Vec<_> = (0..n)
            .map(|_| {
                registry
                    .add_event("v2.a.b".parse().unwrap(), Box::new(|_| {}))
                    .0
            })
            .collect();
        listeners.into()
    }

    #[test]
    fn a_change_forgets_only_the_routes_its_pattern_matches() {
        let mut cache = RouteCache::default();
        let topics: Vec<String> = (0..1000)
            .map(|i| format!("v2.users.u{i}.presence"))
            .chain((0..1000).map(|i| format!("v2.users.u{i}.routingStatus")))
            .collect();
        for topic in &topics {
            cache.insert(topic, route(0));
        }
        cache.insert("V2.Users.U7.Presence", route(1));
        assert_eq!(cache.len(), 2001);
        // An exact pattern: both spellings of that one topic, nothing else.
        cache.forget_matching("v2.users.u7.presence");
        assert_eq!(cache.len(), 1999);
        assert!(cache.get("v2.users.u7.presence").is_none());
        assert!(cache.get("V2.Users.U7.Presence").is_none());
        assert!(cache.get("v2.users.u8.presence").is_some());
        // A wildcard: every routingStatus topic (any case), no presence topic.
        cache.forget_matching("v2.users.*.routingstatus");
        assert_eq!(cache.len(), 999);
        assert!(cache.get("v2.users.u8.presence").is_some());
        // Patterns matching nothing cached change nothing.
        cache.forget_matching("v2.users.*");
        cache.forget_matching("v2.users.*.presence.x");
        cache.forget_matching("v2.queues.*.presence");
        assert_eq!(cache.len(), 999);
        cache.forget_matching("*.*.*.*");
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes, 0, "the byte count follows the entries");
        assert!(cache.index.is_empty(), "the index is pruned");
    }

    #[test]
    fn the_route_cache_is_bounded_in_bytes_whatever_the_names() {
        let mut cache = RouteCache::default();
        // Names of 700 bytes (a hostile or broken server): more than 16 MiB in total.
        for i in 0..40_000 {
            let topic = format!("v2.users.{i}{}.presence", "x".repeat(680));
            cache.insert(&topic, route(0));
            assert!(cache.bytes <= ROUTE_CACHE_BYTES);
        }
        assert!(cache.len() < 40_000);
        // A name far beyond the service's 200 characters is routed but not cached.
        let huge = format!("v2.users.{}.presence", "y".repeat(64 << 10));
        let before = cache.len();
        cache.insert(&huge, route(0));
        assert_eq!(cache.len(), before);
        assert!(cache.get(&huge).is_none());
    }

    #[test]
    fn queue_limits_count_events_and_bytes_and_an_empty_queue_takes_any_event() {
        let queue = Queue::new(4, 1000);
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
        let queue = Arc::new(Queue::new(1, 1 << 20));
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
        let queue = Queue::new(8, 1 << 20);
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
        let queue = Queue::new(4, 1000);
        assert!(!queue.drained(packed(1, 5000)));
        assert!(queue.drained(0));
        assert!(queue.drained(packed(2, 500)));
        assert!(!queue.drained(packed(2, 501)));
        assert!(!queue.drained(packed(3, 30)));
    }

    #[test]
    fn a_blocked_push_into_a_full_queue_of_eight_is_woken_as_it_drains() {
        let queue = Arc::new(Queue::new(8, 1 << 20));
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

    #[test]
    fn with_several_queues_a_backed_up_queue_copies_its_frames_out_of_the_read_buffer() {
        let registry = Arc::new(Registry::new(usize::MAX));
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        // Where each delivered frame lies: in the shared read buffer or in a copy.
        let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
        let record = seen.clone();
        let _listener = registry.add_event(
            "v2.a.b".parse().unwrap(),
            Box::new(move |event: &Event| {
                let mut seen = record.lock();
                if seen.is_empty() {
                    // The first call holds the queue back until every frame is pushed.
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                }
                seen.push(event.frame_json().as_ptr() as usize);
            }),
        );
        let limits = QueueLimits {
            capacity: 1024,
            capacity_bytes: 1 << 30,
        };
        let dispatcher = Dispatcher::start(
            registry,
            2,
            limits,
            Backpressure::Block,
            Duration::from_secs(60),
        )
        .unwrap();
        // One read buffer holding 200 frames, as a socket's does.
        let frames: Vec<String> = (0..200)
            .map(|n| format!(r#"{{"topicName":"v2.a.b","eventBody":{{"n":{n}}}}}"#))
            .collect();
        let buffer = tungstenite::Bytes::from(frames.concat());
        let inside = |at: usize| {
            (buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len()).contains(&at)
        };
        let origin = Arc::new(crate::event::Origin {
            channel: crate::channel_id::ChannelId::new("c1"),
            stats: Arc::new(crate::health::ChannelStats::new()),
            epoch: (Instant::now(), std::time::SystemTime::now()),
        });
        let stop = AtomicBool::new(false);
        let mut start = 0;
        for frame in &frames {
            let slice = buffer.slice(start..start + frame.len());
            start += frame.len();
            let text = crate::event::FrameText::try_from(slice).unwrap();
            let Ok(crate::message::Inbound::Notification(located)) =
                crate::message::parse(text.as_str())
            else {
                panic!("a notification");
            };
            let event = Event::new(text, located, origin.clone(), Instant::now());
            assert!(inside(event.frame_json().as_ptr() as usize));
            assert_eq!(dispatcher.push(event, &stop), Pushed::Queued);
        }
        release_tx.send(()).unwrap();
        let started = Instant::now();
        while seen.lock().len() < 200 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not all delivered"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let seen = seen.lock().clone();
        let pinned = seen.iter().filter(|at| inside(**at)).count();
        // An event queued behind fewer than 32 keeps its slice of the buffer, the others were
        // given copies: 32, or 33 when a producer saw the first event already taken out.
        assert!(
            (UNPIN_DEPTH as usize..=UNPIN_DEPTH as usize + 1).contains(&pinned),
            "{pinned} of 200 in the read buffer"
        );
        assert!(dispatcher.shutdown(Instant::now() + Duration::from_secs(10)));
    }

    fn event(topic: &str) -> Event {
        let origin = Arc::new(crate::event::Origin {
            channel: crate::channel_id::ChannelId::new("c1"),
            stats: Arc::new(crate::health::ChannelStats::new()),
            epoch: (Instant::now(), std::time::SystemTime::now()),
        });
        Event::snapshot(topic, "{}", &origin, Instant::now())
    }

    /// Issue 8 #5: a lifecycle report never copies a huge topic name.
    #[test]
    fn reports_carry_at_most_800_characters_of_a_topic() {
        let normal = "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence";
        assert_eq!(reported_topic(&event(normal)), normal);
        let huge = format!("v2.users.{}.presence", "x".repeat(1 << 20));
        let reported = reported_topic(&event(&huge));
        assert_eq!(reported.chars().count(), CACHED_TOPIC_MAX + 1);
        assert!(reported.starts_with("v2.users.xxx") && reported.ends_with('…'));
    }

    /// Issue 8 #5: reports quoting outside input cannot fill memory while the lifecycle
    /// thread is busy (here: not reading at all).
    #[test]
    fn the_lifecycle_queue_is_bounded_in_bytes() {
        let (tx, rx) = bounded(LIFECYCLE_CAPACITY);
        let sink = LifecycleSink::new(tx);
        let body = format!("{{\"x\":\"{}\"}}", "b".repeat(64 << 10));
        for _ in 0..1000 {
            sink.emit(Lifecycle::SystemMessage {
                channel: crate::channel_id::ChannelId::new("c1"),
                message: crate::message::SystemMessage {
                    topic: "v2.system.x".into(),
                    system_topic_type: None,
                    reason: None,
                    message: None,
                    event_body: body.clone(),
                },
            });
        }
        let queued = rx.len() as u64;
        assert!(queued < 256, "{queued} reports of 64 KiB queued");
        assert_eq!(sink.lost.load(Ordering::Relaxed), 1000 - queued);
        assert!(sink.queued_bytes.load(Ordering::Relaxed) <= LIFECYCLE_BYTES);
        // What the lifecycle thread takes out frees its bytes.
        while let Ok(LifecycleMsg::Event(event)) = rx.try_recv() {
            sink.queued_bytes
                .fetch_sub(lifecycle_bytes(&event), Ordering::AcqRel);
        }
        assert_eq!(sink.queued_bytes.load(Ordering::Relaxed), 0);
    }
}
