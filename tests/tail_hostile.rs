//! `tail` (the example, same source as `genesys-tail`) used as a hostile user or server would:
//! frames that are not JSON, or JSON with something after it, duplicate and many topics,
//! SIGTERM while events flow. stdout stays one valid JSON object per line, the rest of the
//! stream carries on, and the summary is printed.
mod util;

use genesys_notify::emulator::Emulator;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use util::*;

fn tail_command(emu: &Emulator) -> Command {
    tail::command(&tail::example(), emu)
}

/// Lines of `pipe`, read on a thread of their own.
fn lines(pipe: impl std::io::Read + Send + 'static) -> crossbeam_channel::Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn spawn_json(
    emu: &Emulator,
    topics: &[String],
) -> (
    Child,
    crossbeam_channel::Receiver<String>,
    crossbeam_channel::Receiver<String>,
) {
    let mut child = tail_command(emu)
        .args(["--lifecycle-format", "json"])
        .args(topics)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    (child, out, err)
}

fn sigterm(child: &mut Child) -> Option<i32> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    tail::wait_exit(child, "SIGTERM", || {}).code()
}

/// A server sending frames that are not JSON, JSON with garbage after it, a binary frame and an
/// event without `eventBody` between good events: stdout has the good events only, each line a
/// JSON object, the bad frames are reported on stderr, and the stream carries on.
#[test]
fn malformed_frames_never_reach_stdout_and_the_stream_goes_on() {
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let (mut child, out, err) = spawn_json(&emu, std::slice::from_ref(&topic));
    tail::wait_following(&emu);
    let good = |seq: u64| {
        serde_json::json!({"topicName": topic, "version": "2", "eventBody": presence_body(seq),
            "metadata": {"CorrelationId": format!("c-{seq}")}})
        .to_string()
    };
    emu.publish_raw(&topic, good(1));
    emu.publish_raw(&topic, "not json at all".into());
    emu.publish_raw(&topic, format!("{} trailing garbage", good(99)));
    emu.publish_raw(
        &topic,
        format!("{{\"topicName\":\"{topic}\",\"eventBody\":{{\"a\":}}}}"),
    );
    emu.publish_raw(
        &topic,
        format!("{{\"topicName\":\"{topic}\",\"eventBody\":{{\"a\":\"x\ny\"}}}}"),
    );
    emu.publish_raw(&topic, good(2));
    let mut seen = Vec::new();
    let started = Instant::now();
    while seen.len() < 2 {
        let line = out
            .recv_timeout(Duration::from_secs(20).saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| panic!("only {seen:?} on stdout"));
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        seen.push(
            value["eventBody"]["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("{line}")),
        );
    }
    assert_eq!(seen, [1, 2]);
    assert_eq!(sigterm(&mut child), Some(0));
    let stdout_rest: Vec<String> = out.try_iter().collect();
    assert!(stdout_rest.is_empty(), "{stdout_rest:?}");
    let stderr: Vec<serde_json::Value> = err
        .try_iter()
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let malformed = stderr
        .iter()
        .filter(|l| l["event"] == "malformed_message")
        .count();
    assert!(malformed >= 3, "{stderr:#?}");
    let summary = stderr
        .iter()
        .find(|l| l["event"] == "summary")
        .expect("summary");
    assert_eq!(summary["written"], 2, "{summary}");
    assert_eq!(summary["stopped_by"], "signal", "{summary}");
}

/// SIGTERM while events flow: exit 0, a summary that adds up, every stdout line a JSON object.
#[test]
fn sigterm_mid_flow_exits_0_with_a_summary_that_adds_up() {
    let emu = emulator();
    let topics = presence_topics(3);
    let (mut child, out, err) = spawn_json(&emu, &topics);
    tail::wait_following(&emu);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (emu_topics, publishing) = (topics.clone(), stop.clone());
        let emu = &emu;
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || {
                let mut seq = 0;
                while !publishing.load(std::sync::atomic::Ordering::Relaxed) {
                    for topic in &emu_topics {
                        emu.publish(topic, presence_body(seq));
                    }
                    seq += 1;
                    if seq % 20 == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                seq
            });
            // Some events out, then the signal while the publisher goes on.
            let first = out.recv_timeout(Duration::from_secs(20)).expect("an event");
            serde_json::from_str::<serde_json::Value>(&first).unwrap();
            let code = sigterm(&mut child);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = handle.join();
            code
        })
    };
    assert_eq!(publisher, Some(0));
    for line in out.try_iter() {
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.is_object(), "{line}");
    }
    let stderr: Vec<serde_json::Value> = err
        .try_iter()
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = stderr
        .iter()
        .find(|l| l["event"] == "summary")
        .expect("summary");
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert_eq!(
        n("received"),
        n("written") + n("not_written") + n("dropped") + n("unrouted"),
        "{summary}"
    );
    assert_eq!(summary["stopped_by"], "signal");
}

