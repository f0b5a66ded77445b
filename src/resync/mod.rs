//! resync/ brings topics back to the server's current state over REST: after every gap (for the
//! gap's topics, once the socket is back and they are subscribed) and, if asked, right after a
//! topic is first subscribed. It owns the resync thread and its bounded worker pool; it never
//! reads a socket and never runs a listener (snapshots go through the dispatcher like events).
//!
//! - `plan.rs`: topics → bulk requests, at each resource's limit (pure);
//! - `builtin.rs`: presence and routing status, and their REST → event shape converters;
//! - `resource.rs`: what a resource is, and the user-supplied form;
//! - `snapshot_gate.rs` (a module of its own, below the dispatcher and this engine): the order
//!   and freshness rule applied on the dispatcher threads.
//!
//! Politeness: one resync thread; requests of a resync run on at most `concurrency` workers, and
//! only the first one runs until the API has answered once (so a 429 on the first call holds
//! every later call back); a `Retry-After` delays every worker; failures are retried with
//! exponential backoff and full jitter up to the resync backoff's budget; a 403 is reported once
//! per topic and that topic is not read again until it is subscribed again; a stop request ends
//! every wait at once.

mod builtin;
mod plan;
mod resource;

pub use builtin::same_system_presence;
pub use resource::{StateResource, StateSnapshot};

use crate::backoff::{Backoff, Retry};
use crate::channel::{Shared, Slot};
use crate::channel_id::ChannelId;
use crate::config::Snapshots;
use crate::error::ApiError;
use crate::error::ResyncError;
use crate::event::{Event, Lifecycle, Origin};
use crate::health::ResyncHealth;
use crate::health::{ChannelState, ChannelStats};
use crate::topic::Topic;
use parking_lot::{Condvar, Mutex, RwLock};
use resource::Resource;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The resync settings, from the [`Config`](crate::Config) and the
/// [`ClientBuilder`](crate::ClientBuilder).
#[derive(Clone, Debug)]
pub(crate) struct ResyncSettings {
    pub snapshots: Snapshots,
    /// Most state requests in flight at once (1..=8).
    pub concurrency: usize,
    pub backoff: Backoff,
    pub custom: Vec<StateResource>,
}

/// The permissions named in a 403 answer: words shaped like `domain:entity:action`
/// (`"You are missing the following permission(s): [routing:agent:view]"`).
pub(crate) fn missing_permissions(error: &ApiError) -> Vec<String> {
    let ApiError::Forbidden { message, .. } = error else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for word in message.split(|c: char| c.is_whitespace() || "[](),;\"'".contains(c)) {
        let word = word.trim_end_matches('.');
        let parts: Vec<&str> = word.split(':').collect();
        if parts.len() == 3
            && parts.iter().all(|p| {
                p.starts_with(|c: char| c.is_ascii_alphabetic())
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '*')
            })
            && !out.iter().any(|o| o == word)
        {
            out.push(word.to_owned());
        }
    }
    out
}

/// Topics to resync, for one channel.
struct Job {
    channel: ChannelId,
    topics: BTreeSet<Topic>,
    /// After a subscribe (the channel may not report itself connected yet), not a gap.
    at_subscribe: bool,
}

/// What became of one individual topic in a resync.
enum Outcome {
    Snapshot,
    Failed,
}

/// The shared state of one resync's workers.
struct Round {
    next: AtomicUsize,
    /// Set once the API answered anything but a retryable failure: the other workers start.
    warm: AtomicBool,
    not_before: Mutex<Instant>,
    outcomes: Mutex<HashMap<String, Outcome>>,
    /// Lower-cased individual topic → the origin (channel) its snapshot is delivered under.
    origins: HashMap<String, Arc<Origin>>,
}

/// The resync engine: its queue, its thread and its counters.
pub(crate) struct Engine {
    shared: Arc<Shared>,
    slots: Arc<RwLock<Vec<Arc<Slot>>>>,
    settings: ResyncSettings,
    resources: Vec<Arc<dyn Resource>>,
    queue: Mutex<Vec<Job>>,
    wake: Condvar,
    /// Paired with `wake` waits of the workers (backoff, Retry-After, waiting to start).
    sleeper: Mutex<()>,
    nap: Condvar,
    stop: AtomicBool,
    /// Lower-cased individual topics refused with 403, not read again until resubscribed.
    denied: Mutex<HashSet<String>>,
    /// Counters of delivered snapshots (the dispatcher counts into it, as for a channel).
    snapshot_stats: Arc<ChannelStats>,
    resyncs: AtomicU64,
    requests: AtomicU64,
    rate_limited: AtomicU64,
    queued: AtomicU64,
    failures: AtomicU64,
    in_progress: AtomicUsize,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set when the thread starts at the first job rather than at `start` (pooled clients).
    unstarted: AtomicBool,
    /// This engine, for a thread started late.
    me: std::sync::OnceLock<Weak<Engine>>,
}

