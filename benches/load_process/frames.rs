//! frames.rs builds the Genesys-shaped notification frames the generator writes and holds the
//! callback's side of a run (sequence checks, latency histogram); it never touches a socket.
//!
//! The frames are those of `benches/load.rs` (same bodies, same stamped fields), so the two
//! modes send the same bytes; the send time is wall-clock nanoseconds here, because the writer
//! and the reader are different processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch: the one clock every process of the run shares.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub const TOPICS: usize = 100;
pub const TI_WIDTH: usize = 5;
pub const SEQ_WIDTH: usize = 12;
pub const SENT_WIDTH: usize = 20;
const BODY_HEAD: &str = r#"{"bench":{"ti":"#;
const SEQ_KEY: &str = r#","seq":"#;
const SENT_KEY: &str = r#","sent":"#;
/// Offsets of the three fields inside `eventBody`.
pub const TI_AT: usize = BODY_HEAD.len();
pub const SEQ_AT: usize = TI_AT + TI_WIDTH + SEQ_KEY.len();
pub const SENT_AT: usize = SEQ_AT + SEQ_WIDTH + SENT_KEY.len();

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// `v2.users.{id}.presence`, ~400-byte body.
    Small,
    /// `v2.users.{id}.conversations`, ~7 KB body.
    Large,
}

impl Size {
    pub fn short(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    pub fn parse(s: &str) -> Size {
        if s == "large" {
            Size::Large
        } else {
            Size::Small
        }
    }

    pub fn pattern(self) -> &'static str {
        match self {
            Size::Small => "v2.users.*.presence",
            Size::Large => "v2.users.*.conversations",
        }
    }

    pub fn topic(self, index: usize) -> String {
        let kind = match self {
            Size::Small => "presence",
            Size::Large => "conversations",
        };
        format!("v2.users.{}.{kind}", user_id(index))
    }
}

pub fn user_id(n: usize) -> String {
    format!("9ed7d9f6-0c59-4360-ac54-{n:012x}")
}

fn uuid(n: usize, salt: u32) -> String {
    format!("{salt:08x}-4d2c-4b7e-9a51-{n:012x}")
}

fn bench_head() -> String {
    format!(
        "{BODY_HEAD}{}{SEQ_KEY}{}{SENT_KEY}{}}}",
        " ".repeat(TI_WIDTH),
        " ".repeat(SEQ_WIDTH),
        " ".repeat(SENT_WIDTH)
    )
}

/// A ~400-byte presence body of topic `t`, its bench fields blank.
fn presence_body(t: usize) -> String {
    let mut body = format!(
        r#"{},"source":"PURECLOUD","presenceDefinition":{{"id":"6a3af858-942f-489d-9700-5f9bcdcdae9b","systemPresence":"AVAILABLE","languageLabels":{{"en_US":"Available"}}}},"primary":true,"modifiedDate":"2024-03-05T10:11:12.345Z","userId":"{}","message":""}}"#,
        bench_head(),
        user_id(t)
    );
    let missing = 400usize.saturating_sub(body.len());
    body.insert_str(body.len() - 2, &"x".repeat(missing));
    body
}

fn conversation_body(t: usize) -> String {
    let mut participants = Vec::new();
    let mut n = 0;
    loop {
        participants.push(format!(
            r#"{{"id":"{}","name":"Participant {n}","address":"tel:+3531555{n:04}","startTime":"2024-03-05T10:11:12.345Z","connectedTime":"2024-03-05T10:11:14.001Z","purpose":"{}","state":"connected","direction":"inbound","held":false,"wrapupRequired":true,"wrapupPrompt":"optional","user":{{"id":"{}"}},"queue":{{"id":"{}"}},"attributes":{{"customerId":"C-{n:08}","segment":"gold","language":"en-US","reason":"billing enquiry"}},"calls":[{{"id":"{}","state":"connected","recording":false,"recordingState":"none","muted":false,"confined":false,"held":false,"direction":"inbound","self":{{"nameRaw":"","addressNormalized":"tel:+3531555{n:04}"}},"provider":"Edge","peerId":"{}"}}]}}"#,
            uuid(n, 0x1111_0000 + t as u32),
            if n == 0 { "customer" } else { "agent" },
            user_id(n),
            uuid(n, 0x2222_0000),
            uuid(n, 0x3333_0000 + t as u32),
            uuid(n, 0x4444_0000 + t as u32),
        ));
        n += 1;
        if participants.iter().map(String::len).sum::<usize>() > 6600 {
            break;
        }
    }
    format!(
        r#"{},"id":"{}","name":"","participants":[{}],"recordingState":"none","address":"tel:+35315550000"}}"#,
        bench_head(),
        uuid(t, 0x5555_0000),
        participants.join(",")
    )
}

/// A server text frame (unmasked): header and payload.
pub fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81u8];
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n < 65_536 => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// A pre-encoded frame of one topic, with where its body starts.
#[derive(Clone)]
pub struct Template {
    pub bytes: Vec<u8>,
    body_at: usize,
}

