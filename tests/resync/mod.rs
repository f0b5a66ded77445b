//! Helpers of the resync tests: listeners that keep each topic's latest view and every event
//! they saw, and comparisons with the emulator's state.
#![allow(dead_code)] // each test file uses a different subset of these helpers

use genesys_notify::emulator::{Emulator, Fault, Target};
use genesys_notify::{same_system_presence, Client, ListenerGuard};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// One event as a listener saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub topic: String,
    pub snapshot: bool,
    pub body: Value,
}

/// A listener keeping everything it saw, per lower-cased topic.
pub struct View {
    pub seen: Arc<Mutex<HashMap<String, Vec<Seen>>>>,
    _guard: ListenerGuard,
}

impl View {
    pub fn new(client: &Client, pattern: &str) -> View {
        let seen: Arc<Mutex<HashMap<String, Vec<Seen>>>> = Arc::default();
        let sink = seen.clone();
        let guard = client
            .on(pattern, move |event| {
                let body = event.body_value().expect("JSON body");
                sink.lock()
                    .entry(event.topic().to_ascii_lowercase())
                    .or_default()
                    .push(Seen {
                        topic: event.topic().to_owned(),
                        snapshot: event.is_snapshot(),
                        body,
                    });
            })
            .expect("listener");
        View {
            seen,
            _guard: guard,
        }
    }

    /// The latest body of `topic` (lower-cased), if any.
    pub fn latest(&self, topic: &str) -> Option<Value> {
        self.seen
            .lock()
            .get(&topic.to_ascii_lowercase())
            .and_then(|list| list.last())
            .map(|s| s.body.clone())
    }

    pub fn log(&self, topic: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .get(&topic.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    pub fn snapshots(&self) -> usize {
        self.seen
            .lock()
            .values()
            .flatten()
            .filter(|s| s.snapshot)
            .count()
    }
}

pub fn presence_topic(user: &str) -> String {
    format!("v2.users.{user}.presence")
}

pub fn routing_topic(user: &str) -> String {
    format!("v2.users.{user}.routingStatus")
}

/// Whether a presence event body shows the emulator's current presence of `user`.
pub fn presence_matches(emu: &Emulator, user: &str, body: Option<&Value>) -> bool {
    let (Some(body), Some(state)) = (body, emu.user_presence(user)) else {
        return false;
    };
    body["presenceDefinition"]["systemPresence"]
        .as_str()
        .is_some_and(|p| same_system_presence(p, &state.system_presence))
        && body["modifiedDate"].as_str() == Some(state.modified_date.as_str())
}

/// Whether a routing-status event body shows the emulator's current routing status of `user`.
pub fn routing_matches(emu: &Emulator, user: &str, body: Option<&Value>) -> bool {
    let (Some(body), Some(state)) = (body, emu.user_routing_status(user)) else {
        return false;
    };
    body["routingStatus"]["status"].as_str() == Some(state.status.as_str())
        && body["routingStatus"]["startTime"].as_str() == Some(state.start_time.as_str())
}

/// The users whose presence or routing status `view` does not show as the emulator has it.
pub fn out_of_date(
    emu: &Emulator,
    view: &View,
    users: &[String],
    presence: bool,
    routing: bool,
) -> Vec<String> {
    let mut stale = Vec::new();
    for user in users {
        if presence && !presence_matches(emu, user, view.latest(&presence_topic(user)).as_ref()) {
            stale.push(format!("{user} presence"));
        }
        if routing && !routing_matches(emu, user, view.latest(&routing_topic(user)).as_ref()) {
            stale.push(format!("{user} routing"));
        }
    }
    stale
}

/// `n` user ids, each with `presence` and, if given, `routing` set in the emulator.
pub fn users_in_state(
    emu: &Emulator,
    n: usize,
    presence: &str,
    routing: Option<&str>,
) -> Vec<String> {
    let users: Vec<String> = (0..n).map(crate::util::user_id).collect();
    for user in &users {
        emu.set_user_presence(user, presence);
        if let Some(status) = routing {
            emu.set_user_routing_status(user, status);
        }
    }
    users
}

/// One topic per user for both its presence and its routing status.
pub fn combined_topics(users: &[String]) -> Vec<String> {
    users
        .iter()
        .map(|u| format!("v2.users.{u}?presence&routingStatus"))
        .collect()
}

/// Subscribes `topics`, asserting that none is rejected.
pub fn subscribe_all<I, S>(client: &Client, topics: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let report = client.subscribe(topics).expect("subscribe");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
}

/// Drops every socket of the emulator (an outage: each channel's gap follows).
pub fn drop_all_sockets(emu: &Emulator) {
    emu.inject(Fault::DropSocket {
        target: Target::AllSockets,
    });
}
