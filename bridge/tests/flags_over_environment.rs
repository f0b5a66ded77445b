//! The credential and network flags the bridge shares with `genesys-tail`
//! (`genesys_notify::cli`), run as the built binary: a flag wins over the environment across
//! settings, saying what it ignored (before, a stale `GENESYS_ACCESS_TOKEN` beat
//! `--client-id`/`--client-secret`, and `GENESYS_API_BASE` beat `--region`); an empty flag is
//! refused naming it; an unknown region says where it came from.
mod util;

use genesys_notify::emulator::Emulator;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;
use util::*;

/// Messages of the bridge's JSON log lines whose `event` is `event`.
fn messages(bridge: &BridgeProcess, event: &str) -> Vec<String> {
    bridge
        .events(event)
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A stale `GENESYS_ACCESS_TOKEN` in the environment does not beat client credentials given as
/// flags: the bridge gets its token with them, subscribes, and warns about what it ignored.
#[test]
fn client_credential_flags_win_over_a_stale_access_token_from_the_environment() {
    let redis = RedisServer::start();
    let emu = Emulator::start().expect("emulator");
    let topic = format!("v2.users.{}.presence", user_id(0));
    let base = emu.api_base();
    let mut bridge = BridgeProcess::start_with_env(
        &[
            ("GENESYS_API_BASE", base.as_str()),
            ("GENESYS_LOGIN_BASE", base.as_str()),
            ("GENESYS_ACCESS_TOKEN", "stale-token"),
        ],
        "flags",
        &[
            "--redis".into(),
            redis.url(),
            "--client-id".into(),
            emu.client_id().into(),
            "--client-secret".into(),
            emu.client_secret().into(),
            topic,
        ],
    );
    let subscribed = || emu.channels().iter().map(|c| c.topics.len()).sum::<usize>();
    assert!(
        wait_until(Duration::from_secs(60), || subscribed() == 1),
        "the topic subscribed with the flags' credentials; log:\n{}",
        bridge.dump()
    );
    assert!(
        messages(&bridge, "warning").iter().any(
            |m| m == "GENESYS_ACCESS_TOKEN ignored: --client-id and --client-secret were given"
        ),
        "{}",
        bridge.dump()
    );
    assert_eq!(bridge.terminate(Duration::from_secs(30)), Some(0));
}

/// `--region` wins over `GENESYS_API_BASE` and `GENESYS_LOGIN_BASE` from the environment: the
/// bridge goes to the region's hosts (seen here as the CONNECT request reaching a proxy of the
/// test's own, which refuses it) instead of the emulator the environment names, and warns.
#[test]
fn a_region_flag_wins_over_base_urls_from_the_environment() {
    let emu = Emulator::start().expect("emulator");
    let base = emu.api_base();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let (connects_tx, connects) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in proxy.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let _ = reader.read_line(&mut request_line);
            let _ = connects_tx.send(request_line.trim().to_owned());
            let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let mut bridge = BridgeProcess::start_with_env(
        &[
            ("GENESYS_API_BASE", base.as_str()),
            ("GENESYS_LOGIN_BASE", base.as_str()),
            ("GENESYS_CLIENT_ID", emu.client_id()),
            ("GENESYS_CLIENT_SECRET", emu.client_secret()),
        ],
        "region",
        &[
            "--redis".into(),
            "redis://127.0.0.1:1".into(),
            "--region".into(),
            "eu-west-1".into(),
            "--proxy".into(),
            proxy_url,
            format!("v2.users.{}.presence", user_id(0)),
        ],
    );
    let connect = connects
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("no request reached the proxy; log:\n{}", bridge.dump()));
    assert!(
        connect.starts_with("CONNECT login.mypurecloud.ie:443"),
        "{connect}; log:\n{}",
        bridge.dump()
    );
    let code = bridge.wait(Duration::from_secs(60));
    assert!(code.is_some_and(|c| c != 0), "{code:?}; {}", bridge.dump());
    for var in ["GENESYS_API_BASE", "GENESYS_LOGIN_BASE"] {
        let expected = format!("{var} ignored: --region was given");
        assert!(
            wait_until(Duration::from_secs(5), || messages(&bridge, "warning")
                .contains(&expected)),
            "{}",
            bridge.dump()
        );
    }
    assert!(emu.channels().is_empty(), "nothing reached the emulator");
}

/// An empty flag is refused, named as typed, before anything is contacted (before, it fell
/// back to the environment silently).
#[test]
fn an_empty_flag_is_refused_naming_it() {
    for (args, flag) in [
        (["--client-id", ""], "--client-id"),
        (["--api-base", " "], "--api-base"),
        (["--redis", ""], "--redis"),
    ] {
        let mut all: Vec<String> = Vec::new();
        if flag != "--redis" {
            all.extend(["--redis".into(), "redis://127.0.0.1:1".into()]);
        }
        all.extend(args.iter().map(|a| a.to_string()));
        all.push("v2.users.x.presence".into());
        let mut bridge = BridgeProcess::start_with_env(
            &[
                ("GENESYS_REGION", "eu-west-1"),
                ("GENESYS_CLIENT_ID", "id"),
                ("GENESYS_CLIENT_SECRET", "secret"),
            ],
            "empty",
            &all,
        );
        assert_eq!(bridge.wait(Duration::from_secs(30)), Some(2), "{flag}");
        // The reader thread may still hold the last lines: wait for them.
        let expected = format!("{flag} is empty; give a value or leave it out");
        let found = || {
            messages(&bridge, "error")
                .iter()
                .any(|m| m.contains(&expected))
        };
        assert!(
            wait_until(Duration::from_secs(5), found),
            "{flag}: {}",
            bridge.dump()
        );
    }
}

/// An unknown region says where it came from: here the configuration file.
#[test]
fn an_unknown_region_names_its_source() {
    let dir = std::env::temp_dir().join(format!("bridge-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bridge.toml");
    std::fs::write(
        &path,
        "redis = \"redis://127.0.0.1:1\"\nregion = \"mars-north-1\"\n",
    )
    .unwrap();
    let mut bridge = BridgeProcess::start_with_env(
        &[("GENESYS_ACCESS_TOKEN", "token")],
        "region-file",
        &[
            "--config".into(),
            path.display().to_string(),
            "v2.users.x.presence".into(),
        ],
    );
    assert_eq!(bridge.wait(Duration::from_secs(30)), Some(2));
    let found = || {
        messages(&bridge, "error")
            .iter()
            .any(|m| m.contains("unknown region \"mars-north-1\" (from region in --config)"))
    };
    assert!(
        wait_until(Duration::from_secs(5), found),
        "{}",
        bridge.dump()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
