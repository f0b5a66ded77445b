//! subscribe_scale.rs measures how the cost of subscribing grows with the number of topics
//! (issue #11): N topics subscribed one `subscribe` call at a time, from one thread and from
//! several threads at once (calls that arrive close together on one channel are batched), and
//! in one call, for N = 1 000 and N = 20 000, against the in-process emulator on 127.0.0.1.
//!
//! It prints the time of each run and the ratio between the two sizes: 20x the topics should
//! cost about 20x the time (linear), not 400x (quadratic). A reference line gives the floor:
//! the same number of bare REST calls (`GET /api/v2/tokens/me`), since one subscribe call is
//! one REST call, each on a new HTTP connection with this emulator (it answers
//! `Connection: close`). Machines are shared and noisy, so no figure is asserted; the run only
//! fails when a subscription fails.
//!
//! Run: `cargo bench --features emulator --bench subscribe_scale` (under a minute on 2 cores).
//! `GENESYS_BENCH_SIZES=1000,5000` picks other sizes (each at most 20 000, the 20-channel limit).

use genesys_notify::emulator::Emulator;
use genesys_notify::Client;
use std::time::{Duration, Instant};

/// Threads of the concurrent run.
const THREADS: usize = 8;

fn topics(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("v2.users.9ed7d9f6-0c59-4360-ac54-{i:012x}.presence"))
        .collect()
}

fn client(emu: &Emulator) -> Client {
    Client::builder()
        .api_base(emu.api_base())
        .login_base(emu.login_base())
        .client_credentials(emu.client_id(), emu.client_secret())
        .build()
        .expect("client builds")
}

/// CPU time of the whole process (client and emulator threads), from `/proc/self/stat`: on a
/// shared machine it says more than wall time about the work done.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and
    // 13th, in clock ticks of 1/100 s on Linux.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Subscribes `topics` with a fresh emulator and client in the way `how` says; returns the
/// wall and CPU time the calls took (setup and shutdown excluded).
fn run(how: How, topics: &[String]) -> (Duration, Duration) {
    let emu = Emulator::start().expect("emulator starts");
    let client = client(&emu);
    let cpu = cpu_time();
    let start = Instant::now();
    match how {
        How::OneAtATime => {
            for topic in topics {
                let report = client.subscribe([topic]).expect("subscribe");
                assert_eq!(report.permitted.len(), 1);
            }
        }
        How::Concurrent => {
            let per = topics.len().div_ceil(THREADS);
            std::thread::scope(|scope| {
                for part in topics.chunks(per) {
                    let client = &client;
                    scope.spawn(move || {
                        for topic in part {
                            let report = client.subscribe([topic]).expect("subscribe");
                            assert_eq!(report.permitted.len(), 1);
                        }
                    });
                }
            });
        }
        How::OneCall => {
            let report = client.subscribe(topics).expect("subscribe");
            assert_eq!(report.permitted.len(), topics.len());
        }
    }
    let took = (start.elapsed(), cpu_time().saturating_sub(cpu));
    assert_eq!(
        client.topics().len(),
        topics.len(),
        "every topic subscribed"
    );
    let server: usize = emu.channels().iter().map(|c| c.topics.len()).sum();
    assert_eq!(server, topics.len(), "every topic subscribed on the server");
    client.shutdown(Duration::from_secs(10)).expect("shutdown");
    took
}

#[derive(Clone, Copy, Debug)]
enum How {
    OneAtATime,
    Concurrent,
    OneCall,
}

impl How {
    fn label(self) -> String {
        match self {
            How::OneAtATime => "one call per topic, 1 thread".to_owned(),
            How::Concurrent => format!("one call per topic, {THREADS} threads"),
            How::OneCall => "all topics in one call".to_owned(),
        }
    }
}

/// The floor under any REST call against this emulator: `n` calls of `GET /api/v2/tokens/me`
/// ([`Client::verify_token`]), each a new HTTP connection (the emulator answers
/// `Connection: close`). Returns wall and CPU time.
fn rest_floor(n: usize) -> (Duration, Duration) {
    let emu = Emulator::start().expect("emulator starts");
    let client = client(&emu);
    client.verify_token().expect("token");
    let cpu = cpu_time();
    let start = Instant::now();
    for _ in 0..n {
        client.verify_token().expect("token");
    }
    let took = (start.elapsed(), cpu_time().saturating_sub(cpu));
    client.shutdown(Duration::from_secs(10)).expect("shutdown");
    took
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    let sizes: Vec<usize> = std::env::var("GENESYS_BENCH_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("GENESYS_BENCH_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 20_000]);
    assert!(sizes.iter().all(|&n| (1..=20_000).contains(&n)));
    println!("subscribe scale: emulator on 127.0.0.1, default limits (1 000 topics x 20 channels)");
    println!(
        "{:<36} {:>8} {:>12} {:>14} {:>12}",
        "how", "topics", "wall", "wall/topic", "CPU (all)"
    );
    let floor_calls = 2_000;
    let (wall, cpu) = rest_floor(floor_calls);
    println!(
        "{:<36} {:>8} {:>10.3} s {:>11.1} µs {:>10.2} s",
        "reference: bare REST call (tokens/me)",
        floor_calls,
        wall.as_secs_f64(),
        wall.as_secs_f64() * 1e6 / floor_calls as f64,
        cpu.as_secs_f64()
    );
    for how in [How::OneAtATime, How::Concurrent, How::OneCall] {
        let mut times = Vec::new();
        for &n in &sizes {
            let (took, cpu) = run(how, &topics(n));
            println!(
                "{:<36} {:>8} {:>10.3} s {:>11.1} µs {:>10.2} s",
                how.label(),
                n,
                took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / n as f64,
                cpu.as_secs_f64()
            );
            times.push((n, took));
        }
        if let (Some(&(n0, t0)), Some(&(n1, t1))) = (times.first(), times.last()) {
            if n1 > n0 {
                println!(
                    "{:<36} {:>8} {:>10.1}x for {:.0}x the topics (linear: {:.0}x)",
                    how.label(),
                    "ratio",
                    t1.as_secs_f64() / t0.as_secs_f64(),
                    n1 as f64 / n0 as f64,
                    n1 as f64 / n0 as f64
                );
            }
        }
    }
}
