//! dispatch/lifecycle.rs owns the lifecycle queue and thread: [`LifecycleSink`] (what every
//! thread emits lifecycle events into, bounded in events and bytes), drop reports, and delivery
//! to lifecycle listeners, and the coalescing of repeated [`Lifecycle::RequestFailed`]
//! reports ([`Coalescer`]); it never runs an event listener and never blocks an emitter for
//! long (at most 200 ms for an important event).

use super::queue::Queue;
use super::BLOCK_POLL;
use crate::channel_id::ChannelId;
use crate::error::ApiError;
use crate::event::Lifecycle;
use crate::listener::Registry;
use crossbeam_channel::RecvTimeoutError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long repeats of one kind of failed REST call are counted before they are reported as
/// one [`Lifecycle::RequestFailed`] (documented there).
const REQUEST_FAILED_WINDOW: Duration = Duration::from_secs(5);
/// Kinds of failure the coalescer keeps apart at most; past that, failures are reported one by
/// one (channels × operations × error classes stay far below it).
const MAX_FAILURE_KINDS: usize = 256;

/// The least time between two [`Lifecycle::Dropped`] reports.
const DROP_REPORT_EVERY: Duration = Duration::from_millis(100);
/// How long an important lifecycle event waits for room in a full lifecycle queue.
const IMPORTANT_WAIT: Duration = Duration::from_millis(200);
/// Bytes of lifecycle events the lifecycle queue holds at most (see [`lifecycle_bytes`]).
const LIFECYCLE_BYTES: u64 = 16 << 20;
/// Capacity of the lifecycle queue.
const LIFECYCLE_CAPACITY: usize = 4096;

pub(super) enum LifecycleMsg {
    /// Boxed: a queued message is a slot of 16 bytes instead of a whole `Lifecycle`, for one
    /// allocation per lifecycle event (they are rare).
    Event(Box<Lifecycle>),
    DropsPending,
    /// Repeated request failures are being counted; report them at this time at the latest.
    FailuresPending(Instant),
    Stop,
}

/// The lifecycle queue: at most [`LIFECYCLE_CAPACITY`] messages, every kind counted (the
/// bytes of events are [`LifecycleSink`]'s own limit). Its storage grows with what it holds
/// and is freed as the lifecycle thread reads it ([`Queue`]): a queue of 4096 slots allocated
/// at `build()` cost every client 96 KiB it almost never used (issue 20).
pub(super) fn lifecycle_queue() -> (LifecycleTx, LifecycleRx) {
    // A blocked sender is woken by any message read, as with a bounded channel: important
    // events wait at most 200 ms, and should get the first free slot.
    let queue = Arc::new(Queue::with_wake_depth(
        LIFECYCLE_CAPACITY,
        LIFECYCLE_BYTES as usize,
        LIFECYCLE_CAPACITY - 1,
    ));
    (LifecycleTx(queue.clone()), LifecycleRx(queue))
}

/// The sending end of the lifecycle queue.
pub(super) struct LifecycleTx(Arc<Queue<LifecycleMsg>>);

impl LifecycleTx {
    /// Queues `message` if the queue has room; hands it back if not.
    pub(super) fn try_send(&self, message: LifecycleMsg) -> Result<(), LifecycleMsg> {
        if self.0.try_reserve(0) {
            // Never disconnected: the queue holds a receiver.
            let _ = self.0.tx.send(Some(message));
            Ok(())
        } else {
            Err(message)
        }
    }

    /// Queues `message`, waiting up to `timeout` for room; hands it back if there was none.
    pub(super) fn send_timeout(
        &self,
        message: LifecycleMsg,
        timeout: Duration,
    ) -> Result<(), LifecycleMsg> {
        let deadline = Instant::now() + timeout;
        let mut message = message;
        loop {
            message = match self.try_send(message) {
                Ok(()) => return Ok(()),
                Err(back) => back,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(message);
            }
            self.0.wait_for_room(0, left);
        }
    }
}

/// The receiving end of the lifecycle queue (the lifecycle thread's).
pub(super) struct LifecycleRx(Arc<Queue<LifecycleMsg>>);

