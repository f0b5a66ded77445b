//! builder.rs: `gn_builder_*`, the C face of `ClientBuilder`. A C builder records its setters
//! and replays them on a fresh `ClientBuilder` at each `gn_builder_build`, so one builder can
//! build several clients and a failed build leaves it usable.

use crate::client::{ClientHandle, CLIENTS};
use crate::handle::Table;
use crate::result::{call, check_out, put, text, Failure};
use crate::{gn_client, gn_result};
use genesys_notify::{Backoff, Backpressure, Client, ClientBuilder, Snapshots, TlsRoots};
use std::ffi::c_char;
use std::sync::Mutex;
use std::time::Duration;

/// A client builder: where to connect, how to authenticate, and the settings. Made by
/// `gn_builder_new`, freed by `gn_builder_free`. Its functions may be called from any thread.
#[allow(non_camel_case_types)]
pub struct gn_builder {
    _opaque: [u8; 0],
}

type Step = Box<dyn Fn(ClientBuilder) -> ClientBuilder + Send + Sync>;

#[derive(Default)]
pub(crate) struct Steps(Mutex<Vec<Step>>);

pub(crate) static BUILDERS: Table<Steps> = Table::new("gn_builder");

/// What `gn_builder_backpressure` takes: what a dispatcher thread does when its queue is full.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gn_backpressure {
    /// Wait for room: the socket is not read meanwhile, nothing is lost (`Backpressure::Block`,
    /// the default).
    GN_BACKPRESSURE_BLOCK = 0,
    /// Drop the event that does not fit, counting it (`Backpressure::DropNewest`).
    GN_BACKPRESSURE_DROP_NEWEST = 1,
    /// Drop the oldest queued event, counting it (`Backpressure::DropOldest`).
    GN_BACKPRESSURE_DROP_OLDEST = 2,
}

/// What `gn_builder_snapshots` takes: when topics' state is read over REST and delivered as
/// snapshot events (`Snapshots`).
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gn_snapshots {
    /// No state requests at all (`Snapshots::Off`).
    GN_SNAPSHOTS_OFF = 0,
    /// After every gap, for the gap's topics (`Snapshots::AfterGaps`, the default).
    GN_SNAPSHOTS_AFTER_GAPS = 1,
    /// After every gap and right after a topic is first subscribed
    /// (`Snapshots::AfterGapsAndSubscribe`).
    GN_SNAPSHOTS_AFTER_GAPS_AND_SUBSCRIBE = 2,
}

/// What `gn_builder_tls_roots` takes: the root certificates servers must chain to.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gn_tls_roots {
    /// The Mozilla set bundled with the library (`TlsRoots::WebPki`, the default).
    GN_TLS_ROOTS_WEBPKI = 0,
    /// The operating system's store (`TlsRoots::Platform`; `SSL_CERT_FILE`/`SSL_CERT_DIR`).
    GN_TLS_ROOTS_PLATFORM = 1,
}

