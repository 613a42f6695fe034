//! The node's hot path for one CreateContainer: the ttrpc message through
//! the mux (frame in, reassembled message out of the conn), its protobuf
//! decode, and the pure decision (`decide`: verify the signed decision,
//! build the nono wrap) with the adjustment it becomes.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kubefence_nri::decide::{ContainerView, OnInvalid, Policy, RuntimeSupport, Settings};
use kubefence_nri::mux::{frame_message, Limits, Mux, PLUGIN_CONN, RUNTIME_CONN};
use kubefence_nri::nono::NonoLayout;
use kubefence_nri::plugin::{container_view, pod_view, to_adjustment};
use kubefence_nri::proto::api;
use kubefence_shared::decision::{Claims, PodBinding};
use kubefence_shared::envelope::{Signer, TrustSet};
use kubefence_shared::keys;
use kubefence_shared::profile::{Catalog, CatalogEntry, ProfileName};
use protobuf::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOW: i64 = 1_780_000_000;

fn profile(name: &str) -> ProfileName {
    ProfileName::parse(name).unwrap()
}

fn policy(signer: &Signer) -> Policy {
    let mut trust = TrustSet::new();
    trust.insert(signer.verifying_key());
    let entry = || CatalogEntry {
        description: String::new(),
    };
    Policy {
        settings: Settings {
            sandbox_handlers: vec!["nono-runc".into()],
            on_invalid: OnInvalid::Reject,
            max_skew: 300,
            max_age: None,
            layout: NonoLayout::new("/opt/kubefence", "/nono").unwrap(),
        },
        trust,
        catalog: Catalog {
            strictest: profile("strict"),
            profiles: [(profile("default"), entry()), (profile("strict"), entry())].into(),
        },
    }
}

/// A CreateContainerRequest as containerd sends it for container `web` of a
/// Deployment pod the webhook admitted.
fn request(signer: &Signer) -> api::CreateContainerRequest {
    let token = signer.sign(&Claims {
        ver: 1,
        namespace: "team-a".into(),
        pod: PodBinding::GenerateName("web-7f9c4-".into()),
        handler: "nono-runc".into(),
        profile: profile("default"),
        containers: [
            ("migrate".to_owned(), profile("default")),
            ("web".to_owned(), profile("default")),
        ]
        .into(),
        iat: NOW,
    });
    let mut pod = api::PodSandbox::new();
    pod.id = "8d3f0c2b9a71e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9".into();
    pod.name = "web-7f9c4-x2b9z".into();
    pod.uid = "3f1c2d4e-0000-4000-8000-000000000001".into();
    pod.namespace = "team-a".into();
    pod.runtime_handler = "nono-runc".into();
    pod.annotations = HashMap::from([
        (keys::DECISION.to_owned(), token),
        ("nono.sh/profile".to_owned(), "default".to_owned()),
        (
            "required-plugins.noderesource.dev".to_owned(),
            r#"["kubefence"]"#.to_owned(),
        ),
        ("kubernetes.io/config.source".to_owned(), "api".to_owned()),
        (
            "kubernetes.io/config.seen".to_owned(),
            "2026-05-28T12:00:00.000000000Z".to_owned(),
        ),
    ]);
    pod.labels = HashMap::from([
        ("app".to_owned(), "web".to_owned()),
        ("pod-template-hash".to_owned(), "7f9c4".to_owned()),
    ]);
    let mut c = api::Container::new();
    c.id = "c0ffee00d15ea5e0b16b00b5aa55aa55c0ffee00d15ea5e0b16b00b5aa55aa55".into();
    c.pod_sandbox_id = pod.id.clone();
    c.name = "web".into();
    c.args = vec![
        "/usr/local/bin/web".into(),
        "--listen=:8080".into(),
        "--log-format=json".into(),
    ];
    c.env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        "HOSTNAME=web-7f9c4-x2b9z".into(),
        "KUBERNETES_SERVICE_HOST=10.96.0.1".into(),
        "KUBERNETES_SERVICE_PORT=443".into(),
        "KUBERNETES_PORT=tcp://10.96.0.1:443".into(),
        "WEB_SERVICE_HOST=10.96.12.7".into(),
    ];
    let mut req = api::CreateContainerRequest::new();
    req.pod = protobuf::MessageField::some(pod);
    req.container = protobuf::MessageField::some(c);
    req
}

