// genesys-tail (also `cargo run --example tail`): follow Genesys Cloud
// notification topics from the command line. The user-facing description is in `Args`'s `--help` text below and in
// examples/tail.rs; this file is the one source of both the installed binary (feature `cli`)
// and the example.

use clap::{Parser, ValueEnum};
use genesys_notify::cli::{CredentialArgs, NetworkArgs, SettingsError};
use genesys_notify::{
    Backpressure, Client, Error, Event, Lifecycle, ListenerGuard, Pattern, Snapshots, Topic,
};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The program's name: `genesys-tail` installed, `tail` as the example.
const NAME: &str = env!("CARGO_BIN_NAME");

/// `eprintln!` that never panics: with stderr gone (`2>&1 | head -1`, a closed terminal) the
/// line is lost, and the exit code stays the one documented (0 once stdout is closed too).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

const AFTER_HELP: &str = "\
Output:
  stdout  one JSON line per notification: the frame as received (topicName, eventBody,
          metadata); snapshot lines (state read over REST after a gap) add \"snapshot\": true.
  stderr  lifecycle events, one readable line each:
            2026-12-01T10:00:00.123Z stre…abcd connected
          or, with --lifecycle-format json, one JSON object per line:
            {\"time\":\"…\",\"event\":\"gap\",\"channel\":\"stre…abcd\",\"message\":\"…\",…}
          event names the lifecycle kind (channel_created, subscribed, connected, disconnected,
          reconnecting, gap, resynced, system_message, ...); gap adds start, end and topics,
          reconnecting adds attempt and delay_ms, dropped adds count and total,
          request_failed adds count (repeats within 5 s are coalesced into one line).
          tail's own lines then are JSON objects of the same shape, with \"channel\": null:
          following adds topics (how many), topic_rejected adds topic and
          missing_permissions, stopping and warning add nothing, summary adds the counts
          below, error adds exit_code and class, exiting (a second Ctrl-C) adds exit_code.

Exit codes:
  0    stopped by Ctrl-C, SIGTERM or SIGHUP (also while still subscribing) or because
       stdout was closed (| head -1): sockets closed, subscriptions removed
  1    a runtime failure not listed below (a channel stopped for good, stdout not
       writable: a full disk, an I/O error)
  2    input to fix: missing or wrong credentials (the token endpoint refused them, or
       the API refused the token), bad topic, a pattern that is invalid or matches none
       of the topics, bad settings or flags out of range, every topic rejected, a proxy
       asking for credentials, a base URL that is not the service's
  3    network: the service could not be reached (connection refused, DNS, timeout,
       TLS, proxy down)
  4    permission: the service answered 403 (the token lacks a permission)
  5    rate limited: the service kept answering 429
  6    server: the service kept failing (5xx, answers that do not parse)
  130  a second Ctrl-C (or SIGTERM): exit without waiting for the clean shutdown
  Errors are written as `genesys-tail: error: <what was done>: <class>: <error>`; as JSON,
  {\"event\":\"error\",\"message\",\"exit_code\",\"class\"} with class one of input,
  credentials, network, permission, rate_limited, server, runtime.

Summary (the last line of stderr, also after stdout closed):
  received N: written W, not written U (stdout closed), dropped D, unrouted R; malformed
  frames M. received = written + not written + dropped + unrouted (notifications read from
  the sockets); as JSON: received, delivered (= written + not_written), written,
  not_written, dropped, unrouted, malformed, snapshots_written, snapshots_not_written, and
  stopped_by (signal, stdout_closed, failure).

Settings:
  A flag wins over its environment variable (an empty variable counts as unset, an empty
  flag is an error). Across settings too: --region wins over GENESYS_API_BASE and
  GENESYS_LOGIN_BASE from the environment (--api-base and --login-base win over the
  region), and --client-id with --client-secret win over GENESYS_ACCESS_TOKEN from the
  environment; a warning names what was ignored.

Corporate networks:
  The proxy comes from --proxy, else from https_proxy / HTTPS_PROXY / all_proxy / ALL_PROXY,
  with no_proxy / NO_PROXY (or --no-proxy) naming hosts that go direct (host names cover their
  subdomains; .domain, IP, CIDR and :port forms work). --no-proxy-env ignores the environment.
  Loopback hosts go direct unless --proxy-loopback.

Examples:
  export GENESYS_REGION=eu-west-1 GENESYS_CLIENT_ID=… GENESYS_CLIENT_SECRET=…
  genesys-tail 'v2.users.<user-id>?presence&routingStatus' | jq .eventBody
  genesys-tail --pattern 'v2.users.*.presence' 'v2.users.<id1>.presence' 'v2.users.<id2>.presence'
  genesys-tail --proxy http://user:pass@proxy.corp:3128 --ca-file corp-ca.pem 'v2.users.<id>.presence'
  genesys-tail --lifecycle-format json 'v2.users.<id>.presence' 2>lifecycle.jsonl
";

#[derive(Parser, Debug)]
#[command(
    name = NAME,
    version,
    about = "Print Genesys Cloud notifications as JSON lines (stdout); lifecycle events on stderr.",
    after_help = AFTER_HELP
)]
struct Args {
    /// Topics to subscribe, e.g. `v2.users.<id>.presence` or the combined
    /// `v2.users.<id>?presence&routingStatus`.
    #[arg(required = true, value_name = "TOPIC")]
    topics: Vec<String>,

