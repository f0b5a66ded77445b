//! A pool whose last handle and last client are dropped from inside the pool's own callbacks
//! still ends: its workers and timer thread are gone afterwards, counted from `/proc/self/task`
//! (Linux). One test in this file, so that no other test's threads are counted.
#![cfg(target_os = "linux")]
mod util;

use genesys_notify::emulator::EmulatorConfig;
use genesys_notify::{Client, Event, ThreadPool};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(30);

/// A client (and maybe a pool handle) its own callback takes and drops.
type Held = Arc<Mutex<Option<(Client, Option<ThreadPool>)>>>;

fn library_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with("genesys-"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_last_client_and_pool_handle_dropped_inside_callbacks_end_the_pool() {
    let emu = emulator_with(EmulatorConfig::default().max_channels(8));
    let pool = ThreadPool::new(2).unwrap();
    let topics = presence_topics(2);
    // Each client is dropped by its own callback; the first callback also drops the pool's
    // last handle.
    let mut held = Vec::new();
    let (tx, rx) = crossbeam_channel::unbounded();
    for (n, topic) in topics.iter().enumerate() {
        let client = builder(&emu).thread_pool(&pool).build().unwrap();
        let slot: Held = Arc::default();
        let (me, tx) = (slot.clone(), tx.clone());
        let guard = client
            .on(topic, move |_: &Event| {
                let taken = me.lock().take();
                drop(taken);
                let _ = tx.send(());
            })
            .unwrap();
        assert!(client.subscribe([topic]).unwrap().rejected.is_empty());
        let pool_handle = (n == 0).then(|| pool.clone());
        *slot.lock() = Some((client, pool_handle));
        held.push((slot, guard));
    }
    drop(pool);
    wait_sockets(&emu, 2);
    assert!(
        wait_until(WAIT, || library_threads().len() == 2 + 3),
        "{:?}",
        library_threads()
    );
    // The second client goes first, then the first with the pool's last handle.
    assert_eq!(emu.publish(&topics[1], presence_body(0)), 1);
    rx.recv_timeout(WAIT).expect("the second callback returned");
    assert_eq!(emu.publish(&topics[0], presence_body(0)), 1);
    rx.recv_timeout(WAIT).expect("the first callback returned");
    assert!(held.iter().all(|(slot, _)| slot.lock().is_none()));
    assert!(
        wait_until(WAIT, || library_threads().is_empty()),
        "{:?}",
        library_threads()
    );
    drop(held);
}