impl LifecycleRx {
    /// Takes the next message, waiting until `deadline` (for ever without one).
    pub(super) fn recv_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LifecycleMsg, RecvTimeoutError> {
        let taken = match deadline {
            None => self.0.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => self.0.rx.recv_deadline(due),
        };
        match taken {
            Ok(Some(message)) => {
                self.0.release(0);
                Ok(message)
            }
            // Only `Queue`'s own stop marker is `None`; the lifecycle queue never sends it.
            Ok(None) => Err(RecvTimeoutError::Disconnected),
            Err(e) => Err(e),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.rx.is_empty()
    }
}

/// What makes two failed requests "the same failure" for coalescing: the channel, the
/// operation and the class of error (its variant and HTTP status).
#[derive(Clone, PartialEq, Eq, Hash)]
struct FailureKind {
    channel: Option<ChannelId>,
    operation: &'static str,
    variant: std::mem::Discriminant<ApiError>,
    status: Option<u16>,
}

/// The repeats of one kind of failure since it was last reported.
struct Repeats {
    reported_at: Instant,
    count: u64,
    last: Option<ApiError>,
}

/// Coalesces [`Lifecycle::RequestFailed`] reports (I/O-free; times are given): the first of a
/// kind goes out at once, repeats within [`REQUEST_FAILED_WINDOW`] are counted and go out as
/// one report when the window is over ([`Coalescer::due`]) or the channel recovers
/// ([`Coalescer::recovered`]).
#[derive(Default)]
pub(super) struct Coalescer {
    kinds: HashMap<FailureKind, Repeats>,
}

impl Coalescer {
    /// A failed request: the event to report now (`count` set), or `None` when it is counted
    /// for a later report due at the returned time.
    fn failure(&mut self, event: Lifecycle, now: Instant) -> Result<Lifecycle, Instant> {
        let Lifecycle::RequestFailed {
            channel,
            operation,
            error,
            ..
        } = event
        else {
            return Ok(event);
        };
        let kind = FailureKind {
            channel: channel.clone(),
            operation,
            variant: std::mem::discriminant(&error),
            status: error.status(),
        };
        let report = |count| Lifecycle::RequestFailed {
            channel: channel.clone(),
            operation,
            error: error.clone(),
            count,
        };
        let full = self.kinds.len() >= MAX_FAILURE_KINDS;
        match self.kinds.get_mut(&kind) {
            Some(repeats)
                if now.saturating_duration_since(repeats.reported_at) < REQUEST_FAILED_WINDOW =>
            {
                repeats.count += 1;
                repeats.last = Some(error);
                Err(repeats.reported_at + REQUEST_FAILED_WINDOW)
            }
            Some(repeats) => {
                // The window is over and nobody reported its repeats yet: this report covers
                // them too.
                let count = repeats.count + 1;
                *repeats = Repeats {
                    reported_at: now,
                    count: 0,
                    last: None,
                };
                Ok(report(count))
            }
            None if full => Ok(report(1)),
            None => {
                self.kinds.insert(
                    kind,
                    Repeats {
                        reported_at: now,
                        count: 0,
                        last: None,
                    },
                );
                Ok(report(1))
            }
        }
    }

    /// The reports of repeats whose window is over at `now` (all of them with `all`), and when
    /// the next one is due. Kinds quiet for a whole window are forgotten.
    fn due(&mut self, now: Instant, all: bool) -> (Vec<Lifecycle>, Option<Instant>) {
        let mut reports = Vec::new();
        let mut next: Option<Instant> = None;
        self.kinds.retain(|kind, repeats| {
            let over = now.saturating_duration_since(repeats.reported_at) >= REQUEST_FAILED_WINDOW;
            if repeats.count > 0 && (over || all) {
                reports.push(Self::report(kind, repeats));
                repeats.reported_at = now;
                repeats.count = 0;
                return !all;
            }
            if repeats.count > 0 {
                let at = repeats.reported_at + REQUEST_FAILED_WINDOW;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            !over && !all
        });
        (reports, next)
    }

    /// `channel` works again (connected, created, subscribed): the repeats counted for it (and
    /// for requests made before it had an id) are reported now, and its next failure is
    /// reported at once.
    fn recovered(&mut self, channel: &ChannelId) -> Vec<Lifecycle> {
        let mut reports = Vec::new();
        self.kinds.retain(|kind, repeats| {
            if kind.channel.as_ref().is_some_and(|c| c != channel) {
                return true;
            }
            if repeats.count > 0 {
                reports.push(Self::report(kind, repeats));
            }
            false
        });
        reports
    }

    fn report(kind: &FailureKind, repeats: &mut Repeats) -> Lifecycle {
        Lifecycle::RequestFailed {
            channel: kind.channel.clone(),
            operation: kind.operation,
            error: repeats.last.take().unwrap_or(ApiError::NotFound),
            count: repeats.count,
        }
    }
}

/// Where lifecycle events go: a bounded queue read by the lifecycle thread.
pub(crate) struct LifecycleSink {
    pub(super) tx: LifecycleTx,
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
    /// Every [`Lifecycle::RequestFailed`] emitted, coalesced or not.
    pub(crate) request_failures: AtomicU64,
    /// Repeated request failures counted for a later report.
    coalescer: Mutex<Coalescer>,
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
    pub(super) fn new(tx: LifecycleTx) -> LifecycleSink {
        LifecycleSink {
            tx,
            lost: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            drops_pending: AtomicBool::new(false),
            dropped_total: AtomicU64::new(0),
            listener_panics: AtomicU64::new(0),
            gap_tap: std::sync::OnceLock::new(),
            request_failures: AtomicU64::new(0),
            coalescer: Mutex::new(Coalescer::default()),
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
                Err(back) if !stop.load(Ordering::Acquire) => message = back,
                Err(_) => return self.count_lost(bytes),
            }
        }
    }

