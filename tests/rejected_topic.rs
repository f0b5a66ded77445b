//! A topic the token lacks permission for is rejected on its own, with its reason and missing
//! permissions, while the other topics of the same request are subscribed and deliver events
//! (issue #2, point 4).
mod util;

use genesys_notify::{Client, Lifecycle, Topic, TopicResult, TopicState};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);
const PERMISSION: &str = "presence:user:view";

/// The `Subscribed` results that mention `topic`.
fn subscribed_results(recorder: &Recorder, topic: &str) -> Vec<TopicResult> {
    recorder
        .snapshot()
        .into_iter()
        .filter_map(|e| match e {
            Lifecycle::Subscribed { results, .. } => Some(results),
            _ => None,
        })
        .flatten()
        .filter(|r| r.topic.eq_ignore_ascii_case(topic))
        .collect()
}

/// Checks the rejection of `denied` in `rejected`, and that the other topics are permitted.
fn assert_rejected_only(rejected: &[TopicResult], denied: &str) {
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let r = &rejected[0];
    assert!(r.topic.eq_ignore_ascii_case(denied), "{r:?}");
    assert_eq!(r.state, TopicState::Rejected);
    assert_eq!(r.missing_permissions, [PERMISSION]);
    let reason = r.rejection_reason.as_deref().unwrap_or("");
    assert!(!reason.is_empty(), "a rejection reason is given: {r:?}");
}

/// Publishes one event on each topic and waits until the listener counted them all.
fn assert_delivers(emu: &genesys_notify::emulator::Emulator, client: &Client, topics: &[String]) {
    let seen = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let sink = seen.clone();
    let _guard = client
        .on("v2.users.*.presence", move |e| {
            sink.lock().insert(e.topic().to_owned());
        })
        .unwrap();
    for topic in topics {
        assert_eq!(emu.publish(topic, presence_body(1)), 1, "{topic} is sent");
    }
    assert!(
        wait_until(WAIT, || seen.lock().len() == topics.len()),
        "delivered only {:?}",
        seen.lock()
    );
}

#[test]
fn a_denied_topic_on_a_new_channel_is_rejected_and_the_others_work() {
    let emu = emulator();
    let topics = presence_topics(5);
    let denied = topics[2].clone();
    emu.deny_topic(&denied, &[PERMISSION]);
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);

    let report = client.subscribe(&topics).unwrap();
    assert_rejected_only(&report.rejected, &denied);
    let others: Vec<String> = topics.iter().filter(|t| **t != denied).cloned().collect();
    let permitted: HashSet<Topic> = report.permitted.iter().cloned().collect();
    let expected: HashSet<Topic> = others.iter().map(|t| t.parse().unwrap()).collect();
    assert_eq!(permitted, expected);
    assert!(report.duplicates.is_empty());

    // The lifecycle event carries the same per-topic result.
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::Subscribed { .. })));
    let results = subscribed_results(&lifecycle, &denied);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_rejected_only(&results, &denied);
    for topic in &others {
        let results = subscribed_results(&lifecycle, topic);
        assert!(
            !results.is_empty() && results.iter().all(|r| r.state == TopicState::Permitted),
            "{topic}: {results:?}"
        );
    }

    // The rejected topic is not kept, on either side.
    let denied_topic: Topic = denied.parse().unwrap();
    assert!(!client.topics().contains(&denied_topic));
    assert_eq!(client.topics().len(), 4);
    assert_eq!(client.health().channels()[0].topics, 4);
    assert_eq!(emu.channels()[0].topics, others);
    assert_eq!(emu.publish(&denied, presence_body(1)), 0);
    assert_delivers(&emu, &client, &others);
    let health = client.health();
    assert_eq!(health.received(), 4);
    assert_eq!(health.delivered(), 4);

    // Once the permission is granted, subscribing it again works (it is not a duplicate).
    emu.allow_topic(&denied);
    let report = client.subscribe([&denied]).unwrap();
    assert_eq!(report.permitted, std::slice::from_ref(&denied_topic));
    assert!(report.rejected.is_empty() && report.duplicates.is_empty());
    assert!(client.topics().contains(&denied_topic));
    assert_delivers(&emu, &client, &topics);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_denied_topic_added_to_an_existing_channel_is_rejected_alone() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let topics = presence_topics(6);
    let _ = client.subscribe(&topics[..3]).unwrap();
    let denied = topics[4].clone();
    emu.deny_topic(&denied, &[PERMISSION]);

    // Mixed case in the request: the report and the topics are normalised all the same.
    let request = [topics[3].clone(), denied.to_uppercase(), topics[5].clone()];
    let report = client.subscribe(&request).unwrap();
    assert_rejected_only(&report.rejected, &denied);
    let permitted: HashSet<Topic> = report.permitted.iter().cloned().collect();
    let expected: HashSet<Topic> = [&topics[3], &topics[5]]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(permitted, expected, "only this call's topics are reported");
    assert!(lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::Subscribed { results, .. }
            if results.iter().any(|r| r.state == TopicState::Rejected)
    )));
    assert_rejected_only(&subscribed_results(&lifecycle, &denied), &denied);

    let denied_topic: Topic = denied.parse().unwrap();
    assert!(!client.topics().contains(&denied_topic));
    assert_eq!(client.topics().len(), 5);
    assert_eq!(emu.channels().len(), 1);
    assert_eq!(emu.channels()[0].topics.len(), 5);
    assert_eq!(client.health().channels()[0].topics, 5);
    let others: Vec<String> = topics.iter().filter(|t| **t != denied).cloned().collect();
    assert_delivers(&emu, &client, &others);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_request_of_only_denied_topics_subscribes_nothing_and_reports_each() {
    let emu = emulator();
    let topics = presence_topics(2);
    for topic in &topics {
        emu.deny_topic(topic, &[PERMISSION]);
    }
    let client = builder(&emu).build().unwrap();
    let report = client.subscribe(&topics).unwrap();
    assert!(report.permitted.is_empty(), "{report:?}");
    assert_eq!(report.rejected.len(), 2);
    for (r, topic) in report.rejected.iter().zip(&topics) {
        assert_rejected_only(std::slice::from_ref(r), topic);
    }
    assert!(client.topics().is_empty());
    assert!(emu.channels().iter().all(|c| c.topics.is_empty()));
    // The client is still usable: an allowed topic goes through.
    let allowed = presence_topics(3).remove(2);
    assert_eq!(client.subscribe([&allowed]).unwrap().permitted.len(), 1);
    assert_delivers(&emu, &client, &[allowed]);
    client.shutdown(Duration::from_secs(5)).unwrap();
}
