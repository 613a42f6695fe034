//! The floor for `scripts/bench-webhook.sh`: the webhook's own HTTPS stack
//! (axum-server over rustls with the webhook's `tls::server_config`, same
//! tokio runtime) answering every POST with a fixed AdmissionReview, after
//! reading the body as the webhook does. No parse, policy, signing or audit:
//! whatever the webhook costs above this is its own work.
//!
//! `cargo run --release -p kubefence-webhook --example floor -- 127.0.0.1:9443 DIR`
//! writes DIR/tls.crt (the CA to trust) and serves until killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, Limited};
use kubefence_webhook::tls::{self, CertStore};

const REPLY: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

async fn answer(body: Body) -> impl IntoResponse {
    let _ = Limited::new(body, 65536).collect().await;
    ([(header::CONTENT_TYPE, "application/json")], REPLY)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args.next().unwrap_or("127.0.0.1:9443".into()).parse()?;
    let dir = PathBuf::from(args.next().unwrap_or("floor-tls".into()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = tls::self_signed(&[listen.ip().to_string()])?;
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, cert)?;
    std::fs::write(&key_path, key)?;
    let certs = CertStore::load(&cert_path, &key_path)?;
    let config = tls::server_config(certs)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let app = Router::new().route("/mutate", post(answer));
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
        eprintln!("floor listening on https://{listen}");
        axum_server::bind_rustls(listen, rustls)
            .serve(app.into_make_service())
            .await
    })?;
    Ok(())
}
