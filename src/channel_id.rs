//! channel_id.rs owns [`ChannelId`], the one public handle on a channel id; it never shows the
//! whole id in `Debug` or `Display`.

use std::fmt;
use std::sync::Arc;

use crate::redact;

/// A Genesys notification channel id.
///
/// The id is a credential (whoever holds it can take the channel's socket over), so `Debug` and
/// `Display` show only its first and last 4 characters (`stre…cdef`); [`ChannelId::as_str`] gives
/// the whole id, for the REST calls a program makes itself (for instance to resynchronise after
/// a gap).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChannelId(Arc<str>);

impl ChannelId {
    pub(crate) fn new(id: &str) -> ChannelId {
        ChannelId(Arc::from(id))
    }

    /// The whole channel id. Treat it as a secret: do not log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({})", redact::short_id(&self.0))
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact::short_id(&self.0))
    }
}
