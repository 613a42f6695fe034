use super::*;
use crate::config::Exemptions;
use crate::patch;
use kubefence_shared::envelope::Signer;
use kubefence_shared::profile::Catalog;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::OnceLock;

/// Signer 0 is the webhook's own key; signer 1 is an attacker's.
pub(super) fn signer(which: u8) -> &'static Signer {
    static OURS: OnceLock<Signer> = OnceLock::new();
    static THEIRS: OnceLock<Signer> = OnceLock::new();
    let cell = if which == 0 { &OURS } else { &THEIRS };
    cell.get_or_init(|| Signer::generate().unwrap())
}

pub(super) const NS: &str = "team-a";
const SA: &str = "system:serviceaccount:kubefence-system:kubefence-webhook";
pub(super) const ALICE: &str = "alice";
pub(super) const NOW: i64 = 1_700_000_000;

pub(super) fn cfg() -> PolicyConfig {
    let catalog = Catalog::from_json(
        br#"{"strictest":"strict","profiles":{"default":{},"strict":{},"net":{}}}"#,
        Path::new("test"),
    )
    .unwrap();
    PolicyConfig {
        catalog,
        default_profile: ProfileName::parse("default").unwrap(),
        // `net` is in the catalog but not allowed cluster-wide.
        allowed: ["default", "strict"]
            .into_iter()
            .map(|p| ProfileName::parse(p).unwrap())
            .collect(),
        runtime_classes: vec![
            RuntimeClassRef {
                name: "nono".into(),
                handler: "nono-runc".into(),
            },
            RuntimeClassRef {
                name: "nono-debug".into(),
                handler: "nono-runc-debug".into(),
            },
        ],
        required_plugin: "kubefence".into(),
        trusted_users: vec![SA.into()],
        exemptions: Exemptions {
            usernames: vec!["exempt-admin".into()],
            namespaces: vec!["kube-system".into()],
            runtime_classes: vec!["kata".into()],
        },
        strip_annotations: vec!["tolerate-missing-plugins.noderesource.dev".into()],
        exec: Default::default(),
    }
}

fn policy() -> Policy {
    let mut trust = TrustSet::new();
    trust.insert(signer(0).verifying_key());
    Policy::new(cfg(), trust)
}

pub(super) fn ns(mode: Option<&str>, annotations: &[(&str, &str)]) -> NamespaceMeta {
    NamespaceMeta {
        labels: mode
            .map(|m| BTreeMap::from([(keys::NAMESPACE_MODE.to_string(), m.to_string())]))
            .unwrap_or_default(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn pod_json(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-7f9c4-", "namespace": NS, "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}, {"name": "sidecar", "image": "envoy"}]
        }
    })
}

