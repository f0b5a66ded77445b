//! Entry points for the fuzz targets in `fuzz/` (crate feature `fuzzing`; not a public API,
//! hidden from the docs, may change at any time): thin wrappers over the crate-private parsers
//! that see outside input, each checking the invariants its callers rely on, so that a broken
//! invariant is a crash the fuzzer reports.

use std::time::{Duration, Instant};

use crate::message::{self, Inbound};

/// The longest malformed-frame excerpt, in characters (message.rs keeps 120).
const MAX_EXCERPT_CHARS: usize = 120;

/// A WebSocket text frame, as the channel's read loop hands it to `message::notification_topic`
/// and `message::parse`. Checks that the spans of a notification lie inside the frame and that
/// an excerpt stays short.
pub fn frame(text: &str) {
    // The socket thread's prefix check: a frame it takes for a notification is one whose
    // envelope, parsed later, is a notification or an explained error, never a heartbeat or a
    // system message to act on.
    if let Some(topic) = message::notification_topic(text) {
        let topic = &text[topic];
        assert!(topic.len() >= 3 && topic[..3].eq_ignore_ascii_case("v2."));
        if let Err(malformed) = message::locate_notification(text) {
            assert!(malformed.excerpt.chars().count() <= MAX_EXCERPT_CHARS);
        }
    }
    match message::parse(text) {
        Ok(Inbound::Notification(located)) => {
            // May be empty: such an event matches no listener and is counted as unrouted.
            let _ = located.topic.resolve(text);
            if let Some(metadata) = &located.metadata {
                if let Some(id) = message::correlation_id(text, metadata) {
                    let _ = id.resolve(text);
                }
            }
            let body = &text[located.body.clone()];
            serde_json::from_str::<serde::de::IgnoredAny>(body)
                .expect("the located eventBody is JSON");
        }
        Ok(Inbound::System(system)) => {
            let _ = (system.is_socket_closing(), system.ends_subscriptions());
        }
        Ok(Inbound::Heartbeat | Inbound::Pong | Inbound::Metadata(_)) => {}
        Err(malformed) => {
            assert!(malformed.excerpt.chars().count() <= MAX_EXCERPT_CHARS);
            let _ = format!("{malformed:?}");
        }
    }
}

/// The body of `POST /api/v2/notifications/channels`.
pub fn channel_response(text: &str) {
    if let Ok(info) = crate::api::decode::channel(text) {
        assert!(!info.id.is_empty() && !info.connect_uri.is_empty());
        let _ = format!("{info:?}");
    }
}

/// The body of `PUT /api/v2/notifications/channels/{id}/subscriptions`.
pub fn subscriptions_response(text: &str) {
    if let Ok(results) = crate::api::decode::subscriptions(text) {
        for r in results {
            let _ = format!("{r:?}");
        }
    }
}

/// The body of a failed REST call with this status and `Retry-After` header value (never 429
/// or 404, which are decided by the status alone), for a call about channel `channel`.
pub fn error_response(status: u16, retry_after: &[u8], text: &str, channel: &str) {
    let retry_after = retry_after_header(retry_after);
    let error = crate::api::decode::error(status, retry_after, text, Some(channel));
    let _ = (error.to_string(), error.is_transient(), error.retry_after());
}

/// The answer of `POST /oauth/token`: status, `Retry-After` header value and body. A token's
/// lifetime is fed to the refresh schedule, as the token manager does.
pub fn token_response(status: u16, retry_after: &[u8], body: &str) {
    let retry_after = retry_after_header(retry_after);
    match crate::auth::token_response(status, retry_after, Ok(body.to_owned())) {
        Ok(token) => {
            assert!(!token.secret().is_empty());
            if let Some(life) = token.expires_in() {
                let now = Instant::now();
                assert!(crate::auth::refresh_at(now, life) > now);
            }
        }
        Err(error) => {
            let _ = (error.to_string(), error.is_permanent(), error.retry_after());
        }
    }
}

