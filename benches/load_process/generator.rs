//! generator.rs is the load generator's process (`--generator`): the stand-in for Genesys Cloud.
//! It serves the REST side (the emulator, whose `connectUri`s point at the generator), accepts
//! WebSocket sockets on 127.0.0.1, and writes frames when the orchestrator says so on stdin; it
//! never reads a notification and never measures the client.
//!
//! Commands, one a line on stdin, each answered by one line on stdout:
//! - `go <size> <total> <rate> <sockets>`: take the next `<sockets>` accepted sockets and write
//!   `<total>` events (rate 0: as fast as they take them), then `sent <n>`;
//! - `publish <n>`: through the second emulator (its own sockets), one small event to each of
//!   the topics `v2.users.{user_id(i)}.presence` for i in 0..n, then `published <sockets>`.
//!
//! It exits when stdin closes (the orchestrator ended, however it ended) or after an hour.

use crate::frames::{now_ns, user_id, Size, Template, TOPICS};
use crossbeam_channel::Receiver;
use genesys_notify::emulator::{Emulator, EmulatorConfig};
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

pub fn main() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(3600));
        std::process::exit(2);
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the generator");
    let ws = format!("ws://{}", listener.local_addr().unwrap());
    let (tx, accepted) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("gen-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_nodelay(true);
                if let Ok(ws) = tungstenite::accept(stream) {
                    if let Ok(tcp) = ws.get_ref().try_clone() {
                        let _ = tx.send(tcp);
                    }
                }
            }
        })
        .unwrap();
    // The REST side of the load runs; its sockets go to the generator above.
    let emulator = Emulator::start_with(
        EmulatorConfig::default()
            .connect_uri_base(ws.clone())
            .max_channels(100_000),
    )
    .expect("emulator starts");
    // The many-clients section: an emulator with its own sockets, which publishes by topic.
    let clients = Emulator::start_with(EmulatorConfig::default().max_channels(100_000))
        .expect("emulator starts");
    println!(
        "generator ws={ws} api={} login={} id={} secret={} api2={} login2={} id2={} secret2={}",
        emulator.api_base(),
        emulator.login_base(),
        emulator.client_id(),
        emulator.client_secret(),
        clients.api_base(),
        clients.login_base(),
        clients.client_id(),
        clients.client_secret(),
    );
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["go", size, total, rate, sockets] => {
                let sent = go(
                    &accepted,
                    Size::parse(size),
                    total.parse().unwrap_or(0),
                    rate.parse().unwrap_or(0),
                    sockets.parse().unwrap_or(1),
                );
                format!("sent {sent}")
            }
            ["publish", n] => {
                let n: usize = n.parse().unwrap_or(0);
                let mut sockets = 0;
                for i in 0..n {
                    let body = format!(
                        r#"{{"userId":"{}","source":"PURECLOUD","presenceDefinition":{{"systemPresence":"AVAILABLE"}}}}"#,
                        user_id(i)
                    );
                    let topic = format!("v2.users.{}.presence", user_id(i));
                    sockets += clients.publish_raw(
                        &topic,
                        format!(
                            r#"{{"topicName":"{topic}","version":"2","eventBody":{body},"metadata":{{"CorrelationId":"c"}}}}"#
                        ),
                    );
                }
                format!("published {sockets}")
            }
            ["quit"] => break,
            _ => format!("unknown {line}"),
        };
        println!("{answer}");
        let _ = std::io::stdout().flush();
    }
    std::process::exit(0);
}

/// Writes `total` events over the next `sockets` accepted sockets: topic `k % 100` for event
/// `k`, topic `t` always on socket `t % sockets` (so per-topic order holds). Rate 0: batches of
/// about 256 KiB per socket, stamped once per batch; otherwise one write per frame, paced,
/// stamped just before its write. Then each socket is read until its client closes it.
fn go(accepted: &Receiver<TcpStream>, size: Size, total: u64, rate: u64, n: usize) -> u64 {
    let mut sockets = Vec::new();
    for _ in 0..n {
        match accepted.recv_timeout(Duration::from_secs(10)) {
            Ok(s) => sockets.push(s),
            Err(_) => return 0,
        }
    }
    let mut templates: Vec<Template> = (0..TOPICS).map(|t| Template::new(size, t)).collect();
    let mut seq = vec![0u64; TOPICS];
    let mut sent = 0;
    'write: {
        if rate == 0 {
            const BATCH: usize = 256 << 10;
            let mut buffers: Vec<Vec<u8>> = (0..n)
                .map(|_| Vec::with_capacity(BATCH + (16 << 10)))
                .collect();
            let mut stamp = now_ns();
            for k in 0..total {
                let t = (k % TOPICS as u64) as usize;
                seq[t] += 1;
                templates[t].stamp(t as u64, seq[t], stamp);
                let s = t % n;
                buffers[s].extend_from_slice(&templates[t].bytes);
                sent += 1;
                if buffers[s].len() >= BATCH {
                    if sockets[s].write_all(&buffers[s]).is_err() {
                        break 'write;
                    }
                    buffers[s].clear();
                    stamp = now_ns();
                }
            }
            for (s, buffer) in buffers.iter().enumerate() {
                let _ = sockets[s].write_all(buffer);
            }
        } else {
            let start = now_ns();
            let interval = 1e9 / rate as f64;
            for k in 0..total {
                wait_until(start + (k as f64 * interval) as u64);
                let t = (k % TOPICS as u64) as usize;
                seq[t] += 1;
                templates[t].stamp(t as u64, seq[t], now_ns());
                if sockets[t % n].write_all(&templates[t].bytes).is_err() {
                    break 'write;
                }
                sent += 1;
            }
        }
    }
    // Keep each socket open until its client closes it (a socket dropped here would be a
    // failure the library reconnects from, work the baseline never does); bounded.
    for mut socket in sockets {
        std::thread::spawn(move || {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(120)));
            let mut sink = [0u8; 4096];
            while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
        });
    }
    sent
}

/// Sleeps while far from `due`, then yields, then spins.
fn wait_until(due: u64) {
    loop {
        let now = now_ns();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > 200_000 {
            std::thread::sleep(Duration::from_nanos(left - 150_000));
        } else if left > 20_000 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}
