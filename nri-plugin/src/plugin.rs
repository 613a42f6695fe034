//! The NRI Plugin service: translates the wire messages to the views
//! [`crate::decide`] works on and its decisions back, writes audit records.
//! Every method of `service Plugin` in the proto is implemented here: the
//! generated default answers NOT_FOUND, which NRI v0.12 would not take for
//! "unimplemented" (its cue to fall back to StateChange).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;
use ttrpc::r#async::TtrpcContext;

use crate::audit;
use kubefence_shared::envelope::TrustSet;
use kubefence_shared::profile::Catalog;

use crate::decide::{ContainerView, Decision, PodView, Policy, RuntimeSupport, Settings, Wrap};
use crate::nono::MountSpec;
use crate::proto::api;
use crate::proto::api_ttrpc;
use crate::runtime::{NriVersion, RuntimeInfo};
use crate::validate::{self, FinalAdjustment};

/// `api.Field` value of the args in `FieldOwners.simple`.
pub const FIELD_ARGS: i32 = 7;

/// Seconds since the Unix epoch; injectable for tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// What stays the same across connections.
pub struct Core {
    pub policy: Policy,
    /// Subscribe to and answer ValidateContainerAdjustment.
    pub validator: bool,
    pub plugin_name: String,
    pub plugin_index: String,
    pub assume_nri_version: Option<NriVersion>,
    pub clock: Clock,
}

impl Core {
    /// The core for a validated config and the loaded keys and catalog.
    pub fn new(config: &crate::config::Config, trust: TrustSet, catalog: Catalog) -> Self {
        Self {
            policy: Policy {
                settings: Settings {
                    sandbox_handlers: config.sandbox_handlers.clone(),
                    on_invalid: config.on_invalid,
                    max_skew: config.max_skew,
                    max_age: config.max_age,
                    layout: config.layout.clone(),
                },
                trust,
                catalog,
            },
            validator: config.validator,
            plugin_name: config.plugin_name.clone(),
            plugin_index: config.plugin_index.clone(),
            assume_nri_version: config.assume_nri_version,
            clock: Arc::new(kubefence_shared::decision::unix_now),
        }
    }

    /// How the runtime names us in field owners: `<index>-<name>`.
    pub fn owner_id(&self) -> String {
        format!("{}-{}", self.plugin_index, self.plugin_name)
    }
}

#[derive(Default)]
struct Session {
    runtime: Option<RuntimeInfo>,
    sync_pods: Vec<api::PodSandbox>,
    sync_containers: Vec<api::Container>,
}

/// The Plugin service of one connection.
pub struct PluginService {
    core: Arc<Core>,
    session: Mutex<Session>,
    /// Notified when the runtime calls Shutdown.
    pub shutdown: Arc<Notify>,
}

fn status(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

pub fn pod_view(p: &api::PodSandbox) -> PodView<'_> {
    PodView {
        namespace: &p.namespace,
        name: &p.name,
        uid: &p.uid,
        runtime_handler: &p.runtime_handler,
        annotations: &p.annotations,
    }
}

pub fn container_view(c: &api::Container) -> ContainerView<'_> {
    ContainerView {
        name: &c.name,
        args: &c.args,
        env: &c.env,
    }
}

/// The NRI adjustment of a wrap: args, the nono mount, blanked sandbox env.
pub fn to_adjustment(w: &Wrap) -> api::ContainerAdjustment {
    let mut adj = api::ContainerAdjustment::new();
    adj.args = w.args.clone();
    adj.mounts.push(to_mount(&w.mount));
    for key in &w.blank_env {
        let mut kv = api::KeyValue::new();
        kv.key = key.clone();
        adj.env.push(kv);
    }
    adj
}

fn to_mount(m: &MountSpec) -> api::Mount {
    let mut out = api::Mount::new();
    out.destination = m.destination.clone();
    out.type_ = m.kind.clone();
    out.source = m.source.clone();
    out.options = m.options.clone();
    out
}

fn from_mount(m: &api::Mount) -> MountSpec {
    MountSpec {
        destination: m.destination.clone(),
        kind: m.type_.clone(),
        source: m.source.clone(),
        options: m.options.clone(),
    }
}

