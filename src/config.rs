//! config.rs owns every setting of a client, with defaults and validation; it never does I/O.

use crate::backoff::Backoff;
use crate::error::ConfigError;
use std::fmt;
use std::time::Duration;

/// A Genesys Cloud region. Each region is one domain; the client talks to `api.<domain>` and
/// `login.<domain>` (docs/protocol.md, "Hosts and regions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Region {
    /// us-east-1, `mypurecloud.com`.
    UsEast1,
    /// us-east-2 (FedRAMP), `use2.us-gov-pure.cloud`.
    UsEast2,
    /// us-west-2, `usw2.pure.cloud`.
    UsWest2,
    /// ca-central-1, `cac1.pure.cloud`.
    CaCentral1,
    /// sa-east-1, `sae1.pure.cloud`.
    SaEast1,
    /// mx-central-1, `mxc1.pure.cloud`.
    MxCentral1,
    /// eu-west-1, `mypurecloud.ie`.
    EuWest1,
    /// eu-west-2, `euw2.pure.cloud`.
    EuWest2,
    /// eu-central-1, `mypurecloud.de`.
    EuCentral1,
    /// eu-central-2, `euc2.pure.cloud`.
    EuCentral2,
    /// me-central-1, `mec1.pure.cloud`.
    MeCentral1,
    /// ap-south-1, `aps1.pure.cloud`.
    ApSouth1,
    /// ap-southeast-1, `apse1.pure.cloud`.
    ApSoutheast1,
    /// ap-southeast-2, `mypurecloud.com.au`.
    ApSoutheast2,
    /// ap-northeast-1, `mypurecloud.jp`.
    ApNortheast1,
    /// ap-northeast-2, `apne2.pure.cloud`.
    ApNortheast2,
    /// ap-northeast-3, `apne3.pure.cloud`.
    ApNortheast3,
}

const REGIONS: [(Region, &str, &str); 17] = [
    (Region::UsEast1, "us-east-1", "mypurecloud.com"),
    (Region::UsEast2, "us-east-2", "use2.us-gov-pure.cloud"),
    (Region::UsWest2, "us-west-2", "usw2.pure.cloud"),
    (Region::CaCentral1, "ca-central-1", "cac1.pure.cloud"),
    (Region::SaEast1, "sa-east-1", "sae1.pure.cloud"),
    (Region::MxCentral1, "mx-central-1", "mxc1.pure.cloud"),
    (Region::EuWest1, "eu-west-1", "mypurecloud.ie"),
    (Region::EuWest2, "eu-west-2", "euw2.pure.cloud"),
    (Region::EuCentral1, "eu-central-1", "mypurecloud.de"),
    (Region::EuCentral2, "eu-central-2", "euc2.pure.cloud"),
    (Region::MeCentral1, "me-central-1", "mec1.pure.cloud"),
    (Region::ApSouth1, "ap-south-1", "aps1.pure.cloud"),
    (Region::ApSoutheast1, "ap-southeast-1", "apse1.pure.cloud"),
    (Region::ApSoutheast2, "ap-southeast-2", "mypurecloud.com.au"),
    (Region::ApNortheast1, "ap-northeast-1", "mypurecloud.jp"),
    (Region::ApNortheast2, "ap-northeast-2", "apne2.pure.cloud"),
    (Region::ApNortheast3, "ap-northeast-3", "apne3.pure.cloud"),
];

impl Region {
    /// Every region, in the order of docs/protocol.md's table.
    pub fn all() -> impl Iterator<Item = Region> {
        REGIONS.iter().map(|(r, _, _)| *r)
    }

    /// Finds a region by its name (`eu-west-1`) or its domain (`mypurecloud.ie`), ignoring case.
    pub fn from_name(name: &str) -> Option<Region> {
        let name = name.trim();
        REGIONS
            .iter()
            .find(|(_, n, d)| n.eq_ignore_ascii_case(name) || d.eq_ignore_ascii_case(name))
            .map(|(r, _, _)| *r)
    }

    /// The region's name, e.g. `eu-west-1`.
    pub fn name(self) -> &'static str {
        REGIONS.iter().find(|(r, _, _)| *r == self).unwrap().1
    }

    /// The region's domain, e.g. `mypurecloud.ie`.
    pub fn domain(self) -> &'static str {
        REGIONS.iter().find(|(r, _, _)| *r == self).unwrap().2
    }

    /// `https://api.<domain>`.
    pub fn api_base(self) -> String {
        format!("https://api.{}", self.domain())
    }

    /// `https://login.<domain>`.
    pub fn login_base(self) -> String {
        format!("https://login.{}", self.domain())
    }
}

