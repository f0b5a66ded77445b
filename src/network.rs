//! network.rs assembles how one client reaches the service: which proxy serves which host, the
//! trust roots, the HTTP agents (and the registry of their open sockets, which a shutdown cuts)
//! and the socket address rewriting. It resolves settings once, at `build()`; it never opens a
//! connection itself.

use crate::config::Config;
use crate::error::ConfigError;
use crate::error::{Cause, ProxyError};
use crate::gateway::StreamingOverride;
use crate::http::connector::OpenSockets;
use crate::proxy::ProxyPolicy;
use crate::trust::TrustRoots;
use std::sync::Arc;
use std::time::Duration;

/// Everything a connection of this client needs, resolved from [`Config`] and the environment.
pub(crate) struct Network {
    pub(crate) proxy: ProxyPolicy,
    /// The trust roots (and the one rustls configuration) of the REST calls and of the
    /// notification sockets.
    pub(crate) tls: Arc<TrustRoots>,
    pub(crate) streaming: StreamingOverride,
    /// The sockets the HTTP agents of [`agent`](Self::agent) hold open: REST and token calls.
    requests: Arc<OpenSockets>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("proxy", &self.proxy)
            .field("tls", &self.tls)
            .field("streaming", &self.streaming)
            .field("requests", &self.requests)
            .finish()
    }
}

/// An HTTP agent and whether its requests go through a proxy (so that a connection failure can
/// be blamed on the proxy).
#[derive(Clone, Debug)]
pub(crate) struct HttpAgent {
    pub(crate) agent: ureq::Agent,
    pub(crate) proxied: Proxied,
}

/// Whether requests go through a proxy, and whether they carry its credentials (so that a 407
/// says "refused the credentials" rather than "give credentials" when they were given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Proxied {
    /// Straight to the server.
    #[default]
    No,
    /// Through a proxy; `credentials`: its URL has user info, sent as `Proxy-Authorization`.
    Yes { credentials: bool },
}

impl Network {
    /// Resolves `config` against the process environment (`HTTPS_PROXY`, `NO_PROXY`, ...).
    ///
    /// # Errors
    /// [`ConfigError`] for an unusable proxy URL (explicit or from the environment) or an empty
    /// platform trust store.
    pub(crate) fn from_config(config: &Config) -> Result<Network, ConfigError> {
        Network::with_env(config, &|name| std::env::var(name).ok())
    }

    pub(crate) fn with_env(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Network, ConfigError> {
        let proxy = config.proxy.resolve(env)?;
        Ok(Network {
            proxy,
            tls: Arc::new(TrustRoots::resolve(&config.tls)?),
            streaming: config.streaming.clone(),
            requests: Arc::new(OpenSockets::default()),
        })
    }

    /// Cuts every REST and token call in flight on this client's agents: each socket they hold
    /// open (in use or pooled) is shut down, so a call blocked on a silent server fails at once
    /// with a transport error (`ApiError::Transport`, `TokenError::Transport`; through a proxy
    /// possibly `ApiError::Proxy`) instead of waiting out its request timeout. Calls that
    /// connect afterwards are not affected. Returns at once; never blocks on a call.
    ///
    /// Not interrupted: a DNS lookup or a TCP connect still under way (each bounded by the
    /// request timeout); [`close_requests`](Self::close_requests) refuses the socket as soon as
    /// the connect completes.
    pub(crate) fn interrupt_requests(&self) {
        self.requests.interrupt();
    }

    /// [`interrupt_requests`](Self::interrupt_requests), and from then on every new connection
    /// of this client's agents is refused at once with a transport error of kind
    /// `NotConnected` ("the client is shut down: no new connection is made"): no thread of the
    /// client stays inside a request. Permanent; returns at once.
    pub(crate) fn close_requests(&self) {
        self.requests.close();
    }

    /// An agent for requests to `base_url` (the REST or login base), bounded by `timeout`,
    /// through the proxy that serves that host, if any.
    pub(crate) fn agent(&self, base_url: &str, timeout: Duration) -> HttpAgent {
        let proxy = self.proxy.for_url(base_url);
        HttpAgent {
            agent: crate::http::agent_with(
                timeout,
                proxy.and_then(|p| p.to_ureq()),
                self.requests.clone(),
                {
                    let tls = self.tls.clone();
                    Arc::new(move || tls.client_config())
                },
            ),
            proxied: match proxy {
                None => Proxied::No,
                Some(p) => Proxied::Yes {
                    credentials: p.has_credentials(),
                },
            },
        }
    }
}

/// The proxy's share of a failed request: `Some` when the request went through a proxy and
/// failed there (the CONNECT was refused, or the proxy could not be reached).
pub(crate) fn proxy_failure(error: &ureq::Error, proxied: Proxied) -> Option<ProxyError> {
    let Proxied::Yes { credentials } = proxied else {
        return None;
    };
    match error {
        ureq::Error::ConnectProxyFailed(message) => Some(connect_failure(message, credentials)),
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            Some(ProxyError::Io(Cause::io(e)))
        }
        ureq::Error::Timeout(_) => Some(ProxyError::Timeout),
        _ => None,
    }
}

