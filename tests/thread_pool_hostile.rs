//! Pooled clients used the way a careless or hostile user would: callbacks that shut down other
//! clients or the pool, drop the last handle or client, drop guards of other clients, flood a
//! one-thread pool under `Block`. None may deadlock, hang beyond its timeouts, or panic; a
//! guard's drop still means its callback is not running and never runs again. Each scenario runs
//! under a watchdog with a generous deadline, so a deadlock fails the test instead of hanging it.
mod util;

use genesys_notify::emulator::{Emulator, EmulatorConfig};
use genesys_notify::{Backpressure, Client, Event, ListenerGuard, ThreadPool};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

const WAIT: Duration = Duration::from_secs(30);

fn emulator_for(clients: usize) -> Emulator {
    emulator_with(EmulatorConfig::default().max_channels(clients + 5))
}

/// Runs `scenario` on a thread of its own and fails if it does not end within `limit`.
fn within<T: Send + 'static>(limit: Duration, scenario: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(scenario());
    });
    rx.recv_timeout(limit)
        .expect("the scenario deadlocked or hung")
}

fn subscribed(emu: &Emulator, pool: &ThreadPool, topic: &str) -> Client {
    let client = builder(emu).thread_pool(pool).build().unwrap();
    assert!(client.subscribe([topic]).unwrap().rejected.is_empty());
    client
}

fn publish(emu: &Emulator, topic: &str, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        assert_eq!(emu.publish(topic, presence_body(seq)), 1, "{topic} {seq}");
    }
}

/// An emulator, a pool of `threads` and clients A and B on it, each subscribed to one of two
/// presence topics (A to `topics[0]`, B to `topics[1]`).
fn two_subscribed(threads: usize) -> (Emulator, ThreadPool, Vec<String>, Client, Client) {
    let emu = emulator_for(2);
    let pool = ThreadPool::new(threads).unwrap();
    let topics = presence_topics(2);
    let a = subscribed(&emu, &pool, &topics[0]);
    let b = subscribed(&emu, &pool, &topics[1]);
    (emu, pool, topics, a, b)
}

/// A client on `pool` with a queue of `capacity` events under `policy`.
fn pooled(emu: &Emulator, pool: &ThreadPool, capacity: usize, policy: Backpressure) -> Client {
    builder(emu)
        .thread_pool(pool)
        .queue_capacity(capacity)
        .backpressure(policy)
        .build()
        .unwrap()
}

/// The events queued in `client`'s dispatcher queues.
fn queued(client: &Client) -> usize {
    client.health().queue_depths().iter().sum::<usize>()
}

/// A listener whose first call says so on `entered` and then holds its thread until `release`
/// sends (or `hold` passes); `calls` counts its calls.
struct Held {
    _guard: ListenerGuard,
    calls: Arc<AtomicUsize>,
    entered: crossbeam_channel::Receiver<()>,
    release: crossbeam_channel::Sender<()>,
}

/// Adds a [`Held`] listener of `topic` to `client`, then subscribes it to `topic`.
fn hold_first_call(client: &Client, topic: &str, hold: Duration) -> Held {
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (release, release_rx) = crossbeam_channel::unbounded::<()>();
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let guard = client
        .on(topic, move |_: &Event| {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = entered_tx.send(());
                let _ = release_rx.recv_timeout(hold);
            }
        })
        .unwrap();
    assert!(client.subscribe([topic]).unwrap().rejected.is_empty());
    Held {
        _guard: guard,
        calls,
        entered,
        release,
    }
}

