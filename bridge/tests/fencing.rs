//! Leases and fencing against a real redis-server, through the store's scripts and fenced
//! transactions: one holder at a time, a stale holder's write refused whole (nothing
//! appended), fences that only grow, and the previous holder's vouched moment handed to the
//! next one.
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

/// Acquires `keys`' lease for `bridge`; it must be free.
fn acquired(
    con: &mut redis::Connection,
    keys: &ShardKeys,
    bridge: &str,
    ttl_ms: u64,
) -> store::Acquired {
    store::acquire(con, keys, bridge, ttl_ms).unwrap().unwrap()
}

/// `result` is a write refused by the fence.
fn assert_fenced(result: &ChunkResult) {
    match result {
        ChunkResult::Fenced(message) => assert!(message.contains("FENCED"), "{message}"),
        other => panic!("expected Fenced, got {other:?}"),
    }
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
    assert_fenced(&write(
        &mut con,
        "a",
        a.fence,
        &[lifecycle(3), lifecycle(4)],
    ));
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
    let a = acquired(&mut con, &keys, "a", 60_000);
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
    let a = acquired(&mut con, &keys, "a", 60_000);
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

fn stream_of(con: &mut redis::Connection, shard: u32) -> Vec<(String, Vec<String>)> {
    redis::cmd("XRANGE")
        .arg(ShardKeys::new("tx", shard).events)
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap()
}

/// The transaction (`WATCH` + `MGET` of the fences, `MULTI`, plain `XADD`s, `EXEC`) as the
/// writer sends it on one server.
fn transaction(
    con: &mut redis::Connection,
    chunks: &[Chunk<'_>],
    meanwhile: impl FnOnce(),
) -> Vec<ChunkResult> {
    let mut packed = Vec::new();
    store::encode_transaction(&mut packed, "tx", "a", 1000, chunks, SystemTime::now());
    store::write_transaction(con, &packed, "tx", "a", 1000, chunks, meanwhile).unwrap()
}

#[test]
fn a_transaction_writes_only_the_shards_whose_fence_is_the_writers() {
    let redis = RedisServer::start();
    let mut con = redis.con();
    let (k3, k5) = (ShardKeys::new("tx", 3), ShardKeys::new("tx", 5));
    let a3 = acquired(&mut con, &k3, "a", 60_000);
    let a5 = acquired(&mut con, &k5, "a", 60_000);
    let records: Vec<Record> = (0..4).map(lifecycle).collect();
    let chunks = |f3: u64, f5: u64| {
        vec![
            Chunk {
                shard: 3,
                fence: f3,
                records: records[..3].iter().collect(),
            },
            Chunk {
                shard: 5,
                fence: f5,
                records: records[3..].iter().collect(),
            },
        ]
    };
    let mut ran = false;
    let results = transaction(&mut con, &chunks(a3.fence, a5.fence), || ran = true);
    assert!(ran, "the writer's work in the meantime runs");
    let ids: Vec<String> = results
        .into_iter()
        .map(|r| match r {
            ChunkResult::Written(id) => id,
            other => panic!("expected Written, got {other:?}"),
        })
        .collect();
    let (s3, s5) = (stream_of(&mut con, 3), stream_of(&mut con, 5));
    assert_eq!((s3.len(), s5.len()), (3, 1));
    assert_eq!(
        ids,
        [s3[2].0.clone(), s5[0].0.clone()],
        "each shard's last id"
    );
    let field = |entry: &(String, Vec<String>), name: &str| {
        let at = entry.1.iter().position(|f| f == name).unwrap();
        entry.1[at + 1].clone()
    };
    assert_eq!(field(&s3[0], "fence"), a3.fence.to_string());
    assert_eq!(field(&s3[1], "message"), "entry 1");
    assert_eq!(field(&s5[0], "type"), "lifecycle");
    assert_eq!(field(&s5[0], "bridge"), "a");

    // B takes shard 5 over; A writes to both with its old tokens: shard 3 is written, shard 5
    // refused whole.
    let _: () = redis::cmd("DEL").arg(&k5.lease).query(&mut con).unwrap();
    let b5 = acquired(&mut con, &k5, "b", 60_000);
    assert!(b5.fence > a5.fence);
    let results = transaction(&mut con, &chunks(a3.fence, a5.fence), || {});
    assert!(matches!(results[0], ChunkResult::Written(_)), "{results:?}");
    assert_fenced(&results[1]);
    assert_eq!(stream_of(&mut con, 3).len(), 6);
    assert_eq!(
        stream_of(&mut con, 5).len(),
        1,
        "nothing with the stale token"
    );

    // Both stale (released): nothing written anywhere; the connection is usable afterwards.
    assert!(store::release(&mut con, &k3, "a", None).unwrap());
    let results = transaction(&mut con, &chunks(a3.fence, a5.fence), || {});
    assert!(
        results.iter().all(|r| matches!(r, ChunkResult::Fenced(_))),
        "{results:?}"
    );
    assert_eq!(stream_of(&mut con, 3).len(), 6);
    assert_eq!(stream_of(&mut con, 5).len(), 1);
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG", "no transaction left open");
}

/// A TCP relay to `upstream` that holds the client's `EXEC` until told to go on: it says when
/// one arrived (`at_exec`) and waits for `go`.
fn exec_holding_relay(
    upstream: u16,
) -> (
    u16,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (at_exec, exec_seen) = std::sync::mpsc::channel();
    let (go, wait_go) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        let (mut client_reader, mut server_writer) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut server, &mut client);
        });
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match client_reader.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if buf[..n].windows(6).any(|w| w == b"EXEC\r\n") {
                let _ = at_exec.send(());
                let _ = wait_go.recv();
            }
            if server_writer.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    (port, exec_seen, go)
}

