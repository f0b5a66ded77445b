//! A 3-node Redis Cluster on loopback (`redis-server --cluster-enabled yes` and
//! `redis-cli --cluster create`): the bridge writes through the cluster client, every event
//! lands in its shard's stream, and the streams spread over the three nodes (the hash tags put
//! each shard's stream, lease and fence in one slot, different shards on different nodes).
mod util;

use genesys_notify::emulator::Emulator;
use std::process::Command;
use std::time::Duration;
use util::*;

const SHARDS: u32 = 16;

#[test]
fn the_bridge_writes_to_a_three_node_cluster_and_streams_spread_over_the_nodes() {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            RedisServer::start_with(&[
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "5000",
            ])
        })
        .collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli runs (apt-get install redis-tools)");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    assert!(
        wait_until(Duration::from_secs(60), || nodes.iter().all(|n| {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut n.con())
                .unwrap_or_default();
            info.contains("cluster_state:ok")
        })),
        "the cluster is up"
    );

    let emu = Emulator::start().expect("emulator");
    let topics = presence_topics(40);
    let mut args = vec![
        "--redis".to_owned(),
        nodes[0].url(),
        "--redis-cluster".into(),
        "--shards".into(),
        SHARDS.to_string(),
    ];
    args.extend(topics.iter().cloned());
    let mut bridge = BridgeProcess::on_emulator(&emu, "b-cluster", &args);
    assert!(
        wait_until(Duration::from_secs(60), || subscribed_topics(&emu)
            == topics.len()),
        "{}",
        bridge.dump()
    );
    for (seq, topic) in topics.iter().enumerate() {
        assert_eq!(emu.publish(topic, serde_json::json!({"seq": seq})), 1);
    }
    let cluster = redis::cluster::ClusterClient::new(vec![nodes[0].url()]).unwrap();
    let mut con = cluster.get_connection().unwrap();
    let events = |con: &mut redis::cluster::ClusterConnection| {
        read_all(con, "genesys", SHARDS)
            .into_iter()
            .filter(|e| e.get("type") == "event")
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(60), || events(&mut con).len()
            == topics.len()),
        "every event written; log:\n{}",
        bridge.dump()
    );
    for e in events(&mut con) {
        assert_eq!(e.shard, shard_of(e.get("topic"), SHARDS));
    }
    // Each node holds some of the streams.
    for node in &nodes {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("genesys:*:events")
            .query(&mut node.con())
            .unwrap();
        assert!(!keys.is_empty(), "node {} holds streams", node.port);
    }
    assert_eq!(
        bridge.terminate(Duration::from_secs(60)),
        Some(0),
        "{}",
        bridge.dump()
    );
    for shard in 0..SHARDS {
        let lease: Option<String> = redis::cmd("GET")
            .arg(format!("genesys:{{shard-{shard}}}:lease"))
            .query(&mut con)
            .unwrap();
        assert_eq!(lease, None, "released");
    }
}
