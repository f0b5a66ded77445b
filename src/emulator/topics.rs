//! Topic names as the emulated service treats them: validation (the 400s), expansion of combined
//! topics, deduplication, and the entities of a subscription answer. Pure functions: no state,
//! no I/O.

use std::collections::HashSet;

use serde_json::Value;

use super::state::ApiError;

/// Longest topic accepted, in characters (a combined topic counts as one).
const MAX_TOPIC_CHARS: usize = 200;

/// The individual lower-cased topic names a subscription stands for:
/// `v2.users.X?presence&routingStatus` → `v2.users.x.presence`, `v2.users.x.routingstatus`.
/// Empty for a malformed combined topic.
pub(crate) fn expand_topic(topic: &str) -> Vec<String> {
    let lower = topic.to_lowercase();
    match lower.split_once('?') {
        None => vec![lower],
        Some((prefix, parts)) => {
            if prefix.is_empty() || prefix.ends_with('.') {
                return Vec::new();
            }
            let names: Vec<String> = parts.split('&').map(|p| format!("{prefix}.{p}")).collect();
            if parts.split('&').any(str::is_empty) {
                Vec::new()
            } else {
                names
            }
        }
    }
}

/// Why a topic cannot be subscribed at all (400), if so.
fn topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() {
        return Some("Topic name is empty".into());
    }
    if topic.chars().any(char::is_whitespace) {
        return Some(format!("Topic name contains whitespace: {topic:?}"));
    }
    if topic.chars().count() > MAX_TOPIC_CHARS {
        return Some(format!(
            "Topic name is longer than {MAX_TOPIC_CHARS} characters"
        ));
    }
    let lower = topic.to_lowercase();
    if lower == "channel.metadata" || lower.starts_with("v2.system.") {
        return Some(format!(
            "Topic {topic} is sent without subscription and cannot be subscribed"
        ));
    }
    if expand_topic(topic).is_empty() {
        return Some(format!("Malformed combined topic: {topic}"));
    }
    None
}

/// `{"entities": [...]}`: permitted topics, then rejected ones.
/// One entity of a subscription answer: permitted, or rejected with the permissions missing.
pub(super) fn entity(topic: &str, missing: Option<&[String]>) -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Entity<'a> {
        id: &'a str,
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        rejection_reason: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        missing_permissions: Option<&'a [String]>,
    }
    let entity = Entity {
        id: topic,
        state: if missing.is_some() {
            "Rejected"
        } else {
            "Permitted"
        },
        rejection_reason: missing
            .is_some()
            .then_some("The client lacks permissions required by this topic"),
        missing_permissions: missing,
    };
    serde_json::to_string(&entity).expect("plain strings serialise")
}

/// `base` followed by the topics of `add` not already in it (case-insensitive).
pub(super) fn dedup(mut base: Vec<String>, add: Vec<String>) -> Vec<String> {
    let mut seen: HashSet<String> = base.iter().map(|t| t.to_lowercase()).collect();
    for t in add {
        if seen.insert(t.to_lowercase()) {
            base.push(t);
        }
    }
    base
}

/// Parses `[{"id": topic}, ...]`, rejecting bad topics with 400; duplicates removed.
pub(super) fn parse_topics(body: &str) -> Result<Vec<String>, ApiError> {
    let bad = |m: String| ApiError::new(400, "bad.request", m);
    let items: Vec<Value> = serde_json::from_str(if body.trim().is_empty() { "[]" } else { body })
        .map_err(|e| bad(format!("Request body is not a JSON array of topics: {e}")))?;
    let mut topics = Vec::with_capacity(items.len());
    for item in items {
        let Some(topic) = item.get("id").and_then(Value::as_str) else {
            return Err(bad(format!("Expected {{\"id\": \"<topic>\"}}, got {item}")));
        };
        if let Some(problem) = topic_problem(topic) {
            return Err(bad(problem));
        }
        topics.push(topic.to_owned());
    }
    Ok(dedup(Vec::new(), topics))
}
