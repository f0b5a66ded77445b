//! proxy.rs holds the proxy settings and decides which HTTP proxy a connection goes through
//! (explicit setting, or the environment the way curl reads it); it opens no connection
//! (tunnel.rs does) and never shows proxy credentials.
//!
//! One [`Proxy`] serves everything: the token request, the REST calls (through `ureq`, which
//! is handed the same proxy) and the notification sockets (tunnelled by tunnel.rs, since
//! tungstenite has no proxy support). Which hosts bypass it follows curl's `NO_PROXY` rules: `*`; a host
//! name, which also covers its subdomains (`example.com` covers `api.example.com`); a leading
//! dot or `*.` meaning the same; an IP address or CIDR block; any of those with `:port` to
//! bypass only that port. Loopback hosts always go direct unless [`ProxyConfig::proxy_loopback`]
//! is set (tests, local gateways).

use crate::error::ConfigError;
use crate::redact::Redacted;
use base64::Engine as _;
use std::fmt;
use std::net::IpAddr;

/// An HTTP proxy reached with `CONNECT` (RFC 9110 §9.3.6): `http://[user:password@]host[:port]`.
///
/// The port defaults to 1080, as in curl. Credentials in the URL's user info are sent as
/// `Proxy-Authorization: Basic`; they never appear in `Debug` output or logs.
///
/// Parse it where the URL is read and hand it to
/// [`ClientBuilder::proxy`](crate::ClientBuilder::proxy), which then cannot fail:
/// ```
/// use genesys_notify::{Client, Proxy, Region};
///
/// # fn main() -> Result<(), genesys_notify::Error> {
/// let proxy: Proxy = "http://proxy.corp.example:3128".parse()?;
/// let builder = Client::builder().region(Region::EuWest1).proxy(proxy);
/// # drop(builder);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Proxy");
        s.field("host", &self.host).field("port", &self.port);
        if self.credentials.is_some() {
            s.field("credentials", &Redacted);
        }
        s.finish()
    }
}

