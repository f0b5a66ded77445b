//! typed.rs registers typed listeners ([`Client::on_typed`]): a listener whose callback gets the
//! event's body parsed into a type. It parses on the dispatcher thread that delivers the event
//! and reports a body that does not fit; it never holds a lock while user code runs (the
//! callback, or a `Deserialize` of the user's own type).
//!
//! Both per-event decisions keep their state in thread-locals of the dispatcher threads: events
//! of one topic always go through the same dispatcher thread (dispatch.rs shards by topic), and
//! each dispatcher thread belongs to one client, so "once per topic" needs no lock and no state
//! on the client.

use super::Client;
use crate::dispatch::LifecycleSink;
use crate::error::Error;
use crate::event::{Event, Lifecycle};
use crate::listener::ListenerGuard;
use crate::models::topics::TypedTopic;
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bodies longer than this (bytes) are parsed for each typed listener instead of being kept
/// for the next one: the copy would cost more than it saves, and the cache stays small.
const CACHED_BODY_MAX: usize = 64 * 1024;
/// Parsed bodies kept per dispatcher thread (one per body type).
const CACHED_TYPES_MAX: usize = 8;
/// Bytes of topic names remembered per dispatcher thread as already reported; beyond, the
/// memory is forgotten and mismatches are reported again (a report too many, never none).
const REPORTED_BYTES_MAX: usize = 1 << 20;
/// The longest serde error text a report carries, in bytes: serde quotes the offending value,
/// which comes from outside and may be large.
const ERROR_TEXT_MAX: usize = 512;

/// The result of parsing one body as one type.
type Parsed<T> = Result<T, String>;

/// The last body parsed per type on this thread, so that several typed listeners of one type
/// on one topic parse each event once.
struct ParsedBody {
    type_id: TypeId,
    /// The body text the value was parsed from: the key. Equal text gives an equal value
    /// whatever event it came in, so a match can never hand a listener another event's body.
    body: Box<str>,
    value: Rc<dyn Any>,
}

/// Topics already reported per body type, and the bytes of their names.
type Reported = (HashSet<(Box<str>, TypeId)>, usize);

thread_local! {
    static PARSED: RefCell<Vec<ParsedBody>> = const { RefCell::new(Vec::new()) };
    /// `(topic lower-cased, body type)` already reported as a mismatch, and their bytes.
    static REPORTED: RefCell<Reported> = RefCell::new((HashSet::new(), 0));
}

/// `event`'s body parsed as `T`, from this thread's cache when the same body was just parsed
/// as `T` for another listener.
fn parse<T: DeserializeOwned + 'static>(event: &Event) -> Rc<Parsed<T>> {
    let body = event.body_json();
    let type_id = TypeId::of::<T>();
    let cached = PARSED.with(|cache| {
        cache
            .borrow()
            .iter()
            .find(|entry| entry.type_id == type_id && *entry.body == *body)
            .map(|entry| entry.value.clone())
    });
    if let Some(value) = cached.and_then(|value| value.downcast::<Parsed<T>>().ok()) {
        return value;
    }
    // No borrow of the cache is held here: `T::deserialize` may be user code.
    let value: Rc<Parsed<T>> =
        Rc::new(serde_json::from_str::<T>(body).map_err(|error| error.to_string()));
    if body.len() <= CACHED_BODY_MAX {
        let entry = ParsedBody {
            type_id,
            body: body.into(),
            value: value.clone(),
        };
        // The entry replaced is dropped after the borrow ends: dropping a `T` may run user
        // code too.
        let _replaced = PARSED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(at) = cache.iter().position(|e| e.type_id == type_id) {
                Some(std::mem::replace(&mut cache[at], entry))
            } else {
                let oldest = (cache.len() >= CACHED_TYPES_MAX).then(|| cache.remove(0));
                cache.push(entry);
                oldest
            }
        });
    }
    value
}