pub(super) fn pod(v: Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn create<'a>(pod: &'a Pod, ns: Option<&'a NamespaceMeta>) -> PodRequest<'a> {
    PodRequest {
        endpoint: Endpoint::Mutate,
        operation: Operation::Create,
        subresource: None,
        namespace: NS,
        username: ALICE,
        pod,
        old_pod: None,
        namespace_meta: ns,
        now: NOW,
    }
}

pub(super) fn enforce() -> NamespaceMeta {
    ns(Some("enforce"), &[])
}

fn plan_of(d: &Decision) -> &Plan {
    match &d.verdict {
        Verdict::Mutate(p) => p,
        other => panic!("expected a mutation, got {other:?}: {}", d.message),
    }
}

fn denied(d: &Decision, reason: Reason) -> &str {
    assert_eq!(d.verdict, Verdict::Deny, "{d:?}");
    assert_eq!(d.outcome, Outcome::Deny);
    assert_eq!(d.reason, reason, "{}", d.message);
    &d.message
}

/// Signs and applies a decision's plan like the server does.
fn apply(d: &Decision, object: &Value) -> Value {
    let plan = plan_of(d);
    let token = (!plan.keep_decision).then(|| signer(0).sign(&plan.claims));
    let ops = patch::build(plan, token.as_deref(), object);
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::to_value(&ops).unwrap()).unwrap();
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

fn profile(d: &Decision, container: &str) -> String {
    d.claims
        .as_ref()
        .unwrap()
        .profile_for(container)
        .to_string()
}

#[test]
fn resolution_order_container_then_pod_then_namespace_then_cluster() {
    let p = policy();
    // Cluster default.
    let pd = pod(pod_json(json!({})));
    let d = p.decide(&create(&pd, Some(&enforce())));
    assert_eq!(d.reason, Reason::Sandboxed);
    assert_eq!(profile(&d, "app"), "default");
    // Namespace default beats cluster default.
    let n = ns(
        Some("enforce"),
        &[(keys::NAMESPACE_DEFAULT_PROFILE, "strict")],
    );
    let d = p.decide(&create(&pd, Some(&n)));
    assert_eq!(profile(&d, "app"), "strict");
    assert_eq!(d.claims.as_ref().unwrap().profile.as_str(), "strict");
    // Pod annotation beats namespace default.
    let pd = pod(pod_json(json!({"nono.sh/profile": "default"})));
    let d = p.decide(&create(&pd, Some(&n)));
    assert_eq!(profile(&d, "app"), "default");
    // Container override beats pod annotation, for that container only.
    let pd = pod(pod_json(
        json!({"nono.sh/profile": "default", "container.nono.sh/migrate": "strict"}),
    ));
    let d = p.decide(&create(&pd, Some(&n)));
    let claims = d.claims.as_ref().unwrap();
    assert_eq!(claims.profile.as_str(), "default");
    assert_eq!(claims.containers["migrate"].as_str(), "strict");
    assert_eq!(claims.containers["app"].as_str(), "default");
    assert_eq!(claims.containers["sidecar"].as_str(), "default");
    assert_eq!(claims.containers.len(), 3, "init and regular containers");
}

#[test]
fn claims_bind_namespace_generate_name_handler_and_time() {
    let pd = pod(pod_json(json!({})));
    let d = policy().decide(&create(&pd, Some(&enforce())));
    let c = d.claims.unwrap();
    assert_eq!(c.ver, FORMAT_VERSION);
    assert_eq!(c.namespace, NS);
    assert_eq!(c.pod, PodBinding::GenerateName("web-7f9c4-".into()));
    assert_eq!(c.handler, "nono-runc");
    assert_eq!(c.iat, NOW);
    let mut v = pod_json(json!({}));
    v["metadata"]["name"] = json!("web-0");
    let pd = pod(v);
    let d = policy().decide(&create(&pd, Some(&enforce())));
    assert_eq!(d.claims.unwrap().pod, PodBinding::Name("web-0".into()));
}

#[test]
fn pod_without_name_or_generate_name_is_denied() {
    let mut v = pod_json(json!({}));
    v["metadata"] = json!({"namespace": NS});
    let pd = pod(v);
    let d = policy().decide(&create(&pd, Some(&enforce())));
    let msg = denied(&d, Reason::NoPodName);
    assert!(msg.contains("generateName"), "{msg}");
}

#[test]
fn grammar_catalog_and_allowed_failures_say_what_where_and_what_is_allowed() {
    let p = policy();
    let cases = [
        (
            json!({"nono.sh/profile": "Strict"}),
            Reason::InvalidProfile,
            vec!["\"Strict\"", "pod annotation nono.sh/profile", "invalid"],
        ),
        (
            json!({"container.nono.sh/app": "--allow=/"}),
            Reason::InvalidProfile,
            vec!["container app", "\"--allow=/\"", "container.nono.sh/app"],
        ),
        (
            json!({"nono.sh/profile": "nope"}),
            Reason::UnknownProfile,
            vec!["\"nope\"", "not in the cluster's catalog"],
        ),
        (
            json!({"container.nono.sh/sidecar": "net"}),
            Reason::ProfileNotAllowed,
            vec!["container sidecar", "\"net\"", "not allowed"],
        ),
    ];
    for (anns, reason, wants) in cases {
        let pd = pod(pod_json(anns.clone()));
        let d = p.decide(&create(&pd, Some(&enforce())));
        let msg = denied(&d, reason);
        for want in wants
            .iter()
            .chain(&["allowed in namespace team-a: default, strict"])
        {
            assert!(msg.contains(want), "{anns}: want {want:?} in {msg:?}");
        }
    }
}

#[test]
fn all_errors_are_reported_together() {
    let pd = pod(pod_json(
        json!({"container.nono.sh/app": "nope", "container.nono.sh/sidecar": "net"}),
    ));
    let d = policy().decide(&create(&pd, Some(&enforce())));
    let msg = denied(&d, Reason::UnknownProfile);
    assert!(
        msg.contains("container app") && msg.contains("container sidecar"),
        "{msg}"
    );
}

#[test]
fn override_for_missing_container_is_a_typo_and_denied() {
    let pd = pod(pod_json(json!({"container.nono.sh/ap": "strict"})));
    let d = policy().decide(&create(&pd, Some(&enforce())));
    let msg = denied(&d, Reason::UnknownContainer);
    assert!(msg.contains("container.nono.sh/ap"), "{msg}");
    assert!(msg.contains("migrate, app, sidecar"), "{msg}");
}

#[test]
fn namespace_may_only_narrow() {
    let p = policy();
    // Narrowed to strict: the cluster default is no longer allowed.
    let n = ns(
        Some("enforce"),
        &[(keys::NAMESPACE_ALLOWED_PROFILES, "strict")],
    );
    let pd = pod(pod_json(json!({})));
    let d = p.decide(&create(&pd, Some(&n)));
    let msg = denied(&d, Reason::ProfileNotAllowed);
    assert!(msg.contains("the cluster default profile"), "{msg}");
    assert!(msg.contains("allowed in namespace team-a: strict"), "{msg}");
    let pd = pod(pod_json(json!({"nono.sh/profile": "strict"})));
    assert_eq!(p.decide(&create(&pd, Some(&n))).reason, Reason::Sandboxed);

    // Trying to widen to `net` is ignored, with a warning.
    let n = ns(
        Some("enforce"),
        &[(keys::NAMESPACE_ALLOWED_PROFILES, "net, strict")],
    );
    let pd = pod(pod_json(json!({"nono.sh/profile": "net"})));
    let d = p.decide(&create(&pd, Some(&n)));
    denied(&d, Reason::ProfileNotAllowed);
    let pd = pod(pod_json(json!({"nono.sh/profile": "strict"})));
    let d = p.decide(&create(&pd, Some(&n)));
    assert_eq!(d.reason, Reason::Sandboxed);
    assert!(
        d.warnings.iter().any(|w| w.contains("ignoring net")),
        "{:?}",
        d.warnings
    );

    // A namespace default outside the namespace's own list is denied
    // naming the namespace annotation.
    let n = ns(
        Some("enforce"),
        &[
            (keys::NAMESPACE_ALLOWED_PROFILES, "strict"),
            (keys::NAMESPACE_DEFAULT_PROFILE, "default"),
        ],
    );
    let pd = pod(pod_json(json!({})));
    let msg = denied(&p.decide(&create(&pd, Some(&n))), Reason::ProfileNotAllowed).to_owned();
    assert!(
        msg.contains("annotation nono.sh/default-profile of namespace team-a"),
        "{msg}"
    );
}

#[test]
fn broken_namespace_policy_fails_closed() {
    let p = policy();
    let pd = pod(pod_json(json!({})));
    for (key, value, want) in [
        (
            keys::NAMESPACE_ALLOWED_PROFILES,
            "strict,Bad_One",
            "\"Bad_One\"",
        ),
        (keys::NAMESPACE_ALLOWED_PROFILES, "net", "allows none"),
    ] {
        let n = ns(Some("enforce"), &[(key, value)]);
        let d = p.decide(&create(&pd, Some(&n)));
        let msg = denied(&d, Reason::InvalidNamespacePolicy);
        assert!(msg.contains(want) && msg.contains("team-a"), "{msg}");
    }
    let n = ns(Some("enforce"), &[(keys::NAMESPACE_DEFAULT_PROFILE, "x_y")]);
    denied(&p.decide(&create(&pd, Some(&n))), Reason::InvalidProfile);
}

#[test]
fn runtime_class_unset_is_set_to_the_first_sandbox_class() {
    let pd = pod(pod_json(json!({})));
    let d = policy().decide(&create(&pd, Some(&enforce())));
    assert_eq!(plan_of(&d).set_runtime_class.as_deref(), Some("nono"));
    assert_eq!(d.runtime_class.as_deref(), Some("nono"));
}

#[test]
fn runtime_class_sandbox_kept_foreign_denied_exempt_admitted() {
    let p = policy();
    let mut v = pod_json(json!({}));
    v["spec"]["runtimeClassName"] = json!("nono-debug");
    let pd = pod(v.clone());
    let d = p.decide(&create(&pd, Some(&enforce())));
    assert_eq!(plan_of(&d).set_runtime_class, None, "kept");
    assert_eq!(d.claims.as_ref().unwrap().handler, "nono-runc-debug");

    v["spec"]["runtimeClassName"] = json!("gvisor");
    let pd = pod(v.clone());
    let msg = denied(
        &p.decide(&create(&pd, Some(&enforce()))),
        Reason::ForeignRuntimeClass,
    )
    .to_owned();
    assert!(
        msg.contains("\"gvisor\"") && msg.contains("nono, nono-debug"),
        "{msg}"
    );

    v["spec"]["runtimeClassName"] = json!("kata");
    let pd = pod(v);
    let d = p.decide(&create(&pd, Some(&enforce())));
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Admit, Reason::ExemptRuntimeClass)
    );
}

