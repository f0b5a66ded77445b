//! tls.rs chooses the certificates a TLS server must chain to, for the REST calls and the
//! notification sockets alike; it never opens a connection and never turns verification off.
//!
//! Roots: the Mozilla set bundled with the crate (the default, the same everywhere), or the
//! operating system's trust store (where corporate CAs that inspect TLS are installed), plus
//! any PEM certificates the user adds.

use crate::error::ConfigError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Which root certificates a server's certificate must chain to. Certificates are always
/// verified; extra roots can be added to either set with
/// [`ClientBuilder::add_root_certificates`](crate::ClientBuilder::add_root_certificates) or
/// [`ClientBuilder::add_root_certificates_pem`](crate::ClientBuilder::add_root_certificates_pem).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRoots {
    /// The Mozilla root set bundled with the crate (`webpki-roots`). The default.
    #[default]
    WebPki,
    /// The operating system's trust store (via `rustls-native-certs`: on Linux the files that
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR` or the distribution's bundle name). Use it where a
    /// corporate CA is installed in the system.
    Platform,
}

/// One trusted root certificate (an X.509 certificate, DER), checked when it is made, for
/// [`ClientBuilder::add_root_certificates`](crate::ClientBuilder::add_root_certificates).
///
/// Parse a CA file up front with [`RootCertificate::parse_pem`], or take DER bytes with
/// [`RootCertificate::from_der`]: a bad certificate is then an error where it is read, in the
/// caller's hands, rather than at `build()`.
///
/// ```
/// use genesys_notify::RootCertificate;
///
/// let error = RootCertificate::parse_pem("not a certificate").unwrap_err();
/// assert_eq!(error.field, "root_certificates");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RootCertificate(CertificateDer<'static>);

impl RootCertificate {
    /// Every `CERTIFICATE` block of `pem` (PEM text, e.g. a corporate CA's file), in order.
    ///
    /// # Errors
    /// [`ConfigError`] (field `root_certificates`) when the text holds no certificate, a block
    /// cannot be decoded, or a decoded block is not an X.509 certificate.
    pub fn parse_pem(pem: impl AsRef<[u8]>) -> Result<Vec<RootCertificate>, ConfigError> {
        Ok(parse_pem(pem.as_ref())?
            .into_iter()
            .map(RootCertificate)
            .collect())
    }

    /// One certificate from its DER bytes (the binary form, e.g. a `.der` or `.cer` file).
    ///
    /// # Errors
    /// [`ConfigError`] (field `root_certificates`) when the bytes are not an X.509
    /// certificate.
    pub fn from_der(der: impl Into<Vec<u8>>) -> Result<RootCertificate, ConfigError> {
        let cert = CertificateDer::from(der.into());
        check_usable(&cert).map_err(|e| ConfigError {
            field: "root_certificates",
            reason: format!("not a usable X.509 certificate: {e}"),
        })?;
        Ok(RootCertificate(cert))
    }

    /// The certificate's DER bytes.
    pub fn der(&self) -> &[u8] {
        self.0.as_ref()
    }

    pub(crate) fn into_der(self) -> CertificateDer<'static> {
        self.0
    }
}

/// Only the size: a certificate is public, but its bytes say nothing in a log.
impl std::fmt::Debug for RootCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootCertificate({} bytes DER)", self.0.len())
    }
}

/// Whether rustls takes `cert` as a trust anchor (it parses the X.509 structure).
fn check_usable(cert: &CertificateDer<'static>) -> Result<(), rustls::Error> {
    rustls::RootCertStore::empty().add(cert.clone())
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
        check_usable(cert).map_err(|e| {
            bad(format!(
                "CERTIFICATE block {} is not a usable X.509 certificate: {e}",
                index + 1
            ))
        })?;
    }
    Ok(certs)
}
