use super::*;
use crate::config::{ExecMode, ExecPolicy, PolicyConfig};
use crate::policy::tests::{cfg, enforce, ns, pod, signer, ALICE, NOW, NS};
use crate::policy::TrustSet;
use kubefence_shared::decision::{Claims, PodBinding, FORMAT_VERSION};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const POD: &str = "web-0";

fn p(name: &str) -> ProfileName {
    ProfileName::parse(name).unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn policy_with(exec: ExecPolicy) -> Policy {
    let mut trust = TrustSet::new();
    trust.insert(signer(0).verifying_key());
    Policy::new(PolicyConfig { exec, ..cfg() }, trust)
}

fn deny_policy() -> Policy {
    policy_with(ExecPolicy {
        break_glass_users: s(&["oncall"]),
        break_glass_groups: s(&["sre"]),
        ..ExecPolicy::default()
    })
}

fn wrap_policy() -> Policy {
    policy_with(ExecPolicy {
        mode: ExecMode::Wrap,
        break_glass_users: s(&["oncall"]),
        break_glass_groups: s(&["sre"]),
        ..ExecPolicy::default()
    })
}

fn claims(pod: PodBinding, namespace: &str, handler: &str) -> Claims {
    Claims {
        ver: FORMAT_VERSION,
        namespace: namespace.into(),
        pod,
        handler: handler.into(),
        profile: p("default"),
        containers: BTreeMap::from([
            ("migrate".to_string(), p("default")),
            ("app".to_string(), p("default")),
            ("sidecar".to_string(), p("strict")),
        ]),
        iat: NOW,
    }
}

fn good_token() -> String {
    signer(0).sign(&claims(PodBinding::Name(POD.into()), NS, "nono-runc"))
}

/// A pod as stored after kubefence admitted it: decision, runtime class,
/// an ephemeral debug container added later.
fn sandboxed(token: Option<&str>) -> Value {
    let mut anns = json!({"nono.sh/profile": "default"});
    if let Some(t) = token {
        anns["nono.sh/decision"] = json!(t);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": NS, "uid": "u-1", "annotations": anns},
        "spec": {
            "runtimeClassName": "nono",
            "initContainers": [{"name": "migrate", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}, {"name": "sidecar", "image": "envoy"}],
            "ephemeralContainers": [{"name": "dbg", "image": "busybox"}]
        }
    })
}

fn opts(container: &str, command: &[&str]) -> ExecOptions {
    ExecOptions {
        container: container.into(),
        command: s(command),
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    }
}

struct R {
    endpoint: Endpoint,
    subresource: &'static str,
    user: &'static str,
    groups: Vec<String>,
    options: ExecOptions,
    ns: Option<NamespaceMeta>,
}

impl R {
    fn exec(container: &str, command: &[&str]) -> Self {
        R {
            endpoint: Endpoint::Mutate,
            subresource: "exec",
            user: ALICE,
            groups: s(&["system:authenticated"]),
            options: opts(container, command),
            ns: Some(enforce()),
        }
    }

    fn req(&self) -> ExecRequest<'_> {
        ExecRequest {
            endpoint: self.endpoint,
            subresource: self.subresource,
            namespace: NS,
            pod_name: POD,
            username: self.user,
            groups: &self.groups,
            options: &self.options,
            namespace_meta: self.ns.as_ref(),
        }
    }
}

/// Decides like the server: first without the pod, then with it.
fn decide(policy: &Policy, r: &R, pod_json: &Value) -> ExecDecision {
    let pd = pod(pod_json.clone());
    match policy.decide_exec(&r.req(), PodState::NotFetched) {
        ExecStep::NeedPod => match policy.decide_exec(&r.req(), PodState::Found(&pd)) {
            ExecStep::Decided(d) => d,
            ExecStep::NeedPod => panic!("asked for the pod twice"),
        },
        ExecStep::Decided(d) => d,
    }
}

