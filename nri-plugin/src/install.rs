//! `kubefence-nri install`: what the DaemonSet's init container runs to put
//! nono and the profile catalog on the host, where the plugin bind-mounts
//! them into sandboxed containers.
//!
//! Every file is written under a temporary name in its final directory and
//! renamed into place, so a container starting at the same moment sees the
//! old file or the new one, never half of one. The catalog is checked before
//! anything is copied: a broken image never replaces a working install.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kubefence_shared::profile::{Catalog, CatalogError, CATALOG_FILE};

use crate::nono::{ABSENT_NAME, BINARY_NAME, PROFILES_DIR};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("source catalog is not usable: {0}")]
    Catalog(#[from] CatalogError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Copies `from/nono` and `from/profiles/{catalog.json,<profile>.json}` to
/// the same places under `to`. Returns the files written.
pub fn install(from: &Path, to: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let catalog = Catalog::load_with_files(&from.join(PROFILES_DIR))?;
    let profiles = to.join(PROFILES_DIR);
    std::fs::create_dir_all(&profiles).map_err(io(&profiles))?;
    let mut written = Vec::new();
    // Profiles first, the catalog that names them after, nono last: a
    // plugin that sees the new catalog always finds its files.
    for name in catalog.profiles.keys() {
        let src = Catalog::profile_file(&from.join(PROFILES_DIR), name);
        let dst = Catalog::profile_file(&profiles, name);
        written.push(copy_atomic(&src, &dst, 0o644)?);
    }
    written.push(copy_atomic(
        &from.join(PROFILES_DIR).join(CATALOG_FILE),
        &profiles.join(CATALOG_FILE),
        0o644,
    )?);
    written.push(copy_atomic(
        &from.join(BINARY_NAME),
        &to.join(BINARY_NAME),
        0o755,
    )?);
    // Never leave the path nono is told to allow in place.
    let absent = to.join(ABSENT_NAME);
    match std::fs::remove_file(&absent) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&absent)(e)),
        _ => {}
    }
    Ok(written)
}

fn copy_atomic(src: &Path, dst: &Path, mode: u32) -> Result<PathBuf, InstallError> {
    let bytes = std::fs::read(src).map_err(io(src))?;
    let file_name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dst.with_file_name(format!(".{file_name}.new"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, dst).map_err(io(dst))?;
    Ok(dst.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn source(dir: &Path, catalog: &str) {
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        std::fs::write(dir.join("nono"), "#!/bin/sh\n").unwrap();
        std::fs::write(dir.join("profiles/catalog.json"), catalog).unwrap();
        std::fs::write(dir.join("profiles/strict.json"), "{}").unwrap();
    }

    #[test]
    fn installs_binary_and_catalog_and_removes_the_absent_path() {
        let t = Tmp(std::env::temp_dir().join(format!("kf-install-{}", std::process::id())));
        let (from, to) = (t.0.join("from"), t.0.join("to"));
        source(&from, r#"{"strictest":"strict","profiles":{"strict":{}}}"#);
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(to.join(ABSENT_NAME), "planted").unwrap();

        let written = install(&from, &to).unwrap();
        assert_eq!(written.len(), 3);
        let mode = std::fs::metadata(to.join("nono"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(Catalog::load_with_files(&to.join("profiles")).is_ok());
        assert!(!to.join(ABSENT_NAME).exists());
        assert!(!to.join("profiles/.strict.json.new").exists());
    }

    #[test]
    fn broken_source_catalog_changes_nothing() {
        let t = Tmp(std::env::temp_dir().join(format!("kf-install-bad-{}", std::process::id())));
        let (from, to) = (t.0.join("from"), t.0.join("to"));
        // Names a profile whose file is missing.
        source(
            &from,
            r#"{"strictest":"strict","profiles":{"strict":{},"web":{}}}"#,
        );
        let err = install(&from, &to).unwrap_err();
        assert!(matches!(err, InstallError::Catalog(_)), "{err}");
        assert!(!to.exists());
    }
}
