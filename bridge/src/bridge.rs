//! The bridge owns the running parts of one process: the library client(s), the writer thread
//! (buffer → Redis, fenced, pipelined) and the coordinator thread (membership, leases, shard
//! plan, subscriptions). It never runs a user callback: the only callbacks are its own, and
//! they only push into the buffer.

use crate::buffer::{Intake, Pending};
use crate::entry::{shard_of, GapReason, Record, ShardKeys};
use crate::log::Log;
use crate::plan::plan;
use crate::routes::{place, Routes};
use crate::store::{self, Chunk, ChunkResult};
use genesys_notify::{Client, Event, Lifecycle, ListenerGuard};
use parking_lot::{Mutex, RwLock};
use redis::ConnectionLike;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The bridge's settings (see the command's `--help` for each).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `redis://HOST:PORT[/DB]`, or several separated by commas for a Redis Cluster.
    pub redis_url: String,
    /// `redis_url` is a Redis Cluster's seed node.
    pub redis_cluster: bool,
    /// Key prefix (`genesys`).
    pub prefix: String,
    /// Number of shards, the same in every process of a deployment (default 64).
    pub shards: u32,
    /// Lease time (default 10 s); renewed every third of it.
    pub lease: Duration,
    /// `MAXLEN ~` of each stream.
    pub maxlen: u64,
    /// Bytes of events held while Redis is slow or away (default 64 MiB).
    pub buffer_bytes: usize,
    /// Most entries per pipelined batch.
    pub batch: usize,
    /// This process's id in the leases and entries.
    pub bridge_id: String,
}

impl Settings {
    /// The defaults, for `redis_url` and `bridge_id`.
    pub fn new(redis_url: impl Into<String>, bridge_id: impl Into<String>) -> Settings {
        Settings {
            redis_url: redis_url.into(),
            redis_cluster: false,
            prefix: crate::entry::DEFAULT_PREFIX.to_owned(),
            shards: 64,
            lease: Duration::from_secs(10),
            maxlen: 100_000,
            buffer_bytes: 64 << 20,
            batch: 4096,
            bridge_id: bridge_id.into(),
        }
    }

    fn renew_interval(&self) -> Duration {
        self.lease / 3
    }
}

/// Counters, for `/metrics` and the summary line. They never go down.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events (and snapshots) handed over by the library.
    pub events_in: AtomicU64,
    /// Entries Redis acknowledged.
    pub entries_written: AtomicU64,
    /// Gap entries queued.
    pub gaps: AtomicU64,
    /// Events dropped past the byte budget.
    pub dropped: AtomicU64,
    /// Events of shards this process did not hold (arrived after a release or a loss).
    pub unowned: AtomicU64,
    /// Events discarded because their shard's lease was lost (covered by the new holder's gap).
    pub discarded: AtomicU64,
    /// Redis commands or connections that failed.
    pub redis_errors: AtomicU64,
    /// Writes refused by the fence.
    pub fenced: AtomicU64,
    /// Leases acquired.
    pub acquired: AtomicU64,
    /// Leases lost (not released by us).
    pub lost: AtomicU64,
}

/// One shard held by this process.
#[derive(Clone, Debug)]
pub struct Held {
    /// The fencing token of our lease.
    pub fence: u64,
    /// Subscribed and its takeover gap queued: renewals advance `until`.
    pub active: bool,
    /// When we acquired it.
    pub since: SystemTime,
    /// The last entry id Redis gave for it.
    pub last_id: String,
}

/// State shared by the threads and the callbacks.
pub struct Shared {
    /// The settings.
    pub settings: Settings,
    /// Counters.
    pub stats: Stats,
    /// The buffer.
    pub intake: Arc<Intake>,
    /// The shards held, with their fence.
    pub held: Mutex<BTreeMap<u32, Held>>,
    /// Fast check for the callbacks: `accepting[shard]`.
    accepting: Vec<AtomicBool>,
    /// The topics by shard and the event names' routes.
    routes: RwLock<Arc<Routes>>,
    /// A new topic set to apply at the coordinator's next round.
    next_routes: Mutex<Option<Routes>>,
    stop: AtomicBool,
    /// One library client per credential.
    pub clients: Vec<Arc<Client>>,
    /// Where each held shard's topics are subscribed: (client index, topics).
    placement: Mutex<BTreeMap<u32, Placement>>,
    /// The status seen at the last coordinator round, for `/` and `/health`.
    pub view: Mutex<View>,
    /// The last gaps written, newest last (at most [`RECENT_GAPS`]).
    pub recent_gaps: Mutex<std::collections::VecDeque<GapNote>>,
    /// When the first other process's lease runs out unless renewed, as of the last round.
    next_expiry: Mutex<Option<Duration>>,
    /// `events_in` at the last round, for the rate.
    last_events: AtomicU64,
    /// Wakes the coordinator (a fenced write, a stop).
    wake: crossbeam_channel::Sender<()>,
    /// Redis could not be written to since this moment.
    redis_down_since: Mutex<Option<SystemTime>>,
    log: Log,
}

impl Shared {
    /// Whether Redis is unreachable now, since when.
    pub fn redis_down_since(&self) -> Option<SystemTime> {
        *self.redis_down_since.lock()
    }

    /// The subscription topics of `shard`.
    pub fn topics_of(&self, shard: u32) -> Vec<String> {
        self.routes.read().topics_of(shard).to_vec()
    }

    /// See [`Bridge::set_topics`].
    ///
    /// # Errors
    /// [`StartError::Topic`] for a name the library refuses (nothing changes).
    pub fn set_topics(&self, topics: &[String]) -> Result<(), StartError> {
        let routes = Routes::build(topics, self.settings.shards)
            .map_err(|(name, e)| StartError::Topic(name, e))?;
        *self.next_routes.lock() = Some(routes);
        let _ = self.wake.try_send(());
        Ok(())
    }

