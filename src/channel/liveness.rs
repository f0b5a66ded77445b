//! liveness.rs decides, from frame arrival times alone, when a socket needs an application ping
//! and when it is dead; it never touches a socket or reads the clock itself.

use crate::config::Config;
use std::time::{Duration, Instant};

/// The liveness decisions of one socket, on a monotonic clock.
#[derive(Debug)]
pub(crate) struct Liveness {
    last_frame: Instant,
    ping_sent: Option<Instant>,
}

/// What [`Liveness::check`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Fine,
    SendPing,
    /// Dead: silent for this long.
    Dead(Duration),
}

impl Liveness {
    pub(crate) fn new(now: Instant) -> Liveness {
        Liveness {
            last_frame: now,
            ping_sent: None,
        }
    }

    /// When the last frame arrived (moved forward by time blocked on backpressure).
    pub(crate) fn last_frame(&self) -> Instant {
        self.last_frame
    }

    /// Any inbound frame resets the silence clock to when it was read (`at`). Frames decoded
    /// later from bytes read earlier never move it back (time blocked on backpressure may have
    /// moved it past `at`).
    pub(crate) fn frame(&mut self, at: Instant) {
        self.last_frame = self.last_frame.max(at);
    }

    /// A pong arrived; returns the round trip if a ping was outstanding.
    pub(crate) fn pong(&mut self, now: Instant) -> Option<Duration> {
        self.ping_sent
            .take()
            .map(|sent| now.saturating_duration_since(sent))
    }

    /// The socket thread was blocked by backpressure for `d`: that time is not silence.
    pub(crate) fn blocked(&mut self, d: Duration) {
        self.last_frame += d;
        if let Some(sent) = self.ping_sent.as_mut() {
            *sent += d;
        }
    }

    pub(crate) fn check(&mut self, now: Instant, config: &Config) -> Check {
        let silent = now.saturating_duration_since(self.last_frame);
        if silent >= config.liveness_timeout {
            return Check::Dead(silent);
        }
        match self.ping_sent {
            Some(sent) if now.saturating_duration_since(sent) >= config.pong_timeout => {
                if self.last_frame <= sent {
                    Check::Dead(silent)
                } else {
                    // Frames arrived since the ping: the socket is alive, the pong was lost.
                    self.ping_sent = None;
                    Check::Fine
                }
            }
            Some(_) => Check::Fine,
            None if silent >= config.ping_interval => {
                self.ping_sent = Some(now);
                Check::SendPing
            }
            None => Check::Fine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            liveness_timeout: Duration::from_secs(60),
            ..Config::default()
        }
    }

    #[test]
    fn idle_socket_is_pinged_then_declared_dead_without_pong() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.check(t0 + Duration::from_secs(29), &c), Check::Fine);
        assert_eq!(l.check(t0 + Duration::from_secs(30), &c), Check::SendPing);
        assert_eq!(l.check(t0 + Duration::from_secs(35), &c), Check::Fine);
        assert_eq!(
            l.check(t0 + Duration::from_secs(40), &c),
            Check::Dead(Duration::from_secs(40))
        );
    }

    #[test]
    fn pong_measures_round_trip_and_keeps_socket_alive() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.check(t0 + Duration::from_secs(30), &c), Check::SendPing);
        let at = t0 + Duration::from_millis(30_250);
        l.frame(at);
        assert_eq!(l.pong(at), Some(Duration::from_millis(250)));
        assert_eq!(l.check(t0 + Duration::from_secs(45), &c), Check::Fine);
        assert_eq!(l.pong(at), None);
    }

    #[test]
    fn frames_after_an_unanswered_ping_keep_the_socket_alive() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.check(t0 + Duration::from_secs(30), &c), Check::SendPing);
        l.frame(t0 + Duration::from_secs(31));
        assert_eq!(l.check(t0 + Duration::from_secs(41), &c), Check::Fine);
        assert_eq!(l.check(t0 + Duration::from_secs(61), &c), Check::SendPing);
    }

    #[test]
    fn heartbeats_keep_socket_alive_without_pings() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        for n in 1..100u64 {
            let at = t0 + Duration::from_secs(25 * n);
            l.frame(at);
            assert_eq!(l.check(at, &c), Check::Fine);
        }
    }

    #[test]
    fn time_blocked_by_backpressure_is_not_silence() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        // The socket thread waited 5 minutes for queue room right after a frame.
        l.blocked(Duration::from_secs(300));
        assert_eq!(l.check(t0 + Duration::from_secs(301), &c), Check::Fine);
        assert_eq!(l.check(t0 + Duration::from_secs(330), &c), Check::SendPing);
    }

    #[test]
    fn frames_read_before_a_backpressure_wait_do_not_bring_the_silence_back() {
        let c = config();
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        // One read from the kernel brought two frames; the first one's push waited 5 minutes.
        l.frame(t0);
        l.blocked(Duration::from_secs(300));
        // The second frame is decoded after the wait, stamped with the time of that read.
        l.frame(t0);
        assert_eq!(l.last_frame(), t0 + Duration::from_secs(300));
        assert_eq!(l.check(t0 + Duration::from_secs(301), &c), Check::Fine);
    }
}
