//! trust.rs resolves the TLS settings (tls.rs) into the root certificates the REST calls and the
//! notification sockets verify servers against; it never opens a connection and never turns
//! verification off.

use crate::error::ConfigError;
use crate::tls::{TlsRoots, TlsSettings};
use rustls::pki_types::CertificateDer;
use std::sync::{Arc, OnceLock};

/// The Mozilla roots as rustls takes them: `webpki-roots` ships them already parsed, and this
/// store is assembled once per process and shared by every client that uses the default set.
pub(crate) fn mozilla_roots() -> &'static Arc<rustls::RootCertStore> {
    static MOZILLA: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    MOZILLA.get_or_init(|| {
        Arc::new(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    })
}

/// The default trust roots (the Mozilla set, nothing added) of the HTTP agents built outside a
/// client (`ClientCredentials::new`): one configuration for the whole process.
pub(crate) fn default_roots() -> &'static TrustRoots {
    static DEFAULT: OnceLock<TrustRoots> = OnceLock::new();
    DEFAULT.get_or_init(|| {
        TrustRoots::resolve(&TlsSettings::default()).expect("the bundled roots need no I/O")
    })
}

/// The trust roots of one client, resolved once at `build()` and shared by its HTTP agents and
/// its notification sockets: one root store, one rustls configuration.
///
/// The default set is the process-wide [`mozilla_roots`], never copied; the platform store is
/// read at `build()`, so that an empty one is an error there, as are unusable extra
/// certificates ([`parse_pem`](crate::tls::parse_pem)). The rustls configuration is assembled
/// on the first `https` or `wss` connection, once (a client that only talks `http`/`ws` to a
/// loopback emulator never builds it).
pub(crate) struct TrustRoots {
    /// What the server's certificate must chain to.
    store: Arc<rustls::RootCertStore>,
    /// Whether `store` came from the platform (for `Debug`).
    platform: bool,
    /// The configuration of every TLS connection of this client, built on first use.
    config: OnceLock<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoots")
            .field("platform", &self.platform)
            .field("roots", &self.store.len())
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
        let store = match settings.roots {
            TlsRoots::WebPki if settings.extra.is_empty() => mozilla_roots().clone(),
            TlsRoots::WebPki => {
                let mut store = rustls::RootCertStore::clone(mozilla_roots());
                add_parsed(&mut store, &settings.extra);
                Arc::new(store)
            }
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
                let mut store = rustls::RootCertStore::empty();
                add_parsed(&mut store, &found.certs);
                add_parsed(&mut store, &settings.extra);
                Arc::new(store)
            }
        };
        Ok(TrustRoots {
            store,
            platform: settings.roots == TlsRoots::Platform,
            config: OnceLock::new(),
        })
    }

    /// The rustls configuration of every `https` call and `wss` socket of this client, built
    /// on the first call and shared by every later one.
    pub(crate) fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.get_or_init(|| self.build_config()).clone()
    }

    /// The same, for the sockets (channel/connect.rs).
    pub(crate) fn socket_config(&self) -> Arc<rustls::ClientConfig> {
        self.client_config()
    }

    fn build_config(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(self.store.clone())
            .with_no_client_auth();
        Arc::new(config)
    }
}

/// Adds `certs` to `store`; one that cannot be parsed is logged and not trusted (the user's
/// own PEM was checked at the builder, so these come from the platform store).
fn add_parsed(store: &mut rustls::RootCertStore, certs: &[CertificateDer<'static>]) {
    let (_added, ignored) = store.add_parsable_certificates(certs.iter().cloned());
    if ignored > 0 {
        log::warn!("{ignored} root certificates could not be parsed and are not trusted");
    }
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
        // One store for REST and sockets: the bundled set, then the extra ones.
        assert_eq!(roots.store.len(), webpki_roots::TLS_SERVER_ROOTS.len() + 2);
        assert!(
            !Arc::ptr_eq(&roots.store, mozilla_roots()),
            "the shared Mozilla store itself is never extended"
        );
        assert_eq!(mozilla_roots().len(), webpki_roots::TLS_SERVER_ROOTS.len());
        let last = &roots.store.roots[roots.store.len() - 1];
        let mut alone = rustls::RootCertStore::empty();
        alone.add(extra[1].clone()).unwrap();
        assert_eq!(last.subject, alone.roots[0].subject);
    }

    #[test]
    fn every_default_client_shares_the_one_mozilla_store_and_builds_its_config_once() {
        let first = TrustRoots::resolve(&TlsSettings::default()).unwrap();
        let second = TrustRoots::resolve(&TlsSettings::default()).unwrap();
        // The Mozilla set is assembled once per process, shared by every client.
        assert!(Arc::ptr_eq(&first.store, mozilla_roots()));
        assert!(Arc::ptr_eq(&first.store, &second.store));
        assert!(
            first.config.get().is_none(),
            "built before any TLS connection"
        );
        // One configuration per client, for its REST calls and its sockets alike.
        let config = first.client_config();
        assert!(Arc::ptr_eq(&config, &first.socket_config()));
        assert!(Arc::ptr_eq(&config, &first.client_config()));
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
