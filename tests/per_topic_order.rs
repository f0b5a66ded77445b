//! Events of one topic reach each listener in the order they were received, with several
//! dispatcher threads running topics in parallel: none missing, none duplicated (issue #2,
//! point 2).
mod util;

use genesys_notify::{Event, ListenerGuard};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::*;

const TOPICS: usize = 50;
const EVENTS: u64 = 10_000;
const PER_TOPIC: u64 = EVENTS / TOPICS as u64;

/// What one listener saw: per topic the sequence numbers in arrival order, and the dispatcher
/// threads it ran on.
#[derive(Default)]
struct Seen {
    per_topic: HashMap<String, Vec<u64>>,
    threads: HashSet<String>,
}

fn record(seen: &Mutex<Seen>, event: &Event) {
    let seq = event.body_value().unwrap()["seq"].as_u64().unwrap();
    let thread = std::thread::current().name().unwrap_or("?").to_owned();
    let mut seen = seen.lock();
    seen.per_topic
        .entry(event.topic().to_owned())
        .or_default()
        .push(seq);
    seen.threads.insert(thread);
}

fn assert_in_order(who: &str, seen: &Seen, topics: &[String]) {
    assert_eq!(seen.per_topic.len(), TOPICS, "{who}: topics seen");
    let expected: Vec<u64> = (0..PER_TOPIC).collect();
    for topic in topics {
        let got = &seen.per_topic[topic];
        assert_eq!(
            got,
            &expected,
            "{who}: {topic} out of order, missing or duplicated (len {})",
            got.len()
        );
    }
}

#[test]
fn ten_thousand_events_over_fifty_topics_arrive_in_order_per_topic() {
    let emu = emulator();
    let client = builder(&emu).dispatcher_threads(4).build().unwrap();
    let topics = presence_topics(TOPICS);

    // Listener 1: one wildcard pattern for every topic. It yields now and then so queues fill
    // up and threads interleave.
    let wildcard = Arc::new(Mutex::new(Seen::default()));
    let calls = Arc::new(AtomicU64::new(0));
    let _wildcard_guard = {
        let (seen, calls) = (wildcard.clone(), calls.clone());
        client
            .on("v2.users.*.presence", move |e| {
                record(&seen, e);
                if calls.fetch_add(1, Ordering::Relaxed) % 97 == 0 {
                    std::thread::yield_now();
                }
            })
            .unwrap()
    };
    // Listener 2: one exact pattern per topic, sharing one record.
    let exact = Arc::new(Mutex::new(Seen::default()));
    let _exact_guards: Vec<ListenerGuard> = topics
        .iter()
        .map(|topic| {
            let seen = exact.clone();
            client.on(topic, move |e| record(&seen, e)).unwrap()
        })
        .collect();

    let report = client.subscribe(&topics).unwrap();
    assert_eq!(report.permitted.len(), TOPICS);

    // Round robin over the topics: topic i gets sequence numbers 0, 1, 2, ... in order.
    for seq in 0..PER_TOPIC {
        for topic in &topics {
            assert_eq!(emu.publish(topic, presence_body(seq)), 1);
        }
    }
    assert!(
        wait_until(Duration::from_secs(15), || {
            client.health().delivered() >= EVENTS
                && calls.load(Ordering::Relaxed) >= EVENTS
                && exact.lock().per_topic.values().map(Vec::len).sum::<usize>() >= EVENTS as usize
        }),
        "not everything delivered: {:?}",
        client.health()
    );
    // Let a stray duplicate, if any, show up before counting.
    std::thread::sleep(Duration::from_millis(50));

    assert_in_order("wildcard listener", &wildcard.lock(), &topics);
    assert_in_order("exact listeners", &exact.lock(), &topics);
    let health = client.health();
    assert_eq!(health.received(), EVENTS);
    assert_eq!(health.delivered(), EVENTS);
    assert_eq!(health.dropped(), 0);
    assert_eq!(health.unrouted(), 0);
    assert_eq!(health.malformed(), 0);
    assert_eq!(health.listener_panics(), 0);
    assert_eq!(health.queue_depths().len(), 4);

    // The topics were spread over more than one dispatcher thread, and each topic stayed on
    // one thread (which is what keeps its order).
    let threads = wildcard.lock().threads.clone();
    assert!(threads.len() >= 2, "only ran on {threads:?}");
    assert!(threads.iter().all(|t| t.starts_with("genesys-dispatch-")));
    println!("dispatcher threads used: {}", threads.len());
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn two_wildcard_listeners_each_see_every_topic_in_order() {
    let emu = emulator();
    let client = builder(&emu).dispatcher_threads(4).build().unwrap();
    let topics = presence_topics(TOPICS);
    let first = Arc::new(Mutex::new(Seen::default()));
    let second = Arc::new(Mutex::new(Seen::default()));
    let _g1 = {
        let seen = first.clone();
        client
            .on("v2.users.*.presence", move |e| record(&seen, e))
            .unwrap()
    };
    // A slower listener on the same events: it must not reorder either one.
    let _g2 = {
        let seen = second.clone();
        client
            .on("v2.*.*.presence", move |e| {
                record(&seen, e);
                std::thread::yield_now();
            })
            .unwrap()
    };
    let _ = client.subscribe(&topics).unwrap();
    for seq in 0..PER_TOPIC {
        for topic in &topics {
            emu.publish(topic, presence_body(seq));
        }
    }
    assert!(
        wait_until(Duration::from_secs(15), || client.health().delivered()
            >= EVENTS),
        "{:?}",
        client.health()
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_in_order("first", &first.lock(), &topics);
    assert_in_order("second", &second.lock(), &topics);
    let health = client.health();
    assert_eq!(health.received(), EVENTS);
    assert_eq!(health.delivered(), EVENTS);
    client.shutdown(Duration::from_secs(5)).unwrap();
}
