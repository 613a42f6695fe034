//! What the webhook decided for one pod, and what that decision binds.
//!
//! Mutating admission sees no pod UID and, for pods made from `generateName`,
//! no final name; the node sees the namespace, the final name, the runtime
//! handler and the container names. A decision therefore binds what both can
//! see: the namespace, the pod name or its `generateName` prefix, the
//! RuntimeClass handler, and the profiles. The key id is bound by the signed
//! JWS header (see [`crate::envelope`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::profile::ProfileName;

/// Version of the claims format. A verifier refuses any other.
pub const FORMAT_VERSION: u32 = 1;

/// How the apiserver turns `generateName` into a name: the prefix, cut to
/// 58 bytes, plus 5 characters of this alphabet (k8s.io/apiserver
/// `names.SimpleNameGenerator` over `utilrand.String`).
pub const GENERATED_SUFFIX_LEN: usize = 5;
pub const MAX_GENERATE_NAME_PREFIX: usize = 63 - GENERATED_SUFFIX_LEN;
const GENERATED_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The pod identity a decision is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum PodBinding {
    /// The pod was created with this exact name.
    Name(String),
    /// The pod was created from `generateName` with this prefix.
    GenerateName(String),
}

impl PodBinding {
    /// The binding for a pod as mutating admission sees it: its name, or
    /// its `generateName` prefix when it has no name yet. `None` if it has
    /// neither (the apiserver would refuse such a pod).
    pub fn from_metadata(name: Option<&str>, generate_name: Option<&str>) -> Option<Self> {
        match (name, generate_name) {
            (Some(n), _) if !n.is_empty() => Some(PodBinding::Name(n.to_owned())),
            (_, Some(g)) if !g.is_empty() => Some(PodBinding::GenerateName(g.to_owned())),
            _ => None,
        }
    }

    /// Whether a pod the node sees as `name` is the pod this binds.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            PodBinding::Name(n) => n == name,
            PodBinding::GenerateName(prefix) => {
                let cut = truncate_prefix(prefix);
                match name.strip_prefix(cut) {
                    Some(suffix) => {
                        suffix.len() == GENERATED_SUFFIX_LEN
                            && suffix.bytes().all(|b| GENERATED_ALPHABET.contains(&b))
                    }
                    None => false,
                }
            }
        }
    }
}

impl std::fmt::Display for PodBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PodBinding::Name(n) => write!(f, "name {n:?}"),
            PodBinding::GenerateName(p) => write!(f, "generateName {p:?}"),
        }
    }
}

fn truncate_prefix(prefix: &str) -> &str {
    if prefix.len() <= MAX_GENERATE_NAME_PREFIX {
        return prefix;
    }
    // Names are ASCII (DNS subdomain) but never slice inside a character.
    let mut end = MAX_GENERATE_NAME_PREFIX;
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    &prefix[..end]
}

/// The signed claims: the JWS payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Format version, [`FORMAT_VERSION`].
    pub ver: u32,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name or generateName prefix.
    pub pod: PodBinding,
    /// The RuntimeClass handler the pod must run under.
    pub handler: String,
    /// The pod-wide profile: applies to any container not listed in
    /// `containers` (for example an ephemeral debug container added later).
    pub profile: ProfileName,
    /// The profile resolved for every container and init container at
    /// admission.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, ProfileName>,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
}

impl Claims {
    /// The profile for the container called `name`.
    pub fn profile_for(&self, container: &str) -> &ProfileName {
        self.containers.get(container).unwrap_or(&self.profile)
    }

    /// Whether `other` decides the same thing, ignoring when it was issued.
    /// The webhook uses this to stay idempotent under reinvocation.
    pub fn same_decision(&self, other: &Claims) -> bool {
        Claims {
            iat: 0,
            ..self.clone()
        } == Claims {
            iat: 0,
            ..other.clone()
        }
    }
}

/// What the node sees of the pod and checks a decision against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView<'a> {
    pub namespace: &'a str,
    pub pod_name: &'a str,
    pub handler: &'a str,
}

