//! The typed bodies of `genesys_notify::models` against real and documented payloads: each
//! type reads its topic's payloads (tests/payloads, recorded; tests/payloads/documented,
//! written from Genesys' schemas), ignores fields it does not know at every level, keeps
//! enumeration values it does not know, and round-trips: what it writes back is what it read.
//! Pure parsing, no sockets.

use genesys_notify::models::{
    CommunicationState, ConversationEvent, Direction, DisconnectType, QueueMember,
    QueueObservation, RecordingState, RoutingStatusValue, SystemPresence, UserConversationSummary,
    UserPresence, UserRoutingStatus, UserStations,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Debug;

const PRESENCE: &str = include_str!("payloads/users.presence.json");
const ROUTING: &str = include_str!("payloads/documented/users.routingstatus.json");
const SUMMARY: &str = include_str!("payloads/documented/users.conversationsummary.json");
const CONVERSATIONS: &str = include_str!("payloads/documented/users.conversations.json");
const QUEUE_CALLS: &str =
    include_str!("payloads/documented/routing.queues.conversations.calls.json");
const MEMBERS: &str = include_str!("payloads/documented/routing.queues.users.json");
const OBSERVATIONS: &str = include_str!("payloads/documented/analytics.queues.observations.json");
const STATION: &str = include_str!("payloads/documented/users.station.json");

/// The `eventBody` of a whole notification.
fn body(frame: &str) -> Value {
    let frame: Value = serde_json::from_str(frame).expect("payload is JSON");
    frame["eventBody"].clone()
}

fn parse<T: DeserializeOwned>(body: &Value) -> T {
    serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Maps, not records: their keys are data, so an unknown key there is not an unknown field.
const MAPS: [&str; 3] = ["attributes", "group", "stats"];

/// `value` with a field from the future in every record it holds, at every depth.
fn with_unknown_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, field) in map {
                let field = if MAPS.contains(&key.as_str()) {
                    field.clone()
                } else {
                    with_unknown_fields(field)
                };
                out.insert(key.clone(), field);
            }
            out.insert(
                "fieldFromTheFuture".into(),
                json!({"nested": [1, "two", {"three": null}], "flag": true}),
            );
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(with_unknown_fields).collect()),
        other => other.clone(),
    }
}

/// `value` with every scalar field of every record it holds set to `null`, as a service that
/// writes out absent fields would send it (array items and map values are data, kept).
fn with_null_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, field)| {
                    let field = match field {
                        _ if MAPS.contains(&key.as_str()) => field.clone(),
                        Value::Object(_) => with_null_fields(field),
                        Value::Array(items) => Value::Array(
                            items
                                .iter()
                                .map(|item| match item {
                                    Value::Object(_) => with_null_fields(item),
                                    other => other.clone(),
                                })
                                .collect(),
                        ),
                        _ => Value::Null,
                    };
                    (key.clone(), field)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether everything in `written` is in `read` with the same value (numbers compared as
/// numbers: `2` and `2.0` are one count).
fn written_from(written: &Value, read: &Value) -> bool {
    match (written, read) {
        (Value::Object(w), Value::Object(r)) => w
            .iter()
            .all(|(key, value)| r.get(key).is_some_and(|v| written_from(value, v))),
        (Value::Array(w), Value::Array(r)) => {
            w.len() == r.len() && w.iter().zip(r).all(|(w, r)| written_from(w, r))
        }
        (Value::Number(w), Value::Number(r)) => w.as_f64() == r.as_f64(),
        (w, r) => w == r,
    }
}

/// The checks every type passes on every payload of its topic: it reads the payload, reads it
/// the same with unknown fields everywhere, writes back only what it read (under the service's
/// names), and reads what it wrote to an equal value. Returns the parsed body.
fn check<T>(frame: &str) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + Debug + Default,
{
    let body = body(frame);
    let parsed: T = parse(&body);
    let noisy: T = parse(&with_unknown_fields(&body));
    assert_eq!(noisy, parsed, "unknown fields changed the result");
    let written = serde_json::to_value(&parsed).unwrap();
    assert!(
        written_from(&written, &body),
        "wrote what it did not read:\n{written:#}\nfrom\n{body:#}"
    );
    assert_eq!(parse::<T>(&written), parsed, "round trip");
    // Every field is optional: the service may leave any out, or send it as null.
    assert_eq!(parse::<T>(&json!({})), T::default(), "an empty body reads");
    let nulls = with_null_fields(&body);
    assert_ne!(nulls, body, "the payload has scalar fields");
    let _: T = parse(&nulls);
    let top_level_nulls: serde_json::Map<String, Value> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|key| (key.clone(), Value::Null))
        .collect();
    assert_eq!(parse::<T>(&Value::Object(top_level_nulls)), T::default());
    parsed
}

/// Sets the string at `pointer` to a value no schema lists, parses, and checks the value was
/// kept as sent and is written back unchanged.
fn check_unknown_enum_value<T>(frame: &str, pointer: &str)
where
    T: DeserializeOwned + Serialize,
{
    const NEW: &str = "A_VALUE_FROM_THE_FUTURE";
    let mut body = body(frame);
    let slot = body
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} in the payload"));
    assert!(slot.is_string(), "{pointer} is an enumeration");
    *slot = json!(NEW);
    let parsed: T = parse(&body);
    let written = serde_json::to_value(&parsed).unwrap();
    assert_eq!(written.pointer(pointer), Some(&json!(NEW)), "{pointer}");
}

