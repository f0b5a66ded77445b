//! The emulator's HTTP side: tiny_http workers, routing, OAuth, channels and subscriptions.

use std::io::{Read, Write};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Value};

use super::fault::Endpoint;
use super::state::{uuid, ApiError, Shared, State, SubMethod};
use super::{EmulatorConfig, RequestRecord};

/// Largest request body read; the rest is ignored.
const MAX_BODY: u64 = 16 << 20;
/// Largest body kept in a [`RequestRecord`].
const MAX_RECORDED_BODY: usize = 1 << 20;

/// An answer, before it is written.
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            headers: Vec::new(),
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: String::new(),
            headers: Vec::new(),
        }
    }

    /// A Genesys-style API error.
    fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            &json!({
                "message": message,
                "code": code,
                "status": status,
                "contextId": uuid(),
                "details": [],
                "errors": [],
            }),
        )
    }

    /// An OAuth-style error of the login server.
    fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
        Reply::json(
            status,
            &json!({
                "error": error,
                "description": description,
                "error_description": description,
            }),
        )
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::error(e.status, e.code, &e.message)
    }
}

/// One HTTP worker: serves requests until the emulator shuts down.
pub(crate) fn worker(shared: &Shared, server: &tiny_http::Server) {
    loop {
        let request = match server.recv() {
            Ok(r) => r,
            Err(e) => {
                if shared.is_shutdown() {
                    return;
                }
                log::debug!("emulator: HTTP accept error: {e}");
                continue;
            }
        };
        serve(shared, request);
    }
}

fn header(request: &tiny_http::Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_owned())
}

fn serve(shared: &Shared, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_ascii_uppercase();
    let url = request.url().to_owned();
    let authorization = header(&request, "Authorization");
    let mut raw = Vec::new();
    let _ = request.as_reader().take(MAX_BODY).read_to_end(&mut raw);
    let body = String::from_utf8_lossy(&raw).into_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));

    let now = Instant::now();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (reply, hold) = {
        let mut st = shared.state.lock();
        st.sweep(now);
        let (reply, authorization_ok) = route(
            &mut st,
            &shared.config,
            &method,
            path,
            query,
            authorization.as_deref(),
            &body,
        );
        let mut recorded = body;
        if recorded.len() > MAX_RECORDED_BODY {
            let mut end = MAX_RECORDED_BODY;
            while !recorded.is_char_boundary(end) {
                end -= 1;
            }
            recorded.truncate(end);
        }
        st.requests.push(RequestRecord {
            method: method.clone(),
            path: url.clone(),
            status: reply.status,
            at: now,
            authorization_ok,
            body: recorded,
        });
        (reply, st.resources.hold_for(&method, &segments))
    };
    // A held state answer waits outside the lock (Emulator::hold_state_responses).
    if let Some(hold) = hold {
        hold.wait(|| shared.is_shutdown());
    }
    // Wake the janitor when a channel was created: its deadline may come first. An extended
    // channel needs no wake (its deadline only moves later; the janitor finds that out when it
    // wakes for the earlier one), and waking on every request cost each one a context switch.
    if method == "POST" && path.trim_end_matches('/') == "/api/v2/notifications/channels" {
        let _ = shared.wake.send(());
    }
    write_reply(request, &method, &reply);
}