impl fmt::Display for Proxy {
    /// `http://host:port`, without credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

/// What [`ClientBuilder::proxy`](crate::ClientBuilder::proxy) takes: a proxy URL as text
/// (`&str`, `&String`), parsed at that call, or a [`Proxy`] already parsed with
/// [`Proxy::parse`] (whose error the caller has then handled). Sealed: the crate implements it
/// for those types only. (Not for an owned `String`, so that `proxy(&url)` stays free of
/// clippy's `needless_borrows_for_generic_args`, as it was when `proxy` took `&str`.)
pub trait IntoProxy: sealed::Sealed {
    /// The proxy, or the [`ConfigError`] (field `proxy`) of [`Proxy::parse`].
    ///
    /// # Errors
    /// Those of [`Proxy::parse`], for text.
    fn into_proxy(self) -> Result<Proxy, ConfigError>;
}

mod sealed {
    /// Keeps [`IntoProxy`](super::IntoProxy) to the crate's own implementations, so that more
    /// can be added without breaking anyone.
    pub trait Sealed {}
    impl Sealed for super::Proxy {}
    impl Sealed for &super::Proxy {}
    impl Sealed for &str {}
    impl Sealed for &String {}
}

impl IntoProxy for Proxy {
    fn into_proxy(self) -> Result<Proxy, ConfigError> {
        Ok(self)
    }
}

impl IntoProxy for &Proxy {
    fn into_proxy(self) -> Result<Proxy, ConfigError> {
        Ok(self.clone())
    }
}

impl IntoProxy for &str {
    fn into_proxy(self) -> Result<Proxy, ConfigError> {
        Proxy::parse(self)
    }
}

impl IntoProxy for &String {
    fn into_proxy(self) -> Result<Proxy, ConfigError> {
        Proxy::parse(self)
    }
}

/// `"http://proxy.corp:3128".parse::<Proxy>()`, the same as [`Proxy::parse`].
///
/// # Errors
/// Those of [`Proxy::parse`].
impl std::str::FromStr for Proxy {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Proxy, ConfigError> {
        Proxy::parse(url)
    }
}

impl Proxy {
    /// Parses a proxy URL: `http://[user:password@]host[:port]` (a bare `host[:port]` is taken as
    /// `http`). User and password may be percent-encoded.
    ///
    /// # Errors
    /// [`ConfigError`] (field `proxy`) for an empty host, a bad port, or a scheme other than
    /// `http`: HTTPS and SOCKS proxies are not supported for the notification socket, and one
    /// proxy must serve every connection.
    pub fn parse(url: &str) -> Result<Proxy, ConfigError> {
        let bad = |reason: String| ConfigError {
            field: "proxy",
            reason,
        };
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(format!(
                    "proxy scheme {scheme:?} is not supported: use an http:// CONNECT proxy"
                )))
            }
            None => url,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in the proxy host".into()))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the proxy URL has no host".into()));
        }
        let port = match port {
            None | Some("") => 1080,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                // Not quoted: with the `@host` part forgotten, `http://user:password` puts
                // the password where the port goes.
                .ok_or_else(|| bad("bad proxy port: not a number from 1 to 65535".into()))?,
        };
        let credentials = userinfo.map(|info| {
            let (user, password) = info.split_once(':').unwrap_or((info, ""));
            (percent_decode(user), percent_decode(password))
        });
        Ok(Proxy {
            host: host.to_ascii_lowercase(),
            port,
            credentials,
        })
    }

    /// The proxy's host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the proxy URL carried credentials (sent as `Proxy-Authorization: Basic`).
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The same proxy for `ureq` (REST and token calls).
    pub(crate) fn to_ureq(&self) -> Option<ureq::Proxy> {
        let mut builder = ureq::Proxy::builder(ureq::ProxyProtocol::Http)
            .host(&self.host)
            .port(self.port);
        if let Some((user, password)) = &self.credentials {
            builder = builder.username(user).password(password);
        }
        builder.build().ok()
    }

    pub(crate) fn authorization(&self) -> Option<String> {
        self.credentials.as_ref().map(|(user, password)| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        })
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One `NO_PROXY` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bypass {
    All,
    /// A domain: the host itself and every subdomain, optionally on one port only.
    Domain {
        name: String,
        port: Option<u16>,
    },
    /// An address block (a single address is a block of full length).
    Block {
        net: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
}

impl Bypass {
    /// Parses one entry (already trimmed, not empty), the forms curl and Go accept.
    ///
    /// # Errors
    /// Why the entry is nonsense: a port outside 1..=65535, an address that does not parse, a
    /// CIDR prefix longer than the address, a `*` other than `*` alone or a leading `*.`, an
    /// empty label (`a..b`), or a character no host name holds.
    fn parse(entry: &str) -> Result<Bypass, String> {
        if entry == "*" {
            return Ok(Bypass::All);
        }
        let port = |text: &str| match text.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("port {text:?} is not in 1..=65535")),
        };
        // `[v6]:port`, `[v6]`, `v6`, `v6/64`, `host:port`, `host`, `1.2.3.0/24[:port]`.
        let (body, port) = if let Some(v6) = entry.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or("'[' without its ']' (write [v6-address]:port)")?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{addr:?} in brackets is not an IPv6 address"));
            }
            match after {
                "" => (addr, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (addr, Some(port(p)?)),
                    None => return Err(format!("{after:?} after ']' (write [v6-address]:port)")),
                },
            }
        } else if entry.matches(':').count() == 1 {
            let (host, p) = entry.split_once(':').unwrap_or((entry, ""));
            (host, Some(port(p)?))
        } else {
            (entry, None)
        };
        if let Some((addr, bits)) = body.split_once('/') {
            let ip = addr
                .parse::<IpAddr>()
                .map_err(|_| format!("{addr:?} before '/' is not an IP address"))?;
            let full = if ip.is_ipv4() { 32 } else { 128 };
            return match bits.parse::<u8>() {
                Ok(prefix) if prefix <= full => Ok(Bypass::Block {
                    net: ip,
                    prefix,
                    port,
                }),
                _ => Err(format!("CIDR prefix {bits:?} is not in 0..={full}")),
            };
        }
        if let Ok(ip) = body.parse::<IpAddr>() {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(Bypass::Block {
                net: ip,
                prefix,
                port,
            });
        }
        if body.contains(':') {
            return Err(format!("{body:?} is not an IPv6 address"));
        }
        // `*.domain` and `.domain` mean the domain and its subdomains, as a plain name does;
        // a trailing dot (a fully qualified name) is dropped.
        let name = body
            .strip_prefix("*.")
            .or_else(|| body.strip_prefix('.'))
            .unwrap_or(body);
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return Err("no host name".into());
        }
        if name.contains('*') {
            return Err("'*' is allowed alone (every host) or as a leading \"*.\" only".into());
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.iter().any(|label| label.is_empty()) {
            return Err("empty label (two dots in a row, or a leading dot after \"*.\")".into());
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) && *c != '.')
        {
            return Err(format!("{c:?} is not allowed in a host name"));
        }
        if labels.len() == 4 && labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("{name:?} is not a valid IPv4 address"));
        }
        Ok(Bypass::Domain {
            name: name.to_ascii_lowercase(),
            port,
        })
    }

    /// Parses a whole list (comma-separated; white space around entries ignored). With
    /// `empty_entries_allowed` (lists read from the environment, where `localhost,` is common
    /// and curl and Go ignore the empty entry) empty entries are skipped; otherwise they are
    /// refused.
    ///
    /// # Errors
    /// Text naming the first bad entry, its position (from 1) and what is wrong.
    fn parse_list(list: &str, empty_entries_allowed: bool) -> Result<Vec<Bypass>, String> {
        if list.trim().is_empty() {
            return Ok(Vec::new());
        }
        let mut bypass = Vec::new();
        for (index, entry) in list.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                if empty_entries_allowed {
                    continue;
                }
                return Err(format!(
                    "entry {} of {list:?} is empty (a stray comma)",
                    index + 1
                ));
            }
            bypass.push(
                Bypass::parse(entry)
                    .map_err(|why| format!("entry {} {entry:?}: {why}", index + 1))?,
            );
        }
        Ok(bypass)
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        match self {
            Bypass::All => true,
            Bypass::Domain { name, port: p } => {
                let host = host.trim_end_matches('.');
                port_ok(p)
                    && host.len() >= name.len()
                    && host[host.len() - name.len()..].eq_ignore_ascii_case(name)
                    && (host.len() == name.len()
                        || host.as_bytes()[host.len() - name.len() - 1] == b'.')
            }
            Bypass::Block {
                net,
                prefix,
                port: p,
            } => {
                port_ok(p)
                    && host
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| in_block(ip, *net, *prefix))
            }
        }
    }
}

fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Where the proxy setting comes from, and which hosts bypass it.
///
/// Built with [`ClientBuilder::proxy`](crate::ClientBuilder::proxy),
/// [`ClientBuilder::no_proxy`](crate::ClientBuilder::no_proxy) and
/// [`ClientBuilder::proxy_from_env`](crate::ClientBuilder::proxy_from_env). Order: an explicit
/// proxy wins; otherwise, unless turned off, the environment as curl reads it for `https`
/// targets: `https_proxy`, `HTTPS_PROXY`, then `all_proxy`, `ALL_PROXY` (every connection of
/// this client is TLS, so `http_proxy` does not apply). The bypass list is the explicit
/// `no_proxy` if given, else `no_proxy`/`NO_PROXY` from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    pub(crate) proxy: Option<Proxy>,
    pub(crate) no_proxy: Option<String>,
    pub(crate) from_env: bool,
    pub(crate) proxy_loopback: bool,
}

impl ProxyConfig {
    /// No explicit proxy; the environment is read.
    pub(crate) fn new() -> ProxyConfig {
        ProxyConfig {
            from_env: true,
            ..ProxyConfig::default()
        }
    }

    /// Whether loopback hosts go through the proxy too (default: no, they go direct).
    pub fn proxy_loopback(&self) -> bool {
        self.proxy_loopback
    }

