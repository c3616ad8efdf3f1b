//! Trusting a private certificate authority (`--ca-cert`) for `wss://` URLs.
//!
//! Without it, `wss://` is verified against the built-in Mozilla roots (webpki-roots), as for
//! any public server. With it, the given CA is the only root trusted (like curl's `--cacert`):
//! a private deployment names its own CA and nothing else can impersonate it.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Unreadable, or not PEM.
    #[error("cannot read CA certificates from {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate rustls does not accept as a root, or none at all.
    #[error("{0} holds no usable CA certificate")]
    Unusable(PathBuf),
}

/// The rustls client configuration for `wss://` and `https://`: trusting only the CA
/// certificates in `ca` (PEM) when one is named, else the Mozilla roots. Shared by the terminal
/// client and `taskflow bench`, so both verify a server the same way.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, CaError> {
    let roots = match ca {
        Some(path) => private_roots(path)?,
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The CA certificates in `path`, as the only roots.
fn private_roots(path: &Path) -> Result<rustls::RootCertStore, CaError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| CaError::Read {
            path: path.to_owned(),
            source,
        })?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(CaError::Unusable(path.to_owned()));
    }
    Ok(roots)
}
