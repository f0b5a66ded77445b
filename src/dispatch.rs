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
use crate::listener::{Listener, Registry};
use crate::resync::gate::SnapshotGate;
use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError,
};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// Capacity of the lifecycle queue.
const LIFECYCLE_CAPACITY: usize = 4096;
/// Topic names remembered per dispatcher thread before the route cache is cleared.
const ROUTE_CACHE_MAX: usize = 65_536;

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
    Event(Lifecycle),
    DropsPending,
    Stop,
}

/// Where lifecycle events go: a bounded queue read by the lifecycle thread.
pub(crate) struct LifecycleSink {
    tx: Sender<LifecycleMsg>,
    /// Lifecycle events lost because the queue was full.
    pub(crate) lost: AtomicU64,
    drops_pending: AtomicBool,
    /// Events dropped by the backpressure policy since start.
    pub(crate) dropped_total: AtomicU64,
    pub(crate) listener_panics: AtomicU64,
    /// Told of every [`Lifecycle::Gap`] (the resync engine); must not block.
    pub(crate) gap_tap: std::sync::OnceLock<GapTap>,
}

/// A function told of every gap: the channel and its topics.
pub(crate) type GapTap =
    Box<dyn Fn(&crate::event::ChannelId, &[crate::topic::Topic]) + Send + Sync>;

/// Logs a lifecycle event at the level its kind deserves.
fn log_lifecycle(event: &Lifecycle) {
    match event {
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
        | Lifecycle::ResyncFailed { .. } => log::warn!("{event:?}"),
        Lifecycle::RetryBudgetExhausted { .. } | Lifecycle::PermanentFailure { .. } => {
            log::error!("{event:?}")
        }
        _ => log::info!("{event:?}"),
    }
}

