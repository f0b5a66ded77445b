//! emulator.rs (feature `emulator`): `gn_emulator_*`, the in-process fake Genesys Cloud
//! (`genesys_notify::emulator::Emulator`) for C programs' own tests.

use crate::handle::Table;
use crate::result::{call, check_out, put, text, value, Failure};
use crate::{c_string, gn_result};
use genesys_notify::emulator::{Emulator, Fault, Target};
use std::ffi::{c_char, CString};

/// A fake Genesys Cloud on 127.0.0.1: token endpoint, channels, subscriptions, the WebSocket,
/// publishing and fault injection. Made by `gn_emulator_start`, freed by `gn_emulator_free`.
#[allow(non_camel_case_types)]
pub struct gn_emulator {
    _opaque: [u8; 0],
}

/// A socket fault for `gn_emulator_inject_socket_fault`, applied to every socket connected at
/// that moment (`emulator::Fault` with `Target::AllSockets`). Each channel stays alive, so a
/// client reconnects and reports a gap.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gn_socket_fault {
    /// Close the TCP connection without a close frame (`Fault::DropSocket`).
    GN_SOCKET_FAULT_DROP = 0,
    /// Abort the TCP connection with a reset (`Fault::ResetSocket`).
    GN_SOCKET_FAULT_RESET = 1,
    /// Send a close frame 1011 (server error), then close (`Fault::CloseSocket`).
    GN_SOCKET_FAULT_CLOSE_1011 = 2,
}

struct EmulatorHandle {
    emulator: Emulator,
    api_base: CString,
    login_base: CString,
    client_id: CString,
    client_secret: CString,
}

static EMULATORS: Table<EmulatorHandle> = Table::new("gn_emulator");

/// Starts an emulator on 127.0.0.1 (`Emulator::start`); `*out` receives it.
///
/// Errors: `GN_SYSTEM` when it cannot listen; `GN_INVALID_ARGUMENT` for a NULL `out`.
#[no_mangle]
pub extern "C" fn gn_emulator_start(out: *mut *mut gn_emulator) -> gn_result {
    call("gn_emulator_start", || {
        check_out(out, "out")?;
        let emulator = Emulator::start().map_err(|e| {
            Failure::new(
                gn_result::GN_SYSTEM,
                format!("cannot start the emulator: {e}"),
            )
        })?;
        let handle = EmulatorHandle {
            api_base: c_string(&emulator.api_base()),
            login_base: c_string(&emulator.login_base()),
            client_id: c_string(emulator.client_id()),
            client_secret: c_string(emulator.client_secret()),
            emulator,
        };
        put(out, EMULATORS.insert(handle), "out")
    })
}

/// Stops the emulator (its sockets are closed) and frees it. NULL is a no-op.
///
/// Errors: `GN_INVALID_ARGUMENT` for a handle that is not live.
#[no_mangle]
pub extern "C" fn gn_emulator_free(emulator: *mut gn_emulator) -> gn_result {
    call("gn_emulator_free", || {
        if emulator.is_null() {
            return Ok(());
        }
        drop(EMULATORS.remove(emulator, "emulator")?);
        Ok(())
    })
}

fn field(
    name: &str,
    emulator: *const gn_emulator,
    pick: fn(&EmulatorHandle) -> &CString,
) -> *const c_char {
    value(name, std::ptr::null(), || {
        let handle = EMULATORS.get(emulator, "emulator")?;
        // The string lives in the handle, which the table keeps until `gn_emulator_free`.
        Ok(pick(&handle).as_ptr())
    })
}

/// The REST base URL to give `gn_builder_api_base` (`http://127.0.0.1:<port>`), valid until
/// the emulator is freed; NULL for a handle that is not live.
#[no_mangle]
pub extern "C" fn gn_emulator_api_base(emulator: *const gn_emulator) -> *const c_char {
    field("gn_emulator_api_base", emulator, |h| &h.api_base)
}

/// The OAuth base URL to give `gn_builder_login_base`, valid until the emulator is freed.
#[no_mangle]
pub extern "C" fn gn_emulator_login_base(emulator: *const gn_emulator) -> *const c_char {
    field("gn_emulator_login_base", emulator, |h| &h.login_base)
}

/// The client id the emulator's token endpoint accepts.
#[no_mangle]
pub extern "C" fn gn_emulator_client_id(emulator: *const gn_emulator) -> *const c_char {
    field("gn_emulator_client_id", emulator, |h| &h.client_id)
}

/// The client secret the emulator's token endpoint accepts.
#[no_mangle]
pub extern "C" fn gn_emulator_client_secret(emulator: *const gn_emulator) -> *const c_char {
    field("gn_emulator_client_secret", emulator, |h| &h.client_secret)
}

/// Publishes a notification on `topic` with the JSON text `event_body` as its `eventBody`
/// (`Emulator::publish`) to every connected socket subscribed to it; `*sockets` (if not NULL)
/// receives how many got it.
///
/// Errors: `GN_INVALID_ARGUMENT` (NULL or non-UTF-8 strings, `event_body` not JSON, handle not
/// live).
#[no_mangle]
pub extern "C" fn gn_emulator_publish(
    emulator: *const gn_emulator,
    topic: *const c_char,
    event_body: *const c_char,
    sockets: *mut usize,
) -> gn_result {
    call("gn_emulator_publish", || {
        let topic = text(topic, "topic")?;
        let body: serde_json::Value = serde_json::from_str(text(event_body, "event_body")?)
            .map_err(|e| Failure::invalid(format!("event_body is not JSON: {e}")))?;
        let handle = EMULATORS.get(emulator, "emulator")?;
        let sent = handle.emulator.publish(topic, body);
        if !sockets.is_null() {
            put(sockets, sent, "sockets")?;
        }
        Ok(())
    })
}

/// Makes the emulator reject `topic` from now on, listing `missing_permission` (may be NULL
/// for none) as its `missingPermissions` (`Emulator::deny_topic`).
///
/// Errors: `GN_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn gn_emulator_deny_topic(
    emulator: *const gn_emulator,
    topic: *const c_char,
    missing_permission: *const c_char,
) -> gn_result {
    call("gn_emulator_deny_topic", || {
        let topic = text(topic, "topic")?;
        let permission = if missing_permission.is_null() {
            None
        } else {
            Some(text(missing_permission, "missing_permission")?)
        };
        let handle = EMULATORS.get(emulator, "emulator")?;
        handle.emulator.deny_topic(topic, permission.as_slice());
        Ok(())
    })
}

/// Injects a socket fault (a `gn_socket_fault` value) into every socket connected now.
///
/// Errors: `GN_INVALID_ARGUMENT` (another value, handle not live).
#[no_mangle]
pub extern "C" fn gn_emulator_inject_socket_fault(
    emulator: *const gn_emulator,
    fault: u32,
) -> gn_result {
    call("gn_emulator_inject_socket_fault", || {
        let target = Target::AllSockets;
        let fault = match fault {
            0 => Fault::DropSocket { target },
            1 => Fault::ResetSocket { target },
            2 => Fault::CloseSocket {
                target,
                code: 1011,
                reason: "emulated server error".into(),
            },
            other => {
                return Err(Failure::invalid(format!(
                    "{other} is not a gn_socket_fault"
                )))
            }
        };
        EMULATORS.get(emulator, "emulator")?.emulator.inject(fault);
        Ok(())
    })
}
