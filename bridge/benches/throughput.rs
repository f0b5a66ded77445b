//! throughput.rs measures genesys-bridge from socket to stream against plain pipelined `XADD`
//! of the same entries, in the same run, on the same throwaway `redis-server` (machines are
//! shared and noisy: only the ratio means something).
//!
//! - Bridge: the built `genesys-bridge` (release) with 64 shards and 100 topics. The emulator in
//!   this process serves the token, the channel and the subscriptions; the channel's
//!   `connectUri` points at a load generator (a tungstenite server on loopback) that writes
//!   pre-encoded small presence notifications as fast as the socket takes them, so that the
//!   source costs next to nothing. Rate: events from the first frame written until Redis
//!   acknowledged the last (`genesys_bridge_entries_written_total` from `/metrics`). CPU per
//!   event: the bridge process's user + system time (`/proc/<pid>/stat`) over the run, divided
//!   by the events.
//! - Baseline: the same entries (the bridge's own field encoding, the `fence` field included),
//!   written with plain `XADD <key> MAXLEN ~ 100000 * ...` commands, pipelined 1 024 per round
//!   trip over the 64 streams, from one connection; no Lua, no lease, no socket, no buffer.
//!
//! Run: `cargo bench -p genesys-bridge --bench throughput` (about a minute), `-- --quick` for a
//! smoke run. Needs `redis-server` on the PATH.

use genesys_bridge::entry::{shard_of, Record};
use genesys_notify::emulator::{Emulator, EmulatorConfig};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const SHARDS: u32 = 64;
const TOPICS: usize = 100;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