impl Engine {
    /// Starts the resync thread, or with `lazy` at the first job. `None` when snapshots are
    /// off: then nothing is ever read.
    pub(crate) fn start(
        shared: Arc<Shared>,
        slots: Arc<RwLock<Vec<Arc<Slot>>>>,
        settings: ResyncSettings,
        lazy: bool,
    ) -> std::io::Result<Option<Arc<Engine>>> {
        if settings.snapshots == Snapshots::Off {
            return Ok(None);
        }
        let mut resources: Vec<Arc<dyn Resource>> = settings
            .custom
            .iter()
            .map(|r| Arc::new(r.clone()) as Arc<dyn Resource>)
            .collect();
        resources.push(Arc::new(builtin::PresenceResource));
        resources.push(Arc::new(builtin::RoutingStatusResource));
        let engine = Arc::new(Engine {
            shared,
            slots,
            settings,
            resources,
            queue: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            sleeper: Mutex::new(()),
            nap: Condvar::new(),
            stop: AtomicBool::new(false),
            denied: Mutex::new(HashSet::new()),
            snapshot_stats: Arc::new(ChannelStats::new()),
            resyncs: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
            thread: Mutex::new(None),
            unstarted: AtomicBool::new(lazy),
            me: std::sync::OnceLock::new(),
        });
        let _ = engine.me.set(Arc::downgrade(&engine));
        if !lazy {
            engine.spawn()?;
        }
        Ok(Some(engine))
    }

    fn spawn(&self) -> std::io::Result<()> {
        let weak = self.me.get().cloned().unwrap_or_default();
        let handle = std::thread::Builder::new()
            .name("genesys-resync".into())
            .spawn(move || run(&weak))?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    /// A gap of `channel` ended (its socket is back and `topics` are subscribed).
    pub(crate) fn after_gap(&self, channel: &ChannelId, topics: &[Topic]) {
        self.enqueue(channel.clone(), topics.iter().cloned(), false);
    }

    /// `topics` were just subscribed: a 403 remembered for them is forgotten and, when
    /// configured, their snapshots are read.
    pub(crate) fn after_subscribe(&self, topics: &[Topic]) {
        {
            let mut denied = self.denied.lock();
            for topic in topics {
                for name in topic.expand() {
                    denied.remove(&name);
                }
            }
        }
        if self.settings.snapshots != Snapshots::AfterGapsAndSubscribe || topics.is_empty() {
            return;
        }
        let wanted: HashSet<&Topic> = topics.iter().collect();
        let slots: Vec<Arc<Slot>> = self.slots.read().clone();
        for slot in slots {
            let Some(channel) = slot.channel_id() else {
                continue;
            };
            let mine: Vec<Topic> = slot
                .topics()
                .iter()
                .filter(|t| wanted.contains(t))
                .cloned()
                .collect();
            if !mine.is_empty() {
                self.enqueue(channel, mine, true);
            }
        }
    }

    fn enqueue(
        &self,
        channel: ChannelId,
        topics: impl IntoIterator<Item = Topic>,
        at_subscribe: bool,
    ) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let mut queue = self.queue.lock();
        // One job per channel and kind: repeated gaps of a channel merge, so the queue stays
        // bounded by the subscribed topics.
        match queue
            .iter_mut()
            .find(|j| j.channel == channel && j.at_subscribe == at_subscribe)
        {
            Some(job) => job.topics.extend(topics),
            None => queue.push(Job {
                channel,
                topics: topics.into_iter().collect(),
                at_subscribe,
            }),
        }
        self.wake.notify_one();
        drop(queue);
        if self.unstarted.swap(false, Ordering::AcqRel) {
            if let Err(error) = self.spawn() {
                // Tried again at the next job.
                log::error!("could not start the resync thread: {error}");
                self.unstarted.store(true, Ordering::Release);
            }
        }
    }

