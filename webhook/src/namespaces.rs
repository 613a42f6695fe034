//! Where namespace labels and annotations come from: a watch cache of
//! Namespace metadata (never an API call per admission), or a static list
//! from the config file for `--dev` and tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::config::StaticNamespace;
use crate::policy::NamespaceMeta;

/// A read-only view of namespace metadata.
pub trait NamespaceSource: Send + Sync {
    /// `None`: the namespace is not known (yet).
    fn get(&self, name: &str) -> Option<NamespaceMeta>;
    /// Whether the source has its initial state; `/readyz` waits for it.
    fn is_ready(&self) -> bool;
}

/// Namespaces listed in the config file.
#[derive(Debug, Clone, Default)]
pub struct StaticNamespaces {
    by_name: BTreeMap<String, NamespaceMeta>,
}

impl StaticNamespaces {
    pub fn new(list: &[StaticNamespace]) -> Self {
        let by_name = list
            .iter()
            .map(|ns| {
                let mut labels = ns.labels.clone();
                // Set by the control plane on every namespace.
                labels
                    .entry("kubernetes.io/metadata.name".into())
                    .or_insert_with(|| ns.name.clone());
                (
                    ns.name.clone(),
                    NamespaceMeta {
                        labels,
                        annotations: ns.annotations.clone(),
                    },
                )
            })
            .collect();
        Self { by_name }
    }
}

impl NamespaceSource for StaticNamespaces {
    fn get(&self, name: &str) -> Option<NamespaceMeta> {
        self.by_name.get(name).cloned()
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// A reflector over Namespace metadata (labels and annotations only).
pub struct KubeNamespaces {
    store: Store<PartialObjectMeta<Namespace>>,
    ready: Arc<AtomicBool>,
}

impl KubeNamespaces {
    /// Starts the watch on the current tokio runtime. The watch reconnects
    /// with backoff forever; readiness flips once the first list completes.
    pub fn start(client: Client) -> Arc<Self> {
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client);
        let (store, writer) = reflector::store();
        let ready = Arc::new(AtomicBool::new(false));
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    // The backoff retries; the store keeps its last state.
                    tracing::warn!(error = %e, "namespace watch error");
                }
            }
        });
        let waiter = store.clone();
        let flag = ready.clone();
        tokio::spawn(async move {
            if waiter.wait_until_ready().await.is_ok() {
                flag.store(true, Ordering::SeqCst);
                tracing::info!("namespace cache synced");
            }
        });
        Arc::new(Self { store, ready })
    }
}

impl NamespaceSource for KubeNamespaces {
    fn get(&self, name: &str) -> Option<NamespaceMeta> {
        let ns = self.store.get(&ObjectRef::new(name))?;
        Some(NamespaceMeta {
            labels: ns.metadata.labels.clone().unwrap_or_default(),
            annotations: ns.metadata.annotations.clone().unwrap_or_default(),
        })
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_source_serves_config_namespaces() {
        let src = StaticNamespaces::new(&[StaticNamespace {
            name: "team-a".into(),
            labels: BTreeMap::from([("nono.sh/mode".to_string(), "enforce".to_string())]),
            annotations: BTreeMap::from([(
                "nono.sh/default-profile".to_string(),
                "strict".to_string(),
            )]),
        }]);
        assert!(src.is_ready());
        let ns = src.get("team-a").unwrap();
        assert_eq!(ns.labels["nono.sh/mode"], "enforce");
        assert_eq!(ns.labels["kubernetes.io/metadata.name"], "team-a");
        assert_eq!(ns.annotations["nono.sh/default-profile"], "strict");
        assert!(src.get("team-b").is_none());
    }
}
