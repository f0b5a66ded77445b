//! The emulator's HTTP connections (issue #11): requests share a kept-alive connection, bodies
//! may be chunked, and dropping the emulator closes every connection at once, so a client
//! whose pooled connection outlives the emulator gets a prompt transport error instead of
//! waiting for its request timeout (tests simulate outages by dropping the emulator).
mod util;

use genesys_notify::emulator::Emulator;
use genesys_notify::Client;
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use util::*;

/// A client waits this long for an answer: far longer than "at once", so a hang shows.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// What "at once" means here, with room for a slow, shared machine.
const PROMPT: Duration = Duration::from_secs(10);

/// The thread census below counts every emulator of this process: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The emulator's HTTP threads alive in this process.
fn emulator_http_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("emu-http"))
        .count()
}

fn connect(emu: &Emulator) -> TcpStream {
    let stream = TcpStream::connect(emu.api_base().trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    stream
}

/// Reads one response: status, head (lower-cased) and body.
fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-head");
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes).unwrap().to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

fn tokens_me(token: &str, extra: &str) -> String {
    format!(
        "GET /api/v2/tokens/me HTTP/1.1\r\nHost: emulator\r\nAuthorization: Bearer {token}\r\n{extra}\r\n"
    )
}

/// After a request on `stream`, the server closed it: the next read is the end of the stream
/// (or a reset), not a timeout. Returns how long that took.
fn closed_by_server(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut rest = [0u8; 64];
    match stream.read(&mut rest) {
        Ok(0) => {}
        Ok(n) => panic!("{n} more bytes after the answer"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the connection stayed open: {e}"
        ),
    }
    started.elapsed()
}

#[test]
fn requests_share_a_connection_until_the_client_closes_it() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let token = emu.issue_token();
    let mut stream = connect(&emu);
    for _ in 0..3 {
        stream.write_all(tokens_me(&token, "").as_bytes()).unwrap();
        let (status, head, body) = read_response(&mut stream);
        assert_eq!(status, 200, "{head}{body}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    // Two requests sent back to back are answered in order.
    let two = format!("{}{}", tokens_me(&token, ""), tokens_me("unknown", ""));
    stream.write_all(two.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    assert_eq!(read_response(&mut stream).0, 401);
    // The client asks to close: answered, then closed.
    stream
        .write_all(tokens_me(&token, "Connection: close\r\n").as_bytes())
        .unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 200);
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_by_server(&mut stream) < PROMPT);
    let calls = emu
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v2/tokens/me")
        .count();
    assert_eq!(calls, 6);
}

#[test]
fn chunked_bodies_and_expect_continue_are_read() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let mut stream = connect(&emu);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        emu.client_id(),
        emu.client_secret()
    ));
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: emulator\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut stream);
    assert_eq!(status, 100, "the server asks for the body");
    // `grant_type=client_credentials` in two chunks, then a trailer.
    stream
        .write_all(b"b\r\ngrant_type=\r\n12\r\nclient_credentials\r\n0\r\nX-Trailer: 1\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut stream);
    assert_eq!(status, 200, "{head}{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    // The connection is still in step: the next request on it works.
    stream.write_all(tokens_me(&token, "").as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
}

#[test]
fn a_request_that_is_not_http_is_answered_400_and_closed() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let mut stream = connect(&emu);
    stream.write_all(b"\x16\x03\x01 not http\r\n\r\n").unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 400);
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_by_server(&mut stream) < PROMPT);
    // A body larger than the emulator takes: 413, closed.
    let mut stream = connect(&emu);
    stream
        .write_all(b"POST /oauth/token HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).0, 413);
    assert!(closed_by_server(&mut stream) < PROMPT);
}

#[test]
fn a_connection_outliving_the_emulator_fails_at_once() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let token = emu.issue_token();
    // An idle kept-alive connection: the server closes it when dropped.
    let mut idle = connect(&emu);
    idle.write_all(tokens_me(&token, "").as_bytes()).unwrap();
    assert_eq!(read_response(&mut idle).0, 200);

    // A ureq agent and the library's client, each with a pooled connection.
    let url = format!("{}/api/v2/tokens/me", emu.api_base());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(CLIENT_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let call = || {
        agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .map(|mut r| (r.status().as_u16(), r.body_mut().read_to_string()))
    };
    assert_eq!(call().unwrap().0, 200);
    let client = Client::builder()
        .api_base(emu.api_base())
        .login_base(emu.login_base())
        .client_credentials(emu.client_id(), emu.client_secret())
        .request_timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    client.verify_token().unwrap();
    client.verify_token().unwrap();
    assert!(emulator_http_threads() >= 1);

    let started = Instant::now();
    drop(emu);
    let dropped = started.elapsed();
    assert!(dropped < PROMPT, "drop took {dropped:?}");
    assert_eq!(emulator_http_threads(), 0, "every connection thread joined");

    assert!(closed_by_server(&mut idle) < PROMPT);
    let started = Instant::now();
    let failed = call();
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        started.elapsed() < PROMPT,
        "ureq waited {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let failed = client.verify_token();
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        started.elapsed() < PROMPT,
        "the client waited {:?}",
        started.elapsed()
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}
