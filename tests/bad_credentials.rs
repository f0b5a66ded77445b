//! Bad credentials are a clear terminal error, never a hot loop (issue #3): `subscribe` fails
//! promptly with `Error::Token(InvalidCredentials)`, the failure is reported, and the token
//! endpoint is not hammered afterwards.
mod recovery;
mod util;

use genesys_notify::{Error, Lifecycle, TokenError};
use recovery::*;
use std::time::{Duration, Instant};
use util::*;

#[test]
fn wrong_secret_fails_promptly_and_is_not_retried_in_a_loop() {
    let emu = emulator();
    let client = fast(&emu)
        .client_credentials(emu.client_id(), "not-the-secret")
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let started = Instant::now();
    let result = client.subscribe(presence_topics(1)).map_err(Error::from);
    let took = started.elapsed();
    match result {
        Err(Error::Token(TokenError::InvalidCredentials { status, .. })) => {
            assert!(status == 400 || status == 401, "{status}")
        }
        other => panic!("expected Error::Token(InvalidCredentials), got {other:?}"),
    }
    assert!(took < Duration::from_secs(3), "subscribe took {took:?}");
    // The failure is reported as terminal (or at least as a failed token refresh).
    assert!(wait_until(SOON, || rec.count(|e| matches!(
        e,
        Lifecycle::PermanentFailure { .. } | Lifecycle::TokenRefreshFailed { .. }
    )) > 0));

    // A second attempt by the user fails the same way, just as promptly.
    let started = Instant::now();
    assert!(matches!(
        client.subscribe(presence_topics(2)).map_err(Error::from),
        Err(Error::Token(TokenError::InvalidCredentials { .. }))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));

    // Over a few seconds, nothing keeps knocking on the token endpoint.
    std::thread::sleep(Duration::from_secs(3));
    let tokens = emu.token_requests();
    assert!(tokens <= 3, "{tokens} token requests: a retry loop");
    assert!(emu.channels().is_empty(), "no channel without a token");
    assert_eq!(
        emu.requests()
            .iter()
            .filter(|r| r.path.starts_with("/api/v2"))
            .count(),
        0
    );
    println!(
        "token requests: {tokens}; lifecycle: {:?}",
        kinds(&rec.snapshot())
    );
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A token the service refuses (a static token, or one from a custom source) is a clear error
/// at the first subscribe, not a wait until the deadline.
#[test]
fn refused_static_token_fails_the_first_subscribe_promptly() {
    let emu = emulator();
    let client = genesys_notify::Client::builder()
        .api_base(emu.api_base())
        .login_base(emu.login_base())
        .access_token("not-a-token-the-service-issued")
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    assert!(
        matches!(
            err,
            genesys_notify::Error::Api(genesys_notify::ApiError::Unauthorized { .. })
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // No channel thread is left retrying.
    let calls = emu.requests().len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(emu.requests().len(), calls);
}

/// An empty credential (an environment variable that was not set) or one with a line break
/// pasted with it fails `build()` naming the field, without quoting the value; nothing is
/// sent.
#[test]
fn empty_or_broken_credentials_fail_build_naming_the_field() {
    let emu = emulator();
    let cases = [
        ("client_id", builder(&emu).client_credentials("", "secret")),
        ("client_secret", builder(&emu).client_credentials("id", "")),
        (
            "client_secret",
            builder(&emu).client_credentials("id", "s3cr3t-marker\n"),
        ),
        ("access_token", builder(&emu).access_token("")),
        (
            "access_token",
            builder(&emu).access_token("s3cr3t-marker\r\nX-Injected: 1"),
        ),
    ];
    for (field, builder) in cases {
        match builder.build() {
            Err(genesys_notify::Error::Config(e)) => {
                assert_eq!(e.field, field, "{e}");
                assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e}");
            }
            other => panic!("expected a config error for {field}, got {other:?}"),
        }
    }
    assert_eq!(emu.token_requests(), 0);
}
