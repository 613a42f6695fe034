//! Audit records of the node plugin: one per decision, one per unwrapped
//! container found at synchronize. Building them is pure; `emit` prints.

use kubefence_shared::audit::{AuditRecord, Component, Outcome};

use crate::decide::{Decision, PodView};

/// Event names in the audit record.
pub const CREATE_CONTAINER: &str = "create-container";
pub const VALIDATE: &str = "validate-container-adjustment";
pub const SYNCHRONIZE: &str = "synchronize";

fn with_pod(mut r: AuditRecord, pod: &PodView<'_>, container: &str) -> AuditRecord {
    r.namespace = Some(pod.namespace.to_owned());
    r.pod = Some(pod.name.to_owned());
    r.pod_uid = Some(pod.uid.to_owned()).filter(|u| !u.is_empty());
    r.container = Some(container.to_owned());
    r.handler = Some(pod.runtime_handler.to_owned());
    r
}

/// The record of a CreateContainer decision. `message` is the user-facing
/// rejection message for rejections.
pub fn decision_record(decision: &Decision, pod: &PodView<'_>, container: &str) -> AuditRecord {
    let component = Component::NriPlugin;
    let r = match decision {
        Decision::Skip => AuditRecord::new(
            component,
            CREATE_CONTAINER,
            Outcome::Skip,
            "not-sandbox-handler",
        ),
        Decision::Adjust(w) => {
            let mut r = match &w.confined {
                None => AuditRecord::new(component, CREATE_CONTAINER, Outcome::Inject, "verified"),
                Some((reason, detail)) => {
                    AuditRecord::new(component, CREATE_CONTAINER, Outcome::Confine, *reason)
                        .message(detail.clone())
                }
            };
            r.profile = Some(w.profile.to_string());
            r.key_id = w.key_id.as_ref().map(ToString::to_string);
            r
        }
        Decision::Reject(rej) => {
            let mut r = AuditRecord::new(component, CREATE_CONTAINER, Outcome::Reject, rej.reason)
                .message(rej.message(pod, container));
            r.profile = rej.profile.as_ref().map(ToString::to_string);
            r.key_id = rej.key_id.as_ref().map(ToString::to_string);
            r
        }
    };
    with_pod(r, pod, container)
}

/// A validator rejection.
pub fn validation_record(
    pod: &PodView<'_>,
    container: &str,
    reason: &str,
    message: &str,
) -> AuditRecord {
    let r =
        AuditRecord::new(Component::NriPlugin, VALIDATE, Outcome::Reject, reason).message(message);
    with_pod(r, pod, container)
}

/// A running sandbox-handler container without the wrapper.
pub fn unwrapped_record(pod: &PodView<'_>, container: &str, args0: Option<&str>) -> AuditRecord {
    let r = AuditRecord::new(
        Component::NriPlugin,
        SYNCHRONIZE,
        Outcome::Unwrapped,
        "not-wrapped",
    )
    .message(format!(
        "container runs under sandbox handler {:?} without the nono wrapper (command {:?})",
        pod.runtime_handler,
        args0.unwrap_or("")
    ));
    with_pod(r, pod, container)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Rejection, Wrap};
    use crate::nono::NonoLayout;
    use kubefence_shared::ProfileName;
    use std::collections::HashMap;

    fn pod(a: &HashMap<String, String>) -> PodView<'_> {
        PodView {
            namespace: "team-a",
            name: "web-0",
            uid: "u-1",
            runtime_handler: "nono-runc",
            annotations: a,
        }
    }

    #[test]
    fn records_carry_outcome_reason_and_identity() {
        let a = HashMap::new();
        let layout = NonoLayout::new("/opt/kubefence", "/nono").unwrap();
        let profile = ProfileName::parse("strict").unwrap();
        let wrap = Wrap {
            args: layout.wrap_args(&profile, &["x".into()]),
            mount: layout.mount(),
            blank_env: vec![],
            profile,
            key_id: None,
            confined: Some(("missing-decision", "no annotation".into())),
        };
        let r = decision_record(&Decision::Adjust(wrap), &pod(&a), "app");
        assert_eq!(r.outcome, Outcome::Confine);
        assert_eq!(r.reason, "missing-decision");
        assert_eq!(r.profile.as_deref(), Some("strict"));
        assert_eq!(r.namespace.as_deref(), Some("team-a"));
        assert_eq!(r.pod.as_deref(), Some("web-0"));
        assert_eq!(r.pod_uid.as_deref(), Some("u-1"));
        assert_eq!(r.container.as_deref(), Some("app"));
        assert_eq!(r.handler.as_deref(), Some("nono-runc"));
        assert_eq!(r.component, Component::NriPlugin);

        let rej = Rejection {
            reason: "no-args",
            detail: "nothing".into(),
            key_id: None,
            profile: None,
        };
        let r = decision_record(&Decision::Reject(rej), &pod(&a), "app");
        assert_eq!(r.outcome, Outcome::Reject);
        assert!(
            r.message.contains("refusing container \"app\""),
            "{}",
            r.message
        );

        let r = decision_record(&Decision::Skip, &pod(&a), "app");
        assert_eq!(r.outcome, Outcome::Skip);

        let r = unwrapped_record(&pod(&a), "app", Some("/bin/sh"));
        assert_eq!(r.outcome, Outcome::Unwrapped);
        assert_eq!(r.event, SYNCHRONIZE);
        assert!(r.to_json_line().contains("\"outcome\":\"unwrapped\""));
    }
}
