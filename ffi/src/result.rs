//! result.rs owns the one result enum, the thread-local last error and the panic boundary that
//! every entry point goes through.

use genesys_notify::{ApiError, Error, SubscribeError, UnsubscribeError};
use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a fallible `gn_` call did. The numbers are stable: a value, once published, keeps its
/// meaning; new kinds get new numbers. Every value but `GN_OK` leaves a message for the calling
/// thread, read with `gn_last_error_message`.
#[allow(non_camel_case_types)] // C names: this is the C contract
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gn_result {
    /// Success.
    GN_OK = 0,
    /// A NULL pointer where one is required, a string that is not UTF-8, a number out of range,
    /// or a handle that is not live (never made, already freed, or of another kind).
    GN_INVALID_ARGUMENT = 1,
    /// A topic name or listener pattern the service would refuse (`Error::Topic`); nothing was
    /// subscribed or registered.
    GN_INVALID_TOPIC = 2,
    /// A setting out of range, an unknown region, a bad proxy or streaming URL, no token source,
    /// unusable PEM (`Error::Config`), or a CA file that cannot be read.
    GN_CONFIG = 3,
    /// No access token could be obtained: bad client credentials, login service unreachable
    /// (`Error::Token`).
    GN_TOKEN = 4,
    /// A REST call failed (`Error::Api`); `gn_last_error_http_status` gives its HTTP status (0
    /// when the call got no answer).
    GN_API = 5,
    /// The HTTP proxy failed: refused the tunnel, asked for credentials, unreachable
    /// (`ApiError::Proxy`).
    GN_PROXY = 6,
    /// The call did not finish within its time (`Error::Timeout`).
    GN_TIMEOUT = 7,
    /// The client was shut down (`Error::Shutdown`).
    GN_SHUTDOWN = 8,
    /// More topics or channels than the service's limits allow (`Error::TooManyTopics`,
    /// `Error::TooManyChannels`); nothing was subscribed.
    GN_LIMIT = 9,
    /// A channel's thread stopped for good before the request was done (`Error::ChannelStopped`).
    GN_CHANNEL_STOPPED = 10,
    /// The operating system refused a thread (`Error::Spawn`), or another I/O failure (the
    /// emulator could not listen).
    GN_SYSTEM = 11,
    /// The caller's buffer was too small: it holds the text cut short (NUL-terminated), and the
    /// `out_len` argument says how many bytes the whole text needs, NUL excluded.
    GN_BUFFER_TOO_SMALL = 12,
    /// A Rust panic was caught at the boundary (a bug in this library): the call did nothing
    /// more, and the process goes on.
    GN_PANIC = 13,
    /// An error of a kind newer than this list.
    GN_OTHER = 14,
}

/// A failed call: its result, its message and, for `GN_API`, the HTTP status.
pub(crate) struct Failure {
    pub code: gn_result,
    pub message: String,
    pub http_status: u16,
}

impl Failure {
    pub fn new(code: gn_result, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            http_status: 0,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(gn_result::GN_INVALID_ARGUMENT, message)
    }

