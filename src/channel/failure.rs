//! failure.rs is the one table from what went wrong on a channel (a REST error, a connect or
//! handshake error, a read error, a close frame, a system message) to what the channel's thread
//! does next (retry the same channel, replace it, give up) and the [`DisconnectCause`] it
//! reports. It is pure: no I/O, no clock, no events, no sleeping; the worker carries the
//! decisions out.
//!
//! Adding a failure class: one row in the matching function below plus one unit test.

use super::connect::ConnectError;
use crate::error::ApiError;
use crate::error::{Cause, ChannelError, DisconnectCause};
use crate::message::SystemMessage;
use std::time::Duration;

/// A REST call a channel's thread makes (the names appear in [`Lifecycle::RequestFailed`]).
///
/// [`Lifecycle::RequestFailed`]: crate::Lifecycle::RequestFailed
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `POST /api/v2/notifications/channels`.
    CreateChannel,
    /// `PUT .../subscriptions` on a new (or replacement) channel.
    Subscribe,
    /// `PUT .../subscriptions` of a user's update, sent again while reading.
    UpdateTopics,
    /// `PUT .../subscriptions` before the channel lapses.
    RenewChannel,
}

impl Operation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::CreateChannel => "create channel",
            Operation::Subscribe => "subscribe",
            Operation::UpdateTopics => "update topics",
            Operation::RenewChannel => "renew channel",
        }
    }

    /// Whether the call is made while a socket is being read (a failure does not end it).
    fn while_reading(self) -> bool {
        matches!(self, Operation::UpdateTopics | Operation::RenewChannel)
    }
}

/// How soon the next attempt comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// After the backoff delay, which grows with each failure in a row.
    Backoff,
    /// At once, after a small jitter: a healthy socket the server ended is a success, not a
    /// failure, and does not grow the backoff (issue #10).
    Prompt,
}

/// What the channel's thread does next.
#[derive(Clone, Debug)]
pub(crate) enum Decision {
    /// Try the same channel again; `retry_after` (the service's `Retry-After`) is a floor.
    /// While reading, the socket stays up and the call is retried later.
    Retry {
        pace: Pace,
        retry_after: Option<Duration>,
    },
    /// Ask the service whether the channel still exists (`HEAD`), then decide with
    /// [`channel_check`].
    CheckChannel { pace: Pace },
    /// The channel is gone or useless: make a new one with the same topics. `release_old`: the
    /// old channel may still exist on the server; remove its subscriptions first so that it
    /// stops costing anything (Genesys has no `DELETE` for a channel; an unconnected channel is
    /// the first evicted, docs/protocol.md "Channels").
    ReplaceChannel { pace: Pace, release_old: bool },
    /// Retrying cannot help: stop for good.
    GiveUp(ChannelError),
    /// The user asked the channel to stop.
    Stop,
}

/// A REST call of `operation` failed with `error`. `channel_worked`: the channel's topics were
/// applied at least once (setup generation > 0). `api_base`: named in the error of a wrong base.
pub(crate) fn rest(
    operation: Operation,
    error: &ApiError,
    channel_worked: bool,
    api_base: &str,
) -> Decision {
    let retry = Decision::Retry {
        pace: Pace::Backoff,
        retry_after: error.retry_after(),
    };
    let give_up = || {
        Decision::GiveUp(ChannelError::Request {
            operation: operation.as_str(),
            error: error.clone(),
        })
    };
    match error {
        // No channel endpoint under this base before anything ever worked: the base URL is
        // wrong (a path in it, or not a Genesys API). Say so at once (issue #8).
        ApiError::NotFound if operation == Operation::CreateChannel && !channel_worked => {
            Decision::GiveUp(ChannelError::NotificationsApiNotFound {
                url: format!(
                    "{}/api/v2/notifications/channels",
                    api_base.trim_end_matches('/')
                ),
            })
        }
        ApiError::NotFound if operation == Operation::CreateChannel => retry,
        ApiError::NotFound => Decision::ReplaceChannel {
            pace: Pace::Backoff,
            release_old: false,
        },
        // While reading, a refused update never ends the socket: it is retried later.
        _ if operation.while_reading() => retry,
        ApiError::Token(token) if token.is_permanent() => give_up(),
        // Before the channel ever worked, a 401 after a refresh or a 403 means the token or
        // its permissions are wrong: say so at once. Once it has worked, the same answer during
        // recovery may pass (permissions being fixed, token source recovering): it is retried
        // with backoff against the budget, never in a hot loop.
        ApiError::Unauthorized { .. } | ApiError::Forbidden { .. } if !channel_worked => give_up(),
        ApiError::Unauthorized { .. } | ApiError::Forbidden { .. } => retry,
        other if other.is_transient() => retry,
        _ => give_up(),
    }
}

/// Opening the socket failed.
pub(crate) fn connect(error: &ConnectError) -> Decision {
    match error {
        ConnectError::BadUri(reason) => Decision::GiveUp(ChannelError::UnusableConnectUri {
            reason: reason.clone(),
        }),
        // A proxy asking for credentials will ask again: the setting must change.
        ConnectError::Proxy(proxy) if !proxy.is_transient() => {
            Decision::GiveUp(ChannelError::Proxy(proxy.clone()))
        }
        // The handshake says the channel does not exist (docs/protocol.md "Channels").
        gone if gone.channel_gone() => Decision::ReplaceChannel {
            pace: Pace::Backoff,
            release_old: false,
        },
        other => Decision::Retry {
            pace: Pace::Backoff,
            retry_after: other.retry_after(),
        },
    }
}

