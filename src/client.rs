//! client.rs is the public face: [`Client`] and [`ClientBuilder`]. It owns the listener
//! registry, the dispatcher, the token manager and the channel slots, and carries out the
//! packing plan (plan.rs decides; the slots' topic sets live in channel/topics.rs); it never
//! reads a socket itself.
//!
//! Locking: one update lock is held while a subscribe call resolves duplicates, plans and
//! reserves room on existing channels (and while it creates new channels), and for the whole of
//! an unsubscribe call. Adding the reserved topics (`POST`) happens after the lock is released,
//! so calls adding to one channel at the same time share one request; each channel's topic
//! updates are serialised with its own thread's re-application by the channel's own lock.

use crate::api::{Api, ApiError, ChannelInfo, TopicResult, TopicState};
use crate::auth::{
    AuthEvent, ClientCredentials, RefresherHandle, StaticToken, TokenManager, TokenSource,
};
use crate::backoff::{Backoff, Retry};
use crate::channel::topics::TopicSet;
use crate::channel::{SetupFailure, Shared, Slot, StopReason};
use crate::config::{Backpressure, Config, ConfigError, Region};
use crate::dispatch::Dispatcher;
use crate::error::Error;
use crate::event::{Event, Lifecycle};
use crate::health::Health;
use crate::listener::{ListenerGuard, Registry};
use crate::plan::{self, Limits, Load, PlanError};
use crate::redact::Redacted;
use crate::resync::{Engine, ResyncSettings, Snapshots, StateResource};
use crate::topic::{Pattern, Topic};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How long a subscribe call waits for channel threads that are finishing their stop.
const STOPPING_WAIT: Duration = Duration::from_secs(1);

/// What [`Client::subscribe`] did with each topic it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "some topics may have been rejected; check `rejected`"]
pub struct SubscribeReport {
    /// Topics now subscribed (state `Permitted`).
    pub permitted: Vec<Topic>,
    /// Topics the service refused, with `rejectionReason` and `missingPermissions`. They are not
    /// kept: subscribe them again once the permission is granted.
    pub rejected: Vec<TopicResult>,
    /// Topics that were already subscribed: nothing was sent for them.
    pub duplicates: Vec<Topic>,
}

enum TokenChoice {
    ClientCredentials { client_id: String, secret: String },
    Static(String),
    Source(Box<dyn TokenSource>),
}

