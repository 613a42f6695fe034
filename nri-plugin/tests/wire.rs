//! The plugin against the runtime-side test double over a real unix socket.

mod common;

use std::time::Duration;

use common::*;
use kubefence_nri::connection::{self, ConnectOptions};
use kubefence_nri::decide::OnInvalid;
use kubefence_nri::plugin::FIELD_ARGS;
use kubefence_nri::proto::api;
use kubefence_shared::envelope::Signer;
use tokio::sync::oneshot;

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("plugin did not stop")
            .unwrap();
    }
}

fn start(rt: &FakeRuntime, signer: &Signer, mode: OnInvalid) -> Running {
    let core = core(signer, mode);
    let mut opts = ConnectOptions::new(&rt.socket);
    opts.backoff_initial = Duration::from_millis(20);
    opts.backoff_max = Duration::from_millis(200);
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(connection::run(core, opts, async {
        let _ = rx.await;
    }));
    Running {
        stop: Some(tx),
        task,
    }
}

#[tokio::test]
async fn registers_with_name_and_index_and_configures_per_nri_version() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let plugin = start(&rt, &signer, OnInvalid::Reject);
    // Hold the RegisterPlugin reply until Configure is answered: a plugin
    // that waited for the reply before serving would deadlock here.
    let conn = rt.accept(true).await;
    assert_eq!(conn.registration.plugin_name, "kubefence");
    assert_eq!(conn.registration.plugin_idx, "10");
    assert_eq!(conn.registration.NRI_version, "v0.12.2");
    let rsp = conn
        .configure("containerd", "v2.3.0", "v0.12.2")
        .await
        .unwrap();
    assert_eq!(rsp.events, 0x8 | 0x2000);
    // Configure may come again on a new connection; here an NRI v0.8 runtime
    // (containerd 2.1, no NRI_version) must not get bit 14.
    conn.close().await;
    let conn = rt.accept(false).await;
    let rsp = conn.configure("containerd", "v2.1.3", "").await.unwrap();
    assert_eq!(rsp.events, 0x8);
    conn.close().await;
    plugin.stop().await;
}

#[tokio::test]
async fn split_synchronize_is_collected() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let plugin = start(&rt, &signer, OnInvalid::Reject);
    let conn = rt.accept(false).await;
    conn.configure("containerd", "v2.2.1", "").await.unwrap();
    let pods: Vec<_> = (0..5)
        .map(|i| pod(&format!("ns-{i}"), "nono-runc", None))
        .collect();
    let containers: Vec<_> = pods
        .iter()
        .map(|p| {
            let mut c = container(p, "app", &["/app"]);
            c.state = api::ContainerState::CONTAINER_RUNNING.into();
            c
        })
        .collect();
    // Two per message: three requests, the first two with more = true.
    let last = conn.synchronize(pods, containers, 2).await.unwrap();
    assert!(!last.more);
    assert!(last.update.is_empty());
    conn.close().await;
    plugin.stop().await;
}

