//! load_process is the out-of-process load bench of issue #20: the load generator runs in a
//! process of its own, and each run's client (the raw baseline or the library) in a fresh
//! process of its own, so that the measured process holds the client and nothing else; it
//! prints every figure with its ratio to the raw baseline of the same run.
//!
//! Three roles, one binary (this bench runs itself again):
//! - the orchestrator (no argument): starts the generator, then for each run a consumer, and
//!   relays "ready" to "go"; it kills every child it started on every path (a guard's `Drop`),
//!   and the children stop by themselves when their stdin closes;
//! - the generator (`--generator`, generator.rs): the emulator's REST side (token, channels,
//!   subscriptions) with `connectUri`s pointing at its own WebSocket server on 127.0.0.1, which
//!   writes the frames of `benches/load.rs` (100 topics; ~400-byte presence or ~7 KB
//!   conversation bodies, each stamped with topic, sequence and send time);
//! - a consumer (`--consume=kind,size,total,rate`): the raw baseline (tungstenite blocking
//!   read, envelope parse with `eventBody` kept raw, one bounded crossbeam channel of 1 024 to
//!   one consumer thread) or the library (`Client` with one `on` callback, 1 channel), the same
//!   callback for both (read the stamped fields, record send-to-callback latency, check the
//!   per-topic sequence). It prints its process's CPU time over the run (`/proc/self/stat`,
//!   utime + stime: every thread, the bench's own waiting included, which is the same on both
//!   sides) and its peak RSS (VmHWM: the whole fresh process).
//!
//! Figures, medians of 5 runs, each kind's figure divided by the baseline's of the same
//! repetition (paired ratios; the runs of one repetition follow each other):
//! throughput (events/s from the first event's send to the last event's callback), CPU per
//! event, p99 latency at 10 000 events/s, peak RSS. `--only=clients` (or the full run) adds
//! 100 and 1 000 clients of one topic each in one process: each N once with threads of their
//! own, then once built with one shared `ThreadPool` (`--pool-threads=N`, default 2; its
//! threads are started before the count, so the figures are per additional client; `--clients-pool=off`
//! leaves that line out).
//!
//! Run: `cargo bench --features emulator --bench load_process` (about 5 minutes on 2 cores), or
//! with `GENESYS_BENCH_QUICK=1` (or `-- --quick`) for a smoke run. Options: `--reps=N`,
//! `--only=throughput,latency,clients`, `--sizes=small`, `--kinds=baseline,library1,library2,default`,
//! `--events=N` (small; large gets N/5), `--clients=100,1000`, `--queue-bytes=N` and
//! `--queue-events=N` (the library's `queue_capacity_bytes` and `queue_capacity`);
//! `GENESYS_BENCH_WRAP` runs each consumer under a profiler (`valgrind --tool=callgrind
//! --separate-threads=yes`); `GENESYS_BENCH_SMAPS=<dir>` saves each consumer's
//! `/proc/self/smaps` there (where its resident memory is).

mod frames;
mod generator;

use crossbeam_channel::{bounded, Receiver, Sender};
use frames::{now_ns, Sink, Size, TOPICS};
use genesys_notify::{ChannelState, Client, Event, ListenerGuard, ThreadPool};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The documented memory cost of one connected channel (README, "Performance"), which the
/// peak-RSS target allows the library above 1.3x the baseline's.
const CHANNEL_COST_KIB: f64 = 160.0;

