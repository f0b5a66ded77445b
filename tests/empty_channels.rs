//! A channel left without topics is closed and its slot freed (issue #8, point 4): a
//! subscription whose topics are all rejected, isolated or not, and a channel whose topics were
//! all removed leave no open channel with zero topics, no thread and no socket, and do not
//! count against `max_channels`; the server-side channel is reused by the next topics.
mod util;

use genesys_notify::emulator::{Emulator, Fault};
use genesys_notify::{ChannelState, Client};
use std::time::Duration;
use util::*;

const WAIT: Duration = Duration::from_secs(10);
const PERMISSION: &str = "presence:user:view";

fn connected_sockets(emu: &Emulator) -> usize {
    emu.channels().iter().filter(|c| c.connected).count()
}

/// No channel of the client is left without topics.
fn assert_no_empty_channel(client: &Client) {
    let health = client.health();
    assert!(
        health.channels().iter().all(|c| c.topics > 0),
        "{:?}",
        health.channels()
    );
}

#[test]
fn twenty_one_isolated_subscriptions_all_rejected_leave_room_for_more() {
    let emu = emulator();
    let denied = presence_topics(21);
    for topic in &denied {
        emu.deny_topic(topic, &[PERMISSION]);
    }
    let client = builder(&emu).build().unwrap();
    assert_eq!(client.config().max_channels(), 20);
    for topic in &denied {
        let report = client.subscribe_isolated([topic]).unwrap();
        assert_eq!(report.rejected.len(), 1, "{report:?}");
        assert!(report.permitted.is_empty());
        assert_no_empty_channel(&client);
    }
    assert!(
        client.health().channels().is_empty(),
        "every empty channel is closed"
    );
    assert!(wait_until(WAIT, || connected_sockets(&emu) == 0));
    // The channel was reused, not one new channel per round.
    assert_eq!(emu.channels().len(), 1, "{:?}", emu.channels());

    let allowed = presence_range(21, 22);
    let report = client.subscribe_isolated(&allowed).unwrap();
    assert_eq!(report.permitted.len(), 1);
    assert_eq!(emu.publish(&allowed[0], presence_body(1)), 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_shared_subscription_all_rejected_closes_its_channel() {
    let emu = emulator();
    let denied = presence_topics(3);
    for topic in &denied {
        emu.deny_topic(topic, &[PERMISSION]);
    }
    let client = builder(&emu).max_channels(1).build().unwrap();

    // On a new channel.
    let report = client.subscribe(&denied[..2]).unwrap();
    assert_eq!(report.rejected.len(), 2);
    assert!(client.health().channels().is_empty());
    assert!(wait_until(WAIT, || connected_sockets(&emu) == 0));

    // Added to an existing channel whose other topics go away.
    let allowed = presence_range(3, 4);
    let _ = client.subscribe(&allowed).unwrap();
    client.unsubscribe(&allowed).unwrap();
    assert!(
        client.health().channels().is_empty(),
        "emptied by unsubscribe"
    );
    let _ = client.subscribe(&allowed).unwrap();
    let report = client.subscribe(&denied[2..]).unwrap();
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(client.health().channels().len(), 1);
    assert_no_empty_channel(&client);
    client.unsubscribe(&allowed).unwrap();
    assert!(client.health().channels().is_empty());
    assert!(wait_until(WAIT, || connected_sockets(&emu) == 0));

    // With max_channels 1 every round reused the one channel.
    assert_eq!(emu.channels().len(), 1);
    let report = client.subscribe(&allowed).unwrap();
    assert_eq!(report.permitted.len(), 1);
    assert_eq!(emu.publish(&allowed[0], presence_body(1)), 1);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_channel_emptied_by_a_later_rejection_is_forgotten_and_its_channel_reused() {
    let emu = emulator();
    let client = builder(&emu).max_channels(1).build().unwrap();
    let topics = presence_topics(2);
    assert_eq!(client.subscribe(&topics[..1]).unwrap().permitted.len(), 1);
    let first = emu.channels()[0].id.clone();
    // The replacement channel rejects the only topic: the channel's thread stops.
    emu.deny_topic(&topics[0], &[PERMISSION]);
    emu.inject(Fault::EvictChannel {
        channel_id: first.clone(),
    });
    assert!(wait_until(WAIT, || client.health().channels()[0].state
        == ChannelState::Stopped));
    assert!(client.topics().is_empty());

    // With max_channels 1 the stopped channel must not count, and its (emptied) channel
    // serves the next topic instead of a new one.
    let report = client.subscribe(&topics[1..]).unwrap();
    assert_eq!(report.permitted.len(), 1, "{report:?}");
    assert_eq!(client.health().channels().len(), 1);
    let live: Vec<_> = emu
        .channels()
        .into_iter()
        .filter(|c| c.removed.is_none())
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_ne!(live[0].id, first);
    assert_eq!(live[0].topics, &topics[1..]);
    assert!(wait_until(WAIT, || emu
        .publish(&topics[1], presence_body(1))
        == 1));
    client.shutdown(Duration::from_secs(5)).unwrap();
}

fn presence_range(from: usize, to: usize) -> Vec<String> {
    (from..to)
        .map(|i| format!("v2.users.{}.presence", user_id(i)))
        .collect()
}
