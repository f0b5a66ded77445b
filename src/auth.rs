//! auth.rs owns access tokens: where they come from, when they are refreshed, and who may see
//! them; it never touches a WebSocket and never lets a token reach `Debug`, `Display` or a log.
//!
//! # Token sources
//! A [`TokenSource`] hands out [`AccessToken`]s. The crate ships two: [`ClientCredentials`]
//! (the OAuth client-credentials grant, docs/protocol.md "OAuth") and [`StaticToken`] (a token the
//! user obtained elsewhere, e.g. through an implicit or code grant). Any
//! `Fn() -> Result<AccessToken, TokenError> + Send + Sync + 'static` closure is a source too.
//!
//! # Refresh ahead of expiry (design.md guarantee 4)
//! The crate-internal `TokenManager` caches the current token and fetches a new one:
//! - when there is none or the cached one is about to expire (`token()`), with one fetch shared by
//!   all concurrent callers ("single flight");
//! - after a 401 on a REST call (`invalidate()` then `token()`);
//! - on its refresher thread, ahead of expiry, computed from `expires_in` only: Genesys token
//!   lifetimes are set per OAuth client, 300 s to 48 h, default 24 h, so no lifetime is assumed.
//!   The rule (crate-internal `refresh_at`): at 80 % of the lifetime, at least 60 s before expiry
//!   when that is not before half the lifetime, never sooner than 1 s after the token was
//!   obtained. 24 h → after 19 h 12 min; 300 s → after 240 s; 2 s → after 1 s.
//!
//! A refresh only replaces the cached token: WebSockets do not use the token (docs/protocol.md
//! "The WebSocket"), so no socket is closed or touched. A failed refresh is reported as
//! `AuthEvent::RefreshFailed` and retried with capped exponential backoff and jitter; the old
//! token stays in use while it is still valid. A permanent failure (bad credentials) is retried
//! only every few minutes, so a wrong secret is reported clearly and never hammered.
//!
//! # Secrets (design.md guarantee 8)
//! The client secret and access tokens are held as plain strings in memory but every `Debug` and
//! `Display` implementation here prints `<redacted>` in their place, and no log line contains them.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::{Condvar, Mutex};
use serde::Deserialize;

use crate::redact::Redacted;

// ---------------------------------------------------------------------------------------------
// AccessToken
// ---------------------------------------------------------------------------------------------

/// An OAuth access token and its lifetime as announced by whoever issued it.
///
/// `Debug` shows the lifetime but never the token itself.
#[derive(Clone)]
pub struct AccessToken {
    secret: String,
    expires_in: Option<Duration>,
}

impl AccessToken {
    /// Wraps a bearer token.
    ///
    /// `expires_in` is the token's lifetime counted from now (the OAuth `expires_in` field, in
    /// seconds on the wire), or `None` when it is unknown: such a token is used until a REST call
    /// answers 401 and is never refreshed ahead of time.
    pub fn new(secret: impl Into<String>, expires_in: Option<Duration>) -> Self {
        AccessToken {
            secret: secret.into(),
            expires_in,
        }
    }

    /// The bearer token, to be sent as `Authorization: Bearer <secret>`. Never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The lifetime announced when the token was issued, or `None` when unknown.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &Redacted)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// TokenError
// ---------------------------------------------------------------------------------------------

/// Why a [`TokenSource`] could not produce a token.
///
/// No variant ever carries the client secret or a token.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
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
        /// The `Retry-After` header, whole seconds on the wire; `None` when absent or
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
    Transport(String),
    /// Any other failure, for user-written token sources (and a source that panicked).
    /// Treated as transient.
    Other(String),
}

impl TokenError {
    /// Whether retrying cannot help without a change of configuration: true for
    /// [`TokenError::InvalidCredentials`] and for [`TokenError::Server`] with a 3xx or 4xx
    /// status other than 408 and 429 (e.g. a wrong login base URL answering 404).
    /// A permanent error is still retried by the refresher, but only every few minutes.
    pub fn is_permanent(&self) -> bool {
        match self {
            TokenError::InvalidCredentials { .. } => true,
            TokenError::Server { status, .. } => {
                (300..500).contains(status) && *status != 408 && *status != 429
            }
            TokenError::RateLimited { .. } | TokenError::Transport(_) | TokenError::Other(_) => {
                false
            }
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
            TokenError::Other(message) => write!(f, "token source failed: {message}"),
        }
    }
}

impl std::error::Error for TokenError {}

// ---------------------------------------------------------------------------------------------
// TokenSource and the shipped sources
// ---------------------------------------------------------------------------------------------

