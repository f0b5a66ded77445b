//! error/config.rs defines [`ConfigError`], the setting a builder refused and why; values only.

use std::fmt;

/// Why a configuration was refused by [`ClientBuilder::build`](crate::ClientBuilder::build).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, e.g. `"queue_capacity"`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}
