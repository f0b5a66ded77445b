//! api.rs owns the REST calls of the Notifications API and maps every answer to an [`ApiError`];
//! it never retries, except once with a fresh token after a 401.
//!
//! It speaks the Genesys Notifications REST API of docs/protocol.md "Channels" and "Subscriptions"
//! plus `GET /api/v2/tokens/me` ("OAuth"), with one `ureq::Agent` whose global timeout bounds
//! every call (DNS, connect, TLS, request and response body). Every status is mapped to an
//! [`ApiError`] here, with the Genesys error body's `code` and `message` when present; the
//! caller owns backoff, retry budgets and `Retry-After` (docs/protocol.md "Rate limits"), helped by
//! [`ApiError::is_transient`] and [`ApiError::retry_after`].
//!
//! Channel ids are credentials (docs/protocol.md "The WebSocket"): they appear in logs, `Debug` and
//! error messages only shortened (redact.rs), and a server message quoting one is shortened too.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use ureq::http::Response;
use ureq::Body;

use crate::auth::TokenManager;
use crate::error::ApiError;
use crate::http::{http_agent, json_error, parse_retry_after, shorten, transport_cause};
use crate::redact::{short_id, short_uri};
use crate::topic::{TopicResult, TopicState};

/// Response bodies larger than this are refused as [`ApiError::Decode`]. The largest expected
/// body, a subscription result for 1 000 topics with reasons, is well under 1 MiB.
const MAX_BODY: u64 = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// A notification channel as returned by `POST /api/v2/notifications/channels`
/// (docs/protocol.md "Channels").
///
/// `Debug` shows the id and `connect_uri` shortened: either one is enough to take the channel
/// over.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ChannelInfo {
    /// The channel id (`id`).
    pub(crate) id: String,
    /// The WebSocket URL to connect to, as given (`connectUri`), e.g.
    /// `wss://streaming.<domain>/channels/<id>`.
    pub(crate) connect_uri: String,
    /// When the channel expires unless re-subscribed (`expires`, ISO-8601; channels live 24 h).
    /// `None` when the server sent none or an unparseable one.
    pub(crate) expires: Option<SystemTime>,
}

impl fmt::Debug for ChannelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelInfo")
            .field("id", &short_id(&self.id))
            .field("connect_uri", &short_uri(&self.connect_uri))
            .field(
                "expires",
                &self.expires.map(humantime::format_rfc3339_seconds),
            )
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Wire shapes
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelBody {
    id: Option<String>,
    connect_uri: Option<String>,
    expires: Option<String>,
}

#[derive(Serialize)]
struct TopicRef<'a> {
    id: &'a str,
}

#[derive(Deserialize)]
#[cfg(test)]
struct Entities<T> {
    #[serde(default = "Vec::new")]
    entities: Vec<T>,
}

/// One entry of a subscription answer. `id` and `state` borrow from the answer's text: a
/// channel's answer lists up to 1 000 topics, most of which a `POST` caller skips.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicEntity<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    rejection_reason: Option<String>,
    #[serde(default)]
    missing_permissions: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[cfg(test)]
struct TopicId {
    id: String,
}

/// The Genesys error body: `{"message", "code", "status", "contextId", ...}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Api
// ---------------------------------------------------------------------------------------------

/// The REST client: one `ureq::Agent`, the API base URL and the token manager.
pub(crate) struct Api {
    base: String,
    agent: ureq::Agent,
    /// Whether requests go through a proxy (a connection failure is then the proxy's).
    proxied: crate::network::Proxied,
    tokens: Arc<TokenManager>,
    request_timeout: Duration,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The HTTP methods this module uses.
#[derive(Clone, Copy, Debug)]
enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

impl Api {
    /// Creates the client. `api_base` is e.g. `https://api.mypurecloud.com` (a trailing `/` is
    /// ignored; `http://` is accepted, the caller restricts it to loopback). `request_timeout`
    /// bounds each HTTP exchange end to end (DNS, connect, TLS, request, response body); a call
    /// that refreshes its token after a 401 makes up to two exchanges plus a token fetch.
    pub(crate) fn new(api_base: &str, tokens: Arc<TokenManager>, request_timeout: Duration) -> Api {
        Api {
            base: api_base.trim_end_matches('/').to_owned(),
            agent: http_agent(request_timeout),
            proxied: crate::network::Proxied::No,
            tokens,
            request_timeout,
        }
    }

