//! Clients built with one shared `ThreadPool` (issue 20, "many clients"): each keeps the crate's
//! guarantees on its own — per-topic order, a slow or panicking callback costs only the pool
//! thread it holds, one client's shutdown ends only its own work, guards and
//! shutdown-from-callback behave as without a pool — and a shut-down pool fails later calls
//! clearly. Every wait is a wait for a condition with a generous deadline.
mod util;

use genesys_notify::emulator::{Emulator, EmulatorConfig};
use genesys_notify::{Client, Error, Event, Lifecycle, ListenerGuard, ThreadPool};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(30);

fn emulator_for(clients: usize) -> Emulator {
    emulator_with(EmulatorConfig::default().max_channels(clients + 5))
}

/// One pooled client of one topic, recording the `seq` of every event it receives.
struct Tenant {
    client: Client,
    topic: String,
    seen: Arc<Mutex<Vec<u64>>>,
    _guard: ListenerGuard,
}

fn tenant(emu: &Emulator, pool: &ThreadPool, n: usize) -> Tenant {
    let client = builder(emu).thread_pool(pool).build().unwrap();
    let topic = presence_topics(n + 1).pop().unwrap();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = seen.clone();
    let guard = client
        .on(&topic, move |e: &Event| {
            sink.lock()
                .push(e.body_value().unwrap()["seq"].as_u64().unwrap());
        })
        .unwrap();
    assert_eq!(client.subscribe([&topic]).unwrap().permitted.len(), 1);
    Tenant {
        client,
        topic,
        seen,
        _guard: guard,
    }
}

fn publish(emu: &Emulator, topic: &str, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        assert_eq!(emu.publish(topic, presence_body(seq)), 1, "{topic} {seq}");
    }
}

fn received(t: &Tenant, upto: u64) -> bool {
    *t.seen.lock() == (0..upto).collect::<Vec<_>>()
}

#[test]
fn many_pooled_clients_deliver_in_order_and_shut_down() {
    const CLIENTS: usize = 60;
    const EVENTS: u64 = 20;
    let emu = emulator_for(CLIENTS);
    let pool = ThreadPool::new(2).unwrap();
    let tenants: Vec<Tenant> = (0..CLIENTS).map(|n| tenant(&emu, &pool, n)).collect();
    let recorders: Vec<Recorder> = tenants.iter().map(|t| Recorder::new(&t.client)).collect();
    wait_sockets(&emu, CLIENTS);
    // Interleaved: every client's queue is busy at the same time.
    for seq in 0..EVENTS {
        for t in &tenants {
            publish(&emu, &t.topic, seq..seq + 1);
        }
    }
    for t in &tenants {
        assert!(
            wait_until(WAIT, || received(t, EVENTS)),
            "{}: {:?}",
            t.topic,
            t.seen.lock()
        );
    }
    for t in &tenants {
        t.client.shutdown(WAIT).unwrap();
    }
    // Each client's lifecycle events reached its own listener, through the pool, before its
    // shutdown returned: the disconnection its shutdown caused, last.
    for r in &recorders {
        let events = r.snapshot();
        assert!(
            matches!(events.last(), Some(Lifecycle::Disconnected { .. })),
            "{events:?}"
        );
    }
    assert!(!pool.is_shut_down());
    pool.shutdown(WAIT).unwrap();
}

/// A callback of client A that blocks until released, announcing when it starts.
fn blocking(
    a: &Tenant,
) -> (
    ListenerGuard,
    crossbeam_channel::Receiver<()>,
    crossbeam_channel::Sender<()>,
) {
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (release, release_rx) = crossbeam_channel::unbounded::<()>();
    let guard = a
        .client
        .on("v2.users.*.routingstatus", move |_: &Event| {
            let _ = entered_tx.send(());
            let _ = release_rx.recv_timeout(WAIT);
        })
        .unwrap();
    (guard, entered, release)
}

#[test]
fn a_blocked_callback_holds_one_pool_thread_and_the_other_clients_deliver() {
    let emu = emulator_for(2);
    let pool = ThreadPool::new(2).unwrap();
    let a = tenant(&emu, &pool, 0);
    let b = tenant(&emu, &pool, 1);
    let (_guard, entered, release) = blocking(&a);
    let held = format!("v2.users.{}.routingstatus", user_id(0));
    assert!(a.client.subscribe([&held]).unwrap().rejected.is_empty());
    wait_sockets(&emu, 2);
    assert_eq!(emu.publish(&held, presence_body(0)), 1);
    entered.recv_timeout(WAIT).expect("A's callback runs");
    publish(&emu, &b.topic, 0..10);
    assert!(wait_until(WAIT, || received(&b, 10)), "{:?}", b.seen.lock());
    // A's own later events wait behind its blocked callback, in order.
    publish(&emu, &a.topic, 0..5);
    release.send(()).unwrap();
    assert!(wait_until(WAIT, || received(&a, 5)), "{:?}", a.seen.lock());
}

