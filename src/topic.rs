//! topic.rs validates and normalises topic names and matches listener patterns; it never does I/O.
//!
//! Facts it rests on (docs/protocol.md, "Subscriptions"): topic names are compared case-insensitively
//! (we lower-case them), a combined topic such as `v2.users.<id>?presence&routingStatus` counts as
//! one topic of at most 200 characters but its events arrive under the individual names, and
//! `channel.metadata` and `v2.system.*` arrive without subscribing and must never be subscribed.

use std::fmt;

/// The longest topic name the service accepts, in characters (docs/protocol.md: combined topics are at
/// most 200 characters).
pub const MAX_TOPIC_LEN: usize = 200;

/// A validated, normalised (lower-cased) topic name, ready to be subscribed.
///
/// Build one with [`Topic::parse`] or `"v2.users.<id>.presence".parse::<Topic>()`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(String);

/// Why a topic name or a listener pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The name is empty (or only white space).
    Empty,
    /// The name is longer than [`MAX_TOPIC_LEN`] characters.
    TooLong {
        /// The name's length in characters.
        len: usize,
    },
    /// The name contains a character that no Genesys topic contains (white space, a quote, a
    /// slash, a control character, ...).
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its position, in characters from the start.
        position: usize,
    },
    /// A dot-separated segment is empty (`v2..presence`, a leading or trailing dot).
    EmptySegment,
    /// The name is `channel.metadata` or starts with `v2.system.`: those arrive on every channel
    /// without subscribing and must never be subscribed (docs/protocol.md, "Subscriptions").
    Reserved,
    /// A `*` wildcard was used in a topic to subscribe (wildcards are for listener patterns
    /// only), or stood inside a segment (`v2.us*`) in a pattern.
    Wildcard,
    /// A combined topic (`base?a&b`) is malformed: empty base or empty suffix.
    BadCombination,
    /// The name has a single segment (`v2`, `presence`): every Genesys topic has at least two
    /// dot-separated segments (`v2.users.<id>.presence`), so this one can never bring events.
    #[non_exhaustive]
    SingleSegment {
        /// The name as given (at most [`MAX_TOPIC_LEN`] characters, as checked before).
        name: String,
    },
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Empty => f.write_str("topic name is empty"),
            TopicError::TooLong { len } => write!(
                f,
                "topic name is {len} characters long; the service accepts at most {MAX_TOPIC_LEN}"
            ),
            TopicError::InvalidCharacter {
                character,
                position,
            } if character.is_whitespace() => write!(
                f,
                "topic name has white space ({character:?}) at position {position}: topic names \
                 hold none, not even around them (no trimming is done)"
            ),
            TopicError::InvalidCharacter {
                character,
                position,
            } if character.is_control() => write!(
                f,
                "topic name has the control character {character:?} at position {position}"
            ),
            TopicError::InvalidCharacter {
                character,
                position,
            } => write!(
                f,
                "topic name has the invalid character {character:?} at position {position}"
            ),
            TopicError::EmptySegment => f.write_str(
                "topic name has an empty dot-separated segment (two dots in a row, or a leading \
                 or trailing dot)",
            ),
            TopicError::SingleSegment { name } => write!(
                f,
                "topic name {name:?} has a single segment; topics have at least two \
                 dot-separated segments, like v2.users.<id>.presence"
            ),
            TopicError::Reserved => f.write_str(
                "channel.metadata and v2.system.* arrive without subscribing and cannot be subscribed",
            ),
            TopicError::Wildcard => f.write_str(
                "'*' is allowed only as a whole segment of a listener pattern, never in a subscribed topic",
            ),
            TopicError::BadCombination => {
                f.write_str("combined topic must look like 'v2.users.<id>?presence&routingStatus'")
            }
        }
    }
}

impl std::error::Error for TopicError {}

fn check_chars(name: &str, allow_combination: bool, allow_star: bool) -> Result<(), TopicError> {
    for (position, character) in name.chars().enumerate() {
        let ok = character.is_ascii_alphanumeric()
            || matches!(character, '.' | '-' | '_' | ':')
            || (allow_combination && matches!(character, '?' | '&'))
            || (allow_star && character == '*');
        if !ok {
            return Err(if character == '*' {
                TopicError::Wildcard
            } else {
                TopicError::InvalidCharacter {
                    character,
                    position,
                }
            });
        }
    }
    Ok(())
}

