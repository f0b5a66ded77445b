//! The store owns every Redis command the bridge sends: the Lua scripts for leases and fenced
//! writes, the fenced transactions, membership heartbeats, and the pipelined batches. It keeps
//! no state of its own.
//!
//! Each script touches the keys of one shard only (one hash tag, so one Redis Cluster slot).
//! Every function takes a plain connection (commands pipelined) or a Redis Cluster connection
//! (which cannot pipeline across nodes: one call per shard, each routed to its slot's node).
//!
//! Fenced writes take one of two forms, both refused atomically when a shard's fence is not the
//! writer's token: on one server, a transaction ([`write_transaction`]: `WATCH` the batch's
//! fences, read them, queue plain `XADD`s in `MULTI`, and `EXEC` only if every fence is the
//! writer's; a fence that moves after the `WATCH` makes `EXEC` write nothing), which costs
//! Redis about what plain `XADD`s cost; else, and on a Redis Cluster, the write script per
//! shard and batch ([`write_batch`]), which compares the fence before its `XADD`s (Lua costs
//! Redis about half as much again per entry).

use crate::entry::{decimal, decimal_bytes, epoch_ms, members_key, Record, ShardKeys};
use redis::{ConnectionLike, RedisResult, Script, Value};
use std::time::SystemTime;

/// `SET lease NX PX ttl`; on success `INCR fence` and record the new holder in `held`, leaving
/// `until` (the previous holder's last vouched moment) for the new holder to read and to
/// advance only once it has written its takeover gap.
/// Returns `{fence, previous holder, previous until, previous released, previous since}` or
/// nil when held.
const ACQUIRE: &str = r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local fence = redis.call('INCR', KEYS[2])
local prev = redis.call('HMGET', KEYS[3], 'holder', 'until', 'released', 'since')
redis.call('HSET', KEYS[3], 'holder', ARGV[1], 'fence', fence, 'since', ARGV[3], 'released', '0')
return {fence, prev[1] or '', prev[2] or '', prev[3] or '', prev[4] or ''}
";

/// Renews the lease if still the holder, and advances `until` when given.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'until', ARGV[3]) end
return 1
";

/// Releases the lease if still the holder: the fence is incremented too, so that nothing
/// written with the old token can land after the release.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[3])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'until', ARGV[2]) end
redis.call('HSET', KEYS[2], 'released', '1')
return 1
";

/// Appends a batch of entries to the stream if the fence still holds the writer's token; each
/// entry gets a `fence` field with that token. ARGV: fence, maxlen, count, then per entry the
/// number of field/value strings followed by them.
const WRITE: &str = r"
local current = redis.call('GET', KEYS[2])
if current ~= ARGV[1] then
  return redis.error_reply('FENCED fence is ' .. tostring(current) .. ', writer holds ' .. ARGV[1])
