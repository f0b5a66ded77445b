//! dispatch/lifecycle.rs owns the lifecycle queue and thread: [`LifecycleSink`] (what every
//! thread emits lifecycle events into, bounded in events and bytes), drop reports, and delivery
//! to lifecycle listeners; it never runs an event listener and never blocks an emitter for
//! long (at most 200 ms for an important event).

use super::BLOCK_POLL;
use crate::event::Lifecycle;
use crate::listener::Registry;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time between two [`Lifecycle::Dropped`] reports.
const DROP_REPORT_EVERY: Duration = Duration::from_millis(100);
/// How long an important lifecycle event waits for room in a full lifecycle queue.
const IMPORTANT_WAIT: Duration = Duration::from_millis(200);
/// Bytes of lifecycle events the lifecycle queue holds at most (see [`lifecycle_bytes`]).
const LIFECYCLE_BYTES: u64 = 16 << 20;
/// Capacity of the lifecycle queue.
pub(super) const LIFECYCLE_CAPACITY: usize = 4096;

pub(super) enum LifecycleMsg {
    /// Boxed: the queue is an array of 4096 slots allocated (and touched) at `build()`; a
    /// slot of a pointer instead of a whole `Lifecycle` saves about half a MiB of every
    /// client's memory, for one allocation per lifecycle event (they are rare).
    Event(Box<Lifecycle>),
    DropsPending,
    Stop,
}

/// Where lifecycle events go: a bounded queue read by the lifecycle thread.
pub(crate) struct LifecycleSink {
    pub(super) tx: Sender<LifecycleMsg>,
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
    /// Told after each message queued, when a pool serves the queue (dispatch/pooled.rs): it
    /// schedules the queue's mailbox. Unset with a lifecycle thread of its own.
    pub(super) wake: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
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
        Lifecycle::BodyMismatch { topic, error, .. } => topic.len() + error.len(),
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
        | Lifecycle::ResyncFailed { .. }
        | Lifecycle::BodyMismatch { .. } => log::Level::Warn,
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
    pub(super) fn new(tx: Sender<LifecycleMsg>) -> LifecycleSink {
        LifecycleSink {
            tx,
            lost: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            drops_pending: AtomicBool::new(false),
            dropped_total: AtomicU64::new(0),
            listener_panics: AtomicU64::new(0),
            gap_tap: std::sync::OnceLock::new(),
            wake: std::sync::OnceLock::new(),
        }
    }

    /// A message was queued: a pooled queue's mailbox is scheduled.
    pub(super) fn queued(&self) {
        if let Some(wake) = self.wake.get() {
            wake();
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
                Ok(()) => return self.queued(),
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
        if sent {
            self.queued();
        } else {
            self.count_lost(bytes);
        }
    }

    /// A report of `bytes` could not be queued: it is counted as lost.
    fn count_lost(&self, bytes: u64) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.lost.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn note_dropped(&self) {
        self.dropped_total.fetch_add(1, Ordering::AcqRel);
        if !self.drops_pending.swap(true, Ordering::AcqRel) {
            if self.tx.try_send(LifecycleMsg::DropsPending).is_ok() {
                self.queued();
            } else {
                // Not queued: let a later drop try again rather than silence reports for good.
                self.drops_pending.store(false, Ordering::Release);
            }
        }
    }
}

/// What a lifecycle queue's consumer carries from one message to the next.
#[derive(Default)]
pub(super) struct LifecycleCursor {
    /// When the coalesced drop report is due.
    pub(super) report_due: Option<Instant>,
    reported: u64,
}

/// What [`handle_lifecycle`] says of the queue after a message.
#[derive(PartialEq)]
pub(super) enum After {
    More,
    /// The stop marker (or a disconnected queue): the last drop report was made.
    Stopped,
}

pub(super) fn run_lifecycle(
    rx: Receiver<LifecycleMsg>,
    registry: Arc<Registry>,
    sink: Arc<LifecycleSink>,
    closing: &AtomicBool,
) {
    let mut cursor = LifecycleCursor::default();
    loop {
        if closing.load(Ordering::Acquire) && rx.is_empty() {
            report_drops(&registry, &sink, &mut cursor.reported);
            return;
        }
        let msg = match cursor.report_due {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => rx.recv_deadline(due),
        };
        if handle_lifecycle(msg, &registry, &sink, &mut cursor) == After::Stopped {
            return;
        }
    }
}

/// Handles one message taken from the lifecycle queue (or a wait that timed out), and makes the
/// drop report if it is due.
pub(super) fn handle_lifecycle(
    msg: Result<LifecycleMsg, RecvTimeoutError>,
    registry: &Registry,
    sink: &LifecycleSink,
    cursor: &mut LifecycleCursor,
) -> After {
    match msg {
        Ok(LifecycleMsg::Event(event)) => {
            sink.queued_bytes
                .fetch_sub(lifecycle_bytes(&event), Ordering::AcqRel);
            deliver_lifecycle(&event, registry, sink);
        }
        Ok(LifecycleMsg::DropsPending) => {
            cursor
                .report_due
                .get_or_insert_with(|| Instant::now() + DROP_REPORT_EVERY);
        }
        Ok(LifecycleMsg::Stop) | Err(RecvTimeoutError::Disconnected) => {
            report_drops(registry, sink, &mut cursor.reported);
            return After::Stopped;
        }
        Err(RecvTimeoutError::Timeout) => {}
    }
    if cursor.report_due.is_some_and(|due| Instant::now() >= due) {
        cursor.report_due = None;
        report_drops(registry, sink, &mut cursor.reported);
    }
    After::More
}

/// The last drop report, once the queue is closing and empty.
pub(super) fn final_report(
    registry: &Registry,
    sink: &LifecycleSink,
    cursor: &mut LifecycleCursor,
) {
    report_drops(registry, sink, &mut cursor.reported);
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
    use crossbeam_channel::bounded;

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
