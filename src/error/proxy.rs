//! error/proxy.rs defines [`ProxyError`], why the HTTP proxy in the way failed; values only
//! (tunnel.rs and network.rs produce it).

use crate::error::Cause;
use std::fmt;

/// Why a proxy could not open a tunnel. Each says the proxy is at fault, not Genesys Cloud.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy asks for credentials (HTTP 407): none were given, or they were refused.
    /// `scheme` is the first word of its `Proxy-Authenticate` header (e.g. `Basic`,
    /// `Negotiate`); only `Basic` is supported. Retrying cannot help until the setting changes.
    AuthenticationRequired {
        /// The authentication scheme the proxy asked for, if it named one.
        scheme: Option<String>,
        /// Whether credentials were sent (and so were refused).
        credentials_sent: bool,
    },
    /// The proxy answered `CONNECT` with another non-2xx status (e.g. 403 policy, 502 upstream
    /// unreachable, 503).
    Refused {
        /// The HTTP status of the proxy's answer.
        status: u16,
    },
    /// The proxy's answer was not HTTP, or its head was longer than 16 KiB.
    BadResponse(String),
    /// Connecting to, reading or writing the proxy connection failed, or it closed before
    /// answering; the [`Cause`] holds the I/O error when there is one ([`Cause::io_kind`]).
    Io(Cause),
    /// The proxy did not answer within the connect deadline.
    Timeout,
}

impl ProxyError {
    /// Whether a later attempt may succeed without a change of settings.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ProxyError::AuthenticationRequired { .. })
    }

    /// Whether the proxy did not answer in time ([`ProxyError::Timeout`], or an I/O timeout).
    pub fn is_timeout(&self) -> bool {
        match self {
            ProxyError::Timeout => true,
            ProxyError::Io(cause) => cause.is_timeout(),
            _ => false,
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::AuthenticationRequired {
                scheme,
                credentials_sent,
            } => {
                let asked = scheme.as_deref().unwrap_or("an unnamed scheme");
                if *credentials_sent {
                    write!(
                        f,
                        "the proxy refused the credentials (407, it asks for {asked})"
                    )
                } else {
                    write!(f, "the proxy requires authentication (407, {asked}); give user:password in the proxy URL")
                }
            }
            ProxyError::Refused { status } => {
                write!(f, "the proxy refused the tunnel with HTTP {status}")
            }
            ProxyError::BadResponse(e) => write!(f, "the proxy's answer is not valid HTTP: {e}"),
            ProxyError::Io(e) => write!(f, "proxy connection failed: {e}"),
            ProxyError::Timeout => write!(f, "the proxy did not answer CONNECT in time"),
        }
    }
}

impl std::error::Error for ProxyError {}
