//! Signing and verifying decisions: JWS compact serialisation with EdDSA over
//! Ed25519 (RFC 7515, RFC 8037).
//!
//! A token is `BASE64URL(header) "." BASE64URL(claims) "." BASE64URL(sig)`,
//! unpadded. The signature covers the first two segments exactly as they are
//! carried in the annotation; verification never re-serialises anything.
//! The header is `{"alg":"EdDSA","kid":<key id>,"typ":"kubefence-decision+jws"}`
//! and nothing else; the key id is the RFC 7638 JWK thumbprint of the public
//! key, so any holder of the public key can recompute it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decision::{Claims, Freshness, NodeView, PodBinding, FORMAT_VERSION};
use crate::profile::ProfileName;

/// The only algorithm accepted.
pub const ALG: &str = "EdDSA";
/// The JWS `typ` of a decision, so a token signed for anything else with the
/// same key is never taken for a decision.
pub const TYP: &str = "kubefence-decision+jws";
/// Longest token accepted, in bytes; checked before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A key id: the base64url SHA-256 JWK thumbprint (RFC 7638) of a public key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
        // Members in lexicographic order, no whitespace (RFC 7638 section 3).
        let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        KeyId(URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM Ed25519 {kind} key: {detail}")]
    Parse {
        path: PathBuf,
        kind: &'static str,
        detail: String,
    },
    #[error("no public keys found in {0}")]
    NoKeys(PathBuf),
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// The webhook's signing key with its key id.
pub struct Signer {
    key: SigningKey,
    kid: KeyId,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn from_key(key: SigningKey) -> Self {
        let kid = KeyId::of(&key.verifying_key());
        Self { key, kid }
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_key(SigningKey::from_bytes(&seed)))
    }

    /// Parses a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem(pem: &str, origin: &Path) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self::from_key)
            .map_err(|e| KeyError::Parse {
                path: origin.to_owned(),
                kind: "private",
                detail: e.to_string(),
            })
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem, path)
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The private key as PKCS#8 v1 PEM (RFC 8410, the form `openssl
    /// genpkey -algorithm ed25519` writes), for the webhook's Secret. v2 with
    /// the embedded public key is what dalek writes by default, and OpenSSL
    /// 3.0 refuses it.
    pub fn private_pem(&self) -> Result<String, KeyError> {
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(Default::default())
        .map(|z| z.to_string())
        .map_err(|e| KeyError::Parse {
            path: PathBuf::new(),
            kind: "private",
            detail: e.to_string(),
        })
    }

    /// The public key as SPKI PEM, for the nodes.
    pub fn public_pem(&self) -> Result<String, KeyError> {
        public_pem(&self.verifying_key())
    }

    /// Signs `claims` into a compact JWS token.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: ALG.into(),
            kid: self.kid.clone(),
            typ: TYP.into(),
        };
        // Serialising these plain structs cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let mut token = String::with_capacity(256);
        URL_SAFE_NO_PAD.encode_string(header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let sig = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.to_bytes(), &mut token);
        token
    }
}

/// SPKI PEM of a public key.
pub fn public_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(Default::default())
        .map_err(|e| KeyError::Parse {
            path: PathBuf::new(),
            kind: "public",
            detail: e.to_string(),
        })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    kid: KeyId,
    typ: String,
}

