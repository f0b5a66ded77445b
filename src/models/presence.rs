//! presence.rs: the body of `v2.users.{id}.presence` ([`UserPresence`]); plain data, no I/O.

use super::open_enum::open_enum;
use serde::{Deserialize, Serialize};

/// The `eventBody` of `v2.users.{id}.presence`: a user's presence as set from one source.
///
/// Schema: Genesys' `PresenceEventUserPresence` (with `PresenceEventOrganizationPresence` for
/// [`PresenceDefinition`]), as listed by the Platform SDKs' notification models. Every field is
/// optional, because the service may leave any out; fields not listed here are ignored. A
/// resync snapshot of the topic ([`Event::is_snapshot`](crate::Event::is_snapshot)) has the
/// same shape and parses into this type too.
///
/// ```
/// use genesys_notify::models::{SystemPresence, UserPresence};
///
/// let body = r#"{"source": "PURECLOUD", "primary": true, "message": "",
///                "presenceDefinition": {"id": "6a3af858-942f-489d-9700-5f9bcdcdae9b",
///                                       "systemPresence": "AVAILABLE"}}"#;
/// let presence: UserPresence = serde_json::from_str(body)?;
/// assert_eq!(presence.system_presence(), Some(&SystemPresence::Available));
/// assert_eq!(presence.source.as_deref(), Some("PURECLOUD"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserPresence {
    /// Where the presence was set: `"PURECLOUD"` for Genesys Cloud itself, or the id of an
    /// integration's presence source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The presence: its definition id and system presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_definition: Option<PresenceDefinition>,
    /// Whether this source is the user's primary presence source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    /// The user's status message (often empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the presence changed: ISO-8601 text as sent (`2026-12-07T12:00:00.000Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_date: Option<String>,
    /// A presence scheduled to follow this one, when the service sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub future_presence_definition: Option<PresenceDefinition>,
}

impl UserPresence {
    /// `presenceDefinition.systemPresence`, when present.
    pub fn system_presence(&self) -> Option<&SystemPresence> {
        self.presence_definition
            .as_ref()
            .and_then(|definition| definition.system_presence.as_ref())
    }
}

/// A presence definition as notifications carry it (`PresenceEventOrganizationPresence`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PresenceDefinition {
    /// The organisation's presence definition id (a UUID); organisations may define several
    /// presences (for example "Lunch") over one system presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The system presence the definition stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_presence: Option<SystemPresence>,
}

open_enum! {
    /// A system presence. Notifications carry the upper-case form (`"ON_QUEUE"`), REST
    /// presence objects the display form (`"On Queue"`, docs/protocol.md "State resources");
    /// both parse to the same variant, and it is written in the notification form.
    pub enum SystemPresence {
        /// Available.
        Available = "AVAILABLE" | "Available",
        /// Away.
        Away = "AWAY" | "Away",
        /// Busy.
        Busy = "BUSY" | "Busy",
        /// Offline.
        Offline = "OFFLINE" | "Offline",
        /// Idle.
        Idle = "IDLE" | "Idle",
        /// On queue: the user takes ACD interactions.
        OnQueue = "ON_QUEUE" | "On Queue",
        /// Meal.
        Meal = "MEAL" | "Meal",
        /// Training.
        Training = "TRAINING" | "Training",
        /// Meeting.
        Meeting = "MEETING" | "Meeting",
        /// Break.
        Break = "BREAK" | "Break",
    }
}
