//! plan.rs turns the topics to resynchronise into REST batches: each individual topic goes to
//! the first resource serving it, and each resource's topics are cut into batches of its bulk
//! limit. Pure: no I/O, no clock.
//!
//! The bound this gives (documented in docs/protocol.md, "State resources"): for `p` presence
//! topics, `r` routing-status topics and `c_i` topics of a custom resource with batch size
//! `b_i`, a resync makes `ceil(p / 50) + ceil(r / 100) + Σ ceil(c_i / b_i)` bulk requests, plus
//! one request per topic the bulk answer left out (users deleted meanwhile, an `expand` not
//! honoured), plus the retries of failed requests (at most the resync backoff's `max_retries`
//! per request).

use super::resource::Resource;
use crate::topic::Topic;
use std::collections::HashSet;
use std::sync::Arc;

/// Topics read by one request to one resource.
#[derive(Clone)]
pub(crate) struct Batch {
    /// Index into the resource list.
    pub resource: usize,
    /// Individual, lower-cased event topics, at most the resource's batch limit.
    pub topics: Vec<Topic>,
}

/// What to do for a set of subscription topics.
pub(crate) struct Plan {
    pub batches: Vec<Batch>,
    /// Individual topics no resource serves: their `Gap` is their only signal.
    pub without_resource: Vec<Topic>,
}

/// Plans the reads for `topics` (subscription topics; combined ones are split into the
/// individual names their events arrive under). Duplicates are read once.
pub(crate) fn plan(topics: &[Topic], resources: &[Arc<dyn Resource>]) -> Plan {
    let mut seen = HashSet::new();
    let mut per_resource: Vec<Vec<Topic>> = vec![Vec::new(); resources.len()];
    let mut without_resource = Vec::new();
    for topic in topics {
        for name in topic.expand() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Ok(individual) = Topic::parse(&name) else {
                continue;
            };
            match resources.iter().position(|r| r.serves(individual.as_str())) {
                Some(index) => per_resource[index].push(individual),
                None => without_resource.push(individual),
            }
        }
    }
    let mut batches = Vec::new();
    for (resource, list) in per_resource.into_iter().enumerate() {
        let limit = resources[resource].batch_limit().max(1);
        for chunk in list.chunks(limit) {
            batches.push(Batch {
                resource,
                topics: chunk.to_vec(),
            });
        }
    }
    Plan {
        batches,
        without_resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resync::builtin::{PresenceResource, RoutingStatusResource};
    use crate::resync::resource::StateSnapshot;
    use crate::resync::StateResource;

    fn builtins() -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(PresenceResource), Arc::new(RoutingStatusResource)]
    }

    fn user(i: usize) -> String {
        format!("00000000-0000-4000-8000-{i:012}")
    }

    fn topics(names: impl IntoIterator<Item = String>) -> Vec<Topic> {
        names
            .into_iter()
            .map(|n| Topic::parse(&n).unwrap())
            .collect()
    }

    #[test]
    fn twenty_thousand_presence_topics_take_four_hundred_bulk_reads() {
        let t = topics((0..20_000).map(|i| format!("v2.users.{}.presence", user(i))));
        let plan = plan(&t, &builtins());
        assert_eq!(plan.batches.len(), 400);
        assert!(plan.batches.iter().all(|b| b.topics.len() == 50));
        assert!(plan.without_resource.is_empty());
    }

    #[test]
    fn combined_topics_split_into_presence_and_routing_batches_at_their_limits() {
        let t = topics((0..101).map(|i| format!("v2.users.{}?presence&routingStatus", user(i))));
        let plan = plan(&t, &builtins());
        let presence: Vec<usize> = plan
            .batches
            .iter()
            .filter(|b| b.resource == 0)
            .map(|b| b.topics.len())
            .collect();
        let routing: Vec<usize> = plan
            .batches
            .iter()
            .filter(|b| b.resource == 1)
            .map(|b| b.topics.len())
            .collect();
        assert_eq!(presence, vec![50, 50, 1]);
        assert_eq!(routing, vec![100, 1]);
        assert_eq!(
            plan.batches[0].topics[0].as_str(),
            format!("v2.users.{}.presence", user(0))
        );
    }

    #[test]
    fn duplicates_are_read_once_and_topics_without_resource_are_set_aside() {
        let u = user(1);
        let t = topics([
            format!("v2.users.{u}.presence"),
            format!("v2.users.{u}?presence&conversations"),
            "v2.routing.queues.q1.conversations".to_owned(),
        ]);
        let plan = plan(&t, &builtins());
        assert_eq!(plan.batches.len(), 1);
        assert_eq!(plan.batches[0].topics.len(), 1);
        let rest: Vec<&str> = plan.without_resource.iter().map(Topic::as_str).collect();
        assert_eq!(
            rest,
            vec![
                format!("v2.users.{u}.conversations").as_str(),
                "v2.routing.queues.q1.conversations"
            ]
        );
    }

    #[test]
    fn the_first_resource_serving_a_topic_wins_and_custom_batches_use_their_size() {
        let custom = StateResource::bulk(
            "v2.users.*.presence",
            3,
            |_| "/api/v2/x".to_owned(),
            |_, _| Ok(Vec::<StateSnapshot>::new()),
        )
        .unwrap();
        let mut resources: Vec<Arc<dyn Resource>> = vec![Arc::new(custom)];
        resources.extend(builtins());
        let t = topics((0..7).map(|i| format!("v2.users.{}.presence", user(i))));
        let plan = plan(&t, &resources);
        let sizes: Vec<(usize, usize)> = plan
            .batches
            .iter()
            .map(|b| (b.resource, b.topics.len()))
            .collect();
        assert_eq!(sizes, vec![(0, 3), (0, 3), (0, 1)]);
    }
}
