//! error/token.rs defines [`TokenError`], why no access token could be had; values only (the
//! token sources in auth/ produce it).

use crate::error::{Cause, ProxyError};
use std::fmt;
use std::time::Duration;

/// Why a [`TokenSource`](crate::TokenSource) could not produce a token.
///
/// No variant ever carries the client secret or a token.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum TokenError {
    /// The token endpoint answered 400 or 401 (docs/protocol.md "OAuth": errors are
    /// `{"error", "description"/"error_description"}` with 400/401), e.g. `invalid_client` for a
    /// wrong client id or secret. Permanent: retrying with the same credentials will not help.
    InvalidCredentials {
        /// HTTP status, 400 or 401.
        status: u16,
        /// The OAuth `error` code, e.g. `invalid_client`; empty when the body had none.
        error: String,
        /// The `description` (or `error_description`) text; empty when the body had none.
        description: String,
    },
    /// The token endpoint answered 429 (docs/protocol.md "Rate limits").
    RateLimited {
        /// The `Retry-After` header, seconds or an HTTP-date on the wire; `None` when absent or
        /// unparseable. A lower bound for the next attempt.
        retry_after: Option<Duration>,
    },
    /// The token endpoint answered an unexpected status (5xx, 3xx, 403, 404, ...) or a 2xx
    /// body without a usable `access_token`. Transient for 5xx, 408 and 2xx; permanent for the
    /// other 4xx and 3xx (see [`TokenError::is_permanent`]).
    Server {
        /// HTTP status.
        status: u16,
        /// What the server or the body said, shortened; never a token.
        message: String,
    },
    /// The request did not complete: DNS, connect, TLS, I/O or the request timeout. Transient.
    /// The [`Cause`] holds the HTTP library's error ([`Cause::is_timeout`], [`Cause::io_kind`]).
    Transport(Cause),
    /// The proxy in the way failed (refused the tunnel, asked for credentials, unreachable).
    /// Permanent only when it asks for credentials: the setting must change.
    Proxy(ProxyError),
    /// The token source handed out an access token that no `Authorization` header can carry
    /// (empty, or with white space, control or non-ASCII characters). Permanent: the calls
    /// that need a token fail at once with it rather than retrying until their deadline, and
    /// the refresher asks the source again only every few minutes. The value is never shown.
    #[non_exhaustive]
    UnusableToken {
        /// What is wrong with it: `"empty"`, or `"white space, control or non-ASCII
        /// characters"`.
        reason: &'static str,
    },
    /// Any other failure, for user-written token sources (and a source that panicked), with
    /// the source's own error in the [`Cause`] ([`TokenError::other`] builds one). Treated as
    /// transient.
    Other(Cause),
}

impl TokenError {
    /// A [`TokenError::Other`] from your token source's own error, or from a message:
    /// `TokenError::other(io_error)`, `TokenError::other("vault sealed")`.
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        TokenError::Other(Cause::new(error))
    }

    /// The HTTP status the token endpoint answered, if it answered
    /// ([`TokenError::InvalidCredentials`], [`TokenError::RateLimited`] (429),
    /// [`TokenError::Server`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            TokenError::InvalidCredentials { status, .. } | TokenError::Server { status, .. } => {
                Some(*status)
            }
            TokenError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// Whether the token request (or the proxy in the way) timed out.
    pub fn is_timeout(&self) -> bool {
        match self {
            TokenError::Transport(cause) | TokenError::Other(cause) => cause.is_timeout(),
            TokenError::Proxy(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// Whether retrying cannot help without a change of configuration: true for
    /// [`TokenError::InvalidCredentials`] and for [`TokenError::Server`] with a 3xx or 4xx
    /// status other than 408 and 429 (e.g. a wrong login base URL answering 404).
    /// A permanent error is still retried by the refresher, but only every few minutes.
    pub fn is_permanent(&self) -> bool {
        match self {
            TokenError::InvalidCredentials { .. } | TokenError::UnusableToken { .. } => true,
            TokenError::Server { status, .. } => {
                (300..500).contains(status) && *status != 408 && *status != 429
            }
            TokenError::RateLimited { .. } | TokenError::Transport(_) | TokenError::Other(_) => {
                false
            }
            TokenError::Proxy(e) => !e.is_transient(),
        }
    }

    /// The `Retry-After` lower bound of a [`TokenError::RateLimited`], else `None`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::InvalidCredentials {
                status,
                error,
                description,
            } => {
                write!(f, "token endpoint rejected the credentials ({status}")?;
                if !error.is_empty() {
                    write!(f, " {error}")?;
                }
                f.write_str(")")?;
                if !description.is_empty() {
                    write!(f, ": {description}")?;
                }
                Ok(())
            }
            TokenError::RateLimited {
                retry_after: Some(d),
            } => write!(
                f,
                "token endpoint rate limited (retry after {})",
                humantime::format_duration(*d)
            ),
            TokenError::RateLimited { retry_after: None } => {
                f.write_str("token endpoint rate limited")
            }
            TokenError::Server { status, message } => {
                write!(f, "token endpoint answered {status}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            TokenError::Transport(message) => {
                write!(f, "token request failed: {message}")
            }
            TokenError::Proxy(e) => write!(f, "token request failed: {e}"),
            TokenError::UnusableToken { reason } => write!(
                f,
                "the token source returned an access token an HTTP header cannot carry ({reason})"
            ),
            TokenError::Other(message) => write!(f, "token source failed: {message}"),
        }
    }
}

/// No `source()`: `Display` already prints the cause held (see [`Cause`]).
impl std::error::Error for TokenError {}
