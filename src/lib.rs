//! # genesys-notify
//!
//! A synchronous, thread-based client for Genesys Cloud real-time notifications, for programs
//! with no async runtime: blocking services, command-line and batch tools, embedded and legacy
//! hosts. It subscribes topics over WebSocket notification channels, keeps them alive through
//! network faults, server maintenance and token expiry, and hands every event to the callbacks
//! you registered — and it tells you whenever it could not.
//!
//! ## Quick start
//! ```no_run
//! use genesys_notify::{Client, Event, Lifecycle, Region};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), genesys_notify::Error> {
//! let client = Client::builder()
//!     .region(Region::EuWest1)
//!     .client_credentials("my-client-id", "my-client-secret")
//!     .build()?;
//!
//! // Listeners: keep the guards; dropping one unregisters its callback.
//! let _presence = client.on("v2.users.*.presence", |event: &Event| {
//!     println!("{} -> {}", event.topic(), event.body_json());
//! })?;
//! let _lifecycle = client.on_lifecycle(|event: &Lifecycle| eprintln!("{event:?}"))?;
//!
//! let report = client.subscribe([
//!     "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence",
//!     "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f?routingStatus&conversationsummary",
//! ])?;
//! for rejected in &report.rejected {
//!     eprintln!("{} rejected: {:?} {:?}", rejected.topic, rejected.rejection_reason,
//!               rejected.missing_permissions);
//! }
//!
//! std::thread::sleep(Duration::from_secs(60));
//! client.shutdown(Duration::from_secs(5))?;
//! # Ok(())
//! # }
//! ```
//!
//! ## How it works
//! - **Channels.** Topics are packed into as few notification channels as the service's limits
//!   allow (1 000 topics per channel, 20 channels per user and OAuth client). Going beyond is an
//!   [`Error::TooManyTopics`], never a silent eviction of one of our own channels.
//!   [`Client::subscribe_isolated`] puts a group of topics on a channel of its own.
//! - **One OS thread per channel** creates the channel, connects its socket (tungstenite over
//!   rustls, certificates verified), subscribes the topics with `ignoreErrors=true`, reads
//!   frames, sends the application ping `{"message":"ping"}` when the socket is idle, and
//!   replaces a silent socket within the liveness bound.
//! - **Dispatcher threads** run the callbacks. Events are sharded by topic, so each listener
//!   sees a topic's events in the order they were received while different topics run in
//!   parallel. Queues are bounded; when one is full the [`Backpressure`] policy decides: `Block`
//!   (the default: nothing lost, TCP pushes back), `DropNewest` or `DropOldest` (each drop
//!   counted and reported).
//! - **Recovery.** Any close or error you did not ask for leads to reconnection with exponential
//!   backoff and full jitter ([`Backoff`]); a channel that no longer exists is replaced by a new
//!   one with the same topics; every period without a socket is reported as a
//!   [`Lifecycle::Gap`] with the topics affected, so you can resynchronise over REST.
//! - **Tokens** are refreshed ahead of expiry, from `expires_in`, without touching any socket.
//!
//! ## Guarantees
//! 1. No silent loss: every notification read is delivered, or counted as dropped or unrouted
//!    in [`Client::health`] and in lifecycle events; every period without a socket is a `Gap`.
//! 2. A listener cannot take the client down: panics are caught and reported.
//! 3. Dropping a [`ListenerGuard`] means the callback is not running and never runs again once
//!    the drop returns (dropping it inside its own callback is allowed).
//! 4. [`Client::shutdown`] (and `Drop`) closes every socket with a close frame, removes the
//!    server-side subscriptions and joins every thread within its timeout.
//! 5. Secrets stay secret: the client secret and access tokens never appear in `Debug` output or
//!    logs; channel ids and `connectUri` appear only shortened. Plain `http`/`ws` is accepted
//!    only for loopback hosts. (The `ureq` and `tungstenite` crates underneath log request
//!    paths, which hold the channel id, at `trace` level: keep them at `debug` or above in
//!    production.)
//!
//! ## Testing without Genesys Cloud
//! The `emulator` feature adds [`emulator::Emulator`], a fake Genesys Cloud on 127.0.0.1 with
//! the token endpoint, channels, subscriptions and the WebSocket, event publishing and fault
//! injection. The quickstart example runs against it.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod api;
mod auth;
mod backoff;
mod channel;
mod channel_id;
mod client;
mod config;
mod dispatch;
#[cfg(feature = "emulator")]
pub mod emulator;
mod error;
mod event;
mod health;
mod http;
mod lag;
mod listener;
mod message;
mod redact;
mod topic;
mod url;

pub use api::{ApiError, TopicResult, TopicState};
pub use auth::{AccessToken, ClientCredentials, StaticToken, TokenError, TokenSource};
pub use backoff::Backoff;
pub use channel_id::ChannelId;
pub use client::{Client, ClientBuilder, SubscribeReport};
pub use config::{Backpressure, Config, ConfigError, Region};
pub use error::Error;
pub use event::{DisconnectCause, Event, Lifecycle};
pub use health::{ChannelHealth, ChannelState, Health};
pub use lag::DispatchWait;
pub use listener::ListenerGuard;
pub use message::SystemMessage;
pub use topic::{Pattern, Topic, TopicError, MAX_TOPIC_LEN};

// Compile-time proof of the thread-safety the docs promise: a `Client` is shared between
// threads, a `ListenerGuard` may be dropped on any thread, and an `Error` can travel in
// `Box<dyn std::error::Error + Send + Sync>`. Losing one of these fails the build here.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Client>();
    send_sync::<ListenerGuard>();
    send_sync::<Error>();
    send_sync::<Event>();
    send_sync::<Lifecycle>();
    send_sync::<Health>();
};

/// The public surface, pinned by doc tests: the REST and token modules are private (what users
/// need is re-exported above), nothing public holds a channel's full id or `connectUri`, and
/// settings are changed only through setters, so adding one breaks no one.
///
/// ```compile_fail,E0603
/// use genesys_notify::api::ApiError; // use genesys_notify::ApiError
/// ```
/// ```compile_fail,E0603
/// use genesys_notify::auth::TokenSource; // use genesys_notify::TokenSource
/// ```
/// ```compile_fail,E0432
/// use genesys_notify::ChannelInfo; // crate-private: it holds the channel id and `connectUri`
/// ```
/// ```compile_fail,E0432
/// use genesys_notify::MalformedFrame; // appears in no public signature
/// ```
/// ```compile_fail,E0451
/// let config = genesys_notify::Config { max_channels: 3, ..Default::default() };
/// ```
/// ```compile_fail,E0451
/// let backoff = genesys_notify::Backoff { max_retries: Some(3), ..Default::default() };
/// ```
/// ```compile_fail,E0639
/// let report = genesys_notify::SubscribeReport {
///     permitted: Vec::new(),
///     rejected: Vec::new(),
///     duplicates: Vec::new(),
/// };
/// ```
/// The same settings through the builder and setters compile:
/// ```
/// let builder = genesys_notify::Client::builder()
///     .max_channels(3)
///     .backoff(genesys_notify::Backoff::default().max_retries(Some(3)));
/// # drop(builder);
/// ```
#[cfg(doctest)]
mod public_surface {}
