//! The log's interface: key names, the topic → shard hash and the fields of a stream entry.
//! Pure values: nothing here touches Redis.
//!
//! Everything in this module is a contract with consumers (see the crate docs, "The log"):
//! changing a key name, the hash or a field breaks them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Default key prefix: keys are `genesys:{shard-N}:events` and so on.
pub const DEFAULT_PREFIX: &str = "genesys";

/// The shard of a topic: FNV-1a (64 bit, offset basis `0xcbf29ce484222325`, prime
/// `0x100000001b3`) over the UTF-8 bytes of the lower-cased subscription topic name, modulo
/// `shards`. Stable across processes, versions and platforms, so that every bridge process and
/// every consumer agree on it. A combined topic (`v2.users.<id>?presence&routingStatus`) is
/// hashed as written (lower-cased), and its events (`v2.users.<id>.presence`, ...) go to its
/// shard.
///
/// `shards` must be at least 1 (0 is treated as 1).
pub fn shard_of(topic: &str, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= u64::from(byte.to_ascii_lowercase());
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(shards.max(1))) as u32
}

/// The Redis keys of one shard. The shard's name sits in a hash tag (`{shard-7}`), so that the
/// stream, the lease, the fence and the holder record share one Redis Cluster slot (a Lua
/// script may only touch keys of one slot) while different shards spread over the nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardKeys {
    /// `<prefix>:{shard-N}:events`: the stream of entries.
    pub events: String,
    /// `<prefix>:{shard-N}:lease`: the lease, a string holding the holder's bridge id, with an
    /// expiry (the lease time).
    pub lease: String,
    /// `<prefix>:{shard-N}:fence`: the fencing token, an integer incremented at every
    /// acquisition and every release; every write checks it.
    pub fence: String,
    /// `<prefix>:{shard-N}:held`: a hash describing the last holder: `holder` (bridge id),
    /// `fence`, `since` and `until` (milliseconds since the Unix epoch: every event that holder
    /// received before `until` is in the stream), `released` (`1` after a clean release).
    pub held: String,
}

impl ShardKeys {
    /// The keys of shard `shard` under `prefix`.
    pub fn new(prefix: &str, shard: u32) -> ShardKeys {
        let tag = format!("{prefix}:{{shard-{shard}}}");
        ShardKeys {
            events: format!("{tag}:events"),
            lease: format!("{tag}:lease"),
            fence: format!("{tag}:fence"),
            held: format!("{tag}:held"),
        }
    }
}

/// `<prefix>:bridges`: a sorted set of the live bridge processes (member: bridge id, score: the
/// last heartbeat, milliseconds since the Unix epoch).
pub fn members_key(prefix: &str) -> String {
    format!("{prefix}:bridges")
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `n` in decimal, written at the end of `digits` (no allocation: the writer formats one
/// `received_at` per event).
pub fn decimal(n: u64, digits: &mut [u8; 20]) -> &str {
    // ASCII digits only.
    std::str::from_utf8(decimal_bytes(n, digits)).unwrap_or("0")
}

/// [`decimal`] as bytes, for the RESP encoding (lengths and counts).
pub(crate) fn decimal_bytes(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[start..]
}

/// Why a gap entry was written (the `reason` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapReason {
    /// `socket`: a notification channel had no socket (the library's `Lifecycle::Gap`).
    Socket,
    /// `takeover`: nobody held the shard between the previous holder's last vouched moment (or,
    /// if it never vouched, the moment it acquired the shard) and the new holder's
    /// subscription.
    Takeover,
    /// `dropped`: the bridge dropped events because Redis was unreachable for longer than its
    /// byte budget could hold.
    Dropped,
}

impl GapReason {
    /// The `reason` field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Socket => "socket",
            GapReason::Takeover => "takeover",
            GapReason::Dropped => "dropped",
        }
    }
}

/// One entry to append to a shard's stream, before the `fence` field (which the write script
/// adds from the token it checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A notification (`type` `event`) or a snapshot read over REST after a gap or at
    /// subscription (`type` `snapshot`).
    Event {
        /// The event's topic name (`topicName`, an individual topic).
        topic: String,
        /// The `eventBody` JSON as received.
        body: String,
        /// `metadata.CorrelationId`, if the notification had one.
        correlation_id: Option<String>,
        /// A snapshot (state read over REST), not a live notification.
        snapshot: bool,
        /// When the bridge read it from the socket.
        received_at: SystemTime,
    },
    /// Events of `topics` between `start` and `end` may be missing from the stream.
    Gap {
        /// The subscription topics affected (all of them of this shard).
        topics: Vec<String>,
        /// Start of the hole.
        start: SystemTime,
        /// End of the hole.
        end: SystemTime,
        /// Why.
        reason: GapReason,
        /// Events the bridge dropped itself (for [`GapReason::Dropped`]; 0 otherwise).
        dropped: u64,
    },
    /// Something that happened to the shard or the bridge (`acquired`, `released`).
    Lifecycle {
        /// The event's name.
        event: String,
        /// A readable line.
        message: String,
    },
}

