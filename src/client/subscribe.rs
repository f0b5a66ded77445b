//! client/subscribe.rs carries out a subscribe call: duplicates, the packing plan, room
//! reserved on existing channels, new channels, and the report; it never decides the packing
//! itself (plan.rs does) and never touches a socket.

use super::retry::setup_error;
use super::Client;
use crate::channel::topics::TopicSet;
use crate::channel::Slot;
use crate::error::Error;
use crate::event::Lifecycle;
use crate::plan::{self, Limits, Load, PlanError};
use crate::topic::Topic;
use crate::topic::{TopicResult, TopicState};
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What [`Client::subscribe`] did with each topic it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "some topics may have been rejected; check `rejected`"]
pub struct SubscribeReport {
    /// Topics now subscribed (state `Permitted`).
    pub permitted: Vec<Topic>,
    /// Topics the service refused, with `rejectionReason` and `missingPermissions`. They are not
    /// kept: subscribe them again once the permission is granted.
    pub rejected: Vec<TopicResult>,
    /// Topics that were already subscribed (or named earlier in the same call, in any spelling
    /// of the same subscription): nothing was sent for them.
    pub duplicates: Vec<Topic>,
}

/// Why [`Client::subscribe`] failed, and what it had done by then: every valid topic it was
/// given is in exactly one of `report().permitted`, `report().rejected`, `report().duplicates`,
/// [`pending`](SubscribeError::pending) and [`not_subscribed`](SubscribeError::not_subscribed)
/// (a combined topic narrowed to the parts it adds is listed as for a successful call). One
/// exception: [`Error::Topic`] (an invalid name) refuses the whole call before anything is
/// done, and every list is empty: correct the name and make the same call again.
///
/// Converts into [`Error`] (`?` works in functions returning `Error`), dropping the lists.
/// Boxed inside, so that a `Result` carrying it stays small.
pub struct SubscribeError {
    inner: Box<SubscribeFailure>,
}

struct SubscribeFailure {
    error: Error,
    report: SubscribeReport,
    pending: Vec<Topic>,
    not_subscribed: Vec<Topic>,
}

impl SubscribeError {
    fn new(
        error: Error,
        report: SubscribeReport,
        pending: Vec<Topic>,
        not_subscribed: Vec<Topic>,
    ) -> Self {
        SubscribeError {
            inner: Box::new(SubscribeFailure {
                error,
                report,
                pending,
                not_subscribed,
            }),
        }
    }

    /// Why the call failed (see [`Client::subscribe`], "Errors").
    pub fn error(&self) -> &Error {
        &self.inner.error
    }

    /// The error alone, as `?` converts it.
    pub fn into_error(self) -> Error {
        self.inner.error
    }

    /// What the service answered before the failure: those `permitted` are subscribed and stay
    /// (do not subscribe them again: that reports them as duplicates), those `rejected` are
    /// not kept, `duplicates` needed nothing.
    pub fn report(&self) -> &SubscribeReport {
        &self.inner.report
    }

    /// Topics on a new channel whose thread keeps trying after the call's deadline
    /// ([`Error::Timeout`]): they stay wanted (listed by [`Client::topics`]) and are subscribed
    /// once the channel connects ([`Lifecycle::Subscribed`] then gives the service's answer).
    /// Do not subscribe them again; unsubscribe them to give up.
    pub fn pending(&self) -> &[Topic] {
        &self.inner.pending
    }

    /// Topics for which nothing is in place (never sent, or their channel gave up): subscribe
    /// them again once the cause is dealt with.
    pub fn not_subscribed(&self) -> &[Topic] {
        &self.inner.not_subscribed
    }

    /// A failure before anything was sent: `not_subscribed` are the topics of the call.
    fn before_sending(error: Error, report: SubscribeReport, not_subscribed: Vec<Topic>) -> Self {
        SubscribeError::new(error, report, Vec::new(), not_subscribed)
    }
}

impl fmt::Debug for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("SubscribeError")
            .field("error", &inner.error)
            .field("report", &inner.report)
            .field("pending", &inner.pending)
            .field("not_subscribed", &inner.not_subscribed)
            .finish()
    }
}

