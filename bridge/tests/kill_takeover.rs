//! Three bridge processes share 64 shards against one emulator (in this test process) and one
//! redis-server, while events are published continuously. One is killed with SIGKILL: its
//! shards are taken over within the lease time + 5 s. It restarts, and the shards rebalance.
//! At the end every published event is in the streams at least once, or its publication time
//! lies inside a gap entry of its topic; and no stream ever had two writers at once (the
//! `fence` field never decreases along a stream, and one fence belongs to one bridge).
mod util;

use genesys_notify::emulator::{Emulator, EmulatorConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

const SHARDS: u32 = 64;
const TOPICS: usize = 200;
const LEASE: Duration = Duration::from_secs(10);

fn holders(con: &mut redis::Connection) -> Vec<Option<String>> {
    let mut pipe = redis::pipe();
    for shard in 0..SHARDS {
        pipe.cmd("GET")
            .arg(format!("genesys:{{shard-{shard}}}:lease"));
    }
    pipe.query(con).unwrap()
}

fn counts(holders: &[Option<String>], ids: &[&str]) -> Vec<usize> {
    ids.iter()
        .map(|id| holders.iter().filter(|h| h.as_deref() == Some(*id)).count())
        .collect()
}

fn balanced(con: &mut redis::Connection, ids: &[&str]) -> bool {
    let h = holders(con);
    let mut c = counts(&h, ids);
    c.sort();
    h.iter().all(Option::is_some) && c == [21, 21, 22]
}

#[test]
fn a_killed_process_s_shards_are_taken_over_and_nothing_is_lost_without_a_gap() {
    let redis = RedisServer::start();
    let emu = Arc::new(Emulator::start_with(EmulatorConfig::default()).expect("emulator"));
    let topics = presence_topics(TOPICS);
    let mut args = vec![
        "--redis".to_owned(),
        redis.url(),
        "--shards".into(),
        SHARDS.to_string(),
    ];
    args.extend(topics.iter().cloned());
    let start = |id: &str| BridgeProcess::on_emulator(&emu, id, &args);
    let mut bridges: Vec<BridgeProcess> = ["b0", "b1", "b2"].iter().map(|id| start(id)).collect();
    let mut con = redis.con();
    let dump = |bridges: &[BridgeProcess]| -> String {
        bridges
            .iter()
            .map(|b| format!("== {}\n{}", b.id, b.dump()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        wait_until(Duration::from_secs(60), || balanced(
            &mut con,
            &["b0", "b1", "b2"]
        )),
        "3 processes share 64 shards 21/21/22: {:?}\n{}",
        counts(&holders(&mut con), &["b0", "b1", "b2"]),
        dump(&bridges)
    );
    // Every topic subscribed by exactly one process before publishing starts.
    assert!(wait_until(Duration::from_secs(60), || subscribed_topics(
        &emu
    ) == TOPICS));

    // Publish continuously: (seq, topic, time just before publishing).
    let publisher = Publisher::start(
        &emu,
        &topics,
        |seq| (seq as usize * 7919) % TOPICS,
        Duration::from_millis(5),
    );
    std::thread::sleep(Duration::from_secs(2));

    // kill -9 b1; its shards go to b0 and b2 within the lease time + 5 s.
    let before = holders(&mut con);
    let victims: Vec<u32> = (0..SHARDS)
        .filter(|s| before[*s as usize].as_deref() == Some("b1"))
        .collect();
    let killed_at = Instant::now();
    bridges[1].kill9();
    let taken_over = wait_until(LEASE + Duration::from_secs(60), || {
        let now = holders(&mut con);
        victims
            .iter()
            .all(|s| matches!(now[*s as usize].as_deref(), Some("b0") | Some("b2")))
    });
    let takeover = killed_at.elapsed();
    assert!(taken_over, "b1's shards taken over; {}", dump(&bridges));
    eprintln!(
        "takeover of {} shards after kill -9: {:.1} s",
        victims.len(),
        takeover.as_secs_f64()
    );
    assert!(
        takeover <= LEASE + Duration::from_secs(5),
        "taken over in {takeover:?}, more than the lease + 5 s"
    );
    std::thread::sleep(Duration::from_secs(2));

    // b1 restarts (a new process, a new id as the default id would be): rebalance.
    bridges[1] = start("b1r");
    assert!(
        wait_until(Duration::from_secs(60), || balanced(
            &mut con,
            &["b0", "b1r", "b2"]
        )),
        "rebalanced after the restart: {:?}\n{}",
        counts(&holders(&mut con), &["b0", "b1r", "b2"]),
        dump(&bridges)
    );
    assert!(wait_until(Duration::from_secs(60), || subscribed_topics(
        &emu
    ) >= TOPICS));
    std::thread::sleep(Duration::from_secs(2));
    let published = publisher.stop();
    for b in bridges.iter_mut() {
        if b.id != "b1" {
            assert_eq!(
                b.terminate(Duration::from_secs(60)),
                Some(0),
                "{}",
                b.dump()
            );
        }
    }

    // The accounting.
    let entries = read_all(&mut con, "genesys", SHARDS);
    let Accounting {
        seen,
        events_written,
        in_gaps,
        lost,
        takeover_gaps,
        ..
    } = account(&entries, &published, &topics, 0);
    eprintln!(
        "published {}, in the streams {} ({} entries, duplicates {}), inside gaps {}, lost {}; takeover gaps {}",
        published.len(),
        seen.len(),
        events_written,
        events_written - seen.len(),
        in_gaps,
        lost.len(),
        takeover_gaps
    );
    assert!(
        lost.is_empty(),
        "events lost without a gap: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert!(
        takeover_gaps >= victims.len(),
        "a takeover gap per shard taken from b1"
    );
    assert!(seen.len() > published.len() / 2, "most events were written");

    // Fencing: along each stream the fence never decreases, and one fence is one writer.
    assert_fencing(&entries);
}
