//! listener_scale.rs is the scale sweep of issue 11: how the cost of listeners and routes grows
//! with their number. It prints, for each size, the time taken and the ratio to the previous
//! size, so linear growth reads as "10x the work, about 10x the time" and quadratic as 100x.
//!
//! - Registration: `on` with N distinct exact patterns, then N guard drops (N = 1k, 10k, 100k),
//!   and the same with N listeners sharing one wildcard pattern.
//! - Routing with N registered patterns that match none of the hot topics (N = 1, 1k, 10k,
//!   100k): events per second delivered over 100 hot topics, as a ratio to N = 1 (one client,
//!   the sizes in turn, the sweep three times, best of each).
//! - Routes after one listener change: T topics (1k, 20k), each with its own listener, all
//!   routes cached; one pass of one event per topic warm, then after an unrelated `on` + drop
//!   (which must cost nothing), then after a change that does affect every topic (a `*`
//!   pattern: every route is recomputed, the legitimate worst case).
//!
//! Events come from a load generator on 127.0.0.1 (pre-encoded WebSocket frames written in
//! batches) to which the emulator's `connectUri` points; the client runs one dispatcher thread.
//!
//! Run: `cargo bench --bench listener_scale --features emulator` (about a minute).

use genesys_notify::emulator::{Emulator, EmulatorConfig};
use genesys_notify::{Client, ListenerGuard};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A WebSocket server on 127.0.0.1 handing over each accepted socket as a plain TCP stream.
struct Generator {
    addr: std::net::SocketAddr,
    accepted: crossbeam_channel::Receiver<TcpStream>,
}

impl Generator {
    fn start() -> Generator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the generator");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
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
        Generator { addr, accepted: rx }
    }
}

/// One unmasked server text frame.
fn text_frame(out: &mut Vec<u8>, text: &str) {
    out.push(0x81);
    let len = text.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(text.as_bytes());
}

fn notification(topic: &str, seq: u64) -> String {
    format!(
        r#"{{"topicName":"{topic}","version":"2","eventBody":{{"id":"9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f","presenceDefinition":{{"systemPresence":"AVAILABLE"}},"seq":{seq}}},"metadata":{{"CorrelationId":"290034f4-c3d7-46fd-8342-ee5bc859b7e9"}}}}"#
    )
}

fn user_topic(kind: &str, n: usize) -> String {
    format!("v2.users.{kind}-{n:08x}-0c59-4360-ac54-40dd35eb9c2f.presence")
}

/// A client whose one channel reads from the generator, and the generator's end of its socket.
struct Rig {
    client: Client,
    socket: TcpStream,
    delivered: Arc<AtomicU64>,
}

impl Rig {
    fn new(emulator: &Emulator, generator: &Generator) -> Rig {
        let client = Client::builder()
            .api_base(emulator.api_base())
            .login_base(emulator.login_base())
            .client_credentials(emulator.client_id(), emulator.client_secret())
            .dispatcher_threads(1)
            .listener_warning_threshold(usize::MAX)
            .build()
            .expect("client");
        client
            .on_lifecycle(|e| {
                if let genesys_notify::Lifecycle::Disconnected { cause, .. } = e {
                    if *cause == genesys_notify::DisconnectCause::UserRequest {
                        return;
                    }
                    eprintln!("{e:?}");
                }
            })
            .expect("on_lifecycle")
            .forget();
        let _ = client.subscribe([user_topic("sub", 0)]).expect("subscribe");
        let socket = generator
            .accepted
            .recv_timeout(Duration::from_secs(10))
            .expect("the client connects to the generator");
        Rig {
            client,
            socket,
            delivered: Arc::new(AtomicU64::new(0)),
        }
    }

    fn counting(&self, pattern: &str) -> ListenerGuard {
        let delivered = self.delivered.clone();
        self.client
            .on(pattern, move |_| {
                delivered.fetch_add(1, Ordering::Relaxed);
            })
            .expect("on")
    }

