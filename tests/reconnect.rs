//! Every unasked end of a socket is followed by a reconnection (issue #3): close frames with any
//! code (1000, 1001, 4000, none at all, and an unusable 1005), a TCP drop without close frame
//! (FIN, 1006), a TCP reset (RST), refused
//! and rejected handshakes; a channel that is gone (404 on `HEAD`, 404 on the handshake, evicted,
//! expired) is replaced by a new channel with the same topics. Each test ends with events flowing
//! again and checks the lifecycle events and their order.
mod recovery;
mod util;

use genesys_notify::emulator::{Endpoint, Fault, SocketEventKind, Target};
use genesys_notify::{DisconnectCause, Lifecycle, Topic};
use recovery::*;
use std::time::Duration;
use util::*;

/// A running client with one channel carrying `presence_topics(2)`, events flowing.
fn setup() -> OneChannel {
    let s = OneChannel::start_on(emulator(), 2, fast);
    assert!(
        flows(&s.emu, &s.topics[0], &s.seqs, 1),
        "events flow at first"
    );
    s
}

impl OneChannel {
    /// Injects `fault`, waits for the next `Connected` and for events to flow again; returns
    /// the lifecycle events since the fault.
    fn reconnects_after(&self, fault: Fault) -> Vec<Lifecycle> {
        let mark = self.rec.snapshot().len();
        let connected = connected_count(&self.rec);
        self.emu.inject(fault);
        assert!(
            wait_until(SOON, || connected_count(&self.rec) > connected),
            "reconnected: {:?}",
            kinds(&since(&self.rec, mark))
        );
        assert!(flows(&self.emu, &self.topics[1], &self.seqs, 2));
        since(&self.rec, mark)
    }

