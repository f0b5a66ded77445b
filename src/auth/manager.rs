//! manager.rs owns the cached access token and its single-flight fetch ([`TokenManager`]); it
//! never runs a thread of its own (refresher.rs does) and never calls the source or a handler
//! under its lock.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::refresh::{expiry_margin, refresh_at, MAX_LIFETIME};
use super::token::{AccessToken, TokenSource};
use crate::error::TokenError;
use crate::redact::Redacted;

/// What the token manager reports to the client, which turns these into lifecycle events.
#[derive(Clone, Debug)]
pub(crate) enum AuthEvent {
    /// A new token was obtained from the source (at start, ahead of expiry, or after a 401).
    Refreshed {
        /// Its announced lifetime; `None` when unknown.
        expires_in: Option<Duration>,
    },
    /// A refresh by the refresher thread failed; it will try again after `retry_in`.
    RefreshFailed {
        /// Why.
        error: TokenError,
        /// Delay until the next attempt (jittered backoff; about 5 min for permanent errors).
        retry_in: Duration,
    },
}

/// The cached token.
pub(super) struct Cached {
    token: Arc<str>,
    obtained: Instant,
    expires_in: Option<Duration>,
}

impl Cached {
    fn usable(&self, now: Instant) -> bool {
        match self.expires_in {
            None => true,
            Some(life) => now + expiry_margin(life) < self.obtained + life.min(MAX_LIFETIME),
        }
    }

    pub(super) fn refresh_due(&self) -> Option<Instant> {
        self.expires_in.map(|life| refresh_at(self.obtained, life))
    }
}

pub(super) struct State {
    pub(super) current: Option<Cached>,
    /// A fetch from the source is in flight; others wait for its outcome.
    pub(super) fetching: bool,
    /// Completed fetches, so waiters know when the fetch they joined is done.
    pub(super) fetches: u64,
    /// Outcome of the latest completed fetch, handed to the callers that waited for it.
    pub(super) last_outcome: Option<Result<Arc<str>, TokenError>>,
    /// Bumped whenever `current` changes (new token or invalidation).
    pub(super) generation: u64,
}

/// Caches the current token, fetches new ones with a single flight, and runs the refresher.
pub(crate) struct TokenManager {
    source: Box<dyn TokenSource>,
    on_event: Arc<dyn Fn(AuthEvent) + Send + Sync>,
    pub(super) state: Mutex<State>,
    /// Notified when a fetch completes, the token is invalidated, or a refresher is stopped.
    pub(super) changed: Condvar,
    /// Told, outside the lock, when the token changed (a new one, or one forgotten after a
    /// 401): a pooled refresher sets its next time from it (pooled.rs). Must not block.
    pub(super) on_change: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("TokenManager")
            .field("token", &st.current.as_ref().map(|_| Redacted))
            .field(
                "expires_in",
                &st.current.as_ref().and_then(|c| c.expires_in),
            )
            .field("fetching", &st.fetching)
            .finish()
    }
}

impl TokenManager {
    /// Creates a manager with no token yet; the first [`TokenManager::token`] call or the
    /// refresher fetches one. `on_event` is called (from the fetching thread, outside any lock)
    /// for every token obtained and every failed refresh by the refresher.
    pub(crate) fn new(
        source: Box<dyn TokenSource>,
        on_event: Arc<dyn Fn(AuthEvent) + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(TokenManager {
            source,
            on_event,
            state: Mutex::new(State {
                current: None,
                fetching: false,
                fetches: 0,
                last_outcome: None,
                generation: 0,
            }),
            changed: Condvar::new(),
            on_change: std::sync::OnceLock::new(),
        })
    }

    fn changed_token(&self) {
        if let Some(hook) = self.on_change.get() {
            hook();
        }
    }

    /// The current token if it is still usable (not within min(5 s, lifetime/10) of expiry),
    /// else a new one from the source. Concurrent callers share one fetch and its outcome.
    ///
    /// # Errors
    /// The source's [`TokenError`] when a fetch was needed and failed.
    pub(crate) fn token(&self) -> Result<Arc<str>, TokenError> {
        self.obtain(None)
    }