    /// The proxy set with [`ClientBuilder::proxy`](crate::ClientBuilder::proxy), `None` when
    /// none was
    /// (the environment may still name one, see [`ProxyConfig::from_env`]).
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.as_ref()
    }

    /// The hosts that go direct, as set with
    /// [`ClientBuilder::no_proxy`](crate::ClientBuilder::no_proxy) (curl's `NO_PROXY` syntax),
    /// `None` when not set (then `NO_PROXY`/`no_proxy` is read when
    /// [`ProxyConfig::from_env`]).
    pub fn no_proxy(&self) -> Option<&str> {
        self.no_proxy.as_deref()
    }

    /// Whether the proxy environment variables (`https_proxy`, `HTTPS_PROXY`, `all_proxy`,
    /// `ALL_PROXY`, `no_proxy`, `NO_PROXY`) are read for what was not set explicitly (default:
    /// yes; [`ClientBuilder::proxy_from_env`](crate::ClientBuilder::proxy_from_env)).
    pub fn from_env(&self) -> bool {
        self.from_env
    }

    /// Resolves the setting against `env` (a variable's value by name; injectable for tests).
    ///
    /// # Errors
    /// [`ConfigError`] when the proxy URL (explicit or from the environment) cannot be used:
    /// a proxy the user asked for must never be silently skipped.
    pub(crate) fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ProxyPolicy, ConfigError> {
        let from_env = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
        };
        let proxy = match &self.proxy {
            Some(proxy) => Some(proxy.clone()),
            None if self.from_env => {
                match from_env(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]) {
                    Some(url) => Some(Proxy::parse(&url).map_err(|e| ConfigError {
                        field: "proxy",
                        reason: format!("from the environment: {}", e.reason),
                    })?),
                    None => None,
                }
            }
            None => None,
        };
        let bypass = match &self.no_proxy {
            Some(list) => Bypass::parse_list(list, false).map_err(|reason| ConfigError {
                field: "no_proxy",
                reason,
            })?,
            None if self.from_env => match ["no_proxy", "NO_PROXY"]
                .iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
            {
                Some((name, list)) => {
                    Bypass::parse_list(&list, true).map_err(|reason| ConfigError {
                        field: "no_proxy",
                        reason: format!("from the environment ({name}): {reason}"),
                    })?
                }
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        Ok(ProxyPolicy {
            proxy,
            bypass,
            proxy_loopback: self.proxy_loopback,
        })
    }
}

/// The resolved proxy decision, free of I/O: which proxy (if any) serves a host and port.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProxyPolicy {
    proxy: Option<Proxy>,
    bypass: Vec<Bypass>,
    proxy_loopback: bool,
}

impl ProxyPolicy {
    /// The proxy for a connection to `host:port`, or `None` to connect directly.
    pub(crate) fn for_target(&self, host: &str, port: u16) -> Option<&Proxy> {
        let proxy = self.proxy.as_ref()?;
        if !self.proxy_loopback && crate::url::is_loopback(host) {
            return None;
        }
        if self.bypass.iter().any(|b| b.matches(host, port)) {
            return None;
        }
        Some(proxy)
    }

