//! The admission decision, as a pure function of the cluster policy, the
//! namespace's metadata and the request. No I/O: the server parses, calls
//! [`Policy::decide`], then signs and patches what it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use kubefence_shared::audit::Outcome;
use kubefence_shared::decision::{Claims, PodBinding, FORMAT_VERSION};
use kubefence_shared::envelope::TrustSet;
use kubefence_shared::keys;
use kubefence_shared::profile::{join_names, ProfileName};

use crate::config::{PolicyConfig, RuntimeClassRef};

/// Namespace opt-in mode, from the `nono.sh/mode` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// What the webhook knows of a namespace (from the watch cache or config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Which endpoint the request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Mutating: sandboxes pods on CREATE, checks UPDATE.
    Mutate,
    /// Validating: never patches; checks UPDATE and the final CREATE object.
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
    Other(String),
}

impl Operation {
    pub fn parse(s: &str) -> Self {
        match s {
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "CONNECT" => Operation::Connect,
            other => Operation::Other(other.to_owned()),
        }
    }
}

/// One pod admission request, already parsed.
#[derive(Debug, Clone)]
pub struct PodRequest<'a> {
    pub endpoint: Endpoint,
    pub operation: Operation,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub username: &'a str,
    pub pod: &'a Pod,
    pub old_pod: Option<&'a Pod>,
    /// `None`: the namespace is not (yet) in the cache.
    pub namespace_meta: Option<&'a NamespaceMeta>,
    /// Seconds since the Unix epoch; becomes the decision's `iat`.
    pub now: i64,
}

/// Stable reason codes for audit records, metrics and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NotOptedIn,
    ExemptNamespace,
    ExemptUser,
    ExemptRuntimeClass,
    TrustedUser,
    MirrorPod,
    OperationIgnored,
    Sandboxed,
    AlreadySandboxed,
    Verified,
    NoOwnedChange,
    NamespaceUnknown,
    InvalidNamespacePolicy,
    InvalidProfile,
    UnknownProfile,
    ProfileNotAllowed,
    UnknownContainer,
    ForeignRuntimeClass,
    NoPodName,
    NoPodSpec,
    TamperedAnnotation,
    RuntimeClassChanged,
    NotSandboxed,
    DecisionMissing,
    DecisionInvalid,
    DecisionMismatch,
    PluginRequirementMissing,
    AuditMode,
    Attach,
    ExecDenied,
    ExecBreakGlass,
    ExecWrapped,
    ExecAlreadyWrapped,
    ExecNotWrapped,
    ExecNoCommand,
    ExecContainerAmbiguous,
    PodLookupFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            NotOptedIn => "not-opted-in",
            ExemptNamespace => "exempt-namespace",
            ExemptUser => "exempt-user",
            ExemptRuntimeClass => "exempt-runtime-class",
            TrustedUser => "trusted-user",
            MirrorPod => "mirror-pod",
            OperationIgnored => "operation-ignored",
            Sandboxed => "sandboxed",
            AlreadySandboxed => "already-sandboxed",
            Verified => "verified",
            NoOwnedChange => "no-owned-change",
            NamespaceUnknown => "namespace-unknown",
            InvalidNamespacePolicy => "invalid-namespace-policy",
            InvalidProfile => "invalid-profile",
            UnknownProfile => "unknown-profile",
            ProfileNotAllowed => "profile-not-allowed",
            UnknownContainer => "unknown-container",
            ForeignRuntimeClass => "foreign-runtime-class",
            NoPodName => "no-pod-name",
            NoPodSpec => "no-pod-spec",
            TamperedAnnotation => "tampered-annotation",
            RuntimeClassChanged => "runtime-class-changed",
            NotSandboxed => "not-sandboxed",
            DecisionMissing => "decision-missing",
            DecisionInvalid => "decision-invalid",
            DecisionMismatch => "decision-mismatch",
            PluginRequirementMissing => "plugin-requirement-missing",
            AuditMode => "audit-mode",
            Attach => "attach",
            ExecDenied => "exec-denied",
            ExecBreakGlass => "exec-break-glass",
            ExecWrapped => "exec-wrapped",
            ExecAlreadyWrapped => "exec-already-wrapped",
            ExecNotWrapped => "exec-not-wrapped",
            ExecNoCommand => "exec-no-command",
            ExecContainerAmbiguous => "exec-container-ambiguous",
            PodLookupFailed => "pod-lookup-failed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to change on the pod. `patch::build` turns it into a JSON patch
