//! dispatch/pooled.rs serves one client's dispatcher queues and lifecycle queue on a shared
//! [`ThreadPool`](crate::pool::ThreadPool) instead of threads of its own, as mailboxes; it never
//! runs a queue on two threads at once and never holds a lock while a callback runs.
//!
//! The queues are the same bounded queues as with threads of the client's own (capacity, bytes
//! and backpressure policy unchanged). A queue that receives a message is scheduled: put on the
//! pool's run queue, once (`scheduled` is the proof; whoever sets it submits the job). A worker
//! then takes at most [`BATCH`] messages, clears `scheduled`, and schedules the queue again if
//! more are waiting: it goes to the back of the run queue, so a flooding client shares the
//! workers with the others instead of holding one. The consumer's state (route cache, lag
//! alarm, pending drop report) is taken out of its slot for the batch, so no lock is held while
//! callbacks run.

use super::lifecycle::LifecycleSink;
use super::lifecycle::{final_report, handle_lifecycle, After, LifecycleCursor, LifecycleRx};
use super::shard::{Cursor, Shard};
use super::CALLBACK_THREAD;
use crate::listener::Registry;
use crate::pool::WeakPool;
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Most messages a worker takes from one queue before it goes back to the run queue: enough to
/// amortise the hand-over (one job per batch), few enough that a burst of one client delays
/// another's events by at most a batch of callbacks per worker.
pub(super) const BATCH: usize = 64;

/// The scheduling state of one mailbox.
struct Scheduling {
    /// On the run queue or running: set by whoever submits the job, cleared by the job.
    scheduled: AtomicBool,
    /// Took its stop marker: never scheduled again.
    finished: AtomicBool,
    pool: WeakPool,
}

impl Scheduling {
    fn new(pool: WeakPool) -> Scheduling {
        Scheduling {
            scheduled: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            pool,
        }
    }

    /// Submits `job` unless the mailbox is already scheduled or finished.
    fn schedule(&self, job: impl FnOnce() + Send + 'static) {
        if self.finished.load(Ordering::Acquire) || self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        if !self.pool.submit(Box::new(job)) {
            // The pool was shut down: nothing will serve this queue again.
            self.scheduled.store(false, Ordering::Release);
        }
    }

    /// Ends a batch. Returns whether the mailbox should be scheduled again. The swap (not a
    /// store) reads the `scheduled` a producer set after queuing: its message is seen below.
    fn end_batch(&self, finished: bool, empty: impl Fn() -> bool) -> bool {
        if finished {
            self.finished.store(true, Ordering::Release);
        }
        self.scheduled.swap(false, Ordering::AcqRel);
        !finished && !empty()
    }

    /// Whether the mailbox took its stop marker and no batch is running.
    fn done(&self) -> bool {
        self.finished.load(Ordering::Acquire) && !self.scheduled.load(Ordering::Acquire)
    }
}

/// One dispatcher queue of a pooled client.
pub(super) struct ShardBox {
    shard: Shard,
    /// Out of its slot while a batch runs (one batch at a time, by `scheduled`).
    cursor: Mutex<Option<Cursor>>,
    scheduling: Scheduling,
}

impl ShardBox {
    pub(super) fn new(shard: Shard, pool: WeakPool) -> Arc<ShardBox> {
        let cursor = Cursor::new(shard.lag_threshold);
        Arc::new(ShardBox {
            shard,
            cursor: Mutex::new(Some(cursor)),
            scheduling: Scheduling::new(pool),
        })
    }

    /// Puts the queue on the pool's run queue unless it is there already.
    pub(super) fn schedule(self: &Arc<Self>) {
        let me = self.clone();
        self.scheduling.schedule(move || me.run());
    }

    pub(super) fn done(&self) -> bool {
        self.scheduling.done()
    }

