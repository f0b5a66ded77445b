// genesys-bridge: write Genesys Cloud notifications of the given topics into Redis Streams,
// sharded across processes. The user-facing description is `Args`'s `--help` text; the log's
// format is in the library's crate docs (src/lib.rs) and the README's "Scale out".

use clap::{Parser, ValueEnum};
use genesys_bridge::bridge::{Bridge, Settings, StartError};
use genesys_bridge::config::FileConfig;
use genesys_bridge::log::{Format, Log};
use genesys_notify::{Client, Config, Region, Snapshots, ThreadPool, TlsRoots};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const AFTER_HELP: &str = "\
The log (one Redis stream per shard):
  genesys:{shard-N}:events  entries with type (event | snapshot | gap | lifecycle), topic, body,
                            correlation_id, snapshot, received_at (ms since the epoch), bridge,
                            fence; gap entries: topics (JSON array), start, end (ms), reason,
                            dropped. Trimmed with MAXLEN ~ --maxlen.
  genesys:{shard-N}:lease   the shard's lease (holder's bridge id, expires after --lease-secs)
  genesys:{shard-N}:fence   the fencing token every write checks
  A topic's shard: FNV-1a 64 of the lower-cased topic name, modulo --shards.

Processes: run several with the same --redis, --prefix and --shards: they share the shards
evenly, renew their leases every third of --lease-secs, and take over the shards of a process
that died once its leases expire. SIGINT/SIGTERM release the leases at once.

Logs (stderr): readable lines (<time> <channel or -> <message>) or, with
--lifecycle-format json, one JSON object per line: time, event, channel, message and details
(the library's lifecycle events as genesys-tail writes them, and the bridge's own: acquired,
released, lost, fenced, gap, redis_unavailable, redis_available, stopped, summary).

Exit codes:
  0    stopped by SIGINT or SIGTERM: leases released
  1    a runtime failure (the service kept failing)
  2    input to fix: missing credentials, bad topic, bad settings, Redis unreachable at start
  130  a second signal: exit without waiting for the clean stop

Example:
  export GENESYS_REGION=eu-west-1 GENESYS_CLIENT_ID=… GENESYS_CLIENT_SECRET=…
  genesys-bridge --redis redis://127.0.0.1:6379 'v2.users.<id>?presence&routingStatus'
";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "genesys-bridge",
    version,
    about = "Write Genesys Cloud notifications, gaps and snapshots into Redis Streams, sharded \
             across processes.",
    after_help = AFTER_HELP
)]
struct Args {
    /// Topics to subscribe, e.g. `v2.users.<id>.presence` or the combined
    /// `v2.users.<id>?presence&routingStatus`.
    #[arg(value_name = "TOPIC", required_unless_present = "config")]
    topics: Vec<String>,

    /// Configuration file (TOML): Redis and shard settings, the credential pool, topic lists,
    /// `all_users` kinds (see the README's "Scale out"). Flags and environment win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,

    /// Redis to write to: `redis://HOST:PORT[/DB]`, or a Redis Cluster's seed nodes separated by
    /// commas [env: GENESYS_BRIDGE_REDIS].
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// `--redis` names one seed node of a Redis Cluster (several URLs imply it).
    #[arg(long)]
    redis_cluster: bool,

    /// Number of shards; the same in every process of a deployment [default: 64].
    #[arg(long)]
    shards: Option<u32>,

    /// Lease time in seconds: a dead process's shards are taken over after this [default: 10].
    #[arg(long, value_name = "SECS")]
    lease_secs: Option<u64>,

    /// Key prefix [default: genesys].
    #[arg(long)]
    prefix: Option<String>,

    /// Approximate most entries kept per stream (`XADD MAXLEN ~`) [default: 100000].
    #[arg(long)]
    maxlen: Option<u64>,

    /// Bytes of events held while Redis is unreachable; beyond, events are dropped, counted and
    /// reported by a gap entry once Redis is back [default: 67108864, 64 MiB].
    #[arg(long, value_name = "BYTES")]
    buffer_bytes: Option<usize>,

    /// This process's id in leases and entries [default: <host>-<pid>-<start time>].
    #[arg(long)]
    bridge_id: Option<String>,

    /// Region, e.g. `eu-west-1` or `mypurecloud.ie` [env: GENESYS_REGION].
    #[arg(long)]
    region: Option<String>,

    /// REST base URL, overrides the region's `https://api.<domain>` [env: GENESYS_API_BASE].
    #[arg(long, value_name = "URL")]
    api_base: Option<String>,

    /// OAuth base URL, overrides the region's `https://login.<domain>`; not needed with an
    /// access token [env: GENESYS_LOGIN_BASE].
    #[arg(long, value_name = "URL")]
    login_base: Option<String>,