    /// After a 401 with `stale`: forgets the cached token if it is still `stale`, so the next
    /// [`TokenManager::token`] fetches a new one. A token fetched meanwhile by another thread is
    /// kept (comparing the value makes concurrent 401s cost one fetch, not one each).
    pub(crate) fn invalidate(&self, stale: &str) {
        let mut st = self.state.lock();
        if st.current.as_ref().is_some_and(|c| &*c.token == stale) {
            log::debug!("access token rejected with 401; it will be fetched again");
            st.current = None;
            st.generation += 1;
            self.changed.notify_all();
            drop(st);
            self.changed_token();
        }
    }

    /// Fetches a token unless one is usable; with `replace = Some(generation)`, also replaces
    /// a usable token if it is still the one of that generation (a refresh).
    pub(super) fn obtain(&self, replace: Option<u64>) -> Result<Arc<str>, TokenError> {
        let mut st = self.state.lock();
        let wants_new = |st: &State| match replace {
            Some(generation) => st.generation == generation,
            None => false,
        };
        if let Some(current) = &st.current {
            if current.usable(Instant::now()) && !wants_new(&st) {
                return Ok(Arc::clone(&current.token));
            }
        }
        if st.fetching {
            let joined = st.fetches;
            while st.fetches == joined {
                self.changed.wait(&mut st);
            }
            return st
                .last_outcome
                .clone()
                .unwrap_or_else(|| Err(TokenError::Other("token fetch vanished".into())));
        }

        st.fetching = true;
        let started = Instant::now();
        let outcome = parking_lot::MutexGuard::unlocked(&mut st, || {
            catch_unwind(AssertUnwindSafe(|| self.source.fetch_token()))
                .unwrap_or_else(|_| Err(TokenError::Other("token source panicked".into())))
                .and_then(check_header_safe)
        });
        st.fetching = false;
        st.fetches += 1;
        let (result, event) = match outcome {
            Ok(token) => {
                let expires_in = token.expires_in;
                let secret: Arc<str> = token.secret.into();
                st.current = Some(Cached {
                    token: Arc::clone(&secret),
                    // The lifetime counts from issue; the request start is the safe side.
                    obtained: started,
                    expires_in,
                });
                st.generation += 1;
                (Ok(secret), Some(AuthEvent::Refreshed { expires_in }))
            }
            Err(error) => {
                log::debug!("token fetch failed: {error}");
                (Err(error), None)
            }
        };
        st.last_outcome = Some(result.clone());
        self.changed.notify_all();
        drop(st);
        if event.is_some() {
            self.changed_token();
        }
        if let Some(event) = event {
            log::debug!(
                "access token obtained (expires in {:?})",
                event_expiry(&event)
            );
            self.emit(event);
        }
        result
    }

    pub(super) fn emit(&self, event: AuthEvent) {
        if catch_unwind(AssertUnwindSafe(|| (self.on_event)(event))).is_err() {
            log::error!("auth event handler panicked");
        }
    }
}

/// A token goes into `Authorization: Bearer <token>`: one that header cannot carry (empty, or
/// with white space, control or non-ASCII characters) is the source's error, said as such,
/// rather than a request failing later with the HTTP library's parse error (or a 401 for an
/// empty one): [`TokenError::UnusableToken`], permanent, so that a call needing the token fails
/// at once instead of retrying until its deadline. The value is never quoted.
fn check_header_safe(token: AccessToken) -> Result<AccessToken, TokenError> {
    let secret = token.secret();
    if !secret.is_empty() && secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(token);
    }
    Err(TokenError::UnusableToken {
        reason: if secret.is_empty() {
            "empty"
        } else {
            "white space, control or non-ASCII characters"
        },
    })
}

fn event_expiry(event: &AuthEvent) -> Option<Duration> {
    match event {
        AuthEvent::Refreshed { expires_in } => *expires_in,
        AuthEvent::RefreshFailed { .. } => None,
    }
}
