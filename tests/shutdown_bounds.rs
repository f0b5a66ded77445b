//! Shutdown and drop honour their timeout whatever the listeners hold (issue 8 #2), a shutdown
//! that timed out does not poison the later ones, and a shutdown called from a callback
//! accounts for the events queued behind it (issue 8 #7).
mod util;

use genesys_notify::{Client, ListenerGuard};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);
const SHUTDOWN: Duration = Duration::from_secs(5);

/// Runs `stop` on its own thread and says whether it returned within `WAIT + SHUTDOWN`.
fn returns_in_time(stop: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        stop();
        let _ = tx.send(());
    });
    rx.recv_timeout(WAIT + SHUTDOWN).is_ok()
}

/// A client with an event listener and a lifecycle listener whose closures own other guards,
/// their own guards forgotten with [`ListenerGuard::forget`].
fn client_with_forgotten_guard_owners(emu: &genesys_notify::emulator::Emulator) -> Client {
    let client = builder(emu).build().unwrap();
    let topic = presence_topics(1).remove(0);
    let owned: ListenerGuard = client.on(&topic, |_| {}).unwrap();
    client
        .on(&topic, move |_| {
            let _ = &owned;
        })
        .unwrap()
        .forget();
    let owned: ListenerGuard = client.on_lifecycle(|_| {}).unwrap();
    client
        .on_lifecycle(move |_| {
            let _ = &owned;
        })
        .unwrap()
        .forget();
    let _ = client.subscribe([&topic]).unwrap();
    client
}

#[test]
fn shutdown_returns_when_a_forgotten_listener_owns_another_guard() {
    let emu = emulator();
    let client = client_with_forgotten_guard_owners(&emu);
    let result = Arc::new(Mutex::new(None));
    let r = result.clone();
    assert!(
        returns_in_time(move || *r.lock() = Some(client.shutdown(SHUTDOWN).is_ok())),
        "shutdown blocked for ever"
    );
    assert_eq!(*result.lock(), Some(true));
}

#[test]
fn drop_returns_when_a_forgotten_listener_owns_another_guard() {
    let emu = emulator();
    let client = client_with_forgotten_guard_owners(&emu);
    assert!(
        returns_in_time(move || drop(client)),
        "drop blocked for ever"
    );
}

/// A guard leaked with `std::mem::forget`: its closure (and what it holds) is still released
/// by the shutdown, with no lock held.
#[test]
fn shutdown_releases_closures_whose_guard_was_leaked() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let topic = presence_topics(1).remove(0);
    let captured = Arc::new(());
    let owned = client.on(&topic, |_| {}).unwrap();
    let held = captured.clone();
    std::mem::forget(
        client
            .on(&topic, move |_| {
                let _ = (&held, &owned);
            })
            .unwrap(),
    );
    assert_eq!(Arc::strong_count(&captured), 2);
    assert!(returns_in_time(move || client.shutdown(SHUTDOWN).unwrap()));
    assert_eq!(Arc::strong_count(&captured), 1, "the closure was dropped");
}

#[test]
fn a_shutdown_that_timed_out_does_not_make_later_ones_time_out() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let _ = client.subscribe(presence_topics(2)).unwrap();
    // No thread can have closed its socket and deleted its subscriptions in no time at all.
    assert!(client.shutdown(Duration::ZERO).is_err());
    // Everything does stop soon after: a later call says so.
    client.shutdown(SHUTDOWN).unwrap();
    client.shutdown(Duration::ZERO).unwrap();
}

/// Issue 8 #7: the events queued behind a callback that shuts the client down are counted as
/// dropped (they can no longer be delivered), never as unrouted.
#[test]
fn shutdown_from_a_callback_counts_the_events_queued_behind_it_as_dropped() {
    const BEHIND: u64 = 5;
    let emu = emulator();
    let client = Arc::new(builder(&emu).dispatcher_threads(1).build().unwrap());
    let topic = presence_topics(1).remove(0);
    let _ = client.subscribe([&topic]).unwrap();
    wait_sockets(&emu, 1);
    let outcome = Arc::new(Mutex::new(None));
    let calls = Arc::new(AtomicU64::new(0));
    let _guard = {
        let (weak, outcome, calls): (Weak<Client>, _, _) =
            (Arc::downgrade(&client), outcome.clone(), calls.clone());
        client
            .on(&topic, move |_| {
                if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                    return;
                }
                let Some(client) = weak.upgrade() else {
                    return;
                };
                let queued =
                    wait_until(WAIT, || client.health().queue_depths()[0] as u64 >= BEHIND);
                *outcome.lock() = Some((queued, client.shutdown(SHUTDOWN).is_ok()));
            })
            .unwrap()
    };
    for seq in 0..=BEHIND {
        emu.publish(&topic, presence_body(seq));
    }
    assert!(wait_until(WAIT + SHUTDOWN, || outcome.lock().is_some()));
    assert_eq!(
        *outcome.lock(),
        Some((true, true)),
        "(queued behind, shut down)"
    );
    assert!(
        wait_until(WAIT, || {
            let h = client.health();
            h.delivered() + h.dropped() + h.unrouted() == BEHIND + 1
        }),
        "{:?}",
        client.health()
    );
    let health = client.health();
    assert_eq!(health.received(), BEHIND + 1);
    assert_eq!(
        health.unrouted(),
        0,
        "queued events are not unrouted: {health:?}"
    );
    assert_eq!(health.delivered(), 1);
    assert_eq!(health.dropped(), BEHIND);
    assert_eq!(health.channels()[0].dropped, BEHIND);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A `subscribe` waiting for a new channel's socket when another thread shuts the client down
