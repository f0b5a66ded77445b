//! The consumer example (examples/consumer.rs) against entries written by the bridge's store:
//! events are applied, gaps lead to a resync, everything is acknowledged, and entries a dead
//! consumer of the group read without acknowledging are claimed and handled.
mod util;

use genesys_bridge::entry::{GapReason, Record, ShardKeys};
use genesys_bridge::store::{self, Chunk, ChunkResult};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};
use util::*;

/// `XPENDING key group`: count, smallest id, greatest id, per-consumer counts.
type Pending = (
    u64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

/// The built example: `cargo test` builds examples next to the test binaries.
fn example() -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    path.join("examples").join("consumer")
}

fn run_consumer(redis: &RedisServer, consumer: &str) -> Vec<serde_json::Value> {
    let output = Command::new(example())
        .args(["--redis", &redis.url(), "--shards", "4", "--group", "g"])
        .args([
            "--consumer",
            consumer,
            "--claim-idle-ms",
            "0",
            "--exit-when-idle-ms",
            "1000",
        ])
        .output()
        .expect("the consumer example runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_consumer_example_applies_events_resyncs_gaps_and_acknowledges() {
    let redis = RedisServer::start();
    let mut con = redis.con();
    let keys = ShardKeys::new("genesys", 2);
    let lease = store::acquire(&mut con, &keys, "b", 60_000)
        .unwrap()
        .unwrap();
    let now = SystemTime::now();
    let records = [
        Record::Event {
            topic: "v2.users.u1.presence".into(),
            body: r#"{"seq":1}"#.into(),
            correlation_id: Some("c-1".into()),
            snapshot: false,
            received_at: now,
        },
        Record::Gap {
            topics: vec!["v2.users.u1.presence".into()],
            start: now - Duration::from_secs(5),
            end: now,
            reason: GapReason::Socket,
            dropped: 0,
        },
        Record::Event {
            topic: "v2.users.u1.presence".into(),
            body: r#"{"seq":2}"#.into(),
            correlation_id: None,
            snapshot: true,
            received_at: now,
        },
    ];
    let chunk = Chunk {
        shard: 2,
        fence: lease.fence,
        records: records.iter().collect(),
    };
    let results = store::write_batch(&mut con, "genesys", "b", 1000, &[chunk]).unwrap();
    assert!(matches!(results[0], ChunkResult::Written(_)));

    let lines = run_consumer(&redis, "c1");
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["apply", "resync", "apply"]);
    assert_eq!(lines[0]["body"]["seq"], 1);
    assert_eq!(lines[0]["correlation_id"], "c-1");
    assert_eq!(lines[0]["shard"], 2);
    assert_eq!(lines[1]["topics"][0], "v2.users.u1.presence");
    assert_eq!(lines[1]["reason"], "socket");
    assert_eq!(lines[2]["type"], "snapshot");
    let pending: Pending = redis::cmd("XPENDING")
        .arg(&keys.events)
        .arg("g")
        .query(&mut con)
        .unwrap();
    assert_eq!(pending.0, 0, "everything acknowledged");

    // A consumer of the group reads a new entry and dies before acknowledging it.
    let chunk_records = [Record::Lifecycle {
        event: "acquired".into(),
        message: "m".into(),
    }];
    let chunk = Chunk {
        shard: 2,
        fence: lease.fence,
        records: chunk_records.iter().collect(),
    };
    store::write_batch(&mut con, "genesys", "b", 1000, &[chunk]).unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("dead")
        .arg("STREAMS")
        .arg(&keys.events)
        .arg(">")
        .query(&mut con)
        .unwrap();
    let pending: Pending = redis::cmd("XPENDING")
        .arg(&keys.events)
        .arg("g")
        .query(&mut con)
        .unwrap();
    assert_eq!(pending.0, 1);
    let lines = run_consumer(&redis, "c2");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["action"], "note");
    assert_eq!(lines[0]["event"], "acquired");
    let pending: Pending = redis::cmd("XPENDING")
        .arg(&keys.events)
        .arg("g")
        .query(&mut con)
        .unwrap();
    assert_eq!(pending.0, 0, "claimed and acknowledged");
}
