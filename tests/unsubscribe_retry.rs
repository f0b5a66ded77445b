//! An unsubscribe whose `PUT` fails is not forgotten: the channel's thread sends the new topic
//! set again while it keeps reading, so the server stops sending the removed topics.
mod util;

use genesys_notify::emulator::{Endpoint, Fault};
use genesys_notify::Error;
use std::time::Duration;
use util::*;

#[test]
fn failed_unsubscribe_is_sent_again_by_the_channel_thread() {
    let emu = emulator();
    let client = builder(&emu)
        // A short read tick, so the thread gets its next chance quickly.
        .ping_interval(Duration::from_millis(200))
        .pong_timeout(Duration::from_millis(500))
        .liveness_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let topics = presence_topics(3);
    client.subscribe(&topics).unwrap();
    assert_eq!(emu.channels()[0].topics.len(), 3);

    // The service refuses the update once (400 is not retried by the call itself).
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::Subscriptions,
        status: 400,
        retry_after: None,
        times: 1,
    });
    let err = client.unsubscribe([&topics[0]]).unwrap_err();
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
