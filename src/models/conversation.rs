//! conversation.rs: the body of the conversation topics ([`ConversationEvent`]); plain data, no
//! I/O.

use super::open_enum::open_enum;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `eventBody` of `v2.users.{id}.conversations` and `v2.routing.queues.{id}.conversations`
/// (and their per-media topics, `...conversations.calls`, `.chats`, ...): a conversation and
/// its participants, sent whole on every change.
///
/// Schema: Genesys' `ConversationEventTopicConversation` (user topic) and
/// `QueueConversationEventTopicConversation` (queue topic), which list the same fields, with
/// `ConversationEventTopicParticipant` for [`Participant`] and `ConversationEventTopicCall`
/// (and its sibling media types) for [`Communication`]. The per-media topics
/// (`ConversationCallEventTopicCallConversation`, ...) give each participant its media state
/// directly (`state`, `direction`, `held`, ...; `ConversationCallEventTopicCallMediaParticipant`)
/// instead of in `calls`, `chats`, ...: [`Participant`] has both, so one type reads every
/// conversation topic. Conversation bodies are large and change often: every field is
/// optional, and fields not listed here are ignored (read them with
/// [`Event::body_value`](crate::Event::body_value)).
///
/// ```
/// use genesys_notify::models::{CommunicationState, ConversationEvent};
///
/// let body = r#"{"id": "5f4a1ab2-6b7e-4a4b-9a3c-0c9e8b7a6d5e", "recordingState": "none",
///                "participants": [
///                  {"id": "p-1", "purpose": "customer", "address": "tel:+15551234567",
///                   "calls": [{"id": "c-1", "state": "connected", "direction": "inbound"}]},
///                  {"id": "p-2", "purpose": "agent", "userId": "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f",
///                   "calls": [{"id": "c-2", "state": "alerting", "direction": "inbound"}]}]}"#;
/// let conversation: ConversationEvent = serde_json::from_str(body)?;
/// let agent = conversation.participant_of_user("9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f");
/// let call = agent.and_then(|p| p.calls.as_ref()).and_then(|calls| calls.first());
/// assert_eq!(call.and_then(|c| c.state.as_ref()), Some(&CommunicationState::Alerting));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ConversationEvent {
    /// The conversation id (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The conversation's name (per-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The most participants the conversation may have (count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<i64>,
    /// Everyone who is or was in the conversation, in the service's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<Participant>>,
    /// Whether the conversation is being recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_state: Option<RecordingState>,
    /// The conversation's address (for a call, the number dialled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// An external tag set by an integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_tag: Option<String>,
    /// The utilisation label's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_label_id: Option<String>,
    /// Whether recording is in secure pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_pause: Option<bool>,
    /// When the conversation ends for inactivity: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactivity_timeout: Option<String>,
}

impl ConversationEvent {
    /// The participants (none when the field is absent).
    pub fn participants(&self) -> &[Participant] {
        self.participants.as_deref().unwrap_or_default()
    }

    /// The last participant representing `user_id` (compared ignoring case): a user who left
    /// and came back has one participant per visit, the current one last.
    pub fn participant_of_user(&self, user_id: &str) -> Option<&Participant> {
        self.participants().iter().rev().find(|participant| {
            participant
                .user_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(user_id))
        })
    }
}

/// One participant of a conversation (`ConversationEventTopicParticipant`, and the media
/// participant fields of the per-media topics).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Participant {
    /// The participant id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the participant is: a well-known string such as `"customer"`, `"agent"`,
    /// `"user"`, `"acd"`, `"ivr"`, `"external"`, `"voicemail"` (kept as text: the schema gives
    /// no closed list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The participant's address (for a call, the ANI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The user this participant represents, if any (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The queue the conversation came in on, if any (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// The group the participant represents, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The team the participant was a member of when added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The external contact this participant represents, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_contact_id: Option<String>,
    /// The external organisation this participant represents, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_organization_id: Option<String>,
    /// When the participant was connected: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_time: Option<String>,
    /// When the participant disconnected: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// For a consult transfer, the participant being transferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consult_participant_id: Option<String>,
    /// For a monitor, the participant monitored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitored_participant_id: Option<String>,
    /// For a coach, the participant coached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coached_participant_id: Option<String>,
    /// Whether the participant must enter a wrap-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_required: Option<bool>,
    /// Whether a wrap-up is expected once the conversation connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_expected: Option<bool>,
    /// How the agent is prompted for a wrap-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_prompt: Option<String>,
    /// How long a timed after-call work session lasts, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_timeout_ms: Option<i64>,
    /// The wrap-up entered, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup: Option<Wrapup>,
    /// When after-call work started: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_acw_time: Option<String>,
    /// When after-call work ended: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_acw_time: Option<String>,
    /// How long the agent has to answer before being marked not responding, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting_timeout_ms: Option<i64>,
    /// The roles this participant's media has had (`"monitor"`, `"coach"`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_roles: Option<Vec<String>>,
    /// The participant's attributes (participant data), name to value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    /// Per-media topics: the participant's media state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CommunicationState>,
    /// Per-media topics: whether the communication is inbound or outbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Per-media topics: what ended the communication, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_type: Option<DisconnectType>,
    /// Per-media topics: whether the participant is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    /// Per-media topics: when the participant's communication started, ISO-8601 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Calls of this participant (all-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<Vec<Communication>>,
    /// Callbacks of this participant (all-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callbacks: Option<Vec<Communication>>,
    /// Chats of this participant (all-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chats: Option<Vec<Communication>>,
    /// Co-browse sessions of this participant (all-media topics; the wire name is
    /// `cobrowsesessions`).
    #[serde(
        default,
        rename = "cobrowsesessions",
        skip_serializing_if = "Option::is_none"
    )]
    pub cobrowse_sessions: Option<Vec<Communication>>,
    /// Emails of this participant (all-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<Communication>>,
    /// Messages of this participant (all-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Communication>>,
    /// Screen shares of this participant (all-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshares: Option<Vec<Communication>>,
    /// Social expressions of this participant (all-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub social_expressions: Option<Vec<Communication>>,
    /// Videos of this participant (all-media topics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub videos: Option<Vec<Communication>>,
}

