//! client/builder.rs owns [`ClientBuilder`]: collecting settings and credentials, checking
//! them, and starting the client's threads in `build`; it never creates a channel (the first
//! subscribe does).

use super::{Client, Inner};
use crate::api::Api;
use crate::auth::{
    AuthEvent, ClientCredentials, Refresher, StaticToken, TokenManager, TokenSource,
};
use crate::backoff::Backoff;
use crate::channel::Shared;
use crate::config::Snapshots;
use crate::config::{Backpressure, Config, Region};
use crate::dispatch::Dispatcher;
use crate::error::ConfigError;
use crate::error::Error;
use crate::event::Lifecycle;
use crate::listener::Registry;
use crate::pool::ThreadPool;
use crate::proxy::IntoProxy;
use crate::redact::Redacted;
use crate::resync::{Engine, ResyncSettings, StateResource};
use crate::tls::RootCertificate;
use parking_lot::{Mutex, RwLock};
use std::any::Any;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

enum TokenChoice {
    /// [`ClientBuilder::client_credentials`]: the grant against the client's login base.
    ClientCredentials {
        client_id: String,
        secret: String,
    },
    /// A [`ClientCredentials`] handed to [`ClientBuilder::token_source`]: its own login base,
    /// the client's network.
    Grant(ClientCredentials),
    Static(String),
    Source(Box<dyn TokenSource>),
}

/// Bad inputs a builder remembers (the first is the one reported).
const MAX_KEPT_ERRORS: usize = 16;

