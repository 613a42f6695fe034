//! The serving certificate, reloaded from files without a restart.
//!
//! The kubelet updates Secret volumes by swapping a `..data` symlink, which
//! file watches on `tls.crt` itself miss; polling the resolved content
//! catches it and any other rotation. A new pair is used only if it parses
//! and the key matches the certificate, otherwise the old one stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no PEM CERTIFICATE block")]
    NoCertificate(PathBuf),
    #[error("{path}: invalid PEM certificate: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{path}: no usable private key: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("key {key} does not match certificate {cert}: {detail}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider used everywhere: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and private key into a checked pair.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_owned(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_owned(),
        detail: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        detail: e.to_string(),
    })
}

/// The current serving pair, swapped atomically on reload.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The bytes last tried, so a bad pair is reported once, not per poll.
    last_seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

/// What a reload poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Loaded,
    Rejected,
}

impl CertStore {
    /// Loads the pair; fails if it is not usable (nothing to fall back to).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let (cert, key) = read_pair(cert_path, key_path)?;
        let ck = certified_key(&cert, &key, cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: ArcSwap::from_pointee(ck),
            last_seen: Mutex::new((cert, key)),
        }))
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Re-reads the files and swaps in a changed, valid pair.
    pub fn reload(&self) -> Reload {
        let (cert, key) = match read_pair(&self.cert_path, &self.key_path) {
            Ok(p) => p,
            Err(e) => {
                // Mid-swap or briefly missing files: keep serving.
                tracing::warn!(error = %e, "certificate reload: files unreadable; keeping current");
                return Reload::Rejected;
            }
        };
        let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.0 == cert && seen.1 == key {
            return Reload::Unchanged;
        }
        let result = certified_key(&cert, &key, &self.cert_path, &self.key_path);
        *seen = (cert, key);
        match result {
            Ok(ck) => {
                self.current.store(Arc::new(ck));
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                Reload::Loaded
            }
            Err(e) => {
                tracing::error!(error = %e, "certificate reload rejected; keeping current");
                Reload::Rejected
            }
        }
    }

    /// Polls every `every` until the returned task is dropped or aborted.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        every: Duration,
        metrics: Arc<Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = store.clone();
                let result = tokio::task::spawn_blocking(move || s.reload())
                    .await
                    .unwrap_or(Reload::Rejected);
                match result {
                    Reload::Unchanged => {}
                    Reload::Loaded => metrics.cert_reload("ok"),
                    Reload::Rejected => metrics.cert_reload("error"),
                }
            }
        })
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    Ok((read(cert)?, read(key)?))
}

/// Hands rustls whatever pair is current at each handshake.
#[derive(Debug)]
pub struct Resolver(pub Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// TLS 1.3 and 1.2, HTTP/2 and HTTP/1.1, certificate from `store`.
pub fn server_config(store: Arc<CertStore>) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(store)));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A self-signed certificate for `names` (DNS names or IP addresses), as
/// PEM (certificate, private key).
pub fn self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Config(format!("generating a self-signed certificate: {e}")))?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_swaps_valid_pairs_and_keeps_the_old_on_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (c1, k1) = self_signed(&["one.test".into()]).unwrap();
        std::fs::write(&c, &c1).unwrap();
        std::fs::write(&k, &k1).unwrap();
        let store = CertStore::load(&c, &k).unwrap();
        let first = store.current().cert[0].clone();
        assert_eq!(store.reload(), Reload::Unchanged);

        // Mismatched pair (new cert, old key): rejected, old kept, reported once.
        let (c2, k2) = self_signed(&["two.test".into()]).unwrap();
        std::fs::write(&c, &c2).unwrap();
        assert_eq!(store.reload(), Reload::Rejected);
        assert_eq!(store.current().cert[0], first);
        assert_eq!(store.reload(), Reload::Unchanged);

        std::fs::write(&k, &k2).unwrap();
        assert_eq!(store.reload(), Reload::Loaded);
        assert_ne!(store.current().cert[0], first);

        std::fs::write(&k, "garbage").unwrap();
        assert_eq!(store.reload(), Reload::Rejected);
        assert_ne!(store.current().cert[0], first, "still the second pair");
    }

    #[test]
    fn load_fails_on_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        assert!(matches!(
            CertStore::load(&c, &k),
            Err(TlsError::Read { .. })
        ));
        std::fs::write(&c, "nothing").unwrap();
        std::fs::write(&k, "nothing").unwrap();
        let err = CertStore::load(&c, &k).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
    }
}
