//! Callbacks that call back into the client (guarantee 6): dropping guards, subscribing,
//! unsubscribing, registering listeners and reading health from inside event and lifecycle
//! callbacks neither deadlocks nor loses the calls' results; two callbacks dropping each
//! other's guards at the same moment both return.
mod util;

use genesys_notify::{Client, Event, Lifecycle, ListenerGuard};
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(20);

/// Runs `f` on a thread of its own and fails the test if it does not return within `within`
/// (a deadlock), instead of hanging the test run.
fn within<T: Send + 'static>(within: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(within)
        .expect("deadlock: the scenario did not finish in time")
}

/// Two topics whose events run on different dispatcher threads (topics are sharded by name).
fn topics_on_two_threads(emu: &genesys_notify::emulator::Emulator, client: &Client) -> [String; 2] {
    let topics = presence_topics(16);
    let seen: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let sink = seen.clone();
    let probe = client
        .on("v2.users.*.presence", move |event: &Event| {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            sink.lock().insert(event.topic().to_owned(), thread);
        })
        .unwrap();
    let _ = client.subscribe(&topics).unwrap();
    wait_sockets(emu, 1);
    for topic in &topics {
        emu.publish(topic, presence_body(0));
    }
    assert!(wait_until(WAIT, || seen.lock().len() == topics.len()));
    drop(probe);
    let seen = seen.lock();
    let first = &topics[0];
    let other = topics
        .iter()
        .find(|t| seen[*t] != seen[first])
        .expect("16 topics all on one dispatcher thread");
    [first.clone(), other.clone()]
}

/// Both callbacks arrive here before either goes on (at most `WAIT`).
#[derive(Default)]
struct Rendezvous {
    arrived: Mutex<usize>,
    both: Condvar,
}

impl Rendezvous {
    fn meet(&self) -> bool {
        let mut arrived = self.arrived.lock();
        *arrived += 1;
        if *arrived >= 2 {
            self.both.notify_all();
            return true;
        }
        !self.both.wait_for(&mut arrived, WAIT).timed_out() || *arrived >= 2
    }
}

type Slot = Arc<Mutex<Option<ListenerGuard>>>;

#[test]
fn two_callbacks_dropping_each_others_guards_at_once_both_return() {
    within(Duration::from_secs(90), || {
        let emu = emulator();
        let client = builder(&emu).dispatcher_threads(2).build().unwrap();
        let [topic_a, topic_b] = topics_on_two_threads(&emu, &client);

        let (guard_a, guard_b): (Slot, Slot) = (Arc::default(), Arc::default());
        let meeting = Arc::new(Rendezvous::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = mpsc::channel::<(&str, bool)>();
        let register = |topic: &str, name: &'static str, other: Slot| {
            let (meeting, calls, done) = (meeting.clone(), calls.clone(), done_tx.clone());
            client
                .on(topic, move |_: &Event| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let met = meeting.meet();
                    // Waits for the other callback, which waits for this one.
                    drop(other.lock().take());
                    let _ = done.send((name, met));
                })
                .unwrap()
        };
        *guard_a.lock() = Some(register(&topic_a, "a", guard_b.clone()));
        *guard_b.lock() = Some(register(&topic_b, "b", guard_a.clone()));

        emu.publish(&topic_a, presence_body(1));
        emu.publish(&topic_b, presence_body(1));
        let mut finished = Vec::new();
        for _ in 0..2 {
            let (name, met) = done_rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("a guard drop never returned; finished: {finished:?}"));
            assert!(met, "the two callbacks did not run at the same time");
            finished.push(name);
        }
        // Both listeners are gone: nothing runs them again.
        let before = calls.load(Ordering::SeqCst);
        assert_eq!(before, 2);
        emu.publish(&topic_a, presence_body(2));
        emu.publish(&topic_b, presence_body(2));
        assert!(wait_until(WAIT, || client.health().unrouted() >= 2));
        assert_eq!(calls.load(Ordering::SeqCst), before);
        client.shutdown(Duration::from_secs(5)).unwrap();
    });
}

