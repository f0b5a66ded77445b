//! throughput.rs measures genesys-bridge from socket to stream against plain pipelined `XADD`
//! of the same entries, in the same run, on the same throwaway `redis-server` (machines are
//! shared and noisy: only the ratio means something).
//!
//! Processes: `redis-server`; the bridge (the built `genesys-bridge`, release, 64 shards, 100
//! topics); the load generator, this executable again with `--generator`, a WebSocket server
//! on loopback that the bridge's channel connects to (the emulator in this process serves the
//! token, the channel and the subscriptions, with `connectUri` pointing at the generator) and
//! that writes small presence notifications, pre-encoded, as fast as the socket takes them
//! when told how many; and this process, which drives the repetitions and is the baseline's
//! client.
//!
//! Each repetition is a pair, measured back to back: first the baseline, then the bridge, with
//! the same number of events; the figure is the median of the per-repetition ratios.
//! - Baseline: the same entries (the bridge's own field encoding, the `fence` field included),
//!   written with plain `XADD <key> MAXLEN ~ 100000 * ...` commands, pipelined 1 024 per round
//!   trip over the 64 streams, from one connection; no Lua, no lease, no socket, no buffer.
//! - Bridge: events from the generator's first frame until Redis acknowledged the last
//!   (`genesys_bridge_entries_written_total` from `/metrics`, polled every 100 ms). CPU per
//!   event: the bridge process's user + system time (`/proc/<pid>/stat`) over the run, divided
//!   by the events.
//! - For reference, after each pair: the bridge's fenced script alone (the store's batches of
//!   4 096 entries from this process, no socket, library or buffer).
//!
//! The streams written are deleted after each run (outside the timing), so that memory stays
//! small and every run starts from the same state.
//!
//! Run: `cargo bench -p genesys-bridge --bench throughput` (about two minutes: 5 pairs of 600 000
//! events), `-- --quick` for a smoke run (1 pair of 50 000). Needs `redis-server` on the PATH.

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