/// Prints the error, then what was done when something was: no `source()`, as for [`Error`]
/// (the cause is printed, and is [`SubscribeError::error`]).
impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        fmt::Display::fmt(&inner.error, f)?;
        let r = &inner.report;
        let counts = [
            (r.permitted.len(), "permitted"),
            (r.rejected.len(), "rejected"),
            (r.duplicates.len(), "duplicates"),
            (inner.pending.len(), "pending on a channel still trying"),
            (inner.not_subscribed.len(), "not subscribed"),
        ];
        if counts[..4].iter().all(|(n, _)| *n == 0) {
            return Ok(());
        }
        f.write_str(" (topics:")?;
        let mut first = true;
        for (n, what) in counts.iter().filter(|(n, _)| *n > 0) {
            write!(f, "{} {n} {what}", if first { "" } else { "," })?;
            first = false;
        }
        f.write_str(")")
    }
}

impl std::error::Error for SubscribeError {}

impl From<SubscribeError> for Error {
    fn from(e: SubscribeError) -> Error {
        e.into_error()
    }
}

/// The topics named, validated and in their one spelling ([`Topic::parse`]), repeats kept: a
/// subscribe call reports a repeat as a duplicate, like any topic an earlier one brings.
pub(super) fn parse_topics<I, S>(topics: I) -> Result<Vec<Topic>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    topics
        .into_iter()
        .map(|name| {
            let name = name.as_ref();
            Topic::parse(name).map_err(|error| Error::Topic {
                name: name.to_owned(),
                error,
            })
        })
        .collect()
}