/// Writes the response by hand so that it can say `Connection: close` (tiny_http refuses that
/// header): no idle keep-alive connection then outlives the emulator.
fn write_reply(request: tiny_http::Request, method: &str, reply: &Reply) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: genesys-emulator\r\nConnection: close\r\nContent-Length: {}\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.body.len()
    );
    if !reply.body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = request.into_writer();
    let mut bytes = head.into_bytes();
    if method != "HEAD" {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    let _ = writer.write_all(&bytes);
    let _ = writer.flush();
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Which endpoint a request is for (for HTTP faults).
fn classify(method: &str, segments: &[&str]) -> Option<Endpoint> {
    match (method, segments) {
        ("POST", ["oauth", "token"]) => Some(Endpoint::Token),
        ("GET" | "HEAD", ["api", "v2", "tokens", "me"]) => Some(Endpoint::TokensMe),
        ("POST", ["api", "v2", "notifications", "channels"]) => Some(Endpoint::CreateChannel),
        ("HEAD", ["api", "v2", "notifications", "channels", _]) => Some(Endpoint::HeadChannel),
        (_, ["api", "v2", "notifications", "channels", _, "subscriptions"]) => {
            Some(Endpoint::Subscriptions)
        }
        ("GET", ["api", "v2", "notifications", "availabletopics"]) => {
            Some(Endpoint::AvailableTopics)
        }
        _ => super::resources::classify(method, segments),
    }
}

/// Answers a fault: an OAuth-style body on the login endpoint, a Genesys-style one elsewhere.
fn fault_reply(endpoint: Option<Endpoint>, status: u16, retry_after: Option<u64>) -> Reply {
    let mut reply = if endpoint == Some(Endpoint::Token) {
        let error = match status {
            400 => "invalid_request",
            401 => "invalid_client",
            429 => "too_many_requests",
            _ => "server_error",
        };
        Reply::oauth_error(status, error, "Injected by the emulator")
    } else {
        let code = match status {
            400 => "bad.request",
            401 => "authentication.required",
            403 => "missing.permissions",
            404 => "not.found",
            408 => "request.timeout",
            429 => "too.many.requests",
            503 => "service.unavailable",
            s if s >= 500 => "internal.server.error",
            _ => "emulator.fault",
        };
        Reply::error(status, code, "Injected by the emulator")
    };
    if let Some(secs) = retry_after {
        reply.headers.push(("Retry-After", secs.to_string()));
    }
    reply
}

/// Decides the answer; returns it and whether the request was authorised.
fn route(
    st: &mut State,
    config: &EmulatorConfig,
    method: &str,
    path: &str,
    query: &str,
    authorization: Option<&str>,
    body: &str,
) -> (Reply, bool) {
    let now = Instant::now();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let endpoint = classify(method, &segments);
    let is_token = matches!(segments.as_slice(), ["oauth", "token"]);
    if is_token && method == "POST" {
        st.token_requests += 1;
    }
    let is_api = segments.starts_with(&["api", "v2"]);

    let basic_ok = is_token && basic_credentials_ok(config, authorization);
    let bearer = authorization.and_then(|a| {
        let (scheme, token) = a.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    });
    let bearer_ok = bearer.as_deref().is_some_and(|t| st.token_valid(t, now));
    let authorization_ok = if is_token { basic_ok } else { bearer_ok };

    if is_token || is_api {
        if let Some((status, retry_after)) = st.take_http_fault(endpoint) {
            return (fault_reply(endpoint, status, retry_after), authorization_ok);
        }
    }

    if is_token {
        if method != "POST" {
            return (
                Reply::oauth_error(405, "invalid_request", "Use POST"),
                false,
            );
        }
        return (token(st, config, basic_ok, body), basic_ok);
    }
    if !is_api {
        return (
            Reply::error(404, "not.found", &format!("No resource at {path}")),
            false,
        );
    }
    if bearer.is_none() {
        return (
            Reply::error(
                401,
                "authentication.required",
                "No authentication bearer token specified in authorization header.",
            ),
            false,
        );
    }
    if !bearer_ok {
        return (
            Reply::error(401, "bad.credentials", "Invalid login credentials."),
            false,
        );
    }
    let ignore_errors = query.split('&').any(|kv| {
        kv.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("ignoreErrors") && v.eq_ignore_ascii_case("true")
        })
    });
    if let Some(answer) = st.resources.route(method, &segments[2..], query) {
        let reply = match answer {
            Ok(value) => Reply::json(200, &value),
            Err((status, code, message)) => Reply::error(status, code, &message),
        };
        return (reply, true);
    }
    let reply = api(st, config, method, &segments[2..], body, ignore_errors, now);
    (reply, true)
}

fn basic_credentials_ok(config: &EmulatorConfig, authorization: Option<&str>) -> bool {
    let Some((scheme, encoded)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    decoded
        .split_once(':')
        .is_some_and(|(id, secret)| id == config.client_id && secret == config.client_secret)
}

/// Decodes `application/x-www-form-urlencoded` (enough for `grant_type`).
fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (url_decode(k) == key).then(|| url_decode(v))
    })
}

