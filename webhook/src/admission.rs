//! One AdmissionReview body in, one reply out: parse, look the namespace up
//! in the cache, decide, sign, patch, audit. The only network I/O is the
//! pod lookup behind [`PodLookup`] that `kubectl exec` needs (CONNECT
//! reviews carry no pod); the server only moves bytes in and out of
//! [`Admission::handle`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kubefence_shared::audit::{AuditRecord, Component, Outcome};
use kubefence_shared::envelope::Signer;
use serde_json::Value;

use crate::namespaces::NamespaceSource;
use crate::patch;
use crate::pods::PodLookup;
use crate::policy::exec::{
    ExecDecision, ExecOptions, ExecRequest, ExecStep, ExecVerdict, PodState,
};
use crate::policy::{Decision, Endpoint, Mode, Operation, Plan, PodRequest, Policy, Verdict};
use crate::review::{self, AdmissionRequest, AdmissionResponse, AdmissionReviewOut, RawObject};

/// Seconds since the Unix epoch; injectable so tests control `iat`.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// An HTTP answer and what to count it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub http_status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Metric labels.
    pub outcome: &'static str,
    pub reason: &'static str,
    /// The audit record for this request; the caller emits it.
    pub audit: AuditRecord,
}

/// The answer when our own patch failed its self-check: a bug of ours, so
/// fail closed (500) rather than admit the pod unsandboxed.
fn self_check_failed(uid: &str, what: &str, message: String) -> AdmissionResponse {
    tracing::error!(%uid, %message, "{what} self-check failed");
    AdmissionResponse::deny(uid, 500, format!("kubefence internal error: {message}"))
}

/// Adds the decision's warnings and the audit annotations every reply
/// carries; returns the outcome and reason given, which a self-check
/// failure overrides with `deny` / `internal-error`.
fn annotate<'a>(
    resp: &mut AdmissionResponse,
    outcome: Outcome,
    reason: &'a str,
    warnings: &[String],
    mode: Option<Mode>,
) -> (Outcome, &'a str) {
    let internal_error = resp.status.as_ref().is_some_and(|s| s.code == 500);
    let (outcome, reason) = if internal_error {
        (Outcome::Deny, "internal-error")
    } else {
        (outcome, reason)
    };
    for w in warnings {
        resp.warn(w);
    }
    resp.audit("outcome", Outcome::as_str(outcome));
    resp.audit("reason", reason);
    if let Some(mode) = mode {
        resp.audit("mode", mode.as_str());
    }
    (outcome, reason)
}

pub struct Admission {
    policy: Policy,
    signer: Signer,
    namespaces: Arc<dyn NamespaceSource>,
    pods: Arc<dyn PodLookup>,
    clock: Clock,
}

impl Admission {
    pub fn new(
        policy: Policy,
        signer: Signer,
        namespaces: Arc<dyn NamespaceSource>,
        pods: Arc<dyn PodLookup>,
        clock: Clock,
    ) -> Self {
        Self {
            policy,
            signer,
            namespaces,
            pods,
            clock,
        }
    }

