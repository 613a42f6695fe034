//! The profile grammar and the profile catalog.
//!
//! A [`ProfileName`] is valid by construction. Its grammar is a strict subset
//! of nono's own (`[A-Za-z0-9-]`, no leading or trailing hyphen, no
//! underscore): lowercase ASCII letters, digits and inner hyphens, at most 63
//! bytes, like a DNS label. A value that starts with `-` can never reach
//! nono's command line, so a profile can never become a flag.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest accepted profile name, in bytes.
pub const MAX_PROFILE_LEN: usize = 63;

/// Why a string is not a profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileNameError {
    #[error("profile name is empty")]
    Empty,
    #[error("profile name is longer than {MAX_PROFILE_LEN} characters")]
    TooLong,
    #[error("profile name may not start or end with '-'")]
    EdgeHyphen,
    #[error("profile name contains {0:?}; only lowercase letters, digits and '-' are allowed")]
    BadChar(char),
}

/// A profile name that satisfies the grammar.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ProfileName(String);

impl ProfileName {
    /// Parses `value` against the grammar.
    pub fn parse(value: &str) -> Result<Self, ProfileNameError> {
        if value.is_empty() {
            return Err(ProfileNameError::Empty);
        }
        if value.len() > MAX_PROFILE_LEN {
            return Err(ProfileNameError::TooLong);
        }
        if let Some(c) = value
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(ProfileNameError::BadChar(c));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(ProfileNameError::EdgeHyphen);
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProfileName({:?})", self.0)
    }
}

impl std::str::FromStr for ProfileName {
    type Err = ProfileNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for ProfileName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ProfileName::parse(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// What the profile is for, shown to users in denial messages and docs.
    #[serde(default)]
    pub description: String,
}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading catalog {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing catalog {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("catalog lists no profiles")]
    Empty,
    #[error("catalog's strictest profile {0} is not one of its profiles")]
    UnknownStrictest(ProfileName),
    #[error(
        "profile {name} is in the catalog but its file {path} is missing or unreadable: {source}"
    )]
    MissingFile {
        name: ProfileName,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile file {path} is not valid JSON: {source}")]
    BadFile {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The names the cluster may use. The same `catalog.json` is read by the
/// webhook (to validate names) and by the node plugin (which passes nono the
/// file `<name>.json` beside the catalog, by absolute path, so nono never
/// looks a name up in the workload-controlled home directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The most restrictive profile: what the node applies when configured to
    /// confine rather than refuse a container without a valid decision.
    pub strictest: ProfileName,
    pub profiles: BTreeMap<ProfileName, CatalogEntry>,
}

/// File name of the catalog inside a profile directory.
pub const CATALOG_FILE: &str = "catalog.json";

impl Catalog {
    /// Parses and checks a catalog document.
    pub fn from_json(bytes: &[u8], origin: &Path) -> Result<Self, CatalogError> {
        let catalog: Catalog =
            serde_json::from_slice(bytes).map_err(|source| CatalogError::Parse {
                path: origin.to_owned(),
                source,
            })?;
        if catalog.profiles.is_empty() {
            return Err(CatalogError::Empty);
        }
        if !catalog.profiles.contains_key(&catalog.strictest) {
            return Err(CatalogError::UnknownStrictest(catalog.strictest));
        }
        Ok(catalog)
    }

    /// Loads `<dir>/catalog.json` without touching the profile files (the
    /// webhook's view).
    pub fn load(dir: &Path) -> Result<Self, CatalogError> {
        let path = dir.join(CATALOG_FILE);
        let bytes = std::fs::read(&path).map_err(|source| CatalogError::Read {
            path: path.clone(),
            source,
        })?;
        Self::from_json(&bytes, &path)
    }

    /// Loads the catalog and checks that every profile file exists and is
    /// JSON (the node's view: a missing file would make nono fail at start).
    pub fn load_with_files(dir: &Path) -> Result<Self, CatalogError> {
        let catalog = Self::load(dir)?;
        for name in catalog.profiles.keys() {
            let path = Self::profile_file(dir, name);
            let bytes = std::fs::read(&path).map_err(|source| CatalogError::MissingFile {
                name: name.clone(),
                path: path.clone(),
                source,
            })?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|source| CatalogError::BadFile { path, source })?;
        }
        Ok(catalog)
    }

    /// Where the profile file of `name` lives under `dir`.
    pub fn profile_file(dir: &Path, name: &ProfileName) -> PathBuf {
        dir.join(format!("{name}.json"))
    }

    pub fn contains(&self, name: &ProfileName) -> bool {
        self.profiles.contains_key(name)
    }

    /// The names, comma separated, for messages.
    pub fn names(&self) -> String {
        join_names(self.profiles.keys())
    }
}

