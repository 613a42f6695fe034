//! Key and certificate files: `keygen`, the trust set, and the `--dev`
//! directory with its generated material and built-in catalog.

use std::io::Write;
use std::path::{Path, PathBuf};

use kubefence_shared::envelope::{KeyError, Signer, TrustSet};
use kubefence_shared::profile::{Catalog, CatalogEntry, ProfileName};

use crate::tls;

pub const SIGNING_KEY_FILE: &str = "decision-signing.pem";
pub const PUBLIC_KEY_FILE: &str = "decision-public.pem";
pub const TLS_CERT_FILE: &str = "tls.crt";
pub const TLS_KEY_FILE: &str = "tls.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `contents` to `path` with `mode`, created fresh so a private
/// key is never briefly world-readable.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), KeyFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents.as_bytes()).map_err(io(path))
}

/// Writes a fresh signing key (PKCS#8, 0600) and its public key into `dir`.
pub fn keygen(dir: &Path) -> Result<Signer, KeyFileError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let signer = Signer::generate()?;
    write_file(&dir.join(SIGNING_KEY_FILE), &signer.private_pem()?, 0o600)?;
    write_file(&dir.join(PUBLIC_KEY_FILE), &signer.public_pem()?, 0o644)?;
    Ok(signer)
}

/// The signer's own key plus every public key in `extra` (files, or
/// directories of `*.pem` / `*.pub`, as [`TrustSet::load`] reads them).
pub fn trust_set(signer: &Signer, extra: &[PathBuf]) -> Result<TrustSet, KeyFileError> {
    let mut trust = TrustSet::new();
    trust.insert(signer.verifying_key());
    for path in extra {
        trust.extend(TrustSet::load(path)?);
    }
    Ok(trust)
}

/// The catalog `--dev` uses without `--catalog`: `default` and `strict`.
pub fn builtin_catalog() -> Catalog {
    let entry = |d: &str| CatalogEntry {
        description: d.to_owned(),
    };
    let name = |n: &str| ProfileName::parse(n).unwrap_or_else(|_| unreachable!("literal"));
    Catalog {
        strictest: name("strict"),
        profiles: [
            (name("default"), entry("built-in dev profile: default")),
            (name("strict"), entry("built-in dev profile: strictest")),
        ]
        .into(),
    }
}

/// What `--dev` prepared in its directory.
#[derive(Debug)]
pub struct DevMaterial {
    pub signer: Signer,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub public_key: PathBuf,
}

/// Reuses the dev directory's signing key and certificate when present and
/// valid (so a node plugin or curl configured once keeps working), and
/// generates what is missing.
pub fn prepare_dev_dir(dir: &Path, tls_names: &[String]) -> Result<DevMaterial, KeyFileError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key_path = dir.join(SIGNING_KEY_FILE);
    let signer = match Signer::load(&key_path) {
        Ok(s) => s,
        Err(_) => keygen(dir)?,
    };
    let public_key = dir.join(PUBLIC_KEY_FILE);
    write_file(&public_key, &signer.public_pem()?, 0o644)?;
    let (cert, key) = (dir.join(TLS_CERT_FILE), dir.join(TLS_KEY_FILE));
    if tls::CertStore::load(&cert, &key).is_err() {
        let (c, k) = tls::self_signed(tls_names)?;
        write_file(&cert, &c, 0o644)?;
        write_file(&key, &k, 0o600)?;
    }
    Ok(DevMaterial {
        signer,
        cert,
        key,
        public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_writes_a_private_0600_key_that_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let signer = keygen(dir.path()).unwrap();
        let private = dir.path().join(SIGNING_KEY_FILE);
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Signer::load(&private).unwrap().kid(), signer.kid());
        let trust = TrustSet::load(&dir.path().join(PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(trust.key_ids().next(), Some(signer.kid()));
    }

    #[test]
    fn trust_set_adds_rotation_keys_from_files_and_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let old = keygen(&dir.path().join("old")).unwrap();
        let other = keygen(&dir.path().join("other")).unwrap();
        // A mounted trust directory holds public keys only.
        let trust_dir = dir.path().join("trust");
        std::fs::create_dir_all(&trust_dir).unwrap();
        std::fs::copy(
            dir.path().join("other").join(PUBLIC_KEY_FILE),
            trust_dir.join("other.pem"),
        )
        .unwrap();
        std::fs::write(trust_dir.join(".hidden.pem"), "ignored").unwrap();
        let me = Signer::generate().unwrap();
        let t = trust_set(
            &me,
            &[dir.path().join("old").join(PUBLIC_KEY_FILE), trust_dir],
        )
        .unwrap();
        let ids: Vec<_> = t.key_ids().cloned().collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.contains(me.kid()) && ids.contains(old.kid()) && ids.contains(other.kid()));
    }

    #[test]
    fn dev_dir_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = prepare_dev_dir(dir.path(), &["localhost".into()]).unwrap();
        let cert = std::fs::read(&a.cert).unwrap();
        let b = prepare_dev_dir(dir.path(), &["localhost".into()]).unwrap();
        assert_eq!(a.signer.kid(), b.signer.kid());
        assert_eq!(cert, std::fs::read(&b.cert).unwrap());
        assert!(builtin_catalog().contains(&ProfileName::parse("strict").unwrap()));
    }
}
