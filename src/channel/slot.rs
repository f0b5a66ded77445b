//! slot.rs owns one channel slot: the topics that belong on it, the channel it currently has,
//! and what the channel's thread shares with the client (setup outcome, stop and nudge signals,
//! the interrupt handle of the live socket). It never reads a socket.

use super::renewal::Renewal;
use super::topics::TopicSet;
use super::{worker, Shared};
use crate::api::ChannelInfo;
use crate::channel_id::ChannelId;
use crate::error::ApiError;
use crate::error::{ChannelError, StopReason};
use crate::health::ChannelStats;
use crate::topic::Topic;
use crate::topic::{TopicResult, TopicState};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The outcome of the latest topic application by the channel's thread, for `subscribe` calls
/// waiting on it.
#[derive(Default)]
struct Setup {
    /// Bumped every time the thread applies the topics (first channel, replacement channel).
    generation: u64,
    last: Option<Result<Vec<TopicResult>, ApiError>>,
    /// Set when the thread stopped for good.
    stopped: Option<StopReason>,
    /// The REST failure the thread is backing off from, and when it tries again; cleared once
    /// a socket is open or the topics are applied. A `subscribe` whose deadline comes before
    /// that attempt gets the service's answer at once instead of waiting for nothing.
    retrying: Option<(ApiError, Instant)>,
    /// What the thread's last failed attempt met, until the topics are applied: the cause a
    /// `subscribe` that times out reports.
    last_failure: Option<ChannelError>,
}

/// Why a `subscribe` waiting on a new channel's first setup gave up.
#[derive(Clone, Debug)]
pub(crate) enum SetupFailure {
    Api(ApiError),
    Stopped(StopReason),
}