/// With one pool thread, a blocked callback holds every pooled client's events, as documented
/// (`ClientBuilder::thread_pool`): they wait in their queues, and all arrive, in order, once it
/// returns.
#[test]
fn with_one_pool_thread_a_blocked_callback_delays_the_others_until_it_returns() {
    let emu = emulator_for(2);
    let pool = ThreadPool::new(1).unwrap();
    let a = tenant(&emu, &pool, 0);
    let b = tenant(&emu, &pool, 1);
    let (_guard, entered, release) = blocking(&a);
    let held = format!("v2.users.{}.routingstatus", user_id(0));
    assert!(a.client.subscribe([&held]).unwrap().rejected.is_empty());
    wait_sockets(&emu, 2);
    assert_eq!(emu.publish(&held, presence_body(0)), 1);
    entered.recv_timeout(WAIT).expect("A's callback runs");
    publish(&emu, &b.topic, 0..10);
    assert!(
        wait_until(WAIT, || b
            .client
            .health()
            .queue_depths()
            .iter()
            .sum::<usize>()
            == 10),
        "B's events wait in B's queue"
    );
    assert!(b.seen.lock().is_empty(), "the only pool thread is held");
    release.send(()).unwrap();
    assert!(wait_until(WAIT, || received(&b, 10)), "{:?}", b.seen.lock());
}

#[test]
fn one_clients_shutdown_leaves_the_others_delivering_and_a_panic_is_only_reported() {
    let emu = emulator_for(3);
    let pool = ThreadPool::new(1).unwrap();
    let tenants: Vec<Tenant> = (0..3).map(|n| tenant(&emu, &pool, n)).collect();
    let lifecycle = Recorder::new(&tenants[1].client);
    let _panics = tenants[1]
        .client
        .on(&tenants[1].topic, |_: &Event| panic!("a listener's bug"))
        .unwrap();
    wait_sockets(&emu, 3);
    tenants[0].client.shutdown(WAIT).unwrap();
    assert!(matches!(
        tenants[0]
            .client
            .subscribe([&tenants[0].topic])
            .map_err(Error::from),
        Err(Error::Shutdown)
    ));
    for t in &tenants[1..] {
        publish(&emu, &t.topic, 0..10);
    }
    for t in &tenants[1..] {
        assert!(wait_until(WAIT, || received(t, 10)), "{:?}", t.seen.lock());
    }
    assert!(lifecycle.wait(WAIT, |e| matches!(e, Lifecycle::ListenerPanicked { .. })));
    assert!(tenants[0].seen.lock().is_empty());
}

