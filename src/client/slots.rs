//! client/slots.rs keeps the client's slot list tidy: it forgets slots whose threads stopped,
//! closes slots left without topics and keeps their server-side channels as spares for the next
//! new slot; it never adds a slot (subscribe.rs does).

use super::Client;
use crate::api::ChannelInfo;
use crate::channel::Slot;
use crate::error::StopReason;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a subscribe call waits for channel threads that are finishing their stop.
const STOPPING_WAIT: Duration = Duration::from_secs(1);

impl Client {
    /// A channel whose thread stopped for good (retry budget spent, permanent failure, no topic
    /// left) no longer holds its topics: forget it, so that it does not count against
    /// `max_channels` and subscribing its topics again gives them a new channel instead of
    /// reporting them as duplicates.
    pub(super) fn forget_stopped(&self) {
        // A thread that is stopping (its channel emptied by a renewal, or a close that timed
        // out) is finishing its last `DELETE`: give it a moment, so that its channel can be
        // reused rather than another created.
        let stopping: Vec<Arc<Slot>> = self
            .inner
            .slots
            .read()
            .iter()
            .filter(|s| s.is_stopping() && !s.is_dead())
            .cloned()
            .collect();
        let within = Instant::now() + STOPPING_WAIT;
        for slot in stopping {
            slot.join_until(within);
        }
        let mut emptied = Vec::new();
        self.inner.slots.write().retain(|s| {
            if !s.is_dead() {
                return true;
            }
            // A channel stopped because a renewal rejected its last topics had its
            // subscriptions deleted: it can serve the next new slot.
            if matches!(s.stop_reason(), Some(StopReason::NoTopics)) {
                emptied.extend(s.take_channel());
            }
            false
        });
        for channel in emptied {
            self.keep_spare(channel);
        }
    }

    /// Keeps an emptied channel for the next new slot (at most `max_channels` of them).
    fn keep_spare(&self, channel: ChannelInfo) {
        let mut spare = self.inner.spare_channels.lock();
        if spare.len() < self.inner.shared.config.max_channels {
            spare.push(channel);
        }
    }

    /// Closes those of `slots` left without topics (under the update lock, taken again if
    /// `held` is `None`): their sockets are closed, their subscriptions deleted, their slots
    /// freed, and their server-side channels kept to be reused by the next new slot (the
    /// service has no call to delete a channel, and each one counts toward its 20).
    pub(super) fn close_emptied(
        &self,
        slots: &[Arc<Slot>],
        held: Option<parking_lot::MutexGuard<'_, ()>>,
        deadline: Instant,
    ) {
        if slots.iter().all(|s| s.topic_count() > 0) {
            return;
        }
        let _updates = held.unwrap_or_else(|| self.inner.updates.lock());
        for slot in slots {
            if slot.topic_count() > 0 || slot.is_stopping() {
                continue;
            }
            slot.stop(true);
            if slot.join_until(deadline) {
                self.inner.slots.write().retain(|s| !Arc::ptr_eq(s, slot));
                if let Some(channel) = slot.take_channel() {
                    self.keep_spare(channel);
                }
            }
        }
    }
}