/// The request as a ttrpc message (header + `ttrpc.Request`).
fn ttrpc_message(payload: Vec<u8>) -> Vec<u8> {
    let mut req = ttrpc::Request::new();
    req.service = "nri.pkg.api.v1alpha1.Plugin".into();
    req.method = "CreateContainer".into();
    req.payload = payload;
    req.timeout_nano = 2_000_000_000;
    let body = req.write_to_bytes().unwrap();
    let mut msg = (body.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&7u32.to_be_bytes());
    msg.extend_from_slice(&[ttrpc::proto::MESSAGE_TYPE_REQUEST, 0]);
    msg.extend_from_slice(&body);
    msg
}

fn bench(c: &mut Criterion) {
    let signer = Signer::generate().unwrap();
    let policy = policy(&signer);
    let req = request(&signer);
    let payload = req.write_to_bytes().unwrap();
    let msg = ttrpc_message(payload.clone());
    let support = RuntimeSupport {
        args: true,
        description: "containerd v2.2.1 (NRI v0.12.2)".into(),
    };
    let decided = policy.decide(
        &pod_view(&req.pod),
        &container_view(&req.container),
        &support,
        NOW + 5,
    );
    assert!(
        matches!(decided, kubefence_nri::decide::Decision::Adjust(_)),
        "{decided:?}"
    );

    let mut g = c.benchmark_group("nri");
    g.throughput(Throughput::Elements(1));

    // The mux: one frame in on the trunk, the whole message out of conn 1.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, max_payload) in [("mux_one_frame", usize::MAX), ("mux_4k_frames", 4088)] {
        let frames = frame_message(PLUGIN_CONN, &msg, max_payload);
        let (mut peer, mut c1, _mux) = rt.block_on(async {
            let (peer, trunk) = tokio::io::duplex(1 << 20);
            let mut mux = Mux::start(trunk, &[PLUGIN_CONN, RUNTIME_CONN], Limits::default());
            let c1 = mux.take(PLUGIN_CONN).unwrap();
            (peer, c1, mux)
        });
        let mut out = vec![0u8; msg.len()];
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    peer.write_all(black_box(&frames)).await.unwrap();
                    c1.read_exact(&mut out).await.unwrap();
                })
            })
        });
        assert_eq!(out, msg);
    }

    g.bench_function("ttrpc_and_protobuf_decode", |b| {
        b.iter(|| {
            let m = black_box(&msg);
            let r = ttrpc::Request::parse_from_bytes(&m[10..]).unwrap();
            api::CreateContainerRequest::parse_from_bytes(&r.payload).unwrap()
        })
    });
    g.bench_function("protobuf_decode", |b| {
        b.iter(|| api::CreateContainerRequest::parse_from_bytes(black_box(&payload)).unwrap())
    });
    g.bench_function("decide", |b| {
        b.iter(|| {
            let d = policy.decide(
                &pod_view(&req.pod),
                &container_view(&req.container),
                &support,
                NOW + 5,
            );
            match d {
                kubefence_nri::decide::Decision::Adjust(w) => to_adjustment(&w),
                other => panic!("{other:?}"),
            }
        })
    });
    let unsandboxed = ContainerView {
        name: "web",
        args: &req.container.args,
        env: &req.container.env,
    };
    let mut runc_pod = req.pod.clone().unwrap();
    runc_pod.runtime_handler = "runc".into();
    g.bench_function("decide_skip_runc", |b| {
        b.iter(|| policy.decide(&pod_view(black_box(&runc_pod)), &unsandboxed, &support, NOW))
    });
    g.bench_function("end_to_end_decode_decide_encode", |b| {
        b.iter(|| {
            let r = ttrpc::Request::parse_from_bytes(&black_box(&msg)[10..]).unwrap();
            let req = api::CreateContainerRequest::parse_from_bytes(&r.payload).unwrap();
            let d = policy.decide(
                &pod_view(&req.pod),
                &container_view(&req.container),
                &support,
                NOW + 5,
            );
            let mut rsp = api::CreateContainerResponse::new();
            if let kubefence_nri::decide::Decision::Adjust(w) = d {
                rsp.adjust = protobuf::MessageField::some(to_adjustment(&w));
            }
            rsp.write_to_bytes().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
