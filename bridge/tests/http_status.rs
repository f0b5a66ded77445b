//! `--http`: `/metrics` in Prometheus text with the documented names, `/health` as JSON (200,
//! then 503 while Redis is unreachable), and the status page with its shard table; SIGTERM
//! with Redis away still ends the process.
mod util;

use genesys_notify::emulator::Emulator;
use std::time::Duration;
use util::*;

#[test]
fn metrics_health_and_status_page_tell_the_bridge_s_state() {
    let mut redis = RedisServer::start();
    let emu = Emulator::start().expect("emulator");
    let addr = format!("127.0.0.1:{}", free_port());
    let topics = presence_topics(3);
    let mut args = vec![
        "--redis".to_owned(),
        redis.url(),
        "--shards".into(),
        "4".into(),
        "--lease-secs".into(),
        "3".into(),
        "--http".into(),
        addr.clone(),
    ];
    args.extend(topics.iter().cloned());
    let mut bridge = BridgeProcess::on_emulator(&emu, "b-http", &args);
    assert!(
        wait_until(Duration::from_secs(60), || subscribed_topics(&emu) == 3),
        "{}",
        bridge.dump()
    );
    for (seq, topic) in topics.iter().enumerate() {
        emu.publish(topic, serde_json::json!({"seq": seq}));
    }
    assert!(wait_until(Duration::from_secs(60), || {
        let (_, text) = http_get(&addr, "/metrics");
        metric(&text, "genesys_bridge_events_in_total") == Some(3.0)
            && metric(&text, "genesys_bridge_buffer_bytes") == Some(0.0)
    }));
    let (status, text) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "genesys_bridge_shards_held"), Some(4.0));
    assert_eq!(metric(&text, "genesys_bridge_shards"), Some(4.0));
    assert_eq!(metric(&text, "genesys_bridge_redis_up"), Some(1.0));
    // 3 events, 4 `acquired` lifecycle entries.
    assert_eq!(
        metric(&text, "genesys_bridge_entries_written_total"),
        Some(7.0)
    );
    assert_eq!(metric(&text, "genesys_bridge_dropped_total"), Some(0.0));
    for shard in 0..4 {
        assert_eq!(
            metric(
                &text,
                &format!("genesys_bridge_shard_lag_seconds{{shard=\"{shard}\"}}")
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        metric(
            &text,
            "genesys_bridge_channels{credential=\"0\",state=\"connected\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "genesys_bridge_topics{credential=\"0\"}"),
        Some(3.0)
    );
    assert!(text.contains("# TYPE genesys_bridge_events_in_total counter"));

    let (status, body) = http_get(&addr, "/health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["bridge"], "b-http");
    assert_eq!(health["shards"]["held"], 4);
    assert_eq!(health["credentials"][0]["topics"], 3);
    assert_eq!(health["credentials"][0]["connected"], 1);

    let (status, page) = http_get(&addr, "/");
    assert_eq!(status, 200);
    assert!(page.contains("http-equiv=\"refresh\""), "reloads itself");
    assert!(page.contains("<table id=\"shards\">"));
    assert_eq!(
        page.matches("<td>b-http</td>").count(),
        4,
        "each shard's holder: {page}"
    );
    assert_eq!(http_get(&addr, "/nothing").0, 404);

    // Redis away: /health says so with 503 and metrics show it down.
    redis.kill();
    assert!(
        wait_until(Duration::from_secs(20), || http_get(&addr, "/health").0
            == 503),
        "{}",
        bridge.dump()
    );
    let (_, body) = http_get(&addr, "/health");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["redis"]["up"], false);
    let (_, text) = http_get(&addr, "/metrics");
    assert_eq!(metric(&text, "genesys_bridge_redis_up"), Some(0.0));
    assert!(metric(&text, "genesys_bridge_redis_errors_total").unwrap() >= 1.0);
    // SIGTERM with Redis away still ends, within the documented bounds (client shutdown 5 s,
    // flush 10 s, connection attempts 5 s), exit 0; the leases then expire by themselves.
    assert_eq!(
        bridge.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.dump()
    );
}
