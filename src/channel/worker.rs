//! worker.rs runs a channel's thread as an explicit state machine: every [`Phase`] the thread
//! can be in, and one [`Worker::step`] that consumes a phase and returns the next. It carries out
//! the failure table's decisions (failure.rs) and derives the health state from the phase; it
//! never classifies a failure itself and never runs a listener's callback.
//!
//! ```text
//! NeedsChannel ─create─▶ Connecting ─connect─▶ Subscribing ─apply─▶ Reading ─┬─ends─▶ Lost
//!      ▲                     ▲                                      ▲   │    └─socket_closing─▶ Switching
//!      │                     │                                      └───┴──────(kept / handed over)
//!      └──────────── BackingOff ◀── any failure, per failure.rs ◀── Lost (HEAD decides)
//! any phase ──stop, permanent failure, spent budget, no topics left──▶ Stopped
//! ```

use super::failure::{self, Decision, Operation, Pace};
use super::session::{self, Session, SessionEnd, Switch};
use super::slot::Slot;
use super::Shared;
use crate::backoff::Retry;
use crate::channel_id::ChannelId;
use crate::dispatch::Pushed;
use crate::error::ApiError;
use crate::error::StopReason;
use crate::error::{ChannelError, DisconnectCause};
use crate::event::{Event, Lifecycle};
use crate::health::ChannelState;
use rand::RngExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The new socket of a `socket_closing` switch is opened within this long of the warning (a
/// uniform jitter, so that many clients do not reconnect at the same instant), then within
/// `connect_timeout`. Genesys says the warning may come less than a minute ahead and that
/// reconnecting at once is safe (docs/protocol.md "The WebSocket").
pub(crate) const SWITCH_JITTER: Duration = Duration::from_millis(250);

/// Where a channel's thread is.
enum Phase {
    /// The slot has no usable channel: create one. `lost`: the channel it replaces.
    NeedsChannel { lost: Option<ChannelId> },
    /// Open a socket to the channel; `apply`: the channel's topics must be `PUT` first.
    Connecting { apply: bool },
    /// The socket is open: apply the topics (when `apply` or a user update is pending).
    Subscribing { session: Box<Session>, apply: bool },
    /// Every topic is subscribed: read frames.
    Reading(Box<Session>),
    /// `socket_closing` arrived: open a new socket at `after` into the jitter window.
    Switching {
        session: Box<Session>,
        after: Duration,
    },
    /// The socket ended (the failure table chose to ask): check the channel with `HEAD`.
    Lost { pace: Pace, error: ChannelError },
    /// Wait `delay` (never less than `floor`, a `Retry-After`), then go on with `then`.
    BackingOff {
        delay: Duration,
        floor: Duration,
        then: Box<Phase>,
    },
    /// The thread ends.
    Stopped(StopReason),
}

impl Phase {
    /// The health label: derived, never set by hand.
    fn state(&self) -> ChannelState {
        match self {
            Phase::NeedsChannel { .. } => ChannelState::Creating,
            Phase::Connecting { .. } | Phase::Subscribing { apply: true, .. } => {
                ChannelState::Connecting
            }
            Phase::Subscribing { apply: false, .. }
            | Phase::Reading(_)
            | Phase::Switching { .. } => ChannelState::Connected,
            Phase::Lost { .. } | Phase::BackingOff { .. } => ChannelState::Backoff,
            Phase::Stopped(_) => ChannelState::Stopped,
        }
    }
}

/// The thread's body: runs the state machine, and reports a panic instead of dying silently.
pub(super) fn run(slot: Arc<Slot>, shared: Arc<Shared>) {
    let worker = Worker {
        retry: Retry::new(shared.config.backoff.clone()),
        outage_since: None,
        held: None,
        slot: slot.clone(),
        shared: shared.clone(),
    };
    // A bug in this thread must not leave `subscribe` callers waiting or go unseen.
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        let error = ChannelError::Panicked { message };
        shared.emit(Lifecycle::PermanentFailure {
            channel: slot.channel_id(),
            error: error.clone(),
        });
        slot.stats().set_state(ChannelState::Stopped);
        slot.publish_stopped(StopReason::PermanentFailure(error));
    }
}

