//! event.rs owns what listeners receive: [`Event`] (one notification) and [`Lifecycle`] (what
//! happened to the client); it holds data and never does I/O.

use crate::channel_id::ChannelId;
use crate::error::ApiError;
use crate::error::TokenError;
use crate::error::{write_one_line, ChannelError, DisconnectCause};
use crate::health::ChannelStats;
use crate::message::{Located, SystemMessage, Text};
use crate::topic::Topic;
use crate::topic::TopicResult;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Storage for a frame's text that is shared, not copied (tungstenite's `Utf8Bytes`).
pub(crate) type FrameText = tungstenite::Utf8Bytes;

/// One notification: `{"topicName", "eventBody", "metadata": {"CorrelationId"}}` as received on a
/// channel's socket (docs/protocol.md, "The WebSocket").
///
/// The `eventBody` is kept as raw JSON inside the received frame; it is parsed only when a
/// listener calls [`Event::body`] or [`Event::body_value`], and never copied per listener.
///
/// A callback gets `&Event`. To keep one past the callback or hand it to a thread of yours,
/// clone it: the clone is an owned `Event` (`Send + Sync + 'static`) with a copy of the frame
/// of its own (the frame the callback sees may be a slice of the socket's 32 KiB read buffer,
/// which a clone does not keep alive), so a clone costs one allocation of the frame's size.
/// ```
/// use genesys_notify::Event;
/// use std::sync::mpsc;
///
/// let (tx, rx) = mpsc::channel::<Event>();
/// // A callback for `Client::on`: the topic, body, times and channel go along to the worker.
/// let forward = move |event: &Event| {
///     let _ = tx.send(event.clone());
/// };
/// std::thread::spawn(move || {
///     for event in rx {
///         println!("{} {}", event.topic(), event.body_json());
///     }
/// });
/// # drop(forward);
/// ```
pub struct Event {
    frame: FrameText,
    located: Located,
    /// `metadata.CorrelationId`, read from the frame the first time it is asked for.
    correlation: OnceLock<Option<Text>>,
    pub(crate) origin: Arc<Origin>,
    pub(crate) received_instant: Instant,
    /// A state snapshot read over REST rather than a notification read from a socket.
    snapshot: bool,
}

/// Where events come from: one per socket connection, shared by its events (one reference count
/// per event instead of one per field).
pub(crate) struct Origin {
    pub channel: ChannelId,
    /// The counters of the channel (delivered, dropped and unrouted are counted by the
    /// dispatcher).
    pub stats: Arc<ChannelStats>,
    /// The monotonic and wall-clock origin used to give events a wall-clock time without a
    /// second clock read.
    pub epoch: (Instant, SystemTime),
}

impl Clone for Event {
    /// An owned copy: its own copy of the frame (never a slice of a socket's read buffer), the
    /// same topic, body, `CorrelationId`, channel, times and snapshot flag.
    fn clone(&self) -> Event {
        let correlation = OnceLock::new();
        if let Some(id) = self.correlation.get() {
            let _ = correlation.set(id.clone());
        }
        Event {
            frame: FrameText::from(self.frame.as_str().to_owned()),
            located: self.located.clone(),
            correlation,
            origin: self.origin.clone(),
            received_instant: self.received_instant,
            snapshot: self.snapshot,
        }
    }
}

impl Event {
    /// An event read at `now` (monotonic clock).
    pub(crate) fn new(
        frame: FrameText,
        located: Located,
        origin: Arc<Origin>,
        now: Instant,
    ) -> Event {
        Event {
            frame,
            located,
            correlation: OnceLock::new(),
            origin,
            received_instant: now,
            snapshot: false,
        }
    }

    /// A notification read at `now` whose frame was only seen to start with its `topicName`,
    /// `frame[topic]` ([`crate::message::notification_topic`]); [`Event::locate`] parses the
    /// rest on the dispatcher thread. Its body range stays empty until then.
    pub(crate) fn unlocated(
        frame: FrameText,
        topic: Range<usize>,
        origin: Arc<Origin>,
        now: Instant,
    ) -> Event {
        Event {
            frame,
            located: Located {
                topic: Text::Span(topic),
                metadata: None,
                body: 0..0,
            },
            correlation: OnceLock::new(),
            origin,
            received_instant: now,
            snapshot: false,
        }
    }