/// The login base that goes with `api_base` when that is `<scheme>://api.<domain>[:port]`:
/// `<scheme>://login.<domain>[:port]`, the pair every region has (docs/protocol.md "Hosts and
/// regions"). `None` for any other host (an emulator, a gateway): the login host is then
/// unknown, never guessed.
pub(crate) fn login_base_for(api_base: &str) -> Option<String> {
    let (scheme, rest) = api_base.split_once("://")?;
    let prefix = rest.get(..4)?;
    let domain = &rest[4..];
    (prefix.eq_ignore_ascii_case("api.") && !domain.is_empty() && !domain.contains('/'))
        .then(|| format!("{scheme}://login.{domain}"))
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `"eu-west-1".parse::<Region>()`, or the domain `"mypurecloud.ie"`, ignoring case and
/// surrounding white space (see [`Region::from_name`]).
///
/// # Errors
/// [`ConfigError`] (field `region`) naming the unknown region and listing the known ones.
impl std::str::FromStr for Region {
    type Err = ConfigError;

    fn from_str(name: &str) -> Result<Region, ConfigError> {
        Region::from_name(name).ok_or_else(|| {
            let known = Region::all()
                .map(Region::name)
                .collect::<Vec<_>>()
                .join(", ");
            let reason = if name.trim().is_empty() {
                format!("is empty: give a region name such as eu-west-1 (known: {known})")
            } else {
                format!(
                    "unknown region {:?} (known: {known})",
                    name.chars().take(64).collect::<String>()
                )
            };
            ConfigError {
                field: "region",
                reason,
            }
        })
    }
}

/// What the socket thread does when a dispatcher queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backpressure {
    /// Wait for room: the socket thread stops reading, so TCP pushes back on the server. Nothing
    /// is lost by the client; a very slow listener can make the server give up on the socket.
    /// Time spent waiting is not counted as server silence. The default.
    #[default]
    Block,
    /// Drop the event that does not fit (the newest), counting it.
    DropNewest,
    /// Drop the oldest queued event to make room for the new one, counting it. The oldest may
    /// be a snapshot ([`Snapshots`]): it is dropped like a live event (taking a later event out
    /// instead would reorder its topic), counted in
    /// [`ResyncHealth::snapshots_dropped`](crate::ResyncHealth::snapshots_dropped) as well, and
    /// the topic's listeners get no snapshot from that resync (the live events that follow
    /// carry its state on).
    DropOldest,
}

/// Every setting of a [`Client`](crate::Client), read back with
/// [`Client::config`](crate::Client::config) and one getter per setting.
///
/// Set through [`ClientBuilder`](crate::ClientBuilder), which has a setter of the same name for
/// each getter here (the fields are private, so a setting added later breaks no one). To copy
/// every setting of one client into another, pass `client.config().clone()` to
/// [`ClientBuilder::config`](crate::ClientBuilder::config).
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) api_base: String,
    pub(crate) login_base: String,
    pub(crate) dispatcher_threads: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) queue_capacity_bytes: usize,
    pub(crate) backpressure: Backpressure,
    pub(crate) ping_interval: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) liveness_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_channels: usize,
    pub(crate) max_topics_per_channel: usize,
    pub(crate) max_message_size: usize,
    pub(crate) listener_warning_threshold: usize,
    pub(crate) drop_timeout: Duration,
    pub(crate) dispatch_lag_threshold: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) snapshots: Snapshots,
    pub(crate) resync_concurrency: usize,
    pub(crate) resync_backoff: Backoff,
    pub(crate) proxy: crate::proxy::ProxyConfig,
    pub(crate) tls: crate::tls::TlsSettings,
    pub(crate) streaming: crate::gateway::StreamingOverride,
}

impl Config {
    /// REST base URL, e.g. `https://api.mypurecloud.com`. Empty in [`Config::default`]: there
    /// is no default region, and a built client always has one.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// The proxy settings: explicit proxy, bypass list, whether the environment is read
    /// (see [`ProxyConfig`](crate::ProxyConfig)).
    pub fn proxy(&self) -> &crate::proxy::ProxyConfig {
        &self.proxy
    }

    /// Which root certificates servers must chain to (default [`TlsRoots::WebPki`](crate::TlsRoots)).
    pub fn tls_roots(&self) -> crate::tls::TlsRoots {
        self.tls.roots
    }

