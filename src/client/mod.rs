//! client/ is the public face: [`Client`] and [`ClientBuilder`]. It owns the listener
//! registry, the dispatcher, the token manager and the channel slots, and carries out the
//! packing plan (plan.rs decides; the slots' topic sets live in channel/topics.rs); it never
//! reads a socket itself. This file holds the client's state and its small calls (listeners,
//! health, topics); subscribing, unsubscribing and shutting down have files of their own.
//!
//! Locking: one update lock is held while a subscribe call resolves duplicates, plans and
//! reserves room on existing channels (and while it creates new channels), and for the whole of
//! an unsubscribe call. Adding the reserved topics (`POST`) happens after the lock is released,
//! so calls adding to one channel at the same time share one request; each channel's topic
//! updates are serialised with its own thread's re-application by the channel's own lock.

mod builder;
mod retry;
mod shutdown;
mod slots;
mod subscribe;
mod typed;
mod unsubscribe;

pub use builder::ClientBuilder;
pub use subscribe::{SubscribeError, SubscribeReport};
pub use unsubscribe::UnsubscribeError;

use crate::api::ChannelInfo;
use crate::auth::Refresher;
use crate::channel::{Shared, Slot};
use crate::config::Config;
use crate::error::{ConfigError, Error};
use crate::event::{Event, Lifecycle};
use crate::health::Health;
use crate::listener::{ListenerGuard, Registry};
use crate::resync::Engine;
use crate::topic::{Pattern, Topic};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Inner {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    refresher: Mutex<Option<Refresher>>,
    /// Held while a subscribe call plans and reserves room (and while it creates channels),
    /// and for the whole of an unsubscribe call.
    updates: Mutex<()>,
    slots: Arc<RwLock<Vec<Arc<Slot>>>>,
    /// Channels of slots closed for want of topics, emptied on the server, to be reused by the
    /// next new slots.
    spare_channels: Mutex<Vec<ChannelInfo>>,
    /// The resync engine; `None` when snapshots are off.
    resync: Option<Arc<Engine>>,
    shut_down: AtomicBool,
    /// `Some(clean)` once a shutdown has finished; held while one runs.
    shutdown_outcome: Mutex<Option<bool>>,
}

/// A connection to Genesys Cloud notifications: topics, channels and listeners.
///
/// `Client` is `Send + Sync`; share it with `Arc` or by reference. Dropping it shuts it down
/// (waiting at most [`Config::drop_timeout`]).
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels: Vec<_> = self
            .inner
            .slots
            .read()
            .iter()
            .map(|s| s.channel_id())
            .collect();
        f.debug_struct("Client")
            .field("config", &self.inner.shared.config)
            .field("channels", &channels)
            .field("shut_down", &self.inner.shut_down.load(Ordering::Relaxed))
            .finish()
    }
}

