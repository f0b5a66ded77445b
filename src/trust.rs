//! trust.rs resolves the TLS settings (tls.rs) into the root certificates the REST calls and the
//! notification sockets verify servers against; it never opens a connection and never turns
//! verification off.

use crate::error::ConfigError;
use crate::tls::{TlsRoots, TlsSettings};
use rustls::pki_types::CertificateDer;
use std::sync::{Arc, OnceLock};

/// The trust roots of one client, resolved once at `build()` and shared by its HTTP agents and
/// its notification sockets.
///
/// Nothing is parsed for the default set: the sockets and `ureq` both use the Mozilla roots
/// that `webpki-roots` ships already parsed (the same crate, so the same set), and the sockets'
/// rustls configuration is assembled on the first `wss` connection, once (a client that only
/// talks `http`/`ws` to a loopback emulator never builds it). The platform store is read at
/// `build()`, so that an empty one is an error there, as are unusable extra certificates
/// ([`parse_pem`]).
pub(crate) struct TrustRoots {
    /// The platform store's certificates ([`TlsRoots::Platform`]), or `None` for the bundled
    /// Mozilla set.
    platform: Option<Vec<CertificateDer<'static>>>,
    /// The user's extra roots.
    extra: Vec<CertificateDer<'static>>,
    /// The same roots as `ureq` takes them.
    ureq: ureq::tls::TlsConfig,
    /// The sockets' rustls configuration, built on first use.
    sockets: OnceLock<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoots")
            .field("platform", &self.platform.as_ref().map(Vec::len))
            .field("extra", &self.extra.len())
            .finish_non_exhaustive()
    }
}

impl TrustRoots {
    /// Resolves `settings`: reads the platform store when it is asked for.
    ///
    /// # Errors
    /// [`ConfigError`] (field `tls_roots`) when the platform store was asked for and yields no
    /// certificate at all (a missing store must not silently mean "trust nothing", nor fall
    /// back to another set).
    pub(crate) fn resolve(settings: &TlsSettings) -> Result<TrustRoots, ConfigError> {
        let platform = match settings.roots {
            TlsRoots::WebPki => None,
            TlsRoots::Platform => {
                let found = rustls_native_certs::load_native_certs();
                for error in &found.errors {
                    log::warn!("reading the platform trust store: {error}");
                }
                if found.certs.is_empty() {
                    return Err(ConfigError {
                        field: "tls_roots",
                        reason: "the operating system's trust store has no certificate".into(),
                    });
                }
                Some(found.certs)
            }
        };
        let extra = settings.extra.clone();
        let ureq_roots = match &platform {
            None if extra.is_empty() => ureq::tls::RootCerts::WebPki,
            None => specific(webpki_root_certs::TLS_SERVER_ROOT_CERTS, extra.iter()),
            Some(certs) => specific(&[], certs.iter().chain(&extra)),
        };
        Ok(TrustRoots {
            platform,
            extra,
            ureq: ureq::tls::TlsConfig::builder()
                .root_certs(ureq_roots)
                .build(),
            sockets: OnceLock::new(),
        })
    }

    /// The rustls configuration of the `wss` sockets, built on the first call and shared by
    /// every later one.
    pub(crate) fn socket_config(&self) -> Arc<rustls::ClientConfig> {
        self.sockets
            .get_or_init(|| self.build_socket_config())
            .clone()
    }

    /// The sockets' root store: the bundled set comes parsed; the platform's and the extra
    /// certificates are parsed here.
    fn socket_roots(&self) -> rustls::RootCertStore {
        let mut store = rustls::RootCertStore::empty();
        let (_added, ignored) = match &self.platform {
            None => {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                store.add_parsable_certificates(self.extra.iter().cloned())
            }
            Some(certs) => {
                store.add_parsable_certificates(certs.iter().chain(&self.extra).cloned())
            }
        };
        if ignored > 0 {
            log::warn!("{ignored} root certificates could not be parsed and are not trusted");
        }
        store
    }

    fn build_socket_config(&self) -> Arc<rustls::ClientConfig> {
        let store = self.socket_roots();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(store)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// The same roots for `ureq` (REST and token calls). `ureq` builds its own rustls
    /// configuration from them per agent, on the agent's first `https` request.
    pub(crate) fn ureq_config(&self) -> &ureq::tls::TlsConfig {
        &self.ureq
    }
}

/// `bundled` (borrowed, not copied), then `owned` (copied), as `ureq` takes them.
fn specific<'a>(
    bundled: &'static [CertificateDer<'static>],
    owned: impl Iterator<Item = &'a CertificateDer<'static>>,
) -> ureq::tls::RootCerts {
    let bundled = bundled
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()));
    let owned = owned.map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned());
    ureq::tls::RootCerts::Specific(Arc::new(bundled.chain(owned).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::parse_pem;

    fn test_ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn pem_blocks_are_added_to_the_default_roots() {
        let pem = format!("{}{}", test_ca_pem(), test_ca_pem());
        let extra = parse_pem(pem.as_bytes()).unwrap();
        assert_eq!(extra.len(), 2);
        let settings = TlsSettings {
            roots: TlsRoots::WebPki,
            extra: extra.clone(),
        };
        let roots = TrustRoots::resolve(&settings).unwrap();
        // REST: the bundled certificates, then the extra ones.
        let ureq::tls::RootCerts::Specific(certs) = roots.ureq_config().root_certs() else {
            panic!("extra roots need a specific list");
        };
        assert_eq!(
            certs.len(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() + 2
        );
        let tail: Vec<&[u8]> = certs[certs.len() - 2..].iter().map(|c| c.der()).collect();
        let expected: Vec<&[u8]> = extra.iter().map(|c| c.as_ref()).collect();
        assert_eq!(tail, expected);
        // Sockets: the same set, parsed.
        assert_eq!(
            roots.socket_roots().len(),
            webpki_roots::TLS_SERVER_ROOTS.len() + 2
        );
    }

    #[test]
    fn default_roots_are_never_parsed_and_the_socket_config_is_built_once() {
        let roots = TrustRoots::resolve(&TlsSettings::default()).unwrap();
        // REST: ureq's own copy of the same pre-parsed set (the same webpki-roots crate).
        assert!(matches!(
            roots.ureq_config().root_certs(),
            ureq::tls::RootCerts::WebPki
        ));
        assert!(roots.sockets.get().is_none(), "built before any wss socket");
        let first = roots.socket_config();
        assert!(Arc::ptr_eq(&first, &roots.socket_config()));
        assert_eq!(
            roots.socket_roots().len(),
            webpki_roots::TLS_SERVER_ROOTS.len()
        );
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let e = parse_pem(b"hello").unwrap_err();
        assert_eq!(e.field, "root_certificates");
        assert!(e.reason.contains("no CERTIFICATE"), "{}", e.reason);
        let e = parse_pem(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(e.reason.contains("not valid PEM"), "{}", e.reason);
    }
}