/// Decided without a lookup.
fn decide_without_pod(policy: &Policy, r: &R) -> ExecDecision {
    match policy.decide_exec(&r.req(), PodState::NotFetched) {
        ExecStep::Decided(d) => d,
        ExecStep::NeedPod => panic!("should not need the pod"),
    }
}

fn denied(d: &ExecDecision, reason: Reason) -> &str {
    assert_eq!(d.verdict, ExecVerdict::Deny, "{d:?}");
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reason, reason, "{}", d.message);
    &d.message
}

fn wrapped_cmd(profile: &str, rest: &[&str]) -> Vec<String> {
    let mut v = s(&[
        "/nono/nono",
        "wrap",
        "--silent",
        "--profile",
        &format!("/nono/profiles/{profile}.json"),
        "--allow",
        "/nono/.kubefence-absent",
        "--env-credential",
        "",
        "--log-file",
        "/dev/null",
        "--",
    ]);
    v.extend(s(rest));
    v
}

#[test]
fn wrap_command_is_the_node_plugins_argv() {
    let got = wrap_command(
        "/nono",
        &p("strict"),
        &s(&["/bin/sh", "-c", "echo --profile x"]),
    );
    assert_eq!(
        got,
        wrapped_cmd("strict", &["/bin/sh", "-c", "echo --profile x"])
    );
    assert!(is_wrapped("/nono", &p("strict"), &got));
    assert!(!is_wrapped("/nono", &p("default"), &got), "other profile");
    assert!(!is_wrapped("/opt/nono", &p("strict"), &got), "other dir");
    assert!(
        !is_wrapped("/nono", &p("strict"), &wrapped_cmd("strict", &[])),
        "nothing to run after --"
    );
    assert!(!is_wrapped("/nono", &p("strict"), &s(&["sh"])));
    let odd = wrap_command("/opt/kf", &p("default"), &s(&["id"]));
    assert_eq!(odd[0], "/opt/kf/nono");
    assert_eq!(odd[4], "/opt/kf/profiles/default.json");
}

#[test]
fn exec_is_denied_by_default_with_what_to_do_instead() {
    let policy = deny_policy();
    let token = good_token();
    let r = R::exec("sidecar", &["sh"]);
    assert!(
        matches!(
            policy.decide_exec(&r.req(), PodState::NotFetched),
            ExecStep::NeedPod
        ),
        "the answer depends on the pod"
    );
    let d = decide(&policy, &r, &sandboxed(Some(&token)));
    let msg = denied(&d, Reason::ExecDenied);
    for want in [
        "team-a/web-0 container sidecar",
        "outside the container's nono sandbox",
        "kubectl debug -it -n team-a web-0 --image=<image> --target=sidecar (profile default)",
        "-- /nono/nono wrap --silent --profile /nono/profiles/strict.json --allow /nono/.kubefence-absent --env-credential '' --log-file /dev/null -- <command>;",
        "break-glass",
    ] {
        assert!(msg.contains(want), "want {want:?} in {msg}");
    }
    assert_eq!(d.container.as_deref(), Some("sidecar"));
    assert_eq!(d.profile, Some(p("strict")));
    assert_eq!(d.handler.as_deref(), Some("nono-runc"));
    assert_eq!(d.mode, Some(Mode::Enforce));
    assert!(!d.allowed());
    // The validating endpoint decides the same.
    let r = R {
        endpoint: Endpoint::Validate,
        ..R::exec("app", &["sh"])
    };
    denied(
        &decide(&policy, &r, &sandboxed(Some(&token))),
        Reason::ExecDenied,
    );
}

