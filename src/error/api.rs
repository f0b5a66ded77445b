//! error/api.rs defines [`ApiError`], why a REST call failed; it holds values only and makes no
//! request (api.rs maps HTTP answers to it).

use crate::error::TokenError;
use crate::error::{Cause, ProxyError};
use std::fmt;
use std::time::Duration;

/// Why a REST call failed. No variant carries a token; channel ids in server messages are
/// shortened.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum ApiError {
    /// 401 again after the one token refresh (docs/protocol.md "OAuth": expired or revoked tokens
    /// get 401). Not transient: the token source keeps producing tokens Genesys refuses.
    #[non_exhaustive]
    Unauthorized {
        /// The error body's `message`, or empty.
        message: String,
    },
    /// 403, e.g. `notification.unauthorized.topic` (docs/protocol.md "Subscriptions").
    /// Not transient.
    #[non_exhaustive]
    Forbidden {
        /// The error body's `code`, or empty.
        code: String,
        /// The error body's `message`, or empty.
        message: String,
    },
    /// 404: the channel does not exist (any more): evicted, expired, or never was
    /// (docs/protocol.md "Channels"). Not transient: make a new channel.
    NotFound,
    /// 429 (docs/protocol.md "Rate limits"). Transient.
    #[non_exhaustive]
    RateLimited {
        /// The `Retry-After` header (seconds or an HTTP-date on the wire), a lower bound for the next
        /// attempt; `None` when absent or unparseable.
        retry_after: Option<Duration>,
    },
    /// 400, e.g. more than 1 000 topics on a channel or a malformed topic (docs/protocol.md
    /// "Subscriptions"). Not transient.
    #[non_exhaustive]
    BadRequest {
        /// The error body's `code`, or empty.
        code: String,
        /// The error body's `message`, or empty.
        message: String,
    },
    /// 5xx or any other status this call does not expect (3xx, 405, 409, ...).
    /// Transient for 5xx and 408, not for the others.
    #[non_exhaustive]
    Server {
        /// HTTP status.
        status: u16,
        /// The error body's `message` (or its text), shortened, or empty.
        message: String,
        /// The `Retry-After` header (seconds or an HTTP-date on the wire), sent with 503 by services
        /// under load: a lower bound for the next attempt, as for 429.
        retry_after: Option<Duration>,
    },
    /// The call did not complete: DNS, connect, TLS, I/O, or the request timeout. Transient.
    /// The [`Cause`] holds the HTTP library's error ([`Cause::is_timeout`], [`Cause::io_kind`]).
    Transport(Cause),
    /// The proxy in the way failed: it refused the tunnel, asked for credentials (407), could
    /// not be reached, or did not answer in time. Transient unless it asks for credentials
    /// ([`ProxyError::is_transient`](crate::ProxyError::is_transient)).
    Proxy(ProxyError),
    /// The token source failed; transient unless [`TokenError::is_permanent`].
    Token(TokenError),
    /// A 2xx body that is not what docs/protocol.md says (bad JSON, missing `id`/`connectUri`,
    /// larger than 4 MiB). Transient, so it counts against the caller's retry budget rather than
    /// stopping the client on one odd response. The [`Cause`] holds the JSON error when there
    /// is one.
    Decode(Cause),
}

impl ApiError {
    /// Whether retrying later (with backoff) may succeed: [`ApiError::RateLimited`],
    /// [`ApiError::Transport`], [`ApiError::Decode`], [`ApiError::Server`] with a 5xx or 408
    /// status, and [`ApiError::Token`] with a non-permanent [`TokenError`]
    /// (docs/protocol.md "Rate limits": 5xx and network errors are transient; 400/403/404 are not
    /// retried blindly).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::RateLimited { .. } | ApiError::Transport(_) | ApiError::Decode(_) => true,
            ApiError::Proxy(e) => e.is_transient(),
            ApiError::Server { status, .. } => *status >= 500 || *status == 408,
            ApiError::Token(e) => !e.is_permanent(),
            ApiError::Unauthorized { .. }
            | ApiError::Forbidden { .. }
            | ApiError::NotFound
            | ApiError::BadRequest { .. } => false,
        }
    }

    /// The HTTP status the API answered: 401, 403, 404, 429, 400, or the status of
    /// [`ApiError::Server`]; `None` when no answer came (transport, proxy, token, decode).
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Unauthorized { .. } => Some(401),
            ApiError::Forbidden { .. } => Some(403),
            ApiError::NotFound => Some(404),
            ApiError::RateLimited { .. } => Some(429),
            ApiError::BadRequest { .. } => Some(400),
            ApiError::Server { status, .. } => Some(*status),
            ApiError::Token(e) => e.status(),
            ApiError::Transport(_) | ApiError::Proxy(_) | ApiError::Decode(_) => None,
        }
    }

    /// Whether the call (or the token request before it, or the proxy) timed out.
    pub fn is_timeout(&self) -> bool {
        match self {
            ApiError::Transport(cause) => cause.is_timeout(),
            ApiError::Proxy(e) => e.is_timeout(),
            ApiError::Token(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// The `Retry-After` of a 429 (or a 5xx that sent one) from the API, or of a 429 from the
    /// token endpoint: a lower bound for the
    /// next attempt, uncapped (the caller caps it). `None` otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } | ApiError::Server { retry_after, .. } => {
                *retry_after
            }
            ApiError::Token(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn code_message(f: &mut fmt::Formatter<'_>, code: &str, message: &str) -> fmt::Result {
            if !code.is_empty() {
                write!(f, " ({code})")?;
            }
            if !message.is_empty() {
                write!(f, ": {message}")?;
            }
            Ok(())
        }
        match self {
            ApiError::Unauthorized { message } => {
                f.write_str("unauthorized (401) after refreshing the token")?;
                code_message(f, "", message)
            }
            ApiError::Forbidden { code, message } => {
                f.write_str("forbidden (403)")?;
                code_message(f, code, message)
            }
            ApiError::NotFound => f.write_str("channel not found (404)"),
            ApiError::RateLimited {
                retry_after: Some(d),
            } => write!(
                f,
                "rate limited (429), retry after {}",
                humantime::format_duration(*d)
            ),
            ApiError::RateLimited { retry_after: None } => f.write_str("rate limited (429)"),
            ApiError::BadRequest { code, message } => {
                f.write_str("bad request (400)")?;
                code_message(f, code, message)
            }
            ApiError::Server {
                status, message, ..
            } => {
                write!(f, "unexpected status {status}")?;
                code_message(f, "", message)
            }
            ApiError::Transport(message) => write!(f, "request failed: {message}"),
            ApiError::Proxy(e) => write!(f, "{e}"),
            ApiError::Token(e) => write!(f, "no access token: {e}"),
            ApiError::Decode(message) => write!(f, "unexpected response body: {message}"),
        }
    }
}

/// No `source()`: `Display` already prints the token or proxy error held (see [`Cause`]).
impl std::error::Error for ApiError {}
