//! c_callback.rs: the small-event rate of a callback registered through the C ABI
//! (`gn_client_on`) against the Rust API's (`Client::on`), in the same run (issue 18: at least
//! 0.9×). Machines are shared and noisy; only the ratio of the same run means something.
//!
//! - A load generator on 127.0.0.1 (a tungstenite server) writes pre-encoded Genesys-shaped
//!   frames as fast as the socket takes them: `v2.users.{id}.presence` with a ~400-byte body,
//!   over 100 topics, on one socket (load.rs's "small" events).
//! - The emulator serves tokens, channels and subscriptions; the client's socket goes to the
//!   generator (`streaming_base`, through `gn_builder_streaming_base` on the C side).
//! - "rust": `Client::builder()`, `Client::on` with a closure. "c": the same settings through
//!   `gn_builder_*`, `gn_client_subscribe` and `gn_client_on` with an `extern "C"` function
//!   that reads the event through `gn_event_topic` and `gn_event_body_json`, exactly as a C
//!   callback does (the same symbols, the same calling convention; only the compiler of the
//!   callback's body differs). Both callbacks do the same work: add the topic's and the body's
//!   lengths and count the event.
//! - Per run: events per second from the first write to the last callback, and the CPU time
//!   of the dispatcher threads (`genesys-dispatch-*`, named `genesys-dispatc` in the 15 characters of
//!   `/proc/self/task/*/comm`; from `/proc/self/task/*/schedstat`) per
//!   event. Kinds alternate within each repetition (order swapped every other one); the ratio
//!   is the median of the per-repetition ratios c / rust.
//!
//! Run: `cargo bench -p genesys-notify-ffi --features emulator --bench c_callback` (about a
//! minute), `-- --quick` for a smoke run of a few seconds.

use genesys_notify::emulator::{Emulator, EmulatorConfig};
use genesys_notify::Client;
use genesys_notify_c::*;
use std::ffi::{c_void, CString};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPICS: usize = 100;
const PATTERN: &str = "v2.users.*.presence";

fn user_id(n: usize) -> String {
    format!("9ed7d9f6-0c59-4360-ac54-{n:012x}")
}

fn topic(n: usize) -> String {
    format!("v2.users.{}.presence", user_id(n))
}

/// A server text frame (unmasked).
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81u8];
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n < 65_536 => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// One frame per topic, each with a ~400-byte presence body, repeated to about 256 KiB.
fn batch() -> (Vec<u8>, u64) {
    let mut one_round = Vec::new();
    for t in 0..TOPICS {
        let mut body = format!(
            r#"{{"source":"PURECLOUD","presenceDefinition":{{"id":"6a3af858-942f-489d-9700-5f9bcdcdae9b","systemPresence":"AVAILABLE","languageLabels":{{"en_US":"Available"}}}},"primary":true,"modifiedDate":"2024-03-05T10:11:12.345Z","userId":"{}","message":""}}"#,
            user_id(t)
        );
        let missing = 400usize.saturating_sub(body.len());
        body.insert_str(body.len() - 2, &"x".repeat(missing));
        let payload = format!(
            r#"{{"topicName":"{}","version":"2","eventBody":{body},"metadata":{{"CorrelationId":"6666{t:04}-4d2c-4b7e-9a51-000000000000"}}}}"#,
            topic(t)
        );
        one_round.extend_from_slice(&ws_frame(payload.as_bytes()));
    }
    let rounds = (256 * 1024 / one_round.len()).max(1);
    (one_round.repeat(rounds), (rounds * TOPICS) as u64)
}

/// A WebSocket server handing each accepted socket, after the handshake, over as plain TCP.
struct Generator {
    base: String,
    accepted: Receiver<TcpStream>,
}

impl Generator {
    fn start() -> Generator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the generator");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_nodelay(true);
                if let Ok(ws) = tungstenite::accept(stream) {
                    if let Ok(tcp) = ws.get_ref().try_clone() {
                        let _ = tx.send(tcp);
                    }
                }
            }
        });
        Generator { base, accepted: rx }
    }

    fn take(&self) -> TcpStream {
        self.accepted
            .recv_timeout(Duration::from_secs(10))
            .expect("the client's socket reaches the generator")
    }
}

/// What both callbacks update.
#[derive(Default)]
struct Sink {
    events: AtomicU64,
    bytes: AtomicU64,
}