/// A `Retry-After` header value (bytes as on the wire; values `http` refuses are skipped).
pub fn retry_after_header(value: &[u8]) -> Option<Duration> {
    let value = ureq::http::HeaderValue::from_bytes(value).ok()?;
    let mut headers = ureq::http::HeaderMap::new();
    headers.insert("retry-after", value);
    crate::http::parse_retry_after(&headers)
}

/// A base URL as given to `api_base`/`login_base`, checked as `Config::validate` does; and a
/// region name.
pub fn config_text(text: &str) {
    if let Some(region) = crate::config::Region::from_name(text) {
        assert_eq!(
            crate::config::Region::from_name(region.name()),
            Some(region)
        );
    }
    let ok = !text.is_empty() && crate::url::check_rest_base(text).is_ok();
    let config = crate::config::Config {
        api_base: text.to_owned(),
        ..crate::config::Config::default()
    };
    assert_eq!(
        config.validate().is_ok(),
        ok,
        "validate checks api_base as check_rest_base"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found while writing the fuzz targets: `Duration::from_secs_f64` panics on huge floats.
    #[test]
    fn huge_or_odd_retry_after_values_are_ignored_without_panic() {
        assert_eq!(retry_after_header(b"1e300"), None);
        assert_eq!(retry_after_header(b"-1"), None);
        assert_eq!(retry_after_header(b"NaN"), None);
        assert_eq!(retry_after_header(b"inf"), None);
        assert_eq!(retry_after_header(b" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(
            retry_after_header(b"2.5"),
            Some(Duration::from_millis(2500))
        );
    }

    /// A token endpoint answering an absurd `expires_in` neither panics in decoding nor in the
    /// refresh schedule (`Instant` overflow).
    #[test]
    fn huge_expires_in_does_not_panic() {
        let huge = r#"{"access_token":"t","expires_in":1e300}"#;
        let token = crate::auth::token_response(200, None, Ok(huge.to_owned())).unwrap();
        assert_eq!(token.expires_in(), Some(crate::auth::SUSPECT_LIFETIME));
        let big = r#"{"access_token":"t","expires_in":1e19}"#;
        let token = crate::auth::token_response(200, None, Ok(big.to_owned())).unwrap();
        let life = token.expires_in().expect("representable");
        let now = Instant::now();
        assert!(crate::auth::refresh_at(now, life) > now);
        token_response(200, b"", big);
    }

    /// Issue 17, point 8: a negative, zero or absurd `expires_in` means "refresh soon" (the
    /// service's shortest lifetime, 300 s), never "never" (before: no expiry at all).
    #[test]
    fn a_senseless_expires_in_means_refresh_soon_never_never() {
        for expires_in in ["-5", "-1e300", "0", "1e19", "1e300", "31536000"] {
            let body = format!(r#"{{"access_token":"t","expires_in":{expires_in}}}"#);
            let token = crate::auth::token_response(200, None, Ok(body)).unwrap();
            assert_eq!(
                token.expires_in(),
                Some(crate::auth::SUSPECT_LIFETIME),
                "expires_in {expires_in}"
            );
        }
        for (expires_in, secs) in [("2", 2), ("300", 300), ("86400", 86400), ("172800", 172800)] {
            let body = format!(r#"{{"access_token":"t","expires_in":{expires_in}}}"#);
            let token = crate::auth::token_response(200, None, Ok(body)).unwrap();
            assert_eq!(token.expires_in(), Some(Duration::from_secs(secs)));
        }
    }

    /// The fuzzers' first finding, kept as a seed of behaviour: an empty `topicName` is a
    /// notification no listener matches, not a crash.
    #[test]
    fn empty_topic_name_is_parsed_without_panic() {
        frame(r#"{"topicName":"","eventBody":{"a":"x\"y"}}"#);
    }
}
