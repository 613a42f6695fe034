//! Fixtures shared by the fuzz targets: a fixed signing key (so committed
//! seed tokens stay valid), the webhook built as its integration tests build
//! it, and the NRI plugin core as its wire tests build it.

use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use kubefence_shared::decision::{Claims, PodBinding};
use kubefence_shared::envelope::{Signer, TrustSet};
use kubefence_shared::profile::{Catalog, CatalogEntry, ProfileName};

/// Issued-at of every seed token, and the clock of both components.
pub const NOW: i64 = 1_780_000_000;

/// The fixed webhook signing key of the fuzz targets and seeds.
pub fn signer() -> Signer {
    Signer::from_key(SigningKey::from_bytes(&[7u8; 32]))
}

pub fn trust() -> TrustSet {
    let mut t = TrustSet::new();
    t.insert(signer().verifying_key());
    t
}

pub fn profile(name: &str) -> ProfileName {
    ProfileName::parse(name).expect("valid profile name")
}

/// The decision of pod `web-0` in `team-a` under handler `nono-runc`.
pub fn claims() -> Claims {
    Claims {
        ver: 1,
        namespace: "team-a".into(),
        pod: PodBinding::Name("web-0".into()),
        handler: "nono-runc".into(),
        profile: profile("default"),
        containers: [("app".to_owned(), profile("web"))].into(),
        iat: NOW,
    }
}

pub mod webhook {
    use super::*;
    use kubefence_webhook::admission::Admission;
    use kubefence_webhook::config::ConfigFile;
    use kubefence_webhook::keyfiles;
    use kubefence_webhook::namespaces::StaticNamespaces;
    use kubefence_webhook::pods::StaticPods;
    use kubefence_webhook::policy::Policy;

    /// The integration tests' config plus an `[exec]` section in wrap mode.
    pub const CONFIG: &str = r#"
default_profile = "default"
max_body_bytes = 65536
trusted_users = ["system:serviceaccount:kubefence-system:kubefence-webhook"]
[exec]
mode = "wrap"
break_glass_users = ["oncall@example.com"]
break_glass_groups = ["sre"]
[[runtime_classes]]
name = "nono"
handler = "nono-runc"
[[runtime_classes]]
name = "nono-debug"
handler = "nono-runc-debug"
[exemptions]
namespaces = ["kube-system"]
[[dev.namespaces]]
name = "team-a"
labels = { "nono.sh/mode" = "enforce" }
annotations = { "nono.sh/allowed-profiles" = "default,strict" }
[[dev.namespaces]]
name = "team-b"
labels = { "nono.sh/mode" = "audit" }
annotations = { "nono.sh/default-profile" = "strict" }
[[dev.namespaces]]
name = "plain"
"#;

    /// The webhook's admission core with a static namespace source and
    /// `pods` for exec lookups; clock fixed at [`NOW`].
    pub fn admission(pods: Vec<k8s_openapi::api::core::v1::Pod>) -> Admission {
        let catalog = Catalog::from_json(
            br#"{"strictest":"strict","profiles":{"default":{},"strict":{}}}"#,
            Path::new("catalog.json"),
        )
        .expect("catalog");
        let config = ConfigFile::parse(CONFIG, Path::new("fuzz.toml"))
            .expect("config parses")
            .validate(catalog)
            .expect("config validates");
        let signer = signer();
        let trust = keyfiles::trust_set(&signer, &[]).expect("trust set");
        Admission::new(
            Policy::new(config.policy.clone(), trust),
            signer,
            Arc::new(StaticNamespaces::new(&config.dev.namespaces)),
            Arc::new(StaticPods::new(pods)),
            Arc::new(|| NOW),
        )
    }

