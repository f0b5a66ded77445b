//! client.rs: `gn_client_*` (subscribe, unsubscribe, health, shutdown, free) and the
//! `gn_report_*` accessors of what a subscribe or unsubscribe did.

use crate::handle::Table;
use crate::result::{call, check_out, copy_out, put, texts, value, Failure};
use crate::{c_string, gn_result};
use genesys_notify::{ChannelState, Client, Health, SubscribeReport};
use serde_json::json;
use std::ffi::{c_char, CString};
use std::time::{Duration, SystemTime};

/// A client: its channels, topics and listeners. Made by `gn_builder_build`, freed by
/// `gn_client_free`. Every `gn_client_` function may be called from any thread, at once.
#[allow(non_camel_case_types)]
pub struct gn_client {
    _opaque: [u8; 0],
}

/// What a `gn_client_subscribe`, `gn_client_subscribe_isolated` or `gn_client_unsubscribe`
/// did with each topic. Freed by `gn_report_free`; the strings it hands out live as long as it.
#[allow(non_camel_case_types)]
pub struct gn_report {
    _opaque: [u8; 0],
}

pub(crate) struct ClientHandle {
    pub client: Client,
}

impl ClientHandle {
    pub fn new(client: Client) -> ClientHandle {
        ClientHandle { client }
    }
}

pub(crate) static CLIENTS: Table<ClientHandle> = Table::new("gn_client");

struct Rejected {
    topic: CString,
    reason: Option<CString>,
    missing_permissions: Vec<CString>,
}

#[derive(Default)]
pub(crate) struct Report {
    permitted: Vec<CString>,
    rejected: Vec<Rejected>,
    duplicates: Vec<CString>,
    removed: Vec<CString>,
}

impl Report {
    fn of_subscribe(report: &SubscribeReport) -> Report {
        Report {
            permitted: report
                .permitted
                .iter()
                .map(|t| c_string(t.as_str()))
                .collect(),
            rejected: report
                .rejected
                .iter()
                .map(|r| Rejected {
                    topic: c_string(&r.topic),
                    reason: r.rejection_reason.as_deref().map(c_string),
                    missing_permissions: r
                        .missing_permissions
                        .iter()
                        .map(|p| c_string(p))
                        .collect(),
                })
                .collect(),
            duplicates: report
                .duplicates
                .iter()
                .map(|t| c_string(t.as_str()))
                .collect(),
            removed: Vec::new(),
        }
    }
}

static REPORTS: Table<Report> = Table::new("gn_report");

fn subscribe_with(
    name: &str,
    client: *mut gn_client,
    topics: *const *const c_char,
    count: usize,
    out: *mut *mut gn_report,
    isolated: bool,
) -> gn_result {
    call(name, || {
        check_out(out, "out")?;
        let topics = texts(topics, count, "topics")?;
        let handle = CLIENTS.get(client, "client")?;
        let report = if isolated {
            handle.client.subscribe_isolated(topics)?
        } else {
            handle.client.subscribe(topics)?
        };
        put(out, REPORTS.insert(Report::of_subscribe(&report)), "out")
    })
}

/// Subscribes the `count` topics of `topics` (`Client::subscribe`): packs them into as few
/// channels as the service's limits allow and returns when they are subscribed. `*out`
/// receives the report (permitted, rejected with reason and missing permissions, duplicates),
/// to free with `gn_report_free`.
///
/// Errors: `GN_INVALID_ARGUMENT` (NULL `out`, NULL `topics` with `count` > 0, a NULL or
/// non-UTF-8 topic, client not live); `GN_INVALID_TOPIC` (nothing subscribed); `GN_LIMIT`;
/// `GN_API` (HTTP status in `gn_last_error_http_status`); `GN_TOKEN`; `GN_PROXY`;
/// `GN_TIMEOUT` (the channel keeps trying); `GN_CHANNEL_STOPPED`; `GN_SYSTEM`; `GN_SHUTDOWN`.
#[no_mangle]
pub extern "C" fn gn_client_subscribe(
    client: *mut gn_client,
    topics: *const *const c_char,
    count: usize,
    out: *mut *mut gn_report,
) -> gn_result {
    subscribe_with("gn_client_subscribe", client, topics, count, out, false)
}

