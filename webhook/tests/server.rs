//! The real server on loopback over TLS, fed AdmissionReviews as the
//! apiserver sends them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kubefence_shared::decision::{Freshness, NodeView, PodBinding};
use kubefence_shared::envelope::{Signer, TrustSet};
use kubefence_shared::profile::Catalog;
use kubefence_webhook::admission::Admission;
use kubefence_webhook::config::ConfigFile;
use kubefence_webhook::keyfiles;
use kubefence_webhook::metrics::Metrics;
use kubefence_webhook::namespaces::StaticNamespaces;
use kubefence_webhook::policy::Policy;
use kubefence_webhook::server::{self, AppState};
use kubefence_webhook::tls::{self, CertStore, Reload};
use serde_json::{json, Value};
use tokio::sync::oneshot;

const NOW: i64 = 1_780_000_000;
const SA: &str = "system:serviceaccount:kubefence-system:kubefence-webhook";
const RS_CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";

const CONFIG: &str = r#"
default_profile = "default"
max_body_bytes = 65536
trusted_users = ["system:serviceaccount:kubefence-system:kubefence-webhook"]
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
[[dev.namespaces]]
name = "team-b"
labels = { "nono.sh/mode" = "audit" }
"#;

struct Harness {
    base: String,
    client: reqwest::Client,
    /// What a node trusts: only the webhook's public key.
    node_trust: TrustSet,
    certs: Arc<CertStore>,
    /// The first serving certificate (its own CA).
    ca: String,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), server::ServeError>>,
    dir: tempfile::TempDir,
}

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// Writes a cert pair the way the kubelet lays out a Secret volume:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..<version>`.
fn write_secret_volume(dir: &Path, version: &str, cert: &str, key: &str) {
    let versioned = dir.join(version);
    std::fs::create_dir_all(&versioned).unwrap();
    std::fs::write(versioned.join("tls.crt"), cert).unwrap();
    std::fs::write(versioned.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls::self_signed(&["127.0.0.1".into()]).unwrap();
    write_secret_volume(dir.path(), "..v1", &cert, &key);
    let certs = CertStore::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();

    let catalog = Catalog::from_json(
        br#"{"strictest":"strict","profiles":{"default":{},"strict":{}}}"#,
        Path::new("catalog.json"),
    )
    .unwrap();
    let config = ConfigFile::parse(CONFIG, Path::new("test.toml"))
        .unwrap()
        .validate(catalog)
        .unwrap();
    let signer = Signer::generate().unwrap();
    let mut node_trust = TrustSet::new();
    node_trust.insert(signer.verifying_key());
    let trust = keyfiles::trust_set(&signer, &[]).unwrap();
    let admission = Admission::new(
        Policy::new(config.policy.clone(), trust),
        signer,
        Arc::new(StaticNamespaces::new(&config.dev.namespaces)),
        Arc::new(|| NOW),
    );
    let state = AppState {
        admission: Arc::new(admission),
        metrics: Arc::new(Metrics::new()),
        max_body_bytes: config.max_body_bytes,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        state,
        certs.clone(),
        async {
            let _ = rx.await;
        },
        Duration::from_secs(10),
    ));
    Harness {
        base: format!("https://127.0.0.1:{port}"),
        client: client_trusting(&cert),
        node_trust,
        certs,
        ca: cert,
        stop: Some(tx),
        server,
        dir,
    }
}

/// A pod as the ReplicaSet controller submits it for a Deployment `web`.
fn deployment_pod() -> Value {
    json!({
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

struct Req<'a> {
    uid: &'a str,
    operation: &'a str,
    user: &'a str,
    object: Value,
    old_object: Value,
    dry_run: bool,
    sub_resource: Option<&'a str>,
}

impl<'a> Req<'a> {
    fn create(uid: &'a str, object: Value) -> Self {
        Req {
            uid,
            operation: "CREATE",
            user: RS_CONTROLLER,
            object,
            old_object: Value::Null,
            dry_run: false,
            sub_resource: None,
        }
    }

    fn update(uid: &'a str, user: &'a str, old: Value, new: Value) -> Self {
        Req {
            operation: "UPDATE",
            user,
            old_object: old,
            ..Req::create(uid, new)
        }
    }
}

/// The AdmissionReview exactly as kube-apiserver serialises it.
fn review(r: &Req<'_>) -> Value {
    let name = r.object["metadata"]["name"].as_str().unwrap_or("");
    let namespace = r.object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("team-a");
    let options = match r.operation {
        "CREATE" => json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
        _ => json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
    };
    let mut request = json!({
        "uid": r.uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": r.operation,
        "userInfo": {
            "username": r.user,
            "uid": "0f2b6c2e-6d0b-4a52-8f3c-6a1f3c0e9b11",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
        },
        "object": r.object,
        "oldObject": r.old_object,
        "dryRun": r.dry_run,
        "options": options
    });
    if !name.is_empty() {
        request["name"] = json!(name);
    }
    if let Some(sub) = r.sub_resource {
        request["subResource"] = json!(sub);
        request["requestSubResource"] = json!(sub);
    }
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request})
}

