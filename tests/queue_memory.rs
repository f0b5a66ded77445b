//! The dispatcher queues take memory only for what they hold (issue 8 #5): the largest valid
//! configuration (8 threads × 1 048 576 events) used to allocate about 1 GiB at `build()`.
//! Issue 20: queues of up to 4096 events were still arrays allocated and touched at `build()`
//! (168 bytes a slot), and the lifecycle queue an array of 4096 slots (96 KiB): none is now.
//! Alone in its file, one test: it reads the process's resident size.

use genesys_notify::Client;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn build_reserves_no_memory_for_the_queues() {
    let before = resident_kib();
    let client = Client::builder()
        .api_base("http://127.0.0.1:9")
        .login_base("http://127.0.0.1:9")
        .access_token("unused")
        .dispatcher_threads(8)
        .queue_capacity(1 << 20)
        .build()
        .unwrap();
    let grown = resident_kib().saturating_sub(before);
    // Threads and their stacks touch a little; 1 GiB of queue slots would be 1 048 576 KiB.
    assert!(grown < 32 << 10, "build() grew the process by {grown} KiB");
    assert_eq!(client.health().queue_depths(), [0; 8]);
    client.shutdown(std::time::Duration::from_secs(5)).unwrap();

    // Eight queues of 4096 events were 8 × 4097 × 168 bytes, 5.4 MiB, at `build()`; now the
    // threads' stacks (8 dispatchers, lifecycle, token refresher, resync) are most of it.
    let before = resident_kib();
    let client = Client::builder()
        .api_base("http://127.0.0.1:9")
        .login_base("http://127.0.0.1:9")
        .access_token("unused")
        .dispatcher_threads(8)
        .queue_capacity(4096)
        .build()
        .unwrap();
    let grown = resident_kib().saturating_sub(before);
    assert!(grown < 2 << 10, "build() grew the process by {grown} KiB");
    client.shutdown(std::time::Duration::from_secs(5)).unwrap();
}
