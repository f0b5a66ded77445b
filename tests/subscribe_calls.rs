//! Subscribing adds topics with the API's incremental call (issue #11): `POST
//! .../subscriptions` carries only the topics added, never the whole set again; `PUT` (the
//! whole set) is for a new channel's first subscription, re-application and removal. Calls
//! adding to one channel at the same time may share one `POST`. Untimed: the REST calls the
//! emulator recorded are checked, not durations (benches/subscribe_scale.rs measures those).
mod util;

use genesys_notify::emulator::{Emulator, RequestRecord};
use std::time::Duration;
use util::*;

fn subscription_calls(emu: &Emulator, since: usize) -> Vec<RequestRecord> {
    emu.requests()[since..]
        .iter()
        .filter(|r| r.path.contains("/subscriptions"))
        .cloned()
        .collect()
}

/// The topic names of a `[{"id": ...}, ...]` request body.
fn body_topics(request: &RequestRecord) -> Vec<String> {
    let items: Vec<serde_json::Value> = serde_json::from_str(&request.body).unwrap();
    items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn adding_one_topic_to_a_channel_of_999_posts_that_topic_alone() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let topics = presence_topics(1001);
    let _ = client.subscribe(&topics[..999]).unwrap();
    let setup = subscription_calls(&emu, 0);
    assert_eq!(setup.len(), 1, "{setup:?}");
    assert_eq!(setup[0].method, "PUT", "a new channel's first subscription");

    let before = emu.requests().len();
    let report = client.subscribe([&topics[999]]).unwrap();
    assert_eq!(report.permitted.len(), 1);
    let calls = subscription_calls(&emu, before);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].method, "POST");
    assert!(calls[0].path.ends_with("/subscriptions?ignoreErrors=true"));
    assert_eq!(body_topics(&calls[0]), [topics[999].clone()]);
    assert_eq!(emu.channels()[0].topics.len(), 1000);

    // The channel is full: the next topic opens a channel of its own, subscribed with `PUT`.
    let before = emu.requests().len();
    let _ = client.subscribe([&topics[1000]]).unwrap();
    let calls = subscription_calls(&emu, before);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].method, "PUT");
    assert_eq!(body_topics(&calls[0]), [topics[1000].clone()]);
    assert_eq!(emu.channels().len(), 2);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn concurrent_calls_to_one_channel_post_only_their_topics_and_may_share_a_post() {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let topics = presence_topics(401);
    let _ = client.subscribe(&topics[..1]).unwrap();
    let before = emu.requests().len();
    std::thread::scope(|scope| {
        for part in topics[1..].chunks(50) {
            let client = &client;
            scope.spawn(move || {
                for topic in part {
                    let report = client.subscribe([topic]).unwrap();
                    assert_eq!(report.permitted.len(), 1, "{topic}: {report:?}");
                }
            });
        }
    });
    let calls = subscription_calls(&emu, before);
    assert!(
        calls.iter().all(|c| c.method == "POST"),
        "no PUT while adding"
    );
    assert!(
        calls.len() <= 400,
        "at most one POST per call: {}",
        calls.len()
    );
    let mut posted: Vec<String> = calls.iter().flat_map(body_topics).collect();
    posted.sort();
    let mut expected = topics[1..].to_vec();
    expected.sort();
    assert_eq!(posted, expected, "each topic posted once, nothing else");
    assert_eq!(emu.channels().len(), 1);
    assert_eq!(emu.channels()[0].topics.len(), 401);
    assert_eq!(client.topics().len(), 401);
    assert_eq!(client.health().channels()[0].topics, 401);
    client.shutdown(Duration::from_secs(5)).unwrap();
}
