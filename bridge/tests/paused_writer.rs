//! A process paused past its lease (SIGSTOP, as a long GC pause or a stalled VM would) comes
//! back with events it still wants to write: the fence refuses them, it gives the shards up,
//! and the streams never see an old fence after a new one. Every published event is in the
//! streams or inside a gap entry of its topic, and the shards end up shared again. SIGINT then
//! stops the other process, whose released shards the first takes over.
mod util;

use genesys_notify::emulator::Emulator;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use util::*;

const SHARDS: u32 = 8;
const TOPICS: usize = 40;

fn holders(con: &mut redis::Connection) -> Vec<Option<String>> {
    (0..SHARDS)
        .map(|s| {
            redis::cmd("GET")
                .arg(format!("genesys:{{shard-{s}}}:lease"))
                .query(con)
                .unwrap()
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_paused_process_cannot_write_after_its_shards_were_taken_over() {
    let redis = RedisServer::start();
    let emu = Arc::new(Emulator::start().expect("emulator"));
    let topics = presence_topics(TOPICS);
    let mut args = vec![
        "--redis".to_owned(),
        redis.url(),
        "--shards".into(),
        SHARDS.to_string(),
        "--lease-secs".into(),
        "3".into(),
    ];
    args.extend(topics.iter().cloned());
    let start = |id: &str| BridgeProcess::on_emulator(&emu, id, &args);
    let mut a = start("a");
    let mut b = start("b");
    let mut con = redis.con();
    let count =
        |h: &[Option<String>], id: &str| h.iter().filter(|x| x.as_deref() == Some(id)).count();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let h = holders(&mut con);
            count(&h, "a") == 4 && count(&h, "b") == 4
        }),
        "a and b share the shards 4/4\n{}\n{}",
        a.dump(),
        b.dump()
    );
    assert!(wait_until(Duration::from_secs(60), || subscribed_topics(
        &emu
    ) == TOPICS));

    let publisher = Publisher::start(
        &emu,
        &topics,
        |seq| seq as usize % TOPICS,
        Duration::from_millis(5),
    );
    std::thread::sleep(Duration::from_secs(1));
    // b freezes for well past its lease; a takes every shard.
    signal(b.pid(), "-STOP");
    let taken = wait_until(Duration::from_secs(60), || {
        count(&holders(&mut con), "a") == SHARDS as usize
    });
    if !taken {
        signal(b.pid(), "-CONT");
        panic!("a took b's shards over\n{}", a.dump());
    }
    std::thread::sleep(Duration::from_secs(2));
    signal(b.pid(), "-CONT");
    // b wakes up: what it read meanwhile is refused or left to a's gaps; it loses its leases,
    // then gets its share back.
    assert!(
        wait_until(Duration::from_secs(60), || !b.events("lost").is_empty()),
        "b notices its leases are gone\n{}",
        b.dump()
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            let h = holders(&mut con);
            count(&h, "a") == 4 && count(&h, "b") == 4
        }),
        "shared again\n{}",
        b.dump()
    );
    std::thread::sleep(Duration::from_secs(1));
    let published = publisher.stop();
    // SIGINT releases a's leases at once: b holds all 8 well before a lease could expire.
    let interrupted = std::time::Instant::now();
    assert_eq!(
        a.interrupt(Duration::from_secs(60)),
        Some(0),
        "{}",
        a.dump()
    );
    assert!(
        wait_until(Duration::from_secs(60), || count(&holders(&mut con), "b")
            == SHARDS as usize),
        "b takes a's released shards\n{}",
        b.dump()
    );
    eprintln!(
        "after SIGINT, b held every shard in {:.1} s",
        interrupted.elapsed().as_secs_f64()
    );
    assert_eq!(b.terminate(Duration::from_secs(60)), Some(0));

    let entries = read_all(&mut con, "genesys", SHARDS);
    assert_fencing(&entries);
    let lost: Vec<u64> = account(&entries, &published, &topics, 0)
        .lost
        .iter()
        .map(|(seq, _, _)| *seq)
        .collect();
    assert!(
        lost.is_empty(),
        "lost without a gap: {:?}",
        &lost[..lost.len().min(10)]
    );
}
