//! `tail` (the example, same source as `genesys-tail`) as a user meets its failures and its
//! last line: every error names its class (network, credentials, permission, rate limiting,
//! server, input) with an exit code of its own; a flag out of range is named as typed, with its
//! range in its own unit; and the summary adds up however tail stopped, stdout closed mid-flow
//! (`| head -1`) included.
mod util;

use genesys_notify::emulator::{Emulator, EmulatorConfig, Endpoint, Fault};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use util::*;

fn tail_command(emu: &Emulator) -> Command {
    tail::command(&tail::example(), emu)
}

/// Runs `command` to its end (at most 60 s) and returns its output.
fn run(mut command: Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = tail::wait_exit(&mut child, "its failure", || {});
    let mut output = child.wait_with_output().unwrap();
    output.status = status;
    output
}

/// The JSON `error` line of a run with `--lifecycle-format json`.
fn error_line(output: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["event"] == "error")
        .unwrap_or_else(|| panic!("no error line: {stderr}"))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Review finding: "connection refused" was labelled as a credentials problem. Each class of
/// failure is named as what it is and has its own exit code (documented in `--help`).
#[test]
fn each_failure_is_labelled_by_its_class_with_its_exit_code() {
    // Network: nothing listens at the bases.
    let base = format!("http://127.0.0.1:{}", closed_port());
    let mut refused = tail::isolated(&tail::example());
    refused
        .args(["--api-base", &base, "--login-base", &base])
        .args(["--client-id", "id", "--client-secret", "secret"])
        .arg(&presence_topics(1)[0]);
    let output = run(refused);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("network"), "{stderr}");
    assert!(!stderr.contains("credentials refused"), "{stderr}");

    // Network too: TLS to a host whose certificate no trusted root signed.
    let emu = emulator();
    let (port, _ca) = tls::tls_terminator(emu.api_base().trim_start_matches("http://").to_owned());
    let untrusted = format!("https://localhost:{port}");
    let mut tls = tail::isolated(&tail::example());
    tls.args(["--api-base", &untrusted, "--login-base", &untrusted])
        .args([
            "--client-id",
            emu.client_id(),
            "--client-secret",
            emu.client_secret(),
        ])
        .args(["--lifecycle-format", "json"])
        .arg(&presence_topics(1)[0]);
    let output = run(tls);
    let line = error_line(&output);
    assert_eq!(output.status.code(), Some(3), "{line}");
    assert_eq!(line["class"], "network", "{line}");
    assert!(
        line["message"].as_str().unwrap().contains("certificate"),
        "{line}"
    );

    // Credentials: the token endpoint refuses the client secret.
    let emu = emulator_with(EmulatorConfig::default().client_secret("the-right-one"));
    let mut wrong = tail::pointed_at(&tail::example(), &emu);
    wrong
        .args(["--client-id", emu.client_id(), "--client-secret", "wrong"])
        .args(["--lifecycle-format", "json"])
        .arg(&presence_topics(1)[0]);
    let output = run(wrong);
    assert_eq!(output.status.code(), Some(2));
    let line = error_line(&output);
    assert_eq!(line["class"], "credentials", "{line}");
    assert_eq!(line["exit_code"], 2, "{line}");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("credentials refused"),
        "{line}"
    );

    // Permission, rate limiting and server failures of the token check.
    for (status, class, code) in [
        (403, "permission", 4),
        (429, "rate_limited", 5),
        (503, "server", 6),
    ] {
        let emu = emulator();
        emu.inject(Fault::HttpStatus {
            endpoint: Endpoint::TokensMe,
            status,
            retry_after: Some(0),
            times: 1000,
        });
        let mut command = tail_command(&emu);
        command
            .args(["--lifecycle-format", "json"])
            .arg(&presence_topics(1)[0]);
        let output = run(command);
        let line = error_line(&output);
        assert_eq!(output.status.code(), Some(code), "{status}: {line}");
        assert_eq!(line["class"], class, "{status}: {line}");
        assert_eq!(line["exit_code"], code, "{status}: {line}");
    }

    // A permission refused later, by the subscription request itself.
    let emu = emulator();
    emu.inject(Fault::HttpStatus {
        endpoint: Endpoint::Subscriptions,
        status: 403,
        retry_after: None,
        times: 1000,
    });
    let mut command = tail_command(&emu);
    command
        .args(["--lifecycle-format", "json"])
        .arg(&presence_topics(1)[0]);
    let output = run(command);
    let line = error_line(&output);
    assert_eq!(output.status.code(), Some(4), "{line}");
    assert_eq!(line["class"], "permission", "{line}");
}

/// Review finding: a flag out of range was reported with the library's setting name and unit
/// (`liveness_timeout: 0ns is outside 50ms..=3600s`). The error names the flag as typed, the
/// range in the flag's unit and the value given; nothing is contacted.
#[test]
fn a_flag_out_of_range_is_named_as_typed_with_its_range_and_unit() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    for (flag, value, expect) in [
        ("--liveness-timeout-secs", "0", "1 to 3600 (seconds)"),
        ("--ping-interval-secs", "4000", "1 to 3600 (seconds)"),
        ("--queue-capacity", "0", "1 to 1048576 (events)"),
        ("--dispatcher-threads", "1000", "1 to 256 (threads)"),
        ("--ping-interval-secs", "90", "--liveness-timeout-secs"),
    ] {
        let output = tail::isolated(&tail::example())
            .args(["--api-base", &base, "--access-token", "token"])
            .args([flag, value])
            .arg(&presence_topics(1)[0])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} {value}")) && stderr.contains(expect),
            "{flag} {value}: {stderr}"
        );
        assert!(
            !stderr.contains("liveness_timeout") && !stderr.contains("ns "),
            "{stderr}"
        );
    }
}

/// Review finding: after `genesys-tail ... | head -1` the summary read "received 40, delivered
/// 1": it was read before the shutdown delivered what was queued, and did not say what became
/// of the events once stdout was closed. Now it is read after, and `received = written + not
/// written + dropped + unrouted`, with `delivered = written + not written`.
#[test]
fn the_summary_adds_up_when_stdout_closes_mid_flow() {
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let mut child = tail_command(&emu)
        .args(["--lifecycle-format", "json", "--queue-capacity", "4"])
        .arg(&topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    tail::wait_following(&emu);
    // `head -1`: read one line, then the reader goes away while events keep coming.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for seq in 0..20 {
        emu.publish(&topic, presence_body(seq));
    }
    let mut line = String::new();
    let started = Instant::now();
    while line.is_empty() {
        stdout.read_line(&mut line).unwrap();
        assert!(started.elapsed() < Duration::from_secs(20), "no line");
    }
    drop(stdout);
    let mut seq = 20;
    let status = tail::wait_exit(&mut child, "its stdout closing", || {
        for _ in 0..5 {
            emu.publish(&topic, presence_body(seq));
            seq += 1;
        }
    });
    assert_eq!(status.code(), Some(0), "{status:?}");
    let lines = errors.join().unwrap();
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("panicked") && !l.contains("Broken pipe")),
        "{lines:#?}"
    );
    let summary: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {lines:#?}"));
    let n = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {summary}"))
    };
    // Events still unread on the socket when tail shut down were never received: the count
    // is what reached the client.
    assert!(n("written") >= 1, "{summary}");
    assert_eq!(
        n("received"),
        n("written") + n("not_written") + n("dropped") + n("unrouted"),
        "{summary}"
    );
    assert_eq!(n("delivered"), n("written") + n("not_written"), "{summary}");
    assert_eq!(summary["stopped_by"], "stdout_closed", "{summary}");
}