/// Why a decision was not accepted. Each variant has a stable reason code
/// ([`VerifyError::reason`]) used in audit records and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the decision is {0} bytes, more than the {MAX_TOKEN_LEN} allowed")]
    TooLarge(usize),
    #[error("the decision is not a JWS compact token: {0}")]
    Malformed(&'static str),
    #[error("the decision's header is invalid: {0}")]
    BadHeader(String),
    #[error("the decision uses algorithm {0:?}; only EdDSA is accepted")]
    UnsupportedAlgorithm(String),
    #[error("the decision has type {0:?}, not {TYP:?}")]
    WrongType(String),
    #[error("the decision is signed by key {0}, which this node does not trust")]
    UnknownKey(KeyId),
    #[error("the decision's signature does not verify with key {0}: it was forged or altered")]
    BadSignature(KeyId),
    #[error("the decision's claims are invalid: {0}")]
    BadClaims(String),
    #[error("the decision has format version {0}; this node understands version {FORMAT_VERSION}")]
    UnsupportedVersion(u32),
    #[error("the decision was issued for namespace {decided:?}, not {actual:?}")]
    NamespaceMismatch { decided: String, actual: String },
    #[error("the decision was issued for the pod with {decided}, not pod {actual:?}")]
    PodMismatch { decided: PodBinding, actual: String },
    #[error("the decision was issued for runtime handler {decided:?}, not {actual:?}")]
    HandlerMismatch { decided: String, actual: String },
    #[error(
        "the decision was issued {0} seconds in the future; check the clocks of webhook and node"
    )]
    IssuedInFuture(i64),
    #[error("the decision is {age} seconds old, older than the {max_age} seconds allowed")]
    Expired { age: i64, max_age: i64 },
}

impl VerifyError {
    /// A stable, machine-readable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::TooLarge(_) => "too-large",
            VerifyError::Malformed(_) => "malformed",
            VerifyError::BadHeader(_) => "bad-header",
            VerifyError::UnsupportedAlgorithm(_) => "unsupported-algorithm",
            VerifyError::WrongType(_) => "wrong-type",
            VerifyError::UnknownKey(_) => "unknown-key",
            VerifyError::BadSignature(_) => "bad-signature",
            VerifyError::BadClaims(_) => "bad-claims",
            VerifyError::UnsupportedVersion(_) => "unsupported-version",
            VerifyError::NamespaceMismatch { .. } => "namespace-mismatch",
            VerifyError::PodMismatch { .. } => "pod-mismatch",
            VerifyError::HandlerMismatch { .. } => "handler-mismatch",
            VerifyError::IssuedInFuture(_) => "issued-in-future",
            VerifyError::Expired { .. } => "expired",
        }
    }
}

/// A token split into its parts and its header and claims decoded, but not
/// verified: nothing in it may be trusted. Useful to show operators what a
/// token says; only [`TrustSet::verify`] yields a [`VerifiedDecision`].
#[derive(Debug, Clone)]
pub struct ParsedToken<'a> {
    signing_input: &'a str,
    signature: Signature,
    kid: KeyId,
    claims_json: Vec<u8>,
}

impl<'a> ParsedToken<'a> {
    pub fn parse(token: &'a str) -> Result<Self, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::TooLarge(token.len()));
        }
        let (signing_input, sig_b64) = token
            .rsplit_once('.')
            .ok_or(VerifyError::Malformed("expected three '.'-separated parts"))?;
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or(VerifyError::Malformed("expected three '.'-separated parts"))?;
        if payload_b64.contains('.') {
            return Err(VerifyError::Malformed("expected three '.'-separated parts"));
        }
        let header = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| VerifyError::Malformed("header is not unpadded base64url"))?;
        let claims_json = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| VerifyError::Malformed("payload is not unpadded base64url"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| VerifyError::Malformed("signature is not unpadded base64url"))?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|e| VerifyError::BadHeader(e.to_string()))?;
        if header.alg != ALG {
            return Err(VerifyError::UnsupportedAlgorithm(header.alg));
        }
        if header.typ != TYP {
            return Err(VerifyError::WrongType(header.typ));
        }
        let signature = Signature::from_slice(&sig)
            .map_err(|_| VerifyError::Malformed("signature is not 64 bytes"))?;
        Ok(Self {
            signing_input,
            signature,
            kid: header.kid,
            claims_json,
        })
    }

    /// The key id the token claims to be signed with.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The claims as the token states them, unauthenticated.
    pub fn unverified_claims(&self) -> Result<Claims, VerifyError> {
        serde_json::from_slice(&self.claims_json).map_err(|e| VerifyError::BadClaims(e.to_string()))
    }
}

