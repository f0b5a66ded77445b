//! tunnel.rs opens an HTTP `CONNECT` tunnel (RFC 9110 §9.3.6) through a proxy for a notification
//! socket, since tungstenite has no proxy support; it never speaks TLS or WebSocket itself and
//! never shows proxy credentials. Which proxy, if any, is proxy.rs's decision.

use crate::error::{Cause, ProxyError};
use crate::proxy::Proxy;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Longest `CONNECT` answer head accepted, in bytes (a proxy streaming headers for ever is a
/// protocol error, not a reason to grow memory).
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// Asks `proxy`, already connected on `stream`, for a tunnel to `host:port`, before `deadline`.
/// On success the stream carries the tunnel and nothing of the target's bytes was consumed.
pub(crate) fn tunnel(
    stream: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<(), ProxyError> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = proxy.authorization() {
        request.push_str("Proxy-Authorization: ");
        request.push_str(&auth);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let left = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(ProxyError::Timeout)
        } else {
            Ok(left)
        }
    };
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ProxyError::Timeout,
        _ => ProxyError::Io(Cause::new(e)),
    };
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    // Read the answer's head one byte at a time: the target's first bytes (none before our TLS
    // hello, but a proxy may pipeline) must stay in the stream.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_HEAD {
            return Err(ProxyError::BadResponse(format!(
                "answer head longer than {MAX_CONNECT_HEAD} bytes"
            )));
        }
        stream
            .set_read_timeout(Some(left()?.min(Duration::from_millis(100))))
            .map_err(io)?;
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(ProxyError::Io(
                    "the proxy closed the connection before answering".into(),
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                left()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProxyError::Io(Cause::new(e))),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ProxyError::BadResponse("incomplete answer head".into()))
        }
        Err(e) => return Err(ProxyError::BadResponse(e.to_string())),
    }
    match response.code {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(407) => Err(ProxyError::AuthenticationRequired {
            scheme: response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("proxy-authenticate"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.split_whitespace().next())
                .map(|s| s.chars().take(32).collect()),
            credentials_sent: proxy.has_credentials(),
        }),
        Some(status) => Err(ProxyError::Refused { status }),
        None => Err(ProxyError::BadResponse("no status code".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A one-shot fake proxy answering `answer` to whatever it reads.
    fn fake_proxy(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            got
        });
        (port, handle)
    }

    fn connect_through(port: u16, proxy: &str) -> Result<(), ProxyError> {
        let proxy = Proxy::parse(&format!("http://{proxy}@127.0.0.1:{port}")).unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tunnel(
            &mut s,
            &proxy,
            "streaming.mypurecloud.com",
            443,
            Instant::now() + Duration::from_secs(5),
        )
    }

    #[test]
    fn connect_sends_target_and_basic_credentials_and_accepts_2xx() {
        let (port, h) = fake_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n");
        connect_through(port, "u:p").unwrap();
        let got = String::from_utf8(h.join().unwrap()).unwrap();
        assert!(
            got.starts_with("CONNECT streaming.mypurecloud.com:443 HTTP/1.1\r\n"),
            "{got}"
        );
        assert!(got.contains("Proxy-Authorization: Basic dTpw\r\n"), "{got}");
    }

    #[test]
    fn connect_answers_map_to_typed_errors() {
        let (port, _h) = fake_proxy(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n\r\n",
        );
        assert_eq!(
            connect_through(port, "u:p"),
            Err(ProxyError::AuthenticationRequired {
                scheme: Some("Basic".into()),
                credentials_sent: true
            })
        );
        let (port, _h) = fake_proxy(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            connect_through(port, "u:p"),
            Err(ProxyError::Refused { status: 502 })
        );
        let (port, _h) = fake_proxy(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(matches!(
            connect_through(port, "u:p"),
            Err(ProxyError::BadResponse(_))
        ));
        let (port, _h) = fake_proxy(b"");
        assert!(matches!(
            connect_through(port, "u:p"),
            Err(ProxyError::Io(_))
        ));
        assert!(!ProxyError::AuthenticationRequired {
            scheme: None,
            credentials_sent: false
        }
        .is_transient());
        assert!(ProxyError::Refused { status: 503 }.is_transient());
    }

    #[test]
    fn a_silent_proxy_times_out_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy::parse(&format!("127.0.0.1:{port}")).unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let started = Instant::now();
        let r = tunnel(
            &mut s,
            &proxy,
            "h",
            443,
            started + Duration::from_millis(300),
        );
        assert_eq!(r, Err(ProxyError::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(listener);
    }
}
