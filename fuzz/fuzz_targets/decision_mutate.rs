//! Structure-aware: the fuzz input is a list of edits applied to a valid
//! signed token (byte flips, inserts, deletes, splices of its parts and
//! re-encodings of header/payload JSON). Whatever comes out must fail to
//! verify unless it is byte-for-byte the original token.

#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kubefence_shared::decision::{Freshness, NodeView};
use kubefence_shared::envelope::TrustSet;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    trust: TrustSet,
    original: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let f = Fixture {
            trust: kubefence_fuzz::trust(),
            original: kubefence_fuzz::signer().sign(&kubefence_fuzz::claims()),
        };
        assert!(
            f.trust.authenticate(&f.original).is_ok(),
            "the seed verifies"
        );
        f
    })
}

/// Re-encodes part `idx` (0 header, 1 payload) after an edit of its JSON.
fn edit_part(token: &str, idx: usize, at: usize, byte: u8) -> Option<String> {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    if parts.len() != 3 {
        return None;
    }
    let mut json = URL_SAFE_NO_PAD.decode(&parts[idx]).ok()?;
    if json.is_empty() {
        return None;
    }
    let at = at % json.len();
    json[at] = byte;
    parts[idx] = URL_SAFE_NO_PAD.encode(json);
    Some(parts.join("."))
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let mut token = f.original.clone().into_bytes();
    for op in data.chunks(4) {
        let [kind, a, b, c] = [
            op[0],
            *op.get(1).unwrap_or(&0),
            *op.get(2).unwrap_or(&0),
            *op.get(3).unwrap_or(&0),
        ];
        let pos = (usize::from(a) << 8 | usize::from(b)) % (token.len() + 1);
        match kind % 8 {
            0 if pos < token.len() => token[pos] = c,
            1 if pos < token.len() => token[pos] ^= 1 << (c % 8),
            2 => token.insert(pos, c),
            3 if pos < token.len() => {
                token.remove(pos);
            }
            4 => token.truncate(pos),
            5 => {
                // Splice a copy of another range of the token at pos.
                let from = usize::from(c) % (token.len() + 1);
                let chunk: Vec<u8> = token[from..]
                    .iter()
                    .take(usize::from(b % 32))
                    .copied()
                    .collect();
                token.splice(pos..pos, chunk);
            }
            6 | 7 => {
                let Ok(s) = std::str::from_utf8(&token) else {
                    continue;
                };
                if let Some(t) = edit_part(s, usize::from(kind % 2), pos, c) {
                    token = t.into_bytes();
                }
            }
            _ => {}
        }
    }
    let Ok(token) = String::from_utf8(token) else {
        return;
    };
    let view = NodeView {
        namespace: "team-a",
        pod_name: "web-0",
        handler: "nono-runc",
    };
    let fresh = Freshness::at(kubefence_fuzz::NOW);
    if f.trust.authenticate(&token).is_ok() || f.trust.verify(&token, &view, &fresh).is_ok() {
        assert_eq!(token, f.original, "a modified token verified");
    }
});
