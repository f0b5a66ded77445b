//! client/shutdown.rs stops the client: channels closed, threads joined, listeners dropped,
//! within a deadline, once (later calls wait for the first one's outcome); it never starts a
//! thread.

use super::Client;
use crate::channel::Slot;
use crate::error::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long before its deadline a shutdown cuts the REST calls still under way (at most a
/// quarter of its timeout), so that the threads making them can end within it.
const CUT_BEFORE_DEADLINE: Duration = Duration::from_millis(250);

impl Client {
    /// Shuts down: every socket gets a close frame, the server-side subscriptions are removed
    /// (`DELETE .../subscriptions`), events already queued are delivered, and every thread is
    /// joined, all within `timeout`. Listeners are unregistered. A later (or concurrent) call
    /// waits, within its own `timeout`, for the first one to finish and returns its outcome;
    /// called from a callback while another thread is shutting the client down, it returns
    /// `Ok(())` at once (that shutdown finishes once the callback returns). Called from a
    /// callback, it cannot join the thread running that callback, which ends right after.
    ///
    /// REST and token requests under way when it starts are cut at once (they fail as shut
    /// down); the channels' clean-up requests get until shortly before the deadline (250 ms,
    /// or a quarter of `timeout` if that is less), when any request still hanging is cut too
    /// and no new one is made: once `shutdown` returns, no thread of the client is inside a
    /// request.
    ///
    /// # Errors
    /// [`Error::Timeout`] when some thread did not finish in time (a callback that does not
    /// return, or a DNS lookup that hangs): those threads are left to end by themselves.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let timed_out = Err(Error::Timeout {
            operation: "shutdown",
            after: timeout,
            last_failure: None,
        });
        // One shutdown runs at a time; a later call waits for it and reports its outcome. A
        // callback cannot wait: the shutdown running elsewhere may be waiting for that very
        // callback to return.
        let outcome = if crate::dispatch::on_callback_thread() {
            match self.inner.shutdown_outcome.try_lock() {
                Some(outcome) => Some(outcome),
                None => return Ok(()),
            }
        } else {
            self.inner.shutdown_outcome.try_lock_until(deadline)
        };
        let Some(mut outcome) = outcome else {
            return timed_out;
        };
        if *outcome == Some(true) {
            return Ok(());
        }
        // A shutdown that timed out left threads running: this call stops and joins them
        // again (every step below may be repeated), so that once they did end it says so.
        let slots: Vec<Arc<Slot>> = {
            // Under the list's lock, so no subscribe adds a slot after this copy (see there).
            let list = self.inner.slots.write();
            self.inner.shut_down.store(true, Ordering::Release);
            list.clone()
        };
        // The resync stops first: no state is read for channels being closed.
        if let Some(engine) = &self.inner.resync {
            engine.stop();
        }
        // REST calls under way (a subscribe's, a renewal's, a state read's, a token request)
        // are no longer needed: cut them now rather than at their request timeout. Before the
        // channels are told to stop, so that their own clean-up (`DELETE .../subscriptions`,
        // on connections of its own, made only once stopped) is never among the calls cut.
        let network = &self.inner.shared.network;
        network.interrupt_requests();
        for slot in &slots {
            slot.stop(true);
        }
        // Near the deadline, whatever REST call is still hanging (a clean-up on a silent
        // server) is cut and no new one starts, so that the threads can still end in time:
        // once this returns, no thread of the client is inside a request.
        let cut_at = deadline
            .checked_sub(CUT_BEFORE_DEADLINE.min(timeout / 4))
            .unwrap_or(deadline);
        let mut running: Vec<&Arc<Slot>> = slots
            .iter()
            .filter(|slot| !slot.join_until(cut_at))
            .collect();
        let mut resync_running = self
            .inner
            .resync
            .as_ref()
            .is_some_and(|engine| !engine.join_until(cut_at));
        network.close_requests();
        running.retain(|slot| !slot.join_until(deadline));
        if resync_running {
            resync_running = self
                .inner
                .resync
                .as_ref()
                .is_some_and(|engine| !engine.join_until(deadline));
        }
        let mut clean = running.is_empty() && !resync_running;
        {
            let mut refresher = self.inner.refresher.lock();
            if let Some(handle) = refresher.as_mut() {
                let left = deadline.saturating_duration_since(Instant::now());
                if handle.stop_within(left) {
                    *refresher = None;
                } else {
                    clean = false;
                }
            }
        }
        clean &= self.inner.shared.dispatcher.shutdown(deadline);
        // No callback starts from here on; the closures are dropped below, once this call's
        // lock is released: their `Drop` is user code (it may drop guards, or the last
        // reference to this client).
        let cleared = self.inner.registry.take_all();
        *outcome = Some(clean);
        drop(outcome);
        cleared.release();
        if clean {
            Ok(())
        } else {
            timed_out
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let timeout = self.inner.shared.config.drop_timeout;
        if let Err(error) = self.shutdown(timeout) {
            log::warn!("shutdown on drop: {error}");
        }
    }
}
