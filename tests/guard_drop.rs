//! Dropping a listener's guard while events flow: once `drop` returns the callback is not
//! running and never runs again; dropping it inside its own callback returns (issue #2,
//! point 3). Dropping it frees the closure and what it captured at once, not at the next event
//! (issue 8 #3).
mod util;

use genesys_notify::emulator::Emulator;
use genesys_notify::ListenerGuard;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use util::*;

const WAIT: Duration = Duration::from_secs(10);

/// Publishes round robin to `topics` until stopped, as fast as the emulator takes them.
struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Publisher {
    fn start(emu: &Arc<Emulator>, topics: Vec<String>) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let (emu, flag) = (emu.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seq = 0;
            while !flag.load(Ordering::Relaxed) {
                for topic in &topics {
                    emu.publish(topic, presence_body(seq));
                }
                seq += 1;
                // Keep the client's queues short so that a round does not wait for a backlog.
                std::thread::sleep(Duration::from_micros(200));
            }
            seq
        });
        Publisher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A count of events delivered to a listener that stays registered: proof that events keep
/// flowing after a guard was dropped.
fn witness(client: &genesys_notify::Client) -> (Arc<AtomicU64>, ListenerGuard) {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let guard = client
        .on("v2.users.*.presence", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    (count, guard)
}

#[test]
fn after_drop_returns_the_callback_is_not_running_and_never_runs_again() {
    let emu = Arc::new(emulator());
    let client = builder(&emu).dispatcher_threads(4).build().unwrap();
    let topics = presence_topics(16);
    let _ = client.subscribe(&topics).unwrap();
    let (witnessed, _witness) = witness(&client);
    let _publisher = Publisher::start(&emu, topics);

    let mut busy_rounds = 0;
    for round in 0..12 {
        // How many threads are inside the callback now; the callback lingers a little so that
        // a drop often lands while it runs (on up to 4 threads at once).
        let inside = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let late = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = {
            let (inside, calls, late, dropped) =
                (inside.clone(), calls.clone(), late.clone(), dropped.clone());
            client
                .on("v2.users.*.presence", move |_| {
                    inside.fetch_add(1, Ordering::SeqCst);
                    if dropped.load(Ordering::SeqCst) {
                        late.fetch_add(1, Ordering::SeqCst);
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                    let spin = Instant::now() + Duration::from_micros(300);
                    while Instant::now() < spin {
                        std::hint::spin_loop();
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
                .unwrap()
        };
        assert!(
            wait_until(WAIT, || calls.load(Ordering::SeqCst) >= 20),
            "round {round}: the listener got no events"
        );
        if inside.load(Ordering::SeqCst) > 0 {
            busy_rounds += 1;
        }
        drop(guard);
        dropped.store(true, Ordering::SeqCst);
        assert_eq!(
            inside.load(Ordering::SeqCst),
            0,
            "round {round}: the callback is still running after drop returned"
        );
        let calls_at_drop = calls.load(Ordering::SeqCst);
        // Events keep flowing through every shard for a while; none reaches the dropped one.
        let seen = witnessed.load(Ordering::SeqCst);
        assert!(
            wait_until(WAIT, || witnessed.load(Ordering::SeqCst) >= seen + 100),
            "round {round}: events stopped flowing"
        );
        assert_eq!(
            late.load(Ordering::SeqCst),
            0,
            "round {round}: called after drop"
        );
        assert_eq!(calls.load(Ordering::SeqCst), calls_at_drop, "round {round}");
        assert_eq!(inside.load(Ordering::SeqCst), 0, "round {round}");
    }
    // The race was exercised: some drops began while the callback was running.
    println!("rounds where drop began during a call: {busy_rounds} of 12");
    assert!(busy_rounds > 0, "no drop overlapped a running callback");
    let health = client.health();
    assert_eq!(health.listener_count(), 1, "only the witness is left");
    assert_eq!(health.dropped(), 0);
    drop(_publisher);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn dropping_the_guard_inside_its_own_callback_returns_and_stops_the_calls() {
    let emu = Arc::new(emulator());
    let client = builder(&emu).dispatcher_threads(4).build().unwrap();
    let topics = presence_topics(4);
    let _ = client.subscribe(&topics).unwrap();
    let (witnessed, _witness) = witness(&client);
    let _publisher = Publisher::start(&emu, topics.clone());

    for round in 0..5 {
        let calls = Arc::new(AtomicU64::new(0));
        let returned = Arc::new(AtomicBool::new(false));
        let late = Arc::new(AtomicU64::new(0));
        let slot: Arc<Mutex<Option<ListenerGuard>>> = Arc::new(Mutex::new(None));
        // One exact topic: its events go through one dispatcher thread, one at a time.
        let guard = {
            let (calls, returned, late, slot) =
                (calls.clone(), returned.clone(), late.clone(), slot.clone());
            client
                .on(&topics[round % topics.len()], move |_| {
                    if returned.load(Ordering::SeqCst) {
                        late.fetch_add(1, Ordering::SeqCst);
                    }
                    if calls.fetch_add(1, Ordering::SeqCst) + 1 == 5 {
                        let guard = slot.lock().take();
                        drop(guard);
                        returned.store(true, Ordering::SeqCst);
                    }
                })
                .unwrap()
        };
        *slot.lock() = Some(guard);
        assert!(
            wait_until(WAIT, || returned.load(Ordering::SeqCst)),
            "round {round}: drop inside the callback did not return (deadlock?) after {} calls",
            calls.load(Ordering::SeqCst)
        );
        let seen = witnessed.load(Ordering::SeqCst);
        assert!(
            wait_until(WAIT, || witnessed.load(Ordering::SeqCst) >= seen + 100),
            "round {round}: events stopped flowing: the dispatcher thread is stuck"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 5, "round {round}");
        assert_eq!(late.load(Ordering::SeqCst), 0, "round {round}");
    }
    assert_eq!(
        client.health().listener_count(),
        1,
        "only the witness is left"
    );
    drop(_publisher);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn dropping_a_lifecycle_guard_inside_its_own_callback_returns() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let returned = Arc::new(AtomicBool::new(false));
    let slot: Arc<Mutex<Option<ListenerGuard>>> = Arc::new(Mutex::new(None));
    let guard = {
        let (calls, returned, slot) = (calls.clone(), returned.clone(), slot.clone());
        client
            .on_lifecycle(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                drop(slot.lock().take());
                returned.store(true, Ordering::SeqCst);
            })
            .unwrap()
    };
    *slot.lock() = Some(guard);
    let lifecycle = Recorder::new(&client);
    // Subscribing produces several lifecycle events (channel created, connected, subscribed).
    let _ = client.subscribe(presence_topics(2)).unwrap();
    assert!(wait_until(WAIT, || returned.load(Ordering::SeqCst)));
    // The lifecycle thread is not stuck: a later event reaches the recorder.
    let _ = client.subscribe(presence_topics(1)).unwrap(); // a duplicate, reported on the lifecycle thread
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        genesys_notify::Lifecycle::DuplicateSubscription { .. }
    )));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn dropping_another_clients_guard_inside_a_callback_waits_for_its_running_call() {
    // Each client numbers its listeners from the same start, so the first listener of `a` and
    // the first of `b` may share a number: dropping b's guard inside a's callback must still
    // wait for b's running call.
    let emu = emulator();
    let a = builder(&emu).build().unwrap();
    let b = builder(&emu).build().unwrap();
    let topics = presence_topics(2);
    let (ta, tb) = (topics[0].clone(), topics[1].clone());

    let b_inside = Arc::new(AtomicBool::new(false));
    let b_release = Arc::new(AtomicBool::new(false));
    let guard_b = {
        let (inside, release) = (b_inside.clone(), b_release.clone());
        b.on(&tb, move |_| {
            inside.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !release.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            inside.store(false, Ordering::SeqCst);
        })
        .unwrap()
    };
    let slot = Arc::new(Mutex::new(Some(guard_b)));
    // None: not dropped yet; Some(x): b's callback was running (x) when the drop returned.
    let b_running_after_drop: Arc<Mutex<Option<bool>>> = Arc::new(Mutex::new(None));
    let _guard_a = {
        let (slot, inside, result) = (slot.clone(), b_inside.clone(), b_running_after_drop.clone());
        a.on(&ta, move |_| {
            let guard = slot.lock().take();
            if guard.is_some() {
                drop(guard);
                *result.lock() = Some(inside.load(Ordering::SeqCst));
            }
        })
        .unwrap()
    };
    let _ = a.subscribe([&ta]).unwrap();
    let _ = b.subscribe([&tb]).unwrap();

    emu.publish(&tb, presence_body(1));
    assert!(wait_until(WAIT, || b_inside.load(Ordering::SeqCst)));
    emu.publish(&ta, presence_body(1));
    // Give a's callback time to reach the drop, which must wait for b's call; then let b go.
    std::thread::sleep(Duration::from_millis(200));
    b_release.store(true, Ordering::SeqCst);
    assert!(wait_until(WAIT, || b_running_after_drop.lock().is_some()));
    assert_eq!(
        *b_running_after_drop.lock(),
        Some(false),
        "the drop returned while b's callback was still running"
    );
    a.shutdown(Duration::from_secs(5)).unwrap();
    b.shutdown(Duration::from_secs(5)).unwrap();
}

/// Issue 8 #3: "forward events into an mpsc channel and consume until it disconnects" ends
/// when the guard drops. The dispatcher thread's route cache used to keep the closure, and
/// with it the sender, until the next event of that topic, which never came.
#[test]
fn dropping_the_guard_ends_a_forwarding_channel() {
    let emu = emulator();
    let client = builder(&emu).dispatcher_threads(1).build().unwrap();
    let topic = presence_topics(1).remove(0);
    let _ = client.subscribe([&topic]).unwrap();
    wait_sockets(&emu, 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let guard = client
        .on(&topic, move |e| {
            let _ = tx.send(e.body_value().unwrap()["seq"].as_u64().unwrap());
        })
        .unwrap();
    for seq in 0..3 {
        emu.publish(&topic, presence_body(seq));
    }
    for seq in 0..3 {
        assert_eq!(rx.recv_timeout(WAIT), Ok(seq));
    }
    drop(guard);
    assert_eq!(
        rx.recv_timeout(WAIT),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
        "the closure (and its sender) outlived the guard"
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// Issue 8 #3: a closure that captured the client does not keep it alive once its guard is
/// dropped (the cycle client -> listeners -> closure -> client is broken by the drop).
#[test]
fn a_callback_holding_the_client_does_not_keep_it_alive() {
    let emu = emulator();
    let client = Arc::new(builder(&emu).dispatcher_threads(1).build().unwrap());
    let topic = presence_topics(1).remove(0);
    let _ = client.subscribe([&topic]).unwrap();
    wait_sockets(&emu, 1);
    let called = Arc::new(AtomicU64::new(0));
    let guard = {
        let (held, called) = (client.clone(), called.clone());
        client
            .on(&topic, move |_| {
                let _ = held.health();
                called.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
    };
    emu.publish(&topic, presence_body(0));
    assert!(wait_until(WAIT, || called.load(Ordering::SeqCst) == 1));
    let weak = Arc::downgrade(&client);
    drop(guard);
    assert_eq!(
        Arc::strong_count(&client),
        1,
        "the closure let go of the client"
    );
    drop(client);
    assert!(
        weak.upgrade().is_none(),
        "the client was dropped (and shut down)"
    );
}
