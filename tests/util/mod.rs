//! Helpers shared by the integration tests: an emulator, a client with scaled-down timings, and
//! a lifecycle recorder. Everything talks to 127.0.0.1 only.
#![allow(dead_code)] // each test file uses a different subset of these helpers

pub mod proxy;
pub mod tail;
pub mod tls;

use genesys_notify::emulator::{Emulator, EmulatorConfig};
use genesys_notify::{Backoff, Client, ClientBuilder, Lifecycle, ListenerGuard};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A user id shaped like Genesys' (a UUID), numbered.
pub fn user_id(n: usize) -> String {
    format!("9ed7d9f6-0c59-4360-ac54-{n:012x}")
}

/// `v2.users.<id>.presence` for users 0..n.
pub fn presence_topics(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("v2.users.{}.presence", user_id(i)))
        .collect()
}

/// A presence body like the real payload, with a sequence number.
pub fn presence_body(seq: u64) -> serde_json::Value {
    serde_json::json!({
        "source": "PURECLOUD",
        "presenceDefinition": {"id": "6a3af858-942f-489d-9700-5f9bcdcdae9b", "systemPresence": "AVAILABLE"},
        "primary": true,
        "message": "",
        "seq": seq,
    })
}

pub fn emulator() -> Emulator {
    Emulator::start().expect("emulator starts")
}

pub fn emulator_with(config: EmulatorConfig) -> Emulator {
    Emulator::start_with(config).expect("emulator starts")
}

/// A client builder for `emu` with test-scale timings: fast backoff, short timeouts.
pub fn builder(emu: &Emulator) -> ClientBuilder {
    Client::builder()
        .api_base(emu.api_base())
        .login_base(emu.login_base())
        .client_credentials(emu.client_id(), emu.client_secret())
        .connect_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(5))
        .backoff(
            Backoff::default()
                .base(Duration::from_millis(20))
                .cap(Duration::from_millis(500)),
        )
}

/// Records every lifecycle event of a client.
pub struct Recorder {
    pub events: Arc<Mutex<Vec<Lifecycle>>>,
    _guard: ListenerGuard,
}

impl Recorder {
    pub fn new(client: &Client) -> Recorder {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let guard = client
            .on_lifecycle(move |e| sink.lock().push(e.clone()))
            .expect("lifecycle listener");
        Recorder {
            events,
            _guard: guard,
        }
    }

    pub fn count(&self, pred: impl Fn(&Lifecycle) -> bool) -> usize {
        self.events.lock().iter().filter(|e| pred(e)).count()
    }

    pub fn wait(&self, timeout: Duration, pred: impl Fn(&Lifecycle) -> bool) -> bool {
        wait_until(timeout, || self.count(&pred) > 0)
    }

    pub fn snapshot(&self) -> Vec<Lifecycle> {
        self.events.lock().clone()
    }
}

/// Polls `pred` every 5 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the emulator has `channels` live channels, each with a socket registered.
///
/// `subscribe` can return a moment before the emulator has registered a new socket (it does so
/// after writing the handshake answer), and `publish` skips channels without one: call this
/// between `subscribe` and the first `publish` of a test that counts deliveries.
pub fn wait_sockets(emu: &Emulator, channels: usize) {
    assert!(
        emu.wait_for(Duration::from_secs(10), |emu| {
            let live = emu.channels();
            live.len() == channels && live.iter().all(|c| c.connected)
        }),
        "expected {channels} connected channels: {:#?}",
        emu.channels()
    );
}

/// A client of `emu` with two presence topics on one channel, caught in a reconnection whose
/// handshake hangs: the socket was dropped, the next handshakes hang (for the 30 s connect
/// timeout) and `Reconnecting` has been reported. Returns the client, its recorder (started
/// before anything happened) and the topics.
pub fn hanging_reconnection(emu: &Emulator) -> (Client, Recorder, Vec<String>) {
    use genesys_notify::emulator::{Fault, Target};
    let client = builder(emu)
        .connect_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let lifecycle = Recorder::new(&client);
    let topics = presence_topics(2);
    let _ = client.subscribe(&topics).unwrap();
    wait_sockets(emu, 1);
    emu.inject(Fault::HangHandshakes { times: 100 });
    emu.inject(Fault::DropSocket {
        target: Target::AllSockets,
    });
    assert!(lifecycle.wait(Duration::from_secs(10), |e| matches!(
        e,
        Lifecycle::Reconnecting { .. }
    )));
    (client, lifecycle, topics)
}

/// Sends SIGINT to `child` and waits up to `within` for it to exit; returns its exit code (`None`
/// when killed by a signal). Panics, after killing it, if it does not stop in time.
pub fn interrupt_and_wait(child: &mut std::process::Child, within: Duration) -> Option<i32> {
    let sigint = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sigint.success());
    let stopped = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if stopped.elapsed() > within {
            let _ = child.kill();
            panic!("the child did not stop within {within:?} of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
