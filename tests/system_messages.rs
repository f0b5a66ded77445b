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
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    client.subscribe(&topics).unwrap();
    wait_registered(&emu);
    let id = channel_id(&client);
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
        assert!(emu.send_frame(&id, frame));
    }
    assert!(flows(&emu, &topics[0], &seqs, 1));
    assert!(wait_until(SOON, || rec
        .count(|e| matches!(e, Lifecycle::SystemMessage { .. }))
        == 4));
    let reported: Vec<(String, Option<String>)> = rec
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
        rec.count(|e| matches!(
            e,
            Lifecycle::Disconnected { .. } | Lifecycle::MalformedMessage { .. }
        )),
        0,
        "{:?}",
        kinds(&rec.snapshot())
    );
    assert_eq!(channel_id(&client), id);
    client.shutdown(Duration::from_secs(2)).unwrap();
}

fn lost_subscriptions_lead_to_a_new_channel(body: serde_json::Value) {
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(2);
    client.subscribe(&topics).unwrap();
    wait_registered(&emu);
    let id = channel_id(&client);
    let mark = rec.snapshot().len();
    assert!(emu.send_frame(&id, system_frame("v2.system.notification", body)));
    assert!(wait_until(SOON, || connected_count(&rec) >= 2));
    assert!(flows(&emu, &topics[1], &seqs, 1));
    let events = since(&rec, mark);
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
    let new_id = channel_id(&client);
    assert_ne!(new_id, id);
    let mut subscribed = emu.channel(&new_id).unwrap().topics;
    subscribed.sort();
    assert_eq!(subscribed, topics);
    client.shutdown(Duration::from_secs(2)).unwrap();
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
