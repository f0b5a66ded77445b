//! The emulator owns an in-process fake Genesys Cloud on loopback: the OAuth token endpoint, the
//! notification REST API, the notification WebSocket, fault injection and a record of what
//! clients did.
//!
//! It is meant for the crate's own tests, its quickstart example and benchmarks, and for users
//! who test their own code without a Genesys organisation. It follows
//! `docs/protocol.md`; where the real service's behaviour is undocumented, the choice
//! made here is stated below.
//!
//! # What it serves
//! Two listeners, both bound to `127.0.0.1` on ports chosen by the OS:
//!
//! * an HTTP server ([`Emulator::api_base`] and [`Emulator::login_base`] are the same server):
//!   - `POST /oauth/token`: client credentials grant, HTTP Basic authentication;
//!   - `GET|HEAD /api/v2/tokens/me`;
//!   - `POST /api/v2/notifications/channels`, `GET /api/v2/notifications/channels` (list),
//!     `GET|HEAD /api/v2/notifications/channels/{id}`;
//!   - `GET|PUT|POST|DELETE /api/v2/notifications/channels/{id}/subscriptions`
//!     (`?ignoreErrors=true` supported);
//!   - `GET /api/v2/notifications/availabletopics` (a short fixed list);
//!   - the state resources of users' presence and routing status (`resources.rs`): the presence
//!     bulk read (at most [`PRESENCE_BULK_LIMIT`] ids), one user's presence, `GET /api/v2/users`
//!     with `id` and `expand` (at most [`USERS_ID_LIMIT`] ids, pages up to
//!     [`USERS_PAGE_SIZE_MAX`]) and one user's routing status, answering from the state tests
//!     publish or set ([`Emulator::set_user_presence`]); [`Emulator::deny_state_resource`] and
//!     [`Emulator::hold_state_responses`] misbehave on them, as [`Fault::HttpStatus`] does.
//!
//!   Every `/api/v2` call needs `Authorization: Bearer <token>` with a token the emulator issued
//!   that has not expired, else 401 (`authentication.required` when the header is missing,
//!   `bad.credentials` when the token is unknown or expired). Every response carries
//!   `Connection: close`, so no idle keep-alive connection outlives the emulator.
//! * a WebSocket server: `ws://127.0.0.1:<port>/channels/<id>` (the `connectUri` of a channel).
//!
//! # Decisions where the protocol is silent
//! * Close codes sent by the emulator: [`CLOSE_REPLACED`] (4000) to a socket whose channel got a
//!   second socket, [`CLOSE_CHANNEL_EVICTED`] (4001) when its channel is evicted,
//!   [`CLOSE_CHANNEL_EXPIRED`] (4002) when its channel expires, [`CLOSE_GOING_AWAY`] (1001) after
//!   `v2.system.socket_closing` and when the emulator is dropped. 4000-4002 are emulator-specific:
//!   clients must not build policy on them (the real service documents no codes).
//! * Faults that end a socket are emulated on the wire, not approximated: a close frame with a
//!   code ([`Fault::CloseSocket`]), an empty close frame that the client reports as 1005
//!   ([`Fault::CloseWithoutStatus`]), an orderly TCP close without close frame (FIN,
//!   [`Fault::DropSocket`]), a TCP reset (`SO_LINGER` 0 then close: RST, [`Fault::ResetSocket`]),
//!   and a real second socket on the channel ([`Fault::Takeover`]).
//! * Topics that are empty, contain whitespace or are longer than 200 characters, and topics
//!   `channel.metadata` / `v2.system.*`, make the whole subscription request fail with 400
//!   (code `bad.request`), with or without `ignoreErrors`; nothing changes.
//! * More than `max_topics_per_channel` topics after the change: 400 (code
//!   `notification.subscription.limit.exceeded`), nothing changes.
//! * The PUT/POST response lists every topic now subscribed on the channel (`Permitted`) followed
//!   by the topics of this request that were rejected (`Rejected`). DELETE answers 200 with an
//!   empty body and removes every topic.
//! * A channel is "used" when it is created, when its subscriptions are called and when a socket
//!   connects to it. Eviction picks the least recently used channel without a socket, else the
//!   least recently used one.
//! * A denied topic (see [`Emulator::deny_topic`]) also denies combined topics that expand to it.
//! * WebSocket upgrade requests are not listed in [`Emulator::requests`]; they appear in
//!   [`Emulator::socket_log`].
//! * The WebSocket handshake has a 10 s read timeout; frames from clients are limited to the
//!   tungstenite defaults (16 MiB frame, 64 MiB message).
//!
//! # Threads
//! Four HTTP workers, one WebSocket acceptor, one janitor (channel expiry and delayed closes),
//! and two threads per WebSocket connection (a reader and a writer fed by an unbounded crossbeam
//! channel, which batches frames before flushing), and one client thread per [`Fault::Takeover`]
//! socket. [`Emulator`]'s `Drop` closes every socket
//! (close frame 1001 when the socket is not silent) and joins every thread, within about half a
//! second.
#![deny(missing_docs)]