struct Worker {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    retry: Retry,
    /// When events stopped arriving for the current outage (reported as a `Gap` once a socket
    /// is back): data about the past, not a control flag.
    outage_since: Option<SystemTime>,
    /// An event read from the last socket whose push a nudge interrupted (`Session::held`):
    /// queued before any event of the next socket.
    held: Option<Event>,
}

impl Worker {
    fn run(mut self) {
        // A slot may start with a channel another slot left (`Slot::reuse_channel`).
        let mut phase = if self.slot.channel().is_some() {
            Phase::Connecting { apply: true }
        } else {
            Phase::NeedsChannel { lost: None }
        };
        let reason = loop {
            self.slot.stats().set_state(phase.state());
            if let Phase::Stopped(reason) = phase {
                break reason;
            }
            phase = self.step(phase);
        };
        self.finish(reason);
    }

    /// Consumes a phase and returns the next.
    fn step(&mut self, phase: Phase) -> Phase {
        if self.slot.is_stopping() {
            return self.stop(phase);
        }
        match phase {
            Phase::NeedsChannel { lost } => self.create_channel(lost),
            Phase::Connecting { apply } => self.connect(apply),
            Phase::Subscribing { session, apply } => self.subscribe(session, apply),
            Phase::Reading(mut session) => {
                let end = session.read();
                self.after_read(session, end)
            }
            Phase::Switching { session, after } => self.switch(session, after),
            Phase::Lost { pace, error } => self.check_channel(pace, error),
            Phase::BackingOff { delay, floor, then } => {
                if self.slot.sleep(delay, floor) {
                    Phase::Stopped(StopReason::UserRequest)
                } else {
                    *then
                }
            }
            Phase::Stopped(reason) => Phase::Stopped(reason),
        }
    }

    /// The user stopped the channel: close whatever socket the phase holds.
    fn stop(&mut self, phase: Phase) -> Phase {
        match phase {
            Phase::Reading(session) | Phase::Switching { session, .. } => {
                self.end_session(session, DisconnectCause::UserRequest);
            }
            Phase::Subscribing { mut session, .. } => {
                session.close();
                self.slot.set_interrupt(None);
            }
            Phase::Stopped(reason) => return Phase::Stopped(reason),
            _ => {}
        }
        Phase::Stopped(StopReason::UserRequest)
    }

    fn create_channel(&mut self, lost: Option<ChannelId>) -> Phase {
        match self.shared.api.create_channel() {
            Ok(info) => {
                let id = ChannelId::new(&info.id);
                self.slot.set_channel(info);
                self.shared.emit(match lost {
                    Some(old) => Lifecycle::ChannelReplaced { old, new: id },
                    None => Lifecycle::ChannelCreated { channel: id },
                });
                Phase::Connecting { apply: true }
            }
            Err(error) => self.request_failed(
                Operation::CreateChannel,
                error,
                Phase::NeedsChannel { lost },
            ),
        }
    }

    fn connect(&mut self, apply: bool) -> Phase {
        let Some(info) = self.slot.channel() else {
            return Phase::NeedsChannel { lost: None };
        };
        match Session::open(&self.slot, &self.shared, &info) {
            Ok((session, interrupt)) => {
                self.slot.set_interrupt(Some(interrupt));
                self.slot.clear_retry();
                Phase::Subscribing {
                    session: Box::new(session),
                    apply,
                }
            }
            Err(error) => {
                // Drop the clone `register` kept: it would hold the failed connection open (no
                // FIN to the server) through the backoff.
                self.slot.set_interrupt(None);
                let decision = failure::connect(&error);
                self.execute(
                    decision,
                    failure::connect_error(&error),
                    Phase::Connecting { apply },
                )
            }
        }
    }