    /// A pod as the ReplicaSet controller submits it for a Deployment `web`
    /// (the integration tests' fixture).
    pub fn deployment_pod() -> serde_json::Value {
        serde_json::json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "generateName": "web-7f9c4-",
                "namespace": "team-a",
                "creationTimestamp": null,
                "labels": {"app": "web", "pod-template-hash": "7f9c4"},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c4",
                    "uid": "5b1e7f7c-2f6e-4d6b-9a47-0d3c9c1f2a10",
                    "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
                "initContainers": [{
                    "name": "migrate", "image": "registry.example/web-migrate:1.4",
                    "command": ["/migrate", "up"],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent"
                }],
                "containers": [{
                    "name": "web", "image": "registry.example/web:1.4",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true}
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "serviceAccount": "default",
                "securityContext": {},
                "schedulerName": "default-scheduler",
                "tolerations": [
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ],
                "priority": 0,
                "enableServiceLinks": true,
                "preemptionPolicy": "PreemptLowerPriority"
            },
            "status": {}
        })
    }

    /// An AdmissionReview as kube-apiserver serialises it.
    pub fn review(
        uid: &str,
        operation: &str,
        user: &str,
        object: serde_json::Value,
        old_object: serde_json::Value,
    ) -> serde_json::Value {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("team-a");
        serde_json::json!({
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": operation,
                "userInfo": {
                    "username": user,
                    "uid": "0f2b6c2e-6d0b-4a52-8f3c-6a1f3c0e9b11",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
                },
                "object": object,
                "oldObject": old_object,
                "dryRun": false,
                "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
            }
        })
    }

    /// A `kubectl exec` CONNECT review for pod `name` in `team-a`.
    pub fn exec_review(uid: &str, name: &str, user: &str, command: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "PodExecOptions"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "subResource": "exec",
                "requestKind": {"group": "", "version": "v1", "kind": "PodExecOptions"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "requestSubResource": "exec",
                "name": name,
                "namespace": "team-a",
                "operation": "CONNECT",
                "userInfo": {"username": user, "groups": ["system:authenticated"]},
                "object": {
                    "kind": "PodExecOptions", "apiVersion": "v1",
                    "stdin": true, "stdout": true, "tty": true,
                    "container": "web", "command": command
                },
                "oldObject": null,
                "dryRun": false,
                "options": null
            }
        })
    }

    pub const RS_CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";

    /// The deployment pod as stored after our mutation, named
    /// `web-7f9c4-x2b9z`, so exec reviews find a genuine decision.
    pub fn admitted_pod(admission: &Admission) -> serde_json::Value {
        use base64::Engine;
        let object = deployment_pod();
        let body = serde_json::to_vec(&review(
            "seed",
            "CREATE",
            RS_CONTROLLER,
            object.clone(),
            serde_json::Value::Null,
        ))
        .unwrap();
        let reply = futures::executor::block_on(
            admission.handle(kubefence_webhook::policy::Endpoint::Mutate, &body),
        );
        let v: serde_json::Value = serde_json::from_slice(&reply.body).expect("reply is JSON");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(v["response"]["patch"].as_str().expect("a patch"))
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut out = object;
        json_patch::patch(&mut out, &patch).unwrap();
        out["metadata"]["name"] = serde_json::json!("web-7f9c4-x2b9z");
        out["metadata"]["uid"] = serde_json::json!("3f1c2d4e-0000-4000-8000-000000000001");
        out
    }

    /// [`admission`] holding [`admitted_pod`] for exec lookups.
    pub fn admission_with_pod() -> Admission {
        let pod = admitted_pod(&admission(Vec::new()));
        admission(vec![serde_json::from_value(pod).expect("a Pod")])
    }
}

pub mod nri {
    use super::*;
    use kubefence_nri::decide::{OnInvalid, Policy, Settings};
    use kubefence_nri::nono::NonoLayout;
    use kubefence_nri::plugin::Core;

    /// A plugin core trusting [`signer`], catalog {default, strict, web},
    /// clock fixed at [`NOW`].
    pub fn core(on_invalid: OnInvalid) -> Arc<Core> {
        let entry = || CatalogEntry {
            description: String::new(),
        };
        Arc::new(Core {
            policy: Policy {
                settings: Settings {
                    sandbox_handlers: vec!["nono-runc".into()],
                    on_invalid,
                    max_skew: 300,
                    max_age: None,
                    layout: NonoLayout::new("/opt/kubefence", "/nono").expect("layout"),
                },
                trust: trust(),
                catalog: Catalog {
                    strictest: profile("strict"),
                    profiles: [
                        (profile("default"), entry()),
                        (profile("strict"), entry()),
                        (profile("web"), entry()),
                    ]
                    .into(),
                },
            },
            validator: true,
            plugin_name: "kubefence".into(),
            plugin_index: "10".into(),
            assume_nri_version: None,
            clock: Arc::new(|| NOW),
        })
    }
}