    /// Logs the event and queues it for lifecycle listeners; a repeated request failure is
    /// counted for a coalesced report instead (see [`Coalescer`]).
    pub(crate) fn emit(&self, event: Lifecycle) {
        let event = match event {
            Lifecycle::RequestFailed { .. } => {
                self.request_failures.fetch_add(1, Ordering::Relaxed);
                let counted = self.coalescer.lock().failure(event, Instant::now());
                match counted {
                    Ok(event) => event,
                    Err(due) => {
                        if self.tx.try_send(LifecycleMsg::FailuresPending(due)).is_ok() {
                            self.queued();
                        }
                        return;
                    }
                }
            }
            Lifecycle::Connected { ref channel, .. }
            | Lifecycle::ChannelCreated { ref channel, .. }
            | Lifecycle::ChannelReplaced {
                new: ref channel, ..
            }
            | Lifecycle::Subscribed { ref channel, .. } => {
                // The repeats counted before the recovery are reported before it.
                let repeats = self.coalescer.lock().recovered(channel);
                for report in repeats {
                    self.emit_one(report);
                }
                event
            }
            event => event,
        };
        self.emit_one(event);
    }

    fn emit_one(&self, event: Lifecycle) {
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
    report_due: Option<Instant>,
    /// When the coalesced report of repeated request failures is due.
    failures_due: Option<Instant>,
    reported: u64,
}

impl LifecycleCursor {
    /// The next time a report is due, if any: the consumer must look again by then.
    pub(super) fn next_due(&self) -> Option<Instant> {
        match (self.report_due, self.failures_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What [`handle_lifecycle`] says of the queue after a message.
#[derive(PartialEq)]
pub(super) enum After {
    More,
    /// The stop marker (or a disconnected queue): the last reports were made.
    Stopped,
}

pub(super) fn run_lifecycle(
    rx: LifecycleRx,
    registry: Arc<Registry>,
    sink: Arc<LifecycleSink>,
    closing: &AtomicBool,
) {
    let mut cursor = LifecycleCursor::default();
    loop {
        if closing.load(Ordering::Acquire) && rx.is_empty() {
            final_report(&registry, &sink, &mut cursor);
            return;
        }
        let msg = rx.recv_until(cursor.next_due());
        if handle_lifecycle(msg, &registry, &sink, &mut cursor) == After::Stopped {
            return;
        }
    }
}

/// Handles one message taken from the lifecycle queue (or a wait that timed out), and makes the
/// drop report and the coalesced failure reports that are due.
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
        Ok(LifecycleMsg::FailuresPending(due)) => {
            cursor.failures_due = Some(cursor.failures_due.map_or(due, |d| d.min(due)));
        }
        Ok(LifecycleMsg::Stop) | Err(RecvTimeoutError::Disconnected) => {
            final_report(registry, sink, cursor);
            return After::Stopped;
        }
        Err(RecvTimeoutError::Timeout) => {}
    }
    if cursor.failures_due.is_some_and(|due| Instant::now() >= due) {
        cursor.failures_due = report_failures(registry, sink, false);
    }
    if cursor.report_due.is_some_and(|due| Instant::now() >= due) {
        cursor.report_due = None;
        report_drops(registry, sink, &mut cursor.reported);
    }
    After::More
}

/// The last reports (repeated failures still counted, drops), once the queue is closing and
/// empty.
pub(super) fn final_report(
    registry: &Registry,
    sink: &LifecycleSink,
    cursor: &mut LifecycleCursor,
) {
    cursor.failures_due = report_failures(registry, sink, true);
    report_drops(registry, sink, &mut cursor.reported);
}

/// Delivers the coalesced failure reports that are due (all of them with `all`); returns when
/// the next is due.
fn report_failures(registry: &Registry, sink: &LifecycleSink, all: bool) -> Option<Instant> {
    let (reports, next) = sink.coalescer.lock().due(Instant::now(), all);
    for report in &reports {
        log_lifecycle(report);
        deliver_lifecycle(report, registry, sink);
    }
    next
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

    fn failed(channel: Option<&str>, error: ApiError) -> Lifecycle {
        Lifecycle::RequestFailed {
            channel: channel.map(ChannelId::new),
            operation: "create channel",
            error,
            count: 1,
        }
    }

    fn count(event: &Lifecycle) -> u64 {
        match event {
            Lifecycle::RequestFailed { count, .. } => *count,
            other => panic!("not a request failure: {other:?}"),
        }
    }

    fn server(status: u16) -> ApiError {
        ApiError::Server {
            status,
            message: "down".into(),
            retry_after: None,
        }
    }

    /// Review finding: during an outage every failed request was one event. The first of a
    /// kind is reported at once, its repeats in one event carrying their number once the
    /// window is over, and a different kind is reported at once.
    #[test]
    fn repeated_request_failures_are_coalesced_with_their_count() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        let first = c.failure(failed(None, server(503)), t0).unwrap();
        assert_eq!(count(&first), 1);
        let step = Duration::from_millis(100);
        for i in 1..=30 {
            let due = c
                .failure(failed(None, server(503)), t0 + step * i)
                .unwrap_err();
            assert_eq!(due, t0 + REQUEST_FAILED_WINDOW);
        }
        // Another class (429, another status) or another channel is its own kind.
        assert_eq!(
            count(&c.failure(failed(None, server(500)), t0 + step).unwrap()),
            1
        );
        assert_eq!(
            count(
                &c.failure(failed(Some("c1"), server(503)), t0 + step)
                    .unwrap()
            ),
            1
        );
        // Nothing is due before the window ends; then one report of the 30 repeats.
        let (reports, next) = c.due(t0 + step * 40, false);
        assert!(reports.is_empty());
        assert_eq!(next, Some(t0 + REQUEST_FAILED_WINDOW));
        let (reports, next) = c.due(t0 + REQUEST_FAILED_WINDOW, false);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(count(&reports[0]), 30);
        assert_eq!(next, None);
        // The outage goes on: the next repeats are counted again, a window from that report.
        let later = t0 + REQUEST_FAILED_WINDOW + step;
        let due = c.failure(failed(None, server(503)), later).unwrap_err();
        assert_eq!(due, t0 + REQUEST_FAILED_WINDOW * 2);
        let (reports, _) = c.due(due, false);
        assert_eq!(reports.len(), 1);
        assert_eq!(count(&reports[0]), 1);
        // After a quiet window a failure is reported at once.
        let quiet = t0 + REQUEST_FAILED_WINDOW * 4;
        assert_eq!(
            count(&c.failure(failed(None, server(503)), quiet).unwrap()),
            1
        );
    }

