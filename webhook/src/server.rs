//! HTTPS serving: `/mutate`, `/validate`, `/healthz`, `/readyz`, `/metrics`,
//! over rustls with a reloading certificate, and graceful shutdown.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::FutureExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::admission::{Admission, Reply};
use crate::metrics::Metrics;
use crate::policy::Endpoint;
use crate::tls::{self, CertStore};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

#[derive(Clone)]
pub struct AppState {
    pub admission: Arc<Admission>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn mutate(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    review(st, Endpoint::Mutate, headers, body).await
}

async fn validate(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    review(st, Endpoint::Validate, headers, body).await
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

async fn review(st: AppState, endpoint: Endpoint, headers: HeaderMap, body: Body) -> Response {
    let start = Instant::now();
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body exceeds the {} byte limit (max_body_bytes)\n",
                st.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let reply = if declared.is_some_and(|n| n > st.max_body_bytes as u64) {
        Err(too_large())
    } else {
        match Limited::new(body, st.max_body_bytes).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let admission = st.admission.clone();
                // A bug must cost one request, never the process or others.
                match AssertUnwindSafe(admission.handle(endpoint, &bytes))
                    .catch_unwind()
                    .await
                {
                    Ok(reply) => Ok(reply),
                    Err(_) => Err(plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "kubefence internal error\n".into(),
                    )),
                }
            }
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Err(e) => Err(plain(
                StatusCode::BAD_REQUEST,
                format!("reading request body: {e}\n"),
            )),
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    match reply {
        Ok(Reply {
            http_status,
            content_type,
            body,
            outcome,
            reason,
            audit,
        }) => {
            audit.emit();
            st.metrics
                .observe(endpoint.as_str(), outcome, reason, seconds);
            tracing::debug!(
                endpoint = endpoint.as_str(),
                outcome,
                reason,
                seconds,
                "admission"
            );
            let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::OK);
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(resp) => {
            let reason = match resp.status() {
                StatusCode::PAYLOAD_TOO_LARGE => "too-large",
                StatusCode::BAD_REQUEST => "bad-request",
                _ => "internal-error",
            };
            st.metrics
                .observe(endpoint.as_str(), "error", reason, seconds);
            tracing::warn!(
                endpoint = endpoint.as_str(),
                reason,
                "admission request refused"
            );
            resp
        }
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    // The signing key and certificate are loaded before serving starts;
    // only the namespace cache can lag.
    if st.admission.namespaces().is_ready() {
        plain(StatusCode::OK, "ok\n".into())
    } else {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "namespace cache not synced\n".into(),
        )
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

/// Serves until `shutdown` resolves, then stops accepting and gives
/// in-flight requests up to `grace` to finish.
pub async fn serve(
    listener: std::net::TcpListener,
    state: AppState,
    certs: Arc<CertStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    let config = tls::server_config(certs)?;
    let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(grace_secs = grace.as_secs(), "shutting down");
        stopper.graceful_shutdown(Some(grace));
    });
    axum_server::from_tcp_rustls(listener, rustls)?
        .handle(handle)
        .serve(router(state).into_make_service())
        .await?;
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