/// once the claims are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub claims: Claims,
    /// The pod already carries a valid decision for these claims: keep it
    /// rather than re-sign (no churn under reinvocation).
    pub keep_decision: bool,
    pub set_runtime_class: Option<String>,
    /// Annotations to add or overwrite (the decision is added separately).
    pub set_annotations: BTreeMap<String, String>,
    /// Existing annotations to delete.
    pub remove_annotations: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    Mutate(Box<Plan>),
    Deny,
}

/// What was decided, with everything the audit record and response need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub outcome: Outcome,
    pub reason: Reason,
    /// For a denial: what the user reads. Otherwise a short explanation.
    pub message: String,
    pub warnings: Vec<String>,
    pub mode: Option<Mode>,
    /// The claims enforce mode decides (or found), when a pod was resolved.
    pub claims: Option<Claims>,
    /// The RuntimeClass the pod ends up with, when resolved.
    pub runtime_class: Option<String>,
}

impl Decision {
    fn admit(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Admit,
            outcome: Outcome::Admit,
            reason,
            message: message.into(),
            warnings: Vec::new(),
            mode: None,
            claims: None,
            runtime_class: None,
        }
    }

    fn deny(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Deny,
            outcome: Outcome::Deny,
            ..Self::admit(reason, message)
        }
    }

    fn with_mode(mut self, mode: Option<Mode>) -> Self {
        self.mode = mode;
        self
    }

    pub fn allowed(&self) -> bool {
        !matches!(self.verdict, Verdict::Deny)
    }
}

/// A refusal found while resolving the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Denial {
    reason: Reason,
    message: String,
}

fn denial(reason: Reason, message: impl Into<String>) -> Denial {
    Denial {
        reason,
        message: message.into(),
    }
}

/// Where a profile value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    ContainerAnnotation(String),
    PodAnnotation,
    NamespaceDefault(String),
    ClusterDefault,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ContainerAnnotation(key) => write!(f, "pod annotation {key}"),
            Source::PodAnnotation => write!(f, "pod annotation {}", keys::PROFILE),
            Source::NamespaceDefault(ns) => write!(
                f,
                "annotation {} of namespace {ns}",
                keys::NAMESPACE_DEFAULT_PROFILE
            ),
            Source::ClusterDefault => f.write_str("the cluster default profile"),
        }
    }
}

/// What enforce mode expects of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    claims: Claims,
    runtime_class: RuntimeClassRef,
    warnings: Vec<String>,
}

/// The cluster policy plus the keys that recognise our own decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    cfg: PolicyConfig,
    trust: TrustSet,
}

fn annotations(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.annotations.as_ref().unwrap_or(&EMPTY)
}

fn runtime_class_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
        .filter(|s| !s.is_empty())
}

/// The value containerd's validator reads: a JSON list of plugin names.
pub fn required_plugins_value(plugin: &str) -> String {
    serde_json::Value::from(vec![plugin]).to_string()
}