/// Joins profile names with ", " for user-facing messages.
pub fn join_names<'a>(names: impl IntoIterator<Item = &'a ProfileName>) -> String {
    names
        .into_iter()
        .map(ProfileName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_grammar() {
        for ok in ["default", "strict", "a", "0", "web-server", "a1-b2-c3"] {
            assert_eq!(ProfileName::parse(ok).unwrap().as_str(), ok);
        }
        let max = "a".repeat(MAX_PROFILE_LEN);
        assert!(ProfileName::parse(&max).is_ok());
    }

    #[test]
    fn rejects_outside_grammar() {
        use ProfileNameError::*;
        let cases: &[(&str, ProfileNameError)] = &[
            ("", Empty),
            ("-p", EdgeHyphen),
            ("--allow=/", BadChar('=')),
            ("trailing-", EdgeHyphen),
            ("snake_case", BadChar('_')),
            ("Upper", BadChar('U')),
            ("a/b", BadChar('/')),
            ("x.json", BadChar('.')),
            ("with space", BadChar(' ')),
            ("nul\0", BadChar('\0')),
            ("ünïcode", BadChar('ü')),
            ("a\nb", BadChar('\n')),
        ];
        for (input, want) in cases {
            assert_eq!(
                ProfileName::parse(input).unwrap_err(),
                *want,
                "input {input:?}"
            );
        }
        assert_eq!(
            ProfileName::parse(&"a".repeat(MAX_PROFILE_LEN + 1)).unwrap_err(),
            TooLong
        );
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<ProfileName>("\"ok\"").is_ok());
        let err = serde_json::from_str::<ProfileName>("\"-rf\"").unwrap_err();
        assert!(err.to_string().contains("start or end"), "{err}");
    }

    fn catalog_json(strictest: &str) -> String {
        format!(
            r#"{{"strictest":"{strictest}","profiles":{{"default":{{"description":"d"}},"strict":{{}}}}}}"#
        )
    }

    #[test]
    fn catalog_parses_and_checks_strictest() {
        let c = Catalog::from_json(catalog_json("strict").as_bytes(), Path::new("x")).unwrap();
        assert!(c.contains(&ProfileName::parse("default").unwrap()));
        assert_eq!(c.names(), "default, strict");
        let err = Catalog::from_json(catalog_json("nope").as_bytes(), Path::new("x")).unwrap_err();
        assert!(matches!(err, CatalogError::UnknownStrictest(_)), "{err}");
    }

    #[test]
    fn catalog_rejects_bad_names_and_empty() {
        let bad = r#"{"strictest":"a","profiles":{"a":{},"Bad_Name":{}}}"#;
        assert!(matches!(
            Catalog::from_json(bad.as_bytes(), Path::new("x")),
            Err(CatalogError::Parse { .. })
        ));
        let empty = r#"{"strictest":"a","profiles":{}}"#;
        assert!(matches!(
            Catalog::from_json(empty.as_bytes(), Path::new("x")),
            Err(CatalogError::Empty)
        ));
    }

    #[test]
    fn load_with_files_requires_each_profile_file() {
        let dir = std::env::temp_dir().join(format!("kf-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CATALOG_FILE), catalog_json("strict")).unwrap();
        std::fs::write(dir.join("default.json"), "{}").unwrap();
        let err = Catalog::load_with_files(&dir).unwrap_err();
        assert!(matches!(err, CatalogError::MissingFile { .. }), "{err}");
        std::fs::write(dir.join("strict.json"), "not json").unwrap();
        let err = Catalog::load_with_files(&dir).unwrap_err();
        assert!(matches!(err, CatalogError::BadFile { .. }), "{err}");
        std::fs::write(dir.join("strict.json"), "{}").unwrap();
        assert!(Catalog::load_with_files(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
