//! pool.rs owns [`ThreadPool`]: worker threads and one timer thread shared by any number of
//! clients (issue 20, "many clients"); it runs the jobs clients hand it and never knows what a
//! job does, never runs a job on the caller's thread, and never holds one of its locks while a
//! job runs.
//!
//! Named `ThreadPool` because that is what it is to a reader who has never seen this crate: a
//! fixed set of OS threads that many clients share. What runs on it:
//! - each pooled client's dispatcher queues and lifecycle queue, as mailboxes (dispatch/): a
//!   queue that becomes non-empty is put on the run queue once; a worker takes at most a batch
//!   of its events, then puts it back at the end of the run queue if more are waiting, so one
//!   busy client cannot starve the others and no queue is ever served by two workers at once;
//! - each pooled client's token refreshes (auth/): the timer thread holds every client's next
//!   refresh time and hands the fetch, which blocks, to a worker.
//!
//! The pool ends when the last [`ThreadPool`] handle and the last client built with it are
//! gone: the workers finish the jobs already queued and end, the timer thread ends at once; none
//! of them is joined then (so dropping a handle never waits, and never deadlocks when the last
//! handle goes on a worker), and none keeps a process from exiting (Rust does not wait for
//! threads at exit). [`ThreadPool::shutdown`] ends it explicitly and joins its threads.

use crate::error::{ConfigError, Error};
use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the pool runs: one piece of a client's work (a batch of a queue, a token fetch).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Most worker threads a pool may have.
pub const MAX_POOL_THREADS: usize = 256;

