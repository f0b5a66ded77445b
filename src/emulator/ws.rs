//! The emulator's WebSocket side: the acceptor, the handshake (with its faults), and for each
//! socket a reader thread (tungstenite, parsing client frames) and a writer thread (encoding
//! server frames itself, batching them before each flush, sending heartbeats).
//!
//! The two threads share one TCP connection through `try_clone`. The reader's tungstenite object
//! never writes after the handshake: its automatic replies (pongs, close echo) are discarded and
//! the writer sends them instead, so frames from two threads never interleave.

use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::Value;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::Message;

use super::fault::Endpoint;
use super::state::{later, short, uuid, Conn, Out, Shared};
use super::{SocketEventKind, CLOSE_GOING_AWAY, CLOSE_REPLACED};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer waits for the client's close reply after a server close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Most frames encoded between two flushes.
const MAX_BATCH: usize = 1024;
const HEARTBEAT: &str =
    r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;
const PONG: &str = r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// The acceptor thread: one connection thread per accepted TCP connection.
pub(crate) fn acceptor(shared: &Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.is_shutdown() {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("emulator: WebSocket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Handshake faults are taken here, so they apply in accept order.
        let (conn, mode) = {
            let mut st = shared.state.lock();
            st.next_conn += 1;
            let conn = st.next_conn;
            if let Ok(clone) = stream.try_clone() {
                st.pending.insert(conn, clone);
            }
            let mode = if st.hang_handshakes > 0 {
                st.hang_handshakes -= 1;
                Mode::Hang
            } else if st.refuse_handshakes > 0 {
                st.refuse_handshakes -= 1;
                Mode::Refuse
            } else {
                Mode::Normal
            };
            (conn, mode)
        };
        let thread_shared = shared.clone();
        let spawned = shared.spawn(format!("emu-ws-{conn}"), move || {
            connection(&thread_shared, stream, conn, mode);
            thread_shared.state.lock().pending.remove(&conn);
        });
        if let Err(e) = spawned {
            log::warn!("emulator: cannot spawn a connection thread: {e}");
            shared.state.lock().pending.remove(&conn);
        }
    }
}

enum Mode {
    Normal,
    Refuse,
    Hang,
}

fn connection(shared: &Arc<Shared>, mut stream: TcpStream, conn: u64, mode: Mode) {
    let _ = stream.set_nodelay(true);
    match mode {
        Mode::Normal => serve(shared, stream, conn),
        Mode::Refuse => {
            let id = read_head(&mut stream);
            shared
                .state
                .lock()
                .log(&id, conn, SocketEventKind::HandshakeRefused);
            let _ = stream.shutdown(Shutdown::Both);
        }
        Mode::Hang => {
            let id = read_head(&mut stream);
            shared
                .state
                .lock()
                .log(&id, conn, SocketEventKind::HandshakeHung);
            let _ = stream.set_read_timeout(None);
            let mut sink = [0u8; 4096];
            while !shared.is_shutdown() {
                match stream.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Reads an HTTP request head (for refused and hung handshakes) and returns the channel id.
fn read_head(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    channel_id_from_path(path).unwrap_or("").to_owned()
}

fn channel_id_from_path(path: &str) -> Option<&str> {
    let path = path.split('?').next()?;
    let id = path.strip_prefix("/channels/")?.trim_end_matches('/');
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The TCP stream as the reader's tungstenite object sees it: writes go to the socket during
/// the handshake only, and are discarded afterwards (the writer thread answers instead).
struct ReadSide {
    stream: TcpStream,
    writes: bool,
}

impl Read for ReadSide {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for ReadSide {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.writes {
            self.stream.write(buf)
        } else {
            Ok(buf.len())
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.writes {
            self.stream.flush()
        } else {
            Ok(())
        }
    }
}

fn reject(status: u16, retry_after: Option<u64>, message: &str) -> ErrorResponse {
    let body = serde_json::json!({
        "message": message,
        "code": if status == 404 { "not.found" } else { "emulator.fault" },
        "status": status,
        "contextId": uuid(),
    })
    .to_string();
    let mut builder = tungstenite::http::Response::builder()
        .status(status)
        .header("Content-Type", "application/json");
    if let Some(secs) = retry_after {
        builder = builder.header("Retry-After", secs.to_string());
    }
    builder.body(Some(body)).unwrap_or_else(|_| {
        let mut r = ErrorResponse::new(None);
        *r.status_mut() = tungstenite::http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A normal connection: handshake, then reader here and writer on its own thread.
fn serve(shared: &Arc<Shared>, stream: TcpStream, conn: u64) {
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let Ok(read_clone) = stream.try_clone() else {
        return;
    };
    let side = ReadSide {
        stream: read_clone,
        writes: true,
    };
    let mut accepted: Option<String> = None;
    // Registered as the channel's socket inside the handshake callback, before the 101 answer
    // is written: once the client sees its socket open, `publish` already reaches it (frames
    // queue in `tx` until the writer thread starts).
    let (tx, rx) = crossbeam_channel::unbounded();
    let Ok(register_clone) = stream.try_clone() else {
        return;
    };
    let mut register_clone = Some(register_clone);
    // The callback's type is tungstenite's; its error type is large by design.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let id = channel_id_from_path(req.uri().path())
            .unwrap_or("")
            .to_owned();
        let mut st = shared.state.lock();
        st.sweep(Instant::now());
        let answer = match st.take_http_fault(Some(Endpoint::WebSocketHandshake)) {
            Some((status, retry_after)) => Some((status, retry_after, "Injected by the emulator")),
            None if st.channels.iter().any(|c| c.id == id) => None,
            None => Some((404, None, "Channel not found")),
        };
        match answer {
            None if shared.is_shutdown() => Err(reject(503, None, "Emulator shutting down")),
            None => {
                let Some(clone) = register_clone.take() else {
                    return Err(reject(500, None, "Emulator error"));
                };
                let Some(ch) = st.channel_mut(&id) else {
                    return Err(reject(404, None, "Channel not found"));
                };
                ch.connections += 1;
                ch.last_used = Instant::now();
                let previous = ch.conn.replace(conn);
                if let Some(previous) = previous {
                    st.send_to_conn(
                        previous,
                        Out::Close {
                            code: Some(CLOSE_REPLACED),
                            reason: "another socket connected to this channel".into(),
                        },
                    );
                }
                st.conns.insert(
                    conn,
                    Conn {
                        channel_id: id.clone(),
                        tx: tx.clone(),
                        stream: clone,
                        server_closed: false,
                    },
                );
                st.pending.remove(&conn);
                st.log(&id, conn, SocketEventKind::Connected);
                accepted = Some(id);
                Ok(resp)
            }
            Some((status, retry_after, message)) => {
                st.log(&id, conn, SocketEventKind::HandshakeRejected { status });
                Err(reject(status, retry_after, message))
            }
        }
    };
    let handshake = tungstenite::accept_hdr(side, callback);
    let unregister = |channel_id: &str| {
        let mut st = shared.state.lock();
        if let Some(c) = st.conns.remove(&conn) {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        if let Some(ch) = st.channel_mut(channel_id) {
            if ch.conn == Some(conn) {
                ch.conn = None;
            }
        }
        st.log(channel_id, conn, SocketEventKind::Disconnected);
    };
    let mut ws = match handshake {
        Ok(ws) => ws,
        Err(e) => {
            log::debug!("emulator: WebSocket handshake failed: {e}");
            if let Some(channel_id) = &accepted {
                unregister(channel_id);
            }
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    };
    let Some(channel_id) = accepted else {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    ws.get_mut().writes = false;
    let _ = stream.set_read_timeout(None);
    log::debug!(
        "emulator: socket {conn} connected to {}",
        short(&channel_id)
    );

    // `alive` is dropped when the reader is done; the writer waits for that before cleaning up.
    let (alive, reader_gone) = crossbeam_channel::bounded::<()>(0);
    let writer = Writer {
        shared: shared.clone(),
        conn,
        channel_id: channel_id.clone(),
        out: BufWriter::with_capacity(64 * 1024, stream),
        silent: false,
        close_sent: false,
        close_deadline: None,
        fragment: None,
        reset: false,
    };
    let interval = shared
        .config
        .heartbeat_interval
        .max(Duration::from_millis(1));
    let spawned = shared.spawn(format!("emu-ws-{conn}-w"), move || {
        writer.run(&rx, interval, &reader_gone);
    });
    if let Err(e) = spawned {
        log::warn!("emulator: cannot spawn a writer thread: {e}");
        unregister(&channel_id);
        return;
    }
    read_loop(shared, &mut ws, &channel_id, conn, &tx);
    {
        // After the server's close frame, the client's close reply (or end of stream) ends the
        // connection: record it now, not when the writer thread gets round to it, so that the
        // record shows the old socket over before a client's prompt next socket.
        let mut st = shared.state.lock();
        if st.conns.get(&conn).is_some_and(|c| c.server_closed) {
            st.conns.remove(&conn);
            if let Some(ch) = st.channel_mut(&channel_id) {
                if ch.conn == Some(conn) {
                    ch.conn = None;
                }
            }
            st.log(&channel_id, conn, SocketEventKind::Disconnected);
        }
    }
    let _ = tx.send(Out::ReaderDone);
    drop(alive);
}

fn is_app_ping(text: &str) -> bool {
    text.contains("ping")
        && serde_json::from_str::<Value>(text)
            .ok()
            .is_some_and(|v| v.get("message").and_then(Value::as_str) == Some("ping"))
}

fn read_loop(
    shared: &Shared,
    ws: &mut tungstenite::WebSocket<ReadSide>,
    channel_id: &str,
    conn: u64,
    tx: &Sender<Out>,
) {
    loop {
        let message = match ws.read() {
            Ok(m) => m,
            Err(e) => {
                log::debug!("emulator: socket {conn} read ended: {e}");
                return;
            }
        };
        let kind = match message {
            Message::Text(text) => {
                if is_app_ping(text.as_str()) {
                    let _ = tx.send(Out::AppPong);
                    SocketEventKind::PingReceived
                } else {
                    SocketEventKind::TextReceived {
                        text: text.as_str().to_owned(),
                    }
                }
            }
            Message::Binary(data) => SocketEventKind::BinaryReceived { len: data.len() },
            Message::Ping(data) => {
                let _ = tx.send(Out::Pong(data.to_vec()));
                SocketEventKind::WsPingReceived
            }
            Message::Pong(_) => SocketEventKind::WsPongReceived,
            Message::Close(frame) => {
                let code = frame.map(|f| u16::from(f.code));
                shared.state.lock().log(
                    channel_id,
                    conn,
                    SocketEventKind::CloseFrameReceived { code },
                );
                let _ = tx.send(Out::ClientClosed(code));
                return;
            }
            Message::Frame(_) => continue,
        };
        shared.state.lock().log(channel_id, conn, kind);
    }
}

enum Flow {
    Continue,
    Exit,
}

/// The writer side of one socket.
struct Writer {
    shared: Arc<Shared>,
    conn: u64,
    channel_id: String,
    out: BufWriter<TcpStream>,
    silent: bool,
    close_sent: bool,
    close_deadline: Option<Instant>,
    /// (events left to fragment, fragment size)
    fragment: Option<(usize, usize)>,
    /// The connection ends with a TCP RST ([`Out::Reset`]).
    reset: bool,
}

/// Close codes a close frame may carry (RFC 6455 §7.4).
fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl Writer {
    fn run(mut self, rx: &Receiver<Out>, interval: Duration, reader_gone: &Receiver<()>) {
        let mut next_heartbeat = later(Instant::now(), interval);
        loop {
            let deadline = self
                .close_deadline
                .map_or(next_heartbeat, |d| d.min(next_heartbeat));
            match rx.recv_deadline(deadline) {
                Ok(first) => {
                    let mut flow = self.handle(first);
                    let mut batch = 1;
                    while matches!(flow, Flow::Continue) && batch < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(next) => flow = self.handle(next),
                            Err(_) => break,
                        }
                        batch += 1;
                    }
                    if self.out.flush().is_err() || matches!(flow, Flow::Exit) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    if self.close_deadline.is_some_and(|d| now >= d) {
                        break;
                    }
                    if now >= next_heartbeat {
                        if !self.suppressed()
                            && (self.frame(true, OP_TEXT, HEARTBEAT.as_bytes()).is_err()
                                || self.out.flush().is_err())
                        {
                            break;
                        }
                        next_heartbeat = later(now, interval);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // A reset must not send a FIN first: shutting down only the read side wakes the reader
        // (it sees end-of-stream) without a word on the wire; the RST goes out when the last
        // handle of the socket is closed, below and in the reader's thread.
        let how = if self.reset {
            Shutdown::Read
        } else {
            Shutdown::Both
        };
        let _ = self.out.get_ref().shutdown(how);
        // Wait for the reader (it sees EOF now), then forget the connection.
        let _ = reader_gone.recv();
        let mut st = self.shared.state.lock();
        // Unless the reader recorded the end already (after a server close frame).
        if st.conns.remove(&self.conn).is_some() {
            if let Some(ch) = st.channel_mut(&self.channel_id) {
                if ch.conn == Some(self.conn) {
                    ch.conn = None;
                }
            }
            st.log(&self.channel_id, self.conn, SocketEventKind::Disconnected);
        }
        drop(st);
        log::debug!(
            "emulator: socket {} to {} closed",
            self.conn,
            short(&self.channel_id)
        );
        // Buffered bytes are lost on purpose: the socket is shut down already (or reset).
        let (_stream, _unflushed) = self.out.into_parts();
    }

    /// Nothing but closing happens any more on this socket.
    fn suppressed(&self) -> bool {
        self.silent || self.close_sent
    }

    fn log(&self, kind: SocketEventKind) {
        self.shared
            .state
            .lock()
            .log(&self.channel_id, self.conn, kind);
    }

    /// Records the server's close frame and marks the connection as closed by the server.
    fn log_server_close(&self, kind: SocketEventKind) {
        let mut st = self.shared.state.lock();
        if let Some(c) = st.conns.get_mut(&self.conn) {
            c.server_closed = true;
        }
        st.log(&self.channel_id, self.conn, kind);
    }

    /// Encodes one unmasked frame into the buffer.
    fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let first = if fin { 0x80 | opcode } else { opcode };
        let len = payload.len();
        if len < 126 {
            self.out.write_all(&[first, len as u8])?;
        } else if let Ok(len16) = u16::try_from(len) {
            self.out.write_all(&[first, 126])?;
            self.out.write_all(&len16.to_be_bytes())?;
        } else {
            self.out.write_all(&[first, 127])?;
            self.out.write_all(&(len as u64).to_be_bytes())?;
        }
        self.out.write_all(payload)
    }

    fn close_frame(&mut self, code: Option<u16>, reason: &str) -> io::Result<()> {
        let mut payload = Vec::with_capacity(2 + reason.len());
        if let Some(code) = code {
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
        }
        self.frame(true, OP_CLOSE, &payload)?;
        self.out.flush()
    }

    fn event(&mut self, text: &str) -> io::Result<()> {
        let Some((left, size)) = self.fragment else {
            return self.frame(true, OP_TEXT, text.as_bytes());
        };
        self.fragment = (left > 1).then_some((left - 1, size));
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(size).collect();
        if chunks.len() <= 1 {
            return self.frame(true, OP_TEXT, text.as_bytes());
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let opcode = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
            self.frame(i == last, opcode, chunk)?;
        }
        Ok(())
    }

    fn handle(&mut self, out: Out) -> Flow {
        let written = match out {
            Out::Event(text) if !self.suppressed() => self.event(&text),
            Out::Text(text) if !self.suppressed() => self.frame(true, OP_TEXT, text.as_bytes()),
            Out::Binary(data) if !self.suppressed() => self.frame(true, OP_BINARY, &data),
            Out::Ping(data) if !self.suppressed() => self.frame(true, OP_PING, &data),
            Out::Pong(data) if !self.suppressed() => self.frame(true, OP_PONG, &data),
            Out::AppPong if !self.suppressed() => self.frame(true, OP_TEXT, PONG.as_bytes()),
            Out::Event(_)
            | Out::Text(_)
            | Out::Binary(_)
            | Out::Ping(_)
            | Out::Pong(_)
            | Out::AppPong => Ok(()),
            Out::Fragment { events, size } => {
                self.fragment = (events > 0).then_some((events, size));
                Ok(())
            }
            Out::Silent => {
                self.silent = true;
                Ok(())
            }
            Out::Close { code, reason } => {
                if self.close_sent {
                    return Flow::Continue;
                }
                if self.silent {
                    // Silence wins: close the TCP connection without a frame.
                    let _ = self.out.flush();
                    self.log(SocketEventKind::DroppedByServer);
                    return Flow::Exit;
                }
                self.close_sent = true;
                self.close_deadline = Some(later(Instant::now(), CLOSE_GRACE));
                // Logged first, so a test that saw the frame also sees the record.
                self.log_server_close(match code {
                    Some(code) => SocketEventKind::ClosedByServer { code },
                    None => SocketEventKind::ClosedByServerWithoutStatus,
                });
                self.close_frame(code, &reason)
            }
            Out::Drop => {
                let _ = self.out.flush();
                self.log(SocketEventKind::DroppedByServer);
                return Flow::Exit;
            }
            Out::Reset => {
                // Frames buffered but not flushed are discarded with the connection, as a
                // crashed peer or middlebox would. With linger 0 the last close sends RST.
                if let Err(e) =
                    socket2::SockRef::from(self.out.get_ref()).set_linger(Some(Duration::ZERO))
                {
                    log::warn!("emulator: socket {}: SO_LINGER 0 failed: {e}", self.conn);
                }
                self.reset = true;
                self.log(SocketEventKind::ResetByServer);
                return Flow::Exit;
            }
            Out::ClientClosed(code) => {
                if self.suppressed() {
                    return Flow::Continue;
                }
                self.close_sent = true;
                let echo = code.filter(|c| sendable_close_code(*c));
                self.log(SocketEventKind::CloseReplied { code: echo });
                self.close_frame(echo, "")
            }
            Out::ReaderDone => {
                let _ = self.out.flush();
                return Flow::Exit;
            }
            Out::Shutdown => {
                if !self.suppressed() {
                    self.close_sent = true;
                    self.log_server_close(SocketEventKind::ClosedByServer {
                        code: CLOSE_GOING_AWAY,
                    });
                    let _ = self.close_frame(Some(CLOSE_GOING_AWAY), "emulator shutting down");
                }
                let _ = self.out.flush();
                return Flow::Exit;
            }
        };
        match written {
            Ok(()) => Flow::Continue,
            Err(e) => {
                log::debug!("emulator: socket {} write failed: {e}", self.conn);
                Flow::Exit
            }
        }
    }
}
