//! client/shutdown.rs stops the client: channels closed, threads joined, listeners dropped,
//! within a deadline, once (later calls wait for the first one's outcome); it never starts a
//! thread.

use super::Client;
use crate::channel::Slot;
use crate::error::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Client {
    /// Shuts down: every socket gets a close frame, the server-side subscriptions are removed
    /// (`DELETE .../subscriptions`), events already queued are delivered, and every thread is
    /// joined, all within `timeout`. Listeners are unregistered. A later (or concurrent) call
    /// waits, within its own `timeout`, for the first one to finish and returns its outcome;
    /// called from a callback while another thread is shutting the client down, it returns
    /// `Ok(())` at once (that shutdown finishes once the callback returns). Called from a
    /// callback, it cannot join the thread running that callback, which ends right after.
    ///
    /// # Errors
    /// [`Error::Timeout`] when some thread did not finish in time (a callback that does not
    /// return, a REST call that hangs): those threads are left to end by themselves.
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
        for slot in &slots {
            slot.stop(true);
        }
        let mut clean = true;
        for slot in &slots {
            clean &= slot.join_until(deadline);
        }
        if let Some(engine) = &self.inner.resync {
            clean &= engine.join_until(deadline);
        }
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
