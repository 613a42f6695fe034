//! A realistic Deployment pod CREATE handled end to end without sockets,
//! as the server calls it: `Admission::handle` on the body bytes (parse,
//! namespace lookup, policy, sign, patch with self-check, serialise), plus
//! a deny, the reinvocation with our own result and the validating pass.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kubefence_shared::envelope::Signer;
use kubefence_shared::profile::Catalog;
use kubefence_webhook::admission::Admission;
use kubefence_webhook::config::ConfigFile;
use kubefence_webhook::keyfiles;
use kubefence_webhook::namespaces::StaticNamespaces;
use kubefence_webhook::pods::StaticPods;
use kubefence_webhook::policy::{Endpoint, Policy};
use kubefence_webhook::review;
use serde_json::{json, Value};

// The server's allocator (src/main.rs), so these are the server's costs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: i64 = 1_780_000_000;
const RS_CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";

const CONFIG: &str = r#"
default_profile = "default"
max_body_bytes = 65536
trusted_users = ["system:serviceaccount:kubefence-system:kubefence-webhook"]
[[runtime_classes]]
name = "nono"
handler = "nono-runc"
[exemptions]
namespaces = ["kube-system"]
[[dev.namespaces]]
name = "team-a"
labels = { "nono.sh/mode" = "enforce" }
annotations = { "nono.sh/allowed-profiles" = "default,strict" }
"#;

fn admission() -> Admission {
    let catalog = Catalog::from_json(
        br#"{"strictest":"strict","profiles":{"default":{},"strict":{}}}"#,
        Path::new("catalog.json"),
    )
    .unwrap();
    let config = ConfigFile::parse(CONFIG, Path::new("bench.toml"))
        .unwrap()
        .validate(catalog)
        .unwrap();
    let signer = Signer::generate().unwrap();
    let trust = keyfiles::trust_set(&signer, &[]).unwrap();
    Admission::new(
        Policy::new(config.policy.clone(), trust),
        signer,
        Arc::new(StaticNamespaces::new(&config.dev.namespaces)),
        Arc::new(StaticPods::default()),
        Arc::new(|| NOW),
    )
}

/// The pod the ReplicaSet controller submits for Deployment `web`.
fn deployment_pod() -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "generateName": "web-7f9c4-", "namespace": "team-a", "creationTimestamp": null,
            "labels": {"app": "web", "pod-template-hash": "7f9c4"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7f9c4",
                "uid": "5b1e7f7c-2f6e-4d6b-9a47-0d3c9c1f2a10", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}],
            "initContainers": [{"name": "migrate", "image": "registry.example/web-migrate:1.4",
                "command": ["/migrate", "up"], "resources": {},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"}],
            "containers": [{"name": "web", "image": "registry.example/web:1.4",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    })
}

fn review_body(uid: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": RS_CONTROLLER, "uid": "0f2b6c2e-6d0b-4a52-8f3c-6a1f3c0e9b11",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let adm = admission();
    let handle = |endpoint: Endpoint, body: &[u8]| rt.block_on(adm.handle(endpoint, body));

    let create = review_body("b1", deployment_pod());
    let reply = handle(Endpoint::Mutate, &create);
    let out: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(out["response"]["patchType"], "JSONPatch", "{out}");
    let patch = STANDARD
        .decode(out["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut stored = deployment_pod();
    json_patch::patch(&mut stored, &patch).unwrap();
    let reinvoke = review_body("b2", stored.clone());
    stored["metadata"]["name"] = json!("web-7f9c4-x2b9z");
    stored["metadata"]["uid"] = json!("3f1c2d4e-0000-4000-8000-000000000001");
    let validate = review_body("b3", stored);
    let mut forbidden = deployment_pod();
    forbidden["metadata"]["annotations"] = json!({"nono.sh/profile": "web"});
    let deny = review_body("b4", forbidden);
    let out: Value = serde_json::from_slice(&handle(Endpoint::Mutate, &deny).body).unwrap();
    assert_eq!(out["response"]["allowed"], false, "{out}");

    let mut g = c.benchmark_group("admission");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_review", |b| {
        b.iter(|| review::parse(black_box(&create)).unwrap())
    });
    g.bench_function("mutate_create_deployment_pod", |b| {
        b.iter(|| handle(Endpoint::Mutate, black_box(&create)))
    });
    g.bench_function("mutate_deny_forbidden_profile", |b| {
        b.iter(|| handle(Endpoint::Mutate, black_box(&deny)))
    });
    g.bench_function("mutate_reinvocation_noop", |b| {
        b.iter(|| handle(Endpoint::Mutate, black_box(&reinvoke)))
    });
    g.bench_function("validate_stored_pod", |b| {
        b.iter(|| handle(Endpoint::Validate, black_box(&validate)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