    fn subscribe(&mut self, mut session: Box<Session>, apply: bool) -> Phase {
        let pending_update = self.slot.take_reapply();
        if apply || pending_update {
            match self.slot.apply_topics(&self.shared) {
                Ok(results) => {
                    self.slot.publish_setup(Ok(results.clone()));
                    // Only a later application can empty a channel: the first one answers the
                    // `subscribe` call, which decides about its own channel.
                    if self.slot.setup_generation() > 1 && self.slot.emptied_by_rejection(&results)
                    {
                        session.close();
                        self.slot.set_interrupt(None);
                        return Phase::Stopped(StopReason::NoTopics);
                    }
                }
                Err(error) => {
                    session.close();
                    self.slot.set_interrupt(None);
                    // Whatever was to be sent is sent again at the next attempt.
                    return self.request_failed(
                        Operation::Subscribe,
                        error,
                        Phase::Connecting { apply: true },
                    );
                }
            }
        }
        // Before the gap is reported: the snapshots of the resync it starts must queue behind
        // the last socket's events.
        if !self.queue_held() {
            // Nudged again while queueing it: serve the nudge as a nudge while reading is.
            return self.after_read(
                session,
                SessionEnd::Ended {
                    cause: session::nudged(),
                    decision: None,
                },
            );
        }
        let id = session.id().clone();
        self.shared.emit(Lifecycle::Connected {
            channel: id.clone(),
        });
        if let Some(start) = self.outage_since.take() {
            self.shared.emit(Lifecycle::Gap {
                channel: id,
                start,
                end: SystemTime::now(),
                topics: self.slot.topic_list(),
            });
        }
        session.start_reading();
        Phase::Reading(session)
    }

    /// Queues the event the last socket could not (`held`) before this socket's first; false
    /// when a new nudge interrupted the push again (it stays held). Nudges so far were served
    /// by getting here: the channel was checked or replaced and this socket is open.
    fn queue_held(&mut self) -> bool {
        let Some(event) = self.held.take() else {
            return true;
        };
        self.slot.clear_nudge();
        let slot = &self.slot;
        if let Pushed::Interrupted(event) =
            self.shared
                .dispatcher
                .push(event, slot.stopping_flag(), &|| slot.nudge_pending())
        {
            self.held = Some(event);
            return false;
        }
        true
    }

    /// Takes over the event a session could not queue.
    fn keep_held(&mut self, session: &mut Session) {
        if let Some(event) = session.held.take() {
            // At most one: `held` is queued before a socket is read, and a session ends at
            // its first interrupted push.
            debug_assert!(self.held.is_none());
            self.held = Some(event);
        }
    }

    fn after_read(&mut self, session: Box<Session>, end: SessionEnd) -> Phase {
        match end {
            SessionEnd::SwitchDue => {
                let jitter = rand::rng().random_range(0..=SWITCH_JITTER.as_millis() as u64);
                Phase::Switching {
                    session,
                    after: Duration::from_millis(jitter),
                }
            }
            SessionEnd::NoTopics => {
                self.end_session(session, DisconnectCause::UserRequest);
                Phase::Stopped(StopReason::NoTopics)
            }
            SessionEnd::Ended { cause, decision } => {
                // A healthy connection's end is not a failed attempt, whatever ended it (a close
                // frame, FIN, RST, silence): the next one starts a new series of retries.
                let healthy = session.healthy();
                if healthy {
                    self.retry.reset();
                }
                self.end_session(session, cause.clone());
                if self.slot.is_stopping() {
                    return Phase::Stopped(StopReason::UserRequest);
                }
                // Events are lost from the last frame on, not from when the loss was noticed (a
                // silent socket is found out only after the liveness timeout).
                self.outage_since = Some(self.last_frame_time().unwrap_or_else(SystemTime::now));
                self.slot.stats().reconnects.fetch_add(1, Ordering::Relaxed);
                let decision = decision.unwrap_or_else(|| failure::socket_ended(&cause, healthy));
                self.execute(
                    decision,
                    ChannelError::Disconnected(cause),
                    Phase::Connecting { apply: false },
                )
            }
        }
    }

    /// Reports the end of a socket and closes it.
    fn end_session(&mut self, mut session: Box<Session>, cause: DisconnectCause) {
        self.keep_held(&mut session);
        self.slot.set_interrupt(None);
        self.shared.emit(Lifecycle::Disconnected {
            channel: session.id().clone(),
            cause,
        });
        session.close();
    }

