//! connect.rs opens one WebSocket to a channel's `connectUri` within a deadline covering DNS,
//! TCP connect, TLS and the WebSocket handshake; it never reads notifications.
//!
//! No `Authorization` header is sent: the channel id in the URI is the credential
//! (docs/protocol.md, "The WebSocket"). `wss` uses rustls with the webpki root certificates
//! (verified); plain `ws` is refused unless the host is a loopback address.

use crate::network::Network;
use crate::redact;
use crate::url::{host_of, is_loopback};
use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::WebSocket;

/// A connected socket.
pub(crate) type Socket = WebSocket<MaybeTlsStream<Stamped<TcpStream>>>;

/// A stream that notes when its last read returned bytes: the receive time of every frame
/// decoded from those bytes. One clock reading per read from the kernel (which, under load,
/// brings in hundreds of frames at once) instead of one per frame: profiled, the per-frame
/// reading was about 5 % of the socket thread's time on small events.
#[derive(Debug)]
pub(crate) struct Stamped<S> {
    inner: S,
    last_read: Instant,
}

impl<S> Stamped<S> {
    pub(crate) fn new(inner: S) -> Stamped<S> {
        Stamped {
            inner,
            last_read: Instant::now(),
        }
    }

    /// When the last read that returned bytes finished (or when the stream was wrapped).
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: std::io::Read> std::io::Read for Stamped<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.last_read = Instant::now();
        }
        Ok(n)
    }
}

impl<S: std::io::Write> std::io::Write for Stamped<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.inner.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Why a connection attempt failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ConnectError {
    /// A stage did not finish before the deadline.
    Timeout { stage: &'static str },
    /// The host name could not be resolved.
    Dns(String),
    /// TCP connect failed (refused, unreachable).
    Tcp(String),
    /// TLS or WebSocket handshake failed.
    Handshake(String),
    /// The server answered the upgrade request with an HTTP status instead of 101
    /// (404: the channel does not exist; 429: rate limited).
    Rejected {
        status: u16,
        /// The answer's `Retry-After` (seconds or an HTTP-date), a lower bound for the next attempt.
        retry_after: Option<Duration>,
    },
    /// The URI cannot be used (bad syntax, plain `ws` to a non-loopback host). Permanent.
    BadUri(String),
    /// The proxy in the way failed (tunnel.rs); permanent when it asks for credentials.
    Proxy(crate::error::ProxyError),
}

impl ConnectError {
    /// Whether the answer says the channel no longer exists.
    pub(crate) fn channel_gone(&self) -> bool {
        matches!(
            self,
            ConnectError::Rejected {
                status: 404 | 410,
                ..
            }
        )
    }

    /// The `Retry-After` of a rejected upgrade (docs/protocol.md "Rate limits": wait at least that).
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectError::Rejected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Timeout { stage } => write!(f, "{stage} did not finish in time"),
            ConnectError::Dns(e) => write!(f, "DNS lookup failed: {e}"),
            ConnectError::Tcp(e) => write!(f, "TCP connect failed: {e}"),
            ConnectError::Handshake(e) => write!(f, "handshake failed: {e}"),
            ConnectError::Rejected { status, .. } => {
                write!(
                    f,
                    "the server answered the WebSocket upgrade with HTTP {status}"
                )
            }
            ConnectError::BadUri(e) => write!(f, "unusable connectUri: {e}"),
            ConnectError::Proxy(e) => write!(f, "{e}"),
        }
    }
}

/// Resolves `host:port` on a helper thread so that a hung resolver cannot outlast `timeout`.
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, ConnectError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let name = format!("{host}:{port}");
    std::thread::Builder::new()
        .name("genesys-dns".into())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(|e| ConnectError::Dns(e.to_string()))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(ConnectError::Dns(format!("{host} has no address"))),
        Ok(Err(e)) => Err(ConnectError::Dns(e.to_string())),
        Err(_) => Err(ConnectError::Timeout {
            stage: "DNS lookup",
        }),
    }
}

/// Bytes of a socket's read buffer. tungstenite fills its whole read buffer with zeros on the
/// first read and keeps it for the socket's life, so its default (128 KiB) cost every channel
/// that much RSS even when idle. Genesys frames are a few KiB (a longer frame grows the buffer
/// while it is read), and at full speed reads return far less than this (measured: memset and
/// read calls unchanged); with 32 KiB an idle connected channel costs about 105 KiB less.
const READ_BUFFER: usize = 32 * 1024;

