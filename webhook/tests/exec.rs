//! `kubectl exec` / `kubectl attach` over the real TLS server: CONNECT
//! AdmissionReviews shaped as kube-apiserver sends them.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kubefence_shared::decision::{Claims, PodBinding};
use kubefence_shared::envelope::Signer;
use kubefence_shared::ProfileName;
use kubefence_webhook::pods::{LookupError, StaticPods};
use serde_json::{json, Value};

const ALICE: &str = "alice";

fn config(exec: &str) -> String {
    format!(
        r#"{CONFIG}
[[dev.namespaces]]
name = "plain"
[exec]
break_glass_users = ["oncall@example.com"]
break_glass_groups = ["sre"]
{exec}
"#
    )
}

/// A Deployment pod as stored after kubefence admitted it: generated name,
/// decision bound to the generateName prefix, `web` on the strict profile.
fn stored_pod(signer: &Signer, name: &str, namespace: &str) -> Pod {
    let claims = Claims {
        ver: 1,
        namespace: namespace.into(),
        pod: PodBinding::GenerateName("web-7f9c4-".into()),
        handler: "nono-runc".into(),
        profile: ProfileName::parse("default").unwrap(),
        containers: [
            (
                "migrate".to_string(),
                ProfileName::parse("default").unwrap(),
            ),
            ("web".to_string(), ProfileName::parse("strict").unwrap()),
        ]
        .into(),
        iat: NOW,
    };
    let mut pod = deployment_pod();
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["namespace"] = json!(namespace);
    pod["metadata"]["uid"] = json!("3f1c2d4e-0000-4000-8000-00000000e1e1");
    pod["metadata"]["annotations"] = json!({
        "nono.sh/decision": signer.sign(&claims),
        "nono.sh/profile": "default",
        "required-plugins.noderesource.dev": "[\"kubefence\"]"
    });
    pod["spec"]["runtimeClassName"] = json!("nono");
    serde_json::from_value(pod).unwrap()
}

fn pods(signer: &Signer) -> StaticPods {
    let mut forged = stored_pod(&Signer::generate().unwrap(), "web-7f9c4-kv8wd", "team-a");
    forged.metadata.name = Some("forged-7f9c4-kv8wd".into());
    let mut two = stored_pod(signer, "web-7f9c4-tw9cc", "team-a");
    if let Some(spec) = two.spec.as_mut() {
        let mut second = spec.containers[0].clone();
        second.name = "envoy".into();
        spec.containers.push(second);
    }
    let mut bare = stored_pod(signer, "bare-0", "team-a");
    bare.metadata.annotations = None;
    StaticPods::new([
        stored_pod(signer, "web-7f9c4-x2b9z", "team-a"),
        stored_pod(signer, "web-7f9c4-x2b9z", "team-b"),
        two,
        forged,
        bare,
    ])
}

struct Exec<'a> {
    uid: &'a str,
    sub: &'a str,
    namespace: &'a str,
    pod: &'a str,
    container: &'a str,
    command: Vec<String>,
    user: &'a str,
    groups: Vec<&'a str>,
}

impl<'a> Exec<'a> {
    /// `kubectl exec -it <pod> -c <container> -- <command>`.
    fn new(uid: &'a str, pod: &'a str, container: &'a str, command: &[&str]) -> Self {
        Exec {
            uid,
            sub: "exec",
            namespace: "team-a",
            pod,
            container,
            command: command.iter().map(|s| s.to_string()).collect(),
            user: ALICE,
            groups: vec!["developers", "system:authenticated"],
        }
    }

    fn options(&self) -> Value {
        let kind = match self.sub {
            "exec" => "PodExecOptions",
            _ => "PodAttachOptions",
        };
        // kubectl sends stderr=false with a tty; omitempty drops false
        // booleans and an empty container.
        let mut o =
            json!({"kind": kind, "apiVersion": "v1", "stdin": true, "stdout": true, "tty": true});
        if !self.container.is_empty() {
            o["container"] = json!(self.container);
        }
        if self.sub == "exec" {
            o["command"] = json!(self.command);
        }
        o
    }

    /// The CONNECT review exactly as kube-apiserver serialises it.
    fn review(&self, object: Value) -> Value {
        let kind = object["kind"].clone();
        json!({
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": self.uid,
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "subResource": self.sub,
                "requestKind": {"group": "", "version": "v1", "kind": kind},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "requestSubResource": self.sub,
                "name": self.pod,
                "namespace": self.namespace,
                "operation": "CONNECT",
                "userInfo": {
                    "username": self.user,
                    "uid": "8d5b1f3a-1c2e-4f6a-9b0d-2e4c6a8b0d1f",
                    "groups": self.groups
                },
                "object": object,
                "oldObject": null,
                "dryRun": false,
                "options": null
            }
        })
    }
}

