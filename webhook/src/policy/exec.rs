//! `kubectl exec` and `kubectl attach` (CONNECT on `pods/exec` and
//! `pods/attach`) as a pure function of the policy, the namespace, the
//! request and the pod the caller looked up. No I/O: [`Policy::decide_exec`]
//! says when it needs the pod, the caller fetches it and asks again.
//!
//! Landlock confines nono's process and its descendants. A process started
//! by `kubectl exec` is spawned by the runtime into the container's
//! namespaces, not by PID 1, so it would run unconfined with the container's
//! whole filesystem view. Attach joins PID 1's stdio (already sandboxed) and
//! ephemeral debug containers are created through CRI (wrapped by the node
//! plugin), so only exec is a hole.

use k8s_openapi::api::core::v1::Pod;
use kubefence_shared::audit::Outcome;
use kubefence_shared::keys;
use kubefence_shared::profile::ProfileName;
use serde::Deserialize;

use super::{annotations, runtime_class_of, Endpoint, Mode, NamespaceMeta, Policy, Reason};
use crate::config::ExecMode;

/// The annotation kubectl reads to pick a container when none is given.
/// The apiserver does not read it.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// `core/v1 PodExecOptions` as the apiserver puts it in the review's object
/// (query parameters of the exec request). Unknown members are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ExecOptions {
    #[serde(default)]
    pub container: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub stderr: bool,
    #[serde(default)]
    pub tty: bool,
}

/// What the caller knows of the target pod.
#[derive(Debug, Clone, Copy)]
pub enum PodState<'a> {
    /// Not looked up yet: the decision may need it.
    NotFetched,
    Found(&'a Pod),
    /// The lookup failed (API down, timeout, not found): why.
    LookupFailed(&'a str),
}

/// One CONNECT request on a pod subresource, already parsed.
#[derive(Debug, Clone, Copy)]
pub struct ExecRequest<'a> {
    pub endpoint: Endpoint,
    /// `exec`, `attach`, `portforward`, ...
    pub subresource: &'a str,
    pub namespace: &'a str,
    /// `request.name`: the target pod.
    pub pod_name: &'a str,
    pub username: &'a str,
    pub groups: &'a [String],
    pub options: &'a ExecOptions,
    /// `None`: the namespace is not (yet) in the cache.
    pub namespace_meta: Option<&'a NamespaceMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecVerdict {
    Admit,
    /// Admit with `/command` replaced by this.
    Wrap(Vec<String>),
    Deny,
}

/// What was decided, with everything the response and audit record need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecDecision {
    pub verdict: ExecVerdict,
    pub outcome: Outcome,
    pub reason: Reason,
    /// For a denial: what the user reads. Otherwise a short explanation.
    pub message: String,
    pub warnings: Vec<String>,
    pub mode: Option<Mode>,
    /// The container the exec targets, once resolved.
    pub container: Option<String>,
    /// That container's profile, from a verified decision.
    pub profile: Option<ProfileName>,
    /// The decision's runtime handler.
    pub handler: Option<String>,
    /// Admitted only because the user is break-glass.
    pub break_glass: bool,
}