    /// Where to connect and how to authenticate (shared with genesys-bridge).
    #[command(flatten)]
    credentials: CredentialArgs,

    /// Only print notifications whose topic name matches this pattern (`*` stands for one
    /// dot-separated segment, e.g. `v2.users.*.presence`). Default: every subscribed topic.
    #[arg(long)]
    pattern: Option<String>,

    /// Dispatcher threads running callbacks [library default: one per core but one, 1 to 4].
    #[arg(long)]
    dispatcher_threads: Option<usize>,

    /// Capacity of each dispatcher queue, in events [library default: 512; a full queue holds
    /// back the socket under `block`, drops under the other policies].
    #[arg(long)]
    queue_capacity: Option<usize>,

    /// What to do when a dispatcher queue is full [library default: block].
    #[arg(long, value_enum)]
    backpressure: Option<BackpressureArg>,

    /// Send the application ping after this many seconds of silence [library default: 30].
    #[arg(long, value_name = "SECS")]
    ping_interval_secs: Option<u64>,

    /// Presume a socket dead after this many seconds without any frame [library default: 60].
    #[arg(long, value_name = "SECS")]
    liveness_timeout_secs: Option<u64>,

    /// Never read topics' state over REST: no snapshot lines, a gap is only reported on stderr.
    /// [library default: snapshots after each gap]
    #[arg(long, conflicts_with = "snapshots_at_subscribe")]
    no_snapshots: bool,

    /// Also print each topic's current state right after subscribing (presence and routing
    /// status), as lines with `"snapshot": true`.
    #[arg(long)]
    snapshots_at_subscribe: bool,

    /// Proxy, trust and gateway (shared with genesys-bridge).
    #[command(flatten)]
    network: NetworkArgs,

    /// How lifecycle events are written on stderr.
    #[arg(long, value_enum, default_value_t = LifecycleFormat::Text)]
    lifecycle_format: LifecycleFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LifecycleFormat {
    /// One readable line: time, channel, what happened and why.
    Text,
    /// One JSON object per line: time, event, channel, message (and details for some events).
    Json,
}

/// One lifecycle event as a line of stderr.
fn lifecycle_line(event: &Lifecycle, format: LifecycleFormat) -> String {
    let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let channel = event.channel().map(|c| c.to_string());
    match format {
        LifecycleFormat::Text => format!("{time} {} {}", channel.as_deref().unwrap_or("-"), event),
        LifecycleFormat::Json => {
            let mut line = serde_json::json!({
                "time": time,
                "event": event.name(),
                "channel": channel,
                "message": event.to_string(),
            });
            match event {
                Lifecycle::Gap {
                    start, end, topics, ..
                } => {
                    line["start"] = humantime::format_rfc3339_millis(*start).to_string().into();
                    line["end"] = humantime::format_rfc3339_millis(*end).to_string().into();
                    line["topics"] = topics.iter().map(|t| t.as_str()).collect::<Vec<_>>().into();
                }
                Lifecycle::Reconnecting { attempt, delay, .. } => {
                    line["attempt"] = (*attempt).into();
                    line["delay_ms"] = (delay.as_millis() as u64).into();
                }
                Lifecycle::Dropped { count, total, .. } => {
                    line["count"] = (*count).into();
                    line["total"] = (*total).into();
                }
                Lifecycle::RequestFailed { count, .. } => {
                    line["count"] = (*count).into();
                }
                _ => {}
            }
            line.to_string()
        }
    }
}

/// One of tail's own messages (following, rejected topic, stopping, summary, error) as a line
/// of stderr: `genesys-tail: <message>` as text, or, with `--lifecycle-format json`, a JSON object
/// with the lifecycle lines' fields (`time`, `event`, `channel`: null, `message`) plus `fields`,
/// so that every line of stderr parses as JSON.
fn note_line(
    format: LifecycleFormat,
    event: &str,
    message: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    match format {
        // Messages may quote the service's text (an error body, a rejection reason): escaped
        // control characters keep them one line and keep the terminal's state ours.
        LifecycleFormat::Text => format!("{NAME}: {}", one_line(message)),
        LifecycleFormat::Json => {
            let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            let mut line = serde_json::json!({
                "time": time,
                "event": event,
                "channel": null,
                "message": message,
            });
            for (key, value) in fields {
                line[*key] = value.clone();
            }
            line.to_string()
        }
    }
}

/// Writes one of tail's own messages on stderr (see [`note_line`]); never panics.
fn note(format: LifecycleFormat, event: &str, message: &str, fields: &[(&str, serde_json::Value)]) {
    say!("{}", note_line(format, event, message, fields));
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackpressureArg {
    /// The socket thread waits for room (nothing lost by the client).
    Block,
    /// Drop the event that does not fit, counting it.
    DropNewest,
    /// Drop the oldest queued event to make room, counting it.
    DropOldest,
}

impl From<BackpressureArg> for Backpressure {
    fn from(arg: BackpressureArg) -> Self {
        match arg {
            BackpressureArg::Block => Backpressure::Block,
            BackpressureArg::DropNewest => Backpressure::DropNewest,
            BackpressureArg::DropOldest => Backpressure::DropOldest,
        }
    }
}

/// What kind of failure ended tail: its exit code, and the word that labels it on stderr (and
/// in the JSON `error` line's `class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Input to fix: bad flags, settings, topics, credentials refused by the token endpoint, a
    /// proxy asking for credentials, a wrong base URL: exit 2.
    Input,
    /// The token endpoint refused the credentials (400/401, `invalid_client`) or the API
    /// refused the token (401): exit 2, as before (input to fix), labelled apart.
    Credentials,
    /// The service could not be reached: connection refused, DNS, timeouts, TLS, a proxy that
    /// is down: exit 3.
    Network,
    /// The token lacks a permission (403): exit 4.
    Permission,
    /// The service kept answering 429: exit 5.
    RateLimited,
    /// The service kept failing (5xx, answers that do not parse): exit 6.
    Server,
    /// Any other runtime failure (a channel stopped for good, stdout not writable): exit 1.
    Runtime,
}

impl Class {
    fn code(self) -> u8 {
        match self {
            Class::Runtime => 1,
            Class::Input | Class::Credentials => 2,
            Class::Network => 3,
            Class::Permission => 4,
            Class::RateLimited => 5,
            Class::Server => 6,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::Input => "input",
            Class::Credentials => "credentials",
            Class::Network => "network",
            Class::Permission => "permission",
            Class::RateLimited => "rate_limited",
            Class::Server => "server",
            Class::Runtime => "runtime",
        }
    }

