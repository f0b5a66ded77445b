//! health.rs keeps the counters and states behind [`Client::health`](crate::Client::health) and
//! builds the snapshot; it never blocks a socket or dispatcher thread for long (atomics and
//! short locks only).

use crate::channel_id::ChannelId;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What a channel's thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChannelState {
    /// Creating the channel over REST.
    Creating,
    /// Opening the WebSocket (TCP, TLS, handshake), then subscribing a new channel's topics.
    Connecting,
    /// The socket is connected and read.
    Connected,
    /// Waiting before the next attempt, after a failure.
    Backoff,
    /// Stopped for good: shut down, or a permanent failure or spent retry budget.
    Stopped,
}

/// Counters and state of one channel, shared by its socket thread, the dispatcher and the
/// health snapshot.
pub(crate) struct ChannelStats {
    pub received: AtomicU64,
    /// Written by the dispatcher threads, apart from what the socket thread writes.
    pub dispatch: DispatchCounters,
    pub malformed: AtomicU64,
    pub heartbeats: AtomicU64,
    pub reconnects: AtomicU64,
    /// Nanoseconds since `epoch` of the last inbound frame, 0 if none yet.
    pub last_frame_nanos: AtomicU64,
    /// Last ping round-trip time in nanoseconds, 0 if none measured yet.
    pub ping_rtt_nanos: AtomicU64,
    /// Nanoseconds without a socket after one was lost, over the finished intervals.
    without_socket_nanos: AtomicU64,
    pub status: Mutex<ChannelStatus>,
}

/// The counters the dispatcher threads update, on a cache line of their own so that they do
/// not slow down the socket thread's counters next to them (measured: false sharing between the
/// two threads cost throughput).
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct DispatchCounters {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub unrouted: AtomicU64,
    /// Notifications the socket thread counted as received whose envelope the dispatcher found
    /// malformed (`message::locate_notification`): reported under `malformed`, not `received`.
    pub malformed: AtomicU64,
    /// Typed-listener calls skipped because the body did not fit (models/typed.rs).
    pub body_mismatches: AtomicU64,
}

/// The slowly changing part of a channel's health.
#[derive(Clone, Debug)]
pub(crate) struct ChannelStatus {
    pub channel: Option<ChannelId>,
    pub state: ChannelState,
    pub connected_since: Option<SystemTime>,
    /// Since when the channel has had no socket after losing one (none before the first
    /// socket: a channel being set up is not missing one).
    without_socket_since: Option<Instant>,
}

impl ChannelStats {
    pub(crate) fn new() -> ChannelStats {
        ChannelStats {
            received: AtomicU64::new(0),
            dispatch: DispatchCounters::default(),
            malformed: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_frame_nanos: AtomicU64::new(0),
            ping_rtt_nanos: AtomicU64::new(0),
            without_socket_nanos: AtomicU64::new(0),
            status: Mutex::new(ChannelStatus {
                channel: None,
                state: ChannelState::Creating,
                connected_since: None,
                without_socket_since: None,
            }),
        }
    }

    /// Records the state the channel's thread derived from its phase, and the time without a
    /// socket: from leaving `Connected` to the next `Connected` (or `Stopped`).
    pub(crate) fn set_state(&self, state: ChannelState) {
        let mut status = self.status.lock();
        let was = status.state;
        status.state = state;
        match state {
            ChannelState::Connected | ChannelState::Stopped => {
                if let Some(since) = status.without_socket_since.take() {
                    let nanos = since.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                    self.without_socket_nanos
                        .fetch_add(nanos, Ordering::Relaxed);
                }
            }
            _ if was == ChannelState::Connected => {
                status.without_socket_since = Some(Instant::now());
            }
            _ => {}
        }
        if state != ChannelState::Connected {
            status.connected_since = None;
        } else if status.connected_since.is_none() {
            status.connected_since = Some(SystemTime::now());
        }
    }

    fn without_socket(&self, status: &ChannelStatus) -> Duration {
        Duration::from_nanos(self.without_socket_nanos.load(Ordering::Relaxed))
            + status
                .without_socket_since
                .map(|since| since.elapsed())
                .unwrap_or_default()
    }

    /// Notifications received and frames malformed: a notification the dispatcher found
    /// malformed moves from the first count to the second. (Its malformed count is read first:
    /// each one it holds was counted received before, so the difference never goes below zero.)
    fn received_and_malformed(&self) -> (u64, u64) {
        let found_later = self.dispatch.malformed.load(Ordering::Acquire);
        let received = self.received.load(Ordering::Acquire);
        (
            received.saturating_sub(found_later),
            self.malformed.load(Ordering::Relaxed) + found_later,
        )
    }

