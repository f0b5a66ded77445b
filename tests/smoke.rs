//! The shortest path through the product: subscribe, receive, shut down.
mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::*;

#[test]
fn subscribed_presence_event_reaches_the_listener() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let _guard = client
        .on("v2.users.*.presence", move |e| {
            assert_eq!(e.body_value().unwrap()["seq"], 7);
            g.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let topics = presence_topics(3);
    let report = client.subscribe(&topics).unwrap();
    assert_eq!(report.permitted.len(), 3);
    assert_eq!(emu.publish(&topics[1], presence_body(7)), 1);
    assert!(wait_until(Duration::from_secs(5), || got
        .load(Ordering::SeqCst)
        == 1));
    let health = client.health();
    assert_eq!(health.channels.len(), 1);
    assert_eq!(health.received(), 1);
    client.shutdown(Duration::from_secs(2)).unwrap();
    println!("{:#?}", lifecycle.snapshot());
}
