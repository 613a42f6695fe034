//! Sign, parse and verify a realistic decision (a Deployment pod with an
//! init container and two containers, as the webhook signs it).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use kubefence_shared::decision::{Claims, Freshness, NodeView, PodBinding};
use kubefence_shared::envelope::{ParsedToken, Signer, TrustSet};
use kubefence_shared::profile::ProfileName;

const NOW: i64 = 1_780_000_000;

fn claims() -> Claims {
    let p = |s: &str| ProfileName::parse(s).unwrap();
    Claims {
        ver: 1,
        namespace: "team-a".into(),
        pod: PodBinding::GenerateName("web-7f9c4-".into()),
        handler: "nono-runc".into(),
        profile: p("default"),
        containers: [
            ("migrate".to_owned(), p("default")),
            ("web".to_owned(), p("default")),
            ("sidecar".to_owned(), p("strict")),
        ]
        .into(),
        iat: NOW,
    }
}

fn bench(c: &mut Criterion) {
    let signer = Signer::generate().unwrap();
    let mut trust = TrustSet::new();
    trust.insert(signer.verifying_key());
    // A rotation set: the node trusts the old key too.
    trust.insert(Signer::generate().unwrap().verifying_key());
    let claims = claims();
    let token = signer.sign(&claims);
    let view = NodeView {
        namespace: "team-a",
        pod_name: "web-7f9c4-x2b9z",
        handler: "nono-runc",
    };
    let fresh = Freshness::at(NOW + 60);
    assert!(trust.verify(&token, &view, &fresh).is_ok());

    let mut g = c.benchmark_group("decision");
    g.bench_function("sign", |b| b.iter(|| signer.sign(black_box(&claims))));
    g.bench_function("parse", |b| {
        b.iter(|| {
            ParsedToken::parse(black_box(&token))
                .unwrap()
                .unverified_claims()
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| trust.verify(black_box(&token), &view, &fresh).unwrap())
    });
    let mut forged = token.clone().into_bytes();
    let n = forged.len();
    forged[n - 10] ^= 1;
    let forged = String::from_utf8(forged).unwrap();
    g.bench_function("verify_bad_signature", |b| {
        b.iter(|| trust.verify(black_box(&forged), &view, &fresh).unwrap_err())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
