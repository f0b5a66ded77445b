//! listener.rs keeps the registered callbacks and their guards; it decides which listeners an
//! event reaches and guarantees that a dropped guard's callback never runs again. It never
//! queues or delivers events itself (dispatch/ does), and it never runs or drops a callback
//! while holding one of its locks.
//!
//! Event listeners live in a trie keyed by the lower-cased dot-separated segments of their
//! patterns (`*` has a child of its own), each node holding its listeners ordered by id (which
//! is registration order). Registering or removing a listener walks one path of the trie:
//! O(segments + log n), never a copy of the whole set. Finding the listeners of a topic walks the
//! topic's segments, following the exact child and the `*` child at each level. Every change is
//! also appended to a short log of changed patterns so that each dispatcher thread can drop from
//! its route cache exactly the topics the pattern matches (dispatch/route.rs).
//!
//! Each listener's callback sits behind its gate (a read-write lock). A dispatcher thread runs
//! the callback while holding the gate for reading and only if the listener is not retired.
//! Dropping the guard sets `retired`, then takes the gate for writing, which waits for the
//! callbacks already running on other threads, and takes the callback out: once `drop` returns,
//! none is running, none will start, and the closure (with whatever it captured) has been
//! dropped, outside every lock. A guard dropped inside its own callback only sets `retired`
//! (taking the gate there would deadlock); the callback is then released by the last call
//! running it, as soon as it returns. A guard dropped inside another listener's callback waits,
//! but notes its wait in a process-wide table: when the calls it waits for are themselves
//! waiting (directly or through others) for the callback it runs in, it stops waiting and
//! behaves as inside its own callback, so no cycle of guard drops deadlocks. A thread-local marks
//! which listener the current thread is running.
//!
//! A guard dropped because the client is dropping the closure that owned it (a shutdown clearing
//! the registry, or the last call of a retired listener releasing it) never waits: the user did
//! not let go of that guard, and the callback it would wait for may be the one a shutdown gave up
//! on, or one waiting for this very thread. It retires its listener as a shutdown does, and the
//! running call releases the callback. A call skips a retired listener before touching its gate,
//! and reads the gate recursively, so it never queues behind a guard drop waiting for the calls
//! already running.

use crate::event::{Event, Lifecycle};
use crate::topic::Pattern;
use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Listener ids are unique in the process, not per client: a callback of one client may drop
/// another client's guard, and `RUNNING` must not mistake that listener for its own.
static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1);

/// How many changed patterns the registry remembers for the dispatcher threads. A thread that
/// falls further behind (busy in a long callback during a burst of `on` calls) forgets its
/// whole route cache instead. At most 200 characters each: about 1 MiB.
const CHANGE_LOG_MAX: usize = 4096;

thread_local! {
    /// The id of the listener whose callback this thread is running, 0 if none.
    static RUNNING: Cell<u64> = const { Cell::new(0) };
    /// Whether this thread is dropping a callback the client released (a shutdown clearing the
    /// registry, or the last call of a retired listener): a guard that closure owned is not
    /// the user letting go, and its drop must not wait for a running callback (which may be
    /// the very one a shutdown gave up on, or one waiting for this thread).
    static RELEASING: Cell<bool> = const { Cell::new(false) };
}

type Callback<T> = Box<dyn Fn(&T) + Send + Sync>;

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// How often a guard drop waiting inside a callback checks for a cycle of waits.
const CYCLE_CHECK_PERIOD: std::time::Duration = std::time::Duration::from_millis(5);

/// Guard drops waiting inside callbacks, process-wide (callbacks of one client may drop
/// another's guards): `(running, awaited)`, a thread running listener `running` waits for the
/// calls of listener `awaited` to end. Few entries (one per dispatcher thread at most).
static GUARD_WAITS: parking_lot::Mutex<Vec<(u64, u64)>> = parking_lot::Mutex::new(Vec::new());

/// One entry of [`GUARD_WAITS`], removed on drop.
struct GuardWait {
    running: u64,
    awaited: u64,
}

impl GuardWait {
    fn enter(running: u64, awaited: u64) -> GuardWait {
        GUARD_WAITS.lock().push((running, awaited));
        GuardWait { running, awaited }
    }

    /// Whether the calls awaited wait, directly or through others, for the listener this
    /// thread runs: none of those waits could ever end.
    fn closes_a_cycle(&self) -> bool {
        let waits = GUARD_WAITS.lock();
        let mut seen = vec![self.awaited];
        let mut next = vec![self.awaited];
        while let Some(listener) = next.pop() {
            for &(running, awaited) in waits.iter() {
                if running != listener {
                    continue;
                }
                if awaited == self.running {
                    return true;
                }
                if !seen.contains(&awaited) {
                    seen.push(awaited);
                    next.push(awaited);
                }
            }
        }
        false
    }
}

impl Drop for GuardWait {
    fn drop(&mut self) {
        let mut waits = GUARD_WAITS.lock();
        if let Some(at) = waits
            .iter()
            .position(|&w| w == (self.running, self.awaited))
        {
            waits.swap_remove(at);
        }
    }
}