end
local i = 4
local last = false
local stream, maxlen, fence = KEYS[1], ARGV[2], ARGV[1]
for _ = 1, tonumber(ARGV[3]) do
  local n = tonumber(ARGV[i])
  if n == 14 then
    -- An event or snapshot (7 fields): no table to build, the common case.
    last = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
      ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
      ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10], ARGV[i + 11], ARGV[i + 12],
      ARGV[i + 13], ARGV[i + 14], 'fence', fence)
  else
    local args = {'XADD', stream, 'MAXLEN', '~', maxlen, '*'}
    for j = 1, n do args[#args + 1] = ARGV[i + j] end
    args[#args + 1] = 'fence'
    args[#args + 1] = fence
    last = redis.call(unpack(args))
  end
  i = i + n + 1
end
return last
";

/// The previous holder of a shard, as found at acquisition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    /// Its bridge id.
    pub holder: String,
    /// Every event it received before this moment is in the stream (its last renewal or
    /// release), if it ever got that far.
    pub until: Option<SystemTime>,
    /// It released the shard cleanly.
    pub released: bool,
    /// When it acquired the shard. A holder that died before its first renewal never set
    /// `until` (and no holder before it did): every event since this moment may be missing.
    pub since: Option<SystemTime>,
}

impl Previous {
    /// Where the new holder's `takeover` gap starts: the last vouched moment (`until`), else,
    /// for a holder that never vouched and had no vouching predecessor, the moment it acquired
    /// the shard (`since`); `None` only for records that carry neither.
    pub fn gap_start(&self) -> Option<SystemTime> {
        self.until.or(self.since)
    }
}

/// A lease just acquired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// The fencing token to write with.
    pub fence: u64,
    /// Who held the shard before, if anyone ever did.
    pub previous: Option<Previous>,
}

/// Tries to acquire the lease of a shard for `ttl_ms` (→ `None`: someone holds it).
pub fn acquire(
    con: &mut dyn ConnectionLike,
    keys: &ShardKeys,
    bridge: &str,
    ttl_ms: u64,
) -> RedisResult<Option<Acquired>> {
    let reply: Option<(u64, String, String, String, String)> = redis::cmd("EVAL")
        .arg(ACQUIRE)
        .arg(3)
        .arg(&keys.lease)
        .arg(&keys.fence)
        .arg(&keys.held)
        .arg(bridge)
        .arg(ttl_ms)
        .arg(epoch_ms(SystemTime::now()))
        .query(con)?;
    let moment = |ms: &str| {
        ms.parse::<u64>()
            .ok()
            .map(|ms| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    };
    Ok(
        reply.map(|(fence, holder, until, released, since)| Acquired {
            fence,
            previous: (!holder.is_empty()).then(|| Previous {
                holder,
                until: moment(&until),
                released: released == "1",
                since: moment(&since),
            }),
        }),
    )
}

/// Renews the lease for `ttl_ms` if `bridge` still holds it (→ false: lost), advancing the
/// vouched moment to `until` when given.
pub fn renew(
    con: &mut dyn ConnectionLike,
    keys: &ShardKeys,
    bridge: &str,
    ttl_ms: u64,
    until: Option<SystemTime>,
) -> RedisResult<bool> {
    let held: i64 = redis::cmd("EVAL")
        .arg(RENEW)
        .arg(2)
        .arg(&keys.lease)
        .arg(&keys.held)
        .arg(bridge)
        .arg(ttl_ms)
        .arg(until.map(|t| epoch_ms(t).to_string()).unwrap_or_default())
        .query(con)?;
    Ok(held == 1)
}

/// Releases the lease if `bridge` holds it (→ false: it did not), recording `until`.
pub fn release(
    con: &mut dyn ConnectionLike,
    keys: &ShardKeys,
    bridge: &str,
    until: Option<SystemTime>,
) -> RedisResult<bool> {
    let released: i64 = redis::cmd("EVAL")
        .arg(RELEASE)
        .arg(3)
        .arg(&keys.lease)
        .arg(&keys.held)
        .arg(&keys.fence)
        .arg(bridge)
        .arg(until.map(|t| epoch_ms(t).to_string()).unwrap_or_default())
        .query(con)?;
    Ok(released == 1)
}

/// When the first lease held by another process runs out if it is not renewed (its `PTTL`),
/// `None` when no other process holds one: a process that died stops renewing, and its
/// shards can be taken at that moment rather than at the next round.
pub fn next_expiry(
    con: &mut dyn ConnectionLike,
    prefix: &str,
    holders: &[Option<String>],
    me: &str,
) -> RedisResult<Option<std::time::Duration>> {
    let mut soonest: Option<i64> = None;
    for (shard, holder) in holders.iter().enumerate() {
        if holder.as_deref().is_none_or(|h| h == me) {
            continue;
        }
        let ttl: i64 = redis::cmd("PTTL")
            .arg(ShardKeys::new(prefix, shard as u32).lease)
            .query(con)?;
        if ttl >= 0 {
            soonest = Some(soonest.map_or(ttl, |s| s.min(ttl)));
        }
    }
    Ok(soonest.map(|ms| std::time::Duration::from_millis(ms as u64)))
}

/// Who holds each shard's lease now (`None`: free), one pipelined round trip.
pub fn holders(
    con: &mut dyn ConnectionLike,
    prefix: &str,
    shards: u32,
) -> RedisResult<Vec<Option<String>>> {
    if !con.supports_pipelining() {
        // A Redis Cluster connection: the leases live on several nodes, one call each.
        return (0..shards)
            .map(|shard| {
                redis::cmd("GET")
                    .arg(ShardKeys::new(prefix, shard).lease)
                    .query(con)
            })
            .collect();
    }
    let mut pipe = redis::pipe();
    for shard in 0..shards {
        pipe.cmd("GET").arg(ShardKeys::new(prefix, shard).lease);
    }
    pipe.query(con)
}

/// Records this process as alive (score: now) and returns the processes seen alive within
/// `window_ms`, sorted by id. Entries older than ten windows are removed.
pub fn heartbeat(
    con: &mut dyn ConnectionLike,
    prefix: &str,
    bridge: &str,
    window_ms: u64,
) -> RedisResult<Vec<String>> {
    let key = members_key(prefix);
    let now = epoch_ms(SystemTime::now());
    if !con.supports_pipelining() {
        let _: () = redis::cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg(bridge)
            .query(con)?;
        let _: () = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now.saturating_sub(window_ms * 10))
            .query(con)?;
        let mut members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg(now.saturating_sub(window_ms))
            .arg("+inf")
            .query(con)?;
        members.sort();
        return Ok(members);
    }
    let (_, _, mut members): ((), (), Vec<String>) = redis::pipe()
        .cmd("ZADD")
        .arg(&key)
        .arg(now)
        .arg(bridge)
        .cmd("ZREMRANGEBYSCORE")
        .arg(&key)
        .arg("-inf")
        .arg(now.saturating_sub(window_ms * 10))
        .cmd("ZRANGEBYSCORE")
        .arg(&key)
        .arg(now.saturating_sub(window_ms))
        .arg("+inf")
        .query(con)?;
    members.sort();
    Ok(members)
}

/// Removes this process from the live set (a clean stop).
pub fn leave(con: &mut dyn ConnectionLike, prefix: &str, bridge: &str) -> RedisResult<()> {
    redis::cmd("ZREM")
        .arg(members_key(prefix))
        .arg(bridge)
        .query(con)
}

/// One shard's part of a batch.
#[derive(Debug)]
pub struct Chunk<'a> {
    /// The shard.
    pub shard: u32,
    /// Its fencing token.
    pub fence: u64,
    /// Its records, in order.
    pub records: Vec<&'a Record>,
}