    /// Injects `fault` and checks the client comes back on the same channel: lifecycle
    /// `Disconnected` (with a cause `cause` accepts), `Reconnecting`, `Connected`, `Gap`, in this
    /// order, and events flow again.
    fn recovers_on_same_channel(&self, fault: Fault, cause: impl Fn(&DisconnectCause) -> bool) {
        let events = self.reconnects_after(fault);
        assert_in_order(
            &events,
            &["Disconnected", "Reconnecting", "Connected", "Gap"],
        );
        self.check_disconnect_cause(&events, cause);
        assert_eq!(channel_id(&self.client), self.id, "same channel");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(
                    e,
                    Lifecycle::ChannelCreated { .. } | Lifecycle::ChannelReplaced { .. }
                ))
                .count(),
            0,
            "no new channel: {:?}",
            kinds(&events)
        );
        self.check_gap(&events, &self.id);
        assert_sequential_sockets(&self.emu);
    }

    /// Injects `fault` (given the channel id) and checks the client replaces the channel: a new
    /// channel with the same topics, `ChannelReplaced { old, new }` then `Subscribed`,
    /// `Connected`, `Gap`, in this order, and events flow again.
    fn replaces_channel(&self, fault: Fault) {
        let events = self.reconnects_after(fault);
        assert_in_order(
            &events,
            &[
                "Disconnected",
                "Reconnecting",
                "ChannelReplaced",
                "Subscribed",
                "Connected",
                "Gap",
            ],
        );
        let new_id = channel_id(&self.client);
        assert_ne!(new_id, self.id, "a new channel");
        let replaced: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Lifecycle::ChannelReplaced { old, new, .. } => Some((old.clone(), new.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(replaced.len(), 1, "{:?}", kinds(&events));
        assert_eq!(replaced[0].0.as_str(), self.id);
        assert_eq!(replaced[0].1.as_str(), new_id);
        // The topics were re-applied to the new channel.
        let record = self.emu.channel(&new_id).expect("new channel exists");
        let mut subscribed = record.topics.clone();
        subscribed.sort();
        let mut wanted = self.topics.clone();
        wanted.sort();
        assert_eq!(subscribed, wanted);
        self.check_gap(&events, &new_id);
        assert_sequential_sockets(&self.emu);
    }

    fn check_disconnect_cause(
        &self,
        events: &[Lifecycle],
        cause: impl Fn(&DisconnectCause) -> bool,
    ) {
        let causes: Vec<&DisconnectCause> = events
            .iter()
            .filter_map(|e| match e {
                Lifecycle::Disconnected { cause, .. } => Some(cause),
                _ => None,
            })
            .collect();
        assert!(!causes.is_empty());
        assert!(cause(causes[0]), "unexpected cause {:?}", causes[0]);
    }

    /// Exactly one gap, after the last `Connected`, on `channel`, `start <= end`, with the
    /// channel's topics.
    fn check_gap(&self, events: &[Lifecycle], channel: &str) {
        let gaps: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Lifecycle::Gap {
                    channel,
                    start,
                    end,
                    topics,
                    ..
                } => Some((channel.clone(), *start, *end, topics.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(gaps.len(), 1, "one gap: {:?}", kinds(events));
        let (gap_channel, start, end, topics) = &gaps[0];
        assert_eq!(gap_channel.as_str(), channel);
        assert!(start <= end);
        let mut wanted: Vec<Topic> = self
            .topics
            .iter()
            .map(|t| Topic::parse(t).unwrap())
            .collect();
        wanted.sort();
        let mut got = topics.clone();
        got.sort();
        assert_eq!(got, wanted);
    }
}

fn close(id: &str, code: u16) -> Fault {
    Fault::CloseSocket {
        target: Target::channel(id),
        code,
        reason: format!("test close {code}"),
    }
}

fn closed_with(code: u16) -> impl Fn(&DisconnectCause) -> bool {
    move |c| matches!(c, DisconnectCause::Closed { code: Some(got), .. } if *got == code)
}

/// The server closes the socket with `code`: the client comes back on the same channel.
fn close_is_recovered(code: u16) {
    let s = setup();
    s.recovers_on_same_channel(close(&s.id, code), closed_with(code));
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// `endpoint` answers `status` to the next `times` calls.
fn answers(endpoint: Endpoint, status: u16, times: usize) -> Fault {
    Fault::HttpStatus {
        endpoint,
        status,
        retry_after: None,
        times,
    }
}

/// The socket is dropped and `endpoint` answers 404 to the reconnection: a new channel with
/// the same topics.
fn answered_404_replaces_the_channel(endpoint: Endpoint) {
    let s = setup();
    s.emu.inject(answers(endpoint, 404, 1));
    s.replaces_channel(Fault::DropSocket {
        target: Target::channel(&s.id),
    });
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn normal_close_1000_is_recovered() {
    close_is_recovered(1000);
}

#[test]
fn going_away_1001_is_recovered() {
    close_is_recovered(1001);
}

#[test]
fn application_close_4000_is_recovered() {
    close_is_recovered(4000);
}

/// A close frame without status code (empty payload; RFC 6455 reports it as 1005): a close
/// with no code, recovered on the same channel.
#[test]
fn close_without_status_is_recovered() {
    let s = setup();
    s.recovers_on_same_channel(
        Fault::CloseWithoutStatus {
            target: Target::channel(&s.id),
        },
        |c| matches!(c, DisconnectCause::Closed { code: None, .. }),
    );
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// 1005 ("no status") must never be sent on the wire; a server that does so anyway breaks the
/// protocol, and the client must still come back. (The legitimate way to say "no code", an
/// empty close frame, is `close_without_status_is_recovered`.)
#[test]
fn close_1005_on_the_wire_is_recovered() {
    let s = setup();
    s.recovers_on_same_channel(close(&s.id, 1005), |c| {
        matches!(
            c,
            DisconnectCause::Closed { .. } | DisconnectCause::Protocol(_)
        )
    });
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// TCP closed without a close frame (1006 in RFC 6455 terms): reported as an I/O cause.
#[test]
fn tcp_drop_without_close_frame_is_recovered() {
    let s = setup();
    s.recovers_on_same_channel(
        Fault::DropSocket {
            target: Target::channel(&s.id),
        },
        |c| matches!(c, DisconnectCause::Io(_)),
    );
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// TCP aborted with a RST (linger 0): reported as an I/O cause.
#[test]
fn tcp_reset_is_recovered() {
    let s = setup();
    s.recovers_on_same_channel(
        Fault::ResetSocket {
            target: Target::channel(&s.id),
        },
        |c| matches!(c, DisconnectCause::Io(_)),
    );
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Handshakes whose TCP connection is closed without an answer (an I/O error during the
/// handshake) are retried with increasing attempt numbers until one succeeds.
#[test]
fn refused_handshakes_are_retried_until_one_succeeds() {
    let s = setup();
    s.emu.inject(Fault::RefuseHandshakes { times: 3 });
    s.recovers_on_same_channel(
        Fault::DropSocket {
            target: Target::channel(&s.id),
        },
        |c| matches!(c, DisconnectCause::Io(_)),
    );
    let refused = s
        .emu
        .socket_log()
        .iter()
        .filter(|r| r.kind == SocketEventKind::HandshakeRefused)
        .count();
    assert_eq!(refused, 3);
    let attempts: Vec<u32> = s
        .rec
        .snapshot()
        .iter()
        .filter_map(|e| match e {
            Lifecycle::Reconnecting { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4], "one retry per refused handshake");
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A handshake answered 503 is a transient failure: retried on the same channel.
#[test]
fn handshake_rejected_with_503_is_retried_on_the_same_channel() {
    let s = setup();
    s.emu.inject(answers(Endpoint::WebSocketHandshake, 503, 2));
    s.recovers_on_same_channel(close(&s.id, 1001), closed_with(1001));
    let rejected = s
        .emu
        .socket_log()
        .iter()
        .filter(|r| r.kind == SocketEventKind::HandshakeRejected { status: 503 })
        .count();
    assert_eq!(rejected, 2);
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// The channel answers 404 on `HEAD` after a drop: a new channel with the same topics.
#[test]
fn channel_gone_on_head_is_replaced_with_topics_reapplied() {
    answered_404_replaces_the_channel(Endpoint::HeadChannel);
}

/// The handshake to the channel is answered 404: a new channel with the same topics.
#[test]
fn handshake_404_replaces_the_channel() {
    answered_404_replaces_the_channel(Endpoint::WebSocketHandshake);
}

#[test]
fn evicted_channel_is_replaced_with_topics_reapplied() {
    let s = setup();
    s.replaces_channel(Fault::EvictChannel {
        channel_id: s.id.clone(),
    });
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn expired_channel_is_replaced_with_topics_reapplied() {
    let s = setup();
    s.replaces_channel(Fault::ExpireChannel {
        channel_id: s.id.clone(),
    });
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A channel that would lapse (short lifetime on the server) is kept alive by re-applying its
/// topics before `expires`: no eviction, no replacement, no reconnection.
#[test]
fn channel_is_renewed_before_it_expires() {
    let lifetime = Duration::from_secs(2);
    let s = OneChannel::start_on(
        emulator_with(
            genesys_notify::emulator::EmulatorConfig::default().channel_lifetime(lifetime),
        ),
        2,
        fast,
    );
    std::thread::sleep(lifetime * 5 / 2);
    assert!(s.emu.removed_channels().is_empty(), "the channel lapsed");
    assert_eq!(channel_id(&s.client), s.id);
    let puts = s
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 200)
        .count();
    assert!(puts >= 3, "{puts} PUTs: the channel was not renewed");
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 1));
    assert_eq!(
        s.rec.count(|e| matches!(
            e,
            Lifecycle::Disconnected { .. } | Lifecycle::ChannelReplaced { .. }
        )),
        0,
        "{:?}",
        kinds(&s.rec.snapshot())
    );
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}

fn attempts(rec: &Recorder) -> Vec<u32> {
    rec.snapshot()
        .iter()
        .filter_map(|e| match e {
            Lifecycle::Reconnecting { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

/// With `max_retries`, a channel that cannot come back gives up after that many retries with
/// `RetryBudgetExhausted` (and the gap it leaves is reported), and stops trying.
#[test]
fn spent_retry_budget_is_terminal_and_reported() {
    let emu = emulator();
    let client = fast(&emu)
        .backoff(
            genesys_notify::Backoff::default()
                .base(Duration::from_millis(20))
                .cap(Duration::from_millis(100))
                .max_retries(Some(3)),
        )
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let _ = client.subscribe(presence_topics(1)).unwrap();
    wait_registered(&emu);
    let id = channel_id(&client);
    // Exactly enough refusals to spend the budget; the server is fine afterwards.
    emu.inject(Fault::RefuseHandshakes { times: 3 });
    emu.inject(Fault::DropSocket {
        target: Target::channel(&id),
    });
    assert!(rec.wait(SOON, |e| matches!(
        e,
        Lifecycle::RetryBudgetExhausted { .. }
    )));
    let refused = || {
        emu.socket_log()
            .iter()
            .filter(|r| r.kind == SocketEventKind::HandshakeRefused)
            .count()
    };
    assert_eq!(refused(), 3);
    assert_eq!(attempts(&rec), [1, 2, 3]);
    let spent = rec
        .snapshot()
        .iter()
        .find_map(|e| match e {
            Lifecycle::RetryBudgetExhausted { attempts, .. } => Some(*attempts),
            _ => None,
        })
        .unwrap();
    assert_eq!(spent, 3);
    assert!(wait_until(SOON, || rec
        .count(|e| matches!(e, Lifecycle::Gap { .. }))
        == 1));
    assert_in_order(
        &rec.snapshot(),
        &[
            "Disconnected",
            "Reconnecting",
            "RetryBudgetExhausted",
            "Gap",
        ],
    );
    assert_eq!(
        client.health().channels()[0].state,
        genesys_notify::ChannelState::Stopped
    );
    // No more attempts.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(refused(), 3);
    assert_eq!(connected_count(&rec), 1);

    // The user can bring the topics back by subscribing them again.
    let seqs = Seqs::new(&client);
    let topics = presence_topics(1);
    let report = client.subscribe(&topics).unwrap();
    assert_eq!(report.permitted.len(), 1, "{report:?}");
    assert!(flows(&emu, &topics[0], &seqs, 1));
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// Failures in a row count up; a connection that stays healthy for `reset_after` resets the
/// count, so the next failure starts again from the first (shortest) delay.
#[test]
fn retry_count_resets_after_a_healthy_connection() {
    let emu = emulator();
    // Long enough that the first two drops fall within it even on a loaded machine.
    let reset_after = Duration::from_secs(3);
    let client = fast(&emu)
        .backoff(
            genesys_notify::Backoff::default()
                .base(Duration::from_millis(20))
                .cap(Duration::from_millis(200))
                .reset_after(reset_after),
        )
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let _ = client.subscribe(presence_topics(1)).unwrap();
    wait_registered(&emu);
    let id = channel_id(&client);
    let drop_and_wait = || {
        let connected = connected_count(&rec);
        let sockets = emu.channel(&id).map_or(0, |c| c.connections);
        emu.inject(Fault::DropSocket {
            target: Target::channel(&id),
        });
        assert!(wait_until(SOON, || connected_count(&rec) > connected));
        // A new socket: the dropped one stays listed until the emulator has closed it, and a
        // `Connected` counted above may be an earlier one delivered late, so without this the
        // next drop could hit the dead socket and change nothing.
        assert!(wait_until(SOON, || emu
            .channel(&id)
            .is_some_and(|c| c.connected && c.connections > sockets)));
    };
    drop_and_wait();
    drop_and_wait();
    std::thread::sleep(reset_after + Duration::from_millis(500));
    drop_and_wait();
    assert_eq!(attempts(&rec), [1, 2, 1]);
    client.shutdown(Duration::from_secs(2)).unwrap();
}

/// A topic refused (403 / `Rejected`) when the topics are re-applied to a replacement channel is
/// dropped from the set and reported; the other topics flow and nothing loops.
#[test]
fn topic_forbidden_on_reapply_is_rejected_without_a_loop() {
    let s = setup();
    s.emu.deny_topic(&s.topics[1], &["directory:user:view"]);
    let connected = connected_count(&s.rec);
    s.emu.inject(Fault::EvictChannel {
        channel_id: s.id.clone(),
    });
    assert!(wait_until(SOON, || connected_count(&s.rec) > connected));
    assert!(flows(&s.emu, &s.topics[0], &s.seqs, 2));
    let rejected: Vec<String> = s
        .rec
        .snapshot()
        .iter()
        .filter_map(|e| match e {
            Lifecycle::Subscribed { results, .. } => Some(results.clone()),
            _ => None,
        })
        .flatten()
        .filter(|r| r.state == genesys_notify::TopicState::Rejected)
        .map(|r| r.topic)
        .collect();
    assert_eq!(rejected, [s.topics[1].clone()]);
    let wanted: Vec<String> = s
        .client
        .topics()
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    assert_eq!(wanted, [s.topics[0].clone()]);
    std::thread::sleep(Duration::from_millis(500));
    let puts = s
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, 2, "first subscription and one re-application");
    assert_eq!(
        s.rec.count(|e| matches!(e, Lifecycle::Disconnected { .. })),
        1
    );
    s.client.shutdown(Duration::from_secs(2)).unwrap();
}
