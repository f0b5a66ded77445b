//! The backpressure policies with a blocked listener: every event is delivered or counted as
//! dropped, the policy decides which ones survive, drops are reported, and `Block` loses
//! nothing (issue #2, point 5).
mod util;

use genesys_notify::emulator::Emulator;
use genesys_notify::{Backpressure, Client, Lifecycle, ListenerGuard};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);
const CAPACITY: usize = 16;
/// Events published after the first one, while the listener is blocked on the first.
const BURST: u64 = 100;

/// A listener whose first call blocks until [`Blocked::release`], recording sequence numbers.
struct Blocked {
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicBool,
    seqs: Mutex<Vec<u64>>,
}

impl Blocked {
    fn register(client: &Client, topic: &str) -> (Arc<Blocked>, ListenerGuard) {
        let blocked = Arc::new(Blocked {
            open: Mutex::new(false),
            opened: Condvar::new(),
            entered: AtomicBool::new(false),
            seqs: Mutex::new(Vec::new()),
        });
        let b = blocked.clone();
        let guard = client
            .on(topic, move |e| {
                b.seqs
                    .lock()
                    .push(e.body_value().unwrap()["seq"].as_u64().unwrap());
                b.entered.store(true, Ordering::SeqCst);
                let mut open = b.open.lock();
                // Bounded, so that a failing test cannot hang the dispatcher forever.
                let _ = b
                    .opened
                    .wait_while_for(&mut open, |open| !*open, Duration::from_secs(15));
            })
            .unwrap();
        (blocked, guard)
    }

    fn release(&self) {
        *self.open.lock() = true;
        self.opened.notify_all();
    }
}

struct Setup {
    emu: Emulator,
    client: Client,
    lifecycle: Recorder,
    blocked: Arc<Blocked>,
    _guard: ListenerGuard,
    topic: String,
}

/// A client with one dispatcher thread and a 16-event queue, whose listener is blocked inside
/// the call for event 0.
fn blocked_client(policy: Backpressure) -> Setup {
    blocked_client_with(policy, |b| b)
}

/// As [`blocked_client`], with more settings from `configure`.
fn blocked_client_with(
    policy: Backpressure,
    configure: impl FnOnce(genesys_notify::ClientBuilder) -> genesys_notify::ClientBuilder,
) -> Setup {
    let emu = emulator();
    let client = configure(
        builder(&emu)
            .dispatcher_threads(1)
            .queue_capacity(CAPACITY)
            .backpressure(policy),
    )
    .build()
    .unwrap();
    let lifecycle = Recorder::new(&client);
    let topic = presence_topics(1).remove(0);
    let (blocked, guard) = Blocked::register(&client, &topic);
    let _ = client.subscribe([&topic]).unwrap();
    assert_eq!(emu.publish(&topic, presence_body(0)), 1);
    assert!(
        wait_until(WAIT, || blocked.entered.load(Ordering::SeqCst)),
        "the listener got event 0"
    );
    Setup {
        emu,
        client,
        lifecycle,
        blocked,
        _guard: guard,
        topic,
    }
}

/// The `Dropped` reports: (sum of `count`, last `total`).
fn dropped_reports(lifecycle: &Recorder) -> (u64, u64) {
    let mut sum = 0;
    let mut last = 0;
    for e in lifecycle.snapshot() {
        if let Lifecycle::Dropped { count, total, .. } = e {
            sum += count;
            last = total;
        }
    }
    (sum, last)
}