    /// The proxy for a base URL such as `https://api.mypurecloud.com`.
    pub(crate) fn for_url(&self, url: &str) -> Option<&Proxy> {
        let (scheme, rest) = url.split_once("://")?;
        let host = crate::url::host_of(rest);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let default = match scheme.to_ascii_lowercase().as_str() {
            "https" | "wss" => 443,
            _ => 80,
        };
        let port = authority
            .rsplit_once(':')
            .filter(|(_, p)| !p.contains(']'))
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(default);
        self.for_target(host, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn policy(config: &ProxyConfig, vars: &[(&str, &str)]) -> ProxyPolicy {
        config.resolve(&env(vars)).unwrap()
    }

    #[test]
    fn proxy_urls_parse_with_credentials_ports_and_ipv6() {
        let p = Proxy::parse("http://us%40er:p%3Ass@Proxy.Corp:3128").unwrap();
        assert_eq!((p.host(), p.port()), ("proxy.corp", 3128));
        assert_eq!(p.credentials, Some(("us@er".to_owned(), "p:ss".to_owned())));
        assert_eq!(p.authorization().unwrap(), "Basic dXNAZXI6cDpzcw==");
        let p = Proxy::parse("proxy.corp").unwrap();
        assert_eq!(
            (p.host(), p.port(), p.has_credentials()),
            ("proxy.corp", 1080, false)
        );
        let p = Proxy::parse("http://[::1]:8080/").unwrap();
        assert_eq!((p.host(), p.port()), ("::1", 8080));
        assert_eq!(p.to_string(), "http://[::1]:8080");
        for bad in [
            "socks5://h:1",
            "https://h:1",
            "http://:80",
            "http://h:0",
            "http://h:x",
        ] {
            let e = Proxy::parse(bad).unwrap_err();
            assert_eq!(e.field, "proxy", "{bad}");
        }
    }

    #[test]
    fn credentials_never_show_in_debug_or_display() {
        let p = Proxy::parse("http://alice:s3cr3t-marker@proxy:3128").unwrap();
        for text in [format!("{p:?}"), p.to_string()] {
            assert!(!text.contains("s3cr3t-marker"), "{text}");
            assert!(!text.contains("alice:"), "{text}");
        }
        let config = ProxyConfig {
            proxy: Some(p),
            ..ProxyConfig::new()
        };
        assert!(!format!("{config:?}").contains("s3cr3t-marker"));
    }

    #[test]
    fn environment_is_read_like_curl_for_https_targets() {
        let c = ProxyConfig::new();
        let pick = |vars: &[(&str, &str)]| {
            policy(&c, vars)
                .for_target("api.mypurecloud.com", 443)
                .map(|p| p.host().to_owned())
        };
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[("http_proxy", "http://h:1")]), None);
        assert_eq!(
            pick(&[("HTTPS_PROXY", "http://upper:1")]).as_deref(),
            Some("upper")
        );
        assert_eq!(
            pick(&[
                ("HTTPS_PROXY", "http://upper:1"),
                ("https_proxy", "http://lower:1")
            ])
            .as_deref(),
            Some("lower")
        );
        assert_eq!(
            pick(&[
                ("ALL_PROXY", "http://all:1"),
                ("HTTPS_PROXY", "http://https:1")
            ])
            .as_deref(),
            Some("https")
        );
        assert_eq!(
            pick(&[("ALL_PROXY", "http://all:1")]).as_deref(),
            Some("all")
        );
        // Turned off: the environment is ignored.
        let off = ProxyConfig {
            from_env: false,
            ..ProxyConfig::new()
        };
        assert!(policy(&off, &[("HTTPS_PROXY", "http://h:1")])
            .for_target("api.mypurecloud.com", 443)
            .is_none());
        // A proxy from the environment that cannot be used is an error, not a silent bypass.
        let e = c
            .resolve(&env(&[("HTTPS_PROXY", "socks5://h:1")]))
            .unwrap_err();
        assert!(e.reason.contains("environment"), "{}", e.reason);
    }

    #[test]
    fn no_proxy_covers_hosts_domains_ports_and_blocks() {
        let c = ProxyConfig::new();
        let p = policy(
            &c,
            &[
                ("HTTPS_PROXY", "http://proxy:3128"),
                (
                    "NO_PROXY",
                    " mypurecloud.ie, .pure.cloud,*.corp.example, gw.local:8443,10.0.0.0/8,[fd00::1]:443",
                ),
            ],
        );
        let direct = |h: &str, port| p.for_target(h, port).is_none();
        assert!(direct("mypurecloud.ie", 443));
        assert!(direct("api.mypurecloud.ie", 443));
        assert!(!direct("notmypurecloud.ie", 443));
        assert!(direct("api.euw2.pure.cloud", 443));
        assert!(direct("pure.cloud", 443));
        assert!(direct("a.b.corp.example", 443));
        assert!(direct("gw.local", 8443));
        assert!(!direct("gw.local", 443));
        assert!(direct("10.1.2.3", 443));
        assert!(!direct("11.1.2.3", 443));
        assert!(direct("fd00::1", 443));
        assert!(!direct("fd00::1", 80));
        assert!(!direct("api.mypurecloud.com", 443));
        let all = policy(
            &c,
            &[("HTTPS_PROXY", "http://proxy:3128"), ("no_proxy", "*")],
        );
        assert!(all.for_target("api.mypurecloud.com", 443).is_none());
    }