impl Template {
    /// `{"topicName":…,"version":"2","eventBody":{…},"metadata":{"CorrelationId":…}}`, the
    /// service's key order.
    pub fn new(size: Size, t: usize) -> Template {
        let body = match size {
            Size::Small => presence_body(t),
            Size::Large => conversation_body(t),
        };
        let head = format!(
            r#"{{"topicName":"{}","version":"2","eventBody":"#,
            size.topic(t)
        );
        let payload = format!(
            r#"{head}{body},"metadata":{{"CorrelationId":"{}"}}}}"#,
            uuid(t, 0x6666_0000)
        );
        let bytes = ws_frame(payload.as_bytes());
        let body_at = bytes.len() - payload.len() + head.len();
        let mut template = Template { bytes, body_at };
        template.stamp(t as u64, 0, 0);
        template
    }

    pub fn stamp(&mut self, ti: u64, seq: u64, sent: u64) {
        let at = self.body_at;
        put_number(&mut self.bytes[at + TI_AT..at + TI_AT + TI_WIDTH], ti);
        put_number(&mut self.bytes[at + SEQ_AT..at + SEQ_AT + SEQ_WIDTH], seq);
        put_number(
            &mut self.bytes[at + SENT_AT..at + SENT_AT + SENT_WIDTH],
            sent,
        );
    }
}

/// Writes `value` right-aligned, padded with spaces (valid JSON whitespace).
fn put_number(field: &mut [u8], mut value: u64) {
    let mut i = field.len();
    loop {
        i -= 1;
        field[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 || i == 0 {
            break;
        }
    }
    field[..i].fill(b' ');
}

pub fn parse_number(field: &[u8]) -> u64 {
    field
        .iter()
        .filter(|b| b.is_ascii_digit())
        .fold(0, |acc, b| acc * 10 + u64::from(b - b'0'))
}

/// Log-linear latency histogram: 32 sub-buckets per power of two (about 3 % resolution).
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: (0..64 * SUB).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        ((u64::from(shift) + 1) * SUB + ((v >> shift) - SUB)) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = i / SUB - 1;
        let low = (i % SUB + SUB) << shift;
        low + (1u64 << shift) / 2
    }

    pub fn record(&self, v: u64) {
        self.buckets[Self::index(v)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn percentile(&self, p: f64) -> u64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i);
            }
        }
        0
    }
}

/// Per-topic counters, each on its own cache lines (a topic is handled by one thread at a time).
#[repr(align(128))]
#[derive(Default)]
struct TopicCounters {
    last_seq: AtomicU64,
    received: AtomicU64,
    out_of_order: AtomicU64,
    /// When the last expected event of the topic arrived (ns since the Unix epoch).
    done_at: AtomicU64,
}

/// What the callbacks of one run record.
pub struct Sink {
    topics: Vec<TopicCounters>,
    expected_per_topic: Vec<u64>,
    pub latency: Option<Histogram>,
    /// The earliest send stamp seen: the start of a throughput run.
    first_sent: AtomicU64,
}

impl Sink {
    pub fn new(total: u64, record_latency: bool) -> Arc<Sink> {
        let expected_per_topic = (0..TOPICS as u64)
            .map(|t| total / TOPICS as u64 + u64::from(t < total % TOPICS as u64))
            .collect();
        Arc::new(Sink {
            topics: (0..TOPICS).map(|_| TopicCounters::default()).collect(),
            expected_per_topic,
            latency: record_latency.then(Histogram::new),
            first_sent: AtomicU64::new(u64::MAX),
        })
    }

    /// The callback's work: read the fields, record the latency, check the sequence.
    pub fn on_event(&self, body: &str) {
        let now = now_ns();
        let body = body.as_bytes();
        if body.len() < SENT_AT + SENT_WIDTH {
            return;
        }
        let ti = parse_number(&body[TI_AT..TI_AT + TI_WIDTH]) as usize;
        let seq = parse_number(&body[SEQ_AT..SEQ_AT + SEQ_WIDTH]);
        let sent = parse_number(&body[SENT_AT..SENT_AT + SENT_WIDTH]);
        if let Some(h) = &self.latency {
            h.record(now.saturating_sub(sent));
        }
        if seq == 1 {
            self.first_sent.fetch_min(sent, Ordering::Relaxed);
        }
        let Some(c) = self.topics.get(ti) else { return };
        if seq != c.last_seq.load(Ordering::Relaxed) + 1 {
            c.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        c.last_seq.store(seq, Ordering::Relaxed);
        let received = c.received.fetch_add(1, Ordering::Release) + 1;
        if received == self.expected_per_topic[ti] {
            c.done_at.store(now, Ordering::Release);
        }
    }

    pub fn received(&self) -> u64 {
        self.topics
            .iter()
            .map(|c| c.received.load(Ordering::Acquire))
            .sum()
    }

    pub fn out_of_order(&self) -> u64 {
        self.topics
            .iter()
            .map(|c| c.out_of_order.load(Ordering::Relaxed))
            .sum()
    }

    /// From the first event's send stamp to the last event's arrival, nanoseconds.
    pub fn elapsed_ns(&self) -> u64 {
        let done = self
            .topics
            .iter()
            .map(|c| c.done_at.load(Ordering::Acquire))
            .max()
            .unwrap_or(0);
        done.saturating_sub(self.first_sent.load(Ordering::Relaxed))
            .max(1)
    }

    /// Waits until every expected event arrived, or nothing arrived for `stall`.
    pub fn wait_all(&self, total: u64, stall: Duration) {
        let mut last = (0, Instant::now());
        loop {
            let got = self.received();
            if got >= total {
                return;
            }
            if got != last.0 {
                last = (got, Instant::now());
            } else if last.1.elapsed() >= stall {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
