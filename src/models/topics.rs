//! topics.rs builds the names of the common topics from ids, each with the listener patterns
//! that match its events and the body type they carry; it validates through
//! [`Topic::parse`] and [`Pattern::parse`] and never does I/O.
//!
//! Topic names follow Genesys' notification topic list (the Platform SDKs' topic tables, for
//! example the .NET SDK's `NotificationTopics`), with `{id}` replaced by a user or queue id.

use super::{
    ConversationEvent, QueueMember, QueueObservation, UserConversationSummary, UserPresence,
    UserRoutingStatus, UserStations,
};
use crate::topic::{Pattern, Topic, TopicError};
use std::fmt;
use std::marker::PhantomData;

/// A validated topic, the listener patterns for its events, and (as a type parameter) the
/// body type those events carry.
///
/// Pass it (or [`TypedTopic::topic`]) to [`Client::subscribe`](crate::Client::subscribe),
/// and one of its patterns to [`Client::on_typed`](crate::Client::on_typed):
///
/// ```no_run
/// use genesys_notify::models::{topics, UserPresence};
/// use genesys_notify::{Client, Event};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let client = Client::builder()
/// #     .region(genesys_notify::Region::UsEast1)
/// #     .access_token("token")
/// #     .build()?;
/// let presence = topics::user_presence("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f")?;
/// let _guard = client.on_typed(presence.pattern(), |_event: &Event, body: &UserPresence| {
///     println!("{:?}", body.system_presence());
/// })?;
/// let _report = client.subscribe([&presence])?;
/// # Ok(())
/// # }
/// ```
pub struct TypedTopic<T> {
    topic: Topic,
    pattern: Pattern,
    pattern_any: Pattern,
    body: PhantomData<fn() -> T>,
}

impl<T> TypedTopic<T> {
    /// The topic to subscribe (lower-cased, as [`Topic`] keeps every name).
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The pattern matching this topic's events (the topic name itself).
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The pattern matching this kind of topic for every id: the id segment is `*`
    /// (`v2.users.*.presence`). One listener on it serves every user (or queue) subscribed.
    pub fn pattern_any(&self) -> &Pattern {
        &self.pattern_any
    }

    /// The topic, consuming the builder.
    pub fn into_topic(self) -> Topic {
        self.topic
    }
}

impl<T> Clone for TypedTopic<T> {
    fn clone(&self) -> Self {
        TypedTopic {
            topic: self.topic.clone(),
            pattern: self.pattern.clone(),
            pattern_any: self.pattern_any.clone(),
            body: PhantomData,
        }
    }
}

impl<T> fmt::Debug for TypedTopic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedTopic")
            .field("topic", &self.topic)
            .field("body", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> fmt::Display for TypedTopic<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.topic.fmt(f)
    }
}

/// The topic name, so that a `TypedTopic` can be given to
/// [`Client::subscribe`](crate::Client::subscribe) as it is.
impl<T> AsRef<str> for TypedTopic<T> {
    fn as_ref(&self) -> &str {
        self.topic.as_str()
    }
}

/// The pattern text, so that a [`Pattern`] can be given to
/// [`Client::on_typed`](crate::Client::on_typed) as it is.
impl AsRef<str> for Pattern {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// The media types of the per-media conversation topics (`...conversations.calls`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConversationMedia {
    /// `calls`.
    Calls,
    /// `callbacks`.
    Callbacks,
    /// `chats`.
    Chats,
    /// `cobrowseSessions`.
    CobrowseSessions,
    /// `emails`.
    Emails,
    /// `messages`.
    Messages,
    /// `screenshares`.
    Screenshares,
    /// `socialexpressions`.
    SocialExpressions,
    /// `videos`.
    Videos,
}