/// Builds a [`Client`]: where to connect, how to authenticate, and the settings of
/// [`Config`]. Every setter takes the unit named in its docs.
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    config: Config,
    token: Option<TokenChoice>,
    error: Option<ConfigError>,
    /// User-supplied state resources ([`ClientBuilder::state_resource`]).
    resync_resources: Vec<StateResource>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = match &self.token {
            Some(TokenChoice::ClientCredentials { client_id, .. }) => {
                format!("client credentials (client id {client_id}, secret {Redacted:?})")
            }
            Some(TokenChoice::Static(_)) => format!("static token {Redacted:?}"),
            Some(TokenChoice::Source(_)) => "custom token source".to_owned(),
            None => "none".to_owned(),
        };
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("token", &token)
            .field("state_resources", &self.resync_resources)
            .finish()
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl ClientBuilder {
    /// Uses the region's `api.<domain>` and `login.<domain>` hosts.
    pub fn region(mut self, region: Region) -> Self {
        self.config.api_base = region.api_base();
        self.config.login_base = region.login_base();
        self
    }

    /// Uses the region named like `eu-west-1` (or its domain, like `mypurecloud.ie`).
    /// An unknown name makes [`ClientBuilder::build`] fail with a [`ConfigError`].
    pub fn region_name(self, name: &str) -> Self {
        match Region::from_name(name) {
            Some(region) => self.region(region),
            None => ClientBuilder {
                error: Some(ConfigError {
                    field: "region",
                    reason: format!("unknown region {name:?}"),
                }),
                ..self
            },
        }
    }

    /// The REST base URL, e.g. `https://api.mypurecloud.com` (emulators, test servers, new
    /// regions). Plain `http` is accepted only for loopback hosts.
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.config.api_base = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The OAuth base URL, e.g. `https://login.mypurecloud.com`. Plain `http` is accepted only
    /// for loopback hosts.
    pub fn login_base(mut self, url: impl Into<String>) -> Self {
        self.config.login_base = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Authenticates with the OAuth client credentials grant (`POST {login_base}/oauth/token`).
    /// The secret never appears in `Debug` output or logs.
    pub fn client_credentials(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        self.token = Some(TokenChoice::ClientCredentials {
            client_id: client_id.into(),
            secret: client_secret.into(),
        });
        self
    }

    /// Uses an access token obtained elsewhere (implicit or code grant). It is never refreshed;
    /// once it expires, REST calls fail with 401 (sockets already connected keep working).
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(TokenChoice::Static(token.into()));
        self
    }

    /// Uses any [`TokenSource`], including a closure returning
    /// `Result<AccessToken, TokenError>`.
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        self.token = Some(TokenChoice::Source(Box::new(source)));
        self
    }

    /// Replaces every setting at once (the token choice is kept).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    setter!(
        /// Dispatcher threads running callbacks (1..=256, default 2).
        dispatcher_threads: usize
    );
    setter!(
        /// Capacity of each dispatcher queue, in events (default 1024).
        queue_capacity: usize
    );
    setter!(
        /// Capacity of each dispatcher queue, in bytes of queued events (default 4 MiB; see
        /// [`Config::queue_capacity_bytes`] for the memory bound).
        queue_capacity_bytes: usize
    );
    setter!(
        /// What happens when a dispatcher queue is full (default [`Backpressure::Block`]).
        backpressure: Backpressure
    );
    setter!(
        /// Silence after which the application ping is sent (default 30 s).
        ping_interval: Duration
    );
    setter!(
        /// Wait for the pong before the socket is presumed dead (default 15 s).
        pong_timeout: Duration
    );
    setter!(
        /// Silence after which the socket is presumed dead, ping or not (default 60 s).
        liveness_timeout: Duration
    );
    setter!(
        /// Deadline for DNS + TCP + TLS + WebSocket handshake of one socket (default 20 s).
        connect_timeout: Duration
    );
    setter!(
        /// Deadline for one REST call (default 30 s).
        request_timeout: Duration
    );
    setter!(
        /// Most channels this client creates (1..=20, default 20).
        max_channels: usize
    );
    setter!(
        /// Most topics per channel (1..=1000, default 1000).
        max_topics_per_channel: usize
    );
    setter!(
        /// Largest WebSocket message accepted, in bytes (default 4 MiB).
        max_message_size: usize
    );
    setter!(
        /// Listener count above which [`Lifecycle::TooManyListeners`] fires (default 10 000).
        listener_warning_threshold: usize
    );
    setter!(
        /// How long `Drop` waits for a clean shutdown (default 5 s).
        drop_timeout: Duration
    );
    setter!(
        /// 99th percentile dispatcher queue wait above which
        /// [`Lifecycle::DispatchLagHigh`] fires (default 50 ms).
        dispatch_lag_threshold: Duration
    );
    setter!(
        /// Retry policy for reconnection and REST failures.
        backoff: Backoff
    );

    setter!(
        /// When to read topics' state over REST and deliver it as snapshots (default
        /// [`Snapshots::AfterGaps`]; [`Snapshots::Off`] makes no state request at all).
        snapshots: Snapshots
    );
    setter!(
        /// Most state requests in flight at once during a resync (1..=8, default 2).
        resync_concurrency: usize
    );
    setter!(
        /// Retry policy of state requests (default: base 500 ms, cap 30 s, `Retry-After`
        /// honoured up to 300 s, 5 retries per request, then [`Lifecycle::ResyncFailed`]).
        resync_backoff: Backoff
    );

    /// Adds a user-supplied state resource for the topics matching its pattern; it takes
    /// precedence over the built-in ones (and over resources added before it for the same
    /// topics, in the order added).
    pub fn state_resource(mut self, resource: StateResource) -> Self {
        self.resync_resources.push(resource);
        self
    }

    /// Validates the settings and starts the client's threads (dispatchers, lifecycle, token
    /// refresher). No channel is created until the first [`Client::subscribe`].
    ///
    /// # Errors
    /// [`Error::Config`] for a setting out of range (see [`Config::validate`]), an unknown region
    /// name, no token source, or an empty client id, client secret or access token (or one
    /// holding white space or control characters); [`Error::Spawn`] when the dispatcher or
    /// lifecycle threads could not be started.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(error) = self.error {
            return Err(Error::Config(error));
        }
        let config = self.config;
        config.validate()?;
        let resync = ResyncSettings {
            snapshots: config.snapshots,
            concurrency: config.resync_concurrency,
            backoff: config.resync_backoff.clone(),
            custom: self.resync_resources,
        };
        check_credentials(&self.token)?;
        let network = crate::network::Network::from_config(&config)?;
        let source: Box<dyn TokenSource> = match self.token {
            Some(TokenChoice::ClientCredentials { client_id, secret }) => {
                Box::new(ClientCredentials::with_agent(
                    &config.login_base,
                    client_id,
                    secret,
                    config.request_timeout,
                    network.agent(&config.login_base, config.request_timeout),
                ))
            }
            Some(TokenChoice::Static(token)) => Box::new(StaticToken::new(token)),
            Some(TokenChoice::Source(source)) => source,
            None => {
                return Err(Error::Config(ConfigError {
                    field: "token",
                    reason:
                        "no token source: call client_credentials, access_token or token_source"
                            .into(),
                }))
            }
        };
        let thread_error = |error: std::io::Error| Error::Spawn {
            thread: "dispatcher",
            error,
        };
        let registry = Arc::new(Registry::new(config.listener_warning_threshold));
        let dispatcher = Dispatcher::start(
            registry.clone(),
            config.dispatcher_threads,
            crate::dispatch::QueueLimits {
                capacity: config.queue_capacity,
                capacity_bytes: config.queue_capacity_bytes,
            },
            config.backpressure,
            config.dispatch_lag_threshold,
        )
        .map_err(thread_error)?;
        let sink = dispatcher.lifecycle.clone();
        let tokens = TokenManager::new(
            source,
            Arc::new(move |event| {
                sink.emit(match event {
                    AuthEvent::Refreshed { expires_in } => Lifecycle::TokenRefreshed { expires_in },
                    AuthEvent::RefreshFailed { error, retry_in } => {
                        Lifecycle::TokenRefreshFailed { error, retry_in }
                    }
                })
            }),
        );
        let refresher = tokens.start_refresher();
        let api = Api::with_agent(
            &config.api_base,
            tokens.clone(),
            config.request_timeout,
            network.agent(&config.api_base, config.request_timeout),
        );
        let shared = Arc::new(Shared {
            config,
            api,
            dispatcher,
            network,
            epoch: (Instant::now(), SystemTime::now()),
            stats: Default::default(),
        });
        let slots = Arc::new(RwLock::new(Vec::new()));
        let engine = Engine::start(shared.clone(), slots.clone(), resync).map_err(thread_error)?;
        if let Some(engine) = &engine {
            let weak = Arc::downgrade(engine);
            let _ = shared
                .dispatcher
                .lifecycle
                .gap_tap
                .set(Box::new(move |channel, topics| {
                    if let Some(engine) = weak.upgrade() {
                        engine.after_gap(channel, topics);
                    }
                }));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                registry,
                refresher: Mutex::new(Some(refresher)),
                updates: Mutex::new(()),
                slots,
                spare_channels: Mutex::new(Vec::new()),
                resync: engine,
                shut_down: AtomicBool::new(false),
                shutdown_outcome: Mutex::new(None),
            }),
        })
    }
}

