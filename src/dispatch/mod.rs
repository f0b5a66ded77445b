//! dispatch/ owns the dispatcher threads: bounded queues, the backpressure policy, per-topic
//! ordering, and the lifecycle thread. It never reads a socket and never blocks a socket thread
//! for long: only under [`Backpressure::Block`] (until there is room), and for at most 200 ms
//! when an important lifecycle event (gap, disconnect, stop) finds the lifecycle queue full.
//!
//! Events are sharded by a case-insensitive hash of their topic, so all events of one topic go
//! through one queue and one thread, in the order the socket thread pushed them; different
//! topics run in parallel on different threads. Each thread caches, per topic name, the listeners
//! that match it, and refreshes the cache when the registry's version changes.
//!
//! This file holds the [`Dispatcher`] itself (starting its threads, sharding and pushing events
//! per the backpressure policy, shutting down); queue.rs the bounded queue and its accounting,
//! route.rs the per-thread route cache, shard.rs a dispatcher thread's loop, lifecycle.rs the
//! lifecycle queue and thread, pooled.rs the same queues served by a shared
//! [`ThreadPool`](crate::pool::ThreadPool) instead (a client built with one starts no
//! dispatcher or lifecycle thread).

mod lifecycle;
mod pooled;
mod queue;
mod route;
mod shard;

use crate::config::Backpressure;
use crate::event::Event;
use crate::lag::LagRecorder;
use crate::listener::Registry;
use crate::pool::ThreadPool;
use crate::snapshot_gate::SnapshotGate;
use crate::threads::join_until;
pub(crate) use lifecycle::LifecycleSink;
use lifecycle::{lifecycle_queue, run_lifecycle, LifecycleMsg, LifecycleRx};
use parking_lot::Mutex;
use pooled::{wait_done, LifecycleBox, ShardBox};
use queue::Queue;
use shard::Shard;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// What happened to an event handed to [`Dispatcher::push`].
#[derive(Debug)]
pub(crate) enum Pushed {
    Queued,
    /// Queued after waiting this long for room ([`Backpressure::Block`]).
    QueuedAfter(Duration),
    /// The event itself was dropped (queue full under `DropNewest`, or shutting down).
    DroppedNewest,
    /// An older event was dropped to make room.
    DroppedOldest,
    /// Under [`Backpressure::Block`], the caller's `interrupted` said to stop waiting before
    /// there was room: the event is handed back, neither queued nor counted, for the caller to
    /// push again (before any later event of its socket, so that nothing is reordered).
    Interrupted(Event),
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
    /// With a thread pool: the mailboxes serving the queues (no thread above is started).
    pooled: Option<Pooled>,
}

/// A pooled client's mailboxes (pooled.rs), one per queue, and its pool.
struct Pooled {
    pool: ThreadPool,
    shards: Vec<Arc<ShardBox>>,
    lifecycle: Arc<LifecycleBox>,
}

/// The limits of each dispatcher queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    /// Events.
    pub capacity: usize,
    /// Bytes of queued events ([`Event::queued_bytes`]).
    pub capacity_bytes: usize,
}

/// What both kinds of dispatcher are made of: the lifecycle queue and its sink, the snapshot
/// gate, the closing flag, and `shards` dispatcher queues with their consumers (not started).
struct Parts {
    lifecycle: Arc<LifecycleSink>,
    lifecycle_rx: LifecycleRx,
    gate: Arc<SnapshotGate>,
    closing: Arc<AtomicBool>,
    queues: Vec<Arc<Queue>>,
    lag: Vec<Arc<LagRecorder>>,
    shards: Vec<Shard>,
}

