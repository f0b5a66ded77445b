//! auth/pooled.rs refreshes the tokens of clients built with a
//! [`ThreadPool`](crate::pool::ThreadPool), with no thread of their own: the pool's timer thread
//! holds each client's next refresh time and hands the fetch, which blocks, to a worker. It
//! never holds the token manager's lock while fetching and never keeps a dropped client's
//! manager alive (timers hold it weakly).
//!
//! The decisions are the refresher thread's (refresher.rs): a token is fetched at once when
//! there is none, then at [`refresh_at`](super::refresh::refresh_at) of each token; a failed
//! refresh is retried after [`retry_delay`]; a token without a known lifetime is not refreshed;
//! a token obtained elsewhere (on demand, after a 401) resets the failure streak. A token
//! endpoint that hangs holds one worker for that client's fetch, at most the token request's
//! timeout; the other workers go on with other clients' events and refreshes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::manager::{AuthEvent, TokenManager};
use super::refresh::retry_delay;
use super::refresher::RefresherHandle;
use crate::pool::WeakPool;

/// A client's token refresher: a thread of its own, or timers and workers of a pool.
pub(crate) enum Refresher {
    Thread(RefresherHandle),
    Pooled(PooledRefresher),
}

impl Refresher {
    /// Stops the refresher, waiting at most `grace` for a fetch under way; returns whether it
    /// ended (else a later call waits again).
    pub(crate) fn stop_within(&mut self, grace: Duration) -> bool {
        match self {
            Refresher::Thread(handle) => handle.stop_within(grace),
            Refresher::Pooled(pooled) => pooled.stop_within(grace),
        }
    }
}

/// The refreshes of one pooled client. Dropping it stops them (a fetch under way ends alone).
pub(crate) struct PooledRefresher {
    state: Arc<RefreshState>,
}

struct RefreshState {
    manager: Weak<TokenManager>,
    pool: WeakPool,
    stopped: AtomicBool,
    /// A fetch is under way on a worker.
    busy: AtomicBool,
    progress: Mutex<Progress>,
}

struct Progress {
    failures: u32,
    retry_at: Option<Instant>,
    seen_generation: u64,
    /// The earliest time a timer is set for.
    armed: Option<Instant>,
}

impl TokenManager {
    /// Starts refreshing on `pool`: at once when there is no token, then ahead of expiry.
    pub(crate) fn start_pooled_refresher(self: &Arc<Self>, pool: WeakPool) -> PooledRefresher {
        let state = Arc::new(RefreshState {
            manager: Arc::downgrade(self),
            pool,
            stopped: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            progress: Mutex::new(Progress {
                failures: 0,
                retry_at: None,
                seen_generation: self.state.lock().generation,
                armed: None,
            }),
        });
        let weak = Arc::downgrade(&state);
        let _ = self.on_change.set(Box::new(move || {
            if let Some(state) = weak.upgrade() {
                state.arm();
            }
        }));
        state.arm();
        PooledRefresher { state }
    }
}

impl RefreshState {
    /// When the next fetch is due, and the token generation it would replace; `None` for a
    /// token without a known lifetime.
    fn due(&self, manager: &TokenManager, progress: &mut Progress) -> Option<(Instant, u64)> {
        let st = manager.state.lock();
        if st.generation != progress.seen_generation {
            progress.seen_generation = st.generation;
            if st.current.is_some() {
                // Someone else obtained a token: the failure streak is over.
                progress.failures = 0;
                progress.retry_at = None;
            }
        }
        let due = match (progress.retry_at, &st.current) {
            (Some(at), _) => Some(at),
            (None, Some(current)) => current.refresh_due(),
            (None, None) => Some(Instant::now()),
        };
        due.map(|at| (at, st.generation))
    }

    /// Sets a timer for the next fetch, unless one is set for that time or earlier.
    fn arm(self: &Arc<Self>) {
        if self.stopped.load(Ordering::Acquire) || self.busy.load(Ordering::Acquire) {
            return;
        }
        let Some(manager) = self.manager.upgrade() else {
            return;
        };
        let mut progress = self.progress.lock();
        let Some((at, _)) = self.due(&manager, &mut progress) else {
            return;
        };
        if progress.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        progress.armed = Some(at);
        drop(progress);
        let weak = Arc::downgrade(self);
        self.pool.submit_at(
            at,
            Box::new(move || {
                if let Some(state) = weak.upgrade() {
                    state.fire();
                }
            }),
        );
    }