/// A decision whose signature verified with a trusted key and whose binding
/// matches what the node sees. Only [`TrustSet::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDecision {
    claims: Claims,
    kid: KeyId,
}

impl VerifiedDecision {
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The profile for the container called `name`.
    pub fn profile_for(&self, container: &str) -> &ProfileName {
        self.claims.profile_for(container)
    }
}

/// The public keys a verifier trusts, by key id. Several at once allow key
/// rotation without downtime.
#[derive(Debug, Clone, Default)]
pub struct TrustSet {
    keys: BTreeMap<KeyId, VerifyingKey>,
}

impl TrustSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key: VerifyingKey) -> KeyId {
        let kid = KeyId::of(&key);
        self.keys.insert(kid.clone(), key);
        kid
    }

    /// Adds every key of `other` (for example a rotation set loaded from
    /// another path).
    pub fn extend(&mut self, other: TrustSet) {
        self.keys.extend(other.keys);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    /// Adds every SPKI PEM public key in `pem` (several may be concatenated).
    pub fn add_pem(&mut self, pem: &str, origin: &Path) -> Result<usize, KeyError> {
        let mut added = 0;
        for block in pem_blocks(pem, "PUBLIC KEY") {
            let key = VerifyingKey::from_public_key_pem(block).map_err(|e| KeyError::Parse {
                path: origin.to_owned(),
                kind: "public",
                detail: e.to_string(),
            })?;
            self.insert(key);
            added += 1;
        }
        if added == 0 {
            return Err(KeyError::Parse {
                path: origin.to_owned(),
                kind: "public",
                detail: "no PUBLIC KEY block".into(),
            });
        }
        Ok(added)
    }

    /// Loads public keys from a file, or from every `*.pem` / `*.pub` file of
    /// a directory (a mounted ConfigMap). Fails if none is found, so a node
    /// never starts with an empty trust set. A trust directory holds public
    /// keys only: a private key in it is an error, not silently skipped.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let mut set = Self::new();
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| KeyError::Read {
                path: p.to_owned(),
                source,
            })
        };
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| KeyError::Read {
                path: path.to_owned(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    // Skips the `..data` machinery of Secret/ConfigMap volumes.
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    !name.starts_with('.')
                        && (name.ends_with(".pem") || name.ends_with(".pub"))
                        && p.is_file()
                })
                .collect();
            files.sort();
            for file in files {
                set.add_pem(&read(&file)?, &file)?;
            }
        } else {
            set.add_pem(&read(path)?, path)?;
        }
        if set.is_empty() {
            return Err(KeyError::NoKeys(path.to_owned()));
        }
        Ok(set)
    }

    /// Checks the signature with a trusted key, then the claims against what
    /// the node sees and the freshness policy.
    pub fn verify(
        &self,
        token: &str,
        view: &NodeView<'_>,
        fresh: &Freshness,
    ) -> Result<VerifiedDecision, VerifyError> {
        let verified = self.authenticate(token)?;
        check_binding(&verified.claims, view, fresh)?;
        Ok(verified)
    }

    /// Checks only the signature and the claims format, not the binding.
    /// The webhook uses it on its own earlier decisions.
    pub fn authenticate(&self, token: &str) -> Result<VerifiedDecision, VerifyError> {
        let parsed = ParsedToken::parse(token)?;
        let key = self
            .keys
            .get(&parsed.kid)
            .ok_or_else(|| VerifyError::UnknownKey(parsed.kid.clone()))?;
        key.verify_strict(parsed.signing_input.as_bytes(), &parsed.signature)
            .map_err(|_| VerifyError::BadSignature(parsed.kid.clone()))?;
        let claims = parsed.unverified_claims()?;
        if claims.ver != FORMAT_VERSION {
            return Err(VerifyError::UnsupportedVersion(claims.ver));
        }
        Ok(VerifiedDecision {
            claims,
            kid: parsed.kid,
        })
    }
}