/// The typed error reported for a failed connection attempt.
pub(crate) fn connect_error(error: &ConnectError) -> ChannelError {
    match error {
        ConnectError::BadUri(reason) => ChannelError::UnusableConnectUri {
            reason: reason.clone(),
        },
        ConnectError::Proxy(proxy) => ChannelError::Proxy(proxy.clone()),
        ConnectError::Rejected { status, .. } => ChannelError::Connect {
            status: Some(*status),
            message: error.to_string(),
        },
        other => ChannelError::Connect {
            status: None,
            message: other.to_string(),
        },
    }
}

/// A connected socket ended with `cause`. `healthy`: it was subscribed and read long enough to
/// count as working (`Backoff::reset_after`, 1 s by default; see `Session::healthy`).
pub(crate) fn socket_ended(cause: &DisconnectCause, healthy: bool) -> Decision {
    // A healthy socket that the server chose to end (a close frame: 1000, 1001, takeover,
    // maintenance, channel removed) is a success; one that died (no close frame, silence, a
    // protocol error) or never became healthy is a failure and backs off.
    let ended_by_server = matches!(
        cause,
        DisconnectCause::Closed { .. }
            | DisconnectCause::ServerMaintenance
            | DisconnectCause::ChannelGone
    );
    let pace = if healthy && ended_by_server {
        Pace::Prompt
    } else {
        Pace::Backoff
    };
    match cause {
        DisconnectCause::UserRequest => Decision::Stop,
        // The channel lost its subscriptions (system message) or is gone.
        DisconnectCause::ChannelGone => Decision::ReplaceChannel {
            pace,
            release_old: true,
        },
        // Close codes are not documented (docs/protocol.md "The WebSocket"): whether the
        // channel still exists decides.
        _ => Decision::CheckChannel { pace },
    }
}

/// The answer to `HEAD` on the channel after its socket ended with pace `pace`.
pub(crate) fn channel_check(result: &Result<bool, ApiError>, pace: Pace) -> Decision {
    match result {
        Ok(true) => Decision::Retry {
            pace,
            retry_after: None,
        },
        Ok(false) => Decision::ReplaceChannel {
            pace,
            release_old: false,
        },
        // A failed check leaves the channel to the handshake's answer, but a 429's Retry-After
        // still holds for the next attempt.
        Err(error) => Decision::Retry {
            pace,
            retry_after: error.retry_after(),
        },
    }
}

/// What a read error means: the cause reported, and the reason of a malformed frame to report
/// (and count) when the error is the frame's fault.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ReadFailure {
    pub cause: DisconnectCause,
    pub malformed: Option<String>,
}

/// A read from the socket failed (other than a read timeout).
pub(crate) fn read_error(error: &tungstenite::Error) -> ReadFailure {
    use tungstenite::error::ProtocolError;
    let ended = |cause| ReadFailure {
        cause,
        malformed: None,
    };
    match error {
        tungstenite::Error::Capacity(e) => ReadFailure {
            cause: DisconnectCause::Protocol(e.to_string()),
            malformed: Some(format!("oversize message: {e}")),
        },
        tungstenite::Error::Utf8(e) => ReadFailure {
            cause: DisconnectCause::Protocol(format!("invalid UTF-8: {e}")),
            malformed: Some(format!("text frame is not UTF-8: {e}")),
        },
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ended(
            DisconnectCause::Io("the TCP connection ended without a close frame".into()),
        ),
        tungstenite::Error::Protocol(e) => ended(DisconnectCause::Protocol(e.to_string())),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            ended(DisconnectCause::Closed {
                code: None,
                reason: String::new(),
            })
        }
        tungstenite::Error::Io(e) => ended(DisconnectCause::Io(Cause::with_message(
            error.to_string(),
            std::io::Error::new(e.kind(), e.to_string()),
        ))),
        other => ended(DisconnectCause::Io(other.to_string().into())),
    }
}

/// The server sent a close frame (`None`: one without a code, 1005).
pub(crate) fn close_frame(code: Option<u16>, reason: String) -> DisconnectCause {
    DisconnectCause::Closed { code, reason }
}

/// What a `v2.system.*` message asks of the channel's thread (it is always reported).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SystemAction {
    /// Nothing beyond reporting it.
    Report,
    /// `socket_closing`: open a new socket to the same channel now (docs/protocol.md).
    SwitchSocket,
    /// The channel lost its subscriptions or its token: end the socket with this cause.
    End(DisconnectCause),
}

/// A system message arrived.
pub(crate) fn system_message(message: &SystemMessage) -> SystemAction {
    let kind = message.system_topic_type.as_deref();
    let reason = message.reason.as_deref();
    if message
        .topic
        .eq_ignore_ascii_case("v2.system.socket_closing")
        || kind == Some("socket_closing")
    {
        return SystemAction::SwitchSocket;
    }
    match (kind, reason) {
        (Some("no_longer_subscribed" | "token_revoked"), _)
        | (_, Some("another_channel_subscribed" | "user_tokens_revoked")) => {
            SystemAction::End(DisconnectCause::ChannelGone)
        }
        _ => SystemAction::Report,
    }
}

#[cfg(test)]
mod tests;