    /// How many extra root certificates were added with
    /// [`ClientBuilder::add_root_certificates`](crate::ClientBuilder::add_root_certificates) or
    /// [`ClientBuilder::add_root_certificates_pem`](crate::ClientBuilder::add_root_certificates_pem).
    pub fn extra_root_certificates(&self) -> usize {
        self.tls.extra.len()
    }

    /// OAuth base URL, e.g. `https://login.mypurecloud.com`. Empty in [`Config::default`]; a
    /// built client has one whenever its API base is `https://api.<domain>` (which gives
    /// `https://login.<domain>`) or one was set, and always when it runs the client-credentials
    /// grant.
    pub fn login_base(&self) -> &str {
        &self.login_base
    }

    /// The socket address override set with
    /// [`ClientBuilder::streaming_base`](crate::ClientBuilder::streaming_base), as
    /// `wss://host[:port]` (or `ws://` for loopback); `None` when the sockets connect to the
    /// `connectUri` as given, or when [`Config::maps_connect_uri`] is set instead.
    pub fn streaming_base(&self) -> Option<String> {
        match &self.streaming {
            crate::gateway::StreamingOverride::Base { scheme, authority } => {
                Some(format!("{scheme}://{authority}"))
            }
            _ => None,
        }
    }

    /// Whether a function set with
    /// [`ClientBuilder::map_connect_uri`](crate::ClientBuilder::map_connect_uri) rewrites every
    /// `connectUri` before the socket connects.
    pub fn maps_connect_uri(&self) -> bool {
        matches!(self.streaming, crate::gateway::StreamingOverride::Map(_))
    }

    /// Dispatcher threads running callbacks. Range 1..=256. Default: one per core but one (the
    /// socket threads need a core), from 1 to 4 (`std::thread::available_parallelism`): 1 on a
    /// 2-core machine, where a second one costs more CPU per event and memory than it gains
    /// (README, "Performance"). Raise it for slow callbacks of many topics on more cores.
    pub fn dispatcher_threads(&self) -> usize {
        self.dispatcher_threads
    }

    /// Capacity of each dispatcher thread's queue, in events. Default 512 (1024 before issue
    /// 20). Range 1..=1 048 576.
    ///
    /// Why 512: a queue only absorbs the jitter between a socket thread and its dispatcher
    /// thread; with [`Backpressure::Block`] (the default) a full queue loses nothing, it
    /// holds the socket thread back, which is woken when the queue has drained to half (256
    /// events to queue without waiting). On 2 cores, 512 read small events (400 bytes) as fast
    /// and at the same CPU per event as 1024 (`benches/load_process`), and a full queue of
    /// them held about 0.5 MiB less (peak RSS 6.4–6.5 against 7.0–7.2 MiB, with a raw baseline
    /// of 5.3–5.4 MiB). Raise it for bursts that must not hold a socket back, or under
    /// `DropNewest`/`DropOldest`, where a full queue drops events.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Capacity of each dispatcher thread's queue, in bytes of queued events (each counts its
    /// frame's length plus about 100 bytes). A queue holding this many bytes is full, as one
    /// holding `queue_capacity` events is, and [`backpressure`](Config::backpressure) applies
    /// (blocked or dropped, and counted, alike); an empty queue always takes one event, however
    /// large (up to `max_message_size`). Default 1 MiB (4 MiB before issue 20: about 140
    /// events of 7 KB; the count limit comes first for events under 2 KB). Range 64 KiB..=1 GiB.
    ///
    /// Why 1 MiB: a socket thread reading large events faster than the callbacks take them
    /// fills its queue to this limit, so it is the peak memory of a busy client. On 2 cores,
    /// 1 MiB read 7 KB events as fast as 4 MiB did and at the same CPU per event
    /// (`benches/load_process`), and the client's peak RSS fell from 11.2–11.4 MiB to
    /// 7.3–7.5 MiB (a raw baseline with a queue of 1 024 frames: 6.9–14 MiB).
    ///
    /// The memory bound: events waiting in the dispatcher queues never take more than
    /// `dispatcher_threads × max(queue_capacity_bytes, max_message_size + 100 bytes)`, plus one
    /// event being delivered per dispatcher thread. The queues themselves cost about 170 bytes
    /// per event they hold, taken as events arrive (blocks of 31 slots) and freed as they leave:
    /// an idle queue holds none. A queued event's frame is a slice of its socket's 32 KiB read
    /// buffer, which stays allocated while any frame of it is queued. One queue holds frames
    /// that follow each other in the buffers (they add about 64 KiB); with several dispatcher
    /// threads, only the first 32 events of a queue keep such slices (the rest get copies), so
    /// read buffers add at most 1 MiB per queue. With the defaults, per dispatcher thread (1 on
    /// a 2-core machine): 1 MiB of events, 85 KiB of slots and at most 1 MiB of buffers.
    pub fn queue_capacity_bytes(&self) -> usize {
        self.queue_capacity_bytes
    }