/// Corporate networks: proxy, trust roots, gateways (README "Corporate networks").
impl ClientBuilder {
    /// Sends every connection (token request, REST calls and notification sockets) through the
    /// HTTP `CONNECT` proxy at `url`: `http://[user:password@]host[:port]` (port 1080 if
    /// omitted). Credentials go as `Proxy-Authorization: Basic` and never appear in `Debug`
    /// output or logs. Overrides `HTTPS_PROXY`/`ALL_PROXY`; hosts in [`ClientBuilder::no_proxy`]
    /// and loopback hosts still go direct.
    ///
    /// An unusable URL (another scheme, no host, bad port) makes [`ClientBuilder::build`] fail
    /// with [`Error::Config`] naming the field `proxy`.
    pub fn proxy(mut self, url: &str) -> Self {
        match crate::proxy::Proxy::parse(url) {
            Ok(proxy) => self.config.proxy.proxy = Some(proxy),
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// The hosts that bypass the proxy, curl's `NO_PROXY` syntax: comma-separated host names
    /// (each also covers its subdomains), `.domain` or `*.domain`, IP addresses or CIDR blocks,
    /// each optionally with `:port`; `*` for all. Overrides `NO_PROXY` from the environment.
    pub fn no_proxy(mut self, list: &str) -> Self {
        self.config.proxy.no_proxy = Some(list.to_owned());
        self
    }

    /// Whether to read the proxy from the environment when none is set with
    /// [`ClientBuilder::proxy`] (default `true`): `https_proxy`, `HTTPS_PROXY`, `all_proxy`,
    /// `ALL_PROXY` (in that order) and `no_proxy`/`NO_PROXY`, as curl does for `https` URLs.
    pub fn proxy_from_env(mut self, read: bool) -> Self {
        self.config.proxy.from_env = read;
        self
    }

    /// Whether loopback hosts (`localhost`, 127.0.0.0/8, `::1`) go through the proxy too
    /// (default `false`: they go direct).
    pub fn proxy_loopback(mut self, through_proxy: bool) -> Self {
        self.config.proxy.proxy_loopback = through_proxy;
        self
    }

    /// Which root certificates servers must chain to, for REST and sockets alike (default
    /// [`TlsRoots::WebPki`](crate::TlsRoots::WebPki), the bundled Mozilla set). Certificates
    /// are always verified.
    pub fn tls_roots(mut self, roots: crate::tls::TlsRoots) -> Self {
        self.config.tls.roots = roots;
        self
    }

    /// Adds the `CERTIFICATE` blocks of `pem` (PEM text, e.g. a corporate CA's file) to the
    /// trusted roots. Text without a certificate, or a block that does not decode to an X.509
    /// certificate, makes
    /// [`ClientBuilder::build`] fail with [`Error::Config`] naming `root_certificates`.
    pub fn add_root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        match crate::tls::parse_pem(pem.as_ref()) {
            Ok(certs) => self.config.tls.extra.extend(certs),
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Connects the notification sockets to a gateway instead of the host in `connectUri`:
    /// `https://gateway.example.com[:port]` replaces scheme, host and port and keeps the
    /// `connectUri`'s path and query (which carry the channel id). `http` is accepted only for
    /// loopback hosts. An unusable URL makes [`ClientBuilder::build`] fail with
    /// [`Error::Config`] naming `streaming_base`.
    pub fn streaming_base(mut self, url: &str) -> Self {
        match crate::gateway::StreamingOverride::parse_base(url) {
            Ok(o) => self.config.streaming = o,
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Maps each `connectUri` the service gives to the address to connect to, for gateways
    /// that need more than [`ClientBuilder::streaming_base`]. The result is checked like any
    /// `connectUri` (`wss`, or `ws` to loopback only). The function must not block.
    pub fn map_connect_uri(mut self, map: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.config.streaming = crate::gateway::StreamingOverride::Map(Arc::new(map));
        self
    }
}

struct Inner {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    refresher: Mutex<Option<RefresherHandle>>,
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

fn parse_topics<I, S>(topics: I) -> Result<Vec<Topic>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for name in topics {
        let name = name.as_ref();
        let topic = Topic::parse(name).map_err(|error| Error::Topic {
            name: name.to_owned(),
            error,
        })?;
        if seen.insert(topic.clone()) {
            out.push(topic);
        }
    }
    Ok(out)
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            config: Config::default(),
            token: None,
            error: None,
            resync_resources: Vec::new(),
        }
    }

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
        if self.inner.shut_down.load(Ordering::Acquire) {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Subscribes topics, packing them into as few channels as the limits allow, and returns
    /// once each is `Permitted` or `Rejected` by the service (or the deadline passes).
    ///
    /// Topic names are validated and lower-cased; combined topics
    /// (`v2.users.<id>?presence&routingStatus`) count as one, and their parts are put in one
    /// order (`?presence&routingstatus`), so the same combination spelled in another order is
    /// the same topic.
    ///
    /// Duplicates are found by what a topic expands to (docs/protocol.md, "How this crate
    /// subscribes"): events of a combined topic arrive under the individual names
    /// (`v2.users.<id>.presence`, ...), so a topic whose every name is already brought by a
    /// subscribed topic (or by an earlier topic of the same call) is reported as a duplicate
    /// ([`SubscribeReport::duplicates`], [`Lifecycle::DuplicateSubscription`]) and nothing is
    /// sent for it; a combined topic that overlaps only in part is narrowed to the parts it adds
    /// (`v2.users.<id>?presence&routingStatus` with `v2.users.<id>.presence` subscribed
    /// subscribes `v2.users.<id>.routingstatus`, reported in `permitted`, and reports the
    /// presence part as a duplicate). So overlapping subscriptions never make a listener see
    /// one event twice. The same name twice in one call is simply subscribed once.
    ///
    /// Topics join the room left on existing channels with `POST .../subscriptions` carrying
    /// only them (calls adding to one channel at the same time share one `POST`); a new channel
    /// gets its topics with `PUT`. Subscriptions use `ignoreErrors=true`, so a topic lacking a
    /// permission is reported in [`SubscribeReport::rejected`] with its reason and missing
    /// permissions while the others work; a channel left with no topic (all rejected) is
    /// closed. A new channel's socket is connected before its topics are subscribed, so no
    /// event published after this returns is missed.
    ///
    /// # Errors
    /// - [`Error::Topic`] for an invalid name (nothing is subscribed);
    /// - [`Error::TooManyChannels`] when they would fit in number but need more channels than
    ///   `max_channels` (isolated channels do not share their room; nothing is subscribed);
    /// - [`Error::TooManyTopics`] when the topics would not fit in `max_channels` channels of
    ///   `max_topics_per_channel` topics (nothing is subscribed);
    /// - [`Error::Token`] when the token source fails permanently (bad client credentials);
    /// - [`Error::Api`] when the service refuses a request or keeps failing until the deadline
    ///   (`connect_timeout + 2 × request_timeout`), with its last answer; at once when its
    ///   `Retry-After` (429, 503) puts the next attempt past the deadline (nothing is
    ///   subscribed for that call's new channels);
    /// - [`Error::Timeout`] when a new channel is not ready by the deadline for another reason
    ///   (its socket does not connect; the error names the last failure): its topics stay
    ///   wanted and its thread keeps trying, reporting through lifecycle events;
    /// - [`Error::ChannelStopped`] when a new channel's thread stopped before its topics were
    ///   subscribed (retry budget spent, unusable `connectUri`);
    /// - [`Error::Spawn`] when a channel thread cannot be started (the system is out of
    ///   threads);
    /// - [`Error::Shutdown`] after [`Client::shutdown`], or when a `shutdown` on another thread
    ///   cut this call short.
    ///
    /// When an error happens after some channels were updated, those updates stay.
    pub fn subscribe<I, S>(&self, topics: I) -> Result<SubscribeReport, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.subscribe_with(topics, false)
            .map_err(|error| self.shut_down_instead(error))
    }

    /// Like [`Client::subscribe`], but puts these topics on channels of their own, shared with
    /// no other topics (for example to keep a high-volume group away from the rest).
    ///
    /// # Errors
    /// As [`Client::subscribe`].
    pub fn subscribe_isolated<I, S>(&self, topics: I) -> Result<SubscribeReport, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.subscribe_with(topics, true)
            .map_err(|error| self.shut_down_instead(error))
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

    fn subscribe_with<I, S>(&self, topics: I, isolated: bool) -> Result<SubscribeReport, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.check_open()?;
        let wanted = parse_topics(topics)?;
        let shared = &self.inner.shared;
        let config = &shared.config;
        let mut updates = Some(self.inner.updates.lock());
        self.check_open()?;
        self.forget_stopped();
        let slots: Vec<Arc<Slot>> = self.inner.slots.read().clone();
        let open: Vec<bool> = slots
            .iter()
            .map(|s| !s.is_stopping() && !s.is_dead())
            .collect();

        let resolved = {
            let sets: Vec<_> = slots
                .iter()
                .zip(&open)
                .filter(|(_, open)| **open)
                .map(|(s, _)| s.topics.lock())
                .collect();
            plan::resolve(wanted, |name| {
                sets.iter().any(|set| set.covering(name).is_some())
            })
        };
        for topic in &resolved.duplicates {
            shared
                .dispatcher
                .lifecycle
                .emit(Lifecycle::DuplicateSubscription {
                    topic: topic.clone(),
                });
        }
        let mut report = SubscribeReport {
            duplicates: resolved.duplicates,
            ..SubscribeReport::default()
        };
        let new = resolved.new;
        if new.is_empty() {
            return Ok(report);
        }

        let loads: Vec<Load> = slots
            .iter()
            .zip(&open)
            .map(|(s, open)| Load {
                topics: s.topic_count(),
                isolated: s.isolated,
                open: *open,
            })
            .collect();
        let limits = Limits {
            max_topics_per_channel: config.max_topics_per_channel,
            max_channels: config.max_channels,
        };
        let plan = plan::place(&loads, new.len(), isolated, limits).map_err(|e| match e {
            PlanError::TooManyTopics {
                requested,
                capacity,
            } => Error::TooManyTopics {
                requested,
                capacity,
            },
            PlanError::TooManyChannels {
                needed,
                max_channels,
            } => Error::TooManyChannels {
                needed,
                max_channels,
            },
        })?;

        // The room on existing channels is reserved under the update lock, so that calls
        // planning meanwhile count it; adding to channels that already work then needs the
        // lock no more, and calls adding to the same channel at the same time share a `POST`.
        let to_existing: Vec<(Arc<Slot>, Vec<Topic>)> = plan
            .to_existing
            .iter()
            .map(|(index, range)| {
                let slot = slots[*index].clone();
                let add = new[range.clone()].to_vec();
                let mut set = slot.topics.lock();
                for topic in &add {
                    set.insert(topic.clone());
                }
                drop(set);
                (slot, add)
            })
            .collect();
        if plan.new_channels.is_empty() {
            updates = None;
        }

        let (deadline, budget) = self.deadline();
        let mut results: Vec<TopicResult> = Vec::new();
        let mut failure = None;
        for (slot, add) in &to_existing {
            if failure.is_none() {
                match self.post_with_retry(slot, add, deadline, budget) {
                    Ok(r) => {
                        results.extend(r);
                        continue;
                    }
                    Err(error) => failure = Some(error),
                }
            }
            // Not subscribed: give the reserved room back.
            let mut set = slot.topics.lock();
            for topic in add {
                set.remove(topic);
            }
        }
        let touched: Vec<Arc<Slot>> = to_existing.into_iter().map(|(slot, _)| slot).collect();
        if let Some(error) = failure {
            self.close_emptied(&touched, updates, deadline);
            return Err(error);
        }

        let mut created = Vec::new();
        for range in plan.new_channels {
            let topics = TopicSet::of(new[range].iter().cloned());
            let slot = Slot::new(isolated, topics);
            {
                // Checked under the list's lock: a `shutdown` running now either sees this slot
                // (and stops it) or has already marked the client shut down.
                let mut list = self.inner.slots.write();
                self.check_open()?;
                if let Some(spare) = self.inner.spare_channels.lock().pop() {
                    slot.reuse_channel(spare);
                }
                slot.start(shared, list.len())
                    .map_err(|error| Error::Spawn {
                        thread: "channel",
                        error,
                    })?;
                list.push(slot.clone());
            }
            match slot.wait_setup(0, deadline) {
                Some(Ok(r)) => results.extend(r),
                Some(Err(failure)) => {
                    slot.stop(false);
                    // Forgotten only once its thread has ended; a stopping slot takes no topics
                    // and `shutdown` still joins it.
                    if slot.join_until(Instant::now() + Duration::from_secs(1)) {
                        self.inner.slots.write().retain(|s| !Arc::ptr_eq(s, &slot));
                    }
                    return Err(setup_error(failure));
                }
                None => {
                    return Err(Error::Timeout {
                        operation: "subscribe",
                        after: budget,
                        last_failure: slot.last_failure(),
                    })
                }
            }
            created.push(slot);
        }
        // A channel whose topics were all rejected is closed: no open channel without topics.
        created.extend(touched);
        self.close_emptied(&created, updates, deadline);

        let new_set: HashSet<&Topic> = new.iter().collect();
        let mut answered = HashSet::new();
        for result in results {
            let Ok(topic) = Topic::parse(&result.topic) else {
                continue;
            };
            if !new_set.contains(&topic) || !answered.insert(topic.clone()) {
                continue;
            }
            match result.state {
                TopicState::Permitted => report.permitted.push(topic),
                TopicState::Rejected => report.rejected.push(result),
            }
        }
        // A topic the service did not list is taken as permitted (it stays in the desired set).
        for topic in new {
            if !answered.contains(&topic) {
                report.permitted.push(topic);
            }
        }
        if let Some(engine) = &self.inner.resync {
            engine.after_subscribe(&report.permitted);
        }
        Ok(report)
    }

    /// A channel whose thread stopped for good (retry budget spent, permanent failure, no topic
    /// left) no longer holds its topics: forget it, so that it does not count against
    /// `max_channels` and subscribing its topics again gives them a new channel instead of
    /// reporting them as duplicates.
    fn forget_stopped(&self) {
        // A thread that is stopping (its channel emptied by a renewal, or a close that timed
        // out) is finishing its last `DELETE`: give it a moment, so that its channel can be
        // reused rather than another created.
        let stopping: Vec<Arc<Slot>> = self
            .inner
            .slots
            .read()
            .iter()
            .filter(|s| s.is_stopping() && !s.is_dead())
            .cloned()
            .collect();
        let within = Instant::now() + STOPPING_WAIT;
        for slot in stopping {
            slot.join_until(within);
        }
        let mut emptied = Vec::new();
        self.inner.slots.write().retain(|s| {
            if !s.is_dead() {
                return true;
            }
            // A channel stopped because a renewal rejected its last topics had its
            // subscriptions deleted: it can serve the next new slot.
            if matches!(s.stop_reason(), Some(StopReason::NoTopics)) {
                emptied.extend(s.take_channel());
            }
            false
        });
        for channel in emptied {
            self.keep_spare(channel);
        }
    }

    /// Keeps an emptied channel for the next new slot (at most `max_channels` of them).
    fn keep_spare(&self, channel: ChannelInfo) {
        let mut spare = self.inner.spare_channels.lock();
        if spare.len() < self.inner.shared.config.max_channels {
            spare.push(channel);
        }
    }

    /// Closes those of `slots` left without topics (under the update lock, taken again if
    /// `held` is `None`): their sockets are closed, their subscriptions deleted, their slots
    /// freed, and their server-side channels kept to be reused by the next new slot (the
    /// service has no call to delete a channel, and each one counts toward its 20).
    fn close_emptied(
        &self,
        slots: &[Arc<Slot>],
        held: Option<parking_lot::MutexGuard<'_, ()>>,
        deadline: Instant,
    ) {
        if slots.iter().all(|s| s.topic_count() > 0) {
            return;
        }
        let _updates = held.unwrap_or_else(|| self.inner.updates.lock());
        for slot in slots {
            if slot.topic_count() > 0 || slot.is_stopping() {
                continue;
            }
            slot.stop(true);
            if slot.join_until(deadline) {
                self.inner.slots.write().retain(|s| !Arc::ptr_eq(s, slot));
                if let Some(channel) = slot.take_channel() {
                    self.keep_spare(channel);
                }
            }
        }
    }

    /// Adds `add` (reserved in `slot`'s set) to `slot`'s channel with `POST`, retrying
    /// transient failures until `deadline`; a channel found gone is replaced by its thread
    /// (which subscribes the whole set) and the `POST` is sent again for these topics' answers.
    fn post_with_retry(
        &self,
        slot: &Slot,
        add: &[Topic],
        deadline: Instant,
        budget: Duration,
    ) -> Result<Vec<TopicResult>, Error> {
        let shared = &self.inner.shared;
        let mut retry = Retry::new(shared.config.backoff.clone());
        loop {
            let generation = slot.setup_generation();
            let error = match slot.post_topics(shared, add) {
                Ok(results) => return Ok(results),
                Err(error) => error,
            };
            if matches!(error, ApiError::NotFound) {
                slot.nudge();
                match slot.wait_setup(generation, deadline) {
                    Some(Ok(_)) => continue,
                    Some(Err(failure)) => return Err(setup_error(failure)),
                    None => {
                        return Err(Error::Timeout {
                            operation: "subscribe",
                            after: budget,
                            last_failure: slot.last_failure(),
                        })
                    }
                }
            }
            self.retry_wait(slot, &mut retry, error, deadline)?;
        }
    }

    /// After a failed call on `slot`: waits the backoff delay when the error is transient and
    /// the wait ends before `deadline`, else returns the error.
    fn retry_wait(
        &self,
        slot: &Slot,
        retry: &mut Retry,
        error: ApiError,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        if !error.is_transient() {
            return Err(error);
        }
        let Some(delay) = retry.next_delay(error.retry_after()) else {
            return Err(error);
        };
        if Instant::now() + delay > deadline {
            return Err(error);
        }
        self.inner
            .shared
            .dispatcher
            .lifecycle
            .emit(Lifecycle::RequestFailed {
                channel: slot.channel_id(),
                operation: "subscribe",
                error: error.clone(),
            });
        // A shutdown wakes this wait; nothing is sent after it.
        if slot.sleep(delay, error.retry_after().unwrap_or_default()) {
            return Err(error);
        }
        Ok(())
    }

    fn apply_with_retry(
        &self,
        slot: &Slot,
        deadline: Instant,
    ) -> Result<Vec<TopicResult>, ApiError> {
        let mut retry = Retry::new(self.inner.shared.config.backoff.clone());
        loop {
            match slot.apply_topics(&self.inner.shared) {
                Ok(results) => return Ok(results),
                Err(error) => self.retry_wait(slot, &mut retry, error, deadline)?,
            }
        }
    }

    /// Removes topics, comparing what they expand to: unsubscribing `v2.users.<id>.presence`
    /// removes that topic, or that part of a combined topic subscribed
    /// (`v2.users.<id>?presence&routingStatus` becomes `v2.users.<id>.routingstatus`, whose
    /// events keep flowing); unsubscribing a combined topic removes every subscribed topic it
    /// covers. Returns what was removed: each topic removed whole, and for a combined topic
    /// split, the part removed. Topics not subscribed are ignored.
    /// The channel's remaining topics are sent with `PUT`; a channel left without topics is
    /// closed (socket closed, subscriptions deleted with `DELETE`, slot freed) and its channel
    /// kept to be reused by the next topics that need a new channel.
    ///
    /// # Errors
    /// [`Error::Topic`] for an invalid name (nothing is removed); [`Error::Api`] or
    /// [`Error::Token`] when the service refuses the update: the topics are removed client-side
    /// all the same (their events, if any still arrive, are counted as unrouted) and the
    /// channel's thread sends the new topic set again, with backoff, until the service takes
    /// it; [`Error::Shutdown`].
    pub fn unsubscribe<I, S>(&self, topics: I) -> Result<Vec<Topic>, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.check_open()?;
        let unwanted = parse_topics(topics)?;
        let mut names = HashSet::new();
        for topic in &unwanted {
            topic.for_each_name(|name| {
                names.insert(name.to_owned());
            });
        }
        let updates = self.inner.updates.lock();
        let slots: Vec<Arc<Slot>> = self.inner.slots.read().clone();
        let (deadline, _) = self.deadline();
        let mut removed = Vec::new();
        let mut first_error = None;
        let mut emptied = Vec::new();
        for slot in slots {
            let gone: Vec<Topic> = {
                let mut set = slot.topics.lock();
                let mut gone = Vec::new();
                for topic in set.overlapping(&names) {
                    set.remove(&topic);
                    // A combined topic keeps the parts not asked to go.
                    if let Some(rest) = topic.narrowed(|name| !names.contains(name)) {
                        set.insert(rest);
                    }
                    if let Some(part) = topic.narrowed(|name| names.contains(name)) {
                        gone.push(part);
                    }
                }
                gone
            };
            if gone.is_empty() {
                continue;
            }
            match self.apply_with_retry(&slot, deadline) {
                Ok(_) | Err(ApiError::NotFound) => {}
                Err(error) => {
                    // The server still has the old set: the channel's thread sends the new one
                    // at its next chance.
                    slot.reapply.store(true, Ordering::Release);
                    first_error.get_or_insert(error);
                }
            }
            if let Some(channel) = slot.channel_id() {
                self.inner
                    .shared
                    .dispatcher
                    .lifecycle
                    .emit(Lifecycle::Unsubscribed {
                        channel,
                        topics: gone.clone(),
                    });
            }
            emptied.push(slot);
            removed.extend(gone);
        }
        // A channel left without topics would keep a thread and a socket open for nothing, and
        // an isolated one would count against `max_channels` for ever.
        self.close_emptied(&emptied, Some(updates), deadline);
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(removed),
        }
    }