#[test]
fn pooled_guards_dropped_inside_and_outside_their_callback() {
    let emu = emulator_for(1);
    let pool = ThreadPool::new(2).unwrap();
    let client = builder(&emu).thread_pool(&pool).build().unwrap();
    let topics = presence_topics(2);
    // A callback dropping its own guard: it returns, and never runs again.
    let own: Arc<Mutex<Option<ListenerGuard>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (slot, counter) = (own.clone(), calls.clone());
    *own.lock() = Some(
        client
            .on(&topics[0], move |_: &Event| {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(slot.lock().take());
            })
            .unwrap(),
    );
    // A callback still running when its guard is dropped on another thread.
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let running = Arc::new(AtomicBool::new(false));
    let late_calls = Arc::new(AtomicUsize::new(0));
    let (flag, late) = (running.clone(), late_calls.clone());
    let slow = client
        .on(&topics[1], move |_: &Event| {
            late.fetch_add(1, Ordering::SeqCst);
            flag.store(true, Ordering::SeqCst);
            let _ = entered_tx.send(());
            std::thread::sleep(Duration::from_millis(300));
            flag.store(false, Ordering::SeqCst);
        })
        .unwrap();
    assert!(client.subscribe(&topics).unwrap().rejected.is_empty());
    wait_sockets(&emu, 1);
    publish(&emu, &topics[0], 0..3);
    publish(&emu, &topics[1], 0..1);
    entered.recv_timeout(WAIT).unwrap();
    drop(slow);
    assert!(
        !running.load(Ordering::SeqCst),
        "the guard's drop returned while its callback ran"
    );
    publish(&emu, &topics[1], 1..3);
    // Delivered after both: an event of each topic, then a marker listener sees them through.
    let marker = Arc::new(AtomicUsize::new(0));
    let m = marker.clone();
    let _marker = client
        .on("v2.users.*.presence", move |e: &Event| {
            if e.body_value().unwrap()["seq"] == 3 {
                m.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    publish(&emu, &topics[0], 3..4);
    publish(&emu, &topics[1], 3..4);
    assert!(wait_until(WAIT, || marker.load(Ordering::SeqCst) == 2));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "ran after dropping its own guard"
    );
    assert!(own.lock().is_none());
    assert_eq!(
        late_calls.load(Ordering::SeqCst),
        1,
        "ran after its guard was dropped"
    );
    client.shutdown(WAIT).unwrap();
}

#[test]
fn a_pooled_callback_may_shut_down_its_own_client() {
    let emu = emulator_for(2);
    let pool = ThreadPool::new(1).unwrap();
    let client = Arc::new(builder(&emu).thread_pool(&pool).build().unwrap());
    let other = tenant(&emu, &pool, 1);
    let me: Arc<OnceLock<Weak<Client>>> = Arc::default();
    let (done_tx, done) = crossbeam_channel::unbounded();
    let slot = me.clone();
    let topic = presence_topics(1).pop().unwrap();
    let _guard = client
        .on(&topic, move |_: &Event| {
            if let Some(client) = slot.get().and_then(Weak::upgrade) {
                let _ = done_tx.send(client.shutdown(WAIT));
            }
        })
        .unwrap();
    me.set(Arc::downgrade(&client)).unwrap();
    assert!(client.subscribe([&topic]).unwrap().rejected.is_empty());
    wait_sockets(&emu, 2);
    publish(&emu, &topic, 0..1);
    let outcome = done.recv_timeout(WAIT).expect("the shutdown returned");
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(matches!(
        client.subscribe([&topic]).map_err(Error::from),
        Err(Error::Shutdown)
    ));
    // The pool's only thread is free for the other client.
    publish(&emu, &other.topic, 0..5);
    assert!(
        wait_until(WAIT, || received(&other, 5)),
        "{:?}",
        other.seen.lock()
    );
}

#[test]
fn a_shut_down_pool_fails_later_calls_and_builds_clearly() {
    let emu = emulator_for(1);
    let pool = ThreadPool::new(2).unwrap();
    let t = tenant(&emu, &pool, 0);
    pool.shutdown(WAIT).unwrap();
    assert!(pool.is_shut_down());
    assert!(matches!(
        t.client.subscribe([&t.topic]).map_err(Error::from),
        Err(Error::Shutdown)
    ));
    assert!(matches!(
        t.client.on("v2.users.*.presence", |_: &Event| {}),
        Err(Error::Shutdown)
    ));
    match builder(&emu).thread_pool(&pool).build() {
        Err(Error::Config(e)) => assert_eq!(e.field, "thread_pool"),
        other => panic!("{other:?}"),
    }
    // The client still closes its channel within its timeout.
    t.client.shutdown(WAIT).unwrap();
    assert!(wait_until(WAIT, || emu
        .channels()
        .iter()
        .all(|c| !c.connected)));
}

/// A pooled client's drops are counted and reported (`Lifecycle::Dropped`, coalesced by a timer
/// of the pool), as without a pool.
#[test]
fn a_pooled_clients_drops_are_counted_and_reported() {
    let emu = emulator_for(1);
    let pool = ThreadPool::new(2).unwrap();
    let client = builder(&emu)
        .thread_pool(&pool)
        .queue_capacity(2)
        .backpressure(genesys_notify::Backpressure::DropNewest)
        .build()
        .unwrap();
    let lifecycle = Recorder::new(&client);
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (release, release_rx) = crossbeam_channel::unbounded::<()>();
    let delivered = Arc::new(AtomicUsize::new(0));
    let count = delivered.clone();
    let topic = presence_topics(1).pop().unwrap();
    let _guard = client
        .on(&topic, move |_: &Event| {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = entered_tx.send(());
                let _ = release_rx.recv_timeout(WAIT);
            }
        })
        .unwrap();
    assert!(client.subscribe([&topic]).unwrap().rejected.is_empty());
    wait_sockets(&emu, 1);
    publish(&emu, &topic, 0..1);
    entered.recv_timeout(WAIT).unwrap();
    publish(&emu, &topic, 1..21);
    let dropped = || client.health().dropped();
    assert!(wait_until(WAIT, || dropped() + 2 >= 20), "{}", dropped());
    release.send(()).unwrap();
    assert!(wait_until(WAIT, || {
        lifecycle.count(|e| matches!(e, Lifecycle::Dropped { total, .. } if *total == dropped()))
            > 0
    }));
    assert!(wait_until(WAIT, || delivered.load(Ordering::SeqCst) as u64
        + dropped()
        == 21));
}

/// Callbacks of a client on a one-thread pool call back into their client (guarantee 6): an
/// event callback subscribes, unsubscribes, registers and reads health; a lifecycle callback
/// subscribes while the lifecycle events it causes wait for this very thread.
#[test]
fn pooled_callbacks_may_call_back_into_their_client_on_a_one_thread_pool() {
    let emu = emulator_for(2);
    let pool = ThreadPool::new(1).unwrap();
    let client = Arc::new(builder(&emu).thread_pool(&pool).build().unwrap());
    let topics = presence_topics(30);
    let (weak, rest, first) = (
        Arc::downgrade(&client),
        topics[1..20].to_vec(),
        topics[0].clone(),
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    let _event = client
        .on(&first, move |_: &Event| {
            let Some(client) = weak.upgrade() else { return };
            let subscribed = client.subscribe(&rest).map(|r| r.permitted.len());
            let removed = client.unsubscribe(&rest[..5]).map(|r| r.len());
            let listener = client.on("v2.users.*.presence", |_| {}).is_ok();
            let channels = client.health().channels().len();
            let _ = tx.send((subscribed.ok(), removed.ok(), listener, channels));
        })
        .unwrap();
    let (weak, late) = (Arc::downgrade(&client), topics[20..].to_vec());
    let once = AtomicBool::new(false);
    let (ltx, lrx) = crossbeam_channel::unbounded();
    let _lifecycle = client
        .on_lifecycle(move |event: &Lifecycle| {
            if !matches!(event, Lifecycle::Connected { .. }) || once.swap(true, Ordering::SeqCst) {
                return;
            }
            let Some(client) = weak.upgrade() else { return };
            let _ = ltx.send(client.subscribe(&late).map(|r| r.permitted.len()).ok());
        })
        .unwrap();
    assert!(client.subscribe([&first]).unwrap().rejected.is_empty());
    assert_eq!(
        lrx.recv_timeout(WAIT)
            .expect("the lifecycle callback returned"),
        Some(10)
    );
    wait_sockets(&emu, 1);
    publish(&emu, &first, 0..1);
    assert_eq!(
        rx.recv_timeout(WAIT).expect("the event callback returned"),
        (Some(19), Some(5), true, 1)
    );
    assert_eq!(client.topics().len(), 25);
    client.shutdown(WAIT).unwrap();
}

/// A pooled client starts its resync thread only when it first resynchronises: after a gap,
/// the gap's topics are read over REST and delivered as snapshots, as without a pool.
#[test]
fn a_pooled_client_resyncs_after_a_gap() {
    use genesys_notify::emulator::{Fault, Target};
    let emu = emulator_for(1);
    let pool = ThreadPool::new(1).unwrap();
    let user = user_id(3);
    emu.set_user_presence(&user, "AVAILABLE");
    let client = builder(&emu).thread_pool(&pool).build().unwrap();
    let recorder = Recorder::new(&client);
    let snapshots = Arc::new(AtomicUsize::new(0));
    let count = snapshots.clone();
    let topic = format!("v2.users.{user}.presence");
    let _guard = client
        .on(&topic, move |e: &Event| {
            if e.is_snapshot() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    assert!(client.subscribe([&topic]).unwrap().rejected.is_empty());
    wait_sockets(&emu, 1);
    emu.inject(Fault::DropSocket {
        target: Target::AllSockets,
    });
    assert!(recorder.wait(WAIT, |e| matches!(e, Lifecycle::Gap { .. })));
    assert!(wait_until(WAIT, || snapshots.load(Ordering::SeqCst) >= 1));
    assert!(recorder.wait(WAIT, |e| matches!(e, Lifecycle::Resynced { .. })));
    client.shutdown(WAIT).unwrap();
}