/// How long one blocking read or write of the handshake may take before the total deadline is
/// checked again (a peer trickling bytes cannot stretch the handshake past `timeout`).
const HANDSHAKE_STEP: Duration = Duration::from_millis(100);

/// Opens a socket to `connect_uri`, all stages within `timeout`. Returns the socket and a clone
/// of its TCP stream (used to interrupt a blocked read from another thread). `register` is given
/// another clone as soon as TCP is connected, so that a shutdown can interrupt the handshake.
///
/// The address is the `connectUri` as rewritten by the client's streaming override (gateways),
/// reached through the proxy that serves its host, if any (an HTTP `CONNECT` tunnel opened
/// within the same deadline).
pub(crate) fn connect(
    connect_uri: &str,
    timeout: Duration,
    max_message_size: usize,
    network: &Network,
    register: &dyn Fn(TcpStream),
) -> Result<(Socket, TcpStream), ConnectError> {
    let deadline = Instant::now() + timeout;
    let rewritten = network.streaming.apply(connect_uri);
    let connect_uri = rewritten.as_str();
    let remaining = |stage| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(ConnectError::Timeout { stage })
        } else {
            Ok(left)
        }
    };
    let (scheme, rest) = connect_uri
        .split_once("://")
        .ok_or_else(|| ConnectError::BadUri(redact::short_uri(connect_uri)))?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "wss" => true,
        "ws" => false,
        other => return Err(ConnectError::BadUri(format!("scheme {other:?}"))),
    };
    let host = host_of(rest).to_owned();
    if !secure && !is_loopback(&host) {
        return Err(ConnectError::BadUri(format!(
            "plain ws is allowed only to loopback hosts, not {host:?}"
        )));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let port = authority
        .rsplit_once(':')
        .filter(|(_, p)| !p.contains(']'))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(if secure { 443 } else { 80 });

    let proxy = network.proxy.for_target(&host, port);
    let (dial_host, dial_port) = proxy.map_or((host.as_str(), port), |p| (p.host(), p.port()));
    let blame_proxy = |error: ConnectError| match (proxy, error) {
        (Some(p), ConnectError::Dns(e) | ConnectError::Tcp(e)) => ConnectError::Proxy(
            crate::error::ProxyError::Io(format!("proxy {p}: {e}").into()),
        ),
        (Some(_), ConnectError::Timeout { .. }) => {
            ConnectError::Proxy(crate::error::ProxyError::Timeout)
        }
        (_, other) => other,
    };
    let addrs = resolve(dial_host, dial_port, remaining("DNS lookup")?).map_err(blame_proxy)?;
    let mut last_error = ConnectError::Tcp("no address".into());
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining("TCP connect")?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last_error = ConnectError::Timeout {
                    stage: "TCP connect",
                }
            }
            Err(e) => last_error = ConnectError::Tcp(e.to_string()),
        }
    }
    let mut stream = stream.ok_or(last_error).map_err(blame_proxy)?;
    let io = |e: std::io::Error| ConnectError::Tcp(e.to_string());
    stream.set_nodelay(true).map_err(io)?;
    if let Some(proxy) = proxy {
        // The shutdown can cut a hung CONNECT too.
        register(stream.try_clone().map_err(io)?);
        crate::tunnel::tunnel(&mut stream, proxy, &host, port, deadline)
            .map_err(ConnectError::Proxy)?;
    }
    let left = remaining("TLS and WebSocket handshake")?;
    stream
        .set_read_timeout(Some(left.min(HANDSHAKE_STEP)))
        .map_err(io)?;
    stream.set_write_timeout(Some(left)).map_err(io)?;
    let interrupt = stream.try_clone().map_err(io)?;
    register(stream.try_clone().map_err(io)?);

    let request = connect_uri
        .into_client_request()
        .map_err(|e| ConnectError::BadUri(e.to_string()))?;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size));
    let connector = if secure {
        tungstenite::Connector::Rustls(network.tls.socket_config())
    } else {
        tungstenite::Connector::Plain
    };
    let mut attempt = tungstenite::client_tls_with_config(
        request,
        Stamped::new(stream),
        Some(ws_config),
        Some(connector),
    );
    let socket = loop {
        match attempt {
            Ok((socket, _response)) => break socket,
            // A read timed out: resume the handshake until the total deadline.
            Err(HandshakeError::Interrupted(mid)) => {
                remaining("TLS and WebSocket handshake")?;
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => return Err(classify_handshake(e)),
        }
    };
    Ok((socket, interrupt))
}