    /// OAuth client id [env: GENESYS_CLIENT_ID].
    #[arg(long)]
    client_id: Option<String>,

    /// OAuth client secret [env: GENESYS_CLIENT_SECRET]. Prefer the environment variable: command
    /// lines are visible to other users of the machine.
    #[arg(long)]
    client_secret: Option<String>,

    /// An access token to use instead of client credentials; it is not refreshed
    /// [env: GENESYS_ACCESS_TOKEN].
    #[arg(long)]
    access_token: Option<String>,

    /// Never read topics' state over REST (no snapshot entries after gaps and takeovers).
    #[arg(long)]
    no_snapshots: bool,

    /// HTTP CONNECT proxy for every connection to Genesys Cloud (token, REST, sockets):
    /// `http://[user:password@]host[:port]`. Default: https_proxy / HTTPS_PROXY / all_proxy /
    /// ALL_PROXY.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,

    /// Hosts that bypass the proxy, comma-separated, curl's NO_PROXY syntax.
    #[arg(long, value_name = "HOSTS")]
    no_proxy: Option<String>,

    /// Ignore the proxy settings of the environment.
    #[arg(long)]
    no_proxy_env: bool,

    /// Send loopback hosts through the proxy too.
    #[arg(long)]
    proxy_loopback: bool,

    /// Trust the CA certificates in this PEM file too. Repeatable.
    #[arg(long, value_name = "PEM_FILE")]
    ca_file: Vec<std::path::PathBuf>,

    /// Trust the operating system's certificate store instead of the bundled Mozilla roots.
    #[arg(long)]
    platform_roots: bool,

    /// Connect the notification sockets to this gateway instead of the connectUri's host.
    #[arg(long, value_name = "URL")]
    streaming_base: Option<String>,

    /// Serve `/metrics` (Prometheus), `/health` (JSON) and `/` (status page) on this address,
    /// e.g. `127.0.0.1:9187`.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,

    /// How log lines are written on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    lifecycle_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One readable line: time, channel, what happened.
    Text,
    /// One JSON object per line: time, event, channel, message and details.
    Json,
}

/// Why the command stops with a non-zero exit code.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

/// The flag, else the environment variable; an empty value counts as unset.
fn flag_or_env(flag: Option<String>, var: &str) -> Option<String> {
    flag.or_else(|| std::env::var(var).ok())
        .filter(|v| !v.is_empty())
}

fn default_bridge_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "bridge".into());
    // The start time tells a restarted process with a reused pid from its former life, whose
    // leases it must not mistake for its own.
    let start = genesys_bridge::entry::epoch_ms(SystemTime::now());
    format!("{host}-{}-{start}", std::process::id())
}

/// How one client authenticates.
enum Credential {
    Token(String),
    Client { id: String, secret: String },
}

/// The credential pool: the file's `[[credential]]` tables, else the flags and environment
/// (one client, or an access token).
fn credentials(args: &Args, file: &FileConfig) -> Result<Vec<Credential>, Failure> {
    if let Some(token) = flag_or_env(args.access_token.clone(), "GENESYS_ACCESS_TOKEN") {
        return Ok(vec![Credential::Token(token)]);
    }
    let client_id = flag_or_env(args.client_id.clone(), "GENESYS_CLIENT_ID");
    let client_secret = flag_or_env(args.client_secret.clone(), "GENESYS_CLIENT_SECRET");
    if client_id.is_none() && client_secret.is_none() && !file.credentials.is_empty() {
        return file
            .credentials
            .iter()
            .map(|c| {
                Ok(Credential::Client {
                    id: c.client_id.clone(),
                    secret: c.secret().map_err(usage)?,
                })
            })
            .collect();
    }
    match (client_id, client_secret) {
        (Some(id), Some(secret)) => Ok(vec![Credential::Client { id, secret }]),
        (id, secret) => {
            let mut missing = Vec::new();
            if id.is_none() {
                missing.push("GENESYS_CLIENT_ID (--client-id)");
            }
            if secret.is_none() {
                missing.push("GENESYS_CLIENT_SECRET (--client-secret)");
            }
            Err(usage(format!(
                "missing credentials: set {}, or give an access token with \
                 GENESYS_ACCESS_TOKEN (--access-token), or [[credential]] tables in --config",
                missing.join(" and ")
            )))
        }
    }
}

