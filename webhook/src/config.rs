//! The webhook's TOML configuration file, validated when it is loaded so a
//! bad file stops the process at start with a message naming the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kubefence_shared::profile::{Catalog, CatalogError, ProfileName};
use serde::Deserialize;

/// The NRI plugin name the webhook requires on sandboxed pods by default.
pub use kubefence_shared::keys::DEFAULT_PLUGIN_NAME as DEFAULT_REQUIRED_PLUGIN;

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
/// The apiserver's default webhook timeout: a request that has not arrived
/// by then is of no use to it.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 10;
/// Eight bodies of the default maximum size, within the Deployment's 256Mi.
pub const DEFAULT_MAX_BUFFERED_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Where the node plugin mounts nono and the profiles inside containers
/// (the node plugin's `container_dir`).
pub const DEFAULT_NONO_DIR: &str = "/nono";
/// One pod GET per `kubectl exec`; well below the webhook's 5 s timeout.
pub const DEFAULT_POD_LOOKUP_TIMEOUT_MS: u64 = 2000;
/// Groups every (authenticated) user or service account is in: naming one
/// as a break-glass group would make exec unconfined for everybody.
const UNIVERSAL_GROUPS: &[&str] = &[
    "system:authenticated",
    "system:unauthenticated",
    "system:serviceaccounts",
];

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

/// What happens to `kubectl exec` into a pod carrying a kubefence decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// Refuse it (break-glass users and groups excepted).
    #[default]
    Deny,
    /// Rewrite the command to run under `nono wrap` with the container's
    /// profile from the decision.
    Wrap,
}

impl ExecMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecMode::Deny => "deny",
            ExecMode::Wrap => "wrap",
        }
    }
}

/// The `[exec]` section as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfigFile {
    #[serde(default)]
    pub mode: ExecMode,
    /// Users allowed an unconfined exec (always audited).
    #[serde(default)]
    pub break_glass_users: Vec<String>,
    /// Groups whose members are allowed an unconfined exec (always audited).
    #[serde(default)]
    pub break_glass_groups: Vec<String>,
    /// nono's directory inside containers; must equal the node plugin's
    /// `container_dir`.
    #[serde(default = "default_nono_dir")]
    pub nono_dir: String,
    /// Timeout of the pod GET done for each exec, in milliseconds.
    #[serde(default = "default_lookup_timeout")]
    pub pod_lookup_timeout_ms: u64,
}

impl Default for ExecConfigFile {
    fn default() -> Self {
        Self {
            mode: ExecMode::default(),
            break_glass_users: Vec::new(),
            break_glass_groups: Vec::new(),
            nono_dir: default_nono_dir(),
            pod_lookup_timeout_ms: default_lookup_timeout(),
        }
    }
}

fn default_nono_dir() -> String {
    DEFAULT_NONO_DIR.into()
}
fn default_lookup_timeout() -> u64 {
    DEFAULT_POD_LOOKUP_TIMEOUT_MS
}

/// The validated exec policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPolicy {
    pub mode: ExecMode,
    pub break_glass_users: Vec<String>,
    pub break_glass_groups: Vec<String>,
    /// Absolute, without a trailing slash.
    pub nono_dir: String,
}

impl Default for ExecPolicy {
    fn default() -> Self {
        Self {
            mode: ExecMode::Deny,
            break_glass_users: Vec::new(),
            break_glass_groups: Vec::new(),
            nono_dir: DEFAULT_NONO_DIR.into(),
        }
    }
}