    /// The result and status for a library error; the message is its `Display` line (which
    /// never holds a secret).
    pub fn from_error(error: &Error) -> Failure {
        use gn_result::*;
        let (code, http_status) = match error {
            Error::Config(_) => (GN_CONFIG, 0),
            Error::Topic { .. } => (GN_INVALID_TOPIC, 0),
            Error::TooManyTopics { .. } | Error::TooManyChannels { .. } => (GN_LIMIT, 0),
            Error::Api(ApiError::Proxy(_)) => (GN_PROXY, 0),
            Error::Api(ApiError::Token(_)) | Error::Token(_) => (GN_TOKEN, 0),
            Error::Api(api) => (GN_API, http_status(api)),
            Error::Timeout { .. } => (GN_TIMEOUT, 0),
            Error::ChannelStopped { .. } => (GN_CHANNEL_STOPPED, 0),
            Error::Shutdown => (GN_SHUTDOWN, 0),
            Error::Spawn { .. } => (GN_SYSTEM, 0),
            _ => (GN_OTHER, 0),
        };
        Failure {
            code,
            message: error.to_string(),
            http_status,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::from_error(&error)
    }
}

/// The code of the error inside, and its message, which adds what the call did before it
/// failed (topics in place, pending, not subscribed).
impl From<SubscribeError> for Failure {
    fn from(error: SubscribeError) -> Failure {
        Failure {
            message: error.to_string(),
            ..Failure::from_error(error.error())
        }
    }
}

/// As for [`SubscribeError`]: the message adds what was removed, and where.
impl From<UnsubscribeError> for Failure {
    fn from(error: UnsubscribeError) -> Failure {
        Failure {
            message: error.to_string(),
            ..Failure::from_error(error.error())
        }
    }
}

/// The HTTP status an `ApiError` stands for (docs/protocol.md maps each status to a variant);
/// 0 for a call that got no usable answer.
fn http_status(error: &ApiError) -> u16 {
    match error {
        ApiError::Unauthorized { .. } => 401,
        ApiError::Forbidden { .. } => 403,
        ApiError::NotFound => 404,
        ApiError::RateLimited { .. } => 429,
        ApiError::BadRequest { .. } => 400,
        ApiError::Server { status, .. } => *status,
        _ => 0,
    }
}

struct LastError {
    code: gn_result,
    message: String,
    http_status: u16,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

fn record(failure: Failure) -> gn_result {
    let code = failure.code;
    // `try_with`: during thread teardown the slot may be gone; the result code still tells.
    let _ = LAST_ERROR.try_with(|slot| {
        *slot.borrow_mut() = Some(LastError {
            code,
            message: failure.message,
            http_status: failure.http_status,
        })
    });
    code
}

fn clear() {
    let _ = LAST_ERROR.try_with(|slot| slot.borrow_mut().take());
}

/// The text of a caught panic's payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs the body of entry point `name` behind the panic boundary: `GN_OK` and a cleared last
/// error on success, else the failure's code with its message (prefixed with `name`) kept for
/// this thread. A panic becomes `GN_PANIC`.
pub(crate) fn call(name: &str, body: impl FnOnce() -> Result<(), Failure>) -> gn_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear();
            gn_result::GN_OK
        }
        Ok(Err(mut failure)) => {
            failure.message = format!("{name}: {}", failure.message);
            record(failure)
        }
        Err(payload) => record(Failure::new(
            gn_result::GN_PANIC,
            format!("{name}: internal panic: {}", panic_text(&*payload)),
        )),
    }
}

/// Runs the body of an entry point that returns a value rather than a `gn_result` (an accessor):
/// on failure or panic it returns `fallback` and keeps the message as [`call`] does.
pub(crate) fn value<T>(name: &str, fallback: T, body: impl FnOnce() -> Result<T, Failure>) -> T {
    let mut out = None;
    let code = call(name, || {
        out = Some(body()?);
        Ok(())
    });
    match (code, out) {
        (gn_result::GN_OK, Some(value)) => value,
        _ => fallback,
    }
}

/// Writes `text` into the caller's buffer `buf` of `len` bytes, NUL-terminated, cut at a UTF-8
/// character boundary when it does not fit, and its whole length (NUL excluded) into `*out_len`
/// when `out_len` is not NULL. `buf` may be NULL when `len` is 0 (a length query).
pub(crate) fn copy_out(
    text: &str,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> Result<(), Failure> {
    if buf.is_null() && len > 0 {
        return Err(Failure::invalid("buf is NULL but len is not 0"));
    }
    if !out_len.is_null() {
        // SAFETY: the caller passes NULL or a pointer to a writable size_t (documented).
        unsafe { out_len.write(text.len()) };
    }
    if len > 0 {
        let mut fit = text.len().min(len - 1);
        while !text.is_char_boundary(fit) {
            fit -= 1;
        }
        // SAFETY: `buf` is not NULL and the caller promises `len` writable bytes; `fit + 1 <=
        // len`, and the source is our own string, which cannot overlap the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), fit);
            buf.add(fit).write(0);
        }
    }
    if text.len() < len {
        Ok(())
    } else {
        Err(Failure::new(
            gn_result::GN_BUFFER_TOO_SMALL,
            format!(
                "the text needs {} bytes and a NUL; the buffer has {len}",
                text.len()
            ),
        ))
    }
}