/// One registered callback.
pub(crate) struct Listener<T> {
    id: u64,
    /// The pattern for event listeners; `None` for lifecycle listeners.
    pub(crate) pattern: Option<Pattern>,
    /// The callback; `None` once the listener is retired and no call is running it.
    gate: RwLock<Option<Callback<T>>>,
    retired: AtomicBool,
}

impl<T> Listener<T> {
    /// Runs the callback unless the listener is retired. Returns `Ok(true)` if it ran,
    /// `Ok(false)` if retired, `Err(message)` if it panicked (the panic is caught).
    pub(crate) fn call(&self, item: &T) -> Result<bool, String> {
        // A retired listener is skipped without touching its gate: a guard drop waiting for the
        // gate (a writer) would otherwise park this thread behind it (the lock is fair) until
        // the callback it waits for returns, although this call has nothing to do.
        if self.retired.load(Ordering::SeqCst) {
            return self
                .release()
                .map(|()| false)
                .map_err(|message| format!("dropping the callback panicked: {message}"));
        }
        let result = {
            // Recursive read: never queued behind a guard drop that is waiting for the calls
            // already running (it set `retired` first, which is checked again below).
            let gate = self.gate.read_recursive();
            match gate.as_ref() {
                Some(callback) if !self.retired.load(Ordering::SeqCst) => {
                    let outer = RUNNING.with(|r| r.replace(self.id));
                    let result = catch_unwind(AssertUnwindSafe(|| callback(item)));
                    RUNNING.with(|r| r.set(outer));
                    Some(result)
                }
                _ => None,
            }
        };
        let released = if self.retired.load(Ordering::SeqCst) {
            // Retired while (or before) running here: the guard could not take the callback
            // out then; whichever call ends last does, outside the gate.
            self.release()
        } else {
            Ok(())
        };
        match (result, released) {
            (Some(Err(payload)), _) => Err(panic_message(payload.as_ref())),
            (_, Err(message)) => Err(format!("dropping the callback panicked: {message}")),
            (None, Ok(())) => Ok(false),
            (Some(Ok(())), Ok(())) => Ok(true),
        }
    }

    /// Takes the callback out if no call is running it, and drops it with no lock held. A
    /// panic in its `Drop` (in something it captured) is caught and returned: it must not kill
    /// the dispatcher thread, nor a shutdown, that happens to release it.
    fn release(&self) -> Result<(), String> {
        let callback = self.gate.try_write().and_then(|mut gate| gate.take());
        if callback.is_none() {
            return Ok(());
        }
        let outer = RELEASING.with(|r| r.replace(true));
        let dropped = catch_unwind(AssertUnwindSafe(move || drop(callback)))
            .map_err(|payload| panic_message(payload.as_ref()));
        RELEASING.with(|r| r.set(outer));
        dropped
    }

    /// Retires the listener: waits for every running call on other threads, then drops the
    /// callback. Inside its own callback it cannot wait: the call releases it when it returns.
    /// Inside another listener's callback it waits unless that would close a cycle of waits
    /// (callbacks of A and B each dropping the other's guard at the same time): then it does
    /// not wait, as inside its own callback, and the last running call releases the callback.
    /// A guard owned by a closure the client is releasing (see `RELEASING`) is retired without
    /// waiting, as by a shutdown: its running call, if any, releases the callback.
    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        if RELEASING.with(|r| r.get()) {
            self.retire_now();
            return;
        }
        let running = RUNNING.with(|r| r.get());
        if running == self.id {
            return;
        }
        if running == 0 {
            let callback = self.gate.write().take();
            drop(callback);
            return;
        }
        let wait = GuardWait::enter(running, self.id);
        loop {
            if let Some(mut gate) = self.gate.try_write_for(CYCLE_CHECK_PERIOD) {
                let callback = gate.take();
                drop(gate);
                drop(wait);
                drop(callback);
                return;
            }
            if wait.closes_a_cycle() {
                return;
            }
        }
    }

    /// Retires the listener without waiting (shutdown): a call running now releases the
    /// callback when it returns.
    fn retire_now(&self) {
        self.retired.store(true, Ordering::SeqCst);
        if let Err(message) = self.release() {
            log::error!("dropping a listener's callback panicked: {message}");
        }
    }

    #[cfg(test)]
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Whether the callback has been dropped.
    #[cfg(test)]
    pub(crate) fn is_released(&self) -> bool {
        self.gate.read().is_none()
    }
}