fn written(addr: &str) -> u64 {
    http_get(addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("genesys_bridge_entries_written_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of a process.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime), in clock ticks of 1/100 s on Linux.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn topic(i: usize) -> String {
    format!("v2.users.9ed7d9f6-0c59-4360-ac54-{i:012x}.presence")
}

fn body(seq: u64) -> String {
    format!(
        r#"{{"source":"PURECLOUD","presenceDefinition":{{"id":"6a3af858-942f-489d-9700-5f9bcdcdae9b","systemPresence":"AVAILABLE"}},"primary":true,"seq":{seq}}}"#
    )
}

/// The bridge: the generator writes `events` frames; waits until Redis acknowledged them.
fn run_bridge(
    socket: &mut tungstenite::WebSocket<std::net::TcpStream>,
    http: &str,
    pid: u32,
    events: u64,
) -> (f64, Duration) {
    let frames: Vec<String> = (0..events)
        .map(|seq| {
            format!(
                r#"{{"topicName":"{}","version":"2","eventBody":{},"metadata":{{"CorrelationId":"9a1b2c3d-0000-4000-8000-{seq:012x}"}}}}"#,
                topic(seq as usize % TOPICS),
                body(seq % 1000)
            )
        })
        .collect();
    let before = written(http);
    let cpu_before = cpu(pid);
    let start = Instant::now();
    for (i, frame) in frames.into_iter().enumerate() {
        socket
            .write(tungstenite::Message::text(frame))
            .expect("write a frame");
        if i % 256 == 255 {
            socket.flush().expect("flush");
        }
    }
    socket.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(300);
    while written(http) < before + events {
        assert!(
            Instant::now() < deadline,
            "the bridge did not write every event"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed();
    let cpu_used = cpu(pid).saturating_sub(cpu_before);
    (
        events as f64 / elapsed.as_secs_f64(),
        cpu_used / events as u32,
    )
}

/// The baseline: the same entries with plain pipelined XADD.
fn run_raw(con: &mut redis::Connection, events: u64) -> f64 {
    let now = SystemTime::now();
    let start = Instant::now();
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for seq in 0..events {
        let t = topic(seq as usize % TOPICS);
        let shard = shard_of(&t, SHARDS);
        let record = Record::Event {
            topic: t,
            body: body(seq % 1000),
            correlation_id: Some("9a1b2c3d-0000-4000-8000-000000000000".into()),
            snapshot: false,
            received_at: now,
        };
        let cmd = pipe
            .cmd("XADD")
            .arg(format!("raw:{{shard-{shard}}}:events"))
            .arg("MAXLEN")
            .arg("~")
            .arg(100_000)
            .arg("*");
        for (name, value) in record.fields("bench", now) {
            cmd.arg(name).arg(value);
        }
        cmd.arg("fence").arg(1).ignore();
        queued += 1;
        if queued == 1024 {
            pipe.exec(con).unwrap();
            pipe.clear();
            queued = 0;
        }
    }
    if queued > 0 {
        pipe.exec(con).unwrap();
    }
    events as f64 / start.elapsed().as_secs_f64()
}

/// The bridge's fenced script alone (the store's batches, 4 096 entries per round trip), from
/// this process: what Redis takes through the Lua path, without socket, library or buffer.
fn run_script(con: &mut redis::Connection, events: u64) -> f64 {
    use genesys_bridge::entry::ShardKeys;
    use genesys_bridge::store::{self, Chunk};
    let now = SystemTime::now();
    let fences: Vec<u64> = (0..SHARDS)
        .map(|s| {
            let keys = ShardKeys::new("script", s);
            let _: () = redis::cmd("DEL").arg(&keys.lease).query(con).unwrap();
            store::acquire(con, &keys, "bench", 600_000)
                .unwrap()
                .unwrap()
                .fence
        })
        .collect();
    let records: Vec<(u32, Record)> = (0..events)
        .map(|seq| {
            let t = topic(seq as usize % TOPICS);
            (
                shard_of(&t, SHARDS),
                Record::Event {
                    topic: t,
                    body: body(seq % 1000),
                    correlation_id: Some("9a1b2c3d-0000-4000-8000-000000000000".into()),
                    snapshot: false,
                    received_at: now,
                },
            )
        })
        .collect();
    let start = Instant::now();
    for batch in records.chunks(4096) {
        let mut by_shard: std::collections::BTreeMap<u32, Vec<&Record>> = Default::default();
        for (shard, record) in batch {
            by_shard.entry(*shard).or_default().push(record);
        }
        let chunks: Vec<Chunk<'_>> = by_shard
            .into_iter()
            .map(|(shard, records)| Chunk {
                shard,
                fence: fences[shard as usize],
                records,
            })
            .collect();
        store::write_batch(con, "script", "bench", 100_000, &chunks).unwrap();
    }
    events as f64 / start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (events, reps) = if quick { (20_000, 1) } else { (200_000, 5) };
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("bridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _redis = Killed(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = loop {
        if let Ok(c) = client.get_connection() {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let generator = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let emu = Emulator::start_with(
        EmulatorConfig::default()
            .connect_uri_base(format!("ws://{}", generator.local_addr().unwrap())),
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<String> = vec![
        "--redis".into(),
        url.clone(),
        "--shards".into(),
        SHARDS.to_string(),
        "--http".into(),
        http.clone(),
        "--no-snapshots".into(),
        "--maxlen".into(),
        "100000".into(),
    ];
    args.extend((0..TOPICS).map(topic));
    let bridge = Killed(
        Command::new(env!("CARGO_BIN_EXE_genesys-bridge"))
            .env_clear()
            .env("GENESYS_API_BASE", emu.api_base())
            .env("GENESYS_LOGIN_BASE", emu.login_base())
            .env("GENESYS_CLIENT_ID", emu.client_id())
            .env("GENESYS_CLIENT_SECRET", emu.client_secret())
            .args(&args)
            .stderr(Stdio::null())
            .spawn()
            .expect("genesys-bridge"),
    );
    let pid = bridge.0.id();
    // The bridge's one channel connects its socket to the generator.
    let (stream, _) = generator
        .accept()
        .expect("the bridge connects to the generator");
    stream.set_nodelay(true).unwrap();
    let mut socket = tungstenite::accept(stream).expect("WebSocket handshake");
    let deadline = Instant::now() + Duration::from_secs(60);
    while emu.channels().iter().map(|c| c.topics.len()).sum::<usize>() < TOPICS {
        assert!(Instant::now() < deadline, "the bridge did not subscribe");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Warm up both sides.
    run_bridge(&mut socket, &http, pid, events / 10);
    run_raw(&mut con, events / 10);
    let (mut ratios, mut bridge_rates, mut raw_rates, mut cpus) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        let raw = run_raw(&mut con, events);
        let script = run_script(&mut con, events);
        println!(
            "rep {rep}: the fenced script alone {script:.0} entries/s ({:.2} of raw XADD)",
            script / raw
        );
        let (rate, cpu_per_event) = run_bridge(&mut socket, &http, pid, events);
        println!(
            "rep {rep}: bridge {rate:.0} events/s, raw XADD {raw:.0} entries/s, ratio {:.2}, bridge CPU {:.1} µs/event",
            rate / raw,
            cpu_per_event.as_secs_f64() * 1e6
        );
        ratios.push(rate / raw);
        bridge_rates.push(rate);
        raw_rates.push(raw);
        cpus.push(cpu_per_event.as_secs_f64() * 1e6);
    }
    println!(
        "median of {reps}: bridge {:.0} events/s, raw XADD {:.0} entries/s, ratio {:.2} (goal >= 0.80), bridge CPU {:.1} µs/event",
        median(&mut bridge_rates),
        median(&mut raw_rates),
        median(&mut ratios),
        median(&mut cpus)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
