//! Snapshots at subscribe and user-supplied state resources (issue #9).
mod resync;
mod util;

use genesys_notify::{Lifecycle, Snapshots, StateResource, StateSnapshot, Topic};
use resync::*;
use serde_json::{json, Value};
use std::time::Duration;
use util::*;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn listener_registered_before_subscribe_sees_the_current_state_before_any_change() {
    let emu = emulator();
    let users = users_in_state(&emu, 20, "On Queue", Some("IDLE"));
    let client = builder(&emu)
        .snapshots(Snapshots::AfterGapsAndSubscribe)
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.users.*.*");
    let topics: Vec<String> = users
        .iter()
        .map(|u| format!("v2.users.{u}?presence&routingStatus"))
        .collect();
    subscribe_all(&client, &topics);
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Resynced { .. })));
    wait_sockets(&emu, 1);
    for user in &users {
        emu.publish(&presence_topic(user), emu.set_user_presence(user, "AWAY"));
        emu.publish(
            &routing_topic(user),
            emu.set_user_routing_status(user, "INTERACTING"),
        );
    }
    assert!(wait_until(LONG, || out_of_date(
        &emu, &view, &users, true, true
    )
    .is_empty()));
    for user in &users {
        let log = view.log(&presence_topic(user));
        assert_eq!(log.len(), 2, "{log:#?}");
        assert!(log[0].snapshot && !log[1].snapshot);
        // The event form, although the REST answer said "On Queue".
        assert_eq!(
            log[0].body["presenceDefinition"]["systemPresence"],
            "ON_QUEUE"
        );
        let log = view.log(&routing_topic(user));
        assert_eq!(log.len(), 2, "{log:#?}");
        assert!(log[0].snapshot && !log[1].snapshot);
        assert_eq!(log[0].body["routingStatus"]["status"], "IDLE");
        assert_eq!(log[0].body["id"], json!(user));
    }
    // ceil(20 / 50) + ceil(20 / 100) requests.
    assert_eq!(emu.state_requests().len(), 2);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn user_supplied_resource_is_called_in_batches_and_its_snapshots_delivered() {
    let emu = emulator();
    let users = users_in_state(&emu, 25, "AVAILABLE", None);
    // A custom topic read through the users listing, 10 users per request.
    let resource = StateResource::bulk(
        "v2.users.*.conversationsummary",
        10,
        |topics: &[Topic]| {
            let ids: Vec<String> = topics
                .iter()
                .map(|t| format!("id={}", t.as_str().split('.').nth(2).unwrap()))
                .collect();
            format!("/api/v2/users?{}&pageSize=10", ids.join("&"))
        },
        |_topics: &[Topic], answer: Value| {
            let list = answer["entities"].as_array().ok_or("no entities")?;
            Ok(list
                .iter()
                .map(|user| {
                    let id = user["id"].as_str().unwrap_or_default();
                    StateSnapshot::new(
                        format!("v2.users.{id}.conversationsummary"),
                        json!({"userId": id, "name": user["name"], "from": "custom"}),
                    )
                })
                .collect())
        },
    )
    .unwrap();
    let client = builder(&emu).state_resource(resource).build().unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.users.*.conversationsummary");
    let topics: Vec<String> = users
        .iter()
        .map(|u| format!("v2.users.{u}.conversationsummary"))
        .collect();
    subscribe_all(&client, &topics);
    wait_sockets(&emu, 1);
    drop_all_sockets(&emu);
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::Resynced { .. })));
    assert!(wait_until(LONG, || view.snapshots() == 25));
    for (user, topic) in users.iter().zip(&topics) {
        let log = view.log(topic);
        assert_eq!(log.len(), 1);
        assert!(log[0].snapshot);
        assert_eq!(log[0].body["userId"], json!(user));
        assert_eq!(log[0].body["from"], "custom");
    }
    let requests = emu.state_requests();
    assert_eq!(
        requests.len(),
        3,
        "25 topics in batches of 10: {requests:#?}"
    );
    assert!(requests
        .iter()
        .all(|r| r.path.starts_with("/api/v2/users?id=")));
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn user_supplied_resource_with_a_bad_path_is_reported_not_requested() {
    let emu = emulator();
    let resource = StateResource::new(
        "v2.users.*.conversationsummary",
        |_topic: &Topic| "https://elsewhere.example/steal".to_owned(),
        |topic: &Topic, answer: Value| Ok(vec![StateSnapshot::new(topic.as_str(), answer)]),
    )
    .unwrap();
    let client = builder(&emu)
        .state_resource(resource)
        .snapshots(Snapshots::AfterGapsAndSubscribe)
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let topic = format!("v2.users.{}.conversationsummary", user_id(3));
    subscribe_all(&client, [topic.clone()]);
    assert!(rec.wait(LONG, |e| matches!(e, Lifecycle::ResyncFailed { .. })));
    assert!(emu.state_requests().is_empty());
    assert!(emu.requests().iter().all(|r| !r.path.contains("steal")));
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_panicking_user_resource_is_reported_and_resyncs_go_on() {
    let emu = emulator();
    let user = user_id(4);
    emu.set_user_presence(&user, "AVAILABLE");
    let resource = StateResource::new(
        "v2.users.*.conversationsummary",
        |topic: &Topic| {
            let id = topic
                .as_str()
                .split('.')
                .nth(2)
                .unwrap_or_default()
                .to_owned();
            format!("/api/v2/users?id={id}")
        },
        |_topic: &Topic, _answer: Value| -> Result<Vec<StateSnapshot>, String> {
            panic!("bug in a converter")
        },
    )
    .unwrap();
    let client = builder(&emu)
        .state_resource(resource)
        .snapshots(Snapshots::AfterGapsAndSubscribe)
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let view = View::new(&client, "v2.users.*.presence");
    let custom = format!("v2.users.{user}.conversationsummary");
    subscribe_all(&client, [custom.clone()]);
    assert!(rec.wait(LONG, |e| matches!(
        e,
        Lifecycle::ResyncFailed { error, .. } if error.to_string().contains("bug in a converter")
    )));
    // The resync thread lives on: the next subscribe gets its snapshot.
    subscribe_all(&client, [presence_topic(&user)]);
    assert!(wait_until(LONG, || view.snapshots() == 1));
    client.shutdown(Duration::from_secs(5)).unwrap();
}