    /// What happens when a queue is full. Default [`Backpressure::Block`].
    pub fn backpressure(&self) -> Backpressure {
        self.backpressure
    }

    /// Send the application ping `{"message":"ping"}` when a socket has been silent this long.
    /// Default 30 s (the service's heartbeat interval).
    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    /// How long to wait for the pong after a ping before the socket is presumed dead.
    /// Default 15 s.
    pub fn pong_timeout(&self) -> Duration {
        self.pong_timeout
    }

    /// A socket silent for this long is presumed dead even without a ping. Default 60 s (about
    /// twice the 30 s heartbeat).
    ///
    /// The liveness bound: a socket that goes silent is declared dead at
    /// `min(liveness_timeout, ping_interval + pong_timeout)` after its last frame, checked every
    /// quarter of the shortest of the three settings (so at most 25 % later), then replaced.
    /// With the defaults: 45 s, plus at most 3.75 s.
    pub fn liveness_timeout(&self) -> Duration {
        self.liveness_timeout
    }

    /// Deadline for one socket connection: DNS, TCP connect, TLS and the WebSocket handshake
    /// together. Default 20 s (gRPC's connection-backoff minimum connect timeout).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Deadline for one REST call, connection included. Default 30 s.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Most channels this client may create (the service allows 20 per user and OAuth client and
    /// silently evicts beyond that). Default 20. Range 1..=20.
    pub fn max_channels(&self) -> usize {
        self.max_channels
    }

    /// Most topics on one channel (the service's limit is 1 000). Default 1000. Range 1..=1000.
    pub fn max_topics_per_channel(&self) -> usize {
        self.max_topics_per_channel
    }

    /// Largest WebSocket message accepted, in bytes; a larger one is reported and the socket is
    /// replaced. Default 4 MiB.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// A [`Lifecycle::TooManyListeners`](crate::Lifecycle) warning fires when more listeners than
    /// this are registered. Default 10 000.
    pub fn listener_warning_threshold(&self) -> usize {
        self.listener_warning_threshold
    }

    /// How long `Drop` waits for a clean shutdown before leaving threads behind. Default 5 s.
    pub fn drop_timeout(&self) -> Duration {
        self.drop_timeout
    }

    /// [`Lifecycle::DispatchLagHigh`](crate::Lifecycle) fires when the 99th percentile time
    /// events wait in the dispatcher queues over one second exceeds this. Default 50 ms.
    pub fn dispatch_lag_threshold(&self) -> Duration {
        self.dispatch_lag_threshold
    }

    /// Retry policy for connection and REST failures.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// When topics' state is read over REST and delivered as snapshots. Default
    /// [`Snapshots::AfterGaps`](Snapshots::AfterGaps); `Off` makes no state request.
    pub fn snapshots(&self) -> Snapshots {
        self.snapshots
    }

    /// Most state requests in flight at once during a resync (1..=8). Default 2.
    pub fn resync_concurrency(&self) -> usize {
        self.resync_concurrency
    }

    /// Retry policy of state requests. Default: base 500 ms, cap 30 s, `Retry-After` honoured
    /// up to 300 s, 5 retries per request (then [`Lifecycle::ResyncFailed`](crate::Lifecycle)).
    pub fn resync_backoff(&self) -> &Backoff {
        &self.resync_backoff
    }
}

