//! Fault injection: what a test can ask the emulator to do wrong, and on which endpoint or socket.

use std::time::Duration;

/// Which socket(s) a socket fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The socket currently connected to this channel id (no effect if none is connected).
    Channel(String),
    /// Every socket connected at the moment of the injection.
    AllSockets,
}

impl Target {
    /// Shorthand for [`Target::Channel`].
    pub fn channel(id: impl Into<String>) -> Target {
        Target::Channel(id.into())
    }
}

/// An endpoint of the emulator, for [`Fault::HttpStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /oauth/token`.
    Token,
    /// `GET|HEAD /api/v2/tokens/me`.
    TokensMe,
    /// `POST /api/v2/notifications/channels`.
    CreateChannel,
    /// `HEAD /api/v2/notifications/channels/{id}`.
    HeadChannel,
    /// Any method on `/api/v2/notifications/channels/{id}/subscriptions`.
    Subscriptions,
    /// `GET /api/v2/notifications/availabletopics`.
    AvailableTopics,
    /// `GET /api/v2/users/presences/purecloud/bulk` (a state resource).
    PresenceBulk,
    /// `GET /api/v2/users/{id}/presences/purecloud` (a state resource).
    UserPresence,
    /// `GET /api/v2/users` (a state resource with `expand=presence,routingStatus`).
    Users,
    /// `GET /api/v2/users/{id}/routingstatus` (a state resource).
    UserRoutingStatus,
    /// The WebSocket upgrade request on `/channels/{id}` (the handshake is answered with the
    /// status instead of `101 Switching Protocols`).
    WebSocketHandshake,
    /// Every HTTP endpoint above except the WebSocket handshake; a call consumes the fault
    /// whatever its path (unknown paths included).
    AnyHttp,
}

/// A fault to inject with [`Emulator::inject`](super::Emulator::inject).
///
/// Socket faults act on the socket(s) connected at the moment of the call and do nothing when
/// no socket matches (a warning is logged). Counted faults (`times`) apply to the next calls,
/// in order; several counted faults on the same endpoint are consumed oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Send a close frame with this code and reason, then close the TCP connection (after the
    /// client's close reply, or after one second without it). The channel stays alive: a client
    /// may reconnect to the same `connectUri`.
    CloseSocket {
        /// Which socket(s).
        target: Target,
        /// The close code sent (e.g. 1001, 1011, 4000).
        code: u16,
        /// The close reason sent (UTF-8, at most 123 bytes; longer is truncated).
        reason: String,
    },
    /// Close the TCP connection without any close frame: an orderly TCP close (FIN), so the
    /// client reads end-of-stream (1006 in RFC 6455 terms). The channel stays alive.
    DropSocket {
        /// Which socket(s).
        target: Target,
    },
    /// Send a close frame with an empty payload (no status code, which RFC 6455 §7.1.5 reports
    /// as 1005 "no status received"), then close the TCP connection after the client's close
    /// reply, or after one second without it. 1005 itself is never put on the wire (§7.4.1).
    /// The channel stays alive.
    CloseWithoutStatus {
        /// Which socket(s).
        target: Target,
    },
    /// Abort the TCP connection: `SO_LINGER` set to 0 and the socket closed, so the kernel sends
    /// a TCP RST instead of a FIN and the client's next read fails with "connection reset"
    /// (frames still queued on either side are lost). No close frame. The channel stays alive.
    ResetSocket {
        /// Which socket(s).
        target: Target,
    },
    /// Keep the TCP connection open but send nothing at all from now on: no heartbeats, pongs,
    /// events, close replies or raw frames, until the client closes the socket (or the emulator
    /// is dropped). Frames from the client are still read and recorded.
    GoSilent {
        /// Which socket(s).
        target: Target,
    },
    /// Send a `v2.system.socket_closing` message (reason `maintenance`) to the socket, and,
    /// when `close_after` is given, close that same socket with code 1001 after that delay.
    SocketClosing {
        /// Which socket(s).
        target: Target,
        /// Delay between the message and the close (`None`: never close).
        close_after: Option<Duration>,
    },
    /// Expire the channel now, as if its lifetime had run out: its socket is closed with
    /// [`CLOSE_CHANNEL_EXPIRED`](super::CLOSE_CHANNEL_EXPIRED) and the id answers 404 from then on.
    ExpireChannel {
        /// The channel id.
        channel_id: String,
    },
    /// Evict the channel now, as when a 21st channel is created: its socket is closed with
    /// [`CLOSE_CHANNEL_EVICTED`](super::CLOSE_CHANNEL_EVICTED) and the id answers 404 from then on.
    EvictChannel {
        /// The channel id.
        channel_id: String,
    },
    /// Take the channel over: the emulator opens a second, real WebSocket to the channel's
    /// `connectUri`, as another process holding the same channel would. The socket connected
    /// before gets a close frame with [`CLOSE_REPLACED`](super::CLOSE_REPLACED), and events
    /// published while the intruder holds the channel go to the intruder (the client loses
    /// them). The intruder reads and discards frames until the client's next socket replaces it
    /// in turn (or the emulator is dropped). Nothing happens if the channel is unknown.
    Takeover {
        /// The channel id.
        channel_id: String,
    },
    /// Every token issued so far is expired from now on (REST calls with it get 401
    /// `bad.credentials`). Tokens issued later are valid as usual. Sockets are not affected.
    ExpireTokens,
    /// Answer the next `times` calls to `endpoint` with `status` and a Genesys-style error body
    /// (an OAuth-style body for [`Endpoint::Token`]), without doing anything else. With
    /// `retry_after`, a `Retry-After: <seconds>` header is added (meant for 429 and 503).
    HttpStatus {
        /// Which endpoint.
        endpoint: Endpoint,
        /// HTTP status to answer (e.g. 401, 403, 404, 429, 500, 503).
        status: u16,
        /// `Retry-After` header value, in whole seconds.
        retry_after: Option<u64>,
        /// How many calls get this answer.
        times: usize,
    },
    /// The next `times` WebSocket connections are accepted at the TCP level, their upgrade
    /// request is read, and the TCP connection is closed without any HTTP answer.
    RefuseHandshakes {
        /// How many connections.
        times: usize,
    },
    /// The next `times` WebSocket connections are accepted at the TCP level and never answered:
    /// the emulator reads and discards what the client sends until the client closes the
    /// connection (or the emulator is dropped).
    HangHandshakes {
        /// How many connections.
        times: usize,
    },
    /// Send the next `events` notifications (from [`Emulator::publish`](super::Emulator::publish))
    /// to the socket as a text frame followed by continuation frames of at most
    /// `fragment_size` bytes each (at least 1).
    FragmentEvents {
        /// Which socket(s).
        target: Target,
        /// How many of the next events are fragmented.
        events: usize,
        /// Payload bytes per fragment.
        fragment_size: usize,
    },
    /// Send one text frame of exactly `bytes` bytes: a valid JSON message on topic
    /// `v2.emulator.oversize` padded to that size (or plain `x` characters if `bytes` is too
    /// small for the JSON envelope).
    OversizeFrame {
        /// Which socket(s).
        target: Target,
        /// Frame payload size in bytes.
        bytes: usize,
    },
    /// Send one text frame that is not valid JSON.
    MalformedJson {
        /// Which socket(s).
        target: Target,
    },
    /// Send one binary frame with this payload.
    BinaryFrame {
        /// Which socket(s).
        target: Target,
        /// The payload.
        data: Vec<u8>,
    },
}
