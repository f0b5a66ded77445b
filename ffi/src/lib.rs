//! # genesys-notify-ffi: the C ABI of genesys-notify
//!
//! `libgenesys_notify_c` (`.so` and `.a`) and its header `include/genesys_notify.h` give C,
//! C++, Python (`ctypes`) and any language with a C FFI the Rust client with its guarantees:
//! gaps reported, state resynchronised, memory bounded, proxies and corporate CAs honoured.
//! Every name starts with `gn_`. The header, generated from this crate by cbindgen, is the
//! contract; each function's comment there names the Rust API it stands for.
//!
//! ## The rules of the ABI
//! - **Handles** (`gn_builder`, `gn_client`, `gn_guard`, `gn_report`, `gn_emulator`,
//!   `gn_thread_pool`) are
//!   opaque tokens, never pointers to memory: a freed, twice-freed or mistaken handle is
//!   refused with `GN_INVALID_ARGUMENT`, never dereferenced. Free functions accept NULL.
//! - **Results**: every fallible call returns a [`gn_result`] (stable numbers) and, on
//!   failure, leaves a message for the calling thread, copied out by
//!   [`gn_last_error_message`]; [`gn_last_error_http_status`] gives the HTTP status of a
//!   `GN_API` failure. A success clears them.
//! - **No panic crosses the boundary**: each entry point runs behind `catch_unwind` and turns a
//!   panic into `GN_PANIC`; a callback trampoline hands a panic of its own back to the
//!   library's dispatcher, which reports it and lives on, never into the C frames.
//! - **Strings in** are NUL-terminated UTF-8, read during the call only. **Strings out** are
//!   either [`gn_str`] (pointer + length, not NUL-terminated: event views, valid during the
//!   callback) or NUL-terminated `const char *` owned by a handle (valid until it is freed), or
//!   copied into the caller's buffer (`buf`, `len`, `out_len`, like `snprintf`).
//! - **Callbacks** get the caller's `userdata`; `userdata_free` releases it exactly once, after
//!   the last call. Freeing a guard has `ListenerGuard`'s promise (see [`gn_guard_free`]).
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// The entry points take raw pointers from C and are `extern "C"` without `unsafe`: C sees no
// difference, and each documents what it requires of its pointers. Every dereference sits in a
// small helper with its `// SAFETY:` comment (result.rs, listener.rs).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod builder;
mod client;
#[cfg(feature = "emulator")]
mod emulator;
mod handle;
mod listener;
mod pool;
mod result;

pub use builder::*;
pub use client::*;
#[cfg(feature = "emulator")]
pub use emulator::*;
pub use listener::*;
pub use pool::*;
pub use result::gn_result;

use std::ffi::{c_char, CString};

/// A string handed to C without a copy: `len` bytes of UTF-8 at `ptr`, not NUL-terminated
/// (print it with `printf("%.*s", (int)s.len, s.ptr)`). Valid for as long as the function that
/// returned it says (during the callback, for event views). An empty string has `ptr` NULL and
/// `len` 0.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gn_str {
    /// The first byte.
    pub ptr: *const c_char,
    /// The length in bytes.
    pub len: usize,
}

impl gn_str {
    pub(crate) const EMPTY: gn_str = gn_str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// `text` without a copy; an empty text is `EMPTY` (a NULL `ptr`), never the dangling
    /// pointer of an empty Rust string.
    pub(crate) fn of(text: &str) -> gn_str {
        if text.is_empty() {
            return gn_str::EMPTY;
        }
        gn_str {
            ptr: text.as_ptr().cast(),
            len: text.len(),
        }
    }
}

/// `text` as a C string; a NUL inside (only a server's text could hold one) becomes U+FFFD.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default()
}

/// The library's version, `"<major>.<minor>.<patch>"`, NUL-terminated, static.
#[no_mangle]
pub extern "C" fn gn_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The name of a result (`"GN_OK"`, `"GN_TIMEOUT"`, ...), NUL-terminated, static;
/// `"GN_UNKNOWN"` for a number that is not a `gn_result`.
#[no_mangle]
pub extern "C" fn gn_result_name(result: u32) -> *const c_char {
    let name: &'static str = match result {
        0 => "GN_OK\0",
        1 => "GN_INVALID_ARGUMENT\0",
        2 => "GN_INVALID_TOPIC\0",
        3 => "GN_CONFIG\0",
        4 => "GN_TOKEN\0",
        5 => "GN_API\0",
        6 => "GN_PROXY\0",
        7 => "GN_TIMEOUT\0",
        8 => "GN_SHUTDOWN\0",
        9 => "GN_LIMIT\0",
        10 => "GN_CHANNEL_STOPPED\0",
        11 => "GN_SYSTEM\0",
        12 => "GN_BUFFER_TOO_SMALL\0",
        13 => "GN_PANIC\0",
        14 => "GN_OTHER\0",
        _ => "GN_UNKNOWN\0",
    };
    name.as_ptr().cast()
}

/// Copies the message of this thread's last failed `gn_` call into `buf` (`len` bytes,
/// NUL-terminated, cut at a character boundary when it does not fit); `*out_len` (if not NULL)
/// receives the message's whole length, NUL excluded. An empty string when the last call
/// succeeded. Reading it does not change it.
///
/// Errors: `GN_BUFFER_TOO_SMALL` (the buffer holds the message cut short);
/// `GN_INVALID_ARGUMENT` for a NULL `buf` with `len` > 0.
#[no_mangle]
pub extern "C" fn gn_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> gn_result {
    result::last_message(buf, len, out_len)
}

/// The result of this thread's last `gn_` call (`GN_OK` after a success).
#[no_mangle]
pub extern "C" fn gn_last_error_code() -> gn_result {
    result::last_code_and_status().0
}

/// The HTTP status of this thread's last failure when it was `GN_API` (401, 403, 404, 429, 400,
/// 5xx...); 0 otherwise, and for a REST call that got no answer (connection failed, timeout).
#[no_mangle]
pub extern "C" fn gn_last_error_http_status() -> u16 {
    result::last_code_and_status().1
}
