//! A panicking listener cannot take the client down (crate guarantee 6): the panic is caught
//! and reported as `Lifecycle::ListenerPanicked` and in `health().listener_panics`, every other
//! listener of the same and of other topics still gets every event, and the dispatcher thread
//! that caught the panic goes on delivering.
mod util;

use genesys_notify::{Event, Lifecycle};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);

/// Every event a listener saw: (topic, seq), in the order it saw them.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, u64)>>>);

impl Seen {
    fn push(&self, e: &Event) {
        let seq = e.body_value().unwrap()["seq"].as_u64().unwrap();
        self.0.lock().push((e.topic().to_owned(), seq));
    }

    fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// Seqs per topic, in the order received.
    fn by_topic(&self) -> BTreeMap<String, Vec<u64>> {
        let mut map: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (topic, seq) in self.0.lock().iter() {
            map.entry(topic.clone()).or_default().push(*seq);
        }
        map
    }
}

fn routing_topic(n: usize) -> String {
    format!("v2.users.{}.routingstatus", user_id(n))
}

#[test]
fn panicking_listener_is_reported_and_others_get_every_event() {
    let emu = emulator();
    // One dispatcher thread: the thread that catches the panics is the one that must go on.
    let client = builder(&emu).dispatcher_threads(1).build().unwrap();
    let lifecycle = Recorder::new(&client);

    let presence = presence_topics(2);
    let routing = routing_topic(0);

    // Same pattern, registered before and after the panicking listener, so the panic happens
    // between two listeners of the same route.
    let before = Seen::default();
    let b = before.clone();
    let _before = client
        .on("v2.users.*.presence", move |e| b.push(e))
        .unwrap();
    let _panicker = client
        .on("v2.users.*.presence", |e: &Event| {
            let seq = e.body_value().unwrap()["seq"].as_u64().unwrap();
            panic!("boom on seq {seq}");
        })
        .unwrap();
    let after = Seen::default();
    let a = after.clone();
    let _after = client
        .on("v2.users.*.presence", move |e| a.push(e))
        .unwrap();
    // An exact-topic listener on one of the panicking listener's topics.
    let exact = Seen::default();
    let x = exact.clone();
    let _exact = client.on(&presence[0], move |e| x.push(e)).unwrap();
    // A listener on another topic, served by the same (only) dispatcher thread.
    let other = Seen::default();
    let o = other.clone();
    let _other = client
        .on("v2.users.*.routingstatus", move |e| o.push(e))
        .unwrap();

    let mut all = presence.clone();
    all.push(routing.clone());
    let report = client.subscribe(&all).unwrap();
    assert_eq!(report.permitted.len(), 3, "{report:?}");
    wait_sockets(&emu, 1);

    // Phase 1: interleave the three topics.
    let rounds = 10u64;
    let mut seq = 0;
    for _ in 0..rounds {
        for topic in &all {
            seq += 1;
            assert_eq!(emu.publish(topic, presence_body(seq)), 1);
        }
    }
    let presence_events = (rounds * 2) as usize;
    assert!(
        wait_until(WAIT, || before.len() == presence_events
            && after.len() == presence_events
            && other.len() == rounds as usize
            && exact.len() == rounds as usize),
        "before {} after {} other {} exact {}",
        before.len(),
        after.len(),
        other.len(),
        exact.len()
    );
    let panicked = |e: &Lifecycle| matches!(e, Lifecycle::ListenerPanicked { .. });
    assert!(wait_until(WAIT, || lifecycle.count(panicked) == presence_events));

    // Every panic is reported with the listener's pattern, the event's topic and the message.
    let mut reported = Vec::new();
    for event in lifecycle.snapshot() {
        if let Lifecycle::ListenerPanicked {
            pattern,
            topic,
            message,
            ..
        } = event
        {
            assert_eq!(pattern, "v2.users.*.presence");
            assert!(presence.contains(&topic), "unexpected topic {topic}");
            reported.push((topic, message));
        }
    }
    for (topic, seqs) in before.by_topic() {
        for seq in seqs {
            let message = format!("boom on seq {seq}");
            assert!(
                reported.iter().any(|(t, m)| *t == topic && *m == message),
                "no ListenerPanicked for {topic} / {message}: {reported:?}"
            );
        }
    }
    assert_eq!(client.health().listener_panics(), presence_events as u64);

    // Phase 2: the dispatcher thread that caught all those panics still delivers.
    for topic in &all {
        seq += 1;
        assert_eq!(emu.publish(topic, presence_body(seq)), 1);
    }
    assert!(
        wait_until(WAIT, || before.len() == presence_events + 2
            && after.len() == presence_events + 2
            && other.len() == rounds as usize + 1
            && exact.len() == rounds as usize + 1),
        "after the panics: before {} after {} other {} exact {}",
        before.len(),
        after.len(),
        other.len(),
        exact.len()
    );
    assert!(wait_until(WAIT, || lifecycle.count(panicked) == presence_events + 2));

    // Per topic, every listener saw every seq, in publication order.
    let expected: BTreeMap<String, Vec<u64>> = {
        let mut map: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut s = 0;
        for _ in 0..=rounds {
            for topic in &all {
                s += 1;
                map.entry(topic.clone()).or_default().push(s);
            }
        }
        map
    };
    let expected_presence: BTreeMap<String, Vec<u64>> = expected
        .iter()
        .filter(|(t, _)| presence.contains(t))
        .map(|(t, v)| (t.clone(), v.clone()))
        .collect();
    assert_eq!(before.by_topic(), expected_presence);
    assert_eq!(after.by_topic(), expected_presence);
    assert_eq!(
        exact.by_topic(),
        BTreeMap::from([(presence[0].clone(), expected[&presence[0]].clone())])
    );
    assert_eq!(
        other.by_topic(),
        BTreeMap::from([(routing.clone(), expected[&routing].clone())])
    );

    // A panicking listener is not a delivery failure: nothing unrouted or dropped, and the
    // socket never noticed.
    let health = client.health();
    assert_eq!(health.listener_panics(), presence_events as u64 + 2);
    assert_eq!(health.received(), seq);
    assert_eq!(health.delivered(), seq);
    assert_eq!(health.unrouted(), 0);
    assert_eq!(health.dropped(), 0);
    assert_eq!(emu.channels()[0].connections, 1);
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn panic_with_a_non_string_payload_is_reported_too() {
    let emu = emulator();
    let client = builder(&emu).dispatcher_threads(1).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let _panicker = client
        .on("v2.users.*.presence", |_: &Event| {
            std::panic::panic_any(42_u32)
        })
        .unwrap();
    let seen = Seen::default();
    let s = seen.clone();
    let _listener = client
        .on("v2.users.*.presence", move |e| s.push(e))
        .unwrap();
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    wait_sockets(&emu, 1);
    for seq in 1..=3 {
        assert_eq!(emu.publish(&topics[0], presence_body(seq)), 1);
    }
    assert!(wait_until(WAIT, || seen.len() == 3));
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::ListenerPanicked { message, topic, .. }
            if message.contains("non-string") && *topic == topics[0]
    )));
    assert!(wait_until(WAIT, || client.health().listener_panics() == 3));
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn panicking_lifecycle_listener_does_not_stop_lifecycle_delivery() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let _panicker = client
        .on_lifecycle(|_: &Lifecycle| panic!("lifecycle boom"))
        .unwrap();
    // Registered after the panicking one: it must still see every lifecycle event.
    let lifecycle = Recorder::new(&client);
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    wait_sockets(&emu, 1);
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::Subscribed { .. })));
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::Connected { .. })));
    let panics_so_far = client.health().listener_panics();
    assert!(panics_so_far >= 2, "panics counted: {panics_so_far}");

    // Later lifecycle events still reach the recorder (unrouted: no event listener).
    assert_eq!(emu.publish(&topics[0], presence_body(1)), 1);
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::UnroutedMessage { .. })));
    assert!(wait_until(WAIT, || client.health().listener_panics() > panics_so_far));
    client.shutdown(Duration::from_secs(2)).unwrap();
}
