//! refresh.rs decides when a token is refreshed and how long a failed refresh waits; it is
//! pure arithmetic (plus jitter) and never sleeps, fetches or touches a lock.

use std::time::{Duration, Instant};

use crate::error::TokenError;

/// Never refresh more often than this, whatever `expires_in` says (guards against a source
/// that hands out tokens with a zero or tiny lifetime).
pub(crate) const MIN_REFRESH_DELAY: Duration = Duration::from_secs(1);

/// The refresh lead never needs to exceed this much before expiry to be safe.
const LEAD_WANTED: Duration = Duration::from_secs(60);

/// When to refresh a token obtained at `obtained` with lifetime `expires_in`.
///
/// The rule: refresh at 80 % of the lifetime, but at least 60 s before expiry when the lifetime
/// is long enough for that without refreshing before half of it; and never sooner than
/// [`MIN_REFRESH_DELAY`] (1 s) after `obtained`. In formula:
/// `obtained + max(1 s, expires_in - max(expires_in / 5, min(60 s, expires_in / 2)))`.
///
/// Examples: 24 h (the Genesys default) → after 19 h 12 min; 300 s (the Genesys minimum) →
/// after 240 s; 120 s → after 60 s; 2 s → after 1 s.
pub(crate) fn refresh_at(obtained: Instant, expires_in: Duration) -> Instant {
    let lead = (expires_in / 5).max(LEAD_WANTED.min(expires_in / 2));
    // Capped: an absurd `expires_in` (a server's `1e19`) must not overflow `Instant`.
    obtained
        + expires_in
            .saturating_sub(lead)
            .max(MIN_REFRESH_DELAY)
            .min(MAX_LIFETIME)
}

/// Longer lifetimes are treated as this (a century): far enough to mean "never", small
/// enough to add to any `Instant`.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long before expiry a cached token stops being handed out: the smaller of 5 s and a tenth
/// of its lifetime, so a request does not start with a token that expires in flight.
pub(super) fn expiry_margin(expires_in: Duration) -> Duration {
    Duration::from_secs(5).min(expires_in / 10)
}

/// First retry delay of a failed refresh.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest delay between retries of a transiently failing refresh.
const RETRY_CAP: Duration = Duration::from_secs(30);
/// Delay between retries of a permanently failing refresh (bad credentials): slow enough not to
/// hammer the login host, fast enough to recover on its own once the credentials are fixed.
const PERMANENT_RETRY: Duration = Duration::from_secs(300);

/// The delay before retry number `failures` (1-based) of a failed refresh, before jitter:
/// `min(1 s × 2^(failures-1), 30 s)` for transient errors, 300 s for permanent ones, and never
/// less than a 429's `Retry-After` (itself capped at 300 s).
pub(crate) fn retry_base_delay(error: &TokenError, failures: u32) -> Duration {
    if error.is_permanent() {
        return PERMANENT_RETRY;
    }
    let exponent = failures.saturating_sub(1).min(16);
    let backoff = RETRY_BASE.saturating_mul(1 << exponent).min(RETRY_CAP);
    match error.retry_after() {
        Some(lower) => backoff.max(lower.min(PERMANENT_RETRY)),
        None => backoff,
    }
}

/// [`retry_base_delay`] with jitter: uniform in `[base/2, base]`, so clients that failed
/// together do not retry together, yet never retry instantly. A `Retry-After` lower bound is
/// kept.
pub(super) fn retry_delay(error: &TokenError, failures: u32) -> Duration {
    let base = retry_base_delay(error, failures);
    let low = (base / 2).max(error.retry_after().unwrap_or_default().min(base));
    if low >= base {
        return base;
    }
    let nanos = rand::random_range(low.as_nanos() as u64..=base.as_nanos() as u64);
    Duration::from_nanos(nanos)
}