/// One node of the pattern trie: the listeners whose pattern ends here, and the next segments.
#[derive(Default)]
struct Node {
    children: FxHashMap<Box<str>, Node>,
    wildcard: Option<Box<Node>>,
    listeners: BTreeMap<u64, Arc<Listener<Event>>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.listeners.is_empty() && self.children.is_empty() && self.wildcard.is_none()
    }

    fn insert(&mut self, segments: &[&str], listener: Arc<Listener<Event>>) {
        let Some((first, rest)) = segments.split_first() else {
            self.listeners.insert(listener.id, listener);
            return;
        };
        let next = if *first == "*" {
            self.wildcard.get_or_insert_with(Box::default)
        } else {
            self.children.entry((*first).into()).or_default()
        };
        next.insert(rest, listener);
    }

    /// Removes listener `id` under `segments`, pruning nodes left empty.
    fn remove(&mut self, segments: &[&str], id: u64) -> Option<Arc<Listener<Event>>> {
        let Some((first, rest)) = segments.split_first() else {
            return self.listeners.remove(&id);
        };
        if *first == "*" {
            let next = self.wildcard.as_mut()?;
            let removed = next.remove(rest, id);
            if next.is_empty() {
                self.wildcard = None;
            }
            removed
        } else {
            let next = self.children.get_mut(*first)?;
            let removed = next.remove(rest, id);
            if next.is_empty() {
                self.children.remove(*first);
            }
            removed
        }
    }

    /// Collects the listeners whose pattern matches the lower-cased `segments`.
    fn collect(&self, segments: &[&str], out: &mut Vec<Arc<Listener<Event>>>) {
        let Some((first, rest)) = segments.split_first() else {
            out.extend(self.listeners.values().cloned());
            return;
        };
        if let Some(next) = self.children.get(*first) {
            next.collect(rest, out);
        }
        if let Some(next) = &self.wildcard {
            next.collect(rest, out);
        }
    }

    fn drain_into(self, out: &mut Vec<Arc<Listener<Event>>>) {
        out.extend(self.listeners.into_values());
        for (_, child) in self.children {
            child.drain_into(out);
        }
        if let Some(child) = self.wildcard {
            child.drain_into(out);
        }
    }
}

/// What changed since a dispatcher thread last looked.
pub(crate) enum Changes {
    /// The patterns of the listeners added or removed, oldest first (lower-cased, `*` for a
    /// wildcard segment).
    Patterns(Vec<Arc<str>>),
    /// Too many changes to list: forget every cached route.
    Everything,
    /// The registry was cleared by a shutdown: no listener will ever run again.
    Cleared,
}

#[derive(Default)]
struct State {
    events: Node,
    lifecycle: BTreeMap<u64, Arc<Listener<Lifecycle>>>,
    /// Event listeners per pattern, for the health snapshot.
    counts: FxHashMap<Box<str>, usize>,
    event_total: usize,
    /// Changed patterns; entry `i` is change number `log_start + i + 1`.
    log: VecDeque<Arc<str>>,
    log_start: u64,
    /// Whether the "too many listeners" warning has fired (re-armed when the count falls).
    warned: bool,
    cleared: bool,
}

impl State {
    fn version(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    fn note_change(&mut self, pattern: &Pattern) {
        if self.log.len() >= CHANGE_LOG_MAX {
            self.log.pop_front();
            self.log_start += 1;
        }
        self.log.push_back(Arc::from(pattern.as_str()));
    }

    fn total(&self) -> usize {
        self.event_total + self.lifecycle.len()
    }

    fn check_threshold(&mut self, threshold: usize) -> Registered {
        let total = self.total();
        let crossed = total > threshold && !self.warned;
        if crossed {
            self.warned = true;
        }
        if total <= threshold {
            self.warned = false;
        }
        Registered {
            total,
            crossed_threshold: crossed,
        }
    }
}

/// The listeners of one client.
pub(crate) struct Registry {
    /// The number of the latest change, read without a lock on every event so that dispatcher
    /// threads know when to ask for [`Registry::changes_since`].
    version: AtomicU64,
    state: RwLock<State>,
    threshold: usize,
}

/// What registering a listener found, so the caller can warn.
pub(crate) struct Registered {
    pub total: usize,
    pub crossed_threshold: bool,
}

fn segments(lower: &str) -> Vec<&str> {
    lower.split('.').collect()
}

impl Registry {
    pub(crate) fn new(threshold: usize) -> Registry {
        Registry {
            version: AtomicU64::new(0),
            state: RwLock::new(State::default()),
            threshold,
        }
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The changes after change number `seen`, and the number of the latest one.
    pub(crate) fn changes_since(&self, seen: u64) -> (Changes, u64) {
        let state = self.state.read();
        let version = state.version();
        let changes = if state.cleared {
            Changes::Cleared
        } else if seen < state.log_start || seen > version {
            Changes::Everything
        } else {
            let skip = (seen - state.log_start) as usize;
            Changes::Patterns(state.log.iter().skip(skip).cloned().collect())
        };
        (changes, version)
    }

    /// The listeners whose pattern matches `topic`, in registration order.
    pub(crate) fn route(&self, topic: &str) -> Vec<Arc<Listener<Event>>> {
        let lower = topic.to_ascii_lowercase();
        let segments = segments(&lower);
        let mut out = Vec::new();
        self.state.read().events.collect(&segments, &mut out);
        out.sort_unstable_by_key(|l| l.id);
        out
    }

    /// The lifecycle listeners, in registration order.
    pub(crate) fn lifecycle_listeners(&self) -> Vec<Arc<Listener<Lifecycle>>> {
        self.state.read().lifecycle.values().cloned().collect()
    }

    fn new_listener<T>(&self, pattern: Option<Pattern>, callback: Callback<T>) -> Arc<Listener<T>> {
        Arc::new(Listener {
            id: NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed),
            pattern,
            gate: RwLock::new(Some(callback)),
            retired: AtomicBool::new(false),
        })
    }

