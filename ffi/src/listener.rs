//! listener.rs: `gn_client_on`, `gn_client_on_lifecycle`, `gn_guard_free`, and the views a
//! callback reads (`gn_event_*`, `gn_lifecycle_*`). The callback trampolines live here.

use crate::client::{gn_client, CLIENTS};
use crate::handle::Table;
use crate::result::{call, check_out, put, text, value, Failure};
use crate::{gn_result, gn_str};
use genesys_notify::{Event, Lifecycle, ListenerGuard};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::SystemTime;

/// One notification, seen by a `gn_event_callback`. Valid only during the call: read it with
/// the `gn_event_*` functions there, and copy what you keep.
#[allow(non_camel_case_types)]
pub struct gn_event {
    _opaque: [u8; 0],
}

/// One lifecycle event, seen by a `gn_lifecycle_callback`. Valid only during the call.
#[allow(non_camel_case_types)]
pub struct gn_lifecycle {
    _opaque: [u8; 0],
}

/// A registered listener. Freeing it (`gn_guard_free`) unregisters the callback.
#[allow(non_camel_case_types)]
pub struct gn_guard {
    _opaque: [u8; 0],
}

/// Called for each matching notification, on a dispatcher thread: `userdata` as given to
/// `gn_client_on`, and the event, valid only during the call. Each listener sees one topic's
/// events in the order received; different topics may run at once on different threads. It
/// must return (not `longjmp` out, not throw a C++ exception through it).
#[allow(non_camel_case_types)]
pub type gn_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const gn_event)>;

/// Called for each lifecycle event, on the client's lifecycle thread, in the order they
/// happened; same rules as `gn_event_callback`.
#[allow(non_camel_case_types)]
pub type gn_lifecycle_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const gn_lifecycle)>;

/// Releases `userdata` once the library is done with it: exactly once, after the last call of
/// the callback (or at once when the registration fails). May be NULL.
#[allow(non_camel_case_types)]
pub type gn_userdata_free = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// What a lifecycle event is (`Lifecycle` variants; `gn_lifecycle_name` gives the matching
/// snake_case name). The numbers are stable; new kinds get new numbers, and a library newer
/// than the header may report `GN_LIFECYCLE_OTHER`.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gn_lifecycle_kind {
    /// A kind newer than this list (see `gn_lifecycle_name`).
    GN_LIFECYCLE_OTHER = 0,
    /// A channel was created.
    GN_LIFECYCLE_CHANNEL_CREATED = 1,
    /// A channel that no longer existed was replaced (the channel is the new one).
    GN_LIFECYCLE_CHANNEL_REPLACED = 2,
    /// A socket to the channel is connected.
    GN_LIFECYCLE_CONNECTED = 3,
    /// A socket to the channel stopped (the message says why).
    GN_LIFECYCLE_DISCONNECTED = 4,
    /// The channel will try to connect again.
    GN_LIFECYCLE_RECONNECTING = 5,
    /// A period without a socket: events of its topics between start and end were lost.
    GN_LIFECYCLE_GAP = 6,
    /// Topics were subscribed on a channel (topics: those of the request).
    GN_LIFECYCLE_SUBSCRIBED = 7,
    /// Topics were removed from a channel.
    GN_LIFECYCLE_UNSUBSCRIBED = 8,
    /// A topic was already subscribed.
    GN_LIFECYCLE_DUPLICATE_SUBSCRIPTION = 9,
    /// The retry budget is spent; the channel stopped.
    GN_LIFECYCLE_RETRY_BUDGET_EXHAUSTED = 10,
    /// A failure retrying cannot fix; the channel stopped.
    GN_LIFECYCLE_PERMANENT_FAILURE = 11,
    /// An access token was obtained.
    GN_LIFECYCLE_TOKEN_REFRESHED = 12,
    /// Obtaining an access token failed; it is retried.
    GN_LIFECYCLE_TOKEN_REFRESH_FAILED = 13,
    /// A REST call for a channel failed; it is retried.
    GN_LIFECYCLE_REQUEST_FAILED = 14,
    /// A frame could not be understood; the stream goes on.
    GN_LIFECYCLE_MALFORMED_MESSAGE = 15,
    /// A notification no listener matched (topics: its topic).
    GN_LIFECYCLE_UNROUTED_MESSAGE = 16,
    /// Events were dropped by the backpressure policy.
    GN_LIFECYCLE_DROPPED = 17,
    /// A listener's callback panicked.
    GN_LIFECYCLE_LISTENER_PANICKED = 18,
    /// More listeners than the warning threshold.
    GN_LIFECYCLE_TOO_MANY_LISTENERS = 19,
    /// Events wait too long in the dispatcher queues.
    GN_LIFECYCLE_DISPATCH_LAG_HIGH = 20,
    /// A resync finished (topics: those resynchronised).
    GN_LIFECYCLE_RESYNCED = 21,
    /// One topic's state could not be read (topics: that topic).
    GN_LIFECYCLE_RESYNC_FAILED = 22,
    /// A `v2.system.*` message arrived.
    GN_LIFECYCLE_SYSTEM_MESSAGE = 23,
}

