//! `genesys-tail` as people install it: `cargo install --path . --features cli` into a temporary
//! root, run against an emulator. It prints notifications as JSON lines on stdout, lifecycle
//! events as readable lines (or JSON lines) on stderr, honours the proxy flags and the proxy
//! environment, and exits 0 on SIGINT.
//!
//! The install builds in debug mode into `target/tail-install` (kept between runs, so only the
//! first run pays for a full build).
mod util;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use util::proxy::ConnectProxy;
use util::*;

/// `target/` of this build: the test binary is `target/<profile>/deps/<name>`.
fn target_dir() -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    path.pop();
    path
}

/// Installs the binary once per test process and returns its path.
fn installed() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = target_dir().join("tail-install-root");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args(["install", "--path", env!("CARGO_MANIFEST_DIR")])
            .args([
                "--features",
                "cli",
                "--debug",
                "--locked",
                "--force",
                "--quiet",
            ])
            .arg("--root")
            .arg(&root)
            .arg("--target-dir")
            .arg(target_dir().join("tail-install"))
            .output()
            .expect("run cargo install");
        assert!(
            output.status.success(),
            "cargo install failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bin = root.join("bin").join("genesys-tail");
        assert!(bin.exists(), "{} missing after install", bin.display());
        bin
    })
}

fn command(emu: &genesys_notify::emulator::Emulator) -> Command {
    let mut command = tail::command(installed(), emu);
    command
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    command
}

/// Lines of a child's pipe, as they come.
fn lines(pipe: impl std::io::Read + Send + 'static) -> crossbeam_channel::Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(
    rx: &crossbeam_channel::Receiver<String>,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push(line.clone());
            if pred(&line) {
                return Some(line);
            }
        }
    }
    None
}

#[test]
fn installed_tail_prints_readable_lifecycle_lines_and_stops_cleanly_on_sigint() {
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let mut child = command(&emu)
        .arg(&topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let mut errs = Vec::new();
    let connected = wait_line(&stderr, &mut errs, |l| l.ends_with(" connected"))
        .unwrap_or_else(|| panic!("no connected line: {errs:?}"));
    // `<RFC 3339 time> <short channel id> connected`, not Rust Debug output.
    let mut parts = connected.split(' ');
    let time = parts.next().unwrap();
    assert!(humantime::parse_rfc3339(time).is_ok(), "{connected}");
    let channel = parts.next().unwrap();
    assert!(channel.contains('…'), "{connected}");
    assert!(
        errs.iter().all(|l| !l.contains(" { ")),
        "Debug output: {errs:?}"
    );
    assert!(emu.wait_for(Duration::from_secs(10), |e| e
        .channels()
        .first()
        .is_some_and(|c| c.connected && !c.topics.is_empty())));
    emu.publish(&topic, presence_body(42));
    let mut outs = Vec::new();
    let line = wait_line(&stdout, &mut outs, |_| true).expect("a notification line");
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["eventBody"]["seq"], 42);
    assert_eq!(
        interrupt_and_wait(&mut child, Duration::from_secs(15)),
        Some(0)
    );
    assert!(emu.requests().iter().any(|r| r.method == "DELETE"));
}

#[test]
fn installed_tail_writes_lifecycle_json_lines_and_uses_the_proxy_from_the_environment() {
    let emu = emulator();
    let proxy = ConnectProxy::start(None);
    let topic = presence_topics(1).remove(0);
    let mut child = command(&emu)
        .args(["--lifecycle-format", "json", "--proxy-loopback"])
        .env("HTTPS_PROXY", proxy.url())
        .arg(&topic)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut errs = Vec::new();
    let connected = wait_line(&stderr, &mut errs, |l| l.contains("\"connected\""))
        .unwrap_or_else(|| panic!("no connected JSON line: {errs:?}"));
    let json: serde_json::Value = serde_json::from_str(&connected).unwrap();
    assert_eq!(json["event"], "connected");
    assert!(json["channel"].as_str().unwrap().contains('…'), "{json}");
    assert!(
        json["time"].is_string() && json["message"].is_string(),
        "{json}"
    );
    // Every JSON line on stderr that starts with `{` is one object.
    for line in errs.iter().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line).expect("JSON lifecycle line");
    }
    let ws_port = emu.ws_base().rsplit(':').next().unwrap().to_owned();
    assert!(
        proxy
            .tunnels()
            .iter()
            .any(|t| t.ends_with(&format!(":{ws_port}"))),
        "{:?}",
        proxy.tunnels()
    );
    assert_eq!(
        interrupt_and_wait(&mut child, Duration::from_secs(15)),
        Some(0)
    );
}

#[test]
fn installed_tail_exits_2_when_the_proxy_wants_credentials_and_documents_its_flags() {
    let emu = emulator();
    let proxy = ConnectProxy::start(Some(("u", "p")));
    let output = command(&emu)
        .args(["--proxy", &proxy.url(), "--proxy-loopback"])
        .arg(presence_topics(1).remove(0))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("proxy") && stderr.contains("407"),
        "{stderr}"
    );
    let help = Command::new(installed()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--proxy",
        "--no-proxy",
        "--ca-file",
        "--platform-roots",
        "--streaming-base",
        "--lifecycle-format",
        "Exit codes",
        "Examples",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