impl LifecycleSink {
    /// Logs the event and queues it for lifecycle listeners, waiting for room until `stop`:
    /// for a thread that may be slowed down by a slow lifecycle listener rather than lose a
    /// report (the resync thread, whose per-topic reports can outnumber the queue).
    pub(crate) fn emit_waiting(&self, event: Lifecycle, stop: &AtomicBool) {
        log_lifecycle(&event);
        let mut message = LifecycleMsg::Event(event);
        loop {
            match self.tx.send_timeout(message, BLOCK_POLL) {
                Ok(()) => return,
                Err(SendTimeoutError::Timeout(back)) if !stop.load(Ordering::Acquire) => {
                    message = back
                }
                Err(_) => {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
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
        let sent = if important {
            self.tx
                .send_timeout(LifecycleMsg::Event(event), IMPORTANT_WAIT)
                .is_ok()
        } else {
            self.tx.try_send(LifecycleMsg::Event(event)).is_ok()
        };
        if !sent {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
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

/// One dispatcher thread's queue: both ends are kept, the receiver for `DropOldest`.
type Queue = (Sender<Option<Event>>, Receiver<Option<Event>>);

/// The dispatcher threads and the lifecycle thread of one client.
pub(crate) struct Dispatcher {
    /// Per dispatcher thread; `None` in a queue tells its thread to stop.
    queues: Vec<Queue>,
    policy: Backpressure,
    pub(crate) lifecycle: Arc<LifecycleSink>,
    /// Queue wait measurements, one per dispatcher thread.
    pub(crate) lag: Vec<Arc<LagRecorder>>,
    /// Decides whether a snapshot may still be delivered (resync/gate.rs).
    pub(crate) gate: Arc<SnapshotGate>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    lifecycle_thread: Mutex<Option<JoinHandle<()>>>,
    /// Set by `shutdown`: threads end once their queue is empty even if their stop marker
    /// could not be queued (shutdown called from a callback on a full queue).
    closing: Arc<AtomicBool>,
}

impl Dispatcher {
    pub(crate) fn start(
        registry: Arc<Registry>,
        threads: usize,
        capacity: usize,
        policy: Backpressure,
        lag_threshold: Duration,
    ) -> std::io::Result<Dispatcher> {
        let (ltx, lrx) = bounded(LIFECYCLE_CAPACITY);
        let lifecycle = Arc::new(LifecycleSink {
            tx: ltx,
            lost: AtomicU64::new(0),
            drops_pending: AtomicBool::new(false),
            dropped_total: AtomicU64::new(0),
            listener_panics: AtomicU64::new(0),
            gap_tap: std::sync::OnceLock::new(),
        });
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
            let (tx, rx) = bounded(capacity);
            let recorder = Arc::new(LagRecorder::new());
            let shard = Shard {
                rx: rx.clone(),
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
            queues.push((tx, rx));
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
    pub(crate) fn push(&self, event: Event, stop: &AtomicBool) -> Pushed {
        let (tx, rx) = &self.queues[self.shard_of(event.topic())];
        let event = match tx.try_send(Some(event)) {
            Ok(()) => return Pushed::Queued,
            // Never disconnected: this struct holds a receiver of every queue.
            Err(TrySendError::Full(event)) | Err(TrySendError::Disconnected(event)) => event,
        };
        match self.policy {
            Backpressure::DropNewest => {
                self.count_drop_opt(event);
                Pushed::DroppedNewest
            }
            Backpressure::DropOldest => {
                let mut event = event;
                loop {
                    match rx.try_recv() {
                        Ok(Some(oldest)) => self.count_drop_opt(Some(oldest)),
                        Ok(None) => {
                            // Took the stop marker of a shutdown: put it back and give up.
                            let _ = tx.try_send(None);
                            self.count_drop_opt(event);
                            return Pushed::DroppedNewest;
                        }
                        Err(_) => {}
                    }
                    match tx.try_send(event) {
                        Ok(()) => return Pushed::DroppedOldest,
                        Err(TrySendError::Full(back)) => event = back,
                        Err(TrySendError::Disconnected(back)) => {
                            self.count_drop_opt(back);
                            return Pushed::DroppedNewest;
                        }
                    }
                }
            }
            Backpressure::Block => {
                let started = Instant::now();
                let mut event = event;
                loop {
                    match tx.send_timeout(event, BLOCK_POLL) {
                        Ok(()) => return Pushed::QueuedAfter(started.elapsed()),
                        Err(SendTimeoutError::Timeout(back)) if !stop.load(Ordering::Acquire) => {
                            event = back
                        }
                        Err(SendTimeoutError::Timeout(back))
                        | Err(SendTimeoutError::Disconnected(back)) => {
                            self.count_drop_opt(back);
                            return Pushed::DroppedNewest;
                        }
                    }
                }
            }
        }
    }

    /// Queues a snapshot in its topic's queue behind the events already there, waiting for
    /// room whatever the policy (snapshots are never dropped), until `stop` becomes true.
    /// Returns whether it was queued.
    pub(crate) fn push_snapshot(&self, event: Event, stop: &AtomicBool) -> bool {
        let (tx, _) = &self.queues[self.shard_of(event.topic())];
        let mut event = Some(event);
        loop {
            match tx.send_timeout(event, BLOCK_POLL) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(back)) if !stop.load(Ordering::Acquire) => {
                    event = back
                }
                Err(_) => return false,
            }
        }
    }

    fn count_drop_opt(&self, event: Option<Event>) {
        if let Some(event) = event {
            event
                .origin
                .stats
                .dispatch
                .dropped
                .fetch_add(1, Ordering::Relaxed);
            self.lifecycle.note_dropped();
        }
    }

    /// Events waiting in each queue.
    pub(crate) fn queue_depths(&self) -> Vec<usize> {
        self.queues.iter().map(|(tx, _)| tx.len()).collect()
    }

    /// Stops the dispatcher threads after they drain their queues, then the lifecycle thread.
    /// Waits until `deadline`; threads still busy in a callback then are left to finish alone.
    /// Returns whether every thread was joined.
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        let me = std::thread::current().id();
        let mut threads = self.threads.lock();
        // Shutdown called from a callback runs on one of our threads: that thread cannot wait
        // for room in its own queue or join itself; it ends after the callback returns.
        let own = threads.iter().position(|h| h.thread().id() == me);
        // The stop marker goes behind the queued events: each thread drains its queue first.
        for (index, (tx, _)) in self.queues.iter().enumerate() {
            if Some(index) == own {
                let _ = tx.try_send(None);
            } else {
                let _ = tx.send_deadline(None, deadline);
            }
        }
        let mut all = true;
        for handle in threads.drain(..) {
            if handle.thread().id() != me {
                all &= join_until(handle, deadline);
            }
        }
        // Set once the other dispatcher threads are done, so the lifecycle thread does not end
        // before their last events are queued.
        self.closing.store(true, Ordering::Release);
        let mut lifecycle_thread = self.lifecycle_thread.lock();
        if lifecycle_thread
            .as_ref()
            .is_some_and(|h| h.thread().id() == me)
        {
            // Called from a lifecycle callback: this thread is the queue's only reader.
            let _ = self.lifecycle.tx.try_send(LifecycleMsg::Stop);
        } else {
            let _ = self.lifecycle.tx.send_timeout(
                LifecycleMsg::Stop,
                deadline.saturating_duration_since(Instant::now()),
            );
        }
        if let Some(handle) = lifecycle_thread.take() {
            if handle.thread().id() != me {
                all &= join_until(handle, deadline);
            }
        }
        all
    }
}

/// Joins `handle` if it finishes before `deadline`; otherwise leaves it running.
pub(crate) fn join_until(handle: JoinHandle<()>, deadline: Instant) -> bool {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = handle.join();
    true
}

type Route = Arc<[Arc<Listener<Event>>]>;

/// One dispatcher thread's inputs.
struct Shard {
    rx: Receiver<Option<Event>>,
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
            rx,
            registry,
            sink,
            lag,
            lag_threshold,
            closing,
            gate,
        } = self;
        run_shard(rx, registry, sink, lag, lag_threshold, &closing, &gate);
    }
}

fn run_shard(
    rx: Receiver<Option<Event>>,
    registry: Arc<Registry>,
    sink: Arc<LifecycleSink>,
    lag: Arc<LagRecorder>,
    lag_threshold: Duration,
    closing: &AtomicBool,
    gate: &SnapshotGate,
) {
    let mut version = u64::MAX;
    let mut listeners = registry.event_listeners();
    // Topic names come from the service, not from strangers: a fast non-keyed hash is fine.
    let mut routes: FxHashMap<Box<str>, Route> = FxHashMap::default();
    let mut alarm = LagAlarm::new(lag_threshold, Instant::now());
    loop {
        if closing.load(Ordering::Acquire) && rx.is_empty() {
            break;
        }
        let Ok(Some(event)) = rx.recv() else {
            break;
        };
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
        let now = registry.version();
        if now != version {
            version = now;
            listeners = registry.event_listeners();
            routes.clear();
        }
        let topic = event.topic();
        // The order and freshness rule of snapshots (resync/gate.rs).
        if event.is_snapshot() {
            if !gate.admit(topic) {
                continue;
            }
        } else {
            gate.note_live(topic, event.received_instant);
        }
        if let Some(route) = routes.get(topic) {
            deliver(&event, route, false, &sink);
            continue;
        }
        let route: Route = listeners
            .iter()
            .filter(|l| l.pattern.as_ref().is_some_and(|p| p.matches(topic)))
            .cloned()
            .collect();
        deliver(&event, &route, true, &sink);
        if routes.len() >= ROUTE_CACHE_MAX {
            routes.clear();
        }
        routes.insert(topic.into(), route);
    }
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
                    topic: event.topic().to_owned(),
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
                topic: event.topic().to_owned(),
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
            Ok(LifecycleMsg::Event(event)) => deliver_lifecycle(&event, &registry, &sink),
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
    for listener in registry.lifecycle_listeners().iter() {
        if let Err(message) = listener.call(event) {
            sink.listener_panics.fetch_add(1, Ordering::Relaxed);
            log::error!("a lifecycle listener panicked: {message}");
        }
    }
}