fn client(
    args: &Args,
    file: &FileConfig,
    credential: &Credential,
    pool: Option<&ThreadPool>,
) -> Result<Client, Failure> {
    let mut builder = Client::builder();
    if let Some(pool) = pool {
        builder = builder.thread_pool(pool);
    }
    let region = flag_or_env(args.region.clone(), "GENESYS_REGION").or(file.region.clone());
    let api_base = flag_or_env(args.api_base.clone(), "GENESYS_API_BASE").or(file.api_base.clone());
    let login_base =
        flag_or_env(args.login_base.clone(), "GENESYS_LOGIN_BASE").or(file.login_base.clone());
    let login_needed = !matches!(credential, Credential::Token(_));
    match &region {
        Some(name) => {
            let region = Region::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Region::all().map(Region::name).collect();
                usage(format!(
                    "unknown region {name:?}; known regions: {}",
                    known.join(", ")
                ))
            })?;
            builder = builder.region(region);
        }
        None if api_base.is_none() || (login_needed && login_base.is_none()) => {
            return Err(usage(
                "no region: set GENESYS_REGION (or --region), e.g. eu-west-1, or give both \
                 GENESYS_API_BASE and GENESYS_LOGIN_BASE (or --api-base and --login-base; \
                 with an access token, the API base alone)",
            ))
        }
        None => {}
    }
    if let Some(url) = api_base {
        builder = builder.api_base(url);
    }
    if let Some(url) = login_base {
        builder = builder.login_base(url);
    }
    builder = match credential {
        Credential::Token(token) => builder.access_token(token.clone()),
        Credential::Client { id, secret } => builder.client_credentials(id.clone(), secret.clone()),
    };
    // Takeovers resubscribe a shard's topics: its state is read at once, so that consumers
    // get the current state right after the takeover gap.
    builder = builder.snapshots(if args.no_snapshots {
        Snapshots::Off
    } else {
        Snapshots::AfterGapsAndSubscribe
    });
    if let Some(url) = &args.proxy {
        builder = builder.proxy(url);
    }
    if let Some(list) = &args.no_proxy {
        builder = builder.no_proxy(list);
    }
    if args.no_proxy_env {
        builder = builder.proxy_from_env(false);
    }
    if args.proxy_loopback {
        builder = builder.proxy_loopback(true);
    }
    if args.platform_roots {
        builder = builder.tls_roots(TlsRoots::Platform);
    }
    for path in &args.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| usage(format!("cannot read --ca-file {}: {e}", path.display())))?;
        builder = builder.add_root_certificates_pem(pem);
    }
    if let Some(url) = &args.streaming_base {
        builder = builder.streaming_base(url);
    }
    builder.build().map_err(|e| usage(format!("settings: {e}")))
}

/// The topics: the file's, the command line's, and one per active user for `all_users`, read
/// through `client` (the first credential's: its token, proxy, CA files and timeouts).
fn gather_topics(
    args: &Args,
    file: &FileConfig,
    client: &Client,
) -> Result<Vec<String>, genesys_bridge::users::UsersError> {
    let mut topics: Vec<String> = file.topics.clone();
    topics.extend(args.topics.iter().cloned());
    if let Some(all) = &file.all_users {
        let ids = genesys_bridge::users::active_users_of(client, all.page_size)?;
        topics.extend(genesys_bridge::users::user_topics(&ids, &all.kinds));
    }
    Ok(topics)
}