    pub(crate) fn add_event(
        &self,
        pattern: Pattern,
        callback: Callback<Event>,
    ) -> (Arc<Listener<Event>>, Registered) {
        let listener = self.new_listener(Some(pattern.clone()), callback);
        let mut state = self.state.write();
        if state.cleared {
            drop(state);
            return refused(listener);
        }
        // The trie changes before the log says so: a dispatcher thread that reads the log and
        // then the trie never caches a route without this listener as up to date.
        state
            .events
            .insert(&segments(pattern.as_str()), listener.clone());
        match state.counts.get_mut(pattern.as_str()) {
            Some(count) => *count += 1,
            None => {
                state.counts.insert(pattern.as_str().into(), 1);
            }
        }
        state.event_total += 1;
        state.note_change(&pattern);
        self.version.store(state.version(), Ordering::Release);
        let registered = state.check_threshold(self.threshold);
        (listener, registered)
    }

    pub(crate) fn add_lifecycle(
        &self,
        callback: Callback<Lifecycle>,
    ) -> (Arc<Listener<Lifecycle>>, Registered) {
        let listener = self.new_listener(None, callback);
        let mut state = self.state.write();
        if state.cleared {
            drop(state);
            return refused(listener);
        }
        state.lifecycle.insert(listener.id, listener.clone());
        let registered = state.check_threshold(self.threshold);
        (listener, registered)
    }

    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.state.read().total()
    }

    fn remove_event(&self, listener: &Listener<Event>) {
        let Some(pattern) = &listener.pattern else {
            return;
        };
        let removed = {
            let mut state = self.state.write();
            let removed = state
                .events
                .remove(&segments(pattern.as_str()), listener.id);
            if removed.is_some() {
                state.event_total -= 1;
                if let Some(count) = state.counts.get_mut(pattern.as_str()) {
                    *count -= 1;
                    if *count == 0 {
                        state.counts.remove(pattern.as_str());
                    }
                }
                state.note_change(pattern);
                self.version.store(state.version(), Ordering::Release);
                state.check_threshold(self.threshold);
            }
            removed
        };
        // Dropped with no lock held (the guard holds the listener too, so this is no callback).
        drop(removed);
    }

    fn remove_lifecycle(&self, id: u64) {
        let removed = {
            let mut state = self.state.write();
            let removed = state.lifecycle.remove(&id);
            state.check_threshold(self.threshold);
            removed
        };
        drop(removed);
    }

    /// Event listener counts per pattern, and the number of lifecycle listeners.
    pub(crate) fn counts(&self) -> (BTreeMap<String, usize>, usize) {
        let state = self.state.read();
        let counts = state
            .counts
            .iter()
            .map(|(pattern, count)| (pattern.to_string(), *count))
            .collect();
        (counts, state.lifecycle.len())
    }

    /// Retires everything (shutdown): no callback starts after this. The callbacks are
    /// dropped once the lock is released (a callback may own guards, whose drop needs it);
    /// one still running is dropped when it returns.
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        self.take_all().release();
    }

    /// Empties the registry and retires every listener (no callback starts after this), but
    /// drops no closure: [`Cleared::release`] does, so that the caller can first let go of its
    /// own locks (a closure's `Drop` is user code).
    pub(crate) fn take_all(&self) -> Cleared {
        let (events, lifecycle) = {
            let mut state = self.state.write();
            let events = std::mem::take(&mut state.events);
            let lifecycle = std::mem::take(&mut state.lifecycle);
            state.counts.clear();
            state.event_total = 0;
            state.cleared = true;
            // Everything changed: a thread reading the log sees `Cleared`.
            state.log_start = state.version() + 1;
            state.log.clear();
            self.version.store(state.version(), Ordering::Release);
            (events, lifecycle)
        };
        let mut listeners = Vec::new();
        events.drain_into(&mut listeners);
        for listener in &listeners {
            listener.retired.store(true, Ordering::SeqCst);
        }
        for listener in lifecycle.values() {
            listener.retired.store(true, Ordering::SeqCst);
        }
        Cleared {
            events: listeners,
            lifecycle: lifecycle.into_values().collect(),
        }
    }
}

/// The listeners a shutdown took out of the registry, retired, closures not yet dropped.
pub(crate) struct Cleared {
    events: Vec<Arc<Listener<Event>>>,
    lifecycle: Vec<Arc<Listener<Lifecycle>>>,
}

impl Cleared {
    /// Drops the closures of the listeners not running now; a running one is dropped by its
    /// call when it returns. Never waits for a callback.
    pub(crate) fn release(self) {
        for listener in &self.events {
            listener.retire_now();
        }
        for listener in &self.lifecycle {
            listener.retire_now();
        }
    }
}