fn metric(addr: &str, name: &str) -> u64 {
    http_get(addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn written(addr: &str) -> u64 {
    metric(addr, "genesys_bridge_entries_written_total")
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

/// Distinct frames the generator cycles through.
const FRAMES: usize = 4096;

/// The generator process: accepts the bridge's socket on a loopback port (printed as
/// `port <n>`), then for each line `<n>` read on stdin writes `n` frames and answers `sent <n>`.
/// Between bursts it reads the socket, so that the library's pings are answered (a silent
/// socket is replaced), and it takes a new connection if the bridge makes one.
fn generator() {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("port {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    listener.set_nonblocking(true).unwrap();
    let frames: Vec<String> = (0..FRAMES as u64)
        .map(|seq| {
            format!(
                r#"{{"topicName":"{}","version":"2","eventBody":{},"metadata":{{"CorrelationId":"9a1b2c3d-0000-4000-8000-{seq:012x}"}}}}"#,
                topic(seq as usize % TOPICS),
                body(seq % 1000)
            )
        })
        .collect();
    let (commands, asked) = std::sync::mpsc::channel::<usize>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line.unwrap_or_default().trim().parse::<usize>() {
                Ok(n) => commands.send(n).unwrap(),
                Err(_) => break,
            }
        }
    });
    let mut socket: Option<tungstenite::WebSocket<std::net::TcpStream>> = None;
    let mut next = 0;
    loop {
        if let Ok((stream, _)) = listener.accept() {
            stream.set_nonblocking(false).unwrap();
            stream.set_nodelay(true).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            socket = tungstenite::accept(stream).ok();
        }
        match asked.recv_timeout(Duration::from_millis(20)) {
            Ok(n) => {
                let ws = socket.as_mut().expect("the bridge is connected");
                for i in 0..n {
                    ws.write(tungstenite::Message::text(frames[next].as_str()))
                        .expect("write a frame");
                    next = (next + 1) % FRAMES;
                    if i % 256 == 255 {
                        ws.flush().expect("flush");
                    }
                }
                ws.flush().expect("flush");
                println!("sent {n}");
                std::io::stdout().flush().unwrap();
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Pings are answered by reading (the pong goes out with the flush).
                if let Some(ws) = socket.as_mut() {
                    let _ = ws.read();
                    let _ = ws.flush();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The generator, seen from the bench.
struct Generator {
    child: Killed,
    port: u16,
    answers: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Generator {
    fn start() -> Generator {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--generator")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the generator starts");
        let mut answers = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port = answers
            .next()
            .and_then(|l| l.ok())
            .and_then(|l| l.strip_prefix("port ").and_then(|p| p.parse().ok()))
            .expect("the generator's port");
        Generator {
            child: Killed(child),
            port,
            answers,
        }
    }

    /// Asks for `n` frames (they are written while the caller waits on Redis).
    fn send(&mut self, n: u64) {
        let stdin = self.child.0.stdin.as_mut().unwrap();
        writeln!(stdin, "{n}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits until the frames asked for are written.
    fn sent(&mut self) {
        let answer = self.answers.next().and_then(|l| l.ok()).unwrap_or_default();
        assert!(
            answer.starts_with("sent "),
            "the generator answered {answer:?}"
        );
    }
}

/// The bridge: the generator writes `events` frames; waits until Redis acknowledged them.
fn run_bridge(generator: &mut Generator, http: &str, pid: u32, events: u64) -> (f64, Duration) {
    let before = written(http);
    let cpu_before = cpu(pid);
    let start = Instant::now();
    generator.send(events);
    let deadline = Instant::now() + Duration::from_secs(600);
    while written(http) < before + events {
        assert!(
            Instant::now() < deadline,
            "the bridge did not write every event"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = start.elapsed();
    let cpu_used = cpu(pid).saturating_sub(cpu_before);
    generator.sent();
    assert_eq!(
        metric(http, "genesys_bridge_dropped_total"),
        0,
        "the bridge dropped events: the run is not valid"
    );
    (
        events as f64 / elapsed.as_secs_f64(),
        cpu_used / events as u32,
    )
}

/// Deletes the streams of `prefix` (outside the timing).
fn delete_streams(con: &mut redis::Connection, prefix: &str) {
    for shard in 0..SHARDS {
        let _: () = redis::cmd("DEL")
            .arg(format!("{prefix}:{{shard-{shard}}}:events"))
            .query(con)
            .unwrap();
    }
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
    if std::env::args().any(|a| a == "--generator") {
        generator();
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let (events, reps) = if quick { (50_000, 1) } else { (600_000, 5) };
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
    let mut generator = Generator::start();
    let emu = Emulator::start_with(
        EmulatorConfig::default().connect_uri_base(format!("ws://127.0.0.1:{}", generator.port)),
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
        // The generator writes faster than Redis takes entries: the whole burst must fit, or
        // the run would measure drops.
        "--buffer-bytes".into(),
        (2u64 << 30).to_string(),
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while emu.channels().iter().map(|c| c.topics.len()).sum::<usize>() < TOPICS {
        assert!(Instant::now() < deadline, "the bridge did not subscribe");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Warm up both sides.
    run_bridge(&mut generator, &http, pid, events / 10);
    run_raw(&mut con, events / 10);
    delete_streams(&mut con, "genesys");
    delete_streams(&mut con, "raw");
    let (mut ratios, mut bridge_rates, mut raw_rates, mut cpus) = (vec![], vec![], vec![], vec![]);
    for rep in 0..reps {
        let raw = run_raw(&mut con, events);
        delete_streams(&mut con, "raw");
        let (rate, cpu_per_event) = run_bridge(&mut generator, &http, pid, events);
        delete_streams(&mut con, "genesys");
        println!(
            "rep {rep}: raw XADD {raw:.0} entries/s, then bridge {rate:.0} events/s: ratio {:.2}, bridge CPU {:.2} µs/event",
            rate / raw,
            cpu_per_event.as_secs_f64() * 1e6
        );
        let script = run_script(&mut con, events);
        delete_streams(&mut con, "script");
        println!(
            "rep {rep}: (reference) the fenced script alone {script:.0} entries/s ({:.2} of this pair's raw XADD)",
            script / raw
        );
        ratios.push(rate / raw);
        bridge_rates.push(rate);
        raw_rates.push(raw);
        cpus.push(cpu_per_event.as_secs_f64() * 1e6);
    }
    let per_rep: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "median of {reps} pairs of {events} events: ratio {:.2} (goal >= 0.80; per pair: {}), bridge {:.0} events/s, raw XADD {:.0} entries/s, bridge CPU {:.2} µs/event",
        median(&mut ratios),
        per_rep.join(", "),
        median(&mut bridge_rates),
        median(&mut raw_rates),
        median(&mut cpus)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
