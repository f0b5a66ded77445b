//! tls.rs chooses the certificates a TLS server must chain to, for the REST calls and the
//! notification sockets alike; it never opens a connection and never turns verification off.
//!
//! Roots: the Mozilla set bundled with the crate (the default, the same everywhere), or the
//! operating system's trust store (where corporate CAs that inspect TLS are installed), plus
//! any PEM certificates the user adds.

use crate::config::ConfigError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;

/// Which root certificates a server's certificate must chain to. Certificates are always
/// verified; extra roots can be added to either set with
/// [`ClientBuilder::add_root_certificates_pem`](crate::ClientBuilder::add_root_certificates_pem).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRoots {
    /// The Mozilla root set bundled with the crate (`webpki-root-certs`). The default.
    #[default]
    WebPki,
    /// The operating system's trust store (via `rustls-native-certs`: on Linux the files that
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR` or the distribution's bundle name). Use it where a
    /// corporate CA is installed in the system.
    Platform,
}

/// The TLS settings of one client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) roots: TlsRoots,
    /// Extra roots, DER, already parsed from the PEM the user gave.
    pub(crate) extra: Vec<CertificateDer<'static>>,
}

/// Parses every `CERTIFICATE` block of `pem`.
///
/// # Errors
/// [`ConfigError`] (field `root_certificates`) when the text holds no certificate, a block
/// cannot be decoded, or a decoded block is not an X.509 certificate.
pub(crate) fn parse_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bad = |reason: String| ConfigError {
        field: "root_certificates",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block found in the PEM text".into()));
    }
    // A block that decodes but is no usable CA certificate would otherwise be skipped with a
    // log line when the roots are assembled, and the user would meet "unknown issuer" later.
    for (index, cert) in certs.iter().enumerate() {
        rustls::RootCertStore::empty()
            .add(cert.clone())
            .map_err(|e| {
                bad(format!(
                    "CERTIFICATE block {} is not a usable X.509 certificate: {e}",
                    index + 1
                ))
            })?;
    }
    Ok(certs)
}

impl TlsSettings {
    /// The root certificates in force.
    ///
    /// # Errors
    /// [`ConfigError`] (field `tls_roots`) when the platform store was asked for and yields no
    /// certificate at all (a missing store must not silently mean "trust nothing", nor fall
    /// back to another set).
    pub(crate) fn root_certificates(&self) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let mut certs: Vec<CertificateDer<'static>> = match self.roots {
            TlsRoots::WebPki => webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec(),
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
                found.certs
            }
        };
        certs.extend(self.extra.iter().cloned());
        Ok(certs)
    }
}

/// The rustls configuration for `wss`, verifying against `roots`.
pub(crate) fn rustls_config(roots: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    let (_added, ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if ignored > 0 {
        log::warn!("{ignored} root certificates could not be parsed and are not trusted");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Arc::new(config)
}

/// The same roots for `ureq` (REST and token calls).
pub(crate) fn ureq_config(roots: &[CertificateDer<'static>]) -> ureq::tls::TlsConfig {
    let certs: Vec<ureq::tls::Certificate<'static>> = roots
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let roots = settings.root_certificates().unwrap();
        assert_eq!(
            roots.len(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() + 2
        );
        assert!(roots.ends_with(&extra));
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
