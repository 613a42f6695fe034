//! Arbitrary bytes through the NRI wire path of the plugin:
//!
//! 1. as the trunk of a real [`Mux`] (conns 1 and 2 open): what each conn
//!    receives must equal a reference frame decoder's reassembly, and the
//!    mux must stop for the reason the reference gives;
//! 2. what conn 1 received, read as ttrpc messages with ttrpc's own reader,
//!    decoded as `ttrpc::Request` and dispatched by method to the plugin's
//!    handlers (Configure, Synchronize, CreateContainer,
//!    ValidateContainerAdjustment, StateChange);
//! 3. the same bytes decoded directly as each of those request types and
//!    run through the decision path after a good Configure;
//! 4. the same bytes written by a conn's user: the frames the mux sends
//!    must be at most `out_payload` long and reassemble to the complete
//!    ttrpc messages written.
//!
//! Audit records go to stdout: run with `-close_fd_mask=1`.

#![no_main]

use std::sync::{Arc, OnceLock};

use kubefence_nri::decide::OnInvalid;
use kubefence_nri::mux::{
    frame_message, Limits, Mux, MuxError, FRAME_HEADER_LEN, PLUGIN_CONN, RUNTIME_CONN,
    TTRPC_HEADER_LEN,
};
use kubefence_nri::plugin::{container_view, pod_view, Core, PluginService};
use kubefence_nri::proto::api;
use libfuzzer_sys::fuzz_target;
use protobuf::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVICE: &str = "nri.pkg.api.v1alpha1.Plugin";
const MAX_INPUT: usize = 64 * 1024;

fn core() -> &'static Arc<Core> {
    static C: OnceLock<Arc<Core>> = OnceLock::new();
    C.get_or_init(|| kubefence_fuzz::nri::core(OnInvalid::Reject))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static R: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    R.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

/// Reference decoder: conn 1 and conn 2 streams, and why it stopped.
fn reference(mut data: &[u8], max_frame: usize) -> (Vec<u8>, Vec<u8>, MuxError) {
    let (mut c1, mut c2) = (Vec::new(), Vec::new());
    loop {
        if data.len() < FRAME_HEADER_LEN {
            return (c1, c2, MuxError::Closed);
        }
        let conn = u32::from_be_bytes(data[0..4].try_into().unwrap());
        let len = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
        if len > max_frame {
            return (
                c1,
                c2,
                MuxError::FrameTooLarge {
                    conn,
                    len,
                    max: max_frame,
                },
            );
        }
        let Some(payload) = data.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return (c1, c2, MuxError::Closed);
        };
        match conn {
            PLUGIN_CONN => c1.extend_from_slice(payload),
            RUNTIME_CONN => c2.extend_from_slice(payload),
            _ => {}
        }
        data = &data[FRAME_HEADER_LEN + len..];
    }
}

/// Complete ttrpc messages at the start of `data`, and whether the mux must
/// stop on an oversized one.
fn messages(mut data: &[u8], max_message: usize) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    while data.len() >= TTRPC_HEADER_LEN {
        let len = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
        if len > max_message {
            return (out, true);
        }
        let Some(msg) = data.get(..TTRPC_HEADER_LEN + len) else {
            break;
        };
        out.push(msg);
        data = &data[TTRPC_HEADER_LEN + len..];
    }
    (out, false)
}

fn configured(core: &Arc<Core>) -> PluginService {
    let svc = PluginService::new(core.clone());
    let mut cfg = api::ConfigureRequest::new();
    cfg.runtime_name = "containerd".into();
    cfg.runtime_version = "v2.2.1".into();
    cfg.NRI_version = "v0.12.2".into();
    let _ = svc.configure_response(&cfg);
    svc
}