impl Harness {
    async fn post_raw(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a review and returns its `response`, checking the envelope.
    async fn admit(&self, path: &str, r: &Req<'_>) -> Value {
        let resp = self
            .post_raw(path, serde_json::to_vec(&review(r)).unwrap())
            .await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], r.uid, "response.uid == request.uid");
        v["response"].clone()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.server.await.unwrap().unwrap();
    }
}

/// Applies the response's base64 JSON patch to `object` and checks the
/// result is a valid Pod.
fn apply(response: &Value, object: &Value) -> (Value, Pod) {
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch");
    let b64 = response["patch"]
        .as_str()
        .expect("patch is a base64 string");
    let patch: json_patch::Patch = serde_json::from_slice(&STANDARD.decode(b64).unwrap()).unwrap();
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    let pod: Pod = serde_json::from_value(out.clone()).unwrap();
    (out, pod)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

#[tokio::test]
async fn deployment_pod_is_sandboxed_and_the_node_verifies_the_decision() {
    let h = start().await;
    let object = deployment_pod();
    let resp = h.admit("/mutate", &Req::create("a1", object.clone())).await;
    let (patched, pod) = apply(&resp, &object);
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.runtime_class_name.as_deref(), Some("nono"));
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("registry.example/web:1.4")
    );
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()["app"],
        "web",
        "untouched"
    );
    assert_eq!(
        annotation(&pod, "required-plugins.noderesource.dev"),
        Some(r#"["kubefence"]"#)
    );
    assert_eq!(annotation(&pod, "nono.sh/profile"), Some("default"));
    assert_eq!(resp["auditAnnotations"]["outcome"], "mutate");

    // The node sees the generated name and the handler of the class.
    let token = annotation(&pod, "nono.sh/decision").unwrap();
    let view = NodeView {
        namespace: "team-a",
        pod_name: "web-7f9c4-x2b9z",
        handler: "nono-runc",
    };
    let verified = h
        .node_trust
        .verify(token, &view, &Freshness::at(NOW + 60))
        .unwrap();
    let c = verified.claims();
    assert_eq!(c.pod, PodBinding::GenerateName("web-7f9c4-".into()));
    assert_eq!(c.iat, NOW);
    assert_eq!(c.containers.len(), 2);
    assert_eq!(c.profile_for("migrate").as_str(), "default");
    let wrong = NodeView {
        handler: "runc",
        ..view
    };
    assert!(h
        .node_trust
        .verify(token, &wrong, &Freshness::at(NOW))
        .is_err());

    // Reinvocation with our own result: nothing more to do.
    let again = h
        .admit("/mutate", &Req::create("a2", patched.clone()))
        .await;
    assert_eq!(again["allowed"], true);
    assert!(again.get("patch").is_none(), "{again}");

    // Validating admission sees the final object with name and uid.
    let mut stored = patched;
    stored["metadata"]["name"] = json!("web-7f9c4-x2b9z");
    stored["metadata"]["uid"] = json!("3f1c2d4e-0000-4000-8000-000000000001");
    let v = h
        .admit("/validate", &Req::create("a3", stored.clone()))
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert!(v.get("patch").is_none());
    // ... and refuses it if a later mutator dropped the runtime class.
    stored["spec"]
        .as_object_mut()
        .unwrap()
        .remove("runtimeClassName");
    let v = h.admit("/validate", &Req::create("a4", stored)).await;
    assert_eq!(v["allowed"], false);
    assert_eq!(v["status"]["code"], 403);
    h.stop().await;
}

#[tokio::test]
async fn pods_naming_their_runtime_class() {
    let h = start().await;
    let mut object = deployment_pod();
    object["spec"]["runtimeClassName"] = json!("nono-debug");
    let resp = h.admit("/mutate", &Req::create("b1", object.clone())).await;
    let (_, pod) = apply(&resp, &object);
    assert_eq!(
        pod.spec.as_ref().unwrap().runtime_class_name.as_deref(),
        Some("nono-debug")
    );
    let token = annotation(&pod, "nono.sh/decision").unwrap().to_owned();
    let claims = h.node_trust.authenticate(&token).unwrap();
    assert_eq!(claims.claims().handler, "nono-runc-debug");

    object["spec"]["runtimeClassName"] = json!("gvisor");
    let resp = h.admit("/mutate", &Req::create("b2", object)).await;
    assert_eq!(resp["allowed"], false);
    assert_eq!(resp["status"]["code"], 403);
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"gvisor\"") && msg.contains("nono, nono-debug"),
        "{msg}"
    );
    assert!(resp.get("patch").is_none());
    h.stop().await;
}