static GUARDS: Table<ListenerGuard> = Table::new("gn_guard");

/// The caller's `userdata` and its release function, owned by the listener's closure: the
/// closure is dropped after the last call of the callback (the `ListenerGuard` promise), or
/// at once when the registration fails, and dropping it releases `userdata` exactly once.
struct UserData {
    ptr: *mut c_void,
    free: gn_userdata_free,
}

// SAFETY: `gn_client_on` documents that the callback is called on the library's threads with
// this `userdata`, and the caller vouches that it may be used (and released) from any thread.
unsafe impl Send for UserData {}
// SAFETY: as above; the library only passes the pointer along, never reads through it.
unsafe impl Sync for UserData {}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            // SAFETY: the caller gave `free` for this `userdata`; this runs once (`take`).
            unsafe { free(self.ptr) }
        }
    }
}

fn unix_us(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// Registers `callback` for notifications whose `topicName` matches `pattern` (`Client::on`:
/// `*` matches one dot-separated segment, case ignored). `*out` receives the guard; keep it,
/// and free it with `gn_guard_free` to unregister. `userdata` is handed to every call;
/// `userdata_free` (may be NULL) releases it exactly once: after the last call, or before this
/// function returns when it fails, whatever the error. Registering does not subscribe.
///
/// Errors: `GN_INVALID_ARGUMENT` (NULL `callback`, `pattern` or `out`, non-UTF-8 pattern,
/// client not live); `GN_INVALID_TOPIC` (a bad pattern, or `channel.metadata`/`v2.system.*`,
/// which arrive as lifecycle events); `GN_SHUTDOWN`.
#[no_mangle]
pub extern "C" fn gn_client_on(
    client: *mut gn_client,
    pattern: *const c_char,
    callback: gn_event_callback,
    userdata: *mut c_void,
    userdata_free: gn_userdata_free,
    out: *mut *mut gn_guard,
) -> gn_result {
    let owner = UserData {
        ptr: userdata,
        free: userdata_free,
    };
    call("gn_client_on", move || {
        check_out(out, "out")?;
        let callback = callback.ok_or_else(|| Failure::invalid("callback is NULL"))?;
        let pattern = text(pattern, "pattern")?;
        let handle = CLIENTS.get(client, "client")?;
        let guard = handle.client.on(pattern, move |event: &Event| {
            let owner = &owner;
            let view = (event as *const Event).cast::<gn_event>();
            // No panic may unwind into the C frames: the callback's own calls into this
            // library each have their boundary, and this trampoline does no more than the call.
            // A panic caught here is handed back to the dispatcher, which reports it
            // (`GN_LIFECYCLE_LISTENER_PANICKED`) and lives on.
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: `callback` is the caller's function for this `userdata`; `view` points
                // to the event for the duration of the call, as documented.
                unsafe { callback(owner.ptr, view) }
            })) {
                resume_unwind(panic)
            }
        })?;
        put(out, GUARDS.insert(guard), "out")
    })
}