impl ExecDecision {
    fn admit(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            verdict: ExecVerdict::Admit,
            outcome: Outcome::Admit,
            reason,
            message: message.into(),
            warnings: Vec::new(),
            mode: None,
            container: None,
            profile: None,
            handler: None,
            break_glass: false,
        }
    }

    fn deny(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            verdict: ExecVerdict::Deny,
            outcome: Outcome::Deny,
            ..Self::admit(reason, message)
        }
    }

    pub fn allowed(&self) -> bool {
        !matches!(self.verdict, ExecVerdict::Deny)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecStep {
    /// Look the pod up and call again with the result.
    NeedPod,
    Decided(ExecDecision),
}

/// The argv the node plugin would give a container's PID 1, for `command`.
pub fn wrap_command(nono_dir: &str, profile: &ProfileName, command: &[String]) -> Vec<String> {
    kubefence_shared::wrap::wrap_args(nono_dir, profile, command)
}

/// Whether `command` already runs a program under nono with exactly
/// `profile` (what [`wrap_command`] produces).
pub fn is_wrapped(nono_dir: &str, profile: &ProfileName, command: &[String]) -> bool {
    kubefence_shared::wrap::wrapped_profile(nono_dir, command).as_ref() == Some(profile)
}

/// Our own wrapper argv as a user would type it in a shell (for messages;
/// its only argument that needs quoting is the empty one).
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| if a.is_empty() { "''" } else { a.as_str() })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Policy {
    fn is_break_glass(&self, req: &ExecRequest<'_>) -> bool {
        let exec = &self.cfg.exec;
        exec.break_glass_users.iter().any(|u| u == req.username)
            || req
                .groups
                .iter()
                .any(|g| exec.break_glass_groups.iter().any(|b| b == g))
    }

    /// The exec/attach decision. Returns [`ExecStep::NeedPod`] only when
    /// called with [`PodState::NotFetched`] and the answer depends on the
    /// pod; requests decided without it (attach, exempt, not opted in) never
    /// cost a lookup.
    pub fn decide_exec(&self, req: &ExecRequest<'_>, pod: PodState<'_>) -> ExecStep {
        ExecStep::Decided(match req.subresource {
            "exec" => match self.decide_exec_inner(req, pod) {
                Some(d) => d,
                None => return ExecStep::NeedPod,
            },
            "attach" => ExecDecision::admit(
                Reason::Attach,
                "attach joins the container's main process, which runs inside the sandbox",
            ),
            _ => ExecDecision::admit(
                Reason::OperationIgnored,
                "only exec and attach are checked on CONNECT",
            ),
        })
    }

    fn decide_exec_inner(&self, req: &ExecRequest<'_>, pod: PodState<'_>) -> Option<ExecDecision> {
        let exemptions = &self.cfg.exemptions;
        if exemptions.namespaces.iter().any(|n| n == req.namespace) {
            return Some(ExecDecision::admit(
                Reason::ExemptNamespace,
                "namespace is exempt",
            ));
        }
        if self.is_exempt_user(req.username) {
            return Some(ExecDecision::admit(Reason::ExemptUser, "user is exempt"));
        }
        let Some(ns) = req.namespace_meta else {
            return Some(self.break_glass_or(
                req,
                ExecDecision::deny(
                    Reason::NamespaceUnknown,
                    format!(
                        "kubefence does not know namespace {} yet and cannot tell whether pod {} is sandboxed, so exec is denied (fail closed); retry in a few seconds",
                        req.namespace, req.pod_name
                    ),
                ),
            ));
        };
        let mut warnings = Vec::new();
        let Some(mode) = self.mode(ns, &mut warnings) else {
            return Some(ExecDecision::admit(
                Reason::NotOptedIn,
                format!(
                    "namespace {} has no {} label",
                    req.namespace,
                    keys::NAMESPACE_MODE
                ),
            ));
        };
        if mode == Mode::Audit && req.endpoint == Endpoint::Validate {
            // The mutating endpoint records what enforce would do.
            let mut d = ExecDecision::admit(Reason::AuditMode, "audit mode: nothing to verify");
            d.mode = Some(mode);
            return Some(d);
        }
        let enforced = match pod {
            PodState::NotFetched => return None,
            PodState::Found(p) => self.exec_enforced(req, p),
            PodState::LookupFailed(why) => ExecDecision::deny(
                Reason::PodLookupFailed,
                format!(
                    "kubefence could not look up pod {}/{} ({why}) and cannot tell whether it is sandboxed, so exec is denied (fail closed); retry, or ask a cluster admin for kubefence break-glass access",
                    req.namespace, req.pod_name
                ),
            ),
        };
        let mut d = self.break_glass_or(req, enforced);
        d.warnings.splice(0..0, warnings);
        d.mode = Some(mode);
        Some(match mode {
            Mode::Enforce => {
                if let (ExecVerdict::Wrap(_), Some(p)) = (&d.verdict, &d.profile) {
                    d.warnings.push(format!(
                        "kubefence: this exec runs inside the nono sandbox (profile {p})"
                    ));
                }
                d
            }
            Mode::Audit => exec_audit_only(d),
        })
    }

    /// A break-glass user gets anything enforce would deny or rewrite,
    /// unconfined, with a warning and an audit record.
    fn break_glass_or(&self, req: &ExecRequest<'_>, d: ExecDecision) -> ExecDecision {
        if d.verdict == ExecVerdict::Admit || !self.is_break_glass(req) {
            return d;
        }
        let container = d.container.as_deref().unwrap_or(&req.options.container);
        ExecDecision {
            verdict: ExecVerdict::Admit,
            outcome: Outcome::Admit,
            reason: Reason::ExecBreakGlass,
            message: format!(
                "break-glass exec by {} into {}/{} container {container:?}, unconfined (without break-glass: {}: {})",
                req.username,
                req.namespace,
                req.pod_name,
                d.reason,
                d.message
            ),
            warnings: vec![
                "kubefence: break-glass exec: this process runs OUTSIDE the nono sandbox and is audited"
                    .into(),
            ],
            break_glass: true,
            ..d
        }
    }

    /// Enforce mode with the pod in hand.
    fn exec_enforced(&self, req: &ExecRequest<'_>, pod: &Pod) -> ExecDecision {
        let target = format!("{}/{}", req.namespace, req.pod_name);
        if let Some(rc) = runtime_class_of(pod) {
            if self.cfg.exemptions.runtime_classes.iter().any(|c| c == rc) {
                return ExecDecision::admit(
                    Reason::ExemptRuntimeClass,
                    format!("runtime class {rc} is exempt"),
                );
            }
        }
        let how_to_fix = "recreate the pod so kubefence admits it, or ask a cluster admin for kubefence break-glass access";
        let claims = match annotations(pod).get(keys::DECISION) {
            None => {
                return ExecDecision::deny(
                    Reason::DecisionMissing,
                    format!(
                        "pod {target} is in a kubefence enforce namespace but carries no {} annotation; kubefence treats it as sandboxed and denies exec (fail closed); {how_to_fix}",
                        keys::DECISION
                    ),
                )
            }
            Some(token) => match self.trust.authenticate(token) {
                Ok(v) => v.claims().clone(),
                Err(e) => {
                    return ExecDecision::deny(
                        Reason::DecisionInvalid,
                        format!(
                            "pod {target}: annotation {} is not a valid kubefence decision ({e}); exec is denied; {how_to_fix}",
                            keys::DECISION
                        ),
                    )
                }
            },
        };
        if claims.namespace != req.namespace || !claims.pod.matches(req.pod_name) {
            return ExecDecision::deny(
                Reason::DecisionMismatch,
                format!(
                    "pod {target} carries a decision issued for {} in namespace {}, not for this pod; exec is denied; {how_to_fix}",
                    claims.pod, claims.namespace
                ),
            );
        }
        let rc = runtime_class_of(pod);
        let handler = rc
            .and_then(|rc| self.cfg.runtime_classes.iter().find(|c| c.name == rc))
            .map(|c| c.handler.as_str());
        if handler != Some(claims.handler.as_str()) {
            return ExecDecision::deny(
                Reason::DecisionMismatch,
                format!(
                    "pod {target} runs under runtime class {:?}, not the sandbox handler {} its decision names, so the node does not confine it; exec is denied; {how_to_fix}",
                    rc.unwrap_or(""),
                    claims.handler
                ),
            );
        }
        let container = match resolve_container(pod, &req.options.container, &target) {
            Ok(c) => c,
            Err(d) => return *d,
        };
        let profile = claims.profile_for(&container).clone();
        let nono_dir = self.cfg.exec.nono_dir.as_str();
        let command = &req.options.command;
        let mut d = if is_wrapped(nono_dir, &profile, command) {
            // Exactly what wrap mode produces: confined by the container's
            // own profile, so not a hole in either mode (and idempotent
            // under reinvocation).
            ExecDecision::admit(
                Reason::ExecAlreadyWrapped,
                format!("the command already runs under nono with profile {profile}"),
            )
        } else {
            match self.cfg.exec.mode {
                ExecMode::Deny => ExecDecision::deny(
                    Reason::ExecDenied,
                    format!(
                        "kubefence denies kubectl exec into {target} container {container}: a process started by exec runs outside the container's nono sandbox. Instead use a sandboxed debug container: kubectl debug -it -n {ns} {pod} --image=<image> --target={container} (profile {pod_profile}); or run the command under nono yourself: kubectl exec -n {ns} {pod} -c {container} -- {wrapper}; in an emergency ask a cluster admin for kubefence break-glass access",
                        ns = req.namespace,
                        pod = req.pod_name,
                        pod_profile = claims.profile,
                        wrapper = shell_words(&wrap_command(nono_dir, &profile, &["<command>".to_owned()])),
                    ),
                ),
                ExecMode::Wrap if command.is_empty() => ExecDecision::deny(
                    Reason::ExecNoCommand,
                    format!("exec into {target} names no command; nothing to run under nono"),
                ),
                ExecMode::Wrap => match req.endpoint {
                    Endpoint::Mutate => {
                        let mut d = ExecDecision::admit(
                            Reason::ExecWrapped,
                            format!(
                                "exec into container {container} runs under nono with profile {profile}"
                            ),
                        );
                        d.verdict = ExecVerdict::Wrap(wrap_command(nono_dir, &profile, command));
                        d.outcome = Outcome::Mutate;
                        d
                    }
                    Endpoint::Validate => ExecDecision::deny(
                        Reason::ExecNotWrapped,
                        format!(
                            "the exec command into {target} container {container} is not wrapped in nono: the apiserver did not apply kubefence's mutation of the exec options, or a later webhook undid it; exec is denied (fail closed)"
                        ),
                    ),
                },
            }
        };
        d.container = Some(container);
        d.profile = Some(profile);
        d.handler = Some(claims.handler.clone());
        d
    }
}

