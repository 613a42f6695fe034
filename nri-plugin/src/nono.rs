//! Everything about how nono is put in front of a container: the directory
//! mounted into it, the exact command line, and the environment the workload
//! must not be able to use to widen its own sandbox.

use std::path::{Path, PathBuf};

use kubefence_shared::profile::ProfileName;
use kubefence_shared::wrap;

pub use kubefence_shared::wrap::{ABSENT_NAME, BINARY_NAME, PROFILES_DIR};

/// Mount options of the nono directory: read-only so the workload cannot
/// replace nono or a profile, no setuid or devices from it.
pub const MOUNT_OPTIONS: [&str; 4] = ["bind", "ro", "nosuid", "nodev"];

/// Where nono lives on the host and where it appears in containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonoLayout {
    host_dir: PathBuf,
    container_dir: String,
}

/// A bind mount to add to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: String,
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Why a layout is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("host nono directory {0:?} must be an absolute path")]
    HostNotAbsolute(PathBuf),
    #[error("host nono directory {0:?} is not valid UTF-8")]
    HostNotUtf8(PathBuf),
    #[error(
        "container mount point {0:?} must be an absolute path other than \"/\", \
         without \".\", \"..\", empty components or a trailing '/'"
    )]
    BadContainerDir(String),
}

