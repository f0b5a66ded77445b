//! listener.rs keeps the registered callbacks and their guards; it decides which listeners an
//! event reaches and guarantees that a dropped guard's callback never runs again. It never
//! queues or delivers events itself (dispatch.rs does).
//!
//! Each listener has a gate (a read-write lock) and a `retired` flag. A dispatcher thread runs a
//! callback while holding the gate for reading and only if the listener is not retired. Dropping
//! the guard sets `retired` and then takes the gate for writing, which waits for the callbacks
//! already running on other threads: once `drop` returns, none is running and none will start.
//! A guard dropped inside its own callback only sets `retired` (taking the gate there would
//! deadlock); a thread-local marks which listener the current thread is running.

use crate::event::{Event, Lifecycle};
use crate::topic::Pattern;
use parking_lot::{Mutex, RwLock};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Listener ids are unique in the process, not per client: a callback of one client may drop
/// another client's guard, and `RUNNING` must not mistake that listener for its own.
static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The id of the listener whose callback this thread is running, 0 if none.
    static RUNNING: Cell<u64> = const { Cell::new(0) };
}

type Callback<T> = Box<dyn Fn(&T) + Send + Sync>;

/// One registered callback.
pub(crate) struct Listener<T> {
    id: u64,
    /// The pattern for event listeners; `None` for lifecycle listeners.
    pub(crate) pattern: Option<Pattern>,
    gate: RwLock<()>,
    retired: AtomicBool,
    callback: Callback<T>,
}

impl<T> Listener<T> {
    /// Runs the callback unless the listener is retired. Returns `Ok(true)` if it ran,
    /// `Ok(false)` if retired, `Err(message)` if it panicked (the panic is caught).
    pub(crate) fn call(&self, item: &T) -> Result<bool, String> {
        let _gate = self.gate.read();
        if self.retired.load(Ordering::Acquire) {
            return Ok(false);
        }
        let outer = RUNNING.with(|r| r.replace(self.id));
        let result = catch_unwind(AssertUnwindSafe(|| (self.callback)(item)));
        RUNNING.with(|r| r.set(outer));
        result.map(|()| true).map_err(|payload| {
            if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "panic with a non-string payload".to_owned()
            }
        })
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        if RUNNING.with(|r| r.get()) != self.id {
            // Waits for every running call of this callback to return.
            drop(self.gate.write());
        }
    }

    #[cfg(test)]
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// The listeners of one client.
pub(crate) struct Registry {
    /// Bumped on every change, so dispatcher threads know to refresh their snapshot.
    version: AtomicU64,
    events: RwLock<Arc<Vec<Arc<Listener<Event>>>>>,
    lifecycle: RwLock<Arc<Vec<Arc<Listener<Lifecycle>>>>>,
    /// Whether the "too many listeners" warning has fired (re-armed when the count falls).
    warned: Mutex<bool>,
    threshold: usize,
}

/// What registering a listener found, so the caller can warn.
pub(crate) struct Registered {
    pub total: usize,
    pub crossed_threshold: bool,
}

impl Registry {
    pub(crate) fn new(threshold: usize) -> Registry {
        Registry {
            version: AtomicU64::new(0),
            events: RwLock::new(Arc::new(Vec::new())),
            lifecycle: RwLock::new(Arc::new(Vec::new())),
            warned: Mutex::new(false),
            threshold,
        }
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub(crate) fn event_listeners(&self) -> Arc<Vec<Arc<Listener<Event>>>> {
        self.events.read().clone()
    }

    pub(crate) fn lifecycle_listeners(&self) -> Arc<Vec<Arc<Listener<Lifecycle>>>> {
        self.lifecycle.read().clone()
    }

    fn new_listener<T>(&self, pattern: Option<Pattern>, callback: Callback<T>) -> Arc<Listener<T>> {
        Arc::new(Listener {
            id: NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed),
            pattern,
            gate: RwLock::new(()),
            retired: AtomicBool::new(false),
            callback,
        })
    }

