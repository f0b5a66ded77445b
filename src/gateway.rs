//! gateway.rs rewrites the address of the notification socket for sites that front Genesys
//! Cloud with a gateway; it keeps the `connectUri` path and query (the channel id lives there)
//! and never opens a connection.

use crate::error::ConfigError;
use std::fmt;
use std::sync::Arc;

/// A user function mapping the `connectUri` the service gave to the one to connect to.
pub(crate) type ConnectUriMap = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// How the socket's address is changed, if at all.
#[derive(Clone, Default)]
pub(crate) enum StreamingOverride {
    /// Connect to `connectUri` as given (docs/protocol.md "The WebSocket").
    #[default]
    None,
    /// Replace scheme, host and port; keep path and query.
    Base {
        /// `wss` or `ws` (loopback only).
        scheme: &'static str,
        /// `host[:port]`, as given.
        authority: String,
    },
    /// A user function.
    Map(ConnectUriMap),
}

impl fmt::Debug for StreamingOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamingOverride::None => f.write_str("None"),
            StreamingOverride::Base { scheme, authority } => {
                write!(f, "Base({scheme}://{authority})")
            }
            StreamingOverride::Map(_) => f.write_str("Map(<function>)"),
        }
    }
}

impl PartialEq for StreamingOverride {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StreamingOverride::None, StreamingOverride::None) => true,
            (
                StreamingOverride::Base { scheme, authority },
                StreamingOverride::Base {
                    scheme: s,
                    authority: a,
                },
            ) => scheme == s && authority == a,
            (StreamingOverride::Map(a), StreamingOverride::Map(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for StreamingOverride {}

impl StreamingOverride {
    /// Parses a streaming base such as `https://gateway.example.com:8443`: `https`/`wss` become
    /// `wss`; `http`/`ws` become `ws` and are accepted only for loopback hosts.
    ///
    /// # Errors
    /// [`ConfigError`] (field `streaming_base`) for a URL that is not absolute, has no host,
    /// has a path, query or user info, or uses plain `http`/`ws` to a non-loopback host.
    pub(crate) fn parse_base(url: &str) -> Result<StreamingOverride, ConfigError> {
        let bad = |reason: String| ConfigError {
            field: "streaming_base",
            reason,
        };
        let url = url.trim().trim_end_matches('/');
        crate::url::check_base_url(url).map_err(bad)?;
        let (scheme, authority) = url.split_once("://").ok_or_else(|| {
            bad(format!(
                "{:?} is not an absolute URL",
                crate::url::redacted(url)
            ))
        })?;
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad(format!(
                "{:?} must be scheme://host[:port] only: the connectUri's path and query are kept",
                crate::url::redacted(url)
            )));
        }
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" | "wss" => "wss",
            _ => "ws",
        };
        Ok(StreamingOverride::Base {
            scheme,
            authority: authority.to_owned(),
        })
    }

    /// The address to connect to for `connect_uri`.
    pub(crate) fn apply(&self, connect_uri: &str) -> String {
        match self {
            StreamingOverride::None => connect_uri.to_owned(),
            StreamingOverride::Map(map) => map(connect_uri),
            StreamingOverride::Base { scheme, authority } => {
                let rest = connect_uri
                    .split_once("://")
                    .map_or(connect_uri, |(_, rest)| rest);
                let tail = rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]);
                format!("{scheme}://{authority}{tail}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_replaces_scheme_host_and_port_and_keeps_path_and_query() {
        let o = StreamingOverride::parse_base("https://gw.example.com:8443/").unwrap();
        assert_eq!(
            o.apply("wss://streaming.mypurecloud.com/channels/abc?x=1"),
            "wss://gw.example.com:8443/channels/abc?x=1"
        );
        assert_eq!(
            o.apply("wss://streaming.mypurecloud.com"),
            "wss://gw.example.com:8443"
        );
        let o = StreamingOverride::parse_base("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            o.apply("wss://streaming.mypurecloud.com:443/channels/abc"),
            "ws://127.0.0.1:9000/channels/abc"
        );
        assert_eq!(StreamingOverride::None.apply("wss://a/b"), "wss://a/b");
        let m = StreamingOverride::Map(Arc::new(|u: &str| u.replace("streaming", "gw")));
        assert_eq!(m.apply("wss://streaming.x/c"), "wss://gw.x/c");
    }

    #[test]
    fn unusable_bases_are_refused_with_the_field_named() {
        for bad in [
            "gw.example.com",
            "http://gw.example.com",
            "https://gw.example.com/prefix",
            "https://user@gw.example.com",
            "ftp://gw.example.com",
        ] {
            let e = StreamingOverride::parse_base(bad).unwrap_err();
            assert_eq!(e.field, "streaming_base", "{bad}");
        }
    }
}
