//! The certificate in use, and its reload without a restart.
//!
//! [`Certificates`] is rustls's certificate resolver: every handshake reads the current
//! certified key from an [`ArcSwap`] (no lock; a handshake in progress keeps the `Arc` it
//! took). [`watch`] swaps in a new one when the files change (checked every
//! `tls_watch_interval_ms`) or on SIGHUP, so a renewal (certbot, an ACME client) needs no
//! downtime: open connections keep the session they negotiated, new ones get the new
//! certificate. A reload that fails (a bad PEM, a key that does not match, files caught
//! half-written) keeps the old certificate and logs an error; the next change tries again.

use super::{load_certified_key, TlsError};
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The certificate and key files, and what was loaded from them.
pub struct Certificates {
    /// The PEM certificate chain.
    cert: PathBuf,
    /// The PEM private key.
    key: PathBuf,
    /// What handshakes answer with now.
    current: ArcSwap<CertifiedKey>,
    /// The files' stamps just before the first load: [`watch`] starts from these, so a renewal
    /// that lands between the start and the watch's first check is not missed.
    loaded: Stamp,
}

/// A file's modification time and size, if it can be read.
type Stamp = [Option<(SystemTime, u64)>; 2];

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads the pair; an error here stops the server from starting.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, TlsError> {
        let stamp = stamp_of(&cert, &key);
        let certified = load_certified_key(&cert, &key)?;
        Ok(Arc::new(Self {
            cert,
            key,
            current: ArcSwap::from_pointee(certified),
            loaded: stamp,
        }))
    }

    /// Reads the files again and, if they hold a valid pair, answers with it from the next
    /// handshake on. On error the current pair stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let result = load_certified_key(&self.cert, &self.key);
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("tls_certificate_reloads_total", "result" => outcome).increment(1);
        self.current.store(Arc::new(result?));
        Ok(())
    }

    /// The files' modification times and sizes: what [`watch`] compares.
    fn stamp(&self) -> Stamp {
        stamp_of(&self.cert, &self.key)
    }
}

fn stamp_of(cert: &std::path::Path, key: &std::path::Path) -> Stamp {
    [cert, key].map(|path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reloads `certificates` whenever the files change (checked every `every`) or the process
/// gets SIGHUP, until the task is aborted.
pub async fn watch(certificates: Arc<Certificates>, every: Duration) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = certificates.loaded;
    let every = every.max(Duration::from_millis(10));
    // The first check one interval after the start (an interval's first tick is immediate).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let why = tokio::select! {
            _ = tick.tick() => "files changed",
            Some(()) = async {
                match &mut hangup {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => "SIGHUP",
        };
        #[cfg(not(unix))]
        let why = {
            tick.tick().await;
            "files changed"
        };
        let now = certificates.stamp();
        if why == "files changed" && now == seen {
            continue;
        }
        seen = now;
        match certificates.reload() {
            Ok(()) => tracing::info!(reason = why, "TLS certificate reloaded"),
            Err(err) => tracing::error!(
                reason = why,
                error = %err,
                "TLS certificate reload failed; keeping the current certificate"
            ),
        }
    }
}