impl Policy {
    /// `trust` must contain the signer's own public key.
    pub fn new(cfg: PolicyConfig, trust: TrustSet) -> Self {
        Self { cfg, trust }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    pub fn decide(&self, req: &PodRequest<'_>) -> Decision {
        match req.operation {
            Operation::Create => self.decide_create(req),
            Operation::Update => self.decide_update(req),
            _ => Decision::admit(
                Reason::OperationIgnored,
                "only CREATE and UPDATE are checked",
            ),
        }
    }

    fn mode(&self, ns: &NamespaceMeta, warnings: &mut Vec<String>) -> Option<Mode> {
        match ns.labels.get(keys::NAMESPACE_MODE).map(String::as_str) {
            None => None,
            Some("enforce") => Some(Mode::Enforce),
            Some("audit") => Some(Mode::Audit),
            // Like Pod Security Admission, an invalid level means the
            // strictest one rather than none.
            Some(other) => {
                warnings.push(format!(
                    "kubefence: namespace label {}={other:?} is invalid; enforcing",
                    keys::NAMESPACE_MODE
                ));
                Some(Mode::Enforce)
            }
        }
    }

    fn is_exempt_user(&self, user: &str) -> bool {
        self.cfg.exemptions.usernames.iter().any(|u| u == user)
    }

    fn is_trusted_user(&self, user: &str) -> bool {
        self.cfg.trusted_users.iter().any(|u| u == user)
    }

    fn decide_create(&self, req: &PodRequest<'_>) -> Decision {
        if self
            .cfg
            .exemptions
            .namespaces
            .iter()
            .any(|n| n == req.namespace)
        {
            return Decision::admit(Reason::ExemptNamespace, "namespace is exempt");
        }
        if self.is_exempt_user(req.username) {
            return Decision::admit(Reason::ExemptUser, "user is exempt");
        }
        let Some(ns) = req.namespace_meta else {
            // Failing open here would let a pod created right after its
            // namespace escape the sandbox; the apiserver retries controllers.
            return Decision::deny(
                Reason::NamespaceUnknown,
                format!(
                    "kubefence does not know namespace {} yet; retry in a few seconds",
                    req.namespace
                ),
            );
        };
        let mut warnings = Vec::new();
        let Some(mode) = self.mode(ns, &mut warnings) else {
            return Decision::admit(
                Reason::NotOptedIn,
                format!(
                    "namespace {} has no {} label",
                    req.namespace,
                    keys::NAMESPACE_MODE
                ),
            );
        };
        if mode == Mode::Audit && req.endpoint == Endpoint::Validate {
            // Nothing was mutated; the mutating endpoint already recorded
            // what enforce would have done.
            return Decision::admit(Reason::AuditMode, "audit mode: nothing to verify")
                .with_mode(Some(mode));
        }
        let mut decision = self.decide_create_enforced(req, ns);
        decision.warnings.splice(0..0, warnings);
        match mode {
            Mode::Enforce => decision.with_mode(Some(mode)),
            Mode::Audit => audit_only(decision),
        }
    }

    /// The CREATE decision as enforce mode makes it.
    fn decide_create_enforced(&self, req: &PodRequest<'_>, ns: &NamespaceMeta) -> Decision {
        let pod = req.pod;
        if annotations(pod).contains_key(keys::MIRROR_POD) {
            return Decision::admit(
                Reason::MirrorPod,
                "mirror pods of static pods are not mutated",
            );
        }
        if let Some(rc) = runtime_class_of(pod) {
            if self.cfg.exemptions.runtime_classes.iter().any(|c| c == rc) {
                return Decision::admit(
                    Reason::ExemptRuntimeClass,
                    format!("runtime class {rc} is exempt"),
                );
            }
        }
        let expected = match self.expected(req.namespace, ns, pod, req.now) {
            Ok(e) => e,
            Err(d) => return Decision::deny(d.reason, d.message),
        };
        let mut decision = match req.endpoint {
            Endpoint::Mutate => self.plan(pod, &expected),
            Endpoint::Validate => self.verify_final(pod, &expected),
        };
        decision.warnings.splice(0..0, expected.warnings);
        decision
    }

    /// Resolves the profiles, binding and runtime class for a pod.
    fn expected(
        &self,
        ns_name: &str,
        ns: &NamespaceMeta,
        pod: &Pod,
        now: i64,
    ) -> Result<Expected, Denial> {
        let Some(spec) = pod.spec.as_ref() else {
            return Err(denial(Reason::NoPodSpec, "the pod has no spec"));
        };
        let meta = &pod.metadata;
        let Some(binding) =
            PodBinding::from_metadata(meta.name.as_deref(), meta.generate_name.as_deref())
        else {
            return Err(denial(
                Reason::NoPodName,
                "the pod has neither metadata.name nor metadata.generateName",
            ));
        };
        let mut warnings = Vec::new();
        let allowed = self.allowed_in(ns_name, ns, &mut warnings)?;
        let allowed_msg = format!("allowed in namespace {ns_name}: {}", join_names(&allowed));

        let pod_annotations = annotations(pod);
        let containers: Vec<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| c.name.as_str())
            .collect();

        let mut errors: Vec<Denial> = Vec::new();
        // Typo protection: an override for a container that doesn't exist
        // would silently leave the real container on the pod-wide profile.
        for key in pod_annotations.keys() {
            if let Some(name) = key.strip_prefix(keys::CONTAINER_PROFILE_PREFIX) {
                if !containers.contains(&name) {
                    errors.push(denial(
                        Reason::UnknownContainer,
                        format!(
                            "annotation {key} names no container of this pod (containers: {})",
                            containers.join(", ")
                        ),
                    ));
                }
            }
        }

        let pod_wide = match pod_annotations.get(keys::PROFILE) {
            Some(v) => (v.as_str(), Source::PodAnnotation),
            None => match ns.annotations.get(keys::NAMESPACE_DEFAULT_PROFILE) {
                Some(v) => (v.as_str(), Source::NamespaceDefault(ns_name.to_owned())),
                None => (self.cfg.default_profile.as_str(), Source::ClusterDefault),
            },
        };
        let check = |value: &str, source: &Source, what: &str| -> Result<ProfileName, Denial> {
            let name = ProfileName::parse(value).map_err(|e| {
                denial(
                    Reason::InvalidProfile,
                    format!(
                        "{what}: profile {value:?} from {source} is invalid ({e}); {allowed_msg}"
                    ),
                )
            })?;
            if !self.cfg.catalog.contains(&name) {
                return Err(denial(
                    Reason::UnknownProfile,
                    format!("{what}: profile {value:?} from {source} is not in the cluster's catalog; {allowed_msg}"),
                ));
            }
            if !allowed.contains(&name) {
                return Err(denial(
                    Reason::ProfileNotAllowed,
                    format!(
                        "{what}: profile {value:?} from {source} is not allowed; {allowed_msg}"
                    ),
                ));
            }
            Ok(name)
        };
        let pod_profile = check(pod_wide.0, &pod_wide.1, "pod");
        let mut resolved = BTreeMap::new();
        for name in &containers {
            let key = keys::container_profile_key(name);
            let result = match pod_annotations.get(&key) {
                Some(v) => check(
                    v,
                    &Source::ContainerAnnotation(key),
                    &format!("container {name}"),
                ),
                // The pod-wide error is reported once, not per container.
                None => match &pod_profile {
                    Ok(p) => Ok(p.clone()),
                    Err(_) => continue,
                },
            };
            match result {
                Ok(p) => {
                    resolved.insert((*name).to_owned(), p);
                }
                Err(e) => errors.push(e),
            }
        }
        let pod_profile = match pod_profile {
            Ok(p) => p,
            Err(e) => {
                errors.insert(0, e);
                // Placeholder never used: errors is non-empty.
                self.cfg.default_profile.clone()
            }
        };
        if let Some(first) = errors.first() {
            let reason = first.reason;
            let message = errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(denial(reason, message));
        }

        let runtime_class = match runtime_class_of(pod) {
            None => self.cfg.runtime_classes[0].clone(),
            Some(rc) => match self.cfg.runtime_classes.iter().find(|c| c.name == rc) {
                Some(c) => c.clone(),
                None => {
                    return Err(denial(
                        Reason::ForeignRuntimeClass,
                        format!(
                            "runtimeClassName {rc:?} is not a kubefence sandbox class; pods in namespace {ns_name} must use one of: {} (or leave it unset)",
                            self.sandbox_class_names()
                        ),
                    ))
                }
            },
        };
        Ok(Expected {
            claims: Claims {
                ver: FORMAT_VERSION,
                namespace: ns_name.to_owned(),
                pod: binding,
                handler: runtime_class.handler.clone(),
                profile: pod_profile,
                containers: resolved,
                iat: now,
            },
            runtime_class,
            warnings,
        })
    }