/// Registers `callback` for lifecycle events (`Client::on_lifecycle`); the guard, `userdata`
/// and `userdata_free` work as for `gn_client_on`.
///
/// Errors: `GN_INVALID_ARGUMENT` (NULL `callback` or `out`, client not live); `GN_SHUTDOWN`.
#[no_mangle]
pub extern "C" fn gn_client_on_lifecycle(
    client: *mut gn_client,
    callback: gn_lifecycle_callback,
    userdata: *mut c_void,
    userdata_free: gn_userdata_free,
    out: *mut *mut gn_guard,
) -> gn_result {
    let owner = UserData {
        ptr: userdata,
        free: userdata_free,
    };
    call("gn_client_on_lifecycle", move || {
        check_out(out, "out")?;
        let callback = callback.ok_or_else(|| Failure::invalid("callback is NULL"))?;
        let handle = CLIENTS.get(client, "client")?;
        let guard = handle.client.on_lifecycle(move |event: &Lifecycle| {
            let owner = &owner;
            // Building the view is Rust code that runs before the C frame: see `gn_client_on`.
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
                let view = LifecycleView::of(event);
                let ptr = (&view as *const LifecycleView).cast::<gn_lifecycle>();
                // SAFETY: as in `gn_client_on`; `view` lives until the call returns.
                unsafe { callback(owner.ptr, ptr) }
            })) {
                resume_unwind(panic)
            }
        })?;
        put(out, GUARDS.insert(guard), "out")
    })
}

/// Unregisters a listener (drops its `ListenerGuard`). When it returns, the callback is not
/// running on any thread and never runs again, and `userdata_free` has run. Called inside that
/// listener's own callback, it returns at once without deadlock; calls already running on
/// other threads finish, and `userdata_free` runs after the last of them. NULL is a no-op.
///
/// Errors: `GN_INVALID_ARGUMENT` for a guard that is not live: freed already (through this
/// handle or a copy of it), or never made.
#[no_mangle]
pub extern "C" fn gn_guard_free(guard: *mut gn_guard) -> gn_result {
    call("gn_guard_free", || {
        if guard.is_null() {
            return Ok(());
        }
        // Dropped outside the table's lock: the drop waits for running calls, and those may
        // free other guards.
        drop(GUARDS.remove(guard, "guard")?);
        Ok(())
    })
}

fn event<'a>(event: *const gn_event) -> Result<&'a Event, Failure> {
    if event.is_null() {
        return Err(Failure::invalid("event is NULL"));
    }
    // SAFETY: not NULL; a `gn_event` pointer is an `&Event` that the caller may use only during
    // its callback (documented), which is when the reference is alive.
    Ok(unsafe { &*event.cast::<Event>() })
}

/// The event's `topicName` as received (not NUL-terminated); empty for a NULL event.
#[no_mangle]
pub extern "C" fn gn_event_topic(ev: *const gn_event) -> gn_str {
    value("gn_event_topic", gn_str::EMPTY, || {
        Ok(gn_str::of(event(ev)?.topic()))
    })
}

/// The raw JSON text of the event's `eventBody` (not NUL-terminated).
#[no_mangle]
pub extern "C" fn gn_event_body_json(ev: *const gn_event) -> gn_str {
    value("gn_event_body_json", gn_str::EMPTY, || {
        Ok(gn_str::of(event(ev)?.body_json()))
    })
}

/// The event's `metadata.CorrelationId`; `ptr` NULL and `len` 0 when it has none.
#[no_mangle]
pub extern "C" fn gn_event_correlation_id(ev: *const gn_event) -> gn_str {
    value("gn_event_correlation_id", gn_str::EMPTY, || {
        Ok(event(ev)?
            .correlation_id()
            .map_or(gn_str::EMPTY, gn_str::of))
    })
}

/// Whether the event is a state snapshot read over REST after a gap (`Event::is_snapshot`)
/// rather than a notification read from a socket.
#[no_mangle]
pub extern "C" fn gn_event_is_snapshot(ev: *const gn_event) -> bool {
    value("gn_event_is_snapshot", false, || {
        Ok(event(ev)?.is_snapshot())
    })
}

