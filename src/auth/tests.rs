//! Unit tests of the token sources, the refresh policy, the manager and the refresher.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;

use super::refresh::{refresh_at, retry_base_delay, retry_delay, MIN_REFRESH_DELAY};
use super::*;
use crate::error::TokenError;
use mockito::Matcher;
use std::sync::atomic::AtomicUsize;

const SECRET: &str = "SECRET-MARKER-9f3c";
const TOKEN: &str = "TOKEN-MARKER-51ab";

fn no_events() -> Arc<dyn Fn(AuthEvent) + Send + Sync> {
    Arc::new(|_| {})
}

fn source(url: &str) -> ClientCredentials {
    ClientCredentials::new(url, "my-client", SECRET, Duration::from_secs(5))
}

#[test]
fn client_credentials_posts_basic_auth_and_form() {
    let mut server = mockito::Server::new();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("my-client:{SECRET}"))
    );
    let mock = server
        .mock("POST", "/oauth/token")
        .match_header("authorization", expected.as_str())
        .match_header(
            "content-type",
            Matcher::Regex("^application/x-www-form-urlencoded".into()),
        )
        .match_body(Matcher::UrlEncoded(
            "grant_type".into(),
            "client_credentials".into(),
        ))
        .with_status(200)
        .with_header("content-type", "application/json")
        .with_body(format!(
            r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":86400}}"#
        ))
        .expect(1)
        .create();
    let token = source(&format!("{}/", server.url())).fetch_token().unwrap();
    mock.assert();
    assert_eq!(token.secret(), TOKEN);
    assert_eq!(token.expires_in(), Some(Duration::from_secs(86_400)));
}

