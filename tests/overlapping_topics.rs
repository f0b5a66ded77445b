//! Subscriptions are compared by what they expand to (issue #8, point 1): a combined topic
//! `v2.users.X?presence&routingStatus` and the plain `v2.users.X.presence`, or the same combined
//! topic with its parts in another order, overlap. The overlap is reported as a duplicate (or
//! the new topic narrowed to what it adds) and a listener never sees one published event twice.
//! Unsubscribing one part of a combined topic splits it: that part stops, the others flow.
//!
//! Each test uses one topic per channel, so that an overlap subscribed twice would land on two
//! channels and the emulator would send each event on both sockets.
mod util;

use genesys_notify::emulator::Emulator;
use genesys_notify::{Client, Lifecycle, ListenerGuard, Topic};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);

fn user(n: usize) -> String {
    format!("v2.users.{}", user_id(n))
}

fn topic(name: &str) -> Topic {
    name.parse().unwrap()
}

/// Counts the events each topic delivered to one listener of every user topic.
fn counter(client: &Client) -> (Arc<Mutex<HashMap<String, usize>>>, ListenerGuard) {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let sink = seen.clone();
    let guard = client
        .on("v2.users.*.*", move |e| {
            *sink.lock().entry(e.topic().to_owned()).or_insert(0) += 1;
        })
        .unwrap();
    (seen, guard)
}

/// Publishes one event on `name` and checks that it went out on one socket and reached the
/// listener once.
fn delivered_once(
    emu: &Emulator,
    client: &Client,
    seen: &Mutex<HashMap<String, usize>>,
    name: &str,
) {
    let before = seen.lock().get(name).copied().unwrap_or(0);
    let received = client.health().received();
    assert_eq!(
        emu.publish(name, presence_body(1)),
        1,
        "{name} is sent on one socket"
    );
    assert!(
        wait_until(WAIT, || seen.lock().get(name).copied().unwrap_or(0)
            > before),
        "{name} delivered"
    );
    // A second copy, if any, would be on another socket: give it time to arrive.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        seen.lock()[name],
        before + 1,
        "{name} delivered exactly once"
    );
    assert_eq!(client.health().received(), received + 1);
}

fn one_topic_per_channel(emu: &Emulator) -> Client {
    builder(emu).max_topics_per_channel(1).build().unwrap()
}