async fn send(h: &Harness, path: &str, review: &Value) -> Value {
    let resp = h.post_raw(path, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], review["request"]["uid"]);
    v["response"].clone()
}

async fn post(h: &Harness, path: &str, e: &Exec<'_>) -> Value {
    send(h, path, &e.review(e.options())).await
}

fn denial(resp: &Value) -> String {
    assert_eq!(resp["allowed"], false, "{resp}");
    assert_eq!(resp["status"]["code"], 403, "{resp}");
    assert!(resp.get("patch").is_none());
    resp["status"]["message"].as_str().unwrap().to_owned()
}

fn wrapped(profile: &str, command: &[&str]) -> Value {
    let mut v = vec![
        "/nono/nono".to_string(),
        "wrap".into(),
        "--silent".into(),
        "--profile".into(),
        format!("/nono/profiles/{profile}.json"),
        "--allow".into(),
        "/nono/.kubefence-absent".into(),
        "--env-credential".into(),
        String::new(),
        "--log-file".into(),
        "/dev/null".into(),
        "--".into(),
    ];
    v.extend(command.iter().map(|s| s.to_string()));
    json!(v)
}

#[tokio::test]
async fn deny_mode_refuses_exec_with_advice_and_admits_attach() {
    let h = start_with(&config(""), pods).await;
    let pod = "web-7f9c4-x2b9z";
    for path in ["/validate", "/mutate"] {
        let resp = post(&h, path, &Exec::new("x1", pod, "web", &["sh"])).await;
        let msg = denial(&resp);
        assert!(
            msg.contains(&format!(
                "kubectl debug -it -n team-a {pod} --image=<image> --target=web"
            )),
            "{msg}"
        );
        assert!(msg.contains("break-glass"), "{msg}");
        assert_eq!(resp["auditAnnotations"]["reason"], "exec-denied");
        assert_eq!(resp["auditAnnotations"]["profile"], "strict");
    }
    // attach joins the sandboxed PID 1.
    let attach = Exec {
        sub: "attach",
        ..Exec::new("x2", pod, "web", &[])
    };
    let resp = post(&h, "/validate", &attach).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(resp["auditAnnotations"]["reason"], "attach");
    // Running the command under nono with the container's profile is fine.
    let mut e = Exec::new("x3", pod, "web", &[]);
    e.command = serde_json::from_value(wrapped("strict", &["sh"])).unwrap();
    let resp = post(&h, "/validate", &e).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    h.stop().await;
}

#[tokio::test]
async fn break_glass_user_and_group_are_admitted_unconfined() {
    let h = start_with(&config(""), pods).await;
    let by_user = Exec {
        user: "oncall@example.com",
        groups: vec!["system:authenticated"],
        ..Exec::new("b1", "web-7f9c4-x2b9z", "web", &["cat", "/etc/shadow"])
    };
    let by_group = Exec {
        groups: vec!["sre", "system:authenticated"],
        ..Exec::new("b2", "web-7f9c4-x2b9z", "web", &["cat", "/etc/shadow"])
    };
    for e in [by_user, by_group] {
        let resp = post(&h, "/validate", &e).await;
        assert_eq!(resp["allowed"], true, "{resp}");
        assert!(resp.get("patch").is_none());
        assert_eq!(resp["auditAnnotations"]["reason"], "exec-break-glass");
        assert_eq!(resp["auditAnnotations"]["break-glass"], "true");
        assert_eq!(resp["auditAnnotations"]["container"], "web");
        assert!(resp["warnings"][0].as_str().unwrap().contains("OUTSIDE"));
    }
    h.stop().await;
}

#[tokio::test]
async fn wrap_mode_rewrites_the_command_and_validation_checks_it() {
    let h = start_with(&config("mode = \"wrap\""), pods).await;
    let e = Exec::new("w1", "web-7f9c4-x2b9z", "web", &["sh", "-c", "ls /data"]);
    let object = e.options();
    let resp = send(&h, "/mutate", &e.review(object.clone())).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(resp["patchType"], "JSONPatch");
    assert_eq!(resp["auditAnnotations"]["reason"], "exec-wrapped");
    assert!(resp["warnings"][0]
        .as_str()
        .unwrap()
        .contains("nono sandbox (profile strict)"));
    let raw = STANDARD
        .decode(resp["patch"].as_str().expect("patch is a base64 string"))
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    assert_eq!(
        patched["command"],
        wrapped("strict", &["sh", "-c", "ls /data"])
    );
    // Nothing but the command changes.
    for k in ["kind", "apiVersion", "stdin", "stdout", "tty", "container"] {
        assert_eq!(patched[k], object[k], "{k}");
    }

    // The validating webhook sees the patched options: admitted. If the
    // apiserver dropped the patch it sees the original: refused.
    let resp = send(
        &h,
        "/validate",
        &Exec { uid: "w2", ..e }.review(patched.clone()),
    )
    .await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let e = Exec::new("w3", "web-7f9c4-x2b9z", "web", &["sh", "-c", "ls /data"]);
    let msg = denial(&send(&h, "/validate", &e.review(object.clone())).await);
    assert!(msg.contains("not wrapped in nono"), "{msg}");
    // Reinvocation with our own result: no second wrapper.
    let resp = send(&h, "/mutate", &Exec { uid: "w4", ..e }.review(patched)).await;
    assert_eq!(resp["allowed"], true);
    assert!(resp.get("patch").is_none(), "{resp}");

    // Init containers keep their own profile.
    let resp = post(
        &h,
        "/mutate",
        &Exec::new("w5", "web-7f9c4-x2b9z", "migrate", &["id"]),
    )
    .await;
    let raw = STANDARD.decode(resp["patch"].as_str().unwrap()).unwrap();
    let ops: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(ops[0]["value"], wrapped("default", &["id"]));
    h.stop().await;
}

