//! Resync after gaps (issue #9): the client reads the state of a gap's topics over REST once the
//! socket is back, and delivers it as snapshots through the same listeners, in bulk requests,
//! politely, never after a newer live event.
mod resync;
mod util;

use genesys_notify::emulator::{Endpoint, Fault};
use genesys_notify::{Lifecycle, ResyncError, Snapshots};
use resync::*;
use serde_json::json;
use std::time::{Duration, Instant};
use util::*;

const LONG: Duration = Duration::from_secs(30);

fn users(n: usize) -> Vec<String> {
    (0..n).map(user_id).collect()
}

fn resynced(rec: &Recorder) -> usize {
    rec.count(|e| matches!(e, Lifecycle::Resynced { .. }))
}

fn gaps(rec: &Recorder) -> usize {
    rec.count(|e| matches!(e, Lifecycle::Gap { .. }))
}

#[test]
fn outage_with_changes_ends_with_every_view_equal_to_the_server_in_bulk_requests() {
    let emu = emulator();
    let users = users(100);
    for (i, user) in users.iter().enumerate() {
        emu.set_user_presence(user, "AVAILABLE");
        emu.set_user_routing_status(user, if i % 2 == 0 { "IDLE" } else { "OFF_QUEUE" });
    }
    // The outage: the socket drops and the next handshake hangs for the connect timeout (3 s).
    let client = builder(&emu)
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let presence = View::new(&client, "v2.users.*.presence");
    let routing = View::new(&client, "v2.users.*.routingStatus");
    let both = View::new(&client, "v2.users.*.*");
    subscribe_all(&client, combined_topics(&users));
    wait_sockets(&emu, 1);
    assert_eq!(
        emu.state_requests().len(),
        0,
        "no snapshot at subscribe by default"
    );

    emu.inject(Fault::HangHandshakes { times: 1 });
    drop_all_sockets(&emu);
    assert!(emu.wait_for(LONG, |e| !e.channels()[0].connected));
    // Every user changes both twice while no socket is connected: all lost on the wire.
    for round in 0..2 {
        for user in &users {
            let presence = if round == 0 { "AWAY" } else { "ON_QUEUE" };
            emu.publish(&presence_topic(user), emu.set_user_presence(user, presence));
            let status = if round == 0 {
                "INTERACTING"
            } else {
                "NOT_RESPONDING"
            };
            emu.publish(
                &routing_topic(user),
                emu.set_user_routing_status(user, status),
            );
        }
    }
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Gap { .. })));
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Resynced { .. })));
    assert!(
        wait_until(LONG, || out_of_date(&emu, &both, &users, true, true)
            .is_empty()),
        "stale views: {:?}",
        out_of_date(&emu, &both, &users, true, true)
    );
    assert_eq!(
        out_of_date(&emu, &presence, &users, true, false),
        Vec::<String>::new()
    );
    assert_eq!(
        out_of_date(&emu, &routing, &users, false, true),
        Vec::<String>::new()
    );

    // The bound (docs/protocol.md): ceil(100 / 50) presence bulk reads + ceil(100 / 100) users
    // pages, no retry needed here.
    let requests = emu.state_requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert!(requests.iter().all(|r| r.status == 200));
    let health = client.health().resync().clone();
    assert_eq!(health.requests, 3);
    assert_eq!(health.snapshots_queued, 200);
    assert_eq!(health.failures, 0);
    match rec
        .snapshot()
        .into_iter()
        .find(|e| matches!(e, Lifecycle::Resynced { .. }))
    {
        Some(Lifecycle::Resynced {
            topics,
            snapshots,
            failures,
            ..
        }) => {
            assert_eq!(topics.len(), 100);
            assert_eq!((snapshots, failures), (200, 0));
        }
        other => panic!("no Resynced: {other:?}"),
    }
    assert_eq!(gaps(&rec), 1);
    // Snapshots reached every listener, in the event shape, marked as snapshots.
    let log = both.log(&presence_topic(&users[0]));
    let snap = log
        .iter()
        .find(|s| s.snapshot)
        .expect("a presence snapshot");
    assert_eq!(
        snap.body["presenceDefinition"]["systemPresence"],
        "ON_QUEUE"
    );
    assert_eq!(snap.topic, presence_topic(&users[0]));
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn changes_racing_a_held_fetch_win_and_no_live_event_is_lost_or_doubled() {
    let emu = emulator();
    let users = users_in_state(&emu, 10, "AVAILABLE", Some("IDLE"));
    let client = builder(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.users.*.*");
    subscribe_all(&client, combined_topics(&users));
    wait_sockets(&emu, 1);

    // The state answers are computed when the request arrives, then held.
    let hold = emu.hold_state_responses();
    drop_all_sockets(&emu);
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Gap { .. })));
    assert!(
        hold.wait_held(1, LONG),
        "the resync's first request is held"
    );
    // While it is held: every user changes both, live (the socket is back).
    for (seq, user) in users.iter().enumerate() {
        let mut body = emu.set_user_presence(user, "BUSY");
        body["seq"] = json!(seq);
        emu.publish(&presence_topic(user), body);
        let mut body = emu.set_user_routing_status(user, "INTERACTING");
        body["seq"] = json!(seq);
        emu.publish(&routing_topic(user), body);
    }
    assert!(wait_until(LONG, || out_of_date(
        &emu, &view, &users, true, true
    )
    .is_empty()));
    hold.release();
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Resynced { .. })));
    // Wait until the dispatcher has dealt with every snapshot (delivered or skipped).
    let health = || client.health().resync().clone();
    assert!(wait_until(LONG, || {
        let h = health();
        h.pending_topics == 0
            && view.snapshots() as u64 + h.snapshots_superseded == h.snapshots_queued
    }));

    assert_eq!(
        out_of_date(&emu, &view, &users, true, true),
        Vec::<String>::new()
    );
    // The held presence answers were older than the live changes: skipped, none delivered.
    assert!(health().snapshots_superseded >= 10, "{:?}", health());
    for user in &users {
        for topic in [presence_topic(user), routing_topic(user)] {
            let log = view.log(&topic);
            let live: Vec<&Seen> = log.iter().filter(|s| !s.snapshot).collect();
            assert_eq!(live.len(), 1, "each live event exactly once: {log:#?}");
            // A snapshot may only show the state the live event set (it was read after it),
            // never the older one.
            for s in log.iter().filter(|s| s.snapshot) {
                let newest = &live[0].body;
                if topic.ends_with("presence") {
                    assert_eq!(s.body["presenceDefinition"], newest["presenceDefinition"]);
                } else {
                    assert_eq!(s.body["routingStatus"], newest["routingStatus"]);
                }
            }
        }
    }
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn retry_after_on_the_first_bulk_request_holds_the_next_one_back_and_all_converge() {
    let emu = emulator();
    let users = users_in_state(&emu, 2000, "AVAILABLE", None);
    let client = builder(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.users.*.presence");
    let topics: Vec<String> = users.iter().map(|u| presence_topic(u)).collect();
    subscribe_all(&client, &topics);
    wait_sockets(&emu, 2);
    for user in users.iter().step_by(7) {
        emu.set_user_presence(user, "MEAL");
    }
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::PresenceBulk,
        status: 429,
        retry_after: Some(1),
        times: 1,
    });
    drop_all_sockets(&emu);
    assert!(
        wait_until(LONG, || resynced(&rec) == 2),
        "{:?}",
        rec.snapshot()
    );
    assert!(
        wait_until(LONG, || out_of_date(&emu, &view, &users, true, false)
            .is_empty()),
        "{} stale",
        out_of_date(&emu, &view, &users, true, false).len()
    );
    let requests = emu.state_requests();
    assert_eq!(requests[0].status, 429);
    assert!(
        requests[1].at.duration_since(requests[0].at) >= Duration::from_secs(1),
        "the next request waited {:?}",
        requests[1].at.duration_since(requests[0].at)
    );
    // 2 000 / 50 bulk reads, plus the one answered 429.
    assert_eq!(requests.len(), 41);
    assert!(requests.iter().all(|r| r.path.matches("id=").count() <= 50));
    assert_eq!(client.health().resync().clone().rate_limited, 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn missing_permission_is_reported_once_per_topic_and_live_events_keep_flowing() {
    let emu = emulator();
    let users = users_in_state(&emu, 5, "AVAILABLE", None);
    emu.deny_state_resource(Endpoint::PresenceBulk, &["presence:userPresence:view"]);
    let client = builder(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.users.*.presence");
    let topics: Vec<String> = users.iter().map(|u| presence_topic(u)).collect();
    subscribe_all(&client, &topics);
    wait_sockets(&emu, 1);

    let failed = |rec: &Recorder| rec.count(|e| matches!(e, Lifecycle::ResyncFailed { .. }));
    for outage in 1..=2 {
        drop_all_sockets(&emu);
        assert!(wait_until(LONG, || gaps(&rec) == outage));
        wait_sockets(&emu, 1);
        // Live events flow after each gap.
        let mut body = emu.set_user_presence(&users[0], "BUSY");
        body["seq"] = json!(outage);
        emu.publish(&topics[0], body);
        assert!(wait_until(LONG, || view
            .log(&topics[0])
            .iter()
            .any(|s| s.body["seq"] == json!(outage))));
    }
    assert!(wait_until(LONG, || failed(&rec) == 5));
    // The second gap's resync made no request: the denied topics are not read again. Its
    // job is done once the engine has nothing pending.
    assert!(wait_until(LONG, || client
        .health()
        .resync()
        .clone()
        .pending_topics
        == 0));
    assert_eq!(emu.state_requests().len(), 1, "{:#?}", emu.state_requests());
    assert_eq!(failed(&rec), 5, "once per topic");
    for event in rec.snapshot() {
        if let Lifecycle::ResyncFailed { topic, error, .. } = event {
            assert!(topics
                .iter()
                .any(|t| t.eq_ignore_ascii_case(topic.as_str())));
            match &error {
                ResyncError::Forbidden {
                    missing_permissions,
                    ..
                } => assert_eq!(missing_permissions, &vec!["presence:userPresence:view"]),
                other => panic!("{other:?}"),
            }
            assert!(error.to_string().contains("presence:userPresence:view"));
        }
    }
    assert_eq!(view.snapshots(), 0);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn topic_without_state_resource_gets_only_its_gap() {
    let emu = emulator();
    let user = user_id(1);
    emu.set_user_presence(&user, "AVAILABLE");
    let queue = "v2.routing.queues.5a6b7c8d-0000-4000-8000-000000000001.conversations";
    let client = builder(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.routing.queues.*.conversations");
    let report = client
        .subscribe([queue.to_owned(), presence_topic(&user)])
        .unwrap();
    assert!(report.rejected.is_empty());
    wait_sockets(&emu, 1);
    drop_all_sockets(&emu);
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Gap { .. })));
    // The presence topic on the same channel shows the gap's resync is done.
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Resynced { .. })));
    let requests = emu.state_requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(requests[0]
        .path
        .starts_with("/api/v2/users/presences/purecloud/bulk"));
    assert!(emu.requests().iter().all(|r| !r.path.contains("queues")));
    assert_eq!(view.snapshots(), 0);
    assert_eq!(
        rec.count(|e| matches!(e, Lifecycle::ResyncFailed { .. })),
        0
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn snapshots_off_make_no_state_request() {
    let emu = emulator();
    let user = user_id(2);
    emu.set_user_presence(&user, "AVAILABLE");
    let client = builder(&emu).snapshots(Snapshots::Off).build().unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.users.*.presence");
    subscribe_all(&client, [presence_topic(&user)]);
    wait_sockets(&emu, 1);
    drop_all_sockets(&emu);
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Gap { .. })));
    wait_sockets(&emu, 1);
    emu.publish(&presence_topic(&user), emu.set_user_presence(&user, "AWAY"));
    assert!(wait_until(LONG, || view
        .latest(&presence_topic(&user))
        .is_some()));
    assert!(emu.state_requests().is_empty());
    assert_eq!(view.snapshots(), 0);
    assert_eq!(
        client.health().resync().clone(),
        genesys_notify::ResyncHealth::default()
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn shutdown_during_a_long_resync_returns_within_its_timeout() {
    let emu = emulator();
    let users = users(200);
    let client = builder(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let topics: Vec<String> = users.iter().map(|u| presence_topic(u)).collect();
    subscribe_all(&client, &topics);
    wait_sockets(&emu, 1);
    // The resync is told to wait a minute before its next request.
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::PresenceBulk,
        status: 429,
        retry_after: Some(60),
        times: 1,
    });
    drop_all_sockets(&emu);
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Gap { .. })));
    assert!(emu.wait_for(LONG, |e| !e.state_requests().is_empty()));
    assert!(
        client.health().resync().clone().pending_topics > 0,
        "the resync is waiting"
    );
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    client.shutdown(timeout).unwrap();
    assert!(started.elapsed() < timeout, "took {:?}", started.elapsed());
    assert_eq!(emu.state_requests().len(), 1, "nothing read after shutdown");
}