    /// The counters summed into a client's totals.
    fn totals(&self) -> Totals {
        let status = self.status.lock();
        let (received, malformed) = self.received_and_malformed();
        Totals {
            received,
            delivered: self.dispatch.delivered.load(Ordering::Relaxed),
            unrouted: self.dispatch.unrouted.load(Ordering::Relaxed),
            malformed,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            without_socket: self.without_socket(&status),
            body_mismatches: self.dispatch.body_mismatches.load(Ordering::Relaxed),
        }
    }

    /// The snapshot of a channel holding `topics` topics (its slot's topic set is the one
    /// source of that count).
    pub(crate) fn snapshot(&self, epoch: (Instant, SystemTime), topics: usize) -> ChannelHealth {
        let status = self.status.lock().clone();
        let without_socket = self.without_socket(&status);
        let last = self.last_frame_nanos.load(Ordering::Relaxed);
        let rtt = self.ping_rtt_nanos.load(Ordering::Relaxed);
        let (received, malformed) = self.received_and_malformed();
        ChannelHealth {
            channel: status.channel,
            state: status.state,
            topics,
            connected_since: status.connected_since,
            last_frame_at: (last > 0).then(|| epoch.1 + Duration::from_nanos(last)),
            ping_rtt: (rtt > 0).then(|| Duration::from_nanos(rtt)),
            received,
            delivered: self.dispatch.delivered.load(Ordering::Relaxed),
            dropped: self.dispatch.dropped.load(Ordering::Relaxed),
            unrouted: self.dispatch.unrouted.load(Ordering::Relaxed),
            malformed,
            heartbeats: self.heartbeats.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            without_socket,
            body_mismatches: self.dispatch.body_mismatches.load(Ordering::Relaxed),
        }
    }
}

/// Counters summed over every channel a client ever had, forgotten ones included.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    received: u64,
    delivered: u64,
    unrouted: u64,
    malformed: u64,
    reconnects: u64,
    without_socket: Duration,
    body_mismatches: u64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.received += other.received;
        self.delivered += other.delivered;
        self.unrouted += other.unrouted;
        self.malformed += other.malformed;
        self.reconnects += other.reconnects;
        self.without_socket += other.without_socket;
        self.body_mismatches += other.body_mismatches;
    }
}

/// Every channel's counters since the client started, so that totals never go down when a
/// channel is forgotten (a stopped or emptied channel): counters still referenced are read
/// live, the others were folded into `retired` when their last user let go.
#[derive(Default)]
pub(crate) struct StatsRegistry {
    inner: Mutex<(Vec<Arc<ChannelStats>>, Totals)>,
}

impl StatsRegistry {
    pub(crate) fn register(&self, stats: &Arc<ChannelStats>) {
        let mut inner = self.inner.lock();
        Self::fold_unused(&mut inner);
        inner.0.push(stats.clone());
    }

    /// Folds the counters nobody else holds any more (no slot, no socket, no queued event can
    /// change them) into the retired totals.
    fn fold_unused(inner: &mut (Vec<Arc<ChannelStats>>, Totals)) {
        let (live, retired) = inner;
        live.retain(|stats| {
            if Arc::strong_count(stats) == 1 {
                retired.add(stats.totals());
                false
            } else {
                true
            }
        });
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut inner = self.inner.lock();
        Self::fold_unused(&mut inner);
        let mut totals = inner.1;
        for stats in &inner.0 {
            totals.add(stats.totals());
        }
        totals
    }
}

/// One channel in a [`Health`] snapshot.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChannelHealth {
    /// The current channel id (`None` before the first one is created).
    pub channel: Option<ChannelId>,
    /// What the channel's thread is doing.
    pub state: ChannelState,
    /// Topics subscribed (or to be subscribed) on it.
    pub topics: usize,
    /// Since when the current socket is connected.
    pub connected_since: Option<SystemTime>,
    /// When the last frame of any kind arrived (wall clock, derived from a monotonic clock).
    pub last_frame_at: Option<SystemTime>,
    /// The last measured round trip of the application ping (`{"message":"ping"}` → pong).
    pub ping_rtt: Option<Duration>,
    /// Notifications read from the socket (heartbeats, pongs and system messages excluded, and
    /// notifications whose envelope the dispatcher found malformed: those are in `malformed`).
    /// A notification dropped by the backpressure policy before its envelope was read counts as
    /// received and dropped.
    pub received: u64,
    /// Notifications handed to at least one listener.
    pub delivered: u64,
    /// Notifications dropped by the backpressure policy (queue full in events or in bytes), or
    /// still queued behind a `shutdown` called from a callback, which can no longer deliver
    /// them.
    pub dropped: u64,
    /// Notifications no listener matched.
    pub unrouted: u64,
    /// Frames that could not be understood (bad JSON, binary, oversize).
    pub malformed: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Sockets lost (or handed over during a `socket_closing` switch) after which the thread
    /// went on to connect again.
    pub reconnects: u64,
    /// Time spent without a socket after losing one, until the next socket was connected with
    /// every topic subscribed (the first setup does not count; a `socket_closing` switch costs
    /// nothing). Grows while the channel has no socket.
    pub without_socket: Duration,
    /// Typed-listener calls ([`Client::on_typed`](crate::Client::on_typed)) skipped because
    /// the event's body did not fit the listener's type: one per listener and event (reported
    /// as [`Lifecycle::BodyMismatch`](crate::Lifecycle::BodyMismatch) once per topic).
    pub body_mismatches: u64,
}

