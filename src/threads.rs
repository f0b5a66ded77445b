//! threads.rs holds the one helper every worker uses to wait for a thread within a deadline; it
//! never spawns a thread and never blocks past the deadline it is given.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Joins `handle` if it finishes before `deadline`; otherwise gives it back, still running.
pub(crate) fn join_until(handle: JoinHandle<()>, deadline: Instant) -> Option<JoinHandle<()>> {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return Some(handle);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = handle.join();
    None
}