impl ConversationMedia {
    /// The topic's last segment, as Genesys' topic list spells it.
    pub fn segment(self) -> &'static str {
        match self {
            ConversationMedia::Calls => "calls",
            ConversationMedia::Callbacks => "callbacks",
            ConversationMedia::Chats => "chats",
            ConversationMedia::CobrowseSessions => "cobrowseSessions",
            ConversationMedia::Emails => "emails",
            ConversationMedia::Messages => "messages",
            ConversationMedia::Screenshares => "screenshares",
            ConversationMedia::SocialExpressions => "socialexpressions",
            ConversationMedia::Videos => "videos",
        }
    }
}

/// The parts of a combined user topic (`v2.users.{id}?presence&routingStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserTopic {
    /// `presence` ([`UserPresence`]).
    Presence,
    /// `routingStatus` ([`UserRoutingStatus`]).
    RoutingStatus,
    /// `conversationsummary` ([`UserConversationSummary`]).
    ConversationSummary,
    /// `conversations` ([`ConversationEvent`]).
    Conversations,
    /// `station` ([`UserStations`]).
    Station,
}

impl UserTopic {
    /// The topic's last segment, as Genesys' topic list spells it.
    pub fn segment(self) -> &'static str {
        match self {
            UserTopic::Presence => "presence",
            UserTopic::RoutingStatus => "routingStatus",
            UserTopic::ConversationSummary => "conversationsummary",
            UserTopic::Conversations => "conversations",
            UserTopic::Station => "station",
        }
    }
}

/// A combined user topic: one subscription (one of the 1 000 a channel holds) whose events
/// arrive under each part's own name (docs/protocol.md, "Subscriptions").
#[derive(Clone, Debug)]
pub struct CombinedUserTopic {
    topic: Topic,
    pattern: Pattern,
    parts: Vec<(UserTopic, Pattern)>,
}

impl CombinedUserTopic {
    /// The topic to subscribe (`v2.users.{id}?presence&routingstatus`, parts sorted; a single
    /// part gives the plain topic).
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The pattern matching every part's events: `v2.users.{id}.*`.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The pattern matching one part's events (`v2.users.{id}.presence`), `None` if the topic
    /// does not hold that part. Use it with [`Client::on_typed`](crate::Client::on_typed)
    /// and the part's body type.
    pub fn part_pattern(&self, part: UserTopic) -> Option<&Pattern> {
        self.parts
            .iter()
            .find(|(p, _)| *p == part)
            .map(|(_, pattern)| pattern)
    }
}

/// The topic name, for [`Client::subscribe`](crate::Client::subscribe).
impl AsRef<str> for CombinedUserTopic {
    fn as_ref(&self) -> &str {
        self.topic.as_str()
    }
}

/// Checks that `id` fills exactly one segment of the name it goes into after `prefix`: not
/// empty, and none of the characters that would end the segment or change the name's kind.
fn check_id(prefix: &str, id: &str) -> Result<(), TopicError> {
    if id.is_empty() {
        return Err(TopicError::EmptySegment);
    }
    let start = prefix.chars().count();
    for (offset, character) in id.chars().enumerate() {
        if matches!(character, '.' | '?' | '&' | '*') || character.is_whitespace() {
            return Err(if character == '*' {
                TopicError::Wildcard
            } else {
                TopicError::InvalidCharacter {
                    character,
                    position: start + offset,
                }
            });
        }
    }
    Ok(())
}

/// `{prefix}{id}{suffix}` as a typed topic, and `{prefix}*{suffix}` as its any-id pattern.
fn typed<T>(prefix: &str, id: &str, suffix: &str) -> Result<TypedTopic<T>, TopicError> {
    check_id(prefix, id)?;
    let name = format!("{prefix}{id}{suffix}");
    let topic = Topic::parse(&name)?;
    let pattern = Pattern::parse(topic.as_str())?;
    let pattern_any = Pattern::parse(&format!("{prefix}*{suffix}"))?;
    Ok(TypedTopic {
        topic,
        pattern,
        pattern_any,
        body: PhantomData,
    })
}