/// A point-in-time view of a client, from [`Client::health`](crate::Client::health).
///
/// For every channel, `received = delivered + dropped + unrouted + in flight`, where in flight
/// is what sits in the dispatcher queues or is being handed to listeners right now. Once the
/// client is idle (queues empty, no callback running), in flight is zero and the equation is
/// exact. Counters are read one by one, so a snapshot taken while events flow can be off by the
/// events that moved meanwhile.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[must_use = "a health snapshot does nothing unless read"]
pub struct Health {
    /// One entry per channel, in creation order.
    pub(crate) channels: Vec<ChannelHealth>,
    /// Events waiting in each dispatcher thread's queue.
    pub(crate) queue_depths: Vec<usize>,
    /// How long events waited in the dispatcher queues recently (the last one to two seconds):
    /// the lag that slow callbacks cause, visible before events are dropped.
    pub(crate) dispatch_wait: crate::lag::DispatchWait,
    /// Registered event listeners per pattern.
    pub(crate) listeners: BTreeMap<String, usize>,
    /// Registered lifecycle listeners.
    pub(crate) lifecycle_listeners: usize,
    /// Events dropped by the backpressure policy, all channels.
    pub(crate) dropped: u64,
    /// Callbacks that panicked.
    pub(crate) listener_panics: u64,
    /// Lifecycle events lost because the lifecycle queue was full (slow lifecycle listener): it
    /// holds at most 4096 events and, for the ones that are not important (gaps, disconnects,
    /// stops always get their chance), at most 16 MiB of them.
    pub(crate) lifecycle_dropped: u64,
    /// Failed REST calls of the channels ([`Lifecycle::RequestFailed`](crate::Lifecycle)),
    /// every one, coalesced reports included.
    pub(crate) request_failures: u64,
    /// Every channel since the client started, forgotten ones included.
    pub(crate) totals: Totals,
    /// State reads and snapshots ([`Snapshots`](crate::Snapshots)); all zero when they are
    /// off.
    pub(crate) resync: ResyncHealth,
}

/// Every figure is read with a method. The totals (`received`, `delivered`, `dropped`,
/// `unrouted`, `malformed`, `reconnects`, `without_socket`) cover every channel since the client
/// started, including channels no longer listed in [`Health::channels`] (stopped for good, or
/// closed when emptied): they never go down.
impl Health {
    /// One entry per channel, in creation order.
    pub fn channels(&self) -> &[ChannelHealth] {
        &self.channels
    }

    /// Events waiting in each dispatcher thread's queue, one entry per thread.
    pub fn queue_depths(&self) -> &[usize] {
        &self.queue_depths
    }

    /// How long events waited in the dispatcher queues recently (the last one to two seconds):
    /// the lag that slow callbacks cause, visible before events are dropped.
    pub fn dispatch_wait(&self) -> crate::lag::DispatchWait {
        self.dispatch_wait
    }

    /// Registered event listeners per pattern (lower-cased, as matched). Lifecycle listeners
    /// are counted apart: [`Health::lifecycle_listeners`].
    pub fn listeners(&self) -> &BTreeMap<String, usize> {
        &self.listeners
    }

    /// Registered lifecycle listeners ([`Client::on_lifecycle`](crate::Client::on_lifecycle)).
    pub fn lifecycle_listeners(&self) -> usize {
        self.lifecycle_listeners
    }

    /// Notifications dropped by the backpressure policy, all channels ever (see
    /// [`ChannelHealth::dropped`]).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Callbacks that panicked (event and lifecycle listeners).
    pub fn listener_panics(&self) -> u64 {
        self.listener_panics
    }

    /// Lifecycle events lost because the lifecycle queue was full (a slow lifecycle listener):
    /// it holds at most 4096 events and, for the ones that are not important (gaps,
    /// disconnects, stops always get their chance), at most 16 MiB of them.
    pub fn lifecycle_dropped(&self) -> u64 {
        self.lifecycle_dropped
    }

    /// Failed REST calls made for channels (create, subscribe, check, renew), every one since
    /// the client started: [`Lifecycle::RequestFailed`](crate::Lifecycle::RequestFailed)
    /// reports coalesce repeats, this counts each.
    pub fn request_failures(&self) -> u64 {
        self.request_failures
    }

