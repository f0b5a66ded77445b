//! Backoff escalates on failures, not on healthy connections the server ended (issue #8.10): a
//! socket that was subscribed and read, then closed by the server (1000, 1001, 4000, channel
//! evicted), is followed by a prompt attempt that does not grow the retry count; a server that
//! accepts and closes at once still meets a growing backoff. The time without a socket is in
//! `health()`, and its total, like every total there, never goes down, even when a channel is
//! forgotten.
mod recovery;
mod util;

use genesys_notify::emulator::{Emulator, Fault, Target};
use genesys_notify::{Backoff, ClientBuilder, Lifecycle};
use recovery::*;
use std::time::Duration;
use util::*;

/// A backoff whose growth would show: 400 ms, 800 ms, 1.6 s, ...
fn slow_backoff(emu: &Emulator) -> ClientBuilder {
    fast(emu).backoff(
        Backoff::default()
            .base(Duration::from_millis(400))
            .cap(Duration::from_secs(4)),
    )
}

fn retries(rec: &Recorder) -> Vec<(u32, Duration)> {
    rec.snapshot()
        .iter()
        .filter_map(|e| match e {
            Lifecycle::Reconnecting { attempt, delay, .. } => Some((*attempt, *delay)),
            _ => None,
        })
        .collect()
}

fn close(id: &str, code: u16) -> Fault {
    Fault::CloseSocket {
        target: Target::channel(id),
        code,
        reason: format!("test close {code}"),
    }
}

/// Injects each fault into a healthy socket (subscribed, read for more than a second, events
/// flowing), waits for the reconnection and runs `after_each`; then checks that events flow and
/// returns the `Reconnecting` attempts and delays.
fn fault_healthy_sockets(
    s: &OneChannel,
    faults: &[fn(&str) -> Fault],
    mut after_each: impl FnMut(),
) -> Vec<(u32, Duration)> {
    assert!(wait_until(SOON, || connected_count(&s.rec) == 1));
    for (n, fault) in faults.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(1_200));
        assert!(flows(&s.emu, &s.topics[0], &s.seqs, n as u64));
        let connected = connected_count(&s.rec);
        s.emu.inject(fault(&channel_id(&s.client)));
        assert!(
            wait_until(SOON, || connected_count(&s.rec) > connected),
            "fault {n}: {:?}",
            kinds(&s.rec.snapshot())
        );
        after_each();
    }
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 99));
    retries(&s.rec)
}

#[test]
fn healthy_sockets_closed_by_the_server_reconnect_promptly_without_growing_the_backoff() {
    let s = OneChannel::start_on(emulator(), 1, slow_backoff);
    let faults: [fn(&str) -> Fault; 5] = [
        |id| close(id, 1000),
        |id| close(id, 1001),
        |id| close(id, 4000),
        |id| Fault::EvictChannel {
            channel_id: id.to_owned(),
        },
        |id| close(id, 1001),
    ];
    let mut last_total = Duration::ZERO;
    let retries = fault_healthy_sockets(&s, &faults, || {
        let total = s.client.health().without_socket();
        assert!(total >= last_total, "{total:?} < {last_total:?}");
        last_total = total;
    });
    assert_eq!(retries.len(), faults.len(), "{retries:?}");
    for (attempt, delay) in &retries {
        assert_eq!(*attempt, 1, "the count does not grow: {retries:?}");
        // The prompt attempt waits a jitter of at most 250 ms (and at most `base`).
        assert!(*delay <= Duration::from_millis(250), "{retries:?}");
    }
    let health = s.client.health();
    assert!(health.without_socket() > Duration::ZERO);
    assert!(health.channels()[0].without_socket <= health.without_socket());
    println!(
        "{} server closes: {:?} without a socket in total",
        faults.len(),
        health.without_socket()
    );
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn healthy_sockets_lost_without_a_close_frame_start_a_new_series_each_time() {
    // FIN, RST and a silent socket are not the server's choice, but a connection that was
    // healthy before it died is not a failed attempt: each loss starts again at attempt 1 (a
    // delay drawn up to `base`), however many come in a row.
    let s = OneChannel::start_on(emulator(), 1, slow_backoff);
    let faults: [fn(&str) -> Fault; 5] = [
        |id| Fault::DropSocket {
            target: Target::channel(id),
        },
        |id| Fault::ResetSocket {
            target: Target::channel(id),
        },
        |id| Fault::GoSilent {
            target: Target::channel(id),
        },
        |id| Fault::DropSocket {
            target: Target::channel(id),
        },
        |id| Fault::ResetSocket {
            target: Target::channel(id),
        },
    ];
    let retries = fault_healthy_sockets(&s, &faults, || {});
    assert_eq!(retries.len(), faults.len(), "{retries:?}");
    for (attempt, delay) in &retries {
        assert_eq!(*attempt, 1, "the count does not grow: {retries:?}");
        assert!(
            *delay <= Duration::from_millis(400),
            "at most `base`: {retries:?}"
        );
    }
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A server that accepts the socket and closes it at once is failing, not healthy: the
/// attempts keep counting up.
#[test]
fn a_server_that_closes_at_once_still_meets_a_growing_backoff() {
    let s = OneChannel::start_on(emulator(), 1, slow_backoff);
    for connected in 1..=3 {
        // Closed as soon as the client reports the socket connected.
        assert!(wait_until(SOON, || connected_count(&s.rec) >= connected));
        s.emu.inject(close(&s.id, 1000));
    }
    assert!(wait_until(SOON, || connected_count(&s.rec) > 3));
    let attempts: Vec<u32> = retries(&s.rec).iter().map(|r| r.0).collect();
    assert_eq!(attempts, [1, 2, 3], "{:?}", s.rec.snapshot());
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Forgetting a channel (an isolated one emptied by `unsubscribe`) keeps its counts in the
/// totals (issue #8.11).
#[test]
fn health_totals_never_go_down_when_a_channel_is_forgotten() {
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(2);
    assert_eq!(client.subscribe(&topics[..1]).unwrap().permitted.len(), 1);
    assert_eq!(
        client
            .subscribe_isolated(&topics[1..])
            .unwrap()
            .permitted
            .len(),
        1
    );
    assert!(flows(&emu, &topics[0], &seqs, 1));
    assert!(flows(&emu, &topics[1], &seqs, 2));
    let isolated = client.health().channels()[1]
        .channel
        .as_ref()
        .unwrap()
        .as_str()
        .to_owned();
    let connected = connected_count(&rec);
    emu.inject(Fault::DropSocket {
        target: Target::channel(&isolated),
    });
    assert!(wait_until(SOON, || connected_count(&rec) > connected));
    assert!(flows(&emu, &topics[1], &seqs, 3));

    let before = client.health();
    assert_eq!(before.channels().len(), 2);
    assert!(before.reconnects() >= 1 && before.without_socket() > Duration::ZERO);
    client.unsubscribe(&topics[1..]).unwrap();
    let after = client.health();
    assert_eq!(
        after.channels().len(),
        1,
        "the isolated channel is forgotten"
    );
    assert!(after.received() >= before.received());
    assert!(after.delivered() >= before.delivered());
    assert!(after.reconnects() >= before.reconnects());
    assert!(after.without_socket() >= before.without_socket());
    assert!(after.received() > after.channels()[0].received);
    client.shutdown(Duration::from_secs(2)).unwrap();
}
