//! Liveness is bounded (issue #3): a half-open socket (the server goes silent, TCP stays up) is
//! detected and replaced within the configured bound; any inbound frame keeps a socket alive;
//! time the socket thread spends blocked by backpressure is not silence; the application ping's
//! round trip shows in the health snapshot.
mod recovery;
mod util;

use genesys_notify::emulator::{EmulatorConfig, Fault, SocketEventKind, Target};
use genesys_notify::{Backpressure, DisconnectCause, Lifecycle};
use recovery::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

/// The liveness bound configured in these tests: ping after 1 s of silence, pong within 1 s,
/// dead after 2 s of silence in any case.
const BOUND: Duration = Duration::from_secs(2);

fn bounded(emu: &genesys_notify::emulator::Emulator) -> genesys_notify::ClientBuilder {
    builder(emu)
        .ping_interval(Duration::from_secs(1))
        .pong_timeout(Duration::from_secs(1))
        .liveness_timeout(BOUND)
}

#[test]
fn silent_socket_is_detected_and_replaced_within_the_bound() {
    let s = OneChannel::start_on(emulator(), 1, bounded);
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 1));
    let mark = s.rec.snapshot().len();

    let silenced = Instant::now();
    s.emu.inject(Fault::GoSilent {
        target: Target::channel(&s.id),
    });
    assert!(wait_until(SOON, || s.rec.count(|e| matches!(
        e,
        Lifecycle::Disconnected {
            cause: DisconnectCause::LivenessTimeout { .. },
            ..
        }
    )) > 0));
    let detected = silenced.elapsed();
    // The bound, plus the read loop's tick (a quarter of the shortest timing) and scheduling slack.
    assert!(
        detected <= BOUND + Duration::from_millis(900),
        "half-open socket detected after {detected:?}"
    );
    assert!(wait_until(SOON, || connected_count(&s.rec) >= 2));
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 2));
    let events = since(&s.rec, mark);
    assert_in_order(
        &events,
        &["Disconnected", "Reconnecting", "Connected", "Gap"],
    );
    let silent_for = events
        .iter()
        .find_map(|e| match e {
            Lifecycle::Disconnected {
                cause: DisconnectCause::LivenessTimeout { silent_for, .. },
                ..
            } => Some(*silent_for),
            _ => None,
        })
        .unwrap();
    assert!(
        silent_for <= BOUND + Duration::from_millis(900),
        "{silent_for:?}"
    );
    assert_eq!(channel_id(&s.client), s.id, "the channel itself is fine");
    println!("half-open socket detected after {detected:?} (silent for {silent_for:?})");
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Heartbeats (any inbound frame) reset the silence clock: no ping is sent, nothing reconnects.
#[test]
fn heartbeats_keep_an_idle_socket_alive_without_pings() {
    let emu =
        emulator_with(EmulatorConfig::default().heartbeat_interval(Duration::from_millis(150)));
    let client = fast(&emu)
        .ping_interval(Duration::from_millis(600))
        .pong_timeout(Duration::from_millis(600))
        .liveness_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let _ = client.subscribe(presence_topics(1)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let health = client.health();
    assert!(
        health.channels()[0].heartbeats >= 5,
        "{:?}",
        health.channels()[0]
    );
    let pings = emu
        .socket_log()
        .iter()
        .filter(|r| r.kind == SocketEventKind::PingReceived)
        .count();
    assert_eq!(pings, 0, "heartbeats arrived, no ping needed");
    assert_eq!(
        rec.count(|e| matches!(e, Lifecycle::Disconnected { .. })),
        0
    );
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A listener blocking for 3× the liveness bound under `Backpressure::Block` stalls the socket
/// thread, which stops reading: that is not server silence, so nothing reconnects, and every
/// event is delivered in order.
#[test]
fn blocked_listener_under_block_backpressure_causes_no_reconnect() {
    let emu = emulator();
    let client = bounded(&emu)
        .backpressure(Backpressure::Block)
        .dispatcher_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let blocked_once = Arc::new(AtomicBool::new(false));
    let (sink, once) = (seen.clone(), blocked_once.clone());
    let _guard = client
        .on("v2.users.*.presence", move |e| {
            if !once.swap(true, Ordering::SeqCst) {
                std::thread::sleep(BOUND * 3);
            }
            sink.lock()
                .push(e.body_value().unwrap()["seq"].as_u64().unwrap());
        })
        .unwrap();
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    wait_registered(&emu);
    let started = Instant::now();
    for seq in 0..6 {
        assert_eq!(emu.publish(&topics[0], presence_body(seq)), 1);
    }
    // The socket thread blocks on the full queue while the listener sleeps.
    assert!(wait_until(Duration::from_secs(20), || seen.lock().len() == 6));
    assert!(started.elapsed() >= BOUND * 3);
    // Keep the socket idle a little longer: pings resume and are answered.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(*seen.lock(), (0..6).collect::<Vec<u64>>());
    assert_eq!(
        rec.count(|e| matches!(e, Lifecycle::Disconnected { .. })),
        0,
        "{:?}",
        kinds(&rec.snapshot())
    );
    assert_eq!(client.health().channels()[0].reconnects, 0);
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// The application ping `{"message":"ping"}` goes out when the socket is idle; its round trip
/// shows in the health snapshot.
#[test]
fn ping_round_trip_shows_in_health() {
    let emu = emulator();
    let client = fast(&emu).build().unwrap();
    let _ = client.subscribe(presence_topics(1)).unwrap();
    assert!(wait_until(SOON, || client.health().channels()[0]
        .ping_rtt
        .is_some()));
    let rtt = client.health().channels()[0].ping_rtt.unwrap();
    assert!(
        rtt > Duration::ZERO && rtt < Duration::from_secs(1),
        "{rtt:?}"
    );
    assert!(emu
        .socket_log()
        .iter()
        .any(|r| r.kind == SocketEventKind::PingReceived));
    println!("ping round trip on loopback: {rtt:?}");
    client.shutdown(Duration::from_secs(2)).unwrap();
}