fn check_binding(
    claims: &Claims,
    view: &NodeView<'_>,
    fresh: &Freshness,
) -> Result<(), VerifyError> {
    if claims.namespace != view.namespace {
        return Err(VerifyError::NamespaceMismatch {
            decided: claims.namespace.clone(),
            actual: view.namespace.to_owned(),
        });
    }
    if !claims.pod.matches(view.pod_name) {
        return Err(VerifyError::PodMismatch {
            decided: claims.pod.clone(),
            actual: view.pod_name.to_owned(),
        });
    }
    if claims.handler != view.handler {
        return Err(VerifyError::HandlerMismatch {
            decided: claims.handler.clone(),
            actual: view.handler.to_owned(),
        });
    }
    let ahead = claims.iat.saturating_sub(fresh.now);
    if ahead > fresh.max_skew {
        return Err(VerifyError::IssuedInFuture(ahead));
    }
    if let Some(max_age) = fresh.max_age {
        let age = fresh.now.saturating_sub(claims.iat);
        if age > max_age {
            return Err(VerifyError::Expired { age, max_age });
        }
    }
    Ok(())
}

/// The PEM blocks labelled `label` in `text`, each with its armour lines.
fn pem_blocks<'a>(text: &'a str, label: &str) -> Vec<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start..];
        match after.find(&end) {
            Some(stop) => {
                out.push(&after[..stop + end.len()]);
                rest = &after[stop + end.len()..];
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::PodBinding;

    fn signer(seed: u8) -> Signer {
        Signer::from_key(SigningKey::from_bytes(&[seed; 32]))
    }

    fn claims() -> Claims {
        Claims {
            ver: FORMAT_VERSION,
            namespace: "team-a".into(),
            pod: PodBinding::GenerateName("web-7f9c4-".into()),
            handler: "nono-runc".into(),
            profile: ProfileName::parse("default").unwrap(),
            containers: [("app".to_string(), ProfileName::parse("strict").unwrap())].into(),
            iat: 1_700_000_000,
        }
    }

    fn view() -> NodeView<'static> {
        NodeView {
            namespace: "team-a",
            pod_name: "web-7f9c4-x2b9z",
            handler: "nono-runc",
        }
    }

    fn trust(signers: &[&Signer]) -> TrustSet {
        let mut t = TrustSet::new();
        for s in signers {
            t.insert(s.verifying_key());
        }
        t
    }

    const NOW: Freshness = Freshness {
        now: 1_700_000_100,
        max_skew: 300,
        max_age: None,
    };

    #[test]
    fn round_trip() {
        let s = signer(1);
        let token = s.sign(&claims());
        let v = trust(&[&s]).verify(&token, &view(), &NOW).unwrap();
        assert_eq!(v.claims(), &claims());
        assert_eq!(v.kid(), s.kid());
        assert_eq!(v.profile_for("app").as_str(), "strict");
        assert_eq!(v.profile_for("sidecar").as_str(), "default");
    }

    #[test]
    fn header_is_the_documented_jws_header() {
        let s = signer(1);
        let token = s.sign(&claims());
        let header = token.split('.').next().unwrap();
        let header = String::from_utf8(URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(
            header,
            format!(
                r#"{{"alg":"EdDSA","kid":"{}","typ":"kubefence-decision+jws"}}"#,
                s.kid()
            )
        );
    }

    #[test]
    fn key_id_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.1/A.3: this public key has this thumbprint.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            KeyId::of(&key).as_str(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc8037_signature_verifies() {
        // RFC 8037 appendix A.4: the example JWS signed with the A.1 key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = URL_SAFE_NO_PAD
            .decode("hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
            .unwrap();
        let sig = Signature::from_slice(&sig).unwrap();
        assert!(key.verify_strict(input.as_bytes(), &sig).is_ok());
    }

    #[test]
    fn every_altered_byte_fails() {
        let s = signer(1);
        let t = trust(&[&s]);
        let token = s.sign(&claims());
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'_', b'.', b'0'] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut altered = bytes.to_vec();
                altered[i] = replacement;
                let altered = String::from_utf8(altered).unwrap();
                let result = t.verify(&altered, &view(), &NOW);
                assert!(result.is_err(), "byte {i} -> {replacement} verified");
            }
        }
    }

    #[test]
    fn forged_with_another_key_is_unknown_or_bad_signature() {
        let trusted = signer(1);
        let attacker = signer(2);
        let t = trust(&[&trusted]);
        let forged = attacker.sign(&claims());
        assert_eq!(
            t.verify(&forged, &view(), &NOW).unwrap_err(),
            VerifyError::UnknownKey(attacker.kid().clone())
        );
        // The attacker claims the trusted kid but signs with its own key.
        let header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"EdDSA","kid":"{}","typ":"{TYP}"}}"#,
            trusted.kid()
        ));
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
        let input = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(attacker.key.sign(input.as_bytes()).to_bytes());
        let err = t
            .verify(&format!("{input}.{sig}"), &view(), &NOW)
            .unwrap_err();
        assert_eq!(err, VerifyError::BadSignature(trusted.kid().clone()));
        assert_eq!(err.reason(), "bad-signature");
    }

    #[test]
    fn rotation_accepts_any_trusted_key() {
        let old = signer(1);
        let new = signer(2);
        let t = trust(&[&old, &new]);
        assert!(t.verify(&old.sign(&claims()), &view(), &NOW).is_ok());
        assert!(t.verify(&new.sign(&claims()), &view(), &NOW).is_ok());
    }

    #[test]
    fn binding_failures_have_specific_reasons() {
        let s = signer(1);
        let t = trust(&[&s]);
        let token = s.sign(&claims());
        let cases = [
            (
                NodeView {
                    namespace: "team-b",
                    ..view()
                },
                "namespace-mismatch",
            ),
            (
                NodeView {
                    pod_name: "api-7f9c4-x2b9z",
                    ..view()
                },
                "pod-mismatch",
            ),
            (
                NodeView {
                    handler: "runc",
                    ..view()
                },
                "handler-mismatch",
            ),
        ];
        for (v, reason) in cases {
            assert_eq!(t.verify(&token, &v, &NOW).unwrap_err().reason(), reason);
        }
    }

    #[test]
    fn freshness() {
        let s = signer(1);
        let t = trust(&[&s]);
        let token = s.sign(&claims());
        let early = Freshness {
            now: 1_700_000_000 - 301,
            ..NOW
        };
        assert_eq!(
            t.verify(&token, &view(), &early).unwrap_err().reason(),
            "issued-in-future"
        );
        let strict = Freshness {
            max_age: Some(50),
            ..NOW
        };
        assert_eq!(
            t.verify(&token, &view(), &strict).unwrap_err(),
            VerifyError::Expired {
                age: 100,
                max_age: 50
            }
        );
        let lax = Freshness {
            max_age: Some(100),
            ..NOW
        };
        assert!(t.verify(&token, &view(), &lax).is_ok());
    }

    fn token_with(header: &str, payload: &str, s: &Signer) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = URL_SAFE_NO_PAD.encode(s.key.sign(input.as_bytes()).to_bytes());
        format!("{input}.{sig}")
    }

    #[test]
    fn header_and_claims_are_checked() {
        let s = signer(1);
        let t = trust(&[&s]);
        let good_payload = serde_json::to_string(&claims()).unwrap();
        let kid = s.kid();
        let cases = [
            (
                format!(r#"{{"alg":"none","kid":"{kid}","typ":"{TYP}"}}"#),
                good_payload.clone(),
                "unsupported-algorithm",
            ),
            (
                format!(r#"{{"alg":"HS256","kid":"{kid}","typ":"{TYP}"}}"#),
                good_payload.clone(),
                "unsupported-algorithm",
            ),
            (
                format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"JWT"}}"#),
                good_payload.clone(),
                "wrong-type",
            ),
            (
                format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"{TYP}","crit":["x"]}}"#),
                good_payload.clone(),
                "bad-header",
            ),
            (
                format!(r#"{{"alg":"EdDSA","typ":"{TYP}"}}"#),
                good_payload.clone(),
                "bad-header",
            ),
            (
                format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"{TYP}"}}"#),
                good_payload.replace("\"ver\":1", "\"ver\":2"),
                "unsupported-version",
            ),
            (
                format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"{TYP}"}}"#),
                good_payload.replace("\"default\"", "\"-rf\""),
                "bad-claims",
            ),
            (
                format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"{TYP}"}}"#),
                good_payload.replace("\"iat\"", "\"extra\":1,\"iat\""),
                "bad-claims",
            ),
            (
                format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"{TYP}"}}"#),
                "[]".into(),
                "bad-claims",
            ),
        ];
        for (h, p, reason) in cases {
            let err = t
                .verify(&token_with(&h, &p, &s), &view(), &NOW)
                .unwrap_err();
            assert_eq!(err.reason(), reason, "header {h} payload {p}: {err}");
        }
    }

    #[test]
    fn malformed_tokens() {
        let t = trust(&[&signer(1)]);
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "e30.e30.AAAA",
            "e30=.e30.AAAA",
        ] {
            let err = t.verify(bad, &view(), &NOW).unwrap_err();
            assert!(
                matches!(err, VerifyError::Malformed(_) | VerifyError::BadHeader(_)),
                "{bad:?}: {err:?}"
            );
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            t.verify(&huge, &view(), &NOW).unwrap_err().reason(),
            "too-large"
        );
    }

    #[test]
    fn openssl_keys_load() {
        // `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`.
        let private = "-----BEGIN PRIVATE KEY-----\n\
            MC4CAQAwBQYDK2VwBCIEIF8KR3D5e6iTShv87LugT8sR/7wtvvlTI+WsQyLYNPkq\n\
            -----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\n\
            MCowBQYDK2VwAyEAT9oznGBNWNmwtmj0Pyzq/yr+/kw6bW++z5RJykVCOmk=\n\
            -----END PUBLIC KEY-----\n";
        let s = Signer::from_pem(private, Path::new("openssl")).unwrap();
        assert_eq!(s.public_pem().unwrap(), public);
        assert_eq!(s.private_pem().unwrap(), private);
        let mut t = TrustSet::new();
        t.add_pem(public, Path::new("openssl")).unwrap();
        assert!(t.verify(&s.sign(&claims()), &view(), &NOW).is_ok());
    }

    #[test]
    fn pem_round_trip_and_trust_dir() {
        let s = signer(7);
        let private = s.private_pem().unwrap();
        let again = Signer::from_pem(&private, Path::new("mem")).unwrap();
        assert_eq!(again.kid(), s.kid());
        // PKCS#8 v1: version 0 and no public key, 48 bytes of DER.
        let der = base64::engine::general_purpose::STANDARD
            .decode(
                private
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        assert_eq!(der.len(), 48, "{private}");
        assert_eq!(&der[..5], &[0x30, 0x2e, 0x02, 0x01, 0x00]);

        let dir = std::env::temp_dir().join(format!("kf-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.pem"), s.public_pem().unwrap()).unwrap();
        std::fs::write(dir.join("b.pub"), signer(8).public_pem().unwrap()).unwrap();
        std::fs::write(dir.join("..data"), "ignored").unwrap();
        std::fs::write(dir.join("README"), "ignored").unwrap();
        let mut set = TrustSet::load(&dir).unwrap();
        assert_eq!(set.len(), 2);
        let mut third = TrustSet::new();
        third.insert(signer(9).verifying_key());
        set.extend(third);
        assert_eq!(set.len(), 3);
        std::fs::write(dir.join("c.pem"), "garbage").unwrap();
        assert!(matches!(TrustSet::load(&dir), Err(KeyError::Parse { .. })));
        std::fs::remove_dir_all(&dir).unwrap();

        let empty = std::env::temp_dir().join(format!("kf-nokeys-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        assert!(matches!(TrustSet::load(&empty), Err(KeyError::NoKeys(_))));
        std::fs::remove_dir_all(&empty).unwrap();
    }
}