/// Event 0 held in the listener, then `burst` more into a queue of `capacity` events.
fn run_drop_policy(policy: Backpressure, capacity: usize, burst: u64) -> Vec<u64> {
    let s = blocked_client_with(policy, |b| b.queue_capacity(capacity));
    for seq in 1..=burst {
        assert_eq!(s.emu.publish(&s.topic, presence_body(seq)), 1);
    }
    let total = burst + 1;
    let expected_drops = burst - capacity as u64;
    // The socket thread never waits under a drop policy: it reads the whole burst.
    assert!(
        wait_until(WAIT, || s.client.health().received() == total),
        "{policy:?}: read only {} events",
        s.client.health().received()
    );
    let health = s.client.health();
    assert_eq!(
        health.queue_depths(),
        [capacity],
        "{policy:?}: the queue is full"
    );
    assert_eq!(health.dropped(), expected_drops, "{policy:?}");
    assert_eq!(health.channels()[0].dropped, expected_drops, "{policy:?}");
    assert_eq!(s.blocked.seqs.lock().len(), 1, "still blocked on event 0");

    s.blocked.release();
    assert!(
        wait_until(WAIT, || {
            let h = s.client.health();
            h.delivered() + h.dropped() == total
        }),
        "{policy:?}: {:?}",
        s.client.health()
    );
    let health = s.client.health();
    assert_eq!(health.received(), total);
    assert_eq!(health.delivered(), capacity as u64 + 1, "{policy:?}");
    assert_eq!(health.dropped(), expected_drops, "{policy:?}");
    assert_eq!(health.channels()[0].dropped, expected_drops, "{policy:?}");
    assert_eq!(health.unrouted(), 0);
    assert_eq!(
        health.received(),
        health.delivered() + health.dropped(),
        "{policy:?}: received == delivered + dropped"
    );
    assert_eq!(health.queue_depths(), [0]);

    // The drops are reported, coalesced, and add up.
    assert!(
        s.lifecycle.wait(WAIT, |e| matches!(
            e,
            Lifecycle::Dropped { total, .. } if *total == expected_drops
        )),
        "{policy:?}: {:?}",
        s.lifecycle.snapshot()
    );
    assert_eq!(
        dropped_reports(&s.lifecycle),
        (expected_drops, expected_drops),
        "{policy:?}"
    );
    let seqs = s.blocked.seqs.lock().clone();
    s.client.shutdown(Duration::from_secs(5)).unwrap();
    seqs
}

#[test]
fn drop_newest_keeps_the_earliest_events() {
    let delivered = run_drop_policy(Backpressure::DropNewest, CAPACITY, BURST);
    // Event 0 (in flight) and the first 16 queued.
    let expected: Vec<u64> = (0..=CAPACITY as u64).collect();
    assert_eq!(delivered, expected);
}

#[test]
fn drop_oldest_keeps_the_latest_events() {
    let delivered = run_drop_policy(Backpressure::DropOldest, CAPACITY, BURST);
    // Event 0 (in flight) and the latest 16.
    let mut expected = vec![0];
    expected.extend(BURST - CAPACITY as u64 + 1..=BURST);
    assert_eq!(delivered, expected);
}

/// Issue 20: a queue's storage grows block by block (31 events each) with what it holds; a
/// queue of 70 filled over three blocks, and emptied from the front by `DropOldest` while
/// filling, keeps its limit and counts every drop.
#[test]
fn drop_policies_count_every_drop_in_a_queue_spanning_several_blocks() {
    let capacity = 70;
    let burst = 250;
    let delivered = run_drop_policy(Backpressure::DropNewest, capacity, burst);
    assert_eq!(delivered, (0..=capacity as u64).collect::<Vec<_>>());
    let delivered = run_drop_policy(Backpressure::DropOldest, capacity, burst);
    let mut expected = vec![0];
    expected.extend(burst - capacity as u64 + 1..=burst);
    assert_eq!(delivered, expected);
}