/// Like `gn_client_subscribe`, on channels of their own shared with no other topics
/// (`Client::subscribe_isolated`). Errors: as `gn_client_subscribe`.
#[no_mangle]
pub extern "C" fn gn_client_subscribe_isolated(
    client: *mut gn_client,
    topics: *const *const c_char,
    count: usize,
    out: *mut *mut gn_report,
) -> gn_result {
    subscribe_with(
        "gn_client_subscribe_isolated",
        client,
        topics,
        count,
        out,
        true,
    )
}

/// Removes the `count` topics of `topics` (`Client::unsubscribe`); topics not subscribed are
/// ignored. `*out` receives a report whose `removed` list holds what was removed.
///
/// Errors: `GN_INVALID_ARGUMENT`, `GN_INVALID_TOPIC` (nothing removed); `GN_API`/`GN_TOKEN`
/// when the service refused the update (the topics are removed all the same and the update is
/// retried); `GN_SHUTDOWN`. On those two the report is not made.
#[no_mangle]
pub extern "C" fn gn_client_unsubscribe(
    client: *mut gn_client,
    topics: *const *const c_char,
    count: usize,
    out: *mut *mut gn_report,
) -> gn_result {
    call("gn_client_unsubscribe", || {
        check_out(out, "out")?;
        let topics = texts(topics, count, "topics")?;
        let handle = CLIENTS.get(client, "client")?;
        let removed = handle.client.unsubscribe(topics)?;
        let report = Report {
            removed: removed.iter().map(|t| c_string(t.as_str())).collect(),
            ..Report::default()
        };
        put(out, REPORTS.insert(report), "out")
    })
}

/// Checks that the token source works and the service accepts its token
/// (`Client::verify_token`, `GET /api/v2/tokens/me`).
///
/// Errors: `GN_TOKEN` (no token: bad client credentials), `GN_API` (token refused: status 401,
/// or the service unreachable: status 0), `GN_PROXY`, `GN_SHUTDOWN`, `GN_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn gn_client_verify_token(client: *mut gn_client) -> gn_result {
    call("gn_client_verify_token", || {
        Ok(CLIENTS.get(client, "client")?.client.verify_token()?)
    })
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn state_name(state: ChannelState) -> &'static str {
    match state {
        ChannelState::Creating => "creating",
        ChannelState::Connecting => "connecting",
        ChannelState::Connected => "connected",
        ChannelState::Backoff => "backoff",
        ChannelState::Stopped => "stopped",
        _ => "other",
    }
}

/// The JSON document of `gn_client_health_json` (its shape is documented there).
pub(crate) fn health_json(health: &Health) -> String {
    let channels: Vec<_> = health
        .channels()
        .iter()
        .map(|c| {
            json!({
                "channel": c.channel.as_ref().map(|id| id.to_string()),
                "state": state_name(c.state),
                "topics": c.topics,
                "connected_since_unix_ms": c.connected_since.map(unix_ms),
                "last_frame_unix_ms": c.last_frame_at.map(unix_ms),
                "ping_rtt_ms": c.ping_rtt.map(ms),
                "received": c.received,
                "delivered": c.delivered,
                "dropped": c.dropped,
                "unrouted": c.unrouted,
                "malformed": c.malformed,
                "heartbeats": c.heartbeats,
                "reconnects": c.reconnects,
                "without_socket_ms": ms(c.without_socket),
            })
        })
        .collect();
    json!({
        "received": health.received(),
        "delivered": health.delivered(),
        "unrouted": health.unrouted(),
        "malformed": health.malformed(),
        "reconnects": health.reconnects(),
        "without_socket_ms": ms(health.without_socket()),
        "dropped": health.dropped(),
        "listener_panics": health.listener_panics(),
        "lifecycle_dropped": health.lifecycle_dropped(),
        "listeners": health.listeners(),
        "lifecycle_listeners": health.lifecycle_listeners(),
        "queue_depths": health.queue_depths(),
        "dispatch_wait": {
            "samples": health.dispatch_wait().samples,
            "p50_us": health.dispatch_wait().p50.map(|d| d.as_micros() as u64),
            "p99_us": health.dispatch_wait().p99.map(|d| d.as_micros() as u64),
            "max_us": health.dispatch_wait().max.map(|d| d.as_micros() as u64),
        },
        "resync": {
            "resyncs": health.resync().resyncs,
            "requests": health.resync().requests,
            "rate_limited": health.resync().rate_limited,
            "snapshots_queued": health.resync().snapshots_queued,
            "snapshots_superseded": health.resync().snapshots_superseded,
            "snapshots_dropped": health.resync().snapshots_dropped,
            "failures": health.resync().failures,
            "pending_topics": health.resync().pending_topics,
        },
        "channels": channels,
    })
    .to_string()
}

