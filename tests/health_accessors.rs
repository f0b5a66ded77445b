//! Health is read through accessors only, and lifecycle listeners are counted apart from the
//! event listeners' patterns (issue 17, point 16: a public `dropped` field beside methods for
//! the other totals, and lifecycle listeners under a made-up `"(lifecycle)"` pattern key).

use genesys_notify::{Client, Event, Lifecycle};

#[test]
fn lifecycle_listeners_are_counted_apart_from_patterns() {
    let client = Client::builder()
        .access_token("token")
        .api_base("http://127.0.0.1:9")
        .login_base("http://127.0.0.1:9")
        .build()
        .unwrap();
    let _a = client.on("v2.users.*.presence", |_: &Event| {}).unwrap();
    let _b = client.on("v2.users.*.presence", |_: &Event| {}).unwrap();
    let _c = client.on_lifecycle(|_: &Lifecycle| {}).unwrap();
    let health = client.health();
    assert_eq!(health.listeners().len(), 1, "{:?}", health.listeners());
    assert_eq!(health.listeners().get("v2.users.*.presence"), Some(&2));
    assert_eq!(health.lifecycle_listeners(), 1);
    assert_eq!(health.listener_count(), 3);
    // Every total is a method, the same kind of read.
    let totals = [
        health.received(),
        health.delivered(),
        health.dropped(),
        health.unrouted(),
        health.malformed(),
        health.reconnects(),
        health.listener_panics(),
        health.lifecycle_dropped(),
    ];
    assert_eq!(totals, [0; 8]);
    assert!(health.channels().is_empty());
    assert_eq!(
        health.queue_depths().len(),
        client.config().dispatcher_threads()
    );
}