    fn run(self: Arc<Self>) {
        CALLBACK_THREAD.with(|c| c.set(true));
        let Some(mut cursor) = self.cursor.lock().take() else {
            return;
        };
        let queue = &self.shard.queue;
        let mut finished = false;
        // Callbacks' panics are caught by the listeners; this catches a bug of ours, so that
        // the queue is still served afterwards.
        let batch = catch_unwind(AssertUnwindSafe(|| {
            for _ in 0..BATCH {
                // The pool was shut down: no callback after the one that was running.
                if self.scheduling.pool.is_shut_down() {
                    return;
                }
                if self.shard.closing.load(Ordering::Acquire) && queue.rx.is_empty() {
                    finished = true;
                    return;
                }
                match queue.rx.try_recv() {
                    Ok(Some(event)) => self.shard.handle(&mut cursor, event),
                    Ok(None) => {
                        finished = true;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }));
        if batch.is_err() {
            log::error!("a dispatcher batch panicked");
        }
        *self.cursor.lock() = Some(cursor);
        if self.scheduling.end_batch(finished, || queue.rx.is_empty()) {
            self.schedule();
        }
    }
}

/// The lifecycle queue of a pooled client.
pub(super) struct LifecycleBox {
    rx: LifecycleRx,
    registry: Arc<Registry>,
    sink: Arc<LifecycleSink>,
    closing: Arc<AtomicBool>,
    /// The cursor, and the time a timer was set for to make the drop report.
    cursor: Mutex<Option<(LifecycleCursor, Option<Instant>)>>,
    scheduling: Scheduling,
}

impl LifecycleBox {
    pub(super) fn new(
        rx: LifecycleRx,
        registry: Arc<Registry>,
        sink: Arc<LifecycleSink>,
        closing: Arc<AtomicBool>,
        pool: WeakPool,
    ) -> Arc<LifecycleBox> {
        let mailbox = Arc::new(LifecycleBox {
            rx,
            registry,
            sink: sink.clone(),
            closing,
            cursor: Mutex::new(Some((LifecycleCursor::default(), None))),
            scheduling: Scheduling::new(pool),
        });
        // Weak: the sink is held by the mailbox.
        let weak = Arc::downgrade(&mailbox);
        let _ = sink.wake.set(Box::new(move || {
            if let Some(mailbox) = weak.upgrade() {
                mailbox.schedule();
            }
        }));
        mailbox
    }

    pub(super) fn schedule(self: &Arc<Self>) {
        let me = self.clone();
        self.scheduling.schedule(move || me.run());
    }

    pub(super) fn done(&self) -> bool {
        self.scheduling.done()
    }

    fn run(self: Arc<Self>) {
        CALLBACK_THREAD.with(|c| c.set(true));
        let Some((mut cursor, mut timer)) = self.cursor.lock().take() else {
            return;
        };
        let mut finished = false;
        let batch = catch_unwind(AssertUnwindSafe(|| {
            for _ in 0..BATCH {
                if self.scheduling.pool.is_shut_down() {
                    return;
                }
                if self.closing.load(Ordering::Acquire) && self.rx.is_empty() {
                    final_report(&self.registry, &self.sink, &mut cursor);
                    finished = true;
                    return;
                }
                let msg = self.rx.recv_until(Some(Instant::now()));
                let empty = msg.is_err();
                if handle_lifecycle(msg, &self.registry, &self.sink, &mut cursor) == After::Stopped
                {
                    finished = true;
                    return;
                }
                if empty {
                    return;
                }
            }
        }));
        if batch.is_err() {
            log::error!("a lifecycle batch panicked");
        }
        // A report due later (drops, repeated failures): a timer of the pool schedules the
        // mailbox then.
        if let Some(due) = cursor.next_due().filter(|_| !finished) {
            if timer != Some(due) {
                timer = Some(due);
                let weak: Weak<LifecycleBox> = Arc::downgrade(&self);
                self.scheduling.pool.submit_at(
                    due + Duration::from_millis(1),
                    Box::new(move || {
                        if let Some(mailbox) = weak.upgrade() {
                            mailbox.schedule();
                        }
                    }),
                );
            }
        }
        let due = cursor.next_due().filter(|_| !finished);
        *self.cursor.lock() = Some((cursor, timer));
        let more = self.scheduling.end_batch(finished, || self.rx.is_empty());
        // A timer that fired while this batch ran found the mailbox scheduled and did nothing,
        // and is not set again for the same time: a report already due is made by another
        // batch now (checked after `scheduled` is cleared, so no firing falls in between).
        if more || due.is_some_and(|due| due <= Instant::now()) {
            self.schedule();
        }
    }
}

/// Waits until `done` holds or `deadline` passes; returns whether it held.
pub(super) fn wait_done(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