    fn switch(&mut self, mut session: Box<Session>, after: Duration) -> Phase {
        // The jitter is spent reading the old socket, not asleep: the server may close it
        // first (it warned it would), and events sent before that close are still delivered,
        // while the events it can no longer send then fall in the gap the ordinary end of the
        // socket reports. Asleep, that close went unseen until the switch drained the socket,
        // which took it for a clean handover: a loss without a gap (found by the chaos soak).
        if let Some(end) = session.read_until(Instant::now() + after) {
            return self.after_read(session, end);
        }
        match session.switch() {
            Switch::Done(next) => {
                // An event the old socket could not queue goes before the new socket's.
                self.keep_held(&mut session);
                // socket_closing: the new socket is already connected, no gap.
                self.shared.emit(Lifecycle::Disconnected {
                    channel: session.id().clone(),
                    cause: DisconnectCause::ServerMaintenance,
                });
                self.slot.stats().reconnects.fetch_add(1, Ordering::Relaxed);
                Phase::Subscribing {
                    session: next,
                    apply: false,
                }
            }
            Switch::KeepOld => Phase::Reading(session),
            Switch::Ended(cause) => self.after_read(
                session,
                SessionEnd::Ended {
                    cause,
                    decision: None,
                },
            ),
        }
    }

    /// The socket ended and the table asked whether the channel still exists.
    fn check_channel(&mut self, pace: Pace, error: ChannelError) -> Phase {
        let result = match self.slot.channel() {
            Some(info) => self.shared.api.channel_exists(&info.id),
            None => Ok(false),
        };
        let decision = failure::channel_check(&result, pace);
        self.execute(decision, error, Phase::Connecting { apply: false })
    }

    /// Reports a failed REST call and carries out the table's decision.
    fn request_failed(&mut self, operation: Operation, error: ApiError, retry: Phase) -> Phase {
        self.shared.emit(Lifecycle::RequestFailed {
            channel: self.slot.channel_id(),
            operation: operation.as_str(),
            error: error.clone(),
            count: 1,
        });
        let worked = self.slot.setup_generation() > 0;
        let decision = failure::rest(operation, &error, worked, &self.shared.config.api_base);
        if let Decision::GiveUp(ChannelError::Request { .. }) = &decision {
            // A `subscribe` waiting on this channel gets the service's answer itself.
            self.slot.publish_setup(Err(error.clone()));
        }
        self.execute(
            decision,
            ChannelError::Request {
                operation: operation.as_str(),
                error,
            },
            retry,
        )
    }

    /// Carries out a decision of the failure table. `error`: the failure, for the reports;
    /// `same`: the phase that tries the same channel again.
    fn execute(&mut self, decision: Decision, error: ChannelError, same: Phase) -> Phase {
        match decision {
            Decision::Retry { pace, retry_after } => self.back_off(pace, retry_after, error, same),
            Decision::CheckChannel { pace } => Phase::Lost { pace, error },
            Decision::ReplaceChannel { pace, release_old } => {
                let lost = self.slot.channel_id();
                if release_old {
                    self.release_channel();
                }
                self.back_off(pace, None, error, Phase::NeedsChannel { lost })
            }
            Decision::GiveUp(error) => {
                self.shared.emit(Lifecycle::PermanentFailure {
                    channel: self.slot.channel_id(),
                    error: error.clone(),
                });
                Phase::Stopped(StopReason::PermanentFailure(error))
            }
            Decision::Stop => Phase::Stopped(StopReason::UserRequest),
        }
    }

    /// Removes the subscriptions of a channel about to be abandoned, so that it carries nothing
    /// and, left unconnected, is the first the service evicts (Genesys has no `DELETE` for a
    /// channel: docs/protocol.md "Channels"). Best effort: a failure is only logged.
    fn release_channel(&self) {
        let _updates = self.slot.lock_updates();
        if let Some(info) = self.slot.channel() {
            match self.shared.api.delete_subscriptions(&info.id) {
                Ok(()) | Err(ApiError::NotFound) => {}
                Err(error) => log::warn!(
                    "removing the subscriptions of abandoned channel {} failed: {error}",
                    ChannelId::new(&info.id)
                ),
            }
        }
    }