    /// The repeats counted before a channel recovers are reported at the recovery, and its
    /// next failure is reported at once.
    #[test]
    fn a_recovery_reports_the_repeats_and_resets() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        let c1 = ChannelId::new("c1");
        assert!(c.failure(failed(None, server(503)), t0).is_ok());
        assert!(c.failure(failed(None, server(503)), t0).is_err());
        assert!(c.failure(failed(Some("c2"), server(503)), t0).is_ok());
        assert!(c.failure(failed(Some("c2"), server(503)), t0).is_err());
        let reports = c.recovered(&c1);
        assert_eq!(reports.len(), 1, "the id-less repeats, not c2's");
        assert_eq!(count(&reports[0]), 1);
        assert!(c.failure(failed(None, server(503)), t0).is_ok());
        // Shutting down reports whatever is still counted.
        let (reports, next) = c.due(t0, true);
        assert_eq!(reports.len(), 1);
        assert_eq!(next, None);
        assert!(c.kinds.is_empty());
    }

    /// Every failure is counted for the health snapshot, coalesced or not, and only the first
    /// is queued at once.
    #[test]
    fn the_sink_counts_every_failure_and_queues_the_first() {
        let (tx, rx) = lifecycle_queue();
        let sink = LifecycleSink::new(tx);
        let drain = || {
            let mut taken = Vec::new();
            while let Ok(message) = rx.recv_until(Some(Instant::now())) {
                taken.push(message);
            }
            taken
        };
        for _ in 0..50 {
            sink.emit(failed(None, server(503)));
        }
        assert_eq!(sink.request_failures.load(Ordering::Relaxed), 50);
        let queued: Vec<LifecycleMsg> = drain();
        let events = queued
            .iter()
            .filter(|m| matches!(m, LifecycleMsg::Event(_)))
            .count();
        assert_eq!(events, 1);
        sink.emit(Lifecycle::ChannelCreated {
            channel: ChannelId::new("c1"),
        });
        let after: Vec<Lifecycle> = drain()
            .into_iter()
            .filter_map(|m| match m {
                LifecycleMsg::Event(e) => Some(*e),
                _ => None,
            })
            .collect();
        assert_eq!(after.len(), 2, "{after:?}");
        assert_eq!(count(&after[0]), 49);
        assert!(matches!(after[1], Lifecycle::ChannelCreated { .. }));
    }

