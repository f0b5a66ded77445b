//! Helpers shared by the recovery tests (issue #3): a client with scaled-down liveness timings,
//! a listener that records event sequence numbers, and checks on the order of lifecycle events.
//! Used together with `tests/util`.
#![allow(dead_code)] // each test file uses a different subset of these helpers

use crate::util::*;
use genesys_notify::emulator::Emulator;
use genesys_notify::{Client, ClientBuilder, Lifecycle, ListenerGuard};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "soon" on a slow, shared machine.
pub const SOON: Duration = Duration::from_secs(10);

/// [`builder`] with liveness timings scaled down (ping after 300 ms idle, pong within 300 ms,
/// dead after 1 s of silence).
pub fn fast(emu: &Emulator) -> ClientBuilder {
    builder(emu)
        .ping_interval(Duration::from_millis(300))
        .pong_timeout(Duration::from_millis(300))
        .liveness_timeout(Duration::from_secs(1))
}

/// A running client with one channel, its socket registered: the usual start of a recovery test.
///
/// The fields are declared in the reverse order of their creation so that they drop as the
/// locals of a test would: the listeners first, then the client, the emulator last.
pub struct OneChannel {
    /// The id of the client's only channel.
    pub id: String,
    /// The presence topics subscribed, `presence_topics(n)`.
    pub topics: Vec<String>,
    /// The presence events delivered.
    pub seqs: Seqs,
    /// The client's lifecycle events.
    pub rec: Recorder,
    pub client: Client,
    /// Shared, so that a test can publish from another thread.
    pub emu: Arc<Emulator>,
}

impl OneChannel {
    /// A fresh emulator and a client from [`fast`], changed by `customise` (pass `|b| b` to keep
    /// it), subscribed to one presence topic.
    pub fn start(customise: impl FnOnce(ClientBuilder) -> ClientBuilder) -> OneChannel {
        OneChannel::start_on(emulator(), 1, |emu| customise(fast(emu)))
    }

    /// A client from `client(&emu)` on `emu` (started by the test, with its own configuration
    /// or faults), subscribed to `presence_topics(topics)`; waits until the emulator has the
    /// channel's socket.
    pub fn start_on(
        emu: Emulator,
        topics: usize,
        client: impl FnOnce(&Emulator) -> ClientBuilder,
    ) -> OneChannel {
        let client = client(&emu).build().unwrap();
        let rec = Recorder::new(&client);
        let seqs = Seqs::new(&client);
        let topics = presence_topics(topics);
        let _ = client.subscribe(&topics).unwrap();
        wait_registered(&emu);
        let id = channel_id(&client);
        OneChannel {
            id,
            topics,
            seqs,
            rec,
            client,
            emu: Arc::new(emu),
        }
    }
}

/// Records the `seq` of every live presence event delivered, in delivery order. Snapshots
/// are skipped: after each gap the client reads the users' presence over REST and delivers it
/// as a snapshot event (`Event::is_snapshot`), in the REST shape, which has no `seq`; once a
/// test has published a presence, the emulator answers those reads, so a reconnect racing
/// with a publish delivers one.
pub struct Seqs {
    pub seen: Arc<Mutex<Vec<u64>>>,
    _guard: ListenerGuard,
}

impl Seqs {
    pub fn new(client: &Client) -> Seqs {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let guard = client
            .on("v2.users.*.presence", move |e| {
                if e.is_snapshot() {
                    return;
                }
                let seq = e.body_value().unwrap()["seq"].as_u64().unwrap();
                sink.lock().push(seq);
            })
            .expect("listener");
        Seqs {
            seen,
            _guard: guard,
        }
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.seen.lock().contains(&seq)
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.seen.lock().clone()
    }
}

