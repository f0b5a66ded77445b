//! error/ owns every error type of the crate, at the bottom of the module graph: [`Error`], what
//! the client's methods fail with, and the errors it and the lifecycle events carry. Values only:
//! nothing here makes a request, touches a socket, logs, or carries a secret.

mod api;
mod channel;
mod config;
mod proxy;
mod resync;
mod token;

pub use api::ApiError;
pub(crate) use channel::write_one_line;
pub use channel::{ChannelError, DisconnectCause};
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
    /// spent, or its `connectUri` cannot be used); see the lifecycle events for the cause.
    #[non_exhaustive]
    ChannelStopped {
        /// Why it stopped.
        reason: String,
    },
    /// The client was shut down.
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
                write_one_line(f, reason)
            }
            Error::Shutdown => f.write_str("the client has been shut down"),
            Error::Spawn { thread, error } => {
                write!(f, "could not start a {thread} thread: {error}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Topic { error, .. } => Some(error),
            Error::Api(e) => Some(e),
            Error::Token(e) => Some(e),
            Error::Spawn { error, .. } => Some(error),
            _ => None,
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
        let source = error.source().expect("the io::Error is the source");
        assert_eq!(source.to_string(), "no more threads");
        assert!(!matches!(error, Error::Config(_)));
    }
}
