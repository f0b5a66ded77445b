//! `tail` (the example, same source as `genesys-tail`) as scripts and service managers use it:
//! with `--lifecycle-format json` every line of stderr is a JSON object, its own messages and
//! errors included; SIGTERM and SIGHUP stop it as cleanly as Ctrl-C (sockets closed with a close
//! frame, subscriptions deleted, exit 0); a stdout it cannot write (a full disk) is a failure
//! (exit 1), never a silent success.
mod util;

use genesys_notify::emulator::{Emulator, SocketEventKind};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use util::*;

/// The built `tail` example pointed at `emu` with its credentials; nothing from the environment.
fn tail_command(emu: &Emulator) -> Command {
    tail::command(&tail::example(), emu)
}

/// Sends `signal` (`-TERM`, ...) to `child`, waits up to 15 s for it to exit and returns its
/// exit code (`None` when a signal killed it).
fn signal_and_wait(child: &mut Child, signal: &str) -> Option<i32> {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_exit(child, signal)
}

fn wait_exit(child: &mut Child, after: &str) -> Option<i32> {
    tail::wait_exit(child, after, || {}).code()
}

fn read_all(pipe: Option<impl Read>) -> String {
    let mut text = String::new();
    pipe.unwrap().read_to_string(&mut text).unwrap();
    text
}

/// Every line of `stderr` parsed as a JSON object; panics naming the first that is not one.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line:?}\n{stderr}"));
            assert!(value.is_object(), "not an object: {line}");
            assert!(
                value["time"].is_string()
                    && value["event"].is_string()
                    && value["message"].is_string(),
                "missing time/event/message: {line}"
            );
            value
        })
        .collect()
}

fn events(lines: &[serde_json::Value]) -> Vec<&str> {
    lines.iter().map(|l| l["event"].as_str().unwrap()).collect()
}

#[test]
fn with_json_lifecycle_format_every_stderr_line_is_a_json_object() {
    let emu = emulator();
    let topics = presence_topics(2);
    emu.deny_topic(&topics[1], &["presence:view"]);
    let mut child = tail_command(&emu)
        .args(["--lifecycle-format", "json"])
        .args(&topics)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tail::wait_following(&emu);
    // The "following" line is written right after the subscribe returns.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(signal_and_wait(&mut child, "-INT"), Some(0));
    let stderr = read_all(child.stderr.take());
    let lines = json_lines(&stderr);
    let names = events(&lines);
    for expected in [
        "connected",
        "topic_rejected",
        "following",
        "stopping",
        "summary",
    ] {
        assert!(names.contains(&expected), "no {expected} line: {stderr}");
    }
    let rejected = lines
        .iter()
        .find(|l| l["event"] == "topic_rejected")
        .unwrap();
    assert_eq!(rejected["topic"], topics[1].as_str());
    assert_eq!(rejected["missing_permissions"][0], "presence:view");
    let summary = lines.iter().find(|l| l["event"] == "summary").unwrap();
    assert_eq!(summary["received"], 0, "{summary}");
}

#[test]
fn with_json_lifecycle_format_errors_are_json_lines_with_the_exit_code() {
    let emu = emulator();
    // A bad topic (our check), a bad flag value (clap's), wrong credentials (the service's).
    let wrong_secret = {
        let mut command = tail::pointed_at(&tail::example(), &emu);
        command
            .args(["--client-id", emu.client_id()])
            .args(["--client-secret", "wrong"]);
        command
    };
    let cases: [(Command, &[&str], &str); 3] = [
        (
            tail_command(&emu),
            &["--lifecycle-format", "json", "v2.users..presence"],
            "bad topic",
        ),
        (
            tail_command(&emu),
            &[
                "--lifecycle-format=json",
                "--backpressure",
                "sometimes",
                "v2.users.a.presence",
            ],
            "sometimes",
        ),
        (
            wrong_secret,
            &["--lifecycle-format", "json", "v2.users.a.presence"],
            "credentials",
        ),
    ];
    for (mut command, args, says) in cases {
        let mut child = command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert_eq!(
            wait_exit(&mut child, "a bad command line"),
            Some(2),
            "{args:?}"
        );
        let stderr = read_all(child.stderr.take());
        let lines = json_lines(&stderr);
        let error = lines
            .iter()
            .find(|l| l["event"] == "error")
            .unwrap_or_else(|| panic!("no error line for {args:?}: {stderr}"));
        assert_eq!(error["exit_code"], 2, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{args:?}: {error}"
        );
    }
    // Text stays as it was: one readable line.
    let output = tail_command(&emu)
        .arg("v2.users..presence")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("tail: error: bad topic"), "{stderr}");
}

