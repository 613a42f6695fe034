//! Configuration: a TOML file, overridden by command-line flags, validated
//! into a [`Config`] with errors that name the offending setting.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::decide::OnInvalid;
use crate::nono::{LayoutError, NonoLayout};
use crate::runtime::NriVersion;

pub const DEFAULT_SOCKET: &str = "/var/run/nri/nri.sock";
/// The name the webhook lists in `required-plugins.noderesource.dev`.
pub use kubefence_shared::keys::DEFAULT_PLUGIN_NAME;
pub const DEFAULT_PLUGIN_INDEX: &str = "10";
pub const DEFAULT_SANDBOX_HANDLER: &str = "nono-runc";
pub const DEFAULT_HOST_DIR: &str = "/opt/kubefence";
pub const DEFAULT_CONTAINER_DIR: &str = "/nono";
pub const DEFAULT_PUBLIC_KEYS: &str = "/etc/kubefence/keys";
pub const DEFAULT_CONFIG: &str = "/etc/kubefence/nri.toml";

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Json,
    Compact,
}

/// The config file as written; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub socket: Option<PathBuf>,
    pub plugin_name: Option<String>,
    pub plugin_index: Option<String>,
    pub sandbox_handlers: Option<Vec<String>>,
    pub host_dir: Option<PathBuf>,
    pub container_dir: Option<String>,
    pub public_keys: Option<PathBuf>,
    pub on_invalid: Option<OnInvalid>,
    pub max_age_seconds: Option<i64>,
    pub max_skew_seconds: Option<i64>,
    pub validator: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub assume_nri_version: Option<String>,
}

impl FileConfig {
    /// Fields set in `over` replace those of `self`.
    pub fn overlay(self, over: FileConfig) -> FileConfig {
        FileConfig {
            socket: over.socket.or(self.socket),
            plugin_name: over.plugin_name.or(self.plugin_name),
            plugin_index: over.plugin_index.or(self.plugin_index),
            sandbox_handlers: over.sandbox_handlers.or(self.sandbox_handlers),
            host_dir: over.host_dir.or(self.host_dir),
            container_dir: over.container_dir.or(self.container_dir),
            public_keys: over.public_keys.or(self.public_keys),
            on_invalid: over.on_invalid.or(self.on_invalid),
            max_age_seconds: over.max_age_seconds.or(self.max_age_seconds),
            max_skew_seconds: over.max_skew_seconds.or(self.max_skew_seconds),
            validator: over.validator.or(self.validator),
            log_format: over.log_format.or(self.log_format),
            assume_nri_version: over.assume_nri_version.or(self.assume_nri_version),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub socket: PathBuf,
    pub plugin_name: String,
    pub plugin_index: String,
    pub sandbox_handlers: Vec<String>,
    pub layout: NonoLayout,
    pub public_keys: PathBuf,
    pub on_invalid: OnInvalid,
    pub max_age: Option<i64>,
    pub max_skew: i64,
    pub validator: bool,
    pub log_format: LogFormat,
    pub assume_nri_version: Option<NriVersion>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("plugin_name {0:?}: must be non-empty and use only [a-zA-Z0-9_.+-]")]
    PluginName(String),
    #[error("plugin_index {0:?}: must be exactly two digits, like \"10\"")]
    PluginIndex(String),
    #[error("sandbox_handlers: must list at least one non-empty RuntimeClass handler")]
    Handlers,
    #[error("{0}")]
    Layout(#[from] LayoutError),
    #[error("max_age_seconds {0}: must be positive (leave it out to accept any age)")]
    MaxAge(i64),
    #[error("max_skew_seconds {0}: must be zero or positive")]
    MaxSkew(i64),
    #[error("assume_nri_version: {0}")]
    NriVersion(String),
    #[error("{what} {path:?} must be an absolute path")]
    Relative { what: &'static str, path: PathBuf },
}

/// Reads the config file. A missing file is an error only if `required`
/// (given explicitly); the default path may be absent.
pub fn read_file(path: &Path, required: bool) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileConfig::default())
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse(&text, path)
}

pub fn parse(text: &str, origin: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_owned(),
        source: Box::new(e),
    })
}

pub use kubefence_shared::keys::valid_plugin_name;

/// Upstream `api.CheckPluginIndex`.
pub fn valid_plugin_index(idx: &str) -> bool {
    idx.len() == 2 && idx.bytes().all(|b| b.is_ascii_digit())
}

fn absolute(what: &'static str, path: PathBuf) -> Result<PathBuf, ConfigError> {
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(ConfigError::Relative { what, path })
    }
}

