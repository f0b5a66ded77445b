//! http.rs owns the crate's HTTP agent settings and the text HTTP failures become (never holding
//! a secret); it never makes a request of its own and never retries.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ureq::config::IpFamily;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

pub(crate) mod connector;

use connector::{OpenSockets, TlsSource};

/// Server-provided error text is cut to this many characters.
const MAX_ERROR_TEXT: usize = 300;
/// Bytes of each pooled connection's input buffer: it holds a whole response header (Genesys
/// sends a few KiB), bodies stream through it. ureq's default, 128 KiB (and as much again for
/// output), made each idle pooled connection cost a quarter of a MiB of RSS.
const INPUT_BUFFER: usize = 32 * 1024;
/// Bytes of each connection's output buffer: a request header (with the access token) must
/// fit; bodies stream through it.
const OUTPUT_BUFFER: usize = 16 * 1024;
/// A response header larger than this is an error (`LargeResponseHeader`), reported before
/// it could fill the input buffer.
const MAX_RESPONSE_HEADER: usize = INPUT_BUFFER / 2;

/// One `ureq::Agent` as the crate uses them: `timeout` bounds the whole exchange (DNS,
/// connect, TLS, request, response body), statuses are returned rather than turned into
/// errors, and redirects are not followed (Genesys does not redirect API calls; following one
/// would send a request, possibly with a channel id in its path, somewhere unexpected). Host
/// names are resolved by [`HostResolver`]; servers are verified against the bundled Mozilla
/// roots. Its sockets are registered nowhere a shutdown would reach: a client's agents come
/// from network.rs.
pub(crate) fn http_agent(timeout: Duration) -> ureq::Agent {
    agent(
        settings(timeout).build(),
        Arc::new(OpenSockets::default()),
        Arc::new(|| crate::trust::default_roots().client_config()),
    )
}

/// The settings every agent of the crate shares (see [`http_agent`]).
fn settings(timeout: Duration) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("genesys-notify/", env!("CARGO_PKG_VERSION")))
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .max_response_header_size(MAX_RESPONSE_HEADER)
}

/// The same agent, through `proxy` (or explicitly direct: ureq's own reading of the proxy
/// environment is replaced by ours, see proxy.rs), its sockets registered in `sockets`, and
/// TLS with the configuration `tls` gives (the client's, trust.rs).
pub(crate) fn agent_with(
    timeout: Duration,
    proxy: Option<ureq::Proxy>,
    sockets: Arc<OpenSockets>,
    tls: TlsSource,
) -> ureq::Agent {
    agent(settings(timeout).proxy(proxy).build(), sockets, tls)
}

/// An agent with our connector chain (http/connector.rs) and our [`HostResolver`].
fn agent(config: ureq::config::Config, sockets: Arc<OpenSockets>, tls: TlsSource) -> ureq::Agent {
    ureq::Agent::with_parts(
        config,
        connector::chain(sockets, tls),
        HostResolver::default(),
    )
}

/// How long a host name's addresses are reused: long enough that a burst of calls (one
/// `subscribe` per topic, a resync's batches) looks the name up once, far shorter than the
/// TTL DNS gives service hosts (a minute or more), so a change of address is seen within
/// seconds.
const NAME_TTL: Duration = Duration::from_secs(5);
/// Host names kept at once: an agent talks to one host (the API or login server) and maybe a
/// proxy; a few entries hold them all, and each is at most 253 bytes plus 16 addresses.
const MAX_NAMES: usize = 4;

/// The crate's resolver. ureq 3 resolves the host before it looks for a pooled connection, on
/// every request, and with a timeout set its `DefaultResolver` does so on a thread of its own
/// (std's `getaddrinfo` cannot be cut short), so every REST call cost a thread and a lookup.
/// Here an IP literal (`127.0.0.1`, `[::1]`) is its own address, with no thread and no
/// lookup; a name is looked up by ureq's `DefaultResolver` (bounded by the request's timeout as
/// before) and its addresses are reused for [`NAME_TTL`]; a failed lookup is never kept.
/// Requests through an HTTP proxy are resolved by the proxy as before: ureq asks the resolver
/// only for the proxy's own address then.
pub(crate) struct HostResolver {
    lookup: Box<Lookup>,
    names: parking_lot::Mutex<NameCache>,
}

type Lookup = dyn Fn(&Uri, &ureq::config::Config, NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error>
    + Send
    + Sync;

impl Default for HostResolver {
    fn default() -> Self {
        let system = DefaultResolver::default();
        HostResolver::with_lookup(Box::new(move |uri, config, timeout| {
            system.resolve(uri, config, timeout)
        }))
    }
}

impl fmt::Debug for HostResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostResolver").finish_non_exhaustive()
    }
}

