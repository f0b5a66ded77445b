//! `Client::on_typed` end to end over real sockets against the emulator: typed bodies arrive
//! parsed, a body that does not fit is reported once per topic and counted while untyped
//! listeners still get it, and the resync snapshots of presence and routing status parse into
//! the same types as live events (issue 21).
mod util;

use genesys_notify::models::{
    topics, RoutingStatusValue, SystemPresence, UserPresence, UserRoutingStatus,
};
use genesys_notify::{Error, Event, Lifecycle, Snapshots};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use util::*;

const LONG: Duration = Duration::from_secs(30);

/// What one listener saw: `(topic, value)` in arrival order.
type Seen<T> = Arc<Mutex<Vec<(String, T)>>>;

fn seen<T>() -> Seen<T> {
    Arc::new(Mutex::new(Vec::new()))
}

#[test]
fn typed_bodies_arrive_parsed_and_a_misfit_is_reported_once_per_topic_while_untyped_listeners_get_it(
) {
    let emu = emulator();
    let client = builder(&emu).build().unwrap();
    let rec = Recorder::new(&client);
    let users = [user_id(1), user_id(2)];
    let presence: Vec<_> = users
        .iter()
        .map(|u| topics::user_presence(u).unwrap())
        .collect();

    // Two typed listeners of one type for every user (they share one parse per event), one
    // for the second user's topic alone (its type comes from the topic), and an untyped one.
    let typed_a: Seen<Option<SystemPresence>> = seen();
    let typed_b: Seen<Option<SystemPresence>> = seen();
    let typed_user_2: Seen<Option<SystemPresence>> = seen();
    let untyped: Seen<String> = seen();
    let mut guards = Vec::new();
    {
        let typed = typed_user_2.clone();
        guards.push(
            client
                .on_topic(&presence[1], move |event, body| {
                    typed
                        .lock()
                        .push((event.topic().to_owned(), body.system_presence().cloned()));
                })
                .unwrap(),
        );
    }
    for typed in [&typed_a, &typed_b] {
        let typed = typed.clone();
        guards.push(
            client
                .on_typed(
                    presence[0].pattern_any(),
                    move |event: &Event, body: &UserPresence| {
                        typed
                            .lock()
                            .push((event.topic().to_owned(), body.system_presence().cloned()));
                    },
                )
                .unwrap(),
        );
    }
    {
        let untyped = untyped.clone();
        guards.push(
            client
                .on("v2.users.*.presence", move |event: &Event| {
                    untyped
                        .lock()
                        .push((event.topic().to_owned(), event.body_json().to_owned()));
                })
                .unwrap(),
        );
    }
    // The patterns `on` refuses, `on_typed` refuses the same way.
    for refused in ["channel.metadata", "v2.users..presence"] {
        let result = client.on_typed(refused, |_: &Event, _: &UserPresence| {});
        assert!(
            matches!(result, Err(Error::Topic { ref name, .. }) if name == refused),
            "{result:?}"
        );
    }
    let report = client.subscribe(&presence).unwrap();
    assert_eq!(report.permitted.len(), 2);
    wait_sockets(&emu, 1);

    let good = |system: &str| {
        json!({"source": "PURECLOUD", "presenceDefinition": {"id": "d-1", "systemPresence": system},
               "primary": true, "message": ""})
    };
    // `presenceDefinition` must be an object: these bodies do not fit `UserPresence`.
    let misfit = json!({"source": "PURECLOUD", "presenceDefinition": "AVAILABLE"});
    let (t0, t1) = (presence[0].topic().as_str(), presence[1].topic().as_str());
    emu.publish(t0, good("AVAILABLE"));
    emu.publish(t0, misfit.clone());
    emu.publish(t0, misfit.clone());
    emu.publish(t1, misfit.clone());
    emu.publish(t0, good("ON_QUEUE"));
    emu.publish(t1, good("A_PRESENCE_FROM_THE_FUTURE"));

    // Each topic's events arrive in order: once the last good one is in, the misfits before it
    // were handled.
    let want = vec![
        (t0.to_owned(), Some(SystemPresence::Available)),
        (t0.to_owned(), Some(SystemPresence::OnQueue)),
    ];
    let want_t1 = vec![(
        t1.to_owned(),
        Some(SystemPresence::Other("A_PRESENCE_FROM_THE_FUTURE".into())),
    )];
    for typed in [&typed_a, &typed_b] {
        assert!(
            wait_until(LONG, || typed.lock().len() == 3),
            "{:?}",
            typed.lock()
        );
        let got = typed.lock().clone();
        let of =
            |topic: &str| -> Vec<_> { got.iter().filter(|(t, _)| t == topic).cloned().collect() };
        assert_eq!(of(t0), want, "the misfits skipped the typed callback");
        assert_eq!(of(t1), want_t1);
    }
    assert!(wait_until(LONG, || typed_user_2.lock().len() == 1));
    assert_eq!(*typed_user_2.lock(), want_t1);
    // The untyped listener got every event, the misfits included, unchanged.
    assert!(wait_until(LONG, || untyped.lock().len() == 6));
    let raw = untyped.lock().clone();
    let misfits: Vec<_> = raw
        .iter()
        .filter(|(_, body)| serde_json::from_str::<serde_json::Value>(body).unwrap() == misfit)
        .map(|(topic, _)| topic.as_str())
        .collect();
    assert_eq!(misfits.iter().filter(|t| **t == t0).count(), 2);
    assert_eq!(misfits.iter().filter(|t| **t == t1).count(), 1);

    // A lifecycle event queued after the reports: once it is in, every report is.
    let again = client.subscribe([&presence[0]]).unwrap();
    assert_eq!(again.duplicates.len(), 1);
    assert!(rec.wait(LONG, |e| matches!(
        e,
        Lifecycle::DuplicateSubscription { .. }
    )));
    let reports: Vec<_> = rec
        .snapshot()
        .into_iter()
        .filter_map(|event| match event {
            Lifecycle::BodyMismatch {
                topic,
                body_type,
                error,
                ..
            } => Some((topic, body_type, error)),
            _ => None,
        })
        .collect();
    let mut topics_reported: Vec<_> = reports.iter().map(|(topic, ..)| topic.as_str()).collect();
    topics_reported.sort();
    let mut expected = vec![t0, t1];
    expected.sort();
    assert_eq!(topics_reported, expected, "once per topic: {reports:#?}");
    for (_, body_type, error) in &reports {
        assert!(body_type.ends_with("UserPresence"), "{body_type}");
        assert!(
            error.contains("invalid type: string \"AVAILABLE\""),
            "the serde error: {error}"
        );
    }
    let line = rec
        .snapshot()
        .iter()
        .find(|e| e.name() == "body_mismatch")
        .unwrap()
        .to_string();
    assert!(
        line.contains("does not fit") && !line.contains('\n'),
        "{line}"
    );

    // Counted per listener and event: 3 misfit events for the 2 listeners of every user, and
    // the second user's misfit for its own listener (reported once all the same). Nothing was
    // dropped or left unrouted: the misfits were delivered (to the untyped listener).
    let health = client.health();
    assert_eq!(health.body_mismatches(), 7);
    assert_eq!(
        health
            .channels()
            .iter()
            .map(|c| c.body_mismatches)
            .sum::<u64>(),
        7
    );
    assert_eq!(health.delivered(), 6);
    assert_eq!(health.dropped() + health.unrouted(), 0);
    drop(guards);
    client.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn presence_and_routing_status_snapshots_parse_into_the_event_types() {
    let emu = emulator();
    let user = user_id(7);
    // The REST answer gives the display form; the snapshot carries the event form.
    emu.set_user_presence(&user, "On Queue");
    emu.set_user_routing_status(&user, "IDLE");
    let client = builder(&emu)
        .snapshots(Snapshots::AfterGapsAndSubscribe)
        .build()
        .unwrap();
    let rec = Recorder::new(&client);
    let combined = topics::user_combined(
        &user,
        &[
            topics::UserTopic::Presence,
            topics::UserTopic::RoutingStatus,
        ],
    )
    .unwrap();

    let presences: Seen<(bool, UserPresence)> = seen();
    let statuses: Seen<(bool, UserRoutingStatus)> = seen();
    let p = presences.clone();
    let _presence = client
        .on_typed(
            combined.part_pattern(topics::UserTopic::Presence).unwrap(),
            move |event: &Event, body: &UserPresence| {
                p.lock().push((
                    event.topic().to_owned(),
                    (event.is_snapshot(), body.clone()),
                ));
            },
        )
        .unwrap();
    let s = statuses.clone();
    let _routing = client
        .on_typed(
            combined
                .part_pattern(topics::UserTopic::RoutingStatus)
                .unwrap(),
            move |event: &Event, body: &UserRoutingStatus| {
                s.lock().push((
                    event.topic().to_owned(),
                    (event.is_snapshot(), body.clone()),
                ));
            },
        )
        .unwrap();
    let report = client.subscribe([&combined]).unwrap();
    assert_eq!(report.permitted.len(), 1);

    assert!(wait_until(LONG, || !presences.lock().is_empty()
        && !statuses.lock().is_empty()));
    let (_, (snapshot, presence)) = presences.lock()[0].clone();
    assert!(snapshot, "the first presence is the snapshot");
    assert_eq!(presence.system_presence(), Some(&SystemPresence::OnQueue));
    assert_eq!(presence.source.as_deref(), Some("PURECLOUD"));
    let (_, (snapshot, routing)) = statuses.lock()[0].clone();
    assert!(snapshot, "the first routing status is the snapshot");
    assert_eq!(routing.status(), Some(&RoutingStatusValue::Idle));
    assert_eq!(routing.id.as_deref(), Some(user.as_str()));
    assert!(routing
        .routing_status
        .as_ref()
        .and_then(|r| r.start_time.as_ref())
        .is_some());

    // A live event after the snapshot reads the same way.
    wait_sockets(&emu, 1);
    emu.publish(
        &format!("v2.users.{user}.routingStatus"),
        emu.set_user_routing_status(&user, "INTERACTING"),
    );
    assert!(wait_until(LONG, || statuses.lock().len() == 2));
    let (_, (snapshot, routing)) = statuses.lock()[1].clone();
    assert!(!snapshot);
    assert_eq!(routing.status(), Some(&RoutingStatusValue::Interacting));

    assert_eq!(client.health().body_mismatches(), 0);
    assert_eq!(rec.count(|e| e.name() == "body_mismatch"), 0);
    client.shutdown(Duration::from_secs(5)).unwrap();
}