/// Two callbacks on a two-thread pool call `ThreadPool::shutdown` at the same moment: each
/// skips its own thread; neither may wait for the other's thread (which waits for it).
#[test]
fn two_callbacks_shutting_the_pool_down_at_once_do_not_wait_for_each_other() {
    within(Duration::from_secs(120), || {
        let emu = emulator_for(2);
        let pool = ThreadPool::new(2).unwrap();
        let topics = presence_topics(2);
        let clients: Vec<Client> = topics.iter().map(|t| subscribed(&emu, &pool, t)).collect();
        wait_sockets(&emu, 2);
        // Both callbacks are inside before either calls shutdown.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut guards = Vec::new();
        for (client, topic) in clients.iter().zip(&topics) {
            let (pool, barrier, tx) = (pool.clone(), barrier.clone(), tx.clone());
            guards.push(
                client
                    .on(topic, move |_: &Event| {
                        barrier.wait();
                        let started = Instant::now();
                        let outcome = pool.shutdown(WAIT);
                        let _ = tx.send((outcome, started.elapsed()));
                    })
                    .unwrap(),
            );
        }
        for topic in &topics {
            publish(&emu, topic, 0..1);
        }
        for _ in 0..2 {
            let (outcome, took) = rx.recv_timeout(Duration::from_secs(90)).unwrap();
            assert!(outcome.is_ok(), "{outcome:?} after {took:?}");
            assert!(
                took < WAIT,
                "waited {took:?} for the other callback's thread"
            );
        }
        assert!(pool.is_shut_down());
        for client in &clients {
            client.shutdown(WAIT).unwrap();
        }
    });
}

/// On a one-thread pool, A's callback shuts B down, and B's shutdown returns promptly and
/// cleanly; B delivers nothing afterwards; A keeps delivering.
#[test]
fn a_callback_shuts_down_another_pooled_client_on_a_one_thread_pool() {
    within(Duration::from_secs(120), || {
        let (emu, pool, topics, a, b) = two_subscribed(1);
        let b = Arc::new(b);
        let b_seen = Arc::new(AtomicUsize::new(0));
        let seen = b_seen.clone();
        let _b_guard = b
            .on(&topics[1], move |_: &Event| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let a_seen = Arc::new(AtomicUsize::new(0));
        let (target, seen) = (Arc::downgrade(&b), a_seen.clone());
        let _a_guard = a
            .on(&topics[0], move |_: &Event| {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    if let Some(b) = target.upgrade() {
                        let _ = tx.send(b.shutdown(WAIT));
                    }
                }
            })
            .unwrap();
        wait_sockets(&emu, 2);
        publish(&emu, &topics[0], 0..1);
        let outcome = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
        assert!(wait_until(WAIT, || emu
            .channels()
            .iter()
            .filter(|c| c.connected)
            .count()
            == 1));
        let before = b_seen.load(Ordering::SeqCst);
        publish(&emu, &topics[0], 1..5);
        assert!(wait_until(WAIT, || a_seen.load(Ordering::SeqCst) == 5));
        assert_eq!(b_seen.load(Ordering::SeqCst), before);
        a.shutdown(WAIT).unwrap();
        drop(b);
        pool.shutdown(WAIT).unwrap();
    });
}