    /// The same, with an agent built for this client's proxy and trust roots (network.rs).
    pub(crate) fn with_agent(
        api_base: &str,
        tokens: Arc<TokenManager>,
        request_timeout: Duration,
        agent: crate::network::HttpAgent,
    ) -> Api {
        Api {
            agent: agent.agent,
            proxied: agent.proxied,
            ..Api::new(api_base, tokens, request_timeout)
        }
    }

    /// `POST /api/v2/notifications/channels` (no body): a new channel.
    ///
    /// Each call creates a channel; at most 20 exist per user + OAuth client and a 21st evicts
    /// the least recently used one (docs/protocol.md "Channels"), so callers must not leak them.
    ///
    /// # Errors
    /// The common mapping (see [`ApiError`]); [`ApiError::Decode`] when the body lacks `id` or
    /// `connectUri`. An unparseable `expires` is logged and becomes `None`.
    pub(crate) fn create_channel(&self) -> Result<ChannelInfo, ApiError> {
        let path = "/api/v2/notifications/channels";
        let mut response = self.call(Method::Post, path, path, None, None)?;
        let body: ChannelBody = read_json(&mut response)?;
        let info = channel_info(body)?;
        log::info!("created channel {}", short_id(&info.id));
        Ok(info)
    }

    /// `HEAD /api/v2/notifications/channels/{id}`: 200 → `true`, 404 → `false`
    /// (docs/protocol.md "Channels").
    ///
    /// # Errors
    /// The common mapping (see [`ApiError`]) for any status but 2xx and 404.
    pub(crate) fn channel_exists(&self, id: &str) -> Result<bool, ApiError> {
        let (path, shown) = channel_path(id, "");
        match self.call(Method::Head, &path, &shown, None, Some(id)) {
            Ok(_) => Ok(true),
            Err(ApiError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /api/v2/notifications/channels/{id}/subscriptions?ignoreErrors=true` with body
    /// `[{"id": topic}, ...]`: replaces the channel's whole topic list and extends its life.
    /// With `ignoreErrors=true` a topic lacking permission is reported in its [`TopicResult`]
    /// instead of failing the request (docs/protocol.md "Subscriptions"). An empty `topics` clears
    /// the list. Topics are sent as given; validation, normalisation and the 1 000-topic limit
    /// belong to the caller.
    ///
    /// # Errors
    /// The common mapping (see [`ApiError`]); notably 400 → [`ApiError::BadRequest`] (more
    /// than 1 000 topics), 404 → [`ApiError::NotFound`], and [`ApiError::Decode`] when the body
    /// is not `{"entities": [...]}`.
    pub(crate) fn put_subscriptions(
        &self,
        id: &str,
        topics: &[String],
    ) -> Result<Vec<TopicResult>, ApiError> {
        self.send_subscriptions(Method::Put, id, topics, &|_| true)
    }

    /// `POST /api/v2/notifications/channels/{id}/subscriptions?ignoreErrors=true` with body
    /// `[{"id": topic}, ...]`: adds `topics` to the channel's list and extends its life
    /// (docs/protocol.md "Subscriptions": `POST` adds, `PUT` replaces). The answer lists every
    /// topic of the channel, not only those added: only the entries whose `id` passes `keep`
    /// are returned (the others are skipped without being copied). Otherwise as
    /// [`Api::put_subscriptions`].
    ///
    /// # Errors
    /// As [`Api::put_subscriptions`]; a 400 also when the channel would exceed 1 000 topics.
    pub(crate) fn post_subscriptions(
        &self,
        id: &str,
        topics: &[String],
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<TopicResult>, ApiError> {
        self.send_subscriptions(Method::Post, id, topics, keep)
    }

    fn send_subscriptions(
        &self,
        method: Method,
        id: &str,
        topics: &[String],
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<TopicResult>, ApiError> {
        let (path, shown) = channel_path(id, "/subscriptions?ignoreErrors=true");
        let body: Vec<TopicRef<'_>> = topics.iter().map(|t| TopicRef { id: t }).collect();
        let body = serde_json::to_vec(&body)
            .map_err(|e| ApiError::Decode(format!("cannot encode topics: {e}").into()))?;
        let mut response = self.call(method, &path, &shown, Some(&body), Some(id))?;
        let text = read_text(&mut response)?;
        topic_results(&text, keep)
    }

    /// `DELETE /api/v2/notifications/channels/{id}/subscriptions`: removes every topic.
    ///
    /// # Errors
    /// The common mapping (see [`ApiError`]); 404 → [`ApiError::NotFound`] (the channel is
    /// already gone, which a caller cleaning up may treat as success).
    pub(crate) fn delete_subscriptions(&self, id: &str) -> Result<(), ApiError> {
        let (path, shown) = channel_path(id, "/subscriptions");
        self.call(Method::Delete, &path, &shown, None, Some(id))
            .map(drop)
    }

    /// `GET /api/v2/notifications/channels/{id}/subscriptions`: the topic names the channel
    /// has, as the server spells them.
    ///
    /// # Errors
    /// The common mapping (see [`ApiError`]); [`ApiError::Decode`] when the body is not
    /// `{"entities": [{"id": ...}, ...]}`.
    #[cfg(test)]
    pub(crate) fn get_subscriptions(&self, id: &str) -> Result<Vec<String>, ApiError> {
        let (path, shown) = channel_path(id, "/subscriptions");
        let mut response = self.call(Method::Get, &path, &shown, None, Some(id))?;
        let parsed: Entities<TopicId> = read_json(&mut response)?;
        Ok(parsed.entities.into_iter().map(|t| t.id).collect())
    }

    /// `GET /api/v2/tokens/me`: checks that the current token is accepted. Works for
    /// client-credentials tokens, unlike `/api/v2/users/me` (docs/protocol.md "OAuth"). The body is
    /// read and ignored (read, so that the connection can serve the next request).
    ///
    /// # Errors
    /// The common mapping (see [`ApiError`]), except that a 404 is [`ApiError::Server`] naming
    /// the URL: this resource always exists under the API root, so a 404 means the API base URL
    /// is wrong (not "channel not found").
    pub(crate) fn token_me(&self) -> Result<(), ApiError> {
        let path = "/api/v2/tokens/me";
        match self.call(Method::Get, path, path, None, None) {
            Ok(mut response) => {
                let _ = read_text(&mut response);
                Ok(())
            }
            Err(ApiError::NotFound) => Err(ApiError::Server {
                status: 404,
                message: format!(
                    "{}{path} answered 404: check the API base URL (it must be the region's \
                     API root, with no path)",
                    self.base
                ),
                retry_after: None,
            }),
            Err(error) => Err(error),
        }
    }

    /// `GET {path}` (path and query under `/api/v2/`, as built by a state resource) and its JSON
    /// answer, for resynchronising topics (docs/protocol.md, "State resources").
    ///
    /// # Errors
    /// The common mapping (see [`ApiError`]); [`ApiError::Decode`] when the body is not JSON.
    pub(crate) fn get_json(&self, path: &str) -> Result<serde_json::Value, ApiError> {
        let mut response = self.call(Method::Get, path, path, None, None)?;
        read_json(&mut response)
    }

    /// Sends one request with the current token; on 401, invalidates that token, obtains a new
    /// one and sends the request once more. Returns the 2xx response or the mapped error.
    /// `shown` is the path as it may be logged; `channel` is the channel id to hide in messages.
    fn call(
        &self,
        method: Method,
        path: &str,
        shown: &str,
        body: Option<&[u8]>,
        channel: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let url = format!("{}{path}", self.base);
        let token = self.tokens.token().map_err(ApiError::Token)?;
        let mut response = self.send(method, &url, shown, &token, body)?;
        if response.status().as_u16() == 401 {
            log::debug!(
                "{} {shown} -> 401; refreshing the token once",
                method.as_str()
            );
            self.tokens.invalidate(&token);
            let token = self.tokens.token().map_err(ApiError::Token)?;
            response = self.send(method, &url, shown, &token, body)?;
        }
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        Err(map_status(&mut response, channel))
    }

    fn send(
        &self,
        method: Method,
        url: &str,
        shown: &str,
        token: &str,
        body: Option<&[u8]>,
    ) -> Result<Response<Body>, ApiError> {
        let bearer = format!("Bearer {token}");
        let started = Instant::now();
        let result = match method {
            Method::Get => self.agent.get(url).header("Authorization", &bearer).call(),
            Method::Head => self.agent.head(url).header("Authorization", &bearer).call(),
            Method::Delete => self
                .agent
                .delete(url)
                .header("Authorization", &bearer)
                .call(),
            Method::Post | Method::Put => {
                let request = match method {
                    Method::Post => self.agent.post(url),
                    _ => self.agent.put(url),
                }
                .header("Authorization", &bearer);
                match body {
                    Some(bytes) => request
                        .header("Content-Type", "application/json")
                        .send(bytes),
                    None => request.send_empty(),
                }
            }
        };
        match result {
            Ok(response) => {
                log::debug!(
                    "{} {shown} -> {} in {:?}",
                    method.as_str(),
                    response.status().as_u16(),
                    started.elapsed()
                );
                Ok(response)
            }
            Err(e) => {
                if let Some(proxy) = crate::network::proxy_failure(&e, self.proxied) {
                    log::debug!(
                        "{} {shown} failed at the proxy after {:?}: {proxy}",
                        method.as_str(),
                        started.elapsed()
                    );
                    return Err(ApiError::Proxy(proxy));
                }
                let cause = transport_cause(e);
                log::debug!(
                    "{} {shown} failed after {:?}: {cause}",
                    method.as_str(),
                    started.elapsed()
                );
                Err(ApiError::Transport(cause))
            }
        }
    }
}

/// `/api/v2/notifications/channels/{id}{suffix}` for the request and for logs (id shortened).
fn channel_path(id: &str, suffix: &str) -> (String, String) {
    (
        format!(
            "/api/v2/notifications/channels/{}{suffix}",
            encode_segment(id)
        ),
        format!("/api/v2/notifications/channels/{}{suffix}", short_id(id)),
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so an id can never change the
/// path or add a query. Genesys channel ids are plain ASCII and pass unchanged.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Maps a non-2xx response (after the 401 retry) to an [`ApiError`].
fn map_status(response: &mut Response<Body>, channel: Option<&str>) -> ApiError {
    let status = response.status().as_u16();
    if status == 429 {
        return ApiError::RateLimited {
            retry_after: parse_retry_after(response.headers()),
        };
    }
    if status == 404 {
        return ApiError::NotFound;
    }
    // The error body is a courtesy: a failure to read it leaves code and message empty.
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    error_from_body(
        status,
        parse_retry_after(response.headers()),
        &text,
        channel,
    )
}

/// Maps a non-2xx status other than 429 and 404 and its body (a Genesys error body, or
/// anything) to an [`ApiError`], hiding the channel id and shortening the server's text.
fn error_from_body(
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
    channel: Option<&str>,
) -> ApiError {
    let parsed: ErrorBody = serde_json::from_str(text).unwrap_or_default();
    let hide = |s: String| {
        let s = match channel {
            Some(id) if !id.is_empty() => s.replace(id, &short_id(id)),
            _ => s,
        };
        shorten(s)
    };
    let code = hide(parsed.code.unwrap_or_default());
    let message = hide(parsed.message.unwrap_or_default());
    match status {
        400 => ApiError::BadRequest { code, message },
        401 => ApiError::Unauthorized { message },
        403 => ApiError::Forbidden { code, message },
        _ => ApiError::Server {
            status,
            retry_after,
            message: if message.is_empty() {
                hide(text.trim().to_owned())
            } else {
                message
            },
        },
    }
}

/// The channel of a `POST /api/v2/notifications/channels` answer: [`ApiError::Decode`] when it
/// lacks `id` or `connectUri`; an unparseable `expires` is logged and becomes `None`.
fn channel_info(body: ChannelBody) -> Result<ChannelInfo, ApiError> {
    let id = body
        .id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Decode("channel without id".into()))?;
    let connect_uri = body
        .connect_uri
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Decode("channel without connectUri".into()))?;
    let expires = body.expires.as_deref().and_then(|text| {
        let parsed = parse_expires(text);
        if parsed.is_none() {
            log::warn!(
                "channel {} has an unparseable expires {text:?}",
                short_id(&id)
            );
        }
        parsed
    });
    Ok(ChannelInfo {
        id,
        connect_uri,
        expires,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(response: &mut Response<Body>) -> Result<T, ApiError> {
    let text = read_text(response)?;
    serde_json::from_str(&text).map_err(|e| ApiError::Decode(json_error(&e).into()))
}

/// The response body as text, at most `MAX_BODY` bytes.
fn read_text(response: &mut Response<Body>) -> Result<String, ApiError> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => ApiError::Decode("response body too large".into()),
            other => ApiError::Transport(transport_cause(other)),
        })
}

#[cfg(feature = "fuzzing")]
fn decode_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::Decode(json_error(&e).into()))
}

/// The results of a subscription answer whose topic passes `keep`. The answer lists every topic
/// of the channel (up to 1 000) while a `POST` caller wants a few: entities are read one at a
/// time and only those kept are converted, so the others cost one pass over their text and no
/// copy, and no list of them is built.
fn topic_results(text: &str, keep: &dyn Fn(&str) -> bool) -> Result<Vec<TopicResult>, ApiError> {
    use serde::de::DeserializeSeed as _;
    let decode = |e: serde_json::Error| ApiError::Decode(json_error(&e).into());
    let mut de = serde_json::Deserializer::from_str(text);
    let results = KeptEntities { keep }.deserialize(&mut de).map_err(decode)?;
    de.end().map_err(decode)?;
    Ok(results)
}

/// `{"entities": [...], ...}` read into the results of the entities `keep` accepts (a missing
/// `entities` is an empty list).
struct KeptEntities<'k> {
    keep: &'k dyn Fn(&str) -> bool,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum AnswerField {
    Entities,
    #[serde(other)]
    Other,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeptEntities<'_> {
    type Value = Vec<TopicResult>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeptEntities<'_> {
    type Value = Vec<TopicResult>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with `entities`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut results = None;
        while let Some(field) = map.next_key::<AnswerField>()? {
            match field {
                AnswerField::Entities if results.is_some() => {
                    return Err(serde::de::Error::duplicate_field("entities"))
                }
                AnswerField::Entities => {
                    results = Some(map.next_value_seed(KeptList { keep: self.keep })?)
                }
                AnswerField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(results.unwrap_or_default())
    }
}

/// The `entities` array of [`KeptEntities`].
struct KeptList<'k> {
    keep: &'k dyn Fn(&str) -> bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeptList<'_> {
    type Value = Vec<TopicResult>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeptList<'_> {
    type Value = Vec<TopicResult>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of subscription entities")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::new();
        while let Some(entity) = seq.next_element::<TopicEntity<'de>>()? {
            if (self.keep)(&entity.id) {
                kept.push(topic_result(entity));
            }
        }
        Ok(kept)
    }
}

/// The decoding steps of the calls above, on bodies given as text (crate feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod decode {
    use super::*;

    /// As [`Api::create_channel`] decodes its answer.
    pub(crate) fn channel(text: &str) -> Result<ChannelInfo, ApiError> {
        channel_info(decode_json(text)?)
    }

    /// As [`Api::put_subscriptions`] decodes its answer (and `post_subscriptions`, keeping
    /// the topics whose name is shorter than 64 bytes).
    pub(crate) fn subscriptions(text: &str) -> Result<Vec<TopicResult>, ApiError> {
        let all = topic_results(text, &|_| true)?;
        let kept = topic_results(text, &|topic| topic.len() < 64)?;
        assert!(kept.len() <= all.len());
        Ok(all)
    }

    /// As a failed call decodes its error body.
    pub(crate) fn error(
        status: u16,
        retry_after: Option<Duration>,
        text: &str,
        channel: Option<&str>,
    ) -> ApiError {
        error_from_body(status, retry_after, text, channel)
    }
}

fn topic_result(entity: TopicEntity<'_>) -> TopicResult {
    let (state, rejection_reason) = match entity.state.as_deref() {
        None => (TopicState::Permitted, entity.rejection_reason),
        Some(s) if s.eq_ignore_ascii_case("permitted") => {
            (TopicState::Permitted, entity.rejection_reason)
        }
        Some(s) if s.eq_ignore_ascii_case("rejected") => {
            (TopicState::Rejected, entity.rejection_reason)
        }
        Some(other) => (
            TopicState::Rejected,
            entity
                .rejection_reason
                .or_else(|| Some(format!("unknown subscription state {other:?}"))),
        ),
    };
    TopicResult {
        topic: entity.id.into_owned(),
        state,
        rejection_reason,
        missing_permissions: entity.missing_permissions.unwrap_or_default(),
    }
}

/// Parses the channel's `expires`, e.g. `2024-05-01T12:00:00.000Z` (UTC; `Z` or `+00:00`).
fn parse_expires(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text.trim()).ok()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AccessToken, AuthEvent, StaticToken, TokenSource};
    use crate::error::TokenError;
    use mockito::Matcher;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const CHANNEL: &str = "streaming-CHANNELMARKER-0123456789";
    const TOKEN: &str = "TOKEN-MARKER-51ab";

    fn no_events() -> Arc<dyn Fn(AuthEvent) + Send + Sync> {
        Arc::new(|_| {})
    }

    fn api_with(url: &str, source: Box<dyn TokenSource>) -> Api {
        Api::new(
            url,
            TokenManager::new(source, no_events()),
            Duration::from_secs(5),
        )
    }

    fn api(url: &str) -> Api {
        api_with(url, Box::new(StaticToken::new(TOKEN)))
    }

    fn subs_path() -> String {
        format!("/api/v2/notifications/channels/{CHANNEL}/subscriptions")
    }

    #[test]
    fn create_channel_parses_the_channel() {
        let mut server = mockito::Server::new();
        let mock = server
            .mock("POST", "/api/v2/notifications/channels")
            .match_header("authorization", format!("Bearer {TOKEN}").as_str())
            .with_status(200)
            .with_body(format!(
                r#"{{"id":"{CHANNEL}","connectUri":"wss://streaming.example.test/channels/{CHANNEL}","expires":"2024-05-01T12:00:00.000Z"}}"#
            ))
            .expect(1)
            .create();
        let channel = api(&format!("{}/", server.url())).create_channel().unwrap();
        mock.assert();
        assert_eq!(channel.id, CHANNEL);
        assert_eq!(
            channel.connect_uri,
            format!("wss://streaming.example.test/channels/{CHANNEL}")
        );
        assert_eq!(
            channel.expires,
            Some(humantime::parse_rfc3339("2024-05-01T12:00:00Z").unwrap())
        );
    }

    #[test]
    fn channel_without_connect_uri_is_a_decode_error() {
        let mut server = mockito::Server::new();
        let _m = server
            .mock("POST", "/api/v2/notifications/channels")
            .with_status(200)
            .with_body(r#"{"id":"abc"}"#)
            .create();
        let err = api(&server.url()).create_channel().unwrap_err();
        assert!(matches!(err, ApiError::Decode(_)), "{err:?}");
        let _m = server
            .mock("POST", "/api/v2/notifications/channels")
            .with_status(200)
            .with_body("<html>proxy</html>")
            .create();
        let err = api(&server.url()).create_channel().unwrap_err();
        assert!(matches!(err, ApiError::Decode(_)), "{err:?}");
    }

    #[test]
    fn channel_exists_maps_200_and_404() {
        let mut server = mockito::Server::new();
        let path = format!("/api/v2/notifications/channels/{CHANNEL}");
        let found = server.mock("HEAD", path.as_str()).with_status(200).create();
        assert!(api(&server.url()).channel_exists(CHANNEL).unwrap());
        found.remove();
        let _gone = server.mock("HEAD", path.as_str()).with_status(404).create();
        assert!(!api(&server.url()).channel_exists(CHANNEL).unwrap());
    }

    #[test]
    fn unauthorized_call_refreshes_the_token_once_and_retries_once() {
        let mut server = mockito::Server::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let f = Arc::clone(&fetches);
        let source = Box::new(move || {
            let n = f.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken::new(
                format!("token-{n}"),
                Some(Duration::from_secs(3600)),
            ))
        });
        let stale = server
            .mock("GET", "/api/v2/tokens/me")
            .match_header("authorization", "Bearer token-1")
            .with_status(401)
            .with_body(r#"{"message":"Authentication failed","code":"authentication.required","status":401}"#)
            .expect(1)
            .create();
        let fresh = server
            .mock("GET", "/api/v2/tokens/me")
            .match_header("authorization", "Bearer token-2")
            .with_status(200)
            .with_body("{}")
            .expect(1)
            .create();
        let api = api_with(&server.url(), source);
        api.token_me().unwrap();
        stale.assert();
        fresh.assert();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn second_401_is_unauthorized_without_more_retries() {
        let mut server = mockito::Server::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let f = Arc::clone(&fetches);
        let source = Box::new(move || {
            let n = f.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken::new(format!("token-{n}"), None))
        });
        let mock = server
            .mock("DELETE", subs_path().as_str())
            .with_status(401)
            .with_body(
                r#"{"message":"token revoked","code":"authentication.required","status":401}"#,
            )
            .expect(2)
            .create();
        let err = api_with(&server.url(), source)
            .delete_subscriptions(CHANNEL)
            .unwrap_err();
        mock.assert();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert!(
            matches!(&err, ApiError::Unauthorized { message } if message == "token revoked"),
            "{err:?}"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn put_subscriptions_sends_topics_and_parses_results() {
        let mut server = mockito::Server::new();
        let mock = server
            .mock("PUT", subs_path().as_str())
            .match_query(Matcher::UrlEncoded("ignoreErrors".into(), "true".into()))
            .match_header("content-type", "application/json")
            .match_body(Matcher::Json(serde_json::json!([
                {"id": "v2.users.u1.presence"},
                {"id": "v2.routing.queues.q1.conversations"}
            ])))
            .with_status(200)
            .with_body(
                r#"{"entities":[
                    {"id":"v2.users.u1.presence","state":"Permitted"},
                    {"id":"v2.routing.queues.q1.conversations","state":"Rejected",
                     "rejectionReason":"Missing permissions",
                     "missingPermissions":["routing:queue:view","conversation:communication:view"]}
                ]}"#,
            )
            .expect(1)
            .create();
        let topics = vec![
            "v2.users.u1.presence".to_owned(),
            "v2.routing.queues.q1.conversations".to_owned(),
        ];
        let results = api(&server.url())
            .put_subscriptions(CHANNEL, &topics)
            .unwrap();
        mock.assert();
        assert_eq!(
            results,
            vec![
                TopicResult {
                    topic: "v2.users.u1.presence".into(),
                    state: TopicState::Permitted,
                    rejection_reason: None,
                    missing_permissions: vec![],
                },
                TopicResult {
                    topic: "v2.routing.queues.q1.conversations".into(),
                    state: TopicState::Rejected,
                    rejection_reason: Some("Missing permissions".into()),
                    missing_permissions: vec![
                        "routing:queue:view".into(),
                        "conversation:communication:view".into()
                    ],
                },
            ]
        );
    }

    #[test]
    fn get_subscriptions_lists_topic_names() {
        let mut server = mockito::Server::new();
        let _m = server
            .mock("GET", subs_path().as_str())
            .with_status(200)
            .with_body(r#"{"entities":[{"id":"v2.users.u1.presence","selfUri":"/x"},{"id":"v2.users.u2.presence"}]}"#)
            .create();
        assert_eq!(
            api(&server.url()).get_subscriptions(CHANNEL).unwrap(),
            vec!["v2.users.u1.presence", "v2.users.u2.presence"]
        );
    }

    #[test]
    fn statuses_map_to_errors() {
        let mut server = mockito::Server::new();
        // (status, Retry-After, body)
        let cases: Vec<(usize, Option<&str>, String)> = vec![
            (404, None, String::new()),
            (429, Some("12"), String::new()),
            (
                400,
                None,
                r#"{"message":"Too many topics","code":"bad.request","status":400}"#.into(),
            ),
            (
                403,
                None,
                format!(
                    r#"{{"message":"no access to channel {CHANNEL}","code":"notification.unauthorized.topic","status":403}}"#
                ),
            ),
            (
                503,
                Some("9"),
                r#"{"message":"try later","status":503}"#.into(),
            ),
            (500, None, "plain failure".into()),
            (409, None, String::new()),
        ];
        for (status, retry_after, body) in cases {
            server.reset();
            let mut mock = server.mock("PUT", Matcher::Any).with_status(status);
            if let Some(seconds) = retry_after {
                mock = mock.with_header("Retry-After", seconds);
            }
            let _m = mock.with_body(body).create();
            let err = api(&server.url())
                .put_subscriptions(CHANNEL, &["v2.users.u1.presence".to_owned()])
                .unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(CHANNEL), "{shown}");
            assert!(!shown.contains(TOKEN), "{shown}");
            match status {
                404 => assert!(matches!(err, ApiError::NotFound) && !err.is_transient()),
                429 => {
                    assert!(err.is_transient());
                    assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
                    assert!(matches!(err, ApiError::RateLimited { .. }));
                }
                400 => assert!(
                    matches!(&err, ApiError::BadRequest { code, message }
                        if code == "bad.request" && message == "Too many topics")
                        && !err.is_transient()
                ),
                403 => {
                    assert!(!err.is_transient());
                    let ApiError::Forbidden { code, message } = &err else {
                        panic!("{err:?}")
                    };
                    assert_eq!(code, "notification.unauthorized.topic");
                    assert!(message.contains(&short_id(CHANNEL)), "{message}");
                }
                503 => {
                    assert!(
                        matches!(&err, ApiError::Server { status: 503, message, .. } if message == "try later")
                            && err.is_transient()
                    );
                    // Honoured as on a 429 (issue #8.11).
                    assert_eq!(err.retry_after(), Some(Duration::from_secs(9)));
                }
                500 => assert!(
                    matches!(&err, ApiError::Server { status: 500, message, .. } if message == "plain failure")
                        && err.is_transient()
                        && err.retry_after().is_none()
                ),
                409 => assert!(
                    matches!(&err, ApiError::Server { status: 409, .. }) && !err.is_transient()
                ),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn token_failure_is_reported_as_token_error() {
        let api = api_with(
            "http://127.0.0.1:9",
            Box::new(|| {
                Err(TokenError::RateLimited {
                    retry_after: Some(Duration::from_secs(3)),
                })
            }),
        );
        let err = api.token_me().unwrap_err();
        assert!(matches!(
            err,
            ApiError::Token(TokenError::RateLimited { .. })
        ));
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn hung_server_gives_transport_error_at_the_timeout() {
        // Accepts connections and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (release, released) = crossbeam_channel::bounded::<()>(1);
        let holder = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let _ = released.recv_timeout(Duration::from_secs(10));
            drop(socket);
        });
        let api = Api::new(
            &url,
            TokenManager::new(Box::new(StaticToken::new(TOKEN)), no_events()),
            Duration::from_millis(500),
        );
        let started = Instant::now();
        let err = api.create_channel().unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, ApiError::Transport(_)), "{err:?}");
        assert!(err.is_transient());
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        release.send(()).unwrap();
        holder.join().unwrap();
    }

    #[test]
    fn refused_connection_is_transport() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = api(&url).channel_exists(CHANNEL).unwrap_err();
        assert!(matches!(err, ApiError::Transport(_)), "{err:?}");
        assert!(!err.to_string().contains(CHANNEL));
    }

    #[test]
    fn channel_info_debug_shortens_id_and_uri() {
        let info = ChannelInfo {
            id: CHANNEL.into(),
            connect_uri: format!("wss://streaming.example.test/channels/{CHANNEL}"),
            expires: None,
        };
        let shown = format!("{info:?}");
        assert!(!shown.contains(CHANNEL), "{shown}");
        assert!(shown.contains(&short_id(CHANNEL)), "{shown}");
        assert!(
            shown.contains("wss://streaming.example.test/channels/"),
            "{shown}"
        );
    }

    #[test]
    fn unusual_channel_ids_cannot_escape_the_path() {
        assert_eq!(encode_segment("abc-DEF_1.2~"), "abc-DEF_1.2~");
        assert_eq!(encode_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
    }

    #[test]
    fn odd_subscription_states_are_interpreted() {
        let entity = |state: Option<&'static str>| TopicEntity {
            id: "t".into(),
            state: state.map(Cow::Borrowed),
            rejection_reason: None,
            missing_permissions: None,
        };
        assert_eq!(topic_result(entity(None)).state, TopicState::Permitted);
        assert_eq!(
            topic_result(entity(Some("PERMITTED"))).state,
            TopicState::Permitted
        );
        let odd = topic_result(entity(Some("Pending")));
        assert_eq!(odd.state, TopicState::Rejected);
        assert!(odd.rejection_reason.unwrap().contains("Pending"));
    }
}
