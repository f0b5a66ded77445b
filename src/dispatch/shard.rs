//! dispatch/shard.rs is one dispatcher thread's loop: take an event from its queue, locate
//! its envelope, apply the snapshot gate, route it and call its listeners, reporting panics and
//! unrouted events; it never pushes into a queue and never blocks a socket thread.

use super::lifecycle::LifecycleSink;
use super::queue::Queue;
use super::route::{Route, RouteCache, CACHED_TOPIC_MAX};
use super::CALLBACK_THREAD;
use crate::event::{Event, Lifecycle};
use crate::lag::{LagAlarm, LagRecorder, WINDOW};
use crate::listener::{Changes, Listener, Registry};
use crate::snapshot_gate::SnapshotGate;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One dispatcher thread's inputs.
pub(super) struct Shard {
    pub(super) queue: Arc<Queue>,
    pub(super) registry: Arc<Registry>,
    pub(super) sink: Arc<LifecycleSink>,
    pub(super) lag: Arc<LagRecorder>,
    pub(super) lag_threshold: Duration,
    pub(super) closing: Arc<AtomicBool>,
    pub(super) gate: Arc<SnapshotGate>,
}

/// What a dispatcher queue's consumer carries from one event to the next: the route cache and
/// the registry version it reflects, and the lag alarm. Owned by one thread at a time.
pub(super) struct Cursor {
    version: u64,
    /// Set once a shutdown cleared the listeners: what is still queued behind it (a shutdown
    /// called from a callback of this thread) can no longer be delivered.
    cleared: bool,
    routes: RouteCache,
    alarm: LagAlarm,
}

impl Cursor {
    pub(super) fn new(lag_threshold: Duration) -> Cursor {
        Cursor {
            version: 0,
            cleared: false,
            routes: RouteCache::default(),
            alarm: LagAlarm::new(lag_threshold, Instant::now()),
        }
    }
}

impl Shard {
    /// A dispatcher thread's loop: until the stop marker, or until the queue is empty once the
    /// dispatcher is closing.
    pub(super) fn run(self) {
        CALLBACK_THREAD.with(|c| c.set(true));
        let mut cursor = Cursor::new(self.lag_threshold);
        loop {
            if self.closing.load(Ordering::Acquire) && self.queue.rx.is_empty() {
                break;
            }
            let Ok(Some(event)) = self.queue.rx.recv() else {
                break;
            };
            self.handle(&mut cursor, event);
        }
    }

    /// Delivers one event taken out of the queue (or counts it).
    pub(super) fn handle(&self, cursor: &mut Cursor, mut event: Event) {
        let Shard {
            queue,
            registry,
            sink,
            lag,
            lag_threshold,
            gate,
            ..
        } = self;
        queue.release(event.queued_bytes() as u64);
        let dequeued = Instant::now();
        let alarm = &mut cursor.alarm;
        if dequeued.saturating_duration_since(alarm.window_started) >= WINDOW {
            alarm.window_started = dequeued;
            if let Some(p99) = alarm.window_ended(lag.turn().p99) {
                sink.emit(Lifecycle::DispatchLagHigh {
                    p99,
                    threshold: *lag_threshold,
                });
            }
        }
        lag.record(dequeued.saturating_duration_since(event.received_instant));
        if registry.version() != cursor.version {
            let (changes, now) = registry.changes_since(cursor.version);
            cursor.version = now;
            match changes {
                Changes::Patterns(patterns) => {
                    for pattern in &patterns {
                        cursor.routes.forget_matching(pattern);
                    }
                }
                Changes::Everything => cursor.routes = RouteCache::default(),
                Changes::Cleared => {
                    cursor.routes = RouteCache::default();
                    cursor.cleared = true;
                }
            }
        }
        if cursor.cleared {
            if event.is_snapshot() {
                gate.dropped(event.topic());
            }
            super::count_drop(&event, sink);
            return;
        }
        // A notification queued by its first key alone: its envelope is parsed here, off the
        // socket thread (message::notification_topic).
        if let Err(malformed) = event.locate() {
            report_malformed(&event, malformed, sink);
            return;
        }
        let topic = event.topic();
        // The order and freshness rule of snapshots (snapshot_gate.rs).
        if event.is_snapshot() {
            if !gate.admit(topic) {
                return;
            }
        } else {
            gate.note_live(topic, event.received_instant);
        }
        if let Some(route) = cursor.routes.get(topic) {
            deliver(&event, route, false, sink);
            return;
        }
        let route: Route = registry.route(topic).into();
        deliver(&event, &route, true, sink);
        cursor.routes.insert(topic, route);
    }
}