/// When the event's frame was read from the socket, in microseconds since the Unix epoch
/// (`Event::received_at`); 0 for a NULL event.
#[no_mangle]
pub extern "C" fn gn_event_received_at_us(ev: *const gn_event) -> i64 {
    value("gn_event_received_at_us", 0, || {
        Ok(unix_us(event(ev)?.received_at()))
    })
}

/// What a `gn_lifecycle` points to: the event and its texts, made for the callback's call.
pub(crate) struct LifecycleView<'a> {
    event: &'a Lifecycle,
    kind: gn_lifecycle_kind,
    channel: String,
    message: String,
    topics: Vec<String>,
    gap: Option<(i64, i64)>,
}

impl<'a> LifecycleView<'a> {
    fn of(event: &'a Lifecycle) -> LifecycleView<'a> {
        use gn_lifecycle_kind::*;
        let names = |topics: &[genesys_notify::Topic]| {
            topics.iter().map(|t| t.as_str().to_owned()).collect()
        };
        let mut topics = Vec::new();
        let mut gap = None;
        let kind = match event {
            Lifecycle::ChannelCreated { .. } => GN_LIFECYCLE_CHANNEL_CREATED,
            Lifecycle::ChannelReplaced { .. } => GN_LIFECYCLE_CHANNEL_REPLACED,
            Lifecycle::Connected { .. } => GN_LIFECYCLE_CONNECTED,
            Lifecycle::Disconnected { .. } => GN_LIFECYCLE_DISCONNECTED,
            Lifecycle::Reconnecting { .. } => GN_LIFECYCLE_RECONNECTING,
            Lifecycle::Gap {
                start,
                end,
                topics: gone,
                ..
            } => {
                gap = Some((unix_us(*start), unix_us(*end)));
                topics = names(gone);
                GN_LIFECYCLE_GAP
            }
            Lifecycle::Subscribed { results, .. } => {
                topics = results.iter().map(|r| r.topic.clone()).collect();
                GN_LIFECYCLE_SUBSCRIBED
            }
            Lifecycle::Unsubscribed { topics: gone, .. } => {
                topics = names(gone);
                GN_LIFECYCLE_UNSUBSCRIBED
            }
            Lifecycle::DuplicateSubscription { topic, .. } => {
                topics = vec![topic.as_str().to_owned()];
                GN_LIFECYCLE_DUPLICATE_SUBSCRIPTION
            }
            Lifecycle::RetryBudgetExhausted { .. } => GN_LIFECYCLE_RETRY_BUDGET_EXHAUSTED,
            Lifecycle::PermanentFailure { .. } => GN_LIFECYCLE_PERMANENT_FAILURE,
            Lifecycle::TokenRefreshed { .. } => GN_LIFECYCLE_TOKEN_REFRESHED,
            Lifecycle::TokenRefreshFailed { .. } => GN_LIFECYCLE_TOKEN_REFRESH_FAILED,
            Lifecycle::RequestFailed { .. } => GN_LIFECYCLE_REQUEST_FAILED,
            Lifecycle::MalformedMessage { .. } => GN_LIFECYCLE_MALFORMED_MESSAGE,
            Lifecycle::UnroutedMessage { topic, .. } => {
                topics = vec![topic.clone()];
                GN_LIFECYCLE_UNROUTED_MESSAGE
            }
            Lifecycle::Dropped { .. } => GN_LIFECYCLE_DROPPED,
            Lifecycle::ListenerPanicked { .. } => GN_LIFECYCLE_LISTENER_PANICKED,
            Lifecycle::TooManyListeners { .. } => GN_LIFECYCLE_TOO_MANY_LISTENERS,
            Lifecycle::DispatchLagHigh { .. } => GN_LIFECYCLE_DISPATCH_LAG_HIGH,
            Lifecycle::Resynced { topics: done, .. } => {
                topics = names(done);
                GN_LIFECYCLE_RESYNCED
            }
            Lifecycle::ResyncFailed { topic, .. } => {
                topics = vec![topic.as_str().to_owned()];
                GN_LIFECYCLE_RESYNC_FAILED
            }
            Lifecycle::SystemMessage { .. } => GN_LIFECYCLE_SYSTEM_MESSAGE,
            _ => GN_LIFECYCLE_OTHER,
        };
        LifecycleView {
            event,
            kind,
            channel: event.channel().map(|c| c.to_string()).unwrap_or_default(),
            message: event.to_string(),
            topics,
            gap,
        }
    }
}

fn lifecycle<'a>(event: *const gn_lifecycle) -> Result<&'a LifecycleView<'a>, Failure> {
    if event.is_null() {
        return Err(Failure::invalid("event is NULL"));
    }
    // SAFETY: not NULL; a `gn_lifecycle` pointer is a `&LifecycleView` alive during the
    // callback, the only time the caller may use it (documented).
    Ok(unsafe { &*event.cast::<LifecycleView>() })
}

