//! The `tail` example as a user runs it: against an emulator, it prints each notification as one
//! line of JSON on stdout with `topicName` and `eventBody` exactly as received, and Ctrl-C
//! (SIGINT) shuts it down cleanly with exit code 0. Bad input exits with code 2.
//!
//! `cargo test` builds the examples next to the test binaries (target/<profile>/examples/).
mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::*;

/// The built `tail` example pointed at `emu`, with its credentials unless `credentials` is false.
/// Nothing comes from the environment, so only these flags count.
fn tail_command(emu: &genesys_notify::emulator::Emulator, credentials: bool) -> Command {
    if credentials {
        tail::command(&tail::example(), emu)
    } else {
        tail::pointed_at(&tail::example(), emu)
    }
}

#[test]
fn tail_prints_each_notification_as_one_json_line_and_stops_on_sigint() {
    let bin = tail::example();
    assert!(bin.exists(), "{} not built", bin.display());
    let emu = emulator();
    let topics = presence_topics(2);
    let mut child = tail_command(&emu, true)
        .args(&topics)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until both topics are subscribed and a socket is connected.
    assert!(emu.wait_for(Duration::from_secs(20), |e| e
        .channels()
        .first()
        .is_some_and(|c| c.connected && c.topics.len() == 2)));

    let (tx, rx) = crossbeam_channel::unbounded();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut sent = Vec::new();
    for seq in 0..6u64 {
        let topic = &topics[(seq % 2) as usize];
        let body = presence_body(seq);
        assert_eq!(emu.publish(topic, body.clone()), 1);
        sent.push((topic.clone(), body));
    }
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines.len() < sent.len() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(line);
        }
    }
    assert_eq!(lines.len(), sent.len(), "{lines:?}");
    // Topics are dispatched in parallel, so lines of different topics may interleave either
    // way; each topic's lines keep their order.
    let mut printed: Vec<(String, serde_json::Value)> = lines
        .iter()
        .map(|line| {
            let json: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object a line");
            assert!(json["metadata"]["CorrelationId"].is_string(), "{line}");
            (
                json["topicName"].as_str().unwrap().to_owned(),
                json["eventBody"].clone(),
            )
        })
        .collect();
    for topic in &topics {
        let of = |v: &[(String, serde_json::Value)]| -> Vec<serde_json::Value> {
            v.iter()
                .filter(|(t, _)| t == topic)
                .map(|(_, b)| b.clone())
                .collect()
        };
        assert_eq!(of(&printed), of(&sent), "{topic}");
    }
    printed.sort_by_key(|(_, b)| b["seq"].as_u64());
    assert_eq!(printed, sent);

    assert_eq!(
        interrupt_and_wait(&mut child, Duration::from_secs(10)),
        Some(0)
    );
    reader.join().unwrap();
    // A clean shutdown removed the subscriptions.
    assert!(emu.requests().iter().any(|r| r.method == "DELETE"));
}

#[test]
fn tail_exits_with_code_2_on_a_bad_topic_or_missing_credentials() {
    let emu = emulator();
    let bad_topic = tail_command(&emu, true)
        .arg("v2.users.*.presence")
        .output()
        .unwrap();
    assert_eq!(bad_topic.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_topic.stderr).contains("v2.users.*.presence"));

    let no_credentials = tail_command(&emu, false)
        .arg(&presence_topics(1)[0])
        .output()
        .unwrap();
    assert_eq!(no_credentials.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_credentials.stderr).contains("GENESYS_CLIENT_ID"));
}

/// No region and no base URLs: `tail` says which settings are missing (exit code 2) instead
/// of following some default region, where the credentials would look wrong (issue 17 point 12;
/// tail already refused, and the library now does too).
#[test]
fn tail_exits_2_naming_the_region_when_none_is_given() {
    let emu = emulator();
    let output = tail::isolated(&tail::example())
        .args(["--client-id", emu.client_id()])
        .args(["--client-secret", emu.client_secret()])
        .arg(&presence_topics(1)[0])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no region") && stderr.contains("GENESYS_REGION"),
        "{stderr}"
    );
}

