//! client/unsubscribe.rs carries out an unsubscribe call: topics taken out of the slots' sets
//! (a combined topic narrowed to the parts kept), the new sets sent, emptied channels closed;
//! it never creates a channel.

use super::subscribe::parse_topics;
use super::Client;
use crate::channel::Slot;
use crate::error::ApiError;
use crate::error::Error;
use crate::event::Lifecycle;
use crate::topic::Topic;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// Why [`Client::unsubscribe`] failed, and what it had done by then.
///
/// Converts into [`Error`] (`?` works in functions returning `Error`), dropping the lists.
/// Boxed inside, so that a `Result` carrying it stays small.
pub struct UnsubscribeError {
    inner: Box<UnsubscribeFailure>,
}

struct UnsubscribeFailure {
    error: Error,
    removed: Vec<Topic>,
    pending: Vec<Topic>,
}

impl UnsubscribeError {
    fn new(error: Error, removed: Vec<Topic>, pending: Vec<Topic>) -> Self {
        UnsubscribeError {
            inner: Box::new(UnsubscribeFailure {
                error,
                removed,
                pending,
            }),
        }
    }

    /// Why the call failed (see [`Client::unsubscribe`], "Errors").
    pub fn error(&self) -> &Error {
        &self.inner.error
    }

    /// The error alone, as `?` converts it.
    pub fn into_error(self) -> Error {
        self.inner.error
    }

    /// Topics removed here and on the service, as [`Client::unsubscribe`] returns them.
    pub fn removed(&self) -> &[Topic] {
        &self.inner.removed
    }

    /// Topics removed here (no longer listed by [`Client::topics`]; their events, while any
    /// still arrive, are counted as unrouted) but not yet on the service: their channel's
    /// thread sends the new topic set again, with backoff, until the service takes it. Nothing
    /// is left to do for them: unsubscribing them again finds nothing to remove.
    pub fn pending(&self) -> &[Topic] {
        &self.inner.pending
    }
}

impl fmt::Debug for UnsubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("UnsubscribeError")
            .field("error", &inner.error)
            .field("removed", &inner.removed)
            .field("pending", &inner.pending)
            .finish()
    }
}

/// Prints the error, then what was done when something was: no `source()`, as for [`Error`]
/// (the cause is printed, and is [`UnsubscribeError::error`]).
impl fmt::Display for UnsubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        fmt::Display::fmt(&inner.error, f)?;
        if inner.removed.is_empty() && inner.pending.is_empty() {
            return Ok(());
        }
        write!(
            f,
            " (topics: {} removed, {} removed here and still to be removed on the service)",
            inner.removed.len(),
            inner.pending.len()
        )
    }
}

impl std::error::Error for UnsubscribeError {}

impl From<UnsubscribeError> for Error {
    fn from(e: UnsubscribeError) -> Error {
        e.into_error()
    }
}

impl Client {
    /// Removes topics, comparing what they expand to: unsubscribing `v2.users.<id>.presence`
    /// removes that topic, or that part of a combined topic subscribed
    /// (`v2.users.<id>?presence&routingStatus` becomes `v2.users.<id>.routingstatus`, whose
    /// events keep flowing); unsubscribing a combined topic removes every subscribed topic it
    /// covers. Returns what was removed: each topic removed whole, and for a combined topic
    /// split, the part removed. Topics not subscribed are ignored.
    /// The channel's remaining topics are sent with `PUT`; a channel left without topics is
    /// closed (socket closed, subscriptions deleted with `DELETE`, slot freed) and its channel
    /// kept to be reused by the next topics that need a new channel.
    ///
    /// # Errors
    /// An [`UnsubscribeError`]: its [`error`](UnsubscribeError::error) says why, its lists
    /// what was removed. By error:
    /// [`Error::Topic`] for an invalid name, and [`Error::Shutdown`] after
    /// [`Client::shutdown`]: nothing was removed. [`Error::Api`] or [`Error::Token`] when the
    /// service refuses the update of a channel: every topic asked for is removed client-side
    /// all the same, those of the channels updated in
    /// [`removed`](UnsubscribeError::removed), the others in
    /// [`pending`](UnsubscribeError::pending) (the
    /// channel's thread sends the new topic set again, with backoff, until the service takes
    /// it); there is nothing to retry.
    pub fn unsubscribe<I, S>(&self, topics: I) -> Result<Vec<Topic>, UnsubscribeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nothing = |error| UnsubscribeError::new(error, Vec::new(), Vec::new());
        self.check_open().map_err(nothing)?;
        let unwanted = parse_topics(topics).map_err(nothing)?;
        let mut names = HashSet::new();
        for topic in &unwanted {
            topic.for_each_name(|name| {
                names.insert(name.to_owned());
            });
        }
        let updates = self.inner.updates.lock();
        let slots: Vec<Arc<Slot>> = self.inner.slots.read().clone();
        let (deadline, _) = self.deadline();
        let mut removed = Vec::new();
        let mut pending = Vec::new();
        let mut first_error = None;
        let mut emptied = Vec::new();
        for slot in slots {
            let gone: Vec<Topic> = {
                let mut set = slot.topics();
                let mut gone = Vec::new();
                for topic in set.overlapping(&names) {
                    set.remove(&topic);
                    // A combined topic keeps the parts not asked to go.
                    if let Some(rest) = topic.narrowed(|name| !names.contains(name)) {
                        set.insert(rest);
                    }
                    if let Some(part) = topic.narrowed(|name| names.contains(name)) {
                        gone.push(part);
                    }
                }
                gone
            };
            if gone.is_empty() {
                continue;
            }
            let applied = match self.apply_with_retry(&slot, deadline) {
                // A channel gone is replaced by its thread with the set as it is now.
                Ok(_) | Err(ApiError::NotFound) => true,
                Err(error) => {
                    // The server still has the old set: the channel's thread sends the new one
                    // at its next chance.
                    slot.reapply_later();
                    first_error.get_or_insert(error);
                    false
                }
            };
            if let Some(channel) = slot.channel_id() {
                self.inner
                    .shared
                    .dispatcher
                    .lifecycle
                    .emit(Lifecycle::Unsubscribed {
                        channel,
                        topics: gone.clone(),
                    });
            }
            emptied.push(slot);
            if applied {
                removed.extend(gone);
            } else {
                pending.extend(gone);
            }
        }
        // A channel left without topics would keep a thread and a socket open for nothing, and
        // an isolated one would count against `max_channels` for ever.
        self.close_emptied(&emptied, Some(updates), deadline);
        match first_error {
            Some(error) => Err(UnsubscribeError::new(error.into(), removed, pending)),
            None => Ok(removed),
        }
    }
}