/// Something that can produce access tokens: the OAuth client-credentials grant
/// ([`ClientCredentials`]), a fixed token ([`StaticToken`]), or any closure
/// `Fn() -> Result<AccessToken, TokenError>`.
///
/// Genesys accepts tokens from any grant (docs/protocol.md "OAuth"), so the library never assumes
/// which one produced a token. A source is called from the client's threads, possibly while a
/// REST call waits for it: it should bound its own time (the shipped sources use the request
/// timeout). A panic in a source is caught and reported as [`TokenError::Other`].
pub trait TokenSource: Send + Sync + 'static {
    /// Obtains a new access token (called at start, ahead of expiry, and after a 401).
    ///
    /// # Errors
    /// Whatever [`TokenError`] describes the failure; [`TokenError::is_permanent`] decides how
    /// patiently the refresher retries.
    fn fetch_token(&self) -> Result<AccessToken, TokenError>;
}

impl<F> TokenSource for F
where
    F: Fn() -> Result<AccessToken, TokenError> + Send + Sync + 'static,
{
    fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        self()
    }
}

/// Error bodies from the token endpoint are cut to this many characters.
const MAX_ERROR_TEXT: usize = 300;

/// Token responses larger than this are refused (a token response is well under 10 KiB).
const MAX_TOKEN_BODY: u64 = 64 * 1024;

/// The OAuth client-credentials grant against a Genesys login host.
///
/// `POST {login_base}/oauth/token` with `Authorization: Basic base64(client_id:client_secret)`
/// and the form body `grant_type=client_credentials` (docs/protocol.md "OAuth"). The response's
/// `expires_in` (seconds) becomes [`AccessToken::expires_in`].
///
/// `Debug` shows the token URL and client id; the secret is `<redacted>`.
pub struct ClientCredentials {
    token_url: String,
    client_id: String,
    client_secret: String,
    request_timeout: Duration,
    agent: ureq::Agent,
}

impl ClientCredentials {
    /// Creates the source; no request is made until [`TokenSource::fetch_token`].
    ///
    /// `login_base` is the login host's base URL, e.g. `https://login.mypurecloud.com` (a
    /// trailing `/` is ignored); plain `http://` is accepted here, the caller decides where it is
    /// allowed. `request_timeout` bounds one whole token request: DNS, connect, TLS, sending and
    /// reading the response.
    pub fn new(
        login_base: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        request_timeout: Duration,
    ) -> Self {
        ClientCredentials {
            token_url: format!("{}/oauth/token", login_base.trim_end_matches('/')),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            request_timeout,
            agent: http_agent(request_timeout),
        }
    }

    fn basic_auth(&self) -> String {
        let pair = format!("{}:{}", self.client_id, self.client_secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// The success body of `POST /oauth/token`.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<f64>,
}

/// The error body of `POST /oauth/token`.
#[derive(Deserialize, Default)]
struct OAuthErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl TokenSource for ClientCredentials {
    /// Runs the client-credentials grant once.
    ///
    /// # Errors
    /// - 400/401 → [`TokenError::InvalidCredentials`] with the body's `error` and
    ///   `description`/`error_description`;
    /// - 429 → [`TokenError::RateLimited`] with `Retry-After` (seconds);
    /// - any other non-2xx status, or a 2xx body without a non-empty `access_token` →
    ///   [`TokenError::Server`];
    /// - DNS, connect, TLS, I/O, timeout → [`TokenError::Transport`].
    fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        let started = Instant::now();
        let mut response = self
            .agent
            .post(&self.token_url)
            .header("Authorization", self.basic_auth())
            .header("Accept", "application/json")
            .send_form([("grant_type", "client_credentials")])
            .map_err(|e| TokenError::Transport(transport_message(&e)))?;
        let status = response.status().as_u16();
        log::debug!(
            "POST {} -> {status} in {:?}",
            self.token_url,
            started.elapsed()
        );
        let retry_after = parse_retry_after(response.headers());
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_TOKEN_BODY)
            .read_to_string();

        match status {
            200..=299 => {
                let body = body.map_err(|e| TokenError::Transport(transport_message(&e)))?;
                let parsed: TokenResponse =
                    serde_json::from_str(&body).map_err(|e| TokenError::Server {
                        status,
                        message: format!(
                            "token response is not the expected JSON: {}",
                            json_error(&e)
                        ),
                    })?;
                match parsed.access_token {
                    Some(token) if !token.is_empty() => {
                        let expires_in = parsed
                            .expires_in
                            .filter(|s| s.is_finite() && *s >= 0.0)
                            .map(Duration::from_secs_f64);
                        Ok(AccessToken::new(token, expires_in))
                    }
                    _ => Err(TokenError::Server {
                        status,
                        message: "token response has no access_token".into(),
                    }),
                }
            }
            400 | 401 => {
                let parsed: OAuthErrorBody = body
                    .ok()
                    .and_then(|b| serde_json::from_str(&b).ok())
                    .unwrap_or_default();
                Err(TokenError::InvalidCredentials {
                    status,
                    error: shorten(parsed.error.unwrap_or_default()),
                    description: shorten(
                        parsed
                            .description
                            .or(parsed.error_description)
                            .or(parsed.message)
                            .unwrap_or_default(),
                    ),
                })
            }
            429 => Err(TokenError::RateLimited { retry_after }),
            _ => {
                let message = body
                    .ok()
                    .map(|b| {
                        let parsed: OAuthErrorBody = serde_json::from_str(&b).unwrap_or_default();
                        parsed
                            .description
                            .or(parsed.error_description)
                            .or(parsed.message)
                            .or(parsed.error)
                            .unwrap_or(b)
                    })
                    .unwrap_or_default();
                Err(TokenError::Server {
                    status,
                    message: shorten(message),
                })
            }
        }
    }
}

