//! error/resync.rs defines [`ResyncError`], why a topic's state could not be read after a gap;
//! values only (resync/ produces it).

use crate::error::{ApiError, Cause};
use std::fmt;

/// Why a topic could not be brought back to the server's state, in
/// [`Lifecycle::ResyncFailed`](crate::Lifecycle::ResyncFailed).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ResyncError {
    /// The API refused the state resource (403). Reported once; the topic is not read again
    /// until it is subscribed again.
    Forbidden {
        /// The permissions the API said are missing (empty when it did not say).
        missing_permissions: Vec<String>,
        /// The API's answer.
        error: ApiError,
    },
    /// The request kept failing; the resync backoff's budget is spent (or the failure cannot
    /// be retried: 400, 401, 404).
    Request {
        /// The last failure.
        error: ApiError,
        /// Requests made.
        attempts: u32,
    },
    /// The answer could not be turned into the event shape; the [`Cause`] holds the JSON error
    /// when there is one.
    Unreadable(Cause),
    /// The answer held no state for the topic (for example a user that no longer exists).
    NoState,
    /// A user-supplied resource gave a path that does not start with `/api/v2/`.
    BadPath(String),
}

impl fmt::Display for ResyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResyncError::Forbidden {
                missing_permissions,
                error,
            } if missing_permissions.is_empty() => write!(f, "{error}"),
            ResyncError::Forbidden {
                missing_permissions,
                ..
            } => write!(
                f,
                "forbidden (403): missing permission {}",
                missing_permissions.join(", ")
            ),
            ResyncError::Request {
                error: ApiError::NotFound,
                attempts,
            } => write!(f, "not found (404) after {attempts} request(s)"),
            ResyncError::Request { error, attempts } => {
                write!(f, "{error} (after {attempts} request(s))")
            }
            ResyncError::Unreadable(reason) => write!(f, "unreadable state: {reason}"),
            ResyncError::NoState => f.write_str("the answer held no state for the topic"),
            ResyncError::BadPath(path) => write!(f, "state path {path:?} is not under /api/v2/"),
        }
    }
}

/// No `source()`: `Display` already prints the API error or cause held; they are the
/// variants' fields.
impl std::error::Error for ResyncError {}