/// returns promptly with `Error::Shutdown` (what a caller matches on to stop retrying), not a
/// "channel stopped" error naming the user's own request.
#[test]
fn a_subscribe_cut_short_by_shutdown_returns_the_shutdown_error() {
    use genesys_notify::emulator::Fault;
    let emu = emulator();
    let client = Arc::new(
        builder(&emu)
            .connect_timeout(Duration::from_secs(20))
            .request_timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    );
    emu.inject(Fault::HangHandshakes { times: 100 });
    let subscriber = client.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            subscriber
                .subscribe(presence_topics(1))
                .map_err(genesys_notify::Error::from),
        );
    });
    // The subscribe is waiting for the socket (its handshake hangs).
    assert!(emu.wait_for(Duration::from_secs(10), |e| !e.channels().is_empty()));
    std::thread::sleep(Duration::from_millis(200));
    client.shutdown(Duration::from_secs(5)).unwrap();
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribe returns after shutdown");
    assert!(
        matches!(result, Err(genesys_notify::Error::Shutdown)),
        "{result:?}"
    );
}

/// A shutdown or an unsubscribe of every topic while the socket's handshake hangs cuts the
/// attempt short: no `Reconnecting` is announced for a channel that is stopping.
#[test]
fn a_stop_during_a_hanging_handshake_announces_no_reconnection() {
    use genesys_notify::Lifecycle;
    for unsubscribe in [true, false] {
        let emu = emulator();
        // The first reconnection attempt is hanging in its handshake.
        let (client, lifecycle, topics) = hanging_reconnection(&emu);
        std::thread::sleep(Duration::from_millis(300));
        let before = lifecycle.snapshot().len();
        if unsubscribe {
            assert_eq!(client.unsubscribe(&topics).unwrap().len(), 2);
        }
        client.shutdown(Duration::from_secs(5)).unwrap();
        let after: Vec<Lifecycle> = lifecycle.snapshot().split_off(before);
        assert!(
            !after
                .iter()
                .any(|e| matches!(e, Lifecycle::Reconnecting { .. })),
            "unsubscribe {unsubscribe}: {after:#?}"
        );
    }
}

/// Issue 17, point 1, as reproduced: a forgotten listener's closure owns the guard of a listener
/// whose callback is still running (blocked). The dispatcher gives up on that callback at the
/// shutdown's deadline; dropping the closures must then not wait for it through the guard it
/// owned. Before the fix, `shutdown(500 ms)` returned only when the blocked callback did.
#[test]
fn shutdown_keeps_its_timeout_when_a_closure_owns_the_guard_of_a_running_callback() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let topic = presence_topics(1).remove(0);
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, release_rx) = (Mutex::new(started_tx), Mutex::new(release_rx));
    let slow: ListenerGuard = client
        .on(&topic, move |_| {
            let _ = started_tx.lock().send(());
            // Blocks until released; 20 s at most, so that the test ends whatever happens.
            let _ = release_rx.lock().recv_timeout(Duration::from_secs(20));
        })
        .unwrap();
    client
        .on_lifecycle(move |_| {
            let _ = &slow;
        })
        .unwrap()
        .forget();
    let _ = client.subscribe([&topic]).unwrap();
    emu.publish(&topic, presence_body(1));
    started_rx
        .recv_timeout(WAIT)
        .expect("the slow callback started");
    let started = std::time::Instant::now();
    let result = client.shutdown(Duration::from_millis(500));
    let took = started.elapsed();
    let _ = release_tx.send(());
    assert!(
        result.is_err(),
        "the blocked callback cannot be joined: {result:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "shutdown(500 ms) waited {took:?} for the blocked callback"
    );
}

/// Issue 17, point 8: a shutdown during a REST call that hangs (here the state read that follows
/// a subscribe, held by the emulator) cuts the call and returns `Ok` on time. Before, the call
/// kept its thread until the 30 s request timeout and `shutdown(5 s)` returned `Timeout`.
#[test]
fn a_shutdown_during_a_hanging_rest_call_cuts_it_and_returns_ok_on_time() {
    let emu = emulator();
    let hold = emu.hold_state_responses();
    let client = builder(&emu)
        .snapshots(genesys_notify::Snapshots::AfterGapsAndSubscribe)
        .build()
        .unwrap();
    let topic = presence_topics(1).remove(0);
    let _ = client.subscribe([&topic]).unwrap();
    assert!(hold.wait_held(1, WAIT), "the state read is held");
    let started = std::time::Instant::now();
    let result = client.shutdown(SHUTDOWN);
    let took = started.elapsed();
    drop(hold);
    assert!(result.is_ok(), "{result:?} after {took:?}");
}
