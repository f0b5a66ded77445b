//! backoff.rs decides how long to wait before the next attempt (exponential backoff with full
//! jitter, `Retry-After` as a lower bound, a retry budget); it never sleeps and never does I/O.
//!
//! Full jitter: the n-th retry waits a uniform draw from `[0, min(cap, base × 2^(n-1))]`
//! (the "Exponential Backoff And Jitter" analysis of the AWS architecture blog; gRPC's
//! connection-backoff protocol uses the same shape). A `Retry-After` from a 429 (docs/protocol.md,
//! "Rate limits") raises the delay to at least that many seconds, itself capped.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::time::Duration;

/// The largest jitter before a prompt reconnection ([`Retry::prompt`]).
pub(crate) const PROMPT_JITTER: Duration = Duration::from_millis(250);

/// Retry policy for channel setup, reconnection and REST calls.
///
/// Start from [`Backoff::default`] and change what you need with the chainable setters, each
/// named after the setting it changes:
/// ```
/// use genesys_notify::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::default()
///     .base(Duration::from_millis(500))
///     .cap(Duration::from_secs(30))
///     .max_retries(Some(10));
/// assert_eq!(backoff.ceiling(1), Duration::from_millis(500));
/// assert_eq!(backoff.ceiling(10), Duration::from_secs(30));
/// ```
/// The values are checked by [`ClientBuilder::build`](crate::ClientBuilder::build); `Debug` shows
/// them all.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the setters return the changed policy; pass it to ClientBuilder::backoff"]
pub struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) retry_after_cap: Duration,
    pub(crate) max_retries: Option<u32>,
    pub(crate) reset_after: Duration,
    pub(crate) seed: Option<u64>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            retry_after_cap: Duration::from_secs(300),
            max_retries: None,
            reset_after: Duration::from_secs(1),
            seed: None,
        }
    }
}

impl Backoff {
    /// The first retry's upper bound. Default 1 s; 1 ms..=1 day, at most [`Backoff::cap`].
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The largest upper bound of a retry's delay. Default 60 s; 1 ms..=1 day.
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// The largest `Retry-After` honoured (docs/protocol.md "Rate limits"); a larger value is cut
    /// to this. Default 300 s; at most 1 day.
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// How many retries in a row before giving up with
    /// [`Lifecycle::RetryBudgetExhausted`](crate::Lifecycle). `None` (the default): never give up.
    pub fn max_retries(mut self, retries: Option<u32>) -> Self {
        self.max_retries = retries;
        self
    }

    /// How long a connection must be read (socket open, topics subscribed) to count as healthy.
    /// Default 1 s; at most 1 day. The end of a healthy connection is not a failed attempt, so
    /// it resets the retry count: after a close frame (1000, 1001, takeover, maintenance) the
    /// next attempt comes within 250 ms; after a network failure (FIN, RST, silence) it is the
    /// first of a new series (a delay drawn up to `base`). A connection that ends sooner counts
    /// as a failed attempt and the next delay grows, so a server that accepts and closes at
    /// once is met with the full backoff.
    pub fn reset_after(mut self, after: Duration) -> Self {
        self.reset_after = after;
        self
    }

    /// A fixed seed for the jitter's random source, for reproducible tests. Default `None`
    /// (seeded from the operating system).
    pub fn seed(mut self, seed: Option<u64>) -> Self {
        self.seed = seed;
        self
    }
}

/// Getters: the setters above hold the plain names (`base`, `cap`, ...), so each setting is read
/// back with `get_` before its name.
impl Backoff {
    /// The first retry's upper bound ([`Backoff::base`]).
    pub fn get_base(&self) -> Duration {
        self.base
    }

    /// The largest upper bound of a retry's delay ([`Backoff::cap`]).
    pub fn get_cap(&self) -> Duration {
        self.cap
    }

    /// The largest `Retry-After` honoured ([`Backoff::retry_after_cap`]).
    pub fn get_retry_after_cap(&self) -> Duration {
        self.retry_after_cap
    }

    /// Retries in a row before giving up, `None` for never ([`Backoff::max_retries`]).
    pub fn get_max_retries(&self) -> Option<u32> {
        self.max_retries
    }

    /// How long a connection must be read to count as healthy ([`Backoff::reset_after`]).
    pub fn get_reset_after(&self) -> Duration {
        self.reset_after
    }

    /// The jitter's fixed seed, if any ([`Backoff::seed`]).
    pub fn get_seed(&self) -> Option<u64> {
        self.seed
    }
}

impl Backoff {
    /// The upper bound of the `retry`-th retry (1-based): `min(cap, base × 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << shift)
            .map_or(self.cap, |d| d.min(self.cap))
    }
}

/// The state of one retry loop: how many retries so far, and the random source.
pub(crate) struct Retry {
    policy: Backoff,
    retries: u32,
    rng: StdRng,
}

impl Retry {
    pub(crate) fn new(policy: Backoff) -> Retry {
        let rng = match policy.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        Retry {
            policy,
            retries: 0,
            rng,
        }
    }

