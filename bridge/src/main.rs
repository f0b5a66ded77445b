// genesys-bridge: write Genesys Cloud notifications of the given topics into Redis Streams,
// sharded across processes. The user-facing description is `Args`'s `--help` text; the log's
// format is in the library's crate docs (src/lib.rs) and the README's "Scale out".

use clap::{Parser, ValueEnum};
use genesys_bridge::bridge::{Bridge, Settings, StartError};
use genesys_bridge::config::FileConfig;
use genesys_bridge::log::{Format, Log};
use genesys_notify::cli::{
    Credential, CredentialArgs, Given, NetworkArgs, Origin, Settings as Connection, SettingsError,
};
use genesys_notify::{Client, Config, Snapshots, ThreadPool};
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

Settings:
  A flag wins over its environment variable (an empty variable counts as unset, an empty
  flag is an error), and both win over --config. Across settings too: a region wins over
  base URLs given at a lower level (--region over GENESYS_API_BASE and GENESYS_LOGIN_BASE
  from the environment; --api-base and --login-base win over the region), and --client-id
  with --client-secret win over GENESYS_ACCESS_TOKEN from the environment; a warning names
  what was ignored.

Corporate networks:
  The proxy comes from --proxy, else from https_proxy / HTTPS_PROXY / all_proxy / ALL_PROXY,
  with no_proxy / NO_PROXY (or --no-proxy) naming hosts that go direct (host names cover their
  subdomains; .domain, IP, CIDR and :port forms work). --no-proxy-env ignores the environment.
  Loopback hosts go direct unless --proxy-loopback.

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

    /// Where to connect and how to authenticate (shared with genesys-tail).
    #[command(flatten)]
    credentials: CredentialArgs,

    /// Never read topics' state over REST (no snapshot entries after gaps and takeovers).
    #[arg(long)]
    no_snapshots: bool,

    /// Proxy, trust and gateway (shared with genesys-tail).
    #[command(flatten)]
    network: NetworkArgs,

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

/// A settings problem of the shared flags: input to fix.
impl From<SettingsError> for Failure {
    fn from(error: SettingsError) -> Failure {
        usage(error.to_string())
    }
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

/// Where to connect and how to authenticate: the flags, else the environment, else the file
/// (region and bases), resolved across settings (see `genesys_notify::cli`).
fn connection(args: &Args, file: &FileConfig) -> Result<(Connection, Vec<String>), Failure> {
    let mut settings = args.credentials.settings()?;
    for (setting, value, source) in [
        (&mut settings.region, &file.region, "region in --config"),
        (
            &mut settings.api_base,
            &file.api_base,
            "api_base in --config",
        ),
        (
            &mut settings.login_base,
            &file.login_base,
            "login_base in --config",
        ),
    ] {
        if setting.is_none() {
            *setting = Given::fallback(value.as_deref(), source);
        }
    }
    Ok(settings.resolve())
}

/// The credential pool: the file's `[[credential]]` tables when neither flags nor environment
/// give credentials, else theirs (one client, or an access token).
fn credentials(settings: &Connection, file: &FileConfig) -> Result<Vec<Credential>, Failure> {
    let none_given = settings.access_token.is_none()
        && settings.client_id.is_none()
        && settings.client_secret.is_none();
    if none_given && !file.credentials.is_empty() {
        return file
            .credentials
            .iter()
            .map(|c| {
                Ok(Credential::ClientCredentials {
                    id: c.client_id.clone(),
                    secret: c.secret().map_err(usage)?,
                })
            })
            .collect();
    }
    Ok(vec![settings.credential(Some(
        ", or [[credential]] tables in --config",
    ))?])
}

/// The flag, variable or file entry behind a library setting, for messages about it.
fn setting_name(settings: &Connection, field: &str) -> String {
    let given = match field {
        "region" => &settings.region,
        "api_base" => &settings.api_base,
        "login_base" => &settings.login_base,
        _ => &None,
    };
    match given {
        Some(Given {
            origin: Origin::Fallback(source),
            ..
        }) => source.clone(),
        _ => genesys_notify::cli::setting_flag(field).unwrap_or_else(|| format!("setting {field}")),
    }
}

fn client(
    args: &Args,
    settings: &Connection,
    credential: &Credential,
    pool: Option<&ThreadPool>,
) -> Result<Client, Failure> {
    let mut builder = Client::builder();
    if let Some(pool) = pool {
        builder = builder.thread_pool(pool);
    }
    let builder = settings.endpoints(builder, credential.needs_login())?;
    let mut builder = credential.apply(builder);
    // Takeovers resubscribe a shard's topics: its state is read at once, so that consumers
    // get the current state right after the takeover gap.
    builder = builder.snapshots(if args.no_snapshots {
        Snapshots::Off
    } else {
        Snapshots::AfterGapsAndSubscribe
    });
    builder = args.network.apply(builder)?;
    builder.build().map_err(|e| match &e {
        genesys_notify::Error::Config(c) => usage(format!(
            "settings: {}: {}",
            setting_name(settings, c.field),
            c.reason
        )),
        _ => usage(format!("settings: {e}")),
    })
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
    let redis = genesys_notify::cli::flag_or_env(args.redis.clone(), "--redis", "GENESYS_BRIDGE_REDIS")?
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
    let (connection, warnings) = connection(&args, &file)?;
    for warning in &warnings {
        log.note("warning", warning, &[]);
    }
    let pool = credentials(&connection, &file)?;
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
        let client = client(&args, &connection, credential, threads.as_ref())?;
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