thread_local! {
    /// The id of the pool whose worker this thread is, 0 if none.
    static WORKER_OF: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// A set of threads shared by many [`Client`](crate::Client)s of one process: handed to
/// [`ClientBuilder::thread_pool`](crate::ClientBuilder::thread_pool), it runs those clients'
/// callbacks (event and lifecycle) and their token refreshes, so that each client adds only
/// its channel threads (one per notification channel; see the crate docs, "Many clients in one
/// process").
///
/// Cloning gives another handle to the same pool. The pool ends when its last handle and the
/// last client built with it are gone (its threads end on their own, without being waited
/// for), or at [`ThreadPool::shutdown`].
///
/// What sharing costs: a callback runs on one of the pool's threads, so a callback that blocks
/// holds that thread for as long as it blocks, and with `threads` such callbacks at once (of
/// any clients) every pooled client's events wait. Each of a client's queues (its events split
/// by topic into up to [`Config::dispatcher_threads`](crate::Config::dispatcher_threads)
/// queues, and its lifecycle queue) is served by one thread at a time, so per-topic order and
/// lifecycle order hold as without a pool. A panicking callback is caught and reported as
/// without a pool; the thread lives on.
#[derive(Clone)]
pub struct ThreadPool {
    inner: Arc<PoolInner>,
}

/// A handle that does not keep the pool alive (held by the jobs and queues of clients, which the
/// pool's own run queue holds).
#[derive(Clone)]
pub(crate) struct WeakPool {
    inner: Weak<PoolInner>,
    /// The pool's `closed`, readable without upgrading (checked before each callback).
    closed: Arc<AtomicBool>,
}

struct PoolInner {
    id: u64,
    threads: usize,
    /// The run queue. Workers hold only its receiver: once every handle is gone, this sender is
    /// dropped and the workers end after the jobs left.
    jobs: Sender<Job>,
    timers: Arc<Timers>,
    /// Set by `shutdown`: workers end after their current job, queued jobs are dropped.
    closed: Arc<AtomicBool>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// Jobs waiting for their time, for the timer thread.
struct Timers {
    due: Mutex<TimerQueue>,
    changed: Condvar,
}

#[derive(Default)]
struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    jobs: std::collections::HashMap<u64, Job>,
    next: u64,
    /// The pool is gone or shut down: the timer thread ends.
    ended: bool,
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.inner.threads)
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

impl ThreadPool {
    /// Starts a pool of `threads` worker threads (named `genesys-pool-N`) and one timer thread
    /// (`genesys-pool-timer`). Each client built with it may use up to `threads` of them at
    /// once for its callbacks (see
    /// [`ClientBuilder::dispatcher_threads`](crate::ClientBuilder::dispatcher_threads)).
    ///
    /// # Errors
    /// [`Error::Config`] naming `threads` when `threads` is 0 or above 256;
    /// [`Error::Spawn`] when a thread could not be started (those already started end).
    pub fn new(threads: usize) -> Result<ThreadPool, Error> {
        if !(1..=MAX_POOL_THREADS).contains(&threads) {
            return Err(Error::Config(ConfigError {
                field: "threads",
                reason: format!("{threads} pool threads: must be 1..={MAX_POOL_THREADS}"),
            }));
        }
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = unbounded::<Job>();
        let closed = Arc::new(AtomicBool::new(false));
        let timers = Arc::new(Timers {
            due: Mutex::new(TimerQueue::default()),
            changed: Condvar::new(),
        });
        let inner = Arc::new(PoolInner {
            id,
            threads,
            jobs: tx,
            timers: timers.clone(),
            closed: closed.clone(),
            handles: Mutex::new(Vec::with_capacity(threads + 1)),
        });
        let spawn_error = |error| Error::Spawn {
            thread: "pool",
            error,
        };
        let mut handles = Vec::with_capacity(threads + 1);
        for index in 0..threads {
            let (rx, closed) = (rx.clone(), closed.clone());
            let handle = std::thread::Builder::new()
                .name(format!("genesys-pool-{index}"))
                .spawn(move || run_worker(id, &rx, &closed))
                .map_err(spawn_error)?;
            handles.push(handle);
        }
        drop(rx);
        let weak = Arc::downgrade(&inner);
        let handle = std::thread::Builder::new()
            .name("genesys-pool-timer".into())
            .spawn(move || run_timers(&timers, &weak))
            .map_err(spawn_error)?;
        handles.push(handle);
        *inner.handles.lock() = handles;
        Ok(ThreadPool { inner })
    }

    /// The number of worker threads (the timer thread not counted).
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Whether [`ThreadPool::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Ends the pool now: each worker ends after the callback or token fetch it is running (a
    /// batch of callbacks under way stops there), jobs still queued are dropped, and the
    /// threads are joined within `timeout`. Clients built with the pool stop delivering
    /// events; their calls that need the pool then fail with [`Error::Shutdown`] (shut them
    /// down or drop them: that still closes their sockets within their own timeout, and counts
    /// the events left in their queues, never delivered, as dropped in
    /// [`Health::dropped`](crate::Health::dropped); no lifecycle event reports them, there is
    /// no thread left to run lifecycle listeners). Building a client with a shut-down pool
    /// fails with [`Error::Config`] naming `thread_pool`. A later call only waits for threads
    /// still running.
    ///
    /// Called from a callback, it cannot join the thread running that callback, which ends
    /// right after it (a later call from elsewhere joins it); called from a callback while
    /// another call is joining the threads, it returns `Ok(())` at once (that call joins this
    /// thread once the callback returns).
    ///
    /// # Errors
    /// [`Error::Timeout`] when some thread did not end within `timeout` (a callback that does
    /// not return): it ends on its own once it does.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        self.inner.close();
        // One call joins at a time. A callback cannot wait for another call: that call may be
        // joining this very thread (two callbacks shutting the pool down at once each waited
        // for the other's thread until their timeout).
        let handles = if self.on_worker() {
            self.inner.handles.try_lock()
        } else {
            self.inner.handles.try_lock_until(deadline)
        };
        let Some(mut handles) = handles else {
            if self.on_worker() {
                return Ok(());
            }
            return Err(Error::Timeout {
                operation: "thread pool shutdown",
                after: timeout,
                last_failure: None,
            });
        };
        let me = std::thread::current().id();
        let mut left = Vec::new();
        let mut clean = true;
        for handle in handles.drain(..) {
            if handle.thread().id() == me {
                // Kept, not joined: this thread ends once its callback returns, and a later
                // call from elsewhere joins it (it returned at once without it).
                left.push(handle);
                continue;
            }
            if let Some(handle) = crate::threads::join_until(handle, deadline) {
                clean = false;
                left.push(handle);
            }
        }
        *handles = left;
        if clean {
            Ok(())
        } else {
            Err(Error::Timeout {
                operation: "thread pool shutdown",
                after: timeout,
                last_failure: None,
            })
        }
    }

    pub(crate) fn downgrade(&self) -> WeakPool {
        WeakPool {
            inner: Arc::downgrade(&self.inner),
            closed: self.inner.closed.clone(),
        }
    }

    /// Whether the calling thread is one of this pool's workers.
    pub(crate) fn on_worker(&self) -> bool {
        WORKER_OF.with(|w| w.get()) == self.inner.id
    }
}

impl PoolInner {
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut due = self.timers.due.lock();
            due.ended = true;
            due.heap.clear();
            // Dropped outside the lock below: a job owns clients' state, whose drop may be long.
            let jobs = std::mem::take(&mut due.jobs);
            drop(due);
            self.timers.changed.notify_all();
            drop(jobs);
        }
        // Wakes every worker waiting for a job; each sees `closed` and ends.
        for _ in 0..self.threads {
            let _ = self.jobs.send(Box::new(|| {}));
        }
    }

    fn submit(&self, job: Job) -> bool {
        !self.closed.load(Ordering::Acquire) && self.jobs.send(job).is_ok()
    }

    fn submit_at(&self, at: Instant, job: Job) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let mut due = self.timers.due.lock();
        if due.ended {
            return false;
        }
        let key = due.next;
        due.next += 1;
        let earliest = due
            .heap
            .peek()
            .is_none_or(|Reverse((first, _))| at < *first);
        due.heap.push(Reverse((at, key)));
        due.jobs.insert(key, job);
        if earliest {
            self.timers.changed.notify_one();
        }
        true
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // The last handle: the timer thread ends now, the workers once the run queue is empty
        // (this sender is the last). Nothing is joined: this may run on one of them.
        let jobs = {
            let mut due = self.timers.due.lock();
            due.ended = true;
            std::mem::take(&mut due.jobs)
        };
        self.timers.changed.notify_all();
        drop(jobs);
    }
}

impl WeakPool {
    /// Queues `job` for a worker. Returns false (and drops the job) when the pool has ended or
    /// was shut down.
    pub(crate) fn submit(&self, job: Job) -> bool {
        self.inner.upgrade().is_some_and(|pool| pool.submit(job))
    }

    /// Queues `job` for a worker at `at` (at once if `at` has passed). Returns false (and drops
    /// the job) when the pool has ended or was shut down. A job whose time has not come when
    /// the pool ends is dropped without running.
    pub(crate) fn submit_at(&self, at: Instant, job: Job) -> bool {
        self.inner
            .upgrade()
            .is_some_and(|pool| pool.submit_at(at, job))
    }

    /// Whether [`ThreadPool::shutdown`] was called: a batch under way stops before its next
    /// callback.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether the pool was shut down or has ended.
    #[cfg(test)]
    fn is_closed(&self) -> bool {
        self.inner
            .upgrade()
            .is_none_or(|pool| pool.closed.load(Ordering::Acquire))
    }
}

fn run_worker(id: u64, jobs: &Receiver<Job>, closed: &AtomicBool) {
    WORKER_OF.with(|w| w.set(id));
    while let Ok(job) = jobs.recv() {
        if closed.load(Ordering::Acquire) {
            break;
        }
        // Jobs catch their callbacks' panics themselves; this is the last line, so that a bug
        // in one client's job never takes a thread away from the others.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("a job of the thread pool panicked");
        }
    }
}

fn run_timers(timers: &Timers, pool: &Weak<PoolInner>) {
    let mut due = timers.due.lock();
    loop {
        if due.ended {
            return;
        }
        let now = Instant::now();
        let mut ready = Vec::new();
        while let Some(Reverse((at, key))) = due.heap.peek().copied() {
            if at > now {
                break;
            }
            due.heap.pop();
            if let Some(job) = due.jobs.remove(&key) {
                ready.push(job);
            }
        }
        if !ready.is_empty() {
            drop(due);
            // Handing a job over never blocks (the run queue is unbounded); the job itself,
            // which may block (a token fetch), runs on a worker.
            match pool.upgrade() {
                Some(pool) => {
                    for job in ready {
                        pool.submit(job);
                    }
                }
                None => return,
            }
            due = timers.due.lock();
            continue;
        }
        match due.heap.peek().copied() {
            Some(Reverse((at, _))) => {
                timers.changed.wait_until(&mut due, at);
            }
            None => timers.changed.wait(&mut due),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_workers_and_timed_jobs_wait_for_their_time() {
        let pool = ThreadPool::new(2).unwrap();
        let weak = pool.downgrade();
        let (tx, rx) = crossbeam_channel::unbounded();
        let on_worker = tx.clone();
        let id = pool.inner.id;
        assert!(weak.submit(Box::new(move || {
            let worker = WORKER_OF.with(|w| w.get()) == id;
            let _ = on_worker.send(("now", worker, Instant::now()));
        })));
        let asked = Instant::now();
        assert!(weak.submit_at(
            asked + Duration::from_millis(100),
            Box::new(move || {
                let _ = tx.send(("later", true, Instant::now()));
            })
        ));
        let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!((first.0, first.1), ("now", true));
        let second = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(second.0, "later");
        assert!(second.2 >= asked + Duration::from_millis(100));
        assert!(!pool.on_worker());
        pool.shutdown(Duration::from_secs(10)).unwrap();
        assert!(weak.is_closed());
        assert!(!weak.submit(Box::new(|| {})));
    }

    #[test]
    fn the_pool_ends_with_its_last_handle_and_a_panicking_job_costs_no_thread() {
        let pool = ThreadPool::new(1).unwrap();
        let weak = pool.downgrade();
        assert!(weak.submit(Box::new(|| panic!("a bug in a job"))));
        let (tx, rx) = crossbeam_channel::bounded(1);
        assert!(weak.submit(Box::new(move || {
            let _ = tx.send(());
        })));
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the worker lived on");
        drop(pool);
        assert!(weak.is_closed());
        assert!(!weak.submit_at(Instant::now(), Box::new(|| {})));
    }

    #[test]
    fn a_pool_needs_one_to_256_threads() {
        assert!(matches!(ThreadPool::new(0), Err(Error::Config(e)) if e.field == "threads"));
        assert!(matches!(ThreadPool::new(257), Err(Error::Config(e)) if e.field == "threads"));
    }
}