/// Whether this is the first mismatch of `T` on `topic` this thread has seen (and it is now
/// remembered).
fn first_mismatch<T: 'static>(topic: &str) -> bool {
    let key = (
        topic.to_ascii_lowercase().into_boxed_str(),
        TypeId::of::<T>(),
    );
    REPORTED.with(|reported| {
        let mut reported = reported.borrow_mut();
        let (seen, bytes) = &mut *reported;
        if seen.contains(&key) {
            return false;
        }
        if *bytes + key.0.len() > REPORTED_BYTES_MAX {
            seen.clear();
            *bytes = 0;
        }
        *bytes += key.0.len();
        seen.insert(key);
        true
    })
}

/// `text` cut to at most `max` bytes, at a character boundary, with a mark when cut.
fn shortened(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], text.len())
}

/// Counts a body that did not fit `T` and reports it if it is the first on its topic.
fn mismatch<T: 'static>(event: &Event, error: &str, sink: &LifecycleSink) {
    event
        .origin
        .stats
        .dispatch
        .body_mismatches
        .fetch_add(1, Ordering::Relaxed);
    if first_mismatch::<T>(event.topic()) {
        sink.emit(Lifecycle::BodyMismatch {
            channel: event.channel_id().clone(),
            topic: event.topic().to_owned(),
            body_type: std::any::type_name::<T>(),
            error: shortened(error, ERROR_TEXT_MAX),
        });
    }
}

impl Client {
    /// Registers `callback` for notifications whose `topicName` matches `pattern`, with their
    /// `eventBody` parsed as `T` (one of the [`models`](crate::models) types, or a type of
    /// your own): `callback(event, body)`.
    ///
    /// The body is parsed on the dispatcher thread that delivers the event, before the
    /// callback runs; typed listeners of the same `T` on the same topic share one parse per
    /// event (bodies up to 64 KiB). Snapshots ([`Event::is_snapshot`]) are delivered like live
    /// events: the built-in presence and routing status snapshots parse into
    /// [`UserPresence`](crate::models::UserPresence) and
    /// [`UserRoutingStatus`](crate::models::UserRoutingStatus).
    ///
    /// A body that does not fit `T` skips this callback, is counted
    /// ([`ChannelHealth::body_mismatches`](crate::ChannelHealth::body_mismatches),
    /// [`Health::body_mismatches`](crate::Health::body_mismatches)) and is reported as
    /// [`Lifecycle::BodyMismatch`] the first time it happens on its topic for `T` (a client
    /// that sees mismatches on more than about 1 MiB of topic names may report a topic
    /// again). The event itself is unaffected: every other listener of the topic, typed or
    /// not, still receives it. Everything else is as for [`Client::on`]: the same patterns,
    /// ordering, panic handling and guard.
    ///
    /// ```no_run
    /// use genesys_notify::models::{RoutingStatusValue, UserRoutingStatus};
    /// use genesys_notify::{Client, Event};
    ///
    /// # fn main() -> Result<(), genesys_notify::Error> {
    /// # let client = Client::builder()
    /// #     .region(genesys_notify::Region::UsEast1)
    /// #     .access_token("token")
    /// #     .build()?;
    /// let pattern = "v2.users.*.routingStatus";
    /// let _guard = client.on_typed(pattern, |event: &Event, body: &UserRoutingStatus| {
    ///     if body.status() == Some(&RoutingStatusValue::NotResponding) {
    ///         eprintln!("{} is not responding", event.topic());
    ///     }
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Client::on`]: [`Error::Topic`] for an invalid pattern, or for `channel.metadata`
    /// and `v2.system.*`; [`Error::Shutdown`].
    pub fn on_typed<T, F>(
        &self,
        pattern: impl AsRef<str>,
        callback: F,
    ) -> Result<ListenerGuard, Error>
    where
        T: DeserializeOwned + 'static,
        F: Fn(&Event, &T) + Send + Sync + 'static,
    {
        let sink: Arc<LifecycleSink> = self.lifecycle_sink().clone();
        self.on(pattern.as_ref(), move |event: &Event| {
            match &*parse::<T>(event) {
                Ok(body) => callback(event, body),
                Err(error) => mismatch::<T>(event, error, &sink),
            }
        })
    }
}

impl Client {
    /// [`Client::on_typed`] for the events of a topic built by [`models::topics`]: the body
    /// type comes from the topic, so it cannot be mistaken. Listens on
    /// [`TypedTopic::pattern`] (this topic only); for every user or queue of a kind, use
    /// `on_typed(topic.pattern_any(), ...)`.
    ///
    /// ```no_run
    /// use genesys_notify::models::topics;
    /// use genesys_notify::Client;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let client = Client::builder()
    /// #     .region(genesys_notify::Region::UsEast1)
    /// #     .access_token("token")
    /// #     .build()?;
    /// let observations = topics::queue_observations("0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")?;
    /// let _guard = client.on_topic(&observations, |_event, body| {
    ///     println!("waiting: {:?}", body.stat("oWaiting", "count"));
    /// })?;
    /// let _report = client.subscribe([&observations])?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Shutdown`].
    ///
    /// [`models::topics`]: crate::models::topics
    pub fn on_topic<T, F>(&self, topic: &TypedTopic<T>, callback: F) -> Result<ListenerGuard, Error>
    where
        T: DeserializeOwned + 'static,
        F: Fn(&Event, &T) + Send + Sync + 'static,
    {
        self.on_typed(topic.pattern(), callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer};
    use std::cell::Cell;

    thread_local! {
        static PARSES: Cell<usize> = const { Cell::new(0) };
    }

    /// A body type that counts how often it is parsed on this thread.
    #[derive(Debug, PartialEq)]
    struct Counted(u64);

    impl<'de> Deserialize<'de> for Counted {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            PARSES.with(|p| p.set(p.get() + 1));
            #[derive(Deserialize)]
            struct Body {
                n: u64,
            }
            Body::deserialize(deserializer).map(|body| Counted(body.n))
        }
    }

