//! refresher.rs runs the token refresher thread ([`RefresherHandle`]), which refreshes ahead of
//! expiry and retries failed refreshes; it never touches a socket and never holds the token
//! manager's lock while fetching.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::manager::{AuthEvent, TokenManager};
use super::refresh::retry_delay;

impl TokenManager {
    /// Starts the refresher thread, which fetches a token at once when there is none, then
    /// again at [`refresh_at`](super::refresh::refresh_at) of each token, and retries failed refreshes with backoff. Tokens
    /// without a known lifetime are not refreshed. Stopped by [`RefresherHandle::stop`] or drop.
    pub(crate) fn start_refresher(self: &Arc<Self>) -> RefresherHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        let manager = Arc::clone(self);
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("genesys-token-refresher".into())
            .spawn(move || {
                manager.run_refresher(&stop_flag);
                drop(done_tx);
            });
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(e) => {
                // Without the thread tokens are still fetched on demand and after 401s.
                log::error!("could not start the token refresher thread: {e}");
                None
            }
        };
        RefresherHandle {
            manager: Arc::clone(self),
            stop,
            done: done_rx,
            thread,
        }
    }

    fn run_refresher(&self, stop: &AtomicBool) {
        let mut failures = 0u32;
        let mut retry_at: Option<Instant> = None;
        let mut seen_generation = self.state.lock().generation;
        loop {
            let mut st = self.state.lock();
            let generation = loop {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                if st.generation != seen_generation {
                    seen_generation = st.generation;
                    if st.current.is_some() {
                        // Someone else obtained a token: the failure streak is over.
                        failures = 0;
                        retry_at = None;
                    }
                }
                let now = Instant::now();
                let due = match (retry_at, &st.current) {
                    (Some(at), _) => Some(at),
                    (None, Some(current)) => current.refresh_due(),
                    (None, None) => Some(now),
                };
                match due {
                    Some(at) if at <= now => break st.generation,
                    Some(at) => {
                        self.changed.wait_until(&mut st, at);
                    }
                    None => self.changed.wait(&mut st),
                }
            };
            drop(st);

            match self.obtain(Some(generation)) {
                Ok(_) => {
                    failures = 0;
                    retry_at = None;
                    seen_generation = self.state.lock().generation;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let retry_in = retry_delay(&error, failures);
                    retry_at = Some(Instant::now() + retry_in);
                    if error.is_permanent() {
                        log::error!(
                            "token refresh failed permanently, retrying in {retry_in:?}: {error}"
                        );
                    } else {
                        log::warn!("token refresh failed (attempt {failures}), retrying in {retry_in:?}: {error}");
                    }
                    self.emit(AuthEvent::RefreshFailed { error, retry_in });
                }
            }
        }
    }
}

/// How long [`RefresherHandle::stop`] waits for a refresher stuck inside a token fetch.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Owns the refresher thread. [`RefresherHandle::stop`] or drop stops it: a sleeping refresher
/// wakes and exits at once (well under 100 ms) and is joined.
pub(crate) struct RefresherHandle {
    manager: Arc<TokenManager>,
    stop: Arc<AtomicBool>,
    /// Disconnected when the thread is about to exit.
    done: crossbeam_channel::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for RefresherHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefresherHandle")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl RefresherHandle {
    /// Stops and joins the refresher. Returns at once when it was sleeping; when it is inside a
    /// token fetch, waits up to 2 s for that fetch (bounded by the source's own timeout) and
    /// otherwise leaves the thread to exit on its own when the fetch returns.
    #[cfg(test)]
    pub(crate) fn stop(mut self) {
        self.shutdown(STOP_GRACE);
    }

    /// Stops the refresher, waiting at most `grace`; returns whether the thread was joined.
    /// When it was not, a later call waits for it again.
    pub(crate) fn stop_within(&mut self, grace: Duration) -> bool {
        self.shutdown(grace)
    }

    fn shutdown(&mut self, grace: Duration) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        self.stop.store(true, Ordering::Release);
        {
            // Holding the lock while notifying: the refresher either sees the flag before it
            // waits or is already waiting and gets the notification.
            let _st = self.manager.state.lock();
            self.manager.changed.notify_all();
        }
        match self.done.recv_timeout(grace) {
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                if thread.join().is_err() {
                    log::error!("token refresher thread panicked");
                }
                true
            }
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                log::warn!(
                    "token refresher still running after {grace:?}; it ends after its fetch"
                );
                self.thread = Some(thread);
                false
            }
        }
    }
}

impl Drop for RefresherHandle {
    fn drop(&mut self) {
        // Once a stop was asked for and timed out, dropping the handle does not wait again.
        let grace = if self.stop.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            STOP_GRACE
        };
        if !self.shutdown(grace) {
            // Detached: it exits on its own when its fetch returns.
            self.thread = None;
        }
    }
}