    pub fn namespaces(&self) -> &Arc<dyn NamespaceSource> {
        &self.namespaces
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub async fn handle(&self, endpoint: Endpoint, body: &[u8]) -> Reply {
        let request = match review::parse(body) {
            Ok(r) => r,
            Err(e) => {
                let mut rec = AuditRecord::new(
                    Component::Webhook,
                    "admission",
                    Outcome::Deny,
                    "bad-request",
                )
                .message(e.to_string());
                rec.request_uid = e.uid().map(str::to_owned);
                return match e.uid() {
                    Some(uid) => in_band(
                        AdmissionResponse::deny(uid, 400, e.to_string()),
                        "deny",
                        "bad-request",
                        rec,
                    ),
                    None => Reply {
                        http_status: 400,
                        content_type: "text/plain; charset=utf-8",
                        body: format!("{e}\n").into_bytes(),
                        outcome: "error",
                        reason: "bad-request",
                        audit: rec,
                    },
                };
            }
        };
        if Operation::parse(&request.operation) == Operation::Connect {
            return self.handle_connect(endpoint, &request).await;
        }
        self.handle_request(endpoint, &request)
    }

    fn reject(&self, req: &AdmissionRequest, reason: &'static str, message: String) -> Reply {
        self.reject_event(req, "admission", reason, message)
    }

    fn reject_event(
        &self,
        req: &AdmissionRequest,
        event: &'static str,
        reason: &'static str,
        message: String,
    ) -> Reply {
        let mut rec = AuditRecord::new(Component::Webhook, event, Outcome::Deny, reason)
            .message(message.clone());
        rec.request_uid = Some(req.uid.clone());
        rec.user = Some(req.user_info.username.clone());
        rec.namespace = req.namespace.clone();
        rec.dry_run = req.is_dry_run();
        in_band(
            AdmissionResponse::deny(&req.uid, 400, message),
            "deny",
            reason,
            rec,
        )
    }

    fn handle_request(&self, endpoint: Endpoint, req: &AdmissionRequest) -> Reply {
        let operation = Operation::parse(&req.operation);
        let checked = matches!(operation, Operation::Create | Operation::Update);
        if !checked {
            // DELETE, CONNECT on other subresources: nothing to decide.
            let mut rec = AuditRecord::new(
                Component::Webhook,
                "admission",
                Outcome::Admit,
                "operation-ignored",
            );
            rec.request_uid = Some(req.uid.clone());
            rec.user = Some(req.user_info.username.clone());
            rec.namespace = req.namespace.clone();
            rec.dry_run = req.is_dry_run();
            return in_band(
                AdmissionResponse::allow(&req.uid),
                "admit",
                "operation-ignored",
                rec,
            );
        }
        if !req.is_pod() {
            let k = &req.kind;
            return self.reject(
                req,
                "not-a-pod",
                format!(
                    "kubefence only admits core/v1 Pod objects, got {}/{} {}; check the webhook configuration's rules",
                    k.group, k.version, k.kind
                ),
            );
        }
        let Some(object) = req.object.as_ref() else {
            return self.reject(req, "bad-request", "the request has no object".into());
        };
        let pod: Pod = match object.parse() {
            Ok(p) => p,
            Err(e) => {
                return self.reject(
                    req,
                    "bad-request",
                    format!("the object is not a valid Pod: {e}"),
                )
            }
        };
        let old_pod: Option<Pod> = match (&operation, req.old_object.as_ref()) {
            (Operation::Update, Some(old)) => match old.parse() {
                Ok(p) => Some(p),
                Err(e) => {
                    return self.reject(
                        req,
                        "bad-request",
                        format!("the oldObject is not a valid Pod: {e}"),
                    )
                }
            },
            (Operation::Update, None) => {
                return self.reject(req, "bad-request", "UPDATE without oldObject".into())
            }
            _ => None,
        };
        let namespace = req
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_default();
        if namespace.is_empty() {
            return self.reject(req, "bad-request", "the request names no namespace".into());
        }
        let ns_meta = self.namespaces.get(&namespace);
        let decision = self.policy.decide(&PodRequest {
            endpoint,
            operation,
            subresource: req.sub_resource.as_deref(),
            namespace: &namespace,
            username: &req.user_info.username,
            pod: &pod,
            old_pod: old_pod.as_ref(),
            namespace_meta: ns_meta.as_ref(),
            now: (self.clock)(),
        });
        self.respond(req, &namespace, &pod, old_pod.as_ref(), object, decision)
    }

    fn respond(
        &self,
        req: &AdmissionRequest,
        namespace: &str,
        pod: &Pod,
        old_pod: Option<&Pod>,
        object: &RawObject,
        decision: Decision,
    ) -> Reply {
        let mut signed = false;
        let mut resp = match &decision.verdict {
            Verdict::Deny => AdmissionResponse::deny(&req.uid, 403, decision.message.clone()),
            Verdict::Admit => AdmissionResponse::allow(&req.uid),
            Verdict::Mutate(plan) => match self.patch_for(plan, object) {
                Ok((json, did_sign)) => {
                    signed = did_sign;
                    AdmissionResponse::allow(&req.uid).with_patch(&json)
                }
                Err(message) => self_check_failed(&req.uid, "patch", message),
            },
        };
        let (outcome, reason) = annotate(
            &mut resp,
            decision.outcome,
            decision.reason.as_str(),
            &decision.warnings,
            decision.mode,
        );
        if let Some(c) = &decision.claims {
            resp.audit("profile", c.profile.as_str());
            resp.audit("handler", c.handler.clone());
        }

        let mut rec = AuditRecord::new(Component::Webhook, "admission", outcome, reason)
            .message(decision.message.clone());
        rec.namespace = Some(namespace.to_owned());
        rec.pod = pod
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| pod.metadata.generate_name.clone());
        rec.pod_uid = pod
            .metadata
            .uid
            .clone()
            .or_else(|| old_pod.and_then(|p| p.metadata.uid.clone()));
        if let Some(c) = &decision.claims {
            rec.profile = Some(c.profile.to_string());
            rec.profiles = Some(
                c.containers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect(),
            );
            rec.handler = Some(c.handler.clone());
        }
        rec.runtime_class = decision.runtime_class.clone();
        if signed {
            rec.key_id = Some(self.signer.kid().to_string());
        }
        rec.user = Some(req.user_info.username.clone());
        rec.request_uid = Some(req.uid.clone());
        rec.mode = decision.mode.map(|m| m.as_str());
        rec.dry_run = req.is_dry_run();
        in_band(resp, Outcome::as_str(outcome), reason, rec)
    }

