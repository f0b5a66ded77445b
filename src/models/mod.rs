//! Typed `eventBody`s and topic names for the topics people use most.
//!
//! models/ holds plain data: serde types that follow Genesys' published notification schemas
//! (the Platform SDKs' generated notification models; each type names its schema), and
//! builders of the topic names ([`topics`]). It does no I/O;
//! [`Client::on_typed`](crate::Client::on_typed) (in `models/typed.rs`) delivers events with
//! their bodies parsed into these types.
//!
//! | topic | body type | schema |
//! |---|---|---|
//! | `v2.users.{id}.presence` | [`UserPresence`] | `PresenceEventUserPresence` |
//! | `v2.users.{id}.routingStatus` | [`UserRoutingStatus`] | `UserRoutingStatusUserRoutingStatus` |
//! | `v2.users.{id}.conversationsummary` | [`UserConversationSummary`] | `UserConversationsEventUserConversationSummary` |
//! | `v2.users.{id}.conversations[.{media}]` | [`ConversationEvent`] | `ConversationEventTopicConversation` |
//! | `v2.routing.queues.{id}.conversations[.{media}]` | [`ConversationEvent`] | `QueueConversationEventTopicConversation` |
//! | `v2.routing.queues.{id}.users` | [`QueueMember`] | `QueueUserEventTopicQueueMember` |
//! | `v2.analytics.queues.{id}.observations` | [`QueueObservation`] | `StatEventQueueTopicStatsNotification` |
//! | `v2.users.{id}.station` | [`UserStations`] | `UserStationChangeTopicUserStations` |
//!
//! Three rules hold for every type, so that a change on the service never breaks a listener:
//! every field is an `Option` (the service leaves fields out freely); fields the type does
//! not list are ignored (read them from [`Event::body_value`](crate::Event::body_value)); and
//! every enumeration has an `Other(String)` variant that keeps a value this crate does not know
//! yet, and writes it back unchanged. Types and enumerations are `#[non_exhaustive]`: new
//! fields and values can be added without breaking your code. Timestamps are kept as the
//! ISO-8601 text the service sent. Every type serialises back to the service's field names.
//!
//! The resync snapshots of presence and routing status
//! ([`Event::is_snapshot`](crate::Event::is_snapshot)) have the event shape and parse into
//! [`UserPresence`] and [`UserRoutingStatus`] like live events.
//!
//! A typed listener for a topic built by [`topics`]:
//! ```no_run
//! use genesys_notify::models::{topics, SystemPresence, UserPresence};
//! use genesys_notify::{Client, Event, Region};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .region(Region::UsEast1)
//!     .access_token("token")
//!     .build()?;
//! let presence = topics::user_presence("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f")?;
//! let _guard = client.on_typed(presence.pattern_any(), |event: &Event, body: &UserPresence| {
//!     if body.system_presence() == Some(&SystemPresence::OnQueue) {
//!         println!("{} is on queue", event.topic());
//!     }
//! })?;
//! let _report = client.subscribe([&presence])?;
//! # Ok(())
//! # }
//! ```
//! Each type's own documentation has an example of its body.

mod open_enum;

mod conversation;
mod conversation_summary;
mod presence;
mod queue;
mod routing;
mod station;
pub mod topics;

pub use conversation::{
    Communication, CommunicationState, ConversationEvent, Direction, DisconnectType, Participant,
    RecordingState, Wrapup,
};
pub use conversation_summary::{MediaSummary, MediaSummaryDetail, UserConversationSummary};
pub use presence::{PresenceDefinition, SystemPresence, UserPresence};
pub use queue::{ObservationData, ObservationMetric, QueueMember, QueueObservation, UserReference};
pub use routing::{RoutingStatus, RoutingStatusValue, UserRoutingStatus};
pub use station::{UserStation, UserStations};
pub use topics::{CombinedUserTopic, ConversationMedia, TypedTopic, UserTopic};