/// One channel slot: the topics that belong on it and the thread that keeps them flowing.
/// When the channel on the server is lost, the slot gets a new one with the same topics.
pub(crate) struct Slot {
    /// Whether only the topics it was created with may live here (`subscribe_isolated`).
    isolated: bool,
    /// The desired topics of this channel: the one source of truth for it (and its count).
    topics: Mutex<TopicSet>,
    /// Set when a user's topic update could not be sent: the thread sends the whole topic set
    /// again at its next chance (while reading, or after reconnecting).
    reapply: AtomicBool,
    /// The channel's state and counters, shared with its events (`Event::origin`).
    stats: Arc<ChannelStats>,
    channel: Mutex<Option<ChannelInfo>>,
    /// When the channel's topics must be `PUT` again so that it does not lapse.
    renewal: Mutex<Option<Renewal>>,
    /// Serialises topic updates of this channel (user calls and the thread's re-application).
    apply_lock: Mutex<()>,
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
    pub(crate) fn new(isolated: bool, topics: TopicSet) -> Arc<Slot> {
        let stats = Arc::new(ChannelStats::new());
        Arc::new(Slot {
            isolated,
            topics: Mutex::new(topics),
            reapply: AtomicBool::new(false),
            stats,
            channel: Mutex::new(None),
            renewal: Mutex::new(None),
            apply_lock: Mutex::new(()),
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

    /// Whether only the topics it was created with may live here (`subscribe_isolated`).
    #[inline]
    pub(crate) fn is_isolated(&self) -> bool {
        self.isolated
    }

    /// The desired topics of this channel, locked. Keep the guard short: the channel's thread
    /// and every `subscribe` and `unsubscribe` call take it.
    #[inline]
    pub(crate) fn topics(&self) -> MutexGuard<'_, TopicSet> {
        self.topics.lock()
    }

    /// The channel's state and counters.
    #[inline]
    pub(crate) fn stats(&self) -> &Arc<ChannelStats> {
        &self.stats
    }

    /// A user's topic update could not be sent: the thread sends the whole topic set again at
    /// its next chance.
    pub(crate) fn reapply_later(&self) {
        self.reapply.store(true, Ordering::Release);
    }

    /// Whether a user's topic update waits to be sent again; the thread takes it (the flag is
    /// cleared).
    pub(super) fn take_reapply(&self) -> bool {
        self.reapply.swap(false, Ordering::AcqRel)
    }

    /// Starts the slot's thread.
    pub(crate) fn start(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        index: usize,
    ) -> std::io::Result<()> {
        shared.stats.register(&self.stats);
        let (slot, shared) = (self.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name(format!("genesys-channel-{index}"))
            .spawn(move || worker::run(slot, shared))?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    pub(crate) fn channel_id(&self) -> Option<ChannelId> {
        self.channel.lock().as_ref().map(|c| ChannelId::new(&c.id))
    }

    /// The current channel (id and `connectUri`: credentials, never logged).
    pub(super) fn channel(&self) -> Option<ChannelInfo> {
        self.channel.lock().clone()
    }

    /// Takes the channel of a slot whose thread has ended (to be reused by another slot).
    pub(crate) fn take_channel(&self) -> Option<ChannelInfo> {
        self.channel.lock().take()
    }

    /// A new channel replaces the current one (or a slot not started yet is given a channel
    /// another slot left): its renewal starts from its `expires`.
    pub(super) fn set_channel(&self, info: ChannelInfo) {
        *self.renewal.lock() =
            Renewal::for_new_channel(info.expires, Instant::now(), SystemTime::now());
        self.stats.status.lock().channel = Some(ChannelId::new(&info.id));
        *self.channel.lock() = Some(info);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The flag a blocked push into the dispatcher queues watches.
    pub(super) fn stopping_flag(&self) -> &AtomicBool {
        &self.stopping
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

    /// Forgets a nudge: while connected a nudge is delivered by interrupting the socket, and a
    /// stale one must not cut a later backoff short.
    pub(super) fn clear_nudge(&self) {
        self.nudged.store(false, Ordering::Release);
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
            // The service keeps failing, or asked (`Retry-After`) to wait past the deadline:
            // its answer is the error, not a bare timeout.
            if let Some((error, next_attempt)) = &setup.retrying {
                if *next_attempt > deadline {
                    return Some(Err(SetupFailure::Api(error.clone())));
                }
            }
            if self
                .setup_changed
                .wait_until(&mut setup, deadline)
                .timed_out()
            {
                return setup
                    .retrying
                    .as_ref()
                    .map(|(error, _)| Err(SetupFailure::Api(error.clone())));
            }
        }
    }

    /// The thread backs off until `next_attempt`, after `failure`.
    pub(super) fn publish_retry(&self, failure: &ChannelError, next_attempt: Instant) {
        let mut setup = self.setup.lock();
        setup.retrying = match failure {
            ChannelError::Request { error, .. } => Some((error.clone(), next_attempt)),
            _ => None,
        };
        setup.last_failure = Some(failure.clone());
        self.setup_changed.notify_all();
    }

    /// What the thread's last failed attempt met since the topics were last applied.
    pub(crate) fn last_failure(&self) -> Option<ChannelError> {
        self.setup.lock().last_failure.clone()
    }

    /// A socket is open: no REST failure is pending.
    pub(super) fn clear_retry(&self) {
        self.setup.lock().retrying = None;
    }

    pub(super) fn publish_setup(&self, result: Result<Vec<TopicResult>, ApiError>) {
        let mut setup = self.setup.lock();
        setup.generation += 1;
        setup.last = Some(result);
        setup.retrying = None;
        setup.last_failure = None;
        self.setup_changed.notify_all();
    }

    pub(super) fn publish_stopped(&self, reason: StopReason) {
        let mut setup = self.setup.lock();
        setup.stopped = Some(reason);
        self.setup_changed.notify_all();
    }

    /// Why the thread stopped for good, once it has (the client tells an emptied channel,
    /// `NoTopics`, from a failure).
    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        self.setup.lock().stopped.clone()
    }

    /// The live socket's TCP stream (a clone), for [`Slot::interrupt`]; `None` when the socket
    /// is gone, so that a dropped socket's connection is not held open.
    pub(super) fn set_interrupt(&self, stream: Option<TcpStream>) {
        *self.interrupt.lock() = stream;
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

    pub(super) fn delete_on_stop(&self) -> bool {
        self.delete_on_stop.load(Ordering::Acquire)
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

    /// Serialises the thread's last `DELETE` with user updates.
    pub(super) fn lock_updates(&self) -> MutexGuard<'_, ()> {
        self.apply_lock.lock()
    }

    /// `PUT`s the slot's whole topic set to its current channel (or `DELETE`s when empty),
    /// under the slot's update lock, removes the rejected topics from the set, and reports
    /// [`Lifecycle::Subscribed`](crate::event::Lifecycle::Subscribed).
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
        self.settle(shared, &channel.id, &results);
        Ok(results)
    }

    /// After an application by the thread whose `results` rejected topics: whether no topic is
    /// left, in which case the slot is marked stopping (under the update lock, so that no user
    /// update slips in) and the thread ends with [`StopReason::NoTopics`].
    pub(super) fn emptied_by_rejection(&self, results: &[TopicResult]) -> bool {
        if !results.iter().any(|r| r.state == TopicState::Rejected) {
            return false;
        }
        let _apply = self.apply_lock.lock();
        if self.topics.lock().len() > 0 {
            return false;
        }
        self.stopping.store(true, Ordering::Release);
        self.delete_on_stop.store(true, Ordering::Release);
        true
    }

    /// The topics were just applied: the channel lives a whole lifetime from `now`.
    pub(super) fn renewed(&self, now: Instant) {
        if let Some(r) = self.renewal.lock().as_mut() {
            r.renewed(now);
        }
    }

    pub(super) fn renewal_due(&self, now: Instant) -> bool {
        self.renewal.lock().is_some_and(|r| r.is_due(now))
    }

    /// A renewal failed: try again halfway to the expiry, but not before `at_least`.
    pub(super) fn renewal_failed(&self, now: Instant, at_least: Duration) {
        if let Some(r) = self.renewal.lock().as_mut() {
            r.failed(now, at_least);
        }
    }

    /// The topics, for a `Gap` report.
    pub(super) fn topic_list(&self) -> Vec<Topic> {
        self.topics.lock().iter().cloned().collect()
    }
}