impl ExecConfigFile {
    fn validate(self) -> Result<(ExecPolicy, std::time::Duration), ConfigError> {
        for u in &self.break_glass_users {
            if u.trim().is_empty() || u.trim() != u {
                return Err(invalid(
                    "exec.break_glass_users",
                    format!("{u:?} is not a user name (empty or surrounded by spaces)"),
                ));
            }
        }
        for g in &self.break_glass_groups {
            if g.trim().is_empty() || g.trim() != g {
                return Err(invalid(
                    "exec.break_glass_groups",
                    format!("{g:?} is not a group name (empty or surrounded by spaces)"),
                ));
            }
            if UNIVERSAL_GROUPS.contains(&g.as_str()) || g.starts_with("system:serviceaccounts:") {
                return Err(invalid(
                    "exec.break_glass_groups",
                    format!(
                        "{g} contains every user or service account (of a namespace); it would make exec unconfined for all of them"
                    ),
                ));
            }
        }
        let dir = &self.nono_dir;
        let dir_ok = dir.starts_with('/')
            && dir.len() > 1
            && !dir.ends_with('/')
            && dir.split('/').skip(1).all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        if !dir_ok {
            return Err(invalid(
                "exec.nono_dir",
                format!(
                    "{dir:?} must be an absolute path like \"/nono\" (no trailing slash, no . or .., only letters, digits, . _ -), the node plugin's container_dir"
                ),
            ));
        }
        if !(100..=10_000).contains(&self.pod_lookup_timeout_ms) {
            return Err(invalid(
                "exec.pod_lookup_timeout_ms",
                format!(
                    "{} is out of range: use 100 to 10000, below the webhook's timeoutSeconds",
                    self.pod_lookup_timeout_ms
                ),
            ));
        }
        Ok((
            ExecPolicy {
                mode: self.mode,
                break_glass_users: self.break_glass_users,
                break_glass_groups: self.break_glass_groups,
                nono_dir: self.nono_dir,
            },
            std::time::Duration::from_millis(self.pod_lookup_timeout_ms),
        ))
    }
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
    /// How long a client may take to send a request's headers (and an idle
    /// HTTP/1.1 connection may wait for its next request), and separately
    /// its body.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Request-body bytes held in memory at once, across all requests.
    #[serde(default = "default_max_buffered_body")]
    pub max_buffered_body_bytes: usize,
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
    /// `kubectl exec` into sandboxed pods.
    #[serde(default)]
    pub exec: ExecConfigFile,
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
fn default_request_timeout() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_SECS
}
fn default_max_buffered_body() -> usize {
    DEFAULT_MAX_BUFFERED_BODY_BYTES
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
    pub exec: ExecPolicy,
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub request_timeout: std::time::Duration,
    pub max_buffered_body_bytes: usize,
    pub policy: PolicyConfig,
    /// Timeout of the pod GET done for each exec.
    pub pod_lookup_timeout: std::time::Duration,
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
        if !(1..=300).contains(&self.request_timeout_secs) {
            return Err(invalid(
                "request_timeout_secs",
                format!("{} is not between 1 and 300", self.request_timeout_secs),
            ));
        }
        if self.max_buffered_body_bytes < self.max_body_bytes {
            return Err(invalid(
                "max_buffered_body_bytes",
                format!(
                    "{} is less than max_body_bytes ({}): a request of the allowed size could never be read",
                    self.max_buffered_body_bytes, self.max_body_bytes
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
        if !kubefence_shared::keys::valid_plugin_name(&self.required_plugin) {
            return Err(invalid(
                "required_plugin",
                format!(
                    "{:?} is not an NRI plugin name (letters, digits, '-', '_', '.', '+')",
                    self.required_plugin
                ),
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
        let (exec, pod_lookup_timeout) = self.exec.validate()?;
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
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            max_buffered_body_bytes: self.max_buffered_body_bytes,
            policy: PolicyConfig {
                catalog,
                default_profile,
                allowed,
                runtime_classes: self.runtime_classes,
                required_plugin: self.required_plugin,
                trusted_users: self.trusted_users,
                exemptions: self.exemptions,
                strip_annotations: self.strip_annotations,
                exec,
            },
            pod_lookup_timeout,
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
        assert_eq!(c.policy.exec, ExecPolicy::default());
        assert_eq!(
            c.policy.exec.mode,
            ExecMode::Deny,
            "exec is denied by default"
        );
        assert_eq!(c.pod_lookup_timeout.as_millis(), 2000);
        assert_eq!(c.request_timeout.as_secs(), 10);
        assert_eq!(c.max_buffered_body_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn request_limits_are_checked() {
        let err = load(&format!("request_timeout_secs = 0\n{MINIMAL}")).unwrap_err();
        assert!(err.to_string().contains("request_timeout_secs"), "{err}");
        let err = load(&format!(
            "max_body_bytes = 1048576\nmax_buffered_body_bytes = 65536\n{MINIMAL}"
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("less than max_body_bytes"),
            "{err}"
        );
        let c = load(&format!(
            "request_timeout_secs = 3\nmax_buffered_body_bytes = 9000000\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(c.request_timeout.as_secs(), 3);
        assert_eq!(c.max_buffered_body_bytes, 9_000_000);
    }

    #[test]
    fn exec_section() {
        let c = load(&format!(
            "{MINIMAL}[exec]\nmode = \"wrap\"\nbreak_glass_users = [\"alice\"]\nbreak_glass_groups = [\"sre\"]\nnono_dir = \"/opt/nono\"\npod_lookup_timeout_ms = 500\n"
        ))
        .unwrap();
        assert_eq!(c.policy.exec.mode, ExecMode::Wrap);
        assert_eq!(c.policy.exec.break_glass_users, vec!["alice".to_string()]);
        assert_eq!(c.policy.exec.break_glass_groups, vec!["sre".to_string()]);
        assert_eq!(c.policy.exec.nono_dir, "/opt/nono");
        assert_eq!(c.pod_lookup_timeout.as_millis(), 500);
    }

    #[test]
    fn exec_errors_name_the_field() {
        let cases = [
            (
                "mode = \"allow\"",
                "unknown variant `allow`, expected `deny` or `wrap`",
            ),
            ("break_glass_users = [\"\"]", "`exec.break_glass_users`"),
            (
                "break_glass_groups = [\" sre\"]",
                "`exec.break_glass_groups`",
            ),
            (
                "break_glass_groups = [\"system:authenticated\"]",
                "unconfined for all of them",
            ),
            (
                "break_glass_groups = [\"system:serviceaccounts:team-a\"]",
                "`exec.break_glass_groups`",
            ),
            ("nono_dir = \"nono\"", "`exec.nono_dir`"),
            ("nono_dir = \"/nono/\"", "`exec.nono_dir`"),
            ("nono_dir = \"/a/../b\"", "`exec.nono_dir`"),
            ("nono_dir = \"/no no\"", "`exec.nono_dir`"),
            ("nono_dir = \"/\"", "`exec.nono_dir`"),
            ("pod_lookup_timeout_ms = 0", "`exec.pod_lookup_timeout_ms`"),
            (
                "pod_lookup_timeout_ms = 60000",
                "`exec.pod_lookup_timeout_ms`",
            ),
            ("break_glass = [\"alice\"]", "break_glass"),
        ];
        for (line, want) in cases {
            let err = load(&format!("{MINIMAL}[exec]\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "want {want:?} in {err:?}");
        }
    }

    #[test]
    fn example_files_parse() {
        let text = include_str!("../examples/config.toml");
        let file = ConfigFile::parse(text, Path::new("config.toml")).unwrap();
        assert!(file.tls.is_some() && file.keys.is_some());
        let c = file.validate(catalog()).unwrap();
        assert_eq!(
            c.policy.exec,
            ExecPolicy::default(),
            "documents the defaults"
        );
        let dev = include_str!("../examples/dev.toml");
        let file = ConfigFile::parse(dev, Path::new("dev.toml")).unwrap();
        assert!(!file.dev.namespaces.is_empty());
        let c = file.validate(catalog()).unwrap();
        assert_eq!(c.policy.exec.mode, ExecMode::Deny);
        assert_eq!(c.policy.exec.break_glass_groups, vec!["sre".to_string()]);
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