/// A queued notification whose envelope proved malformed: counted (the channel's `malformed`,
/// and no longer `received`) and reported as the socket thread reports one.
fn report_malformed(
    event: &Event,
    malformed: crate::message::MalformedFrame,
    sink: &LifecycleSink,
) {
    event
        .origin
        .stats
        .dispatch
        .malformed
        .fetch_add(1, Ordering::Release);
    sink.emit(Lifecycle::malformed_frame(
        event.channel_id(),
        event.frame_json(),
        malformed,
    ));
}

/// The topic name as a lifecycle event carries it: whole up to 4 × [`MAX_TOPIC_LEN`] bytes,
/// else cut with `…`. The service's names are far shorter; a broken or hostile server's could
/// be megabytes, and 4096 of them waiting in the lifecycle queue would be gigabytes.
fn reported_topic(event: &Event) -> String {
    crate::message::shortened(event.topic(), CACHED_TOPIC_MAX).into_owned()
}

fn deliver(
    event: &Event,
    route: &[Arc<Listener<Event>>],
    first_of_topic: bool,
    sink: &LifecycleSink,
) {
    let mut reached = false;
    for listener in route {
        match listener.call(event) {
            Ok(called) => reached |= called,
            Err(message) => {
                reached = true;
                sink.listener_panics.fetch_add(1, Ordering::Relaxed);
                sink.emit(Lifecycle::ListenerPanicked {
                    pattern: listener
                        .pattern
                        .as_ref()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                    topic: reported_topic(event),
                    message,
                });
            }
        }
    }
    if reached {
        event
            .origin
            .stats
            .dispatch
            .delivered
            .fetch_add(1, Ordering::Relaxed);
    } else {
        // Every unrouted event is counted. The lifecycle event goes out for the first event
        // of a topic with no listener (`first_of_topic`, when its empty route is cached) and
        // whenever the matching listeners all turned out to be retired: a busy topic with no
        // listener cannot flood the lifecycle queue or the log.
        event
            .origin
            .stats
            .dispatch
            .unrouted
            .fetch_add(1, Ordering::Relaxed);
        if first_of_topic || !route.is_empty() {
            sink.emit(Lifecycle::UnroutedMessage {
                channel: event.channel_id().clone(),
                topic: reported_topic(event),
            });
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str) -> Event {
        let origin = Arc::new(crate::event::Origin {
            channel: crate::channel_id::ChannelId::new("c1"),
            stats: Arc::new(crate::health::ChannelStats::new()),
            epoch: (Instant::now(), std::time::SystemTime::now()),
        });
        Event::snapshot(topic, "{}", &origin, Instant::now())
    }

    /// Issue 8 #5: a lifecycle report never copies a huge topic name.
    #[test]
    fn reports_carry_at_most_800_characters_of_a_topic() {
        let normal = "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence";
        assert_eq!(reported_topic(&event(normal)), normal);
        let huge = format!("v2.users.{}.presence", "x".repeat(1 << 20));
        let reported = reported_topic(&event(&huge));
        assert_eq!(reported.chars().count(), CACHED_TOPIC_MAX + 1);
        assert!(reported.starts_with("v2.users.xxx") && reported.ends_with('…'));
    }
}
