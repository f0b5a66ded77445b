//! conversation_summary.rs: the body of `v2.users.{id}.conversationsummary`
//! ([`UserConversationSummary`]); plain data, no I/O.

use serde::{Deserialize, Serialize};

/// The `eventBody` of `v2.users.{id}.conversationsummary`: how many conversations of each
/// media type a user has, active and in after-call work.
///
/// Schema: Genesys' `UserConversationsEventUserConversationSummary` (with
/// `UserConversationsEventMediaSummary` and `UserConversationsEventMediaSummaryDetail`). Every
/// field is optional; fields not listed here are ignored.
///
/// ```
/// use genesys_notify::models::UserConversationSummary;
///
/// let body = r#"{"userId": "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f",
///                "call": {"contactCenter": {"active": 1, "acw": 0},
///                         "enterprise": {"active": 0, "acw": 0}}}"#;
/// let summary: UserConversationSummary = serde_json::from_str(body)?;
/// let calls = summary.call.as_ref().and_then(|call| call.contact_center.as_ref());
/// assert_eq!(calls.and_then(|detail| detail.active), Some(1));
/// assert!(summary.email.is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserConversationSummary {
    /// The user's id (a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<MediaSummary>,
    /// Callbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<MediaSummary>,
    /// Emails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<MediaSummary>,
    /// Messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<MediaSummary>,
    /// Chats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<MediaSummary>,
    /// Social expressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub social_expression: Option<MediaSummary>,
    /// Videos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<MediaSummary>,
}

/// One media type's counts (`UserConversationsEventMediaSummary`): ACD (contact center) and
/// non-ACD (enterprise) conversations apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MediaSummary {
    /// Conversations routed through ACD queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_center: Option<MediaSummaryDetail>,
    /// Conversations not routed through a queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<MediaSummaryDetail>,
}

/// Counts of conversations (`UserConversationsEventMediaSummaryDetail`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MediaSummaryDetail {
    /// Conversations in progress (count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<i64>,
    /// Conversations in after-call work (count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acw: Option<i64>,
}