#[test]
fn invalid_client_is_permanent_invalid_credentials() {
    let mut server = mockito::Server::new();
    let _m = server
        .mock("POST", "/oauth/token")
        .with_status(401)
        .with_body(r#"{"error":"invalid_client","description":"client not found","error_description":"client not found"}"#)
        .create();
    let err = source(&server.url()).fetch_token().unwrap_err();
    assert_eq!(
        err,
        TokenError::InvalidCredentials {
            status: 401,
            error: "invalid_client".into(),
            description: "client not found".into(),
        }
    );
    assert!(err.is_permanent());
    assert!(!err.to_string().contains(SECRET));
}

#[test]
fn rate_limited_token_endpoint_reports_retry_after() {
    let mut server = mockito::Server::new();
    let _m = server
        .mock("POST", "/oauth/token")
        .with_status(429)
        .with_header("Retry-After", "7")
        .create();
    let err = source(&server.url()).fetch_token().unwrap_err();
    assert_eq!(
        err,
        TokenError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(!err.is_permanent());
}

#[test]
fn server_errors_and_missing_token_are_server_errors() {
    let mut server = mockito::Server::new();
    let m = server
        .mock("POST", "/oauth/token")
        .with_status(503)
        .with_body("upstream down")
        .create();
    let err = source(&server.url()).fetch_token().unwrap_err();
    assert!(
        matches!(err, TokenError::Server { status: 503, ref message } if message == "upstream down")
    );
    assert!(!err.is_permanent());
    m.remove();
    let _m = server
        .mock("POST", "/oauth/token")
        .with_status(200)
        .with_body(r#"{"token_type":"bearer"}"#)
        .create();
    let err = source(&server.url()).fetch_token().unwrap_err();
    assert!(matches!(err, TokenError::Server { status: 200, .. }));
}

#[test]
fn malformed_token_response_does_not_quote_the_body() {
    let mut server = mockito::Server::new();
    let _m = server
        .mock("POST", "/oauth/token")
        .with_status(200)
        .with_body(format!(r#""{TOKEN}""#))
        .create();
    let err = source(&server.url()).fetch_token().unwrap_err();
    assert!(
        matches!(err, TokenError::Server { status: 200, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(TOKEN));
}

#[test]
fn unreachable_token_endpoint_is_transport() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = source(&url).fetch_token().unwrap_err();
    assert!(matches!(err, TokenError::Transport(_)), "{err:?}");
}

#[test]
fn refresh_at_follows_the_documented_rule() {
    let t0 = Instant::now();
    let h = |h: u64| Duration::from_secs(h * 3600);
    // 24 h default: 80 %.
    assert_eq!(refresh_at(t0, h(24)) - t0, Duration::from_secs(69_120));
    // 48 h maximum: 80 %.
    assert_eq!(refresh_at(t0, h(48)) - t0, Duration::from_secs(138_240));
    // 300 s minimum: 80 % is exactly 60 s before expiry.
    assert_eq!(
        refresh_at(t0, Duration::from_secs(300)) - t0,
        Duration::from_secs(240)
    );
    // 120 s: 60 s before expiry rather than 24 s.
    assert_eq!(
        refresh_at(t0, Duration::from_secs(120)) - t0,
        Duration::from_secs(60)
    );
    // 60 s: 60 s before would be now; half the lifetime instead.
    assert_eq!(
        refresh_at(t0, Duration::from_secs(60)) - t0,
        Duration::from_secs(30)
    );
    // Test tokens.
    assert_eq!(
        refresh_at(t0, Duration::from_secs(3)) - t0,
        Duration::from_millis(1500)
    );
    assert_eq!(
        refresh_at(t0, Duration::from_secs(2)) - t0,
        Duration::from_secs(1)
    );
    // Degenerate lifetimes never cause a hot loop.
    assert_eq!(refresh_at(t0, Duration::ZERO) - t0, MIN_REFRESH_DELAY);
    assert_eq!(
        refresh_at(t0, Duration::from_millis(500)) - t0,
        MIN_REFRESH_DELAY
    );
}

#[test]
fn refresh_is_always_before_expiry_for_real_lifetimes() {
    let t0 = Instant::now();
    for secs in (300..=172_800).step_by(97) {
        let life = Duration::from_secs(secs);
        let at = refresh_at(t0, life) - t0;
        assert!(at >= life / 2, "{secs}");
        assert!(life - at >= Duration::from_secs(60), "{secs}");
        assert!(at >= life * 4 / 5 - Duration::from_millis(1), "{secs}");
    }
}

#[test]
fn retry_backoff_grows_caps_and_respects_permanence() {
    let transient = TokenError::Transport("x".into());
    assert_eq!(retry_base_delay(&transient, 1), Duration::from_secs(1));
    assert_eq!(retry_base_delay(&transient, 2), Duration::from_secs(2));
    assert_eq!(retry_base_delay(&transient, 5), Duration::from_secs(16));
    assert_eq!(retry_base_delay(&transient, 6), Duration::from_secs(30));
    assert_eq!(
        retry_base_delay(&transient, u32::MAX),
        Duration::from_secs(30)
    );
    let bad = TokenError::InvalidCredentials {
        status: 401,
        error: "invalid_client".into(),
        description: String::new(),
    };
    assert_eq!(retry_base_delay(&bad, 1), Duration::from_secs(300));
    let limited = TokenError::RateLimited {
        retry_after: Some(Duration::from_secs(45)),
    };
    assert_eq!(retry_base_delay(&limited, 1), Duration::from_secs(45));
    for n in 1..10 {
        let d = retry_delay(&transient, n);
        let base = retry_base_delay(&transient, n);
        assert!(d >= base / 2 && d <= base);
        assert!(retry_delay(&limited, n) >= Duration::from_secs(45));
    }
}

/// A source counting its calls, each taking `delay` and issuing a token with `life`.
fn counting_source(
    calls: Arc<AtomicUsize>,
    delay: Duration,
    life: Option<Duration>,
) -> Box<dyn TokenSource> {
    Box::new(move || {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        std::thread::sleep(delay);
        Ok(AccessToken::new(format!("token-{n}"), life))
    })
}

#[test]
fn concurrent_callers_share_one_fetch() {
    let mut server = mockito::Server::new();
    let mock = server
        .mock("POST", "/oauth/token")
        .with_status(200)
        .with_chunked_body(|w| {
            std::thread::sleep(Duration::from_millis(300));
            w.write_all(format!(r#"{{"access_token":"{TOKEN}","expires_in":3600}}"#).as_bytes())
        })
        .expect(1)
        .create();
    let manager = TokenManager::new(Box::new(source(&server.url())), no_events());
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = Arc::clone(&manager);
            std::thread::spawn(move || m.token())
        })
        .collect();
    for t in threads {
        assert_eq!(&*t.join().unwrap().unwrap(), TOKEN);
    }
    // And the cached token is reused.
    assert_eq!(&*manager.token().unwrap(), TOKEN);
    mock.assert();
}

#[test]
fn waiters_share_the_error_of_the_fetch_they_joined() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let manager = TokenManager::new(
        Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            Err(TokenError::Transport("down".into()))
        }),
        no_events(),
    );
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let m = Arc::clone(&manager);
            std::thread::spawn(move || m.token())
        })
        .collect();
    for t in threads {
        assert_eq!(
            t.join().unwrap().unwrap_err(),
            TokenError::Transport("down".into())
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn invalidate_forgets_only_the_stale_token() {
    let calls = Arc::new(AtomicUsize::new(0));
    let manager = TokenManager::new(
        counting_source(
            Arc::clone(&calls),
            Duration::ZERO,
            Some(Duration::from_secs(3600)),
        ),
        no_events(),
    );
    assert_eq!(&*manager.token().unwrap(), "token-1");
    assert_eq!(&*manager.token().unwrap(), "token-1");
    // A stale value that is no longer current changes nothing.
    manager.invalidate("token-0");
    assert_eq!(&*manager.token().unwrap(), "token-1");
    manager.invalidate("token-1");
    assert_eq!(&*manager.token().unwrap(), "token-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn expired_token_is_fetched_again_on_demand() {
    let calls = Arc::new(AtomicUsize::new(0));
    let manager = TokenManager::new(
        counting_source(
            Arc::clone(&calls),
            Duration::ZERO,
            Some(Duration::from_millis(200)),
        ),
        no_events(),
    );
    assert_eq!(&*manager.token().unwrap(), "token-1");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(&*manager.token().unwrap(), "token-2");
}

#[test]
fn a_token_no_header_can_carry_is_the_sources_error_never_quoted() {
    for bad in [
        "",
        "line\nbreak",
        "with space",
        "\u{e9}t\u{e9}",
        "ok\r\nX-Smuggled: 1",
    ] {
        let manager = TokenManager::new(
            Box::new(move || -> Result<AccessToken, TokenError> {
                Ok(AccessToken::new(bad, Some(Duration::from_secs(3600))))
            }),
            no_events(),
        );
        match manager.token() {
            Err(e @ TokenError::UnusableToken { .. }) => {
                let message = e.to_string();
                assert!(message.contains("HTTP header"), "{message}");
                assert!(bad.is_empty() || !message.contains(bad), "{message}");
                // Permanent: a call needing the token fails at once, not at its deadline.
                assert!(e.is_permanent(), "{e:?}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn panicking_source_becomes_an_error() {
    let manager = TokenManager::new(
        Box::new(|| -> Result<AccessToken, TokenError> { panic!("boom") }),
        no_events(),
    );
    assert!(matches!(manager.token(), Err(TokenError::Other(_))));
    // And the manager is still usable.
    assert!(matches!(manager.token(), Err(TokenError::Other(_))));
}

#[test]
fn refresher_refreshes_short_tokens_and_stops_promptly() {
    let mut server = mockito::Server::new();
    let mock = server
        .mock("POST", "/oauth/token")
        .with_status(200)
        .with_body(format!(r#"{{"access_token":"{TOKEN}","expires_in":2}}"#))
        .expect_at_least(3)
        .create();
    let refreshed = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&refreshed);
    let manager = TokenManager::new(
        Box::new(source(&server.url())),
        Arc::new(move |event| {
            if let AuthEvent::Refreshed { expires_in } = event {
                assert_eq!(expires_in, Some(Duration::from_secs(2)));
                r.fetch_add(1, Ordering::SeqCst);
            }
        }),
    );
    let handle = manager.start_refresher();
    std::thread::sleep(Duration::from_millis(3500));
    // Initial fetch at 0 s, then refreshes at about 1 s, 2 s and 3 s.
    let n = refreshed.load(Ordering::SeqCst);
    assert!(n >= 3, "only {n} fetches");
    let stopping = Instant::now();
    handle.stop();
    assert!(
        stopping.elapsed() < Duration::from_millis(100),
        "{:?}",
        stopping.elapsed()
    );
    mock.assert();
    // Nothing runs after stop.
    let after = refreshed.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(refreshed.load(Ordering::SeqCst), after);
}

/// Review point 9: it slept 100 ms and expected the first fetch done, and the drop within
/// 100 ms, which a loaded machine missed. It now waits for the first fetch (up to 10 s) and
/// bounds the drop by 2 s: still far below the 24 h token's refresh time the refresher sleeps
/// towards, which is what a drop must not wait for.
#[test]
fn dropping_a_refresher_of_a_long_token_is_prompt() {
    let calls = Arc::new(AtomicUsize::new(0));
    let manager = TokenManager::new(
        counting_source(
            Arc::clone(&calls),
            Duration::ZERO,
            Some(Duration::from_secs(86_400)),
        ),
        no_events(),
    );
    let handle = manager.start_refresher();
    let started = Instant::now();
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no first token fetch"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The refresher now sleeps until the token is near its end, hours away.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stopping = Instant::now();
    drop(handle);
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
}

#[test]
fn failed_refresh_is_reported_and_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let f = Arc::clone(&failures);
    let manager = TokenManager::new(
        Box::new(move || {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(TokenError::Transport("refused".into()))
            } else {
                Ok(AccessToken::new("fresh", Some(Duration::from_secs(3600))))
            }
        }),
        Arc::new(move |event| {
            if let AuthEvent::RefreshFailed { error, retry_in } = event {
                f.lock().push((error, retry_in));
            }
        }),
    );
    let handle = manager.start_refresher();
    // First attempt fails, retried after 0.5–1 s.
    std::thread::sleep(Duration::from_millis(1300));
    handle.stop();
    let failures = failures.lock();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, TokenError::Transport("refused".into()));
    assert!(failures[0].1 <= Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(&*manager.token().unwrap(), "fresh");
}

#[test]
fn permanent_failure_is_not_hammered() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let retry = Arc::new(Mutex::new(None));
    let r = Arc::clone(&retry);
    let manager = TokenManager::new(
        Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            Err(TokenError::InvalidCredentials {
                status: 401,
                error: "invalid_client".into(),
                description: String::new(),
            })
        }),
        Arc::new(move |event| {
            if let AuthEvent::RefreshFailed { retry_in, .. } = event {
                *r.lock() = Some(retry_in);
            }
        }),
    );
    let handle = manager.start_refresher();
    std::thread::sleep(Duration::from_millis(300));
    handle.stop();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(retry.lock().unwrap() >= Duration::from_secs(150));
}

#[test]
fn static_token_is_never_refreshed_ahead() {
    let manager = TokenManager::new(Box::new(StaticToken::new(TOKEN)), no_events());
    let handle = manager.start_refresher();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(&*manager.token().unwrap(), TOKEN);
    let stopping = Instant::now();
    handle.stop();
    assert!(stopping.elapsed() < Duration::from_millis(100));
}

#[test]
fn debug_output_never_shows_secrets() {
    let creds = ClientCredentials::new(
        "https://login.example.test",
        "my-client",
        SECRET,
        Duration::from_secs(5),
    );
    let shown = format!("{creds:?}");
    assert!(shown.contains("my-client"));
    assert!(!shown.contains(SECRET));
    assert!(shown.contains("<redacted>"));

    let token = AccessToken::new(TOKEN, Some(Duration::from_secs(60)));
    let shown = format!("{token:?}");
    assert!(!shown.contains(TOKEN));
    assert!(shown.contains("60s"));

    let shown = format!("{:?}", StaticToken::new(TOKEN));
    assert!(!shown.contains(TOKEN));

    let manager = TokenManager::new(Box::new(StaticToken::new(TOKEN)), no_events());
    manager.token().unwrap();
    assert!(!format!("{manager:?}").contains(TOKEN));
}

/// A token request hanging on a silent login server is cut by the client's
/// `Network::interrupt_requests` (the token agent shares the REST agents' socket registry).
#[test]
fn a_hanging_token_request_is_cut_as_a_transport_error() {
    use crate::network::testing::{hanging, silent_server, PROMPTLY, REQUEST_TIMEOUT};
    let (base, accepted) = silent_server();
    let net =
        crate::network::Network::with_env(&crate::config::Config::default(), &|_| None).unwrap();
    let source = ClientCredentials::with_agent(
        &base,
        "id".into(),
        "secret".into(),
        REQUEST_TIMEOUT,
        net.agent(&base, REQUEST_TIMEOUT),
    );
    let call = hanging(&net, &accepted, move || source.fetch_token());
    net.interrupt_requests();
    let error = call.recv_timeout(PROMPTLY).expect("returned promptly");
    match error {
        Err(TokenError::Transport(cause)) => assert!(!cause.is_timeout(), "{cause}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
}
