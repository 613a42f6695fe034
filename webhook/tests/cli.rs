//! The operator commands of the binary: keygen, decode, verify.

use std::process::Command;

use kubefence_shared::decision::{unix_now, Claims, PodBinding, FORMAT_VERSION};
use kubefence_shared::envelope::Signer;
use kubefence_shared::profile::ProfileName;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubefence-webhook"))
}

#[test]
fn keygen_then_verify_as_the_node_does() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["keygen", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let signing = std::fs::read_to_string(dir.path().join("decision-signing.pem")).unwrap();
    let signer = Signer::from_pem(&signing, dir.path()).unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(signer.kid().as_str()), "{stdout}");

    let token = signer.sign(&Claims {
        ver: FORMAT_VERSION,
        namespace: "team-a".into(),
        pod: PodBinding::GenerateName("web-7f9c4-".into()),
        handler: "nono-runc".into(),
        profile: ProfileName::parse("default").unwrap(),
        containers: Default::default(),
        iat: unix_now(),
    });
    let verify = |ns: &str, pod: &str, token: &str| {
        bin()
            .args(["verify", "--public-keys"])
            .arg(dir.path().join("decision-public.pem"))
            .args([
                "--namespace",
                ns,
                "--pod",
                pod,
                "--handler",
                "nono-runc",
                token,
            ])
            .output()
            .unwrap()
    };
    let ok = verify("team-a", "web-7f9c4-x2b9z", &token);
    assert!(ok.status.success(), "{ok:?}");
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["claims"]["namespace"], "team-a");

    let moved = verify("team-b", "web-7f9c4-x2b9z", &token);
    assert_eq!(moved.status.code(), Some(1));
    let err = String::from_utf8(moved.stderr).unwrap();
    assert!(err.contains("namespace-mismatch"), "{err}");

    let mut altered = token.clone().into_bytes();
    altered[token.len() / 2] ^= 1;
    let altered = String::from_utf8(altered).unwrap();
    let bad = verify("team-a", "web-7f9c4-x2b9z", &altered);
    assert_eq!(bad.status.code(), Some(1));

    let decoded = bin().args(["decode", &token]).output().unwrap();
    assert!(decoded.status.success());
    let json: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["claims"]["pod"]["generateName"], "web-7f9c4-");
}