enum Registration {
    Event(Arc<Listener<Event>>),
    Lifecycle(Arc<Listener<Lifecycle>>),
}

/// Keeps a listener registered; dropping it unregisters the listener.
///
/// Once `drop` returns, the callback is not running on any thread and will never run again,
/// and the closure has been dropped, with everything it captured (a `Sender` it forwarded
/// events to is closed, a `Client` it held is let go). Dropping the guard inside its own
/// callback is allowed and does not deadlock; in that case only the calls already running on
/// other dispatcher threads may still be finishing, and the closure is dropped as soon as the
/// last of them returns. A forgotten guard's closure is dropped when the client shuts down.
/// Registering and unregistering cost O(log n) in the number of listeners.
/// Dropping, inside a callback, the guard of *another* listener waits for that listener's
/// running calls like any other drop, except when that listener's calls are themselves
/// waiting, directly or through others, for the callback doing the drop (two callbacks
/// dropping each other's guards at the same moment): such a wait could never end, so that drop
/// returns within a few milliseconds without waiting, as inside the listener's own callback,
/// and the closure is dropped when its last running call returns. No guard drop deadlocks.
/// A panic in the closure's `Drop` (in something it captured) reaches the thread that drops
/// the guard, as any drop would; where the client's own threads drop it (the last running call
/// after a drop inside a callback, a shutdown) it is caught and reported as
/// [`Lifecycle::ListenerPanicked`](crate::Lifecycle::ListenerPanicked), and the thread lives on.
/// Call [`ListenerGuard::forget`] to keep the listener for the client's whole life.
#[must_use = "dropping the guard unregisters the listener at once"]
pub struct ListenerGuard {
    registry: std::sync::Weak<Registry>,
    registration: Option<Registration>,
}

impl ListenerGuard {
    pub(crate) fn for_event(registry: &Arc<Registry>, listener: Arc<Listener<Event>>) -> Self {
        ListenerGuard {
            registry: Arc::downgrade(registry),
            registration: Some(Registration::Event(listener)),
        }
    }

    pub(crate) fn for_lifecycle(
        registry: &Arc<Registry>,
        listener: Arc<Listener<Lifecycle>>,
    ) -> Self {
        ListenerGuard {
            registry: Arc::downgrade(registry),
            registration: Some(Registration::Lifecycle(listener)),
        }
    }

    /// Keeps the listener registered until the client is shut down, consuming the guard.
    ///
    /// The client then keeps the closure, and everything it captured, until
    /// [`Client::shutdown`](crate::Client::shutdown). A closure that captures the client itself
    /// (an `Arc<Client>`) therefore keeps the client alive for ever: it is never dropped, so
    /// never shut down by `Drop`, and its threads and sockets live on. Capture a
    /// [`Weak`](std::sync::Weak) instead and upgrade it in the callback:
    /// ```no_run
    /// use genesys_notify::{Client, Event};
    /// use std::sync::{Arc, Weak};
    ///
    /// # fn main() -> Result<(), genesys_notify::Error> {
    /// let client = Arc::new(Client::builder().access_token("t").api_base("http://127.0.0.1:9").build()?);
    /// let weak: Weak<Client> = Arc::downgrade(&client);
    /// client
    ///     .on("v2.users.*.presence", move |event: &Event| {
    ///         if let Some(client) = weak.upgrade() {
    ///             // Use the client; the strong reference ends with the callback.
    ///             println!("{} ({} channels)", event.topic(), client.health().channels().len());
    ///         }
    ///     })?
    ///     .forget();
    /// drop(client); // the last Arc: the client shuts down
    /// # Ok(())
    /// # }
    /// ```
    pub fn forget(mut self) {
        self.registration = None;
    }

    /// The pattern this guard's listener matches (`None` for a lifecycle listener).
    pub fn pattern(&self) -> Option<&Pattern> {
        match &self.registration {
            Some(Registration::Event(l)) => l.pattern.as_ref(),
            _ => None,
        }
    }
}

impl std::fmt::Debug for ListenerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.registration {
            Some(Registration::Event(l)) => write!(f, "ListenerGuard({:?})", l.pattern),
            Some(Registration::Lifecycle(_)) => f.write_str("ListenerGuard(lifecycle)"),
            None => f.write_str("ListenerGuard(forgotten)"),
        }
    }
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        let Some(registration) = self.registration.take() else {
            return;
        };
        match registration {
            Registration::Event(listener) => {
                if let Some(registry) = self.registry.upgrade() {
                    registry.remove_event(&listener);
                }
                listener.retire();
            }
            Registration::Lifecycle(listener) => {
                if let Some(registry) = self.registry.upgrade() {
                    registry.remove_lifecycle(listener.id);
                }
                listener.retire();
            }
        }
    }
}

