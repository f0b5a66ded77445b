//! Every stage has a deadline (issue #3): a WebSocket handshake the server never answers fails
//! at `connect_timeout`, the next attempt follows the backoff, and it succeeds.
mod recovery;
mod util;

use genesys_notify::emulator::{Fault, SocketEventKind, Target};
use genesys_notify::Lifecycle;
use recovery::*;
use std::time::{Duration, Instant};
use util::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `(hung connection accepted, next connection's handshake done)` from the socket log.
fn hung_then_connected(emu: &genesys_notify::emulator::Emulator) -> Vec<(Instant, Instant)> {
    let log = emu.socket_log();
    let mut pairs = Vec::new();
    for (i, r) in log.iter().enumerate() {
        if r.kind == SocketEventKind::HandshakeHung {
            let next = log[i + 1..]
                .iter()
                .find(|n| {
                    n.connection > r.connection
                        && matches!(
                            n.kind,
                            SocketEventKind::Connected | SocketEventKind::HandshakeHung
                        )
                })
                .expect("a later attempt");
            pairs.push((r.at, next.at));
        }
    }
    pairs
}

fn reconnect_delays(rec: &Recorder) -> Vec<(u32, Duration, String)> {
    rec.snapshot()
        .iter()
        .filter_map(|e| match e {
            Lifecycle::Reconnecting {
                attempt,
                delay,
                error,
                ..
            } => Some((*attempt, *delay, error.clone())),
            _ => None,
        })
        .collect()
}

/// Robust under load (review point 9): it waits for the `Connected` report before reading the
/// recorder (lifecycle events reach listeners on their own thread, after the events may
/// flow), judges the first retry only (a loaded machine may add later reconnections of its
/// own), and bounds the hung attempt by the 5 s connect timeout it replaced rather than by a
/// tight margin.
#[test]
fn hung_first_handshake_times_out_then_succeeds() {
    let emu = emulator();
    emu.inject(Fault::HangHandshakes { times: 1 });
    let client = fast(&emu).connect_timeout(CONNECT_TIMEOUT).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    assert!(flows(&emu, &topics[0], &seqs, 1));
    assert!(rec.wait(SOON, |e| matches!(e, Lifecycle::Connected { .. })));

    let retries = reconnect_delays(&rec);
    // The first retry is the one after the hung handshake.
    let (attempt, delay, error) = retries.first().expect("a retry after the hung handshake");
    assert_eq!(*attempt, 1, "{retries:?}");
    assert!(error.contains("did not finish in time"), "{error}");
    let pairs = hung_then_connected(&emu);
    assert_eq!(pairs.len(), 1, "one handshake was hung");
    let gap = pairs[0].1.duration_since(pairs[0].0);
    // The hung attempt lasted the connect timeout, then the client waited its backoff delay.
    assert!(
        gap + Duration::from_millis(50) >= CONNECT_TIMEOUT + *delay,
        "next attempt {gap:?} after the hung one (delay {delay:?})"
    );
    // Abandoned at the 1 s connect timeout set here, not at the builder's 5 s (the margin
    // absorbs a loaded machine).
    assert!(
        gap < Duration::from_secs(5) + *delay,
        "hung attempt abandoned late: {gap:?}"
    );
    assert_in_order(
        &rec.snapshot(),
        &["ChannelCreated", "Reconnecting", "Subscribed", "Connected"],
    );
    println!("hung handshake → next attempt after {gap:?} (backoff {delay:?})");
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn hung_reconnect_handshakes_time_out_and_back_off_until_success() {
    let s = OneChannel::start(|b| {
        b.connect_timeout(CONNECT_TIMEOUT).backoff(
            genesys_notify::Backoff::default()
                .base(Duration::from_millis(200))
                .cap(Duration::from_millis(400)),
        )
    });
    s.emu.inject(Fault::HangHandshakes { times: 2 });
    s.emu.inject(Fault::DropSocket {
        target: Target::channel(&s.id),
    });
    assert!(wait_until(SOON, || connected_count(&s.rec) >= 2));
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 1));

    let retries = reconnect_delays(&s.rec);
    let attempts: Vec<u32> = retries.iter().map(|r| r.0).collect();
    assert_eq!(attempts, [1, 2, 3], "{retries:?}");
    assert!(retries[1].2.contains("did not finish in time"));
    assert!(retries[2].2.contains("did not finish in time"));
    for (i, (hung, next)) in hung_then_connected(&s.emu).into_iter().enumerate() {
        let delay = retries[i + 1].1;
        let gap = next.duration_since(hung);
        assert!(
            gap + Duration::from_millis(50) >= CONNECT_TIMEOUT + delay,
            "attempt {}: {gap:?} < timeout + {delay:?}",
            i + 1
        );
        assert!(gap <= CONNECT_TIMEOUT + delay + Duration::from_millis(1500));
    }
    assert_sequential_sockets(&s.emu);
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}
