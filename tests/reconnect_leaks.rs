//! Reconnecting leaks nothing (issue #3): after many forced reconnect cycles (the server drops
//! the TCP connection, the client reconnects), the process's thread count, open file
//! descriptors and resident memory return to their baseline. Linux only (reads `/proc/self`).
mod recovery;
mod util;

use genesys_notify::emulator::{Fault, Target};
use genesys_notify::{Backoff, Lifecycle};
use recovery::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

/// Forced reconnect cycles. 1 000 takes about 10 s in a debug build on two shared cores.
const CYCLES: usize = 1000;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resident set size in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn many_reconnect_cycles_leak_no_thread_fd_or_memory() {
    let emu = emulator();
    let client = fast(&emu)
        .backoff(
            Backoff::default()
                .base(Duration::from_millis(1))
                .cap(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    // Count connections without keeping the events (a recorder would grow by itself).
    let connected = Arc::new(AtomicUsize::new(0));
    let counter = connected.clone();
    let _lifecycle = client
        .on_lifecycle(move |e| {
            if matches!(e, Lifecycle::Connected { .. }) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .unwrap();
    let seqs = Seqs::new(&client);
    let topics = presence_topics(5);
    let _ = client.subscribe(&topics).unwrap();
    wait_registered(&emu);
    let id = channel_id(&client);

    let cycle = |n: usize| {
        let before = connected.load(Ordering::SeqCst);
        let sockets = emu.channel(&id).map_or(0, |c| c.connections);
        emu.inject(Fault::DropSocket {
            target: Target::channel(&id),
        });
        assert!(
            wait_until(SOON, || connected.load(Ordering::SeqCst) > before),
            "cycle {n}: no reconnect"
        );
        // Wait for the emulator to see the new socket too, so the next drop hits it (the
        // dropped one stays listed until the emulator has closed it, and the `Connected`
        // counted above may be an earlier one delivered late).
        assert!(wait_until(SOON, || emu
            .channel(&id)
            .is_some_and(|c| c.connected && c.connections > sockets)));
        if n % 100 == 0 {
            emu.clear_records();
        }
    };
    // Warm up: allocator arenas, lazily started threads, caches.
    for n in 0..20 {
        cycle(n);
    }
    let settle = || std::thread::sleep(Duration::from_millis(300));
    settle();
    let (threads0, fds0, rss0) = (threads(), fds(), rss_kib());

    let started = Instant::now();
    for n in 0..CYCLES / 2 {
        cycle(n);
    }
    settle();
    // The allocator's arenas may still grow in the first half when the machine is loaded (more
    // threads overlap); a leak grows in both halves alike.
    let rss_half = rss_kib();
    for n in CYCLES / 2..CYCLES {
        cycle(n);
    }
    let took = started.elapsed();
    emu.clear_records();
    assert!(flows(&emu, &topics[0], &seqs, 1));
    assert_eq!(channel_id(&client), id, "same channel throughout");

    // Sockets and threads of the last cycle wind down asynchronously on both sides.
    let threads_ok = wait_until(Duration::from_secs(5), || threads() <= threads0 + 1);
    let fds_ok = wait_until(Duration::from_secs(5), || fds() <= fds0 + 2);
    let (threads1, fds1, rss1) = (threads(), fds(), rss_kib());
    println!(
        "{CYCLES} reconnect cycles in {took:?}: threads {threads0} -> {threads1}, fds {fds0} -> \
         {fds1}, RSS {rss0} KiB -> {rss1} KiB",
    );
    assert!(threads_ok, "threads {threads0} -> {threads1}");
    assert!(fds_ok, "fds {fds0} -> {fds1}");
    assert!(
        rss1 <= rss_half + 2 * 1024,
        "RSS grew from {rss_half} KiB to {rss1} KiB over the second {} cycles",
        CYCLES / 2
    );
    assert!(
        rss1 <= rss0 + 8 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
    let reconnects = client.health().channels()[0].reconnects;
    // Each cycle costs one socket (a drop can also land during a handshake, which counts as a
    // failed attempt instead), so at least the measured cycles are counted.
    assert!(reconnects >= CYCLES as u64, "{reconnects}");
    client.shutdown(Duration::from_secs(2)).unwrap();
}