mod fault;
mod http;
mod inject;
mod resources;
mod state;
mod topics;
mod ws;

#[cfg(test)]
mod tests;

pub use fault::{Endpoint, Fault, Target};
pub use resources::{
    StateHold, UserPresence, UserRoutingStatus, PRESENCE_BULK_LIMIT, USERS_ID_LIMIT,
    USERS_PAGE_SIZE_MAX,
};

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use state::{Out, Shared};

/// Close code sent to a socket when a second socket connects to the same channel (emulator-specific).
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code sent to a socket when its channel is evicted (emulator-specific).
pub const CLOSE_CHANNEL_EVICTED: u16 = 4001;
/// Close code sent to a socket when its channel expires (emulator-specific).
pub const CLOSE_CHANNEL_EXPIRED: u16 = 4002;
/// Close code ("going away") sent after `socket_closing` and when the emulator is dropped.
pub const CLOSE_GOING_AWAY: u16 = 1001;

const HTTP_WORKERS: usize = 4;

/// Settings of an [`Emulator`]. `Default` gives the values of the real service; each setter
/// consumes and returns the config so calls can be chained.
#[derive(Clone)]
pub struct EmulatorConfig {
    client_id: String,
    client_secret: String,
    token_lifetime: Duration,
    heartbeat_interval: Duration,
    channel_lifetime: Duration,
    max_channels: usize,
    max_topics_per_channel: usize,
    connect_uri_base: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            client_id: "emulator-client-id".to_owned(),
            client_secret: "emulator-client-secret".to_owned(),
            token_lifetime: Duration::from_secs(24 * 3600),
            heartbeat_interval: Duration::from_secs(30),
            channel_lifetime: Duration::from_secs(24 * 3600),
            max_channels: 20,
            max_topics_per_channel: 1000,
            connect_uri_base: None,
        }
    }
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_lifetime", &self.token_lifetime)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("channel_lifetime", &self.channel_lifetime)
            .field("max_channels", &self.max_channels)
            .field("max_topics_per_channel", &self.max_topics_per_channel)
            .field("connect_uri_base", &self.connect_uri_base)
            .finish()
    }
}

impl EmulatorConfig {
    /// OAuth client id accepted by `POST /oauth/token` (default `"emulator-client-id"`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// OAuth client secret accepted by `POST /oauth/token` (default `"emulator-client-secret"`).
    pub fn client_secret(mut self, s: impl Into<String>) -> Self {
        self.client_secret = s.into();
        self
    }

