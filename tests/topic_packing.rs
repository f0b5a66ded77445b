//! Topics are packed into as few channels as the limits allow (1 000 topics per channel, 20
//! channels), beyond the limit nothing is subscribed, and duplicates, invalid names,
//! unsubscribing and isolated groups behave as documented (issue #2, point 1).
mod util;

use genesys_notify::emulator::Emulator;
use genesys_notify::{Client, Error, Lifecycle, ListenerGuard, Topic, TopicError};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);

/// Topic counts of the emulator's live channels, in creation order.
fn emu_topic_counts(emu: &Emulator) -> Vec<usize> {
    emu.channels().iter().map(|c| c.topics.len()).collect()
}

/// Topic counts of the client's channels, in creation order.
fn client_topic_counts(client: &Client) -> Vec<usize> {
    client
        .health()
        .channels()
        .iter()
        .map(|c| c.topics)
        .collect()
}

/// Requests that change something on the server (everything but the token endpoint and GETs).
fn mutating_requests(emu: &Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD" && r.path != "/oauth/token")
        .count()
}

/// `v2.users.<id>.presence` for users `from..to`.
fn presence_range(from: usize, to: usize) -> Vec<String> {
    (from..to)
        .map(|i| format!("v2.users.{}.presence", user_id(i)))
        .collect()
}

/// Records, per topic, the full channel id each event arrived on.
fn channel_recorder(client: &Client) -> (Arc<Mutex<HashMap<String, String>>>, ListenerGuard) {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let sink = seen.clone();
    let guard = client
        .on("v2.users.*.presence", move |e| {
            sink.lock()
                .insert(e.topic().to_owned(), e.channel_id().as_str().to_owned());
        })
        .unwrap();
    (seen, guard)
}

#[test]
fn twenty_five_hundred_topics_fill_three_channels_and_each_delivers() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let (seen, _guard) = channel_recorder(&client);
    let topics = presence_topics(2500);
    let report = client.subscribe(&topics).unwrap();
    assert_eq!(report.permitted.len(), 2500);
    assert!(report.rejected.is_empty() && report.duplicates.is_empty());

    assert_eq!(client_topic_counts(&client), [1000, 1000, 500]);
    assert_eq!(emu_topic_counts(&emu), [1000, 1000, 500]);
    assert_eq!(emu.channels().len(), 3, "exactly three channels created");
    assert_eq!(client.topics().len(), 2500);
    // Every topic is subscribed exactly once across the channels.
    let server: HashSet<String> = emu
        .channels()
        .iter()
        .flat_map(|c| c.topics.clone())
        .collect();
    let wanted: HashSet<String> = topics.iter().cloned().collect();
    assert_eq!(server, wanted);

    // One event on the first and last topic of every channel, each delivered through the
    // socket of the channel that holds it.
    let mut expected = HashMap::new();
    for channel in emu.channels() {
        assert!(channel.connected, "channel {} has a socket", channel.id);
        for topic in [&channel.topics[0], channel.topics.last().unwrap()] {
            assert_eq!(emu.publish(topic, presence_body(1)), 1);
            expected.insert(topic.clone(), channel.id.clone());
        }
    }
    assert!(
        wait_until(WAIT, || seen.lock().len() == expected.len()),
        "got {} of {} events",
        seen.lock().len(),
        expected.len()
    );
    assert_eq!(*seen.lock(), expected);
    let health = client.health();
    assert_eq!(health.received(), 6);
    assert_eq!(health.delivered(), 6);
    for channel in health.channels() {
        assert_eq!(channel.received, 2, "two events per channel: {channel:?}");
    }
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// `result` is the refusal of a subscription that would make 20 001 topics.
fn assert_too_many_topics<T: std::fmt::Debug>(result: Result<T, Error>) {
    match result {
        Err(Error::TooManyTopics {
            requested,
            capacity,
            ..
        }) => {
            assert_eq!(requested, 20_001);
            assert_eq!(capacity, 20_000);
        }
        other => panic!("expected TooManyTopics, got {other:?}"),
    }
}

