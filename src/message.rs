//! message.rs parses one inbound text frame into a notification, heartbeat, pong or system
//! message; it never touches a socket and never parses an `eventBody` it does not need.
//!
//! Frame shapes (docs/protocol.md, "The WebSocket"): notifications are
//! `{"topicName", "version", "eventBody", "metadata": {"CorrelationId"}}`; heartbeats and pongs
//! are `channel.metadata` messages whose `eventBody.message` is `"WebSocket Heartbeat"` or
//! `"pong"`; `v2.system.*` messages (such as `v2.system.socket_closing`) are lifecycle signals.

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
    pub correlation_id: Option<Text>,
    /// The raw JSON of `eventBody`, as a byte range of the frame.
    pub body: Range<usize>,
}

/// A `v2.system.*` message, such as `v2.system.socket_closing` (docs/protocol.md, "The WebSocket").
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
    /// credential).
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

/// Why a text frame could not be understood. Carries a short excerpt, never the whole frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MalformedFrame {
    /// What is wrong, e.g. "not JSON: expected value at line 1 column 1".
    pub reason: String,
    /// The first 120 characters of the frame.
    pub excerpt: String,
}

const EXCERPT_CHARS: usize = 120;

fn malformed(frame: &str, reason: impl Into<String>) -> MalformedFrame {
    MalformedFrame {
        reason: reason.into(),
        excerpt: frame.chars().take(EXCERPT_CHARS).collect(),
    }
}

/// A string borrowed from the frame when it has no escapes (serde borrows a `Cow` only when it
/// is the whole field type, hence the newtype).
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "topicName", borrow, default)]
    topic_name: Option<Str<'a>>,
    #[serde(rename = "eventBody", borrow, default)]
    event_body: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(rename = "CorrelationId", borrow, default)]
    correlation_id: Option<Str<'a>>,
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

/// Parses one text frame.
///
/// # Errors
/// [`MalformedFrame`] when the frame is not a JSON object, has no `topicName`, or is a
/// notification without `eventBody`.
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
    let body = envelope
        .event_body
        .ok_or_else(|| malformed(frame, format!("no eventBody for topic {topic}")))?;
    // Compare bytes: slicing the str at 10 panics when a multi-byte character straddles it.
    if topic
        .as_bytes()
        .get(..10)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"v2.system."))
    {
        let parsed: SystemBody = serde_json::from_str(body.get()).unwrap_or_default();
        return Ok(Inbound::System(SystemMessage {
            topic: topic.into_owned(),
            system_topic_type: parsed.system_topic_type,
            reason: parsed.reason,
            message: parsed.message,
            event_body: body.get().to_owned(),
        }));
    }
    Ok(Inbound::Notification(Located {
        correlation_id: envelope
            .metadata
            .and_then(|m| m.correlation_id)
            .map(|id| locate(frame, id.0)),
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
            n.correlation_id.unwrap().resolve(PRESENCE),
            "290034f4-c3d7-46fd-8342-ee5bc859b7e9"
        );
        let body: serde_json::Value = serde_json::from_str(&PRESENCE[n.body]).unwrap();
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
        assert_eq!(n.correlation_id, None);
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
}
