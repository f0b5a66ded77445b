//! Chaos soak (issue 8, "Prove it"): several channels and topics, events published without
//! pause, and a random fault every few seconds from every class the emulator can inject. At the
//! end, the promise of the library is checked as a whole:
//!
//! * every published event reached every matching listener exactly once, or was published
//!   inside a `Gap` the client reported for its topic (give or take `CHAOS_EDGE_MS` at the
//!   edges: a gap starts at the *reception* of the last frame, and frames already sent, or
//!   sitting in the client's receive buffer when a reset purges it, may have been published a
//!   little before that);
//! * nothing is delivered twice, nothing reaches a listener that does not match it, and each
//!   listener sees each topic's events in publish order;
//! * the client ends connected on every channel and delivers a final batch without loss;
//! * token requests and channel creations stay proportional to the faults that need them;
//! * the time without a socket (the sum of the reported gaps) stays close to the sum of the
//!   outages the faults impose; the ratio is printed and must stay under
//!   `CHAOS_MAX_OUTAGE_RATIO`.
//!
//! Settings, all from the environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `CHAOS_SEED` | seed of the fault schedule (a `u64`) | random, printed |
//! | `CHAOS_SECS` | seconds of faults | 60 |
//! | `CHAOS_EDGE_MS` | tolerance at the edges of a gap, in ms | 2000 |
//! | `CHAOS_MAX_OUTAGE_RATIO` | bound on time without socket / imposed outage | 4 |
//! | `CHAOS_DEFAULT_BACKOFF` | `1`: the client uses `Backoff::default()` (1 s base, 60 s cap) instead of 100 ms / 3 s | 0 |
//!
//! The 10-minute run (README, "Chaos soak"):
//! `CHAOS_SECS=600 nice cargo test --release --features emulator --test chaos -- --nocapture`
//!
//! Only the fault schedule is seeded: thread timing still differs between runs, so a seed
//! reproduces the faults, not the exact interleaving. No assertion depends on a tight timing;
//! every wait is bounded.
mod recovery;
mod util;

use genesys_notify::emulator::{Emulator, EmulatorConfig, Endpoint, Fault, Frame, Target};
use genesys_notify::{Backoff, ChannelState, Client, Lifecycle, ListenerGuard, Pattern, Topic};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use util::*;

/// Users whose presence topics share channels (`MAX_TOPICS_PER_CHANNEL` per channel).
const SHARED_USERS: usize = 12;
const MAX_TOPICS_PER_CHANNEL: usize = 4;
/// The user of the isolated channel, subscribed with a combined topic.
const ISOLATED_USER: usize = 100;
/// Channels the client holds: 3 shared + 1 isolated.
const CHANNELS: usize = SHARED_USERS / MAX_TOPICS_PER_CHANNEL + 1;
/// Pause between two publishes (about 250 events per second).
const PUBLISH_PAUSE: Duration = Duration::from_millis(4);
/// What a fault that ends a socket may cost beyond what it imposes: a prompt reconnection's
/// small jitter or the first backoff step (100 ms), a handshake and, for a new channel, two
/// REST calls on a loaded machine.
const RECONNECT_ALLOWANCE: Duration = Duration::from_millis(500);
/// The client's liveness bound (`recovery::fast`): what a silent socket costs at least.
const LIVENESS: Duration = Duration::from_secs(1);
/// Events per topic in the final batch.
const FINAL_PER_TOPIC: usize = 3;

/// Every class of fault the soak injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Class {
    /// A close frame with a code (1000, 1001, 1011, 1012, 3000, 4000, ...).
    CloseCode,
    /// A close frame without status code (the client sees 1005).
    CloseWithoutStatus,
    /// TCP closed without close frame (FIN).
    Fin,
    /// TCP reset (RST).
    Reset,
    /// The socket stops sending anything.
    Silence,
    /// `v2.system.socket_closing`, then the socket is closed soon after.
    SocketClosingThenClose,
    /// The channel is evicted (removed).
    Eviction,
    /// The channel expires.
    Expiry,
    /// The next REST check or handshake answers 429 with `Retry-After`, and the socket drops.
    RateLimited,
    /// The next REST check or handshake answers a 5xx, and the socket drops.
    ServerError,
    /// Every token is revoked (401 from then on), and the socket drops so that the client
    /// makes a REST call with it.
    TokenRevoked,
    /// A second socket takes the channel over.
    Takeover,
    /// Frames that are not notifications: bad JSON, binary, no `topicName`.
    Malformed,
    /// The next events arrive in fragments.
    Fragmented,
}

