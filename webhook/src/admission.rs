//! One AdmissionReview body in, one reply out: parse, look the namespace up
//! in the cache, decide, sign, patch, audit. No network I/O; the server
//! only moves bytes in and out of [`Admission::handle`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kubefence_shared::audit::{AuditRecord, Component, Outcome};
use kubefence_shared::envelope::Signer;
use serde_json::Value;

use crate::namespaces::NamespaceSource;
use crate::patch;
use crate::policy::{Decision, Endpoint, Operation, Plan, PodRequest, Policy, Verdict};
use crate::review::{self, AdmissionRequest, AdmissionResponse, AdmissionReviewOut};

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

pub struct Admission {
    policy: Policy,
    signer: Signer,
    namespaces: Arc<dyn NamespaceSource>,
    clock: Clock,
}

impl Admission {
    pub fn new(
        policy: Policy,
        signer: Signer,
        namespaces: Arc<dyn NamespaceSource>,
        clock: Clock,
    ) -> Self {
        Self {
            policy,
            signer,
            namespaces,
            clock,
        }
    }

    pub fn namespaces(&self) -> &Arc<dyn NamespaceSource> {
        &self.namespaces
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn handle(&self, endpoint: Endpoint, body: &[u8]) -> Reply {
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
        self.handle_request(endpoint, &request)
    }

    fn reject(&self, req: &AdmissionRequest, reason: &'static str, message: String) -> Reply {
        let mut rec = AuditRecord::new(Component::Webhook, "admission", Outcome::Deny, reason)
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
            // DELETE, CONNECT (exec/attach options objects): nothing to decide.
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
        let pod: Pod = match serde_json::from_value(object.clone()) {
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
            (Operation::Update, Some(old)) => match serde_json::from_value(old.clone()) {
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
        object: &Value,
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
                Err(message) => {
                    // Our own bug: fail closed rather than admit unsandboxed.
                    tracing::error!(uid = %req.uid, %message, "patch self-check failed");
                    AdmissionResponse::deny(
                        &req.uid,
                        500,
                        format!("kubefence internal error: {message}"),
                    )
                }
            },
        };
        let internal_error = resp.status.as_ref().is_some_and(|s| s.code == 500);
        let (outcome, reason) = if internal_error {
            (Outcome::Deny, "internal-error")
        } else {
            (decision.outcome, decision.reason.as_str())
        };
        for w in &decision.warnings {
            resp.warn(w);
        }
        resp.audit("outcome", Outcome::as_str(outcome));
        resp.audit("reason", reason);
        if let Some(mode) = decision.mode {
            resp.audit("mode", mode.as_str());
        }
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

    /// Signs (unless the plan keeps the existing decision), builds the
    /// patch, and checks that applying it yields a valid Pod.
    fn patch_for(&self, plan: &Plan, object: &Value) -> Result<(Vec<u8>, bool), String> {
        let token = (!plan.keep_decision).then(|| self.signer.sign(&plan.claims));
        let ops = patch::build(plan, token.as_deref(), object);
        let ops_json = serde_json::to_value(&ops).map_err(|e| e.to_string())?;
        let parsed: json_patch::Patch =
            serde_json::from_value(ops_json.clone()).map_err(|e| e.to_string())?;
        let mut doc = object.clone();
        json_patch::patch(&mut doc, &parsed).map_err(|e| format!("patch does not apply: {e}"))?;
        serde_json::from_value::<Pod>(doc).map_err(|e| format!("patched pod is invalid: {e}"))?;
        let bytes = serde_json::to_vec(&ops_json).map_err(|e| e.to_string())?;
        Ok((bytes, token.is_some()))
    }
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
    use kubefence_shared::envelope::TrustSet;
    use serde_json::json;
    use std::path::Path;

    fn admission() -> Admission {
        let cfg = ConfigFile::parse(
            r#"
default_profile = "default"
[[runtime_classes]]
name = "nono"
handler = "nono-runc"
[[dev.namespaces]]
name = "team-a"
labels = { "nono.sh/mode" = "enforce" }
"#,
            Path::new("t"),
        )
        .unwrap()
        .validate(crate::keyfiles::builtin_catalog())
        .unwrap();
        let signer = Signer::generate().unwrap();
        let mut trust = TrustSet::new();
        trust.insert(signer.verifying_key());
        Admission::new(
            Policy::new(cfg.policy, trust),
            signer,
            Arc::new(StaticNamespaces::new(&cfg.dev.namespaces)),
            Arc::new(|| 42),
        )
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

    #[test]
    fn audit_record_carries_the_decision_and_dry_run() {
        let a = admission();
        let reply = a.handle(Endpoint::Mutate, &body(true, "alice"));
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
        let reply = a.handle(Endpoint::Mutate, &body(false, "alice"));
        assert!(!reply.audit.dry_run);
    }

    #[test]
    fn bad_bodies_are_recorded_and_answered() {
        let a = admission();
        let reply = a.handle(Endpoint::Mutate, b"{}");
        assert_eq!(reply.http_status, 400);
        assert_eq!(reply.audit.reason, "bad-request");
        assert_eq!(reply.audit.outcome, Outcome::Deny);
    }
}