    /// Checks that the token source works and the service accepts its token
    /// (`GET /api/v2/tokens/me`, docs/protocol.md "OAuth"): a quick way to fail fast on bad
    /// credentials before subscribing.
    ///
    /// # Errors
    /// [`Error::Token`] when no token can be obtained (for example bad client credentials),
    /// [`Error::Api`] when the service refuses the token or cannot be reached, and
    /// [`ApiError::Server`] with status 404, naming the URL, when `api_base` is not the API root.
    pub fn verify_token(&self) -> Result<(), Error> {
        self.check_open()?;
        self.inner.shared.api.token_me().map_err(Error::from)
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
            .flat_map(|s| s.topics.lock().iter().cloned().collect::<Vec<_>>())
            .collect();
        set.into_iter().collect()
    }

    /// Registers `callback` for notifications whose `topicName` matches `pattern` (`*` matches
    /// one dot-separated segment, case is ignored: `v2.users.*.presence`). Many listeners may
    /// share a topic; each gets every matching event of a topic in the order received.
    ///
    /// Callbacks run on the dispatcher threads; a panic is caught and reported
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
    /// in the order they happened. The guard works as for [`Client::on`].
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
        Health {
            channels: self
                .inner
                .slots
                .read()
                .iter()
                .map(|s| s.stats.snapshot(shared.epoch, s.topic_count()))
                .collect(),
            queue_depths: shared.dispatcher.queue_depths(),
            dispatch_wait: crate::lag::summarize(&shared.dispatcher.lag),
            listeners: self.inner.registry.counts(),
            dropped: sink.dropped_total.load(Ordering::Relaxed),
            listener_panics: sink.listener_panics.load(Ordering::Relaxed),
            lifecycle_dropped: sink.lost.load(Ordering::Relaxed),
            totals: shared.stats.totals(),
            resync: self
                .inner
                .resync
                .as_ref()
                .map(|e| e.health())
                .unwrap_or_default(),
        }
    }

    /// Shuts down: every socket gets a close frame, the server-side subscriptions are removed
    /// (`DELETE .../subscriptions`), events already queued are delivered, and every thread is
    /// joined, all within `timeout`. Listeners are unregistered. A later (or concurrent) call
    /// waits, within its own `timeout`, for the first one to finish and returns its outcome;
    /// called from a callback while another thread is shutting the client down, it returns
    /// `Ok(())` at once (that shutdown finishes once the callback returns). Called from a
    /// callback, it cannot join the thread running that callback, which ends right after.
    ///
    /// # Errors
    /// [`Error::Timeout`] when some thread did not finish in time (a callback that does not
    /// return, a REST call that hangs): those threads are left to end by themselves.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let timed_out = Err(Error::Timeout {
            operation: "shutdown",
            after: timeout,
            last_failure: None,
        });
        // One shutdown runs at a time; a later call waits for it and reports its outcome. A
        // callback cannot wait: the shutdown running elsewhere may be waiting for that very
        // callback to return.
        let outcome = if crate::dispatch::on_callback_thread() {
            match self.inner.shutdown_outcome.try_lock() {
                Some(outcome) => Some(outcome),
                None => return Ok(()),
            }
        } else {
            self.inner.shutdown_outcome.try_lock_until(deadline)
        };
        let Some(mut outcome) = outcome else {
            return timed_out;
        };
        if *outcome == Some(true) {
            return Ok(());
        }
        // A shutdown that timed out left threads running: this call stops and joins them
        // again (every step below may be repeated), so that once they did end it says so.
        let slots: Vec<Arc<Slot>> = {
            // Under the list's lock, so no subscribe adds a slot after this copy (see there).
            let list = self.inner.slots.write();
            self.inner.shut_down.store(true, Ordering::Release);
            list.clone()
        };
        // The resync stops first: no state is read for channels being closed.
        if let Some(engine) = &self.inner.resync {
            engine.stop();
        }
        for slot in &slots {
            slot.stop(true);
        }
        let mut clean = true;
        for slot in &slots {
            clean &= slot.join_until(deadline);
        }
        if let Some(engine) = &self.inner.resync {
            clean &= engine.join_until(deadline);
        }
        {
            let mut refresher = self.inner.refresher.lock();
            if let Some(handle) = refresher.as_mut() {
                let left = deadline.saturating_duration_since(Instant::now());
                if handle.stop_within(left) {
                    *refresher = None;
                } else {
                    clean = false;
                }
            }
        }
        clean &= self.inner.shared.dispatcher.shutdown(deadline);
        self.inner.registry.clear();
        *outcome = Some(clean);
        if clean {
            Ok(())
        } else {
            timed_out
        }
    }
}

