//! The webhook's TOML configuration file, validated when it is loaded so a
//! bad file stops the process at start with a message naming the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kubefence_shared::profile::{Catalog, CatalogError, ProfileName};
use serde::Deserialize;

/// The NRI plugin name the webhook requires on sandboxed pods by default.
pub const DEFAULT_REQUIRED_PLUGIN: &str = "kubefence";

/// The annotation key used in the NRI project's own examples for
/// containerd's `tolerate_missing_plugins_annotation`. The key is chosen by
/// the node admin, so the list is configurable.
pub const DEFAULT_TOLERATE_MISSING_KEY: &str = "tolerate-missing-plugins.noderesource.dev";

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// AdmissionReview carries both object and oldObject; pods with large
/// annotations or many containers run into the megabytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
pub const DEFAULT_CERT_RELOAD_SECS: u64 = 5;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 25;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("config field `catalog_dir`: {0}")]
    Catalog(#[from] CatalogError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// A sandbox RuntimeClass: its object name and the CRI handler it maps to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeClassRef {
    pub name: String,
    pub handler: String,
}

/// Requests exempt from the policy, as in Pod Security Admission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exemptions {
    #[serde(default)]
    pub usernames: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub runtime_classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files are re-read, in seconds.
    #[serde(default = "default_reload")]
    pub reload_interval_secs: u64,
}

fn default_reload() -> u64 {
    DEFAULT_CERT_RELOAD_SECS
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// PKCS#8 PEM Ed25519 private key that signs decisions.
    pub signing_key: PathBuf,
    /// Extra trusted public keys (files or directories of `*.pem`), for
    /// rotation: decisions signed by them are still recognised as ours.
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
}

/// A namespace served from the config file instead of the API (`--dev`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticNamespace {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    #[serde(default)]
    pub namespaces: Vec<StaticNamespace>,
}

/// The file as written. Paths are taken as given (relative to the working
/// directory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Directory holding `catalog.json`. Optional only in `--dev`, which
    /// has a built-in catalog.
    #[serde(default)]
    pub catalog_dir: Option<PathBuf>,
    pub default_profile: String,
    /// Profiles pods may use; absent means the whole catalog.
    #[serde(default)]
    pub allowed_profiles: Option<Vec<String>>,
    /// The first entry is the class set on pods that name none.
    pub runtime_classes: Vec<RuntimeClassRef>,
    #[serde(default = "default_plugin")]
    pub required_plugin: String,
    /// Users allowed to change kubefence-owned annotations on existing pods.
    #[serde(default)]
    pub trusted_users: Vec<String>,
    #[serde(default)]
    pub exemptions: Exemptions,
    /// Annotation keys (and their `/pod` and `/container.<name>` forms)
    /// removed from sandboxed pods because they would let the node start a
    /// container without the plugin.
    #[serde(default = "default_strip")]
    pub strip_annotations: Vec<String>,
    /// Optional only in `--dev`, which generates a self-signed pair.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Optional only in `--dev`, which generates a key.
    #[serde(default)]
    pub keys: Option<KeysConfig>,
    #[serde(default)]
    pub dev: DevConfig,
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}
fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_grace() -> u64 {
    DEFAULT_SHUTDOWN_GRACE_SECS
}
fn default_plugin() -> String {
    DEFAULT_REQUIRED_PLUGIN.into()
}
fn default_strip() -> Vec<String> {
    vec![DEFAULT_TOLERATE_MISSING_KEY.into()]
}

/// The validated policy part of the configuration, as the pure policy
/// needs it.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub catalog: Catalog,
    pub default_profile: ProfileName,
    /// Never empty; a subset of the catalog.
    pub allowed: std::collections::BTreeSet<ProfileName>,
    /// Never empty.
    pub runtime_classes: Vec<RuntimeClassRef>,
    pub required_plugin: String,
    pub trusted_users: Vec<String>,
    pub exemptions: Exemptions,
    pub strip_annotations: Vec<String>,
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub policy: PolicyConfig,
    pub tls: Option<TlsConfig>,
    pub keys: Option<KeysConfig>,
    pub dev: DevConfig,
}

