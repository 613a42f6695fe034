//! End to end in process: a decision signed the way the webhook signs it,
//! carried in the pod annotation, through the same code path the plugin's
//! CreateContainer handler uses, and the validator after it.

mod common;

use common::*;
use kubefence_nri::decide::OnInvalid;
use kubefence_nri::plugin::{PluginService, FIELD_ARGS};
use kubefence_nri::proto::api;
use kubefence_shared::envelope::Signer;

fn configured(service: &PluginService) {
    let mut req = api::ConfigureRequest::new();
    req.runtime_name = "containerd".into();
    req.runtime_version = "v2.3.0".into();
    req.NRI_version = "v0.12.2".into();
    service.configure_response(&req);
}

#[test]
fn signed_decision_wraps_and_the_same_decision_elsewhere_is_refused() {
    let signer = Signer::generate().unwrap();
    let service = PluginService::new(core(&signer, OnInvalid::Reject));
    configured(&service);
    let token = decision(&signer, "team-a");

    let p = pod("team-a", "nono-runc", Some(token.clone()));
    let c = container(&p, "app", &["/bin/server", "-v"]);
    let rsp = service
        .create_container_response(&create_request(p.clone(), c.clone()))
        .expect("wrapped");
    let adj = rsp.adjust.get_or_default();
    assert_eq!(
        adj.args,
        [
            "/nono/nono",
            "wrap",
            "--silent",
            "--profile",
            "/nono/profiles/web.json",
            "--allow",
            "/nono/.kubefence-absent",
            "--env-credential",
            "",
            "--log-file",
            "/dev/null",
            "--",
            "/bin/server",
            "-v"
        ]
    );
    assert_eq!(adj.mounts[0].destination, "/nono");
    assert_eq!(
        adj.env
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect::<Vec<_>>(),
        [("NONO_ALLOW", "")]
    );

    // The validator accepts exactly this adjustment owned by us.
    let mut v = api::ValidateContainerAdjustmentRequest::new();
    v.pod = protobuf::MessageField::some(p);
    v.container = protobuf::MessageField::some(c.clone());
    v.adjust = rsp.adjust.clone();
    let mut fo = api::FieldOwners::new();
    fo.simple.insert(FIELD_ARGS, "10-kubefence".into());
    let mut owners = api::OwningPlugins::new();
    owners.owners.insert(c.id.clone(), fo);
    v.owners = protobuf::MessageField::some(owners);
    let verdict = service.validate_response(&v);
    assert!(!verdict.reject, "{}", verdict.reason);

    // The very same token on a pod of another namespace.
    let p = pod("team-b", "nono-runc", Some(token));
    let c = container(&p, "app", &["/bin/server"]);
    let err = service
        .create_container_response(&create_request(p, c))
        .unwrap_err();
    assert!(err.contains("of pod team-b/web-0"), "{err}");
    assert!(err.ends_with("(namespace-mismatch)"), "{err}");
}

#[test]
fn confine_mode_uses_the_strictest_profile_for_a_forged_decision() {
    let signer = Signer::generate().unwrap();
    let forger = Signer::generate().unwrap();
    let service = PluginService::new(core(&signer, OnInvalid::Confine));
    configured(&service);
    let p = pod("team-a", "nono-runc", Some(decision(&forger, "team-a")));
    let c = container(&p, "app", &["/bin/server"]);
    let rsp = service
        .create_container_response(&create_request(p, c))
        .expect("confined");
    assert_eq!(
        rsp.adjust.get_or_default().args[4],
        "/nono/profiles/strict.json"
    );
}

#[test]
fn sync_chunks_are_collected_until_the_last() {
    let signer = Signer::generate().unwrap();
    let service = PluginService::new(core(&signer, OnInvalid::Reject));
    configured(&service);
    let mut first = api::SynchronizeRequest::new();
    first.pods.push(pod("a", "nono-runc", None));
    first.more = true;
    let rsp = service.synchronize_response(first);
    assert!(rsp.more, "intermediate chunks echo more");
    let last = api::SynchronizeRequest::new();
    let rsp = service.synchronize_response(last);
    assert!(!rsp.more);
    assert!(rsp.update.is_empty());
}