    /// Review finding: nonsense `no_proxy` entries were accepted (and silently ignored).
    #[test]
    fn nonsense_no_proxy_entries_are_refused_naming_the_entry() {
        let explicit = |list: &str| ProxyConfig {
            no_proxy: Some(list.into()),
            ..ProxyConfig::new()
        };
        for (list, says) in [
            ("::::", "\"::::\""),
            ("*.*.*", "'*'"),
            ("a.com,,b.com", "entry 2"),
            ("a.com,", "empty"),
            ("host:0", "port"),
            ("host:65536", "port"),
            ("host:http", "port"),
            ("[fd00::1]:99999", "port"),
            ("[nothost]:443", "IPv6"),
            ("[fd00::1", "']'"),
            ("10.0.0.0/33", "prefix"),
            ("example.com/8", "IP address"),
            ("a..b", "empty label"),
            ("*", "*"),
            ("ex ample.com", "' '"),
            ("999.1.1.1", "IPv4"),
            ("*.", "no host"),
            ("ex*ample.com", "'*'"),
        ] {
            let result = explicit(list).resolve(&env(&[]));
            if list == "*" {
                assert!(result.is_ok());
                continue;
            }
            let e = result.unwrap_err();
            assert_eq!(e.field, "no_proxy", "{list}");
            assert!(e.reason.contains(says), "{list:?}: {}", e.reason);
        }
        // What curl and Go accept still works.
        for list in [
            "",
            "*",
            "example.com",
            ".example.com",
            "*.example.com",
            "example.com.",
            "host:8443",
            "10.0.0.0/8",
            "192.168.1.1",
            "fd00::/8",
            "fd00::1",
            "[fd00::1]:443",
            "[fd00::1]",
            " a.com , b.com ",
            "under_score.local",
        ] {
            assert!(explicit(list).resolve(&env(&[])).is_ok(), "{list:?}");
        }
        // From the environment a stray comma is skipped (common, and curl skips it), but
        // nonsense is an error naming the variable.
        assert!(ProxyConfig::new()
            .resolve(&env(&[("NO_PROXY", "localhost,")]))
            .is_ok());
        let e = ProxyConfig::new()
            .resolve(&env(&[("no_proxy", "localhost,::::")]))
            .unwrap_err();
        assert!(
            e.reason.contains("no_proxy") && e.reason.contains("entry 2"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn loopback_goes_direct_unless_asked() {
        let mut c = ProxyConfig {
            proxy: Some(Proxy::parse("http://proxy:3128").unwrap()),
            ..ProxyConfig::new()
        };
        assert!(policy(&c, &[]).for_url("http://127.0.0.1:9000/x").is_none());
        assert!(policy(&c, &[]).for_url("ws://localhost:9000").is_none());
        c.proxy_loopback = true;
        assert!(policy(&c, &[]).for_url("http://127.0.0.1:9000/x").is_some());
        assert_eq!(
            policy(&c, &[])
                .for_url("https://api.mypurecloud.com")
                .unwrap()
                .host(),
            "proxy"
        );
    }

    #[test]
    fn explicit_settings_win_over_the_environment() {
        let c = ProxyConfig {
            proxy: Some(Proxy::parse("http://mine:1").unwrap()),
            no_proxy: Some("example.com".into()),
            ..ProxyConfig::new()
        };
        let p = policy(&c, &[("HTTPS_PROXY", "http://env:1"), ("NO_PROXY", "*")]);
        assert_eq!(
            p.for_target("api.mypurecloud.com", 443).unwrap().host(),
            "mine"
        );
        assert!(p.for_target("www.example.com", 443).is_none());
    }
}
