//! An unsubscribe whose `PUT` fails is not forgotten: the channel's thread sends the new topic
//! set again while it keeps reading, so the server stops sending the removed topics.
mod util;

use genesys_notify::emulator::{Endpoint, Fault};
use genesys_notify::Error;
use std::time::Duration;
use util::*;

/// An emulator and a client subscribed to three topics, whose read loop ticks every 50 ms (a
/// quarter of its 200 ms ping interval), so the thread gets its next chance quickly.
fn three_topics_with_a_short_tick() -> (
    genesys_notify::emulator::Emulator,
    genesys_notify::Client,
    Vec<String>,
) {
    let emu = emulator();
    let client = builder(&emu)
        .ping_interval(Duration::from_millis(200))
        .pong_timeout(Duration::from_millis(500))
        .liveness_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let topics = presence_topics(3);
    let _ = client.subscribe(&topics).unwrap();
    (emu, client, topics)
}

#[test]
fn failed_unsubscribe_is_sent_again_by_the_channel_thread() {
    let (emu, client, topics) = three_topics_with_a_short_tick();
    assert_eq!(emu.channels()[0].topics.len(), 3);

    // The service refuses the update once (400 is not retried by the call itself).
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::Subscriptions,
        status: 400,
        retry_after: None,
        times: 1,
    });
    let err = client.unsubscribe([&topics[0]]).unwrap_err().into_error();
    assert!(matches!(err, Error::Api(_)), "{err:?}");
    // Client-side the topic is gone at once...
    assert_eq!(client.topics().len(), 2);
    // ...and the server is brought in line by the channel's thread, without a reconnect.
    assert!(
        emu.wait_for(Duration::from_secs(10), |e| e.channels()[0].topics.len()
            == 2),
        "server still has {:?}",
        emu.channels()[0].topics
    );
    assert!(!emu.channels()[0]
        .topics
        .iter()
        .any(|t| t.eq_ignore_ascii_case(&topics[0])));
    assert_eq!(emu.channels()[0].connections, 1);
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// When the thread's own re-send fails too, it tries again after a backoff delay: the update
/// lands eventually and the service is not hammered meanwhile.
#[test]
fn a_failing_re_send_backs_off_and_lands_later() {
    let (emu, client, topics) = three_topics_with_a_short_tick();
    // The user's PUT and the thread's first re-send are refused.
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::Subscriptions,
        status: 400,
        retry_after: None,
        times: 2,
    });
    assert!(client.unsubscribe([&topics[0]]).is_err());
    assert!(
        emu.wait_for(Duration::from_secs(10), |e| e.channels()[0].topics.len()
            == 2),
        "server still has {:?}",
        emu.channels()[0].topics
    );
    // Three PUTs in all: the user's, the failed re-send, the one that landed (none per tick).
    std::thread::sleep(Duration::from_millis(500));
    let puts = emu
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/subscriptions"))
        .count();
    assert_eq!(
        puts,
        1 + 3,
        "one for the subscribe, three for the unsubscribe"
    );
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A subscribe waiting out a `Retry-After` when the client shuts down sends nothing after the
/// shutdown's `DELETE`: no subscription is left behind on the service.
#[test]
fn nothing_is_subscribed_again_after_shutdown() {
    let emu = std::sync::Arc::new(emulator());
    let client = std::sync::Arc::new(builder(&emu).build().unwrap());
    let topics = presence_topics(2);
    let _ = client.subscribe(&topics[..1]).unwrap();
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::Subscriptions,
        status: 429,
        retry_after: Some(2),
        times: 1,
    });
    let c = client.clone();
    let second = topics[1].clone();
    let waiting = std::thread::spawn(move || c.subscribe([second]));
    // Let the subscribe hit the 429 and start waiting.
    assert!(emu.wait_for(Duration::from_secs(5), |e| e
        .requests()
        .iter()
        .any(|r| r.status == 429)));
    client.shutdown(Duration::from_secs(5)).unwrap();
    let result = waiting.join().unwrap();
    assert!(result.is_err(), "{result:?}");
    std::thread::sleep(Duration::from_millis(2500));
    let requests = emu.requests();
    let delete = requests
        .iter()
        .rposition(|r| r.method == "DELETE")
        .expect("shutdown deleted the subscriptions");
    assert!(
        !requests[delete..]
            .iter()
            .any(|r| r.method == "PUT" || r.method == "POST"),
        "subscribed again after the shutdown: {:?}",
        &requests[delete..]
    );
}
