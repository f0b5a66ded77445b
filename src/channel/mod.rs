//! channel/ owns the notification channels: one OS thread per channel creates it, connects its
//! socket, applies its topics, reads frames with liveness deadlines and recovers from every
//! failure with backoff. It never runs a listener's callback (dispatch/ does).
//!
//! One concept per file:
//! - `slot.rs`: the slot the client and the channel's thread share (topics, channel, signals);
//! - `worker.rs`: the thread's state machine (every phase and transition);
//! - `failure.rs`: the pure table from each failure to a decision and a `DisconnectCause`;
//! - `session.rs`: one connected socket (read, handle frames, `socket_closing` switch, close);
//! - `connect.rs`: opening a socket within a deadline;
//! - `liveness.rs`, `renewal.rs`: pure timing decisions (ping/dead socket, channel renewal).
//!
//! Per attempt, strictly one after the other (never two live sockets except during a
//! `socket_closing` switch): create a channel if there is none or the last one is gone
//! (docs/protocol.md, "Channels"); connect the socket (deadline: `connect_timeout`); on a new
//! channel, `PUT` its topics with `ignoreErrors=true` — after the socket is connected, so that
//! no event published after the subscription is missed; read until the socket fails, goes
//! silent, or the user stops; report the gap; back off.

pub(crate) mod connect;
mod failure;
mod liveness;
mod renewal;
mod session;
mod slot;
pub(crate) mod topics;
mod worker;

pub(crate) use slot::{SetupFailure, Slot};

use crate::api::Api;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::event::Lifecycle;
use crate::health::StatsRegistry;
use std::time::{Instant, SystemTime};

/// What every channel thread of one client shares.
pub(crate) struct Shared {
    pub config: Config,
    pub api: Api,
    pub dispatcher: Dispatcher,
    /// Proxy, trust roots and streaming override, resolved at `build()` (network.rs).
    pub network: crate::network::Network,
    /// The monotonic and wall-clock origin of the health snapshot's timestamps.
    pub epoch: (Instant, SystemTime),
    /// Every channel's counters since the client started (health totals never go down).
    pub stats: StatsRegistry,
}

impl Shared {
    fn emit(&self, event: Lifecycle) {
        self.dispatcher.lifecycle.emit(event);
    }
}
