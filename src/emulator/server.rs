//! server.rs owns the emulator's HTTP connections: it accepts them, reads HTTP/1.1 requests
//! (the head with httparse, the body by `Content-Length` or chunked), writes the answers http.rs
//! decides, keeps connections alive between requests, and closes every one of them when the
//! emulator is dropped. It never decides an answer.
//!
//! Why not tiny_http (used until issue 11): its connection threads are its own, so a server
//! cannot close a connection, and once its `Server` is dropped a request arriving on an idle
//! keep-alive connection is queued where nobody reads it: the client waits for its whole
//! timeout instead of seeing the server go away. The emulator therefore answered every request
//! with `Connection: close`, so each call cost a new TCP connection and a thread hand-off.
//! Here each connection is served by a thread of the emulator, which holds the socket:
//! `Emulator`'s `Drop` shuts every socket down (the client reads the end of the stream at
//! once, like from a server that went away) and joins every thread.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::state::Shared;

/// Largest request head (request line and headers); more is answered 431 and the connection
/// closed.
const MAX_HEAD: usize = 64 << 10;
/// Most headers in one request.
const MAX_HEADERS: usize = 100;
/// Largest request body; more is answered 413 and the connection closed.
pub(super) const MAX_BODY: usize = 16 << 20;
/// Bytes read from a socket at once.
const READ_CHUNK: usize = 16 << 10;

/// The HTTP connections open now, by number: `Drop` shuts each one down.
#[derive(Default)]
pub(crate) struct Connections {
    next: u64,
    open: HashMap<u64, Arc<TcpStream>>,
}

