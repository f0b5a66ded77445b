//! queue.rs: the bodies of `v2.routing.queues.{id}.users` ([`QueueMember`]) and
//! `v2.analytics.queues.{id}.observations` ([`QueueObservation`]); plain data, no I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `eventBody` of `v2.routing.queues.{id}.users`: a user joined or left a queue, or their
/// membership changed.
///
/// Schema: Genesys' `QueueUserEventTopicQueueMember` (with `QueueUserEventTopicUserReference`
/// for [`UserReference`]). Every field is optional; fields not listed here are ignored.
///
/// ```
/// use genesys_notify::models::QueueMember;
///
/// let body = r#"{"id": "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f",
///                "user": {"id": "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f"},
///                "queueId": "0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "joined": true}"#;
/// let member: QueueMember = serde_json::from_str(body)?;
/// assert_eq!(member.joined, Some(true));
/// assert_eq!(member.user_id(), Some("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct QueueMember {
    /// The member's id (the user's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserReference>,
    /// The queue (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// Whether the user is joined to the queue (takes its interactions when on queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<bool>,
}

impl QueueMember {
    /// The user's id: `user.id`, else `id`.
    pub fn user_id(&self) -> Option<&str> {
        self.user
            .as_ref()
            .and_then(|user| user.id.as_deref())
            .or(self.id.as_deref())
    }
}

/// A reference to a user (`QueueUserEventTopicUserReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserReference {
    /// The user's id (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The `eventBody` of `v2.analytics.queues.{id}.observations`: the queue's current
/// observation metrics (`oWaiting`, `oInteracting`, `oOnQueueUsers`, ...), grouped by the
/// dimensions in `group` (the queue, and often the media type).
///
/// Schema: Genesys' `StatEventQueueTopicStatsNotification` (with `StatEventQueueTopicDatum`
/// for [`ObservationData`] and `StatEventQueueTopicMetric` for [`ObservationMetric`]). Every
/// field is optional; fields not listed here are ignored. Metric names and qualifiers are kept
/// as text: the service adds metrics over time. Per Genesys' analytics notifications page
/// (developer.genesys.cloud, "Analytics notifications"), the topic carries the queue's
/// aggregate metrics of the current 30-minute interval and its observations (conversations
/// waiting, members' routing statuses), and is published on change, at most once a second.
///
/// ```
/// use genesys_notify::models::QueueObservation;
///
/// let body = r#"{"group": {"queueId": "0b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "mediaType": "voice"},
///                "data": [{"interval": "2026-12-07T12:00:00.000Z/2026-12-07T12:00:00.000Z",
///                          "metrics": [{"metric": "oWaiting", "stats": {"count": 3}},
///                                      {"metric": "oInteracting", "stats": {"count": 12}}]}]}"#;
/// let observation: QueueObservation = serde_json::from_str(body)?;
/// assert_eq!(observation.dimension("mediaType"), Some("voice"));
/// assert_eq!(observation.stat("oWaiting", "count"), Some(3.0));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct QueueObservation {
    /// The dimensions the metrics are grouped by: `queueId`, `mediaType`, ... to their value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<BTreeMap<String, String>>,
    /// The metrics, per interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<ObservationData>>,
}

impl QueueObservation {
    /// The value of the grouping dimension `name` (`"queueId"`, `"mediaType"`), if present.
    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.group.as_ref()?.get(name).map(String::as_str)
    }

    /// Every metric of the body, over all its intervals.
    pub fn metrics(&self) -> impl Iterator<Item = &ObservationMetric> {
        self.data
            .iter()
            .flatten()
            .flat_map(|datum| datum.metrics.iter().flatten())
    }

    /// The statistic `stat` (`"count"`, ...) of the first metric named `metric` without a
    /// qualifier, if present.
    pub fn stat(&self, metric: &str, stat: &str) -> Option<f64> {
        self.metrics()
            .find(|m| m.metric.as_deref() == Some(metric) && m.qualifier.is_none())
            .and_then(|m| m.stats.as_ref()?.get(stat).copied())
    }
}

/// The metrics of one interval (`StatEventQueueTopicDatum`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ObservationData {
    /// The interval: two ISO-8601 instants separated by `/`, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<ObservationMetric>>,
}

/// One metric (`StatEventQueueTopicMetric`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ObservationMetric {
    /// The metric's name (`"oWaiting"`, `"oInteracting"`, `"oOnQueueUsers"`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// What the metric is split by, if it is (for `oOnQueueUsers`, a routing status such as
    /// `"IDLE"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// Its statistics (`"count"`, ...), name to value (a decimal number in the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<BTreeMap<String, f64>>,
}