/// `v2.users.{user_id}.presence`: the user's presence ([`UserPresence`]).
///
/// # Errors
/// [`TopicError`] when `user_id` is empty ([`TopicError::EmptySegment`]), holds a `*`
/// ([`TopicError::Wildcard`]), or a character no topic holds or that would split the segment
/// (`.`, `?`, `&`, white space, a quote, ...: [`TopicError::InvalidCharacter`], its position
/// counted in the whole topic name), or makes the name longer than 200 characters.
pub fn user_presence(user_id: &str) -> Result<TypedTopic<UserPresence>, TopicError> {
    typed("v2.users.", user_id, ".presence")
}

/// `v2.users.{user_id}.routingStatus`: the user's routing status ([`UserRoutingStatus`]).
///
/// # Errors
/// As [`user_presence`].
pub fn user_routing_status(user_id: &str) -> Result<TypedTopic<UserRoutingStatus>, TopicError> {
    typed("v2.users.", user_id, ".routingStatus")
}

/// `v2.users.{user_id}.conversationsummary`: the user's conversation counts
/// ([`UserConversationSummary`]).
///
/// # Errors
/// As [`user_presence`].
pub fn user_conversation_summary(
    user_id: &str,
) -> Result<TypedTopic<UserConversationSummary>, TopicError> {
    typed("v2.users.", user_id, ".conversationsummary")
}

/// `v2.users.{user_id}.conversations`: the user's conversations, every media type
/// ([`ConversationEvent`]).
///
/// # Errors
/// As [`user_presence`].
pub fn user_conversations(user_id: &str) -> Result<TypedTopic<ConversationEvent>, TopicError> {
    typed("v2.users.", user_id, ".conversations")
}

/// `v2.users.{user_id}.conversations.{media}`: the user's conversations of one media type
/// ([`ConversationEvent`]).
///
/// # Errors
/// As [`user_presence`].
pub fn user_conversations_of(
    user_id: &str,
    media: ConversationMedia,
) -> Result<TypedTopic<ConversationEvent>, TopicError> {
    typed(
        "v2.users.",
        user_id,
        &format!(".conversations.{}", media.segment()),
    )
}

/// `v2.users.{user_id}.station`: the station the user is associated with ([`UserStations`]).
///
/// # Errors
/// As [`user_presence`].
pub fn user_station(user_id: &str) -> Result<TypedTopic<UserStations>, TopicError> {
    typed("v2.users.", user_id, ".station")
}

/// `v2.routing.queues.{queue_id}.conversations`: the queue's conversations, every media type
/// ([`ConversationEvent`]).
///
/// # Errors
/// As [`user_presence`], for `queue_id`.
pub fn queue_conversations(queue_id: &str) -> Result<TypedTopic<ConversationEvent>, TopicError> {
    typed("v2.routing.queues.", queue_id, ".conversations")
}

/// `v2.routing.queues.{queue_id}.conversations.{media}`: the queue's conversations of one
/// media type ([`ConversationEvent`]).
///
/// # Errors
/// As [`user_presence`], for `queue_id`.
pub fn queue_conversations_of(
    queue_id: &str,
    media: ConversationMedia,
) -> Result<TypedTopic<ConversationEvent>, TopicError> {
    typed(
        "v2.routing.queues.",
        queue_id,
        &format!(".conversations.{}", media.segment()),
    )
}

/// `v2.routing.queues.{queue_id}.users`: the queue's members joining, leaving and changing
/// ([`QueueMember`]).
///
/// # Errors
/// As [`user_presence`], for `queue_id`.
pub fn queue_members(queue_id: &str) -> Result<TypedTopic<QueueMember>, TopicError> {
    typed("v2.routing.queues.", queue_id, ".users")
}

