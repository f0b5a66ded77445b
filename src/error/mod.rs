//! error/ owns every error type of the crate, at the bottom of the module graph: [`Error`], what
//! the client's methods fail with, and the errors it and the lifecycle events carry. Values only:
//! nothing here makes a request, touches a socket, logs, or carries a secret.

mod api;
mod cause;
mod channel;
mod config;
mod proxy;
mod resync;
mod token;

pub use api::ApiError;
pub use cause::Cause;
pub(crate) use channel::write_one_line;
pub use channel::{ChannelError, DisconnectCause, StopReason};
pub use config::ConfigError;
pub use proxy::ProxyError;
pub use resync::ResyncError;
pub use token::TokenError;

use crate::topic::TopicError;
use std::fmt;
use std::time::Duration;

/// What a [`Client`](crate::Client) method can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// [`ClientBuilder::build`](crate::ClientBuilder::build) was given a setting out of range,
    /// or no token source.
    Config(ConfigError),
    /// A topic name or listener pattern is invalid; nothing was subscribed.
    #[non_exhaustive]
    Topic {
        /// The name as given.
        name: String,
        /// Why it was refused.
        error: TopicError,
    },
    /// The topics would need more than `max_channels × max_topics_per_channel` slots
    /// (20 × 1 000 on the service); nothing was subscribed. The service would otherwise evict
    /// our own channels silently (docs/protocol.md, "Channels").
    #[non_exhaustive]
    TooManyTopics {
        /// Topics that would be subscribed after this call.
        requested: usize,
        /// Topics this client can hold.
        capacity: usize,
    },
    /// The topics would need more channels than `max_channels` (20 on the service), because
    /// isolated channels (`subscribe_isolated`) keep their room to themselves; nothing was
    /// subscribed.
    #[non_exhaustive]
    TooManyChannels {
        /// Channels this call would need in all.
        needed: usize,
        /// The limit ([`Config::max_channels`](crate::Config)).
        max_channels: usize,
    },
    /// A REST call failed (after the retries the backoff policy allows).
    Api(ApiError),
    /// The token source failed permanently (for example bad client credentials).
    Token(TokenError),
    /// An operation did not finish in time.
    #[non_exhaustive]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// How long it was given.
        after: Duration,
        /// For a `subscribe`: what the channel's last attempt met (a connection, TLS or proxy
        /// failure, ...), if it met one; its thread keeps trying.
        last_failure: Option<ChannelError>,
    },
    /// A channel's thread stopped for good before the request was done (its retry budget was
    /// spent, or its `connectUri` cannot be used); the lifecycle events said so too.
    #[non_exhaustive]
    ChannelStopped {
        /// Why it stopped.
        reason: StopReason,
    },
    /// The client was shut down, or the [`ThreadPool`](crate::ThreadPool) it was built with
    /// was ([`ThreadPool::shutdown`](crate::ThreadPool::shutdown)).
    Shutdown,
    /// The operating system refused to start one of the client's threads (too many threads, or
    /// out of memory); nothing was started for the call that failed.
    #[non_exhaustive]
    Spawn {
        /// Which thread: `"dispatcher"` (a dispatcher or the lifecycle thread, from
        /// [`ClientBuilder::build`](crate::ClientBuilder::build)) or `"channel"` (a channel's
        /// thread, from [`Client::subscribe`](crate::Client::subscribe)).
        thread: &'static str,
        /// The error from [`std::thread::Builder::spawn`].
        error: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Topic { name, error } => write!(f, "topic {name:?}: {error}"),
            Error::TooManyTopics {
                requested,
                capacity,
            } => write!(
                f,
                "{requested} topics requested but this client holds at most {capacity} \
                 (max_channels × max_topics_per_channel)"
            ),
            Error::TooManyChannels {
                needed,
                max_channels,
            } => write!(
                f,
                "{needed} channels would be needed but this client may create at most \
                 {max_channels} (isolated channels do not share their room)"
            ),
            // Server texts inside: shown on one line, control characters escaped.
            Error::Api(e) => {
                f.write_str("REST call failed: ")?;
                write_one_line(f, &e.to_string())
            }
            Error::Token(e) => {
                f.write_str("access token: ")?;
                write_one_line(f, &e.to_string())
            }
            Error::Timeout {
                operation,
                after,
                last_failure,
            } => {
                write!(f, "{operation} did not finish within {after:?}")?;
                match last_failure {
                    Some(failure) => {
                        f.write_str("; last failure: ")?;
                        write_one_line(f, &failure.to_string())
                    }
                    None => Ok(()),
                }
            }
            Error::ChannelStopped { reason } => {
                f.write_str("the channel stopped: ")?;
                write_one_line(f, &reason.to_string())
            }
            Error::Shutdown => f.write_str("the client has been shut down"),
            Error::Spawn { thread, error } => {
                write!(f, "could not start a {thread} thread: {error}")
            }
        }
    }
}

