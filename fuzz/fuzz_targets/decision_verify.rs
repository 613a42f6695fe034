//! Arbitrary strings into `ParsedToken::parse`, `TrustSet::authenticate`
//! and `TrustSet::verify` with a fixed trusted key. No input may verify:
//! nobody but the fixed key's holder can sign, and the seed token is
//! checked separately by `decision_mutate`, so anything that verifies
//! here is a forgery unless it is that exact signed token.

#![no_main]

use std::sync::OnceLock;

use kubefence_shared::decision::{Freshness, NodeView};
use kubefence_shared::envelope::{ParsedToken, TrustSet};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    trust: TrustSet,
    original: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        trust: kubefence_fuzz::trust(),
        original: kubefence_fuzz::signer().sign(&kubefence_fuzz::claims()),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    if let Ok(parsed) = ParsedToken::parse(token) {
        let _ = parsed.kid();
        let _ = parsed.unverified_claims();
    }
    let view = NodeView {
        namespace: "team-a",
        pod_name: "web-0",
        handler: "nono-runc",
    };
    let authenticated = f.trust.authenticate(token);
    let verified = f
        .trust
        .verify(token, &view, &Freshness::at(kubefence_fuzz::NOW));
    if authenticated.is_ok() || verified.is_ok() {
        assert_eq!(
            token, f.original,
            "a token other than the signed one verified"
        );
    }
    if let Err(e) = &verified {
        let _ = e.reason();
        let _ = e.to_string();
    }
});