impl HostResolver {
    fn with_lookup(lookup: Box<Lookup>) -> HostResolver {
        HostResolver {
            lookup,
            names: parking_lot::Mutex::new(NameCache::default()),
        }
    }

    fn resolve_at(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
        now: Instant,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // `host:port` with the scheme's default port, as ureq's resolver builds it.
        let host_port = uri
            .scheme()
            .zip(uri.authority())
            .and_then(|(scheme, authority)| DefaultResolver::host_and_port(scheme, authority));
        let Some(host_port) = host_port else {
            // Not a full URL: ureq's resolver gives the error.
            return (self.lookup)(uri, config, timeout);
        };
        if let Ok(literal) = host_port.parse::<SocketAddr>() {
            let mut addrs = self.empty();
            if config
                .ip_family()
                .keep_wanted(std::iter::once(literal))
                .next()
                .is_none()
            {
                return Err(ureq::Error::HostNotFound);
            }
            addrs.push(literal);
            return Ok(addrs);
        }
        let family = config.ip_family();
        if let Some(addrs) = self.names.lock().get(&host_port, family, now) {
            return Ok(addrs);
        }
        // Looked up outside the lock: a slow lookup does not hold up other hosts' requests.
        let addrs = (self.lookup)(uri, config, timeout)?;
        self.names.lock().put(host_port, family, addrs.clone(), now);
        Ok(addrs)
    }
}

impl Resolver for HostResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        self.resolve_at(uri, config, timeout, Instant::now())
    }
}

/// Host names recently looked up, at most [`MAX_NAMES`], each for [`NAME_TTL`].
#[derive(Default)]
struct NameCache {
    entries: Vec<NameEntry>,
}

struct NameEntry {
    host_port: String,
    family: IpFamily,
    addrs: ResolvedSocketAddrs,
    at: Instant,
}

impl NameCache {
    fn get(
        &mut self,
        host_port: &str,
        family: IpFamily,
        now: Instant,
    ) -> Option<ResolvedSocketAddrs> {
        self.entries
            .retain(|e| now.saturating_duration_since(e.at) < NAME_TTL);
        self.entries
            .iter()
            .find(|e| e.host_port == host_port && e.family == family)
            .map(|e| e.addrs.clone())
    }

    fn put(
        &mut self,
        host_port: String,
        family: IpFamily,
        addrs: ResolvedSocketAddrs,
        now: Instant,
    ) {
        self.entries
            .retain(|e| !(e.host_port == host_port && e.family == family));
        if self.entries.len() >= MAX_NAMES {
            // The oldest answer goes first.
            if let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].at) {
                self.entries.swap_remove(oldest);
            }
        }
        self.entries.push(NameEntry {
            host_port,
            family,
            addrs,
            at: now,
        });
    }
}

/// `e` as the [`Cause`](crate::error::Cause) of a transport failure: shown as
/// [`transport_message`], holding the typed error except where its text could hold a URL (a
/// bad URI, or an `http` URL refused: the path may carry a channel id).
pub(crate) fn transport_cause(e: ureq::Error) -> crate::error::Cause {
    let message = transport_message(&e);
    match e {
        ureq::Error::BadUri(_) | ureq::Error::RequireHttpsOnly(_) => message.into(),
        other => crate::error::Cause::with_message(message, other),
    }
}

/// A ureq transport error as text that never contains a URL (URLs may hold channel ids).
pub(crate) fn transport_message(e: &ureq::Error) -> String {
    match e {
        ureq::Error::BadUri(_) => "bad uri".to_owned(),
        ureq::Error::RequireHttpsOnly(_) => "configured for https only".to_owned(),
        other => other.to_string(),
    }
}

/// Parses a `Retry-After` header (docs/protocol.md "Rate limits"); see [`retry_after_value`].
pub(crate) fn parse_retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    retry_after_value(headers.get("retry-after")?.to_str().ok()?)
}