/// How one chunk fared.
#[derive(Debug)]
pub enum ChunkResult {
    /// Appended; the last entry's id.
    Written(String),
    /// The shard's fence moved on: another holder took it (or this one released it).
    Fenced(String),
    /// Redis refused for another reason (out of memory, a script error): try again later.
    Refused(String),
}

/// Writes the chunks in one pipelined round trip, each with one fenced script call. The
/// outer error is a connection failure: nothing is known to be written.
///
/// The script is called by its SHA1 (`EVALSHA`): a batch then carries its entries only. A
/// Redis that does not know the script (restarted, or a new node) answers `NOSCRIPT` for those
/// chunks, which are written again with `EVAL` in a second round trip (which also caches it).
pub fn write_batch(
    con: &mut dyn ConnectionLike,
    prefix: &str,
    bridge: &str,
    maxlen: u64,
    chunks: &[Chunk<'_>],
) -> RedisResult<Vec<ChunkResult>> {
    let now = SystemTime::now();
    if !con.supports_pipelining() {
        // A Redis Cluster connection: each shard's script goes to the node of its slot, one
        // call each (the cluster pipeline would fail every chunk for one chunk's error).
        return chunks
            .iter()
            .map(|chunk| {
                let single = std::slice::from_ref(chunk);
                let pipe = write_pipeline(prefix, bridge, maxlen, single, now, |cmd| {
                    cmd.cmd("EVAL").arg(WRITE);
                });
                let cmd = pipe.cmd_iter().next().expect("one command");
                match cmd.query::<Value>(con) {
                    Ok(value) => Ok(chunk_result(Ok(value))),
                    Err(e) if e.is_io_error() || e.is_connection_dropped() => Err(e),
                    Err(e) => Ok(chunk_result(Err(e))),
                }
            })
            .collect();
    }
    let script = Script::new(WRITE);
    let pipe = write_pipeline(prefix, bridge, maxlen, chunks, now, |cmd| {
        cmd.cmd("EVALSHA").arg(script.get_hash());
    });
    let replies: Vec<RedisResult<Value>> = pipe.query(con)?;
    let unknown: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Err(e) if e.code() == Some("NOSCRIPT")))
        .map(|(i, _)| i)
        .collect();
    let mut results: Vec<ChunkResult> = replies.into_iter().map(chunk_result).collect();
    if !unknown.is_empty() {
        let again: Vec<Chunk<'_>> = unknown
            .iter()
            .map(|i| Chunk {
                shard: chunks[*i].shard,
                fence: chunks[*i].fence,
                records: chunks[*i].records.clone(),
            })
            .collect();
        let pipe = write_pipeline(prefix, bridge, maxlen, &again, now, |cmd| {
            cmd.cmd("EVAL").arg(WRITE);
        });
        let replies: Vec<RedisResult<Value>> = pipe.query(con)?;
        for (i, reply) in unknown.into_iter().zip(replies) {
            results[i] = chunk_result(reply);
        }
    }
    Ok(results)
}