impl Config {
    /// Applies defaults and checks every setting.
    pub fn from_file(f: FileConfig) -> Result<Self, ConfigError> {
        let plugin_name = f
            .plugin_name
            .unwrap_or_else(|| DEFAULT_PLUGIN_NAME.to_owned());
        if !valid_plugin_name(&plugin_name) {
            return Err(ConfigError::PluginName(plugin_name));
        }
        let plugin_index = f
            .plugin_index
            .unwrap_or_else(|| DEFAULT_PLUGIN_INDEX.to_owned());
        if !valid_plugin_index(&plugin_index) {
            return Err(ConfigError::PluginIndex(plugin_index));
        }
        let sandbox_handlers = f
            .sandbox_handlers
            .unwrap_or_else(|| vec![DEFAULT_SANDBOX_HANDLER.to_owned()]);
        if sandbox_handlers.is_empty() || sandbox_handlers.iter().any(|h| h.trim().is_empty()) {
            return Err(ConfigError::Handlers);
        }
        let layout = NonoLayout::new(
            f.host_dir.unwrap_or_else(|| DEFAULT_HOST_DIR.into()),
            f.container_dir.as_deref().unwrap_or(DEFAULT_CONTAINER_DIR),
        )?;
        let max_age = match f.max_age_seconds {
            Some(a) if a <= 0 => return Err(ConfigError::MaxAge(a)),
            other => other,
        };
        let max_skew = f
            .max_skew_seconds
            .unwrap_or(kubefence_shared::Freshness::DEFAULT_SKEW);
        if max_skew < 0 {
            return Err(ConfigError::MaxSkew(max_skew));
        }
        let assume_nri_version = f
            .assume_nri_version
            .map(|v| v.parse::<NriVersion>())
            .transpose()
            .map_err(ConfigError::NriVersion)?;
        Ok(Self {
            socket: absolute("socket", f.socket.unwrap_or_else(|| DEFAULT_SOCKET.into()))?,
            plugin_name,
            plugin_index,
            sandbox_handlers,
            layout,
            public_keys: absolute(
                "public_keys",
                f.public_keys.unwrap_or_else(|| DEFAULT_PUBLIC_KEYS.into()),
            )?,
            on_invalid: f.on_invalid.unwrap_or_default(),
            max_age,
            max_skew,
            validator: f.validator.unwrap_or(true),
            log_format: f.log_format.unwrap_or_default(),
            assume_nri_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::from_file(FileConfig::default()).unwrap();
        assert_eq!(c.socket, Path::new("/var/run/nri/nri.sock"));
        assert_eq!(c.plugin_name, "kubefence");
        assert_eq!(c.plugin_index, "10");
        assert_eq!(c.sandbox_handlers, ["nono-runc"]);
        assert_eq!(c.layout.host_dir(), Path::new("/opt/kubefence"));
        assert_eq!(c.layout.container_dir(), "/nono");
        assert_eq!(c.public_keys, Path::new("/etc/kubefence/keys"));
        assert_eq!(c.on_invalid, OnInvalid::Reject);
        assert_eq!(c.max_age, None);
        assert_eq!(c.max_skew, 300);
        assert!(c.validator);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.assume_nri_version, None);
    }

    #[test]
    fn the_example_file_parses_and_validates() {
        let text = include_str!("../examples/config.toml");
        let f = parse(text, Path::new("examples/config.toml")).unwrap();
        let c = Config::from_file(f).unwrap();
        assert_eq!(c.on_invalid, OnInvalid::Reject);
        assert_eq!(c.sandbox_handlers, ["nono-runc"]);
    }

    #[test]
    fn file_values_and_overlay() {
        let f = parse(
            r#"
            socket = "/run/nri/nri.sock"
            plugin_index = "05"
            sandbox_handlers = ["nono-runc", "nono-crun"]
            on_invalid = "confine"
            max_age_seconds = 86400
            validator = false
            log_format = "compact"
            assume_nri_version = "v0.11.0"
            "#,
            Path::new("t"),
        )
        .unwrap();
        let flags = FileConfig {
            plugin_index: Some("20".into()),
            ..Default::default()
        };
        let c = Config::from_file(f.overlay(flags)).unwrap();
        assert_eq!(c.socket, Path::new("/run/nri/nri.sock"));
        assert_eq!(c.plugin_index, "20", "flags win over the file");
        assert_eq!(c.sandbox_handlers, ["nono-runc", "nono-crun"]);
        assert_eq!(c.on_invalid, OnInvalid::Confine);
        assert_eq!(c.max_age, Some(86400));
        assert!(!c.validator);
        assert_eq!(c.log_format, LogFormat::Compact);
        assert_eq!(c.assume_nri_version, Some(NriVersion::new(0, 11, 0)));
    }

    #[test]
    fn errors_name_the_setting() {
        let bad = |toml: &str| {
            let f = parse(toml, Path::new("t")).and_then(Config::from_file);
            f.unwrap_err().to_string()
        };
        assert!(bad("plugin_name = \"kube fence\"").contains("plugin_name"));
        assert!(bad("plugin_index = \"1\"").contains("plugin_index"));
        assert!(bad("plugin_index = \"1a\"").contains("plugin_index"));
        assert!(bad("sandbox_handlers = []").contains("sandbox_handlers"));
        assert!(bad("sandbox_handlers = [\"\"]").contains("sandbox_handlers"));
        assert!(bad("container_dir = \"nono\"").contains("container mount point"));
        assert!(bad("host_dir = \"opt\"").contains("host nono directory"));
        assert!(bad("max_age_seconds = 0").contains("max_age_seconds"));
        assert!(bad("max_skew_seconds = -1").contains("max_skew_seconds"));
        assert!(bad("assume_nri_version = \"new\"").contains("assume_nri_version"));
        assert!(bad("socket = \"nri.sock\"").contains("socket"));
        assert!(bad("on_invalid = \"allow\"").contains("on_invalid"));
        assert!(bad("unknown_key = 1").contains("unknown_key"));
    }

    #[test]
    fn plugin_name_grammar_matches_upstream() {
        for ok in ["kubefence", "kube_fence.v1+x-y", "A9"] {
            assert!(valid_plugin_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ü"] {
            assert!(!valid_plugin_name(bad), "{bad}");
        }
    }

    #[test]
    fn missing_default_file_is_fine_missing_explicit_file_is_not() {
        let p = Path::new("/nonexistent/kubefence/nri.toml");
        assert_eq!(read_file(p, false).unwrap(), FileConfig::default());
        assert!(matches!(read_file(p, true), Err(ConfigError::Read { .. })));
    }
}