#[test]
fn exemptions_and_opt_in() {
    let p = policy();
    let pd = pod(pod_json(json!({})));
    let mut r = create(&pd, None);
    r.namespace = "kube-system";
    assert_eq!(p.decide(&r).reason, Reason::ExemptNamespace);
    let n = enforce();
    let mut r = create(&pd, Some(&n));
    r.username = "exempt-admin";
    assert_eq!(p.decide(&r).reason, Reason::ExemptUser);
    let n = ns(None, &[]);
    let d = p.decide(&create(&pd, Some(&n)));
    assert_eq!((d.verdict, d.reason), (Verdict::Admit, Reason::NotOptedIn));
    // Not in the cache: fail closed.
    denied(&p.decide(&create(&pd, None)), Reason::NamespaceUnknown);
}

#[test]
fn invalid_mode_label_enforces() {
    let n = ns(Some("Enforce"), &[]);
    let pd = pod(pod_json(json!({})));
    let d = policy().decide(&create(&pd, Some(&n)));
    assert_eq!(d.mode, Some(Mode::Enforce));
    assert_eq!(d.reason, Reason::Sandboxed);
    assert!(d.warnings[0].contains("invalid"), "{:?}", d.warnings);
}

#[test]
fn mirror_pods_are_admitted_unchanged() {
    let pd = pod(pod_json(json!({"kubernetes.io/config.mirror": "abc"})));
    let d = policy().decide(&create(&pd, Some(&enforce())));
    assert_eq!((d.verdict, d.reason), (Verdict::Admit, Reason::MirrorPod));
}

