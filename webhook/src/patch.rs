//! A [`Plan`] as an RFC 6902 JSON patch against the object the apiserver
//! sent. Pure: the raw object is only read to know which maps exist.

use serde::Serialize;
use serde_json::Value;

use kubefence_shared::keys;

use crate::policy::Plan;

/// One RFC 6902 operation (only those the webhook needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    Add { path: String, value: Value },
    Remove { path: String },
    Replace { path: String, value: Value },
}

/// The patch of a `PodExecOptions` that makes it run `command` instead.
/// `replace` (not `add`): it fails to apply rather than create a member if
/// the apiserver ever sends options without one.
pub fn exec_command(command: &[String]) -> Vec<PatchOp> {
    vec![PatchOp::Replace {
        path: "/command".into(),
        value: Value::from(command.to_vec()),
    }]
}

/// Escapes one JSON-pointer reference token (RFC 6901 section 3): `~`
/// first, so the `~` introduced for `/` is not escaped again.
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn annotation_path(key: &str) -> String {
    format!("/metadata/annotations/{}", escape_token(key))
}

/// Builds the patch. `decision` is the signed token to add, or `None` when
/// the plan keeps the existing one.
pub fn build(plan: &Plan, decision: Option<&str>, object: &Value) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    let mut set = plan.set_annotations.clone();
    if let Some(token) = decision {
        set.insert(keys::DECISION.to_owned(), token.to_owned());
    }
    let has_annotations = object
        .pointer("/metadata/annotations")
        .is_some_and(Value::is_object);
    if has_annotations {
        for key in &plan.remove_annotations {
            // A key that is set anyway is overwritten by its `add`.
            if !set.contains_key(key) {
                ops.push(PatchOp::Remove {
                    path: annotation_path(key),
                });
            }
        }
        for (key, value) in set {
            // `add` on an existing member replaces its value.
            ops.push(PatchOp::Add {
                path: annotation_path(&key),
                value: Value::String(value),
            });
        }
    } else if !set.is_empty() {
        // Absent (or null): create the map whole. Never done over an
        // existing map, which `add` would replace entirely.
        let map: serde_json::Map<String, Value> = set
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        ops.push(PatchOp::Add {
            path: "/metadata/annotations".into(),
            value: Value::Object(map),
        });
    }
    if let Some(rc) = &plan.set_runtime_class {
        ops.push(PatchOp::Add {
            path: "/spec/runtimeClassName".into(),
            value: Value::String(rc.clone()),
        });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubefence_shared::decision::{Claims, PodBinding};
    use kubefence_shared::profile::ProfileName;
    use serde_json::json;
    use std::collections::{BTreeMap, BTreeSet};

    fn plan() -> Plan {
        Plan {
            claims: Claims {
                ver: 1,
                namespace: "n".into(),
                pod: PodBinding::Name("p".into()),
                handler: "nono-runc".into(),
                profile: ProfileName::parse("default").unwrap(),
                containers: BTreeMap::new(),
                iat: 0,
            },
            keep_decision: false,
            set_runtime_class: Some("nono".into()),
            set_annotations: BTreeMap::from([(
                "required-plugins.noderesource.dev".to_string(),
                r#"["kubefence"]"#.to_string(),
            )]),
            remove_annotations: BTreeSet::new(),
        }
    }

    fn apply(object: &Value, ops: &[PatchOp]) -> Value {
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::to_value(ops).unwrap()).unwrap();
        let mut doc = object.clone();
        json_patch::patch(&mut doc, &patch).unwrap();
        doc
    }

    #[test]
    fn exec_command_replaces_the_whole_list() {
        let ops = exec_command(&["/nono/nono".to_string(), "sh".to_string()]);
        assert_eq!(
            serde_json::to_value(&ops).unwrap(),
            json!([{"op": "replace", "path": "/command", "value": ["/nono/nono", "sh"]}])
        );
        let object =
            json!({"kind": "PodExecOptions", "apiVersion": "v1", "command": ["sh", "-c", "id"]});
        assert_eq!(apply(&object, &ops)["command"], json!(["/nono/nono", "sh"]));
        let without: json_patch::Patch =
            serde_json::from_value(serde_json::to_value(&ops).unwrap()).unwrap();
        let mut bare = json!({"kind": "PodExecOptions"});
        assert!(json_patch::patch(&mut bare, &without).is_err());
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_token("nono.sh/decision"), "nono.sh~1decision");
        assert_eq!(escape_token("a~b"), "a~0b");
        assert_eq!(escape_token("~/"), "~0~1");
        assert_eq!(
            escape_token("a~1b"),
            "a~01b",
            "an existing ~1 is not a slash"
        );
        assert_eq!(
            annotation_path("container.nono.sh/app"),
            "/metadata/annotations/container.nono.sh~1app"
        );
    }

    #[test]
    fn creates_annotations_when_absent_or_null() {
        for object in [
            json!({"metadata": {"name": "p"}, "spec": {"containers": []}}),
            json!({"metadata": {"name": "p", "annotations": null}, "spec": {"containers": []}}),
        ] {
            let ops = build(&plan(), Some("tok"), &object);
            assert_eq!(
                serde_json::to_value(&ops).unwrap(),
                json!([
                    {"op": "add", "path": "/metadata/annotations", "value": {
                        "nono.sh/decision": "tok",
                        "required-plugins.noderesource.dev": "[\"kubefence\"]"
                    }},
                    {"op": "add", "path": "/spec/runtimeClassName", "value": "nono"}
                ])
            );
            let out = apply(&object, &ops);
            assert_eq!(out["metadata"]["annotations"]["nono.sh/decision"], "tok");
        }
    }

    #[test]
    fn existing_annotations_are_kept_and_edited_per_key() {
        let object = json!({"metadata": {"generateName": "web-", "annotations": {
            "team": "a",
            "nono.sh/decision": "forged",
            "required-plugins.noderesource.dev/container.app": "[]",
            "we~ird/key": "x"
        }}, "spec": {"containers": [], "runtimeClassName": "nono"}});
        let mut p = plan();
        p.set_runtime_class = None;
        p.remove_annotations = BTreeSet::from([
            "nono.sh/decision".to_string(),
            "required-plugins.noderesource.dev/container.app".to_string(),
            "we~ird/key".to_string(),
        ]);
        let ops = build(&p, Some("signed"), &object);
        assert!(
            !ops.iter().any(
                |op| matches!(op, PatchOp::Add { path, .. } if path == "/metadata/annotations")
            ),
            "never replaces the whole map: {ops:?}"
        );
        assert!(ops.contains(&PatchOp::Remove {
            path: "/metadata/annotations/we~0ird~1key".into()
        }));
        assert!(
            !ops.contains(&PatchOp::Remove {
                path: "/metadata/annotations/nono.sh~1decision".into()
            }),
            "overwritten, not removed then added"
        );
        let out = apply(&object, &ops);
        let anns = out["metadata"]["annotations"].as_object().unwrap();
        assert_eq!(anns["team"], "a");
        assert_eq!(anns["nono.sh/decision"], "signed");
        assert!(!anns.contains_key("we~ird/key"));
        assert!(!anns.contains_key("required-plugins.noderesource.dev/container.app"));
        assert_eq!(out["spec"]["runtimeClassName"], "nono");
    }

    #[test]
    fn keep_decision_adds_no_token() {
        let object = json!({"metadata": {"name": "p", "annotations": {"nono.sh/decision": "mine"}}, "spec": {}});
        let ops = build(&plan(), None, &object);
        let out = apply(&object, &ops);
        assert_eq!(out["metadata"]["annotations"]["nono.sh/decision"], "mine");
    }
}