/// A token given by the user, e.g. from an implicit or code grant. Its lifetime is unknown
/// (`expires_in` is `None`), so it is never refreshed ahead of time; after a 401 the same token
/// is returned again and the REST call fails with `Unauthorized`.
///
/// `Debug` prints `<redacted>` in place of the token.
#[derive(Clone)]
pub struct StaticToken {
    token: String,
}

impl StaticToken {
    /// Wraps a bearer token.
    pub fn new(token: impl Into<String>) -> Self {
        StaticToken {
            token: token.into(),
        }
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &Redacted)
            .finish()
    }
}

impl TokenSource for StaticToken {
    /// Returns the token given to [`StaticToken::new`]; never fails.
    fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        Ok(AccessToken::new(self.token.clone(), None))
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers shared with api.rs
// ---------------------------------------------------------------------------------------------

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
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
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

// ---------------------------------------------------------------------------------------------
// Refresh policy (pure)
// ---------------------------------------------------------------------------------------------

/// Never refresh more often than this, whatever `expires_in` says (guards against a source
/// that hands out tokens with a zero or tiny lifetime).
pub(crate) const MIN_REFRESH_DELAY: Duration = Duration::from_secs(1);

/// The refresh lead never needs to exceed this much before expiry to be safe.
const LEAD_WANTED: Duration = Duration::from_secs(60);

/// When to refresh a token obtained at `obtained` with lifetime `expires_in`.
///
/// The rule: refresh at 80 % of the lifetime, but at least 60 s before expiry when the lifetime
/// is long enough for that without refreshing before half of it; and never sooner than
/// [`MIN_REFRESH_DELAY`] (1 s) after `obtained`. In formula:
/// `obtained + max(1 s, expires_in - max(expires_in / 5, min(60 s, expires_in / 2)))`.
///
/// Examples: 24 h (the Genesys default) → after 19 h 12 min; 300 s (the Genesys minimum) →
/// after 240 s; 120 s → after 60 s; 2 s → after 1 s.
pub(crate) fn refresh_at(obtained: Instant, expires_in: Duration) -> Instant {
    let lead = (expires_in / 5).max(LEAD_WANTED.min(expires_in / 2));
    obtained + expires_in.saturating_sub(lead).max(MIN_REFRESH_DELAY)
}

/// How long before expiry a cached token stops being handed out: the smaller of 5 s and a tenth
/// of its lifetime, so a request does not start with a token that expires in flight.
fn expiry_margin(expires_in: Duration) -> Duration {
    Duration::from_secs(5).min(expires_in / 10)
}

/// First retry delay of a failed refresh.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest delay between retries of a transiently failing refresh.
const RETRY_CAP: Duration = Duration::from_secs(30);
/// Delay between retries of a permanently failing refresh (bad credentials): slow enough not to
/// hammer the login host, fast enough to recover on its own once the credentials are fixed.
const PERMANENT_RETRY: Duration = Duration::from_secs(300);

/// The delay before retry number `failures` (1-based) of a failed refresh, before jitter:
/// `min(1 s × 2^(failures-1), 30 s)` for transient errors, 300 s for permanent ones, and never
/// less than a 429's `Retry-After` (itself capped at 300 s).
pub(crate) fn retry_base_delay(error: &TokenError, failures: u32) -> Duration {
    if error.is_permanent() {
        return PERMANENT_RETRY;
    }
    let exponent = failures.saturating_sub(1).min(16);
    let backoff = RETRY_BASE.saturating_mul(1 << exponent).min(RETRY_CAP);
    match error.retry_after() {
        Some(lower) => backoff.max(lower.min(PERMANENT_RETRY)),
        None => backoff,
    }
}

/// [`retry_base_delay`] with jitter: uniform in `[base/2, base]`, so clients that failed
/// together do not retry together, yet never retry instantly. A `Retry-After` lower bound is
/// kept.
fn retry_delay(error: &TokenError, failures: u32) -> Duration {
    let base = retry_base_delay(error, failures);
    let low = (base / 2).max(error.retry_after().unwrap_or_default().min(base));
    if low >= base {
        return base;
    }
    let nanos = rand::random_range(low.as_nanos() as u64..=base.as_nanos() as u64);
    Duration::from_nanos(nanos)
}

// ---------------------------------------------------------------------------------------------
// TokenManager
// ---------------------------------------------------------------------------------------------

/// What the token manager reports to the client, which turns these into lifecycle events.
#[derive(Clone, Debug)]
pub(crate) enum AuthEvent {
    /// A new token was obtained from the source (at start, ahead of expiry, or after a 401).
    Refreshed {
        /// Its announced lifetime; `None` when unknown.
        expires_in: Option<Duration>,
    },
    /// A refresh by the refresher thread failed; it will try again after `retry_in`.
    RefreshFailed {
        /// Why.
        error: TokenError,
        /// Delay until the next attempt (jittered backoff; about 5 min for permanent errors).
        retry_in: Duration,
    },
}

/// The cached token.
struct Cached {
    token: Arc<str>,
    obtained: Instant,
    expires_in: Option<Duration>,
}

impl Cached {
    fn usable(&self, now: Instant) -> bool {
        match self.expires_in {
            None => true,
            Some(life) => now + expiry_margin(life) < self.obtained + life,
        }
    }