pub(crate) fn step(
    name: &str,
    builder: *mut gn_builder,
    make: impl FnOnce() -> Result<Step, Failure>,
) -> gn_result {
    call(name, || {
        let steps = BUILDERS.get(builder, "builder")?;
        let step = make()?;
        steps.0.lock().unwrap_or_else(|e| e.into_inner()).push(step);
        Ok(())
    })
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Makes a builder with the library's defaults and no token source; `*out` receives it.
///
/// Errors: `GN_INVALID_ARGUMENT` when `out` is NULL.
#[no_mangle]
pub extern "C" fn gn_builder_new(out: *mut *mut gn_builder) -> gn_result {
    call("gn_builder_new", || {
        check_out(out, "out")?;
        put(out, BUILDERS.insert(Steps::default()), "out")
    })
}

/// Frees a builder (the clients it built live on). NULL is a no-op.
///
/// Errors: `GN_INVALID_ARGUMENT` for a handle that is not live (freed already).
#[no_mangle]
pub extern "C" fn gn_builder_free(builder: *mut gn_builder) -> gn_result {
    call("gn_builder_free", || {
        if builder.is_null() {
            return Ok(());
        }
        drop(BUILDERS.remove(builder, "builder")?);
        Ok(())
    })
}

/// Uses a region's `api.<domain>` and `login.<domain>` hosts: `"eu-west-1"` or
/// `"mypurecloud.ie"` (`ClientBuilder::region_name`). An unknown name makes
/// `gn_builder_build` fail with `GN_CONFIG`.
#[no_mangle]
pub extern "C" fn gn_builder_region(builder: *mut gn_builder, name: *const c_char) -> gn_result {
    step("gn_builder_region", builder, || {
        let name = text(name, "name")?.to_owned();
        Ok(Box::new(move |b| b.region_name(&name)))
    })
}

/// The REST base URL, e.g. `https://api.mypurecloud.com` (`ClientBuilder::api_base`). Plain
/// `http` only for loopback hosts.
#[no_mangle]
pub extern "C" fn gn_builder_api_base(builder: *mut gn_builder, url: *const c_char) -> gn_result {
    step("gn_builder_api_base", builder, || {
        let url = text(url, "url")?.to_owned();
        Ok(Box::new(move |b| b.api_base(url.as_str())))
    })
}

/// The OAuth base URL, e.g. `https://login.mypurecloud.com` (`ClientBuilder::login_base`).
#[no_mangle]
pub extern "C" fn gn_builder_login_base(builder: *mut gn_builder, url: *const c_char) -> gn_result {
    step("gn_builder_login_base", builder, || {
        let url = text(url, "url")?.to_owned();
        Ok(Box::new(move |b| b.login_base(url.as_str())))
    })
}

/// Authenticates with the OAuth client-credentials grant (`ClientBuilder::client_credentials`).
/// The secret never appears in messages or logs. An empty id or secret makes `gn_builder_build`
/// fail with `GN_CONFIG`.
#[no_mangle]
pub extern "C" fn gn_builder_client_credentials(
    builder: *mut gn_builder,
    client_id: *const c_char,
    client_secret: *const c_char,
) -> gn_result {
    step("gn_builder_client_credentials", builder, || {
        let id = text(client_id, "client_id")?.to_owned();
        let secret = text(client_secret, "client_secret")?.to_owned();
        Ok(Box::new(move |b| {
            b.client_credentials(id.as_str(), secret.as_str())
        }))
    })
}

/// Uses an access token obtained elsewhere, never refreshed (`ClientBuilder::access_token`).
#[no_mangle]
pub extern "C" fn gn_builder_access_token(
    builder: *mut gn_builder,
    token: *const c_char,
) -> gn_result {
    step("gn_builder_access_token", builder, || {
        let token = text(token, "token")?.to_owned();
        Ok(Box::new(move |b| b.access_token(token.as_str())))
    })
}

/// Sends every connection through the HTTP `CONNECT` proxy at
/// `http://[user:password@]host[:port]` (`ClientBuilder::proxy`). A bad URL makes
/// `gn_builder_build` fail with `GN_CONFIG`.
#[no_mangle]
pub extern "C" fn gn_builder_proxy(builder: *mut gn_builder, url: *const c_char) -> gn_result {
    step("gn_builder_proxy", builder, || {
        let url = text(url, "url")?.to_owned();
        Ok(Box::new(move |b| b.proxy(&url)))
    })
}

/// The hosts that bypass the proxy, curl's `NO_PROXY` syntax (`ClientBuilder::no_proxy`).
#[no_mangle]
pub extern "C" fn gn_builder_no_proxy(builder: *mut gn_builder, list: *const c_char) -> gn_result {
    step("gn_builder_no_proxy", builder, || {
        let list = text(list, "list")?.to_owned();
        Ok(Box::new(move |b| b.no_proxy(&list)))
    })
}

/// Whether `https_proxy`/`HTTPS_PROXY`/`all_proxy`/`ALL_PROXY` and `NO_PROXY` are read when no
/// proxy is set (default true; `ClientBuilder::proxy_from_env`).
#[no_mangle]
pub extern "C" fn gn_builder_proxy_from_env(builder: *mut gn_builder, read: bool) -> gn_result {
    step("gn_builder_proxy_from_env", builder, || {
        Ok(Box::new(move |b| b.proxy_from_env(read)))
    })
}

/// Whether loopback hosts go through the proxy too (default false;
/// `ClientBuilder::proxy_loopback`).
#[no_mangle]
pub extern "C" fn gn_builder_proxy_loopback(
    builder: *mut gn_builder,
    through_proxy: bool,
) -> gn_result {
    step("gn_builder_proxy_loopback", builder, || {
        Ok(Box::new(move |b| b.proxy_loopback(through_proxy)))
    })
}

/// Which root certificates servers must chain to: a `gn_tls_roots` value
/// (`ClientBuilder::tls_roots`). Errors: `GN_INVALID_ARGUMENT` for another value.
#[no_mangle]
pub extern "C" fn gn_builder_tls_roots(builder: *mut gn_builder, roots: u32) -> gn_result {
    step("gn_builder_tls_roots", builder, || {
        let roots = match roots {
            0 => TlsRoots::WebPki,
            1 => TlsRoots::Platform,
            other => return Err(Failure::invalid(format!("{other} is not a gn_tls_roots"))),
        };
        Ok(Box::new(move |b| b.tls_roots(roots)))
    })
}

/// Adds the `CERTIFICATE` blocks of the PEM text `pem` to the trusted roots
/// (`ClientBuilder::add_root_certificates_pem`); text without a certificate makes
/// `gn_builder_build` fail with `GN_CONFIG`.
#[no_mangle]
pub extern "C" fn gn_builder_add_root_certificates_pem(
    builder: *mut gn_builder,
    pem: *const c_char,
) -> gn_result {
    step("gn_builder_add_root_certificates_pem", builder, || {
        let pem = text(pem, "pem")?.to_owned();
        Ok(Box::new(move |b| b.add_root_certificates_pem(&pem)))
    })
}

/// Reads the PEM file at `path` now and adds its certificates as
/// `gn_builder_add_root_certificates_pem` does. Errors: `GN_CONFIG` when the file cannot be
/// read (the message names the path and the system's reason).
#[no_mangle]
pub extern "C" fn gn_builder_add_root_certificates_pem_file(
    builder: *mut gn_builder,
    path: *const c_char,
) -> gn_result {
    step("gn_builder_add_root_certificates_pem_file", builder, || {
        let path = text(path, "path")?;
        let pem = std::fs::read(path).map_err(|e| {
            Failure::new(gn_result::GN_CONFIG, format!("cannot read {path:?}: {e}"))
        })?;
        Ok(Box::new(move |b| b.add_root_certificates_pem(&pem)))
    })
}

/// Connects the notification sockets to a gateway: `https://host[:port]` replaces the
/// `connectUri`'s scheme, host and port (`ClientBuilder::streaming_base`).
#[no_mangle]
pub extern "C" fn gn_builder_streaming_base(
    builder: *mut gn_builder,
    url: *const c_char,
) -> gn_result {
    step("gn_builder_streaming_base", builder, || {
        let url = text(url, "url")?.to_owned();
        Ok(Box::new(move |b| b.streaming_base(&url)))
    })
}

/// Dispatcher threads running event callbacks, 1..=256, default 2
/// (`ClientBuilder::dispatcher_threads`; checked by `gn_builder_build`).
#[no_mangle]
pub extern "C" fn gn_builder_dispatcher_threads(
    builder: *mut gn_builder,
    threads: usize,
) -> gn_result {
    step("gn_builder_dispatcher_threads", builder, || {
        Ok(Box::new(move |b| b.dispatcher_threads(threads)))
    })
}

/// Capacity of each dispatcher queue in events, default 512 (`ClientBuilder::queue_capacity`).
#[no_mangle]
pub extern "C" fn gn_builder_queue_capacity(builder: *mut gn_builder, events: usize) -> gn_result {
    step("gn_builder_queue_capacity", builder, || {
        Ok(Box::new(move |b| b.queue_capacity(events)))
    })
}

/// Capacity of each dispatcher queue in bytes of queued events, default 1 MiB
/// (`ClientBuilder::queue_capacity_bytes`).
#[no_mangle]
pub extern "C" fn gn_builder_queue_capacity_bytes(
    builder: *mut gn_builder,
    bytes: usize,
) -> gn_result {
    step("gn_builder_queue_capacity_bytes", builder, || {
        Ok(Box::new(move |b| b.queue_capacity_bytes(bytes)))
    })
}

/// What happens when a dispatcher queue is full: a `gn_backpressure` value
/// (`ClientBuilder::backpressure`). Errors: `GN_INVALID_ARGUMENT` for another value.
#[no_mangle]
pub extern "C" fn gn_builder_backpressure(builder: *mut gn_builder, policy: u32) -> gn_result {
    step("gn_builder_backpressure", builder, || {
        let policy = match policy {
            0 => Backpressure::Block,
            1 => Backpressure::DropNewest,
            2 => Backpressure::DropOldest,
            other => {
                return Err(Failure::invalid(format!(
                    "{other} is not a gn_backpressure"
                )))
            }
        };
        Ok(Box::new(move |b| b.backpressure(policy)))
    })
}

/// Silence after which the application ping is sent, in milliseconds, default 30 000
/// (`ClientBuilder::ping_interval`).
#[no_mangle]
pub extern "C" fn gn_builder_ping_interval_ms(builder: *mut gn_builder, ms: u64) -> gn_result {
    step("gn_builder_ping_interval_ms", builder, || {
        Ok(Box::new(move |b| b.ping_interval(millis(ms))))
    })
}

/// Wait for the pong before the socket is presumed dead, in milliseconds, default 15 000
/// (`ClientBuilder::pong_timeout`).
#[no_mangle]
pub extern "C" fn gn_builder_pong_timeout_ms(builder: *mut gn_builder, ms: u64) -> gn_result {
    step("gn_builder_pong_timeout_ms", builder, || {
        Ok(Box::new(move |b| b.pong_timeout(millis(ms))))
    })
}

/// Silence after which the socket is presumed dead, ping or not, in milliseconds, default
/// 60 000 (`ClientBuilder::liveness_timeout`).
#[no_mangle]
pub extern "C" fn gn_builder_liveness_timeout_ms(builder: *mut gn_builder, ms: u64) -> gn_result {
    step("gn_builder_liveness_timeout_ms", builder, || {
        Ok(Box::new(move |b| b.liveness_timeout(millis(ms))))
    })
}

/// Deadline for one socket's connection (DNS, TCP, TLS, handshake), in milliseconds, default
/// 20 000 (`ClientBuilder::connect_timeout`).
#[no_mangle]
pub extern "C" fn gn_builder_connect_timeout_ms(builder: *mut gn_builder, ms: u64) -> gn_result {
    step("gn_builder_connect_timeout_ms", builder, || {
        Ok(Box::new(move |b| b.connect_timeout(millis(ms))))
    })
}

/// Deadline for one REST call, in milliseconds, default 30 000
/// (`ClientBuilder::request_timeout`).
#[no_mangle]
pub extern "C" fn gn_builder_request_timeout_ms(builder: *mut gn_builder, ms: u64) -> gn_result {
    step("gn_builder_request_timeout_ms", builder, || {
        Ok(Box::new(move |b| b.request_timeout(millis(ms))))
    })
}

/// How long `gn_client_free` waits for a clean shutdown, in milliseconds, default 5 000
/// (`ClientBuilder::drop_timeout`).
#[no_mangle]
pub extern "C" fn gn_builder_drop_timeout_ms(builder: *mut gn_builder, ms: u64) -> gn_result {
    step("gn_builder_drop_timeout_ms", builder, || {
        Ok(Box::new(move |b| b.drop_timeout(millis(ms))))
    })
}

/// The reconnection backoff: first retry's bound `base_ms` and the largest `cap_ms`, in
/// milliseconds (defaults 1 000 and 60 000; `Backoff::base`, `Backoff::cap`).
#[no_mangle]
pub extern "C" fn gn_builder_backoff_ms(
    builder: *mut gn_builder,
    base_ms: u64,
    cap_ms: u64,
) -> gn_result {
    step("gn_builder_backoff_ms", builder, || {
        Ok(Box::new(move |b| {
            b.backoff(Backoff::default().base(millis(base_ms)).cap(millis(cap_ms)))
        }))
    })
}

/// When topics' state is read over REST and delivered as snapshots: a `gn_snapshots` value
/// (`ClientBuilder::snapshots`). Errors: `GN_INVALID_ARGUMENT` for another value.
#[no_mangle]
pub extern "C" fn gn_builder_snapshots(builder: *mut gn_builder, when: u32) -> gn_result {
    step("gn_builder_snapshots", builder, || {
        let when = match when {
            0 => Snapshots::Off,
            1 => Snapshots::AfterGaps,
            2 => Snapshots::AfterGapsAndSubscribe,
            other => return Err(Failure::invalid(format!("{other} is not a gn_snapshots"))),
        };
        Ok(Box::new(move |b| b.snapshots(when)))
    })
}

/// Validates the settings and starts a client (`ClientBuilder::build`); `*out` receives it. The
/// builder stays usable.
///
/// Errors: `GN_INVALID_ARGUMENT` (NULL `out`, builder not live); `GN_CONFIG` for a setting out
/// of range, an unknown region, a bad URL or PEM, no token source; `GN_SYSTEM` when threads
/// cannot be started.
#[no_mangle]
pub extern "C" fn gn_builder_build(
    builder: *mut gn_builder,
    out: *mut *mut gn_client,
) -> gn_result {
    call("gn_builder_build", || {
        check_out(out, "out")?;
        let steps = BUILDERS.get(builder, "builder")?;
        let mut rust = Client::builder();
        for step in steps.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            rust = step(rust);
        }
        let client = rust.build()?;
        put(out, CLIENTS.insert(ClientHandle::new(client)), "out")
    })
}