/// Writes the client's health (`Client::health`) as one JSON object into `buf` (`len` bytes,
/// NUL-terminated); `*out_len` (if not NULL) receives the document's length, NUL excluded. Pass
/// `buf` NULL and `len` 0 to learn the length; the document may grow before the next call (a
/// timestamp appears), so call again, with the new length, while `GN_BUFFER_TOO_SMALL`.
///
/// The object: totals `received`, `delivered`, `unrouted`, `malformed`, `reconnects`, `dropped`,
/// `listener_panics`, `lifecycle_dropped` (integers, never going down), `without_socket_ms`;
/// `listeners` (event listeners: pattern → count), `lifecycle_listeners` (a count); `queue_depths`
/// (array); `dispatch_wait` {`samples`, `p50_us`, `p99_us`, `max_us`}; `resync` {`resyncs`,
/// `requests`, `rate_limited`, `snapshots_queued`, `snapshots_superseded`, `snapshots_dropped`, `failures`,
/// `pending_topics`}; `channels`: one object per channel with `channel` (shortened id or
/// null), `state` (`creating`, `connecting`, `connected`, `backoff`, `stopped`), `topics`,
/// `connected_since_unix_ms`, `last_frame_unix_ms`, `ping_rtt_ms` (each null when unknown),
/// `received`, `delivered`, `dropped`, `unrouted`, `malformed`, `heartbeats`, `reconnects`,
/// `without_socket_ms`. New keys may be added.
///
/// Errors: `GN_BUFFER_TOO_SMALL` (the buffer holds the document cut short);
/// `GN_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn gn_client_health_json(
    client: *mut gn_client,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> gn_result {
    call("gn_client_health_json", || {
        let handle = CLIENTS.get(client, "client")?;
        let json = health_json(&handle.client.health());
        copy_out(&json, buf, len, out_len)
    })
}

/// Shuts the client down within `timeout_ms` milliseconds (`Client::shutdown`): close frames
/// sent, server-side subscriptions removed, queued events delivered, threads joined. Listeners
/// are unregistered and their `userdata_free` runs now (their guards must still be freed, which
/// then does nothing more). Later calls on the client fail with `GN_SHUTDOWN`; the handle must
/// still be freed.
///
/// Errors: `GN_TIMEOUT` when some thread did not finish in time; `GN_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn gn_client_shutdown(client: *mut gn_client, timeout_ms: u64) -> gn_result {
    call("gn_client_shutdown", || {
        let handle = CLIENTS.get(client, "client")?;
        Ok(handle.client.shutdown(Duration::from_millis(timeout_ms))?)
    })
}

/// Shuts the client down (if not done yet) and frees it. Bounded: it waits at most the
/// builder's drop timeout (`gn_builder_drop_timeout_ms`, default 5 s), twice that when threads
/// did not finish in time (dropping the client tries once more, as `Drop` of `Client` does).
/// Allowed inside a callback. NULL is a no-op.
///
/// Errors: `GN_INVALID_ARGUMENT` for a handle that is not live (freed already); `GN_TIMEOUT`
/// when the shutdown did not finish in time (the handle is freed all the same).
#[no_mangle]
pub extern "C" fn gn_client_free(client: *mut gn_client) -> gn_result {
    call("gn_client_free", || {
        if client.is_null() {
            return Ok(());
        }
        let handle = CLIENTS.remove(client, "client")?;
        let timeout = handle.client.config().drop_timeout();
        let outcome = handle.client.shutdown(timeout);
        drop(handle);
        Ok(outcome?)
    })
}

/// Frees a report and the strings it handed out. NULL is a no-op.
///
/// Errors: `GN_INVALID_ARGUMENT` for a handle that is not live (freed already).
#[no_mangle]
pub extern "C" fn gn_report_free(report: *mut gn_report) -> gn_result {
    call("gn_report_free", || {
        if report.is_null() {
            return Ok(());
        }
        drop(REPORTS.remove(report, "report")?);
        Ok(())
    })
}

fn with_report<T>(
    name: &str,
    report: *const gn_report,
    fallback: T,
    read: impl FnOnce(&Report) -> Result<T, Failure>,
) -> T {
    value(name, fallback, || read(&*REPORTS.get(report, "report")?))
}

