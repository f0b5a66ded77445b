//! Shared state of the emulator: tokens, channels, subscriptions, pending faults and records,
//! behind one mutex; plus the janitor thread (channel expiry, delayed closes). It never reads
//! or writes a socket (the connections' threads carry out what it queues). Fault injection
//! lives in inject.rs, topic validation and subscription answers in topics.rs.

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::fault::Endpoint;
use super::topics::{dedup, entity, expand_topic, parse_topics};
use super::{
    ChannelRecord, ChannelRemoval, EmulatorConfig, RequestRecord, SocketEventKind, SocketRecord,
    CLOSE_CHANNEL_EVICTED, CLOSE_CHANNEL_EXPIRED,
};

/// Far enough in the future to mean "never" without overflowing `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a connection's writer thread is asked to do, in order.
pub(crate) enum Out {
    /// A published notification (subject to fragmentation and silence).
    Event(Arc<str>),
    /// A raw text frame.
    Text(String),
    /// A raw binary frame.
    Binary(Vec<u8>),
    /// An RFC 6455 ping frame.
    Ping(Vec<u8>),
    /// An RFC 6455 pong frame answering a client ping.
    Pong(Vec<u8>),
    /// The `channel.metadata` pong answering `{"message":"ping"}`.
    AppPong,
    /// Close the socket with a close frame (server-initiated); `None`: empty payload (no code).
    Close { code: Option<u16>, reason: String },
    /// Close the TCP connection without a close frame (FIN).
    Drop,
    /// Abort the TCP connection (linger 0, then close: RST).
    Reset,
    /// Send nothing from now on.
    Silent,
    /// Fragment the next `events` events into frames of `size` bytes.
    Fragment { events: usize, size: usize },
    /// The client sent a close frame with this code: answer it.
    ClientClosed(Option<u16>),
    /// The reader thread is done: close TCP and stop.
    ReaderDone,
    /// The emulator is dropped: close with 1001 and stop.
    Shutdown,
}

/// One accepted WebSocket connection.
pub(crate) struct Conn {
    pub channel_id: String,
    pub tx: Sender<Out>,
    /// A clone of the TCP stream, to cut it on drop.
    pub stream: TcpStream,
    /// The server sent its close frame: once the client's side ends too, the connection is over
    /// and nothing more is recorded for it.
    pub server_closed: bool,
}

/// One live channel.
pub(crate) struct Channel {
    pub id: String,
    pub connect_uri: String,
    /// As subscribed (client's spelling), deduplicated case-insensitively. Changed only
    /// through [`Channel::set_topics`] and [`Channel::add_topics`], which keep the fields below
    /// in step.
    pub topics: Vec<String>,
    /// Lower-cased individual topic names (combined topics expanded).
    pub expanded: HashSet<String>,
    /// `topics` lower-cased: a `POST` checks its topics against it, not against the list.
    lowered: HashSet<String>,
    /// `topics` as the entities of a subscription answer (`{"id":..,"state":"Permitted"}`,
    /// comma-separated): the answer lists every topic of the channel (docs/protocol.md), and
    /// serialising up to 1 000 of them for each call cost more than the call's own work.
    listing: String,
    pub created: SystemTime,
    pub expires: SystemTime,
    pub deadline: Instant,
    pub last_used: Instant,
    pub connections: usize,
    /// The connection currently attached, if any.
    pub conn: Option<u64>,
}

impl Channel {
    pub fn record(&self) -> ChannelRecord {
        ChannelRecord {
            id: self.id.clone(),
            connect_uri: self.connect_uri.clone(),
            topics: self.topics.clone(),
            connected: self.conn.is_some(),
            connections: self.connections,
            expires: self.expires,
            created: self.created,
            removed: None,
        }
    }

    /// Replaces the topics (already deduplicated).
    fn set_topics(&mut self, topics: Vec<String>) {
        self.topics.clear();
        self.expanded.clear();
        self.lowered.clear();
        self.listing.clear();
        self.add_topics(topics);
    }

    /// Adds topics not subscribed yet (checked by the caller).
    fn add_topics(&mut self, added: Vec<String>) {
        for topic in added {
            self.expanded.extend(expand_topic(&topic));
            self.lowered.insert(topic.to_lowercase());
            if !self.listing.is_empty() {
                self.listing.push(',');
            }
            self.listing.push_str(&entity(&topic, None));
            self.topics.push(topic);
        }
    }