    /// CONNECT: `kubectl exec` (`pods/exec`, object `PodExecOptions`) and
    /// `kubectl attach` (`pods/attach`) are decided; port-forward, proxy and
    /// anything else are admitted as before.
    async fn handle_connect(&self, endpoint: Endpoint, req: &AdmissionRequest) -> Reply {
        let sub = req.sub_resource.as_deref().unwrap_or("");
        let on_pods = req.resource.group.is_empty() && req.resource.resource == "pods";
        let event: &'static str = match sub {
            "exec" if on_pods => "exec",
            "attach" if on_pods => "attach",
            _ => return self.handle_request(endpoint, req),
        };
        let options = if event == "exec" {
            let k = &req.kind;
            if !(k.group.is_empty() && k.version == "v1" && k.kind == "PodExecOptions") {
                return self.reject_event(
                    req,
                    event,
                    "bad-request",
                    format!(
                        "pods/exec: expected a core/v1 PodExecOptions object, got {}/{} {}",
                        k.group, k.version, k.kind
                    ),
                );
            }
            let Some(object) = req.object.as_ref() else {
                return self.reject_event(
                    req,
                    event,
                    "bad-request",
                    "the request has no object".into(),
                );
            };
            match object.parse::<ExecOptions>() {
                Ok(o) => o,
                Err(e) => {
                    return self.reject_event(
                        req,
                        event,
                        "bad-request",
                        format!("the object is not valid PodExecOptions: {e}"),
                    )
                }
            }
        } else {
            // Only read for the record; attach is admitted whatever it says.
            req.object
                .as_ref()
                .and_then(|o| o.parse::<ExecOptions>().ok())
                .unwrap_or_default()
        };
        let (Some(namespace), Some(pod_name)) = (
            req.namespace.as_deref().filter(|s| !s.is_empty()),
            req.name.as_deref().filter(|s| !s.is_empty()),
        ) else {
            return self.reject_event(
                req,
                event,
                "bad-request",
                format!("CONNECT on pods/{sub} must name the pod and its namespace"),
            );
        };
        let ns_meta = self.namespaces.get(namespace);
        let xr = ExecRequest {
            endpoint,
            subresource: sub,
            namespace,
            pod_name,
            username: &req.user_info.username,
            groups: &req.user_info.groups,
            options: &options,
            namespace_meta: ns_meta.as_ref(),
        };
        let decision = match self.policy.decide_exec(&xr, PodState::NotFetched) {
            ExecStep::Decided(d) => d,
            ExecStep::NeedPod => {
                let looked = self.pods.get(namespace, pod_name).await;
                let step = match &looked {
                    Ok(pod) => self.policy.decide_exec(&xr, PodState::Found(pod)),
                    Err(e) => {
                        tracing::warn!(uid = %req.uid, namespace, pod = pod_name, error = %e, "pod lookup for exec failed");
                        let why = e.to_string();
                        self.policy.decide_exec(&xr, PodState::LookupFailed(&why))
                    }
                };
                match step {
                    ExecStep::Decided(d) => d,
                    ExecStep::NeedPod => {
                        return self.reject_event(
                            req,
                            event,
                            "internal-error",
                            "kubefence internal error: exec decision without a pod".into(),
                        )
                    }
                }
            }
        };
        self.respond_exec(req, event, &xr, decision)
    }

    fn respond_exec(
        &self,
        req: &AdmissionRequest,
        event: &'static str,
        xr: &ExecRequest<'_>,
        decision: ExecDecision,
    ) -> Reply {
        let mut resp = match &decision.verdict {
            ExecVerdict::Deny => AdmissionResponse::deny(&req.uid, 403, decision.message.clone()),
            ExecVerdict::Admit => AdmissionResponse::allow(&req.uid),
            ExecVerdict::Wrap(command) => match exec_patch(req.object.as_ref(), command) {
                Ok(json) => AdmissionResponse::allow(&req.uid).with_patch(&json),
                Err(message) => self_check_failed(&req.uid, "exec patch", message),
            },
        };
        let (outcome, reason) = annotate(
            &mut resp,
            decision.outcome,
            decision.reason.as_str(),
            &decision.warnings,
            decision.mode,
        );
        let container = decision
            .container
            .clone()
            .or_else(|| Some(xr.options.container.clone()).filter(|c| !c.is_empty()));
        if let Some(c) = &container {
            resp.audit("container", c.clone());
        }
        if let Some(p) = &decision.profile {
            resp.audit("profile", p.as_str());
        }
        if decision.break_glass {
            resp.audit("break-glass", "true");
        }

        // The command as the user asked for it, unambiguous (JSON list).
        let command = serde_json::to_string(&xr.options.command).unwrap_or_default();
        let mut message = format!("{}; command {command}", decision.message);
        if decision.break_glass {
            let groups = serde_json::to_string(xr.groups).unwrap_or_default();
            message.push_str(&format!("; groups {groups}"));
        }
        let mut rec = AuditRecord::new(Component::Webhook, event, outcome, reason).message(message);
        rec.namespace = Some(xr.namespace.to_owned());
        rec.pod = Some(xr.pod_name.to_owned());
        rec.container = container;
        rec.profile = decision.profile.as_ref().map(|p| p.to_string());
        rec.handler = decision.handler.clone();
        rec.user = Some(req.user_info.username.clone());
        rec.request_uid = Some(req.uid.clone());
        rec.mode = decision.mode.map(|m| m.as_str());
        rec.dry_run = req.is_dry_run();
        in_band(resp, Outcome::as_str(outcome), reason, rec)
    }

    /// Signs (unless the plan keeps the existing decision), builds the
    /// patch, and checks that applying it yields a valid Pod.
    fn patch_for(&self, plan: &Plan, object: &RawObject) -> Result<(Vec<u8>, bool), String> {
        let mut doc = object_value(object)?;
        let token = (!plan.keep_decision).then(|| self.signer.sign(&plan.claims));
        let ops = patch::build(plan, token.as_deref(), &doc);
        let (bytes, parsed) = patch_bytes(&ops)?;
        json_patch::patch(&mut doc, &parsed).map_err(|e| format!("patch does not apply: {e}"))?;
        serde_json::from_value::<Pod>(doc).map_err(|e| format!("patched pod is invalid: {e}"))?;
        Ok((bytes, token.is_some()))
    }
}