impl Client {
    /// Subscribes topics, packing them into as few channels as the limits allow, and returns
    /// once each is `Permitted` or `Rejected` by the service (or the deadline passes).
    ///
    /// Topic names are validated and lower-cased; combined topics
    /// (`v2.users.<id>?presence&routingStatus`) count as one, and their parts are put in one
    /// order (`?presence&routingstatus`), so the same combination spelled in another order or
    /// case is the same topic, in this call, a later one and [`Client::unsubscribe`] alike.
    ///
    /// Duplicates are found by what a topic expands to (docs/protocol.md, "How this crate
    /// subscribes"): events of a combined topic arrive under the individual names
    /// (`v2.users.<id>.presence`, ...), so a topic whose every name is already brought by a
    /// subscribed topic (or by an earlier topic of the same call, the same topic named again
    /// included) is reported as a duplicate ([`SubscribeReport::duplicates`],
    /// [`Lifecycle::DuplicateSubscription`]) and nothing is sent for it; a combined topic that
    /// overlaps only in part is narrowed to the parts it adds
    /// (`v2.users.<id>?presence&routingStatus` with `v2.users.<id>.presence` subscribed
    /// subscribes `v2.users.<id>.routingstatus`, reported in `permitted`, and reports the
    /// presence part as a duplicate). So overlapping subscriptions never make a listener see
    /// one event twice.
    ///
    /// Topics join the room left on existing channels with `POST .../subscriptions` carrying
    /// only them (calls adding to one channel at the same time share one `POST`); a new channel
    /// gets its topics with `PUT`. Subscriptions use `ignoreErrors=true`, so a topic lacking a
    /// permission is reported in [`SubscribeReport::rejected`] with its reason and missing
    /// permissions while the others work; a channel left with no topic (all rejected) is
    /// closed. A topic the service answers for in a channel's own re-application of its topics
    /// (its thread's `PUT` after a reconnection or a renewal) before the call's `POST` went out
    /// is reported with that answer. A new channel's socket is connected before its topics are
    /// subscribed, so no event published after this returns is missed.
    ///
    /// # Errors
    /// A [`SubscribeError`]: its [`error`](SubscribeError::error) says why, its lists what was
    /// done by then (the channels updated before a failure stay updated). By error:
    /// - [`Error::Topic`] for an invalid name: nothing was done and every list is empty; fix
    ///   the name and call again;
    /// - [`Error::TooManyChannels`] when they would fit in number but need more channels than
    ///   `max_channels` (isolated channels do not share their room), and
    ///   [`Error::TooManyTopics`] when the topics would not fit in `max_channels` channels of
    ///   `max_topics_per_channel` topics: nothing was sent (the topics are `not_subscribed`,
    ///   the duplicates found are reported);
    /// - [`Error::Token`] when the token source fails permanently (bad client credentials);
    /// - [`Error::Api`] when the service refuses a request or keeps failing until the deadline
    ///   (`connect_timeout + 2 × request_timeout`), with its last answer; at once when its
    ///   `Retry-After` (429, 503) puts the next attempt past the deadline;
    /// - [`Error::Timeout`] when a new channel is not ready by the deadline for another reason
    ///   (its socket does not connect; the error names the last failure): its topics are
    ///   `pending`, its thread keeps trying, reporting through lifecycle events;
    /// - [`Error::ChannelStopped`] when a new channel's thread stopped before its topics were
    ///   subscribed (retry budget spent, unusable `connectUri`);
    /// - [`Error::Spawn`] when a channel thread cannot be started (the system is out of
    ///   threads);
    /// - [`Error::Shutdown`] after [`Client::shutdown`], or when a `shutdown` on another thread
    ///   cut this call short.
    ///
    /// After `Token`, `Api`, `ChannelStopped`, `Spawn` and `Shutdown`, the topics answered
    /// before the failure are in [`report`](SubscribeError::report) and the others in
    /// [`not_subscribed`](SubscribeError::not_subscribed): calling again with those once the
    /// cause is dealt with subscribes the rest.
    pub fn subscribe<I, S>(&self, topics: I) -> Result<SubscribeReport, SubscribeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.subscribe_with(topics, false).map_err(|mut e| {
            e.inner.error = self.shut_down_instead(e.inner.error);
            e
        })
    }

    /// Like [`Client::subscribe`], but puts these topics on channels of their own, shared with
    /// no other topics (for example to keep a high-volume group away from the rest).
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn subscribe_isolated<I, S>(&self, topics: I) -> Result<SubscribeReport, SubscribeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.subscribe_with(topics, true).map_err(|mut e| {
            e.inner.error = self.shut_down_instead(e.inner.error);
            e
        })
    }

    /// One subscribe call, in steps: resolve duplicates, plan, reserve room on existing
    /// channels, `POST` to them, create new channels, close emptied ones, report.
    fn subscribe_with<I, S>(
        &self,
        topics: I,
        isolated: bool,
    ) -> Result<SubscribeReport, SubscribeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nothing =
            |error| SubscribeError::before_sending(error, SubscribeReport::default(), vec![]);
        self.check_open().map_err(nothing)?;
        let wanted = parse_topics(topics).map_err(nothing)?;
        let mut updates = Some(self.inner.updates.lock());
        if let Err(error) = self.check_open() {
            return Err(SubscribeError::before_sending(
                error,
                SubscribeReport::default(),
                wanted,
            ));
        }
        self.forget_stopped();
        let slots: Vec<Arc<Slot>> = self.inner.slots.read().clone();
        let open: Vec<bool> = slots
            .iter()
            .map(|s| !s.is_stopping() && !s.is_dead())
            .collect();

        let (new, mut report) = self.resolve_duplicates(wanted, &slots, &open);
        if new.is_empty() {
            return Ok(report);
        }
        let plan = match self.place(&slots, &open, new.len(), isolated) {
            Ok(plan) => plan,
            Err(error) => return Err(SubscribeError::before_sending(error, report, new)),
        };
        let to_existing = reserve_room(&slots, &plan.to_existing, &new);
        if plan.new_channels.is_empty() {
            updates = None;
        }

        let (deadline, budget) = self.deadline();
        let mut done = Done::default();
        let (mut touched, failure) = self.post_reserved(to_existing, deadline, budget, &mut done);
        let failure = match failure {
            Some(error) => Some(error),
            None => {
                let (created, failure) = self.create_channels(
                    &new,
                    plan.new_channels,
                    isolated,
                    (deadline, budget),
                    &mut done,
                );
                touched.extend(created);
                failure
            }
        };
        // A channel whose topics were all rejected is closed: no open channel without topics.
        self.close_emptied(&touched, updates, deadline);

        let (pending, not_subscribed) = sort_answers(&mut report, new, done);
        if let Some(engine) = &self.inner.resync {
            engine.after_subscribe(&report.permitted);
        }
        match failure {
            None => Ok(report),
            Some(error) => Err(SubscribeError::new(error, report, pending, not_subscribed)),
        }
    }

    /// Splits `wanted` into the topics to subscribe and the duplicates of topics the `open`
    /// slots already bring (each reported as [`Lifecycle::DuplicateSubscription`]).
    fn resolve_duplicates(
        &self,
        wanted: Vec<Topic>,
        slots: &[Arc<Slot>],
        open: &[bool],
    ) -> (Vec<Topic>, SubscribeReport) {
        let shared = &self.inner.shared;
        let resolved = {
            let sets: Vec<_> = slots
                .iter()
                .zip(open)
                .filter(|(_, open)| **open)
                .map(|(s, _)| s.topics())
                .collect();
            plan::resolve(wanted, |name| {
                sets.iter().any(|set| set.covering(name).is_some())
            })
        };
        for topic in &resolved.duplicates {
            shared
                .dispatcher
                .lifecycle
                .emit(Lifecycle::DuplicateSubscription {
                    topic: topic.clone(),
                });
        }
        let report = SubscribeReport {
            duplicates: resolved.duplicates,
            ..SubscribeReport::default()
        };
        (resolved.new, report)
    }

    /// Where `count` new topics go (plan.rs decides), or why they fit nowhere.
    fn place(
        &self,
        slots: &[Arc<Slot>],
        open: &[bool],
        count: usize,
        isolated: bool,
    ) -> Result<plan::Plan, Error> {
        let config = &self.inner.shared.config;
        let loads: Vec<Load> = slots
            .iter()
            .zip(open)
            .map(|(s, open)| Load {
                topics: s.topic_count(),
                isolated: s.is_isolated(),
                open: *open,
            })
            .collect();
        let limits = Limits {
            max_topics_per_channel: config.max_topics_per_channel,
            max_channels: config.max_channels,
        };
        plan::place(&loads, count, isolated, limits).map_err(|e| match e {
            PlanError::TooManyTopics {
                requested,
                capacity,
            } => Error::TooManyTopics {
                requested,
                capacity,
            },
            PlanError::TooManyChannels {
                needed,
                max_channels,
            } => Error::TooManyChannels {
                needed,
                max_channels,
            },
        })
    }

    /// `POST`s each slot's reserved topics, recording the service's answers in `done`. After
    /// the first failure nothing more is sent, and every slot not subscribed gets its reserved
    /// room back. Returns every slot touched, and the failure if any.
    fn post_reserved(
        &self,
        to_existing: Vec<(Arc<Slot>, Vec<Topic>)>,
        deadline: Instant,
        budget: Duration,
        done: &mut Done,
    ) -> (Vec<Arc<Slot>>, Option<Error>) {
        let mut failure = None;
        for (slot, add) in &to_existing {
            let posted = match failure {
                Some(_) => false,
                None => match self.post_with_retry(slot, add, deadline, budget) {
                    Ok(r) => {
                        done.results.extend(r);
                        true
                    }
                    Err(error) => {
                        failure = Some(error);
                        false
                    }
                },
            };
            let mut set = slot.topics();
            for topic in add {
                // The thread's own `PUT` of the set may have answered for it first (and taken
                // it out of the set, and so out of the `POST`): that answer is the service's.
                if let Some(rejection) = set.take_rejection(topic) {
                    done.results.push(rejection);
                    done.sent.push(topic.clone());
                } else if posted {
                    done.sent.push(topic.clone());
                } else {
                    // Not subscribed: give the reserved room back.
                    set.remove(topic);
                }
            }
        }
        let touched: Vec<Arc<Slot>> = to_existing.into_iter().map(|(slot, _)| slot).collect();
        (touched, failure)
    }

    /// Creates one slot per range of `new` (reusing spare channels first), waits for each to
    /// have its topics subscribed (`PUT`), and records the answers in `done`. Stops at the first
    /// failure. Returns the slots created, and the failure if any.
    fn create_channels(
        &self,
        new: &[Topic],
        new_channels: Vec<Range<usize>>,
        isolated: bool,
        (deadline, budget): (Instant, Duration),
        done: &mut Done,
    ) -> (Vec<Arc<Slot>>, Option<Error>) {
        let shared = &self.inner.shared;
        let mut created = Vec::new();
        for range in new_channels {
            let topics = TopicSet::of(new[range.clone()].iter().cloned());
            let slot = Slot::new(isolated, topics);
            {
                // Checked under the list's lock: a `shutdown` running now either sees this slot
                // (and stops it) or has already marked the client shut down.
                let mut list = self.inner.slots.write();
                if let Err(error) = self.check_open() {
                    return (created, Some(error));
                }
                if let Some(spare) = self.inner.spare_channels.lock().pop() {
                    slot.reuse_channel(spare);
                }
                if let Err(error) = slot.start(shared, list.len()) {
                    let error = Error::Spawn {
                        thread: "channel",
                        error,
                    };
                    return (created, Some(error));
                }
                list.push(slot.clone());
            }
            match slot.wait_setup(0, deadline) {
                Some(Ok(r)) => {
                    done.results.extend(r);
                    done.sent.extend(new[range].iter().cloned());
                }
                Some(Err(failure)) => {
                    slot.stop(false);
                    // Forgotten only once its thread has ended; a stopping slot takes no topics
                    // and `shutdown` still joins it.
                    if slot.join_until(Instant::now() + Duration::from_secs(1)) {
                        self.inner.slots.write().retain(|s| !Arc::ptr_eq(s, &slot));
                    }
                    return (created, Some(setup_error(failure)));
                }
                None => {
                    // Its topics stay wanted: the thread keeps trying.
                    done.pending.extend(new[range].iter().cloned());
                    let error = Error::Timeout {
                        operation: "subscribe",
                        after: budget,
                        last_failure: slot.last_failure(),
                    };
                    created.push(slot);
                    return (created, Some(error));
                }
            }
            created.push(slot);
        }
        (created, None)
    }
}

