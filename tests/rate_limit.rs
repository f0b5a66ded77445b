//! Polite retries of REST calls (issue #3): a 429's `Retry-After` is a lower bound for the next
//! attempt (measured on the emulator's own request timestamps); 5xx answers are retried with
//! backoff until one succeeds; a 401 costs exactly one token refresh, then the call succeeds.
mod recovery;
mod util;

use genesys_notify::emulator::{Emulator, Endpoint, Fault, RequestRecord, SocketEventKind, Target};
use genesys_notify::Lifecycle;
use recovery::*;
use std::time::{Duration, Instant};
use util::*;

const RETRY_AFTER: Duration = Duration::from_secs(2);

fn calls(emu: &Emulator, method: &str, path_contains: &str) -> Vec<RequestRecord> {
    emu.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.contains(path_contains))
        .collect()
}

fn rate_limit(endpoint: Endpoint) -> Fault {
    Fault::HttpStatus {
        endpoint,
        status: 429,
        retry_after: Some(RETRY_AFTER.as_secs()),
        times: 1,
    }
}

/// The attempt after a 429 (or a 503 with `Retry-After`) comes no sooner than `Retry-After`
/// after it.
fn assert_waited(calls: &[RequestRecord]) {
    assert!(calls.len() >= 2, "{calls:?}");
    assert!([429, 503].contains(&calls[0].status), "{:?}", calls[0]);
    assert!((200..300).contains(&calls[1].status), "{:?}", calls[1]);
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(waited >= RETRY_AFTER, "next attempt after {waited:?}");
    println!("next attempt {waited:?} after the 429");
}