/// The C-ABI callback: what a C program's callback does, through the same functions.
unsafe extern "C" fn c_callback(userdata: *mut c_void, event: *const gn_event) {
    // SAFETY: `userdata` is the `Arc<Sink>` given to `gn_client_on`, alive until `release`.
    let sink = unsafe { &*(userdata as *const Sink) };
    let topic = gn_event_topic(event);
    let body = gn_event_body_json(event);
    sink.bytes
        .fetch_add((topic.len + body.len) as u64, Ordering::Relaxed);
    sink.events.fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn release(userdata: *mut c_void) {
    // SAFETY: the `Arc` leaked into `userdata` by `Kind::C`'s setup, released exactly once.
    drop(unsafe { Arc::from_raw(userdata as *const Sink) });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rust,
    C,
}

struct Service {
    api_base: String,
    login_base: String,
    client_id: String,
    client_secret: String,
    streaming_base: String,
}

/// A running client of either kind, and how to stop it.
enum Running {
    Rust(Client, genesys_notify::ListenerGuard),
    C(*mut gn_client, *mut gn_guard),
}

fn ok(result: gn_result, what: &str) {
    if result != gn_result::GN_OK {
        let mut buf = vec![0 as std::ffi::c_char; 1024];
        gn_last_error_message(buf.as_mut_ptr(), buf.len(), std::ptr::null_mut());
        // SAFETY: the buffer was NUL-terminated by gn_last_error_message.
        let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        panic!("{what}: {result:?}: {}", text.to_string_lossy());
    }
}

fn start(kind: Kind, service: &Service, sink: &Arc<Sink>) -> Running {
    let topics: Vec<String> = (0..TOPICS).map(topic).collect();
    match kind {
        Kind::Rust => {
            let client = Client::builder()
                .api_base(&service.api_base)
                .login_base(&service.login_base)
                .client_credentials(&service.client_id, &service.client_secret)
                .streaming_base(&service.streaming_base)
                .proxy_from_env(false)
                .build()
                .expect("client");
            let sink = sink.clone();
            let guard = client
                .on(PATTERN, move |e| {
                    sink.bytes.fetch_add(
                        (e.topic().len() + e.body_json().len()) as u64,
                        Ordering::Relaxed,
                    );
                    sink.events.fetch_add(1, Ordering::Relaxed);
                })
                .expect("listener");
            let _ = client.subscribe(&topics).expect("subscribe");
            Running::Rust(client, guard)
        }
        Kind::C => {
            let c = |s: &str| CString::new(s).unwrap();
            let mut builder = std::ptr::null_mut();
            ok(gn_builder_new(&mut builder), "gn_builder_new");
            ok(
                gn_builder_api_base(builder, c(&service.api_base).as_ptr()),
                "api_base",
            );
            ok(
                gn_builder_login_base(builder, c(&service.login_base).as_ptr()),
                "login_base",
            );
            ok(
                gn_builder_client_credentials(
                    builder,
                    c(&service.client_id).as_ptr(),
                    c(&service.client_secret).as_ptr(),
                ),
                "client_credentials",
            );
            ok(
                gn_builder_streaming_base(builder, c(&service.streaming_base).as_ptr()),
                "streaming_base",
            );
            ok(gn_builder_proxy_from_env(builder, false), "proxy_from_env");
            let mut client = std::ptr::null_mut();
            ok(gn_builder_build(builder, &mut client), "gn_builder_build");
            ok(gn_builder_free(builder), "gn_builder_free");
            let mut guard = std::ptr::null_mut();
            let pattern = c(PATTERN);
            ok(
                gn_client_on(
                    client,
                    pattern.as_ptr(),
                    Some(c_callback),
                    Arc::into_raw(sink.clone()) as *mut c_void,
                    Some(release),
                    &mut guard,
                ),
                "gn_client_on",
            );
            let names: Vec<CString> = topics.iter().map(|t| c(t)).collect();
            let pointers: Vec<_> = names.iter().map(|n| n.as_ptr()).collect();
            let mut report = std::ptr::null_mut();
            ok(
                gn_client_subscribe(client, pointers.as_ptr(), pointers.len(), &mut report),
                "gn_client_subscribe",
            );
            assert_eq!(gn_report_permitted_count(report), TOPICS);
            ok(gn_report_free(report), "gn_report_free");
            Running::C(client, guard)
        }
    }
}

fn stop(running: Running) {
    match running {
        Running::Rust(client, guard) => {
            drop(guard);
            client.shutdown(Duration::from_secs(10)).expect("shutdown");
        }
        Running::C(client, guard) => {
            ok(gn_guard_free(guard), "gn_guard_free");
            ok(gn_client_shutdown(client, 10_000), "gn_client_shutdown");
            ok(gn_client_free(client), "gn_client_free");
        }
    }
}

/// CPU time in nanoseconds used so far by the live threads whose name starts with `prefix`.
fn cpu_ns(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.starts_with(prefix))
        })
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

struct Outcome {
    rate: f64,
    /// The dispatcher threads' CPU per event: where the callbacks run.
    cpu_ns_per_event: f64,
    /// All the client's threads (`genesys-*`: socket, dispatchers, lifecycle) per event.
    client_cpu_ns_per_event: f64,
}