    /// The current topic set.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().clone()
    }
}

/// Where one shard's topics are subscribed: (index of the client in the pool, its topics).
type Placement = Vec<(usize, Vec<String>)>;

/// Most gaps kept for the status page.
pub const RECENT_GAPS: usize = 20;

/// What the coordinator saw at its last round.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The holder of each shard's lease (`None`: free).
    pub holders: Vec<Option<String>>,
    /// The live bridge processes.
    pub members: Vec<String>,
    /// Events per second handed over by the library, over the last round.
    pub events_per_second: f64,
    /// When the round ran.
    pub at: Option<SystemTime>,
}

/// A gap written, for the status page.
#[derive(Clone, Debug)]
pub struct GapNote {
    /// The shard.
    pub shard: u32,
    /// `socket`, `takeover` or `dropped`.
    pub reason: &'static str,
    /// Start of the hole.
    pub start: SystemTime,
    /// End of the hole.
    pub end: SystemTime,
    /// Topics affected.
    pub topics: usize,
}

/// Queues a gap record for `shard` and remembers it for the status page.
fn push_gap(shared: &Shared, shard: u32, record: Record) {
    if let Record::Gap {
        topics,
        start,
        end,
        reason,
        ..
    } = &record
    {
        let mut recent = shared.recent_gaps.lock();
        if recent.len() == RECENT_GAPS {
            recent.pop_front();
        }
        recent.push_back(GapNote {
            shard,
            reason: reason.as_str(),
            start: *start,
            end: *end,
            topics: topics.len(),
        });
    }
    shared.stats.gaps.fetch_add(1, Ordering::Relaxed);
    shared.intake.with(|b| b.push_forced(shard, record));
}