/// The event's kind; `GN_LIFECYCLE_OTHER` for a NULL event.
#[no_mangle]
pub extern "C" fn gn_lifecycle_get_kind(ev: *const gn_lifecycle) -> gn_lifecycle_kind {
    value(
        "gn_lifecycle_get_kind",
        gn_lifecycle_kind::GN_LIFECYCLE_OTHER,
        || Ok(lifecycle(ev)?.kind),
    )
}

/// The kind's stable snake_case name (`"gap"`, `"connected"`, ...; `Lifecycle::name`).
#[no_mangle]
pub extern "C" fn gn_lifecycle_name(ev: *const gn_lifecycle) -> gn_str {
    value("gn_lifecycle_name", gn_str::EMPTY, || {
        Ok(gn_str::of(lifecycle(ev)?.event.name()))
    })
}

/// The channel the event is about, shortened as in logs (never the full id, which is a
/// credential); empty when it is about no channel.
#[no_mangle]
pub extern "C" fn gn_lifecycle_channel(ev: *const gn_lifecycle) -> gn_str {
    value("gn_lifecycle_channel", gn_str::EMPTY, || {
        Ok(gn_str::of(&lifecycle(ev)?.channel))
    })
}

/// One readable line saying what happened and why (`Lifecycle`'s `Display`), control
/// characters escaped, never a secret.
#[no_mangle]
pub extern "C" fn gn_lifecycle_message(ev: *const gn_lifecycle) -> gn_str {
    value("gn_lifecycle_message", gn_str::EMPTY, || {
        Ok(gn_str::of(&lifecycle(ev)?.message))
    })
}

/// For `GN_LIFECYCLE_GAP`: when the last frame arrived before the socket was lost, in
/// microseconds since the Unix epoch; 0 for other kinds.
#[no_mangle]
pub extern "C" fn gn_lifecycle_gap_start_us(ev: *const gn_lifecycle) -> i64 {
    value("gn_lifecycle_gap_start_us", 0, || {
        Ok(lifecycle(ev)?.gap.map_or(0, |g| g.0))
    })
}

/// For `GN_LIFECYCLE_GAP`: when a socket was connected again with every topic subscribed (or
/// the channel stopped for good), in microseconds since the Unix epoch; 0 for other kinds.
#[no_mangle]
pub extern "C" fn gn_lifecycle_gap_end_us(ev: *const gn_lifecycle) -> i64 {
    value("gn_lifecycle_gap_end_us", 0, || {
        Ok(lifecycle(ev)?.gap.map_or(0, |g| g.1))
    })
}

/// How many topics the event names: a gap's topics, those of a subscribe, unsubscribe or
/// resync, the topic of a duplicate, unrouted message or failed resync; 0 for other kinds.
#[no_mangle]
pub extern "C" fn gn_lifecycle_topic_count(ev: *const gn_lifecycle) -> usize {
    value("gn_lifecycle_topic_count", 0, || {
        Ok(lifecycle(ev)?.topics.len())
    })
}

/// The `index`th topic the event names (see `gn_lifecycle_topic_count`); empty (with a
/// message) when out of range.
#[no_mangle]
pub extern "C" fn gn_lifecycle_topic(ev: *const gn_lifecycle, index: usize) -> gn_str {
    value("gn_lifecycle_topic", gn_str::EMPTY, || {
        let view = lifecycle(ev)?;
        view.topics
            .get(index)
            .map(|t| gn_str::of(t))
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "index {index} is out of range ({} topics)",
                    view.topics.len()
                ))
            })
    })
}