#[test]
fn user_presence_reads_the_recorded_payload_and_documented_samples() {
    let presence: UserPresence = check(PRESENCE);
    assert_eq!(presence.source.as_deref(), Some("PURECLOUD"));
    assert_eq!(presence.primary, Some(true));
    assert_eq!(presence.message.as_deref(), Some(""));
    assert_eq!(presence.system_presence(), Some(&SystemPresence::Available));
    assert_eq!(
        presence.presence_definition.as_ref().unwrap().id.as_deref(),
        Some("6a3af858-942f-489d-9700-5f9bcdcdae9b")
    );
    assert_eq!(presence.modified_date, None);
    check_unknown_enum_value::<UserPresence>(PRESENCE, "/presenceDefinition/systemPresence");

    // docs/protocol.md: REST presence objects carry the display form; both forms are one value,
    // written in the event form.
    for (text, want) in [
        ("On Queue", SystemPresence::OnQueue),
        ("ON_QUEUE", SystemPresence::OnQueue),
        ("Away", SystemPresence::Away),
        ("MEAL", SystemPresence::Meal),
    ] {
        let body = json!({"presenceDefinition": {"systemPresence": text},
                          "modifiedDate": "2026-11-30T14:03:12.418Z"});
        let presence: UserPresence = parse(&body);
        assert_eq!(presence.system_presence(), Some(&want), "{text}");
        let written = serde_json::to_value(&presence).unwrap();
        assert_eq!(
            written["presenceDefinition"]["systemPresence"],
            json!(want.as_str())
        );
        assert!(!want.as_str().contains(' '), "event form");
    }
}

#[test]
fn user_routing_status_reads_its_documented_sample() {
    let routing: UserRoutingStatus = check(ROUTING);
    assert_eq!(
        routing.id.as_deref(),
        Some("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f")
    );
    assert_eq!(routing.status(), Some(&RoutingStatusValue::Interacting));
    assert_eq!(
        routing
            .routing_status
            .as_ref()
            .unwrap()
            .start_time
            .as_deref(),
        Some("2026-11-30T14:03:12.418Z")
    );
    check_unknown_enum_value::<UserRoutingStatus>(ROUTING, "/routingStatus/status");
    for (text, want) in [
        ("OFF_QUEUE", RoutingStatusValue::OffQueue),
        ("IDLE", RoutingStatusValue::Idle),
        ("NOT_RESPONDING", RoutingStatusValue::NotResponding),
        ("COMMUNICATING", RoutingStatusValue::Communicating),
    ] {
        let routing: UserRoutingStatus = parse(&json!({"routingStatus": {"status": text}}));
        assert_eq!(routing.status(), Some(&want));
    }
}

