//! Where the target pod of a `kubectl exec` comes from. CONNECT reviews
//! carry only the exec options, so the webhook GETs the pod: exec is rare,
//! and a consistent read (no `resourceVersion`, never a stale cache) with a
//! short timeout is worth it. A static set serves `--dev` and tests.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};

/// Why a pod could not be looked up. The exec decision fails closed on any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("pod not found")]
    NotFound,
    #[error("no answer from the Kubernetes API within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("Kubernetes API error: {0}")]
    Api(String),
}

/// A read of one pod (metadata and spec are what the decision needs).
pub trait PodLookup: Send + Sync {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Pod, LookupError>>;
}

/// One GET per call against the API.
pub struct KubePods {
    client: Client,
    timeout: Duration,
}

impl KubePods {
    pub fn new(client: Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }
}

impl PodLookup for KubePods {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Pod, LookupError>> {
        Box::pin(async move {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            match tokio::time::timeout(self.timeout, api.get(name)).await {
                Err(_) => Err(LookupError::Timeout(self.timeout)),
                Ok(Ok(pod)) => Ok(pod),
                Ok(Err(kube::Error::Api(status))) if status.is_not_found() => {
                    Err(LookupError::NotFound)
                }
                Ok(Err(e)) => Err(LookupError::Api(e.to_string())),
            }
        })
    }
}

/// A fixed set of pods, or a fixed failure.
#[derive(Debug, Clone, Default)]
pub struct StaticPods {
    by_key: BTreeMap<(String, String), Pod>,
    fail: Option<LookupError>,
}

impl StaticPods {
    /// Pods without a namespace or name are skipped.
    pub fn new(pods: impl IntoIterator<Item = Pod>) -> Self {
        let by_key = pods
            .into_iter()
            .filter_map(|p| {
                let ns = p.metadata.namespace.clone()?;
                let name = p.metadata.name.clone()?;
                Some(((ns, name), p))
            })
            .collect();
        Self { by_key, fail: None }
    }

    /// Every lookup fails with `error` (API down, timeouts).
    pub fn failing(error: LookupError) -> Self {
        Self {
            by_key: BTreeMap::new(),
            fail: Some(error),
        }
    }
}

impl PodLookup for StaticPods {
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Pod, LookupError>> {
        let result = match &self.fail {
            Some(e) => Err(e.clone()),
            None => self
                .by_key
                .get(&(namespace.to_owned(), name.to_owned()))
                .cloned()
                .ok_or(LookupError::NotFound),
        };
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use serde_json::json;

    fn pod(ns: &str, name: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}})).unwrap()
    }

    #[tokio::test]
    async fn static_pods_by_namespace_and_name() {
        let src = StaticPods::new([pod("team-a", "web-0"), pod("team-b", "web-0")]);
        let got = src.get("team-a", "web-0").await.unwrap();
        assert_eq!(got.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            src.get("team-a", "web-1").await.unwrap_err(),
            LookupError::NotFound
        );
        assert_eq!(
            src.get("team-c", "web-0").await.unwrap_err(),
            LookupError::NotFound
        );
        let down = StaticPods::failing(LookupError::Api("connection refused".into()));
        assert!(down
            .get("team-a", "web-0")
            .await
            .unwrap_err()
            .to_string()
            .contains("connection refused"));
    }

    const JSON: [(axum::http::HeaderName, &str); 1] =
        [(axum::http::header::CONTENT_TYPE, "application/json")];

    /// A plain-HTTP stand-in for the apiserver's pod GET.
    async fn fake_apiserver() -> String {
        let app = Router::new().route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(
                |axum::extract::Path((ns, name)): axum::extract::Path<(String, String)>| async move {
                    let status = |code: u16, reason: &str| {
                        (
                            StatusCode::from_u16(code).unwrap(),
                            JSON,
                            json!({
                                "kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": format!("pods \"{name}\" {reason}"),
                                "reason": reason, "code": code
                            })
                            .to_string(),
                        )
                    };
                    match name.as_str() {
                        "web-0" => (
                            StatusCode::OK,
                            JSON,
                            json!({
                                "kind": "Pod", "apiVersion": "v1",
                                "metadata": {"name": name, "namespace": ns,
                                             "annotations": {"nono.sh/decision": "t"}},
                                "spec": {"containers": [{"name": "app"}]}
                            })
                            .to_string(),
                        ),
                        "hang" => {
                            std::future::pending::<()>().await;
                            unreachable!()
                        }
                        "broken" => status(500, "InternalError"),
                        _ => status(404, "NotFound"),
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn kube_pods_maps_api_answers() {
        let url = fake_apiserver().await;
        let config = kube::Config::new(url.parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let pods = KubePods::new(client, Duration::from_millis(300));
        let got = pods.get("team-a", "web-0").await.unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("web-0"));
        assert_eq!(got.metadata.annotations.unwrap()["nono.sh/decision"], "t");
        assert_eq!(
            pods.get("team-a", "gone").await.unwrap_err(),
            LookupError::NotFound
        );
        assert!(matches!(
            pods.get("team-a", "broken").await.unwrap_err(),
            LookupError::Api(_)
        ));
        assert_eq!(
            pods.get("team-a", "hang").await.unwrap_err(),
            LookupError::Timeout(Duration::from_millis(300))
        );
    }
}
