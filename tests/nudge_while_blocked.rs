//! A callback that calls `subscribe` while its channel's thread is blocked pushing into the
//! callback's own full queue (`Backpressure::Block`) is served (issue 17 point 6): the
//! subscribe finds the channel gone (404) and nudges the thread, whose blocked push gives way
//! to the nudge; the event it was pushing is kept and delivered in order, none is lost.
mod util;

use genesys_notify::emulator::Fault;
use genesys_notify::Backpressure;
use parking_lot::Mutex;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use util::*;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_callback_subscribing_while_its_channel_thread_blocks_on_its_queue_is_served() {
    let emu = emulator();
    let client = Arc::new(
        builder(&emu)
            .dispatcher_threads(1)
            .queue_capacity(1)
            .backpressure(Backpressure::Block)
            .build()
            .unwrap(),
    );
    let topics = presence_topics(2);
    let seqs: Arc<Mutex<Vec<u64>>> = Arc::default();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (result_tx, result_rx) = mpsc::channel::<(bool, String, Duration)>();
    let guard = {
        let (seqs, weak, other) = (seqs.clone(), Arc::downgrade(&client), topics[1].clone());
        let (entered_tx, result_tx) = (Mutex::new(entered_tx), Mutex::new(result_tx));
        let release_rx = Mutex::new(release_rx);
        client
            .on(&topics[0], move |event| {
                // Snapshots after the gap have the REST shape, without `seq`.
                let Some(seq) = event.body_value().ok().and_then(|v| v["seq"].as_u64()) else {
                    return;
                };
                seqs.lock().push(seq);
                if seq != 0 {
                    return;
                }
                let _ = entered_tx.lock().send(());
                // Held until the channel thread is blocked pushing into this thread's queue.
                let _ = release_rx.lock().recv_timeout(WAIT);
                let Some(client) = weak.upgrade() else {
                    return;
                };
                let started = Instant::now();
                let result = client.subscribe([&other]);
                let _ = result_tx.lock().send((
                    result.is_ok(),
                    format!("{result:?}"),
                    started.elapsed(),
                ));
            })
            .unwrap()
    };
    let _ = client.subscribe([&topics[0]]).unwrap();
    wait_sockets(&emu, 1);
    let channel = emu.channels()[0].id.clone();
    assert_eq!(emu.publish(&topics[0], presence_body(0)), 1);
    entered_rx
        .recv_timeout(WAIT)
        .expect("the callback got event 0");
    // Event 1 fills the queue of one; the channel thread blocks pushing event 2.
    assert_eq!(emu.publish(&topics[0], presence_body(1)), 1);
    assert_eq!(emu.publish(&topics[0], presence_body(2)), 1);
    assert!(
        wait_until(WAIT, || {
            let health = client.health();
            health.received() >= 3 && health.queue_depths() == [1]
        }),
        "the channel thread blocked on the full queue"
    );
    // The channel is gone: the callback's subscribe gets 404 and nudges the blocked thread.
    emu.inject(Fault::ExpireChannel {
        channel_id: channel,
    });
    release_tx.send(()).unwrap();
    let (ok, result, took) = result_rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the callback's subscribe returned");
    // Before the fix the thread never saw the nudge: the subscribe returned Timeout at its
    // deadline (15 s here).
    assert!(
        ok,
        "subscribe from the callback failed after {took:?}: {result}"
    );
    assert!(
        wait_until(WAIT, || seqs.lock().len() >= 3),
        "delivered: {:?}",
        seqs.lock()
    );
    assert_eq!(*seqs.lock(), [0, 1, 2], "nothing lost or reordered");
    drop(guard);
    client.shutdown(Duration::from_secs(20)).unwrap();
}