/// `v2.analytics.queues.{queue_id}.observations`: the queue's observation metrics
/// ([`QueueObservation`]).
///
/// # Errors
/// As [`user_presence`], for `queue_id`.
pub fn queue_observations(queue_id: &str) -> Result<TypedTopic<QueueObservation>, TopicError> {
    typed("v2.analytics.queues.", queue_id, ".observations")
}

/// `v2.users.{user_id}?{part}&{part}...`: several of a user's topics as one subscription.
///
/// ```
/// use genesys_notify::models::topics::{self, UserTopic};
///
/// let user = "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f";
/// let combined = topics::user_combined(user, &[UserTopic::RoutingStatus, UserTopic::Presence])?;
/// assert_eq!(combined.topic().as_str(), format!("v2.users.{user}?presence&routingstatus"));
/// assert!(combined.pattern().matches(&format!("v2.users.{user}.routingStatus")));
/// let presence = combined.part_pattern(UserTopic::Presence).unwrap();
/// assert!(presence.matches(&format!("v2.users.{user}.presence")));
/// # Ok::<(), genesys_notify::TopicError>(())
/// ```
///
/// # Errors
/// As [`user_presence`]; [`TopicError::BadCombination`] when `parts` is empty or names a part
/// twice.
pub fn user_combined(user_id: &str, parts: &[UserTopic]) -> Result<CombinedUserTopic, TopicError> {
    let prefix = "v2.users.";
    check_id(prefix, user_id)?;
    if parts.is_empty() {
        return Err(TopicError::BadCombination);
    }
    let suffix: Vec<&str> = parts.iter().map(|part| part.segment()).collect();
    let topic = Topic::parse(&format!("{prefix}{user_id}?{}", suffix.join("&")))?;
    let pattern = Pattern::parse(&format!("{prefix}{user_id}.*"))?;
    let parts = parts
        .iter()
        .map(|part| {
            Pattern::parse(&format!("{prefix}{user_id}.{}", part.segment()))
                .map(|pattern| (*part, pattern))
        })
        .collect::<Result<_, _>>()?;
    Ok(CombinedUserTopic {
        topic,
        pattern,
        parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "9ED7D9F6-0c59-4360-ac54-40dd35eb9c2f";
    const QUEUE: &str = "0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

    #[test]
    fn each_builder_gives_the_documented_topic_and_patterns_matching_its_events() {
        let user = USER.to_ascii_lowercase();
        let cases: Vec<(String, Pattern, Pattern, &str)> = vec![
            {
                let t = user_presence(USER).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.users.*.presence",
                )
            },
            {
                let t = user_routing_status(USER).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.users.*.routingstatus",
                )
            },
            {
                let t = user_conversation_summary(USER).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.users.*.conversationsummary",
                )
            },
            {
                let t = user_conversations(USER).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.users.*.conversations",
                )
            },
            {
                let t = user_conversations_of(USER, ConversationMedia::CobrowseSessions).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.users.*.conversations.cobrowsesessions",
                )
            },
            {
                let t = user_station(USER).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.users.*.station",
                )
            },
            {
                let t = queue_conversations(QUEUE).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.routing.queues.*.conversations",
                )
            },
            {
                let t = queue_conversations_of(QUEUE, ConversationMedia::Calls).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.routing.queues.*.conversations.calls",
                )
            },
            {
                let t = queue_members(QUEUE).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.routing.queues.*.users",
                )
            },
            {
                let t = queue_observations(QUEUE).unwrap();
                (
                    t.topic().to_string(),
                    t.pattern().clone(),
                    t.pattern_any().clone(),
                    "v2.analytics.queues.*.observations",
                )
            },
        ];
        let expected = [
            format!("v2.users.{user}.presence"),
            format!("v2.users.{user}.routingstatus"),
            format!("v2.users.{user}.conversationsummary"),
            format!("v2.users.{user}.conversations"),
            format!("v2.users.{user}.conversations.cobrowsesessions"),
            format!("v2.users.{user}.station"),
            format!("v2.routing.queues.{QUEUE}.conversations"),
            format!("v2.routing.queues.{QUEUE}.conversations.calls"),
            format!("v2.routing.queues.{QUEUE}.users"),
            format!("v2.analytics.queues.{QUEUE}.observations"),
        ];
        assert_eq!(cases.len(), expected.len());
        for ((topic, pattern, any, any_text), want) in cases.iter().zip(&expected) {
            assert_eq!(topic, want);
            // Events arrive with the service's spelling (`routingStatus`): both match any case.
            let received = want.replace("routingstatus", "routingStatus");
            assert!(pattern.matches(&received), "{pattern} / {received}");
            assert!(any.matches(&received), "{any} / {received}");
            assert_eq!(any.as_str(), *any_text);
            assert!(!pattern.is_wildcard());
            assert!(!pattern.matches(&format!("{received}.extra")));
        }
        let other_user = user_presence("someone-else").unwrap();
        assert!(!user_presence(USER)
            .unwrap()
            .pattern()
            .matches(other_user.topic().as_str()));
        assert!(user_presence(USER)
            .unwrap()
            .pattern_any()
            .matches(other_user.topic().as_str()));
    }

    #[test]
    fn an_id_that_would_not_fill_exactly_one_segment_is_refused_with_its_position() {
        assert_eq!(user_presence("").unwrap_err(), TopicError::EmptySegment);
        assert_eq!(
            user_presence("a.b").unwrap_err(),
            TopicError::InvalidCharacter {
                character: '.',
                position: "v2.users.a".len()
            }
        );
        assert_eq!(
            queue_members("q?x").unwrap_err(),
            TopicError::InvalidCharacter {
                character: '?',
                position: "v2.routing.queues.q".len()
            }
        );
        assert_eq!(
            user_presence("u&presence").unwrap_err().to_string(),
            "topic name has the invalid character '&' at position 10"
        );
        assert_eq!(user_presence("*").unwrap_err(), TopicError::Wildcard);
        assert_eq!(
            user_presence(" u").unwrap_err(),
            TopicError::InvalidCharacter {
                character: ' ',
                position: 9
            }
        );
        assert!(matches!(
            user_presence("u\"").unwrap_err(),
            TopicError::InvalidCharacter { character: '"', .. }
        ));
        assert!(matches!(
            queue_observations(&"q".repeat(200)).unwrap_err(),
            TopicError::TooLong { .. }
        ));
    }

    #[test]
    fn a_combined_topic_sorts_its_parts_and_refuses_none_or_repeats() {
        let combined = user_combined(
            USER,
            &[
                UserTopic::RoutingStatus,
                UserTopic::Presence,
                UserTopic::ConversationSummary,
            ],
        )
        .unwrap();
        let user = USER.to_ascii_lowercase();
        assert_eq!(
            combined.topic().as_str(),
            format!("v2.users.{user}?conversationsummary&presence&routingstatus")
        );
        assert!(combined.topic().is_combined());
        for name in combined.topic().expand() {
            assert!(combined.pattern().matches(&name), "{name}");
        }
        assert!(combined
            .part_pattern(UserTopic::RoutingStatus)
            .unwrap()
            .matches(&format!("v2.users.{user}.routingStatus")));
        assert!(combined.part_pattern(UserTopic::Station).is_none());
        let single = user_combined(USER, &[UserTopic::Presence]).unwrap();
        assert_eq!(single.topic(), user_presence(USER).unwrap().topic());
        assert_eq!(
            user_combined(USER, &[]).unwrap_err(),
            TopicError::BadCombination
        );
        assert_eq!(
            user_combined(USER, &[UserTopic::Presence, UserTopic::Presence]).unwrap_err(),
            TopicError::BadCombination
        );
        assert_eq!(
            user_combined("a.b", &[UserTopic::Presence]).unwrap_err(),
            TopicError::InvalidCharacter {
                character: '.',
                position: 10
            }
        );
    }
}