impl Record {
    /// The entry's fields, in order, without `fence`: see the crate docs ("Entry fields").
    pub fn fields(&self, bridge: &str, now: SystemTime) -> Vec<(&'static str, String)> {
        match self {
            Record::Event {
                topic,
                body,
                correlation_id,
                snapshot,
                received_at,
            } => vec![
                (
                    "type",
                    if *snapshot { "snapshot" } else { "event" }.to_owned(),
                ),
                ("topic", topic.clone()),
                ("body", body.clone()),
                ("correlation_id", correlation_id.clone().unwrap_or_default()),
                ("snapshot", if *snapshot { "1" } else { "0" }.to_owned()),
                ("received_at", epoch_ms(*received_at).to_string()),
                ("bridge", bridge.to_owned()),
            ],
            Record::Gap {
                topics,
                start,
                end,
                reason,
                dropped,
            } => vec![
                ("type", "gap".to_owned()),
                (
                    "topics",
                    serde_json::Value::from(topics.clone()).to_string(),
                ),
                ("start", epoch_ms(*start).to_string()),
                ("end", epoch_ms(*end).to_string()),
                ("reason", reason.as_str().to_owned()),
                ("dropped", dropped.to_string()),
                ("received_at", epoch_ms(now).to_string()),
                ("bridge", bridge.to_owned()),
            ],
            Record::Lifecycle { event, message } => vec![
                ("type", "lifecycle".to_owned()),
                ("event", event.clone()),
                ("message", message.clone()),
                ("received_at", epoch_ms(now).to_string()),
                ("bridge", bridge.to_owned()),
            ],
        }
    }

    /// Calls `field(name, value)` for each field of [`Self::fields`], in the same order,
    /// without copying the record's strings (the writer's hot path).
    pub fn visit_fields(&self, bridge: &str, now: SystemTime, mut field: impl FnMut(&str, &str)) {
        match self {
            Record::Event {
                topic,
                body,
                correlation_id,
                snapshot,
                received_at,
            } => {
                field("type", if *snapshot { "snapshot" } else { "event" });
                field("topic", topic);
                field("body", body);
                field("correlation_id", correlation_id.as_deref().unwrap_or(""));
                field("snapshot", if *snapshot { "1" } else { "0" });
                let mut digits = [0u8; 20];
                field("received_at", decimal(epoch_ms(*received_at), &mut digits));
                field("bridge", bridge);
            }
            _ => {
                for (name, value) in self.fields(bridge, now) {
                    field(name, &value);
                }
            }
        }
    }

    /// The number of fields [`Self::visit_fields`] gives.
    pub fn field_count(&self) -> usize {
        match self {
            Record::Event { .. } => 7,
            Record::Gap { .. } => 8,
            Record::Lifecycle { .. } => 5,
        }
    }

