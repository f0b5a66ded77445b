//! plan.rs decides where subscribed topics go: which of them are duplicates of what is already
//! subscribed (by what they expand to), which existing channels take the others, and which new
//! channels are needed. It is pure: it never does I/O, never locks, never sees a socket;
//! `Client::subscribe` gathers the loads, asks for a plan and carries it out.
//!
//! The rules (docs/protocol.md "Channels" and "Subscriptions"):
//! - at most `max_topics_per_channel` (1 000) topics on a channel, a combined topic counting as
//!   one, and at most `max_channels` (20) channels: a plan that does not fit is an error, never
//!   a silent eviction of one of our own channels;
//! - the room left on shared channels is filled first, in channel order, then new channels are
//!   opened, each filled up to the limit (so the topics take as few channels as possible);
//! - an isolated subscription gets channels of its own; no other topic ever joins an isolated
//!   channel;
//! - a channel that stopped (or is stopping) takes no topics and does not count;
//! - a topic whose every individual name is already brought by a subscribed topic (or by an
//!   earlier topic of the same call) is a duplicate; one that overlaps only in part is narrowed
//!   to the names not yet brought, so that no event arrives on two subscriptions.

use crate::topic::Topic;
use std::collections::HashSet;
use std::ops::Range;

/// The service's limits as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most topics on one channel (1 000 on the service).
    pub max_topics_per_channel: usize,
    /// Most channels (20 per user and OAuth client on the service).
    pub max_channels: usize,
}

/// One existing channel as the planner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Load {
    /// Topics on it now (reserved ones included).
    pub topics: usize,
    /// Created by an isolated subscription: takes no other topics.
    pub isolated: bool,
    /// Still running: false once it stopped or is stopping (it takes no topics and does not
    /// count against `max_channels`).
    pub open: bool,
}

/// Where the new topics go; ranges index the new topics as given to [`place`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// (index of an existing channel in the loads, the new topics it takes).
    pub to_existing: Vec<(usize, Range<usize>)>,
    /// One entry per channel to create: the new topics it starts with.
    pub new_channels: Vec<Range<usize>>,
}

/// Why the new topics cannot be placed. Nothing is subscribed then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PlanError {
    /// More topics than `max_channels × max_topics_per_channel` in all.
    TooManyTopics {
        /// Topics subscribed plus the new ones.
        requested: usize,
        /// `max_channels × max_topics_per_channel`.
        capacity: usize,
    },
    /// The topics would fit in number, but isolated channels keep their room to themselves.
    TooManyChannels {
        /// Channels the plan would need.
        needed: usize,
        /// The limit.
        max_channels: usize,
    },
}

/// Places `new` topics (isolated or not) on the channels described by `loads`.
///
/// # Errors
/// [`PlanError::TooManyTopics`] when the total exceeds the capacity of `max_channels`
/// channels, else [`PlanError::TooManyChannels`] when more channels than `max_channels` would
/// be open.
pub(crate) fn place(
    loads: &[Load],
    new: usize,
    isolated: bool,
    limits: Limits,
) -> Result<Plan, PlanError> {
    let per = limits.max_topics_per_channel.max(1);
    let mut plan = Plan::default();
    let mut next = 0;
    if !isolated {
        for (index, load) in loads.iter().enumerate() {
            if next == new {
                break;
            }
            if !load.open || load.isolated {
                continue;
            }
            let take = per.saturating_sub(load.topics).min(new - next);
            if take > 0 {
                plan.to_existing.push((index, next..next + take));
                next += take;
            }
        }
    }
    while next < new {
        let end = (next + per).min(new);
        plan.new_channels.push(next..end);
        next = end;
    }
    let open = loads.iter().filter(|l| l.open).count();
    let needed = open + plan.new_channels.len();
    if needed > limits.max_channels {
        let requested = loads
            .iter()
            .filter(|l| l.open)
            .map(|l| l.topics)
            .sum::<usize>()
            + new;
        let capacity = limits.max_channels.saturating_mul(per);
        return Err(if requested > capacity {
            PlanError::TooManyTopics {
                requested,
                capacity,
            }
        } else {
            PlanError::TooManyChannels {
                needed,
                max_channels: limits.max_channels,
            }
        });
    }
    Ok(plan)
}

/// What to subscribe of the topics asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Topics to subscribe, in the order asked; a topic overlapping in part is narrowed to the
    /// names not yet brought (`base?a&b` with `base.a` subscribed becomes `base.b`).
    pub new: Vec<Topic>,
    /// Topics that bring nothing new: a topic asked for whose every name is already brought,
    /// or, for a topic narrowed, each name it asked for that was already brought (as a plain
    /// topic).
    pub duplicates: Vec<Topic>,
}