/// A callback that holds the last handle of its pool and the last reference to its client
/// drops both: nothing hangs, and the pool's threads end.
#[test]
fn a_callback_dropping_its_own_client_and_the_last_pool_handle() {
    within(Duration::from_secs(120), || {
        let emu = emulator_for(2);
        let pool = ThreadPool::new(1).unwrap();
        let topics = presence_topics(2);
        let client = subscribed(&emu, &pool, &topics[0]);
        let other = subscribed(&emu, &pool, &topics[1]);
        let other_seen = Arc::new(AtomicUsize::new(0));
        let seen = other_seen.clone();
        let _other_guard = other
            .on(&topics[1], move |_: &Event| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        type Held = (Option<Client>, Option<ThreadPool>);
        let held: Arc<Mutex<Held>> = Arc::new(Mutex::new((None, None)));
        let (tx, rx) = crossbeam_channel::unbounded();
        let slot = held.clone();
        let _guard = client
            .on(&topics[0], move |_: &Event| {
                let (client, pool) = std::mem::take(&mut *slot.lock());
                drop(pool);
                drop(client);
                let _ = tx.send(());
            })
            .unwrap();
        *held.lock() = (Some(client), Some(pool));
        wait_sockets(&emu, 2);
        publish(&emu, &topics[0], 0..1);
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the callback returned");
        assert!(wait_until(WAIT, || emu
            .channels()
            .iter()
            .filter(|c| c.connected)
            .count()
            == 1));
        // The other client holds the pool: still served.
        publish(&emu, &topics[1], 0..3);
        assert!(wait_until(WAIT, || other_seen.load(Ordering::SeqCst) == 3));
        other.shutdown(WAIT).unwrap();
    });
}

/// Clients keep working after the pool's handle is dropped right after they are built.
#[test]
fn clients_hold_their_pool_after_its_handle_is_dropped() {
    within(Duration::from_secs(120), || {
        let emu = emulator_for(2);
        let pool = ThreadPool::new(2).unwrap();
        let topics = presence_topics(2);
        let clients: Vec<Client> = topics.iter().map(|t| subscribed(&emu, &pool, t)).collect();
        drop(pool);
        let seen = Arc::new(AtomicUsize::new(0));
        let guards: Vec<ListenerGuard> = clients
            .iter()
            .zip(&topics)
            .map(|(c, t)| {
                let seen = seen.clone();
                c.on(t, move |_: &Event| {
                    seen.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
            })
            .collect();
        wait_sockets(&emu, 2);
        for t in &topics {
            publish(&emu, t, 0..10);
        }
        assert!(wait_until(WAIT, || seen.load(Ordering::SeqCst) == 20));
        drop(guards);
        for c in &clients {
            c.shutdown(WAIT).unwrap();
        }
    });
}

/// Client A's callback blocks; client B's callback, on the other worker, drops A's guard: the
/// drop returns only once A's callback has returned, and A's callback never runs again.
#[test]
fn a_guard_dropped_from_another_clients_callback_waits_for_its_running_callback() {
    within(Duration::from_secs(120), || {
        let (emu, _pool, topics, a, b) = two_subscribed(2);
        let running = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let (entered_tx, entered) = crossbeam_channel::unbounded();
        let (flag, count) = (running.clone(), calls.clone());
        let a_guard = a
            .on(&topics[0], move |_: &Event| {
                count.fetch_add(1, Ordering::SeqCst);
                flag.store(true, Ordering::SeqCst);
                let _ = entered_tx.send(());
                std::thread::sleep(Duration::from_millis(500));
                flag.store(false, Ordering::SeqCst);
            })
            .unwrap();
        let slot = Arc::new(Mutex::new(Some(a_guard)));
        let (done_tx, done) = crossbeam_channel::unbounded();
        let (guard_slot, flag) = (slot.clone(), running.clone());
        let _b_guard = b
            .on(&topics[1], move |_: &Event| {
                if let Some(guard) = guard_slot.lock().take() {
                    drop(guard);
                    let _ = done_tx.send(flag.load(Ordering::SeqCst));
                }
            })
            .unwrap();
        wait_sockets(&emu, 2);
        publish(&emu, &topics[0], 0..1);
        entered.recv_timeout(WAIT).unwrap();
        publish(&emu, &topics[1], 0..1);
        let still_running = done.recv_timeout(WAIT).unwrap();
        assert!(
            !still_running,
            "the guard's drop returned while its callback ran"
        );
        publish(&emu, &topics[0], 1..4);
        // B sees its later events, so A's were read meanwhile.
        let marker = Arc::new(AtomicUsize::new(0));
        let m = marker.clone();
        let _marker = a
            .on(&topics[0], move |e: &Event| {
                if e.body_value().unwrap()["seq"] == 4 {
                    m.fetch_add(1, Ordering::SeqCst);
                }
            })
            .unwrap();
        publish(&emu, &topics[0], 4..5);
        assert!(wait_until(WAIT, || marker.load(Ordering::SeqCst) >= 1));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "ran after its guard was dropped"
        );
        a.shutdown(WAIT).unwrap();
        b.shutdown(WAIT).unwrap();
    });
}

/// `Block` with a slow callback and a queue of 2 on a one-thread pool: the socket thread waits
/// for room, the pool's thread serves the queue, and another client on the same pool is still
/// served; everything arrives, nothing is dropped.
#[test]
fn block_with_a_slow_callback_on_a_one_thread_pool_does_not_deadlock() {
    within(Duration::from_secs(180), || {
        let emu = emulator_for(2);
        let pool = ThreadPool::new(1).unwrap();
        let topics = presence_topics(2);
        let slow = pooled(&emu, &pool, 2, Backpressure::Block);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let _slow_guard = slow
            .on(&topics[0], move |e: &Event| {
                std::thread::sleep(Duration::from_millis(20));
                sink.lock()
                    .push(e.body_value().unwrap()["seq"].as_u64().unwrap());
            })
            .unwrap();
        assert!(slow.subscribe([&topics[0]]).unwrap().rejected.is_empty());
        let fast = subscribed(&emu, &pool, &topics[1]);
        let fast_seen = Arc::new(AtomicUsize::new(0));
        let seen = fast_seen.clone();
        let _fast_guard = fast
            .on(&topics[1], move |_: &Event| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        wait_sockets(&emu, 2);
        publish(&emu, &topics[0], 0..100);
        publish(&emu, &topics[1], 0..10);
        assert!(wait_until(WAIT, || fast_seen.load(Ordering::SeqCst) == 10));
        assert!(
            wait_until(Duration::from_secs(60), || got.lock().len() == 100),
            "{}",
            got.lock().len()
        );
        assert_eq!(*got.lock(), (0..100).collect::<Vec<u64>>());
        assert_eq!(slow.health().dropped(), 0);
        slow.shutdown(WAIT).unwrap();
        fast.shutdown(WAIT).unwrap();
    });
}

/// A callback calls `ThreadPool::shutdown` on a two-thread pool while the other thread runs a
/// callback of another client: it returns within its timeout; both clients still shut down.
#[test]
fn a_callback_shutting_its_pool_down_while_others_deliver() {
    within(Duration::from_secs(120), || {
        let (emu, pool, topics, a, b) = two_subscribed(2);
        let busy = Arc::new(AtomicUsize::new(0));
        let count = busy.clone();
        let _b_guard = b
            .on(&topics[1], move |_: &Event| {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            })
            .unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = pool.clone();
        let _a_guard = a
            .on(&topics[0], move |_: &Event| {
                let _ = tx.send(handle.shutdown(WAIT));
            })
            .unwrap();
        wait_sockets(&emu, 2);
        publish(&emu, &topics[1], 0..50);
        publish(&emu, &topics[0], 0..1);
        let outcome = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
        assert!(pool.is_shut_down());
        a.shutdown(WAIT).unwrap();
        b.shutdown(WAIT).unwrap();
        // A later pool shutdown only waits for threads still running: none.
        pool.shutdown(WAIT).unwrap();
    });
}

/// `DropOldest` on a pooled client whose only listener is held in a callback: every drop is
/// counted and `Lifecycle::Dropped` reports the total through the pool's timer while the
/// callback still holds its thread (the other thread serves the lifecycle queue).
#[test]
fn a_pooled_clients_drop_oldest_drops_are_reported_while_its_callback_is_held() {
    use genesys_notify::Lifecycle;
    within(Duration::from_secs(120), || {
        let emu = emulator_for(1);
        let pool = ThreadPool::new(2).unwrap();
        let client = pooled(&emu, &pool, 2, Backpressure::DropOldest);
        let lifecycle = Recorder::new(&client);
        let topic = presence_topics(1).pop().unwrap();
        let held = hold_first_call(&client, &topic, Duration::from_secs(90));
        wait_sockets(&emu, 1);
        publish(&emu, &topic, 0..1);
        held.entered.recv_timeout(WAIT).unwrap();
        publish(&emu, &topic, 1..21);
        // 20 queued behind the held callback, 2 kept: 18 dropped.
        assert!(wait_until(WAIT, || client.health().dropped() == 18));
        assert!(
            lifecycle.wait(
                WAIT,
                |e| matches!(e, Lifecycle::Dropped { total, .. } if *total == 18)
            ),
            "{:?}",
            lifecycle.snapshot()
        );
        held.release.send(()).unwrap();
        assert!(wait_until(WAIT, || held.calls.load(Ordering::SeqCst) == 3));
        client.shutdown(WAIT).unwrap();
    });
}

/// Repeated failures of a pooled client's channel creation, then silence (its retry budget
/// spent): the coalesced `RequestFailed` with the repeats' count arrives through the pool's
/// timer, with no later message to carry it and before any shutdown.
#[test]
fn a_pooled_clients_coalesced_request_failures_arrive_without_another_message() {
    use genesys_notify::emulator::{Endpoint, Fault};
    use genesys_notify::{Backoff, Lifecycle};
    within(Duration::from_secs(120), || {
        let emu = emulator_for(1);
        emu.inject(Fault::HttpStatus {
            endpoint: Endpoint::CreateChannel,
            status: 503,
            retry_after: None,
            times: 1000,
        });
        let pool = ThreadPool::new(1).unwrap();
        let client = builder(&emu)
            .thread_pool(&pool)
            .backoff(
                Backoff::default()
                    .base(Duration::from_millis(20))
                    .cap(Duration::from_millis(100))
                    .max_retries(Some(4)),
            )
            .build()
            .unwrap();
        let lifecycle = Recorder::new(&client);
        let topic = presence_topics(1).pop().unwrap();
        let _ = client.subscribe([&topic]);
        let repeats = || {
            lifecycle
                .snapshot()
                .iter()
                .filter_map(|e| match e {
                    Lifecycle::RequestFailed { count, .. } => Some(*count),
                    _ => None,
                })
                .sum::<u64>()
        };
        assert!(
            wait_until(WAIT, || repeats() == client.health().request_failures()
                && repeats() > 1),
            "reported {} of {}: {:?}",
            repeats(),
            client.health().request_failures(),
            lifecycle.snapshot()
        );
        client.shutdown(WAIT).unwrap();
    });
}

/// Callbacks of two clients, on the two threads of a pool, drop each other's guards while both
/// run: neither waits forever for the other (a cycle of waits), and neither runs again.
#[test]
fn two_clients_callbacks_dropping_each_others_guards_at_once() {
    within(Duration::from_secs(120), || {
        let emu = emulator_for(2);
        let pool = ThreadPool::new(2).unwrap();
        let topics = presence_topics(2);
        let clients: Vec<Client> = topics.iter().map(|t| subscribed(&emu, &pool, t)).collect();
        let slots: Vec<Arc<Mutex<Option<ListenerGuard>>>> =
            (0..2).map(|_| Arc::default()).collect();
        let calls: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (tx, rx) = crossbeam_channel::unbounded();
        for n in 0..2 {
            let (other, count, barrier, tx) = (
                slots[1 - n].clone(),
                calls[n].clone(),
                barrier.clone(),
                tx.clone(),
            );
            let guard = clients[n]
                .on(&topics[n], move |_: &Event| {
                    count.fetch_add(1, Ordering::SeqCst);
                    barrier.wait();
                    let taken = other.lock().take();
                    drop(taken);
                    let _ = tx.send(n);
                })
                .unwrap();
            *slots[n].lock() = Some(guard);
        }
        wait_sockets(&emu, 2);
        for t in &topics {
            publish(&emu, t, 0..1);
        }
        for _ in 0..2 {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("a guard drop never returned");
        }
        for t in &topics {
            publish(&emu, t, 1..3);
        }
        // A marker listener on each client sees the later events through.
        let marker = Arc::new(AtomicUsize::new(0));
        let markers: Vec<ListenerGuard> = clients
            .iter()
            .zip(&topics)
            .map(|(c, t)| {
                let m = marker.clone();
                c.on(t, move |e: &Event| {
                    if e.body_value().unwrap()["seq"] == 3 {
                        m.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .unwrap()
            })
            .collect();
        for t in &topics {
            publish(&emu, t, 3..4);
        }
        assert!(wait_until(WAIT, || marker.load(Ordering::SeqCst) == 2));
        for count in &calls {
            assert_eq!(count.load(Ordering::SeqCst), 1);
        }
        drop(markers);
        for c in &clients {
            c.shutdown(WAIT).unwrap();
        }
    });
}

/// On a one-thread pool, A's callback subscribes client B while B's socket thread is blocked
/// (`Block`) on B's full queue, which only that same pool thread can drain: B's socket thread
/// serves the subscribe while it waits, so it completes well before the subscribe deadline.
#[test]
fn a_callback_subscribes_another_client_blocked_on_its_full_queue_on_a_one_thread_pool() {
    within(Duration::from_secs(120), || {
        let emu = emulator_for(2);
        let pool = ThreadPool::new(1).unwrap();
        let topics = presence_topics(4);
        let a = subscribed(&emu, &pool, &topics[0]);
        let b = Arc::new(pooled(&emu, &pool, 2, Backpressure::Block));
        let b_seen = Arc::new(AtomicUsize::new(0));
        let seen = b_seen.clone();
        let _b_guard = b
            .on(&topics[1], move |_: &Event| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        assert!(b.subscribe([&topics[1]]).unwrap().rejected.is_empty());
        let (tx, rx) = crossbeam_channel::unbounded();
        let (target, more) = (Arc::downgrade(&b), topics[2..].to_vec());
        let (entered_tx, entered) = crossbeam_channel::unbounded();
        let (go, go_rx) = crossbeam_channel::unbounded::<()>();
        let _a_guard = a
            .on(&topics[0], move |_: &Event| {
                let _ = entered_tx.send(());
                let _ = go_rx.recv_timeout(Duration::from_secs(60));
                if let Some(b) = target.upgrade() {
                    let started = Instant::now();
                    let outcome = b.subscribe(&more).map(|r| r.permitted.len());
                    let _ = tx.send((outcome.ok(), started.elapsed()));
                }
            })
            .unwrap();
        wait_sockets(&emu, 2);
        publish(&emu, &topics[0], 0..1);
        entered.recv_timeout(WAIT).unwrap();
        // B's queue fills (2) and its socket thread blocks on the third.
        publish(&emu, &topics[1], 0..6);
        assert!(wait_until(WAIT, || queued(&b) == 2));
        std::thread::sleep(Duration::from_millis(200));
        go.send(()).unwrap();
        let (outcome, took) = rx.recv_timeout(Duration::from_secs(90)).unwrap();
        assert_eq!(outcome, Some(2));
        assert!(took < Duration::from_secs(20), "took {took:?}");
        assert!(wait_until(WAIT, || b_seen.load(Ordering::SeqCst) == 6));
        assert_eq!(b.health().dropped(), 0);
        a.shutdown(WAIT).unwrap();
        b.shutdown(WAIT).unwrap();
    });
}

/// The pool is shut down while a `Block` client's socket thread waits on its full queue: the
/// client's shutdown still returns within its timeout, and cleanly.
#[test]
fn a_client_blocked_on_its_queue_shuts_down_after_its_pool_was_shut_down() {
    within(Duration::from_secs(120), || {
        let emu = emulator_for(1);
        let pool = ThreadPool::new(1).unwrap();
        let topic = presence_topics(1).pop().unwrap();
        let client = pooled(&emu, &pool, 2, Backpressure::Block);
        let held = hold_first_call(&client, &topic, Duration::from_secs(60));
        wait_sockets(&emu, 1);
        publish(&emu, &topic, 0..6);
        held.entered.recv_timeout(WAIT).unwrap();
        assert!(wait_until(WAIT, || queued(&client) == 2));
        // The pool's only thread is held: its shutdown gives up on it, then it is released.
        let outcome = pool.shutdown(Duration::from_millis(200));
        assert!(outcome.is_err(), "{outcome:?}");
        held.release.send(()).unwrap();
        pool.shutdown(WAIT).unwrap();
        let started = Instant::now();
        let outcome = client.shutdown(Duration::from_secs(10));
        assert!(outcome.is_ok(), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // Nothing more was delivered after the pool ended.
        assert_eq!(held.calls.load(Ordering::SeqCst), 1);
    });
}

/// Lifecycle callbacks of a pooled client that panic are reported and cost nothing else: the
/// next lifecycle listener sees `Connected` before the shutdown's `Disconnected`, the panics are
/// reported, and events flow.
#[test]
fn panicking_lifecycle_callbacks_of_a_pooled_client() {
    use genesys_notify::Lifecycle;
    within(Duration::from_secs(120), || {
        let emu = emulator_for(1);
        let pool = ThreadPool::new(1).unwrap();
        let client = builder(&emu).thread_pool(&pool).build().unwrap();
        let _panics = client
            .on_lifecycle(|e: &Lifecycle| {
                if matches!(e, Lifecycle::Connected { .. }) {
                    panic!("a lifecycle listener's bug")
                }
            })
            .unwrap();
        let recorder = Recorder::new(&client);
        let topic = presence_topics(1).pop().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let _guard = client
            .on(&topic, move |_: &Event| {
                s.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        assert!(client.subscribe([&topic]).unwrap().rejected.is_empty());
        wait_sockets(&emu, 1);
        publish(&emu, &topic, 0..5);
        assert!(wait_until(WAIT, || seen.load(Ordering::SeqCst) == 5));
        // A lifecycle listener's panic is counted and logged (not reported as a lifecycle
        // event, which could only panic it again).
        assert!(wait_until(WAIT, || client.health().listener_panics() > 0));
        client.shutdown(WAIT).unwrap();
        let events = recorder.snapshot();
        let connected = events
            .iter()
            .position(|e| matches!(e, Lifecycle::Connected { .. }))
            .expect("connected");
        let disconnected = events
            .iter()
            .rposition(|e| matches!(e, Lifecycle::Disconnected { .. }))
            .expect("disconnected");
        assert!(connected < disconnected, "{events:?}");
    });
}

/// Several clients with several dispatcher queues each on a three-thread pool, events of many
/// topics interleaved: every topic's events arrive in order, and no two callbacks of one topic
/// ever overlap (a queue is never served by two workers at once).
#[test]
fn per_topic_order_holds_for_many_clients_and_topics_on_a_multi_thread_pool() {
    const CLIENTS: usize = 4;
    const TOPICS: usize = 6;
    const EVENTS: u64 = 25;
    within(Duration::from_secs(240), || {
        let emu = emulator_for(CLIENTS);
        let pool = ThreadPool::new(3).unwrap();
        let all = presence_topics(CLIENTS * TOPICS);
        type Seen = Arc<Mutex<Vec<u64>>>;
        let mut clients = Vec::new();
        let mut tracks: Vec<(String, Seen)> = Vec::new();
        let overlaps = Arc::new(AtomicUsize::new(0));
        let mut guards = Vec::new();
        for c in 0..CLIENTS {
            let client = builder(&emu)
                .thread_pool(&pool)
                .dispatcher_threads(3)
                .build()
                .unwrap();
            let mine = &all[c * TOPICS..(c + 1) * TOPICS];
            for topic in mine {
                let seen: Seen = Arc::default();
                let inside = Arc::new(AtomicBool::new(false));
                let (sink, overlaps) = (seen.clone(), overlaps.clone());
                guards.push(
                    client
                        .on(topic, move |e: &Event| {
                            if inside.swap(true, Ordering::SeqCst) {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            std::thread::yield_now();
                            sink.lock()
                                .push(e.body_value().unwrap()["seq"].as_u64().unwrap());
                            inside.store(false, Ordering::SeqCst);
                        })
                        .unwrap(),
                );
                tracks.push((topic.clone(), seen));
            }
            assert!(client.subscribe(mine).unwrap().rejected.is_empty());
            clients.push(client);
        }
        wait_sockets(&emu, CLIENTS);
        for seq in 0..EVENTS {
            for (topic, _) in &tracks {
                publish(&emu, topic, seq..seq + 1);
            }
        }
        let expected: Vec<u64> = (0..EVENTS).collect();
        for (topic, seen) in &tracks {
            assert!(
                wait_until(Duration::from_secs(60), || *seen.lock() == expected),
                "{topic}: {:?}",
                seen.lock()
            );
        }
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        drop(guards);
        for c in &clients {
            c.shutdown(WAIT).unwrap();
        }
    });
}

/// Events still queued when the pool is shut down are never delivered: the client's shutdown
/// counts them as dropped (guarantee 1, no silent loss), so that every event received is
/// delivered or counted.
#[test]
fn events_left_queued_by_a_shut_down_pool_are_counted_as_dropped() {
    within(Duration::from_secs(120), || {
        let emu = emulator_for(1);
        let pool = ThreadPool::new(1).unwrap();
        let topic = presence_topics(1).pop().unwrap();
        let client = pooled(&emu, &pool, 16, Backpressure::DropNewest);
        let held = hold_first_call(&client, &topic, Duration::from_secs(60));
        wait_sockets(&emu, 1);
        publish(&emu, &topic, 0..6);
        held.entered.recv_timeout(WAIT).unwrap();
        assert!(wait_until(WAIT, || client.health().received() == 6));
        assert!(wait_until(WAIT, || queued(&client) == 5));
        assert!(pool.shutdown(Duration::from_millis(100)).is_err());
        held.release.send(()).unwrap();
        pool.shutdown(WAIT).unwrap();
        client.shutdown(WAIT).unwrap();
        let health = client.health();
        assert_eq!(held.calls.load(Ordering::SeqCst), 1);
        assert_eq!(health.received(), 6);
        assert_eq!(
            health.delivered() + health.dropped() + health.unrouted(),
            6,
            "delivered {} dropped {} unrouted {}",
            health.delivered(),
            health.dropped(),
            health.unrouted()
        );
    });
}

/// As documented (`ClientBuilder::thread_pool`): with the pool's only thread held by another
/// client's callback, a client's shutdown from outside the pool waits for it at most its
/// timeout and says so; a later call, once the thread is free, finishes cleanly.
#[test]
fn a_shutdown_waiting_for_a_held_pool_times_out_then_a_later_one_finishes() {
    within(Duration::from_secs(120), || {
        let (emu, _pool, topics, a, b) = two_subscribed(1);
        let (entered_tx, entered) = crossbeam_channel::unbounded();
        let (release, release_rx) = crossbeam_channel::unbounded::<()>();
        let _a_guard = a
            .on(&topics[0], move |_: &Event| {
                let _ = entered_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(60));
            })
            .unwrap();
        wait_sockets(&emu, 2);
        publish(&emu, &topics[0], 0..1);
        entered.recv_timeout(WAIT).unwrap();
        let started = Instant::now();
        let outcome = b.shutdown(Duration::from_secs(1));
        assert!(
            matches!(outcome, Err(genesys_notify::Error::Timeout { .. })),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        release.send(()).unwrap();
        b.shutdown(WAIT).unwrap();
        a.shutdown(WAIT).unwrap();
    });
}

/// A callback shuts its pool down and then goes on working: a later `ThreadPool::shutdown`
/// from outside joins that thread too, so it returns only once that callback has returned.
#[test]
fn a_later_pool_shutdown_joins_the_thread_whose_callback_shut_the_pool_down() {
    within(Duration::from_secs(120), || {
        let emu = emulator_for(1);
        let pool = ThreadPool::new(1).unwrap();
        let topic = presence_topics(1).pop().unwrap();
        let client = subscribed(&emu, &pool, &topic);
        let finished = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        let (handle, done) = (pool.clone(), finished.clone());
        let _guard = client
            .on(&topic, move |_: &Event| {
                let _ = tx.send(handle.shutdown(WAIT));
                std::thread::sleep(Duration::from_millis(500));
                done.store(true, Ordering::SeqCst);
            })
            .unwrap();
        wait_sockets(&emu, 1);
        publish(&emu, &topic, 0..1);
        let outcome = rx.recv_timeout(WAIT).unwrap();
        assert!(outcome.is_ok(), "{outcome:?}");
        pool.shutdown(WAIT).unwrap();
        assert!(
            finished.load(Ordering::SeqCst),
            "returned while a pool thread still ran a callback"
        );
        client.shutdown(WAIT).unwrap();
    });
}