    /// What the class means, for the message.
    fn meaning(self) -> &'static str {
        match self {
            Class::Input => "input to fix",
            Class::Credentials => "credentials refused",
            Class::Network => "network: the service could not be reached",
            Class::Permission => "permission denied",
            Class::RateLimited => "rate limited by the service",
            Class::Server => "the service failed",
            Class::Runtime => "failure",
        }
    }

    fn of_token(error: &genesys_notify::TokenError) -> Class {
        use genesys_notify::TokenError as T;
        match error {
            T::InvalidCredentials { .. } | T::UnusableToken { .. } => Class::Credentials,
            T::RateLimited { .. } => Class::RateLimited,
            T::Server { status: 403, .. } => Class::Permission,
            T::Server { status, .. } if *status >= 500 || *status == 408 => Class::Server,
            // A 404 or 3xx from the token endpoint: the login base URL is wrong.
            T::Server { .. } => Class::Input,
            T::Transport(_) => Class::Network,
            T::Proxy(e) if e.is_transient() => Class::Network,
            T::Proxy(_) => Class::Input,
            _ => Class::Runtime,
        }
    }

    fn of_api(error: &genesys_notify::ApiError) -> Class {
        use genesys_notify::ApiError as A;
        match error {
            A::Unauthorized { .. } => Class::Credentials,
            A::Forbidden { .. } => Class::Permission,
            A::RateLimited { .. } => Class::RateLimited,
            // `verify_token` answered 404: the API base URL is wrong.
            A::Server { status: 404, .. } | A::NotFound => Class::Input,
            A::Server { status, .. } if *status >= 500 => Class::Server,
            A::Decode(_) => Class::Server,
            A::Transport(_) => Class::Network,
            A::Proxy(e) if e.is_transient() => Class::Network,
            A::Proxy(_) => Class::Input,
            A::Token(e) => Class::of_token(e),
            _ => Class::Runtime,
        }
    }

    fn of_channel(error: &genesys_notify::ChannelError) -> Class {
        use genesys_notify::ChannelError as C;
        match error {
            C::Request { error, .. } => Class::of_api(error),
            C::NotificationsApiNotFound { .. } => Class::Input,
            C::Connect {
                status: Some(403), ..
            } => Class::Permission,
            C::Connect {
                status: Some(429), ..
            } => Class::RateLimited,
            C::Connect {
                status: Some(status),
                ..
            } if *status >= 500 => Class::Server,
            C::Connect { .. } | C::Disconnected(_) => Class::Network,
            C::Proxy(e) if e.is_transient() => Class::Network,
            C::Proxy(_) => Class::Input,
            _ => Class::Runtime,
        }
    }

