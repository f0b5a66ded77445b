//! The operator's HTTP face (`--http 127.0.0.1:PORT`): `/metrics` (Prometheus text format
//! 0.0.4), `/health` (JSON) and `/` (a status page that reloads itself every 2 s). It only
//! reads the bridge's counters and last coordinator view; it never talks to Redis or Genesys.
//!
//! # Metrics (a contract: names and labels do not change)
//! Counters (since the process started):
//! - `genesys_bridge_events_in_total`: events and snapshots handed over by the library;
//! - `genesys_bridge_entries_written_total`: entries Redis acknowledged (events, gaps,
//!   lifecycle);
//! - `genesys_bridge_gaps_total`: gap entries queued;
//! - `genesys_bridge_dropped_total`: events dropped past the byte budget;
//! - `genesys_bridge_discarded_total`: events left to a new holder's gap (lease lost);
//! - `genesys_bridge_unowned_total`: events of shards not held (after a release);
//! - `genesys_bridge_redis_errors_total`: failed Redis connections and commands;
//! - `genesys_bridge_fenced_total`: batches refused by the fence;
//! - `genesys_bridge_leases_acquired_total`, `genesys_bridge_leases_lost_total`.
//!
//! Gauges:
//! - `genesys_bridge_shards_held`, `genesys_bridge_shards` (the configured count);
//! - `genesys_bridge_members`: live bridge processes seen at the last round;
//! - `genesys_bridge_buffer_bytes`, `genesys_bridge_buffer_budget_bytes`;
//! - `genesys_bridge_redis_up`: 1, or 0 while writes fail;
//! - `genesys_bridge_shard_lag_seconds{shard="N"}`, per shard held: age of its oldest event
//!   not yet acknowledged by Redis (0 when none waits);
//! - `genesys_bridge_channels{credential="I",state="connected|other"}` and
//!   `genesys_bridge_topics{credential="I"}`: the notification channels and topics of each
//!   credential of the pool (index in the config, 0 in the one-command form).
//!
//! # /health
//! `{"status": "ok" | "degraded", "bridge": id, "redis": {"up": bool, "down_since": RFC 3339
//! or null}, "shards": {"held": n, "total": n}, "members": n, "buffer": {"bytes": n,
//! "budget": n}, "credentials": [{"credential": i, "channels": n, "connected": n, "topics": n,
//! "received": n}]}`, with HTTP status 200 when `ok`, 503 when `degraded` (Redis unreachable,
//! or a credential with channels none of which is connected).

use crate::bridge::Shared;
use genesys_notify::ChannelState;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// Binds `addr` (`127.0.0.1:PORT`), before anything else starts.
///
/// # Errors
/// The address cannot be bound (in use, malformed), with the address in the message.
pub fn bind(addr: &str) -> Result<tiny_http::Server, String> {
    tiny_http::Server::http(addr).map_err(|e| format!("--http {addr}: {e}"))
}

/// Serves `server` in a thread of its own, for the life of the process.
///
/// # Errors
/// The thread cannot be started.
pub fn serve(server: tiny_http::Server, shared: Arc<Shared>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("bridge-http".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or("").to_owned();
                let (status, content_type, body) = match path.as_str() {
                    "/metrics" => (200, "text/plain; version=0.0.4", metrics(&shared)),
                    "/health" => {
                        let (ok, body) = health(&shared);
                        (if ok { 200 } else { 503 }, "application/json", body)
                    }
                    "/" => (200, "text/html; charset=utf-8", page(&shared)),
                    _ => (404, "text/plain", "not found\n".to_owned()),
                };
                let header = tiny_http::Header::from_bytes("Content-Type", content_type)
                    .expect("a valid header");
                let response = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                let _ = request.respond(response);
            }
        })
        .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
    Ok(())
}

/// Per credential: (channels, connected, topics, received).
fn credentials(shared: &Shared) -> Vec<(usize, usize, usize, u64)> {
    shared
        .clients
        .iter()
        .map(|client| {
            let health = client.health();
            let connected = health
                .channels()
                .iter()
                .filter(|c| c.state == ChannelState::Connected)
                .count();
            let topics = health.channels().iter().map(|c| c.topics).sum();
            (
                health.channels().len(),
                connected,
                topics,
                health.received(),
            )
        })
        .collect()
}

