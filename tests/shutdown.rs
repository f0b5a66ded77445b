//! Shutdown is prompt and clean (crate guarantee 8): `shutdown` and `Drop` close every socket
//! with a close frame, remove every channel's server-side subscriptions, join every thread, and
//! return within their timeout even when a listener callback hangs or the REST API hangs.
//!
//! Threads are counted from `/proc/self/task/*/comm` (Linux). The tests of this file run one at
//! a time (the `SERIAL` lock) so that one test's threads never show in another's count; threads
//! of the test harness (named after the tests) are left out of the counts.
mod util;

use genesys_notify::emulator::{Emulator, SocketEventKind};
use genesys_notify::{Client, Error, Event};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use util::*;

/// The tests of this file, whose harness threads are left out of thread counts.
const TESTS: &[&str] = &[
    "shutdown_closes_sockets_deletes_subscriptions_and_joins_every_thread",
    "drop_shuts_down_the_same_way",
    "shutdown_returns_in_time_when_a_listener_hangs",
    "shutdown_returns_in_time_when_the_rest_api_hangs",
    "shutdown_completes_when_the_rest_api_is_slow",
];

static SERIAL: Mutex<()> = Mutex::new(());

const CHANNELS: usize = 10;
/// Slack allowed beyond a shutdown timeout (2 shared cores, debug build).
const MARGIN: Duration = Duration::from_millis(500);

/// Thread names of this process (at most 15 bytes each, as the kernel keeps them), harness
/// threads excepted: the main thread, the threads of this file's tests, and harness threads
/// that have not named themselves yet (they still show the main thread's name).
fn threads() -> Vec<String> {
    let main = std::fs::read_to_string("/proc/self/comm").unwrap();
    let main = main.trim_end();
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = entry.unwrap().path().join("comm");
        // A thread that just ended has no comm any more.
        if let Ok(comm) = std::fs::read_to_string(path) {
            let comm = comm.trim_end().to_owned();
            if comm != main && !TESTS.iter().any(|t| t.starts_with(&comm)) {
                names.push(comm);
            }
        }
    }
    names.sort();
    names
}

fn census() -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for name in threads() {
        *map.entry(name).or_insert(0) += 1;
    }
    map
}

/// The census once the emulator's own threads (4 HTTP workers, the acceptor, the janitor) carry
/// their names: a new thread names itself once it runs, so it may briefly show its parent's.
fn baseline() -> BTreeMap<String, usize> {
    let emulator_threads = |c: &BTreeMap<String, usize>| {
        c.iter()
            .filter(|(n, _)| n.starts_with("emu-"))
            .map(|(_, k)| k)
            .sum::<usize>()
    };
    assert!(
        wait_until(Duration::from_secs(5), || emulator_threads(&census()) == 6),
        "{:?}",
        census()
    );
    census()
}

/// Threads started by a client (all are named `genesys-…`; threads they start unnamed inherit
/// that name).
fn client_threads() -> usize {
    threads()
        .iter()
        .filter(|n| n.starts_with("genesys-"))
        .count()
}

/// A client with `CHANNELS` channels, one topic each.
fn ten_channel_client(emu: &Emulator, api_base: Option<String>) -> Client {
    let mut b = builder(emu).max_topics_per_channel(1);
    if let Some(base) = api_base {
        b = b.api_base(base);
    }
    let client = b.drop_timeout(Duration::from_secs(2)).build().unwrap();
    let report = client.subscribe(presence_topics(CHANNELS)).unwrap();
    assert_eq!(report.permitted.len(), CHANNELS);
    wait_sockets(emu, CHANNELS);
    let channels = emu.channels();
    assert_eq!(channels.len(), CHANNELS);
    assert!(
        channels.iter().all(|c| c.connected && c.connections == 1),
        "{:#?}\n{:#?}",
        channels
            .iter()
            .map(|c| (c.connected, c.connections))
            .collect::<Vec<_>>(),
        emu.socket_log()
            .iter()
            .map(|r| (r.channel_id.clone(), r.connection, r.kind.clone()))
            .collect::<Vec<_>>()
    );
    client
}

/// Every channel got a close frame from its socket.
fn assert_close_frames(emu: &Emulator) {
    let log = emu.socket_log();
    for ch in emu.channels() {
        assert!(
            log.iter().any(|r| r.channel_id == ch.id
                && matches!(r.kind, SocketEventKind::CloseFrameReceived { .. })),
            "no close frame from the socket of channel {}: {:#?}",
            ch.id,
            log.iter()
                .filter(|r| r.channel_id == ch.id)
                .collect::<Vec<_>>()
        );
        assert_eq!(ch.connections, 1);
    }
}

