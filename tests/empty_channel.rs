//! A channel whose every topic is rejected when its topics are applied again (here: on the
//! channel that replaces an evicted one) is closed (issue #8.4): its thread stops, its
//! subscriptions are removed, its socket is closed and it is reported `Stopped`; nothing loops.
mod recovery;
mod util;

use genesys_notify::emulator::Fault;
use genesys_notify::{ChannelState, Lifecycle};
use recovery::*;
use std::time::Duration;
use util::*;

#[test]
fn a_channel_emptied_by_rejections_on_reapply_stops() {
    let s = OneChannel::start_on(emulator(), 1, fast);
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 1));
    s.emu.deny_topic(&s.topics[0], &["directory:user:view"]);
    s.emu.inject(Fault::EvictChannel {
        channel_id: s.id.clone(),
    });
    assert!(
        wait_until(SOON, || s.client.health().channels()[0].state
            == ChannelState::Stopped),
        "{:?}",
        kinds(&s.rec.snapshot())
    );
    assert!(s
        .rec
        .wait(SOON, |e| matches!(e, Lifecycle::Subscribed { .. })));
    assert!(s.client.topics().is_empty());
    let replacement = s
        .emu
        .channels()
        .into_iter()
        .find(|c| c.id != s.id)
        .expect("a replacement channel");
    assert!(
        wait_until(SOON, || s
            .emu
            .channel(&replacement.id)
            .is_some_and(|c| !c.connected && c.topics.is_empty())),
        "{:?}",
        s.emu.channel(&replacement.id)
    );
    // Its subscriptions are removed on the way out (the DELETE may follow the Stopped state by
    // a moment); after that, nothing loops.
    let deleted = format!(
        "/api/v2/notifications/channels/{}/subscriptions",
        replacement.id
    );
    assert!(
        wait_until(SOON, || s
            .emu
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path == deleted)),
        "no DELETE of the emptied channel's subscriptions"
    );
    let requests = s.emu.requests().len();
    let reconnecting = s.rec.count(|e| matches!(e, Lifecycle::Reconnecting { .. }));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(s.emu.requests().len(), requests);
    assert_eq!(
        s.rec.count(|e| matches!(e, Lifecycle::Reconnecting { .. })),
        reconnecting
    );
    // Other topics can still be subscribed.
    s.emu.allow_topic(&s.topics[0]);
    let others = presence_topics(2);
    client_subscribes(&s, &others[1..]);
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

fn client_subscribes(s: &OneChannel, topics: &[String]) {
    let report = s.client.subscribe(topics).unwrap();
    assert_eq!(report.permitted.len(), topics.len(), "{report:?}");
    assert!(flows(&s.emu, &topics[0], &s.seqs, 7));
}