/// One communication of a participant: a call, chat, email, ... (the fields
/// `ConversationEventTopicCall`, `...Callback`, `...Chat`, `...Email`, `...Message` and their
/// siblings share; the fields of one media type only are ignored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Communication {
    /// The communication id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CommunicationState>,
    /// The state it started in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<CommunicationState>,
    /// Inbound or outbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Whether it is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    /// Calls: whether it is muted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted: Option<bool>,
    /// Calls: whether it is held with hold music.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confined: Option<bool>,
    /// Whether it is being recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<bool>,
    /// Its recording state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_state: Option<RecordingState>,
    /// What ended it; absent until it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_type: Option<DisconnectType>,
    /// When it was last put on hold, if held: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_hold_time: Option<String>,
    /// When it was connected: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_time: Option<String>,
    /// When it disconnected: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_time: Option<String>,
    /// The source provider (`"Edge"`, an integration, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The matching leg of this communication, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// The script to show the agent (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_id: Option<String>,
    /// Its wrap-up, once entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup: Option<Wrapup>,
    /// Whether after-call work is required (agent-requested ACW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_call_work_required: Option<bool>,
}

/// A wrap-up (`ConversationEventTopicWrapup`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Wrapup {
    /// The wrap-up code (as configured by the organisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The agent's notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The tags the agent chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Time spent in after-call work, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// When the wrap-up was finished: ISO-8601 text as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

open_enum! {
    /// The state of a communication (`ConversationEventTopicCall.state` and its siblings).
    pub enum CommunicationState {
        /// Offered to the participant, ringing.
        Alerting = "alerting",
        /// Being dialled.
        Dialing = "dialing",
        /// Contacting.
        Contacting = "contacting",
        /// Offered (for example a preview call).
        Offering = "offering",
        /// Connected.
        Connected = "connected",
        /// Disconnected.
        Disconnected = "disconnected",
        /// Terminated.
        Terminated = "terminated",
        /// Faxes: converting.
        Converting = "converting",
        /// Faxes: uploading.
        Uploading = "uploading",
        /// Faxes: transmitting.
        Transmitting = "transmitting",
        /// Callbacks: scheduled.
        Scheduled = "scheduled",
        /// No state.
        None = "none",
    }
}

open_enum! {
    /// Whether a communication is inbound or outbound.
    pub enum Direction {
        /// Inbound.
        Inbound = "inbound",
        /// Outbound.
        Outbound = "outbound",
    }
}

open_enum! {
    /// What ended a communication (`disconnectType`).
    pub enum DisconnectType {
        /// The endpoint hung up.
        Endpoint = "endpoint",
        /// The client hung up.
        Client = "client",
        /// The system ended it.
        System = "system",
        /// It timed out.
        Timeout = "timeout",
        /// It was transferred.
        Transfer = "transfer",
        /// Transferred to a conference.
        TransferConference = "transfer.conference",
        /// Consult transfer.
        TransferConsult = "transfer.consult",
        /// Forwarded.
        TransferForward = "transfer.forward",
        /// Transfer not answered.
        TransferNoAnswer = "transfer.noanswer",
        /// Transfer target not available.
        TransferNotAvailable = "transfer.notavailable",
        /// Transport failure.
        TransportFailure = "transport.failure",
        /// An error.
        Error = "error",
        /// The peer ended it.
        Peer = "peer",
        /// Another reason (the service's `"other"`).
        OtherReason = "other",
        /// Marked as spam.
        Spam = "spam",
        /// The number cannot be called.
        Uncallable = "uncallable",
    }
}

open_enum! {
    /// A recording state.
    pub enum RecordingState {
        /// Not recording.
        None = "none",
        /// Recording.
        Active = "active",
        /// Recording paused.
        Paused = "paused",
    }
}