#[test]
fn audit_mode_never_mutates_or_denies() {
    let p = policy();
    let n = ns(Some("audit"), &[]);
    let pd = pod(pod_json(json!({})));
    let d = p.decide(&create(&pd, Some(&n)));
    assert_eq!(d.verdict, Verdict::Admit);
    assert_eq!(d.outcome, Outcome::WouldMutate);
    assert_eq!(d.reason, Reason::Sandboxed);
    assert_eq!(d.mode, Some(Mode::Audit));
    assert!(
        d.warnings.iter().any(|w| w.contains("would sandbox")),
        "{:?}",
        d.warnings
    );

    let pd = pod(pod_json(json!({"nono.sh/profile": "nope"})));
    let d = p.decide(&create(&pd, Some(&n)));
    assert_eq!(d.verdict, Verdict::Admit);
    assert_eq!(d.outcome, Outcome::WouldDeny);
    assert_eq!(d.reason, Reason::UnknownProfile);
    assert!(
        d.warnings.iter().any(|w| w.contains("would deny")),
        "{:?}",
        d.warnings
    );

    let mut r = create(&pd, Some(&n));
    r.endpoint = Endpoint::Validate;
    assert_eq!(p.decide(&r).reason, Reason::AuditMode);
}

#[test]
fn user_decision_and_plugin_escapes_are_replaced_or_removed() {
    let forged = signer(1).sign(&Claims {
        ver: 1,
        namespace: NS.into(),
        pod: PodBinding::GenerateName("web-7f9c4-".into()),
        handler: "runc".into(),
        profile: ProfileName::parse("default").unwrap(),
        containers: BTreeMap::new(),
        iat: NOW,
    });
    let v = pod_json(json!({
        "nono.sh/decision": forged,
        "required-plugins.noderesource.dev": "[]",
        "required-plugins.noderesource.dev/container.app": "[]",
        "required-plugins.noderesource.dev/pod": "[]",
        "tolerate-missing-plugins.noderesource.dev": "true",
        "tolerate-missing-plugins.noderesource.dev/container.sidecar": "true",
        "tolerate-missing-plugins.noderesource.devx": "kept",
    }));
    let pd = pod(v.clone());
    let d = policy().decide(&create(&pd, Some(&enforce())));
    let plan = plan_of(&d);
    assert!(
        !plan.keep_decision,
        "a decision from another key is not ours"
    );
    let out = apply(&d, &v);
    let anns = out["metadata"]["annotations"].as_object().unwrap();
    let keys: Vec<&str> = anns.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "nono.sh/decision",
            "nono.sh/profile",
            "required-plugins.noderesource.dev",
            "tolerate-missing-plugins.noderesource.devx"
        ]
    );
    assert_eq!(
        anns["required-plugins.noderesource.dev"],
        r#"["kubefence"]"#
    );
    assert_ne!(anns["nono.sh/decision"], json!(forged));
    assert_eq!(anns["nono.sh/profile"], "default");
}

