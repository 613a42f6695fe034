//! A runtime-side test double that speaks NRI's wire protocol over a real
//! unix socket, modelled on containerd/nri `pkg/adaptation` (v0.12):
//! it listens; per accepted connection it multiplexes, is the ttrpc client
//! of the Plugin service on conn 1, serves the Runtime service on conn 2,
//! waits for RegisterPlugin, then the test drives Configure, Synchronize
//! (split like upstream) and events, each with a request timeout.
//!
//! Not proof of compatibility with a real runtime, only fast feedback.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kubefence_nri::connection::single_conn_listener;
use kubefence_nri::decide::{OnInvalid, Policy, Settings};
use kubefence_nri::mux::{Limits, Mux, PLUGIN_CONN, RUNTIME_CONN};
use kubefence_nri::nono::NonoLayout;
use kubefence_nri::plugin::Core;
use kubefence_nri::proto::{api, api_ttrpc};
use kubefence_shared::decision::{Claims, PodBinding};
use kubefence_shared::envelope::{Signer, TrustSet};
use kubefence_shared::keys;
use kubefence_shared::profile::{Catalog, CatalogEntry, ProfileName};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, Notify};
use ttrpc::r#async::transport::Socket;
use ttrpc::r#async::{Client, Server, TtrpcContext};

/// Upstream's default request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstream's default registration timeout.
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(5);

pub fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(REQUEST_TIMEOUT.as_nanos() as i64)
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kf-nri-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn profile(name: &str) -> ProfileName {
    ProfileName::parse(name).unwrap()
}

/// A plugin core trusting `signer`, catalog {default, strict, web}.
pub fn core(signer: &Signer, on_invalid: OnInvalid) -> Arc<Core> {
    let mut trust = TrustSet::new();
    trust.insert(signer.verifying_key());
    let entry = || CatalogEntry {
        description: String::new(),
    };
    Arc::new(Core {
        policy: Policy {
            settings: Settings {
                sandbox_handlers: vec!["nono-runc".into()],
                on_invalid,
                max_skew: 300,
                max_age: None,
                layout: NonoLayout::new("/opt/kubefence", "/nono").unwrap(),
            },
            trust,
            catalog: Catalog {
                strictest: profile("strict"),
                profiles: [
                    (profile("default"), entry()),
                    (profile("strict"), entry()),
                    (profile("web"), entry()),
                ]
                .into(),
            },
        },
        validator: true,
        plugin_name: "kubefence".into(),
        plugin_index: "10".into(),
        assume_nri_version: None,
        clock: Arc::new(kubefence_shared::decision::unix_now),
    })
}

/// A decision for pod `web-0` of `namespace`, signed by `signer`.
pub fn decision(signer: &Signer, namespace: &str) -> String {
    signer.sign(&Claims {
        ver: 1,
        namespace: namespace.into(),
        pod: PodBinding::Name("web-0".into()),
        handler: "nono-runc".into(),
        profile: profile("default"),
        containers: [("app".to_owned(), profile("web"))].into(),
        iat: kubefence_shared::decision::unix_now(),
    })
}

pub fn pod(namespace: &str, handler: &str, token: Option<String>) -> api::PodSandbox {
    let mut p = api::PodSandbox::new();
    p.id = format!("pod-{namespace}");
    p.name = "web-0".into();
    p.uid = "uid-1".into();
    p.namespace = namespace.into();
    p.runtime_handler = handler.into();
    if let Some(t) = token {
        p.annotations.insert(keys::DECISION.into(), t);
    }
    p
}

pub fn container(pod: &api::PodSandbox, name: &str, args: &[&str]) -> api::Container {
    let mut c = api::Container::new();
    c.id = format!("{}-{name}", pod.id);
    c.pod_sandbox_id = pod.id.clone();
    c.name = name.into();
    c.args = args.iter().map(|a| (*a).to_owned()).collect();
    c.env = vec!["PATH=/bin".into(), "NONO_ALLOW=/".into()];
    c
}

pub fn create_request(pod: api::PodSandbox, c: api::Container) -> api::CreateContainerRequest {
    let mut req = api::CreateContainerRequest::new();
    req.pod = protobuf::MessageField::some(pod);
    req.container = protobuf::MessageField::some(c);
    req
}

/// The Runtime service the double serves on conn 2.
struct RuntimeService {
    registrations: mpsc::UnboundedSender<api::RegisterPluginRequest>,
    /// When set, RegisterPlugin replies only after Configure was answered,
    /// the order upstream allows (it signals registration before replying).
    hold_reply: Option<Arc<Notify>>,
}

#[async_trait]
impl api_ttrpc::Runtime for RuntimeService {
    async fn register_plugin(
        &self,
        _ctx: &TtrpcContext,
        req: api::RegisterPluginRequest,
    ) -> ttrpc::Result<api::Empty> {
        let _ = self.registrations.send(req);
        if let Some(hold) = &self.hold_reply {
            hold.notified().await;
        }
        Ok(api::Empty::new())
    }
}

/// The listening side.
pub struct FakeRuntime {
    pub dir: TempDir,
    pub socket: PathBuf,
    listener: UnixListener,
}