/// One dispatcher thread per core but one (each channel's socket thread needs a core too), 1 to
/// 4: 1 on a 2-core machine, where a second dispatcher took more CPU per event and memory and was
/// no faster (benches/load_process, README "Performance").
fn default_dispatcher_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).clamp(1, 4))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            // No default region: a client of an EU org sent to us-east-1 sees what looks like
            // bad credentials, so the region is a setting `validate` insists on.
            api_base: String::new(),
            login_base: String::new(),
            dispatcher_threads: default_dispatcher_threads(),
            queue_capacity: 512,
            queue_capacity_bytes: 1 << 20,
            backpressure: Backpressure::Block,
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(15),
            liveness_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
            max_channels: 20,
            max_topics_per_channel: 1000,
            max_message_size: 4 << 20,
            listener_warning_threshold: 10_000,
            drop_timeout: Duration::from_secs(5),
            dispatch_lag_threshold: Duration::from_millis(50),
            backoff: Backoff::default(),
            snapshots: Snapshots::default(),
            resync_concurrency: 2,
            resync_backoff: Backoff::default()
                .base(Duration::from_millis(500))
                .cap(Duration::from_secs(30))
                .max_retries(Some(5)),
            proxy: crate::proxy::ProxyConfig::new(),
            tls: crate::tls::TlsSettings::default(),
            streaming: crate::gateway::StreamingOverride::None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("api_base", &self.api_base)
            .field("login_base", &self.login_base)
            .field("dispatcher_threads", &self.dispatcher_threads)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_capacity_bytes", &self.queue_capacity_bytes)
            .field("backpressure", &self.backpressure)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("liveness_timeout", &self.liveness_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_channels", &self.max_channels)
            .field("max_topics_per_channel", &self.max_topics_per_channel)
            .field("max_message_size", &self.max_message_size)
            .field(
                "listener_warning_threshold",
                &self.listener_warning_threshold,
            )
            .field("drop_timeout", &self.drop_timeout)
            .field("dispatch_lag_threshold", &self.dispatch_lag_threshold)
            .field("backoff", &self.backoff)
            .field("snapshots", &self.snapshots)
            .field("resync_concurrency", &self.resync_concurrency)
            .field("resync_backoff", &self.resync_backoff)
            .field("proxy", &self.proxy)
            .field("tls_roots", &self.tls.roots)
            .field("extra_root_certificates", &self.tls.extra.len())
            .field("streaming", &self.streaming)
            .finish()
    }
}

/// The shortest ping interval, pong timeout and liveness timeout accepted (a faster ping would
/// flood the service).
const MIN_PING: Duration = Duration::from_millis(50);
/// The smallest `queue_capacity_bytes` accepted.
const MIN_QUEUE_BYTES: usize = 64 << 10;
/// The smallest `max_message_size` accepted, in bytes.
const MIN_MESSAGE_SIZE: usize = 1024;

