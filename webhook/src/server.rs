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
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, SemaphorePermit};

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
    pub limits: Arc<Limits>,
}

/// What one client may cost: its request's size and time, and a share of
/// the bytes all requests may buffer together. Without these a few clients
/// that send slowly, or stop halfway, would hold memory until the process
/// is killed, and with it admission for the whole cluster.
pub struct Limits {
    pub max_body_bytes: usize,
    /// For the request's headers (and an idle HTTP/1.1 connection's next
    /// request), then again for its body.
    pub request_timeout: Duration,
    pub max_buffered_body_bytes: usize,
    /// One permit per body byte held.
    buffered: Semaphore,
}

impl Limits {
    pub fn new(
        max_body_bytes: usize,
        request_timeout: Duration,
        max_buffered_body_bytes: usize,
    ) -> Self {
        Self {
            max_body_bytes,
            request_timeout,
            max_buffered_body_bytes,
            buffered: Semaphore::new(max_buffered_body_bytes.min(Semaphore::MAX_PERMITS)),
        }
    }

    /// From the validated configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self::new(
            config.max_body_bytes,
            config.request_timeout,
            config.max_buffered_body_bytes,
        )
    }
}

/// How much longer than request_timeout a connection may send nothing.
const IDLE_GRACE: Duration = Duration::from_secs(2);

/// Why a body was not read.
#[derive(Debug)]
enum BodyError {
    TooLarge,
    Busy,
    Read(String),
}

/// Reads a body within `max_body_bytes`, taking a permit per byte of
/// buffer it allocates, as the bytes arrive: when all requests together
/// hold `max_buffered_body_bytes`, the request is refused instead of waited
/// for. The buffer grows geometrically but never past the declared length,
/// and its whole capacity is what is counted.
async fn read_body(
    body: Body,
    declared: Option<u64>,
    limits: &Limits,
) -> Result<(Vec<u8>, Option<SemaphorePermit<'_>>), BodyError> {
    let ceiling = declared
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(limits.max_body_bytes)
        .min(limits.max_body_bytes);
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    let mut held: Option<SemaphorePermit<'_>> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let needed = buf.len() + data.len();
        if needed > limits.max_body_bytes {
            return Err(BodyError::TooLarge);
        }
        if needed > buf.capacity() {
            let cap = needed.max((buf.capacity() * 2).min(ceiling));
            let extra = u32::try_from(cap - buf.capacity()).map_err(|_| BodyError::TooLarge)?;
            let permit = limits
                .buffered
                .try_acquire_many(extra)
                .map_err(|_| BodyError::Busy)?;
            match held.as_mut() {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            buf.reserve_exact(cap - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf, held))
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
    let limits = &st.limits;
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body exceeds the {} byte limit (max_body_bytes)\n",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let reply = if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        Err(too_large())
    } else {
        match tokio::time::timeout(limits.request_timeout, read_body(body, declared, limits)).await {
            // The permit is held until the reply is built.
            Ok(Ok((bytes, _permit))) => {
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
            Ok(Err(BodyError::TooLarge)) => Err(too_large()),
            Ok(Err(BodyError::Busy)) => Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the webhook already holds {} bytes of request bodies (max_buffered_body_bytes); retry\n",
                    limits.max_buffered_body_bytes
                ),
            )),
            Ok(Err(BodyError::Read(e))) => Err(plain(
                StatusCode::BAD_REQUEST,
                format!("reading request body: {e}\n"),
            )),
            Err(_) => Err(plain(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} s (request_timeout_secs)\n",
                    limits.request_timeout.as_secs()
                ),
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
                StatusCode::REQUEST_TIMEOUT => "timeout",
                StatusCode::SERVICE_UNAVAILABLE => "busy",
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
    // Slow or silent clients: hyper closes an HTTP/1.1 connection whose
    // request head does not arrive in request_timeout; bodies are timed in
    // `review` (408). A connection that sends nothing at all is closed a
    // little later (under TLS, so handshake and all; later, so that a
    // stalled body gets its 408 rather than a reset). Idle HTTP/2
    // connections are pinged at half the timeout, so a live peer's acks keep
    // them open and a dead one is dropped.
    let timeout = state.limits.request_timeout;
    let silence = timeout + IDLE_GRACE;
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls)
        .acceptor(crate::idle::IdleAcceptor::new(silence));
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle);
    let builder = server.http_builder();
    builder.http1().header_read_timeout(timeout);
    builder
        .http2()
        .keep_alive_interval(Some(timeout / 2))
        .keep_alive_timeout(timeout);
    server.serve(router(state).into_make_service()).await?;
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