#[test]
fn reinvocation_is_idempotent() {
    let p = policy();
    let v = pod_json(json!({"team": "a"}));
    let pd = pod(v.clone());
    let first = p.decide(&create(&pd, Some(&enforce())));
    let once = apply(&first, &v);
    let pd2 = pod(once.clone());
    let n = enforce();
    let mut r = create(&pd2, Some(&n));
    r.now = NOW + 30;
    let again = p.decide(&r);
    assert_eq!(again.verdict, Verdict::Admit, "{again:?}");
    assert_eq!(again.reason, Reason::AlreadySandboxed);
    assert_eq!(again.claims.unwrap().iat, NOW, "the first decision is kept");

    // A later mutator removed the runtime class: only that is restored.
    let mut undone = once.clone();
    undone["spec"]
        .as_object_mut()
        .unwrap()
        .remove("runtimeClassName");
    let pd3 = pod(undone);
    let d = p.decide(&create(&pd3, Some(&enforce())));
    let plan = plan_of(&d);
    assert!(plan.keep_decision);
    assert!(plan.set_annotations.is_empty() && plan.remove_annotations.is_empty());
    assert_eq!(plan.set_runtime_class.as_deref(), Some("nono"));

    // Our own key, but a different decision (the pod's profile changed):
    // re-signed.
    let mut changed = once;
    changed["metadata"]["annotations"]["nono.sh/profile"] = json!("strict");
    let pd4 = pod(changed);
    let d = p.decide(&create(&pd4, Some(&enforce())));
    assert!(!plan_of(&d).keep_decision);
    assert_eq!(profile(&d, "app"), "strict");
}