/// Reads the C string `ptr` (argument `what`) as UTF-8.
pub(crate) fn text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: not NULL; the caller promises a NUL-terminated string that stays valid and
    // unchanged for the duration of the call (documented for every string argument).
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| {
        Failure::invalid(format!(
            "{what} is not valid UTF-8 (first bad byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// Reads the array of `count` C strings at `items` (argument `what`), each as UTF-8.
pub(crate) fn texts<'a>(
    items: *const *const c_char,
    count: usize,
    what: &str,
) -> Result<Vec<&'a str>, Failure> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if items.is_null() {
        return Err(Failure::invalid(format!(
            "{what} is NULL but count is {count}"
        )));
    }
    (0..count)
        .map(|i| {
            // SAFETY: not NULL; the caller promises `count` readable pointers.
            let item = unsafe { items.add(i).read() };
            text(item, &format!("{what}[{i}]"))
        })
        .collect()
}

/// Writes `value` through the out-pointer `out` (argument `what`).
pub(crate) fn put<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: not NULL; the caller promises a writable, aligned `T` (documented).
    unsafe { out.write(value) };
    Ok(())
}

/// Checks that the out-pointer `out` (argument `what`) is not NULL before any work is done,
/// so that a call never does its work and then fails to hand the result back.
pub(crate) fn check_out<T>(out: *mut T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        Err(Failure::invalid(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// Copies this thread's last error message into `buf` (see [`copy_out`]); an empty string when
/// the last `gn_` call on this thread succeeded. Reading it does not change it.
pub(crate) fn last_message(buf: *mut c_char, len: usize, out_len: *mut usize) -> gn_result {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        LAST_ERROR
            .try_with(|slot| {
                let slot = slot.borrow();
                let message = slot.as_ref().map(|e| e.message.as_str()).unwrap_or("");
                copy_out(message, buf, len, out_len)
            })
            .unwrap_or_else(|_| copy_out("", buf, len, out_len))
    }));
    match outcome {
        Ok(Ok(())) => gn_result::GN_OK,
        Ok(Err(failure)) => failure.code,
        Err(_) => gn_result::GN_PANIC,
    }
}

/// This thread's last error's code and HTTP status (`GN_OK` and 0 after a success).
pub(crate) fn last_code_and_status() -> (gn_result, u16) {
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|slot| {
                slot.borrow()
                    .as_ref()
                    .map(|e| (e.code, e.http_status))
                    .unwrap_or((gn_result::GN_OK, 0))
            })
            .unwrap_or((gn_result::GN_OK, 0))
    })
    .unwrap_or((gn_result::GN_PANIC, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_gn_panic_with_its_message() {
        let code = call("gn_test", || panic!("boom"));
        assert_eq!(code, gn_result::GN_PANIC);
        let mut buf = [0 as c_char; 64];
        let mut n = 0;
        assert_eq!(last_message(buf.as_mut_ptr(), 64, &mut n), gn_result::GN_OK);
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(text, "gn_test: internal panic: boom");
        assert_eq!(n, text.len());
    }

    #[test]
    fn success_clears_the_last_error() {
        let _ = call("gn_test", || Err(Failure::invalid("x")));
        assert_eq!(last_code_and_status().0, gn_result::GN_INVALID_ARGUMENT);
        assert_eq!(call("gn_test", || Ok(())), gn_result::GN_OK);
        assert_eq!(last_code_and_status(), (gn_result::GN_OK, 0));
    }

    #[test]
    fn a_short_buffer_gets_the_text_cut_at_a_character_boundary() {
        let mut buf = [0x7f as c_char; 5];
        let mut n = 0;
        let r = copy_out("ab\u{e9}cd", buf.as_mut_ptr(), 4, &mut n);
        assert_eq!(
            r.err().map(|f| f.code),
            Some(gn_result::GN_BUFFER_TOO_SMALL)
        );
        assert_eq!(n, 6);
        // "ab" + the two bytes of 'é' would need 5 with the NUL: cut before 'é'.
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(text, "ab");
        assert_eq!(buf[4], 0x7f, "nothing written past len");
    }

    #[test]
    fn invalid_utf8_is_refused_with_the_offset() {
        let bytes = b"ok\xff\0";
        let e = text(bytes.as_ptr().cast(), "topic").err().unwrap();
        assert_eq!(e.code, gn_result::GN_INVALID_ARGUMENT);
        assert!(e.message.contains("offset 2"), "{}", e.message);
    }
}