    /// Writes `frames` and waits until `expected` more deliveries were counted; returns the time.
    fn pass(&mut self, frames: &[u8], expected: u64) -> Duration {
        let target = self.delivered.load(Ordering::Relaxed) + expected;
        let started = Instant::now();
        for chunk in frames.chunks(256 << 10) {
            self.socket.write_all(chunk).expect("write frames");
        }
        let deadline = started + Duration::from_secs(120);
        while self.delivered.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "events were not delivered");
            std::thread::yield_now();
        }
        started.elapsed()
    }

    fn stop(self) {
        let _ = self.client.shutdown(Duration::from_secs(5));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(now: Duration, before: Option<Duration>) -> String {
    match before {
        Some(before) if before > Duration::ZERO => {
            format!("{:.1}x", now.as_secs_f64() / before.as_secs_f64())
        }
        _ => "-".into(),
    }
}

fn offline_client() -> Client {
    Client::builder()
        .api_base("http://127.0.0.1:9")
        .login_base("http://127.0.0.1:9")
        .access_token("unused")
        .listener_warning_threshold(usize::MAX)
        .build()
        .expect("client")
}

fn registration() {
    println!("\n## Registering and dropping N listeners (release build)");
    println!(
        "{:<34} {:>8} {:>12} {:>10} {:>12} {:>10}",
        "patterns", "N", "on total ms", "ratio", "drop ms", "ratio"
    );
    for shared in [false, true] {
        let mut previous: Option<(Duration, Duration)> = None;
        for n in [1_000usize, 10_000, 100_000] {
            let patterns: Vec<String> = (0..n)
                .map(|i| {
                    if shared {
                        "v2.users.*.presence".to_owned()
                    } else {
                        user_topic("cold", i)
                    }
                })
                .collect();
            // Best of 3, each on a fresh client.
            let (mut on, mut dropped) = (Duration::MAX, Duration::MAX);
            for _ in 0..3 {
                let client = offline_client();
                let started = Instant::now();
                let guards: Vec<ListenerGuard> = patterns
                    .iter()
                    .map(|p| client.on(p, |_| {}).expect("on"))
                    .collect();
                on = on.min(started.elapsed());
                let started = Instant::now();
                drop(guards);
                dropped = dropped.min(started.elapsed());
                let _ = client.shutdown(Duration::from_secs(5));
            }
            println!(
                "{:<34} {:>8} {:>12.1} {:>10} {:>12.1} {:>10}",
                if shared {
                    "one shared `v2.users.*.presence`"
                } else {
                    "distinct exact"
                },
                n,
                ms(on),
                ratio(on, previous.map(|p| p.0)),
                ms(dropped),
                ratio(dropped, previous.map(|p| p.1)),
            );
            previous = Some((on, dropped));
        }
    }
}

fn routing_with_many_patterns(emulator: &Emulator, generator: &Generator) {
    const EVENTS: u64 = 200_000;
    const HOT: usize = 100;
    println!(
        "\n## Events/s over {HOT} hot topics with N registered patterns matching none of them"
    );
    println!(
        "{:>8} {:>12} {:>14} {:>16}",
        "N", "events/s", "ratio to N=1", "register N (ms)"
    );
    let hot: Vec<String> = (0..HOT).map(|t| user_topic("hot", t)).collect();
    let mut frames = Vec::new();
    let mut warm_up = Vec::new();
    for k in 0..EVENTS {
        text_frame(&mut frames, &notification(&hot[k as usize % HOT], k));
        if k == EVENTS / 10 - 1 {
            warm_up = frames.clone();
        }
    }
    // One client for every size, the sizes measured in turn and the whole sweep done three
    // times (best of each): a shared machine's load drifts, and this spreads it evenly.
    const SIZES: [usize; 4] = [1, 1_000, 10_000, 100_000];
    let mut rig = Rig::new(emulator, generator);
    let _hot = rig.counting("v2.users.*.presence");
    let mut best = [Duration::MAX; SIZES.len()];
    let mut register = [Duration::MAX; SIZES.len()];
    for _ in 0..3 {
        for (k, &n) in SIZES.iter().enumerate() {
            let started = Instant::now();
            let cold: Vec<ListenerGuard> = (0..n)
                .map(|i| {
                    rig.client
                        .on(&format!("v2.users.cold-{i:08x}.routingStatus"), |_| {})
                        .expect("on")
                })
                .collect();
            register[k] = register[k].min(started.elapsed());
            // Warm the route cache (a burst of changes may have cleared it), then measure.
            rig.pass(&warm_up, EVENTS / 10);
            best[k] = best[k].min(rig.pass(&frames, EVENTS));
            drop(cold);
        }
    }
    rig.stop();
    let base_rate = EVENTS as f64 / best[0].as_secs_f64();
    for (k, &n) in SIZES.iter().enumerate() {
        let rate = EVENTS as f64 / best[k].as_secs_f64();
        println!(
            "{:>8} {:>12.0} {:>13.2}x {:>16.1}",
            n,
            rate,
            rate / base_rate,
            ms(register[k])
        );
    }
}

fn routes_after_one_change(emulator: &Emulator, generator: &Generator) {
    println!("\n## One event per topic, T topics each with its own listener, routes cached");
    println!(
        "{:>8} {:>10} {:>10} {:>22} {:>10} {:>22} {:>10}",
        "T", "warm ms", "ratio", "after unrelated on ms", "ratio", "after `*` change ms", "ratio"
    );
    let mut previous: Option<[Duration; 3]> = None;
    for topics in [1_000usize, 20_000] {
        let mut rig = Rig::new(emulator, generator);
        let names: Vec<String> = (0..topics).map(|t| user_topic("topic", t)).collect();
        let _listeners: Vec<ListenerGuard> = names.iter().map(|t| rig.counting(t)).collect();
        let mut frames = Vec::new();
        for (k, topic) in names.iter().enumerate() {
            text_frame(&mut frames, &notification(topic, k as u64));
        }
        let expected = topics as u64;
        rig.pass(&frames, expected);
        let warm = (0..3).map(|_| rig.pass(&frames, expected)).min().unwrap();
        let unrelated = (0..3)
            .map(|_| {
                drop(rig.client.on("v2.routing.queues.q1.conversations", |_| {}));
                rig.pass(&frames, expected)
            })
            .min()
            .unwrap();
        let affecting = (0..3)
            .map(|_| {
                drop(rig.client.on("v2.users.*.presence", |_| {}));
                rig.pass(&frames, expected)
            })
            .min()
            .unwrap();
        let now = [warm, unrelated, affecting];
        println!(
            "{:>8} {:>10.2} {:>10} {:>22.2} {:>10} {:>22.2} {:>10}",
            topics,
            ms(warm),
            ratio(warm, previous.map(|p| p[0])),
            ms(unrelated),
            ratio(unrelated, previous.map(|p| p[1])),
            ms(affecting),
            ratio(affecting, previous.map(|p| p[2])),
        );
        println!(
            "{:>8} after an unrelated change / warm: {:.2}x (1.0x: no route was recomputed)",
            "",
            unrelated.as_secs_f64() / warm.as_secs_f64()
        );
        previous = Some(now);
        rig.stop();
    }
    println!("(T = 20 000 is 20x the work of T = 1 000: linear cost reads as about 20x)");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` lists benchmarks: there is nothing to list.
        return;
    }
    let begun = Instant::now();
    println!(
        "# genesys-notify listener scale sweep: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    registration();
    let generator = Generator::start();
    let emulator = Emulator::start_with(
        EmulatorConfig::default()
            .connect_uri_base(format!("ws://{}", generator.addr))
            .max_channels(10_000),
    )
    .expect("emulator starts");
    routing_with_many_patterns(&emulator, &generator);
    routes_after_one_change(&emulator, &generator);
    println!("\ntotal time: {:.0} s", begun.elapsed().as_secs_f64());
}
