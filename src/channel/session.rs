//! session.rs owns one connected socket of a channel: it reads frames and hands them on,
//! keeps liveness, re-sends pending topic updates and renewals, carries out a `socket_closing`
//! switch and closes the socket. It never decides how to recover (failure.rs does) and never
//! sleeps between attempts (worker.rs does).

use super::connect::{self, ConnectError, Socket, Stamped};
use super::failure::{self, Decision, Operation, SystemAction};
use super::liveness::{Check, Liveness};
use super::slot::Slot;
use super::Shared;
use crate::api::ChannelInfo;
use crate::backoff::Retry;
use crate::channel_id::ChannelId;
use crate::dispatch::Pushed;
use crate::error::DisconnectCause;
use crate::event::{Event, Lifecycle, Origin};
use crate::message::{self, Inbound};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// While frames keep arriving, the read loop's periodic checks run once per this many frames.
const CHECK_EVERY: u32 = 64;

/// The application ping (docs/protocol.md, "The WebSocket": not an RFC 6455 ping frame).
const PING: &str = r#"{"message":"ping"}"#;

/// How a read ended.
pub(super) enum SessionEnd {
    /// The socket ended (or must end) with `cause`. `decision`: what the failure table already
    /// decided (a REST call answered 404 while reading), else it is decided from the cause.
    Ended {
        cause: DisconnectCause,
        decision: Option<Decision>,
    },
    /// `v2.system.socket_closing` arrived: switch to a new socket.
    SwitchDue,
    /// Every topic was rejected at a renewal or re-application: the channel is empty.
    NoTopics,
}

/// How a `socket_closing` switch went.
pub(super) enum Switch {
    /// The new socket takes over.
    Done(Box<Session>),
    /// The new socket could not be opened: keep reading the old one until the server closes it.
    KeepOld,
    /// The old socket ended for a reason that makes the new one useless.
    Ended(DisconnectCause),
}

/// What the frame handler asks the read loop to do.
enum Next {
    Continue,
    End(DisconnectCause),
    Switch,
}

/// How many clones of a socket's [`Origin`] are made at a time (`Session::next_origin`).
const ORIGIN_BATCH: usize = 64;

/// One connected socket of a channel.
pub(super) struct Session {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    socket: Socket,
    origin: Arc<Origin>,
    /// Clones of `origin` made ahead, one for each coming event (see `next_origin`).
    spare_origins: Vec<Arc<Origin>>,
    liveness: Liveness,
    /// Failed re-sends of a user's topic update back off, so the read loop never hammers.
    update_retry: Retry,
    update_retry_at: Option<Instant>,
    /// When reading started (all topics subscribed), for the healthy test.
    reading_since: Option<Instant>,
    /// The read timeout: how often the periodic checks run at least.
    tick: Duration,
    /// When the last frame of any kind arrived (published by `publish_last_frame`).
    last_frame_at: Option<Instant>,
    /// An event read but not queued: a nudge interrupted its blocked push (`queue`). The
    /// session ends with it; the worker queues it before any event of the next socket.
    pub(super) held: Option<Event>,
}

impl Session {
    /// Opens a socket to the channel `info` within `connect_timeout`. The TCP stream is handed
    /// to the slot for interrupts as soon as TCP is connected (a stop can cut the handshake
    /// short); the returned clone is the one to register once the session takes over.
    pub(super) fn open(
        slot: &Arc<Slot>,
        shared: &Arc<Shared>,
        info: &ChannelInfo,
    ) -> Result<(Session, TcpStream), ConnectError> {
        let config = &shared.config;
        let (socket, interrupt) = connect::connect(
            &info.connect_uri,
            config.connect_timeout,
            config.max_message_size,
            &shared.network,
            &|stream| slot.set_interrupt(Some(stream)),
        )?;
        let session = Session::new(slot, shared, socket, ChannelId::new(&info.id));
        Ok((session, interrupt))
    }

