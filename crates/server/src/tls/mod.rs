//! HTTPS and WSS on the listening port, with rustls (the `ring` provider: no OpenSSL, nothing
//! to build but the crates' own sources).
//!
//! What it owns: the server's certificate and key ([`reload::Certificates`], swapped whole when
//! the files change or on SIGHUP), the rustls configuration (TLS 1.2 and 1.3, ALPN
//! `http/1.1`, the only HTTP the server speaks: WebSockets need it), and the plain-HTTP
//! listener that redirects to HTTPS ([`redirect`]). What it never touches: the connections
//! themselves, which the listener accepts and hands to [`tokio_rustls::TlsAcceptor`] under the
//! header timeout, and everything above TLS.

pub mod redirect;
pub mod reload;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no PEM certificate.
    #[error("cannot read certificates from {path}: {source}")]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// The key file cannot be read or holds no PEM private key.
    #[error("cannot read a private key from {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the pair (an unsupported key type, a key that does not match the
    /// certificate).
    #[error("the key in {key} does not go with the certificate in {cert}: {source}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// Only one of `tls_cert` and `tls_key` is set.
    #[error("tls_cert and tls_key go together: set both or neither")]
    Incomplete,
}

/// The provider every TLS object here uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and its private key, and checks they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificates {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|source| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// The TLS handshake for the listener, answering with whatever `certificates` holds at the
/// moment each handshake starts.
pub fn acceptor(certificates: Arc<reload::Certificates>) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
