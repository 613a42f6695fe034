//! Every annotation and label key kubefence reads or writes, in one place.
//!
//! The webhook and the node plugin must agree on these byte for byte; a typo
//! on one side would silently disable enforcement, so nothing else in the
//! workspace spells a key out.

/// Pod annotation: the profile for every container of the pod that has no
/// per-container override.
pub const PROFILE: &str = "nono.sh/profile";

/// Prefix of the per-container override annotations, in the style of the old
/// AppArmor keys: `container.nono.sh/<container-name>: <profile>`.
pub const CONTAINER_PROFILE_PREFIX: &str = "container.nono.sh/";

/// Pod annotation: the signed decision (JWS compact serialisation).
pub const DECISION: &str = "nono.sh/decision";

/// Namespace label that opts a namespace in and selects the mode, like Pod
/// Security Admission's `pod-security.kubernetes.io/enforce`.
pub const NAMESPACE_MODE: &str = "nono.sh/mode";

/// Namespace annotation: the profile used when a pod names none.
pub const NAMESPACE_DEFAULT_PROFILE: &str = "nono.sh/default-profile";

/// Namespace annotation: comma-separated profiles pods in it may use. It can
/// only narrow the cluster policy, never widen it.
pub const NAMESPACE_ALLOWED_PROFILES: &str = "nono.sh/allowed-profiles";

/// Pod annotation read by containerd's NRI default validator: a JSON list of
/// plugin names that must have processed each container.
pub const REQUIRED_PLUGINS: &str = "required-plugins.noderesource.dev";

/// Every annotation key through which the NRI default validator learns which
/// plugins a pod requires (`.../pod` and `.../container.<name>` forms too).
pub fn is_required_plugins_key(key: &str) -> bool {
    key == REQUIRED_PLUGINS
        || key
            .strip_prefix(REQUIRED_PLUGINS)
            .is_some_and(|rest| rest == "/pod" || rest.starts_with("/container."))
}

/// The NRI plugin name the node registers and the webhook requires, unless
/// configured otherwise.
pub const DEFAULT_PLUGIN_NAME: &str = "kubefence";

/// Whether `name` is a plugin name the NRI runtime accepts (upstream
/// `api.CheckPluginName`: `[a-zA-Z0-9_.+-]+`). The webhook writes it into
/// `required-plugins.noderesource.dev`, the node registers under it; both
/// check it with this function.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// The per-container override key for `container`.
pub fn container_profile_key(container: &str) -> String {
    format!("{CONTAINER_PROFILE_PREFIX}{container}")
}

/// Label and annotation set by the kubelet on mirror pods of static pods.
pub const MIRROR_POD: &str = "kubernetes.io/config.mirror";

/// Whether an annotation key is owned by kubefence: only the webhook may set
/// or change it on an existing pod.
pub fn is_kubefence_owned(key: &str) -> bool {
    key == PROFILE
        || key == DECISION
        || key.starts_with(CONTAINER_PROFILE_PREFIX)
        || is_required_plugins_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_keys() {
        assert!(is_kubefence_owned("nono.sh/profile"));
        assert!(is_kubefence_owned("nono.sh/decision"));
        assert!(is_kubefence_owned("container.nono.sh/app"));
        assert!(is_kubefence_owned("required-plugins.noderesource.dev"));
        assert!(is_kubefence_owned("required-plugins.noderesource.dev/pod"));
        assert!(is_kubefence_owned(
            "required-plugins.noderesource.dev/container.app"
        ));
        assert!(!is_kubefence_owned("required-plugins.noderesource.devx"));
        assert!(!is_kubefence_owned("nono.sh/profilex"));
        assert!(!is_kubefence_owned("app.kubernetes.io/name"));
    }

    #[test]
    fn plugin_names() {
        assert!(valid_plugin_name(DEFAULT_PLUGIN_NAME));
        assert!(valid_plugin_name("a.b+c_d-1"));
        for bad in ["", "a b", "a/b", "a\"b", "ü"] {
            assert!(!valid_plugin_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn container_key() {
        assert_eq!(container_profile_key("web"), "container.nono.sh/web");
    }
}
