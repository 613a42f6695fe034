//! The connection to the runtime: dial its NRI socket, serve the Plugin
//! service on conn 1, register on conn 2, and start over with exponential
//! backoff whenever the runtime closes the connection or restarts.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::net::UnixStream;
use ttrpc::r#async::transport::{Listener, Socket};
use ttrpc::r#async::{Client, Server};

use crate::mux::{Limits, Mux, MuxError, PLUGIN_CONN, RUNTIME_CONN};
use crate::plugin::{Core, PluginService};
use crate::proto::{api, api_ttrpc};

/// The NRI API revision the proto subset follows, sent at registration
/// (runtimes only log it).
pub const NRI_API_VERSION: &str = "v0.12.2";

/// How to reach and stay connected to the runtime.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub socket: PathBuf,
    /// How long RegisterPlugin may take (the runtime's default is 5 s).
    pub registration_timeout: Duration,
    /// First delay before reconnecting; doubled after each failure.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub limits: Limits,
}

impl ConnectOptions {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            registration_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

/// Why a session with the runtime ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the plugin service: {0}")]
    Serve(ttrpc::Error),
    #[error("registering with the runtime: {0}")]
    Register(String),
    #[error("connection ended: {0}")]
    Ended(MuxError),
}

/// The result of one session: whether registration succeeded, and why it ended.
#[derive(Debug)]
pub struct SessionEnd {
    pub registered: bool,
    pub error: SessionError,
}

/// Stays connected to the runtime until `shutdown` resolves.
pub async fn run(core: Arc<Core>, opts: ConnectOptions, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut delay = opts.backoff_initial;
    loop {
        let session = connect_once(core.clone(), &opts);
        let end = tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return;
            }
            end = session => end,
        };
        if end.registered {
            // It worked until the runtime went away: come back quickly.
            delay = opts.backoff_initial;
            tracing::warn!(error = %end.error, "lost the runtime; reconnecting");
        } else {
            tracing::warn!(error = %end.error, retry_in = ?delay, "could not register with the runtime");
        }
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return;
            }
            _ = tokio::time::sleep(delay) => {}
        }
        if !end.registered {
            delay = (delay * 2).min(opts.backoff_max);
        }
    }
}

/// One session: dial, serve, register, wait for the end.
pub async fn connect_once(core: Arc<Core>, opts: &ConnectOptions) -> SessionEnd {
    match UnixStream::connect(&opts.socket).await {
        Ok(stream) => session(core, stream, opts).await,
        Err(source) => SessionEnd {
            registered: false,
            error: SessionError::Connect {
                path: opts.socket.clone(),
                source,
            },
        },
    }
}

/// A ttrpc listener that yields `conn` once and then stays pending: if the
/// stream ended, the server's accept task would end and a later
/// `Server::shutdown` would panic on its closed channel.
pub fn single_conn_listener<S>(conn: S) -> Listener
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + 'static,
{
    let once = futures::stream::once(async move { Ok::<S, std::io::Error>(conn) });
    Listener::new(once.chain(futures::stream::pending()))
}

/// Runs the protocol over an established connection.
pub async fn session(core: Arc<Core>, stream: UnixStream, opts: &ConnectOptions) -> SessionEnd {
    let mut mux = Mux::start(stream, &[PLUGIN_CONN, RUNTIME_CONN], opts.limits);
    let (Some(plugin_conn), Some(runtime_conn)) = (mux.take(PLUGIN_CONN), mux.take(RUNTIME_CONN))
    else {
        return SessionEnd {
            registered: false,
            error: SessionError::Ended(MuxError::Closed),
        };
    };
    let service = Arc::new(PluginService::new(core.clone()));
    let mut server = Server::new()
        .register_service(api_ttrpc::create_plugin(service.clone()))
        .add_listener(single_conn_listener(plugin_conn));
    // Serve first: Configure may arrive before the RegisterPlugin reply.
    if let Err(e) = server.start().await {
        return SessionEnd {
            registered: false,
            error: SessionError::Serve(e),
        };
    }
    let client = api_ttrpc::RuntimeClient::new(Client::new(Socket::new(runtime_conn)));
    let mut req = api::RegisterPluginRequest::new();
    req.plugin_name = core.plugin_name.clone();
    req.plugin_idx = core.plugin_index.clone();
    req.NRI_version = NRI_API_VERSION.to_owned();
    let timeout = opts.registration_timeout;
    let ctx = ttrpc::context::with_timeout(timeout.as_nanos().try_into().unwrap_or(i64::MAX));
    let registered = tokio::select! {
        r = tokio::time::timeout(timeout, client.register_plugin(ctx, &req)) => match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SessionError::Register(e.to_string())),
            Err(_) => Err(SessionError::Register(format!("no answer within {timeout:?}"))),
        },
        e = mux.closed() => Err(SessionError::Ended(e)),
    };
    let end = match registered {
        Ok(()) => {
            tracing::info!(
                name = %core.plugin_name, index = %core.plugin_index,
                socket = %opts.socket.display(), "registered with the runtime"
            );
            let shutdown = service.shutdown.clone();
            let reason = tokio::select! {
                e = mux.closed() => e,
                _ = shutdown.notified() => {
                    // The runtime says it is going down; it closes the socket next.
                    mux.closed().await
                }
            };
            SessionEnd {
                registered: true,
                error: SessionError::Ended(reason),
            }
        }
        Err(error) => SessionEnd {
            registered: false,
            error,
        },
    };
    drop(client);
    drop(mux);
    // The conns are closed now, so the server's connection task ends promptly.
    let _ = server.shutdown().await;
    end
}