/// Publishes `seq` on `topic` until the listener has it (a publish made while the client is
/// between sockets is lost by design: that is what `Gap` reports). Returns whether it arrived
/// within [`SOON`].
pub fn flows(emu: &Emulator, topic: &str, seqs: &Seqs, seq: u64) -> bool {
    let deadline = Instant::now() + SOON;
    while Instant::now() < deadline {
        if emu.publish(topic, presence_body(seq)) > 0
            && wait_until(Duration::from_millis(500), || seqs.contains(seq))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seqs.contains(seq)
}

/// The variant name of a lifecycle event.
pub fn kind(e: &Lifecycle) -> &'static str {
    match e {
        Lifecycle::ChannelCreated { .. } => "ChannelCreated",
        Lifecycle::ChannelReplaced { .. } => "ChannelReplaced",
        Lifecycle::Connected { .. } => "Connected",
        Lifecycle::Disconnected { .. } => "Disconnected",
        Lifecycle::Reconnecting { .. } => "Reconnecting",
        Lifecycle::Gap { .. } => "Gap",
        Lifecycle::Subscribed { .. } => "Subscribed",
        Lifecycle::Unsubscribed { .. } => "Unsubscribed",
        Lifecycle::DuplicateSubscription { .. } => "DuplicateSubscription",
        Lifecycle::RetryBudgetExhausted { .. } => "RetryBudgetExhausted",
        Lifecycle::PermanentFailure { .. } => "PermanentFailure",
        Lifecycle::TokenRefreshed { .. } => "TokenRefreshed",
        Lifecycle::TokenRefreshFailed { .. } => "TokenRefreshFailed",
        Lifecycle::RequestFailed { .. } => "RequestFailed",
        Lifecycle::MalformedMessage { .. } => "MalformedMessage",
        Lifecycle::UnroutedMessage { .. } => "UnroutedMessage",
        Lifecycle::Dropped { .. } => "Dropped",
        Lifecycle::ListenerPanicked { .. } => "ListenerPanicked",
        Lifecycle::TooManyListeners { .. } => "TooManyListeners",
        Lifecycle::SystemMessage { .. } => "SystemMessage",
        _ => "Other",
    }
}

/// The variant names of `events`, without the noise of ping-level events.
pub fn kinds(events: &[Lifecycle]) -> Vec<&'static str> {
    events.iter().map(kind).collect()
}

/// Asserts that `events` contains `expected` (variant names) as a subsequence, in that order.
pub fn assert_in_order(events: &[Lifecycle], expected: &[&str]) {
    let names = kinds(events);
    let mut at = 0;
    for want in expected {
        match names[at..].iter().position(|n| n == want) {
            Some(i) => at += i + 1,
            None => panic!("expected {expected:?} in order, got {names:?}"),
        }
    }
}

/// The lifecycle events recorded after the first `from` ones.
pub fn since(rec: &Recorder, from: usize) -> Vec<Lifecycle> {
    rec.snapshot().into_iter().skip(from).collect()
}

/// The id of the client's only channel.
pub fn channel_id(client: &Client) -> String {
    client.health().channels()[0]
        .channel
        .as_ref()
        .expect("a channel")
        .as_str()
        .to_owned()
}

/// Number of `Connected` events so far.
pub fn connected_count(rec: &Recorder) -> usize {
    rec.count(|e| matches!(e, Lifecycle::Connected { .. }))
}

/// Checks the socket log never had two sockets of one channel open at once: every `Connected`
/// of a channel comes after the `Disconnected` of its previous socket.
pub fn assert_sequential_sockets(emu: &Emulator) {
    use genesys_notify::emulator::SocketEventKind;
    use std::collections::HashMap;
    let mut open: HashMap<String, u64> = HashMap::new();
    for r in emu.socket_log() {
        match r.kind {
            SocketEventKind::Connected => {
                if let Some(other) = open.insert(r.channel_id.clone(), r.connection) {
                    panic!(
                        "connection {} of a channel opened while connection {other} was live",
                        r.connection
                    );
                }
            }
            SocketEventKind::Disconnected if open.get(&r.channel_id) == Some(&r.connection) => {
                open.remove(&r.channel_id);
            }
            _ => {}
        }
    }
}

/// The largest number of sockets of one channel open at the same time, per the socket log.
pub fn max_concurrent_sockets(emu: &Emulator) -> usize {
    use genesys_notify::emulator::SocketEventKind;
    use std::collections::{HashMap, HashSet};
    let mut open: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut max = 0;
    for r in emu.socket_log() {
        let set = open.entry(r.channel_id.clone()).or_default();
        match r.kind {
            SocketEventKind::Connected => {
                set.insert(r.connection);
            }
            SocketEventKind::Disconnected => {
                set.remove(&r.connection);
            }
            _ => {}
        }
        max = max.max(set.len());
    }
    max
}

/// Waits until every live channel of the emulator has its socket registered: `subscribe` may
/// return a moment before the emulator records the socket, and socket faults and `publish`
/// skip channels without one.
pub fn wait_registered(emu: &Emulator) {
    assert!(
        emu.wait_for(SOON, |emu| {
            let live = emu.channels();
            !live.is_empty() && live.iter().all(|c| c.connected)
        }),
        "no socket registered: {:#?}",
        emu.channels()
    );
}
