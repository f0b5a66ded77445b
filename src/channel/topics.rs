//! channel/topics.rs owns a channel slot's desired topic set ([`TopicSet`]) and the slot's
//! incremental subscription path (`POST .../subscriptions`, batched); it never decides where a
//! topic goes (plan.rs does) and never reads a socket.
//!
//! The set is the one source of truth for a channel's topics: its count (health), the names its
//! topics expand to (duplicate detection, docs/protocol.md "Subscriptions": a combined topic's
//! events arrive under the individual names), and the topics waiting to be sent with `POST`.
//!
//! Batching: `subscribe` calls that add topics to the same channel while a `POST` to it is in
//! flight join one batch, sent by whichever of them gets the channel's update lock first (group
//! commit). Each call's cost is its own topics plus one answer, never a copy of the whole set.

use super::{Shared, Slot};
use crate::api::ChannelInfo;
use crate::channel_id::ChannelId;
use crate::error::ApiError;
use crate::event::Lifecycle;
use crate::topic::Topic;
use crate::topic::{TopicResult, TopicState};
use rustc_hash::FxHashSet;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// The topics of one channel slot, with the individual names they expand to.
#[derive(Debug, Default)]
pub(crate) struct TopicSet {
    topics: BTreeSet<Topic>,
    /// For combined topics only: each individual name → the combined topic bringing it. A plain
    /// topic is its own name and is found in `topics`.
    combined_names: HashMap<String, Topic>,
    /// Topics added and not yet sent with `POST`, and the batch they will be sent in.
    unsent: Option<(Vec<Topic>, Arc<Batch>)>,
    /// Topics reserved by `subscribe` calls that have not reported them yet, with the rejection
    /// a whole-set `PUT` (the thread re-applying the set) gave one meanwhile: such a topic
    /// leaves the set before the call's `POST` carries it, and the call reports this answer.
    awaiting: HashMap<Topic, Option<TopicResult>>,
}

/// One `POST` shared by the calls whose topics it carries.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    result: OnceLock<Result<Vec<TopicResult>, ApiError>>,
}

impl TopicSet {
    /// A set holding `topics`.
    pub(crate) fn of(topics: impl IntoIterator<Item = Topic>) -> TopicSet {
        let mut set = TopicSet::default();
        for topic in topics {
            set.insert(topic);
        }
        set
    }

    /// Number of topics (a combined topic counts as one, as for the service's limit).
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }

    /// The topics, sorted.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Topic> {
        self.topics.iter()
    }

    /// The topic that brings events named `name` (an individual, lower-cased name), if any.
    pub(crate) fn covering(&self, name: &str) -> Option<&Topic> {
        self.topics
            .get(name)
            .or_else(|| self.combined_names.get(name))
    }

    /// Adds `topic`; false when it was there already.
    pub(crate) fn insert(&mut self, topic: Topic) -> bool {
        if self.topics.contains(&topic) {
            return false;
        }
        if topic.is_combined() {
            topic.for_each_name(|name| {
                self.combined_names.insert(name.to_owned(), topic.clone());
            });
        }
        self.topics.insert(topic);
        true
    }

    /// Adds `topic` for a `subscribe` call, which takes its answer back with
    /// [`TopicSet::take_rejection`] once it reports it.
    pub(crate) fn reserve(&mut self, topic: Topic) {
        self.awaiting.insert(topic.clone(), None);
        self.insert(topic);
    }

    /// The rejection a reserved `topic` met before its call reported it, if any; it is reserved
    /// no more.
    pub(crate) fn take_rejection(&mut self, topic: &Topic) -> Option<TopicResult> {
        self.awaiting.remove(topic).flatten()
    }

    /// Removes `topic`; false when it was not there.
    pub(crate) fn remove(&mut self, topic: &Topic) -> bool {
        if !self.topics.remove(topic) {
            return false;
        }
        if topic.is_combined() {
            topic.for_each_name(|name| {
                if self.combined_names.get(name) == Some(topic) {
                    self.combined_names.remove(name);
                }
            });
        }
        true
    }

    /// The topics whose events include some of `names`' (individual names).
    pub(crate) fn overlapping(&self, names: &HashSet<String>) -> Vec<Topic> {
        let found: BTreeSet<&Topic> = names.iter().filter_map(|n| self.covering(n)).collect();
        found.into_iter().cloned().collect()
    }

    /// Queues `topics` (already in the set) for the next `POST`; returns the batch they go in.
    fn queue_post(&mut self, topics: &[Topic]) -> Arc<Batch> {
        let (queued, batch) = self
            .unsent
            .get_or_insert_with(|| (Vec::new(), Arc::new(Batch::default())));
        queued.extend(topics.iter().cloned());
        batch.clone()
    }

    /// Takes the queued topics still in the set (one unsubscribed meanwhile is not sent, or
    /// the server would keep a topic the client no longer has) and their batch.
    fn take_unsent(&mut self) -> Option<(Vec<Topic>, Arc<Batch>)> {
        let (mut queued, batch) = self.unsent.take()?;
        queued.retain(|topic| self.topics.contains(topic));
        Some((queued, batch))
    }
}

