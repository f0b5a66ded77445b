//! The one-command form against the emulator and a throwaway redis-server: published events
//! end up in the shard streams with the documented fields, a socket fault becomes a gap entry
//! of the topics of that channel, and SIGTERM releases the leases at once.
mod util;

use genesys_notify::emulator::{Emulator, Fault, Target};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use util::*;

const SHARDS: u32 = 8;

#[test]
fn events_and_gaps_land_in_the_shard_streams_and_sigterm_releases() {
    let redis = RedisServer::start();
    let emu = Emulator::start().expect("emulator");
    // User 0 has a presence before the bridge starts: its subscription brings a snapshot.
    emu.set_user_presence(&user_id(0), "AVAILABLE");
    let combined: Vec<String> = (0..4)
        .map(|i| format!("v2.users.{}?presence&routingStatus", user_id(i)))
        .collect();
    let plain: Vec<String> = (4..7)
        .map(|i| format!("v2.users.{}.presence", user_id(i)))
        .collect();
    let mut args = vec![
        "--redis".to_owned(),
        redis.url(),
        "--shards".into(),
        SHARDS.to_string(),
        "--lease-secs".into(),
        "3".into(),
    ];
    args.extend(combined.iter().cloned());
    args.extend(plain.iter().cloned());
    let mut bridge = BridgeProcess::start(
        &emu.api_base(),
        emu.client_id(),
        emu.client_secret(),
        "bridge-a",
        &args,
    );
    let subscribed = || emu.channels().iter().map(|c| c.topics.len()).sum::<usize>();
    assert!(
        wait_until(Duration::from_secs(60), || subscribed() == 7),
        "all 7 topics subscribed; log:\n{}",
        bridge.dump()
    );

    // One event per individual topic, each with a sequence number in its body.
    let mut published: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut seq = 0;
    let before = SystemTime::now();
    for i in 0..7 {
        let mut names = vec![format!("v2.users.{}.presence", user_id(i))];
        if i < 4 {
            names.push(format!("v2.users.{}.routingStatus", user_id(i)));
        }
        for name in names {
            seq += 1;
            let subscription = if i < 4 {
                combined[i].clone()
            } else {
                plain[i - 4].clone()
            };
            assert_eq!(emu.publish(&name, serde_json::json!({"seq": seq})), 1);
            published.insert(seq, (name, subscription));
        }
    }
    let mut con = redis.con();
    let events = |con: &mut redis::Connection| -> Vec<Entry> {
        read_all(con, "genesys", SHARDS)
            .into_iter()
            .filter(|e| e.get("type") == "event")
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || events(&mut con).len()
            >= published.len()),
        "every event written; log:\n{}",
        bridge.dump()
    );
    let entries = events(&mut con);
    assert_eq!(
        entries.len(),
        published.len(),
        "each once: no fault happened"
    );
    for entry in &entries {
        let body: serde_json::Value = serde_json::from_str(entry.get("body")).unwrap();
        let seq = body["seq"].as_u64().unwrap();
        let (name, subscription) = &published[&seq];
        assert_eq!(entry.get("topic").to_lowercase(), name.to_lowercase());
        assert_eq!(
            entry.shard,
            shard_of(subscription, SHARDS),
            "the subscription's shard"
        );
        assert_eq!(entry.get("snapshot"), "0");
        assert_eq!(entry.get("bridge"), "bridge-a");
        assert_eq!(entry.get("correlation_id").len(), 36, "the emulator's uuid");
        let received: u64 = entry.get("received_at").parse().unwrap();
        let before_ms = before.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(received >= before_ms, "received_at in ms since the epoch");
        let fence: u64 = entry.get("fence").parse().unwrap();
        let current: u64 = redis::cmd("GET")
            .arg(format!("genesys:{{shard-{}}}:fence", entry.shard))
            .query(&mut con)
            .unwrap();
        assert_eq!(fence, current, "written with the holder's fence");
    }
    // The state read at subscription: a snapshot entry, in the topic's shard.
    let snapshots: Vec<Entry> = read_all(&mut con, "genesys", SHARDS)
        .into_iter()
        .filter(|e| e.get("type") == "snapshot")
        .collect();
    let presence0 = format!("v2.users.{}.presence", user_id(0));
    let snapshot = snapshots
        .iter()
        .find(|e| e.get("topic").eq_ignore_ascii_case(&presence0))
        .expect("a snapshot of user 0's presence");
    assert_eq!(snapshot.get("snapshot"), "1");
    assert!(
        snapshot.get("body").contains("AVAILABLE"),
        "{}",
        snapshot.get("body")
    );
    assert_eq!(snapshot.shard, shard_of(&combined[0], SHARDS));
    // Each shard that has topics got an `acquired` lifecycle entry first.
    let all = read_all(&mut con, "genesys", SHARDS);
    for shard in 0..SHARDS {
        let first = all
            .iter()
            .find(|e| e.shard == shard)
            .expect("an entry per shard");
        assert_eq!(first.get("type"), "lifecycle");
        assert_eq!(first.get("event"), "acquired");
    }

    // A socket fault: the library reports a gap, which becomes gap entries of the channel's
    // topics, in their shards.
    let cut = SystemTime::now();
    emu.inject(Fault::DropSocket {
        target: Target::AllSockets,
    });
    let gaps = |con: &mut redis::Connection| -> Vec<Entry> {
        read_all(con, "genesys", SHARDS)
            .into_iter()
            .filter(|e| e.get("type") == "gap" && e.get("reason") == "socket")
            .collect()
    };
    let mut shards_with_topics: Vec<u32> = combined
        .iter()
        .chain(&plain)
        .map(|t| shard_of(t, SHARDS))
        .collect();
    shards_with_topics.sort();
    shards_with_topics.dedup();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let g = gaps(&mut con);
            shards_with_topics
                .iter()
                .all(|s| g.iter().any(|e| e.shard == *s))
        }),
        "a gap entry in every shard with topics; log:\n{}",
        bridge.dump()
    );
    let mut covered: Vec<String> = Vec::new();
    for gap in gaps(&mut con) {
        let topics: Vec<String> = serde_json::from_str(gap.get("topics")).unwrap();
        for t in &topics {
            assert_eq!(
                shard_of(t, SHARDS),
                gap.shard,
                "a gap names only its shard's topics"
            );
        }
        covered.extend(topics);
        let start: u64 = gap.get("start").parse().unwrap();
        let end: u64 = gap.get("end").parse().unwrap();
        assert!(start <= end);
        let cut_ms = cut.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(end >= cut_ms, "the gap ends after the fault");
    }
    for t in combined.iter().chain(&plain) {
        assert!(
            covered.iter().any(|c| c.eq_ignore_ascii_case(t)),
            "{t} is in a gap entry"
        );
    }
    // Events flow again after the gap.
    assert!(wait_until(Duration::from_secs(60), || emu
        .channels()
        .iter()
        .any(|c| c.connected)));
    let name = format!("v2.users.{}.presence", user_id(5));
    assert_eq!(emu.publish(&name, serde_json::json!({"seq": 1000})), 1);
    assert!(wait_until(Duration::from_secs(60), || events(&mut con)
        .iter()
        .any(|e| e.get("body").contains("1000"))));

    // SIGTERM: exit 0 with every lease released at once (no waiting for expiry).
    assert_eq!(
        bridge.terminate(Duration::from_secs(60)),
        Some(0),
        "log:\n{}",
        bridge.dump()
    );
    for shard in 0..SHARDS {
        let lease: Option<String> = redis::cmd("GET")
            .arg(format!("genesys:{{shard-{shard}}}:lease"))
            .query(&mut con)
            .unwrap();
        assert_eq!(lease, None, "shard {shard} released");
        let released: Option<String> = redis::cmd("HGET")
            .arg(format!("genesys:{{shard-{shard}}}:held"))
            .arg("released")
            .query(&mut con)
            .unwrap();
        assert_eq!(released.as_deref(), Some("1"));
    }
    let all = read_all(&mut con, "genesys", SHARDS);
    for shard in 0..SHARDS {
        let last = all.iter().rfind(|e| e.shard == shard).unwrap();
        assert_eq!(
            (last.get("type"), last.get("event")),
            ("lifecycle", "released")
        );
    }
}