impl NonoLayout {
    pub fn new(host_dir: impl Into<PathBuf>, container_dir: &str) -> Result<Self, LayoutError> {
        let host_dir = host_dir.into();
        if !host_dir.is_absolute() {
            return Err(LayoutError::HostNotAbsolute(host_dir));
        }
        if host_dir.to_str().is_none() {
            return Err(LayoutError::HostNotUtf8(host_dir));
        }
        let ok = container_dir.len() > 1
            && container_dir.starts_with('/')
            && container_dir[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !ok {
            return Err(LayoutError::BadContainerDir(container_dir.to_owned()));
        }
        Ok(Self {
            host_dir,
            container_dir: container_dir.to_owned(),
        })
    }

    pub fn host_dir(&self) -> &Path {
        &self.host_dir
    }

    pub fn container_dir(&self) -> &str {
        &self.container_dir
    }

    /// The nono binary on the host, checked at startup.
    pub fn host_binary(&self) -> PathBuf {
        self.host_dir.join(BINARY_NAME)
    }

    /// The profile catalog directory on the host.
    pub fn host_profiles(&self) -> PathBuf {
        self.host_dir.join(PROFILES_DIR)
    }

    /// The nono binary as the container sees it.
    pub fn binary(&self) -> String {
        format!("{}/{BINARY_NAME}", self.container_dir)
    }

    /// The profile file as the container sees it.
    pub fn profile_path(&self, profile: &ProfileName) -> String {
        wrap::profile_path(&self.container_dir, profile)
    }

    /// The absent path on the host (see [`wrap::ABSENT_NAME`]).
    pub fn host_absent_path(&self) -> PathBuf {
        self.host_dir.join(ABSENT_NAME)
    }

    /// The container's new argv ([`wrap::wrap_args`]).
    pub fn wrap_args(&self, profile: &ProfileName, original: &[String]) -> Vec<String> {
        wrap::wrap_args(&self.container_dir, profile, original)
    }

    /// Whether `args` run under this layout's nono with some profile.
    pub fn is_wrapped(&self, args: &[String]) -> bool {
        wrap::wrapped_profile(&self.container_dir, args).is_some()
    }

    /// The read-only bind mount of the host directory.
    pub fn mount(&self) -> MountSpec {
        MountSpec {
            destination: self.container_dir.clone(),
            kind: "bind".to_owned(),
            // Checked to be UTF-8 in `new`.
            source: self.host_dir.to_string_lossy().into_owned(),
            options: MOUNT_OPTIONS.iter().map(|o| (*o).to_owned()).collect(),
        }
    }
}

/// Prefixes of environment variable names that nono reads to change what the
/// sandbox allows. The container's environment is chosen by the workload, so
/// every such variable is removed before nono starts.
pub const SANDBOX_ENV_PREFIXES: &[&str] = &["NONO_"];

/// Whether the variable called `key` is an input of nono's and must not reach
/// it from the workload.
pub fn is_sandbox_env(key: &str) -> bool {
    SANDBOX_ENV_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The name of a `KEY=VALUE` entry (the whole entry if it has no `=`).
pub fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// The sandbox inputs present in `env`, each distinct key once, in
/// first-seen order: the plugin sets each of them to the empty string.
///
/// Not removed: NRI's `-KEY` removal only edits what later plugins see; the
/// runtime never receives it (containerd/nri v0.11 and v0.12
/// `adaptation/result.go` `adjustEnv` drops the markers), so the workload's
/// value would reach nono. An empty value does reach it: the flags nono is
/// given win over `NONO_ALLOW` and the like, and an empty
/// `NONO_TOOL_SANDBOX_LAUNCH_SPEC` makes nono fail to start (fail closed)
/// instead of loading a workload-chosen spec.
pub fn env_to_blank(env: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in env.iter().map(|e| env_key(e)).filter(|k| is_sandbox_env(k)) {
        if !out.iter().any(|k| k == key) {
            out.push(key.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> NonoLayout {
        NonoLayout::new("/opt/kubefence", "/nono").unwrap()
    }

    fn p(name: &str) -> ProfileName {
        ProfileName::parse(name).unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn profile_is_always_an_absolute_path() {
        let l = NonoLayout::new("/srv/kf", "/run/kf/nono").unwrap();
        assert_eq!(
            l.profile_path(&p("strict")),
            "/run/kf/nono/profiles/strict.json"
        );
        assert_eq!(l.binary(), "/run/kf/nono/nono");
        assert_eq!(l.host_binary(), Path::new("/srv/kf/nono"));
        assert_eq!(l.host_profiles(), Path::new("/srv/kf/profiles"));
    }

    #[test]
    fn is_wrapped_uses_the_layout_directory() {
        let l = layout();
        let wrapped = l.wrap_args(&p("web"), &s(&["app"]));
        assert!(l.is_wrapped(&wrapped));
        let other = NonoLayout::new("/opt/kubefence", "/sandbox").unwrap();
        assert!(!other.is_wrapped(&wrapped));
    }

    #[test]
    fn mount_is_read_only_bind() {
        assert_eq!(
            layout().mount(),
            MountSpec {
                destination: "/nono".into(),
                kind: "bind".into(),
                source: "/opt/kubefence".into(),
                options: s(&["bind", "ro", "nosuid", "nodev"]),
            }
        );
    }

    #[test]
    fn layout_validation() {
        assert!(NonoLayout::new("opt/kubefence", "/nono").is_err());
        for bad in ["", "/", "nono", "/nono/", "/a//b", "/a/../b", "/./a"] {
            assert_eq!(
                NonoLayout::new("/opt/kubefence", bad),
                Err(LayoutError::BadContainerDir(bad.into())),
                "{bad:?}"
            );
        }
        assert!(NonoLayout::new("/opt/kubefence", "/run/nono").is_ok());
    }

    #[test]
    fn every_nono_variable_is_blanked_once() {
        let env = s(&[
            "PATH=/usr/bin",
            "NONO_ALLOW=/",
            "HOME=/root",
            "NONO_PROFILE=permissive",
            "NONO_ALLOW=/etc",
            "NONO_FLAG",
            "XNONO_ALLOW=/",
            "nono_allow=/",
        ]);
        assert_eq!(
            env_to_blank(&env),
            s(&["NONO_ALLOW", "NONO_PROFILE", "NONO_FLAG"])
        );
        assert!(env_to_blank(&s(&["PATH=/bin"])).is_empty());
    }

    #[test]
    fn env_key_splits_at_the_first_equals() {
        assert_eq!(env_key("A=b=c"), "A");
        assert_eq!(env_key("A"), "A");
        assert_eq!(env_key("=x"), "");
        assert!(is_sandbox_env("NONO_"));
        assert!(!is_sandbox_env("NONO"));
    }
}