#[tokio::test]
async fn create_container_wraps_rejects_and_skips() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let plugin = start(&rt, &signer, OnInvalid::Reject);
    let conn = rt.accept(false).await;
    conn.configure("containerd", "v2.3.0", "v0.12.2")
        .await
        .unwrap();

    let p = pod("team-a", "nono-runc", Some(decision(&signer, "team-a")));
    let c = container(&p, "app", &["/app/server", "--port=80"]);
    let rsp = conn.create(&create_request(p, c)).await.unwrap();
    let adj = rsp.adjust.get_or_default();
    assert_eq!(
        adj.args,
        [
            "/nono/nono",
            "wrap",
            "--silent",
            "--profile",
            "/nono/profiles/web.json",
            "--allow",
            "/nono/.kubefence-absent",
            "--env-credential",
            "",
            "--log-file",
            "/dev/null",
            "--",
            "/app/server",
            "--port=80"
        ]
    );
    assert_eq!(adj.mounts.len(), 1);
    assert_eq!(adj.mounts[0].destination, "/nono");
    assert_eq!(adj.mounts[0].source, "/opt/kubefence");
    assert_eq!(adj.mounts[0].type_, "bind");
    assert_eq!(adj.mounts[0].options, ["bind", "ro", "nosuid", "nodev"]);
    assert_eq!(adj.env.len(), 1);
    assert_eq!(adj.env[0].key, "NONO_ALLOW");
    assert_eq!(adj.env[0].value, "");

    // The same decision presented by a pod of another namespace.
    let p = pod("team-b", "nono-runc", Some(decision(&signer, "team-a")));
    let c = container(&p, "app", &["/app"]);
    let err = conn.create(&create_request(p, c)).await.unwrap_err();
    let (code, msg) = status_of(&err).expect("a ttrpc status");
    assert_eq!(code, ttrpc::Code::UNKNOWN);
    assert_eq!(
        msg,
        "kubefence: refusing container \"app\" of pod team-b/web-0: the decision was issued \
         for namespace \"team-a\", not \"team-b\" (namespace-mismatch)"
    );

    // A forged decision.
    let forger = Signer::generate().unwrap();
    let p = pod("team-a", "nono-runc", Some(decision(&forger, "team-a")));
    let c = container(&p, "app", &["/app"]);
    let err = conn.create(&create_request(p, c)).await.unwrap_err();
    assert!(
        status_of(&err).unwrap().1.ends_with("(unknown-key)"),
        "{err:?}"
    );

    // Another handler: no adjustment at all.
    let p = pod("team-a", "runc", None);
    let c = container(&p, "app", &["/app"]);
    let rsp = conn.create(&create_request(p, c)).await.unwrap();
    assert!(rsp.adjust.is_none());
    conn.close().await;
    plugin.stop().await;
}

#[tokio::test]
async fn too_old_runtime_refuses_sandbox_containers() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let plugin = start(&rt, &signer, OnInvalid::Confine);
    let conn = rt.accept(false).await;
    conn.configure("containerd", "v2.1.0", "").await.unwrap();
    let p = pod("team-a", "nono-runc", Some(decision(&signer, "team-a")));
    let c = container(&p, "app", &["/app"]);
    let err = conn.create(&create_request(p, c)).await.unwrap_err();
    assert!(
        status_of(&err)
            .unwrap()
            .1
            .ends_with("(runtime-unsupported)"),
        "{err:?}"
    );
    conn.close().await;
    plugin.stop().await;
}

#[tokio::test]
async fn validator_accepts_our_wrap_and_refuses_a_replaced_command() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let plugin = start(&rt, &signer, OnInvalid::Reject);
    let conn = rt.accept(false).await;
    conn.configure("containerd", "v2.3.0", "v0.12.2")
        .await
        .unwrap();
    let p = pod("team-a", "nono-runc", Some(decision(&signer, "team-a")));
    let c = container(&p, "app", &["/app"]);
    let created = conn
        .create(&create_request(p.clone(), c.clone()))
        .await
        .unwrap();

    let mut req = api::ValidateContainerAdjustmentRequest::new();
    req.pod = protobuf::MessageField::some(p);
    req.container = protobuf::MessageField::some(c.clone());
    req.adjust = created.adjust.clone();
    let mut fo = api::FieldOwners::new();
    fo.simple.insert(FIELD_ARGS, "10-kubefence".into());
    let mut owners = api::OwningPlugins::new();
    owners.owners.insert(c.id.clone(), fo);
    req.owners = protobuf::MessageField::some(owners);
    let ok = conn
        .plugin
        .validate_container_adjustment(ctx(), &req)
        .await
        .unwrap();
    assert!(!ok.reject, "{}", ok.reason);

    // A later plugin cleared our args and set its own.
    let mut bad = req.clone();
    bad.adjust.mut_or_insert_default().args = vec!["/bin/sh".into()];
    bad.owners
        .mut_or_insert_default()
        .owners
        .get_mut(&c.id)
        .unwrap()
        .simple
        .insert(FIELD_ARGS, "90-other".into());
    let no = conn
        .plugin
        .validate_container_adjustment(ctx(), &bad)
        .await
        .unwrap();
    assert!(no.reject);
    assert!(no.reason.ends_with("(not-wrapped)"), "{}", no.reason);
    conn.close().await;
    plugin.stop().await;
}

