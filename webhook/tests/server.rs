//! The real server on loopback over TLS, fed AdmissionReviews as the
//! apiserver sends them.

mod common;

use kubefence_webhook::pods::StaticPods;
use std::time::Duration;

use common::*;
use kubefence_shared::decision::{Freshness, NodeView, PodBinding};
use kubefence_shared::envelope::Signer;
use kubefence_webhook::tls::{self, Reload};
use serde_json::{json, Value};

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

    // kubectl port-forward: CONNECT on pods/portforward, not checked
    // (exec and attach are: see tests/exec.rs).
    let mut v = review(&Req::create(
        "f2",
        json!({"kind": "PodPortForwardOptions", "apiVersion": "v1", "ports": [8080]}),
    ));
    v["request"]["operation"] = json!("CONNECT");
    v["request"]["name"] = json!("web-0");
    v["request"]["subResource"] = json!("portforward");
    v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "PodPortForwardOptions"});
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
    let metrics = h.metrics().await;
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
    let (port, ca) = (h.port, h.ca.clone());
    let body = serde_json::to_vec(&review(&Req::create("s1", deployment_pod()))).unwrap();
    let (half_sent_tx, half_sent_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let client = tokio::task::spawn_blocking(move || {
        let mut tls = tls_stream(port, &ca);
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

/// Slow and stalled clients (request_timeout_secs = 1 here) and the shared
/// body budget (two bodies of 64 KiB).
#[tokio::test]
async fn slow_clients_are_cut_off_and_bodies_share_a_budget() {
    use std::io::{Read, Write};
    let config = CONFIG.replace(
        "max_body_bytes = 65536",
        "max_body_bytes = 65536\nrequest_timeout_secs = 1\nmax_buffered_body_bytes = 131072",
    );
    let h = start_with(&config, |_| StaticPods::default()).await;
    let (port, ca) = (h.port, h.ca.clone());

    // Each stalled client in its own thread; returns what the server sent
    // before closing, or None if it was still open after 10 s.
    let stall = |head: String, body: Vec<u8>| {
        let ca = ca.clone();
        std::thread::spawn(move || {
            let mut tls = tls_stream(port, &ca);
            tls.sock
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            tls.write_all(head.as_bytes()).unwrap();
            tls.write_all(&body).unwrap();
            tls.flush().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match tls.read(&mut buf) {
                    Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                    // reset or a TLS close without close_notify: closed
                    Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
                }
            }
        })
    };
    let head = |len: usize| {
        format!("POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
    };

    // Half a request head, or nothing after the TLS handshake: the
    // connection is closed, nothing answered.
    let half_head = stall("POST /mutate HTTP/1.1\r\nHost: 12".into(), Vec::new());
    let silent = stall(String::new(), Vec::new());
    // Two bodies that stop short, 65,000 of 65,500 bytes each: they hold
    // 130,000 of the 131,072 bytes all bodies may buffer together.
    let big = vec![b' '; 65_000];
    let stalled: Vec<_> = (0..2).map(|_| stall(head(65_500), big.clone())).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile a normal review finds the budget spent: 503, not a wait.
    let resp = h
        .post_raw(
            "/mutate",
            serde_json::to_vec(&review(&Req::create("b1", deployment_pod()))).unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 503);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("max_buffered_body_bytes"));

    // The stalled bodies time out with 408 and give their bytes back.
    for t in stalled {
        let got = tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap()
            .expect("a stalled body was never timed out");
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("request_timeout_secs"), "{got}");
    }
    for (what, t) in [
        ("a half request head", half_head),
        ("a silent connection", silent),
    ] {
        let got = tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{what} was never timed out"));
        assert!(!got.contains("HTTP/1.1"), "{what}: {got}");
    }

    let v = h
        .admit("/mutate", &Req::create("b2", deployment_pod()))
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains(r#"outcome="error",reason="busy"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outcome="error",reason="timeout"} 2"#),
        "{metrics}"
    );
    h.stop().await;
}