    fn of(error: &Error) -> Class {
        match error {
            Error::Config(_)
            | Error::Topic { .. }
            | Error::TooManyTopics { .. }
            | Error::TooManyChannels { .. } => Class::Input,
            Error::Token(e) => Class::of_token(e),
            Error::Api(e) => Class::of_api(e),
            // A call that ran out of time while the service could not be reached.
            Error::Timeout { .. } => Class::Network,
            _ => Class::Runtime,
        }
    }
}

/// A failure and the exit code it leads to.
struct Failure {
    class: Class,
    message: String,
}

impl Failure {
    /// `context: <class meaning>: error` (the class named unless it is input or a plain
    /// runtime failure, whose errors say enough).
    fn classified(class: Class, context: &str, error: &dyn std::fmt::Display) -> Failure {
        let message = match class {
            Class::Input | Class::Runtime => format!("{context}: {error}"),
            _ => format!("{context}: {}: {error}", class.meaning()),
        };
        Failure { class, message }
    }

    fn new(code: u8, message: impl Into<String>) -> Failure {
        let class = if code == 2 {
            Class::Input
        } else {
            Class::Runtime
        };
        Failure {
            class,
            message: message.into(),
        }
    }
}

/// Input the user must fix: exit code 2.
fn usage(message: impl Into<String>) -> Failure {
    Failure::new(2, message)
}

/// A client error, classified (see [`Class`]): the message says what tail was doing, what
/// kind of failure it met, and the error.
fn from_error(context: &str, error: Error) -> Failure {
    let class = Class::of(&error);
    match &error {
        // Configuration errors name the library's setting: say which flag or variable it is.
        Error::Config(e) => Failure {
            class,
            message: format!("{context}: {}: {}", setting_name(e.field), e.reason),
        },
        _ => Failure::classified(class, context, &error),
    }
}

/// The flag (and environment variable) behind a library setting, for messages about it.
fn setting_name(field: &str) -> String {
    let flag = match field {
        "dispatcher_threads" => "--dispatcher-threads",
        "queue_capacity" => "--queue-capacity",
        "ping_interval" => "--ping-interval-secs",
        "liveness_timeout" => "--liveness-timeout-secs",
        other => {
            return genesys_notify::cli::setting_flag(other)
                .unwrap_or_else(|| format!("setting {other}"))
        }
    };
    flag.to_owned()
}

/// A settings problem of the shared flags: input to fix.
impl From<SettingsError> for Failure {
    fn from(error: SettingsError) -> Failure {
        usage(error.to_string())
    }
}

/// The accepted range of each numeric flag, in the flag's own unit (the library's limits,
/// `Config::validate`, in whole seconds where the flag counts seconds).
const RANGES: [(&str, u64, u64, &str); 4] = [
    ("--dispatcher-threads", 1, 256, "threads"),
    ("--queue-capacity", 1, 1 << 20, "events"),
    ("--ping-interval-secs", 1, 3600, "seconds"),
    ("--liveness-timeout-secs", 1, 3600, "seconds"),
];

/// Checks the numeric flags against [`RANGES`] and each other, naming the flag as typed, the
/// accepted range in its unit and the value given (the library would name its own setting and
/// unit: `liveness_timeout`, `0ns`).
fn check_ranges(args: &Args) -> Result<(), Failure> {
    let given = [
        args.dispatcher_threads.map(|n| n as u64),
        args.queue_capacity.map(|n| n as u64),
        args.ping_interval_secs,
        args.liveness_timeout_secs,
    ];
    for ((flag, min, max, unit), value) in RANGES.iter().zip(given) {
        if let Some(value) = value.filter(|v| !(*min..=*max).contains(v)) {
            return Err(usage(format!(
                "{flag} {value} is out of range: give {min} to {max} ({unit})"
            )));
        }
    }
    let defaults = genesys_notify::Config::default();
    let ping = args
        .ping_interval_secs
        .map(Duration::from_secs)
        .unwrap_or(defaults.ping_interval());
    let liveness = args
        .liveness_timeout_secs
        .map(Duration::from_secs)
        .unwrap_or(defaults.liveness_timeout());
    if ping >= liveness {
        let side = |flag: &str, given: Option<u64>, value: Duration| match given {
            Some(secs) => format!("{flag} {secs}"),
            None => format!("{flag}'s default {}", value.as_secs()),
        };
        return Err(usage(format!(
            "{} must be below {} (seconds): a ping is sent after that much silence, and the \
             socket is presumed dead after the other",
            side("--ping-interval-secs", args.ping_interval_secs, ping),
            side(
                "--liveness-timeout-secs",
                args.liveness_timeout_secs,
                liveness
            ),
        )));
    }
    Ok(())
}

