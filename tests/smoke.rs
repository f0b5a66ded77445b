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
    assert_eq!(health.channels().len(), 1);
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
    let _ = client.subscribe(&topics).unwrap();
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
            threshold: 3,
            ..
        }
    )));
    assert_eq!(
        client.health().listeners().get("v2.users.*.presence"),
        Some(&3)
    );
    assert_eq!(client.health().listener_count(), 4);
    drop(guards);
    assert_eq!(client.health().listener_count(), 1);
}

#[test]
fn system_topics_cannot_be_listened_to_as_notifications() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    for pattern in ["channel.metadata", "v2.system.socket_closing"] {
        let err = client.on(pattern, |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                genesys_notify::Error::Topic {
                    error: genesys_notify::TopicError::Reserved,
                    ..
                }
            ),
            "{pattern}: {err:?}"
        );
    }
    // A wildcard that could also match them is fine: it is for notifications.
    let _ok = client.on("v2.*.*", |_| {}).unwrap();
}

#[test]
fn concurrent_shutdowns_all_wait_for_the_one_that_runs() {
    let emu = emulator();
    let client = Arc::new(builder(&emu).build().unwrap());
    let _ = client.subscribe(presence_topics(2)).unwrap();
    let results: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            std::thread::spawn(move || {
                let r = c.shutdown(Duration::from_secs(5));
                // Whoever returns, the client is shut down by then: its channel has stopped.
                let stopped = c
                    .health()
                    .channels()
                    .iter()
                    .all(|ch| ch.state == genesys_notify::ChannelState::Stopped);
                (r.is_ok(), stopped)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(
        results.iter().all(|&(ok, stopped)| ok && stopped),
        "{results:?}"
    );
}