/// ureq says `proxy server responded 407/Proxy Authentication Required` (or `... did not
/// respond`): recover the status.
fn connect_failure(message: &str, credentials_sent: bool) -> ProxyError {
    let status = message
        .split("responded ")
        .nth(1)
        .and_then(|rest| rest.split(['/', ' ']).next())
        .and_then(|code| code.parse::<u16>().ok());
    match status {
        Some(407) => ProxyError::AuthenticationRequired {
            scheme: None,
            credentials_sent,
        },
        Some(status) => ProxyError::Refused { status },
        None => ProxyError::Io(message.chars().take(200).collect::<String>().into()),
    }
}

/// Loopback servers that never answer, for the tests of the agents' sockets (here and in
/// auth/).
#[cfg(test)]
pub(crate) mod testing {
    use super::Network;
    use std::time::Duration;

    /// A loopback server that accepts every connection and never answers; each accepted
    /// connection is announced (and held open until the test ends).
    pub(crate) fn silent_server() -> (String, crossbeam_channel::Receiver<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (accepted, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                held.push(stream);
                if accepted.send(()).is_err() {
                    return;
                }
            }
        });
        (base, rx)
    }

    /// What each request gets: generous for a slow machine, yet a call cut by a shutdown must
    /// return well before it.
    pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a cut call may take to return: far below [`REQUEST_TIMEOUT`].
    pub(crate) const PROMPTLY: Duration = Duration::from_secs(15);

    /// Starts `call` on a thread once the server has accepted its connection and the registry
    /// holds it; returns the receiver of its result.
    pub(crate) fn hanging<T: Send + 'static>(
        net: &Network,
        accepted: &crossbeam_channel::Receiver<()>,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> crossbeam_channel::Receiver<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(call());
        });
        accepted
            .recv_timeout(REQUEST_TIMEOUT)
            .expect("the call connected");
        let until = std::time::Instant::now() + REQUEST_TIMEOUT;
        while net.requests.len() == 0 {
            assert!(
                std::time::Instant::now() < until,
                "the socket was registered"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(rx.is_empty(), "the silent server never answered");
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{hanging, silent_server, REQUEST_TIMEOUT};
    use super::*;

    const PROXIED: Proxied = Proxied::Yes { credentials: false };

    #[test]
    fn ureq_connect_failures_become_typed_proxy_errors() {
        let e = ureq::Error::ConnectProxyFailed(
            "proxy server responded 407/Proxy Authentication Required".into(),
        );
        assert!(matches!(
            proxy_failure(&e, PROXIED),
            Some(ProxyError::AuthenticationRequired { .. })
        ));
        assert_eq!(proxy_failure(&e, Proxied::No), None);
        // Credentials in the proxy URL were sent: the 407 says they were refused.
        assert_eq!(
            proxy_failure(&e, Proxied::Yes { credentials: true }),
            Some(ProxyError::AuthenticationRequired {
                scheme: None,
                credentials_sent: true
            })
        );
        let e = ureq::Error::ConnectProxyFailed("proxy server responded 502/Bad Gateway".into());
        assert_eq!(
            proxy_failure(&e, PROXIED),
            Some(ProxyError::Refused { status: 502 })
        );
        let e = ureq::Error::ConnectProxyFailed("proxy server did not respond".into());
        assert!(matches!(
            proxy_failure(&e, PROXIED),
            Some(ProxyError::Io(_))
        ));
        let e = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            proxy_failure(&e, PROXIED),
            Some(ProxyError::Io(_))
        ));
        assert_eq!(proxy_failure(&e, Proxied::No), None);
    }

    #[test]
    fn each_base_gets_the_proxy_that_serves_its_host() {
        let config = Config {
            api_base: "https://api.mypurecloud.ie".into(),
            ..Config::default()
        };
        let env = |name: &str| match name {
            "HTTPS_PROXY" => Some("http://proxy.corp:3128".to_owned()),
            "NO_PROXY" => Some("login.mypurecloud.ie".to_owned()),
            _ => None,
        };
        let net = Network::with_env(&config, &env).unwrap();
        assert_eq!(
            net.agent("https://api.mypurecloud.ie", Duration::from_secs(1))
                .proxied,
            PROXIED
        );
        assert_eq!(
            net.agent("https://login.mypurecloud.ie", Duration::from_secs(1))
                .proxied,
            Proxied::No
        );
        assert_eq!(
            net.agent("http://127.0.0.1:1", Duration::from_secs(1))
                .proxied,
            Proxied::No
        );
    }

    #[test]
    fn interrupting_cuts_a_hanging_call_and_closing_also_refuses_new_ones() {
        let (base, accepted) = silent_server();
        let net = Network::with_env(&Config::default(), &|_| None).unwrap();
        let agent = net.agent(&base, REQUEST_TIMEOUT).agent;
        let get = |agent: &ureq::Agent| {
            let (agent, url) = (agent.clone(), format!("{base}/api/v2/tokens/me"));
            move || agent.get(&url).call().map(|r| r.status())
        };

        let first = hanging(&net, &accepted, get(&agent));
        net.interrupt_requests();
        let error = first
            .recv_timeout(super::testing::PROMPTLY)
            .expect("returned promptly");
        let error = error.expect_err("the server never answered");
        assert!(!matches!(error, ureq::Error::Timeout(_)), "{error:?}");
        assert_eq!(net.requests.len(), 0, "the cut socket left the registry");

        // An interrupt is not a close: the next call connects and hangs like the first.
        let second = hanging(&net, &accepted, get(&agent));
        net.close_requests();
        let error = second
            .recv_timeout(super::testing::PROMPTLY)
            .expect("returned promptly");
        assert!(error.is_err(), "{error:?}");

        // Closed: a new call fails at once, without waiting for any server.
        let started = std::time::Instant::now();
        match get(&agent)() {
            Err(ureq::Error::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::NotConnected);
                assert!(e.to_string().contains("shut down"), "{e}");
            }
            other => panic!("expected a refused connection, got {other:?}"),
        }
        assert!(started.elapsed() < super::testing::PROMPTLY);
    }

    /// A TLS server on 127.0.0.1 whose self-signed certificate (returned, PEM) names
    /// `localhost`; it answers one request per connection with 204 and reports how each
    /// handshake ended.
    fn self_signed_https() -> (String, String, crossbeam_channel::Receiver<String>) {
        use std::io::{Read, Write};
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let pem = certified.cert.pem();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut buf = [0u8; 4096];
                let outcome = match tls.read(&mut buf) {
                    Ok(n) => {
                        let _ = tls.write_all(
                            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        let _ = tls.flush();
                        format!("read {n} bytes of application data")
                    }
                    Err(e) => format!("handshake failed: {e}"),
                };
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        });
        (base, pem, rx)
    }

    #[test]
    fn rest_calls_verify_certificates_with_the_clients_roots() {
        let (base, pem, server) = self_signed_https();
        // Default roots: the self-signed certificate is refused, no request is sent.
        let net = Network::with_env(&Config::default(), &|_| None).unwrap();
        let error = net
            .agent(&base, REQUEST_TIMEOUT)
            .agent
            .get(&format!("{base}/api/v2/tokens/me"))
            .call()
            .expect_err("an unknown issuer");
        assert!(
            crate::http::transport_message(&error).contains("certificate"),
            "{error:?}"
        );
        let outcome = server.recv_timeout(REQUEST_TIMEOUT).unwrap();
        assert!(outcome.starts_with("handshake failed"), "{outcome}");

        // The same certificate added as a root: verified, the request goes through.
        let config = Config {
            tls: crate::tls::TlsSettings {
                roots: crate::tls::TlsRoots::WebPki,
                extra: crate::tls::parse_pem(pem.as_bytes()).unwrap(),
            },
            ..Config::default()
        };
        let net = Network::with_env(&config, &|_| None).unwrap();
        let response = net
            .agent(&base, REQUEST_TIMEOUT)
            .agent
            .get(&format!("{base}/api/v2/tokens/me"))
            .call()
            .unwrap();
        assert_eq!(response.status(), 204);
        let outcome = server.recv_timeout(REQUEST_TIMEOUT).unwrap();
        assert!(outcome.contains("application data"), "{outcome}");
        // REST and sockets verify with the one configuration of the client.
        assert!(Arc::ptr_eq(
            &net.tls.client_config(),
            &net.tls.socket_config()
        ));
    }
}
