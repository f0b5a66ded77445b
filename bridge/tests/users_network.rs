//! The users API (`all_users`) goes through the credential's network settings, as the library
//! client's own calls do:
//! - `--ca-file`: a bridge process whose API is served over TLS by a server signed by a private
//!   CA expands `all_users` and subscribes the users' topics when given the CA's PEM (the users
//!   API used to connect with the bundled roots only, and the bridge stopped at start);
//! - `--proxy`: the users are read through the client's CONNECT proxy, and with the proxy gone
//!   the read fails with a proxy error instead of going around it.
mod util;

// The library's test proxy and TLS terminator, shared rather than copied; this test uses part
// of the proxy's helpers.
#[allow(dead_code)]
#[path = "../../tests/util/proxy.rs"]
mod proxy;
#[path = "../../tests/util/tls.rs"]
mod tls;

use genesys_bridge::users::{active_users_of, UsersError};
use genesys_notify::emulator::Emulator;
use genesys_notify::{ApiError, Client, Error};
use std::collections::BTreeSet;
use std::time::Duration;
use util::*;

fn api_port(emu: &Emulator) -> String {
    emu.api_base().rsplit(':').next().unwrap().to_owned()
}

#[test]
fn all_users_is_read_over_tls_trusting_the_ca_file() {
    let redis = RedisServer::start();
    let emu = Emulator::start().expect("emulator");
    let users: Vec<String> = (0..12).map(user_id).collect();
    for user in &users {
        emu.set_user_presence(user, "AVAILABLE");
    }
    let (port, ca_pem) = tls::tls_terminator(format!("127.0.0.1:{}", api_port(&emu)));
    let dir = std::env::temp_dir().join(format!("bridge-users-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let config = dir.join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "redis = \"{}\"\nshards = 4\n\n[all_users]\nkinds = [\"presence\"]\npage_size = 5\n",
            redis.url()
        ),
    )
    .unwrap();
    let https = format!("https://localhost:{port}");
    let mut bridge = BridgeProcess::start(
        &https,
        emu.client_id(),
        emu.client_secret(),
        "ca",
        &[
            "--config".into(),
            config.display().to_string(),
            "--ca-file".into(),
            ca.display().to_string(),
            "--no-snapshots".into(),
        ],
    );
    let wanted: BTreeSet<String> = users
        .iter()
        .map(|u| format!("v2.users.{u}.presence"))
        .collect();
    let subscribed = || -> BTreeSet<String> {
        emu.channels()
            .iter()
            .flat_map(|c| c.topics.iter().map(|t| t.to_ascii_lowercase()))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(90), || subscribed() == wanted),
        "subscribed {} of {}; exit {:?}; log:\n{}",
        subscribed().len(),
        wanted.len(),
        bridge.wait(Duration::ZERO),
        bridge.dump()
    );
    assert_eq!(
        bridge.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.dump()
    );

    // Without the CA file, the same start fails on the certificate.
    let mut untrusting = BridgeProcess::start(
        &https,
        emu.client_id(),
        emu.client_secret(),
        "no-ca",
        &[
            "--config".into(),
            config.display().to_string(),
            "--no-snapshots".into(),
        ],
    );
    assert_eq!(
        untrusting.wait(Duration::from_secs(90)),
        Some(2),
        "{}",
        untrusting.dump()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn users_are_read_through_the_clients_proxy_and_not_around_it() {
    let emu = Emulator::start().expect("emulator");
    for n in 0..7 {
        emu.set_user_presence(&user_id(n), "AVAILABLE");
    }
    let mut proxy = proxy::ConnectProxy::start(None);
    let client = Client::builder()
        .api_base(emu.api_base())
        .login_base(emu.login_base())
        .client_credentials(emu.client_id(), emu.client_secret())
        .proxy(proxy.url().as_str())
        .proxy_loopback(true)
        .proxy_from_env(false)
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ids = active_users_of(&client, 3).expect("the users, through the proxy");
    let expected: Vec<String> = (0..7).map(user_id).collect();
    assert_eq!(ids, expected, "three pages of at most 3");
    let target = format!("127.0.0.1:{}", api_port(&emu));
    assert!(
        proxy.tunnels().contains(&target),
        "a tunnel to the API: {:?}",
        proxy.tunnels()
    );

    // The proxy gone: the read fails on the proxy, it does not connect directly.
    proxy.stop();
    match active_users_of(&client, 3) {
        Err(UsersError::Api {
            page: 1,
            error: Error::Api(ApiError::Proxy(_)),
        }) => {}
        other => panic!("a proxy error on page 1, got {other:?}"),
    }
}