    /// Gives the event a copy of its frame of its own: a frame is a slice of the socket's read
    /// buffer (32 KiB, shared by the frames read with it), which stays allocated while any of
    /// them is queued. See `Dispatcher::push`.
    pub(crate) fn unpin(&mut self) {
        self.frame = FrameText::from(self.frame.as_str().to_owned());
    }

    /// Parses the envelope of an event made by [`Event::unlocated`] (nothing to do for any
    /// other); the error says why the frame cannot be delivered.
    pub(crate) fn locate(&mut self) -> Result<(), crate::message::MalformedFrame> {
        // Only an unlocated event has an empty body range: a located `eventBody` is a JSON
        // value, never empty.
        if !self.located.body.is_empty() {
            return Ok(());
        }
        self.located = crate::message::locate_notification(self.frame.as_str())?;
        Ok(())
    }

    /// A state snapshot of `topic` whose `eventBody` is the JSON text `body`, made at `now`.
    /// Its frame is `{"topicName", "version": "2", "eventBody", "metadata": {}, "snapshot": true}`.
    pub(crate) fn snapshot(topic: &str, body: &str, origin: &Arc<Origin>, now: Instant) -> Event {
        let name = serde_json::Value::String(topic.to_owned()).to_string();
        let head = format!("{{\"topicName\":{name},\"version\":\"2\",\"eventBody\":");
        let start = head.len();
        let frame = format!("{head}{body},\"metadata\":{{}},\"snapshot\":true}}");
        Event {
            frame: FrameText::from(frame),
            located: Located {
                topic: crate::message::Text::Owned(topic.into()),
                metadata: None,
                body: start..start + body.len(),
            },
            correlation: OnceLock::new(),
            origin: origin.clone(),
            received_instant: now,
            snapshot: true,
        }
    }

    /// Whether this is a state snapshot read over the REST API (see
    /// [`Snapshots`](crate::Snapshots)) rather than a notification read from a socket. A
    /// snapshot has the topic's name and a body in the topic's event shape, no `CorrelationId`,
    /// and a frame with `"snapshot": true`; its [`Event::received_at`] is when the REST answer
    /// was read.
    pub fn is_snapshot(&self) -> bool {
        self.snapshot
    }

    /// What this event counts for against the dispatcher queues' byte capacity: the frame it
    /// holds, any unescaped copy of its topic, and the event itself. The same value whenever
    /// asked, so a queue frees exactly what it reserved (an unescaped copy of the
    /// `CorrelationId`, made when a listener asks for it, is not counted: it is made after the
    /// event left the queue and is shorter than the frame).
    pub(crate) fn queued_bytes(&self) -> usize {
        let owned = |text: &Text| match text {
            Text::Owned(copy) => copy.len(),
            Text::Span(_) => 0,
        };
        self.frame.len() + owned(&self.located.topic) + std::mem::size_of::<Event>()
    }

    /// `topicName` exactly as received (for example
    /// `v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence`). Compare it ignoring case.
    pub fn topic(&self) -> &str {
        self.located.topic.resolve(self.frame.as_str())
    }

    /// `metadata.CorrelationId`, when the service sent one (a string, or a number given as its
    /// digits). Read from the frame the first time it is asked for, not for every event.
    pub fn correlation_id(&self) -> Option<&str> {
        let frame = self.frame.as_str();
        self.correlation
            .get_or_init(|| {
                let metadata = self.located.metadata.as_ref()?;
                crate::message::correlation_id(frame, metadata)
            })
            .as_ref()
            .map(|id| id.resolve(frame))
    }

    /// The channel whose socket delivered the event.
    pub fn channel_id(&self) -> &ChannelId {
        &self.origin.channel
    }

    /// When the frame was read from the socket: when the read from the kernel that brought its
    /// last bytes returned (wall clock, derived from the monotonic clock reading taken then;
    /// frames that arrived together share it).
    pub fn received_at(&self) -> SystemTime {
        let (instant, wall) = self.origin.epoch;
        wall + self.received_instant.saturating_duration_since(instant)
    }

    /// How long ago the frame was read from the socket (monotonic clock): the time the event
    /// waited in the dispatcher queue plus the time earlier listeners took.
    pub fn age(&self) -> Duration {
        self.received_instant.elapsed()
    }

    /// The raw JSON text of `eventBody`, exactly as received.
    pub fn body_json(&self) -> &str {
        &self.frame.as_str()[self.located.body.clone()]
    }

    /// The whole frame as received.
    pub fn frame_json(&self) -> &str {
        self.frame.as_str()
    }