#[test]
fn dropping_another_guard_inside_a_callback_still_waits_for_its_running_call() {
    within(Duration::from_secs(90), || {
        let emu = emulator();
        let client = builder(&emu).dispatcher_threads(2).build().unwrap();
        let [topic_a, topic_b] = topics_on_two_threads(&emu, &client);

        // B's call is running (held until released); A's callback drops B's guard: the drop
        // returns only once B's call has ended.
        let b_running = Arc::new(AtomicBool::new(false));
        let b_release = Arc::new(AtomicBool::new(false));
        let b_ended = Arc::new(AtomicBool::new(false));
        let guard_b = {
            let (running, release, ended) = (b_running.clone(), b_release.clone(), b_ended.clone());
            client
                .on(&topic_b, move |_: &Event| {
                    running.store(true, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    ended.store(true, Ordering::SeqCst);
                })
                .unwrap()
        };
        let slot: Slot = Arc::new(Mutex::new(Some(guard_b)));
        let (tx, rx) = mpsc::channel();
        let _guard_a = {
            let (slot, release, ended) = (slot.clone(), b_release.clone(), b_ended.clone());
            client
                .on(&topic_a, move |_: &Event| {
                    release.store(true, Ordering::SeqCst);
                    drop(slot.lock().take());
                    let _ = tx.send(ended.load(Ordering::SeqCst));
                })
                .unwrap()
        };
        emu.publish(&topic_b, presence_body(1));
        assert!(wait_until(WAIT, || b_running.load(Ordering::SeqCst)));
        emu.publish(&topic_a, presence_body(1));
        let ended_before_drop_returned = rx.recv_timeout(WAIT).expect("the drop returned");
        assert!(ended_before_drop_returned);
        client.shutdown(Duration::from_secs(5)).unwrap();
    });
}

#[test]
fn an_event_callback_can_subscribe_unsubscribe_register_and_read_health() {
    within(Duration::from_secs(90), || {
        let emu = emulator();
        let client = Arc::new(builder(&emu).build().unwrap());
        // More than one channel's worth, so the call inside the callback creates channels.
        let topics = presence_topics(1_500);
        let weak = Arc::downgrade(&client);
        let (tx, rx) = mpsc::channel();
        let rest = topics[1..].to_vec();
        let first = topics[0].clone();
        let _guard = client
            .on(&first, move |_: &Event| {
                let Some(client) = weak.upgrade() else { return };
                let subscribed = client.subscribe(&rest).map(|r| r.permitted.len());
                let removed = client.unsubscribe(&rest[..10]).map(|r| r.len());
                let listener = client.on("v2.users.*.presence", |_| {});
                let channels = client.health().channels().len();
                let _ = tx.send((subscribed.ok(), removed.ok(), listener.is_ok(), channels));
            })
            .unwrap();
        let _ = client.subscribe([&first]).unwrap();
        wait_sockets(&emu, 1);
        emu.publish(&first, presence_body(1));
        let (subscribed, removed, listener, channels) =
            rx.recv_timeout(WAIT).expect("the callback finished");
        assert_eq!(subscribed, Some(1_499));
        assert_eq!(removed, Some(10));
        assert!(listener);
        assert_eq!(channels, 2);
        assert_eq!(client.topics().len(), 1_490);
        client.shutdown(Duration::from_secs(5)).unwrap();
    });
}

#[test]
fn a_lifecycle_callback_can_subscribe_while_lifecycle_events_keep_coming() {
    within(Duration::from_secs(90), || {
        let emu = emulator();
        let client = Arc::new(builder(&emu).build().unwrap());
        let topics = presence_topics(1_200);
        let weak = Arc::downgrade(&client);
        let once = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        let rest = topics[1..].to_vec();
        let again = topics[0].clone();
        let _guard = client
            .on_lifecycle(move |event: &Lifecycle| {
                if !matches!(event, Lifecycle::Connected { .. })
                    || once.swap(true, Ordering::SeqCst)
                {
                    return;
                }
                let Some(client) = weak.upgrade() else { return };
                // Emits lifecycle events (channel created, subscribed, duplicate) that this
                // very thread delivers once the callback returns.
                let added = client.subscribe(&rest).map(|r| r.permitted.len());
                let duplicate = client.subscribe([&again]).map(|r| r.duplicates.len());
                let _ = tx.send((added.ok(), duplicate.ok()));
            })
            .unwrap();
        let recorder = Recorder::new(&client);
        let _ = client.subscribe(&topics[..1]).unwrap();
        assert_eq!(
            rx.recv_timeout(WAIT).expect("the callback finished"),
            (Some(1_199), Some(1))
        );
        assert!(recorder.wait(WAIT, |e| matches!(
            e,
            Lifecycle::DuplicateSubscription { .. }
        )));
        client.shutdown(Duration::from_secs(5)).unwrap();
    });
}
