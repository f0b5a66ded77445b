//! No silent loss (issue #3): every interval without a socket yields exactly one
//! `Lifecycle::Gap`, right after the `Connected` that ends it, with `start <= end` inside the
//! interval and the channel's topics — however many attempts the interval took, and whether or
//! not the channel had to be replaced.
mod recovery;
mod util;

use genesys_notify::emulator::{Endpoint, Fault, Target};
use genesys_notify::{Lifecycle, Topic};
use recovery::*;
use std::time::{Duration, SystemTime};
use util::*;

#[test]
fn each_interval_without_a_socket_yields_exactly_one_gap() {
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(3);
    let _ = client.subscribe(&topics).unwrap();
    assert!(flows(&emu, &topics[0], &seqs, 0));
    assert_eq!(
        rec.count(|e| matches!(e, Lifecycle::Gap { .. })),
        0,
        "no gap at start"
    );

    // Each entry: faults injected before cutting the socket, and how the socket is cut.
    type Cut = fn(&str) -> Vec<Fault>;
    let cycles: [(&str, Cut); 5] = [
        ("drop", |id| {
            vec![Fault::DropSocket {
                target: Target::channel(id),
            }]
        }),
        ("close 1011", |id| {
            vec![Fault::CloseSocket {
                target: Target::channel(id),
                code: 1011,
                reason: "internal error".into(),
            }]
        }),
        ("three refused handshakes", |id| {
            vec![
                Fault::RefuseHandshakes { times: 3 },
                Fault::DropSocket {
                    target: Target::channel(id),
                },
            ]
        }),
        (
            "subscription 500 after reconnecting to a new channel",
            |id| {
                vec![
                    Fault::HttpStatus {
                        endpoint: Endpoint::Subscriptions,
                        status: 500,
                        retry_after: None,
                        times: 1,
                    },
                    Fault::EvictChannel {
                        channel_id: id.to_owned(),
                    },
                ]
            },
        ),
        ("liveness timeout", |id| {
            vec![Fault::GoSilent {
                target: Target::channel(id),
            }]
        }),
    ];
    let mut windows = Vec::new();
    for (n, (name, cut)) in cycles.iter().enumerate() {
        let id = channel_id(&client);
        let connected = connected_count(&rec);
        let before = SystemTime::now();
        for fault in cut(&id) {
            emu.inject(fault);
        }
        assert!(
            wait_until(SOON, || connected_count(&rec) > connected),
            "{name}: no reconnect"
        );
        assert!(flows(&emu, &topics[n % 3], &seqs, n as u64 + 1), "{name}");
        let after = SystemTime::now();
        windows.push((name, before, after, channel_id(&client)));
    }

    let events = rec.snapshot();
    let gaps: Vec<(usize, &Lifecycle)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Lifecycle::Gap { .. }))
        .collect();
    assert_eq!(
        gaps.len(),
        cycles.len(),
        "one gap per interval: {:?}",
        kinds(&events)
    );
    let mut wanted: Vec<Topic> = topics.iter().map(|t| Topic::parse(t).unwrap()).collect();
    wanted.sort();
    // Wall-clock readings from two sources (the gap's start is derived from a monotonic clock).
    let slack = Duration::from_millis(20);
    let mut previous_end: Option<SystemTime> = None;
    for ((at, gap), (name, before, after, id)) in gaps.into_iter().zip(&windows) {
        let Lifecycle::Gap {
            channel,
            start,
            end,
            topics,
            ..
        } = gap
        else {
            unreachable!()
        };
        // The gap starts at the last frame of the lost socket (events may be lost from there
        // on) and ends when the new socket is subscribed: inside the interval between the end
        // of the previous gap and the moment events flowed again, covering the fault.
        assert!(start <= end, "{name}");
        assert!(
            *end >= *before && *end <= *after,
            "{name}: gap end {end:?} outside {before:?}..{after:?}"
        );
        assert!(*start <= *after, "{name}");
        if let Some(previous_end) = previous_end {
            assert!(*start + slack >= previous_end, "{name}: gaps overlap");
        }
        previous_end = Some(*end);
        assert_eq!(channel.as_str(), id, "{name}");
        let mut got = topics.clone();
        got.sort();
        assert_eq!(got, wanted, "{name}");
        // The gap follows the Connected that ends the interval.
        let previous = events[..at]
            .iter()
            .rev()
            .find(|e| {
                matches!(
                    e,
                    Lifecycle::Connected { .. } | Lifecycle::Disconnected { .. }
                )
            })
            .unwrap();
        assert!(matches!(previous, Lifecycle::Connected { .. }), "{name}");
    }
    // Events published while connected were all delivered.
    let mut seen = seqs.snapshot();
    seen.dedup();
    assert_eq!(seen, (0..=cycles.len() as u64).collect::<Vec<_>>());
    // One socket at a time throughout.
    assert_sequential_sockets(&emu);
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Unsubscribing every topic of a channel while its socket is down (handshakes hang) closes
/// the channel without a `Gap` naming no topic: nothing anyone still wants was lost.
#[test]
fn a_channel_emptied_during_an_outage_reports_no_gap_without_topics() {
    let emu = emulator();
    let (client, lifecycle, topics) = hanging_reconnection(&emu);
    assert_eq!(client.unsubscribe(&topics).unwrap().len(), 2);
    assert!(client.health().channels().is_empty());
    client.shutdown(Duration::from_secs(5)).unwrap();
    let empty_gaps =
        lifecycle.count(|e| matches!(e, Lifecycle::Gap { topics, .. } if topics.is_empty()));
    assert_eq!(empty_gaps, 0, "{:#?}", lifecycle.snapshot());
}