/// Runs one decoded request through the plugin's handler for `method`.
fn dispatch(svc: &PluginService, method: &str, payload: &[u8]) {
    match method {
        "Configure" => {
            if let Ok(req) = api::ConfigureRequest::parse_from_bytes(payload) {
                let rsp = svc.configure_response(&req);
                let _ = rsp.write_to_bytes();
            }
        }
        "Synchronize" => {
            if let Ok(req) = api::SynchronizeRequest::parse_from_bytes(payload) {
                let _ = svc.synchronize_response(req).write_to_bytes();
            }
        }
        "CreateContainer" => {
            if let Ok(req) = api::CreateContainerRequest::parse_from_bytes(payload) {
                if let Ok(rsp) = svc.create_container_response(&req) {
                    let _ = rsp.write_to_bytes();
                }
            }
        }
        "ValidateContainerAdjustment" => {
            if let Ok(req) = api::ValidateContainerAdjustmentRequest::parse_from_bytes(payload) {
                let _ = svc.validate_response(&req).write_to_bytes();
            }
        }
        "StateChange" => {
            if let Ok(req) = api::StateChangeEvent::parse_from_bytes(payload) {
                let _ = pod_view(&req.pod);
                let _ = container_view(&req.container);
                let _ = req.event.enum_value();
            }
        }
        _ => {}
    }
}

async fn inbound(data: &[u8], limits: Limits) {
    let (mut peer, trunk) = tokio::io::duplex(data.len().max(1));
    let mut mux = Mux::start(trunk, &[PLUGIN_CONN, RUNTIME_CONN], limits);
    let mut c1 = mux.take(PLUGIN_CONN).unwrap();
    let mut c2 = mux.take(RUNTIME_CONN).unwrap();
    peer.write_all(data).await.unwrap();
    drop(peer);
    let end = mux.closed().await;
    drop(mux);
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    c1.read_to_end(&mut got1).await.unwrap();
    c2.read_to_end(&mut got2).await.unwrap();
    let (want1, want2, want_end) = reference(data, limits.max_frame);
    assert_eq!(end, want_end, "mux stopped for another reason");
    assert_eq!(got1, want1, "conn 1 stream differs from the reference");
    assert_eq!(got2, want2, "conn 2 stream differs from the reference");

    // ttrpc on conn 1, as the plugin's ttrpc server reads it.
    let svc = PluginService::new(core().clone());
    let mut rd: &[u8] = &got1;
    while let Ok(msg) = ttrpc::proto::GenMessage::read_from(&mut rd).await {
        if msg.header.type_ != ttrpc::proto::MESSAGE_TYPE_REQUEST {
            continue;
        }
        if let Ok(req) = ttrpc::Request::parse_from_bytes(&msg.payload) {
            if req.service == SERVICE {
                dispatch(&svc, &req.method, &req.payload);
            }
        }
    }
}

async fn outbound(data: &[u8], limits: Limits) {
    let (mut peer, trunk) = tokio::io::duplex(4 * MAX_INPUT);
    let mut mux = Mux::start(trunk, &[PLUGIN_CONN, RUNTIME_CONN], limits);
    let mut c2 = mux.take(RUNTIME_CONN).unwrap();
    drop(mux.take(PLUGIN_CONN));
    c2.write_all(data).await.unwrap();
    drop(c2);
    let (msgs, oversized) = messages(data, limits.max_message);
    let want: Vec<u8> = msgs
        .iter()
        .flat_map(|m| frame_message(RUNTIME_CONN, m, limits.out_payload))
        .collect();
    let mut got = vec![0u8; want.len()];
    peer.read_exact(&mut got)
        .await
        .expect("the mux sent every complete message");
    assert_eq!(got, want, "outgoing frames differ from frame_message");
    let mut rest = &got[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        assert!(
            len <= limits.out_payload.max(1),
            "frame over the payload limit"
        );
        rest = &rest[FRAME_HEADER_LEN + len..];
    }
    if oversized {
        assert!(matches!(
            mux.closed().await,
            MuxError::MessageTooLarge { .. }
        ));
    }
    peer.shutdown().await.unwrap();
    let end = mux.closed().await;
    let mut extra = Vec::new();
    let _ = peer.read_to_end(&mut extra).await;
    assert!(
        extra.is_empty(),
        "the mux sent {} bytes beyond the messages ({end:?})",
        extra.len()
    );
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let limits = if data.first().is_some_and(|b| b & 1 == 1) {
        Limits::go_runtime()
    } else {
        Limits::default()
    };
    runtime().block_on(async {
        inbound(data, limits).await;
        outbound(data, limits).await;
    });

    // The request types straight from the bytes, through the decision path.
    let svc = configured(core());
    for method in [
        "Configure",
        "Synchronize",
        "CreateContainer",
        "ValidateContainerAdjustment",
        "StateChange",
    ] {
        dispatch(&svc, method, data);
    }
});