    /// Deserialises `eventBody` into `T` (which may borrow from the event).
    ///
    /// # Errors
    /// The `serde_json::Error` saying where the body does not fit `T`.
    pub fn body<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.body_json())
    }

    /// `eventBody` as a `serde_json::Value`.
    ///
    /// # Errors
    /// None in practice: the body was checked to be JSON when the frame was read.
    pub fn body_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.body_json())
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("topic", &self.topic())
            .field("channel", &self.origin.channel)
            .field("correlation_id", &self.correlation_id())
            .field("snapshot", &self.snapshot)
            .field("received_at", &self.received_at())
            .field("body_bytes", &self.located.body.len())
            .finish()
    }
}

/// Something that happened to the client, delivered to listeners registered with
/// [`Client::on_lifecycle`](crate::Client::on_lifecycle).
///
/// Channel ids inside are [`ChannelId`]s (shown shortened). No variant carries a secret.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Lifecycle {
    /// A channel was created (`POST /api/v2/notifications/channels`).
    #[non_exhaustive]
    ChannelCreated {
        /// The new channel.
        channel: ChannelId,
    },
    /// A channel that no longer existed was replaced by a new one with the same topics.
    #[non_exhaustive]
    ChannelReplaced {
        /// The channel that was lost.
        old: ChannelId,
        /// Its replacement.
        new: ChannelId,
    },
    /// A socket to the channel is connected and reading.
    #[non_exhaustive]
    Connected {
        /// The channel.
        channel: ChannelId,
    },
    /// A socket to the channel stopped.
    #[non_exhaustive]
    Disconnected {
        /// The channel.
        channel: ChannelId,
        /// Why.
        cause: DisconnectCause,
    },
    /// The channel will try to connect again after `delay`.
    #[non_exhaustive]
    Reconnecting {
        /// The channel, `None` while no channel could be created yet.
        channel: Option<ChannelId>,
        /// 1 for the first retry after a failure, then 2, 3, ...
        attempt: u32,
        /// How long it waits first: a random draw per the backoff policy, never below a
        /// `Retry-After` the service sent. A `subscribe` that needs the channel at once may cut
        /// the rest of the wait short.
        delay: Duration,
        /// The failure that led here.
        error: String,
    },
    /// A period during which a channel had no socket: events for `topics` published between
    /// `start` and `end` were lost; resynchronise them over the REST API.
    #[non_exhaustive]
    Gap {
        /// The channel.
        channel: ChannelId,
        /// When the last frame arrived before the socket was lost (wall clock): a silent socket
        /// is noticed only later, but events were missed from then on.
        start: SystemTime,
        /// When a socket was connected again with every topic subscribed, or, if the channel
        /// stopped for good (retry budget spent, permanent failure, shutdown), when it stopped.
        end: SystemTime,
        /// The topics subscribed on that channel.
        topics: Vec<Topic>,
    },
    /// Topics were subscribed on a channel: the per-topic results (`ignoreErrors=true`).
    #[non_exhaustive]
    Subscribed {
        /// The channel.
        channel: ChannelId,
        /// Every topic of the request with its state (`Permitted` or `Rejected` with reason and
        /// missing permissions).
        results: Vec<TopicResult>,
    },
    /// Topics were removed from a channel.
    #[non_exhaustive]
    Unsubscribed {
        /// The channel.
        channel: ChannelId,
        /// The topics removed.
        topics: Vec<Topic>,
    },
    /// A subscribe asked for a topic that was already subscribed; nothing was sent.
    #[non_exhaustive]
    DuplicateSubscription {
        /// The topic.
        topic: Topic,
    },
    /// The retry budget ([`Backoff::max_retries`](crate::Backoff)) is spent; the channel stopped.
    #[non_exhaustive]
    RetryBudgetExhausted {
        /// The channel.
        channel: Option<ChannelId>,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        last_error: ChannelError,
    },
    /// A failure that retrying cannot fix (for example bad credentials); the channel stopped.
    #[non_exhaustive]
    PermanentFailure {
        /// The channel, if the failure was a channel's.
        channel: Option<ChannelId>,
        /// What failed.
        error: ChannelError,
    },
    /// An access token was obtained from the token source: the first one, one ahead of the
    /// current one's expiry, or a new one after a 401.
    #[non_exhaustive]
    TokenRefreshed {
        /// Its `expires_in`, if the source said.
        expires_in: Option<Duration>,
    },
    /// Obtaining a new access token failed; it is retried after `retry_in`.
    #[non_exhaustive]
    TokenRefreshFailed {
        /// Why.
        error: TokenError,
        /// When the next try happens.
        retry_in: Duration,
    },
    /// A REST call for a channel failed (it is retried per the backoff policy).
    ///
    /// Repeats are coalesced so that an outage does not flood listeners: the first failure of
    /// a kind (same channel, same `operation`, same class of error: the variant and HTTP
    /// status) is reported at once with `count` 1; further ones within the next 5 s are
    /// counted, and reported as one event whose `count` is their number and whose `error` is
    /// the last of them, once those 5 s are over, or at once when the channel recovers (before
    /// the `Connected`, `ChannelCreated`, `ChannelReplaced` or `Subscribed` event that shows
    /// it). A failure after a quiet window is reported at once again.
    /// [`Health::request_failures`](crate::Health::request_failures) counts every failure.
    #[non_exhaustive]
    RequestFailed {
        /// The channel.
        channel: Option<ChannelId>,
        /// What was being done ("create channel", "subscribe", ...).
        operation: &'static str,
        /// The error (the last one, for a coalesced report).
        error: ApiError,
        /// How many failures this event stands for: 1 for one reported at once, the number of
        /// repeats since the last report for a coalesced one.
        count: u64,
    },
    /// A frame could not be understood: not JSON, no `topicName`, a binary frame, or oversize.
    /// The stream carries on.
    #[non_exhaustive]
    MalformedMessage {
        /// The channel.
        channel: ChannelId,
        /// What was wrong.
        reason: String,
        /// The frame's first 120 characters (empty for binary frames).
        excerpt: String,
    },
    /// A notification arrived that no listener matched. Every such notification is counted in
    /// the health snapshot (`unrouted`); this event is sent for the first one of each topic, and
    /// again after a listener whose pattern matches the topic is added or removed, so a busy
    /// unlistened topic cannot flood the lifecycle queue.
    #[non_exhaustive]
    UnroutedMessage {
        /// The channel.
        channel: ChannelId,
        /// Its `topicName` (cut to 800 characters and `…`: the service's names have at most
        /// 200).
        topic: String,
    },
    /// Events were dropped by the backpressure policy. Reported at most about once every
    /// 100 ms, with the counts since the previous report.
    #[non_exhaustive]
    Dropped {
        /// Events dropped since the previous `Dropped` event.
        count: u64,
        /// Events dropped since the client started.
        total: u64,
    },
    /// A listener's callback panicked; the dispatcher caught it and carries on.
    #[non_exhaustive]
    ListenerPanicked {
        /// The listener's pattern. (A panicking lifecycle listener is logged and counted in
        /// [`Health::listener_panics`](crate::Health), not reported here, to avoid a loop.)
        pattern: String,
        /// The topic of the event it was handling.
        topic: String,
        /// The panic message.
        message: String,
    },
    /// The number of registered listeners passed the configured threshold: a sign that guards
    /// are being leaked (kept forever) instead of dropped.
    #[non_exhaustive]
    TooManyListeners {
        /// Listeners registered now.
        count: usize,
        /// The threshold ([`Config::listener_warning_threshold`](crate::Config)).
        threshold: usize,
    },
    /// Events waited in the dispatcher queues longer than
    /// [`Config::dispatch_lag_threshold`](crate::Config) at the 99th percentile over the last
    /// second: callbacks are too slow for the event rate, and under a drop policy events will
    /// soon be dropped. Fires once per episode (re-armed after a second below the threshold).
    #[non_exhaustive]
    DispatchLagHigh {
        /// The 99th percentile wait of that second.
        p99: Duration,
        /// The configured threshold.
        threshold: Duration,
    },
    /// A resync finished: the state of a channel's topics was read over REST after a gap (or
    /// at subscribe) and delivered as snapshots ([`Snapshots`](crate::Snapshots)).
    #[non_exhaustive]
    Resynced {
        /// The channel whose topics were resynchronised.
        channel: ChannelId,
        /// Its subscribed topics that were part of the resync (with or without a state
        /// resource).
        topics: Vec<Topic>,
        /// Snapshots queued for the listeners: queued, not yet delivered. A snapshot superseded
        /// by a newer live event is skipped at delivery, and one taken out of a full queue by
        /// [`Backpressure::DropOldest`](crate::Backpressure::DropOldest) is dropped; both are
        /// counted in [`ResyncHealth`](crate::ResyncHealth) (`snapshots_superseded`,
        /// `snapshots_dropped`).
        snapshots: usize,
        /// Individual topics whose state could not be read (each also reported as
        /// [`Lifecycle::ResyncFailed`]).
        failures: usize,
    },
    /// The state of one topic could not be read over REST; its listeners got no snapshot.
    #[non_exhaustive]
    ResyncFailed {
        /// The individual topic.
        topic: Topic,
        /// Why.
        error: crate::error::ResyncError,
    },
    /// An event's `eventBody` did not fit the type a typed listener
    /// ([`Client::on_typed`](crate::Client::on_typed)) asked for. Reported the first time per
    /// topic and type; every such event is counted in
    /// [`ChannelHealth::body_mismatches`](crate::ChannelHealth::body_mismatches). The event
    /// still reached its other listeners.
    #[non_exhaustive]
    BodyMismatch {
        /// The channel that delivered the event.
        channel: ChannelId,
        /// `topicName` as received.
        topic: String,
        /// The body type asked for (`std::any::type_name`, for example
        /// `genesys_notify::models::presence::UserPresence`).
        body_type: &'static str,
        /// The serde error saying where the body does not fit (at most about 512 bytes).
        error: String,
    },
    /// A `v2.system.*` message arrived on a channel (for example `v2.system.socket_closing`).
    #[non_exhaustive]
    SystemMessage {
        /// The channel.
        channel: ChannelId,
        /// The message.
        message: SystemMessage,
    },
}

