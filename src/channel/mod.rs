//! channel/ owns one notification channel per OS thread: it creates the channel, connects its
//! socket, applies its topics, reads frames with liveness deadlines and recovers from every
//! failure with backoff. It never runs a listener's callback (dispatch.rs does).
//!
//! The thread's loop, per attempt, strictly one after the other (never two live sockets except
//! during a `socket_closing` switch):
//! 1. create a channel if there is none, or if the last one is gone (404 on `HEAD`, handshake
//!    refused with 404) — docs/protocol.md, "Channels";
//! 2. connect the socket (deadline: `connect_timeout`);
//! 3. on a new channel, `PUT` its topics with `ignoreErrors=true` — after the socket is
//!    connected, so that no event published after the subscription is missed;
//! 4. read until the socket fails, goes silent, or the user stops; report the gap; back off.

pub(crate) mod connect;

use crate::api::{Api, ApiError, ChannelInfo, TopicResult, TopicState};
use crate::backoff::Retry;
use crate::config::Config;
use crate::dispatch::{Dispatcher, Pushed};
use crate::event::{ChannelId, DisconnectCause, Event, Lifecycle, Origin};
use crate::health::{ChannelState, ChannelStats};
use crate::message::{self, Inbound};
use crate::topic::Topic;
use connect::{ConnectError, Socket};
use parking_lot::{Condvar, Mutex};
use rand::RngExt;
use std::collections::BTreeSet;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tungstenite::Message;

/// While frames keep arriving, the read loop's periodic checks run once per this many frames.
const CHECK_EVERY: u32 = 64;

/// The application ping (docs/protocol.md, "The WebSocket": not an RFC 6455 ping frame).
const PING: &str = r#"{"message":"ping"}"#;

/// What every channel thread of one client shares.
pub(crate) struct Shared {
    pub config: Config,
    pub api: Api,
    pub dispatcher: Dispatcher,
    pub tls: Arc<rustls::ClientConfig>,
    /// The monotonic and wall-clock origin of the health snapshot's timestamps.
    pub epoch: (Instant, SystemTime),
}

impl Shared {
    fn emit(&self, event: Lifecycle) {
        self.dispatcher.lifecycle.emit(event);
    }
}

/// The outcome of the latest topic application by the channel's thread, for `subscribe` calls
/// waiting on it.
#[derive(Default)]
struct Setup {
    /// Bumped every time the thread applies the topics (first channel, replacement channel).
    generation: u64,
    last: Option<Result<Vec<TopicResult>, ApiError>>,
    /// Set when the thread stopped for good.
    stopped: Option<String>,
}