fn check_segments(name: &str) -> Result<(), TopicError> {
    if name.split('.').any(str::is_empty) {
        return Err(TopicError::EmptySegment);
    }
    Ok(())
}

/// Whether an inbound topic name is one the service sends without a subscription.
pub(crate) fn is_reserved(lower: &str) -> bool {
    lower == "channel.metadata" || lower.starts_with("v2.system.")
}

impl Topic {
    /// Validates and lower-cases a topic name.
    ///
    /// Accepts plain topics (`v2.users.<uuid>.presence`) and combined ones
    /// (`v2.users.<uuid>?presence&routingStatus`).
    ///
    /// # Errors
    /// [`TopicError`] when the name is empty ([`TopicError::Empty`], also for white space
    /// only), longer than 200 characters ([`TopicError::TooLong`]), holds characters no topic
    /// holds ([`TopicError::InvalidCharacter`]: white space anywhere, leading and trailing
    /// included, since nothing is trimmed; control characters; quotes, slashes, ...), has an
    /// empty segment (`v2..users`, a leading or trailing dot: [`TopicError::EmptySegment`]),
    /// has a single segment (`v2`: [`TopicError::SingleSegment`], which names it), is reserved
    /// (`channel.metadata`, `v2.system.*`: [`TopicError::Reserved`]), contains a `*` wildcard
    /// ([`TopicError::Wildcard`]) or is a malformed combined topic
    /// ([`TopicError::BadCombination`]). The error does not repeat the name: callers that
    /// report it name it ([`Error::Topic`](crate::Error::Topic) does).
    pub fn parse(name: &str) -> Result<Topic, TopicError> {
        if name.trim().is_empty() {
            return Err(TopicError::Empty);
        }
        let len = name.chars().count();
        if len > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong { len });
        }
        check_chars(name, true, false)?;
        let lower = name.to_ascii_lowercase();
        let (base, suffix) = match lower.split_once('?') {
            Some((base, suffix)) => (base, Some(suffix)),
            None => (lower.as_str(), None),
        };
        // `&` only separates the parts after `?` (found by fuzzing: `u&&?us` normalised to
        // `u&&.us`, which no longer parsed).
        if base.is_empty() || base.contains('&') {
            return Err(TopicError::BadCombination);
        }
        check_segments(base)?;
        if suffix.is_none() && !base.contains('.') {
            return Err(TopicError::SingleSegment {
                name: name.to_owned(),
            });
        }
        let name = if let Some(suffix) = suffix {
            let mut parts = std::collections::BTreeSet::new();
            // Each part is one last segment (`presence`, `routingstatus`), named once.
            if base.is_empty()
                || suffix.is_empty()
                || suffix.contains('?')
                || suffix
                    .split('&')
                    .any(|part| part.is_empty() || part.contains('.') || !parts.insert(part))
            {
                return Err(TopicError::BadCombination);
            }
            // One spelling per subscription: the parts in sorted order, so that
            // `x?routingstatus&presence` and `x?presence&routingstatus` are the same topic.
            Topic::combine(base, parts)
        } else if lower.contains('&') {
            return Err(TopicError::BadCombination);
        } else {
            lower
        };
        if is_reserved(&name) {
            return Err(TopicError::Reserved);
        }
        Ok(Topic(name))
    }

    /// `base?a&b` from a base and parts (given sorted); `base.a` for a single part.
    fn combine<'a>(base: &str, parts: impl IntoIterator<Item = &'a str>) -> String {
        let mut name = String::with_capacity(base.len() + 32);
        name.push_str(base);
        let mut parts = parts.into_iter().peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            if first && parts.peek().is_none() {
                name.push('.');
            } else {
                name.push(if first { '?' } else { '&' });
            }
            name.push_str(part);
            first = false;
        }
        name
    }

    /// Whether this is a combined topic (`base?a&b`).
    pub fn is_combined(&self) -> bool {
        self.0.contains('?')
    }

    /// Calls `f` with every individual topic name this subscription brings (see
    /// [`Topic::expand`]), without allocating for a plain topic.
    pub(crate) fn for_each_name(&self, mut f: impl FnMut(&str)) {
        match self.0.split_once('?') {
            None => f(&self.0),
            Some((base, suffix)) => {
                let mut name = String::with_capacity(self.0.len());
                for part in suffix.split('&') {
                    name.clear();
                    name.push_str(base);
                    name.push('.');
                    name.push_str(part);
                    f(&name);
                }
            }
        }
    }

    /// The subscription that brings only the names of this one for which `keep` is true:
    /// `None` when none is kept, a plain topic when one is, a combined topic of the kept parts
    /// otherwise (`self` unchanged when all are kept).
    pub(crate) fn narrowed(&self, mut keep: impl FnMut(&str) -> bool) -> Option<Topic> {
        let Some((base, suffix)) = self.0.split_once('?') else {
            return keep(&self.0).then(|| self.clone());
        };
        let total = suffix.split('&').count();
        let kept: Vec<&str> = suffix
            .split('&')
            .filter(|part| keep(&format!("{base}.{part}")))
            .collect();
        match kept.len() {
            0 => None,
            n if n == total => Some(self.clone()),
            _ => Some(Topic(Topic::combine(base, kept))),
        }
    }

    /// The normalised (lower-cased) name, as sent in subscription requests.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The individual topic names whose events this subscription brings: itself for a plain
    /// topic, `base.a`, `base.b`, ... for a combined topic `base?a&b`.
    pub fn expand(&self) -> Vec<String> {
        match self.0.split_once('?') {
            None => vec![self.0.clone()],
            Some((base, suffix)) => suffix.split('&').map(|s| format!("{base}.{s}")).collect(),
        }
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Topic {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::parse(s)
    }
}