impl Lifecycle {
    /// The report of a text frame of `channel` that cannot be delivered: why, and the frame's
    /// excerpt with the channel id (a credential the server's text may quote) shortened before
    /// the cut ([`crate::message::redacted_excerpt`]). The socket thread and the dispatcher
    /// (for a notification queued on its topic alone) report through this one constructor.
    pub(crate) fn malformed_frame(
        channel: &ChannelId,
        frame: &str,
        malformed: crate::message::MalformedFrame,
    ) -> Lifecycle {
        Lifecycle::MalformedMessage {
            channel: channel.clone(),
            reason: malformed.reason,
            excerpt: crate::message::redacted_excerpt(frame, channel.as_str()),
        }
    }

    /// A stable snake_case name of the event kind (`"connected"`, `"gap"`, `"reconnecting"`,
    /// ...), for logs, metrics and the `tail` tool's JSON lines. Names are never changed once
    /// published; new kinds get new names.
    pub fn name(&self) -> &'static str {
        match self {
            Lifecycle::ChannelCreated { .. } => "channel_created",
            Lifecycle::ChannelReplaced { .. } => "channel_replaced",
            Lifecycle::Connected { .. } => "connected",
            Lifecycle::Disconnected { .. } => "disconnected",
            Lifecycle::Reconnecting { .. } => "reconnecting",
            Lifecycle::Gap { .. } => "gap",
            Lifecycle::Subscribed { .. } => "subscribed",
            Lifecycle::Unsubscribed { .. } => "unsubscribed",
            Lifecycle::DuplicateSubscription { .. } => "duplicate_subscription",
            Lifecycle::RetryBudgetExhausted { .. } => "retry_budget_exhausted",
            Lifecycle::PermanentFailure { .. } => "permanent_failure",
            Lifecycle::TokenRefreshed { .. } => "token_refreshed",
            Lifecycle::TokenRefreshFailed { .. } => "token_refresh_failed",
            Lifecycle::RequestFailed { .. } => "request_failed",
            Lifecycle::MalformedMessage { .. } => "malformed_message",
            Lifecycle::UnroutedMessage { .. } => "unrouted_message",
            Lifecycle::Dropped { .. } => "dropped",
            Lifecycle::ListenerPanicked { .. } => "listener_panicked",
            Lifecycle::TooManyListeners { .. } => "too_many_listeners",
            Lifecycle::DispatchLagHigh { .. } => "dispatch_lag_high",
            Lifecycle::Resynced { .. } => "resynced",
            Lifecycle::ResyncFailed { .. } => "resync_failed",
            Lifecycle::BodyMismatch { .. } => "body_mismatch",
            Lifecycle::SystemMessage { .. } => "system_message",
        }
    }

    /// The channel the event is about (shortened when shown), if it is about one.
    pub fn channel(&self) -> Option<&ChannelId> {
        match self {
            Lifecycle::ChannelCreated { channel }
            | Lifecycle::Connected { channel }
            | Lifecycle::Disconnected { channel, .. }
            | Lifecycle::Gap { channel, .. }
            | Lifecycle::Subscribed { channel, .. }
            | Lifecycle::Unsubscribed { channel, .. }
            | Lifecycle::MalformedMessage { channel, .. }
            | Lifecycle::UnroutedMessage { channel, .. }
            | Lifecycle::Resynced { channel, .. }
            | Lifecycle::BodyMismatch { channel, .. }
            | Lifecycle::SystemMessage { channel, .. } => Some(channel),
            Lifecycle::ChannelReplaced { new, .. } => Some(new),
            Lifecycle::Reconnecting { channel, .. }
            | Lifecycle::RetryBudgetExhausted { channel, .. }
            | Lifecycle::PermanentFailure { channel, .. }
            | Lifecycle::RequestFailed { channel, .. } => channel.as_ref(),
            Lifecycle::DuplicateSubscription { .. }
            | Lifecycle::TokenRefreshed { .. }
            | Lifecycle::TokenRefreshFailed { .. }
            | Lifecycle::Dropped { .. }
            | Lifecycle::ListenerPanicked { .. }
            | Lifecycle::TooManyListeners { .. }
            | Lifecycle::DispatchLagHigh { .. }
            | Lifecycle::ResyncFailed { .. } => None,
        }
    }
}