    /// State reads and snapshots ([`Snapshots`](crate::Snapshots)); all zero when they are off.
    pub fn resync(&self) -> &ResyncHealth {
        &self.resync
    }

    /// Notifications received, all channels ever.
    pub fn received(&self) -> u64 {
        self.totals.received
    }

    /// Notifications delivered to at least one listener, all channels ever.
    pub fn delivered(&self) -> u64 {
        self.totals.delivered
    }

    /// Notifications no listener matched, all channels ever.
    pub fn unrouted(&self) -> u64 {
        self.totals.unrouted
    }

    /// Malformed frames, all channels ever.
    pub fn malformed(&self) -> u64 {
        self.totals.malformed
    }

    /// Sockets lost and reconnected, all channels ever.
    pub fn reconnects(&self) -> u64 {
        self.totals.reconnects
    }

    /// Time channels spent without a socket after losing one, summed over all channels ever
    /// (see [`ChannelHealth::without_socket`]).
    pub fn without_socket(&self) -> Duration {
        self.totals.without_socket
    }

    /// Typed-listener calls skipped because the body did not fit, all channels ever (see
    /// [`ChannelHealth::body_mismatches`]).
    pub fn body_mismatches(&self) -> u64 {
        self.totals.body_mismatches
    }

    /// Total listeners registered, event and lifecycle listeners together.
    pub fn listener_count(&self) -> usize {
        self.listeners.values().sum::<usize>() + self.lifecycle_listeners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_without_a_socket_counts_from_losing_one_to_the_next() {
        let stats = ChannelStats::new();
        let without = || {
            stats
                .snapshot((Instant::now(), SystemTime::now()), 0)
                .without_socket
        };
        // Setting up the first socket is not missing one.
        stats.set_state(ChannelState::Creating);
        stats.set_state(ChannelState::Connecting);
        std::thread::sleep(Duration::from_millis(20));
        stats.set_state(ChannelState::Connected);
        assert_eq!(without(), Duration::ZERO);
        stats.set_state(ChannelState::Backoff);
        std::thread::sleep(Duration::from_millis(20));
        let during = without();
        assert!(during >= Duration::from_millis(20), "{during:?}");
        stats.set_state(ChannelState::Connecting);
        stats.set_state(ChannelState::Connected);
        let after = without();
        assert!(after >= during);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(without(), after, "connected: the count stands still");
        stats.set_state(ChannelState::Backoff);
        stats.set_state(ChannelState::Stopped);
        let stopped = without();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(without(), stopped, "stopped: the count stands still");
    }

    #[test]
    fn totals_keep_the_counts_of_forgotten_channels() {
        let registry = StatsRegistry::default();
        let kept = Arc::new(ChannelStats::new());
        let forgotten = Arc::new(ChannelStats::new());
        registry.register(&kept);
        registry.register(&forgotten);
        kept.received.store(3, Ordering::Relaxed);
        forgotten.received.store(5, Ordering::Relaxed);
        forgotten.dispatch.delivered.store(4, Ordering::Relaxed);
        forgotten.reconnects.store(2, Ordering::Relaxed);
        assert_eq!(registry.totals().received, 8);
        drop(forgotten);
        let totals = registry.totals();
        assert_eq!(
            (totals.received, totals.delivered, totals.reconnects),
            (8, 4, 2)
        );
        assert_eq!(
            registry.inner.lock().0.len(),
            1,
            "folded, not kept for ever"
        );
        // Registering more channels later folds nothing twice.
        registry.register(&Arc::new(ChannelStats::new()));
        assert_eq!(registry.totals().received, 8);
    }
}

/// The resync counters in [`Health`](crate::Health).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResyncHealth {
    /// Resyncs finished (one per gap or subscribe that had topics to read).
    pub resyncs: u64,
    /// REST requests made for state (retries and per-topic fallbacks included).
    pub requests: u64,
    /// Requests answered 429.
    pub rate_limited: u64,
    /// Snapshots handed to the dispatcher.
    pub snapshots_queued: u64,
    /// Snapshots skipped because a live event of the topic arrived after their fetch began.
    pub snapshots_superseded: u64,
    /// Snapshots queued but dropped before delivery: taken out as the oldest event of a full
    /// queue under [`Backpressure::DropOldest`](crate::Backpressure::DropOldest), or still
    /// queued at shutdown. Each is also counted in [`Health::dropped`](crate::Health::dropped)
    /// and reported in [`Lifecycle::Dropped`](crate::Lifecycle::Dropped).
    pub snapshots_dropped: u64,
    /// Topics whose resync failed ([`Lifecycle::ResyncFailed`](crate::Lifecycle::ResyncFailed)).
    pub failures: u64,
    /// Topics waiting for a resync or being resynced now.
    pub pending_topics: usize,
}
