//! error/channel.rs defines what ended a socket ([`DisconnectCause`]) and why a channel failed
//! ([`ChannelError`]); values only, shown in lifecycle events and errors.

use crate::error::ProxyError;
use crate::error::{ApiError, Cause};
use std::fmt;
use std::time::Duration;

/// Why a socket stopped.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DisconnectCause {
    /// The server sent a close frame (or the stream ended after one). Close codes are not
    /// documented by Genesys (docs/protocol.md): any close the user did not ask for is recovered.
    #[non_exhaustive]
    Closed {
        /// The close code, `None` when the frame carried none (1005).
        code: Option<u16>,
        /// The close reason text.
        reason: String,
    },
    /// The TCP connection failed or ended without a close frame (1006 in RFC 6455 terms); the
    /// [`Cause`] holds the I/O error when there is one ([`Cause::io_kind`]).
    Io(Cause),
    /// A WebSocket protocol violation (bad frame, oversize message, ...).
    Protocol(String),
    /// No frame and no answer to our ping arrived within the liveness bound.
    #[non_exhaustive]
    LivenessTimeout {
        /// How long the socket had been silent.
        silent_for: Duration,
    },
    /// The server announced maintenance with `v2.system.socket_closing` and we switched sockets.
    ServerMaintenance,
    /// The channel no longer exists (expired, evicted, or answered 404).
    ChannelGone,
    /// The user asked for it (`shutdown`, `Drop`, or unsubscribing the last topic of an
    /// isolated channel).
    UserRequest,
}

impl fmt::Display for DisconnectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectCause::Closed { code, reason } => match code {
                Some(code) => write!(f, "closed by the server with code {code} ({reason:?})"),
                None => write!(f, "closed by the server without a code ({reason:?})"),
            },
            DisconnectCause::Io(e) => write!(f, "connection lost: {e}"),
            DisconnectCause::Protocol(e) => write!(f, "WebSocket protocol error: {e}"),
            DisconnectCause::LivenessTimeout { silent_for } => {
                write!(f, "no frame for {silent_for:?}: socket presumed dead")
            }
            DisconnectCause::ServerMaintenance => {
                f.write_str("server maintenance (socket_closing)")
            }
            DisconnectCause::ChannelGone => f.write_str("the channel no longer exists"),
            DisconnectCause::UserRequest => f.write_str("closed at the user's request"),
        }
    }
}

/// Why a channel gave up: the error of [`Lifecycle::PermanentFailure`](crate::Lifecycle::PermanentFailure) and the last error of
/// [`Lifecycle::RetryBudgetExhausted`](crate::Lifecycle::RetryBudgetExhausted). Its `Display` is the message to log.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ChannelError {
    /// A REST call for the channel failed.
    Request {
        /// What was being done ("create channel", "subscribe", ...).
        operation: &'static str,
        /// The error.
        error: ApiError,
    },
    /// `POST {api_base}/api/v2/notifications/channels` answered 404 before this client ever
    /// had a working channel: the base URL is wrong (for example it has a path, or is not a
    /// Genesys Cloud API). Not retried.
    NotificationsApiNotFound {
        /// The URL that answered 404.
        url: String,
    },
    /// Opening the socket failed (DNS, TCP, TLS, the WebSocket handshake, or an HTTP answer to
    /// the upgrade request).
    Connect {
        /// The HTTP status that answered the upgrade request, if the server answered one.
        status: Option<u16>,
        /// What failed, naming the stage.
        message: String,
    },
    /// The `connectUri` the service gave cannot be used (bad syntax, or plain `ws` to a host
    /// that is not a loopback address). Not retried.
    UnusableConnectUri {
        /// Why.
        reason: String,
    },
    /// The proxy in the way failed while opening the socket (tunnel.rs); not retried when it
    /// asks for credentials.
    Proxy(ProxyError),
    /// A connected socket ended.
    Disconnected(DisconnectCause),
    /// The channel's thread panicked (a bug in this library).
    Panicked {
        /// The panic message.
        message: String,
    },
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Request { operation, error } => write!(f, "{operation}: {error}"),
            ChannelError::NotificationsApiNotFound { url } => write!(
                f,
                "{url} answered 404 before any channel was created: check the API base URL \
                 (it must be the region's API root, with no path)"
            ),
            ChannelError::Connect { message, .. } => f.write_str(message),
            ChannelError::UnusableConnectUri { reason } => {
                write!(f, "unusable connectUri: {reason}")
            }
            ChannelError::Proxy(e) => e.fmt(f),
            ChannelError::Disconnected(cause) => cause.fmt(f),
            ChannelError::Panicked { message } => {
                write!(f, "channel thread panicked: {message}")
            }
        }
    }
}

/// No `source()`: `Display` already prints the API or proxy error held; they are the variants'
/// fields.
impl std::error::Error for ChannelError {}

/// Writes `text` with its control characters escaped: one line, whatever it holds.
pub(crate) fn write_one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    if !text.contains(char::is_control) {
        return f.write_str(text);
    }
    for c in text.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            fmt::Write::write_char(f, c)?;
        }
    }
    Ok(())
}

/// Why a channel's thread stopped for good, in [`Error::ChannelStopped`](crate::Error).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StopReason {
    /// `shutdown`, `Drop`, or the last topic of an isolated channel unsubscribed.
    UserRequest,
    /// Every topic of the channel was rejected when the topics were applied again (a renewal
    /// or a replacement channel): an empty channel is closed and its slot may be forgotten.
    NoTopics,
    /// Retrying cannot help
    /// ([`Lifecycle::PermanentFailure`](crate::event::Lifecycle::PermanentFailure) was
    /// reported).
    PermanentFailure(ChannelError),
    /// [`Backoff::max_retries`](crate::Backoff) retries in a row failed
    /// ([`Lifecycle::RetryBudgetExhausted`](crate::event::Lifecycle::RetryBudgetExhausted)
    /// was reported).
    RetryBudgetExhausted {
        /// Attempts made in a row.
        attempts: u32,
        /// The last attempt's failure.
        last_error: ChannelError,
    },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::UserRequest => f.write_str("stopped by the user"),
            StopReason::NoTopics => f.write_str("every topic of the channel was rejected"),
            StopReason::PermanentFailure(error) => fmt::Display::fmt(error, f),
            StopReason::RetryBudgetExhausted {
                attempts,
                last_error,
            } => write!(
                f,
                "retry budget spent after {attempts} retries: {last_error}"
            ),
        }
    }
}