/// Consistent with `Eq`, `Ord` and `Hash` (all those of the name), so that sets of topics can be
/// searched by name.
impl std::borrow::Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A listener pattern: a topic name in which a segment may be `*`, matching exactly one
/// dot-separated segment (`v2.users.*.presence`). Matching ignores case.
///
/// Patterns also match `channel.metadata` and `v2.system.*` names, though those are delivered as
/// lifecycle events, not notifications.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    /// `None` for an exact pattern (no `*`), else the segments with `None` for `*`.
    segments: Option<Vec<Option<String>>>,
}

impl Pattern {
    /// Validates and lower-cases a pattern.
    ///
    /// # Errors
    /// [`TopicError`] when it is empty, too long, has invalid characters (white space included:
    /// nothing is trimmed) or empty segments, or a `*` that is not a whole segment
    /// ([`TopicError::Wildcard`]). A single segment (`*`) is accepted.
    pub fn parse(text: &str) -> Result<Pattern, TopicError> {
        if text.trim().is_empty() {
            return Err(TopicError::Empty);
        }
        let len = text.chars().count();
        if len > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong { len });
        }
        check_chars(text, false, true)?;
        check_segments(text)?;
        let text = text.to_ascii_lowercase();
        let segments = if text.contains('*') {
            let mut segments = Vec::new();
            for segment in text.split('.') {
                if segment == "*" {
                    segments.push(None);
                } else if segment.contains('*') {
                    return Err(TopicError::Wildcard);
                } else {
                    segments.push(Some(segment.to_owned()));
                }
            }
            Some(segments)
        } else {
            None
        };
        Ok(Pattern { text, segments })
    }

    /// The normalised pattern text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has a `*` segment.
    pub fn is_wildcard(&self) -> bool {
        self.segments.is_some()
    }

    /// Whether `topic` (any case) matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        match &self.segments {
            None => topic.eq_ignore_ascii_case(&self.text),
            Some(segments) => {
                let mut parts = topic.split('.');
                for want in segments {
                    match (want, parts.next()) {
                        (_, None) => return false,
                        (None, Some(_)) => {}
                        (Some(want), Some(part)) => {
                            if !part.eq_ignore_ascii_case(want) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "9ED7D9F6-0c59-4360-ac54-40dd35eb9c2f";

    #[test]
    fn topic_is_lower_cased() {
        let t = Topic::parse(&format!("v2.users.{USER}.Presence")).unwrap();
        assert_eq!(
            t.as_str(),
            "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence"
        );
    }

    /// Review finding: white space around a name was trimmed and a one-segment name accepted.
    #[test]
    fn white_space_single_segments_and_control_characters_are_refused() {
        let name = format!("v2.users.{USER}.presence");
        assert_eq!(
            Topic::parse(&format!(" {name}")),
            Err(TopicError::InvalidCharacter {
                character: ' ',
                position: 0
            })
        );
        let trailing = format!("{name}\n");
        assert_eq!(
            Topic::parse(&trailing),
            Err(TopicError::InvalidCharacter {
                character: '\n',
                position: name.len()
            })
        );
        assert_eq!(
            Topic::parse("v2.users.x\tpresence"),
            Err(TopicError::InvalidCharacter {
                character: '\t',
                position: 10
            })
        );
        assert!(matches!(
            Topic::parse("v2.users.\u{1b}[31m.presence"),
            Err(TopicError::InvalidCharacter {
                character: '\u{1b}',
                ..
            })
        ));
        assert_eq!(
            Topic::parse("v2"),
            Err(TopicError::SingleSegment { name: "v2".into() })
        );
        assert_eq!(
            Topic::parse("Presence"),
            Err(TopicError::SingleSegment {
                name: "Presence".into()
            })
        );
        assert_eq!(Topic::parse("v2..users"), Err(TopicError::EmptySegment));
        assert_eq!(Topic::parse("v2.users.x."), Err(TopicError::EmptySegment));
        assert_eq!(Topic::parse(".v2.users"), Err(TopicError::EmptySegment));
        assert_eq!(Topic::parse("   "), Err(TopicError::Empty));
        assert_eq!(
            Topic::parse(&format!("v2.users.{}", "é".repeat(3))),
            Err(TopicError::InvalidCharacter {
                character: 'é',
                position: 9
            })
        );
        // Every message says what is wrong and where.
        let text = Topic::parse(" v2.users.x.presence")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("white space") && text.contains("position 0"),
            "{text}"
        );
        let text = Topic::parse("v2").unwrap_err().to_string();
        assert!(
            text.contains("single segment") && text.contains("\"v2\""),
            "{text}"
        );
        // Patterns are not trimmed either, and `*` alone is still a pattern.
        assert!(Pattern::parse(" v2.users.*.presence").is_err());
        assert!(Pattern::parse("*").is_ok());
        // What stays valid: plain, combined, 200 characters.
        for ok in [
            name.clone(),
            format!("v2.users.{USER}?presence&routingStatus"),
            "v2.routing.queues.q1.observations".to_owned(),
            "v2.detail.events.conversation.c1.acw".to_owned(),
            format!("v2.{}", "a".repeat(MAX_TOPIC_LEN - 3)),
        ] {
            assert!(Topic::parse(&ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_topics_get_the_reason() {
        assert_eq!(Topic::parse(""), Err(TopicError::Empty));
        assert_eq!(Topic::parse("v2..presence"), Err(TopicError::EmptySegment));
        assert_eq!(Topic::parse("v2.users."), Err(TopicError::EmptySegment));
        assert_eq!(
            Topic::parse("v2.users x.presence"),
            Err(TopicError::InvalidCharacter {
                character: ' ',
                position: 8
            })
        );
        assert_eq!(
            Topic::parse("v2.users.*.presence"),
            Err(TopicError::Wildcard)
        );
        assert_eq!(Topic::parse("channel.metadata"), Err(TopicError::Reserved));
        assert_eq!(
            Topic::parse("v2.system.socket_closing"),
            Err(TopicError::Reserved)
        );
        let long = format!("v2.{}", "a".repeat(MAX_TOPIC_LEN));
        assert_eq!(
            Topic::parse(&long),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 3
            })
        );
        assert_eq!(Topic::parse("v2.users.x?"), Err(TopicError::BadCombination));
        assert_eq!(
            Topic::parse("v2.users.x?a&&b"),
            Err(TopicError::BadCombination)
        );
        assert_eq!(
            Topic::parse("v2.users.x&a"),
            Err(TopicError::BadCombination)
        );
        assert_eq!(
            Topic::parse("v2.users.x?presence&presence"),
            Err(TopicError::BadCombination)
        );
        assert_eq!(
            Topic::parse("v2.users.x?pres.ence"),
            Err(TopicError::BadCombination)
        );
        assert_eq!(Topic::parse("?presence"), Err(TopicError::BadCombination));
        assert_eq!(
            Topic::parse("v2.users.x&y?presence"),
            Err(TopicError::BadCombination)
        );
    }

    /// Every accepted topic parses again to itself (found by the `topic` fuzz target).
    #[test]
    fn accepted_topics_parse_again_to_themselves() {
        for name in [
            "v2.users.X.presence",
            "v2.users.x?routingStatus&presence",
            "v2.users.x?presence",
            "u&&?us",
        ] {
            if let Ok(topic) = Topic::parse(name) {
                assert_eq!(Topic::parse(topic.as_str()), Ok(topic.clone()), "{name}");
            }
        }
    }

    #[test]
    fn combined_topic_expands_to_the_names_events_arrive_under() {
        let t = Topic::parse(&format!("v2.users.{USER}?presence&routingStatus")).unwrap();
        let user = USER.to_ascii_lowercase();
        assert_eq!(
            t.expand(),
            vec![
                format!("v2.users.{user}.presence"),
                format!("v2.users.{user}.routingstatus")
            ]
        );
        let plain = Topic::parse("v2.routing.queues.q1.observations").unwrap();
        assert_eq!(plain.expand(), vec!["v2.routing.queues.q1.observations"]);
    }

    #[test]
    fn combined_parts_have_one_order_and_narrow_to_what_is_kept() {
        let a = Topic::parse("v2.users.X?routingStatus&presence").unwrap();
        let b = Topic::parse("v2.users.x?presence&routingstatus").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "v2.users.x?presence&routingstatus");
        assert!(a.is_combined());
        let mut names = Vec::new();
        a.for_each_name(|n| names.push(n.to_owned()));
        assert_eq!(names, a.expand());

        let three = Topic::parse("v2.users.x?presence&routingstatus&geolocation").unwrap();
        assert_eq!(
            three.as_str(),
            "v2.users.x?geolocation&presence&routingstatus"
        );
        let not_presence = |n: &str| n != "v2.users.x.presence";
        assert_eq!(
            three.narrowed(not_presence).unwrap().as_str(),
            "v2.users.x?geolocation&routingstatus"
        );
        let only_presence = |n: &str| n == "v2.users.x.presence";
        let narrowed = three.narrowed(only_presence).unwrap();
        assert_eq!(narrowed.as_str(), "v2.users.x.presence");
        assert!(!narrowed.is_combined());
        assert_eq!(narrowed, Topic::parse("v2.users.x.presence").unwrap());
        assert_eq!(three.narrowed(|_| true).unwrap(), three);
        assert_eq!(three.narrowed(|_| false), None);
        let plain = Topic::parse("v2.users.x.presence").unwrap();
        assert_eq!(plain.narrowed(|_| true), Some(plain.clone()));
        assert_eq!(plain.narrowed(|_| false), None);
    }

    #[test]
    fn wildcard_matches_exactly_one_segment_in_any_case() {
        let p = Pattern::parse("v2.users.*.presence").unwrap();
        assert!(p.is_wildcard());
        assert!(p.matches(&format!("v2.users.{USER}.presence")));
        assert!(p.matches("V2.USERS.abc.PRESENCE"));
        assert!(!p.matches("v2.users.a.b.presence"));
        assert!(!p.matches("v2.users.presence"));
        assert!(!p.matches("v2.users.a.presence.extra"));
        assert!(!p.matches("v2.users.a.routingstatus"));
        let all = Pattern::parse("*.*").unwrap();
        assert!(all.matches("channel.metadata"));
        assert!(!all.matches("v2.users.x"));
    }

    #[test]
    fn exact_pattern_matches_ignoring_case() {
        let p = Pattern::parse("v2.users.ABC.presence").unwrap();
        assert!(!p.is_wildcard());
        assert!(p.matches("v2.users.abc.Presence"));
        assert!(!p.matches("v2.users.abd.presence"));
    }

    #[test]
    fn star_inside_a_segment_is_refused() {
        assert_eq!(Pattern::parse("v2.us*.x"), Err(TopicError::Wildcard));
        assert_eq!(Pattern::parse("v2..x"), Err(TopicError::EmptySegment));
    }
}

/// Whether Genesys accepted a topic (`state` of a subscription result).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicState {
    /// `"Permitted"`: the topic is subscribed.
    Permitted,
    /// `"Rejected"`: the topic is not subscribed; see [`TopicResult::rejection_reason`] and
    /// [`TopicResult::missing_permissions`].
    Rejected,
}

/// The outcome for one topic of `PUT .../subscriptions?ignoreErrors=true`
/// (docs/protocol.md "Subscriptions": `{"id", "state", "rejectionReason", "missingPermissions"}`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicResult {
    /// The topic name as the server returned it (`id`).
    pub topic: String,
    /// Permitted or rejected. An entity without `state` is taken as permitted (the server
    /// listed it as subscribed); a `state` other than `Permitted`/`Rejected` (any case) is
    /// taken as rejected, with the state named in `rejection_reason` if none was given.
    pub state: TopicState,
    /// `rejectionReason`, when given.
    pub rejection_reason: Option<String>,
    /// `missingPermissions`: the permissions the token's client or user lacks; empty when none
    /// were listed.
    pub missing_permissions: Vec<String>,
}
