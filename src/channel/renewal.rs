//! renewal.rs decides when a channel's topics must be `PUT` again so that it does not lapse; it
//! holds times only and never does I/O.
//!
//! A channel lives for a fixed time unless its subscriptions are `PUT` again (docs/protocol.md
//! "Channels": 24 h; `expires` in the creation answer): the channel's thread re-applies the
//! topics three quarters into that time, so a channel in use never lapses.

use std::time::{Duration, Instant, SystemTime};

/// The renewal schedule of one channel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Renewal {
    /// The channel's lifetime, taken from `expires` at creation.
    lifetime: Duration,
    /// When the channel lapses unless renewed first.
    expires: Instant,
    /// When to renew.
    due: Instant,
}

impl Renewal {
    fn starting(now: Instant, lifetime: Duration) -> Renewal {
        Renewal {
            lifetime,
            expires: now + lifetime,
            due: now + lifetime.mul_f64(0.75),
        }
    }

    /// A new channel whose `expires` is `expires`, created at `now` / `wall_now`: its lifetime
    /// is what `expires` leaves. `None` (never renewed) when no usable `expires` is known.
    pub(crate) fn for_new_channel(
        expires: Option<SystemTime>,
        now: Instant,
        wall_now: SystemTime,
    ) -> Option<Renewal> {
        expires
            .and_then(|e| e.duration_since(wall_now).ok())
            // A lifetime under a second (clock skew, a bad answer) would renew on every tick;
            // a year or more cannot be meant. Neither is renewed.
            .filter(|lifetime| {
                *lifetime >= Duration::from_secs(1) && *lifetime < Duration::from_secs(365 * 86_400)
            })
            .map(|lifetime| Renewal::starting(now, lifetime))
    }

    /// The topics were just applied: the channel lives a whole lifetime from `now`.
    pub(crate) fn renewed(&mut self, now: Instant) {
        *self = Renewal::starting(now, self.lifetime);
    }

    pub(crate) fn is_due(&self, now: Instant) -> bool {
        now >= self.due
    }

    /// A renewal failed: try again halfway to the expiry, but not before `at_least` (the
    /// backoff delay, `Retry-After` included).
    pub(crate) fn failed(&mut self, now: Instant, at_least: Duration) {
        let left = self.expires.saturating_duration_since(now);
        let wait = (left / 2).max(at_least).max(Duration::from_millis(500));
        self.due = now.checked_add(wait).unwrap_or(self.due);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_is_renewed_three_quarters_into_its_life_and_retried_halfway_to_expiry() {
        let day = Duration::from_secs(24 * 3600);
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut renewal = Renewal::for_new_channel(Some(wall + day), t0, wall).unwrap();
        let due = renewal.due;
        assert!(due >= t0 + day.mul_f64(0.74) && due <= t0 + day.mul_f64(0.76));
        assert!(!renewal.is_due(t0));
        assert!(renewal.is_due(due));
        // A failure 18 h in: try again 3 h later (half of the 6 h left).
        renewal.failed(due, Duration::from_secs(1));
        let retry = renewal.due;
        let three_hours = Duration::from_secs(3 * 3600);
        assert!(retry >= due + three_hours - Duration::from_secs(60));
        assert!(retry <= due + three_hours + Duration::from_secs(60));
        // A successful re-subscription starts a whole lifetime again.
        renewal.renewed(retry);
        let due = renewal.due;
        assert!(
            due <= retry + day.mul_f64(0.75)
                && due + Duration::from_secs(1) >= retry + day.mul_f64(0.75)
        );
        // No (or a past, or an absurd) `expires`: never renewed.
        assert!(Renewal::for_new_channel(None, t0, wall).is_none());
        assert!(Renewal::for_new_channel(Some(wall - day), t0, wall).is_none());
        assert!(Renewal::for_new_channel(Some(wall + day * 400), t0, wall).is_none());
    }

    #[test]
    fn a_failed_renewal_waits_at_least_the_backoff_delay() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut renewal =
            Renewal::for_new_channel(Some(wall + Duration::from_secs(40)), t0, wall).unwrap();
        let at = t0 + Duration::from_secs(39);
        renewal.failed(at, Duration::from_secs(5));
        assert!(!renewal.is_due(at + Duration::from_millis(4_900)));
        assert!(renewal.is_due(at + Duration::from_secs(5)));
    }
}