fn run(args: Args, log: Log) -> Result<(), Failure> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(usage)?,
        None => FileConfig::default(),
    };
    let redis = flag_or_env(args.redis.clone(), "GENESYS_BRIDGE_REDIS")
        .or(file.redis.clone())
        .ok_or_else(|| {
            usage("no Redis: give --redis redis://HOST:PORT (or GENESYS_BRIDGE_REDIS, or redis in --config)")
        })?;
    let bridge_id = args
        .bridge_id
        .clone()
        .or(file.bridge_id.clone())
        .unwrap_or_else(default_bridge_id);
    let mut settings = Settings::new(redis, bridge_id);
    settings.redis_cluster = args.redis_cluster || file.redis_cluster.unwrap_or(false);
    settings.shards = args.shards.or(file.shards).unwrap_or(settings.shards);
    settings.lease = args
        .lease_secs
        .or(file.lease_secs)
        .map_or(settings.lease, Duration::from_secs);
    settings.prefix = args
        .prefix
        .clone()
        .or(file.prefix.clone())
        .unwrap_or(settings.prefix);
    settings.maxlen = args.maxlen.or(file.maxlen).unwrap_or(settings.maxlen);
    settings.buffer_bytes = args
        .buffer_bytes
        .or(file.buffer_bytes)
        .unwrap_or(settings.buffer_bytes);
    if settings.shards == 0 {
        return Err(usage("--shards must be at least 1"));
    }
    if settings.lease.is_zero() {
        return Err(usage("--lease-secs must be at least 1"));
    }
    if settings.maxlen == 0 {
        return Err(usage("--maxlen must be at least 1"));
    }
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    {
        let first = parking_lot::Mutex::new(None::<Instant>);
        ctrlc::set_handler(move || {
            let mut first = first.lock();
            match *first {
                None => {
                    *first = Some(Instant::now());
                    let _ = stop_tx.try_send(());
                }
                // One within a second counts as the same press (a process and its group).
                Some(at) if at.elapsed() > Duration::from_secs(1) => {
                    log.note(
                        "exiting",
                        "second signal, exiting without waiting",
                        &[("exit_code", 130.into())],
                    );
                    std::process::exit(130);
                }
                Some(_) => {}
            }
        })
        .map_err(|e| Failure {
            code: 1,
            message: format!("cannot install the signal handler: {e}"),
        })?;
    }

    let http = match args.http.clone().or(file.http.clone()) {
        Some(addr) => Some(genesys_bridge::http::bind(&addr).map_err(usage)?),
        None => None,
    };
    let pool = credentials(&args, &file)?;
    // Several credentials: their clients share one thread pool (as many threads as one
    // client's default dispatcher threads) instead of dispatcher, lifecycle and token threads
    // each.
    let threads = match pool.len() {
        1 => None,
        _ => Some(
            ThreadPool::new(Config::default().dispatcher_threads()).map_err(|e| Failure {
                code: 1,
                message: format!("cannot start the thread pool: {e}"),
            })?,
        ),
    };
    let mut clients = Vec::new();
    for (i, credential) in pool.iter().enumerate() {
        let client = client(&args, &file, credential, threads.as_ref())?;
        client
            .verify_token()
            .map_err(|e| usage(format!("credential {i}: {e}")))?;
        clients.push(Arc::new(client));
    }
    let topics = gather_topics(&args, &file, &clients[0]).map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    if topics.is_empty() {
        return Err(usage(
            "no topics: give some on the command line, in --config topics, or all_users",
        ));
    }
    let bridge =
        Bridge::start(settings.clone(), clients.clone(), &topics, log).map_err(|e| match e {
            StartError::Topic(..) | StartError::Redis(_) => usage(e.to_string()),
            StartError::Client(_) => Failure {
                code: 1,
                message: e.to_string(),
            },
        })?;
    if let Some(server) = http {
        genesys_bridge::http::serve(server, bridge.shared().clone())
            .map_err(|message| Failure { code: 1, message })?;
    }
    log.note(
        "started",
        &format!(
            "bridge {} writing {} topic(s) into {} shard(s) at {}",
            settings.bridge_id,
            topics.len(),
            settings.shards,
            settings.redis_url
        ),
        &[
            ("bridge", settings.bridge_id.clone().into()),
            ("topics", topics.len().into()),
            ("credentials", clients.len().into()),
            ("shards", settings.shards.into()),
        ],
    );
    if let Some(all) = file.all_users.clone() {
        // New users added, deleted ones dropped: the whole set is read again each period.
        let (shared, args, file, client) = (
            bridge.shared().clone(),
            args.clone(),
            file.clone(),
            clients[0].clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("bridge-users".into())
            .spawn(move || loop {
                std::thread::sleep(all.refresh());
                match gather_topics(&args, &file, &client) {
                    Ok(topics) => {
                        if let Err(e) = shared.set_topics(&topics) {
                            log.note("users_refresh_failed", &e.to_string(), &[]);
                        }
                    }
                    Err(e) => log.note(
                        "users_refresh_failed",
                        &format!("{e}; keeping the current topics"),
                        &[],
                    ),
                }
            });
        if let Err(e) = spawned {
            log.note(
                "warning",
                &format!("cannot start the users refresh: {e}"),
                &[],
            );
        }
    }
    let _ = stop_rx.recv();
    log.note("stopping", "signal received, releasing the leases", &[]);
    let shared = bridge.shared().clone();
    bridge.stop();
    let stats = &shared.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    log.note(
        "summary",
        &format!(
            "events in {}, entries written {}, gaps {}, dropped {}, discarded {}, redis errors {}",
            load(&stats.events_in),
            load(&stats.entries_written),
            load(&stats.gaps),
            load(&stats.dropped),
            load(&stats.discarded),
            load(&stats.redis_errors),
        ),
        &[
            ("events_in", load(&stats.events_in).into()),
            ("entries_written", load(&stats.entries_written).into()),
            ("gaps", load(&stats.gaps).into()),
            ("dropped", load(&stats.dropped).into()),
        ],
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log = Log::new(match args.lifecycle_format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    });
    match run(args, log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            log.note(
                "error",
                &format!("error: {}", failure.message),
                &[("exit_code", failure.code.into())],
            );
            ExitCode::from(failure.code)
        }
    }
}