    fn refresh_due(&self) -> Option<Instant> {
        self.expires_in.map(|life| refresh_at(self.obtained, life))
    }
}

struct State {
    current: Option<Cached>,
    /// A fetch from the source is in flight; others wait for its outcome.
    fetching: bool,
    /// Completed fetches, so waiters know when the fetch they joined is done.
    fetches: u64,
    /// Outcome of the latest completed fetch, handed to the callers that waited for it.
    last_outcome: Option<Result<Arc<str>, TokenError>>,
    /// Bumped whenever `current` changes (new token or invalidation).
    generation: u64,
}

/// Caches the current token, fetches new ones with a single flight, and runs the refresher.
pub(crate) struct TokenManager {
    source: Box<dyn TokenSource>,
    on_event: Arc<dyn Fn(AuthEvent) + Send + Sync>,
    state: Mutex<State>,
    /// Notified when a fetch completes, the token is invalidated, or a refresher is stopped.
    changed: Condvar,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("TokenManager")
            .field("token", &st.current.as_ref().map(|_| Redacted))
            .field(
                "expires_in",
                &st.current.as_ref().and_then(|c| c.expires_in),
            )
            .field("fetching", &st.fetching)
            .finish()
    }
}

impl TokenManager {
    /// Creates a manager with no token yet; the first [`TokenManager::token`] call or the
    /// refresher fetches one. `on_event` is called (from the fetching thread, outside any lock)
    /// for every token obtained and every failed refresh by the refresher.
    pub(crate) fn new(
        source: Box<dyn TokenSource>,
        on_event: Arc<dyn Fn(AuthEvent) + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(TokenManager {
            source,
            on_event,
            state: Mutex::new(State {
                current: None,
                fetching: false,
                fetches: 0,
                last_outcome: None,
                generation: 0,
            }),
            changed: Condvar::new(),
        })
    }

    /// The current token if it is still usable (not within min(5 s, lifetime/10) of expiry),
    /// else a new one from the source. Concurrent callers share one fetch and its outcome.
    ///
    /// # Errors
    /// The source's [`TokenError`] when a fetch was needed and failed.
    pub(crate) fn token(&self) -> Result<Arc<str>, TokenError> {
        self.obtain(None)
    }

    /// After a 401 with `stale`: forgets the cached token if it is still `stale`, so the next
    /// [`TokenManager::token`] fetches a new one. A token fetched meanwhile by another thread is
    /// kept (comparing the value makes concurrent 401s cost one fetch, not one each).
    pub(crate) fn invalidate(&self, stale: &str) {
        let mut st = self.state.lock();
        if st.current.as_ref().is_some_and(|c| &*c.token == stale) {
            log::debug!("access token rejected with 401; it will be fetched again");
            st.current = None;
            st.generation += 1;
            self.changed.notify_all();
        }
    }