/// The container an exec targets. With none named, the apiserver picks the
/// only app container and refuses otherwise (kubectl resolves the
/// default-container annotation itself and always names one); so does this.
fn resolve_container(pod: &Pod, named: &str, target: &str) -> Result<String, Box<ExecDecision>> {
    let Some(spec) = pod.spec.as_ref() else {
        return Err(Box::new(ExecDecision::deny(
            Reason::NoPodSpec,
            format!("pod {target} has no spec"),
        )));
    };
    let app: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let all: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .chain(app.iter().copied())
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| c.name.as_str()),
        )
        .collect();
    if named.is_empty() {
        return match app.as_slice() {
            [only] => Ok((*only).to_owned()),
            _ => {
                let hint = match annotations(pod).get(DEFAULT_CONTAINER_ANNOTATION) {
                    Some(d) => {
                        format!(" (kubectl would pick {d:?} from {DEFAULT_CONTAINER_ANNOTATION})")
                    }
                    None => String::new(),
                };
                Err(Box::new(ExecDecision::deny(
                    Reason::ExecContainerAmbiguous,
                    format!(
                        "exec into {target} names no container and the pod has {} ({}){hint}; name one with -c",
                        app.len(),
                        app.join(", ")
                    ),
                )))
            }
        };
    }
    if all.contains(&named) {
        Ok(named.to_owned())
    } else {
        Err(Box::new(ExecDecision::deny(
            Reason::UnknownContainer,
            format!(
                "pod {target} has no container {named:?} (containers: {})",
                all.join(", ")
            ),
        )))
    }
}

/// Audit mode: never rewrite or deny; record and warn what enforce would do.
fn exec_audit_only(mut d: ExecDecision) -> ExecDecision {
    match std::mem::replace(&mut d.verdict, ExecVerdict::Admit) {
        ExecVerdict::Wrap(_) => {
            d.outcome = Outcome::WouldMutate;
            d.warnings.push(format!(
                "kubefence audit mode: enforce would run this exec under nono (profile {})",
                d.profile.as_ref().map(ProfileName::as_str).unwrap_or("?")
            ));
        }
        ExecVerdict::Deny => {
            d.outcome = Outcome::WouldDeny;
            d.warnings.push(format!(
                "kubefence audit mode: enforce would deny this exec: {}",
                d.message
            ));
        }
        ExecVerdict::Admit => {}
    }
    d
}

#[cfg(test)]
mod tests;