fn update<'a>(old: &'a Pod, new: &'a Pod, ns: &'a NamespaceMeta, user: &'a str) -> PodRequest<'a> {
    PodRequest {
        operation: Operation::Update,
        old_pod: Some(old),
        username: user,
        ..create(new, Some(ns))
    }
}

fn sandboxed_pod() -> Value {
    let v = pod_json(json!({"team": "a"}));
    let pd = pod(v.clone());
    let d = policy().decide(&create(&pd, Some(&enforce())));
    let mut out = apply(&d, &v);
    out["metadata"]["name"] = json!("web-7f9c4-x2b9z");
    out
}

type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn update_tampering_is_denied_except_for_trusted_users() {
    let p = policy();
    let n = enforce();
    let base = sandboxed_pod();
    let old = pod(base.clone());
    let edits: Vec<(&str, Edit)> = vec![
        (
            "modify",
            Box::new(|v: &mut Value| {
                v["metadata"]["annotations"]["nono.sh/profile"] = json!("strict")
            }),
        ),
        (
            "remove",
            Box::new(|v: &mut Value| {
                v["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove("nono.sh/decision");
            }),
        ),
        (
            "add",
            Box::new(|v: &mut Value| {
                v["metadata"]["annotations"]["container.nono.sh/app"] = json!("strict")
            }),
        ),
        (
            "variant",
            Box::new(|v: &mut Value| {
                v["metadata"]["annotations"]["required-plugins.noderesource.dev/container.app"] =
                    json!("[]")
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut v = base.clone();
        edit(&mut v);
        let new = pod(v);
        let msg = denied(
            &p.decide(&update(&old, &new, &n, ALICE)),
            Reason::TamperedAnnotation,
        )
        .to_owned();
        assert!(msg.contains("managed by kubefence"), "{what}: {msg}");
        let d = p.decide(&update(&old, &new, &n, SA));
        assert_eq!(
            (d.verdict, d.reason),
            (Verdict::Admit, Reason::TrustedUser),
            "{what}"
        );
        let d = p.decide(&update(&old, &new, &n, "exempt-admin"));
        assert_eq!(d.reason, Reason::ExemptUser, "{what}");
    }
    // Other annotations and labels stay editable.
    let mut v = base.clone();
    v["metadata"]["annotations"]["team"] = json!("b");
    let new = pod(v);
    let d = p.decide(&update(&old, &new, &n, ALICE));
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Admit, Reason::NoOwnedChange)
    );
}

#[test]
fn update_runtime_class_change_is_denied() {
    let p = policy();
    let base = sandboxed_pod();
    let old = pod(base.clone());
    let mut v = base;
    v["spec"]["runtimeClassName"] = json!("runc");
    let new = pod(v);
    let msg = denied(
        &p.decide(&update(&old, &new, &enforce(), ALICE)),
        Reason::RuntimeClassChanged,
    )
    .to_owned();
    assert!(
        msg.contains("\"nono\"") && msg.contains("\"runc\""),
        "{msg}"
    );
}

#[test]
fn update_in_audit_or_opted_out_namespaces() {
    let p = policy();
    let base = sandboxed_pod();
    let old = pod(base.clone());
    let mut v = base;
    v["metadata"]["annotations"]["nono.sh/profile"] = json!("strict");
    let new = pod(v);
    let audit = ns(Some("audit"), &[]);
    let d = p.decide(&update(&old, &new, &audit, ALICE));
    assert_eq!((d.verdict, d.outcome), (Verdict::Admit, Outcome::WouldDeny));
    // Opted out after the pod was sandboxed: its decision stays protected.
    let off = ns(None, &[]);
    denied(
        &p.decide(&update(&old, &new, &off, ALICE)),
        Reason::TamperedAnnotation,
    );
    // A pod that never was sandboxed, in an opted-out namespace: ignored.
    let plain = pod(pod_json(json!({"nono.sh/profile": "x"})));
    let plain2 = pod(pod_json(json!({"nono.sh/profile": "y"})));
    let d = p.decide(&update(&plain, &plain2, &off, ALICE));
    assert_eq!(d.reason, Reason::NotOptedIn);
}

#[test]
fn ephemeral_containers_update_is_checked_and_warns_profile() {
    let p = policy();
    let base = sandboxed_pod();
    let old = pod(base.clone());
    let mut v = base.clone();
    v["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox"}]);
    let new = pod(v.clone());
    let n = enforce();
    let mut r = update(&old, &new, &n, ALICE);
    r.subresource = Some("ephemeralcontainers");
    let d = p.decide(&r);
    assert_eq!(d.reason, Reason::NoOwnedChange);
    assert!(
        d.warnings[0].contains("profile default"),
        "{:?}",
        d.warnings
    );
    v["metadata"]["annotations"]["container.nono.sh/debugger"] = json!("default");
    let new = pod(v);
    let mut r = update(&old, &new, &n, ALICE);
    r.subresource = Some("ephemeralcontainers");
    denied(&p.decide(&r), Reason::TamperedAnnotation);
}