impl Slot {
    /// Gives a slot not started yet an existing channel (emptied of subscriptions) instead of
    /// a new one: its thread connects to it and subscribes the slot's topics with `PUT`.
    pub(crate) fn reuse_channel(&self, channel: ChannelInfo) {
        self.set_channel(channel);
    }

    /// The number of topics of the slot (health, packing).
    pub(crate) fn topic_count(&self) -> usize {
        self.topics().len()
    }

    /// Adds `topics` (already in the slot's set, reserved by the caller) to the channel on the
    /// server with `POST .../subscriptions?ignoreErrors=true` (docs/protocol.md
    /// "Subscriptions": `POST` adds, `PUT` replaces), batched with the other calls adding
    /// topics to this channel meanwhile. Rejected topics are removed from the set. Returns the
    /// results for `topics` only.
    ///
    /// # Errors
    /// [`ApiError::NotFound`] when the slot has no channel (yet) or the channel is gone; any
    /// other [`ApiError`] of the call. Either way the topics stay in the set: the caller removes
    /// them, or leaves them for the channel's thread to `PUT` with the rest.
    pub(crate) fn post_topics(
        &self,
        shared: &Shared,
        topics: &[Topic],
    ) -> Result<Vec<TopicResult>, ApiError> {
        let batch = self.topics().queue_post(topics);
        let _apply = self.lock_updates();
        let result = match batch.result.get() {
            // Sent by another call of the same batch while this one waited for the lock.
            Some(result) => result.clone(),
            None => {
                // Batches are taken only under the update lock and this one is not sent yet:
                // the queued batch is this one.
                let (queued, taken) = self
                    .topics()
                    .take_unsent()
                    .expect("an unsent batch is queued");
                debug_assert!(Arc::ptr_eq(&taken, &batch));
                let result = if queued.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.send_post(shared, &queued)
                };
                let _ = taken.result.set(result.clone());
                result
            }
        };
        let mine: HashSet<&str> = topics.iter().map(Topic::as_str).collect();
        result.map(|results| {
            results
                .into_iter()
                .filter(|r| mine.contains(r.topic.as_str()))
                .collect()
        })
    }

    /// One `POST` of `topics`, under the update lock. Returns the results for `topics` (the
    /// service lists the channel's other topics too), normalised to our spelling.
    fn send_post(&self, shared: &Shared, topics: &[Topic]) -> Result<Vec<TopicResult>, ApiError> {
        if self.is_stopping() {
            // After the final DELETE of a shutdown, nothing may subscribe again.
            return Err(ApiError::Transport("the channel is shutting down".into()));
        }
        let channel = self.channel().ok_or(ApiError::NotFound)?;
        let names: Vec<String> = topics.iter().map(|t| t.as_str().to_owned()).collect();
        let sent: FxHashSet<&str> = names.iter().map(String::as_str).collect();
        // The answer lists every topic of the channel: keep those of this request, without
        // copying the others. The service echoes our spelling; another spelling (case, order of
        // a combined topic's parts) is normalised before it is compared.
        let normalised = |id: &str| -> Option<Topic> {
            // One pass over the id: this runs for every topic of the channel's answer.
            let canonical = !id.bytes().any(|b| b == b'?' || b.is_ascii_uppercase());
            (!canonical)
                .then(|| Topic::parse(id).ok())
                .flatten()
                .filter(|topic| sent.contains(topic.as_str()))
        };
        let keep = |id: &str| sent.contains(id) || normalised(id).is_some();
        let answer = shared.api.post_subscriptions(&channel.id, &names, &keep)?;
        self.renewed(std::time::Instant::now());
        let mut results = Vec::with_capacity(topics.len());
        let mut answered = FxHashSet::default();
        for mut result in answer {
            if !sent.contains(result.topic.as_str()) {
                match normalised(&result.topic) {
                    Some(topic) => result.topic = topic.as_str().to_owned(),
                    None => continue,
                }
            }
            if answered.insert(result.topic.clone()) {
                results.push(result);
            }
        }
        self.settle(shared, &channel.id, &results);
        Ok(results)
    }

    /// After the service answered a subscription request on channel `channel_id`: the topics
    /// it rejected leave the set (they are not kept: the user subscribes them again once the
    /// permission is granted), and [`Lifecycle::Subscribed`] reports the results.
    pub(super) fn settle(&self, shared: &Shared, channel_id: &str, results: &[TopicResult]) {
        let rejected: Vec<(Topic, &TopicResult)> = results
            .iter()
            .filter(|r| r.state == TopicState::Rejected)
            .filter_map(|r| Some((Topic::parse(&r.topic).ok()?, r)))
            .collect();
        if !rejected.is_empty() {
            let mut set = self.topics();
            for (topic, result) in rejected {
                set.remove(&topic);
                // A call that reserved it reports this answer: its `POST` no longer carries it.
                if let Some(answer) = set.awaiting.get_mut(&topic) {
                    answer.get_or_insert_with(|| result.clone());
                }
            }
        }
        if !results.is_empty() {
            shared.emit(Lifecycle::Subscribed {
                channel: ChannelId::new(channel_id),
                results: results.to_vec(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    #[test]
    fn the_count_is_the_set_and_names_follow_inserts_and_removals() {
        let mut set = TopicSet::of([t("v2.users.a.presence")]);
        assert_eq!(set.len(), 1);
        assert!(!set.insert(t("V2.users.A.presence")), "same topic once");
        assert!(set.insert(t("v2.users.b?presence&routingStatus")));
        assert_eq!(set.len(), 2, "a combined topic counts as one");
        assert_eq!(
            set.covering("v2.users.b.routingstatus"),
            Some(&t("v2.users.b?presence&routingstatus"))
        );
        assert_eq!(
            set.covering("v2.users.a.presence"),
            Some(&t("v2.users.a.presence"))
        );
        assert_eq!(set.covering("v2.users.b.geolocation"), None);
        let names: HashSet<String> = ["v2.users.b.presence", "v2.users.c.presence"]
            .map(String::from)
            .into();
        assert_eq!(
            set.overlapping(&names),
            [t("v2.users.b?presence&routingstatus")]
        );
        assert!(set.remove(&t("v2.users.b?routingstatus&presence")));
        assert!(!set.remove(&t("v2.users.b?routingstatus&presence")));
        assert_eq!(set.covering("v2.users.b.presence"), None);
        assert_eq!(set.len(), 1);
        assert!(set.remove(&t("v2.users.a.presence")));
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn calls_queued_before_a_send_share_one_batch() {
        let mut set = TopicSet::of([
            t("v2.users.a.presence"),
            t("v2.users.b.presence"),
            t("v2.users.c.presence"),
            t("v2.users.d.presence"),
        ]);
        let first = set.queue_post(&[t("v2.users.a.presence")]);
        let second = set.queue_post(&[t("v2.users.b.presence")]);
        // Removed before the send (a concurrent unsubscribe): not sent.
        let gone = set.queue_post(&[t("v2.users.d.presence")]);
        assert!(set.remove(&t("v2.users.d.presence")));
        assert!(Arc::ptr_eq(&gone, &first));
        assert!(Arc::ptr_eq(&first, &second));
        let (queued, batch) = set.take_unsent().unwrap();
        assert_eq!(queued, [t("v2.users.a.presence"), t("v2.users.b.presence")]);
        assert!(Arc::ptr_eq(&batch, &first));
        let third = set.queue_post(&[t("v2.users.c.presence")]);
        assert!(!Arc::ptr_eq(&third, &first), "a new batch after a send");
    }
}