    fn sandbox_class_names(&self) -> String {
        self.cfg
            .runtime_classes
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The cluster's allowed profiles, narrowed by the namespace annotation.
    fn allowed_in(
        &self,
        ns_name: &str,
        ns: &NamespaceMeta,
        warnings: &mut Vec<String>,
    ) -> Result<BTreeSet<ProfileName>, Denial> {
        let Some(raw) = ns.annotations.get(keys::NAMESPACE_ALLOWED_PROFILES) else {
            return Ok(self.cfg.allowed.clone());
        };
        let mut set = BTreeSet::new();
        let mut ignored = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            // A malformed list fails closed: guessing what the namespace
            // admin meant could widen their policy.
            let name = ProfileName::parse(item).map_err(|e| {
                denial(
                    Reason::InvalidNamespacePolicy,
                    format!(
                        "annotation {} of namespace {ns_name} lists {item:?}, which is invalid ({e}); a namespace admin must fix it",
                        keys::NAMESPACE_ALLOWED_PROFILES
                    ),
                )
            })?;
            if self.cfg.allowed.contains(&name) {
                set.insert(name);
            } else {
                ignored.push(name);
            }
        }
        if !ignored.is_empty() {
            warnings.push(format!(
                "kubefence: namespace may only narrow the cluster policy; ignoring {}",
                join_names(&ignored)
            ));
        }
        if set.is_empty() {
            return Err(denial(
                Reason::InvalidNamespacePolicy,
                format!(
                    "annotation {} of namespace {ns_name} ({raw:?}) allows none of the cluster's profiles ({}); a namespace admin must fix it",
                    keys::NAMESPACE_ALLOWED_PROFILES,
                    join_names(&self.cfg.allowed)
                ),
            ));
        }
        Ok(set)
    }