const CLASSES: [Class; 14] = [
    Class::CloseCode,
    Class::CloseWithoutStatus,
    Class::Fin,
    Class::Reset,
    Class::Silence,
    Class::SocketClosingThenClose,
    Class::Eviction,
    Class::Expiry,
    Class::RateLimited,
    Class::ServerError,
    Class::TokenRevoked,
    Class::Takeover,
    Class::Malformed,
    Class::Fragmented,
];

struct Settings {
    seed: u64,
    duration: Duration,
    edge: Duration,
    max_outage_ratio: f64,
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={text:?} is not a valid value"),
    }
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            seed: env("CHAOS_SEED").unwrap_or_else(rand::random),
            duration: Duration::from_secs(env("CHAOS_SECS").unwrap_or(60)),
            edge: Duration::from_millis(env("CHAOS_EDGE_MS").unwrap_or(2000)),
            max_outage_ratio: env("CHAOS_MAX_OUTAGE_RATIO").unwrap_or(4.0),
        }
    }
}

/// The client's backoff: 100 ms base and 3 s cap, or with `CHAOS_DEFAULT_BACKOFF=1` the
/// default policy (1 s base, 60 s cap), where any escalation after faults that are not the
/// client's failures shows as a much larger time without socket.
fn backoff(seed: u64) -> Backoff {
    let policy = if env::<u8>("CHAOS_DEFAULT_BACKOFF").unwrap_or(0) == 1 {
        Backoff::default()
    } else {
        Backoff::default()
            .base(Duration::from_millis(100))
            .cap(Duration::from_secs(3))
    };
    policy.seed(Some(seed))
}

/// One publish: its topic (index into `Soak::publish_topics`), its sequence number (unique)
/// and the wall-clock times just before and after the call.
struct Published {
    topic: usize,
    seq: u64,
    before: SystemTime,
    after: SystemTime,
    /// Part of the final batch: must be delivered, gap or not.
    last: bool,
}

/// One delivery to a listener: the sequence number and whether the event's topic was the one
/// published with it.
struct Delivery {
    seq: u64,
    topic: String,
}

struct Listener {
    pattern: Pattern,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    _guard: ListenerGuard,
}

fn listen(client: &Client, pattern: &str) -> Listener {
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let sink = deliveries.clone();
    let guard = client
        .on(pattern, move |e| {
            let seq = e.body_value().ok().and_then(|b| b["seq"].as_u64());
            let seq = seq.unwrap_or(u64::MAX);
            sink.lock().push(Delivery {
                seq,
                topic: e.topic().to_ascii_lowercase(),
            });
        })
        .expect("listener");
    Listener {
        pattern: Pattern::parse(pattern).unwrap(),
        deliveries,
        _guard: guard,
    }
}

/// What the faults were and what they impose.
#[derive(Default)]
struct Ledger {
    by_class: BTreeMap<Class, usize>,
    /// The faults as injected, with their parameters, for the log.
    details: BTreeMap<String, usize>,
    /// When each fault was injected, for the time-without-socket breakdown.
    injected: Vec<(SystemTime, Class)>,
    /// Faults that found no socket or channel to act on.
    missed: usize,
    /// Sum of the outages imposed (Retry-After, liveness bound) plus the reconnect allowance of
    /// each fault that ended a socket.
    imposed: Duration,
    token_revocations: usize,
    /// Windows around each `socket_closing` switch (per-topic order is checked per socket;
    /// during a switch two sockets of a channel may overlap).
    switches: Vec<(SystemTime, SystemTime)>,
}

struct Soak {
    emu: Arc<Emulator>,
    client: Client,
    rec: Recorder,
    listeners: Vec<Listener>,
    /// Topic names published (lower case).
    publish_topics: Vec<String>,
    published: Arc<Mutex<Vec<Published>>>,
    rng: StdRng,
    ledger: Ledger,
}

fn topic_of(user: usize, kind: &str) -> String {
    format!("v2.users.{}.{kind}", user_id(user)).to_ascii_lowercase()
}