#[tokio::test]
async fn events_dedicated_and_state_change_and_unimplemented() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let plugin = start(&rt, &signer, OnInvalid::Reject);
    let conn = rt.accept(false).await;
    conn.configure("containerd", "v2.2.1", "").await.unwrap();
    let p = pod("team-a", "nono-runc", None);
    let c = container(&p, "app", &["/app"]);

    let mut stop = api::StopContainerRequest::new();
    stop.pod = protobuf::MessageField::some(p.clone());
    stop.container = protobuf::MessageField::some(c.clone());
    let rsp = conn.plugin.stop_container(ctx(), &stop).await.unwrap();
    assert!(rsp.update.is_empty());

    let mut remove = api::RemoveContainerRequest::new();
    remove.pod = protobuf::MessageField::some(p.clone());
    remove.container = protobuf::MessageField::some(c.clone());
    conn.plugin.remove_container(ctx(), &remove).await.unwrap();

    // NRI <= v0.11 sends REMOVE_CONTAINER as StateChange.
    let mut ev = api::StateChangeEvent::new();
    ev.event = api::Event::REMOVE_CONTAINER.into();
    ev.pod = protobuf::MessageField::some(p);
    ev.container = protobuf::MessageField::some(c);
    conn.plugin.state_change(ctx(), &ev).await.unwrap();

    // Methods outside the subset: UNIMPLEMENTED, so v0.12 falls back.
    for method in ["UpdateContainer", "PostUpdateContainer", "UpdatePodSandbox"] {
        let err = conn.call_raw(method).await.unwrap_err();
        assert_eq!(
            status_of(&err).map(|s| s.0),
            Some(ttrpc::Code::UNIMPLEMENTED),
            "{method}: {err:?}"
        );
    }
    // And every implemented event method answers, even with an empty payload.
    for method in [
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "PostCreateContainer",
        "StartContainer",
        "PostStartContainer",
    ] {
        conn.call_raw(method)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e:?}"));
    }
    conn.close().await;
    plugin.stop().await;
}

#[tokio::test]
async fn reconnects_and_reregisters_after_the_runtime_goes_away() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let plugin = start(&rt, &signer, OnInvalid::Reject);
    let conn = rt.accept(false).await;
    conn.configure("containerd", "v2.3.0", "v0.12.2")
        .await
        .unwrap();
    // Shutdown first, as a runtime going down does, then the socket closes.
    conn.plugin
        .shutdown(ctx(), &api::Empty::new())
        .await
        .unwrap();
    conn.close().await;
    for _ in 0..2 {
        let conn = rt.accept(false).await;
        assert_eq!(conn.registration.plugin_name, "kubefence");
        let rsp = conn
            .configure("containerd", "v2.3.0", "v0.12.2")
            .await
            .unwrap();
        assert_ne!(rsp.events, 0);
        let p = pod("team-a", "nono-runc", Some(decision(&signer, "team-a")));
        let c = container(&p, "app", &["/app"]);
        assert!(conn
            .create(&create_request(p, c))
            .await
            .unwrap()
            .adjust
            .is_some());
        conn.close().await;
    }
    plugin.stop().await;
}

#[tokio::test]
async fn keeps_retrying_until_the_socket_appears() {
    let dir = TempDir::new("late");
    let socket = dir.path().join("nri.sock");
    let signer = Signer::generate().unwrap();
    let mut opts = ConnectOptions::new(&socket);
    opts.backoff_initial = Duration::from_millis(10);
    opts.backoff_max = Duration::from_millis(50);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(connection::run(
        core(&signer, OnInvalid::Reject),
        opts,
        async {
            let _ = rx.await;
        },
    ));
    // Let it fail a few times, then start the runtime.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("plugin never connected")
        .unwrap();
    drop(stream);
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn large_messages_cross_the_mux_both_ways() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let plugin = start(&rt, &signer, OnInvalid::Reject);
    let conn = rt.accept(false).await;
    conn.configure("containerd", "v2.3.0", "v0.12.2")
        .await
        .unwrap();
    let mut p = pod("team-a", "nono-runc", Some(decision(&signer, "team-a")));
    p.annotations.insert("big".into(), "x".repeat(256 * 1024));
    let long_arg = "y".repeat(20_000);
    let c = container(&p, "app", &["/app", &long_arg]);
    let rsp = conn.create(&create_request(p, c)).await.unwrap();
    let args = &rsp.adjust.get_or_default().args;
    assert_eq!(args.last(), Some(&long_arg));
    assert_eq!(
        args.len(),
        14,
        "12 wrapper arguments, then the 2 original ones"
    );
    conn.close().await;
    plugin.stop().await;
}