/// A 429 on `endpoint` before the client exists: the first `subscribe` still succeeds, the
/// limited call (`method` on a path containing `path`) being retried no sooner than
/// `Retry-After`, and events flow.
fn first_subscribe_waits_out_429_on(endpoint: Endpoint, method: &str, path: &str) {
    let emu = emulator();
    emu.inject(rate_limit(endpoint));
    let client = fast(&emu).build().unwrap();
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    let report = client.subscribe(&topics).unwrap();
    assert_eq!(report.permitted.len(), 1);
    assert_waited(&calls(&emu, method, path));
    assert!(flows(&emu, &topics[0], &seqs, 1));
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A 503 with `Retry-After` is honoured as a 429 is (issue #8.11): the next attempt waits at
/// least that long, although the backoff alone would retry within milliseconds.
#[test]
fn create_channel_503_waits_for_retry_after() {
    let emu = emulator();
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::CreateChannel,
        status: 503,
        retry_after: Some(RETRY_AFTER.as_secs()),
        times: 1,
    });
    let client = fast(&emu).build().unwrap();
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    let report = client.subscribe(&topics).unwrap();
    assert_eq!(report.permitted.len(), 1);
    assert_waited(&calls(&emu, "POST", "/api/v2/notifications/channels"));
    assert!(flows(&emu, &topics[0], &seqs, 1));
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn create_channel_429_waits_for_retry_after() {
    first_subscribe_waits_out_429_on(
        Endpoint::CreateChannel,
        "POST",
        "/api/v2/notifications/channels",
    );
}

/// A 429 on the first `PUT` of a new channel's topics (made by the channel's thread).
#[test]
fn first_subscription_429_waits_for_retry_after() {
    first_subscribe_waits_out_429_on(Endpoint::Subscriptions, "PUT", "/subscriptions");
}

/// A 429 on a `PUT` adding topics to a running channel (made by the caller's thread).
#[test]
fn added_topics_429_waits_for_retry_after() {
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let seqs = Seqs::new(&client);
    let topics = presence_topics(2);
    let _ = client.subscribe(&topics[..1]).unwrap();
    emu.clear_records();
    emu.inject(rate_limit(Endpoint::Subscriptions));
    let report = client.subscribe(&topics[1..]).unwrap();
    assert_eq!(report.permitted.len(), 1);
    // Topics added to a channel are sent with `POST` (issue #11).
    assert_waited(&calls(&emu, "POST", "/subscriptions"));
    assert!(flows(&emu, &topics[1], &seqs, 1));
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn server_errors_are_retried_with_backoff_until_success() {
    let emu = emulator();
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::CreateChannel,
        status: 503,
        retry_after: None,
        times: 2,
    });
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::Subscriptions,
        status: 500,
        retry_after: None,
        times: 1,
    });
    let client = fast(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    let creates: Vec<u16> = calls(&emu, "POST", "/api/v2/notifications/channels")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(creates.len(), 3, "{creates:?}");
    assert_eq!(&creates[..2], [503, 503]);
    let puts: Vec<u16> = calls(&emu, "PUT", "/subscriptions")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert_eq!(puts[0], 500);
    assert!(flows(&emu, &topics[0], &seqs, 1));
    // Lifecycle events reach listeners on their own thread: an event can be delivered before the
    // `Connected` report that preceded it.
    assert!(rec.wait(SOON, |e| matches!(e, Lifecycle::Connected { .. })));
    // Each failure was reported and followed by a backoff, with growing attempt numbers.
    let events = rec.snapshot();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Lifecycle::RequestFailed { .. }))
            .count(),
        3
    );
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Lifecycle::Reconnecting { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_in_order(
        &events,
        &[
            "RequestFailed",
            "Reconnecting",
            "ChannelCreated",
            "Connected",
        ],
    );
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Every token the client holds stops working: the next REST call gets 401, the client fetches
/// exactly one new token and the call succeeds.
#[test]
fn unauthorized_call_refreshes_the_token_once() {
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let seqs = Seqs::new(&client);
    let topics = presence_topics(2);
    let _ = client.subscribe(&topics[..1]).unwrap();
    let before = emu.token_requests();
    emu.clear_records();
    emu.inject(Fault::ExpireTokens);
    let report = client.subscribe(&topics[1..]).unwrap();
    assert_eq!(report.permitted.len(), 1);
    assert_eq!(emu.token_requests(), before + 1, "exactly one refresh");
    let log: Vec<(String, u16)> = emu
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    // The added topic is sent with `POST .../subscriptions` (issue #11), around the token
    // request (`POST /oauth/token`).
    let paths: Vec<bool> = emu
        .requests()
        .iter()
        .map(|r| r.path.contains("/subscriptions"))
        .collect();
    assert_eq!(paths, [true, false, true]);
    assert_eq!(
        log,
        [
            ("POST".to_owned(), 401),
            ("POST".to_owned(), 200),
            ("POST".to_owned(), 200)
        ]
    );
    assert!(flows(&emu, &topics[1], &seqs, 1));
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A 401 injected on the API (the token itself still valid) is also answered with one refresh.
#[test]
fn injected_401_on_create_channel_refreshes_once_then_succeeds() {
    let emu = emulator();
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::CreateChannel,
        status: 401,
        retry_after: None,
        times: 1,
    });
    let client = fast(&emu).build().unwrap();
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    assert!(wait_until(SOON, || flows(&emu, &topics[0], &seqs, 1)));
    // One token at start, one after the 401.
    assert_eq!(emu.token_requests(), 2);
    let creates: Vec<u16> = calls(&emu, "POST", "/api/v2/notifications/channels")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(creates, [401, 200]);
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Starts a client, rate-limits `endpoint` once, drops the socket and waits for the client to
/// reconnect. Returns the running client and when its second socket connected.
fn reconnect_after_429_on(endpoint: Endpoint) -> (OneChannel, Instant) {
    let s = OneChannel::start(|b| b);
    s.emu.inject(rate_limit(endpoint));
    s.emu.inject(Fault::DropSocket {
        target: Target::channel(&s.id),
    });
    assert!(wait_until(SOON, || connected_count(&s.rec) >= 2));
    let reconnected = s
        .emu
        .socket_log()
        .iter()
        .filter(|r| r.kind == SocketEventKind::Connected)
        .nth(1)
        .unwrap()
        .at;
    (s, reconnected)
}

/// A WebSocket upgrade answered 429 with `Retry-After`: the next handshake waits that long.
#[test]
fn handshake_429_waits_for_retry_after() {
    let (s, next) = reconnect_after_429_on(Endpoint::WebSocketHandshake);
    let limited = s
        .emu
        .socket_log()
        .iter()
        .find(|r| r.kind == SocketEventKind::HandshakeRejected { status: 429 })
        .expect("a rate-limited handshake")
        .at;
    let waited = next.duration_since(limited);
    assert!(waited >= RETRY_AFTER, "next handshake after {waited:?}");
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 1));
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// The channel check after a lost socket (`HEAD`) answered 429: the reconnection waits for
/// `Retry-After` too.
#[test]
fn head_channel_429_delays_the_reconnection() {
    let (s, next) = reconnect_after_429_on(Endpoint::HeadChannel);
    let limited = calls(&s.emu, "HEAD", "/api/v2/notifications/channels/")[0].clone();
    assert_eq!(limited.status, 429);
    let waited = next.duration_since(limited.at);
    assert!(
        waited >= RETRY_AFTER,
        "reconnected {waited:?} after the 429"
    );
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 1));
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Review finding: during an outage `RequestFailed` flooded listeners, one per failed request.
/// Now the first failure is reported at once, its repeats in one report carrying their number
/// (at the latest when the channel recovers, before `ChannelCreated`), and the health snapshot
/// still counts every failure.
#[test]
fn an_outage_reports_the_first_failure_and_then_the_repeats_with_their_count() {
    let emu = emulator();
    const FAILURES: usize = 12;
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::CreateChannel,
        status: 503,
        retry_after: None,
        times: FAILURES,
    });
    let client = fast(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let topics = presence_topics(1);
    let report = client.subscribe(&topics).unwrap();
    assert_eq!(report.permitted.len(), 1);
    assert_eq!(
        calls(&emu, "POST", "/api/v2/notifications/channels")
            .iter()
            .filter(|r| r.status == 503)
            .count(),
        FAILURES
    );
    assert!(rec.wait(SOON, |e| matches!(e, Lifecycle::Connected { .. })));
    let events = rec.snapshot();
    let counts: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Lifecycle::RequestFailed { count, .. } => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(counts.first(), Some(&1), "{counts:?}");
    assert!(counts.len() < FAILURES, "not coalesced: {counts:?}");
    // Every failure is in one report or another and in the health count (a loaded machine may
    // add a timed-out request of its own to the 503s).
    let reported = counts.iter().sum::<u64>();
    assert_eq!(client.health().request_failures(), reported, "{counts:?}");
    assert!(reported >= FAILURES as u64, "{counts:?}");
    assert_in_order(&events, &["RequestFailed", "ChannelCreated", "Connected"]);
    // Every report of the channel creation was delivered before its recovery was.
    let created = events
        .iter()
        .position(|e| matches!(e, Lifecycle::ChannelCreated { .. }))
        .unwrap();
    assert!(events[created..].iter().all(|e| !matches!(
        e,
        Lifecycle::RequestFailed {
            operation: "create channel",
            ..
        }
    )));
    client.shutdown(Duration::from_secs(2)).unwrap();
}
