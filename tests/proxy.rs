//! Corporate networks: one HTTP CONNECT proxy carries the token request, the REST calls and the
//! notification sockets; `NO_PROXY`-style bypass; proxy failures are typed and not retried in
//! a hot loop; proxy credentials stay secret; extra trust roots; the streaming (gateway)
//! override. Everything runs on 127.0.0.1 (loopback goes through the proxy only when asked).
mod util;

use genesys_notify::{Error, Lifecycle, ProxyError, TokenError};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::proxy::ConnectProxy;
use util::tls::tls_terminator;
use util::*;

fn api_port(emu: &genesys_notify::emulator::Emulator) -> String {
    emu.api_base().rsplit(':').next().unwrap().to_owned()
}

fn ws_port(emu: &genesys_notify::emulator::Emulator) -> String {
    emu.ws_base().rsplit(':').next().unwrap().to_owned()
}

#[test]
fn token_rest_and_socket_all_pass_through_the_proxy_and_events_flow() {
    let emu = emulator();
    let proxy = ConnectProxy::start(Some(("alice", "pa:ss@word")));
    let client = builder(&emu)
        .proxy(&proxy.url_with("alice", "pa%3Ass%40word"))
        .proxy_loopback(true)
        .build()
        .unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let _guard = client
        .on("v2.users.*.presence", move |e| {
            sink.lock().push(e.topic().to_owned())
        })
        .unwrap();
    let topics = presence_topics(2);
    let report = client.subscribe(&topics).unwrap();
    assert_eq!(report.permitted.len(), 2);
    for topic in &topics {
        emu.publish(topic, presence_body(1));
    }
    assert!(wait_until(Duration::from_secs(10), || seen.lock().len() == 2));
    let tunnels = proxy.tunnels();
    // The login and API hosts are the same emulator port; the socket has its own.
    assert!(
        tunnels
            .iter()
            .any(|t| t.ends_with(&format!(":{}", api_port(&emu)))),
        "{tunnels:?}"
    );
    assert!(
        tunnels
            .iter()
            .any(|t| t.ends_with(&format!(":{}", ws_port(&emu)))),
        "{tunnels:?}"
    );
    assert_eq!(proxy.refused(), 0);
    // Every REST call the emulator saw came through the proxy: its tunnels are the only way in.
    assert!(emu.token_requests() >= 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn hosts_on_the_bypass_list_and_loopback_go_direct() {
    let emu = emulator();
    let proxy = ConnectProxy::start(None);
    // Asked to proxy loopback, but the bypass list names the host.
    let client = builder(&emu)
        .proxy(&proxy.url())
        .proxy_loopback(true)
        .no_proxy("localhost, 127.0.0.1")
        .build()
        .unwrap();
    let _ = client.subscribe(presence_topics(1)).unwrap();
    // Loopback without proxy_loopback: direct as well.
    let direct = builder(&emu).proxy(&proxy.url()).build().unwrap();
    let _ = direct.subscribe(["v2.users.x.presence"]).unwrap();
    assert!(proxy.tunnels().is_empty(), "{:?}", proxy.tunnels());
    client.shutdown(Duration::from_secs(5)).unwrap();
    direct.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_proxy_asking_for_credentials_is_a_prompt_clear_error_with_few_attempts() {
    let emu = emulator();
    let proxy = ConnectProxy::start(Some(("alice", "secret")));
    let client = builder(&emu)
        .proxy(&proxy.url())
        .proxy_loopback(true)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    let took = started.elapsed();
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            Error::Token(TokenError::Proxy(ProxyError::AuthenticationRequired { .. }))
        ),
        "{err:?}"
    );
    assert!(text.contains("proxy") && text.contains("407"), "{text}");
    // Well within the connect timeout: nothing waited for a deadline.
    assert!(took < Duration::from_secs(2), "{took:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(proxy.refused() <= 2, "refused {} times", proxy.refused());
    assert_eq!(emu.token_requests(), 0);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// Wrong credentials in the proxy URL: the 407 on the token request (sent through the HTTP
/// agent, not our own CONNECT) says the credentials were refused, not "give user:password in
/// the proxy URL", which the user already did.
#[test]
fn a_proxy_refusing_the_given_credentials_says_so() {
    let emu = emulator();
    let proxy = ConnectProxy::start(Some(("alice", "secret")));
    let client = builder(&emu)
        .proxy(&proxy.url_with("alice", "wrong"))
        .proxy_loopback(true)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = client.verify_token().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Token(TokenError::Proxy(ProxyError::AuthenticationRequired {
                credentials_sent: true,
                ..
            }))
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("wrong"), "{text}");
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_socket_reconnects_through_a_proxy_that_comes_back_and_reports_the_gap() {
    let emu = emulator();
    let mut proxy = ConnectProxy::start(None);
    let client = builder(&emu)
        .proxy(&proxy.url())
        .proxy_loopback(true)
        .build()
        .unwrap();
    let lifecycle = Recorder::new(&client);
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let _guard = client
        .on("v2.users.*.presence", move |e| {
            sink.lock().push(e.body_json().to_owned())
        })
        .unwrap();
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    assert!(lifecycle.wait(Duration::from_secs(5), |e| matches!(
        e,
        Lifecycle::Connected { .. }
    )));
    let tunnels_before = proxy.tunnels().len();
    proxy.stop();
    assert!(lifecycle.wait(Duration::from_secs(10), |e| matches!(
        e,
        Lifecycle::Reconnecting { .. }
    )));
    std::thread::sleep(Duration::from_millis(300));
    proxy.restart();
    assert!(
        lifecycle.wait(Duration::from_secs(15), |e| matches!(
            e,
            Lifecycle::Gap { .. }
        )),
        "{:?}",
        lifecycle.snapshot()
    );
    assert!(proxy.tunnels().len() > tunnels_before);
    emu.publish(&topics[0], presence_body(7));
    assert!(wait_until(Duration::from_secs(10), || seen
        .lock()
        .iter()
        .any(|b| b.contains("\"seq\":7"))));
    client.shutdown(Duration::from_secs(5)).unwrap();
}

/// A logger that keeps every line, to look for secrets in.
struct Capture(parking_lot::Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0
            .lock()
            .push(format!("{} {}", record.target(), record.args()));
    }
    fn flush(&self) {}
}

static LOGS: std::sync::OnceLock<&'static Capture> = std::sync::OnceLock::new();

#[test]
fn proxy_credentials_never_show_in_debug_output_or_logs() {
    const MARKER: &str = "pr0xy-s3cret-MARKER";
    let logs = LOGS.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Default::default())));
        let _ = log::set_logger(capture);
        log::set_max_level(log::LevelFilter::Debug);
        capture
    });
    let emu = emulator();
    let proxy = ConnectProxy::start(Some(("bob", MARKER)));
    let builder = builder(&emu)
        .proxy(&proxy.url_with("bob", MARKER))
        .proxy_loopback(true);
    let shown = format!("{builder:?}");
    let client = builder.build().unwrap();
    let _ = client.subscribe(presence_topics(1)).unwrap();
    let lifecycle = Recorder::new(&client);
    proxy.refused();
    let mut texts = vec![
        shown,
        format!("{client:?}"),
        format!("{:?}", client.config()),
        format!("{:?}", client.health()),
    ];
    // A wrong password: the error and its lifecycle events must not echo it.
    let bad = util::builder(&emu)
        .proxy(&proxy.url_with("bob", &format!("{MARKER}-wrong")))
        .proxy_loopback(true)
        .build()
        .unwrap();
    let err = bad.subscribe(presence_topics(1)).unwrap_err().into_error();
    texts.push(format!("{err:?} {err}"));
    client.shutdown(Duration::from_secs(5)).unwrap();
    bad.shutdown(Duration::from_secs(5)).unwrap();
    texts.extend(lifecycle.snapshot().iter().map(|e| format!("{e:?}")));
    texts.extend(logs.0.lock().iter().cloned());
    assert!(texts.len() > 5);
    for text in texts {
        assert!(!text.contains(MARKER), "secret shown: {text}");
        assert!(!text.contains("Ym9iOn"), "Basic token shown: {text}");
    }
}