    /// Retries made since the last reset.
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// Counts one more retry and says how long to wait first, or `None` when the budget is spent.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if let Some(max) = self.policy.max_retries {
            if self.retries >= max {
                return None;
            }
        }
        self.retries += 1;
        let ceiling = self.policy.ceiling(self.retries);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        let jittered = Duration::from_nanos(self.rng.random_range(0..=nanos));
        let floor = retry_after
            .map(|d| d.min(self.policy.retry_after_cap))
            .unwrap_or_default();
        Some(jittered.max(floor))
    }

    /// A healthy connection the server ended (issue #10): the next attempt comes at once, after
    /// a jitter of at most [`PROMPT_JITTER`] (or `base`, if smaller) and not before
    /// `retry_after`. It is counted as the first retry of a new series, so a failure right after
    /// it backs off as the second. `None` when the budget allows no retry at all.
    pub(crate) fn prompt(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.policy.max_retries == Some(0) {
            return None;
        }
        self.retries = 1;
        let bound = PROMPT_JITTER.min(self.policy.base);
        let nanos = bound.as_nanos().min(u64::MAX as u128) as u64;
        let jittered = Duration::from_nanos(self.rng.random_range(0..=nanos));
        let floor = retry_after
            .map(|d| d.min(self.policy.retry_after_cap))
            .unwrap_or_default();
        Some(jittered.max(floor))
    }

    /// Forgets past failures (after a connection that stayed healthy for `reset_after`).
    pub(crate) fn reset(&mut self) {
        self.retries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(seed: u64) -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
            seed: Some(seed),
            ..Backoff::default()
        }
    }

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let p = policy(1);
        let ceilings: Vec<u64> = (1..=9).map(|n| p.ceiling(n).as_millis() as u64).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(p.ceiling(1000), Duration::from_secs(10));
    }

    #[test]
    fn same_seed_gives_same_delays() {
        let a: Vec<_> = {
            let mut r = Retry::new(policy(7));
            (0..20).map(|_| r.next_delay(None).unwrap()).collect()
        };
        let mut r = Retry::new(policy(7));
        let b: Vec<_> = (0..20).map(|_| r.next_delay(None).unwrap()).collect();
        assert_eq!(a, b);
        let mut other = Retry::new(policy(8));
        let c: Vec<_> = (0..20).map(|_| other.next_delay(None).unwrap()).collect();
        assert_ne!(a, c);
    }

    /// Full jitter: every delay lies in [0, ceiling], and over many draws the delays spread over
    /// the whole range (mean near ceiling / 2, some in the lowest and highest tenths).
    #[test]
    fn delays_are_uniform_between_zero_and_the_ceiling() {
        let p = policy(42);
        let mut r = Retry::new(p.clone());
        for retry in 1..=12u32 {
            let ceiling = p.ceiling(retry);
            let mut samples = Vec::new();
            for _ in 0..2000 {
                r.retries = retry - 1;
                samples.push(r.next_delay(None).unwrap());
            }
            assert!(samples.iter().all(|d| *d <= ceiling));
            let mean = samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() / 2000.0;
            let half = ceiling.as_secs_f64() / 2.0;
            assert!(
                (mean - half).abs() < half * 0.1,
                "retry {retry}: mean {mean} vs {half}"
            );
            let low = samples
                .iter()
                .filter(|d| d.as_secs_f64() < ceiling.as_secs_f64() * 0.1);
            let high = samples
                .iter()
                .filter(|d| d.as_secs_f64() > ceiling.as_secs_f64() * 0.9);
            assert!(low.count() > 100 && high.count() > 100);
        }
    }

    #[test]
    fn retry_after_is_a_lower_bound_and_is_capped() {
        let mut r = Retry::new(policy(3));
        for _ in 0..50 {
            r.reset();
            assert!(r.next_delay(Some(Duration::from_secs(2))).unwrap() >= Duration::from_secs(2));
        }
        let mut p = policy(3);
        p.retry_after_cap = Duration::from_secs(5);
        let mut r = Retry::new(p);
        let d = r.next_delay(Some(Duration::from_secs(3600))).unwrap();
        assert_eq!(d, Duration::from_secs(5));
    }

    #[test]
    fn a_prompt_attempt_is_short_restarts_the_series_and_keeps_retry_after() {
        let mut p = policy(9);
        p.base = Duration::from_secs(2);
        let mut r = Retry::new(p);
        for _ in 0..5 {
            r.next_delay(None);
        }
        for _ in 0..50 {
            let d = r.prompt(None).unwrap();
            assert!(d <= PROMPT_JITTER, "{d:?}");
            assert_eq!(r.retries(), 1, "healthy ends do not grow the count");
        }
        // A failure right after a prompt attempt is the second retry of the series.
        r.next_delay(None);
        assert_eq!(r.retries(), 2);
        assert!(r.prompt(Some(Duration::from_secs(3))).unwrap() >= Duration::from_secs(3));
        let mut none = policy(1);
        none.max_retries = Some(0);
        assert_eq!(Retry::new(none).prompt(None), None);
    }

    #[test]
    fn budget_is_spent_after_max_retries_and_reset_restores_it() {
        let mut p = policy(5);
        p.max_retries = Some(3);
        let mut r = Retry::new(p);
        assert!(r.next_delay(None).is_some());
        assert!(r.next_delay(None).is_some());
        assert!(r.next_delay(None).is_some());
        assert_eq!(r.next_delay(None), None);
        assert_eq!(r.retries(), 3);
        r.reset();
        assert!(r.next_delay(None).is_some());
    }

    #[test]
    fn setters_change_only_their_own_setting() {
        let d = Backoff::default();
        let b = Backoff::default()
            .base(Duration::from_millis(7))
            .cap(Duration::from_secs(9))
            .retry_after_cap(Duration::from_secs(11))
            .max_retries(Some(13))
            .reset_after(Duration::from_secs(15))
            .seed(Some(17));
        assert_eq!(
            b,
            Backoff {
                base: Duration::from_millis(7),
                cap: Duration::from_secs(9),
                retry_after_cap: Duration::from_secs(11),
                max_retries: Some(13),
                reset_after: Duration::from_secs(15),
                seed: Some(17),
            }
        );
        assert_eq!(d.clone().max_retries(Some(1)).cap, d.cap);
        assert_eq!(d.clone().cap(Duration::from_secs(1)).base, d.base);
    }
}