#[test]
fn a_fence_that_moves_between_the_watch_and_the_exec_makes_the_transaction_write_nothing() {
    let redis = RedisServer::start();
    let mut direct = redis.con();
    let keys = ShardKeys::new("tx", 3);
    let a = acquired(&mut direct, &keys, "a", 60_000);
    let (port, exec_seen, go) = exec_holding_relay(redis.port);
    let writer = std::thread::spawn(move || {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_connection()
            .unwrap();
        let records: Vec<Record> = (0..3).map(lifecycle).collect();
        let chunks = [Chunk {
            shard: 3,
            fence: a.fence,
            records: records.iter().collect(),
        }];
        transaction(&mut con, &chunks, || {})
    });
    // The fences were read and matched; before the EXEC reaches Redis, another process takes
    // the shard (the fence moves on).
    exec_seen
        .recv_timeout(Duration::from_secs(30))
        .expect("the EXEC is sent");
    let _: u64 = redis::cmd("INCR")
        .arg(&keys.fence)
        .query(&mut direct)
        .unwrap();
    go.send(()).unwrap();
    let results = writer.join().unwrap();
    assert_fenced(&results[0]);
    assert!(
        stream_of(&mut direct, 3).is_empty(),
        "nothing written with the stale token"
    );
}

#[test]
fn a_holder_that_never_vouched_hands_over_the_moment_it_acquired() {
    let redis = RedisServer::start();
    let mut con = redis.con();
    let keys = ShardKeys::new("nv", 9);
    let before = SystemTime::now() - Duration::from_millis(5);
    let a = acquired(&mut con, &keys, "a", 200);
    assert_eq!(a.previous, None);
    // A dies before its first renewal: no `until` was ever written.
    let mut b = None;
    assert!(wait_until(Duration::from_secs(10), || {
        b = store::acquire(&mut con, &keys, "b", 60_000).unwrap();
        b.is_some()
    }));
    let previous = b.unwrap().previous.unwrap();
    assert_eq!(previous.holder, "a");
    assert_eq!(previous.until, None, "A never vouched");
    let since = previous.since.expect("A's acquisition moment");
    assert!(since >= before && since <= SystemTime::now(), "{since:?}");
    assert_eq!(
        previous.gap_start(),
        Some(since),
        "the takeover gap starts when A acquired the shard"
    );
}