/// Sorts `wanted` (validated; a topic named again is a duplicate) into new topics and
/// duplicates, comparing what they
/// expand to: `covered(name)` says whether a subscribed topic already brings events named
/// `name`; topics earlier in `wanted` count too.
pub(crate) fn resolve(wanted: Vec<Topic>, covered: impl Fn(&str) -> bool) -> Resolved {
    let mut taken: HashSet<String> = HashSet::new();
    let mut resolved = Resolved::default();
    for topic in wanted {
        let is_new = |name: &str| !taken.contains(name) && !covered(name);
        match topic.narrowed(is_new) {
            None => resolved.duplicates.push(topic),
            Some(narrowed) => {
                if narrowed != topic {
                    topic.for_each_name(|name| {
                        if taken.contains(name) || covered(name) {
                            if let Ok(plain) = Topic::parse(name) {
                                resolved.duplicates.push(plain);
                            }
                        }
                    });
                }
                narrowed.for_each_name(|name| {
                    taken.insert(name.to_owned());
                });
                resolved.new.push(narrowed);
            }
        }
    }
    resolved
}

#[cfg(test)]
// A plan's channels are ranges of topics: `[0..2]` is one channel holding topics 0 and 1, not a
// mistaken attempt at a vector of numbers.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_topics_per_channel: 1000,
        max_channels: 20,
    };

    fn shared(topics: usize) -> Load {
        Load {
            topics,
            isolated: false,
            open: true,
        }
    }

    fn isolated(topics: usize) -> Load {
        Load {
            topics,
            isolated: true,
            open: true,
        }
    }

    fn closed(topics: usize) -> Load {
        Load {
            topics,
            isolated: false,
            open: false,
        }
    }

    fn t(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    #[test]
    fn a_channel_takes_exactly_the_limit() {
        let plan = place(&[], 1000, false, LIMITS).unwrap();
        assert_eq!(plan.new_channels, [0..1000]);
        let plan = place(&[], 1001, false, LIMITS).unwrap();
        assert_eq!(plan.new_channels, [0..1000, 1000..1001]);
        // 999 on a channel: room for exactly one.
        let plan = place(&[shared(999)], 2, false, LIMITS).unwrap();
        assert_eq!(plan.to_existing, [(0, 0..1)]);
        assert_eq!(plan.new_channels, [1..2]);
        let plan = place(&[shared(1000)], 1, false, LIMITS).unwrap();
        assert!(plan.to_existing.is_empty());
        assert_eq!(plan.new_channels, [0..1]);
    }

    #[test]
    fn twenty_thousand_fit_and_one_more_is_too_many_topics() {
        let plan = place(&[], 20_000, false, LIMITS).unwrap();
        assert_eq!(plan.new_channels.len(), 20);
        assert!(plan.new_channels.iter().all(|r| r.len() == 1000));
        assert_eq!(
            place(&[], 20_001, false, LIMITS),
            Err(PlanError::TooManyTopics {
                requested: 20_001,
                capacity: 20_000
            })
        );
        // On top of 2 500 subscribed, 17 500 fit and 17 501 do not.
        let loads = [shared(1000), shared(1000), shared(500)];
        let plan = place(&loads, 17_500, false, LIMITS).unwrap();
        assert_eq!(plan.to_existing, [(2, 0..500)]);
        assert_eq!(plan.new_channels.len(), 17);
        assert_eq!(
            place(&loads, 17_501, false, LIMITS),
            Err(PlanError::TooManyTopics {
                requested: 20_001,
                capacity: 20_000
            })
        );
    }

    #[test]
    fn small_limits_are_exact_too() {
        let limits = Limits {
            max_topics_per_channel: 10,
            max_channels: 3,
        };
        let plan = place(&[], 25, false, limits).unwrap();
        assert_eq!(plan.new_channels, [0..10, 10..20, 20..25]);
        let loads = [shared(10), shared(10), shared(5)];
        assert_eq!(
            place(&loads, 6, false, limits),
            Err(PlanError::TooManyTopics {
                requested: 31,
                capacity: 30
            })
        );
        let plan = place(&loads, 5, false, limits).unwrap();
        assert_eq!(plan.to_existing, [(2, 0..5)]);
        assert!(plan.new_channels.is_empty());
        assert_eq!(place(&loads, 0, false, limits).unwrap(), Plan::default());
    }

    #[test]
    fn isolated_topics_get_channels_of_their_own_and_nothing_joins_them() {
        let loads = [shared(10), isolated(3)];
        let plan = place(&loads, 2, true, LIMITS).unwrap();
        assert!(
            plan.to_existing.is_empty(),
            "isolated never joins: {plan:?}"
        );
        assert_eq!(plan.new_channels, [0..2]);
        // A shared topic skips the isolated channel's room.
        let plan = place(&[isolated(3), shared(999)], 3, false, LIMITS).unwrap();
        assert_eq!(plan.to_existing, [(1, 0..1)]);
        assert_eq!(plan.new_channels, [1..3]);
        // An isolated group over the per-channel limit spans channels of its own.
        let plan = place(&[shared(1)], 1500, true, LIMITS).unwrap();
        assert_eq!(plan.new_channels, [0..1000, 1000..1500]);
    }

    #[test]
    fn isolated_channels_keep_their_room_so_channels_run_out_first() {
        let limits = Limits {
            max_topics_per_channel: 10,
            max_channels: 2,
        };
        let loads = [isolated(1), isolated(1)];
        assert_eq!(
            place(&loads, 1, false, limits),
            Err(PlanError::TooManyChannels {
                needed: 3,
                max_channels: 2
            })
        );
        assert_eq!(
            place(&[isolated(1)], 2, true, LIMITS),
            Ok(Plan {
                to_existing: vec![],
                new_channels: vec![0..2]
            })
        );
    }

    #[test]
    fn stopped_channels_take_nothing_and_do_not_count() {
        let limits = Limits {
            max_topics_per_channel: 10,
            max_channels: 2,
        };
        let loads = [closed(0), closed(3), shared(9)];
        let plan = place(&loads, 3, false, limits).unwrap();
        assert_eq!(plan.to_existing, [(2, 0..1)]);
        assert_eq!(plan.new_channels, [1..3]);
        // Twenty emptied and closed channels do not stop a twenty-first subscription.
        let loads = [closed(0); 20];
        assert_eq!(place(&loads, 1, true, LIMITS).unwrap().new_channels, [0..1]);
    }

    #[test]
    fn room_is_filled_in_channel_order_before_any_new_channel() {
        // Fragmented channels: every gap is used, first to last, and only the rest opens
        // channels, each full but the last.
        let loads = [shared(998), shared(1000), shared(500), shared(999)];
        let plan = place(&loads, 2504, false, LIMITS).unwrap();
        assert_eq!(plan.to_existing, [(0, 0..2), (2, 2..502), (3, 502..503)]);
        assert_eq!(plan.new_channels, [503..1503, 1503..2503, 2503..2504]);
    }

    #[test]
    fn duplicates_are_found_by_what_topics_expand_to() {
        let subscribed: HashSet<&str> = ["v2.users.a.presence", "v2.users.b.presence"].into();
        let covered = |name: &str| subscribed.contains(name);
        let wanted = vec![
            // Exactly what is subscribed.
            t("v2.users.a.presence"),
            // Brings b.routingstatus, and b.presence which is there already: narrowed.
            t("v2.users.b?presence&routingStatus"),
            // New.
            t("v2.users.c?routingStatus&presence"),
            // Brought by the topic just before, in another spelling.
            t("v2.users.c.presence"),
            t("v2.users.c?presence&routingstatus&geolocation"),
        ];
        let resolved = resolve(wanted, covered);
        assert_eq!(
            resolved.new,
            [
                t("v2.users.b.routingstatus"),
                t("v2.users.c?presence&routingstatus"),
                t("v2.users.c.geolocation"),
            ]
        );
        assert_eq!(
            resolved.duplicates,
            [
                t("v2.users.a.presence"),
                t("v2.users.b.presence"),
                t("v2.users.c.presence"),
                t("v2.users.c.presence"),
                t("v2.users.c.routingstatus"),
            ]
        );
    }

    #[test]
    fn a_combined_topic_covered_by_plain_ones_is_a_duplicate() {
        let subscribed: HashSet<&str> = ["v2.users.a.presence", "v2.users.a.routingstatus"].into();
        let resolved = resolve(vec![t("v2.users.a?routingstatus&presence")], |n| {
            subscribed.contains(n)
        });
        assert!(resolved.new.is_empty());
        assert_eq!(
            resolved.duplicates,
            [t("v2.users.a?presence&routingstatus")]
        );
    }
}