fn run(
    kind: Kind,
    service: &Service,
    generator: &Generator,
    frames: &[u8],
    per_batch: u64,
    total: u64,
) -> Outcome {
    let sink = Arc::new(Sink::default());
    let running = start(kind, service, &sink);
    let mut socket = generator.take();
    let batches = total / per_batch;
    let expected = batches * per_batch;
    let cpu_before = cpu_ns("genesys-dispat");
    let client_cpu_before = cpu_ns("genesys-");
    let started = Instant::now();
    let writer = {
        let frames = frames.to_vec();
        let mut socket = socket.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..batches {
                socket.write_all(&frames).expect("the client reads");
            }
        })
    };
    let mut last = (0, Instant::now());
    loop {
        let seen = sink.events.load(Ordering::Relaxed);
        if seen >= expected {
            break;
        }
        if seen != last.0 {
            last = (seen, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            panic!("{kind:?}: stalled at {seen} of {expected} events");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = started.elapsed();
    let cpu = cpu_ns("genesys-dispat") - cpu_before;
    let client_cpu = cpu_ns("genesys-") - client_cpu_before;
    writer.join().unwrap();
    let _ = socket.flush();
    stop(running);
    drop(socket);
    assert!(sink.bytes.load(Ordering::Relaxed) > 400 * expected);
    Outcome {
        rate: expected as f64 / elapsed.as_secs_f64(),
        cpu_ns_per_event: cpu as f64 / expected as f64,
        client_cpu_ns_per_event: client_cpu as f64 / expected as f64,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("GENESYS_BENCH_QUICK").is_some();
    let (reps, total) = if quick { (3, 40_000) } else { (11, 200_000) };
    let generator = Generator::start();
    let emulator = Emulator::start_with(EmulatorConfig::default()).expect("emulator");
    let service = Service {
        api_base: emulator.api_base(),
        login_base: emulator.login_base(),
        client_id: emulator.client_id().to_owned(),
        client_secret: emulator.client_secret().to_owned(),
        streaming_base: generator.base.clone(),
    };
    let (frames, per_batch) = batch();
    println!(
        "c_callback: {reps} repetitions of {total} small events (~400-byte bodies, {TOPICS} topics, one socket, 2 dispatcher threads)"
    );
    // A warm-up run of each kind, not counted.
    for kind in [Kind::Rust, Kind::C] {
        run(kind, &service, &generator, &frames, per_batch, total / 4);
    }
    let mut rust = Vec::new();
    let mut c = Vec::new();
    for rep in 0..reps {
        let order = if rep % 2 == 0 {
            [Kind::Rust, Kind::C]
        } else {
            [Kind::C, Kind::Rust]
        };
        for kind in order {
            let outcome = run(kind, &service, &generator, &frames, per_batch, total);
            println!(
                "  rep {rep} {:>4}: {:>9.0} events/s, dispatcher CPU {:>6.0} ns/event, client CPU {:>6.0} ns/event",
                format!("{kind:?}").to_lowercase(),
                outcome.rate,
                outcome.cpu_ns_per_event,
                outcome.client_cpu_ns_per_event
            );
            match kind {
                Kind::Rust => rust.push(outcome),
                Kind::C => c.push(outcome),
            }
        }
    }
    let ratios: Vec<f64> = c.iter().zip(&rust).map(|(c, r)| c.rate / r.rate).collect();
    let cpu_ratios: Vec<f64> = c
        .iter()
        .zip(&rust)
        .map(|(c, r)| c.cpu_ns_per_event / r.cpu_ns_per_event)
        .collect();
    let client_cpu_ratios: Vec<f64> = c
        .iter()
        .zip(&rust)
        .map(|(c, r)| c.client_cpu_ns_per_event / r.client_cpu_ns_per_event)
        .collect();
    let rate = |v: &[Outcome]| median(v.iter().map(|o| o.rate).collect());
    let cpu = |v: &[Outcome]| median(v.iter().map(|o| o.cpu_ns_per_event).collect());
    println!(
        "rust API callback : {:>9.0} events/s, dispatcher CPU {:>6.0} ns/event (medians)",
        rate(&rust),
        cpu(&rust)
    );
    println!(
        "C ABI callback    : {:>9.0} events/s, dispatcher CPU {:>6.0} ns/event (medians)",
        rate(&c),
        cpu(&c)
    );
    println!(
        "C / Rust small-event rate: {:.3}x (median of {reps} paired ratios; goal >= 0.9x); CPU per event C / Rust: dispatchers {:.3}x, whole client {:.3}x",
        median(ratios),
        median(cpu_ratios),
        median(client_cpu_ratios)
    );
}