    /// Asks the thread to stop: every wait ends now, no request is started after this.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _queue = self.queue.lock();
            self.wake.notify_all();
        }
        let _sleeper = self.sleeper.lock();
        self.nap.notify_all();
    }

    /// Joins the thread if it ends before `deadline` (a request in flight ends at the request
    /// timeout at the latest).
    pub(crate) fn join_until(&self, deadline: Instant) -> bool {
        let handle = self.thread.lock().take();
        match handle {
            Some(handle) if handle.thread().id() != std::thread::current().id() => {
                match crate::threads::join_until(handle, deadline) {
                    None => true,
                    // Still running: a later shutdown joins it.
                    Some(handle) => {
                        *self.thread.lock() = Some(handle);
                        false
                    }
                }
            }
            _ => true,
        }
    }

    pub(crate) fn health(&self) -> ResyncHealth {
        let queued_topics: usize = self.queue.lock().iter().map(|j| j.topics.len()).sum();
        ResyncHealth {
            resyncs: self.resyncs.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            snapshots_queued: self.queued.load(Ordering::Relaxed),
            snapshots_superseded: self.shared.dispatcher.gate.superseded(),
            snapshots_dropped: self.shared.dispatcher.gate.dropped_count(),
            failures: self.failures.load(Ordering::Relaxed),
            pending_topics: queued_topics + self.in_progress.load(Ordering::Relaxed),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sleeps until `until` or a stop; returns false when stopped.
    fn sleep_until(&self, until: Instant) -> bool {
        let mut guard = self.sleeper.lock();
        loop {
            if self.stopped() {
                return false;
            }
            if Instant::now() >= until {
                return true;
            }
            self.nap.wait_until(&mut guard, until);
        }
    }

    /// Reports waiting for room in the lifecycle queue (until a stop): a slow lifecycle
    /// listener slows the resync down rather than losing per-topic reports.
    fn emit(&self, event: Lifecycle) {
        self.shared
            .dispatcher
            .lifecycle
            .emit_waiting(event, &self.stop);
    }

    /// One resync of the jobs taken from the queue.
    fn round(&self, jobs: Vec<Job>) {
        // Only channels with a socket now: a gap reported as a channel stops for good (retry
        // budget spent, shutdown) has no socket to resync, and a socket lost again at once
        // will report its own gap.
        let slots: Vec<Arc<Slot>> = self.slots.read().clone();
        {
            // Refusals are remembered only for topics still subscribed: bounded by them.
            let subscribed: HashSet<String> = slots
                .iter()
                .flat_map(|s| {
                    s.topics()
                        .iter()
                        .flat_map(Topic::expand)
                        .collect::<Vec<_>>()
                })
                .collect();
            self.denied.lock().retain(|t| subscribed.contains(t));
        }
        let mut live: Vec<(ChannelId, Vec<Topic>)> = Vec::new();
        for job in jobs {
            let Some(slot) = slots
                .iter()
                .find(|s| s.channel_id().as_ref() == Some(&job.channel))
            else {
                continue;
            };
            // A gap is reported while the socket is back (the channel's thread may still be
            // finishing its subscribe step) or when the thread stops for good (no resync then).
            let state = slot.stats().status.lock().state;
            let usable = !slot.is_stopping()
                && !slot.is_dead()
                && (job.at_subscribe
                    || matches!(state, ChannelState::Connected | ChannelState::Connecting));
            if !usable {
                log::debug!("resync of channel {} skipped: not connected", job.channel);
                continue;
            }
            let current = slot.topics();
            let topics: Vec<Topic> = job
                .topics
                .into_iter()
                .filter(|t| current.covering(t.as_str()).is_some())
                .collect();
            drop(current);
            if !topics.is_empty() {
                live.push((job.channel, topics));
            }
        }
        if live.is_empty() {
            return;
        }
        let mut origins: HashMap<String, Arc<Origin>> = HashMap::new();
        let mut all: Vec<Topic> = Vec::new();
        for (channel, topics) in &live {
            let origin = Arc::new(Origin {
                channel: channel.clone(),
                stats: self.snapshot_stats.clone(),
                epoch: self.shared.epoch,
            });
            for topic in topics {
                for name in topic.expand() {
                    origins.entry(name).or_insert_with(|| origin.clone());
                }
                all.push(topic.clone());
            }
        }
        let denied: HashSet<String> = self.denied.lock().clone();
        let mut planned = plan::plan(&all, &self.resources);
        if !planned.without_resource.is_empty() {
            log::debug!(
                "{} topic(s) have no state resource: their gap is their only signal",
                planned.without_resource.len()
            );
        }
        for batch in &mut planned.batches {
            batch.topics.retain(|t| !denied.contains(t.as_str()));
        }
        planned.batches.retain(|b| !b.topics.is_empty());
        let pending: usize = planned.batches.iter().map(|b| b.topics.len()).sum();
        self.in_progress.store(pending, Ordering::Relaxed);
        let round = Round {
            next: AtomicUsize::new(0),
            warm: AtomicBool::new(false),
            not_before: Mutex::new(Instant::now()),
            outcomes: Mutex::new(HashMap::new()),
            origins,
        };
        let workers = self
            .settings
            .concurrency
            .clamp(1, 8)
            .min(planned.batches.len());
        std::thread::scope(|scope| {
            for worker in 0..workers {
                let (round, batches) = (&round, &planned.batches);
                let spawned = std::thread::Builder::new()
                    .name(format!("genesys-resync-{worker}"))
                    .spawn_scoped(scope, move || self.work(worker, round, batches));
                if let Err(e) = spawned {
                    log::warn!("could not start a resync worker: {e}");
                    if worker == 0 {
                        self.work(0, round, batches);
                    }
                }
            }
        });
        if self.stopped() {
            return;
        }
        let outcomes = round.outcomes.into_inner();
        let with_resource: HashSet<&str> = planned
            .batches
            .iter()
            .flat_map(|b| b.topics.iter().map(Topic::as_str))
            .collect();
        for (channel, topics) in live {
            // A channel whose topics have no state resource keeps today's behaviour: the gap is
            // their only signal, and there was no resync to report.
            if !topics
                .iter()
                .flat_map(Topic::expand)
                .any(|name| with_resource.contains(name.as_str()))
            {
                continue;
            }
            let (mut snapshots, mut failures) = (0, 0);
            for topic in &topics {
                for name in topic.expand() {
                    match outcomes.get(&name) {
                        Some(Outcome::Snapshot) => snapshots += 1,
                        Some(Outcome::Failed) => failures += 1,
                        None => {}
                    }
                }
            }
            self.resyncs.fetch_add(1, Ordering::Relaxed);
            self.emit(Lifecycle::Resynced {
                channel,
                topics,
                snapshots,
                failures,
            });
        }
    }

    /// One worker: takes batches until none is left or a stop.
    fn work(&self, worker: usize, round: &Round, batches: &[plan::Batch]) {
        loop {
            if self.stopped() {
                return;
            }
            if worker > 0 && !round.warm.load(Ordering::Acquire) {
                let mut guard = self.sleeper.lock();
                if !round.warm.load(Ordering::Acquire) && !self.stopped() {
                    self.nap.wait_for(&mut guard, Duration::from_millis(50));
                }
                continue;
            }
            let index = round.next.fetch_add(1, Ordering::AcqRel);
            let Some(batch) = batches.get(index) else {
                return;
            };
            self.run_batch(round, batch);
            let done = batch.topics.len();
            let _ = self
                .in_progress
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(done))
                });
        }
    }

    fn warm(&self, round: &Round) {
        if !round.warm.swap(true, Ordering::AcqRel) {
            let _guard = self.sleeper.lock();
            self.nap.notify_all();
        }
    }

    fn run_batch(&self, round: &Round, batch: &plan::Batch) {
        let resource = self.resources[batch.resource].clone();
        // User code: no lock is held here.
        let path = match guarded(|| resource.path(&batch.topics)) {
            Ok(path) => path,
            Err(reason) => {
                for topic in &batch.topics {
                    self.fail(round, topic, ResyncError::Unreadable(reason.clone().into()));
                }
                return;
            }
        };
        let answer = match self.fetch(round, &path, &batch.topics) {
            Some(Ok(answer)) => answer,
            Some(Err(error)) => {
                for topic in &batch.topics {
                    self.fail(round, topic, error.clone());
                }
                return;
            }
            None => return,
        };
        let mut served: HashSet<String> = HashSet::new();
        let incomplete = resource.incomplete(&answer);
        match guarded(|| resource.convert(&batch.topics, answer)).and_then(|r| r) {
            Ok(snapshots) => {
                for snapshot in snapshots {
                    let key = snapshot.topic.to_ascii_lowercase();
                    if !batch.topics.iter().any(|t| t.as_str() == key) || served.contains(&key) {
                        log::debug!("{}: snapshot for {key} ignored", resource.name());
                        continue;
                    }
                    if self.deliver(round, &snapshot) {
                        served.insert(key);
                    }
                }
            }
            Err(reason) => {
                for topic in &batch.topics {
                    self.fail(round, topic, ResyncError::Unreadable(reason.clone().into()));
                }
                return;
            }
        }
        for topic in batch.topics.iter().filter(|t| !served.contains(t.as_str())) {
            self.shared.dispatcher.gate.cancel(topic.as_str());
            if self.stopped() {
                return;
            }
            let fallback = incomplete
                .iter()
                .any(|t| t == topic.as_str())
                .then(|| resource.fallback_path(topic))
                .flatten();
            let Some(path) = fallback else {
                self.fail(round, topic, ResyncError::NoState);
                continue;
            };
            match self.fetch(round, &path, std::slice::from_ref(topic)) {
                Some(Ok(answer)) => match resource.convert_fallback(topic, answer) {
                    Ok(snapshot) if snapshot.topic.eq_ignore_ascii_case(topic.as_str()) => {
                        self.deliver(round, &snapshot);
                    }
                    Ok(_) => {
                        self.shared.dispatcher.gate.cancel(topic.as_str());
                        self.fail(round, topic, ResyncError::NoState);
                    }
                    Err(reason) => {
                        self.shared.dispatcher.gate.cancel(topic.as_str());
                        self.fail(round, topic, ResyncError::Unreadable(reason.into()));
                    }
                },
                Some(Err(error)) => self.fail(round, topic, error),
                None => return,
            }
        }
    }

    /// Reads `path` for `topics`, retrying per the resync backoff and honouring `Retry-After`.
    /// Marks the topics' fetch as begun before each request (see `snapshot_gate.rs`). `None` when
    /// stopped. On error the topics' fetch is cancelled.
    fn fetch(
        &self,
        round: &Round,
        path: &str,
        topics: &[Topic],
    ) -> Option<Result<Value, ResyncError>> {
        let gate = &self.shared.dispatcher.gate;
        if !path.starts_with("/api/v2/") {
            self.warm(round);
            return Some(Err(ResyncError::BadPath(path.to_owned())));
        }
        let mut retry = Retry::new(self.settings.backoff.clone());
        let mut attempts = 0;
        loop {
            let not_before = *round.not_before.lock();
            if !self.sleep_until(not_before) {
                return None;
            }
            gate.begin(topics.iter().map(Topic::as_str), Instant::now());
            attempts += 1;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = self.shared.api.get_json(path);
            let error = match result {
                Ok(answer) => {
                    self.warm(round);
                    return Some(Ok(answer));
                }
                Err(error) => error,
            };
            for topic in topics {
                gate.cancel(topic.as_str());
            }
            if let ApiError::Forbidden { .. } = error {
                self.warm(round);
                let mut denied = self.denied.lock();
                denied.extend(topics.iter().map(|t| t.as_str().to_owned()));
                return Some(Err(ResyncError::Forbidden {
                    missing_permissions: missing_permissions(&error),
                    error,
                }));
            }
            if let Some(after) = error.retry_after() {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                let after = after.min(self.settings.backoff.retry_after_cap);
                let mut not_before = round.not_before.lock();
                *not_before = (*not_before).max(Instant::now() + after);
            } else if matches!(error, ApiError::RateLimited { .. }) {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            let delay = if error.is_transient() {
                retry.next_delay(error.retry_after())
            } else {
                None
            };
            let Some(delay) = delay else {
                self.warm(round);
                return Some(Err(ResyncError::Request { error, attempts }));
            };
            log::debug!("state request {path} failed ({error}); retrying in {delay:?}");
            if !self.sleep_until(Instant::now() + delay) {
                return None;
            }
        }
    }

    /// Queues a snapshot behind the topic's live events; false when stopped.
    fn deliver(&self, round: &Round, snapshot: &StateSnapshot) -> bool {
        let key = snapshot.topic.to_ascii_lowercase();
        let Some(origin) = round.origins.get(&key) else {
            self.shared.dispatcher.gate.cancel(&key);
            return false;
        };
        let body = snapshot.event_body.to_string();
        let event = Event::snapshot(&snapshot.topic, &body, origin, Instant::now());
        if !self.shared.dispatcher.push_snapshot(event, &self.stop) {
            self.shared.dispatcher.gate.cancel(&key);
            return false;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        round.outcomes.lock().insert(key, Outcome::Snapshot);
        true
    }

    fn fail(&self, round: &Round, topic: &Topic, error: ResyncError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        round
            .outcomes
            .lock()
            .insert(topic.as_str().to_owned(), Outcome::Failed);
        self.emit(Lifecycle::ResyncFailed {
            topic: topic.clone(),
            error,
        });
    }
}

/// Runs `f`, turning a panic (of user code: a [`StateResource`]'s functions) into an error.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        format!("the state resource panicked: {message}")
    })
}

