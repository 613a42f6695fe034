//! The audit record: one JSON object per decision, one line each on stdout,
//! written by both components with the same field names.
//!
//! Field names are stable; absent values are omitted rather than null. See
//! the README's "Audit record" section for the table of fields.

use serde::Serialize;

/// Which component wrote the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Webhook,
    NriPlugin,
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Webhook: the pod was admitted with the sandbox and a signed decision.
    Mutate,
    /// Webhook: admitted unchanged (exempt, mirror pod, nothing to do).
    Admit,
    /// Webhook: audit-mode namespace; admitted unchanged, this is what
    /// enforce would have done.
    WouldMutate,
    /// Webhook: audit-mode namespace; enforce would have denied.
    WouldDeny,
    /// Webhook: refused.
    Deny,
    /// Node: the container was wrapped in nono.
    Inject,
    /// Node: left alone (not a sandbox handler).
    Skip,
    /// Node: container creation refused.
    Reject,
    /// Node: no valid decision, confined under the strictest profile.
    Confine,
    /// Node, at synchronize: a running sandbox container without the wrapper.
    Unwrapped,
}

impl Outcome {
    /// The outcome as written in records, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mutate => "mutate",
            Outcome::Admit => "admit",
            Outcome::WouldMutate => "would-mutate",
            Outcome::WouldDeny => "would-deny",
            Outcome::Deny => "deny",
            Outcome::Inject => "inject",
            Outcome::Skip => "skip",
            Outcome::Reject => "reject",
            Outcome::Confine => "confine",
            Outcome::Unwrapped => "unwrapped",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC timestamp.
    pub ts: String,
    pub component: Component,
    /// What was being decided: `admission` (pod create/update),
    /// `create-container`, `synchronize`, ...
    pub event: &'static str,
    pub outcome: Outcome,
    /// Stable machine-readable reason code.
    pub reason: String,
    /// Human-readable explanation.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pod name, or `generateName` prefix when the webhook saw no name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Profiles per container, when a decision covers several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The requesting user (webhook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The AdmissionReview request uid (webhook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_uid: Option<String>,
    /// Namespace mode: `enforce` or `audit` (webhook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl AuditRecord {
    /// A record stamped now, with every optional field empty.
    pub fn new(
        component: Component,
        event: &'static str,
        outcome: Outcome,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            ts: rfc3339_now(),
            component,
            event,
            outcome,
            reason: reason.into(),
            message: String::new(),
            namespace: None,
            pod: None,
            pod_uid: None,
            container: None,
            profile: None,
            profiles: None,
            handler: None,
            runtime_class: None,
            key_id: None,
            user: None,
            request_uid: None,
            mode: None,
            dry_run: false,
        }
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// The record as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // A struct of strings and enums always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Writes the record to stdout as one line. Stdout is locked for the
    /// whole line so records from concurrent tasks never interleave.
    pub fn emit(&self) {
        use std::io::Write;
        let mut line = self.to_json_line();
        line.push('\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_shape() {
        let mut r = AuditRecord::new(
            Component::NriPlugin,
            "create-container",
            Outcome::Reject,
            "bad-signature",
        )
        .message("forged");
        r.namespace = Some("team-a".into());
        r.ts = "2026-01-01T00:00:00Z".into();
        assert_eq!(
            r.to_json_line(),
            r#"{"ts":"2026-01-01T00:00:00Z","component":"nri-plugin","event":"create-container","outcome":"reject","reason":"bad-signature","message":"forged","namespace":"team-a"}"#
        );
        r.dry_run = true;
        assert!(r.to_json_line().ends_with(r#""dry_run":true}"#));
    }

    #[test]
    fn outcome_labels_match_serde() {
        use Outcome::*;
        for o in [
            Mutate,
            Admit,
            WouldMutate,
            WouldDeny,
            Deny,
            Inject,
            Skip,
            Reject,
            Confine,
            Unwrapped,
        ] {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
    }

    #[test]
    fn timestamp_is_rfc3339() {
        let r = AuditRecord::new(Component::Webhook, "admission", Outcome::Admit, "exempt");
        assert!(r.ts.ends_with('Z') && r.ts.contains('T'), "{}", r.ts);
    }
}