#[test]
fn more_than_twenty_thousand_topics_is_an_error_and_subscribes_nothing() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();

    // From nothing: 20 001 topics in one call.
    let before = mutating_requests(&emu);
    assert_too_many_topics(
        client
            .subscribe(presence_topics(20_001))
            .map_err(Error::from),
    );
    assert!(client.topics().is_empty());
    assert!(client.health().channels().is_empty());
    assert!(emu.channels().is_empty(), "no channel created");
    assert_eq!(
        mutating_requests(&emu),
        before,
        "no REST call changed anything"
    );

    // On top of 2 500 subscribed: 17 501 more would make 20 001.
    let _ = client.subscribe(presence_topics(2500)).unwrap();
    let before = mutating_requests(&emu);
    assert_too_many_topics(
        client
            .subscribe(presence_range(2500, 20_001))
            .map_err(Error::from),
    );
    assert_eq!(client.topics().len(), 2500);
    assert_eq!(client_topic_counts(&client), [1000, 1000, 500]);
    assert_eq!(emu_topic_counts(&emu), [1000, 1000, 500]);
    assert_eq!(
        mutating_requests(&emu),
        before,
        "no REST call changed anything"
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_limit_is_exact_with_smaller_settings() {
    // 3 channels of 10 topics: 30 fit, 31 do not; the room left on a shared channel is used.
    let emu = emulator();
    let client = builder(&emu)
        .max_channels(3)
        .max_topics_per_channel(10)
        .build()
        .unwrap();
    let _ = client.subscribe(presence_topics(25)).unwrap();
    assert_eq!(client_topic_counts(&client), [10, 10, 5]);
    match client
        .subscribe(presence_range(25, 31))
        .map_err(Error::from)
    {
        Err(Error::TooManyTopics {
            requested,
            capacity,
            ..
        }) => assert_eq!((requested, capacity), (31, 30)),
        other => panic!("expected TooManyTopics, got {other:?}"),
    }
    assert_eq!(client.topics().len(), 25);
    assert_eq!(emu_topic_counts(&emu), [10, 10, 5]);
    let report = client.subscribe(presence_range(25, 30)).unwrap();
    assert_eq!(report.permitted.len(), 5);
    assert_eq!(client_topic_counts(&client), [10, 10, 10]);
    assert_eq!(emu_topic_counts(&emu), [10, 10, 10]);
    assert_eq!(emu.channels().len(), 3);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn subscribing_a_topic_twice_is_a_reported_no_op() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let topics = presence_topics(3);
    let _ = client.subscribe(&topics[..2]).unwrap();
    let requests = emu.requests().len();

    // The same topic again, spelled in another case: a duplicate, and no REST call at all.
    let again = topics[0].to_uppercase();
    let report = client.subscribe([&again]).unwrap();
    let first: Topic = topics[0].parse().unwrap();
    assert_eq!(report.duplicates, std::slice::from_ref(&first));
    assert!(report.permitted.is_empty() && report.rejected.is_empty());
    assert_eq!(
        emu.requests().len(),
        requests,
        "no REST call for a duplicate"
    );
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::DuplicateSubscription { topic, .. } if *topic == first
    )));

    // A duplicate mixed with a new topic: only the new one is sent.
    let report = client.subscribe([&topics[1], &topics[2]]).unwrap();
    assert_eq!(report.duplicates, [topics[1].parse::<Topic>().unwrap()]);
    assert_eq!(report.permitted, [topics[2].parse::<Topic>().unwrap()]);
    let new_requests: Vec<_> = emu.requests()[requests..].to_vec();
    assert_eq!(new_requests.len(), 1, "one request: {new_requests:?}");
    // Adding to a channel is a `POST` of the new topic only (issue #11), not a `PUT` of all.
    assert_eq!(new_requests[0].method, "POST");
    assert!(
        !new_requests[0].body.contains(&topics[1]),
        "{new_requests:?}"
    );
    assert_eq!(emu.channels().len(), 1);
    assert_eq!(emu.channels()[0].topics.len(), 3);
    assert_eq!(client.topics().len(), 3);
    // Lifecycle events reach listeners on the lifecycle thread, after `subscribe` returned:
    // wait for the second one rather than count too early.
    let duplicates = || lifecycle.count(|e| matches!(e, Lifecycle::DuplicateSubscription { .. }));
    assert!(
        wait_until(WAIT, || duplicates() >= 2),
        "{:?}",
        lifecycle.snapshot()
    );
    assert_eq!(duplicates(), 2);

    // The same topic twice within one call is subscribed once, and the second is a duplicate
    // (issue 17 point 8: it was in no list of the report).
    let fourth = presence_range(3, 4).remove(0);
    let report = client.subscribe([&fourth, &fourth.to_uppercase()]).unwrap();
    assert_eq!(report.permitted.len(), 1);
    assert_eq!(report.duplicates, report.permitted);
    assert_eq!(emu.channels()[0].topics.len(), 4);
    // Lifecycle events are delivered in the order they were emitted: once the fourth topic's
    // `Subscribed` arrived, the duplicate report of this call has arrived before it.
    let fourth: Topic = fourth.parse().unwrap();
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::Subscribed { results, .. } if results.iter().any(|r| r.topic == fourth.as_str())
    )));
    assert_eq!(duplicates(), 3, "{:?}", lifecycle.snapshot());
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn an_invalid_topic_name_is_an_error_and_changes_nothing() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let topics = presence_topics(3);
    let _ = client.subscribe(&topics[..1]).unwrap();
    let requests = emu.requests().len();
    type Expect = fn(&TopicError) -> bool;
    let cases: [(&str, Expect); 4] = [
        ("v2.users..presence", |e| *e == TopicError::EmptySegment),
        ("v2.system.socket_closing", |e| *e == TopicError::Reserved),
        ("v2.users.a b.presence", |e| {
            matches!(e, TopicError::InvalidCharacter { character: ' ', .. })
        }),
        ("v2.users.*.presence", |e| *e == TopicError::Wildcard),
    ];
    for (bad, expected) in cases {
        // The valid new topic next to the bad one is not subscribed either.
        match client
            .subscribe([topics[1].as_str(), bad])
            .map_err(Error::from)
        {
            Err(Error::Topic { name, error, .. }) => {
                assert_eq!(name, bad);
                assert!(expected(&error), "{bad:?} gave {error:?}");
            }
            other => panic!("expected Error::Topic for {bad:?}, got {other:?}"),
        }
    }
    assert_eq!(client.topics(), [topics[0].parse::<Topic>().unwrap()]);
    assert_eq!(emu.requests().len(), requests, "no REST call");
    assert_eq!(emu.channels().len(), 1);
    assert_eq!(emu.channels()[0].topics, [topics[0].clone()]);
    // The client works on: the next valid call goes through.
    assert_eq!(client.subscribe(&topics[1..]).unwrap().permitted.len(), 2);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn unsubscribe_removes_topics_on_the_server() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let (seen, _guard) = channel_recorder(&client);
    let topics = presence_topics(4);
    let _ = client.subscribe(&topics).unwrap();

    let removed = client
        .unsubscribe([&topics[1], &topics[3], &presence_range(9, 10)[0]])
        .unwrap();
    let expected: Vec<Topic> = [&topics[1], &topics[3]]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(removed, expected, "topics not subscribed are ignored");
    assert_eq!(
        emu.channels()[0].topics,
        [topics[0].clone(), topics[2].clone()]
    );
    assert_eq!(client.topics().len(), 2);
    assert_eq!(client_topic_counts(&client), [2]);
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::Unsubscribed { topics, .. } if *topics == expected
    )));
    // The server no longer sends the removed topics; the others still flow.
    assert_eq!(emu.publish(&topics[1], presence_body(1)), 0);
    assert_eq!(emu.publish(&topics[2], presence_body(1)), 1);
    assert!(wait_until(WAIT, || seen.lock().contains_key(&topics[2])));

    // Removing the last topics empties the channel on the server; it stays open for later.
    client.unsubscribe([&topics[0], &topics[2]]).unwrap();
    assert!(client.topics().is_empty());
    let channels = emu.channels();
    assert_eq!(channels.len(), 1);
    assert!(channels[0].topics.is_empty());
    let _ = client.subscribe(&topics[..1]).unwrap();
    assert_eq!(emu.channels().len(), 1, "the empty channel is reused");
    assert_eq!(emu.channels()[0].topics, [topics[0].clone()]);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn subscribe_isolated_puts_topics_on_a_channel_of_their_own() {
    let emu = emulator();
    let client = builder(&emu).max_topics_per_channel(10).build().unwrap();
    let (seen, _guard) = channel_recorder(&client);
    let shared = presence_topics(10);
    let _ = client.subscribe(&shared).unwrap();
    let isolated = presence_range(10, 13);
    let report = client.subscribe_isolated(&isolated).unwrap();
    assert_eq!(report.permitted.len(), 3);
    let channels = emu.channels();
    assert_eq!(channels.len(), 2);
    assert_eq!(channels[1].topics, isolated, "only the isolated topics");

    // The shared channel is full and the isolated one has room, yet a new topic gets a new
    // channel: nothing joins an isolated channel.
    let more = presence_range(13, 15);
    let _ = client.subscribe(&more).unwrap();
    let channels = emu.channels();
    assert_eq!(emu_topic_counts(&emu), [10, 3, 2]);
    assert_eq!(channels[1].topics, isolated);
    assert_eq!(channels[2].topics, more);
    assert_eq!(client_topic_counts(&client), [10, 3, 2]);

    // A second isolated group gets its own channel too, even though channel 3 has room.
    let group2 = presence_range(15, 16);
    let _ = client.subscribe_isolated(&group2).unwrap();
    assert_eq!(emu_topic_counts(&emu), [10, 3, 2, 1]);

    // Events of the isolated topics arrive on the isolated channel.
    assert_eq!(emu.publish(&isolated[0], presence_body(1)), 1);
    assert!(wait_until(WAIT, || seen.lock().contains_key(&isolated[0])));
    assert_eq!(seen.lock()[&isolated[0]], channels[1].id);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn an_emptied_isolated_channel_does_not_use_up_the_channel_limit() {
    // Isolated groups that come and go must not exhaust max_channels: once a group is
    // unsubscribed, its channel is no longer counted.
    let emu = emulator();
    let client = builder(&emu).max_channels(2).build().unwrap();
    let topics = presence_topics(4);
    for topic in &topics[..3] {
        let group = [topic];
        let _ = client.subscribe_isolated(group).unwrap();
        assert_eq!(client.unsubscribe(group).unwrap().len(), 1);
        assert!(client.topics().is_empty());
    }
    let report = client.subscribe([&topics[3]]);
    assert!(report.is_ok(), "0 topics subscribed, yet: {report:?}");
    assert!(
        client.health().channels().len() <= 2,
        "{:?}",
        client.health()
    );
    assert_eq!(emu.publish(&topics[3], presence_body(1)), 1);
    // The emptied isolated channels' sockets were closed: only the shared one is connected.
    assert!(
        wait_until(WAIT, || emu
            .channels()
            .iter()
            .filter(|c| c.connected)
            .count()
            == 1),
        "{:?}",
        emu.channels()
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}
