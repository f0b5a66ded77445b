//! error/cause.rs defines [`Cause`], the underlying failure an error variant holds (an I/O error,
//! an HTTP library error, a JSON error, a token source's own error): its message as shown, and
//! the typed error itself where there is one, for callers that match on it.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// The underlying failure held by [`ApiError::Transport`](crate::ApiError::Transport),
/// [`ApiError::Decode`](crate::ApiError::Decode), [`TokenError::Transport`](crate::TokenError),
/// [`TokenError::Other`](crate::TokenError), [`ProxyError::Io`](crate::ProxyError) and
/// [`DisconnectCause::Io`](crate::DisconnectCause).
///
/// Its `Display` is the message the error that holds it prints (one line, never a secret), so
/// that error's `source()` does not return it again (this crate's errors print their causes and
/// never return a printed cause from `source()`, so a reporter that walks the chain never shows
/// a line twice). The typed error is here instead: [`Cause::get_ref`], [`Cause::downcast_ref`],
/// [`Cause::io_kind`] and [`Cause::is_timeout`].
///
/// Cheap to clone (the typed error is shared).
#[derive(Clone)]
pub struct Cause {
    message: String,
    error: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl Cause {
    /// A cause from any error, or from a message (`&str` and `String` convert too): its message
    /// is the error's `Display`. This is how a [`TokenSource`](crate::TokenSource) of yours
    /// reports its own failure: `TokenError::Other(Cause::new(e))`, or
    /// [`TokenError::other`](crate::TokenError::other).
    ///
    /// The message is the error's text followed by its sources' (`a: b: c`), skipping a source
    /// whose text the one before already holds: many errors print something general and keep
    /// the reason in `source()`, and the error holding this cause prints this message alone.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Cause {
        let error: Box<dyn StdError + Send + Sync + 'static> = error.into();
        Cause {
            message: chain_text(error.as_ref()),
            error: Some(Arc::from(error)),
        }
    }

    /// A cause with a message of this crate's making and no typed error (a state of the
    /// protocol, not a failure of a library underneath).
    pub(crate) fn message_only(message: impl Into<String>) -> Cause {
        Cause {
            message: message.into(),
            error: None,
        }
    }

    /// The typed error `error`, shown as `message` (a shorter or redacted form of its text).
    pub(crate) fn with_message(
        message: impl Into<String>,
        error: impl StdError + Send + Sync + 'static,
    ) -> Cause {
        Cause {
            message: message.into(),
            error: Some(Arc::new(error)),
        }
    }

    /// A copy of the I/O error `error` (same kind and text; `std::io::Error` is not `Clone`).
    pub(crate) fn io(error: &std::io::Error) -> Cause {
        Cause::new(std::io::Error::new(error.kind(), error.to_string()))
    }

    /// The message, as the error holding this cause prints it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The typed error, when the failure came from one (an `std::io::Error`, a `ureq::Error`, a
    /// `serde_json::Error`, your token source's error); `None` for a failure this crate
    /// described itself (for example a TCP connection that ended without a close frame).
    pub fn get_ref(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.error.as_deref()
    }

    /// The typed error, or one of its sources, as a `T`: the first in the chain that is one.
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        let mut next: Option<&(dyn StdError + 'static)> = match &self.error {
            Some(e) => Some(e.as_ref()),
            None => None,
        };
        while let Some(e) = next {
            if let Some(t) = e.downcast_ref::<T>() {
                return Some(t);
            }
            next = e.source();
        }
        None
    }

    /// The kind of the first `std::io::Error` in the chain (connection refused, reset, timed
    /// out, ...), if there is one.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        self.downcast_ref::<std::io::Error>().map(|e| e.kind())
    }

    /// Whether the failure was a timeout: an I/O timeout, or a timeout of the HTTP library.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.io_kind(),
            Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
        ) || matches!(
            self.downcast_ref::<ureq::Error>(),
            Some(ureq::Error::Timeout(_))
        )
    }
}

/// `error`'s text and its sources', joined by `: `, each source left out when the text before
/// already holds it (an error that prints its source too); at most 8 links, as a bound.
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut next = error.source();
    for _ in 0..8 {
        let Some(source) = next else { break };
        let part = source.to_string();
        if !part.is_empty() && !last.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        last = part;
        next = source.source();
    }
    text
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message only: the typed error's own `Debug` may hold what the message leaves out
        // (a URL with a channel id, for instance).
        fmt::Debug::fmt(&self.message, f)
    }
}

/// Two causes are equal when they show the same message (the typed errors underneath are not
/// comparable in general). No `Eq`: a cause is not a key.
impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        self.message == other.message
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Cause {
        Cause::message_only(message)
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Cause {
        Cause::message_only(message)
    }
}

impl From<std::io::Error> for Cause {
    fn from(error: std::io::Error) -> Cause {
        Cause::new(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_shows_its_message_and_keeps_its_typed_error() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out");
        let cause = Cause::with_message("reading the answer: timed out", io);
        assert_eq!(cause.to_string(), "reading the answer: timed out");
        assert_eq!(cause.io_kind(), Some(std::io::ErrorKind::TimedOut));
        assert!(cause.is_timeout());
        assert!(cause.get_ref().is_some());

        let said: Cause = "the TCP connection ended without a close frame".into();
        assert!(said.get_ref().is_none());
        assert_eq!(said.io_kind(), None);
        assert!(!said.is_timeout());
        assert_eq!(
            format!("{said:?}"),
            "\"the TCP connection ended without a close frame\""
        );
    }

    #[test]
    fn downcast_walks_the_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let cause = Cause::new(Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused by 10.0.0.1",
        )));
        // The source's text is part of the message: the outer error only says "outer".
        assert_eq!(cause.message(), "outer: refused by 10.0.0.1");
        assert!(cause.downcast_ref::<Outer>().is_some());
        assert_eq!(cause.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    }
}
