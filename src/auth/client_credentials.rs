//! client_credentials.rs runs the OAuth client-credentials grant over HTTP
//! ([`ClientCredentials`]); it never caches or refreshes a token (the manager does) and never
//! lets the secret reach `Debug`, `Display` or a log.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::token::{AccessToken, TokenSource};
use crate::error::{Cause, TokenError};
use crate::http::{http_agent, json_error, parse_retry_after, shorten, transport_cause};
use crate::redact::Redacted;

/// Token responses larger than this are refused (a token response is well under 10 KiB).
const MAX_TOKEN_BODY: u64 = 64 * 1024;

/// The OAuth client-credentials grant against a Genesys login host.
///
/// `POST {login_base}/oauth/token` with `Authorization: Basic base64(client_id:client_secret)`
/// and the form body `grant_type=client_credentials` (docs/protocol.md "OAuth"). The response's
/// `expires_in` (seconds) becomes [`AccessToken::expires_in`].
///
/// Handed to [`ClientBuilder::token_source`](crate::ClientBuilder::token_source), it becomes the
/// client's own grant: `build()` checks `login_base` against the client's HTTPS rule (`http`
/// only to loopback hosts) and its client id and secret as
/// [`ClientBuilder::client_credentials`](crate::ClientBuilder::client_credentials) does, and
/// its token requests then go through the client's proxy and trust roots like every other
/// request. Used on its own, or wrapped in another source where the builder cannot see it (a
/// closure calling `fetch_token`), it connects directly with the bundled Mozilla roots; prefer
/// `client_credentials` or handing it to `token_source` as it is.
///
/// `Debug` shows the token URL and client id; the secret is `<redacted>`.
pub struct ClientCredentials {
    login_base: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    request_timeout: Duration,
    agent: ureq::Agent,
    /// Whether requests go through a proxy (a connection failure is then the proxy's).
    proxied: crate::network::Proxied,
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
        let login_base = login_base.trim_end_matches('/').to_owned();
        ClientCredentials {
            token_url: format!("{login_base}/oauth/token"),
            login_base,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            request_timeout,
            agent: http_agent(request_timeout),
            proxied: crate::network::Proxied::No,
        }
    }

    /// The same, with an agent built for the client's proxy and trust roots (network.rs).
    pub(crate) fn with_agent(
        login_base: &str,
        client_id: String,
        client_secret: String,
        request_timeout: Duration,
        agent: crate::network::HttpAgent,
    ) -> Self {
        let mut source =
            ClientCredentials::new(login_base, client_id, client_secret, request_timeout);
        source.use_agent(agent);
        source
    }

    /// The login base URL, without a trailing `/`.
    pub(crate) fn login_base(&self) -> &str {
        &self.login_base
    }

    /// The bound of one token request.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The client id and secret, for the builder's checks.
    pub(crate) fn credentials(&self) -> (&str, &str) {
        (&self.client_id, &self.client_secret)
    }

    /// Replaces the agent with one built for the client's proxy and trust roots (network.rs),
    /// so that no token request of a client goes around its network settings.
    pub(crate) fn use_agent(&mut self, agent: crate::network::HttpAgent) {
        self.agent = agent.agent;
        self.proxied = agent.proxied;
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
            .map_err(|e| match crate::network::proxy_failure(&e, self.proxied) {
                Some(proxy) => TokenError::Proxy(proxy),
                None => TokenError::Transport(transport_cause(e)),
            })?;
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
            .read_to_string()
            .map_err(transport_cause);
        token_response(status, retry_after, body)
    }
}

/// The longest `expires_in` taken at its word: a week, far beyond the service's maximum of
/// 48 h (docs/protocol.md "OAuth": 300 s to 172 800 s).
const MAX_PLAUSIBLE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The lifetime a token is given when `expires_in` makes no sense (zero or negative, or over
/// [`MAX_PLAUSIBLE_LIFETIME`]): the service's shortest, 300 s, so it is refreshed soon
/// (after 240 s) but never in a hot loop. Never "does not expire": a token kept for ever would
/// fail every call once it really expired.
pub(crate) const SUSPECT_LIFETIME: Duration = Duration::from_secs(300);

/// The lifetime `expires_in` (seconds, as the token endpoint sent it) gives a token: the value
/// itself when it is plausible, else [`SUSPECT_LIFETIME`].
fn lifetime_from_expires_in(seconds: f64) -> Duration {
    match Duration::try_from_secs_f64(seconds) {
        Ok(life) if !life.is_zero() && life <= MAX_PLAUSIBLE_LIFETIME => life,
        _ => {
            log::warn!(
                "the token endpoint's expires_in ({seconds}) is not a plausible lifetime; \
                 refreshing the token after {}s",
                SUSPECT_LIFETIME.as_secs() * 4 / 5
            );
            SUSPECT_LIFETIME
        }
    }
}

/// Decodes the answer of `POST /oauth/token` (status, `Retry-After`, body or the error reading
/// it) into a token or a [`TokenError`], as documented on [`ClientCredentials::fetch_token`].
pub(crate) fn token_response(
    status: u16,
    retry_after: Option<Duration>,
    body: Result<String, Cause>,
) -> Result<AccessToken, TokenError> {
    match status {
        200..=299 => {
            let body = body.map_err(TokenError::Transport)?;
            let parsed: TokenResponse =
                serde_json::from_str(&body).map_err(|e| TokenError::Server {
                    status,
                    message: format!(
                        "token response is not the expected JSON: {}",
                        json_error(&e)
                    ),
                })?;
            match parsed.access_token {
                Some(token) if !token.is_empty() => Ok(AccessToken::new(
                    token,
                    parsed.expires_in.map(lifetime_from_expires_in),
                )),
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
