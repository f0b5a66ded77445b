//! auth/ owns access tokens: where they come from, when they are refreshed, and who may see
//! them; it never touches a WebSocket and never lets a token reach `Debug`, `Display` or a log.
//!
//! # Token sources
//! A [`TokenSource`] hands out [`AccessToken`]s. The crate ships two: [`ClientCredentials`]
//! (the OAuth client-credentials grant, docs/protocol.md "OAuth") and [`StaticToken`] (a token the
//! user obtained elsewhere, e.g. through an implicit or code grant). Any
//! `Fn() -> Result<AccessToken, TokenError> + Send + Sync + 'static` closure is a source too.
//!
//! # Refresh ahead of expiry (crate guarantee 5)
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
//! # Secrets (crate guarantee 9)
//! The client secret and access tokens are held as plain strings in memory but every `Debug` and
//! `Display` implementation here prints `<redacted>` in their place, and no log line contains them.
//!
//! # Layout
//! One concept per file: `token` (what a token is, [`TokenSource`], [`StaticToken`]),
//! `client_credentials` (the grant over HTTP), `refresh` (when to refresh and how long a failed
//! refresh waits; pure), `manager` (the cached token and its single-flight fetch), `refresher`
//! (the thread refreshing ahead of expiry) and `pooled` (the same refreshes on a shared thread
//! pool's timer and workers, for clients built with one). The HTTP helpers shared with the REST calls live in
//! `crate::http`.

mod client_credentials;
mod manager;
mod pooled;
mod refresh;
mod refresher;
#[cfg(test)]
mod tests;
mod token;

pub use client_credentials::ClientCredentials;
#[cfg(all(feature = "fuzzing", test))]
pub(crate) use client_credentials::SUSPECT_LIFETIME;
pub(crate) use manager::{AuthEvent, TokenManager};
pub(crate) use pooled::Refresher;
pub use token::{AccessToken, StaticToken, TokenSource};
#[cfg(feature = "fuzzing")]
pub(crate) use {client_credentials::token_response, refresh::refresh_at};
