//! A `subscribe` that needs a new channel while the service rate-limits or keeps failing
//! (guarantee 4, docs/protocol.md "Rate limits"): when `Retry-After` puts the next attempt past
//! the call's deadline, the call returns the service's answer at once (`Error::Api` with the
//! `Retry-After`), not a bare `Error::Timeout` after waiting for nothing; a service that keeps
//! failing until the deadline gives its last answer too. Nothing is left subscribed and the
//! client does not hammer the service.
mod util;

use genesys_notify::emulator::{Endpoint, Fault};
use genesys_notify::{ApiError, Error};
use std::time::{Duration, Instant};
use util::*;

/// A client of `emu` whose connect and request timeouts are both `timeout`.
fn client(emu: &genesys_notify::emulator::Emulator, timeout: Duration) -> genesys_notify::Client {
    builder(emu)
        .connect_timeout(timeout)
        .request_timeout(timeout)
        .build()
        .unwrap()
}

/// `endpoint` answers `status` (with this `Retry-After`, in seconds) for its next `times` calls.
fn refuse(
    emu: &genesys_notify::emulator::Emulator,
    endpoint: Endpoint,
    status: u16,
    retry_after: Option<u64>,
    times: usize,
) {
    emu.inject(Fault::HttpStatus {
        endpoint,
        status,
        retry_after,
        times,
    });
}

fn create_channel_calls(emu: &genesys_notify::emulator::Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v2/notifications/channels")
        .count()
}

#[test]
fn a_retry_after_past_the_deadline_is_returned_at_once_as_the_rate_limit() {
    let emu = emulator();
    let client = client(&emu, Duration::from_secs(20));
    // A day: past the 60 s deadline of this call, and past the client's 300 s cap too.
    refuse(&emu, Endpoint::CreateChannel, 429, Some(86_400), 1_000);
    let started = Instant::now();
    let error = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    let took = started.elapsed();
    match &error {
        Error::Api(ApiError::RateLimited { retry_after, .. }) => {
            assert_eq!(*retry_after, Some(Duration::from_secs(86_400)), "{error:?}")
        }
        other => panic!("expected the 429, got {other:?} after {took:?}"),
    }
    assert!(error.to_string().contains("429"), "{error}");
    // Well before the deadline (60 s): the call did not wait for an attempt it could not see.
    assert!(took < Duration::from_secs(30), "{took:?}");
    // Nothing left wanted, no channel thread still hammering the endpoint.
    assert!(client.topics().is_empty());
    let calls = create_channel_calls(&emu);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(create_channel_calls(&emu), calls);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_token_endpoint_rate_limiting_past_the_deadline_is_returned_at_once() {
    let emu = emulator();
    // Refused before the client exists: a client fetches its first token as soon as it is
    // built, and one fetched before the refusal would let the subscribe succeed.
    refuse(&emu, Endpoint::Token, 429, Some(1_000_000), 1_000);
    let client = client(&emu, Duration::from_secs(20));
    let started = Instant::now();
    let error = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "{error:?} after {took:?}");
    assert!(error.to_string().contains("rate limited"), "{error}");
    let retry_after = match &error {
        Error::Api(api) => api.retry_after(),
        Error::Token(token) => token.retry_after(),
        other => panic!("expected the token endpoint's 429, got {other:?}"),
    };
    assert_eq!(retry_after, Some(Duration::from_secs(1_000_000)));
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_service_failing_until_the_deadline_gives_its_last_answer() {
    let emu = emulator();
    let client = client(&emu, Duration::from_secs(1));
    refuse(&emu, Endpoint::CreateChannel, 503, None, 100_000);
    let error = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    assert!(
        matches!(error, Error::Api(ApiError::Server { status: 503, .. })),
        "{error:?}"
    );
    assert!(client.topics().is_empty());
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_subscribe_that_times_out_names_the_last_failure() {
    // The channel's socket can never connect: nothing listens on the connectUri's port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let emu = emulator_with(
        genesys_notify::emulator::EmulatorConfig::default()
            .connect_uri_base(format!("ws://127.0.0.1:{port}")),
    );
    let client = client(&emu, Duration::from_secs(1));
    let error = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    match &error {
        Error::Timeout {
            operation: "subscribe",
            last_failure: Some(failure),
            ..
        } => assert!(failure.to_string().contains("refused"), "{failure}"),
        other => panic!("expected a timeout naming its cause, got {other:?}"),
    }
    assert!(error.to_string().contains("last failure"), "{error}");
    client.shutdown(Duration::from_secs(5)).unwrap();
}