/// The Prometheus text.
pub fn metrics(shared: &Shared) -> String {
    let s = &shared.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let counters = [
        (
            "genesys_bridge_events_in_total",
            "Events and snapshots handed over by the library.",
            &s.events_in,
        ),
        (
            "genesys_bridge_entries_written_total",
            "Stream entries acknowledged by Redis.",
            &s.entries_written,
        ),
        ("genesys_bridge_gaps_total", "Gap entries queued.", &s.gaps),
        (
            "genesys_bridge_dropped_total",
            "Events dropped past the byte budget.",
            &s.dropped,
        ),
        (
            "genesys_bridge_discarded_total",
            "Events left to a new holder's gap after a lost lease.",
            &s.discarded,
        ),
        (
            "genesys_bridge_unowned_total",
            "Events of shards not held.",
            &s.unowned,
        ),
        (
            "genesys_bridge_redis_errors_total",
            "Failed Redis connections and commands.",
            &s.redis_errors,
        ),
        (
            "genesys_bridge_fenced_total",
            "Batches refused by the fence.",
            &s.fenced,
        ),
        (
            "genesys_bridge_leases_acquired_total",
            "Leases acquired.",
            &s.acquired,
        ),
        ("genesys_bridge_leases_lost_total", "Leases lost.", &s.lost),
    ];
    for (name, help, counter) in counters {
        metric(
            name,
            "counter",
            help,
            counter.load(Ordering::Relaxed).to_string(),
        );
    }
    let held: Vec<u32> = shared.held.lock().keys().copied().collect();
    metric(
        "genesys_bridge_shards_held",
        "gauge",
        "Shards this process holds.",
        held.len().to_string(),
    );
    metric(
        "genesys_bridge_shards",
        "gauge",
        "Shards configured.",
        shared.settings.shards.to_string(),
    );
    let members = shared.view.lock().members.len();
    metric(
        "genesys_bridge_members",
        "gauge",
        "Live bridge processes.",
        members.to_string(),
    );
    let (bytes, budget) = shared.intake.with(|b| (b.bytes(), b.budget()));
    metric(
        "genesys_bridge_buffer_bytes",
        "gauge",
        "Bytes of entries waiting for Redis.",
        bytes.to_string(),
    );
    metric(
        "genesys_bridge_buffer_budget_bytes",
        "gauge",
        "The byte budget.",
        budget.to_string(),
    );
    let up = u8::from(shared.redis_down_since().is_none());
    metric(
        "genesys_bridge_redis_up",
        "gauge",
        "1 while Redis takes writes.",
        up.to_string(),
    );

    let now = SystemTime::now();
    let _ = writeln!(
        out,
        "# HELP genesys_bridge_shard_lag_seconds Age of the oldest event not yet in Redis, per shard held.\n# TYPE genesys_bridge_shard_lag_seconds gauge"
    );
    let oldest_waiting = shared.intake.with(|b| b.watermarks());
    for shard in held {
        let oldest = oldest_waiting.get(&shard).copied().unwrap_or(now).min(now);
        let lag = now.duration_since(oldest).unwrap_or_default().as_secs_f64();
        let _ = writeln!(
            out,
            "genesys_bridge_shard_lag_seconds{{shard=\"{shard}\"}} {lag:.3}"
        );
    }
    let creds = credentials(shared);
    let _ = writeln!(
        out,
        "# HELP genesys_bridge_channels Notification channels per credential and state.\n# TYPE genesys_bridge_channels gauge"
    );
    for (i, (channels, connected, _, _)) in creds.iter().enumerate() {
        let _ = writeln!(
            out,
            "genesys_bridge_channels{{credential=\"{i}\",state=\"connected\"}} {connected}"
        );
        let _ = writeln!(
            out,
            "genesys_bridge_channels{{credential=\"{i}\",state=\"other\"}} {}",
            channels - connected
        );
    }
    let _ = writeln!(
        out,
        "# HELP genesys_bridge_topics Topics subscribed per credential.\n# TYPE genesys_bridge_topics gauge"
    );
    for (i, (_, _, topics, _)) in creds.iter().enumerate() {
        let _ = writeln!(out, "genesys_bridge_topics{{credential=\"{i}\"}} {topics}");
    }
    out
}