fn item(list: &[CString], index: usize, what: &str) -> Result<*const c_char, Failure> {
    list.get(index).map(|s| s.as_ptr()).ok_or_else(|| {
        Failure::invalid(format!(
            "index {index} is out of range ({} {what})",
            list.len()
        ))
    })
}

/// Topics now subscribed by the call (permitted). 0 for a report that is not live (with a
/// message).
#[no_mangle]
pub extern "C" fn gn_report_permitted_count(report: *const gn_report) -> usize {
    with_report("gn_report_permitted_count", report, 0, |r| {
        Ok(r.permitted.len())
    })
}

/// The `index`th permitted topic, NUL-terminated, valid until the report is freed; NULL (with
/// a message) when `index` is out of range or the report is not live.
#[no_mangle]
pub extern "C" fn gn_report_permitted(report: *const gn_report, index: usize) -> *const c_char {
    with_report("gn_report_permitted", report, std::ptr::null(), |r| {
        item(&r.permitted, index, "permitted")
    })
}

/// Topics the service refused (not kept: subscribe them again once permitted).
#[no_mangle]
pub extern "C" fn gn_report_rejected_count(report: *const gn_report) -> usize {
    with_report("gn_report_rejected_count", report, 0, |r| {
        Ok(r.rejected.len())
    })
}

fn rejected(r: &Report, index: usize) -> Result<&Rejected, Failure> {
    r.rejected.get(index).ok_or_else(|| {
        Failure::invalid(format!(
            "index {index} is out of range ({} rejected)",
            r.rejected.len()
        ))
    })
}

/// The `index`th rejected topic (as the service named it); NULL when out of range.
#[no_mangle]
pub extern "C" fn gn_report_rejected_topic(
    report: *const gn_report,
    index: usize,
) -> *const c_char {
    with_report("gn_report_rejected_topic", report, std::ptr::null(), |r| {
        Ok(rejected(r, index)?.topic.as_ptr())
    })
}

/// The `rejectionReason` of the `index`th rejected topic; NULL when the service gave none (the
/// last error is then cleared) or when out of range (with a message).
#[no_mangle]
pub extern "C" fn gn_report_rejected_reason(
    report: *const gn_report,
    index: usize,
) -> *const c_char {
    with_report("gn_report_rejected_reason", report, std::ptr::null(), |r| {
        Ok(rejected(r, index)?
            .reason
            .as_ref()
            .map_or(std::ptr::null(), |s| s.as_ptr()))
    })
}

/// How many `missingPermissions` the `index`th rejected topic lists.
#[no_mangle]
pub extern "C" fn gn_report_rejected_missing_permission_count(
    report: *const gn_report,
    index: usize,
) -> usize {
    with_report(
        "gn_report_rejected_missing_permission_count",
        report,
        0,
        |r| Ok(rejected(r, index)?.missing_permissions.len()),
    )
}

/// The `permission`th missing permission of the `index`th rejected topic; NULL when out of
/// range.
#[no_mangle]
pub extern "C" fn gn_report_rejected_missing_permission(
    report: *const gn_report,
    index: usize,
    permission: usize,
) -> *const c_char {
    with_report(
        "gn_report_rejected_missing_permission",
        report,
        std::ptr::null(),
        |r| {
            item(
                &rejected(r, index)?.missing_permissions,
                permission,
                "missing permissions",
            )
        },
    )
}

/// Topics that were already subscribed: nothing was sent for them.
#[no_mangle]
pub extern "C" fn gn_report_duplicate_count(report: *const gn_report) -> usize {
    with_report("gn_report_duplicate_count", report, 0, |r| {
        Ok(r.duplicates.len())
    })
}

/// The `index`th duplicate topic; NULL when out of range.
#[no_mangle]
pub extern "C" fn gn_report_duplicate(report: *const gn_report, index: usize) -> *const c_char {
    with_report("gn_report_duplicate", report, std::ptr::null(), |r| {
        item(&r.duplicates, index, "duplicates")
    })
}

/// Topics an unsubscribe removed (0 for a subscribe's report).
#[no_mangle]
pub extern "C" fn gn_report_removed_count(report: *const gn_report) -> usize {
    with_report("gn_report_removed_count", report, 0, |r| {
        Ok(r.removed.len())
    })
}

/// The `index`th removed topic; NULL when out of range.
#[no_mangle]
pub extern "C" fn gn_report_removed(report: *const gn_report, index: usize) -> *const c_char {
    with_report("gn_report_removed", report, std::ptr::null(), |r| {
        item(&r.removed, index, "removed")
    })
}
