//! Helpers for the bridge's integration tests: a throwaway `redis-server` on a free loopback
//! port, bridge processes (the built binary) that are killed on every path, and readers of
//! the streams. Everything talks to 127.0.0.1 only.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts one without persistence.
    pub fn start() -> RedisServer {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts one with these extra arguments (e.g. AOF), in a fresh directory.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("bridge-test-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            args,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut con) = self
                .client()
                .get_connection_with_timeout(Duration::from_secs(1))
            {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    pub fn con(&self) -> redis::Connection {
        self.client()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    /// Kills it (SIGKILL): no shutdown save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it as a restart does (SIGTERM: the append-only file is flushed), killing it if it
    /// has not exited within 20 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (after [`Self::stop`] or [`Self::kill`]).
    pub fn start_again(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bridge process; SIGKILLed on drop if still running. Its stderr lines are collected.
pub struct BridgeProcess {
    child: Child,
    pub id: String,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl BridgeProcess {
    /// Starts `genesys-bridge` against the emulator at `api_base` (client credentials of the
    /// emulator) with `args`, id `id`, JSON log lines.
    pub fn start(
        api_base: &str,
        client_id: &str,
        secret: &str,
        id: &str,
        args: &[String],
    ) -> BridgeProcess {
        let env = [
            ("GENESYS_API_BASE", api_base),
            ("GENESYS_LOGIN_BASE", api_base),
            ("GENESYS_CLIENT_ID", client_id),
            ("GENESYS_CLIENT_SECRET", secret),
        ];
        Self::start_with_env(&env, id, args)
    }

    /// Starts `genesys-bridge` against `emu` (with its client credentials), with `args`, id `id`.
    pub fn on_emulator(
        emu: &genesys_notify::emulator::Emulator,
        id: &str,
        args: &[String],
    ) -> BridgeProcess {
        Self::start(
            &emu.api_base(),
            emu.client_id(),
            emu.client_secret(),
            id,
            args,
        )
    }

    /// Starts `genesys-bridge` with only `env` (and `PATH`) as its environment.
    pub fn start_with_env(env: &[(&str, &str)], id: &str, args: &[String]) -> BridgeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_genesys-bridge"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .args(["--bridge-id", id, "--lifecycle-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the bridge starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        let echo = std::env::var_os("BRIDGE_TEST_ECHO").is_some();
        let tag = id.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[{tag}] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        BridgeProcess {
            child,
            id: id.to_owned(),
            lines,
        }
    }

    /// JSON log lines whose `event` is `event`.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait(timeout)
    }

    /// Sends SIGINT (Ctrl-C) and waits (at most `timeout`) for the exit code.
    pub fn interrupt(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        self.wait(timeout)
    }

    /// SIGKILL, as `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn dump(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One stream entry: its id and fields.
#[derive(Clone, Debug)]
pub struct Entry {
    pub shard: u32,
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

impl Entry {
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }

    /// The stream id's milliseconds and sequence, for ordering.
    pub fn id_key(&self) -> (u64, u64) {
        let (ms, seq) = self.id.split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    }
}

/// Every entry of every shard's stream, per shard in stream order.
pub fn read_all(con: &mut dyn redis::ConnectionLike, prefix: &str, shards: u32) -> Vec<Entry> {
    let mut all = Vec::new();
    for shard in 0..shards {
        let key = format!("{prefix}:{{shard-{shard}}}:events");
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query(con)
            .unwrap();
        for (id, flat) in entries {
            let fields = flat
                .chunks(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            all.push(Entry { shard, id, fields });
        }
    }
    all
}

/// Polls `pred` every 50 ms until true (→ true) or `timeout` (→ false).
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A user id shaped like Genesys' (a UUID), numbered.
pub fn user_id(n: usize) -> String {
    format!("9ed7d9f6-0c59-4360-ac54-{n:012x}")
}

/// The shard of a topic, per the documented hash.
pub fn shard_of(topic: &str, shards: u32) -> u32 {
    genesys_bridge::entry::shard_of(topic, shards)
}

/// `GET path` on `addr` over HTTP/1.0: (status, body); (0, "") when nothing listens.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    // Not listening yet (the process is starting): status 0.
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled or labelled sample in Prometheus text (`name` including labels).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Fencing, per shard: along each stream the fence never decreases, and one fence is one
/// writer (the entries' `bridge` field).
pub fn assert_fencing(entries: &[Entry]) {
    let mut per_shard: BTreeMap<u32, Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        per_shard.entry(e.shard).or_default().push(e);
    }
    for (shard, list) in per_shard {
        let mut last = 0u64;
        let mut writer_of: std::collections::HashMap<u64, &str> = std::collections::HashMap::new();
        for e in list {
            let fence: u64 = e.get("fence").parse().unwrap();
            assert!(
                fence >= last,
                "shard {shard}: fence went back from {last} to {fence}"
            );
            last = fence;
            let writer = writer_of.entry(fence).or_insert(e.get("bridge"));
            assert_eq!(
                *writer,
                e.get("bridge"),
                "shard {shard}: fence {fence} used by two bridges"
            );
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Where the published events went: written to the streams, inside a gap entry for their
/// topic, or lost.
pub struct Accounting {
    /// The `seq` of every event entry in the streams (each once).
    pub seen: std::collections::HashSet<u64>,
    /// Event entries in the streams, duplicates included.
    pub events_written: usize,
    /// Published events not in the streams but inside a gap entry for their topic.
    pub in_gaps: usize,
    /// Published events neither in the streams nor inside a gap: (seq, topic index, published
    /// at in ms since the epoch).
    pub lost: Vec<(u64, usize, u64)>,
    /// Gap entries with reason `takeover`.
    pub takeover_gaps: usize,
    /// The sum of the `dropped` counts of gap entries with reason `dropped`.
    pub dropped_reported: u64,
}

/// Accounts for each published `(seq, topic index, at)` (the emulator event's body is
/// `{"seq": seq}`, its topic `topics[topic index]`) against the stream entries. An event not
/// written counts as inside a gap when its topic has a gap entry with `start - slack_ms <= at
/// <= end` (in ms since the epoch).
pub fn account(
    entries: &[Entry],
    published: &[(u64, usize, std::time::SystemTime)],
    topics: &[String],
    slack_ms: u64,
) -> Accounting {
    let mut seen = std::collections::HashSet::new();
    let mut gaps: std::collections::HashMap<String, Vec<(u64, u64)>> =
        std::collections::HashMap::new();
    let mut takeover_gaps = 0;
    let mut dropped_reported = 0;
    for e in entries {
        match e.get("type") {
            "event" => {
                let body: serde_json::Value = serde_json::from_str(e.get("body")).unwrap();
                seen.insert(body["seq"].as_u64().unwrap());
            }
            "gap" => {
                takeover_gaps += usize::from(e.get("reason") == "takeover");
                if e.get("reason") == "dropped" {
                    dropped_reported += e.get("dropped").parse::<u64>().unwrap();
                }
                let bounds = (
                    e.get("start").parse().unwrap(),
                    e.get("end").parse().unwrap(),
                );
                for t in serde_json::from_str::<Vec<String>>(e.get("topics")).unwrap() {
                    gaps.entry(t.to_lowercase()).or_default().push(bounds);
                }
            }
            _ => {}
        }
    }
    let mut in_gaps = 0;
    let mut lost = Vec::new();
    for (seq, topic, at) in published {
        if seen.contains(seq) {
            continue;
        }
        let at = ms(*at);
        let covered = gaps.get(&topics[*topic].to_lowercase()).is_some_and(|g| {
            g.iter()
                .any(|(s, e)| s.saturating_sub(slack_ms) <= at && at <= *e)
        });
        if covered {
            in_gaps += 1;
        } else {
            lost.push((*seq, *topic, at));
        }
    }
    let events_written = entries.iter().filter(|e| e.get("type") == "event").count();
    Accounting {
        seen,
        events_written,
        in_gaps,
        lost,
        takeover_gaps,
        dropped_reported,
    }
}

/// What [`Publisher`] records of each event: its `seq`, the index of its topic and the time just
/// before it was published.
pub type Published = Vec<(u64, usize, std::time::SystemTime)>;

/// A thread publishing `{"seq": seq}` (seq 1, 2, ...) to `topics[pick(seq)]` on the emulator
/// until stopped, recording each event.
pub struct Publisher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    published: Arc<Mutex<Published>>,
}

impl Publisher {
    /// Starts publishing, pausing `every` after each event.
    pub fn start(
        emu: &Arc<genesys_notify::emulator::Emulator>,
        topics: &[String],
        pick: fn(u64) -> usize,
        every: Duration,
    ) -> Publisher {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let published: Arc<Mutex<Published>> = Arc::default();
        let thread = {
            let (emu, published, stop, topics) = (
                emu.clone(),
                published.clone(),
                stop.clone(),
                topics.to_vec(),
            );
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    seq += 1;
                    let topic = pick(seq);
                    let at = std::time::SystemTime::now();
                    emu.publish(&topics[topic], serde_json::json!({"seq": seq}));
                    published.lock().unwrap().push((seq, topic, at));
                    std::thread::sleep(every);
                }
            })
        };
        Publisher {
            stop,
            thread,
            published,
        }
    }

    /// Stops publishing and returns what was published.
    pub fn stop(self) -> Published {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap();
        let published = self.published.lock().unwrap().clone();
        published
    }
}

/// The presence topics of the first `n` test users (see [`user_id`]).
pub fn presence_topics(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("v2.users.{}.presence", user_id(i)))
        .collect()
}

/// How many topics the emulator's connected channels are subscribed to.
pub fn subscribed_topics(emu: &genesys_notify::emulator::Emulator) -> usize {
    emu.channels()
        .iter()
        .filter(|c| c.connected)
        .map(|c| c.topics.len())
        .sum()
}
