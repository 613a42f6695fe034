//! The plugin against a runtime that sends garbage, at volume: oversized
//! and truncated mux frames, oversized ttrpc messages, frames for conns that
//! are not open, undecodable requests, random bytes. Each session must end
//! (or be ignored) without a panic or an allocation of what a header claims,
//! the plugin must come back for the next one, and after hundreds of them a
//! well-behaved runtime still gets a working plugin. Its own test binary, so
//! the memory it measures is this test's alone.

mod common;

use std::time::Duration;

use common::*;
use kubefence_nri::connection::{self, ConnectOptions};
use kubefence_nri::decide::OnInvalid;
use kubefence_nri::mux::{frame_message, PLUGIN_CONN, RUNTIME_CONN, TTRPC_MESSAGE_MAX};
use kubefence_shared::envelope::Signer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SESSIONS: usize = 350;

fn frame_header(conn: u32, len: u32) -> Vec<u8> {
    let mut h = conn.to_be_bytes().to_vec();
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// ttrpc message header: u32 length, u32 stream id, u8 type (1 request), u8 flags.
fn ttrpc_header(len: u32, stream: u32) -> Vec<u8> {
    let mut h = len.to_be_bytes().to_vec();
    h.extend_from_slice(&stream.to_be_bytes());
    h.extend_from_slice(&[1, 0]);
    h
}

/// A cheap deterministic byte stream (xorshift), for "random" garbage.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the runtime sends in session `i`, and whether the plugin must drop
/// the connection by itself (rather than wait for more).
fn hostile(i: usize) -> (&'static str, Vec<u8>, bool) {
    match i % 8 {
        // A header claiming 4 GiB: refused on the header alone.
        0 => ("frame-4GiB", frame_header(PLUGIN_CONN, u32::MAX), true),
        // Just over the 4 MiB + 10 frame limit, with a little payload.
        1 => {
            let mut b = frame_header(PLUGIN_CONN, (TTRPC_MESSAGE_MAX + 11) as u32);
            b.extend(noise(i as u64, 512));
            ("frame-over-limit", b, true)
        }
        // A frame that promises 1000 bytes and delivers 10.
        2 => {
            let mut b = frame_header(RUNTIME_CONN, 1000);
            b.extend(noise(i as u64, 10));
            ("frame-truncated", b, false)
        }
        // A ttrpc message over ttrpc's 4 MiB, sent whole: ttrpc discards
        // the body page by page and answers with an error, on a connection
        // that stays up.
        3 => {
            let mut msg = ttrpc_header((TTRPC_MESSAGE_MAX + 1) as u32, 1);
            msg.resize(msg.len() + TTRPC_MESSAGE_MAX + 1, 0xa5);
            (
                "ttrpc-over-limit",
                frame_message(PLUGIN_CONN, &msg, 1 << 20),
                false,
            )
        }
        // Frames for conns that are not open: read and dropped.
        4 => {
            let mut b = Vec::new();
            for conn in [0u32, 3, 0xffff_ffff] {
                b.extend(frame_header(conn, 256));
                b.extend(noise(conn as u64 + 1, 256));
            }
            ("unknown-conns", b, false)
        }
        // A well-framed request for Configure whose payload is not protobuf.
        5 => {
            let body = noise(i as u64, 300);
            let mut msg = ttrpc_header(body.len() as u32, 1);
            msg.extend(&body);
            (
                "ttrpc-garbage-request",
                frame_message(PLUGIN_CONN, &msg, 4096),
                false,
            )
        }
        // Random bytes where frames should be.
        6 => ("random-64KiB", noise(i as u64 * 7919, 64 * 1024), false),
        // Many tiny frames, each a fragment of nothing.
        _ => {
            let mut b = Vec::new();
            for k in 0..2000u32 {
                b.extend(frame_header(PLUGIN_CONN, 1));
                b.push(k as u8);
            }
            ("tiny-frames", b, false)
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_hundreds_of_hostile_runtime_sessions() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let mut opts = ConnectOptions::new(&rt.socket);
    opts.backoff_initial = Duration::from_millis(1);
    opts.backoff_max = Duration::from_millis(5);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let plugin = tokio::spawn(connection::run(
        core(&signer, OnInvalid::Reject),
        opts,
        async {
            let _ = stop_rx.await;
        },
    ));

    let mut rss_after_warmup = 0;
    let mut dropped_by_plugin = 0;
    for i in 0..SESSIONS {
        if i == 40 {
            rss_after_warmup = rss_kib();
        }
        let (what, bytes, must_close) = hostile(i);
        let mut sock = rt.accept_raw().await;
        // The plugin may already have closed (e.g. after a 4 GiB header):
        // a failed write is part of the game.
        let _ = sock.write_all(&bytes).await;
        let _ = sock.flush().await;
        // Wait for the plugin to hang up on its own, draining what it sends
        // (its RegisterPlugin request); give up after a moment otherwise.
        let closed = tokio::time::timeout(
            Duration::from_millis(if must_close { 5000 } else { 20 }),
            async {
                let mut sink = vec![0u8; 4096];
                loop {
                    match sock.read(&mut sink).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            },
        )
        .await
        .is_ok();
        if must_close {
            assert!(
                closed,
                "session {i} ({what}): the plugin kept the connection open"
            );
        }
        dropped_by_plugin += usize::from(closed);
        drop(sock);
        assert!(
            !plugin.is_finished(),
            "session {i} ({what}): the plugin task ended"
        );
    }
    let rss_end = rss_kib();

    // A well-behaved runtime after all that: registration and a decision.
    let conn = rt.accept(false).await;
    assert_eq!(conn.registration.plugin_name, "kubefence");
    conn.configure("containerd", "v2.3.0", "v0.12.2")
        .await
        .unwrap();
    let p = pod("team-a", "nono-runc", Some(decision(&signer, "team-a")));
    let c = container(&p, "app", &["/app"]);
    let rsp = conn.create(&create_request(p, c)).await.unwrap();
    assert!(rsp.adjust.is_some(), "the plugin no longer wraps");
    conn.close().await;

    // Hundreds of sessions that each declared up to 4 GiB: if a header's
    // length were allocated, or anything kept per session, RSS would grow by
    // megabytes per session; allow 16 MiB of allocator and runtime noise.
    let growth = rss_end.saturating_sub(rss_after_warmup);
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB over {} hostile sessions ({rss_after_warmup} -> {rss_end} KiB)",
        SESSIONS - 40
    );
    eprintln!(
        "{SESSIONS} hostile sessions, {dropped_by_plugin} ended by the plugin; RSS {rss_after_warmup} -> {rss_end} KiB"
    );

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), plugin)
        .await
        .expect("plugin did not stop")
        .unwrap();
}