impl FakeRuntime {
    pub fn bind() -> Self {
        let dir = TempDir::new("rt");
        let socket = dir.path().join("nri.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        Self {
            dir,
            socket,
            listener,
        }
    }

    /// Accepts the next plugin connection and hands over the raw socket,
    /// for tests that play a broken or hostile runtime.
    pub async fn accept_raw(&self) -> tokio::net::UnixStream {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(10), self.listener.accept())
            .await
            .expect("plugin did not connect")
            .unwrap();
        stream
    }

    /// Accepts the next plugin connection and waits for its registration.
    pub async fn accept(&self, hold_register_reply: bool) -> PluginConn {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(10), self.listener.accept())
            .await
            .expect("plugin did not connect")
            .unwrap();
        // Go's limits: a frame over 4096 bytes from the plugin kills the
        // connection, and large messages arrive as one big frame.
        let mut mux = Mux::start(stream, &[PLUGIN_CONN, RUNTIME_CONN], Limits::go_runtime());
        let plugin_conn = mux.take(PLUGIN_CONN).unwrap();
        let runtime_conn = mux.take(RUNTIME_CONN).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hold = hold_register_reply.then(|| Arc::new(Notify::new()));
        let service = RuntimeService {
            registrations: tx,
            hold_reply: hold.clone(),
        };
        let mut server = Server::new()
            .register_service(api_ttrpc::create_runtime(Arc::new(service)))
            .add_listener(single_conn_listener(runtime_conn));
        server.start().await.unwrap();
        let client = Client::new(Socket::new(plugin_conn));
        let registration = tokio::time::timeout(REGISTRATION_TIMEOUT, rx.recv())
            .await
            .expect("plugin did not register in time")
            .expect("registration channel closed");
        PluginConn {
            raw: client.clone(),
            plugin: api_ttrpc::PluginClient::new(client),
            registration,
            hold,
            mux: Some(mux),
            server,
        }
    }
}

/// One accepted plugin connection.
pub struct PluginConn {
    pub raw: Client,
    pub plugin: api_ttrpc::PluginClient,
    pub registration: api::RegisterPluginRequest,
    hold: Option<Arc<Notify>>,
    mux: Option<Mux>,
    server: Server,
}

impl PluginConn {
    /// Configure as a runtime with this name / version / NRI version.
    pub async fn configure(
        &self,
        runtime: &str,
        version: &str,
        nri: &str,
    ) -> ttrpc::Result<api::ConfigureResponse> {
        let mut req = api::ConfigureRequest::new();
        req.runtime_name = runtime.into();
        req.runtime_version = version.into();
        req.registration_timeout = REGISTRATION_TIMEOUT.as_millis() as i64;
        req.request_timeout = REQUEST_TIMEOUT.as_millis() as i64;
        req.NRI_version = nri.into();
        let rsp = self.plugin.configure(ctx(), &req).await;
        if let Some(hold) = &self.hold {
            hold.notify_one();
        }
        rsp
    }

    /// Synchronize in chunks of `per_msg` pods and containers, checking the
    /// plugin answers intermediate chunks the way upstream requires.
    pub async fn synchronize(
        &self,
        pods: Vec<api::PodSandbox>,
        containers: Vec<api::Container>,
        per_msg: usize,
    ) -> ttrpc::Result<api::SynchronizeResponse> {
        let (mut pods, mut containers) = (pods, containers);
        loop {
            let np = per_msg.min(pods.len());
            let nc = per_msg.min(containers.len());
            let mut req = api::SynchronizeRequest::new();
            req.pods = pods.drain(..np).collect();
            req.containers = containers.drain(..nc).collect();
            req.more = !pods.is_empty() || !containers.is_empty();
            let rsp = self.plugin.synchronize(ctx(), &req).await?;
            if !req.more {
                return Ok(rsp);
            }
            // adaptation.synchronize: closes the plugin otherwise.
            assert!(
                rsp.update.is_empty() && rsp.more == req.more,
                "plugin does not handle split sync requests"
            );
        }
    }

    pub async fn create(
        &self,
        req: &api::CreateContainerRequest,
    ) -> ttrpc::Result<api::CreateContainerResponse> {
        self.plugin.create_container(ctx(), req).await
    }

    /// Calls `method` of the Plugin service with an empty payload.
    pub async fn call_raw(&self, method: &str) -> ttrpc::Result<Vec<u8>> {
        let mut req = ttrpc::proto::Request::new();
        req.service = "nri.pkg.api.v1alpha1.Plugin".into();
        req.method = method.into();
        req.timeout_nano = REQUEST_TIMEOUT.as_nanos() as i64;
        self.raw.request(req).await.map(|r| r.payload)
    }

    /// Closes the connection, as a runtime restart would.
    pub async fn close(mut self) {
        drop(self.mux.take());
        let _ = self.server.shutdown().await;
    }
}

pub fn status_of(err: &ttrpc::Error) -> Option<(ttrpc::Code, String)> {
    match err {
        ttrpc::Error::RpcStatus(s) => Some((s.code(), s.message().to_owned())),
        _ => None,
    }
}

pub fn annotations_of(p: &api::PodSandbox) -> &HashMap<String, String> {
    &p.annotations
}