    /// Whether `topic` is subscribed (case-insensitive).
    fn has_topic(&self, topic: &str) -> bool {
        self.lowered.contains(&topic.to_lowercase())
    }

    /// The subscription answer: every topic of the channel, then `rejected` (topic and missing
    /// permissions).
    fn answer(&self, rejected: &[(String, Vec<String>)]) -> String {
        let mut out = String::with_capacity(self.listing.len() + 20 + 160 * rejected.len());
        out.push_str("{\"entities\":[");
        out.push_str(&self.listing);
        for (topic, missing) in rejected {
            if out.len() > "{\"entities\":[".len() {
                out.push(',');
            }
            out.push_str(&entity(topic, Some(missing)));
        }
        out.push_str("]}");
        out
    }

    fn extend(&mut self, lifetime: Duration, now: Instant) {
        self.deadline = later(now, lifetime);
        self.expires = SystemTime::now()
            .checked_add(lifetime)
            .unwrap_or_else(|| SystemTime::now() + FAR_FUTURE);
    }
}

/// A counted HTTP fault.
pub(crate) struct HttpFault {
    pub endpoint: Endpoint,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub remaining: usize,
}

/// An error answer of the REST API.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

/// Methods of the subscriptions endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubMethod {
    Get,
    Put,
    Post,
    Delete,
}

/// Everything mutable.
#[derive(Default)]
pub(crate) struct State {
    /// Token → instant it stops working.
    pub tokens: HashMap<String, Instant>,
    pub token_requests: usize,
    /// Live channels in creation order.
    pub channels: Vec<Channel>,
    pub removed: Vec<ChannelRecord>,
    /// Lower-cased topic → missing permissions.
    pub denied: HashMap<String, Vec<String>>,
    pub requests: Vec<RequestRecord>,
    pub socket_log: Vec<SocketRecord>,
    pub http_faults: Vec<HttpFault>,
    /// Users' presence and routing status, and the state resources' settings.
    pub resources: super::resources::Resources,
    pub refuse_handshakes: usize,
    pub hang_handshakes: usize,
    /// Connections past the handshake, by connection number.
    pub conns: HashMap<u64, Conn>,
    /// Connections before or without a handshake (to cut them on drop).
    pub pending: HashMap<u64, TcpStream>,
    /// Delayed messages to connections.
    pub scheduled: Vec<(Instant, u64, Out)>,
    pub next_conn: u64,
    /// `ws://127.0.0.1:<port>`, or [`EmulatorConfig::connect_uri_base`].
    ws_base: String,
    channel_lifetime: Duration,
    max_channels: usize,
    max_topics: usize,
}

/// State plus what threads share.
pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub state: Mutex<State>,
    pub shutdown: AtomicBool,
    /// Wakes the janitor (state changed, or shutdown).
    pub wake: Sender<()>,
    /// Connection threads, joined on drop.
    pub threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub fn new(config: EmulatorConfig, ws_port: u16, wake: Sender<()>) -> Shared {
        let state = State {
            ws_base: config
                .connect_uri_base
                .clone()
                .unwrap_or_else(|| format!("ws://127.0.0.1:{ws_port}")),
            channel_lifetime: config.channel_lifetime,
            max_channels: config.max_channels,
            max_topics: config.max_topics_per_channel,
            ..State::default()
        };
        Shared {
            config,
            state: Mutex::new(state),
            shutdown: AtomicBool::new(false),
            wake,
            threads: Mutex::new(Vec::new()),
        }
    }

    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Spawns a connection thread whose handle is joined on drop.
    pub fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let handle = std::thread::Builder::new().name(name).spawn(f)?;
        let mut threads = self.threads.lock();
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
        Ok(())
    }
}

