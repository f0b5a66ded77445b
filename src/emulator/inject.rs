//! Fault injection into the emulator's state: which sockets a fault targets, and what each
//! [`Fault`] does to them, to channels, tokens or REST answers. It never blocks and never
//! touches a socket itself (the connections' writer threads carry out what is queued here).

use std::time::Instant;

use serde_json::json;

use super::fault::{Fault, Target};
use super::{ChannelRemoval, SocketEventKind, CLOSE_GOING_AWAY};

use super::state::{later, uuid, HttpFault, Out, State};

impl State {
    /// Connection numbers a socket fault applies to.
    fn targets(&self, target: &Target) -> Vec<u64> {
        let found: Vec<u64> = match target {
            Target::Channel(id) => self
                .channels
                .iter()
                .filter(|c| c.id == *id)
                .filter_map(|c| c.conn)
                .collect(),
            Target::AllSockets => {
                let mut all: Vec<u64> = self.conns.keys().copied().collect();
                all.sort_unstable();
                all
            }
        };
        if found.is_empty() {
            log::warn!("emulator: fault target {target:?} has no connected socket");
        }
        found
    }

    /// Applies a fault.
    pub fn inject(&mut self, fault: Fault) {
        let now = Instant::now();
        self.sweep(now);
        match fault {
            Fault::CloseSocket {
                target,
                code,
                reason,
            } => {
                for c in self.targets(&target) {
                    let reason = truncate_utf8(&reason, 123);
                    let code = Some(code);
                    self.send_to_conn(c, Out::Close { code, reason });
                }
            }
            Fault::CloseWithoutStatus { target } => {
                for c in self.targets(&target) {
                    let reason = String::new();
                    self.send_to_conn(c, Out::Close { code: None, reason });
                }
            }
            Fault::DropSocket { target } => {
                for c in self.targets(&target) {
                    self.send_to_conn(c, Out::Drop);
                }
            }
            Fault::ResetSocket { target } => {
                for c in self.targets(&target) {
                    self.send_to_conn(c, Out::Reset);
                }
            }
            Fault::GoSilent { target } => {
                for c in self.targets(&target) {
                    if self.send_to_conn(c, Out::Silent) {
                        let id = self.conns[&c].channel_id.clone();
                        self.log(&id, c, SocketEventKind::WentSilent);
                    }
                }
            }
            Fault::SocketClosing {
                target,
                close_after,
            } => {
                for c in self.targets(&target) {
                    let id = self.conns[&c].channel_id.clone();
                    let msg = json!({
                        "topicName": "v2.system.socket_closing",
                        "version": "2",
                        "eventBody": {
                            "channelId": id,
                            "systemTopicType": "socket_closing",
                            "reason": "maintenance",
                            "message": "The socket will close soon for maintenance; connect a new socket",
                        },
                        "metadata": {"CorrelationId": uuid()},
                    });
                    self.send_to_conn(c, Out::Text(msg.to_string()));
                    self.log(&id, c, SocketEventKind::SocketClosingSent);
                    if let Some(d) = close_after {
                        let close = Out::Close {
                            code: Some(CLOSE_GOING_AWAY),
                            reason: "socket closing for maintenance".into(),
                        };
                        self.scheduled.push((later(now, d), c, close));
                    }
                }
            }
            Fault::ExpireChannel { channel_id } => {
                if !self.remove_channel(&channel_id, ChannelRemoval::Expired) {
                    log::warn!("emulator: ExpireChannel: no live channel {channel_id}");
                }
            }
            Fault::EvictChannel { channel_id } => {
                if !self.remove_channel(&channel_id, ChannelRemoval::Evicted) {
                    log::warn!("emulator: EvictChannel: no live channel {channel_id}");
                }
            }
            Fault::ExpireTokens => {
                for exp in self.tokens.values_mut() {
                    *exp = (*exp).min(now);
                }
            }
            Fault::HttpStatus {
                endpoint,
                status,
                retry_after,
                times,
            } => {
                if times > 0 {
                    self.http_faults.push(HttpFault {
                        endpoint,
                        status,
                        retry_after,
                        remaining: times,
                    });
                }
            }
            Fault::RefuseHandshakes { times } => self.refuse_handshakes += times,
            Fault::HangHandshakes { times } => self.hang_handshakes += times,
            Fault::FragmentEvents {
                target,
                events,
                fragment_size,
            } => {
                for c in self.targets(&target) {
                    let size = fragment_size.max(1);
                    self.send_to_conn(c, Out::Fragment { events, size });
                }
            }
            Fault::OversizeFrame { target, bytes } => {
                let text = oversize_text(bytes);
                for c in self.targets(&target) {
                    self.send_to_conn(c, Out::Text(text.clone()));
                }
            }
            Fault::MalformedJson { target } => {
                for c in self.targets(&target) {
                    let text = r#"{"topicName":"v2.emulator.malformed","eventBody":{"oops""#;
                    self.send_to_conn(c, Out::Text(text.into()));
                }
            }
            Fault::BinaryFrame { target, data } => {
                for c in self.targets(&target) {
                    self.send_to_conn(c, Out::Binary(data.clone()));
                }
            }
            // Needs a thread and a socket: `Emulator::inject` handles it without the lock.
            Fault::Takeover { .. } => {}
        }
    }
}

/// A valid notification JSON padded to exactly `bytes` bytes, or `x`s if too small.
fn oversize_text(bytes: usize) -> String {
    let head = r#"{"topicName":"v2.emulator.oversize","eventBody":{"padding":""#;
    let tail = r#""}}"#;
    if bytes < head.len() + tail.len() {
        return "x".repeat(bytes);
    }
    let mut s = String::with_capacity(bytes);
    s.push_str(head);
    s.extend(std::iter::repeat_n('x', bytes - head.len() - tail.len()));
    s.push_str(tail);
    s
}

fn truncate_utf8(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
