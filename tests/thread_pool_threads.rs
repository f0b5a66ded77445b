//! Clients built with a shared `ThreadPool` add only their channel threads (issue 20, "many
//! clients"): N pooled clients of one channel each run on N channel threads plus the pool's
//! workers and timer thread, counted from `/proc/self/task` (Linux). One test in this file, so
//! that no other test's threads are counted; the emulator's threads are named `emu-*`.
#![cfg(target_os = "linux")]
mod util;

use genesys_notify::emulator::EmulatorConfig;
use genesys_notify::{Client, ThreadPool};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(30);
const CLIENTS: usize = 20;

/// The names of this process's threads started by the library (`genesys-…`, cut to 15 bytes
/// by the kernel).
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
fn pooled_clients_add_only_their_channel_threads_and_the_pool_ends_with_them() {
    let emu = emulator_with(EmulatorConfig::default().max_channels(CLIENTS + 5));
    assert!(library_threads().is_empty(), "{:?}", library_threads());
    let pool = ThreadPool::new(2).unwrap();
    assert!(wait_until(WAIT, || library_threads().len() == 3));
    let topics = presence_topics(CLIENTS);
    let clients: Vec<Client> = topics
        .iter()
        .map(|topic| {
            let client = builder(&emu).thread_pool(&pool).build().unwrap();
            assert!(client.subscribe([topic]).unwrap().rejected.is_empty());
            client
        })
        .collect();
    wait_sockets(&emu, CLIENTS);
    let threads = library_threads();
    let channels = threads
        .iter()
        .filter(|n| n.starts_with("genesys-channel"))
        .count();
    assert_eq!(channels, CLIENTS, "{threads:?}");
    assert_eq!(
        threads.len(),
        CLIENTS + 3,
        "one channel thread per client plus 2 workers and the timer: {threads:?}"
    );
    // The same client without a pool starts its own dispatcher, lifecycle, token and resync
    // threads on top of its channel thread.
    let alone = builder(&emu).build().unwrap();
    assert!(alone.subscribe([&topics[0]]).unwrap().rejected.is_empty());
    wait_sockets(&emu, CLIENTS + 1);
    assert!(
        library_threads().len() >= CLIENTS + 3 + 4,
        "{:?}",
        library_threads()
    );
    alone.shutdown(WAIT).unwrap();
    for client in &clients {
        client.shutdown(WAIT).unwrap();
    }
    assert!(
        wait_until(WAIT, || library_threads().len() == 3),
        "{:?}",
        library_threads()
    );
    // The pool ends once its last handle and its last client are gone.
    drop(pool);
    assert!(
        wait_until(WAIT, || library_threads().len() == 3),
        "ended while a client still holds it"
    );
    drop(clients);
    assert!(
        wait_until(WAIT, || library_threads().is_empty()),
        "{:?}",
        library_threads()
    );
}