pub(super) fn url_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn token(st: &mut State, config: &EmulatorConfig, basic_ok: bool, body: &str) -> Reply {
    if !basic_ok {
        return Reply::oauth_error(
            401,
            "invalid_client",
            "client not found or wrong client secret",
        );
    }
    match form_value(body, "grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return Reply::oauth_error(
                400,
                "unsupported_grant_type",
                &format!("grant type {other:?} is not supported"),
            )
        }
        None => {
            return Reply::oauth_error(400, "invalid_request", "grant_type is required");
        }
    }
    let (access_token, expires_in) = st.issue_token(config);
    Reply::json(
        200,
        &json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": expires_in,
        }),
    )
}

/// `/api/v2/...` after authentication; `segments` starts after `api/v2`.
fn api(
    st: &mut State,
    config: &EmulatorConfig,
    method: &str,
    segments: &[&str],
    body: &str,
    ignore_errors: bool,
    now: Instant,
) -> Reply {
    match (method, segments) {
        ("GET" | "HEAD", ["tokens", "me"]) => Reply::json(
            200,
            &json!({
                "organization": {"id": "00000000-0000-4000-8000-000000000001", "name": "Emulator"},
                "homeOrganization": {"id": "00000000-0000-4000-8000-000000000001", "name": "Emulator"},
                "OAuthClient": {"id": config.client_id, "name": "Emulator client"},
                "authorizedScope": ["notifications"],
            }),
        ),
        ("POST", ["notifications", "channels"]) => {
            let ch = st.create_channel(now);
            Reply::json(
                200,
                &json!({
                    "id": ch.id,
                    "connectUri": ch.connect_uri,
                    "expires": humantime::format_rfc3339_millis(ch.expires).to_string(),
                }),
            )
        }
        ("GET", ["notifications", "channels"]) => {
            let list: Vec<Value> = st
                .channels
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "connectUri": c.connect_uri,
                        "expires": humantime::format_rfc3339_millis(c.expires).to_string(),
                    })
                })
                .collect();
            Reply::json(200, &json!({ "entities": list }))
        }
        ("GET" | "HEAD", ["notifications", "channels", id]) => {
            match st.channels.iter().find(|c| c.id == *id) {
                Some(c) => Reply::json(
                    200,
                    &json!({
                        "id": c.id,
                        "connectUri": c.connect_uri,
                        "expires": humantime::format_rfc3339_millis(c.expires).to_string(),
                    }),
                ),
                None => Reply::error(404, "not.found", &format!("Channel {id} not found")),
            }
        }
        (_, ["notifications", "channels", id, "subscriptions"]) => {
            let sub = match method {
                "GET" => SubMethod::Get,
                "PUT" => SubMethod::Put,
                "POST" => SubMethod::Post,
                "DELETE" => SubMethod::Delete,
                _ => return Reply::error(405, "method.not.allowed", "Method not allowed"),
            };
            match st.subscriptions(id, sub, body, ignore_errors, now) {
                Ok(Some(body)) => Reply {
                    status: 200,
                    body,
                    headers: Vec::new(),
                },
                Ok(None) => Reply::empty(200),
                Err(e) => e.into(),
            }
        }
        ("GET", ["notifications", "availabletopics"]) => Reply::json(
            200,
            &json!({"entities": [
                {"id": "v2.users.{id}.presence", "description": "Presence of a user",
                 "requiresPermissions": []},
                {"id": "v2.users.{id}.routingStatus", "description": "Routing status of a user",
                 "requiresPermissions": []},
                {"id": "v2.users.{id}.conversations", "description": "Conversations of a user",
                 "requiresPermissions": ["conversation:communication:view"]},
                {"id": "v2.routing.queues.{id}.conversations", "description": "Conversations of a queue",
                 "requiresPermissions": ["routing:queue:view"]},
                {"id": "v2.analytics.queues.{id}.observations", "description": "Queue observations",
                 "requiresPermissions": ["analytics:queueObservation:view"]},
            ]}),
        ),
        _ => Reply::error(
            404,
            "not.found",
            &format!("No resource at /api/v2/{}", segments.join("/")),
        ),
    }
}
