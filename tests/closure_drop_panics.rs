//! A listener's closure whose `Drop` panics (something it captured panics when dropped) cannot
//! take the client down (guarantee 6): where a dispatcher thread releases it (its guard was
//! dropped inside its own callback), the panic is caught and reported and the thread goes on
//! delivering every event; a shutdown that releases it returns normally.
mod util;

use genesys_notify::{Event, Lifecycle, ListenerGuard};
use parking_lot::Mutex;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);

/// Panics when dropped (unless already unwinding).
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a captured value panicked in drop");
        }
    }
}

#[test]
fn a_closure_panicking_in_drop_on_a_dispatcher_thread_is_reported_and_delivery_goes_on() {
    let emu = emulator();
    // One dispatcher thread: every topic's events go through the thread that releases it.
    let client = builder(&emu).dispatcher_threads(1).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let topic = presence_topics(1).remove(0);

    let own: Arc<Mutex<Option<ListenerGuard>>> = Arc::default();
    let slot = own.clone();
    let captured = PanicsOnDrop;
    *own.lock() = Some(
        client
            .on(&topic, move |_: &Event| {
                let _held = &captured;
                // Dropped inside its own callback: the dispatcher thread drops the closure
                // when this call returns.
                drop(slot.lock().take());
            })
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let _witness = client
        .on(&topic, move |event: &Event| {
            let _ = tx.send(event.body_value().unwrap()["seq"].as_u64().unwrap());
        })
        .unwrap();
    let _ = client.subscribe([&topic]).unwrap();
    wait_sockets(&emu, 1);
    for seq in 0..5 {
        emu.publish(&topic, presence_body(seq));
    }
    let got: Vec<u64> = (0..5).filter_map(|_| rx.recv_timeout(WAIT).ok()).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4], "the dispatcher thread died");
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::ListenerPanicked { message, .. } if message.contains("panicked in drop")
    )));
    assert_eq!(client.health().listener_panics(), 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_forgotten_closure_panicking_in_drop_does_not_break_shutdown() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let captured = PanicsOnDrop;
    client
        .on("v2.users.*.presence", move |_: &Event| {
            let _held = &captured;
        })
        .unwrap()
        .forget();
    let _ = client.subscribe(presence_topics(1)).unwrap();
    wait_sockets(&emu, 1);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        client.shutdown(Duration::from_secs(5))
    }));
    assert!(matches!(outcome, Ok(Ok(()))), "shutdown panicked or failed");
    // Every server-side subscription was removed all the same.
    assert!(emu.requests().iter().any(|r| r.method == "DELETE"));
}
