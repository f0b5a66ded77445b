//! The status page loads in headless Chromium (Debian's `chromium`, which `.ci/run` installs)
//! and shows the shard table with this process as the holder of every shard; the page asks
//! to be reloaded every 2 s.
mod util;

use genesys_notify::emulator::Emulator;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::*;

/// `chromium --headless --dump-dom url`, killed after `timeout`: the DOM after loading.
fn dump_dom(url: &str, timeout: Duration) -> String {
    let profile = std::env::temp_dir().join(format!("bridge-chromium-{}", std::process::id()));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts (apt-get install chromium)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut dom);
        dom
    });
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&profile);
    reader.join().unwrap_or_default()
}

#[test]
fn the_status_page_loads_in_headless_chromium_with_the_shard_table() {
    let redis = RedisServer::start();
    let emu = Emulator::start().expect("emulator");
    let addr = format!("127.0.0.1:{}", free_port());
    let args = vec![
        "--redis".to_owned(),
        redis.url(),
        "--shards".into(),
        "4".into(),
        "--http".into(),
        addr.clone(),
        format!("v2.users.{}.presence", user_id(1)),
    ];
    let mut bridge = BridgeProcess::start(
        &emu.api_base(),
        emu.client_id(),
        emu.client_secret(),
        "b-page",
        &args,
    );
    assert!(
        wait_until(Duration::from_secs(60), || http_get(&addr, "/")
            .1
            .matches("<td>b-page</td>")
            .count()
            == 4),
        "{}",
        bridge.dump()
    );
    let dom = dump_dom(&format!("http://{addr}/"), Duration::from_secs(90));
    assert!(
        dom.contains("<table id=\"shards\">"),
        "the shard table is in the DOM: {dom}"
    );
    assert_eq!(
        dom.matches("<td>b-page</td>").count(),
        4,
        "every shard's holder: {dom}"
    );
    assert!(dom.contains("<table id=\"credentials\">"));
    assert!(dom.contains("http-equiv=\"refresh\""));
    bridge.kill9();
}