impl ConfigFile {
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks every field against `catalog` (the file's own catalog, or the
    /// built-in one in dev mode) and yields the usable configuration.
    pub fn validate(self, catalog: Catalog) -> Result<Config, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            invalid(
                "listen",
                format!("{:?} is not an address:port: {e}", self.listen),
            )
        })?;
        if self.max_body_bytes < 64 * 1024 {
            return Err(invalid(
                "max_body_bytes",
                format!(
                    "{} is too small for an AdmissionReview; use at least 65536",
                    self.max_body_bytes
                ),
            ));
        }
        let default_profile = parse_profile("default_profile", &self.default_profile)?;
        if !catalog.contains(&default_profile) {
            return Err(invalid(
                "default_profile",
                format!(
                    "{default_profile} is not in the catalog ({})",
                    catalog.names()
                ),
            ));
        }
        let allowed = match &self.allowed_profiles {
            None => catalog.profiles.keys().cloned().collect(),
            Some(list) => {
                let mut set = std::collections::BTreeSet::new();
                for raw in list {
                    let name = parse_profile("allowed_profiles", raw)?;
                    if !catalog.contains(&name) {
                        return Err(invalid(
                            "allowed_profiles",
                            format!("{name} is not in the catalog ({})", catalog.names()),
                        ));
                    }
                    set.insert(name);
                }
                set
            }
        };
        if !allowed.contains(&default_profile) {
            return Err(invalid(
                "default_profile",
                format!("{default_profile} is not one of allowed_profiles"),
            ));
        }
        if self.runtime_classes.is_empty() {
            return Err(invalid(
                "runtime_classes",
                "list at least one sandbox RuntimeClass as {name, handler}",
            ));
        }
        for rc in &self.runtime_classes {
            if !is_dns_subdomain(&rc.name) {
                return Err(invalid(
                    "runtime_classes",
                    format!("name {:?} is not a valid RuntimeClass name", rc.name),
                ));
            }
            if !is_dns_label(&rc.handler) {
                return Err(invalid(
                    "runtime_classes",
                    format!(
                        "handler {:?} of {} is not a valid CRI handler name",
                        rc.handler, rc.name
                    ),
                ));
            }
            if self.exemptions.runtime_classes.contains(&rc.name) {
                return Err(invalid(
                    "exemptions.runtime_classes",
                    format!("{} is a sandbox class and cannot be exempt", rc.name),
                ));
            }
        }
        if self.required_plugin.is_empty() || self.required_plugin.contains(['"', '\\']) {
            return Err(invalid(
                "required_plugin",
                format!("{:?} is not a plugin name", self.required_plugin),
            ));
        }
        for key in &self.strip_annotations {
            if key.is_empty() || kubefence_shared::keys::is_kubefence_owned(key) {
                return Err(invalid(
                    "strip_annotations",
                    format!("{key:?} cannot be stripped (empty or owned by kubefence)"),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.reload_interval_secs == 0 {
                return Err(invalid("tls.reload_interval_secs", "must be at least 1"));
            }
        }
        for ns in &self.dev.namespaces {
            if !is_dns_label(&ns.name) {
                return Err(invalid(
                    "dev.namespaces",
                    format!("{:?} is not a namespace name", ns.name),
                ));
            }
        }
        Ok(Config {
            listen,
            max_body_bytes: self.max_body_bytes,
            shutdown_grace_secs: self.shutdown_grace_secs,
            policy: PolicyConfig {
                catalog,
                default_profile,
                allowed,
                runtime_classes: self.runtime_classes,
                required_plugin: self.required_plugin,
                trusted_users: self.trusted_users,
                exemptions: self.exemptions,
                strip_annotations: self.strip_annotations,
            },
            tls: self.tls,
            keys: self.keys,
            dev: self.dev,
        })
    }

    /// Loads the catalog from `catalog_dir` (required outside dev mode) and
    /// validates.
    pub fn validate_with_catalog_dir(self) -> Result<Config, ConfigError> {
        let dir = self
            .catalog_dir
            .clone()
            .ok_or_else(|| invalid("catalog_dir", "required (the directory of catalog.json)"))?;
        let catalog = Catalog::load(&dir)?;
        self.validate(catalog)
    }
}

fn parse_profile(field: &'static str, raw: &str) -> Result<ProfileName, ConfigError> {
    ProfileName::parse(raw).map_err(|e| invalid(field, format!("{raw:?}: {e}")))
}

/// RFC 1123 label: what namespace names and CRI handlers must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: what RuntimeClass names must be.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::from_json(
            br#"{"strictest":"strict","profiles":{"default":{},"strict":{}}}"#,
            Path::new("test"),
        )
        .unwrap()
    }

    const MINIMAL: &str = r#"
default_profile = "default"
[[runtime_classes]]
name = "nono"
handler = "nono-runc"
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        ConfigFile::parse(text, Path::new("t.toml"))?.validate(catalog())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(c.policy.required_plugin, "kubefence");
        assert_eq!(c.policy.allowed.len(), 2, "whole catalog");
        assert_eq!(
            c.policy.strip_annotations,
            vec![DEFAULT_TOLERATE_MISSING_KEY.to_string()]
        );
    }

    #[test]
    fn example_files_parse() {
        let text = include_str!("../examples/config.toml");
        let file = ConfigFile::parse(text, Path::new("config.toml")).unwrap();
        assert!(file.tls.is_some() && file.keys.is_some());
        file.validate(catalog()).unwrap();
        let dev = include_str!("../examples/dev.toml");
        let file = ConfigFile::parse(dev, Path::new("dev.toml")).unwrap();
        assert!(!file.dev.namespaces.is_empty());
        file.validate(catalog()).unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                MINIMAL.replace("\"default\"", "\"nope\""),
                "`default_profile`: nope is not in the catalog",
            ),
            (
                MINIMAL.replace("\"default\"", "\"Bad_Name\""),
                "`default_profile`: \"Bad_Name\"",
            ),
            (
                format!("allowed_profiles = [\"strict\"]\n{MINIMAL}"),
                "`default_profile`: default is not one of allowed_profiles",
            ),
            (
                format!("allowed_profiles = [\"x\"]\n{MINIMAL}"),
                "`allowed_profiles`: x is not in the catalog",
            ),
            (format!("listen = \"nowhere\"\n{MINIMAL}"), "`listen`"),
            (
                "default_profile = \"default\"\nruntime_classes = []\n".to_string(),
                "`runtime_classes`",
            ),
            (
                MINIMAL.replace("nono-runc", "Nono_Runc"),
                "handler \"Nono_Runc\"",
            ),
            (
                format!("strip_annotations = [\"nono.sh/decision\"]\n{MINIMAL}"),
                "`strip_annotations`",
            ),
            (
                format!("{MINIMAL}[exemptions]\nruntime_classes = [\"nono\"]\n"),
                "sandbox class and cannot be exempt",
            ),
        ];
        for (text, want) in cases {
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = load(&format!("defualt_profile = \"x\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("defualt_profile"), "{err}");
    }

    #[test]
    fn catalog_dir_is_required_outside_dev() {
        let file = ConfigFile::parse(MINIMAL, Path::new("t")).unwrap();
        let err = file.validate_with_catalog_dir().unwrap_err().to_string();
        assert!(err.contains("catalog_dir"), "{err}");
    }
}
