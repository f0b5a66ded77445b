//! A `socket_closing` switch whose new socket cannot be opened keeps reading the old socket
//! (issue 17 point 5): the slot's interrupt handle goes back to the old socket, so a stop or a
//! nudge reaches it, and the failed connection is closed rather than held open by that handle.
//! Alone in its file: it counts this process's TCP connections to the emulator's WebSocket port.
mod recovery;
mod util;

use genesys_notify::emulator::{Fault, SocketEventKind, Target};
use recovery::*;
use std::collections::HashSet;
use std::time::Duration;
use util::*;

/// The socket inodes this process holds a file descriptor of.
fn own_socket_inodes() -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(|entry| {
        let link = std::fs::read_link(entry.ok()?.path()).ok()?;
        let link = link.to_str()?;
        link.strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

/// This process's TCP connections to `port` (the client's side), by socket inode: a
/// connection whose descriptor is closed is not counted, whatever its TCP state.
fn connections_to(port: u16) -> HashSet<u64> {
    let own = own_socket_inodes();
    let mut found = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(inode)) = (fields.get(2), fields.get(9)) else {
                continue;
            };
            let remote_port = remote
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode: u64 = inode.parse().unwrap_or(0);
            if remote_port == Some(port) && own.contains(&inode) {
                found.insert(inode);
            }
        }
    }
    found
}

#[test]
fn a_failed_switch_gives_the_interrupt_back_to_the_old_socket_and_closes_the_new_one() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        eprintln!("skipped: needs /proc (Linux)");
        return;
    }
    let one = OneChannel::start(|b| b);
    let port: u16 = one
        .emu
        .ws_base()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the WebSocket port");
    assert!(
        wait_until(SOON, || connections_to(port).len() == 1),
        "one connection before the switch: {:?}",
        connections_to(port)
    );
    let old = connections_to(port);

    // The new socket's TCP connection is accepted, then closed without an HTTP answer.
    one.emu.inject(Fault::RefuseHandshakes { times: 1 });
    one.emu.inject(Fault::SocketClosing {
        target: Target::channel(&one.id),
        close_after: None,
    });
    assert!(
        wait_until(SOON, || one
            .emu
            .socket_log()
            .iter()
            .any(|r| r.kind == SocketEventKind::HandshakeRefused)),
        "the new socket's handshake was refused"
    );
    // The failed connection is closed (before the fix the slot's clone of it kept it open,
    // in CLOSE_WAIT, for as long as the old socket lived); the old one is still read.
    assert!(
        wait_until(SOON, || connections_to(port) == old),
        "connections after the failed switch: {:?}, before: {old:?}",
        connections_to(port)
    );
    assert!(
        flows(&one.emu, &one.topics[0], &one.seqs, 1),
        "events still arrive on the old socket"
    );
    // A stop reaches the old socket through the slot's interrupt.
    one.client.shutdown(Duration::from_secs(20)).unwrap();
}
