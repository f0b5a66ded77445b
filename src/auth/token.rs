//! token.rs defines what a token is and where one comes from ([`AccessToken`], [`TokenError`],
//! [`TokenSource`], [`StaticToken`]); it never does I/O and never lets a token reach `Debug`,
//! `Display` or a log.

use std::fmt;
use std::time::Duration;

use crate::error::TokenError;
use crate::redact::Redacted;

/// An OAuth access token and its lifetime as announced by whoever issued it.
///
/// `Debug` shows the lifetime but never the token itself.
#[derive(Clone)]
pub struct AccessToken {
    pub(super) secret: String,
    pub(super) expires_in: Option<Duration>,
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

/// Something that can produce access tokens: the OAuth client-credentials grant
/// ([`ClientCredentials`](crate::ClientCredentials)), a fixed token ([`StaticToken`]), or any closure
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