#[test]
fn user_conversation_summary_reads_its_documented_sample() {
    let summary: UserConversationSummary = check(SUMMARY);
    assert_eq!(
        summary.user_id.as_deref(),
        Some("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f")
    );
    let detail = |media: &Option<genesys_notify::models::MediaSummary>| {
        let contact_center = media.as_ref().unwrap().contact_center.as_ref().unwrap();
        (contact_center.active, contact_center.acw)
    };
    assert_eq!(detail(&summary.call), (Some(1), Some(0)));
    assert_eq!(detail(&summary.email), (Some(0), Some(1)));
    assert_eq!(detail(&summary.message), (Some(2), Some(0)));
    assert!(summary.social_expression.is_some() && summary.video.is_some());
}

#[test]
fn conversation_event_reads_the_user_topic_with_media_arrays() {
    let conversation: ConversationEvent = check(CONVERSATIONS);
    assert_eq!(
        conversation.id.as_deref(),
        Some("5f4a1ab2-6b7e-4a4b-9a3c-0c9e8b7a6d5e")
    );
    assert_eq!(conversation.max_participants, Some(10));
    assert_eq!(conversation.recording_state, Some(RecordingState::Active));
    let participants = conversation.participants();
    assert_eq!(participants.len(), 3);
    let purposes: Vec<_> = participants
        .iter()
        .map(|p| p.purpose.as_deref().unwrap())
        .collect();
    assert_eq!(purposes, ["customer", "acd", "agent"]);
    let customer = &participants[0];
    assert_eq!(
        customer.attributes.as_ref().unwrap()["orderNumber"],
        "A-1042"
    );
    let call = &customer.calls.as_ref().unwrap()[0];
    assert_eq!(call.state, Some(CommunicationState::Connected));
    assert_eq!(call.initial_state, Some(CommunicationState::Offering));
    assert_eq!(call.direction, Some(Direction::Inbound));
    assert_eq!(call.provider.as_deref(), Some("Edge"));
    let acd_call = &participants[1].calls.as_ref().unwrap()[0];
    assert_eq!(acd_call.disconnect_type, Some(DisconnectType::Transfer));
    assert_eq!(
        participants[1].end_time.as_deref(),
        Some("2026-11-30T14:03:12.377Z")
    );
    let agent = conversation
        .participant_of_user("9ED7D9F6-0C59-4360-AC54-40DD35EB9C2F")
        .expect("the agent, found ignoring case");
    assert_eq!(agent.wrapup_timeout_ms, Some(30000));
    let agent_call = &agent.calls.as_ref().unwrap()[0];
    assert_eq!(agent_call.recording_state, Some(RecordingState::Active));
    assert_eq!(agent_call.recording, Some(true));
    assert!(conversation.participant_of_user("nobody").is_none());

    for pointer in [
        "/recordingState",
        "/participants/0/calls/0/state",
        "/participants/0/calls/0/initialState",
        "/participants/0/calls/0/direction",
        "/participants/0/calls/0/recordingState",
        "/participants/1/calls/0/disconnectType",
    ] {
        check_unknown_enum_value::<ConversationEvent>(CONVERSATIONS, pointer);
    }
    // A dotted enumeration value of the schema.
    let mut with_consult = body(CONVERSATIONS);
    with_consult["participants"][1]["calls"][0]["disconnectType"] = json!("transfer.consult");
    let parsed: ConversationEvent = parse(&with_consult);
    assert_eq!(
        parsed.participants()[1].calls.as_ref().unwrap()[0].disconnect_type,
        Some(DisconnectType::TransferConsult)
    );
}