    /// A timer went off, on a worker: fetches if the time has come (a timer set for a token
    /// since replaced just sets the next one).
    fn fire(self: &Arc<Self>) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let Some(manager) = self.manager.upgrade() else {
            return;
        };
        let generation = {
            let mut progress = self.progress.lock();
            progress.armed = None;
            match self.due(&manager, &mut progress) {
                Some((at, generation)) if at <= Instant::now() => generation,
                _ => {
                    drop(progress);
                    self.arm();
                    return;
                }
            }
        };
        // SeqCst with `stop_within`'s store and load: either the stop sees this fetch as busy
        // and waits for it, or this sees the stop and does not fetch.
        if self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.stopped.load(Ordering::SeqCst) {
            self.busy.store(false, Ordering::SeqCst);
            return;
        }
        let outcome = manager.obtain(Some(generation));
        let failed = {
            let mut progress = self.progress.lock();
            match outcome {
                Ok(_) => {
                    progress.failures = 0;
                    progress.retry_at = None;
                    progress.seen_generation = manager.state.lock().generation;
                    None
                }
                Err(error) => {
                    progress.failures = progress.failures.saturating_add(1);
                    let retry_in = retry_delay(&error, progress.failures);
                    progress.retry_at = Some(Instant::now() + retry_in);
                    if error.is_permanent() {
                        log::error!(
                            "token refresh failed permanently, retrying in {retry_in:?}: {error}"
                        );
                    } else {
                        log::warn!(
                            "token refresh failed (attempt {}), retrying in {retry_in:?}: {error}",
                            progress.failures
                        );
                    }
                    Some((error, retry_in))
                }
            }
        };
        self.busy.store(false, Ordering::SeqCst);
        if let Some((error, retry_in)) = failed {
            manager.emit(AuthEvent::RefreshFailed { error, retry_in });
        }
        self.arm();
    }
}

impl PooledRefresher {
    /// Stops refreshing; waits at most `grace` for a fetch under way. Returns whether none is.
    pub(crate) fn stop_within(&self, grace: Duration) -> bool {
        self.state.stopped.store(true, Ordering::SeqCst);
        let deadline = Instant::now()
            .checked_add(grace)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        while self.state.busy.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

impl Drop for PooledRefresher {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AccessToken, TokenSource};
    use crate::error::TokenError;
    use crate::pool::ThreadPool;
    use std::sync::atomic::AtomicUsize;

    const WAIT: Duration = Duration::from_secs(30);

    fn wait_until(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        while !done() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// A source counting its calls, issuing tokens of `life`.
    fn counting(calls: &Arc<AtomicUsize>, life: Option<Duration>) -> Box<dyn TokenSource> {
        let calls = calls.clone();
        Box::new(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken::new(format!("token-{n}"), life))
        })
    }

    fn quiet() -> Arc<dyn Fn(AuthEvent) + Send + Sync> {
        Arc::new(|_| {})
    }

    #[test]
    fn short_tokens_are_refreshed_ahead_and_a_forgotten_token_is_fetched_again() {
        let pool = ThreadPool::new(1).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let manager = TokenManager::new(counting(&calls, Some(Duration::from_secs(2))), quiet());
        let refresher = manager.start_pooled_refresher(pool.downgrade());
        // Fetched at once, then about every second (80 % of 2 s, at least 1 s after).
        assert!(wait_until(|| calls.load(Ordering::SeqCst) >= 3));
        let before = calls.load(Ordering::SeqCst);
        // A 401: the token is forgotten and fetched again at once, not at its refresh time.
        let token = manager.token().unwrap();
        manager.invalidate(&token);
        assert!(wait_until(|| calls.load(Ordering::SeqCst) > before));
        assert!(refresher.stop_within(WAIT));
        let after = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(calls.load(Ordering::SeqCst), after, "refreshed after stop");
    }

    #[test]
    fn a_failed_refresh_is_reported_and_retried_and_no_lifetime_means_no_refresh() {
        let pool = ThreadPool::new(1).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let failures = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let f = failures.clone();
        let manager = TokenManager::new(
            Box::new(move || {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(TokenError::Transport("refused".into()))
                } else {
                    // No lifetime: never refreshed ahead.
                    Ok(AccessToken::new("fresh", None))
                }
            }),
            Arc::new(move |event| {
                if let AuthEvent::RefreshFailed { error, retry_in } = event {
                    f.lock().push((error, retry_in));
                }
            }),
        );
        let _refresher = manager.start_pooled_refresher(pool.downgrade());
        assert!(wait_until(|| calls.load(Ordering::SeqCst) == 2));
        {
            let failures = failures.lock();
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].0, TokenError::Transport("refused".into()));
            // The refresher thread's backoff: 0.5–1 s after the first failure.
            assert!(failures[0].1 <= Duration::from_secs(1));
        }
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "a token without lifetime refreshed"
        );
        assert_eq!(&*manager.token().unwrap(), "fresh");
    }

    #[test]
    fn a_hung_token_source_holds_one_worker_and_a_dropped_manager_is_forgotten() {
        let pool = ThreadPool::new(2).unwrap();
        let (release, hold) = crossbeam_channel::bounded::<()>(0);
        let entered = Arc::new(AtomicBool::new(false));
        let e = entered.clone();
        let hung = TokenManager::new(
            Box::new(move || {
                e.store(true, Ordering::SeqCst);
                let _ = hold.recv_timeout(WAIT);
                Ok(AccessToken::new("late", None))
            }),
            quiet(),
        );
        let _hung_refresher = hung.start_pooled_refresher(pool.downgrade());
        assert!(wait_until(|| entered.load(Ordering::SeqCst)));
        let calls = Arc::new(AtomicUsize::new(0));
        let manager = TokenManager::new(counting(&calls, Some(Duration::from_secs(2))), quiet());
        let refresher = manager.start_pooled_refresher(pool.downgrade());
        assert!(
            wait_until(|| calls.load(Ordering::SeqCst) >= 3),
            "refreshes stopped behind another client's hung fetch"
        );
        drop(release);
        // Dropped without a stop: the pool's timers hold it weakly.
        let weak = Arc::downgrade(&manager);
        drop(refresher);
        drop(manager);
        assert!(weak.upgrade().is_none());
    }
}