impl Connections {
    /// Shuts every open connection down: their threads read the end of the stream and stop,
    /// and their clients see the connection closed.
    pub(crate) fn shut_all(&self) {
        for stream in self.open.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// One HTTP request as read from a connection.
pub(crate) struct HttpRequest {
    /// Upper-cased (`GET`, `POST`, ...).
    pub method: String,
    /// The request target: path and query, e.g. `/api/v2/tokens/me`.
    pub target: String,
    /// `(name, value)`, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client may send another request on this connection (HTTP/1.1 without
    /// `Connection: close`).
    keep_alive: bool,
}

impl HttpRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An answer, before it is written.
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Accepts HTTP connections until the emulator shuts down; each gets a thread of its own.
pub(crate) fn acceptor(shared: &Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        // Checked after each accept: `Drop` sets the flag, then connects once to wake us.
        if shared.is_shutdown() {
            return;
        }
        let stream = match stream {
            Ok(s) => Arc::new(s),
            Err(e) => {
                log::warn!("emulator: HTTP accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = {
            let mut conns = shared.http_conns.lock();
            conns.next += 1;
            let id = conns.next;
            conns.open.insert(id, stream.clone());
            id
        };
        let thread_shared = shared.clone();
        let spawned = shared.spawn(format!("emu-http-{id}"), move || {
            connection(&thread_shared, &stream);
            thread_shared.http_conns.lock().open.remove(&id);
        });
        if let Err(e) = spawned {
            log::warn!("emulator: cannot spawn an HTTP connection thread: {e}");
            if let Some(stream) = shared.http_conns.lock().open.remove(&id) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Serves the requests of one connection, one after the other, until the client closes it,
/// asks to close it, sends something that is not HTTP/1.x, or the emulator shuts down.
fn connection(shared: &Shared, stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let request = match conn.read_request() {
            Ok(Some(request)) => request,
            // The client closed the connection between requests.
            Ok(None) => return,
            Err(Bad::Io) => return,
            Err(Bad::Status(status, message)) => {
                let reply = super::http::error_reply(status, message);
                let _ = write_reply(stream, "GET", &reply, true);
                return;
            }
        };
        // A request read after the shutdown began gets no answer: its connection is closed, as
        // a server that went away would.
        if shared.is_shutdown() {
            return;
        }
        let reply = super::http::serve(shared, &request);
        let close = !request.keep_alive || shared.is_shutdown();
        if write_reply(stream, &request.method, &reply, close).is_err() || close {
            return;
        }
    }
}

/// Why a request could not be read.
enum Bad {
    /// The connection failed or was closed in the middle of a request.
    Io,
    /// The request is not acceptable: answer this status and close.
    Status(u16, &'static str),
}

impl From<io::Error> for Bad {
    fn from(_: io::Error) -> Bad {
        Bad::Io
    }
}

/// A connection's socket and the bytes read from it but not used yet (the start of the next
/// request, when a client sends requests back to back).
struct Conn<'a> {
    stream: &'a TcpStream,
    buf: Vec<u8>,
}

impl Conn<'_> {
    /// Reads more bytes into the buffer; false at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let read = loop {
            match (&mut &*self.stream).read(&mut self.buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.buf.truncate(start + *read.as_ref().unwrap_or(&0));
        Ok(read? > 0)
    }

    /// The next request; `None` when the client closed the connection before sending one.
    fn read_request(&mut self) -> Result<Option<HttpRequest>, Bad> {
        let Some(mut request) = self.read_head()? else {
            return Ok(None);
        };
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = match request.header("content-length") {
            _ if chunked => None,
            None => Some(0),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > MAX_BODY => return Err(Bad::Status(413, "Request body too large")),
                Ok(n) => Some(n),
                Err(_) => return Err(Bad::Status(400, "Bad Content-Length")),
            },
        };
        if length != Some(0)
            && request
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            (&mut &*self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        request.body = match length {
            Some(n) => self.take(n)?,
            None => self.read_chunked()?,
        };
        Ok(Some(request))
    }

    fn read_head(&mut self) -> Result<Option<HttpRequest>, Bad> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let version = parsed.version.unwrap_or(1);
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).trim().to_owned(),
                            )
                        })
                        .collect();
                    let mut request = HttpRequest {
                        method: parsed.method.unwrap_or_default().to_ascii_uppercase(),
                        target: parsed.path.unwrap_or("/").to_owned(),
                        headers,
                        body: Vec::new(),
                        keep_alive: false,
                    };
                    // HTTP/1.0 is served one request per connection.
                    request.keep_alive = version == 1
                        && !request.header("connection").is_some_and(|v| {
                            v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
                        });
                    self.buf.drain(..len);
                    return Ok(Some(request));
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(Bad::Status(431, "Request head too large"));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Bad::Status(431, "Too many headers"))
                }
                Err(_) => return Err(Bad::Status(400, "Malformed HTTP request")),
            }
            let was_empty = self.buf.is_empty();
            if !self.fill()? {
                // The end of the stream between requests is a normal close.
                return if was_empty { Ok(None) } else { Err(Bad::Io) };
            }
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<Vec<u8>, Bad> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(Bad::Io);
            }
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// A chunked body (RFC 9112 section 7.1), trailers skipped.
    fn read_chunked(&mut self) -> Result<Vec<u8>, Bad> {
        let mut body = Vec::new();
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {
                        if !self.fill()? {
                            return Err(Bad::Io);
                        }
                    }
                    _ => return Err(Bad::Status(400, "Bad chunked body")),
                }
            };
            self.buf.drain(..used);
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size == 0 {
                break;
            }
            if body.len().saturating_add(size) > MAX_BODY {
                return Err(Bad::Status(413, "Request body too large"));
            }
            let chunk = self.take(size)?;
            body.extend_from_slice(&chunk);
            if self.take(2)? != b"\r\n" {
                return Err(Bad::Status(400, "Bad chunked body"));
            }
        }
        // Trailer fields, if any, up to the empty line.
        loop {
            let end = loop {
                if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                if self.buf.len() > MAX_HEAD || !self.fill()? {
                    return Err(Bad::Io);
                }
            };
            self.buf.drain(..end + 2);
            if end == 0 {
                return Ok(body);
            }
        }
    }
}

/// Writes `reply` in one piece; `close` says `Connection: close` (the connection ends after
/// it). A `HEAD` answer has the headers of the body but not the body.
fn write_reply(stream: &TcpStream, method: &str, reply: &Reply, close: bool) -> io::Result<()> {
    use std::fmt::Write as _;
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nServer: genesys-emulator\r\nContent-Length: {}\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    if !reply.body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in &reply.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if method != "HEAD" {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    let mut writer = stream;
    writer.write_all(&bytes)?;
    writer.flush()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
