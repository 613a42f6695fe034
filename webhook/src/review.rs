//! `admission.k8s.io/v1` AdmissionReview on the wire, in and out.
//!
//! Own types rather than kube-core's: its `AdmissionResponse.patch` is a
//! `Vec<u8>` that serialises as an array of numbers (kube-rs issue 1781),
//! while the API wants a base64 string beside `patchType: "JSONPatch"`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
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

/// An `object` / `oldObject` as the text the apiserver sent: kept unparsed
/// so the request is read in one pass and each consumer parses it once,
/// into its own type.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct RawObject(Box<RawValue>);

impl RawObject {
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Typed, straight from the text. If that fails, again through a
    /// `Value`, as before this type existed: that accepts duplicate keys
    /// (last wins) where typed parsing refuses them, and gives the same
    /// error text, so what is accepted and what is said stay as they were.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get()).or_else(|_| serde_json::from_value(self.to_value()?))
    }

    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.get())
    }
}

impl PartialEq for RawObject {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
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
    pub object: Option<RawObject>,
    #[serde(default)]
    pub old_object: Option<RawObject>,
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

/// Parses a body. The common case is one typed pass over the bytes; any
/// body that pass refuses is parsed again the way it always was (whole
/// `Value`, then typed), which classifies the error and still reads the uid
/// of a malformed request so it gets an in-band answer, not an HTTP error.
/// One difference is left, for input no apiserver sends: members nobody
/// reads are skipped unparsed, so a number beyond f64, a lone surrogate
/// escape or nesting deeper than 128 there no longer makes a body `NotJson`
/// (a patch over such an object fails its self-check, closed).
pub fn parse(body: &[u8]) -> Result<AdmissionRequest, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    match serde_json::from_str::<ObjectOnly<TypedReview<'_>>>(text) {
        Ok(ObjectOnly(review)) => review.check(),
        Err(_) => parse_slowly(text),
    }
}

/// The review for the typed pass. Only a result the slow path would give
/// too may come out of it: fields missing where the slow path reads `""`
/// default to `""`, and anything else unusual (a non-string apiVersion,
/// duplicate keys, a request that is not an object) fails the pass.
#[derive(Deserialize)]
struct TypedReview<'a> {
    #[serde(default, borrow, rename = "apiVersion")]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    request: Option<ObjectOnly<AdmissionRequest>>,
}

impl TypedReview<'_> {
    fn check(self) -> Result<AdmissionRequest, ParseError> {
        if self.api_version != API_VERSION || self.kind != KIND {
            return Err(ParseError::WrongType {
                api_version: self.api_version.into_owned(),
                kind: self.kind.into_owned(),
            });
        }
        match self.request {
            Some(ObjectOnly(request)) if !request.uid.is_empty() => Ok(request),
            _ => Err(ParseError::NoRequest),
        }
    }
}

/// A `T` only from a JSON object: derived structs also accept an array of
/// their fields in order, which the slow path refuses.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Object(PhantomData))
            .map(ObjectOnly)
    }
}

/// The original two-step parse, for bodies the typed pass refused.
fn parse_slowly(text: &str) -> Result<AdmissionRequest, ParseError> {
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

    /// The result with each object as its tree: the typed pass keeps the
    /// text as sent, the slow path a re-serialisation of its `Value`.
    fn trees(
        r: Result<AdmissionRequest, ParseError>,
    ) -> Result<(AdmissionRequest, Vec<Value>), ParseError> {
        r.map(|mut r| {
            let objects = [r.object.take(), r.old_object.take()]
                .into_iter()
                .flatten()
                .map(|o| o.to_value().unwrap())
                .collect();
            (r, objects)
        })
    }

    #[test]
    fn typed_pass_agrees_with_the_slow_path() {
        let ok = String::from_utf8(review(request())).unwrap();
        let req = serde_json::to_string(&request()).unwrap();
        let bodies = [
            ok.clone(),
            // Escaped, duplicated (last wins) and odd members.
            ok.replace(
                r#""apiVersion":"admission.k8s.io/v1""#,
                r#""apiVersion":"admission.k8s.io\/v1""#,
            ),
            ok.replace(r#""uid":"705ab4f5"#, r#""uid":"first","uid":"705ab4f5"#),
            ok.replace(
                r#""generateName":"web-""#,
                r#""generateName":"a","generateName":"web-""#,
            ),
            format!(
                r#"{{"apiVersion":"{API_VERSION}","kind":"{KIND}","request":{req},"request":{{}}}}"#
            ),
            format!(r#"{{"apiVersion":5,"kind":"{KIND}","request":{req}}}"#),
            format!(r#"{{"kind":"{KIND}","request":{req}}}"#),
            format!(r#"{{"apiVersion":"{API_VERSION}","kind":"{KIND}","request":null}}"#),
            format!(r#"{{"apiVersion":"{API_VERSION}","kind":"{KIND}","request":[{req}]}}"#),
            // A struct's fields as an array: derived types take it, the slow path did not.
            format!(r#"["{API_VERSION}","{KIND}",{req}]"#),
            format!(r#"{{"apiVersion":"{API_VERSION}","kind":"{KIND}","request":["u1"]}}"#),
            ok.replace(
                r#""uid":"705ab4f5-6393-11e8-b7cc-42010a800002""#,
                r#""uid":"""#,
            ),
            ok.replace(
                r#""uid":"705ab4f5-6393-11e8-b7cc-42010a800002""#,
                r#""uid":7"#,
            ),
            ok.replace(r#""operation":"CREATE""#, r#""operation":["CREATE"]"#),
            ok.replace(
                r#""operation":"CREATE""#,
                r#""operation":"CREATE","operation":"UPDATE""#,
            ),
            ok.replace(
                r#""kind":{"group":"","version":"v1","kind":"Pod"}"#,
                r#""kind":["","v1","Pod"]"#,
            ),
            format!("{ok} x"),
            "[]".into(),
            "\"x\"".into(),
        ];
        let typed = |b: &str| serde_json::from_str::<ObjectOnly<TypedReview<'_>>>(b).is_ok();
        assert!(typed(&ok), "what the apiserver sends takes the typed pass");
        for body in bodies {
            assert_eq!(
                trees(parse(body.as_bytes())),
                trees(parse_slowly(&body)),
                "{body}"
            );
        }
    }

    #[test]
    fn raw_objects_parse_as_values_did() {
        let raw = |s: &str| RawObject(RawValue::from_string(s.into()).unwrap());
        // Typed parsing refuses the duplicate; the fallback takes the last.
        let dup = raw(r#"{"version":"v2","version":"v1","kind":"Pod"}"#);
        assert_eq!(dup.parse::<GroupVersionKind>().unwrap().version, "v1");
        let bad = r#"{"version":"v1","kind":5}"#;
        assert_eq!(
            raw(bad)
                .parse::<GroupVersionKind>()
                .unwrap_err()
                .to_string(),
            serde_json::from_str::<Value>(bad)
                .and_then(serde_json::from_value::<GroupVersionKind>)
                .unwrap_err()
                .to_string(),
            "the error text of the Value path, without a position"
        );
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