/// Lists at most a few topics, then how many more.
fn some_topics(topics: &[Topic]) -> String {
    const SHOWN: usize = 3;
    let mut text = topics
        .iter()
        .take(SHOWN)
        .map(Topic::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if topics.len() > SHOWN {
        text.push_str(&format!(" and {} more", topics.len() - SHOWN));
    }
    text
}

impl fmt::Display for Lifecycle {
    /// One readable line: what happened and why, without the channel (see
    /// [`Lifecycle::channel`]) and never with a secret or a full channel id. Control characters
    /// in texts from outside (a topic name, a system message's reason, a server's error message,
    /// a panic message) are shown escaped (`\n`, `\u{1b}`), so that they can neither break the
    /// line nor drive a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_one_line(f, &LifecycleText(self).to_string())
    }
}

/// [`Lifecycle`]'s text before [`write_one_line`].
struct LifecycleText<'a>(&'a Lifecycle);

impl fmt::Display for LifecycleText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs =
            |d: &Duration| humantime::format_duration(Duration::from_millis(d.as_millis() as u64));
        match self.0 {
            Lifecycle::ChannelCreated { .. } => f.write_str("channel created"),
            Lifecycle::ChannelReplaced { old, .. } => {
                write!(
                    f,
                    "channel replaced (the old one, {old}, was lost); topics subscribed again"
                )
            }
            Lifecycle::Connected { .. } => f.write_str("connected"),
            Lifecycle::Disconnected { cause, .. } => write!(f, "disconnected: {cause}"),
            Lifecycle::Reconnecting {
                attempt,
                delay,
                error,
                ..
            } => write!(
                f,
                "reconnecting in {} (attempt {attempt}) after: {error}",
                secs(delay)
            ),
            Lifecycle::Gap {
                start, end, topics, ..
            } => {
                let lasted = end.duration_since(*start).unwrap_or_default();
                write!(
                    f,
                    "gap of {} without a socket since {}: events of {} topic(s) may be lost ({})",
                    secs(&lasted),
                    humantime::format_rfc3339_millis(*start),
                    topics.len(),
                    some_topics(topics)
                )
            }
            Lifecycle::Subscribed { results, .. } => {
                let rejected: Vec<_> = results
                    .iter()
                    .filter(|r| r.state == crate::topic::TopicState::Rejected)
                    .collect();
                write!(f, "subscribed {} topic(s)", results.len() - rejected.len())?;
                for r in rejected.iter().take(3) {
                    write!(f, "; rejected {}", r.topic)?;
                    if let Some(reason) = &r.rejection_reason {
                        write!(f, " ({reason})")?;
                    }
                    if !r.missing_permissions.is_empty() {
                        write!(f, " missing {}", r.missing_permissions.join(", "))?;
                    }
                }
                if rejected.len() > 3 {
                    write!(f, "; {} more rejected", rejected.len() - 3)?;
                }
                Ok(())
            }
            Lifecycle::Unsubscribed { topics, .. } => {
                write!(f, "unsubscribed {}", some_topics(topics))
            }
            Lifecycle::DuplicateSubscription { topic } => {
                write!(f, "{topic} is already subscribed: nothing sent")
            }
            Lifecycle::RetryBudgetExhausted {
                attempts,
                last_error,
                ..
            } => write!(f, "gave up after {attempts} retries: {last_error}"),
            Lifecycle::PermanentFailure { error, .. } => write!(f, "stopped for good: {error}"),
            Lifecycle::TokenRefreshed { expires_in } => match expires_in {
                Some(d) => write!(f, "access token refreshed (expires in {})", secs(d)),
                None => f.write_str("access token refreshed"),
            },
            Lifecycle::TokenRefreshFailed { error, retry_in } => {
                write!(
                    f,
                    "token refresh failed: {error}; retrying in {}",
                    secs(retry_in)
                )
            }
            Lifecycle::RequestFailed {
                operation,
                error,
                count,
                ..
            } => match count {
                0 | 1 => write!(f, "{operation} failed: {error}"),
                n => write!(
                    f,
                    "{operation} failed {n} more times since the last report (coalesced), the \
                     last: {error}"
                ),
            },
            Lifecycle::MalformedMessage { reason, .. } => {
                write!(f, "malformed message skipped: {reason}")
            }
            Lifecycle::UnroutedMessage { topic, .. } => {
                write!(f, "no listener for {topic}: event counted as unrouted")
            }
            Lifecycle::Dropped { count, total } => {
                write!(
                    f,
                    "{count} event(s) dropped by the backpressure policy ({total} in all)"
                )
            }
            Lifecycle::ListenerPanicked {
                pattern,
                topic,
                message,
            } => write!(f, "listener for {pattern} panicked on {topic}: {message}"),
            Lifecycle::TooManyListeners { count, threshold } => {
                write!(
                    f,
                    "{count} listeners registered (warning threshold {threshold})"
                )
            }
            Lifecycle::DispatchLagHigh { p99, threshold } => write!(
                f,
                "callbacks lag: p99 queue wait {:?} above {:?}",
                p99, threshold
            ),
            Lifecycle::Resynced {
                topics,
                snapshots,
                failures,
                ..
            } => write!(
                f,
                "resynchronised {} topic(s): {snapshots} snapshot(s), {failures} failure(s)",
                topics.len()
            ),
            Lifecycle::ResyncFailed { topic, error } => {
                write!(f, "resync of {topic} failed: {error}")
            }
            Lifecycle::BodyMismatch {
                topic,
                body_type,
                error,
                ..
            } => write!(
                f,
                "eventBody of {topic} does not fit {body_type}: {error} (typed listeners skipped; \
                 reported once per topic)"
            ),
            Lifecycle::SystemMessage { message, .. } => {
                write!(f, "system message {}", message.topic)?;
                if let Some(kind) = &message.system_topic_type {
                    write!(f, " ({kind})")?;
                }
                if let Some(reason) = &message.reason {
                    write!(f, ": {reason}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod lifecycle_text_tests {
    use super::*;

    const FULL_ID: &str = "streaming-0123456789abcdef-FULLIDMARKER";

    fn every_kind() -> Vec<Lifecycle> {
        let channel = ChannelId::new(FULL_ID);
        let topic = Topic::parse("v2.users.x.presence").unwrap();
        let now = SystemTime::now();
        vec![
            Lifecycle::ChannelCreated {
                channel: channel.clone(),
            },
            Lifecycle::ChannelReplaced {
                old: channel.clone(),
                new: channel.clone(),
            },
            Lifecycle::Connected {
                channel: channel.clone(),
            },
            Lifecycle::Disconnected {
                channel: channel.clone(),
                cause: DisconnectCause::Closed {
                    code: Some(1001),
                    reason: "idle".into(),
                },
            },
            Lifecycle::Reconnecting {
                channel: Some(channel.clone()),
                attempt: 2,
                delay: Duration::from_millis(1500),
                error: "connection lost".into(),
            },
            Lifecycle::Gap {
                channel: channel.clone(),
                start: now - Duration::from_secs(3),
                end: now,
                topics: vec![topic.clone(); 5],
            },
            Lifecycle::Subscribed {
                channel: channel.clone(),
                results: vec![],
            },
            Lifecycle::Unsubscribed {
                channel: channel.clone(),
                topics: vec![topic.clone()],
            },
            Lifecycle::DuplicateSubscription {
                topic: topic.clone(),
            },
            Lifecycle::RetryBudgetExhausted {
                channel: None,
                attempts: 3,
                last_error: ChannelError::Panicked {
                    message: "x".into(),
                },
            },
            Lifecycle::PermanentFailure {
                channel: Some(channel.clone()),
                error: ChannelError::UnusableConnectUri {
                    reason: "bad".into(),
                },
            },
            Lifecycle::TokenRefreshed {
                expires_in: Some(Duration::from_secs(86_400)),
            },
            Lifecycle::TokenRefreshFailed {
                error: TokenError::Transport("refused".into()),
                retry_in: Duration::from_secs(2),
            },
            Lifecycle::RequestFailed {
                channel: None,
                operation: "create channel",
                error: ApiError::NotFound,
                count: 1,
            },
            Lifecycle::MalformedMessage {
                channel: channel.clone(),
                reason: "not JSON".into(),
                excerpt: "{".into(),
            },
            Lifecycle::UnroutedMessage {
                channel: channel.clone(),
                topic: "v2.x".into(),
            },
            Lifecycle::Dropped { count: 2, total: 9 },
            Lifecycle::ListenerPanicked {
                pattern: "v2.*".into(),
                topic: "v2.x".into(),
                message: "boom".into(),
            },
            Lifecycle::TooManyListeners {
                count: 10,
                threshold: 5,
            },
            Lifecycle::DispatchLagHigh {
                p99: Duration::from_millis(80),
                threshold: Duration::from_millis(50),
            },
            Lifecycle::Resynced {
                channel: channel.clone(),
                topics: vec![topic.clone()],
                snapshots: 1,
                failures: 0,
            },
            Lifecycle::BodyMismatch {
                channel: channel.clone(),
                topic: "v2.x".into(),
                body_type: "T",
                error: "missing field".into(),
            },
        ]
    }

    #[test]
    fn every_event_has_a_distinct_name_and_a_readable_line_without_the_full_channel_id() {
        let events = every_kind();
        let names: std::collections::HashSet<_> = events.iter().map(Lifecycle::name).collect();
        assert_eq!(names.len(), events.len());
        for event in &events {
            let line = event.to_string();
            assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
            assert!(!line.contains(FULL_ID), "{line}");
            assert!(!line.contains("Lifecycle"), "Debug-like: {line}");
            if let Some(channel) = event.channel() {
                assert!(!channel.to_string().contains(FULL_ID));
            }
        }
        let gap = events
            .iter()
            .find(|e| e.name() == "gap")
            .unwrap()
            .to_string();
        assert!(
            gap.contains("5 topic(s)") && gap.contains("and 2 more"),
            "{gap}"
        );
        let reconnecting = events[4].to_string();
        assert!(
            reconnecting.contains("1s 500ms") && reconnecting.contains("attempt 2"),
            "{reconnecting}"
        );
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;

    /// Issue 17, point 17: an event can be kept past its callback and handed to another thread;
    /// the clone owns a copy of its frame (a read buffer is never kept alive by it) and reads
    /// the same as the original.
    #[test]
    fn a_clone_is_owned_reads_the_same_and_has_a_frame_of_its_own() {
        let frame = r#"{"topicName":"v2.users.u1.presence","eventBody":{"systemPresence":"BUSY"},"metadata":{"CorrelationId":"c-1"}}"#;
        let located = crate::message::locate_notification(frame).unwrap();
        let origin = Arc::new(Origin {
            channel: ChannelId::new("streaming-c1"),
            stats: Arc::new(ChannelStats::new()),
            epoch: (Instant::now(), SystemTime::now()),
        });
        let event = Event::new(
            FrameText::from(frame.to_owned()),
            located,
            origin,
            Instant::now(),
        );
        assert_eq!(event.correlation_id(), Some("c-1"));
        let copy = event.clone();
        assert_ne!(copy.frame_json().as_ptr(), event.frame_json().as_ptr());
        let expected = (
            event.topic().to_owned(),
            event.body_json().to_owned(),
            Some("c-1".to_owned()),
            event.received_at(),
            false,
            event.channel_id().clone(),
        );
        let seen = std::thread::spawn(move || {
            (
                copy.topic().to_owned(),
                copy.body_json().to_owned(),
                copy.correlation_id().map(str::to_owned),
                copy.received_at(),
                copy.is_snapshot(),
                copy.channel_id().clone(),
            )
        })
        .join()
        .unwrap();
        assert_eq!(seen, expected);
    }
}
