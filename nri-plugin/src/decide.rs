//! The node's security decision, as a pure function: what the runtime told
//! us about a pod and a container, the trusted keys, the catalog, the
//! settings and the time in, `Adjust | Reject | Skip` out. No I/O here.

use std::collections::HashMap;

use kubefence_shared::decision::{Freshness, NodeView};
use kubefence_shared::envelope::{KeyId, TrustSet, VerifyError};
use kubefence_shared::keys;
use kubefence_shared::profile::{join_names, Catalog, ProfileName};

use crate::nono::{self, MountSpec, NonoLayout};

/// What to do with a sandbox-handler container that has no valid decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnInvalid {
    /// Fail the container's creation (fail closed).
    #[default]
    Reject,
    /// Run it under the catalog's strictest profile.
    Confine,
}

/// Settings the decision depends on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// RuntimeClass handlers whose pods are sandboxed.
    pub sandbox_handlers: Vec<String>,
    pub on_invalid: OnInvalid,
    /// Seconds a decision may lie in the future.
    pub max_skew: i64,
    /// Oldest decision accepted, seconds; `None` accepts any age.
    pub max_age: Option<i64>,
    pub layout: NonoLayout,
}

/// Everything the decision needs besides the pod and container.
#[derive(Debug, Clone)]
pub struct Policy {
    pub settings: Settings,
    pub trust: TrustSet,
    pub catalog: Catalog,
}

/// The pod as the runtime describes it.
#[derive(Debug, Clone, Copy)]
pub struct PodView<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub runtime_handler: &'a str,
    pub annotations: &'a HashMap<String, String>,
}

/// The container as the runtime describes it, before any adjustment.
#[derive(Debug, Clone, Copy)]
pub struct ContainerView<'a> {
    pub name: &'a str,
    /// Final OCI process args (image ENTRYPOINT/CMD merged with the pod's).
    pub args: &'a [String],
    /// `KEY=VALUE` entries.
    pub env: &'a [String],
}

/// What the runtime can do, as far as the decision cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSupport {
    /// The runtime applies `ContainerAdjustment.args` (NRI v0.10+).
    pub args: bool,
    /// For messages, e.g. `containerd v2.1.0 (NRI v0.8.0 ...)`.
    pub description: String,
}

/// Why a container gets no verified wrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No decision annotation.
    Missing,
    /// The decision did not verify.
    Invalid(VerifyError),
    /// The decided profile is not in this node's catalog.
    NotInCatalog(ProfileName),
}

impl Problem {
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Missing => "missing-decision",
            Problem::Invalid(e) => e.reason(),
            Problem::NotInCatalog(_) => "profile-not-in-catalog",
        }
    }

    fn explain(&self, catalog: &Catalog) -> String {
        match self {
            Problem::Missing => format!(
                "the pod has no {} annotation, so the kubefence webhook did not admit it",
                keys::DECISION
            ),
            Problem::Invalid(e) => e.to_string(),
            Problem::NotInCatalog(p) => format!(
                "the decision names profile {p:?}, which this node's catalog does not have \
                 (it has: {})",
                join_names(catalog.profiles.keys())
            ),
        }
    }
}

/// The container is wrapped in nono.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrap {
    pub profile: ProfileName,
    /// The container's new argv.
    pub args: Vec<String>,
    pub mount: MountSpec,
    /// Environment variables set to the empty string (see
    /// [`nono::env_to_blank`]).
    pub blank_env: Vec<String>,
    /// The key that signed the decision, when one verified.
    pub key_id: Option<KeyId>,
    /// Set in confine mode: why the strictest profile was used.
    pub confined: Option<(&'static str, String)>,
}

/// Container creation must fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable reason code.
    pub reason: &'static str,
    /// What was wrong, for users.
    pub detail: String,
    pub key_id: Option<KeyId>,
    pub profile: Option<ProfileName>,
}