/// Every channel's subscriptions were removed with a successful DELETE.
fn assert_subscriptions_deleted(emu: &Emulator) {
    let requests = emu.requests();
    for ch in emu.channels() {
        let path = format!("/api/v2/notifications/channels/{}/subscriptions", ch.id);
        assert!(
            requests
                .iter()
                .any(|r| r.method == "DELETE" && r.path == path && r.status == 200),
            "no DELETE of the subscriptions of channel {}",
            ch.id
        );
        assert!(ch.topics.is_empty(), "{:?}", ch.topics);
    }
}

/// After a `how` (shutdown or drop) that returned: the client's threads are joined (gone from
/// the process; the kernel may list a just-joined thread a moment longer), the sockets were
/// closed with close frames, the subscriptions deleted, and once the emulator has seen the
/// sockets go, its per-socket threads end too: the process is back to `baseline`.
fn assert_closed_and_joined(emu: &Emulator, baseline: &BTreeMap<String, usize>, how: &str) {
    assert!(
        wait_until(Duration::from_millis(500), || client_threads() == 0),
        "client threads left after {how}: {:?}",
        census()
    );
    assert_close_frames(emu);
    assert_subscriptions_deleted(emu);
    assert!(
        wait_until(Duration::from_secs(5), || census() == *baseline),
        "threads before: {baseline:?}\nthreads after: {:?}",
        census()
    );
}

#[test]
fn shutdown_closes_sockets_deletes_subscriptions_and_joins_every_thread() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let baseline = baseline();
    assert_eq!(client_threads(), 0, "{baseline:?}");

    let client = ten_channel_client(&emu, None);
    let lifecycle = Recorder::new(&client);
    let running = client_threads();
    // 10 channel threads, the dispatchers, the lifecycle thread and the token refresher.
    assert!(running > CHANNELS, "{:?}", census());

    let started = Instant::now();
    client.shutdown(Duration::from_secs(2)).unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    println!("shutdown of {CHANNELS} channels took {took:?}; {running} client threads");

    assert_closed_and_joined(&emu, &baseline, "shutdown");

    // Shut down means shut down.
    assert!(matches!(
        client.subscribe(presence_topics(1)).map_err(Error::from),
        Err(Error::Shutdown)
    ));
    assert!(client.on("v2.users.*.presence", |_| {}).is_err());
    let again = Instant::now();
    client.shutdown(Duration::from_secs(2)).unwrap();
    assert!(again.elapsed() < Duration::from_millis(100));
    let user_closes = lifecycle.count(|e| {
        matches!(
            e,
            genesys_notify::Lifecycle::Disconnected {
                cause: genesys_notify::DisconnectCause::UserRequest,
                ..
            }
        )
    });
    // Lifecycle listeners are unregistered at shutdown; those that ran saw only user closes.
    assert!(user_closes <= CHANNELS);
    assert_eq!(
        lifecycle.count(|e| matches!(e, genesys_notify::Lifecycle::Reconnecting { .. })),
        0
    );
    drop(client);
}

#[test]
fn drop_shuts_down_the_same_way() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let baseline = baseline();
    let client = ten_channel_client(&emu, None);
    assert!(client_threads() > CHANNELS);

    let started = Instant::now();
    drop(client);
    let took = started.elapsed();
    // drop_timeout is 2 s.
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
    assert_closed_and_joined(&emu, &baseline, "drop");
}

/// `client.shutdown` with a 1 s timeout, while `stuck` keeps it from finishing, returns
/// `Error::Timeout` within the timeout (plus [`MARGIN`]).
fn shutdown_times_out(client: &Client, stuck: &str) {
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = client.shutdown(timeout);
    let took = started.elapsed();
    assert!(
        matches!(
            result,
            Err(Error::Timeout {
                operation: "shutdown",
                ..
            })
        ),
        "{result:?}"
    );
    assert!(took < timeout + MARGIN, "shutdown took {took:?}");
    println!("shutdown with {stuck} returned after {took:?}");
}

#[test]
fn shutdown_returns_in_time_when_a_listener_hangs() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let entered = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (e, f) = (entered.clone(), finished.clone());
    let _guard = client
        .on("v2.users.*.presence", move |_: &Event| {
            e.store(true, Ordering::SeqCst);
            // Blocked until the test releases it, after its assertions.
            let _ = release_rx.recv();
            f.store(true, Ordering::SeqCst);
        })
        .unwrap();
    // Dropped before the guard even when an assertion fails, so that the guard's drop (which
    // waits for the running callback) cannot deadlock the test.
    let mut release = Some(release_tx);
    let topics = presence_topics(1);
    let _ = client.subscribe(&topics).unwrap();
    wait_sockets(&emu, 1);
    assert_eq!(emu.publish(&topics[0], presence_body(1)), 1);
    assert!(wait_until(Duration::from_secs(10), || entered.load(Ordering::SeqCst)));

    shutdown_times_out(&client, "a hung listener");
    assert!(!finished.load(Ordering::SeqCst));
    // The sockets and subscriptions do not depend on the dispatcher.
    assert_close_frames(&emu);
    assert_subscriptions_deleted(&emu);

    // Released, the stuck dispatcher thread ends by itself.
    release.take().unwrap().send(()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || finished.load(Ordering::SeqCst)));
    assert!(
        wait_until(Duration::from_secs(5), || client_threads() == 0),
        "{:?}",
        census()
    );
    drop(client);
}