/// `now + d`, saturating far in the future.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// A random version-4 UUID, lower-case hex with dashes.
pub(crate) fn uuid() -> String {
    let mut v: u128 = rand::random();
    v = (v & !(0xF << 76)) | (0x4 << 76);
    v = (v & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl State {
    pub fn log(&mut self, channel_id: &str, connection: u64, kind: SocketEventKind) {
        self.socket_log.push(SocketRecord {
            channel_id: channel_id.to_owned(),
            connection,
            at: Instant::now(),
            kind,
        });
    }

    /// Issues a token; returns it and `expires_in` (whole seconds, at least 1).
    pub fn issue_token(&mut self, config: &EmulatorConfig) -> (String, u64) {
        let token = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        let expiry = later(Instant::now(), config.token_lifetime);
        self.tokens.insert(token.clone(), expiry);
        (token, config.token_lifetime.as_secs().max(1))
    }

    pub fn token_valid(&self, token: &str, now: Instant) -> bool {
        self.tokens.get(token).is_some_and(|exp| now < *exp)
    }

    /// Consumes one matching HTTP fault, oldest first: `(status, retry_after)`.
    pub fn take_http_fault(&mut self, endpoint: Option<Endpoint>) -> Option<(u16, Option<u64>)> {
        let idx = self.http_faults.iter().position(|f| match endpoint {
            Some(Endpoint::WebSocketHandshake) => f.endpoint == Endpoint::WebSocketHandshake,
            Some(e) => f.endpoint == e || f.endpoint == Endpoint::AnyHttp,
            None => f.endpoint == Endpoint::AnyHttp,
        })?;
        let f = &mut self.http_faults[idx];
        let answer = (f.status, f.retry_after);
        f.remaining -= 1;
        if f.remaining == 0 {
            self.http_faults.remove(idx);
        }
        Some(answer)
    }

    pub fn channel_mut(&mut self, id: &str) -> Option<&mut Channel> {
        self.channels.iter_mut().find(|c| c.id == id)
    }

    /// Queues `out` to the socket of channel `id`; false if none.
    pub fn send_to_channel(&self, id: &str, out: Out) -> bool {
        let Some(conn) = self
            .channels
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.conn)
        else {
            return false;
        };
        self.conns
            .get(&conn)
            .is_some_and(|c| c.tx.send(out).is_ok())
    }

    pub fn send_to_conn(&self, conn: u64, out: Out) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.tx.send(out).is_ok())
    }

    /// Removes a live channel, closing its socket.
    pub fn remove_channel(&mut self, id: &str, why: ChannelRemoval) -> bool {
        let Some(idx) = self.channels.iter().position(|c| c.id == id) else {
            return false;
        };
        let ch = self.channels.remove(idx);
        if let Some(conn) = ch.conn {
            let (code, reason) = match why {
                ChannelRemoval::Evicted => (CLOSE_CHANNEL_EVICTED, "channel evicted"),
                ChannelRemoval::Expired => (CLOSE_CHANNEL_EXPIRED, "channel expired"),
            };
            self.send_to_conn(
                conn,
                Out::Close {
                    code: Some(code),
                    reason: reason.into(),
                },
            );
        }
        let mut rec = ch.record();
        rec.connected = false;
        rec.removed = Some(why);
        log::debug!("emulator: channel {} removed ({why:?})", short(&ch.id));
        self.removed.push(rec);
        true
    }

    /// Expires channels and runs delayed actions that are due.
    pub fn sweep(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .channels
            .iter()
            .filter(|c| c.deadline <= now)
            .map(|c| c.id.clone())
            .collect();
        for id in expired {
            self.remove_channel(&id, ChannelRemoval::Expired);
        }
        if self.scheduled.iter().any(|(at, _, _)| *at <= now) {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scheduled)
                .into_iter()
                .partition(|(at, _, _)| *at <= now);
            self.scheduled = later;
            for (_, conn, out) in due {
                self.send_to_conn(conn, out);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let channels = self.channels.iter().map(|c| c.deadline);
        let scheduled = self.scheduled.iter().map(|(at, _, _)| *at);
        channels.chain(scheduled).min()
    }

    /// Creates a channel, evicting one first if the limit is reached.
    pub fn create_channel(&mut self, now: Instant) -> &Channel {
        while self.channels.len() >= self.max_channels {
            let victim = self
                .channels
                .iter()
                .filter(|c| c.conn.is_none())
                .min_by_key(|c| c.last_used)
                .or_else(|| self.channels.iter().min_by_key(|c| c.last_used))
                .map(|c| c.id.clone());
            match victim {
                Some(id) => self.remove_channel(&id, ChannelRemoval::Evicted),
                None => break,
            };
        }
        let id = format!("streaming-0-{:026x}", rand::random::<u128>() >> 24);
        let mut ch = Channel {
            connect_uri: format!("{}/channels/{id}", self.ws_base),
            id,
            topics: Vec::new(),
            expanded: HashSet::new(),
            lowered: HashSet::new(),
            listing: String::new(),
            created: SystemTime::now(),
            expires: SystemTime::now(),
            deadline: now,
            last_used: now,
            connections: 0,
            conn: None,
        };
        ch.extend(self.channel_lifetime, now);
        self.channels.push(ch);
        self.channels.last().expect("just pushed")
    }

    /// The subscriptions endpoint: the JSON answer; `Ok(None)` means 200 with an empty body.
    pub fn subscriptions(
        &mut self,
        id: &str,
        method: SubMethod,
        body: &str,
        ignore_errors: bool,
        now: Instant,
    ) -> Result<Option<String>, ApiError> {
        let max_topics = self.max_topics;
        let lifetime = self.channel_lifetime;
        if self.channel_mut(id).is_none() {
            return Err(ApiError::new(
                404,
                "not.found",
                format!("Channel {id} not found"),
            ));
        }
        let requested = match method {
            SubMethod::Put | SubMethod::Post => parse_topics(body)?,
            SubMethod::Get | SubMethod::Delete => Vec::new(),
        };
        // Per-topic permission check.
        let mut permitted = Vec::new();
        let mut rejected = Vec::new();
        for topic in requested {
            let mut missing: Vec<String> = Vec::new();
            let mut names = expand_topic(&topic);
            names.push(topic.to_lowercase());
            for name in &names {
                if let Some(perms) = self.denied.get(name) {
                    for p in perms {
                        if !missing.contains(p) {
                            missing.push(p.clone());
                        }
                    }
                }
            }
            let denied = names.iter().any(|n| self.denied.contains_key(n));
            if denied {
                rejected.push((topic, missing));
            } else {
                permitted.push(topic);
            }
        }
        if !ignore_errors && !rejected.is_empty() {
            let names: Vec<&str> = rejected.iter().map(|(t, _)| t.as_str()).collect();
            return Err(ApiError::new(
                403,
                "notification.unauthorized.topic",
                format!(
                    "Not authorized to subscribe to topic(s): {}",
                    names.join(", ")
                ),
            ));
        }
        let ch = self.channel_mut(id).expect("checked above");
        ch.last_used = now;
        let new_topics = match method {
            SubMethod::Get => return Ok(Some(ch.answer(&[]))),
            SubMethod::Delete => {
                ch.set_topics(Vec::new());
                return Ok(None);
            }
            SubMethod::Put => dedup(Vec::new(), permitted),
            SubMethod::Post => {
                // Adds in place: the cost of a POST follows its own topics, not the channel's.
                let added: Vec<String> = dedup(Vec::new(), permitted)
                    .into_iter()
                    .filter(|t| !ch.has_topic(t))
                    .collect();
                if ch.topics.len() + added.len() > max_topics {
                    return Err(ApiError::new(
                        400,
                        "notification.subscription.limit.exceeded",
                        format!(
                            "A channel may subscribe at most {max_topics} topics; this request would make {}",
                            ch.topics.len() + added.len()
                        ),
                    ));
                }
                ch.add_topics(added);
                ch.extend(lifetime, now);
                return Ok(Some(ch.answer(&rejected)));
            }
        };
        if new_topics.len() > max_topics {
            return Err(ApiError::new(
                400,
                "notification.subscription.limit.exceeded",
                format!(
                    "A channel may subscribe at most {max_topics} topics; this request would make {}",
                    new_topics.len()
                ),
            ));
        }
        ch.set_topics(new_topics);
        ch.extend(lifetime, now);
        Ok(Some(ch.answer(&rejected)))
    }
}

/// A shortened id for logs (the channel id is a credential).
pub(crate) fn short(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// The janitor thread: expires channels and sends delayed closes on time.
pub(crate) fn janitor(shared: &Shared, wake: &Receiver<()>) {
    loop {
        if shared.is_shutdown() {
            return;
        }
        let now = Instant::now();
        let next = {
            let mut st = shared.state.lock();
            st.sweep(now);
            st.next_deadline()
        };
        let wait = next
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        // A few ms late rather than early, so the sweep finds the deadline passed.
        match wake.recv_timeout(wait + Duration::from_millis(1)) {
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}