    /// Annotation keys a sandboxed pod must not carry: other forms of the
    /// required-plugins key (they override the pod-wide one per container)
    /// and the configured tolerate-missing keys in all their forms.
    fn is_forbidden_key(&self, key: &str) -> bool {
        if key != keys::REQUIRED_PLUGINS && keys::is_required_plugins_key(key) {
            return true;
        }
        self.cfg.strip_annotations.iter().any(|s| {
            key.strip_prefix(s.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest == "/pod" || rest.starts_with("/container.")
            })
        })
    }

    /// Our earlier decision on this pod, if it authenticates and decides
    /// the same as `expected`.
    fn existing_decision(&self, pod: &Pod, expected: &Claims) -> Option<Claims> {
        let token = annotations(pod).get(keys::DECISION)?;
        let verified = self.trust.authenticate(token).ok()?;
        verified
            .claims()
            .same_decision(expected)
            .then(|| verified.claims().clone())
    }

    fn plan(&self, pod: &Pod, expected: &Expected) -> Decision {
        let anns = annotations(pod);
        let existing = self.existing_decision(pod, &expected.claims);
        let keep_decision = existing.is_some();
        let claims = existing.unwrap_or_else(|| expected.claims.clone());

        let mut set_annotations = BTreeMap::new();
        // Recorded for people reading the pod; the decision is the authority.
        if !anns.contains_key(keys::PROFILE) {
            set_annotations.insert(keys::PROFILE.to_owned(), claims.profile.to_string());
        }
        let plugins = required_plugins_value(&self.cfg.required_plugin);
        if anns.get(keys::REQUIRED_PLUGINS) != Some(&plugins) {
            set_annotations.insert(keys::REQUIRED_PLUGINS.to_owned(), plugins);
        }
        let remove_annotations: BTreeSet<String> = anns
            .keys()
            .filter(|k| self.is_forbidden_key(k))
            .cloned()
            .collect();
        let set_runtime_class = runtime_class_of(pod)
            .is_none()
            .then(|| expected.runtime_class.name.clone());

        let mut decision = if keep_decision
            && set_annotations.is_empty()
            && remove_annotations.is_empty()
            && set_runtime_class.is_none()
        {
            Decision::admit(
                Reason::AlreadySandboxed,
                "the pod already carries its decision",
            )
        } else {
            Decision {
                verdict: Verdict::Mutate(Box::new(Plan {
                    claims: claims.clone(),
                    keep_decision,
                    set_runtime_class,
                    set_annotations,
                    remove_annotations,
                })),
                outcome: Outcome::Mutate,
                ..Decision::admit(
                    Reason::Sandboxed,
                    format!(
                        "sandboxed under runtime class {} with profile {}",
                        expected.runtime_class.name, claims.profile
                    ),
                )
            }
        };
        decision.claims = Some(claims);
        decision.runtime_class = Some(expected.runtime_class.name.clone());
        decision
    }

    /// Validating CREATE: the final object (after every mutating webhook)
    /// must carry what the mutating side decided.
    fn verify_final(&self, pod: &Pod, expected: &Expected) -> Decision {
        let anns = annotations(pod);
        let undone = "a later mutating webhook may have undone kubefence's change";
        let mut decision = if runtime_class_of(pod).is_none() {
            Decision::deny(
                Reason::NotSandboxed,
                format!("the pod has no runtimeClassName; {undone}"),
            )
        } else if let Some(key) = anns.keys().find(|k| self.is_forbidden_key(k)) {
            Decision::deny(
                Reason::PluginRequirementMissing,
                format!("the pod carries annotation {key}, which kubefence removes; {undone}"),
            )
        } else if anns.get(keys::REQUIRED_PLUGINS)
            != Some(&required_plugins_value(&self.cfg.required_plugin))
        {
            Decision::deny(
                Reason::PluginRequirementMissing,
                format!(
                    "annotation {} must be {}; {undone}",
                    keys::REQUIRED_PLUGINS,
                    required_plugins_value(&self.cfg.required_plugin)
                ),
            )
        } else {
            match anns.get(keys::DECISION) {
                None => Decision::deny(
                    Reason::DecisionMissing,
                    format!("the pod has no {} annotation; {undone}", keys::DECISION),
                ),
                Some(token) => match self.trust.authenticate(token) {
                    Err(e) => Decision::deny(
                        Reason::DecisionInvalid,
                        format!("annotation {}: {e}", keys::DECISION),
                    ),
                    Ok(v) => {
                        let got = v.claims();
                        // Validation sees the generated name; the decision
                        // binds the prefix mutation saw.
                        let name = pod.metadata.name.as_deref().unwrap_or("");
                        let pod_ok = match &got.pod {
                            PodBinding::Name(n) => n == name,
                            PodBinding::GenerateName(p) => {
                                pod.metadata.generate_name.as_deref() == Some(p.as_str())
                                    && (name.is_empty() || got.pod.matches(name))
                            }
                        };
                        let same = got.same_decision(&Claims {
                            pod: got.pod.clone(),
                            ..expected.claims.clone()
                        });
                        if pod_ok && same {
                            let mut d = Decision::admit(
                                Reason::Verified,
                                "the pod carries a valid decision",
                            );
                            d.claims = Some(got.clone());
                            d
                        } else {
                            Decision::deny(
                                Reason::DecisionMismatch,
                                format!(
                                    "the pod's decision does not match its spec and annotations (want handler {} profile {}); {undone}",
                                    expected.claims.handler, expected.claims.profile
                                ),
                            )
                        }
                    }
                },
            }
        };
        if decision.claims.is_none() {
            decision.claims = Some(expected.claims.clone());
        }
        decision.runtime_class = Some(expected.runtime_class.name.clone());
        decision
    }

    fn decide_update(&self, req: &PodRequest<'_>) -> Decision {
        if self
            .cfg
            .exemptions
            .namespaces
            .iter()
            .any(|n| n == req.namespace)
        {
            return Decision::admit(Reason::ExemptNamespace, "namespace is exempt");
        }
        if self.is_trusted_user(req.username) {
            return Decision::admit(Reason::TrustedUser, "user is trusted");
        }
        if self.is_exempt_user(req.username) {
            return Decision::admit(Reason::ExemptUser, "user is exempt");
        }
        let Some(old) = req.old_pod else {
            return Decision::deny(Reason::TamperedAnnotation, "UPDATE without oldObject");
        };
        let mut warnings = Vec::new();
        let mode = req
            .namespace_meta
            .map(|ns| self.mode(ns, &mut warnings))
            .unwrap_or(Some(Mode::Enforce));
        let old_anns = annotations(old);
        // A pod that carries a decision stays protected even if its
        // namespace was opted out afterwards: the node still reads it.
        let protected = mode.is_some() || old_anns.contains_key(keys::DECISION);
        if !protected {
            return Decision::admit(Reason::NotOptedIn, "namespace is not opted in");
        }
        let new_anns = annotations(req.pod);
        let changed: BTreeSet<&str> = old_anns
            .keys()
            .chain(new_anns.keys())
            .filter(|k| keys::is_kubefence_owned(k) && old_anns.get(*k) != new_anns.get(*k))
            .map(String::as_str)
            .collect();
        let mut decision = if !changed.is_empty() {
            Decision::deny(
                Reason::TamperedAnnotation,
                format!(
                    "annotations {} are managed by kubefence and cannot be added, changed or removed on an existing pod; recreate the pod instead",
                    changed.into_iter().collect::<Vec<_>>().join(", ")
                ),
            )
        } else if runtime_class_of(old) != runtime_class_of(req.pod) {
            Decision::deny(
                Reason::RuntimeClassChanged,
                format!(
                    "runtimeClassName cannot change from {:?} to {:?}",
                    runtime_class_of(old).unwrap_or(""),
                    runtime_class_of(req.pod).unwrap_or("")
                ),
            )
        } else {
            let mut d = Decision::admit(Reason::NoOwnedChange, "no kubefence-owned field changed");
            if req.subresource == Some("ephemeralcontainers") {
                if let Some(claims) = old_anns
                    .get(keys::DECISION)
                    .and_then(|t| self.trust.authenticate(t).ok())
                {
                    d.warnings.push(format!(
                        "kubefence: ephemeral containers run under profile {}",
                        claims.claims().profile
                    ));
                }
            }
            d
        };
        decision.warnings.splice(0..0, warnings);
        match mode {
            Some(Mode::Audit) => audit_only(decision),
            _ => decision.with_mode(mode),
        }
    }
}

/// Audit mode: never mutate or deny; record and warn what enforce would do.
fn audit_only(d: Decision) -> Decision {
    let mut d = d.with_mode(Some(Mode::Audit));
    match std::mem::replace(&mut d.verdict, Verdict::Admit) {
        Verdict::Mutate(plan) => {
            d.outcome = Outcome::WouldMutate;
            d.warnings.push(format!(
                "kubefence audit mode: enforce would sandbox this pod (profile {}, handler {})",
                plan.claims.profile, plan.claims.handler
            ));
        }
        Verdict::Deny => {
            d.outcome = Outcome::WouldDeny;
            d.warnings.push(format!(
                "kubefence audit mode: enforce would deny: {}",
                d.message
            ));
        }
        Verdict::Admit => {}
    }
    d
}

pub mod exec;

#[cfg(test)]
mod tests;