#[test]
fn block_loses_nothing_and_holds_the_socket_thread() {
    let s = blocked_client(Backpressure::Block);
    for seq in 1..=BURST {
        assert_eq!(s.emu.publish(&s.topic, presence_body(seq)), 1);
    }
    // Event 0 in the callback, 16 queued, and one more read and waiting for room: the socket
    // thread reads no further, so TCP pushes back on the server.
    let in_hand = CAPACITY as u64 + 2;
    assert!(
        wait_until(WAIT, || s.client.health().received() == in_hand),
        "received {}",
        s.client.health().received()
    );
    assert!(wait_until(WAIT, || s.client.health().queue_depths() == [CAPACITY]));
    std::thread::sleep(Duration::from_millis(200));
    let health = s.client.health();
    assert_eq!(health.received(), in_hand, "the socket thread waits");
    assert_eq!(health.dropped(), 0);

    s.blocked.release();
    let total = BURST + 1;
    assert!(
        wait_until(WAIT, || s.client.health().delivered() == total),
        "{:?}",
        s.client.health()
    );
    let health = s.client.health();
    assert_eq!(health.received(), total);
    assert_eq!(health.dropped(), 0);
    assert_eq!(health.channels()[0].dropped, 0);
    assert_eq!(health.unrouted(), 0);
    let expected: Vec<u64> = (0..=BURST).collect();
    assert_eq!(*s.blocked.seqs.lock(), expected, "all delivered, in order");
    s.client.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(
        s.lifecycle
            .count(|e| matches!(e, Lifecycle::Dropped { .. })),
        0
    );
}

/// The byte capacity of the queues (issue 8 #5).
const QUEUE_BYTES: usize = 64 << 10;

/// A presence body padded to about 8 KB: eight of them fill 64 KiB.
fn padded_body(seq: u64) -> serde_json::Value {
    let mut body = presence_body(seq);
    body["padding"] = "p".repeat(8000).into();
    body
}

/// Issue 8 #5: a queue holding `queue_capacity_bytes` is full as one holding `queue_capacity`
/// events is: the policy applies, and drops are counted.
#[test]
fn a_queue_full_by_bytes_drops_per_the_policy_and_counts() {
    let s = blocked_client_with(Backpressure::DropNewest, |b| {
        b.queue_capacity_bytes(QUEUE_BYTES)
    });
    for seq in 1..=BURST {
        assert_eq!(s.emu.publish(&s.topic, padded_body(seq)), 1);
    }
    let total = BURST + 1;
    assert!(
        wait_until(WAIT, || s.client.health().received() == total),
        "read only {} events",
        s.client.health().received()
    );
    let health = s.client.health();
    let queued = health.queue_depths()[0] as u64;
    // 64 KiB holds 7 events of 8 KB and some bytes: far fewer than the 16 the count allows.
    assert!((5..=8).contains(&queued), "{queued} events queued");
    assert_eq!(health.dropped(), BURST - queued);
    s.blocked.release();
    assert!(wait_until(WAIT, || {
        let h = s.client.health();
        h.delivered() + h.dropped() == total
    }));
    let expected: Vec<u64> = (0..=queued).collect();
    assert_eq!(
        *s.blocked.seqs.lock(),
        expected,
        "the earliest events survive"
    );
    assert!(s.lifecycle.wait(WAIT, |e| matches!(
        e,
        Lifecycle::Dropped { total, .. } if *total == BURST - queued
    )));
    s.client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_queue_full_by_bytes_blocks_the_socket_thread_under_block() {
    let s = blocked_client_with(Backpressure::Block, |b| b.queue_capacity_bytes(QUEUE_BYTES));
    for seq in 1..=BURST {
        assert_eq!(s.emu.publish(&s.topic, padded_body(seq)), 1);
    }
    assert!(wait_until(WAIT, || s.client.health().queue_depths()[0] >= 5));
    std::thread::sleep(Duration::from_millis(200));
    let health = s.client.health();
    let queued = health.queue_depths()[0] as u64;
    assert!((5..=8).contains(&queued), "{queued} events queued");
    // Event 0 in the callback, the queue, and one read and waiting for room.
    assert_eq!(health.received(), queued + 2, "the socket thread waits");
    assert_eq!(health.dropped(), 0);
    s.blocked.release();
    assert!(wait_until(WAIT, || s.client.health().delivered() == BURST + 1));
    let expected: Vec<u64> = (0..=BURST).collect();
    assert_eq!(*s.blocked.seqs.lock(), expected, "all delivered, in order");
    s.client.shutdown(Duration::from_secs(5)).unwrap();
}