/// `/health`: (healthy, JSON).
pub fn health(shared: &Shared) -> (bool, String) {
    let down = shared.redis_down_since();
    let creds = credentials(shared);
    let credentials_ok = creds
        .iter()
        .all(|(channels, connected, _, _)| *channels == 0 || *connected > 0);
    let ok = down.is_none() && credentials_ok;
    let (bytes, budget) = shared.intake.with(|b| (b.bytes(), b.budget()));
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "bridge": shared.settings.bridge_id,
        "redis": {
            "up": down.is_none(),
            "down_since": down.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        },
        "shards": {"held": shared.held.lock().len(), "total": shared.settings.shards},
        "members": shared.view.lock().members.len(),
        "buffer": {"bytes": bytes, "budget": budget},
        "credentials": creds.iter().enumerate().map(|(i, (channels, connected, topics, received))| {
            serde_json::json!({
                "credential": i,
                "channels": channels,
                "connected": connected,
                "topics": topics,
                "received": received,
            })
        }).collect::<Vec<_>>(),
    });
    (ok, body.to_string())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The status page: shards and their holders, channels per credential, events per second,
/// recent gaps. Reloads itself every 2 s.
pub fn page(shared: &Shared) -> String {
    let view = shared.view.lock().clone();
    let me = &shared.settings.bridge_id;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"2\">\
         <title>genesys-bridge {id}</title><style>body{{font-family:sans-serif}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}\
         .mine{{background:#e6f4ea}}.free{{background:#fdecea}}</style></head><body>\
         <h1>genesys-bridge <code>{id}</code></h1>\
         <p>Redis: {redis} · members: {members} · events/s: {rate:.1} · buffer: {bytes} of {budget} bytes</p>",
        id = escape(me),
        redis = if shared.redis_down_since().is_none() { "up" } else { "<b>unreachable</b>" },
        members = view.members.len(),
        rate = view.events_per_second,
        bytes = shared.intake.with(|b| b.bytes()),
        budget = shared.settings.buffer_bytes,
    );
    html.push_str("<h2>Channels per credential</h2><table id=\"credentials\"><tr><th>credential</th><th>channels</th><th>connected</th><th>topics</th><th>received</th></tr>");
    for (i, (channels, connected, topics, received)) in credentials(shared).iter().enumerate() {
        let _ = write!(html, "<tr><td>{i}</td><td>{channels}</td><td>{connected}</td><td>{topics}</td><td>{received}</td></tr>");
    }
    html.push_str("</table><h2>Shards</h2><table id=\"shards\"><tr><th>shard</th><th>holder</th><th>fence</th><th>topics</th></tr>");
    let held = shared.held.lock().clone();
    for shard in 0..shared.settings.shards {
        let holder = view.holders.get(shard as usize).cloned().flatten();
        let class = match &holder {
            Some(h) if h == me => "mine",
            Some(_) => "",
            None => "free",
        };
        let fence = held
            .get(&shard)
            .map(|h| h.fence.to_string())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr class=\"{class}\"><td>{shard}</td><td>{}</td><td>{fence}</td><td>{}</td></tr>",
            escape(holder.as_deref().unwrap_or("—")),
            shared.topics_of(shard).len()
        );
    }
    html.push_str("</table><h2>Recent gaps</h2><table id=\"gaps\"><tr><th>shard</th><th>reason</th><th>start</th><th>end</th><th>topics</th></tr>");
    for gap in shared.recent_gaps.lock().iter().rev() {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            gap.shard,
            gap.reason,
            humantime::format_rfc3339_millis(gap.start),
            humantime::format_rfc3339_millis(gap.end),
            gap.topics
        );
    }
    html.push_str("</table></body></html>\n");
    html
}
