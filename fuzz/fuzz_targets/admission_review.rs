//! Arbitrary bytes as an AdmissionReview body into the webhook's
//! [`Admission::handle`] (parse, namespace lookup, policy, sign, patch),
//! on both endpoints. Must never panic; a 200 reply must be an
//! AdmissionReview answering the request's uid, and a patch must apply to
//! the object it was computed for.

#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use kubefence_webhook::admission::Admission;
use kubefence_webhook::policy::Endpoint;
use kubefence_webhook::review;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn admission() -> &'static Admission {
    static A: OnceLock<Admission> = OnceLock::new();
    A.get_or_init(kubefence_fuzz::webhook::admission_with_pod)
}

fuzz_target!(|data: &[u8]| {
    let endpoint = match data.first() {
        Some(b) if b % 2 == 1 => Endpoint::Validate,
        _ => Endpoint::Mutate,
    };
    let reply = futures::executor::block_on(admission().handle(endpoint, data));
    if reply.http_status != 200 {
        assert_eq!(reply.http_status, 400, "only 200 and 400 are expected");
        return;
    }
    let out: Value = serde_json::from_slice(&reply.body).expect("a 200 reply is JSON");
    assert_eq!(out["apiVersion"], review::API_VERSION);
    assert_eq!(out["kind"], review::KIND);
    let resp = &out["response"];
    let request = match review::parse(data) {
        Ok(r) => r,
        Err(e) => {
            // Malformed but with a readable uid: refused in-band.
            let uid = e
                .uid()
                .expect("a 200 reply to an unparsable review has its uid");
            assert_eq!(resp["uid"].as_str(), Some(uid));
            assert_eq!(resp["allowed"], false);
            return;
        }
    };
    assert_eq!(resp["uid"].as_str(), Some(request.uid.as_str()));
    if let Some(b64) = resp["patch"].as_str() {
        assert_eq!(resp["allowed"], true, "a patch on a refusal");
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("patch is base64");
        let patch: json_patch::Patch = serde_json::from_slice(&json).expect("patch is JSON Patch");
        let object = request.object.as_ref().expect("a patch needs an object");
        if request.operation == "CONNECT" {
            return; // exec patches apply to the PodExecOptions object
        }
        let mut object = object.to_value().expect("a patched object is a JSON value");
        json_patch::patch(&mut object, &patch).expect("our patch applies to the object");
    }
});