#[test]
fn tail_prints_snapshots_at_subscribe_with_a_snapshot_field() {
    let emu = emulator();
    let topics = presence_topics(2);
    for i in 0..2 {
        emu.set_user_presence(&user_id(i), "On Queue");
    }
    let mut child = tail_command(&emu, true)
        .arg("--snapshots-at-subscribe")
        .args(&topics)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(line);
        }
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    let mut names = Vec::new();
    for line in &lines {
        let json: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        assert_eq!(json["snapshot"], true, "{line}");
        assert_eq!(
            json["eventBody"]["presenceDefinition"]["systemPresence"],
            "ON_QUEUE"
        );
        names.push(json["topicName"].as_str().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(names, topics);
    assert_eq!(
        interrupt_and_wait(&mut child, Duration::from_secs(10)),
        Some(0)
    );
    reader.join().unwrap();

    // The two snapshot flags contradict each other: input to fix.
    let status = tail_command(&emu, true)
        .args(["--no-snapshots", "--snapshots-at-subscribe"])
        .args(&topics)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

/// `tail ... 2>&1 | head -1`: once the reader of stdout and stderr is gone, the next
/// notification ends `tail` with the documented exit code 0 ("stdout closed"), not a panic
/// (101) from writing a lifecycle or summary line to the closed stderr.
#[test]
fn tail_exits_0_when_the_pipe_of_its_stdout_and_stderr_closes() {
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let mut child = tail_command(&emu, true)
        .arg(&topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr until the client follows the topic, then close both pipes, as `head` does
    // when it has its line.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line.contains("following") {
                return true;
            }
            line.clear();
        }
        false
    });
    assert!(
        reader.join().unwrap(),
        "tail never said it follows the topic"
    );
    drop(child.stdout.take());
    tail::wait_following(&emu);
    let status = tail::wait_exit(&mut child, "its stdout closing", || {
        emu.publish(&topic, presence_body(1));
    });
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// `genesys-tail topic | head -1`: once the reader of stdout has its line and exits, `tail`
/// stops promptly with exit code 0 even when no further event comes (nothing to write would
/// otherwise reveal the closed pipe), and removes its subscriptions on the way out.
#[cfg(unix)]
#[test]
fn tail_stops_when_its_stdout_reader_goes_away_even_without_another_event() {
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let mut child = tail_command(&emu, true)
        .arg(&topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tail::wait_following(&emu);
    // One event, read as `head -1` reads it; then the reader goes away.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let _ = tx.send(line);
        // `stdout` is dropped here: the pipe's reading end closes.
    });
    let started = Instant::now();
    let line = loop {
        emu.publish(&topic, presence_body(1));
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no event line from tail"
        );
    };
    assert!(line.contains("\"topicName\""), "{line}");
    // No more events from here on.
    let status = tail::wait_exit(&mut child, "its stdout reader going away", || {});
    assert_eq!(status.code(), Some(0), "{status:?}");
    // A clean shutdown: the channel's subscriptions are removed.
    assert!(emu.wait_for(Duration::from_secs(10), |e| e
        .channels()
        .iter()
        .all(|c| c.topics.is_empty())));
}

/// A wrong `--api-base` (here with a path) is input to fix: exit code 2 and a message naming
/// the URL, not "channel not found" with exit code 1.
#[test]
fn tail_exits_2_naming_a_wrong_api_base() {
    let emu = emulator();
    let base = format!("{}/v1", emu.api_base());
    let output = tail::isolated(&tail::example())
        .args(["--api-base", &base])
        .args(["--login-base", &emu.login_base()])
        .args(["--client-id", emu.client_id()])
        .args(["--client-secret", emu.client_secret()])
        .arg(&presence_topics(1)[0])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&base), "{stderr}");
    assert!(stderr.contains("API base URL"), "{stderr}");
}
