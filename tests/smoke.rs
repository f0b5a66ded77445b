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

#[test]
fn typed_body_gives_a_serde_error_when_the_shape_does_not_fit() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)] // only deserialised
    struct Presence {
        #[serde(rename = "presenceDefinition")]
        presence_definition: Definition,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)] // only deserialised
    struct Definition {
        #[serde(rename = "systemPresence")]
        system_presence: String,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)] // only deserialised
    struct RoutingStatus {
        #[serde(rename = "routingStatus")]
        routing_status: String,
    }
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let results = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = results.clone();
    let _guard = client
        .on("v2.users.*.presence", move |e| {
            let good = e
                .body::<Presence>()
                .map(|p| p.presence_definition.system_presence);
            let bad = e.body::<RoutingStatus>().map_err(|err| err.to_string());
            sink.lock().push((good.unwrap(), bad.unwrap_err()));
        })
        .unwrap();
    let topics = presence_topics(1);
    client.subscribe(&topics).unwrap();
    emu.publish(&topics[0], presence_body(1));
    assert!(wait_until(Duration::from_secs(5), || results.lock().len() == 1));
    let (good, bad) = results.lock()[0].clone();
    assert_eq!(good, "AVAILABLE");
    assert!(bad.contains("missing field `routingStatus`"), "{bad}");
}

#[test]
fn passing_the_listener_threshold_raises_a_lifecycle_warning() {
    let emu = emulator();
    let client = builder(&emu).listener_warning_threshold(3).build().unwrap();
    let lifecycle = Recorder::new(&client); // listener 1
    let guards: Vec<_> = (0..3)
        .map(|_| client.on("v2.users.*.presence", |_| {}).unwrap())
        .collect(); // listeners 2, 3, 4: the 4th passes the threshold of 3
    assert!(lifecycle.wait(Duration::from_secs(5), |e| matches!(
        e,
        genesys_notify::Lifecycle::TooManyListeners {
            count: 4,
            threshold: 3
        }
    )));
    assert_eq!(
        client.health().listeners.get("v2.users.*.presence"),
        Some(&3)
    );
    assert_eq!(client.health().listener_count(), 4);
    drop(guards);
    assert_eq!(client.health().listener_count(), 1);
}