impl Parts {
    fn new(
        registry: &Arc<Registry>,
        shards: usize,
        limits: QueueLimits,
        lag_threshold: Duration,
    ) -> Parts {
        let (ltx, lifecycle_rx) = lifecycle_queue();
        let lifecycle = Arc::new(LifecycleSink::new(ltx));
        let gate = Arc::new(SnapshotGate::default());
        let closing = Arc::new(AtomicBool::new(false));
        let shards: Vec<Shard> = (0..shards)
            .map(|_| Shard {
                queue: Arc::new(Queue::new(limits.capacity, limits.capacity_bytes)),
                registry: registry.clone(),
                sink: lifecycle.clone(),
                lag: Arc::new(LagRecorder::new()),
                lag_threshold,
                closing: closing.clone(),
                gate: gate.clone(),
            })
            .collect();
        Parts {
            queues: shards.iter().map(|s| s.queue.clone()).collect(),
            lag: shards.iter().map(|s| s.lag.clone()).collect(),
            lifecycle,
            lifecycle_rx,
            gate,
            closing,
            shards,
        }
    }
}

impl Dispatcher {
    pub(crate) fn start(
        registry: Arc<Registry>,
        threads: usize,
        limits: QueueLimits,
        policy: Backpressure,
        lag_threshold: Duration,
    ) -> std::io::Result<Dispatcher> {
        let parts = Parts::new(&registry, threads, limits, lag_threshold);
        let lifecycle_thread = {
            let (rx, sink, closing) = (
                parts.lifecycle_rx,
                parts.lifecycle.clone(),
                parts.closing.clone(),
            );
            std::thread::Builder::new()
                .name("genesys-lifecycle".into())
                .spawn(move || {
                    CALLBACK_THREAD.with(|c| c.set(true));
                    run_lifecycle(rx, registry, sink, &closing)
                })?
        };
        let mut handles = Vec::with_capacity(threads);
        for (index, shard) in parts.shards.into_iter().enumerate() {
            handles.push(
                std::thread::Builder::new()
                    .name(format!("genesys-dispatch-{index}"))
                    .spawn(move || shard.run())?,
            );
        }
        Ok(Dispatcher {
            queues: parts.queues,
            policy,
            lifecycle: parts.lifecycle,
            lag: parts.lag,
            gate: parts.gate,
            closing: parts.closing,
            threads: Mutex::new(handles),
            lifecycle_thread: Mutex::new(Some(lifecycle_thread)),
            pooled: None,
        })
    }

    /// A dispatcher served by `pool`: `shards` queues (each served by one worker at a time) and
    /// the lifecycle queue, no thread of its own.
    pub(crate) fn start_pooled(
        registry: Arc<Registry>,
        pool: &ThreadPool,
        shards: usize,
        limits: QueueLimits,
        policy: Backpressure,
        lag_threshold: Duration,
    ) -> Dispatcher {
        let parts = Parts::new(&registry, shards, limits, lag_threshold);
        let boxes = parts
            .shards
            .into_iter()
            .map(|shard| ShardBox::new(shard, pool.downgrade()))
            .collect();
        let lifecycle_box = LifecycleBox::new(
            parts.lifecycle_rx,
            registry,
            parts.lifecycle.clone(),
            parts.closing.clone(),
            pool.downgrade(),
        );
        Dispatcher {
            queues: parts.queues,
            policy,
            lifecycle: parts.lifecycle,
            lag: parts.lag,
            gate: parts.gate,
            closing: parts.closing,
            threads: Mutex::new(Vec::new()),
            lifecycle_thread: Mutex::new(None),
            pooled: Some(Pooled {
                pool: pool.clone(),
                shards: boxes,
                lifecycle: lifecycle_box,
            }),
        }
    }

    /// Whether this dispatcher is served by a pool that was shut down: nothing is delivered.
    pub(crate) fn pool_shut_down(&self) -> bool {
        self.pooled.as_ref().is_some_and(|p| p.pool.is_shut_down())
    }

