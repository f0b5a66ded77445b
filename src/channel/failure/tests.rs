//! One test per row of the failure table.

use super::*;
use crate::error::ProxyError;
use crate::error::TokenError;

/// A row: its name, the table's answer, and what the answer must be.
type Row = (&'static str, Decision, Box<dyn Fn(&Decision) -> bool>);

const BASE: &str = "https://api.example.test";

fn backoff(retry_after: Option<Duration>) -> impl Fn(&Decision) -> bool {
    move |d| matches!(d, Decision::Retry { pace: Pace::Backoff, retry_after: r } if *r == retry_after)
}

fn replace(pace: Pace, release_old: bool) -> impl Fn(&Decision) -> bool {
    move |d| matches!(d, Decision::ReplaceChannel { pace: p, release_old: r } if *p == pace && *r == release_old)
}

fn gives_up_on_request(operation: &'static str) -> impl Fn(&Decision) -> bool {
    move |d| matches!(d, Decision::GiveUp(ChannelError::Request { operation: o, .. }) if *o == operation)
}

fn server(status: u16, retry_after: Option<u64>) -> ApiError {
    ApiError::Server {
        status,
        message: String::new(),
        retry_after: retry_after.map(Duration::from_secs),
    }
}

fn check(rows: Vec<Row>) {
    for (row, decision, expected) in rows {
        assert!(expected(&decision), "row {row:?}: got {decision:?}");
    }
}

#[test]
fn rest_rows() {
    use Operation::*;
    let unauthorized = ApiError::Unauthorized {
        message: "no".into(),
    };
    let forbidden = ApiError::Forbidden {
        code: "missing.permissions".into(),
        message: String::new(),
    };
    let bad_credentials = ApiError::Token(TokenError::InvalidCredentials {
        status: 401,
        error: "invalid_client".into(),
        description: String::new(),
    });
    let token_down = ApiError::Token(TokenError::Transport("refused".into()));
    let rate_limited = ApiError::RateLimited {
        retry_after: Some(Duration::from_secs(7)),
    };
    let bad_request = ApiError::BadRequest {
        code: "bad.request".into(),
        message: String::new(),
    };
    let seven = Some(Duration::from_secs(7));
    let rows: Vec<Row> = vec![
        (
            "404 on create before any channel worked: wrong base URL",
            rest(
                CreateChannel,
                &ApiError::NotFound,
                false,
                "https://api.example.test/v1/",
            ),
            Box::new(|d| {
                matches!(d, Decision::GiveUp(ChannelError::NotificationsApiNotFound { url })
                if url == "https://api.example.test/v1/api/v2/notifications/channels")
            }),
        ),
        (
            "404 on create after a channel worked: retried",
            rest(CreateChannel, &ApiError::NotFound, true, BASE),
            Box::new(backoff(None)),
        ),
        (
            "404 on subscribe: the channel is gone",
            rest(Subscribe, &ApiError::NotFound, false, BASE),
            Box::new(replace(Pace::Backoff, false)),
        ),
        (
            "404 on a topic update while reading: the channel is gone",
            rest(UpdateTopics, &ApiError::NotFound, true, BASE),
            Box::new(replace(Pace::Backoff, false)),
        ),
        (
            "404 on renewal: the channel is gone",
            rest(RenewChannel, &ApiError::NotFound, true, BASE),
            Box::new(replace(Pace::Backoff, false)),
        ),
        (
            "permanent token error on create",
            rest(CreateChannel, &bad_credentials, true, BASE),
            Box::new(gives_up_on_request("create channel")),
        ),
        (
            "transient token error",
            rest(CreateChannel, &token_down, false, BASE),
            Box::new(backoff(None)),
        ),
        (
            "401 before the channel worked",
            rest(CreateChannel, &unauthorized, false, BASE),
            Box::new(gives_up_on_request("create channel")),
        ),
        (
            "403 before the channel worked",
            rest(Subscribe, &forbidden, false, BASE),
            Box::new(gives_up_on_request("subscribe")),
        ),
        (
            "401 during recovery",
            rest(CreateChannel, &unauthorized, true, BASE),
            Box::new(backoff(None)),
        ),
        (
            "403 during recovery",
            rest(Subscribe, &forbidden, true, BASE),
            Box::new(backoff(None)),
        ),
        (
            "429 with Retry-After",
            rest(CreateChannel, &rate_limited, false, BASE),
            Box::new(backoff(seven)),
        ),
        (
            "503 with Retry-After",
            rest(Subscribe, &server(503, Some(7)), false, BASE),
            Box::new(backoff(seven)),
        ),
        (
            "500",
            rest(CreateChannel, &server(500, None), true, BASE),
            Box::new(backoff(None)),
        ),
        (
            "transport error",
            rest(Subscribe, &ApiError::Transport("reset".into()), false, BASE),
            Box::new(backoff(None)),
        ),
        (
            "odd 2xx body",
            rest(
                CreateChannel,
                &ApiError::Decode("no id".into()),
                false,
                BASE,
            ),
            Box::new(backoff(None)),
        ),
        (
            "400 on subscribe",
            rest(Subscribe, &bad_request, true, BASE),
            Box::new(gives_up_on_request("subscribe")),
        ),
        (
            "409 on create",
            rest(CreateChannel, &server(409, None), true, BASE),
            Box::new(gives_up_on_request("create channel")),
        ),
        (
            "any refusal of an update while reading is retried later",
            rest(UpdateTopics, &bad_request, true, BASE),
            Box::new(backoff(None)),
        ),
        (
            "a rate-limited renewal waits for Retry-After",
            rest(RenewChannel, &rate_limited, true, BASE),
            Box::new(backoff(seven)),
        ),
        (
            "a permanent token error while reading keeps the socket",
            rest(RenewChannel, &bad_credentials, true, BASE),
            Box::new(backoff(None)),
        ),
    ];
    check(rows);
}

#[test]
fn connect_rows() {
    let rejected = |status, retry_after: Option<u64>| ConnectError::Rejected {
        status,
        retry_after: retry_after.map(Duration::from_secs),
    };
    let rows: Vec<Row> = vec![
        (
            "unusable connectUri",
            connect(&ConnectError::BadUri("plain ws to a remote host".into())),
            Box::new(|d| {
                matches!(d, Decision::GiveUp(ChannelError::UnusableConnectUri { reason })
                    if reason.contains("plain ws"))
            }),
        ),
        (
            "proxy asks for credentials: give up, the setting must change",
            connect(&ConnectError::Proxy(ProxyError::AuthenticationRequired {
                scheme: Some("Basic".into()),
                credentials_sent: false,
            })),
            Box::new(|d| {
                matches!(
                    d,
                    Decision::GiveUp(ChannelError::Proxy(
                        ProxyError::AuthenticationRequired { .. }
                    ))
                )
            }),
        ),
        (
            "proxy refuses or cannot be reached: back off",
            connect(&ConnectError::Proxy(ProxyError::Refused { status: 502 })),
            Box::new(backoff(None)),
        ),
        (
            "handshake 404: channel gone",
            connect(&rejected(404, None)),
            Box::new(replace(Pace::Backoff, false)),
        ),
        (
            "handshake 410: channel gone",
            connect(&rejected(410, None)),
            Box::new(replace(Pace::Backoff, false)),
        ),
        (
            "handshake 429 with Retry-After",
            connect(&rejected(429, Some(3))),
            Box::new(backoff(Some(Duration::from_secs(3)))),
        ),
        (
            "handshake 503",
            connect(&rejected(503, None)),
            Box::new(backoff(None)),
        ),
        (
            "timeout",
            connect(&ConnectError::Timeout {
                stage: "TCP connect",
            }),
            Box::new(backoff(None)),
        ),
        (
            "DNS",
            connect(&ConnectError::Dns("no such host".into())),
            Box::new(backoff(None)),
        ),
        (
            "TCP refused",
            connect(&ConnectError::Tcp("refused".into())),
            Box::new(backoff(None)),
        ),
        (
            "TLS or handshake failure",
            connect(&ConnectError::Handshake("certificate".into())),
            Box::new(backoff(None)),
        ),
    ];
    check(rows);
}

#[test]
fn connect_error_rows() {
    let rows = [
        (
            ConnectError::BadUri("plain ws".into()),
            "unusable connectUri: plain ws",
            None,
        ),
        (
            ConnectError::Rejected {
                status: 429,
                retry_after: None,
            },
            "the server answered the WebSocket upgrade with HTTP 429",
            Some(429),
        ),
        (
            ConnectError::Timeout {
                stage: "DNS lookup",
            },
            "DNS lookup did not finish in time",
            None,
        ),
    ];
    for (error, shown, status) in rows {
        let typed = connect_error(&error);
        assert_eq!(typed.to_string(), shown);
        match typed {
            ChannelError::Connect { status: s, .. } => assert_eq!(s, status, "{error:?}"),
            ChannelError::UnusableConnectUri { .. } => assert_eq!(status, None),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn socket_end_rows() {
    let closed = |code| DisconnectCause::Closed {
        code,
        reason: String::new(),
    };
    let check_channel = |pace: Pace| move |d: &Decision| matches!(d, Decision::CheckChannel { pace: p } if *p == pace);
    let rows: Vec<Row> = vec![
        (
            "healthy socket closed 1000",
            socket_ended(&closed(Some(1000)), true),
            Box::new(check_channel(Pace::Prompt)),
        ),
        (
            "healthy socket closed 1001",
            socket_ended(&closed(Some(1001)), true),
            Box::new(check_channel(Pace::Prompt)),
        ),
        (
            "healthy socket closed without a code (1005)",
            socket_ended(&closed(None), true),
            Box::new(check_channel(Pace::Prompt)),
        ),
        (
            "socket closed before it was healthy (accept then close)",
            socket_ended(&closed(Some(1000)), false),
            Box::new(check_channel(Pace::Backoff)),
        ),
        (
            "healthy socket handed over after socket_closing",
            socket_ended(&DisconnectCause::ServerMaintenance, true),
            Box::new(check_channel(Pace::Prompt)),
        ),
        (
            "healthy socket whose channel lost its subscriptions",
            socket_ended(&DisconnectCause::ChannelGone, true),
            Box::new(replace(Pace::Prompt, true)),
        ),
        (
            "channel lost before the socket was healthy",
            socket_ended(&DisconnectCause::ChannelGone, false),
            Box::new(replace(Pace::Backoff, true)),
        ),
        (
            "TCP drop without a close frame is a failure",
            socket_ended(&DisconnectCause::Io("reset".into()), true),
            Box::new(check_channel(Pace::Backoff)),
        ),
        (
            "protocol error is a failure",
            socket_ended(&DisconnectCause::Protocol("bad frame".into()), true),
            Box::new(check_channel(Pace::Backoff)),
        ),
        (
            "silence is a failure",
            socket_ended(
                &DisconnectCause::LivenessTimeout {
                    silent_for: Duration::from_secs(45),
                },
                true,
            ),
            Box::new(check_channel(Pace::Backoff)),
        ),
        (
            "the user's stop",
            socket_ended(&DisconnectCause::UserRequest, true),
            Box::new(|d| matches!(d, Decision::Stop)),
        ),
    ];
    check(rows);
}

#[test]
fn channel_check_rows() {
    let rows: Vec<Row> = vec![
        (
            "channel exists: same channel, pace kept",
            channel_check(&Ok(true), Pace::Prompt),
            Box::new(|d| {
                matches!(
                    d,
                    Decision::Retry {
                        pace: Pace::Prompt,
                        retry_after: None
                    }
                )
            }),
        ),
        (
            "channel gone: replace, nothing to release",
            channel_check(&Ok(false), Pace::Backoff),
            Box::new(replace(Pace::Backoff, false)),
        ),
        (
            "check rate limited: same channel, Retry-After kept",
            channel_check(
                &Err(ApiError::RateLimited {
                    retry_after: Some(Duration::from_secs(4)),
                }),
                Pace::Backoff,
            ),
            Box::new(backoff(Some(Duration::from_secs(4)))),
        ),
        (
            "check failed: left to the handshake",
            channel_check(&Err(ApiError::Transport("down".into())), Pace::Backoff),
            Box::new(backoff(None)),
        ),
    ];
    check(rows);
}

#[test]
fn read_error_rows() {
    use tungstenite::error::{CapacityError, ProtocolError};
    let rows: Vec<(&str, tungstenite::Error, ReadFailure)> = vec![
        (
            "oversize message",
            tungstenite::Error::Capacity(CapacityError::MessageTooLong {
                size: 10,
                max_size: 5,
            }),
            ReadFailure {
                cause: DisconnectCause::Protocol("Message too long: 10 > 5".into()),
                malformed: Some("oversize message: Message too long: 10 > 5".into()),
            },
        ),
        (
            "text frame not UTF-8",
            tungstenite::Error::Utf8("bad byte".into()),
            ReadFailure {
                cause: DisconnectCause::Protocol("invalid UTF-8: bad byte".into()),
                malformed: Some("text frame is not UTF-8: bad byte".into()),
            },
        ),
        (
            "TCP end (FIN) without a close frame",
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            ReadFailure {
                cause: DisconnectCause::Io("the TCP connection ended without a close frame".into()),
                malformed: None,
            },
        ),
        (
            "other protocol violation",
            tungstenite::Error::Protocol(ProtocolError::UnmaskedFrameFromClient),
            ReadFailure {
                cause: DisconnectCause::Protocol(
                    ProtocolError::UnmaskedFrameFromClient.to_string(),
                ),
                malformed: None,
            },
        ),
        (
            "closed after the close handshake",
            tungstenite::Error::ConnectionClosed,
            ReadFailure {
                cause: DisconnectCause::Closed {
                    code: None,
                    reason: String::new(),
                },
                malformed: None,
            },
        ),
        (
            "already closed",
            tungstenite::Error::AlreadyClosed,
            ReadFailure {
                cause: DisconnectCause::Closed {
                    code: None,
                    reason: String::new(),
                },
                malformed: None,
            },
        ),
        (
            "I/O error",
            tungstenite::Error::Io(std::io::Error::other("broken pipe")),
            ReadFailure {
                cause: DisconnectCause::Io("IO error: broken pipe".into()),
                malformed: None,
            },
        ),
    ];
    for (row, error, expected) in rows {
        assert_eq!(read_error(&error), expected, "row {row:?}");
    }
}

#[test]
fn close_frame_row() {
    assert_eq!(
        close_frame(Some(4000), "evicted".into()),
        DisconnectCause::Closed {
            code: Some(4000),
            reason: "evicted".into()
        }
    );
    assert_eq!(
        close_frame(None, String::new()),
        DisconnectCause::Closed {
            code: None,
            reason: String::new()
        }
    );
}

#[test]
fn system_message_rows() {
    let message = |topic: &str, kind: Option<&str>, reason: Option<&str>| SystemMessage {
        topic: topic.into(),
        system_topic_type: kind.map(Into::into),
        reason: reason.map(Into::into),
        message: None,
        event_body: "{}".into(),
    };
    let gone = SystemAction::End(DisconnectCause::ChannelGone);
    let rows = [
        (
            message("v2.system.socket_closing", None, None),
            SystemAction::SwitchSocket,
        ),
        (
            message("v2.system.Socket_Closing", None, Some("maintenance")),
            SystemAction::SwitchSocket,
        ),
        (
            message("v2.system.other", Some("socket_closing"), None),
            SystemAction::SwitchSocket,
        ),
        (
            message("v2.system.notice", Some("no_longer_subscribed"), None),
            gone.clone(),
        ),
        (
            message("v2.system.notice", Some("token_revoked"), None),
            gone.clone(),
        ),
        (
            message("v2.system.notice", None, Some("another_channel_subscribed")),
            gone.clone(),
        ),
        (
            message("v2.system.notice", None, Some("user_tokens_revoked")),
            gone,
        ),
        (
            message("v2.system.notice", Some("subscription_changed"), None),
            SystemAction::Report,
        ),
        (
            message("v2.system.unknown", None, None),
            SystemAction::Report,
        ),
    ];
    for (message, expected) in rows {
        assert_eq!(system_message(&message), expected, "{message:?}");
    }
}