impl Client {
    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// `Error::Shutdown` for a call that `shutdown` cut short (its channel stopped, its wait
    /// woken), whatever the call met on its way out.
    fn shut_down_instead(&self, error: Error) -> Error {
        if self.inner.shut_down.load(Ordering::Acquire) {
            Error::Shutdown
        } else {
            error
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.inner.shut_down.load(Ordering::Acquire)
            || self.inner.shared.dispatcher.pool_shut_down()
        {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    fn deadline(&self) -> (Instant, Duration) {
        let c = &self.inner.shared.config;
        let budget = c
            .connect_timeout
            .saturating_add(c.request_timeout.saturating_mul(2));
        let deadline = Instant::now()
            .checked_add(budget)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        (deadline, budget)
    }

    /// Checks that the token source works and the service accepts its token
    /// (`GET /api/v2/tokens/me`, docs/protocol.md "OAuth"): a quick way to fail fast on bad
    /// credentials before subscribing.
    ///
    /// # Errors
    /// [`Error::Token`] when no token can be obtained (for example bad client credentials),
    /// [`Error::Api`] when the service refuses the token or cannot be reached, and
    /// [`ApiError::Server`](crate::error::ApiError::Server) with status 404, naming the URL, when
    /// `api_base` is not the API root.
    pub fn verify_token(&self) -> Result<(), Error> {
        self.check_open()?;
        self.inner.shared.api.token_me().map_err(Error::from)
    }

    /// `GET {api_base}{path}` with the client's access token and its network settings (proxy,
    /// trusted roots, [`Config::request_timeout`] for the whole exchange), and the JSON
    /// answer: for REST reads the client does not make itself, such as the paged users list
    /// (`/api/v2/users?pageSize=500&pageNumber=1`). `path` is the path and query, starting
    /// with `/`. A 401 gets one token refresh and one more attempt, as the client's own calls;
    /// nothing else is retried.
    ///
    /// # Errors
    /// [`Error::Shutdown`] after [`Client::shutdown`]; [`Error::Token`] when no token can be
    /// obtained; [`Error::Api`] for a status other than 2xx (its variant names the status),
    /// a proxy or transport failure, the timeout, or a body that is not JSON
    /// ([`ApiError::Decode`](crate::error::ApiError::Decode)); [`Error::Config`] (field
    /// `"path"`) before any request when `path` does not start with one `/` or holds white
    /// space, control characters or a `#`: the token is only ever sent to `api_base`'s host
    /// (a path such as `@other.host/x` or `//other.host/x` would name another host).
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, Error> {
        self.check_open()?;
        check_rest_path(path)?;
        self.inner.shared.api.get_json(path).map_err(Error::from)
    }

    /// Every topic subscribed now, sorted. Topics of a channel that stopped for good (retry
    /// budget spent, permanent failure) are not listed: they no longer flow.
    pub fn topics(&self) -> Vec<Topic> {
        let set: BTreeSet<Topic> = self
            .inner
            .slots
            .read()
            .iter()
            .filter(|s| !s.is_dead())
            .flat_map(|s| s.topics().iter().cloned().collect::<Vec<_>>())
            .collect();
        set.into_iter().collect()
    }

    /// Registers `callback` for notifications whose `topicName` matches `pattern` (`*` matches
    /// one dot-separated segment, case is ignored: `v2.users.*.presence`). Many listeners may
    /// share a topic; each gets every matching event of a topic in the order received.
    ///
    /// Callbacks run on the dispatcher threads (or the [`ThreadPool`](crate::ThreadPool)'s
    /// threads, see [`ClientBuilder::thread_pool`]); a panic is caught and reported
    /// ([`Lifecycle::ListenerPanicked`]). Keep the returned guard: dropping it unregisters the
    /// callback, and once the drop returns the callback is not running and never runs again.
    /// Registering does not subscribe: call [`Client::subscribe`] for the topics.
    ///
    /// # Errors
    /// [`Error::Topic`] for an invalid pattern, or for `channel.metadata` and `v2.system.*`
    /// (those arrive as [`Lifecycle`] events: use [`Client::on_lifecycle`]);
    /// [`Error::Shutdown`].
    pub fn on<F>(&self, pattern: &str, callback: F) -> Result<ListenerGuard, Error>
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.check_open()?;
        let parsed = Pattern::parse(pattern)
            .and_then(|p| {
                // Those frames become lifecycle events; a listener for them would never run.
                if crate::topic::is_reserved(p.as_str()) {
                    Err(crate::topic::TopicError::Reserved)
                } else {
                    Ok(p)
                }
            })
            .map_err(|error| Error::Topic {
                name: pattern.to_owned(),
                error,
            })?;
        let (listener, registered) = self.inner.registry.add_event(parsed, Box::new(callback));
        self.warn_listeners(registered);
        Ok(ListenerGuard::for_event(&self.inner.registry, listener))
    }

    /// Registers `callback` for [`Lifecycle`] events, which run on the client's lifecycle thread
    /// (or a thread of its [`ThreadPool`](crate::ThreadPool)) in the order they happened. The guard works as for [`Client::on`].
    ///
    /// # Errors
    /// [`Error::Shutdown`].
    pub fn on_lifecycle<F>(&self, callback: F) -> Result<ListenerGuard, Error>
    where
        F: Fn(&Lifecycle) + Send + Sync + 'static,
    {
        self.check_open()?;
        let (listener, registered) = self.inner.registry.add_lifecycle(Box::new(callback));
        self.warn_listeners(registered);
        Ok(ListenerGuard::for_lifecycle(&self.inner.registry, listener))
    }

    fn warn_listeners(&self, registered: crate::listener::Registered) {
        if registered.crossed_threshold {
            self.inner
                .shared
                .dispatcher
                .lifecycle
                .emit(Lifecycle::TooManyListeners {
                    count: registered.total,
                    threshold: self.inner.shared.config.listener_warning_threshold,
                });
        }
    }

    /// A snapshot of every channel's state and counters, the queues and the listeners.
    pub fn health(&self) -> Health {
        let shared = &self.inner.shared;
        let sink = &shared.dispatcher.lifecycle;
        let (listeners, lifecycle_listeners) = self.inner.registry.counts();
        Health {
            channels: self
                .inner
                .slots
                .read()
                .iter()
                .map(|s| s.stats().snapshot(shared.epoch, s.topic_count()))
                .collect(),
            queue_depths: shared.dispatcher.queue_depths(),
            dispatch_wait: crate::lag::summarize(&shared.dispatcher.lag),
            listeners,
            lifecycle_listeners,
            dropped: sink.dropped_total.load(Ordering::Relaxed),
            listener_panics: sink.listener_panics.load(Ordering::Relaxed),
            lifecycle_dropped: sink.lost.load(Ordering::Relaxed),
            request_failures: sink.request_failures.load(Ordering::Relaxed),
            totals: shared.stats.totals(),
            resync: self
                .inner
                .resync
                .as_ref()
                .map(|e| e.health())
                .unwrap_or_default(),
        }
    }
}

impl Client {
    /// The lifecycle sink, for public methods of `Client` defined in other modules
    /// (models/typed.rs).
    pub(crate) fn lifecycle_sink(&self) -> &Arc<crate::dispatch::LifecycleSink> {
        &self.inner.shared.dispatcher.lifecycle
    }
}

/// `get_json`'s path: the path and query of a URL on `api_base`'s host, never anything that
/// would move the request (and its access token) to another host.
fn check_rest_path(path: &str) -> Result<(), Error> {
    let reason = if !path.starts_with('/') {
        Some("must start with '/'")
    } else if path.starts_with("//") {
        Some("must not start with '//' (that names another host)")
    } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not hold white space or control characters")
    } else if path.contains('#') {
        Some("must not hold a fragment ('#')")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::Config(ConfigError {
            field: "path",
            reason: format!("{path:?} {reason}"),
        })),
    }
}

#[cfg(test)]
mod path_tests {
    use super::check_rest_path;

    #[test]
    fn a_rest_path_cannot_send_the_token_to_another_host() {
        for good in ["/api/v2/users", "/api/v2/users?pageSize=500&pageNumber=2"] {
            assert!(check_rest_path(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "api/v2/users",
            "@evil.example/x",
            "//evil.example/x",
            "/api/v2 users",
            "/api/v2/users\r\nX: y",
            "/api/v2/users#frag",
        ] {
            let err = check_rest_path(bad).expect_err(bad).to_string();
            assert!(err.contains("path"), "{bad}: {err}");
        }
    }
}
