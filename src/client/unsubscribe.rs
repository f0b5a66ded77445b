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
use std::sync::Arc;

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
    /// [`Error::Topic`] for an invalid name (nothing is removed); [`Error::Api`] or
    /// [`Error::Token`] when the service refuses the update: the topics are removed client-side
    /// all the same (their events, if any still arrive, are counted as unrouted) and the
    /// channel's thread sends the new topic set again, with backoff, until the service takes
    /// it; [`Error::Shutdown`].
    pub fn unsubscribe<I, S>(&self, topics: I) -> Result<Vec<Topic>, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.check_open()?;
        let unwanted = parse_topics(topics)?;
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
            match self.apply_with_retry(&slot, deadline) {
                Ok(_) | Err(ApiError::NotFound) => {}
                Err(error) => {
                    // The server still has the old set: the channel's thread sends the new one
                    // at its next chance.
                    slot.reapply_later();
                    first_error.get_or_insert(error);
                }
            }
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
            removed.extend(gone);
        }
        // A channel left without topics would keep a thread and a socket open for nothing, and
        // an isolated one would count against `max_channels` for ever.
        self.close_emptied(&emptied, Some(updates), deadline);
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(removed),
        }
    }
}
