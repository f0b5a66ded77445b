//! A wrong base URL fails fast (issue #8.8): when the notifications API answers 404 to the very
//! first channel creation (an `api_base` with a path, or a base that is not a Genesys API), the
//! first `subscribe` fails at once with an error naming the URL, instead of retrying until its
//! deadline and reporting a timeout.
mod recovery;
mod util;

use genesys_notify::emulator::{Endpoint, Fault};
use genesys_notify::{ChannelError, Client, Lifecycle};
use recovery::*;
use std::time::{Duration, Instant};
use util::*;

fn fails_fast_naming(client: &Client, rec: &Recorder, url: &str) {
    let started = Instant::now();
    let error = client
        .subscribe(presence_topics(1))
        .unwrap_err()
        .into_error();
    let took = started.elapsed();
    // The subscribe deadline is 15 s here (connect 5 s + 2 x request 5 s).
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(error.to_string().contains(url), "{error}");
    assert!(rec.wait(SOON, |e| matches!(
        e,
        Lifecycle::PermanentFailure {
            error: ChannelError::NotificationsApiNotFound { url: named },
            ..
        } if named == url
    )));
    assert_eq!(
        rec.count(|e| matches!(e, Lifecycle::Reconnecting { .. })),
        0
    );
}

#[test]
fn an_api_base_with_a_path_fails_the_first_subscribe_at_once() {
    let emu = emulator();
    let base = format!("{}/v1", emu.api_base());
    let client = builder(&emu).api_base(&base).build().unwrap();
    let rec = Recorder::new(&client);
    fails_fast_naming(
        &client,
        &rec,
        &format!("{base}/api/v2/notifications/channels"),
    );
    let creations = emu
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/notifications/channels"))
        .count();
    assert_eq!(creations, 1, "no retry loop");
    client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn a_404_on_the_first_channel_creation_fails_at_once() {
    let emu = emulator();
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::CreateChannel,
        status: 404,
        retry_after: None,
        times: 1,
    });
    let client = builder(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    fails_fast_naming(
        &client,
        &rec,
        &format!("{}/api/v2/notifications/channels", emu.api_base()),
    );
    // The base is right after all: the next subscribe works.
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    assert_eq!(client.subscribe(&topics).unwrap().permitted.len(), 1);
    assert!(flows(&emu, &topics[0], &seqs, 1));
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// `verify_token` (the "fail fast" call, and the first thing `genesys-tail` does) with an
/// `api_base` that has a path: an error naming the URL and the setting to check, at once, not
/// "channel not found" (it made no channel call).
#[test]
fn verify_token_with_a_wrong_api_base_names_the_url() {
    let emu = emulator();
    let base = format!("{}/v1", emu.api_base());
    let client = builder(&emu).api_base(&base).build().unwrap();
    let started = Instant::now();
    let error = client.verify_token().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = error.to_string();
    assert!(text.contains(&format!("{base}/api/v2/tokens/me")), "{text}");
    assert!(text.contains("API base URL"), "{text}");
    assert!(!text.contains("channel"), "{text}");
    assert!(
        matches!(
            error,
            genesys_notify::Error::Api(genesys_notify::ApiError::Server { status: 404, .. })
        ),
        "{error:?}"
    );
    client.shutdown(Duration::from_secs(5)).unwrap();
}