    /// Starts the refresher thread, which fetches a token at once when there is none, then
    /// again at [`refresh_at`] of each token, and retries failed refreshes with backoff. Tokens
    /// without a known lifetime are not refreshed. Stopped by [`RefresherHandle::stop`] or drop.
    pub(crate) fn start_refresher(self: &Arc<Self>) -> RefresherHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        let manager = Arc::clone(self);
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("genesys-token-refresher".into())
            .spawn(move || {
                manager.run_refresher(&stop_flag);
                drop(done_tx);
            });
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(e) => {
                // Without the thread tokens are still fetched on demand and after 401s.
                log::error!("could not start the token refresher thread: {e}");
                None
            }
        };
        RefresherHandle {
            manager: Arc::clone(self),
            stop,
            done: done_rx,
            thread,
        }
    }

    /// Fetches a token unless one is usable; with `replace = Some(generation)`, also replaces
    /// a usable token if it is still the one of that generation (a refresh).
    fn obtain(&self, replace: Option<u64>) -> Result<Arc<str>, TokenError> {
        let mut st = self.state.lock();
        let wants_new = |st: &State| match replace {
            Some(generation) => st.generation == generation,
            None => false,
        };
        if let Some(current) = &st.current {
            if current.usable(Instant::now()) && !wants_new(&st) {
                return Ok(Arc::clone(&current.token));
            }
        }
        if st.fetching {
            let joined = st.fetches;
            while st.fetches == joined {
                self.changed.wait(&mut st);
            }
            return st
                .last_outcome
                .clone()
                .unwrap_or_else(|| Err(TokenError::Other("token fetch vanished".into())));
        }

        st.fetching = true;
        let started = Instant::now();
        let outcome = parking_lot::MutexGuard::unlocked(&mut st, || {
            catch_unwind(AssertUnwindSafe(|| self.source.fetch_token()))
                .unwrap_or_else(|_| Err(TokenError::Other("token source panicked".into())))
        });
        st.fetching = false;
        st.fetches += 1;
        let (result, event) = match outcome {
            Ok(token) => {
                let expires_in = token.expires_in;
                let secret: Arc<str> = token.secret.into();
                st.current = Some(Cached {
                    token: Arc::clone(&secret),
                    // The lifetime counts from issue; the request start is the safe side.
                    obtained: started,
                    expires_in,
                });
                st.generation += 1;
                (Ok(secret), Some(AuthEvent::Refreshed { expires_in }))
            }
            Err(error) => {
                log::debug!("token fetch failed: {error}");
                (Err(error), None)
            }
        };
        st.last_outcome = Some(result.clone());
        self.changed.notify_all();
        drop(st);
        if let Some(event) = event {
            log::debug!(
                "access token obtained (expires in {:?})",
                event_expiry(&event)
            );
            self.emit(event);
        }
        result
    }

    fn emit(&self, event: AuthEvent) {
        if catch_unwind(AssertUnwindSafe(|| (self.on_event)(event))).is_err() {
            log::error!("auth event handler panicked");
        }
    }

    fn run_refresher(&self, stop: &AtomicBool) {
        let mut failures = 0u32;
        let mut retry_at: Option<Instant> = None;
        let mut seen_generation = self.state.lock().generation;
        loop {
            let mut st = self.state.lock();
            let generation = loop {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                if st.generation != seen_generation {
                    seen_generation = st.generation;
                    if st.current.is_some() {
                        // Someone else obtained a token: the failure streak is over.
                        failures = 0;
                        retry_at = None;
                    }
                }
                let now = Instant::now();
                let due = match (retry_at, &st.current) {
                    (Some(at), _) => Some(at),
                    (None, Some(current)) => current.refresh_due(),
                    (None, None) => Some(now),
                };
                match due {
                    Some(at) if at <= now => break st.generation,
                    Some(at) => {
                        self.changed.wait_until(&mut st, at);
                    }
                    None => self.changed.wait(&mut st),
                }
            };
            drop(st);

            match self.obtain(Some(generation)) {
                Ok(_) => {
                    failures = 0;
                    retry_at = None;
                    seen_generation = self.state.lock().generation;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let retry_in = retry_delay(&error, failures);
                    retry_at = Some(Instant::now() + retry_in);
                    if error.is_permanent() {
                        log::error!(
                            "token refresh failed permanently, retrying in {retry_in:?}: {error}"
                        );
                    } else {
                        log::warn!("token refresh failed (attempt {failures}), retrying in {retry_in:?}: {error}");
                    }
                    self.emit(AuthEvent::RefreshFailed { error, retry_in });
                }
            }
        }
    }
}

fn event_expiry(event: &AuthEvent) -> Option<Duration> {
    match event {
        AuthEvent::Refreshed { expires_in } => *expires_in,
        AuthEvent::RefreshFailed { .. } => None,
    }
}

/// How long [`RefresherHandle::stop`] waits for a refresher stuck inside a token fetch.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Owns the refresher thread. [`RefresherHandle::stop`] or drop stops it: a sleeping refresher
/// wakes and exits at once (well under 100 ms) and is joined.
pub(crate) struct RefresherHandle {
    manager: Arc<TokenManager>,
    stop: Arc<AtomicBool>,
    /// Disconnected when the thread is about to exit.
    done: crossbeam_channel::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for RefresherHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefresherHandle")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl RefresherHandle {
    /// Stops and joins the refresher. Returns at once when it was sleeping; when it is inside a
    /// token fetch, waits up to 2 s for that fetch (bounded by the source's own timeout) and
    /// otherwise leaves the thread to exit on its own when the fetch returns.
    #[cfg(test)]
    pub(crate) fn stop(mut self) {
        self.shutdown(STOP_GRACE);
    }

    /// Stops the refresher, waiting at most `grace`; returns whether the thread was joined.
    pub(crate) fn stop_within(mut self, grace: Duration) -> bool {
        self.shutdown(grace)
    }

    fn shutdown(&mut self, grace: Duration) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        self.stop.store(true, Ordering::Release);
        {
            // Holding the lock while notifying: the refresher either sees the flag before it
            // waits or is already waiting and gets the notification.
            let _st = self.manager.state.lock();
            self.manager.changed.notify_all();
        }
        match self.done.recv_timeout(grace) {
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                if thread.join().is_err() {
                    log::error!("token refresher thread panicked");
                }
                true
            }
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                log::warn!(
                    "token refresher still inside a token fetch after {grace:?}; detaching it"
                );
                false
            }
        }
    }
}