/// An empty client id, secret or access token (an environment variable that was not set), or
/// one with white space or control characters (a pasted line break, which would also break the
/// HTTP header it goes in), is a configuration error naming the field, not a 401 later. The
/// value itself is never quoted.
fn check_credentials(token: &Option<TokenChoice>) -> Result<(), ConfigError> {
    let fields: Vec<(&'static str, &str)> = match token {
        Some(TokenChoice::ClientCredentials { client_id, secret }) => {
            vec![("client_id", client_id), ("client_secret", secret)]
        }
        Some(TokenChoice::Static(token)) => vec![("access_token", token)],
        _ => Vec::new(),
    };
    for (field, value) in fields {
        let reason = if value.is_empty() {
            "is empty"
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            "holds white space or control characters (a line break pasted with it?)"
        } else {
            continue;
        };
        return Err(ConfigError {
            field,
            reason: reason.into(),
        });
    }
    Ok(())
}

fn setup_error(failure: SetupFailure) -> Error {
    match failure {
        SetupFailure::Api(error) => error.into(),
        SetupFailure::Stopped(reason) => Error::ChannelStopped { reason },
    }
}

impl Client {
    /// The lifecycle sink, for public methods of `Client` defined in other modules
    /// (models/typed.rs).
    pub(crate) fn lifecycle_sink(&self) -> &Arc<crate::dispatch::LifecycleSink> {
        &self.inner.shared.dispatcher.lifecycle
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let timeout = self.inner.shared.config.drop_timeout;
        if let Err(error) = self.shutdown(timeout) {
            log::warn!("shutdown on drop: {error}");
        }
    }
}