impl Soak {
    fn start(seed: u64) -> Soak {
        let emu =
            emulator_with(EmulatorConfig::default().heartbeat_interval(Duration::from_secs(5)));
        let client = recovery::fast(&emu)
            .max_topics_per_channel(MAX_TOPICS_PER_CHANNEL)
            .backoff(backoff(seed))
            .build()
            .unwrap();
        let rec = Recorder::new(&client);
        let isolated = format!("v2.users.{}?presence&routingStatus", user_id(ISOLATED_USER));
        let listeners = vec![
            listen(&client, "v2.users.*.presence"),
            listen(&client, "v2.users.*.routingStatus"),
            listen(&client, "v2.users.*.*"),
            listen(&client, &topic_of(0, "presence")),
            listen(&client, &topic_of(ISOLATED_USER, "presence")),
        ];
        let shared: Vec<String> = (0..SHARED_USERS).map(|u| topic_of(u, "presence")).collect();
        let _ = client.subscribe(&shared).unwrap();
        let _ = client.subscribe_isolated([isolated.as_str()]).unwrap();
        wait_sockets(&emu, CHANNELS);
        let mut publish_topics = shared;
        publish_topics.push(topic_of(ISOLATED_USER, "presence"));
        publish_topics.push(topic_of(ISOLATED_USER, "routingStatus"));
        Soak {
            emu: Arc::new(emu),
            client,
            rec,
            listeners,
            publish_topics,
            published: Arc::new(Mutex::new(Vec::new())),
            rng: StdRng::seed_from_u64(seed),
            ledger: Ledger::default(),
        }
    }

