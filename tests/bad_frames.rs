//! Bad input gets a clear report and loses nothing else (crate guarantee 7): a frame that is
//! not JSON, a binary frame, a frame without `topicName`, and a notification no listener matches
//! are each reported (lifecycle event and health counter) and the same socket goes on
//! delivering: no reconnect, no disconnect.
mod util;

use genesys_notify::emulator::{Emulator, Fault, Frame, Target};
use genesys_notify::{Client, Event, Lifecycle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);

/// A client subscribed to one presence topic with a listener counting its events (the last
/// seq seen), plus one more topic that no listener matches.
struct Setup {
    emu: Emulator,
    client: Client,
    lifecycle: Recorder,
    last_seq: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
    topic: String,
    unlistened: String,
    channel_id: String,
    _guard: genesys_notify::ListenerGuard,
}

impl Setup {
    fn new() -> Setup {
        let emu = emulator();
        let client = builder(&emu).build().unwrap();
        let lifecycle = Recorder::new(&client);
        let last_seq = Arc::new(AtomicU64::new(0));
        let delivered = Arc::new(AtomicU64::new(0));
        let (l, d) = (last_seq.clone(), delivered.clone());
        let topics = presence_topics(1);
        let topic = topics[0].clone();
        let guard = client
            .on(&topic, move |e: &Event| {
                let seq = e.body_value().unwrap()["seq"].as_u64().unwrap();
                l.store(seq, Ordering::SeqCst);
                d.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        let unlistened = format!("v2.users.{}.routingstatus", user_id(0));
        let report = client.subscribe([&topic, &unlistened]).unwrap();
        assert_eq!(report.permitted.len(), 2);
        wait_sockets(&emu, 1);
        let channels = emu.channels();
        assert_eq!(channels.len(), 1);
        let channel_id = channels[0].id.clone();
        Setup {
            emu,
            client,
            lifecycle,
            last_seq,
            delivered,
            topic,
            unlistened,
            channel_id,
            _guard: guard,
        }
    }

    /// Publishes `seq` on the listened topic and waits until the listener got it: the frames
    /// queued before it on the same socket have been read by then.
    fn publish_and_receive(&self, seq: u64) {
        assert_eq!(self.emu.publish(&self.topic, presence_body(seq)), 1);
        assert!(
            wait_until(WAIT, || self.last_seq.load(Ordering::SeqCst) == seq),
            "event {seq} not delivered (last {})",
            self.last_seq.load(Ordering::SeqCst)
        );
    }

    fn malformed_reports(&self) -> Vec<(String, String)> {
        self.lifecycle
            .snapshot()
            .into_iter()
            .filter_map(|e| match e {
                Lifecycle::MalformedMessage {
                    channel,
                    reason,
                    excerpt,
                    ..
                } => {
                    assert_eq!(channel.as_str(), self.channel_id);
                    Some((reason, excerpt))
                }
                _ => None,
            })
            .collect()
    }

    fn wait_malformed(&self, n: usize) -> Vec<(String, String)> {
        assert!(
            wait_until(WAIT, || self.malformed_reports().len() >= n),
            "expected {n} MalformedMessage events, got {:?}",
            self.malformed_reports()
        );
        let reports = self.malformed_reports();
        assert_eq!(reports.len(), n, "{reports:?}");
        assert_eq!(self.client.health().malformed(), n as u64);
        reports
    }

    /// The socket of the first connection is still the only one, and nothing disconnected.
    fn assert_same_socket(&self) {
        let channels = self.emu.channels();
        assert_eq!(channels.len(), 1);
        assert_eq!(channels[0].id, self.channel_id);
        assert!(channels[0].connected);
        assert_eq!(channels[0].connections, 1, "the client reconnected");
        assert_eq!(
            self.lifecycle.count(|e| matches!(
                e,
                Lifecycle::Disconnected { .. }
                    | Lifecycle::Reconnecting { .. }
                    | Lifecycle::Gap { .. }
            )),
            0,
            "{:#?}",
            self.lifecycle.snapshot()
        );
        let health = self.client.health();
        assert_eq!(health.channels()[0].reconnects, 0);
    }
}

#[test]
fn malformed_json_is_reported_and_the_stream_goes_on() {
    let s = Setup::new();
    s.publish_and_receive(1);
    s.emu.inject(Fault::MalformedJson {
        target: Target::channel(&s.channel_id),
    });
    s.publish_and_receive(2);
    let reports = s.wait_malformed(1);
    assert!(reports[0].0.contains("JSON"), "reason: {:?}", reports[0].0);
    assert!(!reports[0].1.is_empty(), "the excerpt shows the frame");
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn binary_frame_is_reported_and_the_stream_goes_on() {
    let s = Setup::new();
    s.emu.inject(Fault::BinaryFrame {
        target: Target::channel(&s.channel_id),
        data: vec![0xde, 0xad, 0xbe, 0xef, 0x00],
    });
    s.publish_and_receive(1);
    let reports = s.wait_malformed(1);
    assert!(
        reports[0].0.contains("binary") && reports[0].0.contains('5'),
        "reason: {:?}",
        reports[0].0
    );
    // A second one through send_frame.
    assert!(s
        .emu
        .send_frame(&s.channel_id, Frame::Binary(b"{\"topicName\":1}".to_vec())));
    s.publish_and_receive(2);
    s.wait_malformed(2);
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn frames_without_topic_name_or_body_are_reported_and_the_stream_goes_on() {
    let s = Setup::new();
    let bad = [
        r#"{"version":"2","eventBody":{"seq":99},"metadata":{"CorrelationId":"x"}}"#.to_owned(),
        r#"{"topicName":42,"eventBody":{}}"#.to_owned(),
        r#"[1,2,3]"#.to_owned(),
        r#""just a string""#.to_owned(),
        String::new(),
        format!(r#"{{"topicName":"{}"}}"#, s.topic),
    ];
    for (i, text) in bad.iter().enumerate() {
        assert!(s.emu.send_frame(&s.channel_id, Frame::Text(text.clone())));
        s.publish_and_receive(i as u64 + 1);
        s.wait_malformed(i + 1);
    }
    let reports = s.wait_malformed(bad.len());
    assert!(
        reports[0].0.contains("topicName"),
        "reason: {:?}",
        reports[0].0
    );
    assert!(
        reports[5].0.contains("eventBody"),
        "reason: {:?}",
        reports[5].0
    );
    // The malformed frames were not taken for notifications.
    let health = s.client.health();
    assert_eq!(health.received(), bad.len() as u64);
    assert_eq!(s.delivered.load(Ordering::SeqCst), bad.len() as u64);
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn non_ascii_topic_names_do_not_break_the_stream() {
    let s = Setup::new();
    // Multi-byte characters around the 10th byte, where `v2.system.` is recognised.
    let names = [
        "v2.systemé.x",
        "v2.syste€",
        "v2.éééé.presence",
        "日本語のトピック",
    ];
    let mut seq = 0;
    for name in names {
        let frame = format!(r#"{{"topicName":"{name}","eventBody":{{"seq":0}}}}"#);
        assert!(s.emu.send_frame(&s.channel_id, Frame::Text(frame)));
        seq += 1;
        s.publish_and_receive(seq);
    }
    // Those notifications match no listener: each is unrouted, nothing disconnected.
    assert!(wait_until(WAIT, || s.client.health().unrouted() == names.len() as u64));
    for name in names {
        assert!(s.lifecycle.wait(WAIT, |e| matches!(
            e,
            Lifecycle::UnroutedMessage { topic, .. } if topic == name
        )));
    }
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn unrouted_event_is_reported_and_the_stream_goes_on() {
    let s = Setup::new();
    // Subscribed, but no listener matches it.
    assert_eq!(s.emu.publish(&s.unlistened, presence_body(100)), 1);
    s.publish_and_receive(1);
    assert!(s.lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::UnroutedMessage { channel, topic, .. }
            if *topic == s.unlistened && channel.as_str() == s.channel_id
    )));
    assert!(wait_until(WAIT, || s.client.health().unrouted() == 1));

    // A notification whose topicName was never subscribed, on the same socket.
    let stranger = "v2.routing.queues.0f1e2d3c-aaaa-bbbb-cccc-000000000001.observations";
    let frame = serde_json::json!({
        "topicName": stranger,
        "version": "2",
        "eventBody": {"seq": 101},
        "metadata": {"CorrelationId": "c0ffee00-0000-0000-0000-000000000001"},
    });
    assert_eq!(s.emu.publish_raw(&s.topic, frame.to_string()), 1);
    s.publish_and_receive(2);
    assert!(s.lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::UnroutedMessage { topic, .. } if topic == stranger
    )));
    assert!(wait_until(WAIT, || s.client.health().unrouted() == 2));

    let health = s.client.health();
    assert_eq!(health.received(), 4);
    assert_eq!(health.delivered(), 2);
    assert_eq!(health.malformed(), 0);
    assert_eq!(s.delivered.load(Ordering::SeqCst), 2);
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn unknown_system_message_is_reported_and_the_stream_goes_on() {
    let s = Setup::new();
    let frame = r#"{"topicName":"v2.system.something_new","eventBody":{"systemTopicType":"something_new","message":"hello"}}"#;
    assert!(s.emu.send_frame(&s.channel_id, Frame::Text(frame.into())));
    s.publish_and_receive(1);
    assert!(s.lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::SystemMessage { message, channel, .. }
            if message.topic == "v2.system.something_new"
                && message.system_topic_type.as_deref() == Some("something_new")
                && channel.as_str() == s.channel_id
    )));
    // A system message is not a notification: not received, not unrouted, not malformed.
    let health = s.client.health();
    assert_eq!(health.received(), 1);
    assert_eq!(health.unrouted(), 0);
    assert_eq!(health.malformed(), 0);
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A frame of 200 000 characters is reported in a few KiB, not quoted whole: an
/// unrouted notification with a 200 000-character topic name (never cached as a route, so
/// every one of them is reported), a system message with such a topic, and one with huge
/// `message` and `eventBody` fields. Each is reported and the stream goes on.
#[test]
fn reports_of_huge_frames_stay_small() {
    let s = Setup::new();
    let long = "x".repeat(200_000);
    let frames = [
        format!(r#"{{"topicName":"v2.users.{long}.presence","eventBody":{{}}}}"#),
        format!(r#"{{"topicName":"v2.users.{long}.presence","eventBody":{{}}}}"#),
        format!(r#"{{"topicName":"v2.system.{long}","eventBody":{{}}}}"#),
        format!(
            r#"{{"topicName":"v2.system.something_new","eventBody":{{"systemTopicType":"{long}","reason":"{long}","message":"{long}","padding":"{long}"}}}}"#
        ),
    ];
    for frame in frames {
        assert!(s.emu.send_frame(&s.channel_id, Frame::Text(frame)));
    }
    s.publish_and_receive(1);
    assert!(s.lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::SystemMessage { message, .. } if message.topic == "v2.system.something_new"
    )));
    let reports: Vec<Lifecycle> = s
        .lifecycle
        .snapshot()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Lifecycle::UnroutedMessage { .. } | Lifecycle::SystemMessage { .. }
            )
        })
        .collect();
    assert_eq!(reports.len(), 4, "{}", reports.len());
    for report in &reports {
        let shown = format!("{report:?}");
        assert!(shown.len() < 16 * 1024, "a report of {} bytes", shown.len());
        assert!(report.to_string().len() < 16 * 1024);
    }
    assert_eq!(s.client.health().unrouted(), 2);
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn every_kind_of_bad_frame_in_a_row_loses_no_event() {
    let s = Setup::new();
    let target = || Target::channel(&s.channel_id);
    // Bad frames interleaved with good events, published without waiting in between.
    let mut seq = 0;
    for round in 0..5 {
        s.emu.inject(Fault::MalformedJson { target: target() });
        seq += 1;
        assert_eq!(s.emu.publish(&s.topic, presence_body(seq)), 1);
        s.emu.inject(Fault::BinaryFrame {
            target: target(),
            data: vec![round; 3],
        });
        seq += 1;
        assert_eq!(s.emu.publish(&s.topic, presence_body(seq)), 1);
        assert!(s
            .emu
            .send_frame(&s.channel_id, Frame::Text(r#"{"eventBody":{}}"#.into())));
        assert_eq!(s.emu.publish(&s.unlistened, presence_body(0)), 1);
        seq += 1;
        assert_eq!(s.emu.publish(&s.topic, presence_body(seq)), 1);
    }
    assert!(wait_until(WAIT, || s.delivered.load(Ordering::SeqCst) == seq));
    assert_eq!(s.last_seq.load(Ordering::SeqCst), seq);
    s.wait_malformed(15);
    // All five unrouted events are counted; the lifecycle event is sent for the first of the
    // topic only, so a busy topic without a listener cannot flood the lifecycle queue.
    assert!(wait_until(WAIT, || s.client.health().unrouted() == 5));
    assert_eq!(
        s.lifecycle
            .count(|e| matches!(e, Lifecycle::UnroutedMessage { .. })),
        1
    );
    let health = s.client.health();
    assert_eq!(health.received(), seq + 5);
    assert_eq!(health.delivered(), seq);
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Issue 8 #6: only `topicName` and `eventBody` decide whether a notification is delivered. A
/// numeric `CorrelationId`, a `metadata` that is not an object, a repeated key or an unknown
/// field used to make the event count as malformed and vanish.
#[test]
fn fields_we_do_not_use_never_make_a_notification_malformed() {
    let s = Setup::new();
    let t = &s.topic;
    let frames = [
        format!(
            r#"{{"topicName":"{t}","eventBody":{{"seq":1}},"metadata":{{"CorrelationId":12345}}}}"#
        ),
        format!(r#"{{"topicName":"{t}","eventBody":{{"seq":2}},"metadata":"not an object"}}"#),
        format!(r#"{{"topicName":"{t}","eventBody":{{"seq":3}},"metadata":[1]}}"#),
        format!(r#"{{"topicName":"{t}","version":"2","version":3,"eventBody":{{"seq":4}}}}"#),
        format!(r#"{{"topicName":"{t}","eventBody":{{"seq":0}},"eventBody":{{"seq":5}}}}"#),
        format!(
            r#"{{"topicName":"{t}","eventBody":{{"seq":6}},"metadata":{{"CorrelationId":"a","CorrelationId":"b"}},"extra":{{"x":[null]}}}}"#
        ),
    ];
    for frame in &frames {
        assert!(s.emu.send_frame(&s.channel_id, Frame::Text(frame.clone())));
    }
    assert!(
        wait_until(WAIT, || s.delivered.load(Ordering::SeqCst) == 6),
        "delivered {} of 6; {:?}",
        s.delivered.load(Ordering::SeqCst),
        s.lifecycle.snapshot()
    );
    assert_eq!(
        s.last_seq.load(Ordering::SeqCst),
        6,
        "the last eventBody wins"
    );
    assert_eq!(s.client.health().malformed(), 0);
    assert_eq!(s.client.health().delivered(), 6);
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A frame that starts like a notification (`{"topicName":"v2.…"`) is queued on that alone and
/// its envelope is read by the dispatcher thread (issue 11: off the socket thread). When the
/// rest proves malformed, it is reported there just as the socket thread reports bad frames:
/// a `MalformedMessage` for its channel with the id shortened in the excerpt, counted as
/// malformed and not as received, and the events around it are delivered in order. A later
/// `topicName` naming a system message is never acted on (no switch, no disconnect).
#[test]
fn a_notification_malformed_past_its_topic_is_reported_by_the_dispatcher_and_loses_nothing() {
    let s = Setup::new();
    let t = &s.topic;
    let id = &s.channel_id;
    let bad = [
        // Cut short, naming the channel (its id is a credential) before the cut.
        format!(r#"{{"topicName":"{t}","eventBody":{{"channel":"{id}","seq":"#),
        format!(r#"{{"topicName":"{t}","version":"2"}}"#),
        format!(r#"{{"topicName":"{t}","eventBody":{{}},"topicName":"v2.system.socket_closing"}}"#),
    ];
    let mut seq = 0;
    for frame in &bad {
        seq += 1;
        assert_eq!(s.emu.publish(&s.topic, presence_body(seq)), 1);
        assert!(s.emu.send_frame(&s.channel_id, Frame::Text(frame.clone())));
    }
    s.publish_and_receive(seq + 1);
    let reports = s.wait_malformed(bad.len());
    assert!(reports[0].0.contains("JSON"), "{:?}", reports[0]);
    assert!(
        !reports[0].1.contains(id.as_str()) && reports[0].1.contains("topicName"),
        "the excerpt shows the frame, never the whole channel id: {:?}",
        reports[0].1
    );
    assert!(reports[1].0.contains("eventBody"), "{:?}", reports[1]);
    assert!(
        reports[2].0.contains("topicName given twice"),
        "{:?}",
        reports[2]
    );
    assert_eq!(s.delivered.load(Ordering::SeqCst), seq + 1);
    let health = s.client.health();
    assert_eq!(
        health.received(),
        seq + 1,
        "malformed frames are not notifications"
    );
    assert_eq!(health.delivered(), seq + 1);
    assert_eq!(health.channels()[0].malformed, bad.len() as u64);
    s.assert_same_socket();
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}