#[test]
fn a_server_signed_by_a_private_ca_is_refused_by_default_and_accepted_with_its_pem() {
    let emu = emulator();
    let upstream = emu.ws_base().trim_start_matches("ws://").to_owned();
    let (port, ca_pem) = tls_terminator(upstream);
    let gateway = format!("https://localhost:{port}");

    let refusing = builder(&emu)
        .streaming_base(&gateway)
        .connect_timeout(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let lifecycle = Recorder::new(&refusing);
    let err = refusing
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(lifecycle.wait(Duration::from_secs(5), |e| matches!(
        e,
        Lifecycle::Reconnecting { error, .. } if error.to_string().contains("certificate")
    )));
    refusing.shutdown(Duration::from_secs(5)).unwrap();

    let trusting = builder(&emu)
        .streaming_base(&gateway)
        .add_root_certificates_pem(&ca_pem)
        .build()
        .unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(0usize));
    let sink = seen.clone();
    let _guard = trusting
        .on("v2.users.*.presence", move |_| *sink.lock() += 1)
        .unwrap();
    let topics = presence_topics(1);
    let _ = trusting.subscribe(&topics).unwrap();
    emu.publish(&topics[0], presence_body(1));
    assert!(wait_until(Duration::from_secs(10), || *seen.lock() == 1));
    trusting.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn bad_pem_and_bad_proxy_urls_fail_build_naming_the_field() {
    let emu = emulator();
    for (builder, field) in [
        (
            builder(&emu).add_root_certificates_pem("not a certificate"),
            "root_certificates",
        ),
        (builder(&emu).proxy("socks5://127.0.0.1:1080"), "proxy"),
        (builder(&emu).proxy("http://:80"), "proxy"),
        (
            builder(&emu).streaming_base("https://gw.example.com/x"),
            "streaming_base",
        ),
        (
            builder(&emu).streaming_base("http://gw.example.com"),
            "streaming_base",
        ),
    ] {
        match builder.build() {
            Err(Error::Config(e)) => assert_eq!(e.field, field, "{e}"),
            other => panic!("expected a config error for {field}, got {other:?}"),
        }
    }
}

/// A `CERTIFICATE` block whose base64 decodes but holds no certificate (a truncated or mangled
/// corporate CA file) fails `build()` naming the field, instead of being skipped with a log line
/// and showing up later as "unknown issuer" on every connection.
#[test]
fn a_pem_block_that_is_not_a_certificate_fails_build() {
    let emu = emulator();
    let mangled = "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
    match builder(&emu).add_root_certificates_pem(mangled).build() {
        Err(Error::Config(e)) => {
            assert_eq!(e.field, "root_certificates", "{e}");
            assert!(e.reason.contains("certificate"), "{e}");
        }
        other => panic!("expected a config error for root_certificates, got {other:?}"),
    }
}

/// A plain TCP forwarder that records the first line of each connection.
fn forwarder(upstream: String) -> (u16, Arc<parking_lot::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = lines.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().take(32) {
            let Ok(mut client) = client else { continue };
            let Ok(mut up) = TcpStream::connect(&upstream) else {
                continue;
            };
            let mut first = [0u8; 512];
            let n = client.read(&mut first).unwrap_or(0);
            let text = String::from_utf8_lossy(&first[..n]).into_owned();
            record
                .lock()
                .push(text.lines().next().unwrap_or("").to_owned());
            let _ = up.write_all(&first[..n]);
            let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut u2);
                let _ = u2.shutdown(Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up, &mut client);
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    (port, lines)
}

#[test]
fn the_streaming_override_keeps_the_connect_uri_path_and_query() {
    let emu = emulator();
    let upstream = emu.ws_base().trim_start_matches("ws://").to_owned();
    let (port, lines) = forwarder(upstream);
    let client = builder(&emu)
        .streaming_base(&format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(0usize));
    let sink = seen.clone();
    let _guard = client
        .on("v2.users.*.presence", move |_| *sink.lock() += 1)
        .unwrap();
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    emu.publish(&topics[0], presence_body(1));
    assert!(wait_until(Duration::from_secs(10), || *seen.lock() == 1));
    let channel = emu.channels().into_iter().next().expect("a channel").id;
    let lines = lines.lock().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("GET /channels/{channel}")),
        "{lines:?}"
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_user_function_can_map_the_connect_uri() {
    let emu = emulator();
    let upstream = emu.ws_base().trim_start_matches("ws://").to_owned();
    let (port, lines) = forwarder(upstream);
    let client = builder(&emu)
        .map_connect_uri(move |uri| {
            let path = &uri[uri.find("/channels/").unwrap()..];
            format!("ws://localhost:{port}{path}?via=gateway")
        })
        .build()
        .unwrap();
    let _ = client.subscribe(presence_topics(1)).unwrap();
    let lines = lines.lock().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/channels/") && l.contains("?via=gateway")),
        "{lines:?}"
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}
