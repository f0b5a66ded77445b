//! `all_users` refreshes drop deleted users, end to end: a bridge process expands the
//! emulator's active users into combined topics; a user deleted in the emulator (the users API
//! then no longer lists it, as Genesys lists `state=active` users by default) is unsubscribed
//! at the next refresh, its events no longer reach the bridge, and every other user's topic,
//! channel and stream carries on undisturbed (no channel replaced, no gap written).
mod util;

use genesys_notify::emulator::Emulator;
use std::collections::BTreeSet;
use std::time::Duration;
use util::*;

const USERS: usize = 24;
const SHARDS: u32 = 8;

fn topic_of(user: &str) -> String {
    format!("v2.users.{user}?presence&routingstatus")
}

/// Every topic subscribed on the emulator, lower-cased.
fn subscribed(emu: &Emulator) -> BTreeSet<String> {
    emu.channels()
        .iter()
        .flat_map(|c| c.topics.iter().map(|t| t.to_ascii_lowercase()))
        .collect()
}

/// The `seq` of every event entry written, by topic.
fn written(con: &mut redis::Connection) -> Vec<(String, String)> {
    read_all(con, "genesys", SHARDS)
        .into_iter()
        .filter(|e| e.get("type") == "event")
        .map(|e| {
            let body: serde_json::Value = serde_json::from_str(e.get("body")).unwrap();
            (e.get("topic").to_ascii_lowercase(), body["seq"].to_string())
        })
        .collect()
}

#[test]
fn a_deleted_user_is_unsubscribed_at_the_next_refresh_and_nothing_else_moves() {
    let redis = RedisServer::start();
    let emu = Emulator::start().expect("emulator");
    let users: Vec<String> = (0..USERS).map(user_id).collect();
    for user in &users {
        emu.set_user_presence(user, "AVAILABLE");
    }
    let dir = std::env::temp_dir().join(format!("bridge-users-refresh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bridge.toml");
    std::fs::write(
        &path,
        format!(
            r#"
redis = "{}"
shards = {SHARDS}

[all_users]
kinds = ["presence", "routingStatus"]
refresh_secs = 1
page_size = 5
"#,
            redis.url()
        ),
    )
    .unwrap();
    let mut bridge = BridgeProcess::start(
        &emu.api_base(),
        emu.client_id(),
        emu.client_secret(),
        "refresh",
        &[
            "--config".into(),
            path.display().to_string(),
            "--no-snapshots".into(),
        ],
    );
    let everyone: BTreeSet<String> = users.iter().map(|u| topic_of(u)).collect();
    assert!(
        wait_until(Duration::from_secs(120), || subscribed(&emu) == everyone),
        "{} of {USERS} topics subscribed; log:\n{}",
        subscribed(&emu).len(),
        bridge.dump()
    );
    let channels_before: Vec<String> = emu.channels().into_iter().map(|c| c.id).collect();

    // Every user's events flow before the deletion.
    let mut con = redis.con();
    for user in &users {
        let delivered = emu.publish(
            &format!("v2.users.{user}.presence"),
            serde_json::json!({"seq": format!("before-{user}")}),
        );
        assert_eq!(delivered, 1, "{user}");
    }
    assert!(
        wait_until(Duration::from_secs(60), || written(&mut con).len() == USERS),
        "{} of {USERS} events written; log:\n{}",
        written(&mut con).len(),
        bridge.dump()
    );

    // The deletion: the next refresh (every second) drops exactly that user's topic.
    let gone = &users[7];
    assert!(emu.delete_user(gone));
    let remaining: BTreeSet<String> = everyone
        .iter()
        .filter(|t| **t != topic_of(gone))
        .cloned()
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || subscribed(&emu) == remaining),
        "subscribed now: {} topics, the deleted user's still there: {}; log:\n{}",
        subscribed(&emu).len(),
        subscribed(&emu).contains(&topic_of(gone)),
        bridge.dump()
    );
    let changed = bridge.events("topics_changed");
    assert!(
        changed.iter().any(|e| e["removed"] == 1 && e["added"] == 0),
        "a refresh that removed one topic and added none: {changed:?}"
    );

    // Its events no longer reach the bridge; everyone else's still do, on the same channels.
    assert_eq!(
        emu.publish(
            &format!("v2.users.{gone}.presence"),
            serde_json::json!({"seq": "after-deleted"})
        ),
        0,
        "no socket subscribes the deleted user any more"
    );
    let others: Vec<&String> = users.iter().filter(|u| *u != gone).collect();
    for user in &others {
        assert_eq!(
            emu.publish(
                &format!("v2.users.{user}.routingStatus"),
                serde_json::json!({"seq": format!("after-{user}")})
            ),
            1,
            "{user}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(60), || written(&mut con).len()
            == USERS + others.len()),
        "{} of {} events written; log:\n{}",
        written(&mut con).len(),
        USERS + others.len(),
        bridge.dump()
    );
    let entries = read_all(&mut con, "genesys", SHARDS);
    assert!(
        !entries
            .iter()
            .any(|e| e.get("body").contains("after-deleted")),
        "nothing of the deleted user after its deletion"
    );
    for user in &others {
        let routing = format!("v2.users.{user}.routingstatus");
        assert!(
            written(&mut con)
                .iter()
                .any(|(t, seq)| *t == routing && seq.contains("after-")),
            "{user}'s event after the deletion"
        );
    }
    assert!(
        !entries.iter().any(|e| e.get("type") == "gap"),
        "no gap: nothing else was disturbed"
    );
    let channels_after: Vec<String> = emu.channels().into_iter().map(|c| c.id).collect();
    assert_eq!(
        channels_after, channels_before,
        "the same channels carry on"
    );
    assert!(emu.removed_channels().is_empty());

    assert_eq!(
        bridge.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.dump()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