#[tokio::test]
async fn forged_decision_is_replaced() {
    let h = start().await;
    let attacker = Signer::generate().unwrap();
    let forged = attacker.sign(&kubefence_shared::decision::Claims {
        ver: 1,
        namespace: "team-a".into(),
        pod: PodBinding::GenerateName("web-7f9c4-".into()),
        handler: "nono-runc".into(),
        profile: kubefence_shared::ProfileName::parse("default").unwrap(),
        containers: Default::default(),
        iat: NOW,
    });
    let mut object = deployment_pod();
    object["metadata"]["annotations"] = json!({
        "nono.sh/decision": forged,
        "tolerate-missing-plugins.noderesource.dev/container.web": "true",
        "required-plugins.noderesource.dev/pod": "[]",
        "team": "payments"
    });
    let resp = h.admit("/mutate", &Req::create("c1", object.clone())).await;
    let (_, pod) = apply(&resp, &object);
    let anns = pod.metadata.annotations.as_ref().unwrap();
    assert_ne!(anns["nono.sh/decision"], forged);
    assert!(h.node_trust.authenticate(&anns["nono.sh/decision"]).is_ok());
    assert_eq!(anns["team"], "payments");
    assert!(!anns.contains_key("tolerate-missing-plugins.noderesource.dev/container.web"));
    assert!(!anns.contains_key("required-plugins.noderesource.dev/pod"));
    h.stop().await;
}

#[tokio::test]
async fn update_tampering_denied_for_users_allowed_for_the_trusted_sa() {
    let h = start().await;
    let object = deployment_pod();
    let resp = h.admit("/mutate", &Req::create("d1", object.clone())).await;
    let (mut stored, _) = apply(&resp, &object);
    stored["metadata"]["name"] = json!("web-7f9c4-x2b9z");
    stored["metadata"]["uid"] = json!("3f1c2d4e-0000-4000-8000-000000000002");
    let mut tampered = stored.clone();
    tampered["metadata"]["annotations"]["nono.sh/profile"] = json!("strict");
    for path in ["/mutate", "/validate"] {
        let r = Req::update("d2", "alice", stored.clone(), tampered.clone());
        let resp = h.admit(path, &r).await;
        assert_eq!(resp["allowed"], false, "{path}");
        let msg = resp["status"]["message"].as_str().unwrap();
        assert!(msg.contains("nono.sh/profile"), "{msg}");
        let r = Req::update("d3", SA, stored.clone(), tampered.clone());
        let resp = h.admit(path, &r).await;
        assert_eq!(resp["allowed"], true, "{path}");
        assert!(resp.get("patch").is_none());
    }
    // Ephemeral containers subresource: allowed, with the profile warned.
    let mut debug = stored.clone();
    debug["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "busybox"}]);
    let mut r = Req::update("d4", "alice", stored, debug);
    r.sub_resource = Some("ephemeralcontainers");
    let resp = h.admit("/mutate", &r).await;
    assert_eq!(resp["allowed"], true);
    assert!(resp["warnings"][0]
        .as_str()
        .unwrap()
        .contains("profile default"));
    h.stop().await;
}

#[tokio::test]
async fn dry_run_and_audit_mode() {
    let h = start().await;
    let object = deployment_pod();
    let mut r = Req::create("e1", object.clone());
    r.dry_run = true;
    let resp = h.admit("/mutate", &r).await;
    let (_, pod) = apply(&resp, &object);
    assert_eq!(
        pod.spec.unwrap().runtime_class_name.as_deref(),
        Some("nono")
    );

    let mut audit = deployment_pod();
    audit["metadata"]["namespace"] = json!("team-b");
    audit["metadata"]["annotations"] = json!({"nono.sh/profile": "nope"});
    let resp = h.admit("/mutate", &Req::create("e2", audit)).await;
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("patch").is_none());
    assert_eq!(resp["auditAnnotations"]["outcome"], "would-deny");
    for w in resp["warnings"].as_array().unwrap() {
        assert!(w.as_str().unwrap().chars().count() < 120, "{w}");
    }
    h.stop().await;
}

