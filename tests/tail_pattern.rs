//! `tail --pattern`: only notifications whose topic matches are printed; a pattern that matches
//! none of the topics given (so would print nothing, ever) is input to fix, exit 2, before any
//! channel is created.
mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use util::*;

fn tail_command(emu: &genesys_notify::emulator::Emulator) -> Command {
    tail::command(&tail::example(), emu)
}

#[test]
fn a_pattern_matching_none_of_the_topics_exits_2_before_creating_a_channel() {
    let emu = emulator();
    let user = user_id(1);
    let mut child = tail_command(&emu)
        .args(["--pattern", "v2.routing.queues.*.users"])
        .arg(format!("v2.users.{user}?presence&routingStatus"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("tail kept running with a pattern that matches nothing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("--pattern") && stderr.contains("matches none"),
        "{stderr}"
    );
    assert!(
        !emu.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.starts_with("/api/v2/notifications/channels")),
        "a channel was created"
    );
}

#[test]
fn a_pattern_prints_only_the_matching_part_of_a_combined_topic() {
    let emu = emulator();
    let user = user_id(1);
    let mut child = tail_command(&emu)
        .args(["--pattern", "v2.users.*.routingStatus"])
        .arg(format!("v2.users.{user}?presence&routingStatus"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(emu.wait_for(Duration::from_secs(20), |e| e
        .channels()
        .iter()
        .any(|c| c.connected && !c.topics.is_empty())));
    wait_sockets(&emu, 1);
    emu.publish(&format!("v2.users.{user}.presence"), presence_body(1));
    emu.publish(&format!("v2.users.{user}.routingStatus"), presence_body(2));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["eventBody"]["seq"], 2, "{line}");
    assert_eq!(
        interrupt_and_wait(&mut child, Duration::from_secs(15)),
        Some(0)
    );
}
