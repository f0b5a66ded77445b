//! station.rs: the body of `v2.users.{id}.station` ([`UserStations`]); plain data, no I/O.

use super::UserReference;
use serde::{Deserialize, Serialize};

/// The `eventBody` of `v2.users.{id}.station`: the station (phone) the user is associated
/// with now; absent once the user has none.
///
/// Schema: Genesys' `UserStationChangeTopicUserStations` (with
/// `UserStationChangeTopicUserStation` for [`UserStation`] and `UserStationChangeTopicUser`
/// for its user). Every field is optional; fields not listed here are ignored.
///
/// ```
/// use genesys_notify::models::UserStations;
///
/// let body = r#"{"associatedStation": {"id": "3c2b1a09-8f7e-4d6c-b5a4-93827160f5e4",
///                                      "name": "Desk 12",
///                                      "associatedUser": {"id": "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f"}}}"#;
/// let stations: UserStations = serde_json::from_str(body)?;
/// let station = stations.associated_station.as_ref().unwrap();
/// assert_eq!(station.name.as_deref(), Some("Desk 12"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserStations {
    /// The station the user is associated with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_station: Option<UserStation>,
}

/// A station (`UserStationChangeTopicUserStation`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserStation {
    /// The station's id (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The station's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The user associated with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associated_user: Option<UserReference>,
}
