//! builtin.rs holds the built-in state resources, user presence and routing status, and the
//! converters from their REST shapes to the event shapes; it never does I/O.
//!
//! Sources (docs/protocol.md, "State resources"):
//! - presence: `GET /api/v2/users/presences/purecloud/bulk?id=a&id=b...` (at most 50 ids, the
//!   `id` parameter repeated) → `[UcUserPresence {userId, source, presenceDefinition {id,
//!   systemPresence}, message, modifiedDate, ...}]`; a user left out of the answer (deleted,
//!   or without a Genesys Cloud presence) gets no snapshot.
//! - routing status: `GET /api/v2/users?id=a&id=b...&expand=routingStatus&pageSize=100` →
//!   `{entities: [User {id, routingStatus {userId, status, startTime}}], pageCount, ...}`
//!   (`expand` is best effort, so a user left without `routingStatus` is read alone); one user:
//!   `GET /api/v2/users/{userId}/routingstatus` → `{userId, status, startTime}`.
//!
//! Event shapes: presence `{source, presenceDefinition {id, systemPresence}, primary, message,
//! modifiedDate}` with `systemPresence` in the upper-case event form (`AVAILABLE`, `ON_QUEUE`)
//! where REST answers may carry the display form (`Available`, `On Queue`); routing status
//! `{id, routingStatus {status, startTime}}`.

use super::resource::{Resource, StateSnapshot};
use crate::topic::Topic;
use serde_json::{json, Map, Value};

/// Most ids in one presence bulk read (the API's documented limit).
pub(crate) const PRESENCE_BULK_LIMIT: usize = 50;
/// Ids per users page read; the page size asked for is the same, so one page answers it.
pub(crate) const USERS_PAGE_LIMIT: usize = 100;

/// `v2.users.{id}.{suffix}` → `id` (lower-cased topics; ids are UUIDs).
fn user_id<'a>(topic: &'a str, suffix: &str) -> Option<&'a str> {
    let rest = topic.strip_prefix("v2.users.")?;
    let id = rest.strip_suffix(suffix)?.strip_suffix('.')?;
    (!id.is_empty() && !id.contains('.')).then_some(id)
}

/// The event form of a `systemPresence`: `On Queue` → `ON_QUEUE`, `Available` → `AVAILABLE`.
pub(crate) fn event_system_presence(value: &str) -> String {
    value.trim().replace([' ', '-'], "_").to_ascii_uppercase()
}

/// Whether two `systemPresence` values name the same presence, whichever form each is in.
pub fn same_system_presence(a: &str, b: &str) -> bool {
    event_system_presence(a) == event_system_presence(b)
}

/// A REST presence object (`UserPresence` or `UcUserPresence`) in the presence event shape.
pub(crate) fn presence_event_body(rest: &Value) -> Result<Value, String> {
    let object = rest.as_object().ok_or("presence is not an object")?;
    let definition = object
        .get("presenceDefinition")
        .and_then(Value::as_object)
        .ok_or("presence without presenceDefinition")?;
    let system = definition
        .get("systemPresence")
        .and_then(Value::as_str)
        .ok_or("presence without presenceDefinition.systemPresence")?;
    let mut out_definition = Map::new();
    if let Some(id) = definition.get("id") {
        out_definition.insert("id".into(), id.clone());
    }
    out_definition.insert(
        "systemPresence".into(),
        Value::String(event_system_presence(system)),
    );
    let mut out = Map::new();
    out.insert(
        "source".into(),
        object
            .get("source")
            .cloned()
            .unwrap_or_else(|| Value::String("PURECLOUD".into())),
    );
    out.insert("presenceDefinition".into(), Value::Object(out_definition));
    out.insert(
        "primary".into(),
        object.get("primary").cloned().unwrap_or(Value::Bool(true)),
    );
    out.insert(
        "message".into(),
        object
            .get("message")
            .cloned()
            .unwrap_or_else(|| Value::String(String::new())),
    );
    if let Some(modified) = object.get("modifiedDate") {
        out.insert("modifiedDate".into(), modified.clone());
    }
    Ok(Value::Object(out))
}

/// A REST routing status (`{userId, status, startTime}`) of `user` in the event shape.
pub(crate) fn routing_event_body(user: &str, rest: &Value) -> Result<Value, String> {
    let status = rest
        .get("status")
        .and_then(Value::as_str)
        .ok_or("routing status without status")?;
    let mut inner = Map::new();
    inner.insert("status".into(), Value::String(status.to_ascii_uppercase()));
    if let Some(start) = rest.get("startTime") {
        inner.insert("startTime".into(), start.clone());
    }
    Ok(json!({"id": user, "routingStatus": Value::Object(inner)}))
}

