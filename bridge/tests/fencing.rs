//! Leases and fencing against a real redis-server, through the store's scripts: one holder at
//! a time, a stale holder's write refused whole (nothing appended), fences that only grow, and
//! the previous holder's vouched moment handed to the next one.
mod util;

use genesys_bridge::entry::{Record, ShardKeys};
use genesys_bridge::store::{self, Chunk, ChunkResult};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use util::*;

fn lifecycle(n: u32) -> Record {
    Record::Lifecycle {
        event: "test".into(),
        message: format!("entry {n}"),
    }
}

fn write(con: &mut redis::Connection, bridge: &str, fence: u64, records: &[Record]) -> ChunkResult {
    let chunk = Chunk {
        shard: 3,
        fence,
        records: records.iter().collect(),
    };
    let mut results = store::write_batch(con, "t", bridge, 1000, &[chunk]).unwrap();
    results.remove(0)
}

fn stream_len(con: &mut redis::Connection) -> u64 {
    redis::cmd("XLEN")
        .arg(ShardKeys::new("t", 3).events)
        .query(con)
        .unwrap()
}

#[test]
fn a_stale_holder_cannot_write_after_another_acquired() {
    let redis = RedisServer::start();
    let mut con = redis.con();
    let keys = ShardKeys::new("t", 3);

    let a = store::acquire(&mut con, &keys, "a", 300)
        .unwrap()
        .expect("free");
    assert_eq!(a.fence, 1);
    assert_eq!(a.previous, None, "nobody held it before");
    assert!(
        store::acquire(&mut con, &keys, "b", 300).unwrap().is_none(),
        "one holder at a time"
    );
    assert!(matches!(
        write(&mut con, "a", a.fence, &[lifecycle(1), lifecycle(2)]),
        ChunkResult::Written(_)
    ));
    assert_eq!(stream_len(&mut con), 2);
    let vouched = UNIX_EPOCH + Duration::from_millis(1_765_000_000_000);
    assert!(store::renew(&mut con, &keys, "a", 300, Some(vouched)).unwrap());

    // A pauses past its lease; B takes over.
    assert!(wait_until(Duration::from_secs(10), || store::acquire(
        &mut con, &keys, "b", 60_000
    )
    .unwrap()
    .map(|b| {
        assert!(b.fence > a.fence, "the fence grows");
        let previous = b.previous.unwrap();
        assert_eq!(previous.holder, "a");
        assert_eq!(
            previous.until,
            Some(vouched),
            "A's vouched moment reaches B"
        );
        assert!(!previous.released);
    })
    .is_some()));
    // A wakes up and writes with its old token: refused whole, nothing appended.
    match write(&mut con, "a", a.fence, &[lifecycle(3), lifecycle(4)]) {
        ChunkResult::Fenced(message) => assert!(message.contains("FENCED"), "{message}"),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(stream_len(&mut con), 2);
    assert!(
        !store::renew(&mut con, &keys, "a", 300, None).unwrap(),
        "A cannot renew B's lease"
    );
    assert!(
        !store::release(&mut con, &keys, "a", None).unwrap(),
        "nor release it"
    );
}

#[test]
fn a_release_fences_the_old_token_and_frees_the_lease_at_once() {
    let redis = RedisServer::start();
    let mut con = redis.con();
    let keys = ShardKeys::new("t", 3);
    let a = store::acquire(&mut con, &keys, "a", 60_000)
        .unwrap()
        .unwrap();
    let until = SystemTime::now();
    assert!(store::release(&mut con, &keys, "a", Some(until)).unwrap());
    assert!(matches!(
        write(&mut con, "a", a.fence, &[lifecycle(1)]),
        ChunkResult::Fenced(_)
    ));
    let b = store::acquire(&mut con, &keys, "b", 60_000)
        .unwrap()
        .expect("free at once");
    assert_eq!(
        b.fence,
        a.fence + 2,
        "incremented by the release and the acquisition"
    );
    let previous = b.previous.unwrap();
    assert!(previous.released);
    assert_eq!(
        previous
            .until
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        until.duration_since(UNIX_EPOCH).unwrap().as_millis()
    );
    // Entries carry the fence they were written with.
    assert!(matches!(
        write(&mut con, "b", b.fence, &[lifecycle(2)]),
        ChunkResult::Written(_)
    ));
    let entries = read_all(&mut con, "t", 4);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].get("fence"), b.fence.to_string());
    assert_eq!(entries[0].get("bridge"), "b");
}

#[test]
fn maxlen_trims_the_stream_approximately() {
    let redis = RedisServer::start();
    let mut con = redis.con();
    let keys = ShardKeys::new("t", 3);
    let a = store::acquire(&mut con, &keys, "a", 60_000)
        .unwrap()
        .unwrap();
    let records: Vec<Record> = (0..3000).map(lifecycle).collect();
    let chunk = Chunk {
        shard: 3,
        fence: a.fence,
        records: records.iter().collect(),
    };
    let results = store::write_batch(&mut con, "t", "a", 500, &[chunk]).unwrap();
    assert!(matches!(results[0], ChunkResult::Written(_)));
    let len = stream_len(&mut con);
    // `~` trims whole macro nodes (100 entries by default): a little above 500, far below 3000.
    assert!((500..=700).contains(&len), "{len} entries kept");
}