/// The `/command` patch, checked by applying it to the options the
/// apiserver sent: it must apply and yield exactly `command`.
fn exec_patch(object: Option<&RawObject>, command: &[String]) -> Result<Vec<u8>, String> {
    let mut doc = object_value(object.ok_or("the request has no object")?)?;
    let (bytes, parsed) = patch_bytes(&patch::exec_command(command))?;
    json_patch::patch(&mut doc, &parsed).map_err(|e| format!("patch does not apply: {e}"))?;
    let patched: ExecOptions =
        serde_json::from_value(doc).map_err(|e| format!("patched options are invalid: {e}"))?;
    if patched.command != command {
        return Err("patched options do not carry the wrapped command".into());
    }
    Ok(bytes)
}

/// The object as a tree, which only applying a patch to it needs. It
/// fails only for text the typed parse skipped over unread (a number
/// beyond f64, a lone surrogate escape, nesting deeper than 128) that the
/// apiserver never sends; the caller then fails closed.
fn object_value(object: &RawObject) -> Result<Value, String> {
    object
        .to_value()
        .map_err(|e| format!("the object cannot be patched: {e}"))
}

/// The patch as sent, and as read back from those very bytes, which is
/// what the apiserver will apply.
fn patch_bytes(ops: &[patch::PatchOp]) -> Result<(Vec<u8>, json_patch::Patch), String> {
    let bytes = serde_json::to_vec(ops).map_err(|e| e.to_string())?;
    let parsed = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok((bytes, parsed))
}