impl Rejection {
    /// The error the runtime shows in the pod's events.
    pub fn message(&self, pod: &PodView<'_>, container: &str) -> String {
        format!(
            "kubefence: refusing container {container:?} of pod {}/{}: {} ({})",
            pod.namespace, pod.name, self.detail, self.reason
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Adjust(Wrap),
    Reject(Rejection),
    /// Not a sandbox handler: leave the container alone.
    Skip,
}

impl Policy {
    pub fn is_sandboxed(&self, pod: &PodView<'_>) -> bool {
        self.settings
            .sandbox_handlers
            .iter()
            .any(|h| h == pod.runtime_handler)
    }

    /// Decides what to do with `container` of `pod` at `now` (Unix seconds).
    pub fn decide(
        &self,
        pod: &PodView<'_>,
        container: &ContainerView<'_>,
        runtime: &RuntimeSupport,
        now: i64,
    ) -> Decision {
        if !self.is_sandboxed(pod) {
            return Decision::Skip;
        }
        if !runtime.args {
            return Decision::Reject(Rejection {
                reason: "runtime-unsupported",
                detail: format!(
                    "the runtime {} cannot replace a container's command; kubefence needs \
                     NRI v0.10 or newer (containerd 2.2+, CRI-O 1.34+)",
                    runtime.description
                ),
                key_id: None,
                profile: None,
            });
        }
        if container.args.is_empty() {
            return Decision::Reject(Rejection {
                reason: "no-args",
                detail: "the container has no command to run under nono".to_owned(),
                key_id: None,
                profile: None,
            });
        }
        let (profile, key_id, problem) = match self.verified_profile(pod, container, now) {
            Ok((profile, kid)) => (profile, Some(kid), None),
            Err((problem, kid)) => match self.settings.on_invalid {
                OnInvalid::Reject => {
                    let profile = match &problem {
                        Problem::NotInCatalog(p) => Some(p.clone()),
                        _ => None,
                    };
                    return Decision::Reject(Rejection {
                        reason: problem.reason(),
                        detail: problem.explain(&self.catalog),
                        key_id: kid,
                        profile,
                    });
                }
                OnInvalid::Confine => (self.catalog.strictest.clone(), kid, Some(problem)),
            },
        };
        let layout = &self.settings.layout;
        Decision::Adjust(Wrap {
            args: layout.wrap_args(&profile, container.args),
            mount: layout.mount(),
            blank_env: nono::env_to_blank(container.env),
            profile,
            key_id,
            confined: problem.map(|p| (p.reason(), p.explain(&self.catalog))),
        })
    }

    /// The verified profile for the container and the signing key, or what
    /// was wrong (with the key id when the signature verified).
    fn verified_profile(
        &self,
        pod: &PodView<'_>,
        container: &ContainerView<'_>,
        now: i64,
    ) -> Result<(ProfileName, KeyId), (Problem, Option<KeyId>)> {
        let token = pod
            .annotations
            .get(keys::DECISION)
            .ok_or((Problem::Missing, None))?;
        let view = NodeView {
            namespace: pod.namespace,
            pod_name: pod.name,
            handler: pod.runtime_handler,
        };
        let fresh = Freshness {
            now,
            max_skew: self.settings.max_skew,
            max_age: self.settings.max_age,
        };
        let verified = self
            .trust
            .verify(token, &view, &fresh)
            .map_err(|e| (Problem::Invalid(e), None))?;
        let profile = verified.profile_for(container.name).clone();
        if !self.catalog.contains(&profile) {
            return Err((Problem::NotInCatalog(profile), Some(verified.kid().clone())));
        }
        Ok((profile, verified.kid().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubefence_shared::decision::{Claims, PodBinding};
    use kubefence_shared::envelope::Signer;
    use kubefence_shared::profile::CatalogEntry;

    const NOW: i64 = 1_700_000_100;
    const IAT: i64 = 1_700_000_000;

    fn p(name: &str) -> ProfileName {
        ProfileName::parse(name).unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn catalog() -> Catalog {
        Catalog {
            strictest: p("strict"),
            profiles: [
                (
                    p("default"),
                    CatalogEntry {
                        description: String::new(),
                    },
                ),
                (
                    p("strict"),
                    CatalogEntry {
                        description: String::new(),
                    },
                ),
                (
                    p("web"),
                    CatalogEntry {
                        description: String::new(),
                    },
                ),
            ]
            .into(),
        }
    }

    fn policy(signer: &Signer, on_invalid: OnInvalid, max_age: Option<i64>) -> Policy {
        let mut trust = TrustSet::new();
        trust.insert(signer.verifying_key());
        Policy {
            settings: Settings {
                sandbox_handlers: s(&["nono-runc"]),
                on_invalid,
                max_skew: 300,
                max_age,
                layout: NonoLayout::new("/opt/kubefence", "/nono").unwrap(),
            },
            trust,
            catalog: catalog(),
        }
    }

    fn claims() -> Claims {
        Claims {
            ver: 1,
            namespace: "team-a".into(),
            pod: PodBinding::GenerateName("web-".into()),
            handler: "nono-runc".into(),
            profile: p("default"),
            containers: [("app".to_owned(), p("web"))].into(),
            iat: IAT,
        }
    }

    fn annotations(token: Option<String>) -> HashMap<String, String> {
        let mut a: HashMap<String, String> = [("other".to_owned(), "x".to_owned())].into();
        if let Some(t) = token {
            a.insert(keys::DECISION.to_owned(), t);
        }
        a
    }

    fn pod(a: &HashMap<String, String>) -> PodView<'_> {
        PodView {
            namespace: "team-a",
            name: "web-x2b9z",
            uid: "uid-1",
            runtime_handler: "nono-runc",
            annotations: a,
        }
    }

    const ARGS: &[&str] = &["/app/server", "--port", "8080"];

    fn run(policy: &Policy, pod: &PodView<'_>, name: &str, args: &[String]) -> Decision {
        let env = s(&["PATH=/bin", "NONO_ALLOW=/"]);
        let c = ContainerView {
            name,
            args,
            env: &env,
        };
        let rt = RuntimeSupport {
            args: true,
            description: "containerd v2.2.0".into(),
        };
        policy.decide(pod, &c, &rt, NOW)
    }

    fn rejection(d: Decision) -> Rejection {
        match d {
            Decision::Reject(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn wrap(d: Decision) -> Wrap {
        match d {
            Decision::Adjust(w) => w,
            other => panic!("expected a wrap, got {other:?}"),
        }
    }

    #[test]
    fn valid_decision_wraps_with_the_container_profile() {
        let signer = Signer::generate().unwrap();
        let pol = policy(&signer, OnInvalid::Reject, None);
        let a = annotations(Some(signer.sign(&claims())));
        let w = wrap(run(&pol, &pod(&a), "app", &s(ARGS)));
        assert_eq!(w.profile, p("web"));
        assert_eq!(
            w.args,
            s(&[
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
                "/app/server",
                "--port",
                "8080"
            ])
        );
        assert_eq!(w.mount, pol.settings.layout.mount());
        assert_eq!(w.blank_env, s(&["NONO_ALLOW"]));
        assert_eq!(w.key_id.as_ref(), Some(signer.kid()));
        assert_eq!(w.confined, None);
        // A container the decision does not list gets the pod-wide profile.
        let side = wrap(run(&pol, &pod(&a), "sidecar", &s(ARGS)));
        assert_eq!(side.profile, p("default"));
    }

    #[test]
    fn other_handlers_are_skipped_even_without_a_decision() {
        let signer = Signer::generate().unwrap();
        let pol = policy(&signer, OnInvalid::Reject, None);
        let a = annotations(None);
        for handler in ["", "runc", "nono-runc-x", "NONO-RUNC"] {
            let pv = PodView {
                runtime_handler: handler,
                ..pod(&a)
            };
            assert_eq!(
                run(&pol, &pv, "app", &s(ARGS)),
                Decision::Skip,
                "{handler:?}"
            );
        }
    }

    /// Signs `claims` altered by `f` with `signer`.
    fn token_with(signer: &Signer, f: impl FnOnce(&mut Claims)) -> String {
        let mut c = claims();
        f(&mut c);
        signer.sign(&c)
    }

    #[test]
    fn every_rejection_reason() {
        let signer = Signer::generate().unwrap();
        let stranger = Signer::generate().unwrap();
        let pol = policy(&signer, OnInvalid::Reject, Some(200));
        let good = signer.sign(&claims());
        let altered = {
            // The signed payload swapped for another one, signature kept.
            let evil = token_with(&signer, |c| c.containers.clear());
            let mut parts: Vec<&str> = good.split('.').collect();
            parts[1] = evil.split('.').nth(1).unwrap();
            parts.join(".")
        };
        let forged = {
            // A token claiming the trusted kid, signed by another key.
            let theirs = stranger.sign(&claims());
            let mut parts: Vec<String> = theirs.split('.').map(str::to_owned).collect();
            parts[0] = good.split('.').next().unwrap().to_owned();
            parts.join(".")
        };
        let cases: Vec<(Option<String>, &str)> = vec![
            (None, "missing-decision"),
            (Some("not-a-token".into()), "malformed"),
            (Some(forged), "bad-signature"),
            (Some(altered), "bad-signature"),
            (Some(stranger.sign(&claims())), "unknown-key"),
            (
                Some(token_with(&signer, |c| c.namespace = "team-b".into())),
                "namespace-mismatch",
            ),
            (
                Some(token_with(&signer, |c| {
                    c.pod = PodBinding::Name("api-0".into())
                })),
                "pod-mismatch",
            ),
            (
                Some(token_with(&signer, |c| c.handler = "runc".into())),
                "handler-mismatch",
            ),
            (Some(token_with(&signer, |c| c.iat = NOW - 201)), "expired"),
            (
                Some(token_with(&signer, |c| c.iat = NOW + 301)),
                "issued-in-future",
            ),
            (
                Some(token_with(&signer, |c| c.profile = p("gpu"))),
                "profile-not-in-catalog",
            ),
        ];
        for (token, reason) in cases {
            let a = annotations(token.clone());
            // "sidecar" uses the pod-wide profile, which the gpu case changes.
            let r = rejection(run(&pol, &pod(&a), "sidecar", &s(ARGS)));
            assert_eq!(r.reason, reason, "token {token:?}: {}", r.detail);
            let msg = r.message(&pod(&a), "sidecar");
            assert!(
                msg.starts_with(
                    "kubefence: refusing container \"sidecar\" of pod team-a/web-x2b9z: "
                ),
                "{msg}"
            );
            assert!(msg.ends_with(&format!("({reason})")), "{msg}");
        }
    }

    #[test]
    fn rejection_message_names_pod_container_and_reason() {
        let signer = Signer::generate().unwrap();
        let pol = policy(&signer, OnInvalid::Reject, None);
        let a = annotations(Some(token_with(&signer, |c| c.namespace = "team-b".into())));
        let r = rejection(run(&pol, &pod(&a), "app", &s(ARGS)));
        assert_eq!(
            r.message(&pod(&a), "app"),
            "kubefence: refusing container \"app\" of pod team-a/web-x2b9z: the decision was \
             issued for namespace \"team-b\", not \"team-a\" (namespace-mismatch)"
        );
    }

    #[test]
    fn profile_not_in_catalog_keeps_key_and_profile() {
        let signer = Signer::generate().unwrap();
        let pol = policy(&signer, OnInvalid::Reject, None);
        let a = annotations(Some(token_with(&signer, |c| {
            c.containers.insert("app".into(), p("gpu"));
        })));
        let r = rejection(run(&pol, &pod(&a), "app", &s(ARGS)));
        assert_eq!(r.reason, "profile-not-in-catalog");
        assert_eq!(r.profile, Some(p("gpu")));
        assert_eq!(r.key_id.as_ref(), Some(signer.kid()));
        assert!(r.detail.contains("default, strict, web"), "{}", r.detail);
    }

    #[test]
    fn empty_args_are_rejected_even_with_a_valid_decision_or_in_confine_mode() {
        let signer = Signer::generate().unwrap();
        for mode in [OnInvalid::Reject, OnInvalid::Confine] {
            let pol = policy(&signer, mode, None);
            let a = annotations(Some(signer.sign(&claims())));
            assert_eq!(rejection(run(&pol, &pod(&a), "app", &[])).reason, "no-args");
        }
    }

    #[test]
    fn runtime_without_args_support_is_refused() {
        let signer = Signer::generate().unwrap();
        let pol = policy(&signer, OnInvalid::Confine, None);
        let a = annotations(Some(signer.sign(&claims())));
        let c = ContainerView {
            name: "app",
            args: &s(ARGS),
            env: &[],
        };
        let rt = RuntimeSupport {
            args: false,
            description: "containerd v2.1.0".into(),
        };
        let r = rejection(pol.decide(&pod(&a), &c, &rt, NOW));
        assert_eq!(r.reason, "runtime-unsupported");
        assert!(r.detail.contains("containerd v2.1.0"), "{}", r.detail);
        // Other handlers are still left alone on such a runtime.
        let pv = PodView {
            runtime_handler: "runc",
            ..pod(&a)
        };
        assert_eq!(pol.decide(&pv, &c, &rt, NOW), Decision::Skip);
    }

    #[test]
    fn confine_mode_wraps_invalid_decisions_under_the_strictest_profile() {
        let signer = Signer::generate().unwrap();
        let pol = policy(&signer, OnInvalid::Confine, None);
        let cases = [
            (None, "missing-decision", None),
            (
                Some(token_with(&signer, |c| c.namespace = "team-b".into())),
                "namespace-mismatch",
                None,
            ),
            (
                Some(token_with(&signer, |c| {
                    c.containers.insert("app".into(), p("gpu"));
                })),
                "profile-not-in-catalog",
                Some(signer.kid().clone()),
            ),
        ];
        for (token, reason, kid) in cases {
            let a = annotations(token);
            let w = wrap(run(&pol, &pod(&a), "app", &s(ARGS)));
            assert_eq!(w.profile, p("strict"));
            assert_eq!(w.args[4], "/nono/profiles/strict.json");
            assert_eq!(&w.args[12..], s(ARGS).as_slice());
            assert_eq!(w.confined.as_ref().map(|c| c.0), Some(reason));
            assert_eq!(w.key_id, kid);
            assert_eq!(w.blank_env, s(&["NONO_ALLOW"]));
        }
        // A valid decision is not confined.
        let a = annotations(Some(signer.sign(&claims())));
        assert_eq!(wrap(run(&pol, &pod(&a), "app", &s(ARGS))).confined, None);
    }

    #[test]
    fn several_sandbox_handlers() {
        let signer = Signer::generate().unwrap();
        let mut pol = policy(&signer, OnInvalid::Reject, None);
        pol.settings.sandbox_handlers = s(&["nono-runc", "nono-crun"]);
        let a = annotations(Some(token_with(&signer, |c| {
            c.handler = "nono-crun".into()
        })));
        let pv = PodView {
            runtime_handler: "nono-crun",
            ..pod(&a)
        };
        assert!(matches!(
            run(&pol, &pv, "app", &s(ARGS)),
            Decision::Adjust(_)
        ));
    }
}