/// Audit records for running sandbox-handler containers without the
/// wrapper, e.g. started while the plugin was away.
pub fn unwrapped_records(
    policy: &Policy,
    pods: &[api::PodSandbox],
    containers: &[api::Container],
) -> Vec<kubefence_shared::audit::AuditRecord> {
    let layout = &policy.settings.layout;
    containers
        .iter()
        .filter(|c| c.state.value() != api::ContainerState::CONTAINER_STOPPED as i32)
        .filter_map(|c| {
            let pod = pods.iter().find(|p| p.id == c.pod_sandbox_id)?;
            let view = pod_view(pod);
            (policy.is_sandboxed(&view) && !layout.is_wrapped(&c.args)).then(|| {
                audit::unwrapped_record(&view, &c.name, c.args.first().map(String::as_str))
            })
        })
        .collect()
}

impl PluginService {
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            session: Mutex::new(Session::default()),
            shutdown: Arc::new(Notify::new()),
        }
    }

    fn runtime_support(&self) -> RuntimeSupport {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        match &session.runtime {
            Some(r) => RuntimeSupport {
                args: r.supports_args(),
                description: r.describe(),
            },
            // No Configure yet: upstream never does this, refuse to guess.
            None => RuntimeSupport {
                args: false,
                description: "(not configured yet)".to_owned(),
            },
        }
    }

    /// The CreateContainer decision with its audit record; shared by the
    /// ttrpc handler and the in-process tests.
    pub fn create_container_response(
        &self,
        req: &api::CreateContainerRequest,
    ) -> Result<api::CreateContainerResponse, String> {
        let pod = pod_view(&req.pod);
        let container = container_view(&req.container);
        let decision = self.core.policy.decide(
            &pod,
            &container,
            &self.runtime_support(),
            (self.core.clock)(),
        );
        audit::decision_record(&decision, &pod, container.name).emit();
        let mut rsp = api::CreateContainerResponse::new();
        match decision {
            Decision::Skip => Ok(rsp),
            Decision::Adjust(w) => {
                tracing::info!(
                    namespace = pod.namespace, pod = pod.name, container = container.name,
                    profile = %w.profile, confined = w.confined.is_some(),
                    "wrapping container in nono"
                );
                rsp.adjust = protobuf::MessageField::some(to_adjustment(&w));
                Ok(rsp)
            }
            Decision::Reject(r) => {
                let msg = r.message(&pod, container.name);
                tracing::warn!(reason = r.reason, "{msg}");
                Err(msg)
            }
        }
    }

    /// The validator's answer.
    pub fn validate_response(
        &self,
        req: &api::ValidateContainerAdjustmentRequest,
    ) -> api::ValidateContainerAdjustmentResponse {
        let mut rsp = api::ValidateContainerAdjustmentResponse::new();
        if !self.core.validator {
            return rsp;
        }
        let pod = pod_view(&req.pod);
        let container = container_view(&req.container);
        let adjust = req.adjust.get_or_default();
        let args_owner = req
            .owners
            .get_or_default()
            .owners
            .get(&req.container.id)
            .and_then(|f| f.simple.get(&FIELD_ARGS))
            .map(String::as_str);
        let fin = FinalAdjustment {
            args: &adjust.args,
            env: adjust
                .env
                .iter()
                .map(|kv| (kv.key.as_str(), kv.value.as_str()))
                .collect(),
            mounts: adjust.mounts.iter().map(from_mount).collect(),
            args_owner,
        };
        let owner = self.core.owner_id();
        let now = (self.core.clock)();
        let support = self.runtime_support();
        if let Err(refusal) = validate::validate(
            &self.core.policy,
            &pod,
            &container,
            &fin,
            &owner,
            &support,
            now,
        ) {
            tracing::warn!(reason = refusal.reason, "{}", refusal.message);
            audit::validation_record(&pod, container.name, refusal.reason, &refusal.message).emit();
            rsp.reject = true;
            rsp.reason = refusal.message;
        }
        rsp
    }

    /// Configure: record the runtime, subscribe to what it knows.
    pub fn configure_response(&self, req: &api::ConfigureRequest) -> api::ConfigureResponse {
        let info = RuntimeInfo::new(
            &req.runtime_name,
            &req.runtime_version,
            &req.NRI_version,
            self.core.assume_nri_version,
        );
        let events = info.events(self.core.validator);
        tracing::info!(
            runtime = %info.describe(),
            request_timeout_ms = req.request_timeout,
            registration_timeout_ms = req.registration_timeout,
            events = format_args!("{events:#x}"),
            "configured by runtime"
        );
        if !info.supports_args() {
            tracing::warn!(
                "runtime {} cannot adjust container args: every container of a sandbox \
                 handler will be refused (set assume_nri_version if detection is wrong)",
                info.describe()
            );
        }
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .runtime = Some(info);
        let mut rsp = api::ConfigureResponse::new();
        rsp.events = events;
        rsp
    }

    /// Synchronize, including split requests: intermediate chunks are
    /// collected and answered with `more` echoed and no updates.
    pub fn synchronize_response(&self, req: api::SynchronizeRequest) -> api::SynchronizeResponse {
        let mut rsp = api::SynchronizeResponse::new();
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        session.sync_pods.extend(req.pods);
        session.sync_containers.extend(req.containers);
        if req.more {
            rsp.more = true;
            return rsp;
        }
        let pods = std::mem::take(&mut session.sync_pods);
        let containers = std::mem::take(&mut session.sync_containers);
        drop(session);
        let records = unwrapped_records(&self.core.policy, &pods, &containers);
        tracing::info!(
            pods = pods.len(),
            containers = containers.len(),
            unwrapped = records.len(),
            "synchronized with runtime"
        );
        for r in &records {
            tracing::warn!(
                namespace = r.namespace.as_deref().unwrap_or(""),
                pod = r.pod.as_deref().unwrap_or(""),
                container = r.container.as_deref().unwrap_or(""),
                "running sandbox-handler container is not wrapped in nono"
            );
            r.emit();
        }
        rsp
    }
}

