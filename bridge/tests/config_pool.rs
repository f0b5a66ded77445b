//! The configuration file's credential pool and `all_users` expansion, at scale: 30 000
//! active users expanded into 30 000 combined topics (`v2.users.<id>?presence&routingStatus`)
//! over 2 credentials, in one bridge process against the emulator. Every topic is subscribed
//! within the limits (1 000 per channel, 20 000 per credential), events flow, `/health`
//! reports each credential, and a user added later is picked up by the periodic refresh.
mod util;

use genesys_notify::emulator::{Emulator, EmulatorConfig};
use std::time::{Duration, Instant};
use util::*;

const USERS: usize = 30_000;

#[test]
fn thirty_thousand_user_topics_over_two_credentials() {
    let redis = RedisServer::start();
    // Both credentials are the emulator's one client id: the emulator counts their channels
    // together, so it allows 40 (the service allows 20 per client).
    let emu = Emulator::start_with(EmulatorConfig::default().max_channels(40)).expect("emulator");
    for i in 0..USERS {
        emu.set_user_presence(&user_id(i), "AVAILABLE");
    }
    let dir = std::env::temp_dir().join(format!("bridge-config-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let config = format!(
        r#"
redis = "{redis}"
shards = 64
http = "{http}"
api_base = "{base}"
login_base = "{base}"

[[credential]]
client_id = "{id}"
client_secret = "{secret}"

[[credential]]
client_id = "{id}"
client_secret_env = "POOL_SECRET_2"

[all_users]
kinds = ["presence", "routingStatus"]
refresh_secs = 2
page_size = 500
"#,
        redis = redis.url(),
        base = emu.api_base(),
        id = emu.client_id(),
        secret = emu.client_secret(),
    );
    let path = dir.join("bridge.toml");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let mut bridge = BridgeProcess::start_with_env(
        &[("POOL_SECRET_2", emu.client_secret())],
        "pool",
        &[
            "--config".into(),
            path.display().to_string(),
            "--no-snapshots".into(),
        ],
    );
    let subscribed =
        |emu: &Emulator| -> usize { emu.channels().iter().map(|c| c.topics.len()).sum() };
    assert!(
        wait_until(Duration::from_secs(180), || subscribed(&emu) == USERS),
        "{} of {USERS} topics subscribed; log:\n{}",
        subscribed(&emu),
        bridge.dump()
    );
    eprintln!(
        "{USERS} topics subscribed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let channels = emu.channels();
    assert!(channels.len() <= 40, "{} channels", channels.len());
    assert!(
        channels.iter().all(|c| c.topics.len() <= 1000),
        "1 000 topics per channel at most"
    );
    assert!(emu.removed_channels().is_empty(), "no channel evicted");
    assert!(channels
        .iter()
        .any(|c| c.topics[0].contains("?presence&routingstatus")
            || c.topics[0].contains("?presence&routingStatus")));

    // Health per credential: both used, each within its 20 x 1 000 budget, all connected.
    assert!(wait_until(Duration::from_secs(60), || {
        let (status, body) = http_get(&http, "/health");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        status == 200
            && health["credentials"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["connected"] == c["channels"])
    }));
    let (_, body) = http_get(&http, "/health");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let per_credential: Vec<u64> = health["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["topics"].as_u64().unwrap())
        .collect();
    eprintln!("topics per credential: {per_credential:?}");
    assert_eq!(per_credential.len(), 2);
    assert_eq!(per_credential.iter().sum::<u64>(), USERS as u64);
    assert!(
        per_credential.iter().all(|t| *t > 0 && *t <= 20_000),
        "{per_credential:?}"
    );

    // Events flow, for a sample of users across the shards.
    let sample: Vec<usize> = (0..USERS).step_by(USERS / 100).collect();
    for (seq, i) in sample.iter().enumerate() {
        let topic = format!("v2.users.{}.routingStatus", user_id(*i));
        assert_eq!(
            emu.publish(&topic, serde_json::json!({"seq": seq})),
            1,
            "{topic}"
        );
    }
    let mut con = redis.con();
    let events = |con: &mut redis::Connection| {
        read_all(con, "genesys", 64)
            .into_iter()
            .filter(|e| e.get("type") == "event")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || events(&mut con) == sample.len()),
        "{} of {} events written",
        events(&mut con),
        sample.len()
    );

    // A new user: the next refresh subscribes its topic, and its events flow.
    let newcomer = user_id(USERS);
    emu.set_user_presence(&newcomer, "AVAILABLE");
    assert!(
        wait_until(Duration::from_secs(60), || subscribed(&emu) == USERS + 1),
        "the new user's topic subscribed; log:\n{}",
        bridge.dump()
    );
    assert_eq!(
        emu.publish(
            &format!("v2.users.{newcomer}.presence"),
            serde_json::json!({"seq": "new"})
        ),
        1
    );
    assert!(wait_until(Duration::from_secs(60), || events(&mut con)
        == sample.len() + 1));
    assert!(!bridge.events("topics_changed").is_empty());

    assert_eq!(
        bridge.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.dump()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
