//! The validator: after all plugins adjusted a container, check that the
//! merged result still runs a sandbox-handler container under our wrapper.
//! Pure; the runtime sends the pristine container, the merged adjustment and
//! which plugin owns which field.

use crate::decide::{ContainerView, Decision, PodView, Policy, RuntimeSupport};
use crate::nono::{self, MountSpec};

/// The merged adjustment, as far as the validator cares.
#[derive(Debug, Clone, Default)]
pub struct FinalAdjustment<'a> {
    pub args: &'a [String],
    /// `(key, value)`; a key starting with `-` is a removal.
    pub env: Vec<(&'a str, &'a str)>,
    pub mounts: Vec<MountSpec>,
    /// `<index>-<name>` of the plugin owning the args, if the runtime said.
    pub args_owner: Option<&'a str>,
}

/// Why the validator refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// Checks `adjust` for `container` of `pod`. `owner` is our `<index>-<name>`.
pub fn validate(
    policy: &Policy,
    pod: &PodView<'_>,
    container: &ContainerView<'_>,
    adjust: &FinalAdjustment<'_>,
    owner: &str,
    runtime: &RuntimeSupport,
    now: i64,
) -> Result<(), Refusal> {
    let refuse = |reason: &'static str, what: String| {
        Err(Refusal {
            reason,
            message: format!(
                "kubefence: refusing container {:?} of pod {}/{}: {what} ({reason})",
                container.name, pod.namespace, pod.name
            ),
        })
    };
    let wrap = match policy.decide(pod, container, runtime, now) {
        Decision::Skip => return Ok(()),
        Decision::Reject(r) => {
            return Err(Refusal {
                reason: r.reason,
                message: r.message(pod, container.name),
            })
        }
        Decision::Adjust(w) => w,
    };
    if adjust.args != wrap.args.as_slice() {
        return refuse(
            "not-wrapped",
            "after all NRI plugins ran, its command is not the kubefence nono wrapper".into(),
        );
    }
    match adjust.args_owner {
        Some(o) if o == owner => {}
        other => {
            return refuse(
                "args-not-owned",
                format!(
                    "its command is owned by plugin {:?}, not {owner:?}",
                    other.unwrap_or("")
                ),
            )
        }
    }
    for (key, value) in &adjust.env {
        if nono::is_sandbox_env(key) && !value.is_empty() {
            return refuse(
                "sandbox-env-added",
                format!("an NRI plugin sets {key}, which nono reads"),
            );
        }
    }
    for blank in &wrap.blank_env {
        if !adjust.env.iter().any(|(k, v)| k == blank && v.is_empty()) {
            return refuse(
                "sandbox-env-kept",
                format!("{blank} from the workload is no longer blanked"),
            );
        }
    }
    let dir = policy.settings.layout.container_dir();
    let under = format!("{dir}/");
    let ours = adjust.mounts.contains(&wrap.mount);
    let foreign = adjust
        .mounts
        .iter()
        .find(|m| (m.destination == dir || m.destination.starts_with(&under)) && **m != wrap.mount);
    if let Some(m) = foreign {
        return refuse(
            "nono-mount-replaced",
            format!(
                "an NRI plugin mounts {:?} at {:?}, over the nono directory",
                m.source, m.destination
            ),
        );
    }
    if !ours {
        return refuse(
            "nono-mount-missing",
            format!("the nono directory is no longer mounted at {dir:?}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{OnInvalid, Settings};
    use crate::nono::NonoLayout;
    use kubefence_shared::decision::{Claims, PodBinding};
    use kubefence_shared::envelope::{Signer, TrustSet};
    use kubefence_shared::keys;
    use kubefence_shared::profile::{Catalog, CatalogEntry, ProfileName};
    use std::collections::HashMap;

    const NOW: i64 = 1_700_000_100;
    const OWNER: &str = "10-kubefence";

    fn p(n: &str) -> ProfileName {
        ProfileName::parse(n).unwrap()
    }

    fn setup() -> (Policy, HashMap<String, String>) {
        let signer = Signer::generate().unwrap();
        let mut trust = TrustSet::new();
        trust.insert(signer.verifying_key());
        let policy = Policy {
            settings: Settings {
                sandbox_handlers: vec!["nono-runc".into()],
                on_invalid: OnInvalid::Reject,
                max_skew: 300,
                max_age: None,
                layout: NonoLayout::new("/opt/kubefence", "/nono").unwrap(),
            },
            trust,
            catalog: Catalog {
                strictest: p("strict"),
                profiles: [(
                    p("strict"),
                    CatalogEntry {
                        description: String::new(),
                    },
                )]
                .into(),
            },
        };
        let token = signer.sign(&Claims {
            ver: 1,
            namespace: "ns".into(),
            pod: PodBinding::Name("pod".into()),
            handler: "nono-runc".into(),
            profile: p("strict"),
            containers: Default::default(),
            iat: NOW,
        });
        (policy, [(keys::DECISION.to_owned(), token)].into())
    }

    fn pod<'a>(a: &'a HashMap<String, String>, handler: &'a str) -> PodView<'a> {
        PodView {
            namespace: "ns",
            name: "pod",
            uid: "",
            runtime_handler: handler,
            annotations: a,
        }
    }

    fn rt() -> RuntimeSupport {
        RuntimeSupport {
            args: true,
            description: String::new(),
        }
    }

    #[test]
    fn accepts_our_adjustment_and_refuses_tampering() {
        let (policy, a) = setup();
        let original = vec!["/app".to_owned()];
        let env = vec!["NONO_ALLOW=/".to_owned()];
        let c = ContainerView {
            name: "app",
            args: &original,
            env: &env,
        };
        let layout = &policy.settings.layout;
        let wrapped = layout.wrap_args(&p("strict"), &original);
        let good = FinalAdjustment {
            args: &wrapped,
            env: vec![("NONO_ALLOW", "")],
            mounts: vec![layout.mount()],
            args_owner: Some(OWNER),
        };
        let check = |adj: &FinalAdjustment<'_>| {
            validate(&policy, &pod(&a, "nono-runc"), &c, adj, OWNER, &rt(), NOW)
                .map_err(|r| r.reason)
        };
        assert_eq!(check(&good), Ok(()));

        let unwrapped = original.clone();
        let mut bad = good.clone();
        bad.args = &unwrapped;
        assert_eq!(check(&bad), Err("not-wrapped"));

        let mut bad = good.clone();
        bad.args_owner = Some("20-other");
        assert_eq!(check(&bad), Err("args-not-owned"));
        bad.args_owner = None;
        assert_eq!(check(&bad), Err("args-not-owned"));

        let mut bad = good.clone();
        bad.env.push(("NONO_PROFILE", "/tmp/p.json"));
        assert_eq!(check(&bad), Err("sandbox-env-added"));

        let mut bad = good.clone();
        bad.env.clear();
        assert_eq!(check(&bad), Err("sandbox-env-kept"));
        // A later plugin restoring the workload's value.
        let mut bad = good.clone();
        bad.env = vec![("NONO_ALLOW", "/")];
        assert_eq!(check(&bad), Err("sandbox-env-added"));

        let mut bad = good.clone();
        bad.mounts.push(MountSpec {
            destination: "/nono/profiles".into(),
            kind: "bind".into(),
            source: "/tmp/evil".into(),
            options: vec![],
        });
        assert_eq!(check(&bad), Err("nono-mount-replaced"));

        let mut bad = good.clone();
        bad.mounts.clear();
        assert_eq!(check(&bad), Err("nono-mount-missing"));
    }

    #[test]
    fn other_handlers_pass_and_invalid_decisions_are_refused() {
        let (policy, a) = setup();
        let args = vec!["/app".to_owned()];
        let c = ContainerView {
            name: "app",
            args: &args,
            env: &[],
        };
        let adj = FinalAdjustment::default();
        assert_eq!(
            validate(&policy, &pod(&a, "runc"), &c, &adj, OWNER, &rt(), NOW),
            Ok(())
        );
        let none = HashMap::new();
        let err = validate(
            &policy,
            &pod(&none, "nono-runc"),
            &c,
            &adj,
            OWNER,
            &rt(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err.reason, "missing-decision");
    }
}