/// A REST API that hangs (every request through the proxy is held): the shutdown returns in
/// time, and the hung requests are cut so that every thread of the client ends without the API
/// ever answering (issue 17 point 8; they used to stay inside their requests until the API
/// answered or their 30 s request timeout).
#[test]
fn shutdown_returns_in_time_when_the_rest_api_hangs_and_cuts_the_hung_requests() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let proxy = Proxy::start(&emu);
    let client = ten_channel_client(&emu, Some(proxy.url()));
    proxy.set_mode(Mode::Hang);

    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let result = client.shutdown(timeout);
    let took = started.elapsed();
    assert!(
        took < timeout + MARGIN,
        "shutdown took {took:?}: {result:?}"
    );
    // The close frames went out before the (hung) DELETEs.
    assert_close_frames(&emu);
    assert!(proxy.hung() >= 1, "no request reached the hung API");
    assert!(!emu.requests().iter().any(|r| r.method == "DELETE"));
    if result.is_ok() {
        // `Ok`: every thread was joined, so none is inside a request.
        assert_eq!(client_threads(), 0, "{:?}", census());
    } else {
        // A thread too slow to end in the time left after the cut (a loaded machine): it
        // ends by itself, the API still hanging.
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || client_threads() == 0),
        "threads still inside hung requests: {:?}",
        census()
    );
    drop(client);
    proxy.release();
    drop(proxy);
}

#[test]
fn shutdown_completes_when_the_rest_api_is_slow() {
    let _serial = SERIAL.lock();
    let emu = emulator();
    let proxy = Proxy::start(&emu);
    let client = ten_channel_client(&emu, Some(proxy.url()));
    let delay = Duration::from_millis(400);
    proxy.set_mode(Mode::Delay(delay));

    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    client.shutdown(timeout).unwrap();
    let took = started.elapsed();
    assert!(took >= delay, "the DELETEs were not slowed down ({took:?})");
    assert!(took < timeout, "shutdown took {took:?}");
    println!("shutdown with a {delay:?} REST API took {took:?}");
    assert!(
        wait_until(Duration::from_millis(500), || client_threads() == 0),
        "{:?}",
        census()
    );
    assert_close_frames(&emu);
    assert_subscriptions_deleted(&emu);
    drop(client);
    drop(proxy);
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of the emulator's REST API that can pass, delay or hang requests.
// The emulator answers every request with `Connection: close`, so one TCP connection carries
// one request and the mode is chosen per connection.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Pass,
    Delay(Duration),
    /// Read the request and never answer (until `release`).
    Hang,
}

struct ProxyState {
    mode: Mutex<Mode>,
    stop: AtomicBool,
    /// Connections held without an answer.
    held: Mutex<Vec<TcpStream>>,
    conns: Mutex<Vec<JoinHandle<()>>>,
}

struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(emu: &Emulator) -> Proxy {
        let upstream: SocketAddr = emu
            .api_base()
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            mode: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let acceptor = std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let mode = *st.mode.lock();
                    let st2 = st.clone();
                    let handle = std::thread::Builder::new()
                        .name("proxy-conn".into())
                        .spawn(move || serve(stream, upstream, mode, &st2))
                        .unwrap();
                    st.conns.lock().push(handle);
                }
            })
            .unwrap();
        Proxy {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock() = mode;
    }

    /// Connections held unanswered so far.
    fn hung(&self) -> usize {
        self.state.held.lock().len()
    }

    /// Cuts every held connection and passes new ones.
    fn release(&self) {
        self.set_mode(Mode::Pass);
        for s in self.state.held.lock().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.release();
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for h in self.state.conns.lock().drain(..) {
            let _ = h.join();
        }
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, mode: Mode, state: &ProxyState) {
    match mode {
        Mode::Hang => {
            state.held.lock().push(client.try_clone().unwrap());
            let mut sink = [0u8; 4096];
            let mut c = client;
            while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        Mode::Delay(d) => std::thread::sleep(d),
        Mode::Pass => {}
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::Builder::new()
        .name("proxy-up".into())
        .spawn(move || {
            let _ = std::io::copy(&mut c_read, &mut s_write);
            let _ = s_write.shutdown(Shutdown::Write);
        })
        .unwrap();
    let (mut s_read, mut c_write) = (server, client);
    let _ = std::io::copy(&mut s_read, &mut c_write);
    let _ = c_write.flush();
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = s_read.shutdown(Shutdown::Both);
    let _ = up.join();
}
