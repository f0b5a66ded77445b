//! `tail` with a token obtained elsewhere: `--access-token` (or `GENESYS_ACCESS_TOKEN`) and the
//! API base are all it needs; no OAuth host is asked for, since no token is requested.
mod util;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;
use util::*;

#[test]
fn an_access_token_and_the_api_base_are_enough() {
    let emu = emulator();
    let topic = presence_topics(1).remove(0);
    let mut child = tail::isolated(&tail::example())
        .args(["--api-base", &emu.api_base()])
        .env("GENESYS_ACCESS_TOKEN", emu.issue_token())
        .arg(&topic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let following = emu.wait_for(Duration::from_secs(20), |e| {
        e.channels()
            .iter()
            .any(|c| c.connected && !c.topics.is_empty())
    });
    if !following {
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        panic!(
            "tail did not follow: {:?} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    wait_sockets(&emu, 1);
    emu.publish(&topic, presence_body(7));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["eventBody"]["seq"], 7);
    assert_eq!(emu.token_requests(), 0, "no token was requested");
    assert_eq!(
        interrupt_and_wait(&mut child, Duration::from_secs(15)),
        Some(0)
    );
}