#[test]
fn a_command_already_under_nono_with_the_containers_profile_is_admitted() {
    let token = good_token();
    for policy in [deny_policy(), wrap_policy()] {
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            let cmd = wrapped_cmd("strict", &["sh"]);
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let r = R {
                endpoint,
                ..R::exec("sidecar", &cmd)
            };
            let d = decide(&policy, &r, &sandboxed(Some(&token)));
            assert_eq!(d.verdict, ExecVerdict::Admit, "{d:?}");
            assert_eq!(d.reason, Reason::ExecAlreadyWrapped);
            // A weaker profile than the container's is not the same thing.
            let cmd = wrapped_cmd("default", &["sh"]);
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let r = R {
                endpoint,
                ..R::exec("sidecar", &cmd)
            };
            let d = decide(&policy, &r, &sandboxed(Some(&token)));
            assert_ne!(d.reason, Reason::ExecAlreadyWrapped, "{d:?}");
        }
    }
}

#[test]
fn attach_and_other_subresources_are_admitted_without_a_lookup() {
    let policy = deny_policy();
    let r = R {
        subresource: "attach",
        ..R::exec("app", &[])
    };
    let d = decide_without_pod(&policy, &r);
    assert_eq!((d.verdict, d.reason), (ExecVerdict::Admit, Reason::Attach));
    let r = R {
        subresource: "portforward",
        ..R::exec("", &[])
    };
    assert_eq!(
        decide_without_pod(&policy, &r).reason,
        Reason::OperationIgnored
    );
}

#[test]
fn break_glass_by_user_and_by_group() {
    let token = good_token();
    for policy in [deny_policy(), wrap_policy()] {
        let by_user = R {
            user: "oncall",
            ..R::exec("app", &["sh", "-c", "cat /etc/shadow"])
        };
        let by_group = R {
            user: "bob",
            groups: s(&["system:authenticated", "sre"]),
            ..R::exec("app", &["sh", "-c", "cat /etc/shadow"])
        };
        for r in [by_user, by_group] {
            let d = decide(&policy, &r, &sandboxed(Some(&token)));
            assert_eq!(d.verdict, ExecVerdict::Admit, "no rewrite either: {d:?}");
            assert_eq!(d.outcome, Outcome::Admit);
            assert_eq!(d.reason, Reason::ExecBreakGlass);
            assert!(d.break_glass);
            assert_eq!(d.container.as_deref(), Some("app"));
            assert_eq!(d.profile, Some(p("default")));
            assert!(
                d.message
                    .contains(&format!("break-glass exec by {} into team-a/web-0", r.user)),
                "{}",
                d.message
            );
            assert!(d
                .warnings
                .iter()
                .any(|w| w.contains("OUTSIDE the nono sandbox")));
        }
    }
    // A group named like a user, or a user named like a group, is not enough.
    let r = R {
        user: "sre",
        groups: s(&["oncall"]),
        ..R::exec("app", &["sh"])
    };
    denied(
        &decide(&deny_policy(), &r, &sandboxed(Some(&token))),
        Reason::ExecDenied,
    );
}

#[test]
fn break_glass_covers_a_failed_lookup_and_an_unknown_namespace() {
    let policy = deny_policy();
    let r = R {
        user: "oncall",
        ..R::exec("app", &["sh"])
    };
    let ExecStep::Decided(d) = policy.decide_exec(&r.req(), PodState::LookupFailed("timed out"))
    else {
        panic!("decided")
    };
    assert_eq!(d.reason, Reason::ExecBreakGlass);
    assert!(d.message.contains("pod-lookup-failed"), "{}", d.message);
    let r = R {
        user: "oncall",
        ns: None,
        ..R::exec("app", &["sh"])
    };
    assert_eq!(
        decide_without_pod(&policy, &r).reason,
        Reason::ExecBreakGlass
    );
}