    /// Bytes this record holds while it waits for Redis, counted against the byte budget: its
    /// strings plus a fixed overhead for the record itself.
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 96;
        OVERHEAD
            + match self {
                Record::Event {
                    topic,
                    body,
                    correlation_id,
                    ..
                } => topic.len() + body.len() + correlation_id.as_ref().map_or(0, String::len),
                Record::Gap { topics, .. } => topics.iter().map(|t| t.len() + 24).sum(),
                Record::Lifecycle { event, message } => event.len() + message.len(),
            }
    }

    /// When the bridge got it (events), or `None` (gaps, lifecycle).
    pub fn received_at(&self) -> Option<SystemTime> {
        match self {
            Record::Event { received_at, .. } => Some(*received_at),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn decimal_writes_every_digit() {
        let mut digits = [0u8; 20];
        for n in [0, 7, 10, 1_733_580_000_123, u64::MAX] {
            assert_eq!(decimal(n, &mut digits), n.to_string());
        }
    }

    #[test]
    fn shard_hash_is_fnv1a_of_the_lower_cased_name() {
        // FNV-1a 64 test vectors ("" and "a"), so that consumers in other languages can check
        // their implementation against these numbers.
        assert_eq!(
            shard_of("", u32::MAX),
            (0xcbf2_9ce4_8422_2325u64 % 0xffff_ffff) as u32
        );
        assert_eq!(
            shard_of("a", u32::MAX),
            (0xaf63_dc4c_8601_ec8cu64 % 0xffff_ffff) as u32
        );
        assert_eq!(
            shard_of("v2.users.ABC.presence", 64),
            shard_of("v2.users.abc.presence", 64)
        );
        // Pinned: a change of the hash would move every topic to another stream.
        assert_eq!(shard_of("v2.users.abc.presence", 64), 12);
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
    }

    #[test]
    fn shards_spread_topics_evenly() {
        let mut counts = [0usize; 64];
        for i in 0..64_000 {
            counts[shard_of(
                &format!("v2.users.9ed7d9f6-0c59-4360-ac54-{i:012x}.presence"),
                64,
            ) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 800 && *max < 1200, "min {min} max {max}");
    }

    #[test]
    fn keys_of_one_shard_share_a_hash_tag() {
        let keys = ShardKeys::new("genesys", 7);
        assert_eq!(keys.events, "genesys:{shard-7}:events");
        assert_eq!(keys.lease, "genesys:{shard-7}:lease");
        assert_eq!(keys.fence, "genesys:{shard-7}:fence");
        assert_eq!(keys.held, "genesys:{shard-7}:held");
        assert_eq!(members_key("genesys"), "genesys:bridges");
    }

    #[test]
    fn event_fields_are_the_documented_ones() {
        let at = UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
        let record = Record::Event {
            topic: "v2.users.u1.presence".into(),
            body: r#"{"a":1}"#.into(),
            correlation_id: Some("c-1".into()),
            snapshot: false,
            received_at: at,
        };
        let fields = record.fields("b1", at);
        let names: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "type",
                "topic",
                "body",
                "correlation_id",
                "snapshot",
                "received_at",
                "bridge"
            ]
        );
        assert_eq!(fields[0].1, "event");
        assert_eq!(fields[3].1, "c-1");
        assert_eq!(fields[4].1, "0");
        assert_eq!(fields[5].1, "1765000000123");
        let snapshot = Record::Event {
            topic: "t".into(),
            body: "{}".into(),
            correlation_id: None,
            snapshot: true,
            received_at: at,
        };
        let fields = snapshot.fields("b1", at);
        assert_eq!(
            (
                fields[0].1.as_str(),
                fields[3].1.as_str(),
                fields[4].1.as_str()
            ),
            ("snapshot", "", "1")
        );
    }

    #[test]
    fn visiting_gives_the_same_fields_as_the_list() {
        let at = UNIX_EPOCH + Duration::from_millis(5);
        let records = [
            Record::Event {
                topic: "t".into(),
                body: "{}".into(),
                correlation_id: Some("c".into()),
                snapshot: true,
                received_at: at,
            },
            Record::Gap {
                topics: vec!["t".into()],
                start: at,
                end: at,
                reason: GapReason::Dropped,
                dropped: 3,
            },
            Record::Lifecycle {
                event: "acquired".into(),
                message: "m".into(),
            },
        ];
        for record in records {
            let mut visited = Vec::new();
            record.visit_fields("b", at, |k, v| visited.push((k.to_owned(), v.to_owned())));
            let listed: Vec<(String, String)> = record
                .fields("b", at)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            assert_eq!(visited, listed);
            assert_eq!(record.field_count(), listed.len());
        }
    }

    #[test]
    fn gap_fields_carry_the_topics_as_json_and_the_bounds_in_ms() {
        let start = UNIX_EPOCH + Duration::from_millis(1000);
        let end = UNIX_EPOCH + Duration::from_millis(2500);
        let gap = Record::Gap {
            topics: vec!["v2.users.a?presence&routingStatus".into(), "t\"2".into()],
            start,
            end,
            reason: GapReason::Takeover,
            dropped: 0,
        };
        let fields = gap.fields("b1", end);
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("type"), "gap");
        let topics: Vec<String> = serde_json::from_str(&get("topics")).unwrap();
        assert_eq!(topics, ["v2.users.a?presence&routingStatus", "t\"2"]);
        assert_eq!((get("start"), get("end")), ("1000".into(), "2500".into()));
        assert_eq!(get("reason"), "takeover");
    }

    #[test]
    fn weight_counts_the_strings_held() {
        let small = Record::Lifecycle {
            event: "a".into(),
            message: String::new(),
        };
        let big = Record::Lifecycle {
            event: "a".into(),
            message: "x".repeat(1000),
        };
        assert_eq!(big.weight() - small.weight(), 1000);
    }
}
