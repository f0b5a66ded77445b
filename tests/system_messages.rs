//! `v2.system.*` messages (issue #3): unknown ones are reported as `Lifecycle::SystemMessage`
//! and the stream goes on; one saying the channel lost its subscriptions (`no_longer_subscribed`,
//! `token_revoked`) leads to a new channel with the topics re-applied.
mod recovery;
mod util;

use genesys_notify::emulator::Frame;
use genesys_notify::Lifecycle;
use recovery::*;
use std::time::Duration;
use util::*;

fn system_frame(topic: &str, body: serde_json::Value) -> Frame {
    Frame::Text(
        serde_json::json!({
            "topicName": topic,
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": "2e2cd2b3-7e2a-4b4a-8e3c-2f1f0c1c0d0e"},
        })
        .to_string(),
    )
}

#[test]
fn unknown_system_messages_are_reported_and_the_stream_goes_on() {
    let s = OneChannel::start(|b| b);
    let frames = [
        system_frame(
            "v2.system.brand_new_thing",
            serde_json::json!({"systemTopicType": "brand_new_thing", "reason": "why_not", "message": "hello"}),
        ),
        // Odd shapes: no systemTopicType, a body that is not an object.
        system_frame(
            "v2.system.other",
            serde_json::json!({"whatever": [1, 2, 3]}),
        ),
        system_frame("v2.system.scalar", serde_json::json!("just a string")),
        system_frame(
            "v2.system.subscription_changed",
            serde_json::json!({"systemTopicType": "subscription_changed"}),
        ),
    ];
    for frame in frames {
        assert!(s.emu.send_frame(&s.id, frame));
    }
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 1));
    assert!(wait_until(SOON, || s
        .rec
        .count(|e| matches!(e, Lifecycle::SystemMessage { .. }))
        == 4));
    let reported: Vec<(String, Option<String>)> = s
        .rec
        .snapshot()
        .iter()
        .filter_map(|e| match e {
            Lifecycle::SystemMessage { message, .. } => {
                Some((message.topic.clone(), message.system_topic_type.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        reported,
        [
            (
                "v2.system.brand_new_thing".to_owned(),
                Some("brand_new_thing".to_owned())
            ),
            ("v2.system.other".to_owned(), None),
            ("v2.system.scalar".to_owned(), None),
            (
                "v2.system.subscription_changed".to_owned(),
                Some("subscription_changed".to_owned())
            ),
        ]
    );
    assert_eq!(
        s.rec.count(|e| matches!(
            e,
            Lifecycle::Disconnected { .. } | Lifecycle::MalformedMessage { .. }
        )),
        0,
        "{:?}",
        kinds(&s.rec.snapshot())
    );
    assert_eq!(channel_id(&s.client), s.id);
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

fn lost_subscriptions_lead_to_a_new_channel(body: serde_json::Value) {
    let s = OneChannel::start_on(emulator(), 2, fast);
    let mark = s.rec.snapshot().len();
    assert!(s
        .emu
        .send_frame(&s.id, system_frame("v2.system.notification", body)));
    assert!(wait_until(SOON, || connected_count(&s.rec) >= 2));
    assert!(flows(&s.emu, &s.topics[1], &s.seqs, 1));
    let events = since(&s.rec, mark);
    assert_in_order(
        &events,
        &[
            "SystemMessage",
            "Disconnected",
            "ChannelReplaced",
            "Subscribed",
            "Connected",
            "Gap",
        ],
    );
    let new_id = channel_id(&s.client);
    assert_ne!(new_id, s.id);
    let mut subscribed = s.emu.channel(&new_id).unwrap().topics;
    subscribed.sort();
    assert_eq!(subscribed, s.topics);
    // The abandoned channel had its subscriptions removed (issue #8.11): it carries nothing
    // and, never connected again, is the first the service evicts (no channel DELETE exists).
    let path = format!("/api/v2/notifications/channels/{}/subscriptions", s.id);
    assert!(
        s.emu
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path == path),
        "no DELETE of the old channel's subscriptions"
    );
    let old = s.emu.channel(&s.id).expect("the old channel still exists");
    assert!(old.topics.is_empty(), "{:?}", old.topics);
    assert!(!old.connected);
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn no_longer_subscribed_leads_to_a_new_channel_with_the_topics() {
    lost_subscriptions_lead_to_a_new_channel(serde_json::json!({
        "systemTopicType": "no_longer_subscribed",
        "reason": "another_channel_subscribed",
        "message": "Topics were subscribed on another channel",
    }));
}

#[test]
fn token_revoked_leads_to_a_new_channel_with_the_topics() {
    lost_subscriptions_lead_to_a_new_channel(serde_json::json!({
        "systemTopicType": "token_revoked",
        "reason": "user_tokens_revoked",
    }));
}