#[test]
fn wrap_mode_rewrites_with_the_named_containers_profile() {
    let policy = wrap_policy();
    let token = good_token();
    let cases = [
        ("sidecar", "strict"),
        ("app", "default"),
        ("migrate", "default"),
        // Ephemeral containers run under the pod-wide profile.
        ("dbg", "default"),
    ];
    for (container, profile) in cases {
        let r = R::exec(container, &["sh", "-c", "ls /"]);
        let d = decide(&policy, &r, &sandboxed(Some(&token)));
        assert_eq!(
            d.verdict,
            ExecVerdict::Wrap(wrapped_cmd(profile, &["sh", "-c", "ls /"])),
            "{container}: {d:?}"
        );
        assert_eq!(d.outcome, Outcome::Mutate);
        assert_eq!(d.reason, Reason::ExecWrapped);
        assert_eq!(d.container.as_deref(), Some(container));
        assert_eq!(d.profile, Some(p(profile)));
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains(&format!("nono sandbox (profile {profile})"))),
            "{:?}",
            d.warnings
        );
    }
}

#[test]
fn wrap_mode_with_no_container_named() {
    let policy = wrap_policy();
    let token = good_token();
    // One app container: the apiserver picks it, so do we.
    let mut single = sandboxed(Some(&token));
    single["spec"]["containers"] = json!([{"name": "sidecar", "image": "envoy"}]);
    let d = decide(&policy, &R::exec("", &["id"]), &single);
    assert_eq!(d.verdict, ExecVerdict::Wrap(wrapped_cmd("strict", &["id"])));
    assert_eq!(d.container.as_deref(), Some("sidecar"));
    // Several: the apiserver refuses; so do we, naming kubectl's pick.
    let mut several = sandboxed(Some(&token));
    several["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION] = json!("app");
    let d = decide(&policy, &R::exec("", &["id"]), &several);
    let msg = denied(&d, Reason::ExecContainerAmbiguous);
    assert!(msg.contains("has 2 (app, sidecar)"), "{msg}");
    assert!(msg.contains("kubectl would pick \"app\""), "{msg}");
    assert!(msg.contains("-c"), "{msg}");
    // Deny mode too.
    denied(
        &decide(
            &deny_policy(),
            &R::exec("", &["id"]),
            &sandboxed(Some(&token)),
        ),
        Reason::ExecContainerAmbiguous,
    );
    // A container the pod does not have.
    let d = decide(&policy, &R::exec("nope", &["id"]), &sandboxed(Some(&token)));
    let msg = denied(&d, Reason::UnknownContainer);
    assert!(msg.contains("migrate, app, sidecar, dbg"), "{msg}");
}

#[test]
fn wrap_mode_validation_admits_only_the_wrapped_command() {
    let policy = wrap_policy();
    let token = good_token();
    let unwrapped = R {
        endpoint: Endpoint::Validate,
        ..R::exec("sidecar", &["sh"])
    };
    let d = decide(&policy, &unwrapped, &sandboxed(Some(&token)));
    let msg = denied(&d, Reason::ExecNotWrapped);
    assert!(msg.contains("did not apply kubefence's mutation"), "{msg}");
    // What the mutating endpoint produced passes.
    let ExecVerdict::Wrap(cmd) = decide(
        &policy,
        &R::exec("sidecar", &["sh"]),
        &sandboxed(Some(&token)),
    )
    .verdict
    else {
        panic!("wrap")
    };
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let r = R {
        endpoint: Endpoint::Validate,
        ..R::exec("sidecar", &cmd)
    };
    let d = decide(&policy, &r, &sandboxed(Some(&token)));
    assert_eq!(
        (d.verdict, d.reason),
        (ExecVerdict::Admit, Reason::ExecAlreadyWrapped)
    );
    // Reinvocation of the mutating endpoint: no second wrapper.
    let r = R::exec("sidecar", &cmd);
    let d = decide(&policy, &r, &sandboxed(Some(&token)));
    assert_eq!(d.verdict, ExecVerdict::Admit);
}

#[test]
fn wrap_mode_needs_a_command() {
    let d = decide(
        &wrap_policy(),
        &R::exec("app", &[]),
        &sandboxed(Some(&good_token())),
    );
    denied(&d, Reason::ExecNoCommand);
}

#[test]
fn pod_without_a_decision_in_an_enforce_namespace_is_denied() {
    for policy in [deny_policy(), wrap_policy()] {
        let d = decide(&policy, &R::exec("app", &["sh"]), &sandboxed(None));
        let msg = denied(&d, Reason::DecisionMissing);
        assert!(msg.contains("fail closed"), "{msg}");
        assert!(msg.contains("team-a/web-0"), "{msg}");
    }
}

#[test]
fn forged_or_foreign_decisions_are_not_trusted() {
    let policy = wrap_policy();
    let forged = signer(1).sign(&claims(PodBinding::Name(POD.into()), NS, "nono-runc"));
    let d = decide(&policy, &R::exec("app", &["sh"]), &sandboxed(Some(&forged)));
    let msg = denied(&d, Reason::DecisionInvalid);
    assert!(msg.contains("nono.sh/decision"), "{msg}");
    assert_eq!(d.profile, None, "nothing taken from a forged decision");

    let garbage = decide(&policy, &R::exec("app", &["sh"]), &sandboxed(Some("x.y.z")));
    denied(&garbage, Reason::DecisionInvalid);

    // Ours, but copied from another pod or namespace.
    for c in [
        claims(PodBinding::Name("web-1".into()), NS, "nono-runc"),
        claims(PodBinding::Name(POD.into()), "team-b", "nono-runc"),
        claims(PodBinding::GenerateName("api-".into()), NS, "nono-runc"),
    ] {
        let t = signer(0).sign(&c);
        let d = decide(&policy, &R::exec("app", &["sh"]), &sandboxed(Some(&t)));
        denied(&d, Reason::DecisionMismatch);
    }
    // Ours, for another handler than the pod's class.
    let t = signer(0).sign(&claims(PodBinding::Name(POD.into()), NS, "nono-runc-debug"));
    let d = decide(&policy, &R::exec("app", &["sh"]), &sandboxed(Some(&t)));
    assert!(denied(&d, Reason::DecisionMismatch).contains("nono-runc-debug"));
    // Ours, but the pod does not run under a sandbox class.
    let mut plain = sandboxed(Some(&good_token()));
    plain["spec"]
        .as_object_mut()
        .unwrap()
        .remove("runtimeClassName");
    denied(
        &decide(&policy, &R::exec("app", &["sh"]), &plain),
        Reason::DecisionMismatch,
    );
}

#[test]
fn generate_name_decisions_bind_the_generated_name() {
    let policy = wrap_policy();
    let t = signer(0).sign(&claims(
        PodBinding::GenerateName("web-7f9c4-".into()),
        NS,
        "nono-runc",
    ));
    let mut v = sandboxed(Some(&t));
    v["metadata"]["name"] = json!("web-7f9c4-x2b9z");
    let r = R::exec("app", &["sh"]);
    let req = ExecRequest {
        pod_name: "web-7f9c4-x2b9z",
        ..r.req()
    };
    let pd = pod(v);
    let ExecStep::Decided(d) = policy.decide_exec(&req, PodState::Found(&pd)) else {
        panic!("decided")
    };
    assert_eq!(d.reason, Reason::ExecWrapped, "{}", d.message);
}

#[test]
fn failed_lookup_fails_closed() {
    for policy in [deny_policy(), wrap_policy()] {
        let r = R::exec("app", &["sh"]);
        let ExecStep::Decided(d) =
            policy.decide_exec(&r.req(), PodState::LookupFailed("timed out after 2s"))
        else {
            panic!("decided")
        };
        let msg = denied(&d, Reason::PodLookupFailed);
        assert!(msg.contains("timed out after 2s"), "{msg}");
        assert!(msg.contains("fail closed"), "{msg}");
    }
}

#[test]
fn exemptions_are_honoured() {
    let policy = deny_policy();
    // Exempt namespace and user: decided without a lookup.
    let r = R::exec("app", &["sh"]);
    let req = ExecRequest {
        namespace: "kube-system",
        ..r.req()
    };
    let ExecStep::Decided(d) = policy.decide_exec(&req, PodState::NotFetched) else {
        panic!("no lookup for an exempt namespace")
    };
    assert_eq!(
        (d.verdict, d.reason),
        (ExecVerdict::Admit, Reason::ExemptNamespace)
    );
    let r = R {
        user: "exempt-admin",
        ..R::exec("app", &["sh"])
    };
    assert_eq!(decide_without_pod(&policy, &r).reason, Reason::ExemptUser);
    // Exempt runtime class: needs the pod.
    let mut kata = sandboxed(None);
    kata["spec"]["runtimeClassName"] = json!("kata");
    let d = decide(&policy, &R::exec("app", &["sh"]), &kata);
    assert_eq!(
        (d.verdict, d.reason),
        (ExecVerdict::Admit, Reason::ExemptRuntimeClass)
    );
}

#[test]
fn namespaces_not_opted_in_are_admitted_and_unknown_ones_denied() {
    let policy = wrap_policy();
    let r = R {
        ns: Some(ns(None, &[])),
        ..R::exec("app", &["sh"])
    };
    let d = decide_without_pod(&policy, &r);
    assert_eq!(
        (d.verdict, d.reason),
        (ExecVerdict::Admit, Reason::NotOptedIn)
    );
    let r = R {
        ns: None,
        ..R::exec("app", &["sh"])
    };
    let d = decide_without_pod(&policy, &r);
    assert!(denied(&d, Reason::NamespaceUnknown).contains("fail closed"));
    // An invalid mode label means enforce.
    let r = R {
        ns: Some(ns(Some("loud"), &[])),
        ..R::exec("app", &["sh"])
    };
    let d = decide(&deny_policy(), &r, &sandboxed(Some(&good_token())));
    denied(&d, Reason::ExecDenied);
    assert!(
        d.warnings[0].contains("invalid; enforcing"),
        "{:?}",
        d.warnings
    );
}

#[test]
fn audit_mode_admits_and_records_what_enforce_would_do() {
    let token = good_token();
    let audit = || Some(ns(Some("audit"), &[]));
    // Deny mode: would deny.
    let r = R {
        ns: audit(),
        ..R::exec("app", &["sh"])
    };
    let d = decide(&deny_policy(), &r, &sandboxed(Some(&token)));
    assert_eq!(d.verdict, ExecVerdict::Admit);
    assert_eq!(d.outcome, Outcome::WouldDeny);
    assert_eq!(d.reason, Reason::ExecDenied);
    assert_eq!(d.mode, Some(Mode::Audit));
    assert!(
        d.warnings[0].starts_with("kubefence audit mode: enforce would deny this exec: "),
        "{:?}",
        d.warnings
    );
    // Audit pods carry no decision: also would deny.
    let d = decide(&deny_policy(), &r, &sandboxed(None));
    assert_eq!(
        (d.verdict, d.outcome),
        (ExecVerdict::Admit, Outcome::WouldDeny)
    );
    // Wrap mode: would wrap, but nothing is rewritten.
    let d = decide(&wrap_policy(), &r, &sandboxed(Some(&token)));
    assert_eq!(d.verdict, ExecVerdict::Admit);
    assert_eq!(d.outcome, Outcome::WouldMutate);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].contains("enforce would run this exec under nono (profile default)"));
    // A failed lookup does not block in audit mode either.
    let ExecStep::Decided(d) = deny_policy().decide_exec(&r.req(), PodState::LookupFailed("down"))
    else {
        panic!("decided")
    };
    assert_eq!(
        (d.verdict, d.outcome),
        (ExecVerdict::Admit, Outcome::WouldDeny)
    );
    // The validating endpoint has nothing to add.
    let r = R {
        endpoint: Endpoint::Validate,
        ns: audit(),
        ..R::exec("app", &["sh"])
    };
    let d = decide_without_pod(&wrap_policy(), &r);
    assert_eq!(
        (d.verdict, d.reason),
        (ExecVerdict::Admit, Reason::AuditMode)
    );
}