#[test]
fn conversation_event_reads_a_per_media_queue_topic_with_participant_media_state() {
    let conversation: ConversationEvent = check(QUEUE_CALLS);
    let participants = conversation.participants();
    assert_eq!(participants.len(), 2);
    assert_eq!(participants[0].state, Some(CommunicationState::Connected));
    assert_eq!(participants[0].direction, Some(Direction::Inbound));
    assert_eq!(participants[0].held, Some(false));
    assert_eq!(
        participants[0].start_time.as_deref(),
        Some("2026-11-30T14:02:50.991Z")
    );
    assert_eq!(participants[1].state, Some(CommunicationState::Alerting));
    assert!(participants[1].calls.is_none());
    assert_eq!(conversation.recording_state, Some(RecordingState::None));
    check_unknown_enum_value::<ConversationEvent>(QUEUE_CALLS, "/participants/0/state");
    check_unknown_enum_value::<ConversationEvent>(QUEUE_CALLS, "/participants/1/direction");
}

#[test]
fn queue_member_reads_its_documented_sample() {
    let member: QueueMember = check(MEMBERS);
    assert_eq!(member.joined, Some(true));
    assert_eq!(
        member.queue_id.as_deref(),
        Some("0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    );
    assert_eq!(
        member.user_id(),
        Some("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f")
    );
    let left: QueueMember = parse(&json!({"id": "u-2", "joined": false}));
    assert_eq!(left.user_id(), Some("u-2"), "falls back on id");
    assert_eq!(left.joined, Some(false));
}

#[test]
fn queue_observation_reads_its_documented_sample() {
    let observation: QueueObservation = check(OBSERVATIONS);
    assert_eq!(
        observation.dimension("queueId"),
        Some("0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    );
    assert_eq!(observation.dimension("mediaType"), Some("voice"));
    assert_eq!(observation.dimension("nothing"), None);
    assert_eq!(observation.stat("oWaiting", "count"), Some(2.0));
    assert_eq!(observation.stat("oInteracting", "count"), Some(5.0));
    assert_eq!(observation.stat("oWaiting", "max"), None);
    // Qualified metrics are not the unqualified one.
    let on_queue: Vec<_> = observation
        .metrics()
        .filter(|m| m.metric.as_deref() == Some("oOnQueueUsers"))
        .map(|m| m.qualifier.as_deref().unwrap())
        .collect();
    assert_eq!(on_queue, ["IDLE", "INTERACTING"]);
    assert_eq!(observation.stat("oOnQueueUsers", "count"), None);
    assert_eq!(observation.metrics().count(), 5);
    // A decimal statistic reads as one.
    let averaged: QueueObservation =
        parse(&json!({"data": [{"metrics": [{"metric": "oWaiting", "stats": {"avg": 1.5}}]}]}));
    assert_eq!(averaged.stat("oWaiting", "avg"), Some(1.5));
}

#[test]
fn user_stations_reads_its_documented_sample() {
    let stations: UserStations = check(STATION);
    let station = stations.associated_station.as_ref().unwrap();
    assert_eq!(
        station.id.as_deref(),
        Some("3c2b1a09-8f7e-4d6c-b5a4-93827160f5e4")
    );
    assert_eq!(station.name.as_deref(), Some("Desk 12"));
    assert_eq!(
        station.associated_user.as_ref().unwrap().id.as_deref(),
        Some("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f")
    );
    // A user without a station.
    assert_eq!(parse::<UserStations>(&json!({})).associated_station, None);
}

#[test]
fn a_body_of_the_wrong_shape_is_an_error_that_says_where() {
    let error = serde_json::from_value::<UserPresence>(json!({"primary": "yes"}))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("invalid type: string \"yes\", expected a boolean"),
        "{error}"
    );
    let error =
        serde_json::from_value::<UserRoutingStatus>(json!({"routingStatus": {"status": 3}}))
            .unwrap_err()
            .to_string();
    assert!(error.contains("RoutingStatusValue"), "{error}");
    let error = serde_json::from_value::<QueueObservation>(json!({"data": {}}))
        .unwrap_err()
        .to_string();
    assert!(error.contains("expected a sequence"), "{error}");
}
