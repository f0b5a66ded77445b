//! A five-second tour of genesys-notify against the built-in emulator (a fake Genesys Cloud on
//! 127.0.0.1), so it needs no organisation and no credentials:
//!
//! ```text
//! cargo run --example quickstart --features emulator
//! ```
//!
//! It starts the emulator, builds a client, registers a lifecycle listener and two notification
//! listeners, subscribes five agents' presence and routing status (some as combined topics
//! `v2.users.<id>?presence&routingStatus`), has a background thread publish realistic events for
//! three seconds, drops one listener's guard half-way, prints a health summary and shuts down.
//!
//! Notifications go to stdout, lifecycle events to stderr.

use genesys_notify::emulator::Emulator;
use genesys_notify::{Client, Event, Lifecycle};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The agents whose presence and routing status we follow (user ids are UUIDs in Genesys).
const AGENTS: [(&str, &str); 5] = [
    ("Ada", "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f"),
    ("Grace", "3b1f0c2e-8d4a-4f6b-9e2d-7a5c1b0e4d11"),
    ("Alan", "c4e2a9b0-1f3d-4c5e-8a7b-2d6f9e0a1b22"),
    ("Edsger", "5d8c7b6a-2e1f-4a3b-9c8d-0e1f2a3b4c33"),
    ("Barbara", "e1a2b3c4-d5e6-4f70-8192-a3b4c5d6e744"),
];

/// The part of a `v2.users.<id>.presence` body we use (payloads/users.presence.json).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Presence {
    source: String,
    presence_definition: PresenceDefinition,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresenceDefinition {
    system_presence: String,
}

/// The body of a `v2.users.<id>.routingStatus` event.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoutingStatusEvent {
    routing_status: RoutingStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoutingStatus {
    status: String,
    start_time: String,
}

/// "Ada" for a topic `v2.users.<Ada's id>.presence`.
fn agent_name(topic: &str) -> &'static str {
    let id = topic.split('.').nth(2).unwrap_or("");
    AGENTS
        .iter()
        .find(|(_, agent)| agent.eq_ignore_ascii_case(id))
        .map_or("someone", |(name, _)| name)
}

/// The first 8 characters of a correlation id: enough to tell events apart on screen.
fn short(id: Option<&str>) -> &str {
    id.map_or("-", |id| id.get(..8).unwrap_or(id))
}

