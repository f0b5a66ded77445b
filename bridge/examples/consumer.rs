//! A consumer of genesys-bridge's streams: reads every shard's stream with a consumer group,
//! handles each entry, and acknowledges it (`XACK`) only after handling it, so that a consumer
//! that dies leaves its entries pending for another one to claim (`XAUTOCLAIM`).
//!
//! Handling here means printing one JSON line per entry on stdout:
//! - `event` / `snapshot`: `{"action":"apply","shard":N,"id":…,"type":…,"topic":…,
//!   "correlation_id":…,"body":{…}}`. Delivery is at least once: keep the last
//!   `correlation_id` per topic (or make the handling idempotent) to skip duplicates.
//! - `gap`: `{"action":"resync","shard":N,"id":…,"reason":…,"topics":[…],"start":…,"end":…}`:
//!   events of those topics between `start` and `end` (ms since the epoch) may be missing;
//!   read their state over REST (or wait for the `snapshot` entries the bridge writes after a
//!   takeover or a socket gap).
//! - `lifecycle`: `{"action":"note","shard":N,"id":…,"event":…,"message":…}`.
//!
//! ```text
//! cargo run -p genesys-bridge --example consumer -- --redis redis://127.0.0.1:6379 \
//!     --group dashboards --consumer "$(hostname)-1"
//! ```
//! One call of `XREADGROUP` covers every shard's stream: that suits a single Redis. On a Redis
//! Cluster, the streams are on different nodes: read each shard (or each node's shards) with a
//! call of its own.

use clap::Parser;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Read genesys-bridge's streams with a consumer group and acknowledge entries.")]
struct Args {
    /// Redis: `redis://HOST:PORT[/DB]`.
    #[arg(long)]
    redis: String,
    /// Key prefix of the bridge.
    #[arg(long, default_value = "genesys")]
    prefix: String,
    /// Shard count of the bridge.
    #[arg(long, default_value_t = 64)]
    shards: u32,
    /// Consumer group (created at the start of each stream if missing).
    #[arg(long, default_value = "consumers")]
    group: String,
    /// This consumer's name within the group.
    #[arg(long, default_value = "consumer-1")]
    consumer: String,
    /// Claim entries another consumer read but did not acknowledge for this long (ms).
    #[arg(long, default_value_t = 60_000)]
    claim_idle_ms: u64,
    /// Exit after this long (ms) without a new entry (0: run until killed).
    #[arg(long, default_value_t = 0)]
    exit_when_idle_ms: u64,
}

fn text(entry: &StreamId, field: &str) -> String {
    entry.get::<String>(field).unwrap_or_default()
}

/// Handles one entry: here, one JSON line on stdout.
fn handle(shard: u32, entry: &StreamId) {
    let kind = text(entry, "type");
    let line = match kind.as_str() {
        "event" | "snapshot" => serde_json::json!({
            "action": "apply",
            "shard": shard,
            "id": entry.id,
            "type": kind,
            "topic": text(entry, "topic"),
            "correlation_id": text(entry, "correlation_id"),
            "body": serde_json::from_str::<serde_json::Value>(&text(entry, "body"))
                .unwrap_or(serde_json::Value::Null),
        }),
        "gap" => serde_json::json!({
            "action": "resync",
            "shard": shard,
            "id": entry.id,
            "reason": text(entry, "reason"),
            "topics": serde_json::from_str::<serde_json::Value>(&text(entry, "topics"))
                .unwrap_or(serde_json::Value::Null),
            "start": text(entry, "start").parse::<u64>().ok(),
            "end": text(entry, "end").parse::<u64>().ok(),
        }),
        _ => serde_json::json!({
            "action": "note",
            "shard": shard,
            "id": entry.id,
            "event": text(entry, "event"),
            "message": text(entry, "message"),
        }),
    };
    println!("{line}");
}

fn shard_of_key(prefix: &str, key: &str) -> u32 {
    key.strip_prefix(&format!("{prefix}:{{shard-"))
        .and_then(|rest| rest.split('}').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut con = redis::Client::open(args.redis.as_str())?.get_connection()?;
    let keys: Vec<String> = (0..args.shards)
        .map(|s| format!("{}:{{shard-{s}}}:events", args.prefix))
        .collect();
    for key in &keys {
        // From the start of what the stream retains; BUSYGROUP: it exists already.
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg(&args.group)
            .arg("0")
            .arg("MKSTREAM")
            .query(&mut con);
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(e.into());
            }
        }
    }
    // Entries a dead consumer of the group read and never acknowledged.
    for key in &keys {
        let mut start = "0-0".to_owned();
        loop {
            let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(key)
                .arg(&args.group)
                .arg(&args.consumer)
                .arg(args.claim_idle_ms)
                .arg(&start)
                .arg("COUNT")
                .arg(100)
                .query(&mut con)?;
            for entry in &claimed.claimed {
                handle(shard_of_key(&args.prefix, key), entry);
                let _: i64 = redis::cmd("XACK")
                    .arg(key)
                    .arg(&args.group)
                    .arg(&entry.id)
                    .query(&mut con)?;
            }
            if claimed.next_stream_id == "0-0" {
                break;
            }
            start = claimed.next_stream_id;
        }
    }
    let mut last_entry = Instant::now();
    loop {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&args.group)
            .arg(&args.consumer)
            .arg("COUNT")
            .arg(500)
            .arg("BLOCK")
            .arg(500)
            .arg("STREAMS")
            .arg(&keys);
        for _ in &keys {
            read.arg(">");
        }
        let reply: Value = read.query(&mut con)?;
        let reply: StreamReadReply = match reply {
            Value::Nil => StreamReadReply::default(),
            other => redis::from_redis_value(other)?,
        };
        for stream in &reply.keys {
            let shard = shard_of_key(&args.prefix, &stream.key);
            for entry in &stream.ids {
                handle(shard, entry);
            }
            // Acknowledged only once handled: a crash before this leaves them pending.
            if !stream.ids.is_empty() {
                let ids: Vec<&str> = stream.ids.iter().map(|e| e.id.as_str()).collect();
                let _: i64 = redis::cmd("XACK")
                    .arg(&stream.key)
                    .arg(&args.group)
                    .arg(&ids)
                    .query(&mut con)?;
                last_entry = Instant::now();
            }
        }
        if args.exit_when_idle_ms > 0
            && last_entry.elapsed() > Duration::from_millis(args.exit_when_idle_ms)
        {
            return Ok(());
        }
    }
}