    /// Issue 8 #5: reports quoting outside input cannot fill memory while the lifecycle
    /// thread is busy (here: not reading at all).
    #[test]
    fn the_lifecycle_queue_is_bounded_in_bytes() {
        let (tx, rx) = lifecycle_queue();
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
        let queued = rx.0.len() as u64;
        assert!(queued < 256, "{queued} reports of 64 KiB queued");
        assert_eq!(sink.lost.load(Ordering::Relaxed), 1000 - queued);
        assert!(sink.queued_bytes.load(Ordering::Relaxed) <= LIFECYCLE_BYTES);
        // What the lifecycle thread takes out frees its bytes.
        while let Ok(LifecycleMsg::Event(event)) = rx.recv_until(Some(Instant::now())) {
            sink.queued_bytes
                .fetch_sub(lifecycle_bytes(&event), Ordering::AcqRel);
        }
        assert_eq!(sink.queued_bytes.load(Ordering::Relaxed), 0);
    }

    /// Issue 20: the lifecycle queue grows as it fills instead of being an array of 4096
    /// slots allocated at `build()`; it still takes exactly 4096 messages of every kind, hands
    /// back what it cannot take, and a sender waiting for room gets the first freed slot.
    #[test]
    fn the_lifecycle_queue_holds_exactly_its_capacity_and_a_waiting_sender_gets_a_freed_slot() {
        let (tx, rx) = lifecycle_queue();
        for n in 0..LIFECYCLE_CAPACITY {
            let message = if n % 2 == 0 {
                LifecycleMsg::DropsPending
            } else {
                LifecycleMsg::Event(Box::new(Lifecycle::Dropped { count: 1, total: 1 }))
            };
            assert!(tx.try_send(message).is_ok(), "message {n} fits");
        }
        assert!(matches!(
            tx.try_send(LifecycleMsg::Stop),
            Err(LifecycleMsg::Stop)
        ));
        assert!(matches!(
            tx.send_timeout(LifecycleMsg::Stop, Duration::from_millis(20)),
            Err(LifecycleMsg::Stop)
        ));
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| {
                let started = Instant::now();
                let sent = tx.send_timeout(LifecycleMsg::Stop, Duration::from_secs(60));
                (sent, started.elapsed())
            });
            // One read frees one slot: the waiting sender takes it, long before its deadline.
            assert!(matches!(
                rx.recv_until(None),
                Ok(LifecycleMsg::DropsPending)
            ));
            let (sent, waited) = waiting.join().unwrap();
            assert!(sent.is_ok());
            // Without a wake-up it would have waited out the 60 s and found the slot then.
            assert!(waited < Duration::from_secs(50), "waited {waited:?}");
        });
        assert_eq!(rx.0.len(), LIFECYCLE_CAPACITY);
        let mut last = None;
        while let Ok(message) = rx.recv_until(Some(Instant::now())) {
            last = Some(message);
        }
        assert!(
            matches!(last, Some(LifecycleMsg::Stop)),
            "queued last, read last"
        );
        assert!(rx.is_empty());
        assert_eq!(rx.0.len(), 0);
    }
}