#[test]
fn a_plain_topic_covered_by_a_combined_one_is_a_duplicate() {
    let emu = emulator();
    let client = one_topic_per_channel(&emu);
    let lifecycle = Recorder::new(&client);
    let (seen, _guard) = counter(&client);
    let combined = format!("{}?presence&routingStatus", user(1));
    let presence = format!("{}.presence", user(1));
    let _ = client.subscribe([&combined]).unwrap();
    let requests = emu.requests().len();

    let report = client.subscribe([&presence]).unwrap();
    assert_eq!(report.duplicates, [topic(&presence)]);
    assert!(report.permitted.is_empty());
    assert_eq!(
        emu.requests().len(),
        requests,
        "nothing sent for a duplicate"
    );
    assert_eq!(emu.channels().len(), 1, "no second channel");
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::DuplicateSubscription { topic: t, .. } if *t == topic(&presence)
    )));
    delivered_once(&emu, &client, &seen, &presence);
    delivered_once(&emu, &client, &seen, &format!("{}.routingstatus", user(1)));
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_combined_topic_with_its_parts_in_another_order_is_the_same_topic() {
    let emu = emulator();
    let client = one_topic_per_channel(&emu);
    let (seen, _guard) = counter(&client);
    let _ = client
        .subscribe([format!("{}?presence&routingStatus", user(2))])
        .unwrap();
    let report = client
        .subscribe([format!("{}?routingStatus&presence", user(2))])
        .unwrap();
    assert_eq!(
        report.duplicates,
        [topic(&format!("{}?presence&routingstatus", user(2)))]
    );
    assert!(report.permitted.is_empty());
    assert_eq!(emu.channels().len(), 1);
    assert_eq!(client.topics().len(), 1);
    delivered_once(&emu, &client, &seen, &format!("{}.presence", user(2)));
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_combined_topic_overlapping_a_plain_one_subscribes_only_what_it_adds() {
    let emu = emulator();
    let client = one_topic_per_channel(&emu);
    let (seen, _guard) = counter(&client);
    let presence = format!("{}.presence", user(3));
    let routing = format!("{}.routingstatus", user(3));
    let _ = client.subscribe([&presence]).unwrap();

    let report = client
        .subscribe([format!("{}?presence&routingStatus", user(3))])
        .unwrap();
    // Narrowed to the part not yet subscribed; the part already there is the duplicate.
    assert_eq!(report.permitted, [topic(&routing)]);
    assert_eq!(report.duplicates, [topic(&presence)]);
    assert_eq!(client.topics(), [topic(&presence), topic(&routing)]);
    let server: Vec<Vec<String>> = emu.channels().into_iter().map(|c| c.topics).collect();
    assert_eq!(server, [vec![presence.clone()], vec![routing.clone()]]);
    delivered_once(&emu, &client, &seen, &presence);
    delivered_once(&emu, &client, &seen, &routing);

    // Plain topics covering a combined one: nothing new.
    let report = client
        .subscribe([format!("{}?routingStatus&presence", user(3))])
        .unwrap();
    assert!(report.permitted.is_empty());
    assert_eq!(report.duplicates.len(), 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn overlapping_topics_in_one_call_are_subscribed_once() {
    let emu = emulator();
    let client = one_topic_per_channel(&emu);
    let (seen, _guard) = counter(&client);
    let presence = format!("{}.presence", user(4));
    let report = client
        .subscribe([
            format!("{}?presence&routingStatus", user(4)),
            presence.clone(),
        ])
        .unwrap();
    assert_eq!(
        report.permitted,
        [topic(&format!("{}?presence&routingstatus", user(4)))]
    );
    assert_eq!(report.duplicates, [topic(&presence)]);
    assert_eq!(emu.channels().len(), 1);
    delivered_once(&emu, &client, &seen, &presence);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn unsubscribing_a_part_of_a_combined_topic_splits_it() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let (seen, _guard) = counter(&client);
    let presence = format!("{}.presence", user(5));
    let routing = format!("{}.routingstatus", user(5));
    let _ = client
        .subscribe([format!("{}?presence&routingStatus", user(5))])
        .unwrap();

    let removed = client.unsubscribe([&presence]).unwrap();
    assert_eq!(removed, [topic(&presence)], "not a silent no-op");
    assert_eq!(client.topics(), [topic(&routing)]);
    assert_eq!(emu.channels()[0].topics, std::slice::from_ref(&routing));
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::Unsubscribed { topics, .. } if *topics == [topic(&presence)]
    )));
    assert_eq!(
        emu.publish(&presence, presence_body(1)),
        0,
        "presence stopped"
    );
    delivered_once(&emu, &client, &seen, &routing);

    // Unsubscribing a combined topic removes the plain topics it covers.
    let _ = client.subscribe([&presence]).unwrap();
    let removed = client
        .unsubscribe([format!("{}?routingStatus&presence", user(5))])
        .unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(client.topics().is_empty());
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// Issue 17 point 8: one call naming a combined topic twice, its parts in another order and
/// case the second time, subscribes it once and lists the second under `duplicates` (it was in
/// no list of the report); a later call and `unsubscribe` take any spelling for the same topic.
#[test]
fn a_combined_topic_named_twice_in_one_call_lists_the_second_as_a_duplicate() {
    let emu = emulator();
    let client = one_topic_per_channel(&emu);
    let combined = topic(&format!("{}?presence&routingstatus", user(6)));
    let first = format!("{}?presence&routingStatus", user(6));
    let second = format!("{}?ROUTINGSTATUS&Presence", user(6));
    let report = client.subscribe([&first, &second]).unwrap();
    assert_eq!(report.permitted, std::slice::from_ref(&combined));
    assert_eq!(report.duplicates, std::slice::from_ref(&combined));
    assert!(report.rejected.is_empty());
    assert_eq!(emu.channels().len(), 1);
    assert_eq!(emu.channels()[0].topics.len(), 1);

    let report = client.subscribe([&second]).unwrap();
    assert_eq!(report.duplicates, std::slice::from_ref(&combined));
    assert!(report.permitted.is_empty());

    let removed = client.unsubscribe([&second, &first]).unwrap();
    assert_eq!(removed, [combined]);
    assert!(client.topics().is_empty());
    client.shutdown(Duration::from_secs(5)).unwrap();
}