fn log_event(what: &str, pod: &api::PodSandbox, container: Option<&api::Container>) {
    tracing::debug!(
        event = what,
        namespace = pod.namespace,
        pod = pod.name,
        container = container.map(|c| c.name.as_str()).unwrap_or(""),
        "runtime event"
    );
}

#[async_trait]
impl api_ttrpc::Plugin for PluginService {
    async fn configure(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConfigureRequest,
    ) -> ttrpc::Result<api::ConfigureResponse> {
        Ok(self.configure_response(&req))
    }

    async fn synchronize(
        &self,
        _ctx: &TtrpcContext,
        req: api::SynchronizeRequest,
    ) -> ttrpc::Result<api::SynchronizeResponse> {
        Ok(self.synchronize_response(req))
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: api::Empty) -> ttrpc::Result<api::Empty> {
        tracing::info!("runtime is shutting down");
        self.shutdown.notify_waiters();
        Ok(api::Empty::new())
    }

    async fn run_pod_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::RunPodSandboxRequest,
    ) -> ttrpc::Result<api::RunPodSandboxResponse> {
        log_event("run-pod-sandbox", &req.pod, None);
        Ok(api::RunPodSandboxResponse::new())
    }

    async fn stop_pod_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::StopPodSandboxRequest,
    ) -> ttrpc::Result<api::StopPodSandboxResponse> {
        log_event("stop-pod-sandbox", &req.pod, None);
        Ok(api::StopPodSandboxResponse::new())
    }

    async fn remove_pod_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: api::RemovePodSandboxRequest,
    ) -> ttrpc::Result<api::RemovePodSandboxResponse> {
        log_event("remove-pod-sandbox", &req.pod, None);
        Ok(api::RemovePodSandboxResponse::new())
    }

    async fn create_container(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateContainerRequest,
    ) -> ttrpc::Result<api::CreateContainerResponse> {
        // UNKNOWN with our message: the runtime fails the creation and shows it.
        self.create_container_response(&req)
            .map_err(|msg| status(ttrpc::Code::UNKNOWN, msg))
    }

    async fn post_create_container(
        &self,
        _ctx: &TtrpcContext,
        req: api::PostCreateContainerRequest,
    ) -> ttrpc::Result<api::PostCreateContainerResponse> {
        log_event("post-create-container", &req.pod, req.container.as_ref());
        Ok(api::PostCreateContainerResponse::new())
    }

    async fn start_container(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartContainerRequest,
    ) -> ttrpc::Result<api::StartContainerResponse> {
        log_event("start-container", &req.pod, req.container.as_ref());
        Ok(api::StartContainerResponse::new())
    }

    async fn post_start_container(
        &self,
        _ctx: &TtrpcContext,
        req: api::PostStartContainerRequest,
    ) -> ttrpc::Result<api::PostStartContainerResponse> {
        log_event("post-start-container", &req.pod, req.container.as_ref());
        Ok(api::PostStartContainerResponse::new())
    }

    async fn stop_container(
        &self,
        _ctx: &TtrpcContext,
        req: api::StopContainerRequest,
    ) -> ttrpc::Result<api::StopContainerResponse> {
        log_event("stop-container", &req.pod, req.container.as_ref());
        Ok(api::StopContainerResponse::new())
    }

    async fn remove_container(
        &self,
        _ctx: &TtrpcContext,
        req: api::RemoveContainerRequest,
    ) -> ttrpc::Result<api::RemoveContainerResponse> {
        log_event("remove-container", &req.pod, req.container.as_ref());
        Ok(api::RemoveContainerResponse::new())
    }

    async fn state_change(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateChangeEvent,
    ) -> ttrpc::Result<api::Empty> {
        let what = match req.event.enum_value() {
            Ok(e) => format!("state-change {e:?}"),
            Err(n) => format!("state-change {n}"),
        };
        log_event(&what, &req.pod, req.container.as_ref());
        Ok(api::Empty::new())
    }

    async fn validate_container_adjustment(
        &self,
        _ctx: &TtrpcContext,
        req: api::ValidateContainerAdjustmentRequest,
    ) -> ttrpc::Result<api::ValidateContainerAdjustmentResponse> {
        Ok(self.validate_response(&req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::OnInvalid;
    use crate::nono::NonoLayout;
    use kubefence_shared::profile::{CatalogEntry, ProfileName};

    fn policy() -> Policy {
        let strict = ProfileName::parse("strict").unwrap();
        Policy {
            settings: Settings {
                sandbox_handlers: vec!["nono-runc".into()],
                on_invalid: OnInvalid::Reject,
                max_skew: 300,
                max_age: None,
                layout: NonoLayout::new("/opt/kubefence", "/nono").unwrap(),
            },
            trust: TrustSet::new(),
            catalog: Catalog {
                strictest: strict.clone(),
                profiles: [(
                    strict,
                    CatalogEntry {
                        description: String::new(),
                    },
                )]
                .into(),
            },
        }
    }

    fn pod(id: &str, handler: &str) -> api::PodSandbox {
        let mut p = api::PodSandbox::new();
        p.id = id.into();
        p.name = id.into();
        p.namespace = "ns".into();
        p.runtime_handler = handler.into();
        p
    }

    fn ctr(name: &str, pod: &str, args: Vec<String>, state: api::ContainerState) -> api::Container {
        let mut c = api::Container::new();
        c.name = name.into();
        c.pod_sandbox_id = pod.into();
        c.args = args;
        c.state = state.into();
        c
    }

    #[test]
    fn synchronize_flags_only_running_unwrapped_sandbox_containers() {
        use api::ContainerState::*;
        let pol = policy();
        let wrapped = pol
            .settings
            .layout
            .wrap_args(&ProfileName::parse("strict").unwrap(), &["/app".into()]);
        let pods = [pod("sb", "nono-runc"), pod("plain", "runc")];
        let containers = [
            ctr("bare", "sb", vec!["/app".into()], CONTAINER_RUNNING),
            ctr("created", "sb", vec!["/app".into()], CONTAINER_CREATED),
            ctr("ok", "sb", wrapped, CONTAINER_RUNNING),
            ctr("gone", "sb", vec!["/app".into()], CONTAINER_STOPPED),
            ctr("other", "plain", vec!["/app".into()], CONTAINER_RUNNING),
            ctr("orphan", "missing", vec!["/app".into()], CONTAINER_RUNNING),
        ];
        let names: Vec<_> = unwrapped_records(&pol, &pods, &containers)
            .into_iter()
            .map(|r| r.container.unwrap_or_default())
            .collect();
        assert_eq!(names, ["bare", "created"]);
    }

    #[test]
    fn adjustment_carries_args_mount_and_blanked_env() {
        let pol = policy();
        let layout = &pol.settings.layout;
        let profile = ProfileName::parse("strict").unwrap();
        let w = Wrap {
            args: layout.wrap_args(&profile, &["/app".into()]),
            mount: layout.mount(),
            blank_env: vec!["NONO_ALLOW".into(), "NONO_X".into()],
            profile,
            key_id: None,
            confined: None,
        };
        let adj = to_adjustment(&w);
        assert_eq!(adj.args, w.args);
        assert_eq!(adj.mounts.len(), 1);
        assert_eq!(from_mount(&adj.mounts[0]), w.mount);
        let env: Vec<_> = adj
            .env
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        assert_eq!(env, [("NONO_ALLOW", ""), ("NONO_X", "")]);
        assert!(adj.annotations.is_empty());
    }
}
