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
    let s = OneChannel::start(|b| b);
    s.emu.inject(Fault::FragmentEvents {
        target: Target::channel(&s.id),
        events: 3,
        fragment_size: 7,
    });
    for seq in 1..=4 {
        assert_eq!(s.emu.publish(&s.topics[0], presence_body(seq)), 1);
    }
    assert!(wait_until(SOON, || s.seqs.snapshot().len() == 4));
    assert_eq!(s.seqs.snapshot(), [1, 2, 3, 4]);
    assert_eq!(
        s.rec.count(|e| matches!(
            e,
            Lifecycle::MalformedMessage { .. } | Lifecycle::Disconnected { .. }
        )),
        0
    );
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn oversize_frame_is_reported_then_the_socket_is_replaced() {
    let s = OneChannel::start(|b| b.max_message_size(MAX));
    // Just under the limit: read normally (unrouted: nobody listens to v2.emulator.oversize).
    s.emu.inject(Fault::OversizeFrame {
        target: Target::channel(&s.id),
        bytes: MAX - 1024,
    });
    assert!(wait_until(SOON, || s.client.health().received() == 1));
    let mark = s.rec.snapshot().len();
    s.emu.inject(Fault::OversizeFrame {
        target: Target::channel(&s.id),
        bytes: 2 * MAX,
    });
    assert!(wait_until(SOON, || connected_count(&s.rec) >= 2));
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 1));
    let events = since(&s.rec, mark);
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
    let health = s.client.health();
    assert_eq!(health.malformed(), 1);
    assert_eq!(channel_id(&s.client), s.id, "the channel is kept");
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn malformed_json_and_binary_frames_are_reported_and_the_stream_goes_on() {
    let s = OneChannel::start(|b| b);
    s.emu.inject(Fault::MalformedJson {
        target: Target::channel(&s.id),
    });
    s.emu.inject(Fault::BinaryFrame {
        target: Target::channel(&s.id),
        data: vec![0, 159, 146, 150],
    });
    assert_eq!(s.emu.publish(&s.topics[0], presence_body(1)), 1);
    assert!(wait_until(SOON, || s.seqs.contains(1)));
    assert!(wait_until(SOON, || s
        .rec
        .count(|e| matches!(e, Lifecycle::MalformedMessage { .. }))
        == 2));
    assert_eq!(s.client.health().malformed(), 2);
    assert_eq!(
        s.rec.count(|e| matches!(e, Lifecycle::Disconnected { .. })),
        0
    );
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}
