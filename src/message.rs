//! message.rs parses one inbound text frame into a notification, heartbeat, pong or system
//! message; it never touches a socket and never parses an `eventBody` it does not need. A frame
//! that starts as a notification is told apart by its first key alone on the socket thread
//! ([`notification_topic`]) and parsed on the dispatcher thread ([`locate_notification`]).
//!
//! Frame shapes (docs/protocol.md, "The WebSocket"): notifications are
//! `{"topicName", "version", "eventBody", "metadata": {"CorrelationId"}}`; heartbeats and pongs
//! are `channel.metadata` messages whose `eventBody.message` is `"WebSocket Heartbeat"` or
//! `"pong"`; `v2.system.*` messages (such as `v2.system.socket_closing`) are lifecycle signals.

use crate::topic::MAX_TOPIC_LEN;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;

/// Where a piece of text is: a byte range into the frame when it needed no unescaping, else
/// its own copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Text {
    Span(Range<usize>),
    Owned(Box<str>),
}

impl Text {
    pub(crate) fn resolve<'a>(&'a self, frame: &'a str) -> &'a str {
        match self {
            Text::Span(range) => &frame[range.clone()],
            Text::Owned(text) => text,
        }
    }
}

/// A notification, located inside its frame (no copy of the body is made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Located {
    pub topic: Text,
    /// The raw JSON of `metadata`, as a byte range of the frame: its `CorrelationId` is read
    /// only when asked ([`correlation_id`]), off the socket thread's hot path (profiled: reading
    /// it for every frame was about 2 % of that thread's time on small events).
    pub metadata: Option<Range<usize>>,
    /// The raw JSON of `eventBody`, as a byte range of the frame.
    pub body: Range<usize>,
}

/// A `v2.system.*` message, such as `v2.system.socket_closing` (docs/protocol.md, "The WebSocket").
///
/// Its texts are bounded, so that one report (and its log line) never holds a huge frame: the
/// topic is cut to 800 characters, `systemTopicType`, `reason` and `message` to 400, `eventBody`
/// to 4 096 (each ending in `…` when cut; the service's are far shorter).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemMessage {
    /// The topic it came under, e.g. `v2.system.socket_closing`.
    pub topic: String,
    /// `eventBody.systemTopicType` when present (`socket_closing`, `no_longer_subscribed`,
    /// `subscription_changed`, `token_revoked`, ...).
    pub system_topic_type: Option<String>,
    /// `eventBody.reason` when present (`another_channel_subscribed`, `user_tokens_revoked`, ...).
    pub reason: Option<String>,
    /// `eventBody.message` when present.
    pub message: Option<String>,
    /// The raw JSON of `eventBody`, with the channel id shortened wherever it appears (it is a
    /// credential); cut to 4 096 characters when longer.
    pub event_body: String,
}

impl SystemMessage {
    /// Whether this warns that the server will close the socket for maintenance in about a
    /// minute (`v2.system.socket_closing`).
    pub fn is_socket_closing(&self) -> bool {
        self.topic.eq_ignore_ascii_case("v2.system.socket_closing")
            || self.system_topic_type.as_deref() == Some("socket_closing")
    }

    /// Whether it says the channel lost its subscriptions or its token
    /// (`no_longer_subscribed`, `token_revoked`).
    pub fn ends_subscriptions(&self) -> bool {
        matches!(
            self.system_topic_type.as_deref(),
            Some("no_longer_subscribed") | Some("token_revoked")
        ) || matches!(
            self.reason.as_deref(),
            Some("another_channel_subscribed") | Some("user_tokens_revoked")
        )
    }
}

/// What one text frame turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    Notification(Located),
    Heartbeat,
    Pong,
    /// A `channel.metadata` message that is neither heartbeat nor pong; its `eventBody.message`.
    Metadata(Option<String>),
    System(SystemMessage),
}