#[tokio::test]
async fn non_pod_kind_and_ignored_operations() {
    let h = start().await;
    let mut v = review(&Req::create(
        "f1",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
    ));
    v["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    v["request"]["resource"] = json!({"group": "apps", "version": "v1", "resource": "deployments"});
    let resp = h.post_raw("/mutate", serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["response"]["uid"], "f1");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 400);
    assert!(v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("Pod"));

    // kubectl exec: CONNECT with a PodExecOptions object.
    let mut v = review(&Req::create(
        "f2",
        json!({"kind": "PodExecOptions", "apiVersion": "v1", "command": ["sh"]}),
    ));
    v["request"]["operation"] = json!("CONNECT");
    v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "PodExecOptions"});
    let resp = h.post_raw("/mutate", serde_json::to_vec(&v).unwrap()).await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["uid"], "f2");
    h.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let h = start().await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "not UTF-8 JSON"),
        (vec![0xff, 0xfe, 0x00], "not UTF-8 JSON"),
        (br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(), "expected apiVersion"),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "no request"),
        (b"[]".to_vec(), "expected apiVersion"),
    ];
    for (body, want) in cases {
        let resp = h.post_raw("/mutate", body).await;
        assert_eq!(resp.status(), 400);
        let text = resp.text().await.unwrap();
        assert!(text.contains(want), "want {want:?} in {text:?}");
    }
    // uid readable, rest malformed: answered in-band.
    let mut v = review(&Req::create("g1", deployment_pod()));
    v["request"]["operation"] = json!(["CREATE"]);
    let resp = h.post_raw("/mutate", serde_json::to_vec(&v).unwrap()).await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            v["response"]["uid"].clone(),
            v["response"]["allowed"].clone()
        ),
        (json!("g1"), json!(false))
    );
    // An object that is not a Pod although the kind says so.
    let mut v = review(&Req::create("g2", deployment_pod()));
    v["request"]["object"]["spec"]["containers"] = json!("web");
    let resp = h.post_raw("/mutate", serde_json::to_vec(&v).unwrap()).await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 400);

    // Over max_body_bytes (64 KiB here).
    let mut big = deployment_pod();
    big["metadata"]["annotations"] = json!({"filler": "x".repeat(70 * 1024)});
    let resp = h
        .post_raw(
            "/mutate",
            serde_json::to_vec(&review(&Req::create("g3", big))).unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 413);

    // The server is unaffected.
    let resp = h
        .admit("/mutate", &Req::create("g4", deployment_pod()))
        .await;
    assert_eq!(resp["allowed"], true);
    let health = h
        .client
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = h
        .client
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = h
        .client
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"kubefence_webhook_decisions_total{endpoint="mutate",outcome="error",reason="too-large"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outcome="mutate",reason="sandboxed""#),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn certificate_reload_through_a_data_symlink_swap() {
    let h = start().await;
    assert_eq!(
        h.client
            .get(format!("{}/healthz", h.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (cert2, key2) = tls::self_signed(&["127.0.0.1".into()]).unwrap();
    let new_client = client_trusting(&cert2);
    assert!(
        new_client
            .get(format!("{}/healthz", h.base))
            .send()
            .await
            .is_err(),
        "the new CA is not served yet"
    );
    write_secret_volume(h.dir.path(), "..v2", &cert2, &key2);
    assert_eq!(h.certs.reload(), Reload::Loaded);
    assert_eq!(
        new_client
            .get(format!("{}/healthz", h.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A new handshake trusting only the old CA fails now.
    assert!(client_trusting(&h.ca)
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .is_err());
    // A broken rotation keeps the current pair.
    write_secret_volume(h.dir.path(), "..v3", &cert2, "not a key");
    assert_eq!(h.certs.reload(), Reload::Rejected);
    let fresh = client_trusting(&cert2);
    assert_eq!(
        fresh
            .get(format!("{}/healthz", h.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    h.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting() {
    let h = start().await;
    let base = h.base.clone();
    let client = h.client.clone();
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ca = h.ca.clone();
    h.stop().await;
    // Same CA, new connection: nothing listens any more.
    let err = client_trusting(&ca)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_in_flight_request() {
    use std::io::{Read, Write};
    let h = start().await;
    let port: u16 = h.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(h.ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let body = serde_json::to_vec(&review(&Req::create("s1", deployment_pod()))).unwrap();
    let (half_sent_tx, half_sent_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let client = tokio::task::spawn_blocking(move || {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(cfg, name).unwrap();
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let head = format!(
            "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let (first, rest) = body.split_at(body.len() / 2);
        tls.write_all(head.as_bytes()).unwrap();
        tls.write_all(first).unwrap();
        tls.flush().unwrap();
        half_sent_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        tls.write_all(rest).unwrap();
        tls.flush().unwrap();
        let mut response = Vec::new();
        // The server closes after answering; a missing close_notify is fine.
        let _ = tls.read_to_end(&mut response);
        String::from_utf8(response).unwrap()
    });
    half_sent_rx.await.unwrap();
    // Let the server parse the request head so the request is in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Harness { stop, server, .. } = h;
    stop.unwrap().send(()).unwrap();
    go_tx.send(()).unwrap();
    let response = client.await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""uid":"s1""#), "{response}");
    assert!(response.contains(r#""allowed":true"#), "{response}");
    server.await.unwrap().unwrap();
}