#[test]
fn a_slow_lifecycle_listener_slows_the_reports_down_but_loses_none() {
    let emu = emulator();
    let users = users(5000);
    emu.deny_state_resource(Endpoint::PresenceBulk, &["presence:userPresence:view"]);
    let client = builder(&emu).build().unwrap();
    // A lifecycle listener stuck on the first report until the test lets it go: the lifecycle
    // queue (4 096 events) fills up with the 5 000 per-topic reports.
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = failed.clone();
    let _stuck = client
        .on_lifecycle(move |event| {
            if let Lifecycle::ResyncFailed { .. } = event {
                if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    let _ = release_rx.recv_timeout(LONG);
                }
            }
        })
        .unwrap();
    let topics: Vec<String> = users.iter().map(|u| presence_topic(u)).collect();
    subscribe_all(&client, &topics);
    wait_sockets(&emu, 5);
    drop_all_sockets(&emu);
    // Nearly 4 096 reports (and a few other lifecycle events) fill the queue; give the resync
    // time to run into the full queue, where it now waits (it used to drop the rest).
    assert!(
        wait_until(LONG, || client.health().resync().clone().failures >= 4000),
        "{:?}",
        client.health().resync().clone()
    );
    std::thread::sleep(Duration::from_millis(300));
    release_tx.send(()).unwrap();
    let count = || failed.load(std::sync::atomic::Ordering::SeqCst);
    assert!(wait_until(LONG, || count() == 5000), "{} reports", count());
    // (Other lifecycle events, such as a late `Connected`, may have been dropped while the
    // listener was stuck: they do not wait as long.)
    assert_eq!(client.health().resync().clone().failures, 5000);
    // 5 000 / 50 bulk reads, each refused once, none retried.
    assert_eq!(emu.state_requests().len(), 100);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn replacement_channel_is_resynced_and_server_errors_are_retried() {
    let emu = emulator();
    let users = users_in_state(&emu, 60, "AVAILABLE", Some("IDLE"));
    let client = builder(&emu)
        .resync_backoff(
            genesys_notify::Backoff::default()
                .base(Duration::from_millis(10))
                .cap(Duration::from_millis(100))
                .max_retries(Some(5)),
        )
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.users.*.*");
    subscribe_all(&client, combined_topics(&users));
    wait_sockets(&emu, 1);
    let old = emu.channels()[0].id.clone();
    // Changes nobody hears about (set, not published), two 503s on the state reads, then the
    // channel is evicted: the client makes a new one.
    for user in &users {
        emu.set_user_presence(user, "BREAK");
        emu.set_user_routing_status(user, "OFF_QUEUE");
    }
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::PresenceBulk,
        status: 503,
        retry_after: None,
        times: 2,
    });
    emu.inject(Fault::EvictChannel {
        channel_id: old.clone(),
    });
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::ChannelReplaced { .. })));
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Resynced { .. })));
    assert!(
        wait_until(LONG, || out_of_date(&emu, &view, &users, true, true)
            .is_empty()),
        "{:?}",
        out_of_date(&emu, &view, &users, true, true)
    );
    let new = emu.channels()[0].id.clone();
    assert_ne!(new, old);
    match rec
        .snapshot()
        .into_iter()
        .find(|e| matches!(e, Lifecycle::Resynced { .. }))
    {
        Some(Lifecycle::Resynced {
            channel,
            snapshots,
            failures,
            ..
        }) => {
            assert_eq!(channel.as_str(), new);
            assert_eq!((snapshots, failures), (120, 0));
        }
        other => panic!("{other:?}"),
    }
    // The bound: ceil(60 / 50) + ceil(60 / 100) reads, plus the two refused ones.
    let requests = emu.state_requests();
    assert_eq!(requests.len(), 3 + 2, "{requests:#?}");
    assert_eq!(requests.iter().filter(|r| r.status == 503).count(), 2);
    client.shutdown(Duration::from_secs(5)).unwrap();
}