#[tokio::test]
async fn wrap_mode_container_defaulting() {
    let h = start_with(&config("mode = \"wrap\""), pods).await;
    // One app container: the apiserver would pick it; so does kubefence.
    let resp = post(
        &h,
        "/mutate",
        &Exec::new("c1", "web-7f9c4-x2b9z", "", &["id"]),
    )
    .await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(resp["auditAnnotations"]["container"], "web");
    let raw = STANDARD.decode(resp["patch"].as_str().unwrap()).unwrap();
    let ops: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(ops[0]["value"], wrapped("strict", &["id"]));
    // Two: ambiguous, refused (the apiserver refuses it too).
    let msg = denial(
        &post(
            &h,
            "/mutate",
            &Exec::new("c2", "web-7f9c4-tw9cc", "", &["id"]),
        )
        .await,
    );
    assert!(
        msg.contains("names no container") && msg.contains("web, envoy"),
        "{msg}"
    );
    h.stop().await;
}

#[tokio::test]
async fn pods_without_a_valid_decision_and_failed_lookups_are_refused() {
    let h = start_with(&config("mode = \"wrap\""), pods).await;
    let cases = [
        ("bare-0", "carries no nono.sh/decision"),
        ("forged-7f9c4-kv8wd", "not a valid kubefence decision"),
        (
            "gone-0",
            "could not look up pod team-a/gone-0 (pod not found)",
        ),
    ];
    for (pod, want) in cases {
        for path in ["/mutate", "/validate"] {
            let msg = denial(&post(&h, path, &Exec::new("d1", pod, "web", &["sh"])).await);
            assert!(msg.contains(want), "{pod} {path}: want {want:?} in {msg}");
        }
    }
    h.stop().await;

    // The API is down.
    let h = start_with(&config(""), |_| {
        StaticPods::failing(LookupError::Timeout(std::time::Duration::from_secs(2)))
    })
    .await;
    let msg = denial(
        &post(
            &h,
            "/validate",
            &Exec::new("d2", "web-7f9c4-x2b9z", "web", &["sh"]),
        )
        .await,
    );
    assert!(
        msg.contains("no answer from the Kubernetes API within 2000 ms"),
        "{msg}"
    );
    assert!(msg.contains("fail closed"), "{msg}");
    h.stop().await;
}

#[tokio::test]
async fn exempt_audit_and_not_opted_in_namespaces() {
    let h = start_with(&config(""), pods).await;
    // Exempt namespace.
    let e = Exec {
        namespace: "kube-system",
        ..Exec::new("n1", "coredns-0", "coredns", &["sh"])
    };
    let resp = post(&h, "/validate", &e).await;
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["auditAnnotations"]["reason"], "exempt-namespace");
    // Not opted in.
    let e = Exec {
        namespace: "plain",
        ..Exec::new("n2", "anything", "app", &["sh"])
    };
    let resp = post(&h, "/validate", &e).await;
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["auditAnnotations"]["reason"], "not-opted-in");
    // Audit mode: admitted, with what enforce would do.
    let e = Exec {
        namespace: "team-b",
        ..Exec::new("n3", "web-7f9c4-x2b9z", "web", &["sh"])
    };
    let resp = post(&h, "/mutate", &e).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(resp.get("patch").is_none());
    assert_eq!(resp["auditAnnotations"]["outcome"], "would-deny");
    assert_eq!(resp["auditAnnotations"]["mode"], "audit");
    let w = resp["warnings"][0].as_str().unwrap();
    assert!(
        w.starts_with("kubefence audit mode: enforce would deny"),
        "{w}"
    );
    assert!(w.chars().count() < 120, "{w}");
    // Unknown namespace: fail closed.
    let e = Exec {
        namespace: "brand-new",
        ..Exec::new("n4", "p", "app", &["sh"])
    };
    let msg = denial(&post(&h, "/validate", &e).await);
    assert!(msg.contains("does not know namespace brand-new"), "{msg}");
    h.stop().await;
}
