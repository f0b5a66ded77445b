//! Slow callbacks make events wait in the dispatcher queues; the health snapshot shows the wait
//! and a lifecycle warning fires before any event is dropped.
mod util;

use genesys_notify::Lifecycle;
use std::time::Duration;
use util::*;

#[test]
fn slow_callback_shows_in_dispatch_wait_and_raises_the_lag_warning() {
    let emu = emulator();
    let client = builder(&emu)
        .dispatcher_threads(1)
        .dispatch_lag_threshold(Duration::from_millis(50))
        .build()
        .unwrap();
    let lifecycle = Recorder::new(&client);
    let _slow = client
        .on("v2.users.*.presence", |_| {
            std::thread::sleep(Duration::from_millis(40))
        })
        .unwrap();
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    // 40 events at once: the last ones wait ~1.5 s behind the 40 ms callbacks, for over a
    // second, so a full one-second window closes with a p99 far above 50 ms.
    for seq in 0..40 {
        emu.publish(&topics[0], presence_body(seq));
    }
    assert!(
        lifecycle.wait(Duration::from_secs(10), |e| matches!(
            e,
            Lifecycle::DispatchLagHigh { p99, threshold, .. }
                if *p99 > Duration::from_millis(50) && *threshold == Duration::from_millis(50)
        )),
        "no DispatchLagHigh: {:?}",
        lifecycle.snapshot()
    );
    let wait = client.health().dispatch_wait();
    assert!(wait.samples > 0);
    assert!(wait.max.unwrap() >= Duration::from_millis(500), "{wait:?}");
    assert!(wait.p99.unwrap() > Duration::from_millis(50), "{wait:?}");
    assert_eq!(client.health().dropped(), 0);
    // The warning fires once per episode, not once per event.
    assert_eq!(
        lifecycle.count(|e| matches!(e, Lifecycle::DispatchLagHigh { .. })),
        1
    );
}

#[test]
fn fast_callbacks_keep_the_wait_low_and_raise_no_warning() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let _fast = client.on("v2.users.*.presence", |_| {}).unwrap();
    let topics = presence_topics(4);
    let _ = client.subscribe(&topics).unwrap();
    for seq in 0..200 {
        emu.publish(&topics[(seq % 4) as usize], presence_body(seq));
    }
    assert!(wait_until(Duration::from_secs(10), || client
        .health()
        .delivered()
        == 200));
    let wait = client.health().dispatch_wait();
    // Only the last one to two seconds are kept; on a slow machine some may have aged out.
    assert!(wait.samples > 0 && wait.samples <= 200, "{wait:?}");
    assert!(wait.p50.unwrap() < Duration::from_millis(50), "{wait:?}");
    assert_eq!(
        lifecycle.count(|e| matches!(e, Lifecycle::DispatchLagHigh { .. })),
        0
    );
}