/// Builds a [`Client`]: where to connect, how to authenticate, and the settings of
/// [`Config`]. Every setter takes the unit named in its docs.
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    config: Config,
    token: Option<TokenChoice>,
    /// The bad inputs of the setters that parse, in the order given (see
    /// [`ClientBuilder::fail`]); the first is reported.
    errors: Vec<ConfigError>,
    /// User-supplied state resources ([`ClientBuilder::state_resource`]).
    resync_resources: Vec<StateResource>,
    /// Whether [`ClientBuilder::api_base`] / [`ClientBuilder::login_base`] were called: an
    /// explicit base wins over a region's, whatever the order of the calls.
    explicit_bases: (bool, bool),
    /// [`ClientBuilder::thread_pool`].
    pool: Option<ThreadPool>,
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            config: Config::default(),
            token: None,
            errors: Vec::new(),
            resync_resources: Vec::new(),
            explicit_bases: (false, false),
            pool: None,
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = match &self.token {
            Some(TokenChoice::ClientCredentials { client_id, .. }) => {
                format!("client credentials (client id {client_id}, secret {Redacted:?})")
            }
            Some(TokenChoice::Grant(grant)) => format!("{grant:?}"),
            Some(TokenChoice::Static(_)) => format!("static token {Redacted:?}"),
            Some(TokenChoice::Source(_)) => "custom token source".to_owned(),
            None => "none".to_owned(),
        };
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("token", &token)
            .field("state_resources", &self.resync_resources)
            .field("thread_pool", &self.pool)
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
    /// Records a bad input for [`ClientBuilder::build`] to report. The first one is kept: it is
    /// the first the user wrote, and a later one may only follow from it.
    fn fail(mut self, error: ConfigError) -> Self {
        // Bounded: a builder fed bad input in a loop keeps the first few.
        if self.errors.len() < MAX_KEPT_ERRORS {
            self.errors.push(error);
        }
        self
    }

    /// Uses the region's `api.<domain>` and `login.<domain>` hosts (docs/protocol.md "Hosts and
    /// regions"). There is no default region: one of `region`, [`ClientBuilder::region_name`]
    /// or [`ClientBuilder::api_base`] is required, else [`ClientBuilder::build`] fails naming
    /// `region`. A name read from configuration parses with `"eu-west-1".parse::<Region>()`.
    ///
    /// Precedence, whatever the order of the calls: an explicit [`ClientBuilder::login_base`]
    /// wins; else the login host of an explicit [`ClientBuilder::api_base`] of the form
    /// `https://api.<domain>` (`https://login.<domain>`); else the region's. An explicit
    /// `api_base` wins over the region's API host. Of two regions, the last one counts.
    pub fn region(mut self, region: Region) -> Self {
        if !self.explicit_bases.0 {
            self.config.api_base = region.api_base();
        }
        if !self.explicit_bases.1 {
            self.config.login_base = region.login_base();
        }
        // A valid region replaces an unknown name given before: that input no longer counts.
        self.errors.retain(|e| e.field != "region");
        self
    }

    /// Uses the region named like `eu-west-1` (or its domain, like `mypurecloud.ie`), ignoring
    /// case. An unknown name makes [`ClientBuilder::build`] fail with [`Error::Config`] naming
    /// `region` and listing the known ones (unless an earlier setter already failed: the first
    /// bad input is the one reported). To handle the error where the name is read, parse it
    /// (`name.parse::<Region>()?`) and call [`ClientBuilder::region`].
    pub fn region_name(self, name: &str) -> Self {
        match name.parse::<Region>() {
            Ok(region) => self.region(region),
            Err(error) => self.fail(error),
        }
    }

    /// The REST base URL, e.g. `https://api.mypurecloud.com` (emulators, test servers, new
    /// regions). Plain `http` is accepted only for loopback hosts. Unless a region or
    /// [`ClientBuilder::login_base`] sets the login host, a base `https://api.<domain>` gives
    /// `https://login.<domain>`; any other base gives none, and
    /// [`ClientBuilder::client_credentials`] then needs `login_base`. It wins over
    /// [`ClientBuilder::region`] in either order. A path is kept as a prefix of every request
    /// path (a gateway); [`ClientBuilder::build`] refuses an empty URL, white space, user info,
    /// a query or fragment, a WebSocket or other scheme, and a path ending in `/api/v2`, naming
    /// `api_base`.
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.explicit_bases.0 = true;
        self.config.api_base = url.trim_end_matches('/').to_owned();
        if url.trim().is_empty() {
            // Not "no region": the user gave a base, and it is empty.
            return self.fail(ConfigError {
                field: "api_base",
                reason: "is empty: give the scheme and host, like https://api.mypurecloud.com"
                    .into(),
            });
        }
        self
    }

    /// The OAuth base URL, e.g. `https://login.mypurecloud.com`. Plain `http` is accepted only
    /// for loopback hosts. It wins over [`ClientBuilder::region`] in either order;
    /// [`ClientBuilder::build`] refuses what it refuses for [`ClientBuilder::api_base`], naming
    /// `login_base`.
    pub fn login_base(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.explicit_bases.1 = true;
        self.config.login_base = url.trim_end_matches('/').to_owned();
        if url.trim().is_empty() {
            return self.fail(ConfigError {
                field: "login_base",
                reason: "is empty: give the scheme and host, like https://login.mypurecloud.com"
                    .into(),
            });
        }
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
    ///
    /// A [`ClientCredentials`] handed here as it is makes its token requests like the client's
    /// own grant: through the client's proxy, verified against its trust roots, and its login
    /// base held to the HTTPS rule at [`ClientBuilder::build`] (which fails naming
    /// `login_base` otherwise). Other sources make their own requests, if any.
    pub fn token_source<S: TokenSource>(mut self, source: S) -> Self {
        // Recognised by type, because a `ClientCredentials` built with its public constructor
        // has its own direct agent, which would go around the proxy and roots set here.
        let mut source = Some(source);
        let grant = (&mut source as &mut dyn Any)
            .downcast_mut::<Option<ClientCredentials>>()
            .and_then(Option::take);
        self.token = match grant {
            Some(grant) => Some(TokenChoice::Grant(grant)),
            None => source.map(|s| TokenChoice::Source(Box::new(s))),
        };
        self
    }

    /// Runs this client's callbacks (event and lifecycle) and token refreshes on `pool`, shared
    /// with the other clients built with it, instead of threads of its own: the client then
    /// starts no dispatcher, lifecycle or token-refresher thread, only its channel threads (one
    /// per notification channel) and, when a resync is needed, its resync thread. Its events
    /// go through queues of its own as without a pool ([`Config::queue_capacity`],
    /// [`Config::queue_capacity_bytes`], [`Config::backpressure`]), split by topic into
    /// [`Config::dispatcher_threads`] queues, at most the pool's thread count; each queue is
    /// served by one pool thread at a time, so per-topic order holds.
    ///
    /// What it gives up: a callback that blocks holds one of the pool's threads, and while all
    /// of them are held every pooled client's events wait in their queues (then their
    /// backpressure policy applies), and so does a [`Client::shutdown`] called from outside
    /// the pool, which delivers those events first (at most its timeout). See the crate docs,
    /// "Many clients in one process".
    /// [`ClientBuilder::config`] keeps the pool.
    pub fn thread_pool(mut self, pool: &ThreadPool) -> Self {
        self.pool = Some(pool.clone());
        self
    }

    /// Replaces every setting at once (the token choice is kept).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    setter!(
        /// Dispatcher threads running callbacks (1..=256; default one per core but one, 1 to 4:
        /// 1 on a 2-core machine). With [`ClientBuilder::thread_pool`]: the queues this client's
        /// events are split into by topic (at most the pool's thread count), each served by one
        /// pool thread at a time.
        dispatcher_threads: usize
    );
    setter!(
        /// Capacity of each dispatcher queue, in events (default 512; see
        /// [`Config::queue_capacity`] for why).
        queue_capacity: usize
    );
    setter!(
        /// Capacity of each dispatcher queue, in bytes of queued events (default 1 MiB; see
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
    /// refresher; none of them with [`ClientBuilder::thread_pool`]). No channel is created
    /// until the first [`Client::subscribe`].
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting:
    /// - the first bad input given to a setter that parses (an unknown region name, a proxy
    ///   URL, PEM text, a streaming base), even when later calls were fine;
    /// - `region` when neither a region nor an API base was set (there is no default region);
    /// - `login_base` when the client-credentials grant has no login host (an API base not of
    ///   the form `https://api.<domain>`, without [`ClientBuilder::login_base`]), or a
    ///   [`ClientCredentials`] handed to [`ClientBuilder::token_source`] has a plain `http`
    ///   login base to a host that is not loopback;
    /// - a setting out of range (see [`Config::validate`]);
    /// - `token` for no token source, or `client_id`, `client_secret`, `access_token` when one
    ///   is empty or holds white space or control characters.
    ///
    /// - `thread_pool` when the [`ThreadPool`] given to [`ClientBuilder::thread_pool`] was shut
    ///   down.
    ///
    /// [`Error::Spawn`] when the dispatcher or lifecycle threads could not be started.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(error) = self.errors.into_iter().next() {
            return Err(Error::Config(error));
        }
        let mut config = self.config;
        // An explicit `https://api.<domain>` base gives its own login host over a region's;
        // an explicit login base wins over both.
        let (api_explicit, login_explicit) = self.explicit_bases;
        if !login_explicit && (config.login_base.is_empty() || api_explicit) {
            if let Some(login_base) = crate::config::login_base_for(&config.api_base) {
                config.login_base = login_base;
            }
        }
        config.validate()?;
        if self.pool.as_ref().is_some_and(ThreadPool::is_shut_down) {
            return Err(Error::Config(ConfigError {
                field: "thread_pool",
                reason: "the thread pool has been shut down".into(),
            }));
        }
        let resync = ResyncSettings {
            snapshots: config.snapshots,
            concurrency: config.resync_concurrency,
            backoff: config.resync_backoff.clone(),
            custom: self.resync_resources,
        };
        check_credentials(&self.token)?;
        check_login_base(&self.token, &config)?;
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
            Some(TokenChoice::Grant(mut grant)) => {
                grant.use_agent(network.agent(grant.login_base(), grant.request_timeout()));
                Box::new(grant)
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
        let limits = crate::dispatch::QueueLimits {
            capacity: config.queue_capacity,
            capacity_bytes: config.queue_capacity_bytes,
        };
        let dispatcher = match &self.pool {
            Some(pool) => Dispatcher::start_pooled(
                registry.clone(),
                pool,
                config.dispatcher_threads.min(pool.threads()),
                limits,
                config.backpressure,
                config.dispatch_lag_threshold,
            ),
            None => Dispatcher::start(
                registry.clone(),
                config.dispatcher_threads,
                limits,
                config.backpressure,
                config.dispatch_lag_threshold,
            )
            .map_err(thread_error)?,
        };
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
        let refresher = match &self.pool {
            Some(pool) => Refresher::Pooled(tokens.start_pooled_refresher(pool.downgrade())),
            None => Refresher::Thread(tokens.start_refresher()),
        };
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
        // A pooled client starts its resync thread at its first resync (most never have one).
        let engine = Engine::start(shared.clone(), slots.clone(), resync, self.pool.is_some())
            .map_err(thread_error)?;
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
    /// Takes the URL as text (`&str`, `&String`) or a [`Proxy`](crate::Proxy) parsed with
    /// [`Proxy::parse`](crate::Proxy::parse) (see [`IntoProxy`]). Unusable text (another
    /// scheme, no host, bad port) makes [`ClientBuilder::build`] fail with [`Error::Config`]
    /// naming the field `proxy`, unless an earlier setter already failed (the first bad input
    /// is the one reported); parse it first to handle that error where the URL is read.
    pub fn proxy(self, proxy: impl IntoProxy) -> Self {
        match proxy.into_proxy() {
            Ok(proxy) => {
                let mut builder = self;
                builder.config.proxy.proxy = Some(proxy);
                builder
            }
            Err(error) => self.fail(error),
        }
    }

    /// The hosts that bypass the proxy, curl's `NO_PROXY` syntax: comma-separated host names
    /// (each also covers its subdomains), `.domain` or `*.domain`, IP addresses or CIDR blocks,
    /// each optionally with `:port`; `*` for all. Overrides `NO_PROXY` from the environment.
    /// [`ClientBuilder::build`] fails naming `no_proxy` and the first bad entry (its position
    /// and what is wrong) for an empty entry (a stray comma), a port outside 1..=65535, an
    /// address or CIDR block that does not parse (`::::`), a `*` other than alone or as a
    /// leading `*.` (`*.*.*`), or a character no host name holds. `NO_PROXY` read from the
    /// environment is checked the same way, except that empty entries are skipped there.
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

    /// Adds certificates to the trusted roots (of either [`TlsRoots`](crate::TlsRoots) set),
    /// already parsed and checked with [`RootCertificate::parse_pem`] or
    /// [`RootCertificate::from_der`], so this setter cannot fail.
    pub fn add_root_certificates(
        mut self,
        certificates: impl IntoIterator<Item = RootCertificate>,
    ) -> Self {
        self.config
            .tls
            .extra
            .extend(certificates.into_iter().map(RootCertificate::into_der));
        self
    }

    /// Adds the `CERTIFICATE` blocks of `pem` (PEM text, e.g. a corporate CA's file) to the
    /// trusted roots. Text without a certificate, or a block that does not decode to an X.509
    /// certificate, makes [`ClientBuilder::build`] fail with [`Error::Config`] naming
    /// `root_certificates` (unless an earlier setter already failed: the first bad input is the
    /// one reported); [`ClientBuilder::add_root_certificates`] with
    /// [`RootCertificate::parse_pem`] reports it where the file is read instead.
    pub fn add_root_certificates_pem(self, pem: impl AsRef<[u8]>) -> Self {
        match RootCertificate::parse_pem(pem) {
            Ok(certificates) => self.add_root_certificates(certificates),
            Err(error) => self.fail(error),
        }
    }

    /// Connects the notification sockets to a gateway instead of the host in `connectUri`:
    /// `https://gateway.example.com[:port]` replaces scheme, host and port and keeps the
    /// `connectUri`'s path and query (which carry the channel id). `http` is accepted only for
    /// loopback hosts. An unusable URL makes [`ClientBuilder::build`] fail with
    /// [`Error::Config`] naming `streaming_base` (unless an earlier setter already failed: the
    /// first bad input is the one reported).
    pub fn streaming_base(self, url: &str) -> Self {
        match crate::gateway::StreamingOverride::parse_base(url) {
            Ok(streaming) => {
                let mut builder = self;
                builder.config.streaming = streaming;
                builder
            }
            Err(error) => self.fail(error),
        }
    }

    /// Maps each `connectUri` the service gives to the address to connect to, for gateways
    /// that need more than [`ClientBuilder::streaming_base`]. The result is checked like any
    /// `connectUri` (`wss`, or `ws` to loopback only). The function must not block.
    pub fn map_connect_uri(mut self, map: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.config.streaming = crate::gateway::StreamingOverride::Map(Arc::new(map));
        self
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
        Some(TokenChoice::Grant(grant)) => {
            let (client_id, secret) = grant.credentials();
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

/// The login host the client-credentials grant posts to: the client's (set, or derived from an
/// `https://api.<domain>` API base), or that of a [`ClientCredentials`] handed to
/// `token_source`, held to the HTTPS rule of every base URL. A grant without one fails here,
/// naming `login_base`, rather than posting the credentials to some default region's host.
fn check_login_base(token: &Option<TokenChoice>, config: &Config) -> Result<(), ConfigError> {
    let login_base = match token {
        Some(TokenChoice::ClientCredentials { .. }) => config.login_base.as_str(),
        Some(TokenChoice::Grant(grant)) => grant.login_base(),
        _ => return Ok(()),
    };
    if login_base.is_empty() {
        return Err(ConfigError {
            field: "login_base",
            reason: format!(
                "not set, and the API base {} is not https://api.<domain> (which would give \
                 https://login.<domain>): call login_base(..) or region(..)",
                crate::url::redacted(&config.api_base)
            ),
        });
    }
    crate::url::check_rest_base(login_base).map_err(|reason| ConfigError {
        field: "login_base",
        reason,
    })
}