fn bad(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

/// Checks a REST or OAuth base URL for `field` (see [`crate::url::check_rest_base`]).
fn check_base_url(field: &'static str, url: &str) -> Result<(), ConfigError> {
    crate::url::check_rest_base(url).map_err(|reason| bad(field, reason))
}

impl Config {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting out of range: a zero or out-of-range count; a
    /// `max_message_size` below 1 KiB; a ping interval, pong timeout or liveness timeout below
    /// 50 ms or above 1 h; a connect or request timeout of zero or above 1 h; a drop timeout or
    /// dispatch lag threshold above 1 h (the threshold also above zero); backoff durations above
    /// 1 day (base and cap above zero); a ping interval not below the liveness timeout; a base
    /// URL that is not `https` (plain `http` is accepted only for loopback hosts) or that holds
    /// white space, user info, a query, a fragment, an invalid port or a path ending in `/api`
    /// or `/api/v2` (a other path is kept as a gateway's prefix); or a backoff
    /// base above its cap. No region (an empty API base, as in [`Config::default`]) is an
    /// error naming `region`; an empty login base is accepted (only the client-credentials grant
    /// needs one, and [`ClientBuilder::build`](crate::ClientBuilder::build) checks that).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.api_base.is_empty() {
            return Err(bad(
                "region",
                "no region set: call region(Region::EuWest1), region_name(\"eu-west-1\") or \
                 api_base(\"https://api.<domain>\"); there is no default region (a client sent \
                 to the wrong one sees its credentials refused)",
            ));
        }
        check_base_url("api_base", &self.api_base)?;
        if !self.login_base.is_empty() {
            check_base_url("login_base", &self.login_base)?;
        }
        let in_range = |field, value: usize, max: usize| {
            if value == 0 || value > max {
                Err(bad(field, format!("{value} is outside 1..={max}")))
            } else {
                Ok(())
            }
        };
        in_range("dispatcher_threads", self.dispatcher_threads, 256)?;
        in_range("queue_capacity", self.queue_capacity, 1 << 20)?;
        in_range("queue_capacity_bytes", self.queue_capacity_bytes, 1 << 30)?;
        if self.queue_capacity_bytes < MIN_QUEUE_BYTES {
            return Err(bad(
                "queue_capacity_bytes",
                format!(
                    "{} bytes is below {MIN_QUEUE_BYTES}",
                    self.queue_capacity_bytes
                ),
            ));
        }
        in_range("max_channels", self.max_channels, 20)?;
        in_range("resync_concurrency", self.resync_concurrency, 8)?;
        in_range("max_topics_per_channel", self.max_topics_per_channel, 1000)?;
        in_range("max_message_size", self.max_message_size, 1 << 30)?;
        if self.max_message_size < MIN_MESSAGE_SIZE {
            return Err(bad(
                "max_message_size",
                format!(
                    "{} bytes is below {MIN_MESSAGE_SIZE}: even heartbeats would not fit",
                    self.max_message_size
                ),
            ));
        }
        in_range(
            "listener_warning_threshold",
            self.listener_warning_threshold,
            usize::MAX,
        )?;
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(86_400);
        // Lower bounds keep pings polite to the service; upper bounds keep deadline arithmetic
        // far from overflow and catch values that are surely mistakes.
        for (field, value, min, max) in [
            ("ping_interval", self.ping_interval, MIN_PING, HOUR),
            ("pong_timeout", self.pong_timeout, MIN_PING, HOUR),
            ("liveness_timeout", self.liveness_timeout, MIN_PING, HOUR),
            (
                "connect_timeout",
                self.connect_timeout,
                Duration::from_millis(1),
                HOUR,
            ),
            (
                "request_timeout",
                self.request_timeout,
                Duration::from_millis(1),
                HOUR,
            ),
            ("drop_timeout", self.drop_timeout, Duration::ZERO, HOUR),
            (
                "dispatch_lag_threshold",
                self.dispatch_lag_threshold,
                Duration::from_micros(1),
                HOUR,
            ),
            (
                "backoff.base",
                self.backoff.base,
                Duration::from_millis(1),
                DAY,
            ),
            (
                "backoff.cap",
                self.backoff.cap,
                Duration::from_millis(1),
                DAY,
            ),
            (
                "backoff.retry_after_cap",
                self.backoff.retry_after_cap,
                Duration::ZERO,
                DAY,
            ),
            (
                "backoff.reset_after",
                self.backoff.reset_after,
                Duration::ZERO,
                DAY,
            ),
            (
                "resync_backoff.base",
                self.resync_backoff.base,
                Duration::from_millis(1),
                DAY,
            ),
            (
                "resync_backoff.cap",
                self.resync_backoff.cap,
                Duration::from_millis(1),
                DAY,
            ),
            (
                "resync_backoff.retry_after_cap",
                self.resync_backoff.retry_after_cap,
                Duration::ZERO,
                DAY,
            ),
        ] {
            if value < min || value > max {
                return Err(bad(
                    field,
                    format!("{value:?} is outside {min:?}..={max:?}"),
                ));
            }
        }
        if self.ping_interval >= self.liveness_timeout {
            return Err(bad(
                "ping_interval",
                format!(
                    "{:?} must be shorter than liveness_timeout ({:?}) or no ping is ever sent",
                    self.ping_interval, self.liveness_timeout
                ),
            ));
        }
        if self.resync_backoff.base > self.resync_backoff.cap {
            return Err(bad(
                "resync_backoff.base",
                format!(
                    "{:?} is above resync_backoff.cap ({:?})",
                    self.resync_backoff.base, self.resync_backoff.cap
                ),
            ));
        }
        if self.backoff.base > self.backoff.cap {
            return Err(bad(
                "backoff.base",
                format!(
                    "{:?} is above backoff.cap ({:?})",
                    self.backoff.base, self.backoff.cap
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults with a region, the one setting that has none.
    fn in_a_region() -> Config {
        Config {
            api_base: Region::EuWest1.api_base(),
            login_base: Region::EuWest1.login_base(),
            ..Config::default()
        }
    }

    /// Issue 17, point 12: no region is an error naming it, never us-east-1 by default.
    #[test]
    fn no_default_region() {
        let e = Config::default().validate().unwrap_err();
        assert_eq!(e.field, "region", "{e}");
        assert!(e.reason.contains("api_base"), "{e}");
        let api_only = Config {
            api_base: "http://127.0.0.1:9".into(),
            ..Config::default()
        };
        api_only.validate().unwrap();
    }

    #[test]
    fn the_login_base_follows_an_api_dot_domain_base_only() {
        assert_eq!(
            login_base_for("https://api.mypurecloud.ie").as_deref(),
            Some("https://login.mypurecloud.ie")
        );
        assert_eq!(
            login_base_for("https://API.example.test:8443").as_deref(),
            Some("https://login.example.test:8443")
        );
        for other in [
            "http://127.0.0.1:9",
            "https://gw.example.com",
            "https://api.",
            "https://api.example.com/x",
            "api.example.com",
            "",
        ] {
            assert_eq!(login_base_for(other), None, "{other}");
        }
    }

    /// Issue 17, point 13: a region is a typed value that parses from its name or domain.
    #[test]
    fn regions_parse_from_name_or_domain_and_name_the_unknown() {
        assert_eq!("eu-west-1".parse::<Region>().unwrap(), Region::EuWest1);
        assert_eq!(
            " MYPURECLOUD.IE ".parse::<Region>().unwrap(),
            Region::EuWest1
        );
        for region in Region::all() {
            assert_eq!(region.to_string().parse::<Region>().unwrap(), region);
        }
        let e = "eu-west-9".parse::<Region>().unwrap_err();
        assert_eq!(e.field, "region");
        assert!(
            e.reason.contains("eu-west-9") && e.reason.contains("eu-central-1"),
            "{e}"
        );
        // Review finding: an empty name said `unknown region ""`.
        for empty in ["", "  "] {
            let e = empty.parse::<Region>().unwrap_err();
            assert!(e.to_string().starts_with("invalid region: is empty"), "{e}");
        }
    }

    #[test]
    fn regions_resolve_by_name_and_domain() {
        assert_eq!(Region::from_name("eu-west-1"), Some(Region::EuWest1));
        assert_eq!(Region::from_name("MYPURECLOUD.IE"), Some(Region::EuWest1));
        assert_eq!(Region::from_name("mars-1"), None);
        assert_eq!(
            Region::ApNortheast3.api_base(),
            "https://api.apne3.pure.cloud"
        );
        assert_eq!(
            Region::UsEast2.login_base(),
            "https://login.use2.us-gov-pure.cloud"
        );
        assert_eq!(Region::all().count(), 17);
        for r in Region::all() {
            assert_eq!(Region::from_name(r.name()), Some(r));
        }
    }

    #[test]
    fn durations_that_would_overflow_or_flood_are_refused() {
        let field = |c: Config| c.validate().unwrap_err().field;
        let d = in_a_region;
        assert_eq!(
            field(Config {
                request_timeout: Duration::MAX,
                ..d()
            }),
            "request_timeout"
        );
        assert_eq!(
            field(Config {
                connect_timeout: Duration::MAX,
                ..d()
            }),
            "connect_timeout"
        );
        assert_eq!(
            field(Config {
                ping_interval: Duration::from_nanos(1),
                pong_timeout: Duration::from_nanos(1),
                ..d()
            }),
            "ping_interval"
        );
        assert_eq!(
            field(Config {
                max_message_size: 1,
                ..d()
            }),
            "max_message_size"
        );
        assert_eq!(
            field(Config {
                dispatch_lag_threshold: Duration::ZERO,
                ..d()
            }),
            "dispatch_lag_threshold"
        );
        let mut c = d();
        c.backoff.cap = Duration::MAX;
        assert_eq!(field(c), "backoff.cap");
        let mut c = d();
        c.listener_warning_threshold = 0;
        assert_eq!(field(c), "listener_warning_threshold");
        let mut c = d();
        c.resync_concurrency = 9;
        assert_eq!(field(c), "resync_concurrency");
        let mut c = d();
        c.resync_backoff.base = c.resync_backoff.cap + Duration::from_secs(1);
        assert_eq!(field(c), "resync_backoff.base");
    }

    #[test]
    fn getters_read_every_setting() {
        let c = Config {
            api_base: "https://api.example.test".into(),
            login_base: "https://login.example.test".into(),
            dispatcher_threads: 3,
            queue_capacity: 5,
            queue_capacity_bytes: 6 << 20,
            backpressure: Backpressure::DropOldest,
            ping_interval: Duration::from_secs(7),
            pong_timeout: Duration::from_secs(8),
            liveness_timeout: Duration::from_secs(9),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(11),
            max_channels: 12,
            max_topics_per_channel: 13,
            max_message_size: 14_000,
            listener_warning_threshold: 15,
            drop_timeout: Duration::from_secs(16),
            dispatch_lag_threshold: Duration::from_millis(17),
            backoff: Backoff::default().max_retries(Some(18)),
            snapshots: Snapshots::AfterGapsAndSubscribe,
            resync_concurrency: 4,
            resync_backoff: Backoff::default().max_retries(Some(19)),
            proxy: crate::proxy::ProxyConfig {
                proxy: Some(crate::proxy::Proxy::parse("http://proxy.example.test:3128").unwrap()),
                ..crate::proxy::ProxyConfig::new()
            },
            tls: crate::tls::TlsSettings {
                roots: crate::tls::TlsRoots::Platform,
                extra: Vec::new(),
            },
            streaming: crate::gateway::StreamingOverride::None,
        };
        assert_eq!(
            c.proxy().proxy.as_ref().map(|p| p.host()),
            Some("proxy.example.test")
        );
        assert_eq!(c.tls_roots(), crate::tls::TlsRoots::Platform);
        assert_eq!(c.extra_root_certificates(), 0);
        assert_eq!(c.api_base(), "https://api.example.test");
        assert_eq!(c.login_base(), "https://login.example.test");
        assert_eq!(c.dispatcher_threads(), 3);
        assert_eq!(c.queue_capacity(), 5);
        assert_eq!(c.queue_capacity_bytes(), 6 << 20);
        assert_eq!(c.backpressure(), Backpressure::DropOldest);
        assert_eq!(c.ping_interval(), Duration::from_secs(7));
        assert_eq!(c.pong_timeout(), Duration::from_secs(8));
        assert_eq!(c.liveness_timeout(), Duration::from_secs(9));
        assert_eq!(c.connect_timeout(), Duration::from_secs(10));
        assert_eq!(c.request_timeout(), Duration::from_secs(11));
        assert_eq!(c.max_channels(), 12);
        assert_eq!(c.max_topics_per_channel(), 13);
        assert_eq!(c.max_message_size(), 14_000);
        assert_eq!(c.listener_warning_threshold(), 15);
        assert_eq!(c.drop_timeout(), Duration::from_secs(16));
        assert_eq!(c.dispatch_lag_threshold(), Duration::from_millis(17));
        assert_eq!(c.backoff(), &Backoff::default().max_retries(Some(18)));
        assert_eq!(c.snapshots(), Snapshots::AfterGapsAndSubscribe);
        assert_eq!(c.resync_concurrency(), 4);
        assert_eq!(
            c.resync_backoff(),
            &Backoff::default().max_retries(Some(19))
        );
        c.validate().unwrap();
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        // Issue 17 point 12: the defaults alone have no region (`no_default_region`); with one
        // they are valid.
        in_a_region().validate().unwrap();
        let mut c = Config {
            queue_capacity: 0,
            ..in_a_region()
        };
        assert_eq!(c.validate().unwrap_err().field, "queue_capacity");
        c.queue_capacity = 8;
        c.max_channels = 21;
        assert_eq!(c.validate().unwrap_err().field, "max_channels");
        c.max_channels = 20;
        c.ping_interval = Duration::from_secs(90);
        assert_eq!(c.validate().unwrap_err().field, "ping_interval");
        c.ping_interval = Duration::from_secs(1);
        c.backoff.base = Duration::from_secs(120);
        assert_eq!(c.validate().unwrap_err().field, "backoff.base");
    }
}

/// When the client reads topics' state over REST and delivers it as snapshots
/// ([`Event::is_snapshot`](crate::Event::is_snapshot)).
///
/// A snapshot goes to the same listeners as the topic's live events, under the same topic name,
/// with a body in the topic's event shape. Only topics with a state resource get snapshots
/// (built in: `v2.users.{id}.presence` and `v2.users.{id}.routingStatus`, also through the
/// combined `v2.users.{id}?presence&routingStatus`; more with
/// [`ClientBuilder::state_resource`](crate::ClientBuilder::state_resource)); for the others the
/// [`Lifecycle::Gap`](crate::Lifecycle::Gap) stays the only signal.
///
/// Order and freshness: a snapshot's fetch begins just before its request is sent; if a live
/// event of the topic is read from the socket after that moment, the snapshot is skipped (the
/// live event carries state at least as new), else it is delivered in the topic's queue, before
/// every live event read after the answer. Live events are never held back, dropped or
/// reordered for a snapshot. So a snapshot never follows a newer live event, and the listener's
/// latest view ends equal to the server's state. This relies on each live event carrying the
/// topic's whole state, as presence and routing-status events do; a user-supplied resource for
/// a topic whose events are changes should take that into account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Snapshots {
    /// No snapshots and no state requests at all: the [`Lifecycle::Gap`](crate::Lifecycle::Gap) is the only signal.
    Off,
    /// After every gap, for the gap's topics (the default).
    #[default]
    AfterGaps,
    /// After every gap, and right after a topic is first subscribed (so a dashboard starts
    /// with the current state instead of waiting for the next change).
    AfterGapsAndSubscribe,
}