    /// Lifetime of issued tokens (default 24 h). `expires_in` is this in whole seconds, at least 1;
    /// the token stops working after exactly this duration.
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.token_lifetime = d;
        self
    }

    /// Interval between `WebSocket Heartbeat` messages on each socket (default 30 s).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }

    /// Lifetime of a channel (default 24 h); a successful PUT/POST of its subscriptions starts it again.
    pub fn channel_lifetime(mut self, d: Duration) -> Self {
        self.channel_lifetime = d;
        self
    }

    /// Maximum number of live channels (default 20); all tokens count as one client.
    /// Creating one more evicts the least recently used one. Values below 1 count as 1.
    pub fn max_channels(mut self, n: usize) -> Self {
        self.max_channels = n.max(1);
        self
    }

    /// Maximum number of topics subscribed on one channel (default 1000); more is a 400.
    pub fn max_topics_per_channel(mut self, n: usize) -> Self {
        self.max_topics_per_channel = n;
        self
    }

    /// Base of the `connectUri` given to new channels, e.g. `ws://127.0.0.1:9000` (default: the
    /// emulator's own WebSocket server). Channels then get `<base>/channels/<id>`, so clients
    /// connect their sockets to another server (a load generator, for benchmarks) while the
    /// emulator still serves tokens, channels and subscriptions. The emulator's own WebSocket
    /// server keeps accepting the channels' paths, but clients no longer connect there, so
    /// [`Emulator::publish`] and socket faults do not reach them.
    pub fn connect_uri_base(mut self, base: impl Into<String>) -> Self {
        self.connect_uri_base = Some(base.into().trim_end_matches('/').to_owned());
        self
    }
}

/// A raw WebSocket frame for [`Emulator::send_frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text frame with this payload (sent as is, not checked for JSON).
    Text(String),
    /// A binary frame with this payload.
    Binary(Vec<u8>),
    /// An RFC 6455 ping control frame with this payload (at most 125 bytes; longer is truncated).
    Ping(Vec<u8>),
}

/// Why a channel is no longer live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRemoval {
    /// Evicted by the creation of a channel over the limit, or by [`Fault::EvictChannel`].
    Evicted,
    /// Its lifetime ran out, or [`Fault::ExpireChannel`].
    Expired,
}

/// A snapshot of one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The channel id.
    pub id: String,
    /// The `connectUri` returned at creation (`ws://127.0.0.1:<port>/channels/<id>`).
    pub connect_uri: String,
    /// The topics subscribed, as the client spelled them, in subscription order.
    pub topics: Vec<String>,
    /// Whether a socket is connected to it now.
    pub connected: bool,
    /// Number of sockets ever accepted for it.
    pub connections: usize,
    /// When it expires (or expired) unless re-subscribed.
    pub expires: SystemTime,
    /// When it was created.
    pub created: SystemTime,
    /// `None` while live; why it was removed otherwise.
    pub removed: Option<ChannelRemoval>,
}

/// One HTTP request served by the emulator (the WebSocket upgrade excepted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method, upper case (`"GET"`, `"PUT"`, ...).
    pub method: String,
    /// Path with the query string, e.g. `/api/v2/notifications/channels/x/subscriptions?ignoreErrors=true`.
    pub path: String,
    /// Status code answered.
    pub status: u16,
    /// When the answer was decided.
    pub at: Instant,
    /// For `/api/v2`: a valid, unexpired bearer token was given. For `/oauth/token`: the Basic
    /// credentials were right. False otherwise.
    pub authorization_ok: bool,
    /// The request body as text (lossy UTF-8, at most 1 MiB kept).
    pub body: String,
}

