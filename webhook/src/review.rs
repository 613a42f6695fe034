//! `admission.k8s.io/v1` AdmissionReview on the wire, in and out.
//!
//! Own types rather than kube-core's: its `AdmissionResponse.patch` is a
//! `Vec<u8>` that serialises as an array of numbers (kube-rs issue 1781),
//! while the API wants a base64 string beside `patchType: "JSONPatch"`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";
/// kubectl shows warnings verbatim; longer ones are cut to stay readable.
pub const MAX_WARNING_CHARS: usize = 119;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The request half of an AdmissionReview. Unknown fields are ignored, as
/// newer apiservers may add some.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: String,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl AdmissionRequest {
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.unwrap_or(false)
    }

    /// Whether the object is a core/v1 Pod.
    pub fn is_pod(&self) -> bool {
        self.kind.group.is_empty() && self.kind.version == "v1" && self.kind.kind == "Pod"
    }
}

/// Why a body is not an AdmissionReview we can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("request body is not UTF-8 JSON: {0}")]
    NotJson(String),
    #[error(
        "expected apiVersion {API_VERSION:?} and kind {KIND:?}, got {api_version:?} and {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// The uid was readable, so the error can be answered in-band.
    #[error("invalid AdmissionReview request: {message}")]
    BadRequest { uid: String, message: String },
}

impl ParseError {
    /// The request uid, when it could be read.
    pub fn uid(&self) -> Option<&str> {
        match self {
            ParseError::BadRequest { uid, .. } => Some(uid),
            _ => None,
        }
    }
}

/// Parses a body in two steps so a malformed request whose uid is still
/// readable gets an in-band answer rather than an HTTP error.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let mut review: Value =
        serde_json::from_str(text).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (api_version, kind) = (field(&review, "apiVersion"), field(&review, "kind"));
    if api_version != API_VERSION || kind != KIND {
        return Err(ParseError::WrongType { api_version, kind });
    }
    let request = match review.get_mut("request").map(Value::take) {
        Some(r @ Value::Object(_)) => r,
        _ => return Err(ParseError::NoRequest),
    };
    let uid = request.get("uid").and_then(Value::as_str).unwrap_or("");
    if uid.is_empty() {
        return Err(ParseError::NoRequest);
    }
    let uid = uid.to_owned();
    serde_json::from_value(request).map_err(|e| ParseError::BadRequest {
        uid,
        message: e.to_string(),
    })
}

/// `metav1.Status`, as much of it as a webhook returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Base64 (standard, padded) of the JSON patch document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl AdmissionResponse {
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            status: None,
            patch: None,
            patch_type: None,
            audit_annotations: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// A refusal; `code` is 403 for policy, 400 for bad input, 500 for our
    /// own failure.
    pub fn deny(uid: &str, code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            403 => "Forbidden",
            _ => "InternalError",
        };
        Self {
            allowed: false,
            status: Some(Status {
                code,
                message: message.into(),
                reason: reason.into(),
            }),
            ..Self::allow(uid)
        }
    }

    /// Attaches a JSON patch document (already serialised).
    pub fn with_patch(mut self, patch_json: &[u8]) -> Self {
        self.patch = Some(STANDARD.encode(patch_json));
        self.patch_type = Some("JSONPatch".into());
        self
    }

    /// Adds a warning, cut to [`MAX_WARNING_CHARS`] at a character boundary.
    pub fn warn(&mut self, warning: &str) {
        let w = if warning.chars().count() > MAX_WARNING_CHARS {
            let cut: String = warning.chars().take(MAX_WARNING_CHARS - 3).collect();
            format!("{cut}...")
        } else {
            warning.to_owned()
        };
        self.warnings.push(w);
    }

    /// Adds an audit annotation; the apiserver prefixes the webhook name
    /// and a `/` in the key itself would be rejected, so it is replaced.
    pub fn audit(&mut self, key: &str, value: impl Into<String>) {
        self.audit_annotations
            .insert(key.replace('/', "-"), value.into());
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReviewOut {
    pub api_version: String,
    pub kind: String,
    pub response: AdmissionResponse,
}

impl AdmissionReviewOut {
    pub fn new(response: AdmissionResponse) -> Self {
        Self {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            response,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings, bools and maps always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": API_VERSION, "kind": KIND, "request": request}))
            .unwrap()
    }

    fn request() -> Value {
        json!({
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": {"metadata": {"generateName": "web-"}},
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        })
    }

    #[test]
    fn parses_what_the_apiserver_sends() {
        let r = parse(&review(request())).unwrap();
        assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert!(r.is_pod());
        assert_eq!(r.operation, "CREATE");
        assert_eq!(r.user_info.username, "alice");
        assert!(r.old_object.is_none(), "null oldObject is None");
        assert!(!r.is_dry_run());
    }

    #[test]
    fn malformed_input_is_classified() {
        assert!(matches!(parse(b"{"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse(b"\xff\xfe"), Err(ParseError::NotJson(_))));
        let wrong =
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#;
        assert!(matches!(parse(wrong), Err(ParseError::WrongType { .. })));
        let none = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        assert_eq!(parse(none), Err(ParseError::NoRequest));
        let mut r = request();
        r["operation"] = json!(5);
        let err = parse(&review(r)).unwrap_err();
        assert_eq!(err.uid(), Some("705ab4f5-6393-11e8-b7cc-42010a800002"));
        let mut r = request();
        r["uid"] = json!("");
        assert_eq!(parse(&review(r)), Err(ParseError::NoRequest));
    }

    #[test]
    fn response_wire_form() {
        let mut resp =
            AdmissionResponse::allow("u1").with_patch(br#"[{"op":"remove","path":"/a"}]"#);
        resp.audit("nono.sh/outcome", "mutate");
        resp.warn(&"w".repeat(300));
        let v: Value = serde_json::from_slice(&AdmissionReviewOut::new(resp).to_json()).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["kind"], KIND);
        assert_eq!(v["response"]["uid"], "u1");
        assert_eq!(v["response"]["allowed"], true);
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        let patch = STANDARD
            .decode(v["response"]["patch"].as_str().expect("patch is a string"))
            .unwrap();
        assert_eq!(patch, br#"[{"op":"remove","path":"/a"}]"#);
        assert_eq!(
            v["response"]["auditAnnotations"]["nono.sh-outcome"],
            "mutate"
        );
        let w = v["response"]["warnings"][0].as_str().unwrap();
        assert!(w.chars().count() < 120 && w.ends_with("..."), "{w}");
        assert!(v["response"].get("status").is_none());

        let deny = AdmissionReviewOut::new(AdmissionResponse::deny("u2", 403, "no"));
        let v: Value = serde_json::from_slice(&deny.to_json()).unwrap();
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["status"]["message"], "no");
        assert!(v["response"].get("patch").is_none());
    }
}