    /// Waits before the next attempt (per `pace`), or gives up when the retry budget is spent.
    fn back_off(
        &mut self,
        pace: Pace,
        retry_after: Option<Duration>,
        error: ChannelError,
        then: Phase,
    ) -> Phase {
        // The attempt failed because `stop` cut it short (shutdown, channel emptied): there is
        // no reconnection to announce, nor a retry budget to spend.
        if self.slot.is_stopping() {
            return Phase::Stopped(StopReason::UserRequest);
        }
        let delay = match pace {
            Pace::Backoff => self.retry.next_delay(retry_after),
            Pace::Prompt => self.retry.prompt(retry_after),
        };
        let channel = self.slot.channel_id();
        match delay {
            None => {
                let attempts = self.retry.retries();
                self.shared.emit(Lifecycle::RetryBudgetExhausted {
                    channel,
                    attempts,
                    last_error: error.clone(),
                });
                Phase::Stopped(StopReason::RetryBudgetExhausted {
                    attempts,
                    last_error: error,
                })
            }
            Some(delay) => {
                self.slot.publish_retry(&error, Instant::now() + delay);
                self.shared.emit(Lifecycle::Reconnecting {
                    channel,
                    attempt: self.retry.retries(),
                    delay,
                    error: error.to_string(),
                });
                Phase::BackingOff {
                    delay,
                    floor: retry_after.unwrap_or_default(),
                    then: Box::new(then),
                }
            }
        }
    }

    /// When the last frame of any kind arrived, on the wall clock.
    fn last_frame_time(&self) -> Option<SystemTime> {
        let nanos = self.slot.stats().last_frame_nanos.load(Ordering::Relaxed);
        (nanos > 0).then(|| self.shared.epoch.1 + Duration::from_nanos(nanos))
    }

    /// The thread ends: report the gap it leaves, remove the subscriptions when asked (or when
    /// the channel emptied), and tell waiting `subscribe` calls.
    fn finish(&mut self, reason: StopReason) {
        if let Some(event) = self.held.take() {
            // Received, never queued: counted as dropped, as a blocked push cut short by a stop.
            self.shared.dispatcher.discard(&event);
        }
        if let Some(start) = self.outage_since.take() {
            // The thread ends without a socket: the gap lasted until now at least. A channel
            // emptied meanwhile (its topics all unsubscribed or rejected) lost nothing anyone
            // still wants: no gap without topics.
            let topics = self.slot.topic_list();
            if let (Some(channel), false) = (self.slot.channel_id(), topics.is_empty()) {
                self.shared.emit(Lifecycle::Gap {
                    channel,
                    start,
                    end: SystemTime::now(),
                    topics,
                });
            }
        }
        let emptied = matches!(reason, StopReason::NoTopics);
        if emptied || (self.slot.is_stopping() && self.slot.delete_on_stop()) {
            let _updates = self.slot.lock_updates();
            if let Some(info) = self.slot.channel() {
                if let Err(error) = self.shared.api.delete_subscriptions(&info.id) {
                    log::warn!(
                        "removing the subscriptions of channel {} failed: {error}",
                        ChannelId::new(&info.id)
                    );
                }
            }
        }
        self.slot.publish_stopped(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_state_is_derived_from_the_phase() {
        let error = ChannelError::Disconnected(DisconnectCause::UserRequest);
        let backing_off = Phase::BackingOff {
            delay: Duration::ZERO,
            floor: Duration::ZERO,
            then: Box::new(Phase::Connecting { apply: false }),
        };
        let rows = [
            (Phase::NeedsChannel { lost: None }, ChannelState::Creating),
            (Phase::Connecting { apply: true }, ChannelState::Connecting),
            (
                Phase::Lost {
                    pace: Pace::Prompt,
                    error,
                },
                ChannelState::Backoff,
            ),
            (backing_off, ChannelState::Backoff),
            (Phase::Stopped(StopReason::NoTopics), ChannelState::Stopped),
        ];
        for (phase, state) in rows {
            assert_eq!(phase.state(), state);
        }
    }
}