/// One channel slot: the topics that belong on it and the thread that keeps them flowing.
/// When the channel on the server is lost, the slot gets a new one with the same topics.
pub(crate) struct Slot {
    /// Whether only the topics it was created with may live here (`subscribe_isolated`).
    pub isolated: bool,
    /// The desired topics of this channel: the one source of truth for it.
    pub topics: Mutex<BTreeSet<Topic>>,
    channel: Mutex<Option<ChannelInfo>>,
    /// When the channel's topics must be `PUT` again so that it does not lapse.
    renewal: Mutex<Option<Renewal>>,
    /// Set when a user's topic update could not be sent: the thread sends the whole topic set
    /// again at its next chance (while reading, or after reconnecting).
    pub(crate) reapply: AtomicBool,
    /// Serialises topic updates of this channel (user calls and the thread's re-application).
    apply_lock: Mutex<()>,
    pub stats: Arc<ChannelStats>,
    stopping: AtomicBool,
    /// Set by [`Slot::nudge`]: end the current backoff wait early.
    nudged: AtomicBool,
    /// Whether to remove the server-side subscriptions when stopping.
    delete_on_stop: AtomicBool,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    /// A clone of the live socket's TCP stream: shutting its read half wakes a blocked read.
    interrupt: Mutex<Option<TcpStream>>,
    setup: Mutex<Setup>,
    setup_changed: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Slot {
    pub(crate) fn new(isolated: bool, topics: BTreeSet<Topic>) -> Arc<Slot> {
        let stats = Arc::new(ChannelStats::new());
        stats.status.lock().topics = topics.len();
        Arc::new(Slot {
            isolated,
            topics: Mutex::new(topics),
            channel: Mutex::new(None),
            renewal: Mutex::new(None),
            reapply: AtomicBool::new(false),
            apply_lock: Mutex::new(()),
            stats,
            stopping: AtomicBool::new(false),
            nudged: AtomicBool::new(false),
            delete_on_stop: AtomicBool::new(true),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            interrupt: Mutex::new(None),
            setup: Mutex::new(Setup::default()),
            setup_changed: Condvar::new(),
            thread: Mutex::new(None),
        })
    }

    /// Starts the slot's thread.
    pub(crate) fn start(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        index: usize,
    ) -> std::io::Result<()> {
        let (slot, shared) = (self.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name(format!("genesys-channel-{index}"))
            .spawn(move || {
                let worker = Worker {
                    slot: slot.clone(),
                    shared: shared.clone(),
                };
                // A bug in this thread must not leave `subscribe` callers waiting or go unseen.
                if let Err(panic) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run()))
                {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".to_owned());
                    shared.emit(Lifecycle::PermanentFailure {
                        channel: slot.channel_id(),
                        error: format!("channel thread panicked: {message}"),
                    });
                    slot.stats.set_state(ChannelState::Stopped);
                    slot.publish_stopped(format!("channel thread panicked: {message}"));
                }
            })?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    pub(crate) fn channel_id(&self) -> Option<ChannelId> {
        self.channel.lock().as_ref().map(|c| ChannelId::new(&c.id))
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Whether the thread has ended for good (permanent failure, spent budget, stopped).
    pub(crate) fn is_dead(&self) -> bool {
        self.setup.lock().stopped.is_some()
    }

    /// Wakes the thread now: drops its socket's connection, or cuts short its backoff wait,
    /// so that it re-checks its channel at once.
    pub(crate) fn nudge(&self) {
        self.nudged.store(true, Ordering::Release);
        {
            let _guard = self.sleep_lock.lock();
            self.wake.notify_all();
        }
        self.interrupt();
    }

    /// The current setup generation (see [`Slot::wait_setup`]).
    pub(crate) fn setup_generation(&self) -> u64 {
        self.setup.lock().generation
    }

    /// Waits until the thread has applied the topics after generation `after`, or stopped, or
    /// `deadline` passed (`None`).
    pub(crate) fn wait_setup(
        &self,
        after: u64,
        deadline: Instant,
    ) -> Option<Result<Vec<TopicResult>, SetupFailure>> {
        let mut setup = self.setup.lock();
        loop {
            if setup.generation > after {
                return setup.last.clone().map(|r| r.map_err(SetupFailure::Api));
            }
            if let Some(reason) = &setup.stopped {
                return Some(Err(SetupFailure::Stopped(reason.clone())));
            }
            if self
                .setup_changed
                .wait_until(&mut setup, deadline)
                .timed_out()
            {
                return None;
            }
        }
    }

    fn publish_setup(&self, result: Result<Vec<TopicResult>, ApiError>) {
        let mut setup = self.setup.lock();
        setup.generation += 1;
        setup.last = Some(result);
        self.setup_changed.notify_all();
    }

    fn publish_stopped(&self, reason: String) {
        let mut setup = self.setup.lock();
        setup.stopped = Some(reason);
        self.setup_changed.notify_all();
    }

    /// Drops the live socket's connection so its thread wakes and re-checks its channel.
    pub(crate) fn interrupt(&self) {
        if let Some(stream) = self.interrupt.lock().as_ref() {
            let _ = stream.shutdown(Shutdown::Read);
        }
    }

    /// Asks the thread to stop: close its socket with a close frame, remove the subscriptions
    /// when `delete_subscriptions`, and end. Returns at once; join with [`Slot::join_until`].
    pub(crate) fn stop(&self, delete_subscriptions: bool) {
        self.delete_on_stop
            .store(delete_subscriptions, Ordering::Release);
        self.stopping.store(true, Ordering::Release);
        {
            let _guard = self.sleep_lock.lock();
            self.wake.notify_all();
        }
        self.interrupt();
    }

    /// Joins the thread if it ends before `deadline`.
    /// A thread still running at `deadline` stays joinable by a later call (`shutdown`).
    pub(crate) fn join_until(&self, deadline: Instant) -> bool {
        loop {
            let finished = match self.thread.lock().as_ref() {
                None => return true,
                Some(handle) => handle.is_finished(),
            };
            if finished {
                if let Some(handle) = self.thread.lock().take() {
                    let _ = handle.join();
                }
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sleeps `delay` unless stopped first; returns whether it was stopped. A nudge cuts the
    /// sleep short, but never below `floor` (a `Retry-After` the service asked for).
    pub(crate) fn sleep(&self, delay: Duration, floor: Duration) -> bool {
        let start = Instant::now();
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        let deadline = start.checked_add(delay).unwrap_or_else(far);
        let floor_end = start.checked_add(floor.min(delay)).unwrap_or_else(far);
        let mut guard = self.sleep_lock.lock();
        while !self.is_stopping() {
            if Instant::now() >= floor_end && self.nudged.swap(false, Ordering::AcqRel) {
                break;
            }
            let wake_at = if Instant::now() < floor_end {
                floor_end
            } else {
                deadline
            };
            if self.wake.wait_until(&mut guard, wake_at).timed_out() && wake_at == deadline {
                break;
            }
        }
        self.is_stopping()
    }

    /// `PUT`s the slot's whole topic set to its current channel (or `DELETE`s when empty),
    /// under the slot's update lock, removes the rejected topics from the set, and reports
    /// [`Lifecycle::Subscribed`].
    ///
    /// # Errors
    /// [`ApiError::NotFound`] when the slot has no channel or the channel is gone; any other
    /// [`ApiError`] of the call.
    pub(crate) fn apply_topics(&self, shared: &Shared) -> Result<Vec<TopicResult>, ApiError> {
        let _apply = self.apply_lock.lock();
        if self.is_stopping() {
            // After the final DELETE of a shutdown, nothing may subscribe again.
            return Err(ApiError::Transport("the channel is shutting down".into()));
        }
        let channel = self.channel.lock().clone().ok_or(ApiError::NotFound)?;
        let topics: Vec<String> = self
            .topics
            .lock()
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        let results = if topics.is_empty() {
            shared.api.delete_subscriptions(&channel.id)?;
            Vec::new()
        } else {
            shared.api.put_subscriptions(&channel.id, &topics)?
        };
        self.renewed(Instant::now());
        let rejected: Vec<Topic> = results
            .iter()
            .filter(|r| r.state == TopicState::Rejected)
            .filter_map(|r| Topic::parse(&r.topic).ok())
            .collect();
        {
            let mut set = self.topics.lock();
            for topic in &rejected {
                set.remove(topic);
            }
            self.stats.status.lock().topics = set.len();
        }
        if !results.is_empty() {
            shared.emit(Lifecycle::Subscribed {
                channel: ChannelId::new(&channel.id),
                results: results.clone(),
            });
        }
        Ok(results)
    }
}

/// A channel lives for a fixed time unless its subscriptions are `PUT` again (docs/protocol.md
/// "Channels": 24 h; `expires` in the creation answer): the channel's thread re-applies the
/// topics three quarters into that time, so a channel in use never lapses.
#[derive(Clone, Copy, Debug)]
struct Renewal {
    /// The channel's lifetime, taken from `expires` at creation.
    lifetime: Duration,
    /// When the channel lapses unless renewed first.
    expires: Instant,
    /// When to renew.
    due: Instant,
}

impl Renewal {
    fn starting(now: Instant, lifetime: Duration) -> Renewal {
        Renewal {
            lifetime,
            expires: now + lifetime,
            due: now + lifetime.mul_f64(0.75),
        }
    }
}

impl Slot {
    /// A new channel: its lifetime is what its `expires` leaves now (none known: never renewed).
    fn start_lifetime(&self, expires: Option<SystemTime>) {
        *self.renewal.lock() = expires
            .and_then(|e| e.duration_since(SystemTime::now()).ok())
            // A lifetime under a second (clock skew, a bad answer) would renew on every tick;
            // a year or more cannot be meant. Neither is renewed.
            .filter(|lifetime| {
                *lifetime >= Duration::from_secs(1) && *lifetime < Duration::from_secs(365 * 86_400)
            })
            .map(|lifetime| Renewal::starting(Instant::now(), lifetime));
    }

    /// The topics were just applied: the channel lives a whole lifetime from `now`.
    fn renewed(&self, now: Instant) {
        if let Some(r) = self.renewal.lock().as_mut() {
            *r = Renewal::starting(now, r.lifetime);
        }
    }

    fn renewal_due(&self, now: Instant) -> bool {
        self.renewal.lock().is_some_and(|r| now >= r.due)
    }

    /// A renewal failed: try again halfway to the expiry, but not before `at_least` (the
    /// backoff delay, `Retry-After` included).
    fn renewal_failed(&self, now: Instant, at_least: Duration) {
        if let Some(r) = self.renewal.lock().as_mut() {
            let left = r.expires.saturating_duration_since(now);
            let wait = (left / 2).max(at_least).max(Duration::from_millis(500));
            r.due = now.checked_add(wait).unwrap_or(r.due);
        }
    }
}

/// Why a `subscribe` waiting on a new channel's first setup gave up.
#[derive(Clone, Debug)]
pub(crate) enum SetupFailure {
    Api(ApiError),
    Stopped(String),
}

/// How a read loop ended.
struct ReadEnd {
    cause: DisconnectCause,
    /// A socket opened to replace this one during a `socket_closing` switch.
    switched_to: Option<(Socket, TcpStream)>,
}

/// How a `socket_closing` switch went.
enum Switch {
    /// The new socket takes over (boxed: a socket is large and the other variants small).
    Done(Box<(Socket, TcpStream)>),
    /// The new socket could not be opened: keep reading the old one until the server closes it.
    KeepOld,
    /// The old socket ended for a reason that makes the new one useless.
    Ended(DisconnectCause),
}

/// What the frame handler asks the read loop to do.
enum Next {
    Continue,
    End(DisconnectCause),
}

struct Worker {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl Worker {
    fn config(&self) -> &Config {
        &self.shared.config
    }

    fn run(self) {
        let mut retry = Retry::new(self.config().backoff.clone());
        let mut gap_since: Option<SystemTime> = None;
        let mut need_new_channel = true;
        let mut need_apply = true;
        let mut lost_channel: Option<ChannelId> = None;
        let mut switched: Option<(Socket, TcpStream)> = None;
        let stop_reason = loop {
            if self.slot.is_stopping() {
                if let Some((mut socket, _)) = switched.take() {
                    self.close(&mut socket);
                }
                break "stopped by the user".to_owned();
            }
            if need_new_channel {
                self.slot.stats.set_state(ChannelState::Creating);
                match self.shared.api.create_channel() {
                    Ok(info) => {
                        let id = ChannelId::new(&info.id);
                        self.slot.start_lifetime(info.expires);
                        *self.slot.channel.lock() = Some(info);
                        self.slot.stats.status.lock().channel = Some(id.clone());
                        match lost_channel.take() {
                            Some(old) => self
                                .shared
                                .emit(Lifecycle::ChannelReplaced { old, new: id }),
                            None => self.shared.emit(Lifecycle::ChannelCreated { channel: id }),
                        }
                        need_new_channel = false;
                        need_apply = true;
                    }
                    Err(error) => match self.after_api_error(&mut retry, "create channel", error) {
                        Ok(()) => continue,
                        Err(reason) => break reason,
                    },
                }
            }
            let Some(info) = self.slot.channel.lock().clone() else {
                need_new_channel = true;
                continue;
            };
            let id = ChannelId::new(&info.id);

            let (mut socket, interrupt) = match switched.take() {
                Some(socket) => socket,
                None => {
                    self.slot.stats.set_state(ChannelState::Connecting);
                    match connect::connect(
                        &info.connect_uri,
                        self.config().connect_timeout,
                        self.config().max_message_size,
                        &self.shared.tls,
                        &|stream| *self.slot.interrupt.lock() = Some(stream),
                    ) {
                        Ok(socket) => socket,
                        Err(error) => {
                            // Drop the clone `register` kept: it would hold the failed
                            // connection open (no FIN to the server) through the backoff.
                            *self.slot.interrupt.lock() = None;
                            if let ConnectError::BadUri(_) = error {
                                break self.fail_permanently(Some(id), error.to_string());
                            }
                            if error.channel_gone() {
                                lost_channel = Some(id.clone());
                                need_new_channel = true;
                            }
                            let retry_after = error.retry_after();
                            match self.backoff(&mut retry, retry_after, Some(id), error.to_string())
                            {
                                Ok(()) => continue,
                                Err(reason) => break reason,
                            }
                        }
                    }
                }
            };
            *self.slot.interrupt.lock() = Some(interrupt);
            if self.slot.is_stopping() {
                self.close(&mut socket);
                *self.slot.interrupt.lock() = None;
                break "stopped by the user".to_owned();
            }

            let pending_update = self.slot.reapply.swap(false, Ordering::AcqRel);
            if need_apply || pending_update {
                match self.slot.apply_topics(&self.shared) {
                    Ok(results) => {
                        need_apply = false;
                        self.slot.publish_setup(Ok(results));
                    }
                    Err(error) => {
                        self.close(&mut socket);
                        *self.slot.interrupt.lock() = None;
                        // Whatever was to be sent is sent again at the next attempt.
                        need_apply = true;
                        if matches!(error, ApiError::NotFound) {
                            lost_channel = Some(id.clone());
                            need_new_channel = true;
                        }
                        match self.after_api_error(&mut retry, "subscribe", error) {
                            Ok(()) => continue,
                            Err(reason) => break reason,
                        }
                    }
                }
            }

            self.slot.stats.set_state(ChannelState::Connected);
            self.shared.emit(Lifecycle::Connected {
                channel: id.clone(),
            });
            if let Some(start) = gap_since.take() {
                self.shared.emit(Lifecycle::Gap {
                    channel: id.clone(),
                    start,
                    end: SystemTime::now(),
                    topics: self.slot.topics.lock().iter().cloned().collect(),
                });
            }
            let connected_at = Instant::now();
            let end = self.read(&mut socket, &id);
            *self.slot.interrupt.lock() = None;
            if connected_at.elapsed() >= self.config().backoff.reset_after {
                retry.reset();
            }
            self.shared.emit(Lifecycle::Disconnected {
                channel: id.clone(),
                cause: end.cause.clone(),
            });
            if let Some(next) = end.switched_to {
                // socket_closing: the new socket is already connected, no gap.
                self.slot.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                switched = Some(next);
                continue;
            }
            self.close(&mut socket);
            if self.slot.is_stopping() {
                break "stopped by the user".to_owned();
            }
            // Events are lost from the last frame on, not from when the loss was noticed (a
            // silent socket is found out only after the liveness timeout).
            gap_since = Some(self.last_frame_time().unwrap_or_else(SystemTime::now));
            self.slot.stats.set_state(ChannelState::Backoff);
            self.slot.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            // A failed check leaves the channel to the handshake's answer, but a 429's
            // Retry-After still holds for the next attempt.
            let mut retry_after = None;
            let gone = end.cause == DisconnectCause::ChannelGone
                || match self.shared.api.channel_exists(&info.id) {
                    Ok(exists) => !exists,
                    Err(error) => {
                        retry_after = error.retry_after();
                        false
                    }
                };
            if gone {
                lost_channel = Some(id.clone());
                need_new_channel = true;
            }
            match self.backoff(&mut retry, retry_after, Some(id), end.cause.to_string()) {
                Ok(()) => {}
                Err(reason) => break reason,
            }
        };
        if let Some(start) = gap_since.take() {
            // The thread ends without a socket: the gap lasted until now at least.
            if let Some(channel) = self.slot.channel_id() {
                self.shared.emit(Lifecycle::Gap {
                    channel,
                    start,
                    end: SystemTime::now(),
                    topics: self.slot.topics.lock().iter().cloned().collect(),
                });
            }
        }
        if self.slot.is_stopping() && self.slot.delete_on_stop.load(Ordering::Acquire) {
            let _apply = self.slot.apply_lock.lock();
            if let Some(info) = self.slot.channel.lock().clone() {
                if let Err(error) = self.shared.api.delete_subscriptions(&info.id) {
                    log::warn!(
                        "removing the subscriptions of channel {} failed: {error}",
                        ChannelId::new(&info.id)
                    );
                }
            }
        }
        self.slot.stats.set_state(ChannelState::Stopped);
        self.slot.publish_stopped(stop_reason);
    }

    fn origin(&self, id: &ChannelId) -> Arc<Origin> {
        Arc::new(Origin {
            channel: id.clone(),
            stats: self.slot.stats.clone(),
            epoch: self.shared.epoch,
        })
    }

    /// When the last frame of any kind arrived, on the wall clock.
    fn last_frame_time(&self) -> Option<SystemTime> {
        let nanos = self.slot.stats.last_frame_nanos.load(Ordering::Relaxed);
        (nanos > 0).then(|| self.shared.epoch.1 + Duration::from_nanos(nanos))
    }

    /// Waits before the next attempt, or gives up when the retry budget is spent.
    fn backoff(
        &self,
        retry: &mut Retry,
        retry_after: Option<Duration>,
        channel: Option<ChannelId>,
        error: String,
    ) -> Result<(), String> {
        self.slot.stats.set_state(ChannelState::Backoff);
        match retry.next_delay(retry_after) {
            None => {
                self.shared.emit(Lifecycle::RetryBudgetExhausted {
                    channel,
                    attempts: retry.retries(),
                    last_error: error.clone(),
                });
                Err(format!(
                    "retry budget spent after {} retries: {error}",
                    retry.retries()
                ))
            }
            Some(delay) => {
                self.shared.emit(Lifecycle::Reconnecting {
                    channel,
                    attempt: retry.retries(),
                    delay,
                    error,
                });
                if self.slot.sleep(delay, retry_after.unwrap_or_default()) {
                    Err("stopped by the user".to_owned())
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Reports a failed REST call and either backs off (transient) or stops (permanent).
    fn after_api_error(
        &self,
        retry: &mut Retry,
        operation: &'static str,
        error: ApiError,
    ) -> Result<(), String> {
        let channel = self.slot.channel_id();
        self.shared.emit(Lifecycle::RequestFailed {
            channel: channel.clone(),
            operation,
            error: error.clone(),
        });
        let permanent = match &error {
            ApiError::Token(token) => token.is_permanent(),
            ApiError::NotFound => false,
            // Before the channel ever worked, a 401 after a refresh or a 403 means the token or
            // its permissions are wrong: say so at once. Once it has worked, the same answer
            // during recovery may pass (permissions being fixed, token source recovering): it is
            // retried with backoff against the budget, never in a hot loop.
            ApiError::Unauthorized { .. } | ApiError::Forbidden { .. } => {
                self.slot.setup_generation() == 0
            }
            other => !other.is_transient(),
        };
        if permanent {
            self.slot.publish_setup(Err(error.clone()));
            return Err(self.fail_permanently(channel, format!("{operation}: {error}")));
        }
        self.backoff(
            retry,
            error.retry_after(),
            channel,
            format!("{operation}: {error}"),
        )
    }

    fn fail_permanently(&self, channel: Option<ChannelId>, error: String) -> String {
        self.shared.emit(Lifecycle::PermanentFailure {
            channel,
            error: error.clone(),
        });
        error
    }

    /// Sends a close frame (best effort, bounded by the socket's write timeout) and drops the
    /// connection.
    fn close(&self, socket: &mut Socket) {
        if let Ok(stream) = tcp_of(socket) {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        }
        if socket.can_write() {
            let _ = socket.close(None);
            let _ = socket.flush();
        } else if self.slot.is_stopping() {
            // `stop` shut the read half to wake the blocked read; tungstenite took the EOF for
            // the end of the connection and will not send a close frame any more, but the write
            // half still works: send the (masked, client-side) close frame ourselves.
            let mut frame = tungstenite::protocol::frame::Frame::close(None);
            frame.header_mut().mask = Some(rand::random());
            let mut bytes = Vec::new();
            if frame.format(&mut bytes).is_ok() {
                let stream = socket.get_mut();
                let _ = std::io::Write::write_all(stream, &bytes);
                let _ = std::io::Write::flush(stream);
            }
        }
        if let Ok(stream) = tcp_of(socket) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Reads the socket until it fails, goes silent, the user stops, or a `socket_closing`
    /// switch hands over to a new socket.
    fn read(&self, socket: &mut Socket, id: &ChannelId) -> ReadEnd {
        let origin = self.origin(id);
        let config = self.config();
        let tick = [
            config.ping_interval,
            config.pong_timeout,
            config.liveness_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1))
        .div_f64(4.0)
        .clamp(Duration::from_millis(10), Duration::from_secs(5));
        if let Ok(stream) = tcp_of(socket) {
            let _ = stream.set_read_timeout(Some(tick));
            // A ping that cannot be written is as dead as one not answered.
            let _ = stream.set_write_timeout(Some(config.pong_timeout));
        }
        let mut liveness = Liveness::new(Instant::now());
        let mut switch_at: Option<Instant> = None;
        // While connected a nudge is delivered by interrupting the socket; a stale one must not
        // cut a later backoff short.
        self.slot.nudged.store(false, Ordering::Release);
        // Failed re-sends of a user's topic update back off, so the read loop never hammers.
        let mut update_retry = Retry::new(config.backoff.clone());
        let mut update_retry_at: Option<Instant> = None;
        let mut frames_since_check = 0u32;
        let mut last_check = Instant::now();
        loop {
            if self.slot.is_stopping() {
                return ReadEnd {
                    cause: DisconnectCause::UserRequest,
                    switched_to: None,
                };
            }
            match socket.read() {
                Ok(message) => {
                    if let Next::End(cause) =
                        self.handle(message, socket, &origin, &mut liveness, &mut switch_at)
                    {
                        return ReadEnd {
                            cause,
                            switched_to: None,
                        };
                    }
                    // While frames flow the socket is alive: the periodic checks below (ping,
                    // renewal, pending updates, switch) run on every read timeout, every
                    // CHECK_EVERY frames and at least every tick, not after each frame.
                    frames_since_check += 1;
                    if frames_since_check < CHECK_EVERY
                        && switch_at.is_none()
                        && liveness.last_frame < last_check + tick
                    {
                        continue;
                    }
                    frames_since_check = 0;
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => {
                    return ReadEnd {
                        cause: if self.slot.is_stopping() {
                            DisconnectCause::UserRequest
                        } else {
                            self.read_error(error, id)
                        },
                        switched_to: None,
                    }
                }
            }
            let now = Instant::now();
            last_check = now;
            match liveness.check(now, config) {
                Check::Fine => {}
                Check::SendPing => {
                    if let Err(error) = socket.send(Message::text(PING)) {
                        return ReadEnd {
                            cause: self.read_error(error, id),
                            switched_to: None,
                        };
                    }
                }
                Check::Dead(silent_for) => {
                    return ReadEnd {
                        cause: DisconnectCause::LivenessTimeout { silent_for },
                        switched_to: None,
                    }
                }
            }
            let update_due = update_retry_at.is_none_or(|at| now >= at)
                && self.slot.reapply.swap(false, Ordering::AcqRel);
            if update_due || self.slot.renewal_due(now) {
                let started = Instant::now();
                match self.slot.apply_topics(&self.shared) {
                    Ok(_) => {
                        update_retry.reset();
                        update_retry_at = None;
                    }
                    Err(ApiError::NotFound) => {
                        return ReadEnd {
                            cause: DisconnectCause::ChannelGone,
                            switched_to: None,
                        }
                    }
                    Err(error) => {
                        let after = Instant::now();
                        let delay = update_retry
                            .next_delay(error.retry_after())
                            .unwrap_or(config.backoff.cap);
                        self.slot.renewal_failed(after, delay);
                        if update_due {
                            // Not sent: keep it pending, to be tried after the delay.
                            self.slot.reapply.store(true, Ordering::Release);
                            update_retry_at = after.checked_add(delay);
                        }
                        self.shared.emit(Lifecycle::RequestFailed {
                            channel: Some(id.clone()),
                            operation: if update_due {
                                "update topics"
                            } else {
                                "renew channel"
                            },
                            error,
                        });
                    }
                }
                // Time spent on the REST call is not server silence.
                liveness.blocked(started.elapsed());
            }
            if switch_at.is_some_and(|at| now >= at) {
                switch_at = None;
                match self.switch(socket, id, &mut liveness) {
                    Switch::Done(next) => {
                        return ReadEnd {
                            cause: DisconnectCause::ServerMaintenance,
                            switched_to: Some(*next),
                        }
                    }
                    Switch::Ended(cause) => {
                        return ReadEnd {
                            cause,
                            switched_to: None,
                        }
                    }
                    Switch::KeepOld => {}
                }
            }
        }
    }

    /// `v2.system.socket_closing`: connects a new socket to the same channel (the server then
    /// drops the old one), delivers what is still arriving on the old socket, and hands over.
    fn switch(&self, old: &mut Socket, id: &ChannelId, liveness: &mut Liveness) -> Switch {
        let origin = self.origin(id);
        let Some(info) = self.slot.channel.lock().clone() else {
            return Switch::KeepOld;
        };
        let next = match connect::connect(
            &info.connect_uri,
            self.config().connect_timeout,
            self.config().max_message_size,
            &self.shared.tls,
            // A stop during the switch can interrupt the new connection; the old socket's read
            // loop checks for the stop at every tick.
            &|stream| *self.slot.interrupt.lock() = Some(stream),
        ) {
            Ok(next) => next,
            Err(error) => {
                log::warn!("socket_closing: opening the new socket for {id} failed ({error}); keeping the old one");
                return Switch::KeepOld;
            }
        };
        let drain_until = Instant::now() + self.config().pong_timeout;
        let mut ignored_switch = None;
        while Instant::now() < drain_until && !self.slot.is_stopping() {
            match old.read() {
                Ok(message) => {
                    match self.handle(message, old, &origin, liveness, &mut ignored_switch) {
                        Next::Continue => {}
                        Next::End(DisconnectCause::ChannelGone) => {
                            // The channel lost its subscriptions: the new socket is useless.
                            let (mut next_socket, _) = next;
                            self.close(&mut next_socket);
                            return Switch::Ended(DisconnectCause::ChannelGone);
                        }
                        Next::End(_) => break,
                    }
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        self.close(old);
        Switch::Done(Box::new(next))
    }

    fn read_error(&self, error: tungstenite::Error, id: &ChannelId) -> DisconnectCause {
        match error {
            tungstenite::Error::Capacity(e) => {
                self.slot.stats.malformed.fetch_add(1, Ordering::Relaxed);
                self.shared.emit(Lifecycle::MalformedMessage {
                    channel: id.clone(),
                    reason: format!("oversize message: {e}"),
                    excerpt: String::new(),
                });
                DisconnectCause::Protocol(e.to_string())
            }
            tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            ) => DisconnectCause::Io("connection reset without a close frame".into()),
            tungstenite::Error::Protocol(e) => DisconnectCause::Protocol(e.to_string()),
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                DisconnectCause::Closed {
                    code: None,
                    reason: String::new(),
                }
            }
            tungstenite::Error::Utf8(e) => {
                self.slot.stats.malformed.fetch_add(1, Ordering::Relaxed);
                self.shared.emit(Lifecycle::MalformedMessage {
                    channel: id.clone(),
                    reason: format!("text frame is not UTF-8: {e}"),
                    excerpt: String::new(),
                });
                DisconnectCause::Protocol(format!("invalid UTF-8: {e}"))
            }
            other => DisconnectCause::Io(other.to_string()),
        }
    }

    /// Handles one message read from the socket.
    fn handle(
        &self,
        message: Message,
        socket: &mut Socket,
        origin: &Arc<Origin>,
        liveness: &mut Liveness,
        switch_at: &mut Option<Instant>,
    ) -> Next {
        let stats = &self.slot.stats;
        let id = &origin.channel;
        // One clock reading per frame serves liveness, health and the event's timestamps.
        let now = Instant::now();
        liveness.frame(now);
        stats.last_frame_nanos.store(
            now.saturating_duration_since(self.shared.epoch.0)
                .as_nanos() as u64,
            Ordering::Relaxed,
        );
        match message {
            Message::Text(text) => match message::parse(text.as_str()) {
                Ok(Inbound::Notification(located)) => {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    let event = Event::new(text, located, origin, now);
                    if let Pushed::QueuedAfter(blocked) =
                        self.shared.dispatcher.push(event, &self.slot.stopping)
                    {
                        // Time spent blocked by backpressure is not server silence.
                        liveness.blocked(blocked);
                    }
                }
                Ok(Inbound::Heartbeat) => {
                    stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Inbound::Pong) => {
                    if let Some(rtt) = liveness.pong(now) {
                        stats
                            .ping_rtt_nanos
                            .store(rtt.as_nanos().max(1) as u64, Ordering::Relaxed);
                    }
                }
                Ok(Inbound::Metadata(message)) => {
                    log::debug!("channel.metadata on {id}: {message:?}");
                }
                Ok(Inbound::System(mut system)) => {
                    // System bodies name the channel (`channelId`): never pass the full id on.
                    let short = crate::redact::short_id(id.as_str());
                    system.event_body = system.event_body.replace(id.as_str(), &short);
                    if let Some(message) = system.message.as_mut() {
                        *message = message.replace(id.as_str(), &short);
                    }
                    let closing = system.is_socket_closing();
                    let ends = system.ends_subscriptions();
                    self.shared.emit(Lifecycle::SystemMessage {
                        channel: id.clone(),
                        message: system,
                    });
                    if closing && switch_at.is_none() {
                        // Switch early in the ~1 minute warning window, at a jittered moment so
                        // that many clients do not reconnect at once.
                        let window = self.config().pong_timeout.min(Duration::from_secs(10));
                        let jitter = rand::rng().random_range(0..=window.as_millis() as u64);
                        *switch_at = Some(now + Duration::from_millis(jitter / 2));
                    } else if ends {
                        return Next::End(DisconnectCause::ChannelGone);
                    }
                }
                Err(malformed) => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    self.shared.emit(Lifecycle::MalformedMessage {
                        channel: id.clone(),
                        reason: malformed.reason,
                        // The server's text may name the channel: shorten its id as above.
                        excerpt: malformed
                            .excerpt
                            .replace(id.as_str(), &crate::redact::short_id(id.as_str())),
                    });
                }
            },
            Message::Binary(bytes) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                self.shared.emit(Lifecycle::MalformedMessage {
                    channel: id.clone(),
                    reason: format!(
                        "binary frame of {} bytes (the service sends text frames only)",
                        bytes.len()
                    ),
                    excerpt: String::new(),
                });
            }
            Message::Ping(_) => {
                // tungstenite queued the pong; send it now.
                let _ = socket.flush();
            }
            Message::Close(frame) => {
                let _ = socket.flush();
                let (code, reason) = match frame {
                    Some(frame) => (Some(u16::from(frame.code)), frame.reason.to_string()),
                    None => (None, String::new()),
                };
                return Next::End(DisconnectCause::Closed { code, reason });
            }
            Message::Pong(_) | Message::Frame(_) => {}
        }
        Next::Continue
    }
}

fn tcp_of(socket: &Socket) -> Result<&TcpStream, ()> {
    match socket.get_ref() {
        tungstenite::stream::MaybeTlsStream::Plain(stream) => Ok(stream),
        tungstenite::stream::MaybeTlsStream::Rustls(tls) => Ok(tls.get_ref()),
        _ => Err(()),
    }
}

/// The liveness decisions of one socket, on a monotonic clock, free of I/O.
#[derive(Debug)]
pub(crate) struct Liveness {
    last_frame: Instant,
    ping_sent: Option<Instant>,
}

/// What [`Liveness::check`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Fine,
    SendPing,
    /// Dead: silent for this long.
    Dead(Duration),
}

impl Liveness {
    pub(crate) fn new(now: Instant) -> Liveness {
        Liveness {
            last_frame: now,
            ping_sent: None,
        }
    }

    /// Any inbound frame resets the silence clock.
    pub(crate) fn frame(&mut self, now: Instant) {
        self.last_frame = now;
    }

    /// A pong arrived; returns the round trip if a ping was outstanding.
    pub(crate) fn pong(&mut self, now: Instant) -> Option<Duration> {
        self.ping_sent
            .take()
            .map(|sent| now.saturating_duration_since(sent))
    }

    /// The socket thread was blocked by backpressure for `d`: that time is not silence.
    pub(crate) fn blocked(&mut self, d: Duration) {
        self.last_frame += d;
        if let Some(sent) = self.ping_sent.as_mut() {
            *sent += d;
        }
    }

    pub(crate) fn check(&mut self, now: Instant, config: &Config) -> Check {
        let silent = now.saturating_duration_since(self.last_frame);
        if silent >= config.liveness_timeout {
            return Check::Dead(silent);
        }
        match self.ping_sent {
            Some(sent) if now.saturating_duration_since(sent) >= config.pong_timeout => {
                if self.last_frame <= sent {
                    Check::Dead(silent)
                } else {
                    // Frames arrived since the ping: the socket is alive, the pong was lost.
                    self.ping_sent = None;
                    Check::Fine
                }
            }
            Some(_) => Check::Fine,
            None if silent >= config.ping_interval => {
                self.ping_sent = Some(now);
                Check::SendPing
            }
            None => Check::Fine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            liveness_timeout: Duration::from_secs(60),
            ..Config::default()
        }
    }

    #[test]
    fn idle_socket_is_pinged_then_declared_dead_without_pong() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.check(t0 + Duration::from_secs(29), &c), Check::Fine);
        assert_eq!(l.check(t0 + Duration::from_secs(30), &c), Check::SendPing);
        assert_eq!(l.check(t0 + Duration::from_secs(35), &c), Check::Fine);
        assert_eq!(
            l.check(t0 + Duration::from_secs(40), &c),
            Check::Dead(Duration::from_secs(40))
        );
    }

    #[test]
    fn pong_measures_round_trip_and_keeps_socket_alive() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.check(t0 + Duration::from_secs(30), &c), Check::SendPing);
        let at = t0 + Duration::from_millis(30_250);
        l.frame(at);
        assert_eq!(l.pong(at), Some(Duration::from_millis(250)));
        assert_eq!(l.check(t0 + Duration::from_secs(45), &c), Check::Fine);
        assert_eq!(l.pong(at), None);
    }

    #[test]
    fn frames_after_an_unanswered_ping_keep_the_socket_alive() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.check(t0 + Duration::from_secs(30), &c), Check::SendPing);
        l.frame(t0 + Duration::from_secs(31));
        assert_eq!(l.check(t0 + Duration::from_secs(41), &c), Check::Fine);
        assert_eq!(l.check(t0 + Duration::from_secs(61), &c), Check::SendPing);
    }

    #[test]
    fn heartbeats_keep_socket_alive_without_pings() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        for n in 1..100u64 {
            let at = t0 + Duration::from_secs(25 * n);
            l.frame(at);
            assert_eq!(l.check(at, &c), Check::Fine);
        }
    }

    #[test]
    fn time_blocked_by_backpressure_is_not_silence() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        // The socket thread waited 5 minutes for queue room right after a frame.
        l.blocked(Duration::from_secs(300));
        assert_eq!(l.check(t0 + Duration::from_secs(301), &c), Check::Fine);
        assert_eq!(l.check(t0 + Duration::from_secs(330), &c), Check::SendPing);
    }

    #[test]
    fn channel_is_renewed_three_quarters_into_its_life_and_retried_halfway_to_expiry() {
        let slot = Slot::new(false, BTreeSet::new());
        let day = Duration::from_secs(24 * 3600);
        slot.start_lifetime(Some(SystemTime::now() + day));
        let t0 = Instant::now();
        let due = slot.renewal.lock().unwrap().due;
        assert!(due >= t0 + day.mul_f64(0.74) && due <= t0 + day.mul_f64(0.76));
        assert!(!slot.renewal_due(t0));
        assert!(slot.renewal_due(due));
        // A failure 18 h in: try again 3 h later (half of the 6 h left).
        slot.renewal_failed(due, Duration::from_secs(1));
        let retry = slot.renewal.lock().unwrap().due;
        let three_hours = Duration::from_secs(3 * 3600);
        assert!(retry >= due + three_hours - Duration::from_secs(60));
        assert!(retry <= due + three_hours + Duration::from_secs(60));
        // A successful re-subscription starts a whole lifetime again.
        slot.renewed(retry);
        let due = slot.renewal.lock().unwrap().due;
        assert!(
            due <= retry + day.mul_f64(0.75)
                && due + Duration::from_secs(1) >= retry + day.mul_f64(0.75)
        );
        // No (or a past) `expires`: never renewed.
        slot.start_lifetime(None);
        assert!(!slot.renewal_due(t0 + day * 365));
    }
}