/// Something that happened on a WebSocket (or a WebSocket connection attempt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketEventKind {
    /// The handshake completed; the socket is the channel's socket now.
    Connected,
    /// The upgrade request was answered with this HTTP status instead of 101 (unknown channel:
    /// 404; or [`Fault::HttpStatus`] on [`Endpoint::WebSocketHandshake`]).
    HandshakeRejected {
        /// The HTTP status answered.
        status: u16,
    },
    /// The connection was closed without an answer ([`Fault::RefuseHandshakes`]).
    HandshakeRefused,
    /// The connection is held without an answer ([`Fault::HangHandshakes`]).
    HandshakeHung,
    /// The client sent the application ping `{"message":"ping"}`.
    PingReceived,
    /// The client sent another text frame.
    TextReceived {
        /// Its payload.
        text: String,
    },
    /// The client sent a binary frame.
    BinaryReceived {
        /// Its length in bytes.
        len: usize,
    },
    /// The client sent an RFC 6455 ping control frame (answered with a pong frame).
    WsPingReceived,
    /// The client sent an RFC 6455 pong control frame.
    WsPongReceived,
    /// The client sent a close frame.
    CloseFrameReceived {
        /// Its status code, if it had one.
        code: Option<u16>,
    },
    /// The server answered a client's close frame with a close frame (echoing its code).
    CloseReplied {
        /// The code echoed (`None`: empty close payload).
        code: Option<u16>,
    },
    /// The server sent a close frame of its own (fault, eviction, expiry, replacement, shutdown).
    ClosedByServer {
        /// The close code sent.
        code: u16,
    },
    /// The server sent a close frame without a status code ([`Fault::CloseWithoutStatus`]).
    ClosedByServerWithoutStatus,
    /// The server closed the TCP connection without a close frame ([`Fault::DropSocket`]).
    DroppedByServer,
    /// The server aborted the TCP connection with a RST ([`Fault::ResetSocket`]).
    ResetByServer,
    /// The socket went silent ([`Fault::GoSilent`]).
    WentSilent,
    /// A `v2.system.socket_closing` message was queued to the socket.
    SocketClosingSent,
    /// The connection is over (recorded once per accepted socket, last).
    Disconnected,
}

/// One entry of [`Emulator::socket_log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketRecord {
    /// The channel id from the connection's path (may be an unknown id for rejected handshakes,
    /// empty when the path could not be read).
    pub channel_id: String,
    /// Number of the TCP connection, unique within the emulator, starting at 1.
    pub connection: u64,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: SocketEventKind,
}

/// A running fake Genesys Cloud. Dropping it stops every thread and closes every socket.
pub struct Emulator {
    shared: Arc<Shared>,
    http: Arc<tiny_http::Server>,
    api_addr: SocketAddr,
    ws_addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("api", &self.api_addr)
            .field("ws", &self.ws_addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts an emulator with [`EmulatorConfig::default`].
    ///
    /// # Errors
    /// An I/O error if a loopback listener cannot be bound or a thread cannot be spawned.
    pub fn start() -> io::Result<Emulator> {
        Emulator::start_with(EmulatorConfig::default())
    }

    /// Starts an emulator with this config.
    ///
    /// # Errors
    /// An I/O error if a loopback listener cannot be bound or a thread cannot be spawned.
    pub fn start_with(config: EmulatorConfig) -> io::Result<Emulator> {
        let ws_listener = TcpListener::bind("127.0.0.1:0")?;
        let ws_addr = ws_listener.local_addr()?;
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(io::Error::other)?;
        let api_addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("HTTP server has no IP address"))?;
        let http = Arc::new(server);
        let (wake_tx, wake_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::new(config, ws_addr.port(), wake_tx));

        let mut emulator = Emulator {
            shared: shared.clone(),
            http: http.clone(),
            api_addr,
            ws_addr,
            threads: Vec::new(),
        };
        // On error, `emulator`'s Drop stops what was started.
        for i in 0..HTTP_WORKERS {
            let (shared, http) = (shared.clone(), http.clone());
            let handle = std::thread::Builder::new()
                .name(format!("emu-http-{i}"))
                .spawn(move || http::worker(&shared, &http))?;
            emulator.threads.push(handle);
        }
        let acceptor_shared = shared.clone();
        emulator.threads.push(
            std::thread::Builder::new()
                .name("emu-ws-accept".into())
                .spawn(move || ws::acceptor(&acceptor_shared, ws_listener))?,
        );
        emulator.threads.push(
            std::thread::Builder::new()
                .name("emu-janitor".into())
                .spawn(move || state::janitor(&shared, &wake_rx))?,
        );
        Ok(emulator)
    }

