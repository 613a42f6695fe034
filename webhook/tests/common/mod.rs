//! Helpers shared by the integration tests: the real server on loopback
//! over TLS, and AdmissionReviews as kube-apiserver sends them.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kubefence_shared::envelope::{Signer, TrustSet};
use kubefence_shared::profile::Catalog;
use kubefence_webhook::admission::Admission;
use kubefence_webhook::config::ConfigFile;
use kubefence_webhook::keyfiles;
use kubefence_webhook::metrics::Metrics;
use kubefence_webhook::namespaces::StaticNamespaces;
use kubefence_webhook::pods::StaticPods;
use kubefence_webhook::policy::Policy;
use kubefence_webhook::server::{self, AppState};
use kubefence_webhook::tls::{self, CertStore};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const NOW: i64 = 1_780_000_000;
pub const SA: &str = "system:serviceaccount:kubefence-system:kubefence-webhook";
pub const RS_CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";

pub const CONFIG: &str = r#"
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

pub struct Harness {
    pub base: String,
    pub port: u16,
    pub client: reqwest::Client,
    /// What a node trusts: only the webhook's public key.
    pub node_trust: TrustSet,
    pub certs: Arc<CertStore>,
    /// The first serving certificate (its own CA).
    pub ca: String,
    pub stop: Option<oneshot::Sender<()>>,
    pub server: tokio::task::JoinHandle<Result<(), server::ServeError>>,
    pub dir: tempfile::TempDir,
}

pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
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

/// A raw TLS connection to the server on 127.0.0.1:`port`, for tests that
/// write HTTP by hand (half requests, stalls).
pub fn tls_stream(
    port: u16,
    ca_pem: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Writes a cert pair the way the kubelet lays out a Secret volume:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..<version>`.
pub fn write_secret_volume(dir: &Path, version: &str, cert: &str, key: &str) {
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

pub async fn start() -> Harness {
    start_with(CONFIG, |_| StaticPods::default()).await
}

/// A server with its own config text; `pods` gets the webhook's signer so
/// it can hold pods carrying genuine decisions.
pub async fn start_with(config: &str, pods: impl FnOnce(&Signer) -> StaticPods) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls::self_signed(&["127.0.0.1".into()]).unwrap();
    write_secret_volume(dir.path(), "..v1", &cert, &key);
    let certs = CertStore::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();

    let catalog = Catalog::from_json(
        br#"{"strictest":"strict","profiles":{"default":{},"strict":{}}}"#,
        Path::new("catalog.json"),
    )
    .unwrap();
    let config = ConfigFile::parse(config, Path::new("test.toml"))
        .unwrap()
        .validate(catalog)
        .unwrap();
    let signer = Signer::generate().unwrap();
    let mut node_trust = TrustSet::new();
    node_trust.insert(signer.verifying_key());
    let trust = keyfiles::trust_set(&signer, &[]).unwrap();
    let pods = pods(&signer);
    let admission = Admission::new(
        Policy::new(config.policy.clone(), trust),
        signer,
        Arc::new(StaticNamespaces::new(&config.dev.namespaces)),
        Arc::new(pods),
        Arc::new(|| NOW),
    );
    let state = AppState {
        admission: Arc::new(admission),
        metrics: Arc::new(Metrics::new()),
        limits: Arc::new(server::Limits::from_config(&config)),
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
        port,
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
pub fn deployment_pod() -> Value {
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

pub struct Req<'a> {
    pub uid: &'a str,
    pub operation: &'a str,
    pub user: &'a str,
    pub object: Value,
    pub old_object: Value,
    pub dry_run: bool,
    pub sub_resource: Option<&'a str>,
}

impl<'a> Req<'a> {
    pub fn create(uid: &'a str, object: Value) -> Self {
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

    pub fn update(uid: &'a str, user: &'a str, old: Value, new: Value) -> Self {
        Req {
            operation: "UPDATE",
            user,
            old_object: old,
            ..Req::create(uid, new)
        }
    }
}

/// The AdmissionReview exactly as kube-apiserver serialises it.
pub fn review(r: &Req<'_>) -> Value {
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
    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a review and returns its `response`, checking the envelope.
    pub async fn admit(&self, path: &str, r: &Req<'_>) -> Value {
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

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.server.await.unwrap().unwrap();
    }
}

/// Applies the response's base64 JSON patch to `object` and checks the
/// result is a valid Pod.
pub fn apply(response: &Value, object: &Value) -> (Value, Pod) {
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

pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}