/// No `source()`: `Display` prints every error held, on one line (this crate's rule: an error
/// prints its cause or returns it from `source()`, never both, so a reporter walking the chain
/// never repeats a line). The held errors are the variants' fields, and [`Error::status`] and
/// [`Error::is_timeout`] answer the usual questions without a match.
impl std::error::Error for Error {}

impl Error {
    /// The HTTP status behind the failure, when a REST or token request was answered with an
    /// error status ([`ApiError::status`], [`TokenError::status`]); else `None`.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => e.status(),
            Error::Token(e) => e.status(),
            Error::ChannelStopped {
                reason:
                    StopReason::PermanentFailure(ChannelError::Request { error, .. })
                    | StopReason::RetryBudgetExhausted {
                        last_error: ChannelError::Request { error, .. },
                        ..
                    },
            } => error.status(),
            _ => None,
        }
    }

    /// Whether the operation timed out: [`Error::Timeout`], or a REST, token or proxy request
    /// that timed out.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Api(e) => e.is_timeout(),
            Error::Token(e) => e.is_timeout(),
            _ => false,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Token(t) => Error::Token(t),
            other => Error::Api(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn spawn_failure_names_the_thread_and_keeps_the_os_error() {
        let error = Error::Spawn {
            thread: "channel",
            error: std::io::Error::new(std::io::ErrorKind::OutOfMemory, "no more threads"),
        };
        assert_eq!(
            error.to_string(),
            "could not start a channel thread: no more threads"
        );
        // Printed, so not returned again from source(); the typed error is the field.
        assert!(error.source().is_none());
        let Error::Spawn { error: os, .. } = &error else {
            unreachable!()
        };
        assert_eq!(os.kind(), std::io::ErrorKind::OutOfMemory);
    }

    /// Walks `error`'s chain as a reporter does and fails if a link's text is printed again
    /// by the link before it.
    fn assert_chain_repeats_nothing(error: &(dyn std::error::Error + 'static)) {
        let mut link = error;
        while let Some(source) = link.source() {
            let (outer, inner) = (link.to_string(), source.to_string());
            assert!(
                !outer.contains(&inner),
                "{outer:?} prints its source {inner:?}, which source() returns too"
            );
            link = source;
        }
    }

    fn proxy_timeout() -> ProxyError {
        ProxyError::Io(Cause::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "timed out",
        )))
    }

    #[test]
    fn no_error_prints_its_cause_and_returns_it_from_source() {
        let api = ApiError::Proxy(ProxyError::Refused { status: 502 });
        let channel = ChannelError::Request {
            operation: "create channel",
            error: ApiError::Token(TokenError::Proxy(proxy_timeout())),
        };
        let errors: Vec<Box<dyn std::error::Error + 'static>> = vec![
            Box::new(Error::Api(api.clone())),
            Box::new(api),
            Box::new(Error::Token(TokenError::Proxy(proxy_timeout()))),
            Box::new(channel.clone()),
            Box::new(Error::Timeout {
                operation: "subscribe",
                after: Duration::from_secs(1),
                last_failure: Some(channel.clone()),
            }),
            Box::new(Error::ChannelStopped {
                reason: StopReason::PermanentFailure(channel),
            }),
            Box::new(ResyncError::Request {
                error: ApiError::Transport("reset".into()),
                attempts: 3,
            }),
            Box::new(Error::Config(ConfigError {
                field: "api_base",
                reason: "not a URL".into(),
            })),
        ];
        for error in &errors {
            assert_chain_repeats_nothing(error.as_ref());
        }
    }

    #[test]
    fn status_and_timeout_are_answered_without_a_match() {
        let forbidden = Error::Api(ApiError::Forbidden {
            code: "x".into(),
            message: String::new(),
        });
        assert_eq!(forbidden.status(), Some(403));
        assert!(!forbidden.is_timeout());
        let token = Error::Token(TokenError::InvalidCredentials {
            status: 401,
            error: "invalid_client".into(),
            description: String::new(),
        });
        assert_eq!(token.status(), Some(401));
        assert!(Error::Token(TokenError::Proxy(proxy_timeout())).is_timeout());
        assert!(Error::Api(ApiError::Proxy(ProxyError::Timeout)).is_timeout());
        let stopped = Error::ChannelStopped {
            reason: StopReason::RetryBudgetExhausted {
                attempts: 5,
                last_error: ChannelError::Request {
                    operation: "subscribe",
                    error: ApiError::Server {
                        status: 503,
                        message: String::new(),
                        retry_after: None,
                    },
                },
            },
        };
        assert_eq!(stopped.status(), Some(503));
        assert!(Error::Timeout {
            operation: "subscribe",
            after: Duration::from_secs(1),
            last_failure: None,
        }
        .is_timeout());
        assert_eq!(Error::Shutdown.status(), None);
    }

    #[test]
    fn a_token_source_fails_with_its_own_typed_error() {
        let e = TokenError::other(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "vault sealed",
        ));
        assert_eq!(e.to_string(), "token source failed: vault sealed");
        let TokenError::Other(cause) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(cause.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        assert!(!e.is_permanent());
        assert!(matches!(
            TokenError::other("plain text"),
            TokenError::Other(_)
        ));
    }
}
