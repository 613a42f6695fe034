//! Writes realistic seed inputs for each fuzz target into ../corpus/<target>/.

#[path = "../../src/lib.rs"]
#[allow(dead_code)]
mod fixtures;

use std::path::Path;

use fixtures::webhook::{deployment_pod, exec_review, review, RS_CONTROLLER};
use kubefence_nri::mux::{frame_message, PLUGIN_CONN};
use kubefence_nri::proto::api;
use kubefence_shared::keys;
use protobuf::Message;
use serde_json::{json, Value};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("../corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn admission_seeds() {
    let t = "admission_review";
    let object = deployment_pod();
    write(
        t,
        "create-deployment-pod.json",
        &json_bytes(&review(
            "a1",
            "CREATE",
            RS_CONTROLLER,
            object.clone(),
            Value::Null,
        )),
    );
    let admission = fixtures::webhook::admission(Vec::new());
    let stored = fixtures::webhook::admitted_pod(&admission);
    write(
        t,
        "create-reinvocation.json",
        &json_bytes(&review(
            "a2",
            "CREATE",
            RS_CONTROLLER,
            stored.clone(),
            Value::Null,
        )),
    );
    let mut relabel = stored.clone();
    relabel["metadata"]["labels"]["tier"] = json!("frontend");
    write(
        t,
        "update-labels.json",
        &json_bytes(&review("a3", "UPDATE", "alice", relabel, stored.clone())),
    );
    let mut tampered = stored.clone();
    tampered["metadata"]["annotations"]["nono.sh/profile"] = json!("strict");
    write(
        t,
        "update-tampered-annotation.json",
        &json_bytes(&review("a4", "UPDATE", "alice", tampered, stored.clone())),
    );
    let mut forbidden = object.clone();
    forbidden["metadata"]["annotations"] = json!({"nono.sh/profile": "web"});
    write(
        t,
        "create-deny-profile.json",
        &json_bytes(&review(
            "a5",
            "CREATE",
            RS_CONTROLLER,
            forbidden,
            Value::Null,
        )),
    );
    let mut audit_ns = object.clone();
    audit_ns["metadata"]["namespace"] = json!("team-b");
    write(
        t,
        "create-audit-namespace.json",
        &json_bytes(&review(
            "a6",
            "CREATE",
            RS_CONTROLLER,
            audit_ns,
            Value::Null,
        )),
    );
    write(
        t,
        "exec-wrap.json",
        &json_bytes(&exec_review(
            "a7",
            "web-7f9c4-x2b9z",
            "alice",
            &["sh", "-c", "id"],
        )),
    );
    write(
        t,
        "exec-break-glass.json",
        &json_bytes(&exec_review(
            "a8",
            "web-7f9c4-x2b9z",
            "oncall@example.com",
            &["bash"],
        )),
    );
    let mut del = review("a9", "DELETE", "alice", Value::Null, stored);
    del["request"]["options"] = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
    write(t, "delete.json", &json_bytes(&del));
    write(t, "bad-operation-type.json", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":5}}"#);
}

fn token_seeds() -> String {
    let token = fixtures::signer().sign(&fixtures::claims());
    write("decision_verify", "signed-token", token.as_bytes());
    let mut parts: Vec<&str> = token.split('.').collect();
    write(
        "decision_verify",
        "header-payload-only",
        parts[..2].join(".").as_bytes(),
    );
    parts[2] = "AAAA";
    write(
        "decision_verify",
        "short-signature",
        parts.join(".").as_bytes(),
    );
    // decision_mutate: edit lists (4 bytes each: kind, pos hi, pos lo, value).
    write("decision_mutate", "flip-signature-bit", &[1, 0, 200, 3]);
    write("decision_mutate", "edit-payload-json", &[7, 0, 20, b'b']);
    write("decision_mutate", "edit-header-json", &[6, 0, 10, b'X']);
    write(
        "decision_mutate",
        "truncate-and-insert",
        &[4, 0, 100, 0, 2, 0, 50, b'.'],
    );
    token
}

fn ttrpc_frame(stream: u32, method: &str, payload: Vec<u8>) -> Vec<u8> {
    let mut req = ttrpc::Request::new();
    req.service = "nri.pkg.api.v1alpha1.Plugin".into();
    req.method = method.into();
    req.payload = payload;
    req.timeout_nano = 2_000_000_000;
    let body = req.write_to_bytes().unwrap();
    let mut msg = (body.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&stream.to_be_bytes());
    msg.extend_from_slice(&[ttrpc::proto::MESSAGE_TYPE_REQUEST, 0]);
    msg.extend_from_slice(&body);
    // As the Go runtime sends it: one frame per write, any size.
    frame_message(PLUGIN_CONN, &msg, usize::MAX)
}

fn nri_seeds(token: &str) {
    let t = "nri_mux";
    let mut cfg = api::ConfigureRequest::new();
    cfg.runtime_name = "containerd".into();
    cfg.runtime_version = "v2.2.1".into();
    cfg.NRI_version = "v0.12.2".into();
    cfg.request_timeout = 2000;
    cfg.registration_timeout = 5000;

    let mut pod = api::PodSandbox::new();
    pod.id = "pod-team-a".into();
    pod.name = "web-0".into();
    pod.uid = "uid-1".into();
    pod.namespace = "team-a".into();
    pod.runtime_handler = "nono-runc".into();
    pod.annotations.insert(keys::DECISION.into(), token.into());
    let mut c = api::Container::new();
    c.id = "pod-team-a-app".into();
    c.pod_sandbox_id = pod.id.clone();
    c.name = "app".into();
    c.args = vec!["/usr/bin/web".into(), "--port=8080".into()];
    c.env = vec!["PATH=/bin".into(), "NONO_ALLOW=/".into()];
    let mut create = api::CreateContainerRequest::new();
    create.pod = protobuf::MessageField::some(pod.clone());
    create.container = protobuf::MessageField::some(c.clone());

    let mut sync = api::SynchronizeRequest::new();
    sync.pods.push(pod.clone());
    sync.containers.push(c.clone());

    let svc = kubefence_nri::plugin::PluginService::new(fixtures::nri::core(
        kubefence_nri::decide::OnInvalid::Reject,
    ));
    let _ = svc.configure_response(&cfg);
    let adjusted = svc
        .create_container_response(&create)
        .expect("the seed is admitted");
    let mut validate = api::ValidateContainerAdjustmentRequest::new();
    validate.pod = protobuf::MessageField::some(pod.clone());
    validate.container = protobuf::MessageField::some(c.clone());
    validate.adjust = adjusted.adjust.clone();
    let mut owners = api::OwningPlugins::new();
    let mut fo = api::FieldOwners::new();
    fo.simple
        .insert(kubefence_nri::plugin::FIELD_ARGS, "10-kubefence".into());
    owners.owners.insert(c.id.clone(), fo);
    validate.owners = protobuf::MessageField::some(owners);

    let mut state = api::StateChangeEvent::new();
    state.pod = protobuf::MessageField::some(pod);
    state.container = protobuf::MessageField::some(c);

    let msgs: Vec<(&str, Vec<u8>)> = vec![
        ("Configure", cfg.write_to_bytes().unwrap()),
        ("Synchronize", sync.write_to_bytes().unwrap()),
        ("CreateContainer", create.write_to_bytes().unwrap()),
        (
            "ValidateContainerAdjustment",
            validate.write_to_bytes().unwrap(),
        ),
        ("StateChange", state.write_to_bytes().unwrap()),
    ];
    let mut session = Vec::new();
    for (i, (method, payload)) in msgs.iter().enumerate() {
        write(t, &format!("raw-{method}.pb"), payload);
        let frame = ttrpc_frame(2 * i as u32 + 1, method, payload.clone());
        write(t, &format!("framed-{method}"), &frame);
        session.extend(frame);
    }
    write(t, "framed-session", &session);
    // The CreateContainer message split over 64-byte frames.
    let create_frame = ttrpc_frame(5, "CreateContainer", msgs[2].1.clone());
    let split = frame_message(PLUGIN_CONN, &create_frame[8..], 64);
    write(t, "framed-CreateContainer-split", &split);
}

fn main() {
    admission_seeds();
    let token = token_seeds();
    nri_seeds(&token);
    println!("seeds written under ../corpus/");
}