/// `--name=value` from the command line.
fn arg_value(name: &str) -> Option<String> {
    std::env::args().find_map(|a| {
        a.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// `key=value` from a line of words.
fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// With `GENESYS_BENCH_SMAPS=<dir>`, copies this process's `/proc/self/smaps` to
/// `<dir>/<label>.<pid>.smaps` (where the resident bytes are, mapping by mapping: code,
/// heap, thread stacks, malloc arenas).
fn dump_smaps(label: &str) {
    if let Ok(dir) = std::env::var("GENESYS_BENCH_SMAPS") {
        let path = format!("{dir}/{label}.{}.smaps", std::process::id());
        // Read and written, not `fs::copy`: procfs files cannot be copied by the kernel.
        if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
            let _ = std::fs::write(path, smaps);
        }
        // Each thread's name and its stack pointer in the system call it waits in (the
        // `syscall` file's second to last field): which stack mapping is whose.
        let mut tasks = String::new();
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
            let syscall = read("syscall");
            let fields: Vec<&str> = syscall.split_whitespace().collect();
            let sp = fields.len().checked_sub(2).map_or("", |i| fields[i]);
            tasks.push_str(&format!("{} {}\n", read("comm").trim(), sp));
        }
        let _ = std::fs::write(format!("{dir}/{label}.{}.tasks", std::process::id()), tasks);
    }
}

/// CPU time of this process, every thread (dead ones too), nanoseconds: utime + stime of
/// `/proc/self/stat`, in clock ticks of 10 ms (USER_HZ 100 on Linux).
fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks * 10_000_000
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// Kinds of consumer

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Baseline,
    /// The library with this many dispatcher threads.
    Library(usize),
    /// The library with `Config::default()`.
    Default,
}

impl Kind {
    fn arg(self) -> String {
        match self {
            Kind::Baseline => "baseline".into(),
            Kind::Library(n) => format!("library{n}"),
            Kind::Default => "default".into(),
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "baseline" => Some(Kind::Baseline),
            "default" => Some(Kind::Default),
            _ => s.strip_prefix("library")?.parse().ok().map(Kind::Library),
        }
    }
}

fn kinds() -> Vec<Kind> {
    let list = arg_value("--kinds").unwrap_or_else(|| "baseline,library1,library2,default".into());
    let mut kinds: Vec<Kind> = list.split(',').filter_map(Kind::parse).collect();
    // Every ratio is to the baseline of the same repetition, run first.
    kinds.retain(|k| *k != Kind::Baseline);
    kinds.insert(0, Kind::Baseline);
    kinds
}

// ---------------------------------------------------------------------------------------------
// The consumer process

/// Where the library's REST calls go (the generator process's emulator).
struct Service {
    api: String,
    login: String,
    id: String,
    secret: String,
}

impl Service {
    fn from_args(suffix: &str) -> Service {
        let get = |k: &str| arg_value(&format!("--{k}{suffix}")).expect("service argument");
        Service {
            api: get("api"),
            login: get("login"),
            id: get("id"),
            secret: get("secret"),
        }
    }

    fn builder(&self) -> genesys_notify::ClientBuilder {
        Client::builder()
            .api_base(&self.api)
            .login_base(&self.login)
            .client_credentials(&self.id, &self.secret)
    }
}

/// Ends this child process when the orchestrator closes its stdin (it ended, however it ended)
/// or after `limit`, so that no consumer outlives a run.
fn watch_parent(limit: Duration) {
    std::thread::spawn(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
        std::process::exit(3);
    });
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        std::process::exit(4);
    });
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "topicName", borrow)]
    topic: &'a str,
    #[serde(rename = "eventBody", borrow)]
    body: &'a RawValue,
}

type Queued = (tungstenite::Utf8Bytes, Range<usize>, Range<usize>);

/// The raw baseline: a reader thread (tungstenite blocking read, envelope parse with the body
/// kept raw) feeding one bounded channel read by one consumer thread.
struct Baseline {
    interrupt: TcpStream,
    threads: Vec<JoinHandle<()>>,
}