fn classify_handshake(e: tungstenite::Error) -> ConnectError {
    match e {
        tungstenite::Error::Http(response) => ConnectError::Rejected {
            status: response.status().as_u16(),
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::http::retry_after_value),
        },
        tungstenite::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            ConnectError::Timeout {
                stage: "TLS and WebSocket handshake",
            }
        }
        other => ConnectError::Handshake(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_stream_notes_reads_that_bring_bytes_only() {
        use std::io::Read;
        let mut stream = Stamped::new(std::io::Cursor::new(b"frame".to_vec()));
        let wrapped = stream.last_read();
        std::thread::sleep(Duration::from_millis(2));
        let mut buf = [0u8; 16];
        assert_eq!(stream.read(&mut buf).unwrap(), 5);
        let read = stream.last_read();
        assert!(read > wrapped);
        std::thread::sleep(Duration::from_millis(2));
        // End of stream: no bytes, no new time.
        assert_eq!(stream.read(&mut buf).unwrap(), 0);
        assert_eq!(stream.last_read(), read);
    }

    fn http(status: u16, retry_after: Option<&str>) -> tungstenite::Error {
        let mut response = tungstenite::http::Response::builder().status(status);
        if let Some(value) = retry_after {
            response = response.header("Retry-After", value);
        }
        tungstenite::Error::Http(Box::new(response.body(None).unwrap()))
    }

    #[test]
    fn an_http_answer_to_the_upgrade_is_a_rejection_with_its_retry_after() {
        assert_eq!(
            classify_handshake(http(429, Some(" 7 "))),
            ConnectError::Rejected {
                status: 429,
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert_eq!(
            classify_handshake(http(503, Some("soon"))),
            ConnectError::Rejected {
                status: 503,
                retry_after: None,
            }
        );
        assert_eq!(
            classify_handshake(http(404, None)),
            ConnectError::Rejected {
                status: 404,
                retry_after: None,
            }
        );
    }

    #[test]
    fn a_read_timeout_in_the_handshake_is_a_timeout() {
        for kind in [std::io::ErrorKind::WouldBlock, std::io::ErrorKind::TimedOut] {
            assert_eq!(
                classify_handshake(tungstenite::Error::Io(kind.into())),
                ConnectError::Timeout {
                    stage: "TLS and WebSocket handshake"
                }
            );
        }
    }

    #[test]
    fn other_handshake_errors_keep_their_message() {
        let e = classify_handshake(tungstenite::Error::Io(std::io::Error::other("reset")));
        assert!(
            matches!(&e, ConnectError::Handshake(m) if m.contains("reset")),
            "{e:?}"
        );
        let e = classify_handshake(tungstenite::Error::ConnectionClosed);
        assert!(matches!(e, ConnectError::Handshake(_)), "{e:?}");
    }

    #[test]
    fn only_404_and_410_say_the_channel_is_gone() {
        let rejected = |status| ConnectError::Rejected {
            status,
            retry_after: None,
        };
        assert!(rejected(404).channel_gone());
        assert!(rejected(410).channel_gone());
        for status in [400, 401, 403, 429, 500, 503] {
            assert!(!rejected(status).channel_gone(), "{status}");
        }
        assert!(!ConnectError::Timeout {
            stage: "TCP connect"
        }
        .channel_gone());
        assert!(!ConnectError::Tcp("404".into()).channel_gone());
        assert!(!ConnectError::BadUri("x".into()).channel_gone());
    }

    #[test]
    fn unusable_uris_are_refused_before_any_connection() {
        let network = Network::from_config(&crate::config::Config::default()).unwrap();
        let refuse = |uri: &str| {
            connect(uri, Duration::from_secs(1), 1 << 20, &network, &|_| {
                panic!("no TCP connection for {uri}")
            })
            .unwrap_err()
        };
        assert!(matches!(refuse("no-scheme"), ConnectError::BadUri(_)));
        assert!(matches!(
            refuse("http://127.0.0.1/x"),
            ConnectError::BadUri(_)
        ));
        let remote = refuse("ws://streaming.example.com/channels/x");
        assert!(
            matches!(&remote, ConnectError::BadUri(m) if m.contains("loopback")),
            "{remote:?}"
        );
    }
}