fn ids_query(topics: &[Topic], suffix: &str) -> String {
    topics
        .iter()
        .filter_map(|t| user_id(t.as_str(), suffix))
        .map(|id| format!("id={}", encode(id)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes all but RFC 3986 unreserved characters (ids are UUIDs: unchanged).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `v2.users.{id}.presence` through the presence bulk read.
pub(crate) struct PresenceResource;

impl Resource for PresenceResource {
    fn name(&self) -> &str {
        "user presence (GET /api/v2/users/presences/purecloud/bulk)"
    }

    fn serves(&self, topic: &str) -> bool {
        user_id(topic, "presence").is_some()
    }

    fn batch_limit(&self) -> usize {
        PRESENCE_BULK_LIMIT
    }

    fn path(&self, topics: &[Topic]) -> String {
        format!(
            "/api/v2/users/presences/purecloud/bulk?{}",
            ids_query(topics, "presence")
        )
    }

    fn convert(&self, topics: &[Topic], answer: Value) -> Result<Vec<StateSnapshot>, String> {
        // The answer is an array; some versions of the API wrap lists in `entities`.
        let list = match &answer {
            Value::Array(list) => list,
            Value::Object(o) => o
                .get("entities")
                .and_then(Value::as_array)
                .ok_or("presence bulk answer is neither a list nor {entities}")?,
            _ => return Err("presence bulk answer is not a list".into()),
        };
        let mut out = Vec::new();
        for item in list {
            let Some(user) = item
                .get("userId")
                .or_else(|| item.get("id"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let user = user.to_ascii_lowercase();
            if !topics
                .iter()
                .any(|t| user_id(t.as_str(), "presence") == Some(user.as_str()))
            {
                continue;
            }
            out.push(StateSnapshot::new(
                format!("v2.users.{user}.presence"),
                presence_event_body(item)?,
            ));
        }
        Ok(out)
    }
}

/// `v2.users.{id}.routingStatus` through users pages with `expand=routingStatus`.
pub(crate) struct RoutingStatusResource;

impl Resource for RoutingStatusResource {
    fn name(&self) -> &str {
        "routing status (GET /api/v2/users?expand=routingStatus)"
    }

    fn serves(&self, topic: &str) -> bool {
        user_id(topic, "routingstatus").is_some()
    }

    fn batch_limit(&self) -> usize {
        USERS_PAGE_LIMIT
    }

    fn path(&self, topics: &[Topic]) -> String {
        format!(
            "/api/v2/users?{}&expand=routingStatus&pageSize={USERS_PAGE_LIMIT}&pageNumber=1",
            ids_query(topics, "routingstatus")
        )
    }

    fn convert(&self, topics: &[Topic], answer: Value) -> Result<Vec<StateSnapshot>, String> {
        let list = answer
            .get("entities")
            .and_then(Value::as_array)
            .ok_or("users answer without entities")?;
        let mut out = Vec::new();
        for user in list {
            let Some(id) = user.get("id").and_then(Value::as_str) else {
                continue;
            };
            let id = id.to_ascii_lowercase();
            if !topics
                .iter()
                .any(|t| user_id(t.as_str(), "routingstatus") == Some(id.as_str()))
            {
                continue;
            }
            // `expand` is best effort: a user without it is read alone (fallback).
            let Some(status) = user.get("routingStatus") else {
                continue;
            };
            out.push(StateSnapshot::new(
                format!("v2.users.{id}.routingStatus"),
                routing_event_body(&id, status)?,
            ));
        }
        Ok(out)
    }

    fn incomplete(&self, answer: &Value) -> Vec<String> {
        answer
            .get("entities")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter(|user| user.get("routingStatus").is_none())
                    .filter_map(|user| user.get("id").and_then(Value::as_str))
                    .map(|id| format!("v2.users.{}.routingstatus", id.to_ascii_lowercase()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn fallback_path(&self, topic: &Topic) -> Option<String> {
        let id = user_id(topic.as_str(), "routingstatus")?;
        Some(format!("/api/v2/users/{}/routingstatus", encode(id)))
    }

    fn convert_fallback(&self, topic: &Topic, answer: Value) -> Result<StateSnapshot, String> {
        let id = user_id(topic.as_str(), "routingstatus").ok_or("not a routing status topic")?;
        Ok(StateSnapshot::new(
            format!("v2.users.{id}.routingStatus"),
            routing_event_body(id, &answer)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Topic {
        Topic::parse(name).unwrap()
    }

    const A: &str = "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f";
    const B: &str = "1b2c3d4e-0000-4000-8000-000000000002";

    #[test]
    fn system_presence_display_form_becomes_the_event_form() {
        assert_eq!(event_system_presence("On Queue"), "ON_QUEUE");
        assert_eq!(event_system_presence("Available"), "AVAILABLE");
        assert_eq!(event_system_presence("ON_QUEUE"), "ON_QUEUE");
        assert!(same_system_presence("On Queue", "ON_QUEUE"));
        assert!(!same_system_presence("Away", "ON_QUEUE"));
    }

    #[test]
    fn presence_bulk_path_repeats_id_and_answer_converts_to_event_shape() {
        let topics = [
            topic(&format!("v2.users.{A}.presence")),
            topic(&format!("v2.users.{B}.presence")),
        ];
        assert_eq!(
            PresenceResource.path(&topics),
            format!("/api/v2/users/presences/purecloud/bulk?id={A}&id={B}")
        );
        let answer = json!([
            {"id": "p1", "userId": A, "source": "PURECLOUD", "primary": true,
             "presenceDefinition": {"id": "d-1", "systemPresence": "On Queue"},
             "message": "busy day", "modifiedDate": "2026-12-01T10:00:00.000Z"},
            {"userId": "someone-else", "presenceDefinition": {"systemPresence": "Away"}}
        ]);
        let out = PresenceResource.convert(&topics, answer).unwrap();
        assert_eq!(out.len(), 1, "only users of the batch: {out:?}");
        assert_eq!(out[0].topic, format!("v2.users.{A}.presence"));
        assert_eq!(
            out[0].event_body,
            json!({"source": "PURECLOUD", "primary": true, "message": "busy day",
                   "presenceDefinition": {"id": "d-1", "systemPresence": "ON_QUEUE"},
                   "modifiedDate": "2026-12-01T10:00:00.000Z"})
        );
    }

    #[test]
    fn presence_without_definition_is_an_error() {
        let topics = [topic(&format!("v2.users.{A}.presence"))];
        let err = PresenceResource
            .convert(&topics, json!([{"userId": A}]))
            .unwrap_err();
        assert!(err.contains("presenceDefinition"), "{err}");
        assert!(PresenceResource.convert(&topics, json!("x")).is_err());
    }

    #[test]
    fn routing_users_page_converts_and_leaves_out_users_without_expand() {
        let topics = [
            topic(&format!("v2.users.{A}.routingStatus")),
            topic(&format!("v2.users.{B}.routingStatus")),
        ];
        let path = RoutingStatusResource.path(&topics);
        assert_eq!(
            path,
            format!("/api/v2/users?id={A}&id={B}&expand=routingStatus&pageSize=100&pageNumber=1")
        );
        let answer = json!({"entities": [
            {"id": A, "routingStatus": {"userId": A, "status": "INTERACTING",
                                        "startTime": "2026-12-01T10:00:00.000Z"}},
            {"id": B}
        ], "pageCount": 1});
        let out = RoutingStatusResource.convert(&topics, answer).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, format!("v2.users.{A}.routingStatus"));
        assert_eq!(
            out[0].event_body,
            json!({"id": A, "routingStatus": {"status": "INTERACTING",
                                              "startTime": "2026-12-01T10:00:00.000Z"}})
        );
        assert_eq!(
            RoutingStatusResource.incomplete(&json!({"entities": [
                {"id": A, "routingStatus": {"status": "IDLE"}}, {"id": B}]})),
            vec![format!("v2.users.{B}.routingstatus")]
        );
        assert_eq!(
            RoutingStatusResource.fallback_path(&topics[1]).unwrap(),
            format!("/api/v2/users/{B}/routingstatus")
        );
        let single = RoutingStatusResource
            .convert_fallback(
                &topics[1],
                json!({"userId": B, "status": "OFF_QUEUE", "startTime": "x"}),
            )
            .unwrap();
        assert_eq!(
            single.event_body,
            json!({"id": B, "routingStatus": {"status": "OFF_QUEUE", "startTime": "x"}})
        );
    }

    #[test]
    fn resources_serve_only_their_topics() {
        assert!(PresenceResource.serves(&format!("v2.users.{A}.presence")));
        assert!(!PresenceResource.serves(&format!("v2.users.{A}.routingstatus")));
        assert!(!PresenceResource.serves("v2.users.presence"));
        assert!(RoutingStatusResource.serves(&format!("v2.users.{A}.routingstatus")));
        assert!(!RoutingStatusResource.serves(&format!("v2.users.{A}.conversations")));
        assert!(!RoutingStatusResource.serves("v2.routing.queues.q.routingstatus"));
    }
}