    /// Base URL of the REST API, e.g. `http://127.0.0.1:PORT` (paths under `/api/v2/...`).
    pub fn api_base(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Base URL of the login server (`POST /oauth/token`); the same server as [`Self::api_base`].
    pub fn login_base(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Base URL of the WebSocket server, e.g. `ws://127.0.0.1:PORT` (channels under `/channels/<id>`).
    pub fn ws_base(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// The OAuth client id the token endpoint accepts.
    pub fn client_id(&self) -> &str {
        &self.shared.config.client_id
    }

    /// The OAuth client secret the token endpoint accepts.
    pub fn client_secret(&self) -> &str {
        &self.shared.config.client_secret
    }

    /// Issues a valid access token with the configured lifetime, without an HTTP call (not
    /// counted in [`Self::token_requests`]).
    pub fn issue_token(&self) -> String {
        self.shared.state.lock().issue_token(&self.shared.config).0
    }

    /// Makes `topic` (compared lower-cased) unsubscribable: subscribing it gives state `Rejected`
    /// with these missing permissions (or a 403 without `ignoreErrors`). Combined topics that
    /// expand to it are denied too. Topics already subscribed stay subscribed.
    pub fn deny_topic(&self, topic: &str, missing_permissions: &[&str]) {
        let perms = missing_permissions
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        self.shared
            .state
            .lock()
            .denied
            .insert(topic.to_lowercase(), perms);
    }

    /// Undoes [`Self::deny_topic`].
    pub fn allow_topic(&self, topic: &str) {
        self.shared
            .state
            .lock()
            .denied
            .remove(&topic.to_lowercase());
    }

    /// Publishes an event: builds
    /// `{"topicName": topic, "version": "2", "eventBody": body, "metadata": {"CorrelationId": "<random uuid>"}}`
    /// (keys in that order, as the service writes them) and queues it to every connected socket whose channel subscribes `topic` (compared
    /// lower-cased; combined subscriptions are expanded). Returns the number of sockets it was
    /// queued to. Never blocks on a slow client: each socket has its own unbounded queue.
    pub fn publish(&self, topic: &str, event_body: serde_json::Value) -> usize {
        // In the service's key order, `topicName` first (a `json!` object would sort its keys).
        let message = format!(
            r#"{{"topicName":{},"version":"2","eventBody":{event_body},"metadata":{{"CorrelationId":"{}"}}}}"#,
            serde_json::Value::from(topic),
            state::uuid()
        );
        self.publish_raw(topic, message)
    }

    /// Like [`Self::publish`] but sends `text` as is (it should be a whole notification JSON);
    /// `topic` only selects the sockets.
    pub fn publish_raw(&self, topic: &str, text: String) -> usize {
        let text: Arc<str> = text.into();
        let key = topic.to_lowercase();
        let mut st = self.shared.state.lock();
        st.sweep(Instant::now());
        // Presence and routing status are kept as the users' current state (resources.rs).
        st.resources.observe(topic, &text);
        let mut sent = 0;
        for ch in &st.channels {
            let Some(conn) = ch.conn else { continue };
            if !ch.expanded.contains(&key) {
                continue;
            }
            if let Some(c) = st.conns.get(&conn) {
                if c.tx.send(Out::Event(text.clone())).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    }

    /// Queues a raw frame to the socket of channel `channel_id`. Returns false if no socket is
    /// connected to that channel.
    pub fn send_frame(&self, channel_id: &str, frame: Frame) -> bool {
        let st = self.shared.state.lock();
        let out = match frame {
            Frame::Text(t) => Out::Text(t),
            Frame::Binary(b) => Out::Binary(b),
            Frame::Ping(mut p) => {
                p.truncate(125);
                Out::Ping(p)
            }
        };
        st.send_to_channel(channel_id, out)
    }

    /// The live channels, in creation order.
    pub fn channels(&self) -> Vec<ChannelRecord> {
        let mut st = self.shared.state.lock();
        st.sweep(Instant::now());
        st.channels.iter().map(|c| c.record()).collect()
    }

    /// The channels removed so far (evicted or expired), in removal order.
    pub fn removed_channels(&self) -> Vec<ChannelRecord> {
        let mut st = self.shared.state.lock();
        st.sweep(Instant::now());
        st.removed.clone()
    }

    /// One channel, live or removed, by id.
    pub fn channel(&self, id: &str) -> Option<ChannelRecord> {
        let mut st = self.shared.state.lock();
        st.sweep(Instant::now());
        if let Some(c) = st.channels.iter().find(|c| c.id == id) {
            return Some(c.record());
        }
        st.removed.iter().rev().find(|c| c.id == id).cloned()
    }

    /// Every HTTP request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.state.lock().requests.clone()
    }

    /// Everything that happened on WebSockets so far, in order.
    pub fn socket_log(&self) -> Vec<SocketRecord> {
        self.shared.state.lock().socket_log.clone()
    }

    /// Number of `POST /oauth/token` requests, successful or not.
    pub fn token_requests(&self) -> usize {
        self.shared.state.lock().token_requests
    }

    /// Forgets the request and socket records (not the token count, channels or tokens).
    pub fn clear_records(&self) {
        let mut st = self.shared.state.lock();
        st.requests.clear();
        st.socket_log.clear();
    }

    /// Calls `pred` every ~5 ms until it returns true (→ true) or `timeout` has passed (→ false).
    /// `pred` is called at least once.
    pub fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&Emulator) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Injects a fault; see [`Fault`] for what each one does.
    pub fn inject(&self, fault: Fault) {
        if let Fault::Takeover { channel_id } = fault {
            self.takeover(channel_id);
            return;
        }
        self.shared.state.lock().inject(fault);
        let _ = self.shared.wake.send(());
    }

    /// [`Fault::Takeover`]: a thread connects a real socket to the channel and reads it until
    /// it is closed or the emulator stops. Returns once that socket is registered (or failed).
    fn takeover(&self, channel_id: String) {
        if !self
            .shared
            .state
            .lock()
            .channels
            .iter()
            .any(|c| c.id == channel_id)
        {
            log::warn!("emulator: Takeover: no live channel {channel_id}");
            return;
        }
        let url = format!("ws://{}/channels/{channel_id}", self.ws_addr);
        let addr = self.ws_addr;
        let shared = self.shared.clone();
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        let spawned = self.shared.spawn(
            format!("emu-takeover-{}", state::short(&channel_id)),
            move || {
                let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("emulator: Takeover: connect failed: {e}");
                        return;
                    }
                };
                let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                let mut ws = match tungstenite::client(url.as_str(), stream) {
                    Ok((ws, _)) => ws,
                    Err(e) => {
                        log::warn!("emulator: Takeover: handshake failed: {e}");
                        return;
                    }
                };
                drop(done_tx);
                while !shared.is_shutdown() {
                    match ws.read() {
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e))
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
            },
        );
        match spawned {
            // Connected (or failed) within the handshake timeout.
            Ok(()) => {
                let _ = done_rx.recv_timeout(Duration::from_secs(10));
            }
            Err(e) => log::warn!("emulator: Takeover: cannot spawn a thread: {e}"),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for _ in 0..HTTP_WORKERS {
            self.http.unblock();
        }
        // Wake the acceptor, which checks the flag after each accept.
        let _ = TcpStream::connect_timeout(&self.ws_addr, Duration::from_millis(200));
        let _ = self.shared.wake.send(());
        {
            let st = self.shared.state.lock();
            for c in st.conns.values() {
                let _ = c.tx.send(Out::Shutdown);
            }
            for s in st.pending.values() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // No new connection can appear now. Give writers a moment to send their close frame,
        // then cut whatever is left (a writer blocked on a client that does not read).
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline && !self.shared.state.lock().conns.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        {
            let st = self.shared.state.lock();
            for c in st.conns.values() {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
            for s in st.pending.values() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        loop {
            let handles: Vec<_> = std::mem::take(&mut *self.shared.threads.lock());
            if handles.is_empty() {
                break;
            }
            for h in handles {
                let _ = h.join();
            }
        }
    }
}
