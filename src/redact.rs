//! redact.rs owns how secrets are shortened or hidden in `Debug`, `Display` and logs; it never
//! stores them.
//!
//! Channel ids and `connectUri` are credentials (anyone holding them can take the channel over,
//! docs/protocol.md "The WebSocket"), client secrets and access tokens are credentials too. Everything
//! that formats one of them goes through here.

use std::fmt;

/// How many characters of each end of a channel id are shown.
const SHOWN: usize = 4;

/// Shows the first and last 4 characters of a channel id around `…` (ids shorter than 12
/// characters are replaced by `…` alone). Real ids share a long prefix (`streaming-…`), so the
/// tail is what tells channels apart; the hidden middle keeps the id unusable.
pub(crate) fn short_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 3 * SHOWN {
        return "…".to_owned();
    }
    let head: String = chars[..SHOWN].iter().collect();
    let tail: String = chars[chars.len() - SHOWN..].iter().collect();
    format!("{head}…{tail}")
}

/// Shows a `connectUri` with its channel id (the last path segment) shortened.
pub(crate) fn short_uri(uri: &str) -> String {
    match uri.rfind('/') {
        Some(slash) => format!("{}{}", &uri[..=slash], short_id(&uri[slash + 1..])),
        None => short_id(uri),
    }
}

/// A `Debug`/`Display` stand-in for a secret value.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_id_shows_only_four_characters_at_each_end() {
        assert_eq!(short_id("streaming-0123456789abcdef"), "stre…cdef");
        assert_eq!(short_id("abc"), "…");
    }

    #[test]
    fn connect_uri_keeps_host_and_hides_most_of_the_id() {
        let uri = "wss://streaming.mypurecloud.com/channels/streaming-0123456789abcdef";
        assert_eq!(
            short_uri(uri),
            "wss://streaming.mypurecloud.com/channels/stre…cdef"
        );
    }
}