/// The same topic named twice (in two spellings) and a combined topic overlapping a plain
/// one: tail follows, each event is printed once.
#[test]
fn duplicate_and_overlapping_topics_print_each_event_once() {
    let emu = emulator();
    let user = user_id(7);
    let plain = format!("v2.users.{user}.presence");
    let topics = vec![
        plain.clone(),
        plain.to_uppercase().replace("V2.USERS", "v2.users"),
        format!("v2.users.{user}?presence&routingStatus"),
    ];
    let (mut child, out, _err) = spawn_json(&emu, &topics);
    tail::wait_following(&emu);
    emu.publish(&plain, presence_body(1));
    emu.publish(
        &format!("v2.users.{user}.routingstatus"),
        serde_json::json!({"seq": 2}),
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        let line = out.recv_timeout(Duration::from_secs(20)).expect("events");
        got.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(out.try_recv().is_err(), "an event printed twice");
    assert_eq!(sigterm(&mut child), Some(0));
}

/// More topics than one client can hold (20 channels × 1 000): input to fix, exit 2, naming the
/// numbers, before any channel is made.
#[test]
fn too_many_topics_is_input_to_fix() {
    let emu = emulator();
    let topics: Vec<String> = (0..20_001)
        .map(|i| format!("v2.users.{}.presence", user_id(i)))
        .collect();
    let output = tail_command(&emu).args(&topics).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("20001") || stderr.contains("20 001"),
        "{stderr}"
    );
    assert!(emu.channels().is_empty());
}

/// Several bad topics: every one is named in one error line (not only the first), control
/// characters escaped, exit 2; with JSON lifecycle lines a command line clap refuses is a JSON
/// error with its class too.
#[test]
fn every_bad_topic_is_named_at_once_on_one_line() {
    let emu = emulator();
    let output = tail_command(&emu)
        .args([
            "v2.users.x.presence",
            "bad one",
            "v2..x",
            "v2",
            "v2.users.x\u{1b}[31m.presence",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for named in ["\"bad one\"", "\"v2..x\"", "\"v2\"", "\\u{1b}[31m"] {
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
    assert!(!stderr.contains('\u{1b}'), "{stderr}");

    let output = tail_command(&emu)
        .args([
            "--lifecycle-format",
            "json",
            "--no-such-flag",
            "v2.users.x.presence",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(line["class"], "input", "{line}");
    assert_eq!(line["exit_code"], 2, "{line}");
}

/// `--help` documents the exit codes (old and new) and the summary's fields: they are an
/// interface.
#[test]
fn help_documents_every_exit_code_and_the_summary() {
    let output = tail::isolated(&tail::example())
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for code in [
        "  0 ", "  1 ", "  2 ", "  3 ", "  4 ", "  5 ", "  6 ", "  130 ",
    ] {
        assert!(help.contains(code), "{code}: {help}");
    }
    for field in [
        "not_written",
        "stopped_by",
        "class",
        "request_failed adds count",
    ] {
        assert!(help.contains(field), "{field}: {help}");
    }
}

/// A hostile server's text (a frame with terminal escape sequences, a rejection naming
/// "permissions" with control characters) reaches the readable stderr lines escaped: no raw
/// control character, one line per report.
#[test]
fn server_text_cannot_write_control_characters_to_the_terminal() {
    let emu = emulator();
    let topics = presence_topics(2);
    emu.deny_topic(&topics[1], &["presence:\u{1b}[2Jview\nx"]);
    let mut child = tail_command(&emu)
        .args(&topics)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = lines(child.stderr.take().unwrap());
    tail::wait_following(&emu);
    emu.publish_raw(&topics[0], "bad \u{1b}[2J\u{7} frame".into());
    let started = Instant::now();
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("malformed")) {
        assert!(started.elapsed() < Duration::from_secs(20), "{seen:#?}");
        if let Ok(line) = err.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    assert_eq!(sigterm(&mut child), Some(0));
    seen.extend(err.try_iter());
    assert!(seen.iter().any(|l| l.contains("rejected")), "{seen:#?}");
    for line in &seen {
        assert!(
            !line.contains(|c: char| c.is_control()),
            "raw control character: {line:?}"
        );
    }
}

/// A stale `GENESYS_ACCESS_TOKEN` left in the environment does not beat client credentials
/// given as flags: tail follows with the credentials, saying what it ignored.
#[test]
fn client_credential_flags_win_over_an_access_token_from_the_environment() {
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let mut child = tail_command(&emu)
        .env("GENESYS_ACCESS_TOKEN", "stale-token")
        .arg(&topic)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = lines(child.stderr.take().unwrap());
    tail::wait_following(&emu);
    assert_eq!(sigterm(&mut child), Some(0));
    let stderr: Vec<String> = err.try_iter().collect();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("GENESYS_ACCESS_TOKEN ignored")),
        "{stderr:#?}"
    );
}

/// `--api-base https://api.<domain>` with client credentials needs no `--login-base` (the
/// library derives `https://login.<domain>`): tail goes on to the service (here a domain that
/// never resolves, RFC 6761: a network failure, exit 3) instead of asking for a region.
#[test]
fn an_api_dot_domain_base_needs_no_login_base() {
    let output = tail::isolated(&tail::example())
        .args(["--api-base", "https://api.genesys-notify.invalid"])
        .args(["--client-id", "id", "--client-secret", "secret"])
        .args(["--lifecycle-format", "json"])
        .arg(&presence_topics(1)[0])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("no region"), "{stderr}");
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("login.genesys-notify.invalid") || stderr.contains("\"network\""),
        "{stderr}"
    );
}

/// An invalid value in the environment is named with the variable it came from.
#[test]
fn a_bad_environment_value_names_its_variable() {
    let output = tail::isolated(&tail::example())
        .env("GENESYS_REGION", "mars-north-1")
        .env("GENESYS_ACCESS_TOKEN", "token")
        .arg(&presence_topics(1)[0])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mars-north-1") && stderr.contains("GENESYS_REGION"),
        "{stderr}"
    );
    let output = tail::isolated(&tail::example())
        .env("GENESYS_API_BASE", "ftp://api.example.com")
        .env("GENESYS_ACCESS_TOKEN", "token")
        .arg(&presence_topics(1)[0])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("GENESYS_API_BASE") && stderr.contains("ftp"),
        "{stderr}"
    );
}