/// Why a text frame could not be understood. Carries a short excerpt, never the whole frame,
/// and a reason of at most 400 characters (a topic name quoted in it is cut to 200).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MalformedFrame {
    /// What is wrong, e.g. "not JSON: expected value at line 1 column 1".
    pub reason: String,
    /// The first 120 characters of the frame (the read loop shortens the channel id first:
    /// [`redacted_excerpt`]).
    pub excerpt: String,
}

const EXCERPT_CHARS: usize = 120;
/// The longest reason, in characters: a parser's message may quote the frame (a topic name,
/// a string where an object was expected), and the frame may be megabytes long.
const REASON_CHARS: usize = 400;
/// The longest `eventBody` a [`SystemMessage`] keeps, in characters: the service's are a few
/// hundred bytes, and one report must not hold a frame of megabytes (4 096 of them may queue).
pub(crate) const SYSTEM_BODY_CHARS: usize = 4096;
/// The longest `systemTopicType`, `reason` or `message` a [`SystemMessage`] keeps, in characters.
const SYSTEM_FIELD_CHARS: usize = 400;

/// `text` cut to `max` characters, with `…` when something was cut, reusing the allocation.
fn cut(mut text: String, max: usize) -> String {
    if let Some((end, _)) = text.char_indices().nth(max) {
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `text` cut to `max` characters, with `…` when something was cut.
pub(crate) fn shortened(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

fn malformed(frame: &str, reason: impl Into<String>) -> MalformedFrame {
    let reason = reason.into();
    MalformedFrame {
        reason: shortened(&reason, REASON_CHARS).into_owned(),
        excerpt: frame.chars().take(EXCERPT_CHARS).collect(),
    }
}

/// The excerpt of a malformed `frame` received on channel `channel_id`: its first 120
/// characters once every occurrence of the id (a credential) is shortened, so that an id cut
/// by the 120-character limit cannot leak its first characters either.
pub(crate) fn redacted_excerpt(frame: &str, channel_id: &str) -> String {
    // Enough of the frame for 120 characters after shortening: an id that starts within them
    // is taken whole.
    let head: String = frame
        .chars()
        .take(EXCERPT_CHARS + channel_id.chars().count())
        .collect();
    let head = if channel_id.is_empty() {
        head
    } else {
        head.replace(channel_id, &crate::redact::short_id(channel_id))
    };
    head.chars().take(EXCERPT_CHARS).collect()
}

/// A string borrowed from the frame when it has no escapes (serde borrows a `Cow` only when it
/// is the whole field type, hence the newtype).
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// The fields of a frame we look at. Only `topicName` and `eventBody` decide whether a
/// notification can be delivered: `metadata` is kept raw (any JSON value) and read leniently
/// when asked ([`correlation_id`]), unknown fields are skipped, and a repeated key keeps its
/// last value (as Jackson, which the service is written with, and `JSON.parse` do).
struct Envelope<'a> {
    topic_name: Option<Str<'a>>,
    event_body: Option<&'a RawValue>,
    metadata: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Envelope<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Envelope<'de>, A::Error> {
                let mut envelope = Envelope {
                    topic_name: None,
                    event_body: None,
                    metadata: None,
                };
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match &*key.0 {
                        "topicName" => envelope.topic_name = Some(map.next_value()?),
                        "eventBody" => envelope.event_body = Some(map.next_value()?),
                        "metadata" => envelope.metadata = Some(map.next_value()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(envelope)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// `metadata`, whatever its shape: the `CorrelationId` it holds when it is an object holding
/// one that is a string or a number; `None` for anything else.
struct Metadata<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Metadata<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> serde::de::Visitor<'de> for Any {
            type Value = Metadata<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Metadata<'de>, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if key.0 == "CorrelationId" {
                        id = correlation_text(map.next_value::<&'de RawValue>()?.get());
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Metadata(id))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Metadata<'de>, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Metadata(None))
            }

            fn visit_str<E>(self, _: &str) -> Result<Metadata<'de>, E> {
                Ok(Metadata(None))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Metadata<'de>, E> {
                Ok(Metadata(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Metadata<'de>, E> {
                Ok(Metadata(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Metadata<'de>, E> {
                Ok(Metadata(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Metadata<'de>, E> {
                Ok(Metadata(None))
            }

            fn visit_unit<E>(self) -> Result<Metadata<'de>, E> {
                Ok(Metadata(None))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// The text of a `CorrelationId` given as raw JSON: a string's contents (borrowed unless it
/// has escapes), or a number's digits; `None` for anything else.
fn correlation_text(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes().first()? {
        // A plain byte loop: ids are ~36 bytes, too short for `memchr` to pay off (profiled).
        b'"' if !raw.bytes().any(|b| b == b'\\') => Some(Cow::Borrowed(&raw[1..raw.len() - 1])),
        b'"' => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
        b'-' | b'0'..=b'9' => Some(Cow::Borrowed(raw)),
        _ => None,
    }
}

#[derive(Deserialize, Default)]
struct SystemBody {
    #[serde(rename = "systemTopicType", default)]
    system_topic_type: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn locate(frame: &str, text: Cow<'_, str>) -> Text {
    match text {
        Cow::Borrowed(s) => Text::Span(offset_of(frame, s)),
        Cow::Owned(s) => Text::Owned(s.into_boxed_str()),
    }
}

/// The byte range of `part`, which must be a sub-slice of `frame`.
fn offset_of(frame: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - frame.as_ptr() as usize;
    start..start + part.len()
}

/// `metadata.CorrelationId` of a notification whose raw `metadata` is `frame[metadata]`: a
/// string's contents (a span of the frame unless it had escapes) or a number's digits; `None`
/// when `metadata` is not an object or holds no string or number under that key (the service
/// sends a string; any other shape is tolerated, never an error). A repeated key keeps its last
/// value.
pub(crate) fn correlation_id(frame: &str, metadata: &Range<usize>) -> Option<Text> {
    let raw = frame.get(metadata.clone())?;
    let id = serde_json::from_str::<Metadata<'_>>(raw).ok()?.0?;
    Some(locate(frame, id))
}

/// Parses one text frame.
///
/// # Errors
/// [`MalformedFrame`] when the frame is not a JSON object, has no `topicName`, or is a
/// notification without `eventBody`.
/// The topic of a frame that says, by its first key, that it is a notification: the byte range
/// of `<topic>` when the frame starts `{"topicName":"<topic>"` (whitespace allowed between the
/// tokens) and `<topic>` is a `v2.` topic other than `v2.system.*` (ASCII case ignored, as
/// [`parse`] does), free of escapes and control characters. The service writes `topicName`
/// first (docs/protocol.md, "The WebSocket"; the recorded payloads in `tests/payloads`).
///
/// Such a frame is queued as it is and its envelope is parsed by the dispatcher thread that
/// delivers it ([`locate_notification`]): the socket thread only frames, checks UTF-8 and reads
/// this prefix. Profiled (issue 11): the envelope parse, which must scan the whole body to find
/// its end, was most of the socket thread's time, and the socket thread was the slowest stage
/// of the pipeline. Every other frame (`channel.metadata` heartbeats and pongs, `v2.system.*`
/// messages, any other shape) gives `None` and is parsed whole, at once, by [`parse`].
pub(crate) fn notification_topic(frame: &str) -> Option<Range<usize>> {
    fn skip_space(bytes: &[u8], mut at: usize) -> usize {
        while bytes
            .get(at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            at += 1;
        }
        at
    }
    fn expect(bytes: &[u8], at: usize, token: &[u8]) -> Option<usize> {
        let at = skip_space(bytes, at);
        bytes
            .get(at..)?
            .starts_with(token)
            .then_some(at + token.len())
    }
    let bytes = frame.as_bytes();
    let at = expect(bytes, 0, b"{")?;
    let at = expect(bytes, at, b"\"topicName\"")?;
    let at = expect(bytes, at, b":")?;
    let start = expect(bytes, at, b"\"")?;
    // The closing quote is found a word at a time (`str::find` runs memchr), then the name is
    // checked for escapes and control characters in one pass without early exit, which the
    // compiler vectorises. The scan testing three cases per byte was 630 instructions for a
    // 54-byte user topic, a fifth of the socket thread's work per event (callgrind, issue 20).
    let len = frame.get(start..)?.find('"')?;
    let topic = &bytes[start..start + len];
    if topic
        .iter()
        .fold(false, |bad, &b| bad | (b == b'\\') | (b < 0x20))
    {
        return None;
    }
    let is_v2 = topic
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"v2."));
    let is_system = topic
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"v2.system."));
    (is_v2 && !is_system).then_some(start..start + len)
}

/// The envelope of a frame that [`notification_topic`] found to be a notification, located as
/// [`parse`] locates it; or why it cannot be delivered (bad JSON, no `eventBody`). A repeated
/// key keeps its last value here too, `topicName` included: a frame naming a second
/// notification topic later is delivered under that one (queued by its first, its order among
/// the second topic's events is kept only with one dispatcher thread; the service never repeats
/// a key). A frame whose later `topicName` is not a notification's (`channel.metadata`,
/// `v2.system.*`) is malformed: it was queued as a notification and is never acted on as a
/// heartbeat or system message.
pub(crate) fn locate_notification(frame: &str) -> Result<Located, MalformedFrame> {
    match parse(frame)? {
        Inbound::Notification(located) => Ok(located),
        _ => Err(malformed(
            frame,
            "topicName given twice: a notification topic, then a channel.metadata or v2.system one",
        )),
    }
}

pub(crate) fn parse(frame: &str) -> Result<Inbound, MalformedFrame> {
    let envelope: Envelope<'_> = serde_json::from_str(frame)
        .map_err(|e| malformed(frame, format!("not a JSON message object: {e}")))?;
    let topic = envelope
        .topic_name
        .ok_or_else(|| malformed(frame, "no topicName"))?
        .0;
    if topic.eq_ignore_ascii_case("channel.metadata") {
        #[derive(Deserialize)]
        struct MetaBody {
            #[serde(default)]
            message: Option<String>,
        }
        let message = envelope
            .event_body
            .and_then(|raw| serde_json::from_str::<MetaBody>(raw.get()).ok())
            .and_then(|body| body.message);
        return Ok(match message.as_deref() {
            Some("WebSocket Heartbeat") => Inbound::Heartbeat,
            Some("pong") => Inbound::Pong,
            _ => Inbound::Metadata(message),
        });
    }
    let body = envelope.event_body.ok_or_else(|| {
        malformed(
            frame,
            format!(
                "no eventBody for topic {}",
                shortened(&topic, MAX_TOPIC_LEN)
            ),
        )
    })?;
    // Compare bytes: slicing the str at 10 panics when a multi-byte character straddles it.
    if topic
        .as_bytes()
        .get(..10)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"v2.system."))
    {
        let parsed: SystemBody = serde_json::from_str(body.get()).unwrap_or_default();
        let field = |text: Option<String>| text.map(|t| cut(t, SYSTEM_FIELD_CHARS));
        return Ok(Inbound::System(SystemMessage {
            topic: shortened(&topic, 4 * MAX_TOPIC_LEN).into_owned(),
            system_topic_type: field(parsed.system_topic_type),
            reason: field(parsed.reason),
            message: field(parsed.message),
            event_body: shortened(body.get(), SYSTEM_BODY_CHARS).into_owned(),
        }));
    }
    Ok(Inbound::Notification(Located {
        metadata: envelope.metadata.map(|raw| offset_of(frame, raw.get())),
        body: offset_of(frame, body.get()),
        topic: locate(frame, topic),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRESENCE: &str = include_str!("../tests/payloads/users.presence.json");
    const HEARTBEAT: &str = include_str!("../tests/payloads/channel.metadata.heartbeat.json");
    const PONG: &str = include_str!("../tests/payloads/channel.metadata.pong.json");

    /// The `CorrelationId` of a located notification, read as `Event::correlation_id` does.
    fn correlation(n: &Located, frame: &str) -> Option<Text> {
        n.metadata
            .as_ref()
            .and_then(|metadata| correlation_id(frame, metadata))
    }

    #[test]
    fn real_presence_payload_is_located_without_copying_the_body() {
        let Inbound::Notification(n) = parse(PRESENCE).unwrap() else {
            panic!("not a notification")
        };
        assert_eq!(
            n.topic.resolve(PRESENCE),
            "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence"
        );
        assert!(matches!(n.topic, Text::Span(_)));
        assert_eq!(
            correlation(&n, PRESENCE).unwrap().resolve(PRESENCE),
            "290034f4-c3d7-46fd-8342-ee5bc859b7e9"
        );
        let body: serde_json::Value = serde_json::from_str(&PRESENCE[n.body.clone()]).unwrap();
        assert_eq!(body["presenceDefinition"]["systemPresence"], "AVAILABLE");
    }

    #[test]
    fn heartbeat_and_pong_are_recognised() {
        assert_eq!(parse(HEARTBEAT).unwrap(), Inbound::Heartbeat);
        assert_eq!(parse(PONG).unwrap(), Inbound::Pong);
        assert_eq!(
            parse(r#"{"topicName":"channel.metadata","eventBody":{"message":"hello"}}"#).unwrap(),
            Inbound::Metadata(Some("hello".into()))
        );
    }

    #[test]
    fn escaped_topic_is_unescaped_into_its_own_copy() {
        let frame = r#"{"topicName":"v2.users.a\u0062c.presence","eventBody":{}}"#;
        let Inbound::Notification(n) = parse(frame).unwrap() else {
            panic!()
        };
        assert_eq!(n.topic.resolve(frame), "v2.users.abc.presence");
        assert!(matches!(n.topic, Text::Owned(_)));
        assert_eq!(correlation(&n, frame), None);
        assert_eq!(&frame[n.body], "{}");
    }

    #[test]
    fn socket_closing_is_a_system_message() {
        let frame = r#"{"topicName":"v2.system.socket_closing","eventBody":{"channelId":"c1","systemTopicType":"socket_closing","reason":"maintenance","message":"bye"}}"#;
        let Inbound::System(s) = parse(frame).unwrap() else {
            panic!()
        };
        assert!(s.is_socket_closing());
        assert!(!s.ends_subscriptions());
        assert_eq!(s.reason.as_deref(), Some("maintenance"));
        let revoked =
            r#"{"topicName":"v2.system.x","eventBody":{"systemTopicType":"token_revoked"}}"#;
        let Inbound::System(s) = parse(revoked).unwrap() else {
            panic!()
        };
        assert!(s.ends_subscriptions());
        assert!(!s.is_socket_closing());
    }

    #[test]
    fn malformed_frames_are_explained_with_an_excerpt() {
        let err = parse("{not json").unwrap_err();
        assert!(
            err.reason.starts_with("not a JSON message object"),
            "{err:?}"
        );
        assert_eq!(err.excerpt, "{not json");
        assert_eq!(
            parse(r#"{"eventBody":{}}"#).unwrap_err().reason,
            "no topicName"
        );
        assert!(parse(r#"{"topicName":"v2.users.x.presence"}"#)
            .unwrap_err()
            .reason
            .contains("no eventBody"));
        assert!(parse("[1,2]").is_err());
        let long = format!("{{\"topicName\": {}", "x".repeat(1000));
        assert_eq!(parse(&long).unwrap_err().excerpt.chars().count(), 120);
    }

    fn notification(frame: &str) -> Located {
        match parse(frame) {
            Ok(Inbound::Notification(n)) => n,
            other => panic!("not a notification: {other:?}"),
        }
    }

    /// Issue 8 #6: only `topicName` and `eventBody` decide whether an event is delivered.
    #[test]
    fn fields_we_do_not_need_never_make_a_notification_malformed() {
        let numeric = r#"{"topicName":"v2.users.a.presence","eventBody":{"x":1},"metadata":{"CorrelationId":12345}}"#;
        let n = notification(numeric);
        assert_eq!(n.topic.resolve(numeric), "v2.users.a.presence");
        assert_eq!(correlation(&n, numeric).unwrap().resolve(numeric), "12345");
        assert_eq!(&numeric[n.body], r#"{"x":1}"#);

        for frame in [
            r#"{"topicName":"v2.users.a.presence","eventBody":{},"metadata":"text"}"#,
            r#"{"topicName":"v2.users.a.presence","eventBody":{},"metadata":[1,2]}"#,
            r#"{"topicName":"v2.users.a.presence","eventBody":{},"metadata":null}"#,
            r#"{"topicName":"v2.users.a.presence","eventBody":{},"metadata":{"CorrelationId":{"a":1}}}"#,
            r#"{"topicName":"v2.users.a.presence","eventBody":{},"version":{"odd":true},"extra":[null]}"#,
        ] {
            let n = notification(frame);
            assert_eq!(n.topic.resolve(frame), "v2.users.a.presence", "{frame}");
            assert_eq!(correlation(&n, frame), None, "{frame}");
        }

        // A repeated key keeps its last value, in metadata too.
        let frame = r#"{"topicName":"v2.users.a.presence","eventBody":{},"metadata":{"CorrelationId":"a","CorrelationId":"b"}}"#;
        assert_eq!(
            correlation(&notification(frame), frame)
                .unwrap()
                .resolve(frame),
            "b"
        );
        let frame = r#"{"topicName":"v2.users.a.presence","eventBody":{},"metadata":{"CorrelationId":"a\u0062"}}"#;
        let id = correlation(&notification(frame), frame).unwrap();
        assert!(matches!(id, Text::Owned(_)));
        assert_eq!(id.resolve(frame), "ab");
        let repeated = r#"{"topicName":"v2.users.a.presence","eventBody":{"n":1},"topicName":"v2.users.b.presence","eventBody":{"n":2},"metadata":{},"metadata":{"CorrelationId":"c2"}}"#;
        let n = notification(repeated);
        assert_eq!(n.topic.resolve(repeated), "v2.users.b.presence");
        assert_eq!(&repeated[n.body.clone()], r#"{"n":2}"#);
        assert_eq!(correlation(&n, repeated).unwrap().resolve(repeated), "c2");
    }

    #[test]
    fn a_frame_starting_with_a_notification_topic_is_known_by_its_prefix_alone() {
        fn topic_of(frame: &str) -> Option<&str> {
            notification_topic(frame).map(|range| &frame[range])
        }
        // The recorded payload (pretty-printed) and the compact form the service sends.
        assert_eq!(
            topic_of(PRESENCE),
            Some("v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence")
        );
        let compact = r#"{"topicName":"v2.users.u.presence","version":"2","eventBody":{}}"#;
        assert_eq!(topic_of(compact), Some("v2.users.u.presence"));
        assert_eq!(
            topic_of(" \r\n{ \t\"topicName\" :\n \"V2.Users.U.Presence\" , ..."),
            Some("V2.Users.U.Presence"),
            "whitespace between tokens, any case, and the rest unread"
        );
        // Everything else is left to `parse`, at once, on the socket thread.
        for frame in [
            HEARTBEAT,
            PONG,
            r#"{"topicName":"v2.system.socket_closing","eventBody":{}}"#,
            r#"{"topicName":"V2.SYSTEM.socket_closing","eventBody":{}}"#,
            r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#,
            r#"{"version":"2","topicName":"v2.users.u.presence","eventBody":{}}"#,
            r#"{"topicName":"v2.users.\u0075.presence","eventBody":{}}"#,
            "{\"topicName\":\"v2.users.u\n.presence\",\"eventBody\":{}}",
            r#"{"topicName":"v2.users.u.presence"#,
            r#"{"topicName":42,"eventBody":{}}"#,
            r#"{"topicNames":"v2.users.u.presence","eventBody":{}}"#,
            r#"["topicName","v2.users.u.presence"]"#,
            r#"{"topicName":"v2","eventBody":{}}"#,
            r#"{"topicName":"","eventBody":{}}"#,
            "",
            "{",
        ] {
            assert_eq!(topic_of(frame), None, "{frame}");
        }
    }

    #[test]
    fn a_notification_known_by_its_prefix_is_located_as_parse_locates_it() {
        for frame in [
            PRESENCE,
            r#"{"topicName":"v2.users.u.presence","eventBody":{"a":"\"}"},"metadata":{"CorrelationId":"c"}}"#,
            r#"{"topicName":"v2.users.u.presence","eventBody":{"n":1},"eventBody":{"n":2}}"#,
        ] {
            assert!(notification_topic(frame).is_some(), "{frame}");
            assert_eq!(locate_notification(frame).unwrap(), notification(frame));
        }
        // A repeated topicName keeps its last value, as parse does.
        let moved = r#"{"topicName":"v2.users.a.presence","eventBody":{},"topicName":"v2.users.b.presence"}"#;
        assert_eq!(
            locate_notification(moved).unwrap().topic.resolve(moved),
            "v2.users.b.presence"
        );
        // What cannot be delivered is explained, with an excerpt.
        for (frame, reason) in [
            (
                r#"{"topicName":"v2.users.u.presence","eventBody":{"oops""#,
                "JSON",
            ),
            (r#"{"topicName":"v2.users.u.presence"}"#, "eventBody"),
            (
                r#"{"topicName":"v2.users.u.presence","eventBody":{},"topicName":"v2.system.socket_closing"}"#,
                "topicName given twice",
            ),
            (
                r#"{"topicName":"v2.users.u.presence","topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#,
                "topicName given twice",
            ),
        ] {
            assert!(notification_topic(frame).is_some(), "{frame}");
            let error = locate_notification(frame).unwrap_err();
            assert!(error.reason.contains(reason), "{frame}: {}", error.reason);
            assert!(frame.starts_with(&error.excerpt), "{}", error.excerpt);
        }
    }

    #[test]
    fn an_excerpt_never_shows_part_of_the_channel_id_cut_at_its_limit() {
        let id = "streaming-0-0123456789abcdefghijklmnopqrstuv";
        for before in [0, 60, 93, 110, 119, 150] {
            let frame = format!("{}{id}{{not json", "x".repeat(before));
            let excerpt = redacted_excerpt(&frame, id);
            assert!(excerpt.chars().count() <= EXCERPT_CHARS, "{excerpt}");
            for window in id.as_bytes()[12..].windows(6) {
                let part = std::str::from_utf8(window).unwrap();
                assert!(!excerpt.contains(part), "{before}: {excerpt}");
            }
            if before + 6 <= EXCERPT_CHARS {
                assert!(excerpt.contains("stre…"), "{before}: {excerpt}");
            }
        }
    }

    /// Issue 8 #5: a reason never carries a huge piece of the frame.
    #[test]
    fn reasons_are_bounded_whatever_the_frame_holds() {
        let topic = format!("v2.users.{}.presence", "t".repeat(200_000));
        let frame = format!(r#"{{"topicName":"{topic}"}}"#);
        let err = parse(&frame).unwrap_err();
        assert!(err
            .reason
            .starts_with("no eventBody for topic v2.users.ttt"));
        assert!(
            err.reason.chars().count() <= REASON_CHARS + 1,
            "{}",
            err.reason.len()
        );
        assert!(err.reason.ends_with('…'));
        // A parser message quoting a string where an object was expected.
        let frame = format!("\"{}\"", "q".repeat(200_000));
        let err = parse(&frame).unwrap_err();
        assert!(
            err.reason.chars().count() <= REASON_CHARS + 1,
            "{}",
            err.reason.len()
        );
        assert_eq!(err.excerpt.chars().count(), EXCERPT_CHARS);
        // Cutting respects character boundaries.
        assert_eq!(shortened("ééé", 2), "éé…");
        assert_eq!(shortened("ééé", 3), "ééé");
    }
}