impl Baseline {
    fn start(generator: &str, sink: Arc<Sink>) -> Baseline {
        let (tx, rx): (Sender<Queued>, Receiver<Queued>) = bounded(1024);
        let consumer = {
            let sink = sink.clone();
            std::thread::Builder::new()
                .name("base-consumer".into())
                .spawn(move || {
                    for (frame, _topic, body) in rx {
                        sink.on_event(&frame[body]);
                    }
                })
                .unwrap()
        };
        let addr = generator.trim_start_matches("ws://");
        let tcp = TcpStream::connect(addr).expect("connect to the generator");
        tcp.set_nodelay(true).unwrap();
        let interrupt = tcp.try_clone().unwrap();
        let (mut ws, _) = tungstenite::client(format!("{generator}/channels/baseline"), tcp)
            .expect("baseline handshake");
        let reader = std::thread::Builder::new()
            .name("base-reader".into())
            .spawn(move || {
                while let Ok(message) = ws.read() {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(envelope) = serde_json::from_str::<Envelope<'_>>(&text) else {
                        continue;
                    };
                    if envelope.topic == "channel.metadata" {
                        continue;
                    }
                    let base = text.as_ptr() as usize;
                    let t = envelope.topic.as_ptr() as usize - base;
                    let b = envelope.body.get().as_ptr() as usize - base;
                    let ranges = (
                        t..t + envelope.topic.len(),
                        b..b + envelope.body.get().len(),
                    );
                    if tx.send((text, ranges.0, ranges.1)).is_err() {
                        return;
                    }
                }
            })
            .unwrap();
        Baseline {
            interrupt,
            threads: vec![consumer, reader],
        }
    }

    fn stop(self) {
        let _ = self.interrupt.shutdown(Shutdown::Both);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Waits until every channel of `client` has its socket connected.
fn wait_connected(client: &Client, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        let health = client.health();
        let channels = health.channels();
        if !channels.is_empty() && channels.iter().all(|c| c.state == ChannelState::Connected) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// `--consume=kind,size,total,rate`: one run in this fresh process.
fn consume(spec: &str) {
    watch_parent(Duration::from_secs(120));
    let parts: Vec<&str> = spec.split(',').collect();
    let kind = Kind::parse(parts[0]).expect("a known kind");
    let size = Size::parse(parts[1]);
    let total: u64 = parts[2].parse().expect("an event count");
    let rate: u64 = parts[3].parse().expect("a rate");
    let generator = arg_value("--ws").expect("--ws");
    let sink = Sink::new(total, rate > 0);
    enum Running {
        Baseline(Baseline),
        Library(Client, ListenerGuard),
    }
    let running = match kind {
        Kind::Baseline => Running::Baseline(Baseline::start(&generator, sink.clone())),
        Kind::Library(_) | Kind::Default => {
            let mut builder = Service::from_args("").builder();
            if let Kind::Library(n) = kind {
                builder = builder.dispatcher_threads(n);
            }
            if let Some(events) = arg_value("--queue-events").and_then(|n| n.parse().ok()) {
                builder = builder.queue_capacity(events);
            }
            if let Some(bytes) = arg_value("--queue-bytes").and_then(|b| b.parse().ok()) {
                builder = builder.queue_capacity_bytes(bytes);
            }
            let client = builder.build().expect("client builds");
            let guard = client
                .on(size.pattern(), {
                    let sink = sink.clone();
                    move |event: &Event| sink.on_event(event.body_json())
                })
                .expect("listener");
            let topics: Vec<String> = (0..TOPICS).map(|t| size.topic(t)).collect();
            let report = client.subscribe(&topics).expect("subscribe");
            assert!(report.rejected.is_empty(), "topics rejected");
            assert!(
                wait_connected(&client, Duration::from_secs(10)),
                "the channel connects"
            );
            Running::Library(client, guard)
        }
    };
    let threads = thread_count();
    let cpu_before = process_cpu_ns();
    println!("ready threads={threads}");
    let _ = std::io::stdout().flush();
    sink.wait_all(total, Duration::from_secs(3));
    let cpu = process_cpu_ns().saturating_sub(cpu_before);
    let received = sink.received();
    let p = |q| {
        sink.latency
            .as_ref()
            .map_or(0.0, |h| h.percentile(q) as f64 / 1e3)
    };
    let result = format!(
        "result received={received} eps={:.0} cpu_ns_per_event={:.1} p50_us={:.1} p99_us={:.1} p999_us={:.1} peak_kib={} out_of_order={}",
        received as f64 / (sink.elapsed_ns() as f64 / 1e9),
        cpu as f64 / received.max(1) as f64,
        p(50.0),
        p(99.0),
        p(99.9),
        status_kib("VmHWM:"),
        sink.out_of_order(),
    );
    // Before the result line: the orchestrator may end this process as soon as it has read it.
    dump_smaps(&spec.replace(',', "-"));
    println!("{result}");
    let _ = std::io::stdout().flush();
    match running {
        Running::Baseline(b) => b.stop(),
        Running::Library(client, guard) => {
            let _ = client.shutdown(Duration::from_secs(10));
            drop(guard);
        }
    }
    std::process::exit(0);
}

/// `--clients=N`: N clients of one topic each (default settings), built, subscribed and
/// connected, one event delivered to each (published by the orchestrator's `publish` once this
/// prints `ready`), then shut down.
fn many_clients(n: usize) {
    watch_parent(Duration::from_secs(300));
    let service = Service::from_args("2");
    let received = Arc::new(AtomicU64::new(0));
    // `--pool-threads=N`: every client built with one shared pool, started before the counts
    // below, so that they are per additional client.
    let pool = arg_value("--pool-threads")
        .map(|t| ThreadPool::new(t.parse().expect("a thread count")).expect("the pool starts"));
    let threads0 = thread_count();
    let rss0 = status_kib("VmRSS:");
    dump_smaps(&format!("clients-{n}-before"));
    let started = Instant::now();
    // Built by 4 threads at once, as a server starting its tenants would.
    let workers = 4;
    let clients: Vec<(Client, ListenerGuard)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let service = &service;
                let received = received.clone();
                let pool = pool.as_ref();
                scope.spawn(move || {
                    (w..n)
                        .step_by(workers)
                        .map(|i| {
                            let builder = match pool {
                                Some(pool) => service.builder().thread_pool(pool),
                                None => service.builder(),
                            };
                            let client = builder.build().expect("client builds");
                            let received = received.clone();
                            let topic = format!("v2.users.{}.presence", frames::user_id(i));
                            let guard = client
                                .on(&topic, move |_: &Event| {
                                    received.fetch_add(1, Ordering::Relaxed);
                                })
                                .expect("listener");
                            let report = client.subscribe([&topic]).expect("subscribe");
                            assert!(report.rejected.is_empty(), "topic rejected");
                            (client, guard)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("builder thread"))
            .collect()
    });
    let built = started.elapsed();
    let connected = clients
        .iter()
        .all(|(c, _)| wait_connected(c, Duration::from_secs(30)));
    let ready = started.elapsed();
    let threads = thread_count() - threads0;
    let rss = status_kib("VmRSS:").saturating_sub(rss0);
    dump_smaps(&format!("clients-{n}"));
    println!("ready connected={connected}");
    let _ = std::io::stdout().flush();
    let deliver_started = Instant::now();
    while received.load(Ordering::Relaxed) < n as u64 && deliver_started.elapsed().as_secs() < 30 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let delivered = started.elapsed();
    let shutdown_started = Instant::now();
    std::thread::scope(|scope| {
        let mut shares: Vec<Vec<(Client, ListenerGuard)>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (i, c) in clients.into_iter().enumerate() {
            shares[i % workers].push(c);
        }
        for share in shares {
            scope.spawn(move || {
                for (client, guard) in share {
                    let _ = client.shutdown(Duration::from_secs(10));
                    drop(guard);
                }
            });
        }
    });
    let shutdown = shutdown_started.elapsed();
    println!(
        "result received={} build_ms={:.0} connected_ms={:.0} delivered_ms={:.0} shutdown_ms={:.0} total_ms={:.0} threads_per_client={:.2} kib_per_client={:.0} peak_kib={}",
        received.load(Ordering::Relaxed),
        built.as_secs_f64() * 1e3,
        ready.as_secs_f64() * 1e3,
        delivered.as_secs_f64() * 1e3,
        shutdown.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3,
        threads as f64 / n as f64,
        rss as f64 / n as f64,
        status_kib("VmHWM:"),
    );
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------------
// The orchestrator

/// A child process of this bench, killed and reaped on drop (every path, panics included).
struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl ChildProcess {
    fn spawn(args: &[String]) -> ChildProcess {
        let exe = std::env::current_exe().expect("this bench's path");
        // Profiling one consumer: `GENESYS_BENCH_WRAP="valgrind --tool=callgrind"` runs each
        // consumer process (and the many-clients process) under that command (never the
        // generator).
        let wrap: Vec<String> = std::env::var("GENESYS_BENCH_WRAP")
            .ok()
            .filter(|_| {
                args.iter()
                    .any(|a| a.starts_with("--consume") || a.starts_with("--clients"))
            })
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut command = match wrap.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a bench process");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        ChildProcess {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    fn send(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// The next line starting with `prefix`, within `limit`.
    fn expect(&self, prefix: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
    }

    /// Waits for the child to exit by itself, at most `limit` (then the drop kills it).
    fn finish(mut self, limit: Duration) {
        self.stdin = None;
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Orchestra {
    generator: ChildProcess,
    /// The generator's announcement: `ws=… api=… login=… id=… secret=… api2=…`.
    service: String,
}

impl Orchestra {
    fn service_args(&self) -> Vec<String> {
        [
            "ws", "api", "login", "id", "secret", "api2", "login2", "id2", "secret2",
        ]
        .iter()
        .map(|k| format!("--{k}={}", field(&self.service, k).unwrap_or_default()))
        .collect()
    }

    /// One run of `kind` in a fresh process; `None` if it failed (reported).
    fn run(&mut self, kind: Kind, size: Size, total: u64, rate: u64) -> Option<RunResult> {
        let mut args = vec![format!(
            "--consume={},{},{total},{rate}",
            kind.arg(),
            size.short()
        )];
        args.extend(self.service_args());
        args.extend(arg_value("--queue-bytes").map(|b| format!("--queue-bytes={b}")));
        args.extend(arg_value("--queue-events").map(|n| format!("--queue-events={n}")));
        let consumer = ChildProcess::spawn(&args);
        if consumer.expect("ready", Duration::from_secs(60)).is_none() {
            println!(
                "  !! {} {}: the consumer never got ready",
                kind.arg(),
                size.short()
            );
            return None;
        }
        self.generator
            .send(&format!("go {} {total} {rate} 1", size.short()));
        let sent = self.generator.expect("sent", Duration::from_secs(120));
        let result = consumer.expect("result", Duration::from_secs(60));
        consumer.finish(Duration::from_secs(15));
        let (Some(sent), Some(line)) = (sent, result) else {
            println!("  !! {} {}: no result", kind.arg(), size.short());
            return None;
        };
        let num = |k: &str| {
            field(&line, k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let r = RunResult {
            events_per_s: num("eps"),
            cpu_ns_per_event: num("cpu_ns_per_event"),
            p50_us: num("p50_us"),
            p99_us: num("p99_us"),
            p999_us: num("p999_us"),
            peak_kib: num("peak_kib"),
            lost: total as f64 - num("received"),
            out_of_order: num("out_of_order"),
        };
        let sent: f64 = sent.trim_start_matches("sent ").parse().unwrap_or(0.0);
        if r.lost > 0.0 || r.out_of_order > 0.0 || sent < total as f64 {
            println!(
                "  !! {} {} rate {rate}: {} lost, {} out of order, {sent} sent",
                kind.arg(),
                size.short(),
                r.lost,
                r.out_of_order
            );
            INTEGRITY.fetch_add(1, Ordering::Relaxed);
        }
        Some(r)
    }
}

static INTEGRITY: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, Default)]
struct RunResult {
    events_per_s: f64,
    cpu_ns_per_event: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    peak_kib: f64,
    lost: f64,
    out_of_order: f64,
}

/// Every kind `reps` times, interleaved (the baseline first in each repetition).
fn runs(
    o: &mut Orchestra,
    kinds: &[Kind],
    size: Size,
    total: u64,
    rate: u64,
    reps: usize,
) -> Vec<Vec<Option<RunResult>>> {
    let mut results = vec![Vec::new(); kinds.len()];
    for _ in 0..reps {
        for (k, kind) in kinds.iter().enumerate() {
            results[k].push(o.run(*kind, size, total, rate));
        }
    }
    results
}

fn medians(results: &[Vec<Option<RunResult>>], f: fn(&RunResult) -> f64) -> Vec<f64> {
    results
        .iter()
        .map(|rs| median(rs.iter().flatten().map(f).collect()))
        .collect()
}

/// Per kind, the median over the repetitions of its figure over the baseline's of the same
/// repetition.
fn paired(results: &[Vec<Option<RunResult>>], f: fn(&RunResult) -> f64) -> Vec<f64> {
    let base = &results[0];
    results
        .iter()
        .map(|rs| {
            median(
                rs.iter()
                    .zip(base)
                    .filter_map(|(r, b)| Some((r.as_ref()?, b.as_ref()?)))
                    .filter(|(_, b)| f(b) > 0.0)
                    .map(|(r, b)| f(r) / f(b))
                    .collect(),
            )
        })
        .collect()
}

fn header(kinds: &[Kind], first: &str) {
    let mut line = format!("{first:<30}");
    for (k, kind) in kinds.iter().enumerate() {
        line.push_str(&format!(" {:>10}", kind.arg()));
        if k > 0 {
            line.push_str(&format!(" {:>7}", "paired"));
        }
    }
    println!("{line}");
}

fn row(label: &str, medians: &[f64], paired: &[f64], decimals: usize) {
    let mut line = format!("{label:<30}");
    for (k, v) in medians.iter().enumerate() {
        line.push_str(&format!(" {:>10.*}", decimals, v));
        if k > 0 {
            line.push_str(&format!(" {:>6.2}x", paired[k]));
        }
    }
    println!("{line}");
}

struct Mode {
    reps: usize,
    events: [u64; 2],
    rate_seconds: f64,
    clients: Vec<usize>,
}

fn section(name: &str) -> bool {
    arg_value("--only").is_none_or(|only| only.split(',').any(|s| s == name))
}

fn sizes() -> Vec<Size> {
    [Size::Small, Size::Large]
        .into_iter()
        .filter(|s| arg_value("--sizes").is_none_or(|l| l.contains(s.short())))
        .collect()
}

fn throughput(o: &mut Orchestra, mode: &Mode, kinds: &[Kind]) {
    println!(
        "\n## Throughput, 1 channel, 100 topics, as fast as the client reads (medians of {}; paired ratios to the baseline)",
        mode.reps
    );
    println!("   CPU: the consumer process's CPU time (/proc/self/stat) per event; peak RSS: its VmHWM (a fresh process per run)");
    for size in sizes() {
        let total = mode.events[usize::from(size == Size::Large)];
        let results = runs(o, kinds, size, total, 0, mode.reps);
        header(kinds, &format!("{} ({total} events)", size.short()));
        let eps = |r: &RunResult| r.events_per_s;
        let cpu = |r: &RunResult| r.cpu_ns_per_event / 1e3;
        let rss = |r: &RunResult| r.peak_kib / 1024.0;
        row(
            "  events/s",
            &medians(&results, eps),
            &paired(&results, eps),
            0,
        );
        row(
            "  CPU per event (µs)",
            &medians(&results, cpu),
            &paired(&results, cpu),
            3,
        );
        let peak = medians(&results, rss);
        row("  peak RSS (MiB)", &peak, &paired(&results, rss), 2);
        let cells: Vec<String> = kinds
            .iter()
            .zip(&peak)
            .skip(1)
            .map(|(k, p)| {
                format!(
                    "{} {:.2}x",
                    k.arg(),
                    (p - CHANNEL_COST_KIB / 1024.0) / peak[0]
                )
            })
            .collect();
        println!(
            "  target peak RSS <= 1.3x baseline + {CHANNEL_COST_KIB:.0} KiB per channel; (peak - {CHANNEL_COST_KIB:.0} KiB) / baseline's, medians: {}",
            cells.join(", ")
        );
    }
}

fn latency(o: &mut Orchestra, mode: &Mode, kinds: &[Kind]) {
    println!(
        "\n## Latency at 10 000 events/s, send -> callback start, µs (medians of {}; paired ratios)",
        mode.reps
    );
    for size in sizes() {
        let total = (10_000.0 * mode.rate_seconds) as u64;
        let results = runs(o, kinds, size, total, 10_000, mode.reps);
        header(kinds, &format!("{} ({total} events)", size.short()));
        let p50 = |r: &RunResult| r.p50_us;
        let p99 = |r: &RunResult| r.p99_us;
        let p999 = |r: &RunResult| r.p999_us;
        let cpu = |r: &RunResult| r.cpu_ns_per_event / 1e3;
        row("  p50", &medians(&results, p50), &paired(&results, p50), 0);
        row("  p99", &medians(&results, p99), &paired(&results, p99), 0);
        row(
            "  p99.9",
            &medians(&results, p999),
            &paired(&results, p999),
            0,
        );
        row(
            "  CPU per event (µs)",
            &medians(&results, cpu),
            &paired(&results, cpu),
            3,
        );
    }
}

fn clients(o: &mut Orchestra, mode: &Mode) {
    println!("\n## Many clients in one process: N clients of one topic each, default settings (one run each)");
    let pool_threads = arg_value("--pool-threads").unwrap_or_else(|| "2".into());
    let pooled = arg_value("--clients-pool").is_none_or(|v| v != "off");
    let runs = mode.clients.iter().flat_map(|&n| {
        let alone = (n, None);
        let shared = pooled.then(|| (n, Some(pool_threads.clone())));
        std::iter::once(alone).chain(shared)
    });
    for (n, pool) in runs.collect::<Vec<_>>() {
        let mut args = vec![format!("--clients={n}")];
        let label = match &pool {
            Some(threads) => {
                args.push(format!("--pool-threads={threads}"));
                format!("N={n} pooled ({threads} pool threads + timer, not counted)")
            }
            None => format!("N={n}"),
        };
        args.extend(o.service_args());
        let consumer = ChildProcess::spawn(&args);
        let Some(ready) = consumer.expect("ready", Duration::from_secs(120)) else {
            println!("  {label}: never ready");
            continue;
        };
        o.generator.send(&format!("publish {n}"));
        let published = o.generator.expect("published", Duration::from_secs(60));
        let result = consumer.expect("result", Duration::from_secs(120));
        consumer.finish(Duration::from_secs(30));
        println!(
            "  {label}: {} | {} | {}",
            ready,
            published.unwrap_or_default(),
            result.unwrap_or_else(|| "no result".into())
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--generator") {
        generator::main();
        return;
    }
    if let Some(spec) = arg_value("--consume") {
        consume(&spec);
        return;
    }
    if let Some(n) = arg_value("--clients").filter(|_| arg_value("--ws").is_some()) {
        many_clients(n.parse().expect("a client count"));
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("GENESYS_BENCH_QUICK").is_some_and(|v| v != "0" && !v.is_empty());
    let mut mode = if quick {
        Mode {
            reps: 1,
            events: [100_000, 20_000],
            rate_seconds: 0.5,
            clients: vec![100],
        }
    } else {
        Mode {
            reps: 5,
            events: [600_000, 100_000],
            rate_seconds: 2.0,
            clients: vec![100, 1000],
        }
    };
    if let Some(n) = arg_value("--events").and_then(|n| n.parse().ok()) {
        mode.events = [n, n / 5];
    }
    if let Some(n) = arg_value("--reps").and_then(|n| n.parse().ok()) {
        mode.reps = n;
    }
    if let Some(list) = arg_value("--clients") {
        mode.clients = list.split(',').filter_map(|n| n.parse().ok()).collect();
    }
    let begun = Instant::now();
    let stamp = now_ns();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# genesys-notify out-of-process load bench ({} mode): {} cores, {cpu}; load average {}; started at {} s since the epoch",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        stamp / 1_000_000_000,
    );
    let generator = ChildProcess::spawn(&["--generator".to_owned()]);
    let service = generator
        .expect("generator", Duration::from_secs(20))
        .expect("the generator starts");
    let mut o = Orchestra { generator, service };
    let kinds = kinds();
    if section("throughput") {
        throughput(&mut o, &mode, &kinds);
    }
    if section("latency") {
        latency(&mut o, &mode, &kinds);
    }
    if section("clients") {
        clients(&mut o, &mode);
    }
    o.generator.send("quit");
    o.generator.finish(Duration::from_secs(5));
    let integrity = INTEGRITY.load(Ordering::Relaxed);
    println!("\nruns with events lost, out of order or unsent: {integrity} (must be 0)");
    println!("total time: {:.0} s", begun.elapsed().as_secs_f64());
}