#[test]
fn other_operations_are_ignored() {
    let pd = pod(pod_json(json!({})));
    let n = enforce();
    for op in [
        Operation::Delete,
        Operation::Connect,
        Operation::Other("X".into()),
    ] {
        let mut r = create(&pd, Some(&n));
        r.operation = op;
        assert_eq!(policy().decide(&r).reason, Reason::OperationIgnored);
    }
}

fn validate(pd: &Pod) -> Decision {
    let n = enforce();
    let mut r = create(pd, Some(&n));
    r.endpoint = Endpoint::Validate;
    policy().decide(&r)
}

#[test]
fn validate_accepts_the_final_object_with_generated_name() {
    let mut v = sandboxed_pod();
    v["metadata"]["uid"] = json!("d2c1b0a0-0000-0000-0000-000000000001");
    let d = validate(&pod(v.clone()));
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Admit, Reason::Verified),
        "{}",
        d.message
    );
    // A name the apiserver could not have generated from the prefix.
    v["metadata"]["name"] = json!("other-x2b9z");
    denied(&validate(&pod(v)), Reason::DecisionMismatch);
}

#[test]
fn validate_catches_undone_mutations() {
    let base = sandboxed_pod();
    let mut v = base.clone();
    v["spec"]
        .as_object_mut()
        .unwrap()
        .remove("runtimeClassName");
    denied(&validate(&pod(v)), Reason::NotSandboxed);
    let mut v = base.clone();
    v["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("nono.sh/decision");
    denied(&validate(&pod(v)), Reason::DecisionMissing);
    let mut v = base.clone();
    v["metadata"]["annotations"]["nono.sh/decision"] = json!("a.b.c");
    denied(&validate(&pod(v)), Reason::DecisionInvalid);
    let mut v = base.clone();
    v["metadata"]["annotations"]["tolerate-missing-plugins.noderesource.dev"] = json!("true");
    denied(&validate(&pod(v)), Reason::PluginRequirementMissing);
    let mut v = base.clone();
    v["metadata"]["annotations"]["container.nono.sh/app"] = json!("strict");
    denied(&validate(&pod(v)), Reason::DecisionMismatch);
    let mut v = base;
    v["spec"]["runtimeClassName"] = json!("nono-debug");
    denied(&validate(&pod(v)), Reason::DecisionMismatch);
}
