//! lag.rs measures how long events wait in the dispatcher queues (from the socket read to the
//! start of the first callback); it only counts, never blocks and never allocates per event.
//!
//! Each dispatcher thread records waits into a log-linear histogram (4 buckets per power of two
//! of microseconds, so a figure is within about 19% of the truth) of the current one-second
//! window; the health snapshot merges the current and the previous window of every thread, so
//! "recent" means the last one to two seconds.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BUCKETS: usize = 4 * 40;
/// How long one window lasts.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// The bucket of a wait of `us` microseconds.
fn bucket_of(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // >= 2
    let sub = ((us >> (exp - 2)) & 3) as usize;
    (4 * (exp - 1) + sub).min(BUCKETS - 1)
}

/// The smallest wait, in microseconds, that falls in `bucket`.
fn bucket_floor(bucket: usize) -> u64 {
    if bucket < 4 {
        return bucket as u64;
    }
    let exp = bucket / 4 + 1;
    let sub = (bucket % 4) as u64;
    (4 + sub) << (exp - 2)
}

struct Window {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
    /// When the window started, in nanoseconds since the recorder's creation.
    started_nanos: AtomicU64,
}

impl Window {
    fn new() -> Window {
        Window {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
            started_nanos: AtomicU64::new(0),
        }
    }

    fn clear(&self, started_nanos: u64) {
        for b in &self.buckets {
            b.store(0, Ordering::Relaxed);
        }
        self.max_us.store(0, Ordering::Relaxed);
        self.started_nanos.store(started_nanos, Ordering::Release);
    }
}

/// The wait recorder of one dispatcher thread: written by that thread, read by snapshots.
pub(crate) struct LagRecorder {
    windows: [Window; 2],
    current: AtomicUsize,
    created: Instant,
}

/// What one thread's recorder says when its window turns over.
pub(crate) struct Turned {
    /// The p99 wait of the window that just ended (None if it saw no event).
    pub p99: Option<Duration>,
}

impl LagRecorder {
    pub(crate) fn new() -> LagRecorder {
        LagRecorder {
            windows: [Window::new(), Window::new()],
            current: AtomicUsize::new(0),
            created: Instant::now(),
        }
    }

    /// Records one wait. Called by the owning dispatcher thread only.
    pub(crate) fn record(&self, wait: Duration) {
        let us = wait.as_micros().min(u64::MAX as u128) as u64;
        let window = &self.windows[self.current.load(Ordering::Relaxed)];
        window.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        window.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Starts a new window (the previous one is kept for snapshots, the one before is cleared).
    /// Called by the owning dispatcher thread once per [`WINDOW`].
    pub(crate) fn turn(&self) -> Turned {
        let now = self.current.load(Ordering::Relaxed);
        let ended = Summary::of([&self.windows[now]]);
        let next = 1 - now;
        self.windows[next].clear(self.created.elapsed().as_nanos() as u64);
        self.current.store(next, Ordering::Release);
        Turned { p99: ended.p99 }
    }
}

/// Recent dispatcher queue waits, in the health snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatchWait {
    /// Events measured (the last one to two seconds).
    pub samples: u64,
    /// Median wait from socket read to first callback start.
    pub p50: Option<Duration>,
    /// 99th percentile wait.
    pub p99: Option<Duration>,
    /// Longest wait.
    pub max: Option<Duration>,
}

pub(crate) struct Summary {
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
    pub samples: u64,
}

impl Summary {
    fn of<'a>(windows: impl IntoIterator<Item = &'a Window>) -> Summary {
        let mut counts = vec![0u64; BUCKETS];
        let mut max = 0u64;
        for w in windows {
            for (c, b) in counts.iter_mut().zip(&w.buckets) {
                *c += b.load(Ordering::Relaxed);
            }
            max = max.max(w.max_us.load(Ordering::Relaxed));
        }
        let samples: u64 = counts.iter().sum();
        let quantile = |q: f64| -> Option<Duration> {
            if samples == 0 {
                return None;
            }
            let rank = ((samples as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Some(Duration::from_micros(bucket_floor(i).min(max)));
                }
            }
            None
        };
        Summary {
            p50: quantile(0.50),
            p99: quantile(0.99),
            max: (samples > 0).then(|| Duration::from_micros(max)),
            samples,
        }
    }
}

/// Merges the recent windows of every recorder: those started less than two windows ago (an
/// idle dispatcher thread does not turn its windows, so age is checked here).
pub(crate) fn summarize(recorders: &[std::sync::Arc<LagRecorder>]) -> DispatchWait {
    let recent = recorders.iter().flat_map(|r| {
        let now = r.created.elapsed().as_nanos() as u64;
        let oldest = now.saturating_sub(2 * WINDOW.as_nanos() as u64);
        r.windows
            .iter()
            .filter(move |w| w.started_nanos.load(Ordering::Acquire) >= oldest)
    });
    let s = Summary::of(recent);
    DispatchWait {
        samples: s.samples,
        p50: s.p50,
        p99: s.p99,
        max: s.max,
    }
}

/// Decides when the dispatch lag warning fires: when a window's p99 is above the threshold,
/// once, re-armed after a window at or below it.
pub(crate) struct LagAlarm {
    threshold: Duration,
    raised: bool,
    pub(crate) window_started: Instant,
}

impl LagAlarm {
    pub(crate) fn new(threshold: Duration, now: Instant) -> LagAlarm {
        LagAlarm {
            threshold,
            raised: false,
            window_started: now,
        }
    }

    /// Feeds the p99 of a finished window; returns the p99 when the warning should fire.
    pub(crate) fn window_ended(&mut self, p99: Option<Duration>) -> Option<Duration> {
        match p99 {
            Some(p99) if p99 > self.threshold => {
                let fire = !self.raised;
                self.raised = true;
                fire.then_some(p99)
            }
            Some(_) => {
                self.raised = false;
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn buckets_are_monotonic_and_within_a_fifth() {
        let mut last = 0;
        for us in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 12_345, 1 << 30] {
            let b = bucket_of(us);
            assert!(b >= last);
            last = b;
            let floor = bucket_floor(b);
            assert!(floor <= us, "{us} {floor}");
            assert!(us as f64 <= floor as f64 * 1.26 + 1.0, "{us} {floor}");
        }
    }

    #[test]
    fn percentiles_of_known_waits() {
        let r = Arc::new(LagRecorder::new());
        for _ in 0..98 {
            r.record(Duration::from_micros(100));
        }
        r.record(Duration::from_millis(80));
        r.record(Duration::from_millis(90));
        let s = summarize(std::slice::from_ref(&r));
        assert_eq!(s.samples, 100);
        let p50 = s.p50.unwrap().as_micros();
        assert!((80..=100).contains(&p50), "{p50}");
        let p99 = s.p99.unwrap();
        assert!(
            p99 >= Duration::from_millis(64) && p99 <= Duration::from_millis(80),
            "{p99:?}"
        );
        assert_eq!(s.max, Some(Duration::from_millis(90)));
        // Two turns later the old waits are gone.
        r.turn();
        r.turn();
        assert_eq!(summarize(&[r]).samples, 0);
    }

    #[test]
    fn alarm_fires_once_per_episode() {
        let mut a = LagAlarm::new(Duration::from_millis(50), Instant::now());
        let high = Some(Duration::from_millis(60));
        let low = Some(Duration::from_millis(10));
        assert_eq!(a.window_ended(high), high);
        assert_eq!(a.window_ended(high), None);
        assert_eq!(a.window_ended(None), None);
        assert_eq!(a.window_ended(low), None);
        assert_eq!(a.window_ended(high), high);
    }
}
