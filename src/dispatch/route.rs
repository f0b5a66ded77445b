//! dispatch/route.rs owns a dispatcher thread's route cache: per topic name, the listeners
//! that match it, bounded in bytes and forgotten precisely when listeners change; it never
//! calls a listener.

use crate::event::Event;
use crate::listener::Listener;
use crate::topic::MAX_TOPIC_LEN;
use rustc_hash::FxHashMap;
use std::sync::Arc;

pub(super) type Route = Arc<[Arc<Listener<Event>>]>;

/// Bytes of routes one dispatcher thread remembers before it forgets them all: topic names
/// come from the service, but a wrong or hostile one may send any number of names of any
/// length, so the cache is bounded by its size, not by its entry count.
const ROUTE_CACHE_BYTES: usize = 16 << 20;
/// Topic names longer than this are routed without caching: the service's names are at most
/// [`MAX_TOPIC_LEN`] characters.
pub(super) const CACHED_TOPIC_MAX: usize = 4 * MAX_TOPIC_LEN;
/// What one cached route costs besides its topic name (twice: map key and index) and its
/// listeners: hash map slots, boxes and trie nodes, roughly.
const ROUTE_OVERHEAD: usize = 160;

/// A dispatcher thread's routes: per topic name as received, the listeners that match it.
///
/// An index of the cached names by lower-cased segments lets a listener change forget exactly
/// the routes its pattern matches (walking the pattern's path, every child at a `*`), so one
/// `on` or guard drop never costs a rescan of all cached topics, and the other topics keep
/// their routes.
#[derive(Default)]
pub(super) struct RouteCache {
    routes: FxHashMap<Box<str>, Route>,
    index: IndexNode,
    bytes: usize,
}

/// The cached topic names, by lower-cased segment.
#[derive(Default)]
struct IndexNode {
    children: FxHashMap<Box<str>, IndexNode>,
    /// The names as received (usually one spelling) whose segments end here.
    names: Vec<Box<str>>,
}

impl IndexNode {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.names.is_empty()
    }

    fn insert(&mut self, segments: &[&str], name: Box<str>) {
        match segments.split_first() {
            None => self.names.push(name),
            Some((first, rest)) => self
                .children
                .entry((*first).into())
                .or_default()
                .insert(rest, name),
        }
    }

    /// Takes out the names matched by the pattern `segments` (`*` matches any one segment).
    fn take_matching(&mut self, segments: &[&str], out: &mut Vec<Box<str>>) {
        let Some((first, rest)) = segments.split_first() else {
            out.append(&mut self.names);
            return;
        };
        if *first == "*" {
            self.children.retain(|_, child| {
                child.take_matching(rest, out);
                !child.is_empty()
            });
        } else if let Some(child) = self.children.get_mut(*first) {
            child.take_matching(rest, out);
            if child.is_empty() {
                self.children.remove(*first);
            }
        }
    }
}

fn route_cost(topic: &str, route: &Route) -> usize {
    2 * topic.len() + route.len() * std::mem::size_of::<Arc<Listener<Event>>>() + ROUTE_OVERHEAD
}

impl RouteCache {
    pub(super) fn get(&self, topic: &str) -> Option<&Route> {
        self.routes.get(topic)
    }

    pub(super) fn insert(&mut self, topic: &str, route: Route) {
        if topic.len() > CACHED_TOPIC_MAX {
            return;
        }
        let cost = route_cost(topic, &route);
        if self.bytes + cost > ROUTE_CACHE_BYTES {
            *self = RouteCache::default();
        }
        let lower = topic.to_ascii_lowercase();
        let segments: Vec<&str> = lower.split('.').collect();
        self.index.insert(&segments, topic.into());
        self.routes.insert(topic.into(), route);
        self.bytes += cost;
    }

    /// Forgets the routes of the topics `pattern` (lower-cased, `*` segments) matches.
    pub(super) fn forget_matching(&mut self, pattern: &str) {
        let segments: Vec<&str> = pattern.split('.').collect();
        let mut names = Vec::new();
        self.index.take_matching(&segments, &mut names);
        for name in names {
            if let Some(route) = self.routes.remove(&name) {
                self.bytes -= route_cost(&name, &route);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.routes.len()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::Registry;

    fn route(n: usize) -> Route {
        let registry = Registry::new(usize::MAX);
        let listeners: Vec<_> = (0..n)
            .map(|_| {
                registry
                    .add_event("v2.a.b".parse().unwrap(), Box::new(|_| {}))
                    .0
            })
            .collect();
        listeners.into()
    }

    #[test]
    fn a_change_forgets_only_the_routes_its_pattern_matches() {
        let mut cache = RouteCache::default();
        let topics: Vec<String> = (0..1000)
            .map(|i| format!("v2.users.u{i}.presence"))
            .chain((0..1000).map(|i| format!("v2.users.u{i}.routingStatus")))
            .collect();
        for topic in &topics {
            cache.insert(topic, route(0));
        }
        cache.insert("V2.Users.U7.Presence", route(1));
        assert_eq!(cache.len(), 2001);
        // An exact pattern: both spellings of that one topic, nothing else.
        cache.forget_matching("v2.users.u7.presence");
        assert_eq!(cache.len(), 1999);
        assert!(cache.get("v2.users.u7.presence").is_none());
        assert!(cache.get("V2.Users.U7.Presence").is_none());
        assert!(cache.get("v2.users.u8.presence").is_some());
        // A wildcard: every routingStatus topic (any case), no presence topic.
        cache.forget_matching("v2.users.*.routingstatus");
        assert_eq!(cache.len(), 999);
        assert!(cache.get("v2.users.u8.presence").is_some());
        // Patterns matching nothing cached change nothing.
        cache.forget_matching("v2.users.*");
        cache.forget_matching("v2.users.*.presence.x");
        cache.forget_matching("v2.queues.*.presence");
        assert_eq!(cache.len(), 999);
        cache.forget_matching("*.*.*.*");
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes, 0, "the byte count follows the entries");
        assert!(cache.index.is_empty(), "the index is pruned");
    }

    #[test]
    fn the_route_cache_is_bounded_in_bytes_whatever_the_names() {
        let mut cache = RouteCache::default();
        // Names of 700 bytes (a hostile or broken server): more than 16 MiB in total.
        for i in 0..40_000 {
            let topic = format!("v2.users.{i}{}.presence", "x".repeat(680));
            cache.insert(&topic, route(0));
            assert!(cache.bytes <= ROUTE_CACHE_BYTES);
        }
        assert!(cache.len() < 40_000);
        // A name far beyond the service's 200 characters is routed but not cached.
        let huge = format!("v2.users.{}.presence", "y".repeat(64 << 10));
        let before = cache.len();
        cache.insert(&huge, route(0));
        assert_eq!(cache.len(), before);
        assert!(cache.get(&huge).is_none());
    }
}