fn in_band(
    resp: AdmissionResponse,
    outcome: &'static str,
    reason: &'static str,
    audit: AuditRecord,
) -> Reply {
    Reply {
        http_status: 200,
        content_type: "application/json",
        body: AdmissionReviewOut::new(resp).to_json(),
        outcome,
        reason,
        audit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::namespaces::StaticNamespaces;
    use crate::pods::StaticPods;
    use kubefence_shared::envelope::TrustSet;
    use serde_json::json;
    use std::path::Path;

    const CONFIG: &str = r#"
default_profile = "default"
[[runtime_classes]]
name = "nono"
handler = "nono-runc"
[[dev.namespaces]]
name = "team-a"
labels = { "nono.sh/mode" = "enforce" }
"#;

    fn admission() -> Admission {
        admission_with("", |_| StaticPods::default())
    }

    /// `extra` is appended to the config; `pods` gets the webhook's signer.
    fn admission_with(extra: &str, pods: impl FnOnce(&Signer) -> StaticPods) -> Admission {
        let cfg = ConfigFile::parse(&format!("{CONFIG}{extra}"), Path::new("t"))
            .unwrap()
            .validate(crate::keyfiles::builtin_catalog())
            .unwrap();
        let signer = Signer::generate().unwrap();
        let mut trust = TrustSet::new();
        trust.insert(signer.verifying_key());
        let pods = pods(&signer);
        Admission::new(
            Policy::new(cfg.policy, trust),
            signer,
            Arc::new(StaticNamespaces::new(&cfg.dev.namespaces)),
            Arc::new(pods),
            Arc::new(|| 42),
        )
    }

    /// `web-0` in team-a as kubefence admitted it.
    fn sandboxed_pod(signer: &Signer) -> Pod {
        let claims = kubefence_shared::decision::Claims {
            ver: 1,
            namespace: "team-a".into(),
            pod: kubefence_shared::decision::PodBinding::Name("web-0".into()),
            handler: "nono-runc".into(),
            profile: kubefence_shared::ProfileName::parse("default").unwrap(),
            containers: [(
                "app".to_string(),
                kubefence_shared::ProfileName::parse("strict").unwrap(),
            )]
            .into(),
            iat: 1,
        };
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "team-a",
                         "annotations": {"nono.sh/decision": signer.sign(&claims)}},
            "spec": {"runtimeClassName": "nono", "containers": [{"name": "app"}, {"name": "log"}]}
        }))
        .unwrap()
    }

    fn exec_body(sub: &str, kind: &str, user: &str, groups: &[&str], container: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "x1",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "subResource": sub,
                "name": "web-0", "namespace": "team-a", "operation": "CONNECT",
                "userInfo": {"username": user, "groups": groups},
                "object": {"kind": kind, "apiVersion": "v1", "stdin": true, "stdout": true,
                           "tty": true, "container": container, "command": ["sh", "-c", "id"]},
                "oldObject": null, "dryRun": false, "options": null
            }
        }))
        .unwrap()
    }

    fn response(reply: &Reply) -> Value {
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        v["response"].clone()
    }

    #[tokio::test]
    async fn exec_denied_by_default_and_recorded() {
        let a = admission_with("", |s| StaticPods::new([sandboxed_pod(s)]));
        let reply = a
            .handle(
                Endpoint::Validate,
                &exec_body("exec", "PodExecOptions", "alice", &[], "app"),
            )
            .await;
        assert_eq!((reply.outcome, reply.reason), ("deny", "exec-denied"));
        let resp = response(&reply);
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 403);
        assert!(resp["status"]["message"]
            .as_str()
            .unwrap()
            .contains("kubectl debug -it -n team-a web-0"));
        assert_eq!(resp["auditAnnotations"]["container"], "app");
        assert_eq!(resp["auditAnnotations"]["profile"], "strict");
        let r = &reply.audit;
        assert_eq!(r.event, "exec");
        assert_eq!(r.outcome, Outcome::Deny);
        assert_eq!(r.reason, "exec-denied");
        assert_eq!(r.pod.as_deref(), Some("web-0"));
        assert_eq!(r.container.as_deref(), Some("app"));
        assert_eq!(r.profile.as_deref(), Some("strict"));
        assert_eq!(r.user.as_deref(), Some("alice"));
        assert!(
            r.message.ends_with(r#"; command ["sh","-c","id"]"#),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn break_glass_audit_record_names_user_pod_container_and_command() {
        let cfg = "[exec]\nbreak_glass_users = [\"oncall\"]\nbreak_glass_groups = [\"sre\"]\n";
        let a = admission_with(cfg, |s| StaticPods::new([sandboxed_pod(s)]));
        for (user, groups) in [
            ("oncall", vec![]),
            ("bob", vec!["system:authenticated", "sre"]),
        ] {
            let reply = a
                .handle(
                    Endpoint::Validate,
                    &exec_body("exec", "PodExecOptions", user, &groups, "log"),
                )
                .await;
            let resp = response(&reply);
            assert_eq!(resp["allowed"], true, "{resp}");
            assert!(resp.get("patch").is_none());
            assert_eq!(resp["auditAnnotations"]["break-glass"], "true");
            assert!(resp["warnings"][0].as_str().unwrap().contains("OUTSIDE"));
            let r = &reply.audit;
            assert_eq!(r.event, "exec");
            assert_eq!(r.outcome, Outcome::Admit);
            assert_eq!(r.reason, "exec-break-glass");
            assert_eq!(r.user.as_deref(), Some(user));
            assert_eq!(r.namespace.as_deref(), Some("team-a"));
            assert_eq!(r.pod.as_deref(), Some("web-0"));
            assert_eq!(r.container.as_deref(), Some("log"));
            assert_eq!(r.profile.as_deref(), Some("default"), "pod-wide for log");
            assert_eq!(r.mode, Some("enforce"));
            assert!(
                r.message.contains(&format!(
                    "break-glass exec by {user} into team-a/web-0 container \"log\""
                )),
                "{}",
                r.message
            );
            assert!(
                r.message.contains(r#"command ["sh","-c","id"]"#),
                "{}",
                r.message
            );
            let groups_json = serde_json::to_string(&groups).unwrap();
            assert!(
                r.message.ends_with(&format!("; groups {groups_json}")),
                "{}",
                r.message
            );
        }
    }

    #[tokio::test]
    async fn wrap_mode_patches_the_command() {
        let a = admission_with("[exec]\nmode = \"wrap\"\n", |s| {
            StaticPods::new([sandboxed_pod(s)])
        });
        let body = exec_body("exec", "PodExecOptions", "alice", &[], "app");
        let reply = a.handle(Endpoint::Mutate, &body).await;
        assert_eq!((reply.outcome, reply.reason), ("mutate", "exec-wrapped"));
        let resp = response(&reply);
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch");
        use base64::Engine;
        let patch = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            patch,
            json!([{"op": "replace", "path": "/command", "value": [
                "/nono/nono", "wrap", "--silent", "--profile", "/nono/profiles/strict.json",
                "--allow", "/nono/.kubefence-absent", "--env-credential", "",
                "--log-file", "/dev/null", "--", "sh", "-c", "id"]}])
        );
        assert_eq!(reply.audit.outcome, Outcome::Mutate);
        assert_eq!(reply.audit.profile.as_deref(), Some("strict"));
    }

    #[tokio::test]
    async fn lookup_failure_denies_and_attach_needs_no_lookup() {
        let a = admission_with("", |_| {
            StaticPods::failing(crate::pods::LookupError::Api("connection refused".into()))
        });
        let reply = a
            .handle(
                Endpoint::Validate,
                &exec_body("exec", "PodExecOptions", "alice", &[], "app"),
            )
            .await;
        assert_eq!((reply.outcome, reply.reason), ("deny", "pod-lookup-failed"));
        let msg = response(&reply)["status"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            msg.contains("connection refused") && msg.contains("fail closed"),
            "{msg}"
        );
        // Attach is decided without the pod, so the broken lookup is never used.
        let reply = a
            .handle(
                Endpoint::Validate,
                &exec_body("attach", "PodAttachOptions", "alice", &[], "app"),
            )
            .await;
        assert_eq!((reply.outcome, reply.reason), ("admit", "attach"));
        assert_eq!(reply.audit.event, "attach");
        assert_eq!(reply.audit.container.as_deref(), Some("app"));
        // Port-forward: as before.
        let reply = a
            .handle(
                Endpoint::Validate,
                &exec_body("portforward", "PodPortForwardOptions", "alice", &[], ""),
            )
            .await;
        assert_eq!(reply.reason, "operation-ignored");
    }

    #[tokio::test]
    async fn malformed_exec_requests_are_refused() {
        let a = admission();
        let reply = a
            .handle(
                Endpoint::Validate,
                &exec_body("exec", "Pod", "alice", &[], "app"),
            )
            .await;
        assert_eq!((reply.outcome, reply.reason), ("deny", "bad-request"));
        assert_eq!(reply.audit.event, "exec");
        let mut v: Value =
            serde_json::from_slice(&exec_body("exec", "PodExecOptions", "alice", &[], "app"))
                .unwrap();
        v["request"]["object"]["command"] = json!("sh");
        let reply = a
            .handle(Endpoint::Validate, &serde_json::to_vec(&v).unwrap())
            .await;
        assert_eq!(reply.reason, "bad-request");
        let mut v: Value =
            serde_json::from_slice(&exec_body("exec", "PodExecOptions", "alice", &[], "app"))
                .unwrap();
        v["request"].as_object_mut().unwrap().remove("name");
        let reply = a
            .handle(Endpoint::Validate, &serde_json::to_vec(&v).unwrap())
            .await;
        assert_eq!(reply.reason, "bad-request");
        assert_eq!(response(&reply)["status"]["code"], 400);
    }

    fn body(dry_run: bool, user: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "r1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "team-a", "operation": "CREATE",
                "userInfo": {"username": user},
                "object": {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}},
                "dryRun": dry_run
            }
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn audit_record_carries_the_decision_and_dry_run() {
        let a = admission();
        let reply = a.handle(Endpoint::Mutate, &body(true, "alice")).await;
        assert_eq!(
            (reply.http_status, reply.outcome, reply.reason),
            (200, "mutate", "sandboxed")
        );
        let r = &reply.audit;
        assert_eq!(r.outcome, Outcome::Mutate);
        assert!(r.dry_run);
        assert_eq!(r.request_uid.as_deref(), Some("r1"));
        assert_eq!(r.user.as_deref(), Some("alice"));
        assert_eq!(r.namespace.as_deref(), Some("team-a"));
        assert_eq!(r.pod.as_deref(), Some("p"));
        assert_eq!(r.profile.as_deref(), Some("default"));
        assert_eq!(r.handler.as_deref(), Some("nono-runc"));
        assert_eq!(r.runtime_class.as_deref(), Some("nono"));
        assert_eq!(r.mode, Some("enforce"));
        assert_eq!(r.key_id.as_deref(), Some(a.signer().kid().as_str()));
        let reply = a.handle(Endpoint::Mutate, &body(false, "alice")).await;
        assert!(!reply.audit.dry_run);
    }

    #[tokio::test]
    async fn an_object_that_cannot_be_a_value_is_never_patched() {
        // Valid JSON grammar in a member the Pod does not have: the typed
        // parse skips it, the patch self-check cannot build a tree of it.
        let text = String::from_utf8(body(false, "alice")).unwrap();
        let text = text.replace(r#""metadata":"#, r#""x":1e400,"metadata":"#);
        let reply = admission().handle(Endpoint::Mutate, text.as_bytes()).await;
        assert_eq!((reply.outcome, reply.reason), ("deny", "internal-error"));
        let resp = response(&reply);
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 500);
        assert!(resp.get("patch").is_none());
    }

    #[tokio::test]
    async fn bad_bodies_are_recorded_and_answered() {
        let a = admission();
        let reply = a.handle(Endpoint::Mutate, b"{}").await;
        assert_eq!(reply.http_status, 400);
        assert_eq!(reply.audit.reason, "bad-request");
        assert_eq!(reply.audit.outcome, Outcome::Deny);
    }
}
