//! Tokens are refreshed before they expire, without touching any socket (crate guarantee
//! 5): with 3 s tokens, a client running for ~9 s refreshes its token several times ahead of
//! expiry, no REST call is ever refused with 401, no socket is closed or reconnected, events
//! flow throughout, and a subscription made late in the run works.
mod util;

use genesys_notify::emulator::EmulatorConfig;
use genesys_notify::{Event, Lifecycle};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

const WAIT: Duration = Duration::from_secs(10);
const TOKEN_LIFETIME: Duration = Duration::from_secs(3);
const RUN: Duration = Duration::from_secs(9);

#[test]
fn token_is_refreshed_ahead_of_expiry_without_touching_the_socket() {
    let emu = emulator_with(EmulatorConfig::default().token_lifetime(TOKEN_LIFETIME));
    let client = builder(&emu).build().unwrap();
    let lifecycle = Recorder::new(&client);
    let seen: Arc<Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let sink = seen.clone();
    let _guard = client
        .on("v2.users.*.*", move |e: &Event| {
            let seq = e.body_value().unwrap()["seq"].as_u64().unwrap();
            sink.lock()
                .entry(e.topic().to_owned())
                .or_default()
                .push(seq);
        })
        .unwrap();
    let topics = presence_topics(2);
    assert_eq!(client.subscribe(&topics).unwrap().permitted.len(), 2);
    wait_sockets(&emu, 1);

    // Publish every 50 ms, check the token with a REST call every 250 ms, and subscribe one
    // more topic late in the run.
    let late = format!("v2.users.{}.routingstatus", user_id(7));
    let mut published: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seq = 0u64;
    let started = Instant::now();
    let mut next_check = started;
    let mut late_subscribed = false;
    while started.elapsed() < RUN {
        seq += 1;
        let topic = if late_subscribed && seq % 3 == 0 {
            &late
        } else {
            &topics[(seq % 2) as usize]
        };
        assert_eq!(emu.publish(topic, presence_body(seq)), 1, "seq {seq}");
        published.entry(topic.clone()).or_default().push(seq);
        if Instant::now() >= next_check {
            client
                .verify_token()
                .unwrap_or_else(|e| panic!("verify_token at {:?}: {e}", started.elapsed()));
            next_check += Duration::from_millis(250);
        }
        if !late_subscribed && started.elapsed() >= RUN - Duration::from_secs(2) {
            let report = client.subscribe([&late]).unwrap();
            assert_eq!(report.permitted.len(), 1, "{report:?}");
            late_subscribed = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(late_subscribed);
    assert!(
        wait_until(WAIT, || *seen.lock() == published),
        "events lost or reordered: published {} events, seen {:?}",
        seq,
        seen.lock().values().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(published[&late].len() >= 5, "{:?}", published[&late]);

    // Refreshed several times, each time before the previous token expired.
    let refreshed = lifecycle.count(|e| matches!(e, Lifecycle::TokenRefreshed { .. }));
    assert!(refreshed >= 3, "only {refreshed} TokenRefreshed events");
    assert!(
        emu.token_requests() >= 3,
        "{} token requests",
        emu.token_requests()
    );
    assert_eq!(
        lifecycle.count(|e| matches!(e, Lifecycle::TokenRefreshFailed { .. })),
        0
    );
    let requests = emu.requests();
    let token_times: Vec<Instant> = requests
        .iter()
        .filter(|r| r.path.starts_with("/oauth/token"))
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            r.at
        })
        .collect();
    assert!(token_times.len() >= 3);
    println!(
        "{refreshed} refreshes, {} token requests, gaps {:?}",
        token_times.len(),
        token_times
            .windows(2)
            .map(|p| p[1] - p[0])
            .collect::<Vec<_>>()
    );
    for pair in token_times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap < TOKEN_LIFETIME,
            "a token lived {gap:?} without a refresh (lifetime {TOKEN_LIFETIME:?})"
        );
    }

    // No REST call was refused: every /api/v2 call carried a valid token.
    let api_calls: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v2"))
        .collect();
    assert!(api_calls.len() >= 30, "{} REST calls", api_calls.len());
    for r in &api_calls {
        assert_ne!(r.status, 401, "{} {} got 401", r.method, r.path);
        assert!(
            r.authorization_ok,
            "{} {} had a bad token",
            r.method, r.path
        );
    }

    // No socket was touched.
    let channels = emu.channels();
    assert_eq!(channels.len(), 1);
    for ch in &channels {
        assert!(ch.connected);
        assert_eq!(ch.connections, 1, "channel reconnected");
    }
    assert_eq!(
        lifecycle.count(|e| matches!(
            e,
            Lifecycle::Disconnected { .. }
                | Lifecycle::Reconnecting { .. }
                | Lifecycle::Gap { .. }
                | Lifecycle::RequestFailed { .. }
        )),
        0,
        "{:#?}",
        lifecycle.snapshot()
    );
    assert_eq!(client.health().channels()[0].reconnects, 0);
    client.shutdown(Duration::from_secs(2)).unwrap();
}