/// What a subscribe call got done for its new topics.
#[derive(Default)]
struct Done {
    /// The service's answers.
    results: Vec<TopicResult>,
    /// Topics whose request the service took (answered or not).
    sent: Vec<Topic>,
    /// Topics on a channel whose thread keeps trying after the deadline.
    pending: Vec<Topic>,
}

/// Reserves room for the planned topics in existing slots' sets. Done under the update lock, so
/// that calls planning meanwhile count it; adding to channels that already work then needs the
/// lock no more, and calls adding to the same channel at the same time share a `POST`.
fn reserve_room(
    slots: &[Arc<Slot>],
    to_existing: &[(usize, Range<usize>)],
    new: &[Topic],
) -> Vec<(Arc<Slot>, Vec<Topic>)> {
    to_existing
        .iter()
        .map(|(index, range)| {
            let slot = slots[*index].clone();
            let add = new[range.clone()].to_vec();
            let mut set = slot.topics();
            for topic in &add {
                set.reserve(topic.clone());
            }
            drop(set);
            (slot, add)
        })
        .collect()
}

/// Sorts the service's answers for the `new` topics into `report`: the first answer for each
/// topic counts, answers for other topics are ignored; a topic sent that the service did not
/// list is taken as permitted (it stays in the desired set). Returns the topics pending and
/// those not subscribed (neither sent nor pending).
fn sort_answers(
    report: &mut SubscribeReport,
    new: Vec<Topic>,
    done: Done,
) -> (Vec<Topic>, Vec<Topic>) {
    let new_set: HashSet<&Topic> = new.iter().collect();
    let mut answered = HashSet::new();
    for result in done.results {
        let Ok(topic) = Topic::parse(&result.topic) else {
            continue;
        };
        if !new_set.contains(&topic) || !answered.insert(topic.clone()) {
            continue;
        }
        match result.state {
            TopicState::Permitted => report.permitted.push(topic),
            TopicState::Rejected => report.rejected.push(result),
        }
    }
    let sent: HashSet<&Topic> = done.sent.iter().collect();
    let pending: HashSet<&Topic> = done.pending.iter().collect();
    let mut not_subscribed = Vec::new();
    for topic in &new {
        if answered.contains(topic) || pending.contains(topic) {
            continue;
        }
        if sent.contains(topic) {
            report.permitted.push(topic.clone());
        } else {
            not_subscribed.push(topic.clone());
        }
    }
    (done.pending, not_subscribed)
}
