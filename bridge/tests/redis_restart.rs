//! Redis restarted mid-run (stopped with SIGTERM, down for a few seconds, started again from
//! its append-only file; `appendfsync no`, so that a busy disk's fsyncs do not stall the test:
//! the clean stop flushes the file): the bridge holds events within its byte budget and writes them once
//! Redis is back; past the budget it drops them, counts them and writes a `dropped` gap entry.
//! Nothing is lost without a gap entry, and the outage is reported in the log.
mod util;

use genesys_notify::emulator::Emulator;
use std::sync::Arc;
use std::time::Duration;
use util::*;

const SHARDS: u32 = 4;
const TOPICS: usize = 20;

struct Outcome {
    published: usize,
    written: usize,
    in_gaps: usize,
    dropped_reported: u64,
}

/// Runs one bridge with `budget` bytes, publishes continuously, restarts Redis for `down`,
/// and checks the accounting.
fn run(budget: usize, down: Duration) -> Outcome {
    let mut redis = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    let emu = Arc::new(Emulator::start().expect("emulator"));
    let topics = presence_topics(TOPICS);
    let mut args = vec![
        "--redis".to_owned(),
        redis.url(),
        "--shards".into(),
        SHARDS.to_string(),
        "--buffer-bytes".into(),
        budget.to_string(),
    ];
    args.extend(topics.iter().cloned());
    let mut bridge = BridgeProcess::on_emulator(&emu, "b", &args);
    assert!(
        wait_until(Duration::from_secs(60), || subscribed_topics(&emu)
            == TOPICS),
        "{}",
        bridge.dump()
    );
    let publisher = Publisher::start(
        &emu,
        &topics,
        |seq| seq as usize % TOPICS,
        Duration::from_millis(4),
    );
    std::thread::sleep(Duration::from_secs(1));
    redis.stop();
    std::thread::sleep(down);
    redis.start_again();
    std::thread::sleep(Duration::from_secs(2));
    let published = publisher.stop();
    let mut con = redis.con();
    let last = published.last().unwrap().0;
    // Everything is written (or reported) once Redis is back: wait for the last event.
    assert!(
        wait_until(Duration::from_secs(60), || read_all(
            &mut con, "genesys", SHARDS
        )
        .iter()
        .any(|e| e.get("body") == format!("{{\"seq\":{last}}}"))),
        "the last event written after the restart; log:\n{}",
        bridge.dump()
    );
    assert_eq!(
        bridge.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.dump()
    );
    assert!(
        !bridge.events("redis_unavailable").is_empty(),
        "the outage is reported"
    );
    assert!(!bridge.events("redis_available").is_empty(), "and its end");

    let entries = read_all(&mut con, "genesys", SHARDS);
    // A dropped event's gap runs from the first to the last receive time of the drops;
    // publication comes a moment before receipt.
    let Accounting {
        seen,
        in_gaps,
        lost,
        dropped_reported,
        ..
    } = account(&entries, &published, &topics, 1000);
    let lost: Vec<(u64, u64)> = lost.iter().map(|(seq, _, at)| (*seq, *at)).collect();
    eprintln!(
        "budget {budget} B, Redis down {down:?}: published {}, written {}, inside gaps {}, dropped and reported {}",
        published.len(),
        seen.len(),
        in_gaps,
        dropped_reported
    );
    assert!(
        lost.is_empty(),
        "lost without a gap: {:?}",
        &lost[..lost.len().min(10)]
    );
    Outcome {
        published: published.len(),
        written: seen.len(),
        in_gaps,
        dropped_reported,
    }
}

#[test]
fn within_the_budget_every_event_is_written_after_the_restart() {
    let outcome = run(64 << 20, Duration::from_secs(3));
    assert_eq!(outcome.written, outcome.published, "nothing dropped");
    assert_eq!(outcome.dropped_reported, 0);
}

#[test]
fn past_the_budget_events_are_dropped_counted_and_reported_by_a_gap_entry() {
    // About 100 events' worth of bytes, for 3 s of events at about 250 per second.
    let outcome = run(20_000, Duration::from_secs(3));
    assert!(outcome.dropped_reported > 0, "some events were dropped");
    assert_eq!(
        outcome.published,
        outcome.written + outcome.in_gaps,
        "each event written or inside a gap"
    );
    assert!(outcome.in_gaps as u64 >= outcome.dropped_reported);
}