/// Time limits a verifier applies to `iat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Now, seconds since the Unix epoch.
    pub now: i64,
    /// How far in the future `iat` may lie (clock skew between webhook and
    /// node), in seconds.
    pub max_skew: i64,
    /// The oldest decision accepted, in seconds; `None` accepts any age
    /// (pods live long and their containers restart).
    pub max_age: Option<i64>,
}

impl Freshness {
    pub const DEFAULT_SKEW: i64 = 300;

    pub fn at(now: i64) -> Self {
        Self {
            now,
            max_skew: Self::DEFAULT_SKEW,
            max_age: None,
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_from_metadata_prefers_the_name() {
        assert_eq!(
            PodBinding::from_metadata(Some("web-0"), Some("web-")),
            Some(PodBinding::Name("web-0".into()))
        );
        assert_eq!(
            PodBinding::from_metadata(Some(""), Some("web-")),
            Some(PodBinding::GenerateName("web-".into()))
        );
        assert_eq!(PodBinding::from_metadata(None, Some("")), None);
        assert_eq!(PodBinding::from_metadata(None, None), None);
    }

    #[test]
    fn name_binding_is_exact() {
        let b = PodBinding::Name("web-0".into());
        assert!(b.matches("web-0"));
        assert!(!b.matches("web-1"));
        assert!(!b.matches("web-0x"));
        assert!(!b.matches(""));
    }

    #[test]
    fn generate_name_binding_accepts_only_generated_suffixes() {
        let b = PodBinding::GenerateName("web-7f9c4-".into());
        assert!(b.matches("web-7f9c4-x2b9z"));
        assert!(!b.matches("web-7f9c4-"), "no suffix");
        assert!(!b.matches("web-7f9c4-x2b9"), "short suffix");
        assert!(!b.matches("web-7f9c4-x2b9zz"), "long suffix");
        assert!(!b.matches("web-7f9c4-aaaaa"), "vowels are not generated");
        assert!(!b.matches("web-7f9c4-X2B9Z"), "uppercase is not generated");
        assert!(!b.matches("api-7f9c4-x2b9z"), "other prefix");
    }

    #[test]
    fn generate_name_prefix_is_truncated_like_the_apiserver() {
        let long = format!("{}-", "a".repeat(70));
        let b = PodBinding::GenerateName(long.clone());
        let name = format!("{}bcdfg", &long[..MAX_GENERATE_NAME_PREFIX]);
        assert_eq!(name.len(), 63);
        assert!(b.matches(&name));
        assert!(!b.matches(&format!("{long}bcdfg")));
    }

    #[test]
    fn claims_json_shape_is_stable() {
        let c = Claims {
            ver: 1,
            namespace: "team-a".into(),
            pod: PodBinding::GenerateName("web-".into()),
            handler: "nono-runc".into(),
            profile: ProfileName::parse("default").unwrap(),
            containers: [("app".to_string(), ProfileName::parse("strict").unwrap())].into(),
            iat: 1_700_000_000,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"ver":1,"namespace":"team-a","pod":{"generateName":"web-"},"handler":"nono-runc","profile":"default","containers":{"app":"strict"},"iat":1700000000}"#
        );
        assert_eq!(serde_json::from_str::<Claims>(&json).unwrap(), c);
        assert_eq!(c.profile_for("app").as_str(), "strict");
        assert_eq!(c.profile_for("debugger").as_str(), "default");
    }

    #[test]
    fn same_decision_ignores_only_iat() {
        let a = Claims {
            ver: 1,
            namespace: "n".into(),
            pod: PodBinding::Name("p".into()),
            handler: "h".into(),
            profile: ProfileName::parse("default").unwrap(),
            containers: BTreeMap::new(),
            iat: 1,
        };
        assert!(a.same_decision(&Claims {
            iat: 2,
            ..a.clone()
        }));
        assert!(!a.same_decision(&Claims {
            handler: "other".into(),
            ..a.clone()
        }));
    }
}