    /// Hands an event to queue `index` (room reserved) and, with a pool, schedules the queue.
    fn send(&self, index: usize, event: Option<Event>) {
        // Never disconnected: the queue holds a receiver.
        let _ = self.queues[index].tx.send(event);
        if let Some(pooled) = &self.pooled {
            pooled.shards[index].schedule();
        }
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
    /// becomes true (then the event is dropped and counted) or `interrupted` returns true
    /// (checked every [`BLOCK_POLL`]; the event is handed back: [`Pushed::Interrupted`]). A
    /// socket thread blocked here reads no socket and serves no nudge: `interrupted` lets it
    /// serve one (a callback that called `subscribe` from the very dispatcher thread it waits
    /// for stalled until the subscribe deadline, issue 17 point 6).
    pub(crate) fn push(
        &self,
        mut event: Event,
        stop: &AtomicBool,
        interrupted: &dyn Fn() -> bool,
    ) -> Pushed {
        let index = self.shard_of(event.topic());
        let queue = &self.queues[index];
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
            self.send(index, Some(event));
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
                        // The oldest goes, snapshot or not: events of all topics share the
                        // queue and several socket threads push into it, so taking a later
                        // live event out instead would mean re-queuing the ones before it,
                        // behind events pushed meanwhile (reordering a topic). A snapshot is
                        // never dropped silently, though (`drop_queued`).
                        self.drop_queued(&oldest);
                    }
                    Ok(None) => {
                        // Took the stop marker of a shutdown: put it back and give up.
                        self.send(index, None);
                        self.count_drop(&event);
                        return Pushed::DroppedNewest;
                    }
                    // Empty: the thread took the rest and frees its room in a moment.
                    Err(_) => std::thread::yield_now(),
                }
                if queue.try_reserve(bytes) {
                    self.send(index, Some(event));
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
                    if interrupted() {
                        return Pushed::Interrupted(event);
                    }
                    queue.wait_for_room(bytes, BLOCK_POLL);
                    if queue.try_reserve(bytes) {
                        self.send(index, Some(event));
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
        let index = self.shard_of(event.topic());
        let queue = &self.queues[index];
        let bytes = event.queued_bytes() as u64;
        loop {
            if queue.try_reserve(bytes) {
                self.send(index, Some(event));
                return true;
            }
            if stop.load(Ordering::Acquire) {
                return false;
            }
            queue.wait_for_room(bytes, BLOCK_POLL);
        }
    }

    /// Counts as dropped an event its socket thread could not queue before it stopped (one
    /// handed back by [`Pushed::Interrupted`]).
    pub(crate) fn discard(&self, event: &Event) {
        self.drop_queued(event);
    }

    /// Drops an event taken out of a queue undelivered: a snapshot's fetch is forgotten by the
    /// gate and counted there too (`ResyncHealth::snapshots_dropped`).
    fn drop_queued(&self, event: &Event) {
        if event.is_snapshot() {
            self.gate.dropped(event.topic());
        }
        self.count_drop(event);
    }

    fn count_drop(&self, event: &Event) {
        count_drop(event, &self.lifecycle);
    }

    /// Events waiting in each queue.
    pub(crate) fn queue_depths(&self) -> Vec<usize> {
        self.queues.iter().map(|q| q.len()).collect()
    }

    /// Stops the dispatcher threads after they drain their queues, then the lifecycle thread.
    /// Waits until `deadline`; threads still busy in a callback then are left to finish alone,
    /// and a later call joins them. Returns whether every thread was joined.
    pub(crate) fn shutdown(&self, deadline: Instant) -> bool {
        if let Some(pooled) = &self.pooled {
            return self.shutdown_pooled(pooled, deadline);
        }
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

    /// The pooled form of [`Dispatcher::shutdown`]: the queues are drained by the pool, then
    /// the lifecycle queue. On a worker of the pool (a callback shutting down its own client or
    /// another one) it does not wait for them: with every worker busy, waiting could only end
    /// at the deadline. Their events are then counted as dropped, listeners being cleared by
    /// the client's shutdown. With the pool shut down, nothing is left to wait for, and the
    /// events left in the queues are counted as dropped.
    fn shutdown_pooled(&self, pooled: &Pooled, deadline: Instant) -> bool {
        if !self.closing.load(Ordering::Acquire) {
            for index in 0..self.queues.len() {
                self.send(index, None);
            }
        }
        let wait = !pooled.pool.on_worker() && !pooled.pool.is_shut_down();
        let mut all = true;
        // A pool shut down meanwhile serves nothing more: no waiting for it.
        let gone = || pooled.pool.is_shut_down();
        if wait {
            for shard in &pooled.shards {
                all &= wait_done(deadline, || shard.done() || gone());
            }
        }
        if !self.closing.swap(true, Ordering::AcqRel) {
            let sent = if wait {
                let left = deadline.saturating_duration_since(Instant::now());
                self.lifecycle
                    .tx
                    .send_timeout(LifecycleMsg::Stop, left)
                    .is_ok()
            } else {
                self.lifecycle.tx.try_send(LifecycleMsg::Stop).is_ok()
            };
            // Not sent (full): the mailbox ends once the queue is empty (`closing`).
            let _ = sent;
            pooled.lifecycle.schedule();
        }
        if wait {
            all &= wait_done(deadline, || pooled.lifecycle.done() || gone());
        }
        if gone() {
            self.discard_undelivered();
        }
        all
    }

    /// Counts as dropped the events left in the queues of a client whose pool was shut down:
    /// nothing will deliver them (guarantee 1: none vanishes uncounted). The socket threads are
    /// stopped by then; a worker still in a batch stops before its next callback.
    fn discard_undelivered(&self) {
        for queue in &self.queues {
            while let Ok(message) = queue.rx.try_recv() {
                if let Some(event) = message {
                    queue.release(event.queued_bytes() as u64);
                    self.drop_queued(&event);
                }
            }
        }
    }
}

/// Counts `event` as dropped: on its channel, and in the coalesced `Lifecycle::Dropped` report.
pub(super) fn count_drop(event: &Event, sink: &LifecycleSink) {
    event
        .origin
        .stats
        .dispatch
        .dropped
        .fetch_add(1, Ordering::Relaxed);
    sink.note_dropped();
}

#[cfg(test)]
mod tests {
    use super::*;
    use queue::UNPIN_DEPTH;

    fn test_origin() -> Arc<crate::event::Origin> {
        Arc::new(crate::event::Origin {
            channel: crate::channel_id::ChannelId::new("c1"),
            stats: Arc::new(crate::health::ChannelStats::new()),
            epoch: (Instant::now(), std::time::SystemTime::now()),
        })
    }

    /// A live event of `topic` as a socket thread queues it.
    fn live(topic: &str, origin: &Arc<crate::event::Origin>) -> Event {
        let frame = format!(r#"{{"topicName":"{topic}","eventBody":{{}}}}"#);
        event_of(tungstenite::Bytes::from(frame), origin)
    }

    /// The event of one notification frame, `frame` (which may be a slice of a larger read
    /// buffer) as a socket thread queues it.
    fn event_of(frame: tungstenite::Bytes, origin: &Arc<crate::event::Origin>) -> Event {
        let text = crate::event::FrameText::try_from(frame).unwrap();
        let Ok(crate::message::Inbound::Notification(located)) =
            crate::message::parse(text.as_str())
        else {
            panic!("a notification");
        };
        Event::new(text, located, origin.clone(), Instant::now())
    }

    /// A dispatcher of `threads` unpooled queues of `capacity` events and `capacity_bytes`
    /// bytes each, with a lag threshold of 60 s.
    fn start_dispatcher(
        registry: Arc<Registry>,
        threads: usize,
        capacity: usize,
        capacity_bytes: usize,
        policy: Backpressure,
    ) -> Dispatcher {
        let limits = QueueLimits {
            capacity,
            capacity_bytes,
        };
        Dispatcher::start(registry, threads, limits, policy, Duration::from_secs(60)).unwrap()
    }

    /// Issue 20: pooled queues share the pool's threads by batches. With one pool thread held
    /// by client A's first callback while 500 more of A's events and one of B's are queued, B's
    /// event runs after at most one batch of A's, not after all of them; each client's events
    /// keep their order; shutting A down leaves B served.
    #[test]
    fn a_flooding_pooled_client_shares_the_pool_thread_by_batches() {
        let pool = ThreadPool::new(1).unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
        let limits = QueueLimits {
            capacity: 1024,
            capacity_bytes: 1 << 30,
        };
        let start = |registry: &Arc<Registry>| {
            Dispatcher::start_pooled(
                registry.clone(),
                &pool,
                1,
                limits,
                Backpressure::Block,
                Duration::from_secs(60),
            )
        };
        let (a_registry, b_registry) = (
            Arc::new(Registry::new(usize::MAX)),
            Arc::new(Registry::new(usize::MAX)),
        );
        let record = log.clone();
        let _a = a_registry.add_event(
            "v2.*.*".parse().unwrap(),
            Box::new(move |event: &Event| {
                let mut log = record.lock();
                if log.is_empty() {
                    drop(log);
                    let _ = entered_tx.send(());
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                    log = record.lock();
                }
                log.push(format!("a {}", event.topic()));
            }),
        );
        let record = log.clone();
        let _b = b_registry.add_event(
            "v2.*.*".parse().unwrap(),
            Box::new(move |event: &Event| record.lock().push(format!("b {}", event.topic()))),
        );
        let (a, b) = (start(&a_registry), start(&b_registry));
        let origin = test_origin();
        let stop = AtomicBool::new(false);
        let push = |d: &Dispatcher, topic: &str| {
            assert!(matches!(
                d.push(live(topic, &origin), &stop, &|| false),
                Pushed::Queued
            ));
        };
        push(&a, "v2.a.0");
        entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        for n in 1..=500 {
            push(&a, &format!("v2.a.{n}"));
        }
        push(&b, "v2.b.x");
        release_tx.send(()).unwrap();
        let started = Instant::now();
        while log.lock().len() < 502 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not all delivered"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let log = log.lock().clone();
        let b_at = log.iter().position(|e| e == "b v2.b.x").unwrap();
        // A's first event, then at most one batch (pooled::BATCH, 64) of A's before B's.
        assert!(b_at <= 65, "B waited behind {b_at} of A's events");
        let a_order: Vec<String> = log
            .iter()
            .filter(|e| e.starts_with("a "))
            .cloned()
            .collect();
        let expected: Vec<String> = (0..=500).map(|n| format!("a v2.a.{n}")).collect();
        assert_eq!(a_order, expected);
        assert!(a.shutdown(Instant::now() + Duration::from_secs(10)));
        push(&b, "v2.b.after");
        assert!(b.shutdown(Instant::now() + Duration::from_secs(10)));
        drop(pool);
    }

    /// Issue 17 point 6: a push blocked under `Block` gives way when `interrupted` says so,
    /// handing the event back uncounted; pushed again once there is room, it is queued.
    #[test]
    fn a_blocked_push_hands_the_event_back_when_interrupted() {
        let registry = Arc::new(Registry::new(usize::MAX));
        let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        let delivered: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = delivered.clone();
        let _listener = registry.add_event(
            "v2.*".parse().unwrap(),
            Box::new(move |event: &Event| {
                record.lock().push(event.topic().to_owned());
                if event.topic() == "v2.hold" {
                    let _ = entered_tx.send(());
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                }
            }),
        );
        let dispatcher = start_dispatcher(registry, 1, 1, 1 << 20, Backpressure::Block);
        let origin = test_origin();
        let stop = AtomicBool::new(false);
        let never = || false;
        assert!(matches!(
            dispatcher.push(live("v2.hold", &origin), &stop, &never),
            Pushed::Queued
        ));
        entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(matches!(
            dispatcher.push(live("v2.first", &origin), &stop, &never),
            Pushed::Queued
        ));
        // Full, and the dispatcher thread is held: only the interruption ends this push.
        let nudged = AtomicBool::new(false);
        let event = std::thread::scope(|scope| {
            let pushing = scope.spawn(|| {
                dispatcher.push(live("v2.second", &origin), &stop, &|| {
                    nudged.load(Ordering::SeqCst)
                })
            });
            nudged.store(true, Ordering::SeqCst);
            match pushing.join().unwrap() {
                Pushed::Interrupted(event) => event,
                other => panic!("{other:?}"),
            }
        });
        assert_eq!(event.topic(), "v2.second");
        assert_eq!(origin.stats.dispatch.dropped.load(Ordering::Relaxed), 0);
        release_tx.send(()).unwrap();
        assert!(matches!(
            dispatcher.push(event, &stop, &never),
            Pushed::Queued | Pushed::QueuedAfter(_)
        ));
        assert!(dispatcher.shutdown(Instant::now() + Duration::from_secs(10)));
        assert_eq!(*delivered.lock(), ["v2.hold", "v2.first", "v2.second"]);
    }

    /// Issue 17 point 4: `DropOldest` dropped a queued snapshot without cancelling its fetch in
    /// the gate (every live event then took the gate's lock until the topic's next snapshot)
    /// and without counting it as a dropped snapshot.
    #[test]
    fn drop_oldest_dropping_a_snapshot_frees_its_gate_entry_and_counts_it() {
        let registry = Arc::new(Registry::new(usize::MAX));
        let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        let _listener = registry.add_event(
            "v2.hold".parse().unwrap(),
            Box::new(move |_: &Event| {
                let _ = entered_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
            }),
        );
        let dispatcher = start_dispatcher(registry, 1, 2, 1 << 20, Backpressure::DropOldest);
        let origin = test_origin();
        let snapshot_origin = test_origin();
        let stop = AtomicBool::new(false);
        // The dispatcher thread is held inside a callback: the queue fills.
        assert!(matches!(
            dispatcher.push(live("v2.hold", &origin), &stop, &|| false),
            Pushed::Queued
        ));
        entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let topic = "v2.users.u1.presence";
        dispatcher.gate.begin([topic], Instant::now());
        let snapshot = Event::snapshot(topic, "{}", &snapshot_origin, Instant::now());
        assert!(dispatcher.push_snapshot(snapshot, &stop));
        assert!(matches!(
            dispatcher.push(live("v2.other", &origin), &stop, &|| false),
            Pushed::Queued
        ));
        // Full: the oldest queued event, the snapshot, makes room.
        assert!(matches!(
            dispatcher.push(live("v2.other", &origin), &stop, &|| false),
            Pushed::DroppedOldest
        ));
        assert_eq!(
            dispatcher.gate.dropped_count(),
            1,
            "the snapshot counted as dropped"
        );
        assert_eq!(
            snapshot_origin
                .stats
                .dispatch
                .dropped
                .load(Ordering::Relaxed),
            1
        );
        // Its fetch is forgotten: a live event of the topic no longer looks it up, and a later
        // snapshot of the topic is not taken for superseded.
        dispatcher.gate.note_live(topic, Instant::now());
        assert!(dispatcher.gate.admit(topic));
        assert_eq!(dispatcher.gate.superseded(), 0);
        release_tx.send(()).unwrap();
        assert!(dispatcher.shutdown(Instant::now() + Duration::from_secs(10)));
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
        let dispatcher = start_dispatcher(registry, 2, 1024, 1 << 30, Backpressure::Block);
        // One read buffer holding 200 frames, as a socket's does.
        let frames: Vec<String> = (0..200)
            .map(|n| format!(r#"{{"topicName":"v2.a.b","eventBody":{{"n":{n}}}}}"#))
            .collect();
        let buffer = tungstenite::Bytes::from(frames.concat());
        let inside = |at: usize| {
            (buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len()).contains(&at)
        };
        let origin = test_origin();
        let stop = AtomicBool::new(false);
        let mut start = 0;
        for frame in &frames {
            let slice = buffer.slice(start..start + frame.len());
            start += frame.len();
            let event = event_of(slice, &origin);
            assert!(inside(event.frame_json().as_ptr() as usize));
            assert!(matches!(
                dispatcher.push(event, &stop, &|| false),
                Pushed::Queued
            ));
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
}
