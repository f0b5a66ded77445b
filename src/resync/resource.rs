//! resource.rs defines what a state resource is: which event topics it serves, which REST path
//! reads their state (in batches up to the API's limit) and how an answer becomes event-shaped
//! bodies. It holds the user-supplied form ([`StateResource`]); it never does I/O itself.

use crate::topic::{Pattern, Topic, TopicError};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// The current state of one topic read over REST, in the topic's event shape: what the listeners
/// of `topic` receive as a snapshot [`Event`](crate::Event) (`eventBody` = `event_body`).
#[derive(Clone, Debug, PartialEq)]
pub struct StateSnapshot {
    /// The individual topic name the state belongs to, as events arrive under it (for example
    /// `v2.users.<id>.routingStatus`; compared ignoring case).
    pub topic: String,
    /// The body, shaped like the topic's `eventBody`.
    pub event_body: Value,
}

impl StateSnapshot {
    /// A snapshot of `topic` with this body.
    pub fn new(topic: impl Into<String>, event_body: Value) -> StateSnapshot {
        StateSnapshot {
            topic: topic.into(),
            event_body,
        }
    }
}

/// The internal form every state resource (built-in or user-supplied) takes.
pub(crate) trait Resource: Send + Sync {
    /// A short name for logs and errors, e.g. "presence (bulk)".
    fn name(&self) -> &str;
    /// Whether this resource serves the individual (lower-cased) event topic.
    fn serves(&self, topic: &str) -> bool;
    /// Most topics one request may cover (the API's bulk limit), at least 1.
    fn batch_limit(&self) -> usize;
    /// The path and query (starting with `/api/v2/`) that reads the state of `topics`
    /// (at most [`Resource::batch_limit`], all served by this resource).
    fn path(&self, topics: &[Topic]) -> String;
    /// Turns the answer into snapshots. Topics of the batch without a snapshot in the result
    /// are reported as failures ([`ResyncError::NoState`](super::ResyncError)).
    fn convert(&self, topics: &[Topic], answer: Value) -> Result<Vec<StateSnapshot>, String>;
    /// The topics (lower-cased) the bulk answer lists without their state (an `expand` the API
    /// did not honour): they are read alone with [`Resource::fallback_path`].
    fn incomplete(&self, _answer: &Value) -> Vec<String> {
        Vec::new()
    }
    /// A one-topic path for a topic listed by [`Resource::incomplete`], or `None`.
    fn fallback_path(&self, _topic: &Topic) -> Option<String> {
        None
    }
    /// Converts the answer of [`Resource::fallback_path`].
    fn convert_fallback(&self, _topic: &Topic, _answer: Value) -> Result<StateSnapshot, String> {
        Err("no fallback".into())
    }
}

type PathFn = dyn Fn(&[Topic]) -> String + Send + Sync;
type ConvertFn = dyn Fn(&[Topic], Value) -> Result<Vec<StateSnapshot>, String> + Send + Sync;

/// A user-supplied state resource: for the topics matching a pattern, which REST path gives
/// their current state and how to turn the answer into event-shaped bodies. Give it to
/// [`ClientBuilder::state_resource`](crate::ClientBuilder::state_resource); it takes precedence
/// over the built-in ones for the topics it matches.
///
/// The functions receive individual, lower-cased topic names (a combined subscription
/// `base?a&b` is split into `base.a` and `base.b` first). The path is relative to the API base
/// and must start with `/api/v2/`; it is read with `GET` and the client's access token, with
/// the same retry, `Retry-After` and permission handling as the built-in resources.
///
/// ```
/// use genesys_notify::{StateResource, StateSnapshot};
///
/// // Queue membership: GET /api/v2/routing/queues/{id}/members → one snapshot per queue.
/// let members = StateResource::new(
///     "v2.routing.queues.*.members",
///     |topic| {
///         let queue = topic.as_str().split('.').nth(3).unwrap_or_default();
///         format!("/api/v2/routing/queues/{queue}/members?pageSize=100")
///     },
///     |topic, answer| Ok(vec![StateSnapshot::new(topic.as_str(), answer)]),
/// )
/// .unwrap();
/// # drop(members);
/// ```
#[derive(Clone)]
pub struct StateResource {
    name: String,
    pattern: Pattern,
    batch: usize,
    path: Arc<PathFn>,
    convert: Arc<ConvertFn>,
}

impl fmt::Debug for StateResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateResource")
            .field("pattern", &self.pattern.as_str())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl StateResource {
    /// One request per topic: `path(topic)` gives the path and query, `convert(topic, answer)`
    /// the snapshots (usually one, for `topic`).
    ///
    /// # Errors
    /// The [`TopicError`] of an invalid pattern.
    pub fn new<P, C>(pattern: &str, path: P, convert: C) -> Result<StateResource, TopicError>
    where
        P: Fn(&Topic) -> String + Send + Sync + 'static,
        C: Fn(&Topic, Value) -> Result<Vec<StateSnapshot>, String> + Send + Sync + 'static,
    {
        StateResource::bulk(
            pattern,
            1,
            move |topics: &[Topic]| path(&topics[0]),
            move |topics: &[Topic], answer| convert(&topics[0], answer),
        )
    }

    /// Up to `max_batch` topics per request (the API's bulk limit; 0 is taken as 1):
    /// `path(topics)` gives the path and query for the batch, `convert(topics, answer)` the
    /// snapshots of the batch's topics.
    ///
    /// # Errors
    /// The [`TopicError`] of an invalid pattern.
    pub fn bulk<P, C>(
        pattern: &str,
        max_batch: usize,
        path: P,
        convert: C,
    ) -> Result<StateResource, TopicError>
    where
        P: Fn(&[Topic]) -> String + Send + Sync + 'static,
        C: Fn(&[Topic], Value) -> Result<Vec<StateSnapshot>, String> + Send + Sync + 'static,
    {
        let pattern = Pattern::parse(pattern)?;
        Ok(StateResource {
            name: format!("custom resource {}", pattern.as_str()),
            pattern,
            batch: max_batch.max(1),
            path: Arc::new(path),
            convert: Arc::new(convert),
        })
    }

    /// The pattern of the topics it serves.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }
}

impl Resource for StateResource {
    fn name(&self) -> &str {
        &self.name
    }

    fn serves(&self, topic: &str) -> bool {
        self.pattern.matches(topic)
    }

    fn batch_limit(&self) -> usize {
        self.batch
    }

    fn path(&self, topics: &[Topic]) -> String {
        (self.path)(topics)
    }

    fn convert(&self, topics: &[Topic], answer: Value) -> Result<Vec<StateSnapshot>, String> {
        (self.convert)(topics, answer)
    }
}