/// Takes every queued job, counting their topics as in progress before the queue's lock (held
/// by the caller) is released: `ResyncHealth::pending_topics` (queued + in progress, the queue
/// read under the same lock) never misses them between the queue and the round.
fn take_jobs(queue: &mut Vec<Job>, in_progress: &AtomicUsize) -> Vec<Job> {
    let jobs = std::mem::take(queue);
    in_progress.store(jobs.iter().map(|j| j.topics.len()).sum(), Ordering::Relaxed);
    jobs
}

/// Resets the in-progress count when a round ends, by return or by panic.
struct InRound<'a>(&'a AtomicUsize);

impl Drop for InRound<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// The resync thread: waits for jobs, runs one resync at a time.
fn run(engine: &Weak<Engine>) {
    loop {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let jobs = {
            let mut queue = engine.queue.lock();
            loop {
                if engine.stopped() {
                    return;
                }
                if !queue.is_empty() {
                    break take_jobs(&mut queue, &engine.in_progress);
                }
                // Wakes now and then so that a client dropped without shutdown lets this
                // thread end (the engine is held weakly between waits).
                engine.wake.wait_for(&mut queue, Duration::from_millis(500));
                if queue.is_empty() {
                    break Vec::new();
                }
            }
        };
        if !jobs.is_empty() {
            // However the round ends, its topics are no longer pending.
            let _in_round = InRound(&engine.in_progress);
            // A bug here (or a panic the guards missed) must not end resyncs for good.
            if let Err(reason) = guarded(|| engine.round(jobs)) {
                log::error!("a resync failed: {reason}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(channel: &str, topics: &[&str]) -> Job {
        Job {
            channel: ChannelId::new(channel),
            topics: topics.iter().map(|t| Topic::parse(t).unwrap()).collect(),
            at_subscribe: false,
        }
    }

    /// Issue 17, point 7: taken jobs count as pending at once (they used to count for nothing
    /// between leaving the queue and the round's plan), and a round that ends by a panic leaves
    /// nothing pending (it used to leave its count for ever).
    #[test]
    fn pending_topics_cover_taken_jobs_and_reset_when_a_round_panics() {
        let queue = Mutex::new(vec![
            job("c1", &["v2.users.a.presence", "v2.users.b.presence"]),
            job("c2", &["v2.users.c.presence"]),
        ]);
        let in_progress = AtomicUsize::new(0);
        let pending = || {
            let queued: usize = queue.lock().iter().map(|j| j.topics.len()).sum();
            queued + in_progress.load(Ordering::Relaxed)
        };
        assert_eq!(pending(), 3);
        let jobs = take_jobs(&mut queue.lock(), &in_progress);
        assert_eq!(jobs.len(), 2);
        assert_eq!(pending(), 3, "taken jobs are still pending");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _in_round = InRound(&in_progress);
            panic!("a bug in a round");
        }));
        assert!(panicked.is_err());
        assert_eq!(pending(), 0, "a panicked round leaves nothing pending");
    }

    #[test]
    fn permissions_are_read_from_the_403_message() {
        let error = ApiError::Forbidden {
            code: "missing.permissions".into(),
            message: "Unable to perform the requested action. You are missing the following \
                      permission(s): [routing:agent:view, presence:userPresence:view]"
                .into(),
        };
        assert_eq!(
            missing_permissions(&error),
            vec!["routing:agent:view", "presence:userPresence:view"]
        );
        let vague = ApiError::Forbidden {
            code: String::new(),
            message: "Not allowed at 10:20:30".into(),
        };
        assert_eq!(missing_permissions(&vague), Vec::<String>::new());
        assert!(missing_permissions(&ApiError::NotFound).is_empty());
    }

    #[test]
    fn resync_errors_name_the_permission() {
        let error = ResyncError::Forbidden {
            missing_permissions: vec!["routing:agent:view".into()],
            error: ApiError::Forbidden {
                code: "missing.permissions".into(),
                message: String::new(),
            },
        };
        assert_eq!(
            error.to_string(),
            "forbidden (403): missing permission routing:agent:view"
        );
    }
}