    pub(crate) fn add_event(
        &self,
        pattern: Pattern,
        callback: Callback<Event>,
    ) -> (Arc<Listener<Event>>, Registered) {
        let listener = self.new_listener(Some(pattern), callback);
        {
            let mut list = self.events.write();
            let mut next = Vec::with_capacity(list.len() + 1);
            next.extend(list.iter().cloned());
            next.push(listener.clone());
            *list = Arc::new(next);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        (listener, self.check_threshold())
    }

    pub(crate) fn add_lifecycle(
        &self,
        callback: Callback<Lifecycle>,
    ) -> (Arc<Listener<Lifecycle>>, Registered) {
        let listener = self.new_listener(None, callback);
        {
            let mut list = self.lifecycle.write();
            let mut next = Vec::with_capacity(list.len() + 1);
            next.extend(list.iter().cloned());
            next.push(listener.clone());
            *list = Arc::new(next);
        }
        (listener, self.check_threshold())
    }

    pub(crate) fn total(&self) -> usize {
        self.events.read().len() + self.lifecycle.read().len()
    }

    fn check_threshold(&self) -> Registered {
        let total = self.total();
        let mut warned = self.warned.lock();
        let crossed = total > self.threshold && !*warned;
        if crossed {
            *warned = true;
        }
        if total <= self.threshold {
            *warned = false;
        }
        Registered {
            total,
            crossed_threshold: crossed,
        }
    }

    fn remove_event(&self, id: u64) {
        let mut list = self.events.write();
        let next: Vec<_> = list.iter().filter(|l| l.id != id).cloned().collect();
        *list = Arc::new(next);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    fn remove_lifecycle(&self, id: u64) {
        let mut list = self.lifecycle.write();
        let next: Vec<_> = list.iter().filter(|l| l.id != id).cloned().collect();
        *list = Arc::new(next);
    }

    /// Listener counts per pattern (`"(lifecycle)"` for lifecycle listeners).
    pub(crate) fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for l in self.events.read().iter() {
            if let Some(p) = &l.pattern {
                *counts.entry(p.as_str().to_owned()).or_insert(0) += 1;
            }
        }
        let lifecycle = self.lifecycle.read().len();
        if lifecycle > 0 {
            counts.insert("(lifecycle)".to_owned(), lifecycle);
        }
        counts
    }

    /// Retires everything (shutdown): no callback starts after this.
    pub(crate) fn clear(&self) {
        *self.events.write() = Arc::new(Vec::new());
        *self.lifecycle.write() = Arc::new(Vec::new());
        self.version.fetch_add(1, Ordering::AcqRel);
    }
}

enum Registration {
    Event(Arc<Listener<Event>>),
    Lifecycle(Arc<Listener<Lifecycle>>),
}

/// Keeps a listener registered; dropping it unregisters the listener.
///
/// Once `drop` returns, the callback is not running on any thread and will never run again.
/// Dropping the guard inside its own callback is allowed and does not deadlock; in that case
/// only the calls already running on other dispatcher threads may still be finishing.
/// Dropping, inside a callback, the guard of *another* listener waits for that listener's
/// running calls like any other drop: two callbacks that drop each other's guards at the same
/// moment would wait for each other forever, so don't do that.
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
                    registry.remove_event(listener.id);
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

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(reg.counts().get("v2.a.b"), Some(&5));
        guards.truncate(2);
        assert_eq!(reg.total(), 2);
        let (l, r) = reg.add_event("v2.a.*".parse().unwrap(), Box::new(|_| {}));
        assert!(!r.crossed_threshold);
        guards.push(ListenerGuard::for_event(&reg, l));
        let (l, r) = reg.add_event("v2.a.*".parse().unwrap(), Box::new(|_| {}));
        assert!(r.crossed_threshold, "warning re-armed after the count fell");
        guards.push(ListenerGuard::for_event(&reg, l));
    }
}