/// What tail did with the events the client handed to it, for the summary: the client's
/// health counts what reached tail's listeners (`delivered`), these what tail then wrote.
#[derive(Default)]
struct Output {
    /// Notification lines written to stdout.
    written: AtomicU64,
    /// Notifications handed to tail but not written: stdout was closed or failing by then.
    not_written: AtomicU64,
    /// Snapshot lines (state read over REST) written to stdout.
    snapshots_written: AtomicU64,
    /// Snapshot lines not written (stdout closed or failing).
    snapshots_not_written: AtomicU64,
    /// Set once stdout cannot be written (closed, or an I/O error): nothing more is tried, each
    /// later event is only counted as not written.
    closed: AtomicBool,
}

impl Output {
    fn count(&self, snapshot: bool, written: bool) {
        let counter = match (snapshot, written) {
            (false, true) => &self.written,
            (false, false) => &self.not_written,
            (true, true) => &self.snapshots_written,
            (true, false) => &self.snapshots_not_written,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes one event as a line on stdout (unless stdout is already known to be closed) and
    /// counts it; the error of a write that failed.
    fn write(&self, event: &Event) -> std::io::Result<()> {
        let snapshot = event.is_snapshot();
        if self.closed.load(Ordering::Acquire) {
            self.count(snapshot, false);
            return Ok(());
        }
        let frame = event.frame_json().trim();
        // JSON text can hold a raw line break only between tokens, so replacing it keeps the
        // JSON intact and makes one line.
        let line = if frame.contains(['\n', '\r']) {
            std::borrow::Cow::Owned(frame.replace(['\n', '\r'], " "))
        } else {
            std::borrow::Cow::Borrowed(frame)
        };
        let mut out = std::io::stdout().lock();
        let result = writeln!(out, "{line}").and_then(|()| out.flush());
        if result.is_err() {
            self.closed.store(true, Ordering::Release);
        }
        self.count(snapshot, result.is_ok());
        result
    }
}

/// Why the main thread stops waiting.
enum Stop {
    /// Ctrl-C (SIGINT), SIGTERM or SIGHUP.
    CtrlC,
    /// stdout is gone (e.g. `| head` ended).
    StdoutClosed,
    /// The client gave up on a channel for good.
    Fatal(Failure),
}

fn run(args: Args) -> Result<(), Failure> {
    let format = args.lifecycle_format;
    check_ranges(&args)?;
    // Topics first: a typo is reported before any network call, every bad one at once.
    let mut topics = Vec::new();
    let mut bad = Vec::new();
    for name in &args.topics {
        match Topic::parse(name) {
            Ok(topic) => topics.push(topic),
            Err(e) => bad.push(format!("bad topic {name:?}: {e}")),
        }
    }
    if !bad.is_empty() {
        return Err(usage(format!(
            "{} (topics look like v2.users.<id>.presence or \
             v2.users.<id>?presence&routingStatus)",
            bad.join("; ")
        )));
    }

    if let Some(pattern) = &args.pattern {
        let parsed = Pattern::parse(pattern).map_err(|e| {
            usage(format!(
                "bad --pattern {pattern:?}: {e} (patterns look like v2.users.*.presence)"
            ))
        })?;
        // Only subscribed topics bring events: a pattern matching none of them would print
        // nothing, ever.
        if !topics
            .iter()
            .flat_map(Topic::expand)
            .any(|name| parsed.matches(&name))
        {
            return Err(usage(format!(
                "--pattern {pattern:?} matches none of the topics given, so nothing would be \
                 printed (events arrive under the individual names, e.g. \
                 v2.users.<id>.presence for v2.users.<id>?presence&routingStatus)"
            )));
        }
    }

    let (settings, warnings) = args.credentials.settings()?.resolve();
    for warning in &warnings {
        note(format, "warning", warning, &[]);
    }
    // The region and bases are checked first: "no region" comes before missing credentials.
    let login_needed = settings.access_token.is_none();
    let mut builder = settings.endpoints(Client::builder(), login_needed)?;
    builder = settings.credential(None)?.apply(builder);

    if let Some(n) = args.dispatcher_threads {
        builder = builder.dispatcher_threads(n);
    }
    if let Some(n) = args.queue_capacity {
        builder = builder.queue_capacity(n);
    }
    if let Some(policy) = args.backpressure {
        builder = builder.backpressure(policy.into());
    }
    if let Some(secs) = args.ping_interval_secs {
        builder = builder.ping_interval(Duration::from_secs(secs));
    }
    if let Some(secs) = args.liveness_timeout_secs {
        builder = builder.liveness_timeout(Duration::from_secs(secs));
    }
    // Snapshot lines are the frames the client builds from REST state: they carry
    // `"snapshot": true` next to `topicName` and `eventBody`.
    if args.no_snapshots {
        builder = builder.snapshots(Snapshots::Off);
    } else if args.snapshots_at_subscribe {
        builder = builder.snapshots(Snapshots::AfterGapsAndSubscribe);
    }

    builder = args.network.apply(builder)?;

    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<Stop>(4);
    // Installed before anything talks to the service, so that a signal at any moment stops
    // tail as documented (exit 0): see `on_signal`.
    let phase = std::sync::Arc::new(parking_lot::Mutex::new(Phase::Starting));
    let handler_client = std::sync::Arc::new(std::sync::OnceLock::new());
    {
        let (stop, phase, client) = (stop_tx.clone(), phase.clone(), handler_client.clone());
        let first_press = parking_lot::Mutex::new(None::<Instant>);
        ctrlc::set_handler(move || on_signal(&first_press, &phase, &client, &stop, format))
            .map_err(|e| Failure::new(1, format!("cannot install the Ctrl-C handler: {e}")))?;
    }

    // Shared with the Ctrl-C handler, which cuts a hanging first subscribe short.
    let client = std::sync::Arc::new(builder.build().map_err(|e| from_error("settings", e))?);
    let _ = handler_client.set(std::sync::Arc::downgrade(&client));
    // Fail fast on wrong credentials, before any channel is created.
    client
        .verify_token()
        .map_err(|e| from_error("checking the token with the service", e))?;

    let fatal = stop_tx.clone();
    let _lifecycle = client
        .on_lifecycle(move |event: &Lifecycle| {
            say!("{}", lifecycle_line(event, format));
            match event {
                Lifecycle::RetryBudgetExhausted { last_error, .. } => {
                    let _ = fatal.try_send(Stop::Fatal(Failure::classified(
                        Class::of_channel(last_error),
                        "retries exhausted",
                        last_error,
                    )));
                }
                Lifecycle::PermanentFailure { error, .. } => {
                    let _ = fatal.try_send(Stop::Fatal(Failure::classified(
                        Class::of_channel(error),
                        "a channel stopped for good",
                        error,
                    )));
                }
                _ => {}
            }
        })
        .map_err(|e| from_error("lifecycle listener", e))?;

    // A pattern matches a whole topic name, `*` standing for one segment: for "everything we
    // subscribed", register one exact listener per individual topic name (a combined topic
    // `base?a&b` brings events named `base.a` and `base.b`).
    let patterns: Vec<String> = match &args.pattern {
        Some(pattern) => vec![pattern.clone()],
        None => {
            let mut names: Vec<String> = topics.iter().flat_map(Topic::expand).collect();
            names.sort();
            names.dedup();
            names
        }
    };
    let output = Arc::new(Output::default());
    let mut guards: Vec<ListenerGuard> = Vec::new();
    for pattern in &patterns {
        let closed = stop_tx.clone();
        let output = output.clone();
        let guard = client
            .on(pattern, move |event: &Event| {
                if let Err(e) = output.write(event) {
                    // Nobody reads any more (`| head -1`): the documented clean stop. Any other
                    // error (a full disk, an I/O error) loses notifications: a failure, never 0.
                    let stop = if e.kind() == std::io::ErrorKind::BrokenPipe {
                        Stop::StdoutClosed
                    } else {
                        Stop::Fatal(Failure::new(
                            1,
                            format!("cannot write a notification to stdout: {e}"),
                        ))
                    };
                    let _ = closed.try_send(stop);
                }
            })
            .map_err(|e| from_error("listener", e))?;
        guards.push(guard);
    }

    watch_stdout(stop_tx.clone(), output.clone(), format);

    // Under the lock: a signal from now on shuts the client down (see `on_signal`).
    *phase.lock() = Phase::Subscribing;
    // The error alone: tail exits on any failure, so what the call did before is not needed.
    let report = match client.subscribe(&topics).map_err(Error::from) {
        Ok(report) => report,
        Err(Error::Shutdown) if *phase.lock() == Phase::Interrupted => {
            note(
                format,
                "stopping",
                "Ctrl-C (or termination signal) while subscribing, shutting down",
                &[],
            );
            let _ = client.shutdown(Duration::from_secs(5));
            summary(
                &client.health(),
                &output,
                "signal",
                "stdout failing",
                format,
            );
            return Ok(());
        }
        Err(e) => return Err(from_error("subscribe", e)),
    };
    {
        let mut phase = phase.lock();
        if *phase == Phase::Subscribing {
            *phase = Phase::Following;
        }
    }
    for rejected in &report.rejected {
        let message = format!(
            "topic {} rejected: {} (missing permissions: {})",
            rejected.topic,
            rejected
                .rejection_reason
                .as_deref()
                .unwrap_or("no reason given"),
            if rejected.missing_permissions.is_empty() {
                "none listed".to_owned()
            } else {
                rejected.missing_permissions.join(", ")
            }
        );
        note(
            format,
            "topic_rejected",
            // The reason and permissions are the server's text: one line, whatever they hold.
            &one_line(&message),
            &[
                ("topic", rejected.topic.as_str().into()),
                (
                    "missing_permissions",
                    rejected.missing_permissions.clone().into(),
                ),
            ],
        );
    }
    if report.permitted.is_empty() && report.duplicates.is_empty() {
        let _ = client.shutdown(Duration::from_secs(5));
        return Err(usage("every topic was rejected: nothing to follow"));
    }
    note(
        format,
        "following",
        &format!(
            "following {} topic(s); Ctrl-C to stop",
            report.permitted.len()
        ),
        &[("topics", report.permitted.len().into())],
    );

    let stop = stop_rx.recv().unwrap_or(Stop::CtrlC);
    let (result, stopped_by, unwritten_because) = match stop {
        Stop::CtrlC => {
            note(
                format,
                "stopping",
                "Ctrl-C (or termination signal), shutting down",
                &[],
            );
            (Ok(()), "signal", "stdout failing")
        }
        Stop::StdoutClosed => (Ok(()), "stdout_closed", "stdout closed"),
        Stop::Fatal(failure) => (Err(failure), "failure", "stdout failing"),
    };
    // The summary is read once the client is shut down: the events still queued have been
    // handed to tail by then (and counted as written or not), so the numbers add up.
    let shutdown = client.shutdown(Duration::from_secs(5));
    summary(
        &client.health(),
        &output,
        stopped_by,
        unwritten_because,
        format,
    );
    shutdown.map_err(|e| from_error("shutdown", e))?;
    result
}

/// The last line of stderr: what the client received and what became of it. `received =
/// written + not written + dropped + unrouted` (notifications; malformed frames apart), once
/// the client is shut down; snapshot lines are counted apart, since they are not received
/// from the socket.
fn summary(
    health: &genesys_notify::Health,
    output: &Output,
    stopped_by: &str,
    unwritten_because: &str,
    format: LifecycleFormat,
) {
    let written = output.written.load(Ordering::Relaxed);
    let not_written = output.not_written.load(Ordering::Relaxed);
    let snapshots_written = output.snapshots_written.load(Ordering::Relaxed);
    let snapshots_not_written = output.snapshots_not_written.load(Ordering::Relaxed);
    let mut message = format!(
        "received {}: written {written}, not written {not_written}{}, dropped {}, unrouted {}; \
         malformed frames {}",
        health.received(),
        if not_written > 0 {
            format!(" ({unwritten_because})")
        } else {
            String::new()
        },
        health.dropped(),
        health.unrouted(),
        health.malformed()
    );
    if snapshots_written + snapshots_not_written > 0 {
        message.push_str(&format!(
            "; snapshot lines written {snapshots_written}, not written {snapshots_not_written}"
        ));
    }
    note(
        format,
        "summary",
        &message,
        &[
            ("received", health.received().into()),
            ("delivered", health.delivered().into()),
            ("written", written.into()),
            ("not_written", not_written.into()),
            ("dropped", health.dropped().into()),
            ("unrouted", health.unrouted().into()),
            ("malformed", health.malformed().into()),
            ("snapshots_written", snapshots_written.into()),
            ("snapshots_not_written", snapshots_not_written.into()),
            ("stopped_by", stopped_by.into()),
        ],
    );
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`): one line.
fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

/// Where `run` is, for the signal handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Checking settings and credentials: nothing exists on the service yet.
    Starting,
    /// The first subscribe runs; nothing reads the stop channel yet.
    Subscribing,
    /// The main thread waits on the stop channel.
    Following,
    /// A signal came during the first subscribe.
    Interrupted,
}

/// SIGINT, SIGTERM and SIGHUP (ctrlc's `termination` feature) all stop tail cleanly: while
/// following, the main thread shuts down; during the first subscribe (which may wait on a
/// service that does not answer until its deadline, 80 s by default) the client is shut down
/// at once, which cuts the subscribe short; before it, nothing exists on the service and tail
/// exits at once. A second signal more than a second after the first exits at once with 130
/// (one within a second counts as the same press: some tools signal both the process and its
/// group).
fn on_signal(
    first_press: &parking_lot::Mutex<Option<Instant>>,
    phase: &parking_lot::Mutex<Phase>,
    client: &std::sync::OnceLock<std::sync::Weak<Client>>,
    stop: &crossbeam_channel::Sender<Stop>,
    format: LifecycleFormat,
) {
    let mut first = first_press.lock();
    match *first {
        None => {
            *first = Some(Instant::now());
            let _ = stop.try_send(Stop::CtrlC);
            let mut phase = phase.lock();
            match *phase {
                Phase::Following | Phase::Interrupted => {}
                Phase::Starting => {
                    // Checking credentials may wait on a service that does not answer; nothing
                    // exists there yet, so there is nothing to wait for. The lock is held: the
                    // main thread cannot start subscribing meanwhile.
                    note(
                        format,
                        "stopping",
                        "Ctrl-C (or termination signal), exiting",
                        &[],
                    );
                    std::process::exit(0);
                }
                Phase::Subscribing => {
                    *phase = Phase::Interrupted;
                    if let Some(client) = client.get().and_then(std::sync::Weak::upgrade) {
                        // On a thread of its own: the handler stays free for a second signal.
                        let _ = std::thread::Builder::new()
                            .name("tail-interrupt".into())
                            .spawn(move || {
                                let _ = client.shutdown(Duration::from_secs(5));
                            });
                    }
                }
            }
        }
        Some(at) if at.elapsed() > Duration::from_secs(1) => {
            note(
                format,
                "exiting",
                "second Ctrl-C (or termination signal), exiting without waiting",
                &[("exit_code", 130.into())],
            );
            std::process::exit(130);
        }
        Some(_) => {}
    }
}

/// Stops `tail` when nobody reads its stdout any more (`genesys-tail ... | head -1`): a write
/// would fail, but without a next event nothing is written. poll(2) reports `POLLERR` on a
/// pipe whose reading end is closed; a terminal or a file never reports it.
#[cfg(unix)]
fn watch_stdout(
    stop: crossbeam_channel::Sender<Stop>,
    output: Arc<Output>,
    format: LifecycleFormat,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let spawned = std::thread::Builder::new()
        .name("tail-stdout".into())
        .spawn(move || {
            let stdout = std::io::stdout();
            loop {
                // No event asked for: only the conditions poll always reports (error, hang-up).
                let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
                match poll(&mut fds, PollTimeout::from(250u16)) {
                    Ok(0) => continue,
                    Ok(_) => {
                        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
                        if revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
                            output.closed.store(true, Ordering::Release);
                            let _ = stop.try_send(Stop::StdoutClosed);
                            return;
                        }
                        if revents.contains(PollFlags::POLLNVAL) {
                            // No stdout at all: nothing to watch.
                            return;
                        }
                        // Nothing to act on: do not spin on a descriptor that keeps reporting.
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = spawned {
        note(
            format,
            "warning",
            &format!("cannot watch stdout ({e}); a closed stdout is noticed at the next event"),
            &[],
        );
    }
}

#[cfg(not(unix))]
fn watch_stdout(
    _stop: crossbeam_channel::Sender<Stop>,
    _output: Arc<Output>,
    _format: LifecycleFormat,
) {
}

/// Whether the command line asks for JSON lines on stderr, read from the raw arguments: a
/// command line clap refuses is reported in the format it asked for too.
fn json_asked() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter().enumerate().any(|(i, arg)| {
        arg == "--lifecycle-format=json"
            || (arg == "--lifecycle-format" && args.get(i + 1).is_some_and(|v| v == "json"))
    })
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        // `--help` and `--version` print on stdout and exit 0, as clap does.
        Err(e) if !e.use_stderr() || !json_asked() => e.exit(),
        Err(e) => {
            let code = e.exit_code();
            let message = e.kind().to_string();
            let detail = e.to_string();
            let detail = detail.lines().next().unwrap_or_default().trim();
            let detail = detail.strip_prefix("error: ").unwrap_or(detail);
            note(
                LifecycleFormat::Json,
                "error",
                if detail.is_empty() { &message } else { detail },
                &[
                    ("exit_code", code.into()),
                    ("class", Class::Input.label().into()),
                ],
            );
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    let format = args.lifecycle_format;
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let message = match format {
                LifecycleFormat::Text => format!("error: {}", failure.message),
                LifecycleFormat::Json => failure.message,
            };
            note(
                format,
                "error",
                &message,
                &[
                    ("exit_code", failure.class.code().into()),
                    ("class", failure.class.label().into()),
                ],
            );
            ExitCode::from(failure.class.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_have_distinct_exit_codes_and_keep_the_old_ones() {
        let all = [
            Class::Input,
            Class::Credentials,
            Class::Network,
            Class::Permission,
            Class::RateLimited,
            Class::Server,
            Class::Runtime,
        ];
        let codes: std::collections::BTreeSet<u8> = all.iter().map(|c| c.code()).collect();
        assert_eq!(codes.len(), all.len() - 1, "input and credentials share 2");
        assert_eq!(Class::Input.code(), 2);
        assert_eq!(Class::Credentials.code(), 2);
        assert_eq!(Class::Runtime.code(), 1);
    }
}