/// Errors that stop the bridge from starting.
#[derive(Debug)]
pub enum StartError {
    /// A topic name the library refuses.
    Topic(String, genesys_notify::TopicError),
    /// The Redis URL cannot be parsed, or Redis cannot be reached at start.
    Redis(String),
    /// A listener could not be registered, or a thread not started.
    Client(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Topic(t, e) => write!(f, "topic {t:?}: {e}"),
            StartError::Redis(e) => write!(f, "redis: {e}"),
            StartError::Client(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running bridge.
pub struct Bridge {
    shared: Arc<Shared>,
    _guards: Vec<ListenerGuard>,
    threads: Vec<JoinHandle<()>>,
    wake: crossbeam_channel::Sender<()>,
}

impl Bridge {
    /// Starts the bridge for `topics` on `clients` (one per credential, built by the caller;
    /// their snapshots setting decides whether takeovers are followed by snapshots). A shard's
    /// topics are subscribed on the client with the most room left (each has
    /// `max_channels × max_topics_per_channel`, 20 × 1 000 by default), split over several
    /// when one has too little.
    ///
    /// # Errors
    /// [`StartError::Topic`] for a topic the library refuses; [`StartError::Redis`] for a bad
    /// URL or a Redis that does not answer within 5 s; [`StartError::Client`] when the library
    /// refuses a listener or a thread cannot start.
    pub fn start(
        settings: Settings,
        clients: Vec<Arc<Client>>,
        topics: &[String],
        log: Log,
    ) -> Result<Bridge, StartError> {
        if clients.is_empty() {
            return Err(StartError::Client("no client (credential) given".into()));
        }
        let shards = settings.shards.max(1);
        let routes =
            Routes::build(topics, shards).map_err(|(name, e)| StartError::Topic(name, e))?;
        let redis = RedisTarget::open(&settings.redis_url, settings.redis_cluster)
            .map_err(|e| StartError::Redis(e.to_string()))?;
        // Fail fast on a wrong address; later outages are held in the buffer.
        connect(&redis).map_err(|e| StartError::Redis(e.to_string()))?;

        let (wake, woken) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            wake: wake.clone(),
            last_events: AtomicU64::new(0),
            next_expiry: Mutex::new(None),
            intake: Intake::new(settings.buffer_bytes),
            settings,
            stats: Stats::default(),
            held: Mutex::new(BTreeMap::new()),
            accepting: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            routes: RwLock::new(Arc::new(routes)),
            next_routes: Mutex::new(None),
            stop: AtomicBool::new(false),
            clients: clients.clone(),
            placement: Mutex::new(BTreeMap::new()),
            view: Mutex::new(View::default()),
            recent_gaps: Mutex::new(std::collections::VecDeque::new()),
            redis_down_since: Mutex::new(None),
            log,
        });

        let mut guards = Vec::new();
        for (index, client) in clients.iter().enumerate() {
            // `*` stands for exactly one segment: one pattern per segment count covers every
            // name; the routing table says which ones are ours.
            for segments in 1..=16 {
                let pattern = vec!["*"; segments].join(".");
                let sink = shared.clone();
                let guard = client
                    .on(&pattern, move |event: &Event| on_event(&sink, event))
                    .map_err(|e| StartError::Client(format!("listener: {e}")))?;
                guards.push(guard);
            }
            let sink = shared.clone();
            guards.push(
                client
                    .on_lifecycle(move |event: &Lifecycle| on_lifecycle(&sink, index, event))
                    .map_err(|e| StartError::Client(format!("lifecycle listener: {e}")))?,
            );
        }

        let mut threads = Vec::new();
        {
            let (shared, redis) = (shared.clone(), redis.clone());
            threads.push(spawn("bridge-writer", move || writer(&shared, &redis))?);
        }
        {
            let (shared, redis) = (shared.clone(), redis.clone());
            threads.push(spawn("bridge-coordinator", move || {
                coordinator(&shared, &redis, &woken)
            })?);
        }
        Ok(Bridge {
            shared,
            _guards: guards,
            threads,
            wake,
        })
    }

    /// Replaces the topic set (a periodic refresh of `all_users`): the shards held subscribe
    /// the topics added and unsubscribe those removed at the coordinator's next round (at
    /// once: it is woken).
    ///
    /// # Errors
    /// [`StartError::Topic`] for a name the library refuses (nothing changes).
    pub fn set_topics(&self, topics: &[String]) -> Result<(), StartError> {
        self.shared.set_topics(topics)
    }

    /// The shared state (for the HTTP server and tests).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops: the client is shut down (queued events delivered, within 5 s), what is buffered
    /// is written (waiting at most 10 s for Redis), then every lease is released at once, so that
    /// other processes take the shards over without waiting for expiry.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| StartError::Client(format!("cannot start thread {name}: {e}")))
}

/// Where Redis is: one server, or a Redis Cluster reached through seed nodes.
#[derive(Clone)]
pub enum RedisTarget {
    /// One server (`redis://HOST:PORT[/DB]`).
    Single(redis::Client),
    /// A Redis Cluster; commands follow `MOVED`/`ASK` redirections.
    Cluster(redis::cluster::ClusterClient),
}

impl RedisTarget {
    /// `url` is one `redis://` URL, or several separated by commas (seed nodes of a cluster);
    /// `cluster` says a single URL is a cluster's seed node.
    ///
    /// # Errors
    /// A URL the `redis` crate cannot parse.
    pub fn open(url: &str, cluster: bool) -> redis::RedisResult<RedisTarget> {
        if cluster || url.contains(',') {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(Duration::from_secs(5))
                .response_timeout(Duration::from_secs(10))
                .build()
                .map(RedisTarget::Cluster)
        } else {
            redis::Client::open(url).map(RedisTarget::Single)
        }
    }
}

/// A connection with timeouts: 5 s to connect, 10 s for an answer.
fn connect(redis: &RedisTarget) -> redis::RedisResult<Box<dyn ConnectionLike>> {
    match redis {
        RedisTarget::Single(client) => {
            let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
            con.set_read_timeout(Some(Duration::from_secs(10)))?;
            con.set_write_timeout(Some(Duration::from_secs(10)))?;
            Ok(Box::new(con))
        }
        RedisTarget::Cluster(client) => Ok(Box::new(client.get_connection()?)),
    }
}

fn on_event(shared: &Shared, event: &Event) {
    let routes = shared.routes.read().clone();
    let Some((shard, subscription)) = routes.route(event.topic()) else {
        return;
    };
    shared.stats.events_in.fetch_add(1, Ordering::Relaxed);
    if !shared.accepting[*shard as usize].load(Ordering::Acquire) {
        shared.stats.unowned.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let record = Record::Event {
        topic: event.topic().to_owned(),
        body: event.body_json().to_owned(),
        correlation_id: event.correlation_id().map(str::to_owned),
        snapshot: event.is_snapshot(),
        received_at: event.received_at(),
    };
    let accepted = shared
        .intake
        .with(|b| b.push_event(*shard, subscription, record));
    if !accepted {
        shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn on_lifecycle(shared: &Shared, credential: usize, event: &Lifecycle) {
    shared.log.lifecycle(credential, event);
    if let Lifecycle::Gap {
        start, end, topics, ..
    } = event
    {
        let mut per_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for topic in topics {
            let shard = shard_of(topic.as_str(), shared.settings.shards);
            per_shard
                .entry(shard)
                .or_default()
                .push(topic.as_str().to_owned());
        }
        for (shard, topics) in per_shard {
            if !shared.accepting[shard as usize].load(Ordering::Acquire) {
                continue;
            }
            push_gap(
                shared,
                shard,
                Record::Gap {
                    topics,
                    start: *start,
                    end: *end,
                    reason: GapReason::Socket,
                    dropped: 0,
                },
            );
        }
    }
}

/// The writer's connection: one server (commands pipelined, the next batch sent while the
/// answers of the previous are read) or a Redis Cluster (one call per shard).
enum WriterConnection {
    Single(redis::Connection),
    Cluster(Box<dyn ConnectionLike>),
}

impl WriterConnection {
    /// Connects (5 s to connect, 10 s for an answer) and, for one server, loads the write
    /// script so that batches can call it by its SHA1.
    fn open(redis: &RedisTarget) -> redis::RedisResult<WriterConnection> {
        match redis {
            RedisTarget::Single(client) => {
                let mut con = client.get_connection_with_timeout(Duration::from_secs(5))?;
                con.set_read_timeout(Some(Duration::from_secs(10)))?;
                con.set_write_timeout(Some(Duration::from_secs(10)))?;
                store::load_write_script(&mut con)?;
                Ok(WriterConnection::Single(con))
            }
            RedisTarget::Cluster(_) => connect(redis).map(WriterConnection::Cluster),
        }
    }
}

/// A batch taken from the buffer, grouped by shard with the fences held when it was taken,
/// and (for one server) already encoded.
struct Prepared {
    /// Every record taken, in buffer order (shards not held any more included).
    batch: Vec<Pending>,
    /// Per shard still held, in command order: the shard, its fence, its records' indexes in
    /// `batch`.
    groups: Vec<(u32, u64, Vec<usize>)>,
    /// The fenced transaction's first part (`store::encode_transaction`; empty for a Redis
    /// Cluster, whose writes are encoded by the `redis` crate).
    packed: Vec<u8>,
}

impl Prepared {
    fn chunks(&self) -> Vec<Chunk<'_>> {
        self.groups
            .iter()
            .map(|(shard, fence, indexes)| Chunk {
                shard: *shard,
                fence: *fence,
                records: indexes.iter().map(|i| &self.batch[*i].record).collect(),
            })
            .collect()
    }
}

/// Groups `batch` by shard held (records of shards not held any more are left out, counted as
/// discarded: their new holder's gap covers them, or they were flushed before a release) and,
/// with `encode`, encodes the writes into `packed` (cleared first, its capacity reused).
fn prepare(shared: &Shared, batch: Vec<Pending>, mut packed: Vec<u8>, encode: bool) -> Prepared {
    let settings = &shared.settings;
    let fences: BTreeMap<u32, u64> = shared
        .held
        .lock()
        .iter()
        .map(|(s, h)| (*s, h.fence))
        .collect();
    let mut grouped: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, p) in batch.iter().enumerate() {
        if fences.contains_key(&p.shard) {
            grouped.entry(p.shard).or_default().push(i);
        } else if p.record.received_at().is_some() {
            shared.stats.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }
    packed.clear();
    let prepared = Prepared {
        batch,
        groups: grouped
            .into_iter()
            .map(|(shard, indexes)| (shard, fences[&shard], indexes))
            .collect(),
        packed: Vec::new(),
    };
    if encode {
        store::encode_transaction(
            &mut packed,
            &settings.prefix,
            &settings.bridge_id,
            settings.maxlen,
            &prepared.chunks(),
            SystemTime::now(),
        );
    }
    Prepared { packed, ..prepared }
}

/// Sends `current` to one server and, while Redis runs it, takes and encodes the next batch
/// (`next`, if anything is waiting), then reads the answers. The outer error is a connection
/// failure: nothing of `current` is known to be written.
fn send_and_prepare_next(
    shared: &Shared,
    con: &mut redis::Connection,
    current: &Prepared,
    next: &mut Option<Prepared>,
    spare: &mut Vec<u8>,
) -> redis::RedisResult<Vec<ChunkResult>> {
    let settings = &shared.settings;
    store::write_transaction(
        con,
        &current.packed,
        &settings.prefix,
        &settings.bridge_id,
        settings.maxlen,
        &current.chunks(),
        || {
            if next.is_none() {
                let batch = shared.intake.take(settings.batch, Duration::ZERO);
                if !batch.is_empty() {
                    *next = Some(prepare(shared, batch, std::mem::take(spare), true));
                }
            }
        },
    )
}

/// The writer thread: takes batches from the buffer and writes them, fenced (on one server a
/// transaction checked against every shard's fence, on a Redis Cluster the write script per
/// shard: see store.rs); only what Redis acknowledged leaves the buffer. On one server, the
/// next batch is taken and encoded while Redis runs the previous one, so that Redis does not
/// wait for the encoding (at most two batches out of the buffer at once; the second is sent
/// only once the first is answered, so that a shard's entries never overtake each other).
fn writer(shared: &Shared, redis: &RedisTarget) {
    let settings = &shared.settings;
    let mut con: Option<WriterConnection> = None;
    let mut backoff = Duration::from_millis(50);
    // Taken and encoded while the previous batch was in flight.
    let mut next: Option<Prepared> = None;
    // An encoding buffer to reuse.
    let mut spare: Vec<u8> = Vec::new();
    let mut load_script = false;
    loop {
        // Stopping, with every lease released or given up (the coordinator flushed first, for
        // at most 10 s): what may be left belongs to no shard held, and is the next holders'.
        if shared.stop.load(Ordering::SeqCst) && shared.held.lock().is_empty() {
            if let Some(p) = next.take() {
                shared.intake.with(|b| b.requeue(p.batch));
            }
            return;
        }
        let current = match next.take() {
            Some(prepared) => prepared,
            None => {
                let batch = shared
                    .intake
                    .take(settings.batch, Duration::from_millis(100));
                if batch.is_empty() {
                    continue;
                }
                let encode = matches!(redis, RedisTarget::Single(_));
                prepare(shared, batch, std::mem::take(&mut spare), encode)
            }
        };
        if current.groups.is_empty() {
            // Nothing of this batch belongs to a shard still held: done without Redis.
            let bytes = current.batch.iter().map(Pending::weight).sum();
            shared.intake.with(|b| b.ack(bytes));
            spare = current.packed;
            continue;
        }
        if con.is_none() {
            match WriterConnection::open(redis) {
                Ok(c) => {
                    con = Some(c);
                    load_script = false;
                }
                Err(e) => {
                    redis_failed(shared, &format!("cannot connect: {e}"));
                    shared.intake.with(|b| b.requeue(current.batch));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let outcome = match con.as_mut() {
            Some(WriterConnection::Single(c)) => {
                let loaded = if load_script {
                    store::load_write_script(c)
                } else {
                    Ok(())
                };
                load_script = false;
                loaded.and_then(|()| {
                    send_and_prepare_next(shared, c, &current, &mut next, &mut spare)
                })
            }
            Some(WriterConnection::Cluster(c)) => store::write_batch(
                c.as_mut(),
                &settings.prefix,
                &settings.bridge_id,
                settings.maxlen,
                &current.chunks(),
            ),
            None => continue,
        };
        match outcome {
            Err(e) => {
                con = None;
                redis_failed(shared, &e.to_string());
                // The newest batch back first, so that the order is kept.
                if let Some(p) = next.take() {
                    shared.intake.with(|b| b.requeue(p.batch));
                }
                shared.intake.with(|b| b.requeue(current.batch));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Ok(results) => {
                backoff = Duration::from_millis(50);
                redis_ok(shared);
                let mut retry_shards = Vec::new();
                for ((shard, _, indexes), result) in current.groups.iter().zip(results) {
                    match result {
                        ChunkResult::Written(id) => {
                            shared
                                .stats
                                .entries_written
                                .fetch_add(indexes.len() as u64, Ordering::Relaxed);
                            if let Some(h) = shared.held.lock().get_mut(shard) {
                                h.last_id = id;
                            }
                        }
                        ChunkResult::Fenced(message) => {
                            shared.stats.fenced.fetch_add(1, Ordering::Relaxed);
                            shared.log.note(
                                "fenced",
                                &format!("shard {shard}: write refused: {message}"),
                                &[("shard", (*shard).into())],
                            );
                            retry_shards.push(*shard);
                        }
                        ChunkResult::Refused(message) if message.starts_with("NOSCRIPT") => {
                            // Redis lost its scripts behind this connection: load it again and
                            // write these once more.
                            load_script = true;
                            retry_shards.push(*shard);
                        }
                        ChunkResult::Refused(message) => {
                            redis_failed(shared, &format!("shard {shard}: {message}"));
                            retry_shards.push(*shard);
                        }
                    }
                }
                if !retry_shards.is_empty() {
                    // Some shard's records go back: the batch taken meanwhile goes back first
                    // (whole, as it was not sent), so that they keep their order.
                    if let Some(p) = next.take() {
                        shared.intake.with(|b| b.requeue(p.batch));
                    }
                }
                // Acknowledged records leave; the others go back in front, in order.
                let Prepared { batch, packed, .. } = current;
                spare = packed;
                if retry_shards.is_empty() {
                    // The common case: the whole batch is done (no partition, no copy).
                    let bytes = batch.iter().map(Pending::weight).sum();
                    shared.intake.with(|b| b.ack(bytes));
                    drop(batch);
                    write_drop_gaps(shared);
                    continue;
                }
                let (retry, done): (Vec<Pending>, Vec<Pending>) = batch
                    .into_iter()
                    .partition(|p| retry_shards.contains(&p.shard));
                // Records of shards not held are done too (left out above).
                let done_bytes: usize = done.iter().map(Pending::weight).sum::<usize>();
                let made_progress = retry.is_empty() || !done.is_empty();
                shared.intake.with(|b| {
                    b.ack(done_bytes);
                    if !retry.is_empty() {
                        b.requeue(retry);
                    }
                });
                if !retry_shards.is_empty() {
                    // The coordinator checks the leases at once: re-acquired (keep going with
                    // the new fence) or lost (discard).
                    let _ = shared.wake.try_send(());
                }
                if !made_progress {
                    std::thread::sleep(Duration::from_millis(100));
                }
                write_drop_gaps(shared);
            }
        }
    }
}

/// Events dropped while Redis was away: their gap entry, now that it takes writes again.
fn write_drop_gaps(shared: &Shared) {
    if shared.intake.with(|b| b.shards_with_drops().is_empty()) {
        return;
    }
    // Not nested in the buffer's lock: the callbacks take that one on every event.
    let held: Vec<u32> = shared.held.lock().keys().copied().collect();
    let drops: Vec<(u32, crate::buffer::Drops)> = shared.intake.with(|b| {
        b.shards_with_drops()
            .into_iter()
            .filter(|s| held.contains(s))
            .filter_map(|s| b.take_drops(s).map(|d| (s, d)))
            .collect()
    });
    for (shard, d) in drops {
        shared.log.note(
            "gap",
            &format!(
                "shard {shard}: {} event(s) dropped past the buffer budget",
                d.count
            ),
            &[("shard", shard.into()), ("dropped", d.count.into())],
        );
        push_gap(
            shared,
            shard,
            Record::Gap {
                topics: d.topics.into_iter().collect(),
                start: d.first,
                end: d.last,
                reason: GapReason::Dropped,
                dropped: d.count,
            },
        );
    }
}

fn redis_failed(shared: &Shared, message: &str) {
    shared.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
    let mut down = shared.redis_down_since.lock();
    if down.is_none() {
        *down = Some(SystemTime::now());
        drop(down);
        let (bytes, budget) = shared.intake.with(|b| (b.bytes(), b.budget()));
        shared.log.note(
            "redis_unavailable",
            &format!(
                "redis: {message}; holding events (buffer {bytes} of {budget} bytes) until it is back"
            ),
            &[("error", message.into())],
        );
    }
}

fn redis_ok(shared: &Shared) {
    let mut down = shared.redis_down_since.lock();
    if let Some(since) = down.take() {
        drop(down);
        let secs = since.elapsed().unwrap_or_default().as_secs_f64();
        shared.log.note(
            "redis_available",
            &format!("redis: writing again after {secs:.1} s"),
            &[("down_secs", secs.into())],
        );
    }
}

/// The coordinator thread: every third of the lease time, heartbeat, renew held leases, then
/// follow the plan: release extra shards, acquire free ones (subscribing their topics).
fn coordinator(shared: &Shared, redis: &RedisTarget, wake: &crossbeam_channel::Receiver<()>) {
    let settings = &shared.settings;
    let mut con: Option<Box<dyn ConnectionLike>> = None;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            stop_all(shared, &mut con, redis);
            return;
        }
        if con.is_none() {
            match connect(redis) {
                Ok(c) => con = Some(c),
                Err(e) => redis_failed(shared, &format!("coordinator cannot connect: {e}")),
            }
        }
        apply_routes(shared);
        if let Some(c) = con.as_deref_mut() {
            if let Err(e) = tick(shared, c) {
                redis_failed(shared, &format!("coordinator: {e}"));
                con = None;
            }
        }
        // A lease of another process that is about to run out without renewal (a dead
        // process): look again just after it does, to take the shard over at once.
        let next = match *shared.next_expiry.lock() {
            Some(expiry) => (expiry + Duration::from_millis(250)).min(settings.renew_interval()),
            None => settings.renew_interval(),
        };
        let _ = wake.recv_timeout(next);
    }
}

fn lease_ms(settings: &Settings) -> u64 {
    settings.lease.as_millis() as u64
}

/// One round: renewals, then the plan.
fn tick(shared: &Shared, con: &mut dyn ConnectionLike) -> redis::RedisResult<()> {
    let settings = &shared.settings;
    // The heartbeat comes before the renewals: a process that dies then leaves the live set
    // no later than its leases expire, so the others' quotas grow by the time its shards are
    // free (renewing many shards under load takes a while).
    let members = store::heartbeat(
        con,
        &settings.prefix,
        &settings.bridge_id,
        lease_ms(settings),
    )?;
    renew_all(shared, con)?;
    let holders = store::holders(con, &settings.prefix, settings.shards)?;
    // Only leases close to running out matter (a live holder renews at a third of the lease).
    *shared.next_expiry.lock() =
        store::next_expiry(con, &settings.prefix, &holders, &settings.bridge_id)?
            .filter(|ttl| *ttl < settings.renew_interval());
    let p = plan(&settings.bridge_id, &members, &holders);
    {
        let now = SystemTime::now();
        let events = shared.stats.events_in.load(Ordering::Relaxed);
        let mut view = shared.view.lock();
        let rate = match view.at.and_then(|at| now.duration_since(at).ok()) {
            Some(elapsed) if elapsed > Duration::from_millis(100) => {
                (events.saturating_sub(shared.last_events.swap(events, Ordering::Relaxed))) as f64
                    / elapsed.as_secs_f64()
            }
            _ => {
                shared.last_events.store(events, Ordering::Relaxed);
                0.0
            }
        };
        *view = View {
            holders: holders.clone(),
            members: members.clone(),
            events_per_second: rate,
            at: Some(now),
        };
    }
    for shard in p.release {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        release_shard(shared, con, shard)?;
        if let Some(h) = shared.view.lock().holders.get_mut(shard as usize) {
            *h = None;
        }
    }
    let started = Instant::now();
    let mut missing = p.missing;
    for shard in p.acquire {
        if shared.stop.load(Ordering::SeqCst) || missing == 0 {
            break;
        }
        // Subscribing many shards may take a while: keep the leases held meanwhile.
        if started.elapsed() > settings.renew_interval() / 2 {
            renew_all(shared, con)?;
        }
        let keys = ShardKeys::new(&settings.prefix, shard);
        if let Some(acquired) = store::acquire(con, &keys, &settings.bridge_id, lease_ms(settings))?
        {
            let taken = activate(shared, shard, acquired);
            missing -= usize::from(taken);
            if !taken {
                store::release(con, &keys, &settings.bridge_id, None)?;
            }
            if let Some(h) = shared.view.lock().holders.get_mut(shard as usize) {
                *h = taken.then(|| settings.bridge_id.clone());
            }
        }
    }
    Ok(())
}

fn renew_all(shared: &Shared, con: &mut dyn ConnectionLike) -> redis::RedisResult<()> {
    let settings = &shared.settings;
    let held: Vec<(u32, Held)> = shared
        .held
        .lock()
        .iter()
        .map(|(s, h)| (*s, h.clone()))
        .collect();
    let now = SystemTime::now();
    // Events can wait in sockets and in the library's queues before they reach the buffer:
    // vouch only for what is a renewal interval old.
    let vouch_before = now - settings.renew_interval();
    let oldest_waiting = shared.intake.with(|b| b.watermarks());
    for (shard, h) in held {
        let keys = ShardKeys::new(&settings.prefix, shard);
        let until = h.active.then(|| {
            oldest_waiting
                .get(&shard)
                .copied()
                .unwrap_or(vouch_before)
                .min(vouch_before)
        });
        if store::renew(con, &keys, &settings.bridge_id, lease_ms(settings), until)? {
            continue;
        }
        // Not ours any more: expired (Redis away longer than the lease, or restarted) or
        // taken. Free again: take it back with a new fence and keep what is buffered, since
        // nobody else wrote meanwhile. Taken: the new holder's gap covers what we hold.
        match store::acquire(con, &keys, &settings.bridge_id, lease_ms(settings))? {
            Some(acquired)
                if acquired
                    .previous
                    .as_ref()
                    .is_none_or(|p| p.holder == settings.bridge_id) =>
            {
                if let Some(held) = shared.held.lock().get_mut(&shard) {
                    held.fence = acquired.fence;
                    held.active = true;
                }
                shared.log.note(
                    "lease_renewed",
                    &format!(
                        "shard {shard}: lease had expired, acquired again (fence {})",
                        acquired.fence
                    ),
                    &[("shard", shard.into()), ("fence", acquired.fence.into())],
                );
            }
            Some(acquired) => {
                // Someone held it in between and may have written: start over as a takeover.
                lose_shard(shared, shard, "held by another process meanwhile");
                if !activate(shared, shard, acquired) {
                    store::release(con, &keys, &settings.bridge_id, None)?;
                }
            }
            None => lose_shard(shared, shard, "lease taken by another process"),
        }
    }
    Ok(())
}

/// We hold `shard` now: accept its events, subscribe its topics, and write the takeover gap.
///
/// Returns false when its topics could not be subscribed: the shard is then let go locally
/// (the caller releases the lease without advancing `until`, so that the next holder's gap
/// still starts where the last one stopped vouching).
fn activate(shared: &Shared, shard: u32, acquired: store::Acquired) -> bool {
    let settings = &shared.settings;
    shared.stats.acquired.fetch_add(1, Ordering::Relaxed);
    shared.held.lock().insert(
        shard,
        Held {
            fence: acquired.fence,
            active: false,
            since: SystemTime::now(),
            last_id: String::new(),
        },
    );
    shared.accepting[shard as usize].store(true, Ordering::Release);
    let previous = acquired
        .previous
        .as_ref()
        .map(|p| p.holder.clone())
        .unwrap_or_else(|| "none".into());
    shared.intake.with(|b| {
        b.push_forced(
            shard,
            Record::Lifecycle {
                event: "acquired".into(),
                message: format!(
                    "shard {shard} acquired by {} with fence {} (previous holder: {previous})",
                    settings.bridge_id, acquired.fence
                ),
            },
        )
    });
    let topics = shared.topics_of(shard);
    if !subscribe_shard(shared, shard) {
        unsubscribe_shard(shared, shard);
        shared.accepting[shard as usize].store(false, Ordering::Release);
        shared.held.lock().remove(&shard);
        shared.intake.with(|b| b.discard_shard(shard));
        shared.log.note(
            "shard_not_taken",
            &format!("shard {shard}: its topics could not be subscribed; letting it go"),
            &[("shard", shard.into())],
        );
        return false;
    }
    let end = SystemTime::now();
    // A previous holder that never vouched (it died before its first renewal) leaves no
    // `until`: the gap then starts when it acquired the shard.
    if let Some(until) = acquired
        .previous
        .as_ref()
        .and_then(store::Previous::gap_start)
    {
        if !topics.is_empty() {
            push_gap(
                shared,
                shard,
                Record::Gap {
                    topics: topics.to_vec(),
                    start: until,
                    end,
                    reason: GapReason::Takeover,
                    dropped: 0,
                },
            );
        }
    }
    if let Some(h) = shared.held.lock().get_mut(&shard) {
        h.active = true;
    }
    shared.log.note(
        "acquired",
        &format!(
            "shard {shard}: acquired (fence {}, previous holder {previous}), {} topic(s)",
            acquired.fence,
            topics.len()
        ),
        &[("shard", shard.into()), ("fence", acquired.fence.into())],
    );
    true
}

/// Subscribes the topics of `shard`, on the client(s) with the most room (→ false: a call
/// failed).
fn subscribe_shard(shared: &Shared, shard: u32) -> bool {
    let topics = shared.topics_of(shard);
    subscribe_topics(shared, shard, &topics)
}

/// Subscribes `topics` of `shard` on the client(s) with the most room, recording where
/// (→ false: a call failed; what succeeded is recorded).
fn subscribe_topics(shared: &Shared, shard: u32, topics: &[String]) -> bool {
    if topics.is_empty() {
        return true;
    }
    let mut load: Vec<usize> = vec![0; shared.clients.len()];
    for parts in shared.placement.lock().values() {
        for (client, topics) in parts {
            load[*client] += topics.len();
        }
    }
    let capacity: Vec<usize> = shared
        .clients
        .iter()
        .map(|c| c.config().max_channels() * c.config().max_topics_per_channel())
        .collect();
    let parts = place(&load, &capacity, topics);
    let mut ok = true;
    for (client, topics) in &parts {
        match shared.clients[*client].subscribe(topics) {
            Ok(report) => {
                for rejected in &report.rejected {
                    shared.log.note(
                        "topic_rejected",
                        &format!(
                            "shard {shard}: topic {} rejected: {} (missing permissions: {})",
                            rejected.topic,
                            rejected
                                .rejection_reason
                                .as_deref()
                                .unwrap_or("no reason given"),
                            rejected.missing_permissions.join(", ")
                        ),
                        &[
                            ("shard", shard.into()),
                            ("topic", rejected.topic.as_str().into()),
                        ],
                    );
                }
            }
            Err(e) => {
                ok = false;
                shared.log.note(
                    "subscribe_failed",
                    &format!(
                        "shard {shard}: subscribing {} topic(s) on credential {client} failed: {e}",
                        topics.len()
                    ),
                    &[("shard", shard.into()), ("credential", (*client).into())],
                );
            }
        }
    }
    shared
        .placement
        .lock()
        .entry(shard)
        .or_default()
        .extend(parts);
    ok
}

/// Unsubscribes the topics of `shard` from the client(s) they are on.
fn unsubscribe_shard(shared: &Shared, shard: u32) {
    let parts = shared.placement.lock().remove(&shard).unwrap_or_default();
    for (client, topics) in parts {
        let _ = shared.clients[client].unsubscribe(&topics);
    }
}

/// Unsubscribes some `topics` of `shard` from the client(s) they are on.
fn unsubscribe_topics(shared: &Shared, shard: u32, topics: &[String]) {
    let gone: std::collections::HashSet<&String> = topics.iter().collect();
    let mut per_client: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    if let Some(parts) = shared.placement.lock().get_mut(&shard) {
        for (client, list) in parts.iter_mut() {
            list.retain(|t| {
                if gone.contains(t) {
                    per_client.entry(*client).or_default().push(t.clone());
                    false
                } else {
                    true
                }
            });
        }
        parts.retain(|(_, list)| !list.is_empty());
    }
    for (client, topics) in per_client {
        let _ = shared.clients[client].unsubscribe(&topics);
    }
}

/// Applies a new topic set, if one is waiting: the held shards subscribe what was added and
/// unsubscribe what was removed.
fn apply_routes(shared: &Shared) {
    let Some(next) = shared.next_routes.lock().take() else {
        return;
    };
    let next = Arc::new(next);
    let old = std::mem::replace(&mut *shared.routes.write(), next.clone());
    let held: Vec<u32> = shared.held.lock().keys().copied().collect();
    let (mut added_total, mut removed_total) = (0, 0);
    for shard in held {
        let (added, removed) = old.diff(&next, shard);
        added_total += added.len();
        removed_total += removed.len();
        unsubscribe_topics(shared, shard, &removed);
        subscribe_topics(shared, shard, &added);
    }
    shared.log.note(
        "topics_changed",
        &format!(
            "topics: {} now ({} before); in the shards held, {added_total} added, {removed_total} removed",
            next.len(),
            old.len()
        ),
        &[
            ("topics", next.len().into()),
            ("added", added_total.into()),
            ("removed", removed_total.into()),
        ],
    );
}

/// The lease is gone: stop accepting, forget what is buffered (the new holder's gap covers
/// it), unsubscribe.
fn lose_shard(shared: &Shared, shard: u32, why: &str) {
    shared.stats.lost.fetch_add(1, Ordering::Relaxed);
    shared.accepting[shard as usize].store(false, Ordering::Release);
    shared.held.lock().remove(&shard);
    let discarded = shared.intake.with(|b| b.discard_shard(shard));
    shared
        .stats
        .discarded
        .fetch_add(discarded, Ordering::Relaxed);
    unsubscribe_shard(shared, shard);
    shared.log.note(
        "lost",
        &format!("shard {shard}: lease lost ({why}); {discarded} buffered event(s) left to the new holder's gap"),
        &[("shard", shard.into())],
    );
}

/// Gives a shard up cleanly: unsubscribe, write what is buffered, release.
fn release_shard(
    shared: &Shared,
    con: &mut dyn ConnectionLike,
    shard: u32,
) -> redis::RedisResult<()> {
    let settings = &shared.settings;
    let unsubscribed_at = SystemTime::now();
    unsubscribe_shard(shared, shard);
    let fence = shared.held.lock().get(&shard).map(|h| h.fence);
    shared.intake.with(|b| {
        b.push_forced(
            shard,
            Record::Lifecycle {
                event: "released".into(),
                message: format!(
                    "shard {shard} released by {} (fence {})",
                    settings.bridge_id,
                    fence.unwrap_or_default()
                ),
            },
        )
    });
    flush(shared, &[shard], Duration::from_secs(5));
    shared.accepting[shard as usize].store(false, Ordering::Release);
    let until = shared
        .intake
        .with(|b| b.watermark(shard, unsubscribed_at - settings.renew_interval()));
    let active = shared.held.lock().remove(&shard).is_some_and(|h| h.active);
    let discarded = shared.intake.with(|b| b.discard_shard(shard));
    shared
        .stats
        .discarded
        .fetch_add(discarded, Ordering::Relaxed);
    let keys = ShardKeys::new(&settings.prefix, shard);
    store::release(con, &keys, &settings.bridge_id, active.then_some(until))?;
    shared.log.note(
        "released",
        &format!("shard {shard}: released"),
        &[("shard", shard.into())],
    );
    Ok(())
}

/// Waits until nothing of `shards` is buffered or in flight, at most `timeout`.
fn flush(shared: &Shared, shards: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if shared.intake.with(|b| shards.iter().all(|s| !b.holds(*s))) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The clean stop: shut the client down (delivering what it queued), flush, release every
/// lease, leave the live set.
fn stop_all(shared: &Shared, con: &mut Option<Box<dyn ConnectionLike>>, redis: &RedisTarget) {
    let settings = &shared.settings;
    for client in &shared.clients {
        if let Err(e) = client.shutdown(Duration::from_secs(5)) {
            shared
                .log
                .note("shutdown", &format!("client shutdown: {e}"), &[]);
        }
    }
    let shards: Vec<u32> = shared.held.lock().keys().copied().collect();
    for shard in &shards {
        let fence = shared.held.lock().get(shard).map(|h| h.fence);
        shared.intake.with(|b| {
            b.push_forced(
                *shard,
                Record::Lifecycle {
                    event: "released".into(),
                    message: format!(
                        "shard {shard} released by {} (fence {}): stopping",
                        settings.bridge_id,
                        fence.unwrap_or_default()
                    ),
                },
            )
        });
    }
    let flushed = flush(shared, &shards, Duration::from_secs(10));
    if con.is_none() {
        *con = connect(redis).ok();
    }
    let now = SystemTime::now();
    let mut released = 0;
    for shard in &shards {
        shared.accepting[*shard as usize].store(false, Ordering::Release);
        let until = shared.intake.with(|b| b.watermark(*shard, now));
        let active = shared.held.lock().remove(shard).is_some_and(|h| h.active);
        if let Some(c) = con.as_deref_mut() {
            let keys = ShardKeys::new(&settings.prefix, *shard);
            if store::release(c, &keys, &settings.bridge_id, active.then_some(until))
                .unwrap_or(false)
            {
                released += 1;
            }
        }
    }
    if let Some(c) = con.as_deref_mut() {
        let _ = store::leave(c, &settings.prefix, &settings.bridge_id);
    }
    shared.log.note(
        "stopped",
        &format!(
            "released {released} of {} shard(s){}",
            shards.len(),
            if flushed {
                ""
            } else {
                "; some events could not be written (covered by the next holder's gap)"
            }
        ),
        &[("released", released.into())],
    );
}