/// The wait a `Retry-After` value asks for: whole seconds (what Genesys sends), or an HTTP-date
/// (RFC 9110 §10.2.3; proxies and gateways in front of the API may send one), a date already
/// past meaning no wait. Garbage, negative or non-finite values yield `None`, never a panic;
/// callers cap what they honour.
pub(crate) fn retry_after_value(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // `try_from`: negative, NaN, infinite or huge values give `None`, never a panic.
    if let Some(secs) = value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
    {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Describes a JSON decoding error by kind and position only: serde's own message may quote a
/// value from the body, which could be a token or a channel id.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// Cuts server-provided text to [`MAX_ERROR_TEXT`] characters.
pub(crate) fn shorten(text: String) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date_and_ignores_garbage() {
        assert_eq!(retry_after_value(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(retry_after_value("1.5"), Some(Duration::from_millis(1500)));
        let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(60);
        let wait = retry_after_value(&httpdate::fmt_http_date(in_a_minute)).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(
            retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a past date means no wait"
        );
        for garbage in ["", "soon", "-5", "NaN", "inf", "1e400", "Mon, 99 Foo 2026"] {
            assert_eq!(retry_after_value(garbage), None, "{garbage:?}");
        }
    }

    const NAMED: [u8; 4] = [192, 0, 2, 7];

    /// A resolver whose lookups are counted; `fail` makes them fail.
    fn counting(fail: bool) -> (HostResolver, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let resolver = HostResolver::with_lookup(Box::new(move |uri, _, _| {
            seen.fetch_add(1, Ordering::SeqCst);
            if fail {
                return Err(ureq::Error::HostNotFound);
            }
            let mut addrs = DefaultResolver::default().empty();
            let port = uri.port_u16().unwrap_or(443);
            addrs.push(SocketAddr::from((NAMED, port)));
            Ok(addrs)
        }));
        (resolver, count)
    }

    fn resolve(
        resolver: &HostResolver,
        url: &str,
        now: Instant,
    ) -> Result<Vec<SocketAddr>, ureq::Error> {
        let config = ureq::config::Config::default();
        let uri: Uri = url.parse().unwrap();
        resolver
            .resolve_at(&uri, &config, NextTimeout::default(), now)
            .map(|addrs| addrs.to_vec())
    }

    #[test]
    fn ip_literals_are_their_own_address_without_a_lookup() {
        let (resolver, lookups) = counting(false);
        let now = Instant::now();
        assert_eq!(
            resolve(&resolver, "http://127.0.0.1:8080/api/v2/tokens/me", now).unwrap(),
            ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&resolver, "https://[::1]/x", now).unwrap(),
            ["[::1]:443".parse::<SocketAddr>().unwrap()],
            "IPv6 in brackets, the scheme's default port"
        );
        assert_eq!(
            resolve(&resolver, "http://10.1.2.3/", now).unwrap(),
            ["10.1.2.3:80".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 0, "no lookup, no thread");
        // The agent's IP family still applies.
        let v4 = ureq::config::Config::builder()
            .ip_family(IpFamily::Ipv4Only)
            .build();
        let uri: Uri = "https://[::1]/x".parse().unwrap();
        assert!(matches!(
            resolver.resolve_at(&uri, &v4, NextTimeout::default(), now),
            Err(ureq::Error::HostNotFound)
        ));
    }

    #[test]
    fn a_name_is_looked_up_once_per_ttl_and_a_failure_is_never_kept() {
        let (resolver, lookups) = counting(false);
        let start = Instant::now();
        let named = |port: u16| vec![SocketAddr::from((NAMED, port))];
        assert_eq!(
            resolve(&resolver, "https://api.example.test/a", start).unwrap(),
            named(443)
        );
        assert_eq!(
            resolve(
                &resolver,
                "https://api.example.test/b",
                start + NAME_TTL / 2
            )
            .unwrap(),
            named(443)
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 1, "reused within the TTL");
        // Another port is another entry.
        assert_eq!(
            resolve(&resolver, "https://api.example.test:8443/", start).unwrap(),
            named(8443)
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        // DNS may have changed once the TTL is over: looked up again.
        resolve(&resolver, "https://api.example.test/c", start + NAME_TTL).unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), 3);

        let (failing, failed) = counting(true);
        for _ in 0..3 {
            assert!(matches!(
                resolve(&failing, "https://down.example.test/", start),
                Err(ureq::Error::HostNotFound)
            ));
        }
        assert_eq!(failed.load(Ordering::SeqCst), 3, "failures are not cached");
    }

    #[test]
    fn the_cache_holds_a_few_names_and_drops_the_oldest() {
        let (resolver, lookups) = counting(false);
        let start = Instant::now();
        let at = |i: u32| start + Duration::from_millis(u64::from(i));
        for i in 0..(MAX_NAMES as u32 + 1) {
            resolve(&resolver, &format!("https://h{i}.example.test/"), at(i)).unwrap();
        }
        assert!(resolver.names.lock().entries.len() <= MAX_NAMES);
        let before = lookups.load(Ordering::SeqCst);
        // The newest is still kept, the oldest went.
        resolve(
            &resolver,
            &format!("https://h{MAX_NAMES}.example.test/"),
            at(10),
        )
        .unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), before);
        resolve(&resolver, "https://h0.example.test/", at(11)).unwrap();
        assert_eq!(lookups.load(Ordering::SeqCst), before + 1);
    }

    #[test]
    fn agents_reach_a_loopback_server_through_the_resolver() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).unwrap();
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .unwrap();
        });
        let response = http_agent(Duration::from_secs(5))
            .get(&format!("http://{addr}/"))
            .call()
            .unwrap();
        assert_eq!(response.status(), 204);
        server.join().unwrap();
    }
}
