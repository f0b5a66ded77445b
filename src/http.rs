//! http.rs owns the crate's HTTP agent settings and the text HTTP failures become (never holding
//! a secret); it never makes a request of its own and never retries.

use std::time::Duration;

/// Server-provided error text is cut to this many characters.
const MAX_ERROR_TEXT: usize = 300;

/// One `ureq::Agent` as the crate uses them: `timeout` bounds the whole exchange (DNS,
/// connect, TLS, request, response body), statuses are returned rather than turned into
/// errors, and redirects are not followed (Genesys does not redirect API calls; following one
/// would send a request, possibly with a channel id in its path, somewhere unexpected).
pub(crate) fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("genesys-notify/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// The same agent, through `proxy` (or explicitly direct: ureq's own reading of the proxy
/// environment is replaced by ours, see proxy.rs) and verifying servers against `tls`'s roots.
pub(crate) fn agent_with(
    timeout: Duration,
    proxy: Option<ureq::Proxy>,
    tls: &ureq::tls::TlsConfig,
) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("genesys-notify/", env!("CARGO_PKG_VERSION")))
        .proxy(proxy)
        .tls_config(tls.clone())
        .build()
        .new_agent()
}

/// A ureq transport error as text that never contains a URL (URLs may hold channel ids).
pub(crate) fn transport_message(e: &ureq::Error) -> String {
    match e {
        ureq::Error::BadUri(_) => "bad uri".to_owned(),
        ureq::Error::RequireHttpsOnly(_) => "configured for https only".to_owned(),
        other => other.to_string(),
    }
}

/// Parses a `Retry-After` header given in whole seconds (docs/protocol.md "Rate limits").
/// An HTTP-date or garbage yields `None`.
pub(crate) fn parse_retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // `try_from`: negative, NaN, infinite or huge values give `None`, never a panic.
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// Describes a JSON decoding error by kind and position only: serde's own message may quote a
/// value from the body, which could be a token or a channel id.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// Cuts server-provided text to [`MAX_ERROR_TEXT`] characters.
pub(crate) fn shorten(text: String) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}
