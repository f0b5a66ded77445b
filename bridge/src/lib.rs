//! # genesys-bridge
//!
//! Writes every Genesys Cloud notification of the topics it is given, every gap and every
//! snapshot into Redis Streams, sharded across processes that coordinate through Redis alone.
//! The command (`src/main.rs`) is the product; this library holds its parts so that they can be
//! tested one by one.
//!
//! ## Parts
//! - [`entry`]: key names, the topic → shard hash, the entry fields (the log's interface);
//! - [`plan`]: the shard planner (quotas per live process, which shards to acquire or release);
//! - [`routes`]: the topic set by shard, event-name routing, placement over credentials;
//! - [`buffer`]: the byte-bounded buffer between the callbacks and the writer, drop accounting;
//! - [`store`]: every Redis command (lease, renewal, release and write scripts, the fenced
//!   write transactions, heartbeats);
//! - [`bridge`]: the running parts (writer and coordinator threads, the clients' callbacks);
//! - [`config`]: the TOML file; [`users`]: the `all_users` expansion;
//! - [`http`]: `/metrics`, `/health`, `/`; [`log`]: the log lines.
//!
//! The planner, the routes, the buffer, the entry encoding and the config are I/O-free and
//! unit-tested; the rest is tested end to end against the emulator and `redis-server`
//! (`bridge/tests/`).
//!
//! ## The log
//! Topics fall into a fixed number of shards ([`entry::shard_of`]: FNV-1a 64 of the lower-cased
//! subscription topic, modulo the shard count; the same count in every process). Each shard
//! has one stream, `<prefix>:{shard-N}:events` (prefix `genesys` by default), trimmed with
//! `XADD ... MAXLEN ~ <maxlen>`. Beside it, in the same Redis Cluster slot (hash tag
//! `{shard-N}`): the lease `<prefix>:{shard-N}:lease`, the fence `<prefix>:{shard-N}:fence` and
//! the holder record `<prefix>:{shard-N}:held` ([`entry::ShardKeys`]). The live processes are in
//! the sorted set `<prefix>:bridges`.
//!
//! ### Entry fields
//! Every entry has `type`, `received_at` (milliseconds since the Unix epoch, decimal),
//! `bridge` (the writing process's id) and `fence` (the fencing token it wrote with), and by
//! type:
//! - `event` and `snapshot`: `topic` (the event's `topicName`, an individual topic even for a
//!   combined subscription), `body` (the `eventBody` JSON as received), `correlation_id`
//!   (`metadata.CorrelationId`, empty if absent), `snapshot` (`1` for state read over REST
//!   after a gap or at subscription, else `0`); `received_at` is when the bridge read it.
//! - `gap`: `topics` (JSON array of the subscription topics affected), `start` and `end`
//!   (milliseconds since the Unix epoch), `reason` (`socket`: a channel had no socket;
//!   `takeover`: nobody held the shard; `dropped`: the bridge dropped events past its buffer),
//!   `dropped` (events the bridge dropped itself, 0 unless `reason` is `dropped`). Events of
//!   those topics between `start` and `end` may be missing: read their state over REST.
//! - `lifecycle`: `event` (`acquired`, `released`) and `message`.
//!
//! ### At least once
//! An event leaves the bridge's buffer only after Redis acknowledged the write that appended
//! it; a connection failure puts the batch back in front, in order, and it is written again
//! (so an entry may appear twice with the same `correlation_id`). A shard's new holder (after a
//! takeover or a release) writes a `takeover` gap from the previous holder's last vouched
//! moment (`held.until`: every event it received before then was acknowledged, minus one
//! renewal interval for events still in sockets and queues; `held.since`, when it acquired
//! the shard, if it died before its first renewal) to the moment its own subscription was in
//! place. Every event is therefore in the stream, or inside a gap entry of its topic.
//! Redis' own durability applies on top (see the README's "Scale out").
//!
//! ### Fencing
//! The fence is incremented (`INCR`) at every acquisition and every release. Every write checks
//! it atomically against the writer's token and appends nothing of a shard whose fence moved
//! on: on one server a transaction per batch (`WATCH` and `MGET` of the batch's fences, plain
//! `XADD`s queued in `MULTI`, `EXEC` only when every fence is the writer's token; a fence that
//! moves after the `WATCH` makes `EXEC` write nothing), and when that cannot go through (a stale
//! fence) or on a Redis Cluster, one Lua script per shard and batch that compares the fence
//! before its `XADD`s and refuses the whole batch (`FENCED`) otherwise. A paused or
//! partitioned process that lost its lease therefore cannot append after the new holder
//! started. Within a stream, `fence` never decreases.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bridge;
pub mod buffer;
pub mod config;
pub mod entry;
pub mod http;
pub mod log;
pub mod plan;
pub mod routes;
pub mod store;
pub mod users;
