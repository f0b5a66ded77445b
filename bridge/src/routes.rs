//! The routing table owns the desired topic set split into shards: which shard each
//! subscription topic belongs to, and which shard (and subscription) each individual event
//! name goes to. Pure: built from names, compared with another table; no I/O.

use crate::entry::shard_of;
use genesys_notify::{Topic, TopicError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The topics of a deployment, by shard.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// Individual topic name (lower-cased) → (shard, subscription topic).
    names: HashMap<String, (u32, Arc<str>)>,
    /// Subscription topics per shard, in the order given, without duplicates.
    by_shard: Vec<Vec<String>>,
}

impl Routes {
    /// Splits `topics` into `shards` shards ([`shard_of`]). A topic given twice counts once; an
    /// individual name covered by two subscriptions (`v2.users.a.presence` and
    /// `v2.users.a?presence&routingStatus`) is routed to the first one's shard.
    ///
    /// # Errors
    /// The first name the library refuses, with its error.
    pub fn build(topics: &[String], shards: u32) -> Result<Routes, (String, TopicError)> {
        let shards = shards.max(1);
        let mut names = HashMap::new();
        let mut by_shard = vec![Vec::new(); shards as usize];
        let mut seen = HashSet::new();
        for name in topics {
            let topic = Topic::parse(name).map_err(|e| (name.clone(), e))?;
            if !seen.insert(topic.as_str().to_owned()) {
                continue;
            }
            let shard = shard_of(topic.as_str(), shards);
            let subscription: Arc<str> = topic.as_str().into();
            for individual in topic.expand() {
                names
                    .entry(individual.to_lowercase())
                    .or_insert((shard, subscription.clone()));
            }
            by_shard[shard as usize].push(topic.as_str().to_owned());
        }
        Ok(Routes { names, by_shard })
    }

    /// The shard and subscription topic of an event's topic name, if it is one of ours.
    pub fn route(&self, event_topic: &str) -> Option<&(u32, Arc<str>)> {
        if let Some(found) = self.names.get(event_topic) {
            return Some(found);
        }
        self.names.get(&event_topic.to_lowercase())
    }

    /// The subscription topics of `shard` (empty beyond the shard count).
    pub fn topics_of(&self, shard: u32) -> &[String] {
        self.by_shard
            .get(shard as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Subscription topics in all.
    pub fn len(&self) -> usize {
        self.by_shard.iter().map(Vec::len).sum()
    }

    /// Whether there is no topic.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What changes in `shard` from `self` to `next`: (topics added, topics removed).
    pub fn diff(&self, next: &Routes, shard: u32) -> (Vec<String>, Vec<String>) {
        let old: HashSet<&String> = self.topics_of(shard).iter().collect();
        let new: HashSet<&String> = next.topics_of(shard).iter().collect();
        let added = next
            .topics_of(shard)
            .iter()
            .filter(|t| !old.contains(t))
            .cloned()
            .collect();
        let removed = self
            .topics_of(shard)
            .iter()
            .filter(|t| !new.contains(t))
            .cloned()
            .collect();
        (added, removed)
    }
}

/// Spreads `topics` over clients (credentials) whose subscribed topics are `load` and whose
/// budgets are `capacity` (`max_channels × max_topics_per_channel`, 20 × 1 000 by default):
/// all on the client with the most room left (the lowest index on a tie), split over the next
/// ones when it has too little. Beyond every budget, the rest goes to the client with the most
/// room anyway, whose `subscribe` then fails with `TooManyTopics` (reported, never an
/// eviction).
pub fn place(load: &[usize], capacity: &[usize], topics: &[String]) -> Vec<(usize, Vec<String>)> {
    let mut load = load.to_vec();
    let mut parts = Vec::new();
    let mut rest = topics;
    while !rest.is_empty() {
        let (best, room) = (0..load.len())
            .map(|i| (i, capacity[i].saturating_sub(load[i])))
            .max_by_key(|(i, room)| (*room, std::cmp::Reverse(*i)))
            .unwrap_or((0, 0));
        let take = if room == 0 {
            rest.len()
        } else {
            room.min(rest.len())
        };
        let (now, later) = rest.split_at(take);
        load[best] += now.len();
        parts.push((best, now.to_vec()));
        rest = later;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_fills_the_client_with_most_room_and_splits_at_its_budget() {
        let topics: Vec<String> = (0..10).map(|i| format!("t.{i}")).collect();
        // Client 1 has more room: everything goes there.
        let p = place(&[5, 0], &[20, 20], &topics);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, 1);
        // Client 1 has room for 4 only, client 0 for 3, then nothing: 4 + 3 + the rest on the
        // client with most room (none left: the first), whose subscribe reports the overflow.
        let p = place(&[17, 16], &[20, 20], &topics);
        let sizes: Vec<(usize, usize)> = p.iter().map(|(c, t)| (*c, t.len())).collect();
        assert_eq!(sizes, [(1, 4), (0, 3), (0, 3)]);
        // 30 000 topics over two budgets of 20 000, in shard-sized calls: each stays within.
        let mut load = vec![0, 0];
        for _ in 0..64 {
            let shard: Vec<String> = (0..469).map(|i| format!("t.{i}")).collect();
            for (c, t) in place(&load, &[20_000, 20_000], &shard) {
                load[c] += t.len();
            }
        }
        assert!(load.iter().all(|l| *l <= 20_000), "{load:?}");
        assert_eq!(load.iter().sum::<usize>(), 64 * 469);
        assert!(load[0].abs_diff(load[1]) <= 469, "spread evenly: {load:?}");
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn combined_topics_route_their_individual_names_to_their_shard() {
        let r = Routes::build(&names(&["v2.users.A?presence&routingStatus"]), 64).unwrap();
        let shard = shard_of("v2.users.a?presence&routingstatus", 64);
        assert_eq!(r.route("v2.users.a.presence").unwrap().0, shard);
        assert_eq!(r.route("v2.users.A.routingStatus").unwrap().0, shard);
        assert_eq!(
            &*r.route("v2.users.a.presence").unwrap().1,
            r.topics_of(shard)[0]
        );
        assert!(r.route("v2.users.b.presence").is_none());
    }

    #[test]
    fn duplicates_count_once_and_bad_names_are_refused_by_name() {
        let r = Routes::build(&names(&["v2.users.a.presence", "V2.users.a.presence"]), 4).unwrap();
        assert_eq!(r.len(), 1);
        let (name, _) = Routes::build(&names(&["ok.topic", "bad topic"]), 4).unwrap_err();
        assert_eq!(name, "bad topic");
    }

    #[test]
    fn diff_gives_added_and_removed_topics_of_a_shard() {
        let before = Routes::build(&names(&["t.a", "t.b", "t.c"]), 1).unwrap();
        let after = Routes::build(&names(&["t.b", "t.c", "t.d"]), 1).unwrap();
        let (added, removed) = before.diff(&after, 0);
        assert_eq!(added, ["t.d"]);
        assert_eq!(removed, ["t.a"]);
        assert_eq!(after.diff(&after, 0), (vec![], vec![]));
    }
}