/// One short line per lifecycle event.
fn describe(event: &Lifecycle) -> String {
    match event {
        Lifecycle::ChannelCreated { channel, .. } => format!("channel {channel} created"),
        Lifecycle::Connected { channel, .. } => format!("socket connected to channel {channel}"),
        Lifecycle::Subscribed {
            channel, results, ..
        } => {
            format!("{} topics subscribed on channel {channel}", results.len())
        }
        Lifecycle::Disconnected { channel, cause, .. } => {
            format!("channel {channel} disconnected: {cause}")
        }
        Lifecycle::TokenRefreshed { expires_in, .. } => match expires_in {
            Some(d) => format!("access token obtained, valid for {} s", d.as_secs()),
            None => "access token obtained".to_owned(),
        },
        other => format!("{other:?}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();

    // 1. A fake Genesys Cloud: token endpoint, REST API and WebSocket on 127.0.0.1.
    let emulator = Emulator::start()?;
    println!("Emulator listening at {}", emulator.api_base());

    // 2. A client pointed at it. Against a real org you would call `.region(Region::EuWest1)`
    //    and give your own OAuth client id and secret.
    let client = Client::builder()
        .api_base(emulator.api_base())
        .login_base(emulator.login_base())
        .client_credentials(emulator.client_id(), emulator.client_secret())
        .build()?;

    // 3. Listeners. Each `on` returns a guard: keep it, or the callback is unregistered.
    let _lifecycle = client.on_lifecycle(|event| eprintln!("  [lifecycle] {}", describe(event)))?;

    let _presence = client.on("v2.users.*.presence", |event: &Event| {
        match event.body::<Presence>() {
            Ok(body) => println!(
                "  {:<8} presence       {:<14} (source {}, correlation {}…)  {}",
                agent_name(event.topic()),
                body.presence_definition.system_presence,
                body.source,
                short(event.correlation_id()),
                event.topic(),
            ),
            Err(e) => println!("  unexpected presence body on {}: {e}", event.topic()),
        }
    })?;

    // Patterns ignore case: this matches `...routingStatus` as sent by the service.
    let _routing = client.on("v2.users.*.routingstatus", |event: &Event| match event
        .body::<RoutingStatusEvent>(
    ) {
        Ok(body) => println!(
            "  {:<8} routing status {:<14} (since {}, correlation {}…)  {}",
            agent_name(event.topic()),
            body.routing_status.status,
            body.routing_status.start_time,
            short(event.correlation_id()),
            event.topic(),
        ),
        Err(e) => println!("  unexpected routing status body on {}: {e}", event.topic()),
    })?;

    // A second presence listener that only counts; we drop its guard half-way.
    let counted = Arc::new(AtomicUsize::new(0));
    let counter = counted.clone();
    let counting_guard = client.on("v2.users.*.presence", move |_event: &Event| {
        counter.fetch_add(1, Ordering::SeqCst);
    })?;

    // 4. Subscribe. The first three agents use one combined topic each, which brings both
    //    `.presence` and `.routingStatus` events; the last two use the individual topics.
    let mut topics = Vec::new();
    for (i, (_, id)) in AGENTS.iter().enumerate() {
        if i < 3 {
            topics.push(format!("v2.users.{id}?presence&routingStatus"));
        } else {
            topics.push(format!("v2.users.{id}.presence"));
            topics.push(format!("v2.users.{id}.routingStatus"));
        }
    }
    println!("\nSubscribing {} topics:", topics.len());
    for topic in &topics {
        println!("  {topic}");
    }
    let report = client.subscribe(&topics)?;
    println!(
        "Subscribed: {} permitted, {} rejected.",
        report.permitted.len(),
        report.rejected.len()
    );
    println!("\nEvents as they arrive (agent, topic kind, new value, details, topic name):");

    // 5. A background thread plays the part of Genesys Cloud: agents change presence and
    //    routing status for three seconds.
    let published = std::thread::scope(|scope| {
        let publisher = scope.spawn(|| {
            const PRESENCES: [&str; 5] = ["AVAILABLE", "ON_QUEUE", "BUSY", "BREAK", "AWAY"];
            const STATUSES: [&str; 4] = ["IDLE", "INTERACTING", "NOT_RESPONDING", "OFF_QUEUE"];
            let mut published = 0;
            for tick in 0..20 {
                let (_, id) = AGENTS[tick % AGENTS.len()];
                if tick % 2 == 0 {
                    let body = json!({
                        "source": "PURECLOUD",
                        "presenceDefinition": {
                            "id": "6a3af858-942f-489d-9700-5f9bcdcdae9b",
                            "systemPresence": PRESENCES[tick / 2 % PRESENCES.len()],
                        },
                        "primary": true,
                        "message": "",
                    });
                    published += emulator.publish(&format!("v2.users.{id}.presence"), body);
                } else {
                    let body = json!({
                        "routingStatus": {
                            "status": STATUSES[tick / 2 % STATUSES.len()],
                            "startTime": format!("2026-11-29T10:00:{:02}.000Z", tick),
                        }
                    });
                    published += emulator.publish(&format!("v2.users.{id}.routingStatus"), body);
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            published
        });

        // 6. Half-way, drop the counting listener's guard. Once `drop` returns, its callback is
        //    not running and will never run again.
        std::thread::sleep(Duration::from_millis(1500));
        drop(counting_guard);
        let at_drop = counted.load(Ordering::SeqCst);
        println!(
            "\n  >> Dropped the counting listener's guard after {at_drop} presence events: \
             its callback will not run again.\n"
        );
        let published = publisher.join().expect("publisher thread");
        let after = counted.load(Ordering::SeqCst);
        println!(
            "\n  >> The counting listener still shows {after} (it was {at_drop} when dropped): \
             no call after the drop."
        );
        published
    });

    // 7. Health: every notification read is delivered, dropped (backpressure) or unrouted.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut health = client.health();
    while health.delivered() + health.unrouted() + health.dropped() < published as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
        health = client.health();
    }
    println!("\nHealth after publishing {published} events:");
    for channel in health.channels() {
        let id = channel
            .channel
            .as_ref()
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        println!(
            "  channel {id}: {:?}, {} topics, received {}, delivered {}, dropped {}, unrouted {}, \
             malformed {}, reconnects {}",
            channel.state,
            channel.topics,
            channel.received,
            channel.delivered,
            channel.dropped,
            channel.unrouted,
            channel.malformed,
            channel.reconnects,
        );
    }
    println!("  dispatcher queue depths: {:?}", health.queue_depths());
    let wait = health.dispatch_wait();
    if let (Some(p50), Some(max)) = (wait.p50, wait.max) {
        println!(
            "  wait from socket to callback over the last 1-2 s: median {p50:?}, longest {max:?} ({} events)",
            wait.samples
        );
    }
    println!("  listeners by pattern: {:?}", health.listeners());
    println!("  listener panics: {}", health.listener_panics());

    // 8. Shut down: close frames, DELETE of the subscriptions, every thread joined.
    let stopping = Instant::now();
    client.shutdown(Duration::from_secs(5))?;
    println!(
        "\nShut down cleanly in {} ms (whole run: {:.1} s).",
        stopping.elapsed().as_millis(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