    /// Publishes round-robin over every topic until `stop`.
    fn publisher(&self, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let (emu, published, topics) = (
            self.emu.clone(),
            self.published.clone(),
            self.publish_topics.clone(),
        );
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let topic = (seq as usize) % topics.len();
                publish(&emu, &published, &topics, topic, seq, false);
                seq += 1;
                std::thread::sleep(PUBLISH_PAUSE);
            }
        })
    }

    /// The channel ids of live channels that have a socket now.
    fn connected_channels(&self) -> Vec<String> {
        self.emu
            .channels()
            .into_iter()
            .filter(|c| c.connected)
            .map(|c| c.id)
            .collect()
    }

    /// Injects one fault of `class` on a random connected channel; updates the ledger.
    fn inject(&mut self, class: Class) {
        let connected = self.connected_channels();
        let Some(id) = connected.get(self.rng.random_range(0..connected.len().max(1))) else {
            self.ledger.missed += 1;
            return;
        };
        let id = id.clone();
        let target = Target::channel(&id);
        let emu = &self.emu;
        let rng = &mut self.rng;
        let drop_socket = |emu: &Emulator| {
            emu.inject(Fault::DropSocket {
                target: target.clone(),
            })
        };
        let mut imposed = Duration::ZERO;
        let mut ends_socket = true;
        let name = match class {
            Class::CloseCode => {
                let codes = [1000, 1001, 1011, 1012, 1013, 3000, 4000, 4999];
                let code = codes[rng.random_range(0..codes.len())];
                emu.inject(Fault::CloseSocket {
                    target: target.clone(),
                    code,
                    reason: "chaos".into(),
                });
                format!("close {code}")
            }
            Class::CloseWithoutStatus => {
                emu.inject(Fault::CloseWithoutStatus {
                    target: target.clone(),
                });
                "close without status (1005)".into()
            }
            Class::Fin => {
                drop_socket(emu);
                "TCP FIN without close frame".into()
            }
            Class::Reset => {
                emu.inject(Fault::ResetSocket {
                    target: target.clone(),
                });
                "TCP RST".into()
            }
            Class::Silence => {
                emu.inject(Fault::GoSilent {
                    target: target.clone(),
                });
                imposed = LIVENESS;
                "silence".into()
            }
            Class::SocketClosingThenClose => {
                let after = Duration::from_millis(rng.random_range(100..3000));
                let now = SystemTime::now();
                self.ledger.switches.push((
                    now - Duration::from_secs(1),
                    now + after + Duration::from_secs(5),
                ));
                emu.inject(Fault::SocketClosing {
                    target: target.clone(),
                    close_after: Some(after),
                });
                // Not a fault that must cost a socket: a prompt switch loses nothing.
                ends_socket = false;
                "socket_closing then close".into()
            }
            Class::Eviction => {
                emu.inject(Fault::EvictChannel {
                    channel_id: id.clone(),
                });
                "channel evicted".into()
            }
            Class::Expiry => {
                emu.inject(Fault::ExpireChannel {
                    channel_id: id.clone(),
                });
                "channel expired".into()
            }
            Class::RateLimited => {
                let endpoint =
                    [Endpoint::HeadChannel, Endpoint::WebSocketHandshake][rng.random_range(0..2)];
                let secs = rng.random_range(1..=2u64);
                emu.inject(Fault::HttpStatus {
                    endpoint,
                    status: 429,
                    retry_after: Some(secs),
                    times: 1,
                });
                drop_socket(emu);
                imposed = Duration::from_secs(secs);
                format!("429 Retry-After {secs} s on {endpoint:?}")
            }
            Class::ServerError => {
                let endpoint =
                    [Endpoint::HeadChannel, Endpoint::WebSocketHandshake][rng.random_range(0..2)];
                let status = [500, 502, 503, 504][rng.random_range(0..4)];
                let times = rng.random_range(1..=2);
                emu.inject(Fault::HttpStatus {
                    endpoint,
                    status,
                    retry_after: None,
                    times,
                });
                drop_socket(emu);
                imposed = RECONNECT_ALLOWANCE * times as u32;
                format!("{status} on {endpoint:?}")
            }
            Class::TokenRevoked => {
                emu.inject(Fault::ExpireTokens);
                drop_socket(emu);
                self.ledger.token_revocations += 1;
                "tokens revoked (401)".into()
            }
            Class::Takeover => {
                emu.inject(Fault::Takeover {
                    channel_id: id.clone(),
                });
                "takeover".into()
            }
            Class::Malformed => {
                ends_socket = false;
                match rng.random_range(0..3) {
                    0 => emu.inject(Fault::MalformedJson {
                        target: target.clone(),
                    }),
                    1 => emu.inject(Fault::BinaryFrame {
                        target: target.clone(),
                        data: vec![0xde, 0xad, 0xbe, 0xef],
                    }),
                    _ => {
                        emu.send_frame(&id, Frame::Text(r#"{"eventBody":{"seq":1}}"#.into()));
                    }
                }
                "malformed frame".into()
            }
            Class::Fragmented => {
                ends_socket = false;
                let size = rng.random_range(1..=64);
                emu.inject(Fault::FragmentEvents {
                    target: target.clone(),
                    events: 50,
                    fragment_size: size,
                });
                "fragmented events".into()
            }
        };
        if ends_socket {
            imposed += RECONNECT_ALLOWANCE;
        }
        self.ledger.imposed += imposed;
        *self.ledger.by_class.entry(class).or_default() += 1;
        self.ledger.injected.push((SystemTime::now(), class));
        *self.ledger.details.entry(name).or_default() += 1;
    }

    /// Waits until every channel of the client is connected, on the client's side and on the
    /// emulator's.
    fn all_connected(&self, timeout: Duration) -> bool {
        wait_until(timeout, || {
            let health = self.client.health();
            let live = self.emu.channels();
            health.channels().len() == CHANNELS
                && health
                    .channels()
                    .iter()
                    .all(|c| c.state == ChannelState::Connected)
                && live.len() == CHANNELS
                && live.iter().all(|c| c.connected)
        })
    }

    /// No socket ended and no channel was created in the last `period`.
    fn quiet_for(&self, period: Duration) -> bool {
        let count = || {
            self.rec.count(|e| {
                matches!(
                    e,
                    Lifecycle::Disconnected { .. }
                        | Lifecycle::ChannelCreated { .. }
                        | Lifecycle::ChannelReplaced { .. }
                )
            })
        };
        let before = count();
        std::thread::sleep(period);
        count() == before && self.all_connected(Duration::ZERO)
    }

    fn gaps(&self) -> Vec<(SystemTime, SystemTime, Vec<String>)> {
        self.rec
            .snapshot()
            .into_iter()
            .filter_map(|e| match e {
                Lifecycle::Gap {
                    start, end, topics, ..
                } => Some((start, end, topics.iter().flat_map(Topic::expand).collect())),
                _ => None,
            })
            .collect()
    }
}

fn publish(
    emu: &Emulator,
    published: &Mutex<Vec<Published>>,
    topics: &[String],
    topic: usize,
    seq: u64,
    last: bool,
) {
    let before = SystemTime::now();
    emu.publish(
        &topics[topic],
        serde_json::json!({"seq": seq, "source": "chaos"}),
    );
    let after = SystemTime::now();
    published.lock().push(Published {
        topic,
        seq,
        before,
        after,
        last,
    });
}

#[test]
fn chaos_soak() {
    let settings = Settings::from_env();
    eprintln!(
        "chaos: CHAOS_SEED={} CHAOS_SECS={} CHAOS_EDGE_MS={} CHAOS_MAX_OUTAGE_RATIO={}",
        settings.seed,
        settings.duration.as_secs(),
        settings.edge.as_millis(),
        settings.max_outage_ratio
    );
    let mut soak = Soak::start(settings.seed);
    let token_requests_at_start = soak.emu.token_requests();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = soak.publisher(stop.clone());

    // Faults: a random one every 1.5-4 s, the classes dealt from a shuffled deck so that each
    // comes once before any comes twice.
    let started = Instant::now();
    let mut deck: Vec<Class> = Vec::new();
    loop {
        let pause = Duration::from_millis(soak.rng.random_range(1500..4000));
        if started.elapsed() + pause >= settings.duration {
            break;
        }
        std::thread::sleep(pause);
        if deck.is_empty() {
            deck = CLASSES.to_vec();
            deck.shuffle(&mut soak.rng);
        }
        let class = deck.pop().unwrap();
        soak.inject(class);
    }
    let fault_phase = started.elapsed();

    // Recovery: the last fault's delayed effects play out (a socket_closing's close comes up to
    // 3 s later, a silence is noticed after about 1.3 s, a Retry-After lasts up to 2 s), every
    // channel is connected again, and no socket ended for 2 s; events flow all along.
    std::thread::sleep(Duration::from_secs(4));
    let recovered = wait_until(Duration::from_secs(60), || {
        soak.all_connected(Duration::ZERO) && soak.quiet_for(Duration::from_secs(2))
    });
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    assert!(
        recovered,
        "the client ends connected: {:#?}\nemulator: {:#?}",
        soak.client.health().channels(),
        soak.emu.channels()
    );
    // A final batch, with no fault: every event of it must arrive.
    let mut seq = soak.published.lock().last().map_or(0, |p| p.seq + 1);
    for _ in 0..FINAL_PER_TOPIC {
        for topic in 0..soak.publish_topics.len() {
            publish(
                &soak.emu,
                &soak.published,
                &soak.publish_topics,
                topic,
                seq,
                true,
            );
            seq += 1;
        }
    }
    let expected_final: usize = soak
        .listeners
        .iter()
        .map(|l| {
            soak.publish_topics
                .iter()
                .filter(|t| l.pattern.matches(t))
                .count()
                * FINAL_PER_TOPIC
        })
        .sum();
    let first_final = seq - (FINAL_PER_TOPIC * soak.publish_topics.len()) as u64;
    let final_delivered = |soak: &Soak| -> usize {
        soak.listeners
            .iter()
            .map(|l| {
                l.deliveries
                    .lock()
                    .iter()
                    .filter(|d| d.seq >= first_final && d.seq != u64::MAX)
                    .count()
            })
            .sum()
    };
    let final_ok = wait_until(Duration::from_secs(30), || {
        final_delivered(&soak) >= expected_final
    });
    // Let whatever is still queued settle (bounded).
    let mut last_total = usize::MAX;
    let settle_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle_until {
        let total: usize = soak
            .listeners
            .iter()
            .map(|l| l.deliveries.lock().len())
            .sum();
        if total == last_total {
            break;
        }
        last_total = total;
        std::thread::sleep(Duration::from_millis(300));
    }
    let health = soak.client.health();
    soak.client.shutdown(Duration::from_secs(10)).unwrap();

    // ---- Analysis ----
    let gaps = soak.gaps();
    let published = std::mem::take(&mut *soak.published.lock());
    let by_seq: HashMap<u64, &Published> = published.iter().map(|p| (p.seq, p)).collect();
    let edge = settings.edge;
    let in_gap = |p: &Published, edge: Duration| {
        let topic = &soak.publish_topics[p.topic];
        gaps.iter().any(|(start, end, topics)| {
            topics.iter().any(|t| t == topic) && p.after + edge >= *start && p.before <= *end + edge
        })
    };
    let mut violations: Vec<String> = Vec::new();
    let (mut delivered, mut lost_in_gaps, mut lost_at_edges, mut duplicates, mut inversions) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut inversions_in_switches = 0usize;
    for (li, listener) in soak.listeners.iter().enumerate() {
        let deliveries = listener.deliveries.lock();
        let mut count: HashMap<u64, usize> = HashMap::new();
        let mut last_per_topic: HashMap<&str, u64> = HashMap::new();
        for d in deliveries.iter() {
            let Some(p) = by_seq.get(&d.seq) else {
                violations.push(format!("listener {li}: unknown event seq {}", d.seq));
                continue;
            };
            let topic = &soak.publish_topics[p.topic];
            if &d.topic != topic || !listener.pattern.matches(topic) {
                violations.push(format!(
                    "listener {li} ({}): seq {} delivered as {} (published on {topic})",
                    listener.pattern, d.seq, d.topic
                ));
            }
            *count.entry(d.seq).or_default() += 1;
            if let Some(&prev) = last_per_topic.get(topic.as_str()) {
                if d.seq < prev {
                    let during_switch = soak
                        .ledger
                        .switches
                        .iter()
                        .any(|(from, to)| p.before >= *from && p.before <= *to);
                    if during_switch {
                        inversions_in_switches += 1;
                    } else {
                        inversions += 1;
                        if inversions <= 10 {
                            violations.push(format!(
                                "listener {li}: {topic}: seq {} delivered after seq {prev}",
                                d.seq
                            ));
                        }
                    }
                }
            }
            let entry = last_per_topic.entry(topic.as_str()).or_insert(d.seq);
            *entry = (*entry).max(d.seq);
        }
        let mut lost_here = 0;
        for p in &published {
            if !listener.pattern.matches(&soak.publish_topics[p.topic]) {
                continue;
            }
            match count.get(&p.seq).copied().unwrap_or(0) {
                1 => delivered += 1,
                0 if p.last => violations.push(format!(
                    "listener {li}: final-batch seq {} on {} never delivered",
                    p.seq, soak.publish_topics[p.topic]
                )),
                0 if in_gap(p, Duration::ZERO) => lost_in_gaps += 1,
                0 if in_gap(p, edge) => lost_at_edges += 1,
                0 => {
                    lost_here += 1;
                    if lost_here <= 10 {
                        violations.push(format!(
                            "listener {li}: seq {} on {} published at {:?} lost with no Gap",
                            p.seq,
                            soak.publish_topics[p.topic],
                            p.before
                                .duration_since(SystemTime::UNIX_EPOCH)
                                .unwrap_or_default()
                        ));
                    }
                }
                n => {
                    duplicates += 1;
                    if duplicates <= 10 {
                        violations.push(format!(
                            "listener {li}: seq {} on {} delivered {n} times",
                            p.seq, soak.publish_topics[p.topic]
                        ));
                    }
                }
            }
        }
        if lost_here > 10 {
            violations.push(format!(
                "listener {li}: {lost_here} events lost with no Gap in all"
            ));
        }
    }

    // Time without a socket: the sum of the gaps the client reported.
    let without_socket: Duration = gaps
        .iter()
        .map(|(start, end, _)| end.duration_since(*start).unwrap_or_default())
        .sum();
    let imposed = soak.ledger.imposed.max(Duration::from_millis(1));
    let ratio = without_socket.as_secs_f64() / imposed.as_secs_f64();
    let removals = soak.emu.removed_channels().len();
    let creations: Vec<u16> = soak
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/v2/notifications/channels"))
        .map(|r| r.status)
        .collect();
    let created = creations.iter().filter(|s| **s == 200).count();
    let token_requests = soak.emu.token_requests() - token_requests_at_start;
    let faults: usize = soak.ledger.by_class.values().sum();

    eprintln!(
        "chaos: seed {} ran {:.0} s of faults",
        settings.seed,
        fault_phase.as_secs_f64()
    );
    eprintln!(
        "chaos: {faults} faults injected ({} found no socket):",
        soak.ledger.missed
    );
    for (class, n) in &soak.ledger.by_class {
        eprintln!("chaos:   {n:4} x {class:?}");
    }
    let details: Vec<String> = soak
        .ledger
        .details
        .iter()
        .map(|(name, n)| format!("{n} x {name}"))
        .collect();
    eprintln!("chaos: in detail: {}", details.join(", "));
    eprintln!(
        "chaos: {} events published, {} deliveries expected by listeners: {delivered} delivered once, \
         {lost_in_gaps} lost inside reported gaps, {lost_at_edges} within {} ms of a gap's edge, \
         {duplicates} duplicated, {inversions} out of order ({inversions_in_switches} during \
         socket_closing switches)",
        published.len(),
        delivered + lost_in_gaps + lost_at_edges,
        edge.as_millis()
    );
    eprintln!(
        "chaos: {} gaps; time without socket {:.1} s, imposed outage {:.1} s: ratio {ratio:.2} \
         (bound {})",
        gaps.len(),
        without_socket.as_secs_f64(),
        imposed.as_secs_f64(),
        settings.max_outage_ratio
    );
    // Each gap charged to the last fault injected before it started (faults are 1.5 s apart
    // or more; a silent socket's gap starts at its last frame, before the fault is noticed).
    let mut per_class: BTreeMap<Class, (usize, Duration)> = BTreeMap::new();
    for (start, end, _) in &gaps {
        let cause = soak
            .ledger
            .injected
            .iter()
            .rev()
            .find(|(at, _)| *at <= *start + Duration::from_millis(500))
            .map(|(_, class)| *class);
        if let Some(class) = cause {
            let entry = per_class.entry(class).or_default();
            entry.0 += 1;
            entry.1 += end.duration_since(*start).unwrap_or_default();
        }
    }
    let breakdown: Vec<String> = per_class
        .iter()
        .map(|(class, (n, total))| {
            format!(
                "{class:?} {n} gaps {:.2} s avg",
                total.as_secs_f64() / *n as f64
            )
        })
        .collect();
    eprintln!("chaos: gaps by likely cause: {}", breakdown.join(", "));
    eprintln!(
        "chaos: channel creations {created} ok / {} attempted for {CHANNELS} channels + {removals} \
         removed; token requests {token_requests} for {} revocations; malformed frames counted {}; \
         dropped {}; lifecycle dropped {}",
        creations.len(),
        soak.ledger.token_revocations,
        health.malformed(),
        health.dropped(),
        health.lifecycle_dropped()
    );

    assert!(
        final_ok,
        "final batch: {} of {expected_final} deliveries",
        final_delivered(&soak)
    );
    if !final_ok {
        let tail: Vec<String> = soak
            .rec
            .snapshot()
            .iter()
            .rev()
            .take(40)
            .map(|e| format!("{e:?}"))
            .collect();
        panic!(
            "seed {}: final batch: {} of {expected_final} deliveries\n{}\nemulator channels: \
             {:#?}\nclient channels: {:#?}\nlast lifecycle events (newest first):\n{}",
            settings.seed,
            final_delivered(&soak),
            violations.join("\n"),
            soak.emu.channels(),
            health.channels(),
            tail.join("\n")
        );
    }
    assert!(
        violations.is_empty(),
        "seed {}: {} violations:\n{}",
        settings.seed,
        violations.len(),
        violations.join("\n")
    );
    assert_eq!(health.dropped(), 0, "nothing dropped by backpressure");
    assert_eq!(
        health.lifecycle_dropped(),
        0,
        "no lifecycle event (Gap) dropped"
    );
    assert!(
        delivered > published.len(),
        "events flowed: {delivered} deliveries"
    );
    // Channel creations: one per channel at start, one per channel removed (eviction, expiry),
    // nothing else; failed attempts only for the token revocations that hit a creation.
    assert_eq!(created, CHANNELS + removals, "one new channel per removal");
    assert!(
        creations.len() <= created + soak.ledger.token_revocations,
        "failed creations: {creations:?}"
    );
    // Token requests: one per revocation, at most one per channel per revocation.
    assert!(
        token_requests <= soak.ledger.token_revocations * CHANNELS,
        "{token_requests} token requests for {} revocations",
        soak.ledger.token_revocations
    );
    assert!(
        ratio <= settings.max_outage_ratio,
        "time without socket {without_socket:?} is {ratio:.2} x the imposed outage {imposed:?}"
    );
}
