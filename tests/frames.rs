//! Odd frames (issue #3): fragmented events are delivered whole; a frame over
//! `max_message_size` is reported as `MalformedMessage` and the socket is replaced, with no crash
//! and events flowing after; malformed JSON and binary frames are reported and the stream goes on.
mod recovery;
mod util;

use genesys_notify::emulator::{Fault, Target};
use genesys_notify::{DisconnectCause, Lifecycle};
use recovery::*;
use std::time::Duration;
use util::*;

const MAX: usize = 64 * 1024;

#[test]
fn fragmented_events_are_delivered_whole() {
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    client.subscribe(&topics).unwrap();
    wait_registered(&emu);
    let id = channel_id(&client);
    emu.inject(Fault::FragmentEvents {
        target: Target::channel(&id),
        events: 3,
        fragment_size: 7,
    });
    for seq in 1..=4 {
        assert_eq!(emu.publish(&topics[0], presence_body(seq)), 1);
    }
    assert!(wait_until(SOON, || seqs.snapshot().len() == 4));
    assert_eq!(seqs.snapshot(), [1, 2, 3, 4]);
    assert_eq!(
        rec.count(|e| matches!(
            e,
            Lifecycle::MalformedMessage { .. } | Lifecycle::Disconnected { .. }
        )),
        0
    );
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn oversize_frame_is_reported_then_the_socket_is_replaced() {
    let emu = emulator();
    let client = fast(&emu).max_message_size(MAX).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    client.subscribe(&topics).unwrap();
    wait_registered(&emu);
    let id = channel_id(&client);
    // Just under the limit: read normally (unrouted: nobody listens to v2.emulator.oversize).
    emu.inject(Fault::OversizeFrame {
        target: Target::channel(&id),
        bytes: MAX - 1024,
    });
    assert!(wait_until(SOON, || client.health().received() == 1));
    let mark = rec.snapshot().len();
    emu.inject(Fault::OversizeFrame {
        target: Target::channel(&id),
        bytes: 2 * MAX,
    });
    assert!(wait_until(SOON, || connected_count(&rec) >= 2));
    assert!(flows(&emu, &topics[0], &seqs, 1));
    let events = since(&rec, mark);
    assert_in_order(
        &events,
        &[
            "MalformedMessage",
            "Disconnected",
            "Reconnecting",
            "Connected",
            "Gap",
        ],
    );
    let cause = events
        .iter()
        .find_map(|e| match e {
            Lifecycle::Disconnected { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .unwrap();
    assert!(matches!(cause, DisconnectCause::Protocol(_)), "{cause:?}");
    let health = client.health();
    assert_eq!(health.malformed(), 1);
    assert_eq!(channel_id(&client), id, "the channel is kept");
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn malformed_json_and_binary_frames_are_reported_and_the_stream_goes_on() {
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    client.subscribe(&topics).unwrap();
    wait_registered(&emu);
    let id = channel_id(&client);
    emu.inject(Fault::MalformedJson {
        target: Target::channel(&id),
    });
    emu.inject(Fault::BinaryFrame {
        target: Target::channel(&id),
        data: vec![0, 159, 146, 150],
    });
    assert_eq!(emu.publish(&topics[0], presence_body(1)), 1);
    assert!(wait_until(SOON, || seqs.contains(1)));
    assert!(wait_until(SOON, || rec
        .count(|e| matches!(e, Lifecycle::MalformedMessage { .. }))
        == 2));
    assert_eq!(client.health().malformed(), 2);
    assert_eq!(
        rec.count(|e| matches!(e, Lifecycle::Disconnected { .. })),
        0
    );
    client.shutdown(Duration::from_secs(2)).unwrap();
}