    fn event(topic: &str, body: &str) -> Event {
        let origin = Arc::new(crate::event::Origin {
            channel: crate::channel_id::ChannelId::new("streaming-test"),
            stats: Arc::new(crate::health::ChannelStats::new()),
            epoch: (std::time::Instant::now(), std::time::SystemTime::now()),
        });
        Event::snapshot(topic, body, &origin, std::time::Instant::now())
    }

    #[test]
    fn one_body_is_parsed_once_for_every_listener_of_its_type() {
        let first = event("v2.a.b", r#"{"n": 1}"#);
        let parses = || PARSES.with(Cell::get);
        let before = parses();
        let a = parse::<Counted>(&first);
        let b = parse::<Counted>(&first);
        assert_eq!(*a, Ok(Counted(1)));
        assert!(
            Rc::ptr_eq(&a, &b),
            "the second listener got the first one's value"
        );
        assert_eq!(parses() - before, 1);
        // Another body is parsed anew, and never given the cached value.
        let second = event("v2.a.b", r#"{"n": 2}"#);
        assert_eq!(*parse::<Counted>(&second), Ok(Counted(2)));
        assert_eq!(parses() - before, 2);
        // A different type of the same body is its own parse.
        let value = parse::<serde_json::Value>(&second);
        assert_eq!(value.as_ref().as_ref().unwrap()["n"], 2);
        assert_eq!(*parse::<Counted>(&second), Ok(Counted(2)));
        assert_eq!(parses() - before, 2, "each type keeps its own last body");
    }

    #[test]
    fn a_body_that_does_not_fit_gives_the_serde_error() {
        let misfit = event("v2.a.b", r#"{"n": "one"}"#);
        let parsed = parse::<Counted>(&misfit);
        let error = parsed.as_ref().as_ref().unwrap_err();
        assert!(error.contains("invalid type: string \"one\""), "{error}");
    }

    #[test]
    fn a_mismatch_is_first_once_per_topic_and_type_whatever_the_case() {
        assert!(first_mismatch::<Counted>("v2.users.X.presence"));
        assert!(!first_mismatch::<Counted>("v2.users.x.presence"));
        assert!(first_mismatch::<u8>("v2.users.x.presence"));
        assert!(first_mismatch::<Counted>("v2.users.y.presence"));
    }

    #[test]
    fn long_error_texts_are_cut_at_a_character_boundary() {
        assert_eq!(shortened("short", 10), "short");
        let long = "é".repeat(10);
        let cut = shortened(&long, 5);
        assert!(cut.starts_with("éé..."), "{cut}");
        assert!(cut.ends_with("(20 bytes in all)"), "{cut}");
    }
}