impl Drop for RefresherHandle {
    fn drop(&mut self) {
        self.shutdown(STOP_GRACE);
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use mockito::Matcher;
    use std::sync::atomic::AtomicUsize;

    const SECRET: &str = "SECRET-MARKER-9f3c";
    const TOKEN: &str = "TOKEN-MARKER-51ab";

    fn no_events() -> Arc<dyn Fn(AuthEvent) + Send + Sync> {
        Arc::new(|_| {})
    }

    fn source(url: &str) -> ClientCredentials {
        ClientCredentials::new(url, "my-client", SECRET, Duration::from_secs(5))
    }

    #[test]
    fn client_credentials_posts_basic_auth_and_form() {
        let mut server = mockito::Server::new();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("my-client:{SECRET}"))
        );
        let mock = server
            .mock("POST", "/oauth/token")
            .match_header("authorization", expected.as_str())
            .match_header(
                "content-type",
                Matcher::Regex("^application/x-www-form-urlencoded".into()),
            )
            .match_body(Matcher::UrlEncoded(
                "grant_type".into(),
                "client_credentials".into(),
            ))
            .with_status(200)
            .with_header("content-type", "application/json")
            .with_body(format!(
                r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":86400}}"#
            ))
            .expect(1)
            .create();
        let token = source(&format!("{}/", server.url())).fetch_token().unwrap();
        mock.assert();
        assert_eq!(token.secret(), TOKEN);
        assert_eq!(token.expires_in(), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn invalid_client_is_permanent_invalid_credentials() {
        let mut server = mockito::Server::new();
        let _m = server
            .mock("POST", "/oauth/token")
            .with_status(401)
            .with_body(r#"{"error":"invalid_client","description":"client not found","error_description":"client not found"}"#)
            .create();
        let err = source(&server.url()).fetch_token().unwrap_err();
        assert_eq!(
            err,
            TokenError::InvalidCredentials {
                status: 401,
                error: "invalid_client".into(),
                description: "client not found".into(),
            }
        );
        assert!(err.is_permanent());
        assert!(!err.to_string().contains(SECRET));
    }

    #[test]
    fn rate_limited_token_endpoint_reports_retry_after() {
        let mut server = mockito::Server::new();
        let _m = server
            .mock("POST", "/oauth/token")
            .with_status(429)
            .with_header("Retry-After", "7")
            .create();
        let err = source(&server.url()).fetch_token().unwrap_err();
        assert_eq!(
            err,
            TokenError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(!err.is_permanent());
    }

    #[test]
    fn server_errors_and_missing_token_are_server_errors() {
        let mut server = mockito::Server::new();
        let m = server
            .mock("POST", "/oauth/token")
            .with_status(503)
            .with_body("upstream down")
            .create();
        let err = source(&server.url()).fetch_token().unwrap_err();
        assert!(
            matches!(err, TokenError::Server { status: 503, ref message } if message == "upstream down")
        );
        assert!(!err.is_permanent());
        m.remove();
        let _m = server
            .mock("POST", "/oauth/token")
            .with_status(200)
            .with_body(r#"{"token_type":"bearer"}"#)
            .create();
        let err = source(&server.url()).fetch_token().unwrap_err();
        assert!(matches!(err, TokenError::Server { status: 200, .. }));
    }

    #[test]
    fn malformed_token_response_does_not_quote_the_body() {
        let mut server = mockito::Server::new();
        let _m = server
            .mock("POST", "/oauth/token")
            .with_status(200)
            .with_body(format!(r#""{TOKEN}""#))
            .create();
        let err = source(&server.url()).fetch_token().unwrap_err();
        assert!(
            matches!(err, TokenError::Server { status: 200, .. }),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains(TOKEN));
    }

    #[test]
    fn unreachable_token_endpoint_is_transport() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = source(&url).fetch_token().unwrap_err();
        assert!(matches!(err, TokenError::Transport(_)), "{err:?}");
    }

    #[test]
    fn refresh_at_follows_the_documented_rule() {
        let t0 = Instant::now();
        let h = |h: u64| Duration::from_secs(h * 3600);
        // 24 h default: 80 %.
        assert_eq!(refresh_at(t0, h(24)) - t0, Duration::from_secs(69_120));
        // 48 h maximum: 80 %.
        assert_eq!(refresh_at(t0, h(48)) - t0, Duration::from_secs(138_240));
        // 300 s minimum: 80 % is exactly 60 s before expiry.
        assert_eq!(
            refresh_at(t0, Duration::from_secs(300)) - t0,
            Duration::from_secs(240)
        );
        // 120 s: 60 s before expiry rather than 24 s.
        assert_eq!(
            refresh_at(t0, Duration::from_secs(120)) - t0,
            Duration::from_secs(60)
        );
        // 60 s: 60 s before would be now; half the lifetime instead.
        assert_eq!(
            refresh_at(t0, Duration::from_secs(60)) - t0,
            Duration::from_secs(30)
        );
        // Test tokens.
        assert_eq!(
            refresh_at(t0, Duration::from_secs(3)) - t0,
            Duration::from_millis(1500)
        );
        assert_eq!(
            refresh_at(t0, Duration::from_secs(2)) - t0,
            Duration::from_secs(1)
        );
        // Degenerate lifetimes never cause a hot loop.
        assert_eq!(refresh_at(t0, Duration::ZERO) - t0, MIN_REFRESH_DELAY);
        assert_eq!(
            refresh_at(t0, Duration::from_millis(500)) - t0,
            MIN_REFRESH_DELAY
        );
    }

    #[test]
    fn refresh_is_always_before_expiry_for_real_lifetimes() {
        let t0 = Instant::now();
        for secs in (300..=172_800).step_by(97) {
            let life = Duration::from_secs(secs);
            let at = refresh_at(t0, life) - t0;
            assert!(at >= life / 2, "{secs}");
            assert!(life - at >= Duration::from_secs(60), "{secs}");
            assert!(at >= life * 4 / 5 - Duration::from_millis(1), "{secs}");
        }
    }

    #[test]
    fn retry_backoff_grows_caps_and_respects_permanence() {
        let transient = TokenError::Transport("x".into());
        assert_eq!(retry_base_delay(&transient, 1), Duration::from_secs(1));
        assert_eq!(retry_base_delay(&transient, 2), Duration::from_secs(2));
        assert_eq!(retry_base_delay(&transient, 5), Duration::from_secs(16));
        assert_eq!(retry_base_delay(&transient, 6), Duration::from_secs(30));
        assert_eq!(
            retry_base_delay(&transient, u32::MAX),
            Duration::from_secs(30)
        );
        let bad = TokenError::InvalidCredentials {
            status: 401,
            error: "invalid_client".into(),
            description: String::new(),
        };
        assert_eq!(retry_base_delay(&bad, 1), Duration::from_secs(300));
        let limited = TokenError::RateLimited {
            retry_after: Some(Duration::from_secs(45)),
        };
        assert_eq!(retry_base_delay(&limited, 1), Duration::from_secs(45));
        for n in 1..10 {
            let d = retry_delay(&transient, n);
            let base = retry_base_delay(&transient, n);
            assert!(d >= base / 2 && d <= base);
            assert!(retry_delay(&limited, n) >= Duration::from_secs(45));
        }
    }

    /// A source counting its calls, each taking `delay` and issuing a token with `life`.
    fn counting_source(
        calls: Arc<AtomicUsize>,
        delay: Duration,
        life: Option<Duration>,
    ) -> Box<dyn TokenSource> {
        Box::new(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(delay);
            Ok(AccessToken::new(format!("token-{n}"), life))
        })
    }

    #[test]
    fn concurrent_callers_share_one_fetch() {
        let mut server = mockito::Server::new();
        let mock = server
            .mock("POST", "/oauth/token")
            .with_status(200)
            .with_chunked_body(|w| {
                std::thread::sleep(Duration::from_millis(300));
                w.write_all(format!(r#"{{"access_token":"{TOKEN}","expires_in":3600}}"#).as_bytes())
            })
            .expect(1)
            .create();
        let manager = TokenManager::new(Box::new(source(&server.url())), no_events());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let m = Arc::clone(&manager);
                std::thread::spawn(move || m.token())
            })
            .collect();
        for t in threads {
            assert_eq!(&*t.join().unwrap().unwrap(), TOKEN);
        }
        // And the cached token is reused.
        assert_eq!(&*manager.token().unwrap(), TOKEN);
        mock.assert();
    }

    #[test]
    fn waiters_share_the_error_of_the_fetch_they_joined() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let manager = TokenManager::new(
            Box::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                Err(TokenError::Transport("down".into()))
            }),
            no_events(),
        );
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let m = Arc::clone(&manager);
                std::thread::spawn(move || m.token())
            })
            .collect();
        for t in threads {
            assert_eq!(
                t.join().unwrap().unwrap_err(),
                TokenError::Transport("down".into())
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn invalidate_forgets_only_the_stale_token() {
        let calls = Arc::new(AtomicUsize::new(0));
        let manager = TokenManager::new(
            counting_source(
                Arc::clone(&calls),
                Duration::ZERO,
                Some(Duration::from_secs(3600)),
            ),
            no_events(),
        );
        assert_eq!(&*manager.token().unwrap(), "token-1");
        assert_eq!(&*manager.token().unwrap(), "token-1");
        // A stale value that is no longer current changes nothing.
        manager.invalidate("token-0");
        assert_eq!(&*manager.token().unwrap(), "token-1");
        manager.invalidate("token-1");
        assert_eq!(&*manager.token().unwrap(), "token-2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn expired_token_is_fetched_again_on_demand() {
        let calls = Arc::new(AtomicUsize::new(0));
        let manager = TokenManager::new(
            counting_source(
                Arc::clone(&calls),
                Duration::ZERO,
                Some(Duration::from_millis(200)),
            ),
            no_events(),
        );
        assert_eq!(&*manager.token().unwrap(), "token-1");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(&*manager.token().unwrap(), "token-2");
    }

    #[test]
    fn panicking_source_becomes_an_error() {
        let manager = TokenManager::new(
            Box::new(|| -> Result<AccessToken, TokenError> { panic!("boom") }),
            no_events(),
        );
        assert!(matches!(manager.token(), Err(TokenError::Other(_))));
        // And the manager is still usable.
        assert!(matches!(manager.token(), Err(TokenError::Other(_))));
    }

    #[test]
    fn refresher_refreshes_short_tokens_and_stops_promptly() {
        let mut server = mockito::Server::new();
        let mock = server
            .mock("POST", "/oauth/token")
            .with_status(200)
            .with_body(format!(r#"{{"access_token":"{TOKEN}","expires_in":2}}"#))
            .expect_at_least(3)
            .create();
        let refreshed = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&refreshed);
        let manager = TokenManager::new(
            Box::new(source(&server.url())),
            Arc::new(move |event| {
                if let AuthEvent::Refreshed { expires_in } = event {
                    assert_eq!(expires_in, Some(Duration::from_secs(2)));
                    r.fetch_add(1, Ordering::SeqCst);
                }
            }),
        );
        let handle = manager.start_refresher();
        std::thread::sleep(Duration::from_millis(3500));
        // Initial fetch at 0 s, then refreshes at about 1 s, 2 s and 3 s.
        let n = refreshed.load(Ordering::SeqCst);
        assert!(n >= 3, "only {n} fetches");
        let stopping = Instant::now();
        handle.stop();
        assert!(
            stopping.elapsed() < Duration::from_millis(100),
            "{:?}",
            stopping.elapsed()
        );
        mock.assert();
        // Nothing runs after stop.
        let after = refreshed.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(refreshed.load(Ordering::SeqCst), after);
    }

    #[test]
    fn dropping_a_refresher_of_a_long_token_is_prompt() {
        let calls = Arc::new(AtomicUsize::new(0));
        let manager = TokenManager::new(
            counting_source(
                Arc::clone(&calls),
                Duration::ZERO,
                Some(Duration::from_secs(86_400)),
            ),
            no_events(),
        );
        let handle = manager.start_refresher();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let stopping = Instant::now();
        drop(handle);
        assert!(stopping.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn failed_refresh_is_reported_and_retried() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let failures = Arc::new(Mutex::new(Vec::new()));
        let f = Arc::clone(&failures);
        let manager = TokenManager::new(
            Box::new(move || {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(TokenError::Transport("refused".into()))
                } else {
                    Ok(AccessToken::new("fresh", Some(Duration::from_secs(3600))))
                }
            }),
            Arc::new(move |event| {
                if let AuthEvent::RefreshFailed { error, retry_in } = event {
                    f.lock().push((error, retry_in));
                }
            }),
        );
        let handle = manager.start_refresher();
        // First attempt fails, retried after 0.5–1 s.
        std::thread::sleep(Duration::from_millis(1300));
        handle.stop();
        let failures = failures.lock();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, TokenError::Transport("refused".into()));
        assert!(failures[0].1 <= Duration::from_secs(1));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(&*manager.token().unwrap(), "fresh");
    }

    #[test]
    fn permanent_failure_is_not_hammered() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let retry = Arc::new(Mutex::new(None));
        let r = Arc::clone(&retry);
        let manager = TokenManager::new(
            Box::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
                Err(TokenError::InvalidCredentials {
                    status: 401,
                    error: "invalid_client".into(),
                    description: String::new(),
                })
            }),
            Arc::new(move |event| {
                if let AuthEvent::RefreshFailed { retry_in, .. } = event {
                    *r.lock() = Some(retry_in);
                }
            }),
        );
        let handle = manager.start_refresher();
        std::thread::sleep(Duration::from_millis(300));
        handle.stop();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(retry.lock().unwrap() >= Duration::from_secs(150));
    }

    #[test]
    fn static_token_is_never_refreshed_ahead() {
        let manager = TokenManager::new(Box::new(StaticToken::new(TOKEN)), no_events());
        let handle = manager.start_refresher();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(&*manager.token().unwrap(), TOKEN);
        let stopping = Instant::now();
        handle.stop();
        assert!(stopping.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let creds = ClientCredentials::new(
            "https://login.example.test",
            "my-client",
            SECRET,
            Duration::from_secs(5),
        );
        let shown = format!("{creds:?}");
        assert!(shown.contains("my-client"));
        assert!(!shown.contains(SECRET));
        assert!(shown.contains("<redacted>"));

        let token = AccessToken::new(TOKEN, Some(Duration::from_secs(60)));
        let shown = format!("{token:?}");
        assert!(!shown.contains(TOKEN));
        assert!(shown.contains("60s"));

        let shown = format!("{:?}", StaticToken::new(TOKEN));
        assert!(!shown.contains(TOKEN));

        let manager = TokenManager::new(Box::new(StaticToken::new(TOKEN)), no_events());
        manager.token().unwrap();
        assert!(!format!("{manager:?}").contains(TOKEN));
    }
}