/// SIGTERM (`kill`, `docker stop`, systemd) and SIGHUP (the terminal closed) are how services
/// and shells stop a program: the server-side subscriptions must not be left behind.
fn stops_cleanly_on(signal: &str) {
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let mut child = tail_command(&emu)
        .arg(&topic)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tail::wait_following(&emu);
    let channel = emu.channels()[0].id.clone();
    assert_eq!(
        signal_and_wait(&mut child, signal),
        Some(0),
        "after {signal}"
    );
    let stderr = read_all(child.stderr.take());
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains(&channel)),
        "subscriptions not deleted after {signal}: {stderr}"
    );
    assert!(
        emu.wait_for(Duration::from_secs(5), |e| e
            .socket_log()
            .iter()
            .any(|s| s.channel_id == channel
                && matches!(s.kind, SocketEventKind::CloseFrameReceived { .. }))),
        "no close frame after {signal}: {:?}",
        emu.socket_log()
    );
}

#[test]
fn sigterm_stops_tail_as_cleanly_as_ctrl_c() {
    stops_cleanly_on("-TERM");
}

#[test]
fn sighup_stops_tail_as_cleanly_as_ctrl_c() {
    stops_cleanly_on("-HUP");
}

#[test]
fn a_stdout_that_cannot_be_written_is_a_failure_not_a_clean_exit() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("no /dev/full on this system: nothing to test");
        return;
    };
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let mut child = tail_command(&emu)
        .arg(&topic)
        .stdout(full)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tail::wait_following(&emu);
    wait_sockets(&emu, 1);
    emu.publish(&topic, presence_body(1));
    let code = wait_exit(&mut child, "a failed write to stdout");
    let stderr = read_all(child.stderr.take());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("stdout"), "{stderr}");
    // Still a clean shutdown: the subscriptions are removed.
    assert!(
        emu.requests().iter().any(|r| r.method == "DELETE"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_while_the_first_subscribe_hangs_stops_tail_promptly_and_cleanly() {
    let emu = emulator();
    // Every socket handshake hangs: the subscribe waits for its deadline (80 s by default).
    emu.inject(genesys_notify::emulator::Fault::HangHandshakes { times: 1_000 });
    let mut child = tail_command(&emu)
        .arg(presence_topics(1).remove(0))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        emu.wait_for(Duration::from_secs(20), |e| !e.channels().is_empty()),
        "tail never created its channel"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(signal_and_wait(&mut child, "-INT"), Some(0));
    let stderr = read_all(child.stderr.take());
    assert!(!stderr.contains("error"), "{stderr}");
    // Stopped while subscribing, it still ends with its summary (hostile pass: it had none).
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.contains("received 0")),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_while_checking_credentials_on_a_silent_service_exits_0_at_once() {
    // A login host that accepts connections and never answers: the credentials check would
    // wait for its request timeout (30 s by default).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let (connection, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(20));
        drop(connection);
    });
    let mut child = tail::isolated(&tail::example())
        .args(["--api-base", &url, "--login-base", &url])
        .args(["--client-id", "id", "--client-secret", "secret"])
        .arg(presence_topics(1).remove(0))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it reach the credentials check.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(signal_and_wait(&mut child, "-TERM"), Some(0));
    drop(held);
}
