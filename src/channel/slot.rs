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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Nudges so far ([`Slot::nudge`]), bumped under `sleep_lock`. A generation, not a flag:
    /// the thread and any number of user threads backing off (`client/retry.rs`) sleep on the
    /// same condvar, and a flag taken by one of them was lost to the others (a `subscribe`
    /// backing off from a 5xx took the nudge meant for the thread after a 404, and the thread
    /// slept its whole backoff). Each sleeper compares with the generation it already saw.
    nudges: AtomicU64,
    /// The nudge generation the channel's thread has acted on: a nudge after it is pending and
    /// cuts the thread's next backoff short. Written by the thread only.
    worker_seen_nudges: AtomicU64,
    /// Whether to remove the server-side subscriptions when stopping.
    delete_on_stop: AtomicBool,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    /// A clone of the live socket's TCP stream: shutting its read half wakes a blocked read.
    interrupt: Mutex<Option<TcpStream>>,
    setup: Mutex<Setup>,
    setup_changed: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Threads inside a sleep (tests wait for a sleeper before nudging).
    #[cfg(test)]
    sleepers: std::sync::atomic::AtomicUsize,
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
            nudges: AtomicU64::new(0),
            worker_seen_nudges: AtomicU64::new(0),
            delete_on_stop: AtomicBool::new(true),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            interrupt: Mutex::new(None),
            setup: Mutex::new(Setup::default()),
            setup_changed: Condvar::new(),
            thread: Mutex::new(None),
            #[cfg(test)]
            sleepers: std::sync::atomic::AtomicUsize::new(0),
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
        {
            // Bumped under the lock the sleepers check it under: none misses it.
            let _guard = self.sleep_lock.lock();
            self.nudges.fetch_add(1, Ordering::AcqRel);
            self.wake.notify_all();
        }
        self.interrupt();
    }

    /// Forgets the nudges so far for the thread: while connected a nudge is delivered by
    /// interrupting the socket, and a stale one must not cut a later backoff short.
    pub(super) fn clear_nudge(&self) {
        self.worker_seen_nudges
            .store(self.nudges.load(Ordering::Acquire), Ordering::Release);
    }

    /// Whether a nudge came that the channel's thread has not acted on yet (a blocked push
    /// into a dispatcher queue watches it, so that the thread can serve the nudge).
    pub(super) fn nudge_pending(&self) -> bool {
        self.nudges.load(Ordering::Acquire) != self.worker_seen_nudges.load(Ordering::Acquire)
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

    /// The channel's thread sleeps `delay` unless stopped first; returns whether it was
    /// stopped. A nudge it has not acted on (one that came during the sleep or before it, since
    /// [`Slot::clear_nudge`]) cuts the sleep short, but never below `floor` (a `Retry-After` the
    /// service asked for). Only the channel's thread calls it.
    pub(super) fn sleep(&self, delay: Duration, floor: Duration) -> bool {
        self.sleep_nudged(delay, floor, &self.worker_seen_nudges)
    }

    /// A user thread (a `subscribe` or `unsubscribe` backing off) sleeps `delay` unless stopped
    /// first; returns whether it was stopped. A nudge during the sleep cuts it short (never
    /// below `floor`), without taking the nudge from the channel's thread or other sleepers.
    pub(crate) fn sleep_caller(&self, delay: Duration, floor: Duration) -> bool {
        let seen = AtomicU64::new(self.nudges.load(Ordering::Acquire));
        self.sleep_nudged(delay, floor, &seen)
    }

    /// Sleeps as [`Slot::sleep`] says, waking for a nudge generation other than `seen` (which
    /// is brought up to date when that nudge ends the sleep).
    fn sleep_nudged(&self, delay: Duration, floor: Duration, seen: &AtomicU64) -> bool {
        let start = Instant::now();
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        let deadline = start.checked_add(delay).unwrap_or_else(far);
        let floor_end = start.checked_add(floor.min(delay)).unwrap_or_else(far);
        let mut guard = self.sleep_lock.lock();
        #[cfg(test)]
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        while !self.is_stopping() {
            let nudges = self.nudges.load(Ordering::Acquire);
            if Instant::now() >= floor_end && nudges != seen.load(Ordering::Acquire) {
                seen.store(nudges, Ordering::Release);
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
        #[cfg(test)]
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Waits until `n` threads sleep on the slot (each holds `sleep_lock` until it waits, so a
    /// nudge after this is seen by all of them).
    fn wait_sleepers(slot: &Slot, n: usize) {
        let started = Instant::now();
        while slot.sleepers.load(Ordering::SeqCst) < n {
            assert!(started.elapsed() < Duration::from_secs(30), "no sleeper");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Issue 17 point 3: a user thread backing off (a `subscribe` after a 5xx) took the nudge
    /// meant for the channel's thread (after a 404), which then slept its whole backoff.
    #[test]
    fn a_caller_backing_off_does_not_take_the_nudge_meant_for_the_channel_thread() {
        let slot = Slot::new(false, TopicSet::default());
        let caller = {
            let slot = slot.clone();
            std::thread::spawn(move || slot.sleep_caller(Duration::from_secs(60), Duration::ZERO))
        };
        wait_sleepers(&slot, 1);
        // The nudge comes while the channel's thread is busy (a REST call), not yet asleep.
        slot.nudge();
        assert!(!caller.join().unwrap(), "the caller's sleep was cut short");
        let (tx, rx) = mpsc::channel();
        let worker = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let _ = tx.send(slot.sleep(Duration::from_secs(60), Duration::ZERO));
            })
        };
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)),
            Ok(false),
            "the channel's thread slept through the nudge a caller took"
        );
        worker.join().unwrap();
        // Acted on: the next sleep of the thread is not cut short by it.
        assert!(!slot.nudge_pending());
    }

    #[test]
    fn one_nudge_wakes_every_sleeper() {
        let slot = Slot::new(false, TopicSet::default());
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for worker in [true, false, false] {
            let (slot, tx) = (slot.clone(), tx.clone());
            threads.push(std::thread::spawn(move || {
                let stopped = if worker {
                    slot.sleep(Duration::from_secs(60), Duration::ZERO)
                } else {
                    slot.sleep_caller(Duration::from_secs(60), Duration::ZERO)
                };
                let _ = tx.send(stopped);
            }));
        }
        wait_sleepers(&slot, 3);
        slot.nudge();
        for _ in 0..3 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(false));
        }
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