/// Loads the write script (`SCRIPT LOAD`), so that [`write_batch`]'s `EVALSHA` calls find it:
/// once per connection, and again after a `NOSCRIPT` answer (a Redis restarted, or its
/// scripts flushed, behind the same connection).
pub fn load_write_script(con: &mut dyn ConnectionLike) -> RedisResult<()> {
    let _: String = redis::cmd("SCRIPT").arg("LOAD").arg(WRITE).query(con)?;
    Ok(())
}

/// `*<n>\r\n` (an array's length) or `$<n>\r\n` (a bulk string's).
fn resp_len(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut digits = [0u8; 20];
    out.push(kind);
    out.extend_from_slice(decimal_bytes(n as u64, &mut digits));
    out.extend_from_slice(b"\r\n");
}

/// One RESP bulk string.
fn resp_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    resp_len(out, b'$', bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends to `out` the first part of a fenced transaction for `chunks` on one server, as
/// RESP: `WATCH` and `MGET` of the chunks' fence keys, `MULTI`, then one plain
/// `XADD <events> MAXLEN ~ <maxlen> * <fields> fence <token>` per record. Nothing is written
/// until [`write_transaction`] sends `EXEC`, which it does only if every fence read is the
/// chunk's token.
pub fn encode_transaction(
    out: &mut Vec<u8>,
    prefix: &str,
    bridge: &str,
    maxlen: u64,
    chunks: &[Chunk<'_>],
    now: SystemTime,
) {
    let keys: Vec<ShardKeys> = chunks
        .iter()
        .map(|c| ShardKeys::new(prefix, c.shard))
        .collect();
    for command in [&b"WATCH"[..], b"MGET"] {
        resp_len(out, b'*', 1 + keys.len());
        resp_bulk(out, command);
        for k in &keys {
            resp_bulk(out, k.fence.as_bytes());
        }
    }
    resp_len(out, b'*', 1);
    resp_bulk(out, b"MULTI");
    let mut maxlen_digits = [0u8; 20];
    let maxlen = decimal(maxlen, &mut maxlen_digits);
    for (chunk, keys) in chunks.iter().zip(&keys) {
        let mut fence_digits = [0u8; 20];
        let fence = decimal(chunk.fence, &mut fence_digits);
        for record in &chunk.records {
            resp_len(out, b'*', 8 + 2 * record.field_count());
            resp_bulk(out, b"XADD");
            resp_bulk(out, keys.events.as_bytes());
            resp_bulk(out, b"MAXLEN");
            resp_bulk(out, b"~");
            resp_bulk(out, maxlen.as_bytes());
            resp_bulk(out, b"*");
            record.visit_fields(bridge, now, |name, value| {
                resp_bulk(out, name.as_bytes());
                resp_bulk(out, value.as_bytes());
            });
            resp_bulk(out, b"fence");
            resp_bulk(out, fence.as_bytes());
        }
    }
}

/// Writes `chunks` with the transaction `packed` (from [`encode_transaction`] for the same
/// chunks) on one server: sends it, reads the fences and the `QUEUED` answers, then `EXEC`
/// when every fence is the chunk's token, and runs `meanwhile` while Redis executes it (the
/// writer encodes its next batch). When a fence is not the token, or Redis refused to queue an
/// `XADD`, or a fence moved between `WATCH` and `EXEC` (`EXEC` answers nil: nothing written),
/// the transaction is dropped and the batch is written by [`write_batch`] instead, which gives
/// each shard its own answer (`FENCED` for the stale ones).
///
/// The outer error is a connection failure: nothing is known to be written.
pub fn write_transaction(
    con: &mut redis::Connection,
    packed: &[u8],
    prefix: &str,
    bridge: &str,
    maxlen: u64,
    chunks: &[Chunk<'_>],
    meanwhile: impl FnOnce(),
) -> RedisResult<Vec<ChunkResult>> {
    con.send_packed_command(packed)?;
    let watched = con.recv_response()?.extract_error().is_ok();
    let fences = con.recv_response()?;
    // MULTI must have been accepted for the XADDs to be queued rather than run: it is, on a
    // connection that is not already inside a transaction (each one ends with EXEC or
    // DISCARD, or the connection is dropped).
    let mut queued = con.recv_response()?.extract_error().is_ok() && watched;
    let records: usize = chunks.iter().map(|c| c.records.len()).sum();
    for _ in 0..records {
        queued &= con.recv_response()?.extract_error().is_ok();
    }
    let fences_hold = match &fences {
        Value::Array(values) => {
            values.len() == chunks.len()
                && values
                    .iter()
                    .zip(chunks)
                    .all(|(v, c)| fence_of(v) == Some(c.fence))
        }
        _ => false,
    };
    if !(queued && fences_hold) {
        con.send_packed_command(b"*1\r\n$7\r\nDISCARD\r\n")?;
        let _ = con.recv_response()?;
        meanwhile();
        return write_batch(con, prefix, bridge, maxlen, chunks);
    }
    con.send_packed_command(b"*1\r\n$4\r\nEXEC\r\n")?;
    meanwhile();
    match con.recv_response()? {
        Value::Array(ids) if ids.len() == records => {
            let mut ids = ids.into_iter();
            Ok(chunks
                .iter()
                .map(|chunk| {
                    // The shard's first error if any (what was queued before it is written:
                    // the records go back and may appear twice, at least once), else its last
                    // entry's id; only that one is converted.
                    let replies: Vec<Value> = ids.by_ref().take(chunk.records.len()).collect();
                    match replies
                        .iter()
                        .position(|r| matches!(r, Value::ServerError(_)))
                    {
                        Some(at) => chunk_reply(replies[at].clone()),
                        None => replies
                            .into_iter()
                            .last()
                            .map_or(ChunkResult::Written(String::new()), chunk_reply),
                    }
                })
                .collect())
        }
        // Nil: a fence moved after the WATCH, nothing was written. An EXECABORT or another
        // answer: nothing was written either. Each shard gets its own answer from the script.
        _ => write_batch(con, prefix, bridge, maxlen, chunks),
    }
}

/// A fence key's value as `MGET` gives it.
fn fence_of(value: &Value) -> Option<u64> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(text) => text.parse().ok(),
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// How one chunk fared, from its answer to the script or its shard's answers in `EXEC` (a
/// server error is a value here).
pub fn chunk_reply(reply: Value) -> ChunkResult {
    chunk_result(reply.extract_error())
}

fn chunk_result(reply: RedisResult<Value>) -> ChunkResult {
    match reply {
        Ok(value) => ChunkResult::Written(redis::from_redis_value(value).unwrap_or_default()),
        Err(e) if e.code() == Some("FENCED") => ChunkResult::Fenced(e.to_string()),
        Err(e) => ChunkResult::Refused(e.to_string()),
    }
}

/// One script call per chunk; `call` starts each command (`EVALSHA <sha>` or `EVAL <text>`).
fn write_pipeline(
    prefix: &str,
    bridge: &str,
    maxlen: u64,
    chunks: &[Chunk<'_>],
    now: SystemTime,
    call: impl Fn(&mut redis::Pipeline),
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for chunk in chunks {
        let keys = ShardKeys::new(prefix, chunk.shard);
        call(&mut pipe);
        let cmd = pipe
            .arg(2)
            .arg(&keys.events)
            .arg(&keys.fence)
            .arg(chunk.fence)
            .arg(maxlen)
            .arg(chunk.records.len());
        for record in &chunk.records {
            cmd.arg(record.field_count() * 2);
            record.visit_fields(bridge, now, |name, value| {
                cmd.arg(name).arg(value);
            });
        }
    }
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::GapReason;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_transaction_is_encoded_as_the_redis_crate_would_send_its_commands() {
        let at = UNIX_EPOCH + Duration::from_millis(1_733_580_000_123);
        let event = Record::Event {
            topic: "v2.users.u1.presence".into(),
            body: r#"{"a":"é"}"#.into(),
            correlation_id: Some("c-1".into()),
            snapshot: false,
            received_at: at,
        };
        let gap = Record::Gap {
            topics: vec!["v2.users.u1?presence&routingStatus".into()],
            start: at,
            end: at + Duration::from_secs(3),
            reason: GapReason::Dropped,
            dropped: 12,
        };
        let chunks = [
            Chunk {
                shard: 3,
                fence: 41,
                records: vec![&event, &gap, &event],
            },
            Chunk {
                shard: 60,
                fence: 7,
                records: vec![&event],
            },
        ];
        let now = at + Duration::from_secs(9);
        let keys = [ShardKeys::new("pre", 3), ShardKeys::new("pre", 60)];
        let mut pipe = redis::pipe();
        pipe.cmd("WATCH").arg(&keys[0].fence).arg(&keys[1].fence);
        pipe.cmd("MGET").arg(&keys[0].fence).arg(&keys[1].fence);
        pipe.cmd("MULTI");
        for (chunk, keys) in chunks.iter().zip(&keys) {
            for record in &chunk.records {
                let cmd = pipe
                    .cmd("XADD")
                    .arg(&keys.events)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(5_000)
                    .arg("*");
                for (name, value) in record.fields("bridge-1", now) {
                    cmd.arg(name).arg(value);
                }
                cmd.arg("fence").arg(chunk.fence);
            }
        }
        let mut out = b"left as it was".to_vec();
        encode_transaction(&mut out, "pre", "bridge-1", 5_000, &chunks, now);
        assert_eq!(&out[..14], b"left as it was", "appended");
        assert_eq!(
            String::from_utf8_lossy(&out[14..]),
            String::from_utf8_lossy(&pipe.get_packed_pipeline())
        );
    }

    #[test]
    fn error_answers_map_to_fenced_or_refused() {
        let answer = |wire: &[u8]| redis::parse_redis_value(wire).unwrap();
        let fenced = answer(b"-FENCED fence is 5, writer holds 4\r\n");
        assert!(matches!(chunk_reply(fenced), ChunkResult::Fenced(_)));
        let oom = answer(b"-OOM command not allowed\r\n");
        assert!(matches!(chunk_reply(oom), ChunkResult::Refused(_)));
        let id = answer(b"$3\r\n1-2\r\n");
        assert!(matches!(chunk_reply(id), ChunkResult::Written(id) if id == "1-2"));
    }
}