/// A listener registered after the registry was cleared (it raced with a shutdown): it never
/// runs, and its closure is dropped at once, outside the registry's lock.
fn refused<T>(listener: Arc<Listener<T>>) -> (Arc<Listener<T>>, Registered) {
    listener.retire_now();
    (
        listener,
        Registered {
            total: 0,
            crossed_threshold: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn registry() -> Arc<Registry> {
        Arc::new(Registry::new(3))
    }

    #[test]
    fn drop_waits_for_a_running_callback() {
        let reg = registry();
        let running = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let (r, f) = (running.clone(), finished.clone());
        let (listener, _) = reg.add_lifecycle(Box::new(move |_| {
            r.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            f.store(true, Ordering::SeqCst);
        }));
        let guard = ListenerGuard::for_lifecycle(&reg, listener.clone());
        let caller = std::thread::spawn(move || {
            listener
                .call(&Lifecycle::DuplicateSubscription {
                    topic: "v2.x.y".parse().unwrap(),
                })
                .unwrap()
        });
        while !running.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        drop(guard);
        assert!(
            finished.load(Ordering::SeqCst),
            "drop returned while the callback was still running"
        );
        assert!(caller.join().unwrap());
        assert_eq!(reg.total(), 0);
    }

    #[test]
    fn retired_listener_is_not_called_and_drop_inside_callback_returns() {
        let reg = registry();
        let calls = Arc::new(AtomicUsize::new(0));
        let slot: Arc<Mutex<Option<ListenerGuard>>> = Arc::new(Mutex::new(None));
        let (c, s) = (calls.clone(), slot.clone());
        let (listener, _) = reg.add_lifecycle(Box::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            // Drop our own guard from inside the callback.
            drop(s.lock().take());
        }));
        *slot.lock() = Some(ListenerGuard::for_lifecycle(&reg, listener.clone()));
        let item = Lifecycle::DuplicateSubscription {
            topic: "v2.x.y".parse().unwrap(),
        };
        assert_eq!(listener.call(&item), Ok(true));
        assert_eq!(listener.call(&item), Ok(false));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(listener.is_retired());
    }

    #[test]
    fn panics_are_caught_with_their_message() {
        let reg = registry();
        let (listener, _) = reg.add_lifecycle(Box::new(|_| panic!("listener bug")));
        let item = Lifecycle::DuplicateSubscription {
            topic: "v2.x.y".parse().unwrap(),
        };
        assert_eq!(listener.call(&item), Err("listener bug".to_owned()));
        assert_eq!(listener.call(&item), Err("listener bug".to_owned()));
    }

    #[test]
    fn threshold_warns_once_until_count_falls() {
        let reg = registry();
        let mut guards = Vec::new();
        let mut crossed = Vec::new();
        for _ in 0..5 {
            let (l, r) = reg.add_event("v2.a.b".parse().unwrap(), Box::new(|_| {}));
            guards.push(ListenerGuard::for_event(&reg, l));
            crossed.push(r.crossed_threshold);
        }
        assert_eq!(crossed, [false, false, false, true, false]);
        assert_eq!(reg.counts().0.get("v2.a.b"), Some(&5));
        guards.truncate(2);
        assert_eq!(reg.total(), 2);
        let (l, r) = reg.add_event("v2.a.*".parse().unwrap(), Box::new(|_| {}));
        assert!(!r.crossed_threshold);
        guards.push(ListenerGuard::for_event(&reg, l));
        let (l, r) = reg.add_event("v2.a.*".parse().unwrap(), Box::new(|_| {}));
        assert!(r.crossed_threshold, "warning re-armed after the count fell");
        guards.push(ListenerGuard::for_event(&reg, l));
    }

    fn noop() -> Callback<Event> {
        Box::new(|_| {})
    }

    fn ids(route: &[Arc<Listener<Event>>]) -> Vec<u64> {
        route.iter().map(|l| l.id).collect()
    }

    #[test]
    fn route_finds_exact_and_wildcard_listeners_in_registration_order() {
        let reg = registry();
        let mut guards = Vec::new();
        let mut add = |pattern: &str| {
            let (l, _) = reg.add_event(pattern.parse().unwrap(), noop());
            let id = l.id;
            guards.push(ListenerGuard::for_event(&reg, l));
            id
        };
        let star = add("v2.users.*.presence");
        let exact = add("v2.users.abc.presence");
        let other = add("v2.users.abc.routingstatus");
        let two = add("v2.*.*.presence");
        let short = add("v2.users.*");
        assert_eq!(
            ids(&reg.route("V2.Users.ABC.Presence")),
            [star, exact, two],
            "case is ignored; order is registration order"
        );
        assert_eq!(ids(&reg.route("v2.users.xyz.presence")), [star, two]);
        assert_eq!(ids(&reg.route("v2.users.abc.routingStatus")), [other]);
        assert_eq!(ids(&reg.route("v2.users.abc")), [short]);
        assert!(reg.route("v2.users.abc.presence.extra").is_empty());
        assert!(reg.route("v2.users").is_empty());
        // The trie agrees with `Pattern::matches` on every listener.
        for topic in [
            "v2.users.abc.presence",
            "v2.queues.q.presence",
            "v2.users.a",
        ] {
            for l in reg.route(topic) {
                assert!(l.pattern.as_ref().unwrap().matches(topic));
            }
        }
        drop(guards.remove(1));
        assert_eq!(ids(&reg.route("v2.users.abc.presence")), [star, two]);
        drop(guards);
        assert!(reg.route("v2.users.abc.presence").is_empty());
        assert_eq!(reg.total(), 0);
        let state = reg.state.read();
        assert!(state.events.is_empty(), "empty trie nodes are pruned");
        assert!(state.counts.is_empty());
    }

    #[test]
    fn changes_list_the_patterns_then_everything_when_too_many_then_cleared() {
        let reg = registry();
        let start = reg.version();
        let (l, _) = reg.add_event("v2.users.*.presence".parse().unwrap(), noop());
        let guard = ListenerGuard::for_event(&reg, l);
        drop(guard);
        let (Changes::Patterns(patterns), now) = reg.changes_since(start) else {
            panic!("a short list of changes")
        };
        assert_eq!(now, reg.version());
        assert_eq!(
            patterns.iter().map(|p| &**p).collect::<Vec<_>>(),
            ["v2.users.*.presence", "v2.users.*.presence"]
        );
        let (Changes::Patterns(none), _) = reg.changes_since(now) else {
            panic!()
        };
        assert!(none.is_empty());
        for _ in 0..=CHANGE_LOG_MAX {
            reg.add_event("v2.a.b".parse().unwrap(), noop())
                .0
                .retire_now();
        }
        assert!(matches!(reg.changes_since(now).0, Changes::Everything));
        let (Changes::Patterns(recent), _) = reg.changes_since(reg.version() - 1) else {
            panic!()
        };
        assert_eq!(recent.len(), 1);
        reg.clear();
        assert!(matches!(reg.changes_since(now).0, Changes::Cleared));
        assert!(matches!(
            reg.changes_since(reg.version()).0,
            Changes::Cleared
        ));
    }

    #[test]
    fn dropping_the_guard_drops_the_closure_at_once() {
        let reg = registry();
        let captured = Arc::new(());
        let held = captured.clone();
        let (listener, _) = reg.add_event(
            "v2.a.b".parse().unwrap(),
            Box::new(move |_| {
                let _ = &held;
            }),
        );
        // A dispatcher thread's route cache keeps the listener itself alive...
        let cached = reg.route("v2.a.b");
        assert_eq!(Arc::strong_count(&captured), 2);
        drop(ListenerGuard::for_event(&reg, listener));
        // ...but not the closure, nor what it captured.
        assert_eq!(Arc::strong_count(&captured), 1);
        assert!(cached[0].is_released());
    }

    #[test]
    fn a_guard_dropped_inside_its_own_callback_frees_the_closure_when_it_returns() {
        let reg = registry();
        let captured = Arc::new(());
        let slot: Arc<Mutex<Option<ListenerGuard>>> = Arc::new(Mutex::new(None));
        let (s, held) = (slot.clone(), captured.clone());
        let (listener, _) = reg.add_lifecycle(Box::new(move |_| {
            let _ = &held;
            drop(s.lock().take());
        }));
        *slot.lock() = Some(ListenerGuard::for_lifecycle(&reg, listener.clone()));
        let item = Lifecycle::DuplicateSubscription {
            topic: "v2.x.y".parse().unwrap(),
        };
        assert_eq!(listener.call(&item), Ok(true));
        assert!(listener.is_released());
        assert_eq!(Arc::strong_count(&captured), 1);
    }

    /// Issue 8 #2: a forgotten listener whose closure owns another guard. Clearing drops the
    /// closure, whose guard removes its listener from the registry: with the registry's lock
    /// still held, that never returned.
    #[test]
    fn clear_drops_closures_that_own_guards_without_deadlock() {
        let reg = registry();
        let (inner, _) = reg.add_event("v2.a.b".parse().unwrap(), noop());
        let inner_guard = ListenerGuard::for_event(&reg, inner.clone());
        let (outer, _) = reg.add_lifecycle(Box::new(move |_| {
            let _ = &inner_guard;
        }));
        std::mem::forget(ListenerGuard::for_lifecycle(&reg, outer.clone()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let r = reg.clone();
        std::thread::spawn(move || {
            r.clear();
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "clear deadlocked on a closure owning a guard"
        );
        assert!(outer.is_released() && inner.is_released());
        assert!(inner.is_retired());
        assert_eq!(reg.total(), 0);
    }

    /// A lifecycle listener whose callback, once called, blocks until `release` is sent; the
    /// receiver says when it has started.
    fn blocking_listener(
        reg: &Arc<Registry>,
    ) -> (
        Arc<Listener<Lifecycle>>,
        std::sync::mpsc::Sender<()>,
        std::sync::mpsc::Receiver<()>,
    ) {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let started_tx = Mutex::new(started_tx);
        let (listener, _) = reg.add_lifecycle(Box::new(move |_| {
            let _ = started_tx.lock().send(());
            let _ = release_rx.lock().recv_timeout(Duration::from_secs(20));
        }));
        (listener, release_tx, started_rx)
    }

    fn item() -> Lifecycle {
        Lifecycle::DuplicateSubscription {
            topic: "v2.x.y".parse().unwrap(),
        }
    }

    /// Issue 17, point 1: `clear()` drops a closure that owns the guard of a listener whose
    /// callback is still running; that guard's drop must not wait for it (before the fix it
    /// waited, untimed, for the callback to return: a shutdown past its timeout, or for ever).
    #[test]
    fn clear_never_waits_for_a_running_callback_through_a_guard_a_closure_owned() {
        let reg = registry();
        let (slow, release, started) = blocking_listener(&reg);
        let slow_guard = ListenerGuard::for_lifecycle(&reg, slow.clone());
        let (owner, _) = reg.add_lifecycle(Box::new(move |_| {
            let _ = &slow_guard;
        }));
        std::mem::forget(ListenerGuard::for_lifecycle(&reg, owner.clone()));
        let caller = {
            let slow = slow.clone();
            std::thread::spawn(move || slow.call(&item()))
        };
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let r = reg.clone();
        std::thread::spawn(move || {
            r.clear();
            let _ = done_tx.send(());
        });
        let cleared = done_rx.recv_timeout(Duration::from_secs(5));
        let _ = release.send(());
        assert!(
            cleared.is_ok(),
            "clear() waited for a running callback through a guard a closure owned"
        );
        assert!(owner.is_released());
        // The running call releases the slow listener's closure when it returns.
        assert_eq!(caller.join().unwrap(), Ok(true));
        assert!(slow.is_retired() && slow.is_released());
    }

    /// Issue 17, point 1, second path: the last call of a retired listener releases its closure,
    /// which owns the guard of a listener whose callback runs on another thread: the call
    /// returns without waiting for it.
    #[test]
    fn the_last_call_releasing_a_closure_never_waits_through_a_guard_it_owned() {
        let reg = registry();
        let (slow, release, started) = blocking_listener(&reg);
        let slow_guard = ListenerGuard::for_lifecycle(&reg, slow.clone());
        let own: Arc<Mutex<Option<ListenerGuard>>> = Arc::new(Mutex::new(None));
        let o = own.clone();
        let (owner, _) = reg.add_lifecycle(Box::new(move |_| {
            let _ = &slow_guard;
            // Drop our own guard: this call is then the last, and releases this closure.
            drop(o.lock().take());
        }));
        *own.lock() = Some(ListenerGuard::for_lifecycle(&reg, owner.clone()));
        let caller = {
            let slow = slow.clone();
            std::thread::spawn(move || slow.call(&item()))
        };
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(owner.call(&item()));
        });
        let owner_call = done_rx.recv_timeout(Duration::from_secs(5));
        let _ = release.send(());
        assert_eq!(
            owner_call.expect("the releasing call waited for a running callback"),
            Ok(true)
        );
        assert_eq!(caller.join().unwrap(), Ok(true));
        assert!(slow.is_released());
    }

    /// Issue 17, point 2: while a guard drop waits for a slow running call, another thread
    /// calling the same (retired) listener for an event it had already routed skips it at once
    /// instead of parking behind the waiting drop until the slow call returns.
    #[test]
    fn a_call_on_a_retired_listener_never_waits_behind_a_guard_drop() {
        let reg = registry();
        let (slow, release, started) = blocking_listener(&reg);
        let guard = ListenerGuard::for_lifecycle(&reg, slow.clone());
        let running = {
            let slow = slow.clone();
            std::thread::spawn(move || slow.call(&item()))
        };
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        let dropper = std::thread::spawn(move || drop(guard));
        while !slow.is_retired() {
            std::thread::yield_now();
        }
        // Let the drop park on the gate as a waiting writer.
        std::thread::sleep(Duration::from_millis(100));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        {
            let slow = slow.clone();
            std::thread::spawn(move || {
                let _ = done_tx.send(slow.call(&item()));
            });
        }
        let skipped = done_rx.recv_timeout(Duration::from_secs(5));
        let _ = release.send(());
        assert_eq!(
            skipped.expect("the call parked behind the waiting guard drop"),
            Ok(false)
        );
        dropper.join().unwrap();
        assert_eq!(running.join().unwrap(), Ok(true));
        assert!(slow.is_released());
    }

    #[test]
    fn listeners_registered_after_clear_never_run_and_are_released() {
        let reg = registry();
        reg.clear();
        let (l, r) = reg.add_event("v2.a.b".parse().unwrap(), noop());
        assert_eq!(r.total, 0);
        assert!(l.is_released());
        assert!(reg.route("v2.a.b").is_empty());
    }

    #[test]
    fn many_listeners_on_one_pattern_come_and_go() {
        let reg = registry();
        let guards: Vec<_> = (0..2000)
            .map(|_| {
                let (l, _) = reg.add_event("v2.users.*.presence".parse().unwrap(), noop());
                ListenerGuard::for_event(&reg, l)
            })
            .collect();
        assert_eq!(reg.route("v2.users.u.presence").len(), 2000);
        assert_eq!(reg.counts().0.get("v2.users.*.presence"), Some(&2000));
        drop(guards);
        assert_eq!(reg.total(), 0);
        assert!(reg.counts().0.is_empty());
    }
}