    fn new(slot: &Arc<Slot>, shared: &Arc<Shared>, socket: Socket, id: ChannelId) -> Session {
        let config = &shared.config;
        let tick = [
            config.ping_interval,
            config.pong_timeout,
            config.liveness_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1))
        .div_f64(4.0)
        .clamp(Duration::from_millis(10), Duration::from_secs(5));
        Session {
            origin: Arc::new(Origin {
                channel: id,
                stats: slot.stats().clone(),
                epoch: shared.epoch,
            }),
            spare_origins: Vec::with_capacity(ORIGIN_BATCH),
            slot: slot.clone(),
            shared: shared.clone(),
            socket,
            liveness: Liveness::new(Instant::now()),
            update_retry: Retry::new(config.backoff.clone()),
            update_retry_at: None,
            reading_since: None,
            tick,
            last_frame_at: None,
            held: None,
        }
    }

    pub(super) fn id(&self) -> &ChannelId {
        &self.origin.channel
    }

    /// Whether the socket was read long enough to count as healthy (`Backoff::reset_after`,
    /// 1 s by default): its end is then a success, not a failure (issue #10). A server that
    /// accepts and closes at once never passes, so it still backs off.
    pub(super) fn healthy(&self) -> bool {
        self.lasted(self.shared.config.backoff.reset_after)
    }

    /// Whether the socket was read at least `d`.
    pub(super) fn lasted(&self, d: Duration) -> bool {
        self.reading_since.is_some_and(|at| at.elapsed() >= d)
    }

    fn stamped(&self) -> Option<&Stamped<TcpStream>> {
        match self.socket.get_ref() {
            tungstenite::stream::MaybeTlsStream::Plain(stream) => Some(stream),
            tungstenite::stream::MaybeTlsStream::Rustls(tls) => Some(tls.get_ref()),
            _ => None,
        }
    }

    fn tcp(&self) -> Option<&TcpStream> {
        self.stamped().map(Stamped::get_ref)
    }

    /// A clone of this socket's TCP stream for the slot's interrupts; `None` when it cannot be
    /// cloned (out of file descriptors: a stop is then seen at the next read timeout).
    fn interrupt_handle(&self) -> Option<TcpStream> {
        let stream = self.tcp()?;
        match stream.try_clone() {
            Ok(clone) => Some(clone),
            Err(error) => {
                log::warn!(
                    "cannot clone the socket of {} for interrupts: {error}",
                    self.id()
                );
                None
            }
        }
    }

    /// A reference to this socket's [`Origin`] for one event. Each event holds one and the
    /// dispatcher thread drops it: cloning one per event made the reference count's cache line
    /// travel between the two threads twice per event (profiled: the most expensive instruction
    /// of `handle`). Clones made in batches move it twice per batch.
    fn next_origin(&mut self) -> Arc<Origin> {
        if let Some(origin) = self.spare_origins.pop() {
            return origin;
        }
        let origin = &self.origin;
        self.spare_origins
            .extend(std::iter::repeat_with(|| origin.clone()).take(ORIGIN_BATCH));
        origin.clone()
    }

    /// When the bytes of the frame just decoded were read from the kernel.
    fn received_at(&self) -> Instant {
        self.stamped().map_or_else(Instant::now, Stamped::last_read)
    }

    /// Every topic is subscribed: reading starts now.
    pub(super) fn start_reading(&mut self) {
        let config = &self.shared.config;
        if let Some(stream) = self.tcp() {
            let _ = stream.set_read_timeout(Some(self.tick));
            // A ping that cannot be written is as dead as one not answered.
            let _ = stream.set_write_timeout(Some(config.pong_timeout));
        }
        let now = Instant::now();
        self.liveness = Liveness::new(now);
        self.reading_since = Some(now);
        // While connected a nudge is delivered by interrupting the socket; a stale one must not
        // cut a later backoff short.
        self.slot.clear_nudge();
    }

    /// Reads the socket until it fails, goes silent, the user stops, the channel empties, or a
    /// `socket_closing` warning asks for a switch.
    pub(super) fn read(&mut self) -> SessionEnd {
        let end = self.read_frames(None);
        self.publish_last_frame();
        // Without a deadline the loop only returns when the socket ends.
        end.unwrap_or(SessionEnd::SwitchDue)
    }

    /// Reads the socket as [`Session::read`] does until `until`; `None` when `until` came first.
    /// Used while a `socket_closing` switch waits its jitter: the old socket is still read, so a
    /// server close that comes first is an ordinary end of the socket (its gap is reported),
    /// not events lost unseen while nothing read the socket. Further `socket_closing` warnings
    /// are reported but do not start another switch.
    pub(super) fn read_until(&mut self, until: Instant) -> Option<SessionEnd> {
        // A read blocks at most until the deadline (the usual timeout is the check interval).
        let left = until.saturating_duration_since(Instant::now());
        self.set_read_timeout(left.clamp(Duration::from_millis(1), self.tick));
        let end = self.read_frames(Some(until));
        self.set_read_timeout(self.tick);
        self.publish_last_frame();
        end
    }

    fn set_read_timeout(&self, timeout: Duration) {
        if let Some(stream) = self.tcp() {
            let _ = stream.set_read_timeout(Some(timeout));
        }
    }

    /// Publishes when the last frame arrived (health, gap reports). Done at the read loop's
    /// periodic checks and when it ends, not per frame (profiled: the conversion per frame was
    /// a visible share of the socket thread's time); the published time is exact, at most one
    /// check interval old.
    fn publish_last_frame(&self) {
        if let Some(at) = self.last_frame_at {
            self.slot.stats().last_frame_nanos.store(
                at.saturating_duration_since(self.shared.epoch.0)
                    .as_nanos()
                    .max(1) as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// Reads until the socket ends (`Some`), or until `until` when given (`None`).
    fn read_frames(&mut self, until: Option<Instant>) -> Option<SessionEnd> {
        let ended = |cause| {
            Some(SessionEnd::Ended {
                cause,
                decision: None,
            })
        };
        let mut frames_since_check = 0u32;
        let mut last_check = Instant::now();
        loop {
            if self.slot.is_stopping() {
                return ended(DisconnectCause::UserRequest);
            }
            // Only while a switch waits (a fraction of a second): a clock reading per frame.
            if until.is_some_and(|until| Instant::now() >= until) {
                return None;
            }
            match self.socket.read() {
                Ok(message) => {
                    match self.handle(message) {
                        Next::Continue => {}
                        Next::End(cause) => return ended(cause),
                        Next::Switch if until.is_none() => return Some(SessionEnd::SwitchDue),
                        Next::Switch => {}
                    }
                    // While frames flow the socket is alive: the periodic checks below (ping,
                    // renewal, pending updates) run on every read timeout, every CHECK_EVERY
                    // frames and at least every tick, not after each frame.
                    frames_since_check += 1;
                    if frames_since_check < CHECK_EVERY
                        && self.liveness.last_frame() < last_check + self.tick
                    {
                        continue;
                    }
                    frames_since_check = 0;
                }
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                Err(error) => {
                    if self.slot.is_stopping() {
                        return ended(DisconnectCause::UserRequest);
                    }
                    return ended(self.read_failed(&error));
                }
            }
            let now = Instant::now();
            last_check = now;
            self.publish_last_frame();
            match self.liveness.check(now, &self.shared.config) {
                Check::Fine => {}
                Check::SendPing => {
                    if let Err(error) = self.socket.send(Message::text(PING)) {
                        return ended(self.read_failed(&error));
                    }
                }
                Check::Dead(silent_for) => {
                    return ended(DisconnectCause::LivenessTimeout { silent_for })
                }
            }
            if let Some(end) = self.apply_pending(now) {
                return Some(end);
            }
        }
    }

    /// Re-sends a pending user update or renews the channel when due.
    fn apply_pending(&mut self, now: Instant) -> Option<SessionEnd> {
        let update_due =
            self.update_retry_at.is_none_or(|at| now >= at) && self.slot.take_reapply();
        if !update_due && !self.slot.renewal_due(now) {
            return None;
        }
        let operation = if update_due {
            Operation::UpdateTopics
        } else {
            Operation::RenewChannel
        };
        let started = Instant::now();
        let outcome = match self.slot.apply_topics(&self.shared) {
            Ok(results) => {
                self.update_retry.reset();
                self.update_retry_at = None;
                self.slot
                    .emptied_by_rejection(&results)
                    .then_some(SessionEnd::NoTopics)
            }
            Err(error) => {
                let api_base = &self.shared.config.api_base;
                match failure::rest(operation, &error, true, api_base) {
                    decision @ Decision::ReplaceChannel { .. } => Some(SessionEnd::Ended {
                        cause: DisconnectCause::ChannelGone,
                        decision: Some(decision),
                    }),
                    _ => {
                        let after = Instant::now();
                        let delay = self
                            .update_retry
                            .next_delay(error.retry_after())
                            .unwrap_or(self.shared.config.backoff.cap);
                        self.slot.renewal_failed(after, delay);
                        if update_due {
                            // Not sent: keep it pending, to be tried after the delay.
                            self.slot.reapply_later();
                            self.update_retry_at = after.checked_add(delay);
                        }
                        self.shared.emit(Lifecycle::RequestFailed {
                            channel: Some(self.id().clone()),
                            operation: operation.as_str(),
                            error,
                            count: 1,
                        });
                        None
                    }
                }
            }
        };
        // Time spent on the REST call is not server silence.
        self.liveness.blocked(started.elapsed());
        outcome
    }

    /// Classifies a read error (failure.rs) and reports a malformed frame behind it.
    fn read_failed(&self, error: &tungstenite::Error) -> DisconnectCause {
        let read = failure::read_error(error);
        if let Some(reason) = read.malformed {
            self.slot.stats().malformed.fetch_add(1, Ordering::Relaxed);
            self.shared.emit(Lifecycle::MalformedMessage {
                channel: self.id().clone(),
                reason,
                excerpt: String::new(),
            });
        }
        read.cause
    }

    /// `v2.system.socket_closing`: connects a new socket to the same channel (the server then
    /// drops the old one), delivers what is still arriving on the old socket, and hands over.
    pub(super) fn switch(&mut self) -> Switch {
        let Some(info) = self.slot.channel() else {
            return Switch::KeepOld;
        };
        // A stop during the switch can interrupt the new connection; the old socket's read loop
        // checks for the stop at every tick.
        let (mut next, interrupt) = match Session::open(&self.slot, &self.shared, &info) {
            Ok(next) => next,
            Err(error) => {
                // `open` handed the new connection's TCP stream to the slot for interrupts as
                // soon as it was connected: give the slot the old one back, so that a stop or a
                // nudge reaches the socket still read (not only at its next read timeout), and
                // so that the slot's clone does not hold the failed connection open.
                self.slot.set_interrupt(self.interrupt_handle());
                log::warn!(
                    "socket_closing: opening the new socket for {} failed ({error}); keeping the old one",
                    self.id()
                );
                return Switch::KeepOld;
            }
        };
        let drain_until = Instant::now() + self.shared.config.pong_timeout;
        while Instant::now() < drain_until && !self.slot.is_stopping() {
            match self.socket.read() {
                Ok(message) => match self.handle(message) {
                    Next::Continue | Next::Switch => {}
                    Next::End(DisconnectCause::ChannelGone) => {
                        // The channel lost its subscriptions: the new socket is useless.
                        next.close();
                        self.publish_last_frame();
                        return Switch::Ended(DisconnectCause::ChannelGone);
                    }
                    Next::End(_) => break,
                },
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
        self.publish_last_frame();
        self.close();
        self.slot.set_interrupt(Some(interrupt));
        Switch::Done(Box::new(next))
    }

    /// Sends a close frame (best effort, bounded by a short write timeout) and drops the
    /// connection.
    pub(super) fn close(&mut self) {
        if let Some(stream) = self.tcp() {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
        }
        if self.socket.can_write() {
            let _ = self.socket.close(None);
            let _ = self.socket.flush();
        } else if self.slot.is_stopping() {
            // `stop` shut the read half to wake the blocked read; tungstenite took the EOF for
            // the end of the connection and will not send a close frame any more, but the write
            // half still works: send the (masked, client-side) close frame ourselves.
            let mut frame = tungstenite::protocol::frame::Frame::close(None);
            frame.header_mut().mask = Some(rand::random());
            let mut bytes = Vec::new();
            if frame.format(&mut bytes).is_ok() {
                let stream = self.socket.get_mut();
                let _ = std::io::Write::write_all(stream, &bytes);
                let _ = std::io::Write::flush(stream);
            }
        }
        if let Some(stream) = self.tcp() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Counts a notification received and queues it for the dispatcher. A nudge that comes
    /// while the push waits for room (`Backpressure::Block`) ends the socket as the nudge's
    /// interrupt would: the event is kept in `held`, not lost, and the thread serves the nudge
    /// (a callback that called `subscribe` may be what holds the queue full).
    fn queue(&mut self, event: Event) -> Next {
        // Only this channel's worker thread writes the count: a load and a store keep it exact
        // without a locked read-modify-write per event (profiled).
        let received = &self.slot.stats().received;
        received.store(received.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let slot = &self.slot;
        match self
            .shared
            .dispatcher
            .push(event, slot.stopping_flag(), &|| slot.nudge_pending())
        {
            // Time spent blocked by backpressure is not server silence.
            Pushed::QueuedAfter(blocked) => self.liveness.blocked(blocked),
            Pushed::Interrupted(event) => {
                self.held = Some(event);
                return Next::End(nudged());
            }
            Pushed::Queued | Pushed::DroppedNewest | Pushed::DroppedOldest => {}
        }
        Next::Continue
    }

    fn handle(&mut self, message: Message) -> Next {
        let stats = self.slot.stats();
        let id = &self.origin.channel;
        // The time its bytes were read (one clock reading per read from the kernel, not per
        // frame) serves liveness, health and the event's timestamps.
        let now = self.received_at();
        self.liveness.frame(now);
        self.last_frame_at = Some(now);
        match message {
            Message::Text(text) => {
                // A notification by its first key: its envelope is parsed by the dispatcher
                // thread (message::notification_topic says why).
                if let Some(topic) = message::notification_topic(text.as_str()) {
                    let event = Event::unlocated(text, topic, self.next_origin(), now);
                    return self.queue(event);
                }
                match message::parse(text.as_str()) {
                    Ok(Inbound::Notification(located)) => {
                        let event = Event::new(text, located, self.next_origin(), now);
                        return self.queue(event);
                    }
                    Ok(Inbound::Heartbeat) => {
                        stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Inbound::Pong) => {
                        if let Some(rtt) = self.liveness.pong(now) {
                            stats
                                .ping_rtt_nanos
                                .store(rtt.as_nanos().max(1) as u64, Ordering::Relaxed);
                        }
                    }
                    Ok(Inbound::Metadata(message)) => {
                        log::debug!("channel.metadata on {id}: {message:?}");
                    }
                    Ok(Inbound::System(mut system)) => {
                        // System bodies name the channel (`channelId`): never pass the full id on,
                        // in any of the server's texts.
                        let short = crate::redact::short_id(id.as_str());
                        system.topic = system.topic.replace(id.as_str(), &short);
                        system.event_body = system.event_body.replace(id.as_str(), &short);
                        for text in [
                            &mut system.message,
                            &mut system.reason,
                            &mut system.system_topic_type,
                        ]
                        .into_iter()
                        .flatten()
                        {
                            *text = text.replace(id.as_str(), &short);
                        }
                        let action = failure::system_message(&system);
                        self.shared.emit(Lifecycle::SystemMessage {
                            channel: id.clone(),
                            message: system,
                        });
                        match action {
                            SystemAction::Report => {}
                            SystemAction::SwitchSocket => return Next::Switch,
                            SystemAction::End(cause) => return Next::End(cause),
                        }
                    }
                    Err(malformed) => {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        self.shared
                            .emit(Lifecycle::malformed_frame(id, text.as_str(), malformed));
                    }
                }
            }
            Message::Binary(bytes) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                self.shared.emit(Lifecycle::MalformedMessage {
                    channel: id.clone(),
                    reason: format!(
                        "binary frame of {} bytes (the service sends text frames only)",
                        bytes.len()
                    ),
                    excerpt: String::new(),
                });
            }
            Message::Ping(_) => {
                // tungstenite queued the pong; send it now.
                let _ = self.socket.flush();
            }
            Message::Close(frame) => {
                let _ = self.socket.flush();
                // The server's reason may name the channel: shorten its id as above.
                let (code, reason) = match frame {
                    Some(frame) => (
                        Some(u16::from(frame.code)),
                        frame
                            .reason
                            .replace(id.as_str(), &crate::redact::short_id(id.as_str())),
                    ),
                    None => (None, String::new()),
                };
                return Next::End(failure::close_frame(code, reason));
            }
            Message::Pong(_) | Message::Frame(_) => {}
        }
        Next::Continue
    }
}

/// How a socket ends when a nudge interrupted a blocked push: as the nudge's interrupt of the
/// socket ends it (the read half shut, so the read sees the connection end without a close
/// frame), so that the failure table decides the same (check the channel).
pub(super) fn nudged() -> DisconnectCause {
    DisconnectCause::Io("the TCP connection ended without a close frame (interrupted)".into())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
