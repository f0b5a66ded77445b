//! routing.rs: the body of `v2.users.{id}.routingStatus` ([`UserRoutingStatus`]); plain data, no
//! I/O.

use super::open_enum::open_enum;
use serde::{Deserialize, Serialize};

/// The `eventBody` of `v2.users.{id}.routingStatus`: a user's ACD routing state.
///
/// Schema: Genesys' `UserRoutingStatusUserRoutingStatus` (with
/// `UserRoutingStatusRoutingStatus` for [`RoutingStatus`]). Every field is optional; fields not
/// listed here are ignored. A resync snapshot of the topic has the same shape
/// (`{id, routingStatus {status, startTime}}`) and parses into this type too.
///
/// ```
/// use genesys_notify::models::{RoutingStatusValue, UserRoutingStatus};
///
/// let body = r#"{"id": "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f",
///                "routingStatus": {"status": "INTERACTING",
///                                  "startTime": "2026-12-07T11:58:01.123Z"}}"#;
/// let routing: UserRoutingStatus = serde_json::from_str(body)?;
/// assert_eq!(routing.status(), Some(&RoutingStatusValue::Interacting));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserRoutingStatus {
    /// The user's id (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The routing state and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_status: Option<RoutingStatus>,
    /// `errorInfo` (`UserRoutingStatusErrorInfo`), kept as JSON: the schema gives no fields
    /// this crate relies on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_info: Option<serde_json::Value>,
}

impl UserRoutingStatus {
    /// `routingStatus.status`, when present.
    pub fn status(&self) -> Option<&RoutingStatusValue> {
        self.routing_status
            .as_ref()
            .and_then(|routing| routing.status.as_ref())
    }
}

/// A routing state and since when (`UserRoutingStatusRoutingStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RoutingStatus {
    /// The routing state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RoutingStatusValue>,
    /// When the user went into this state: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
}

open_enum! {
    /// A user's routing state (`UserRoutingStatusRoutingStatus.status`).
    pub enum RoutingStatusValue {
        /// Not on queue: no ACD interactions are offered.
        OffQueue = "OFF_QUEUE",
        /// On queue and waiting for an interaction.
        Idle = "IDLE",
        /// Handling an ACD interaction.
        Interacting = "INTERACTING",
        /// Did not answer an offered interaction.
        NotResponding = "NOT_RESPONDING",
        /// Handling a non-ACD interaction while on queue.
        Communicating = "COMMUNICATING",
    }
}
