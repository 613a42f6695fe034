//! The `kubefence-nri` binary: help, `check`, config errors, and a full
//! run against the runtime double ending with SIGTERM.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use kubefence_shared::envelope::Signer;

const BIN: &str = env!("CARGO_BIN_EXE_kubefence-nri");

/// A node layout: host dir with nono and a catalog, a key directory, and a
/// config file pointing at them and at `socket`.
fn node(dir: &Path, signer: &Signer, socket: &Path) -> std::path::PathBuf {
    let host = dir.join("opt");
    std::fs::create_dir_all(host.join("profiles")).unwrap();
    let nono = host.join("nono");
    std::fs::write(&nono, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&nono, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        host.join("profiles/catalog.json"),
        r#"{"strictest":"strict","profiles":{"strict":{},"web":{},"default":{}}}"#,
    )
    .unwrap();
    for p in ["strict", "web", "default"] {
        std::fs::write(host.join(format!("profiles/{p}.json")), "{}").unwrap();
    }
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("webhook.pem"), signer.public_pem().unwrap()).unwrap();
    let config = dir.join("nri.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {:?}\nhost_dir = {:?}\npublic_keys = {:?}\nlog_format = \"compact\"\n",
            socket, host, keys
        ),
    )
    .unwrap();
    config
}

#[test]
fn help_documents_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for key in [
        "socket",
        "plugin_name",
        "plugin_index",
        "sandbox_handlers",
        "host_dir",
        "container_dir",
        "public_keys",
        "on_invalid",
        "max_age_seconds",
        "max_skew_seconds",
        "validator",
        "log_format",
        "assume_nri_version",
    ] {
        assert!(help.contains(key), "help lacks {key}");
        let flag = format!("--{}", key.replace('_', "-"));
        let flag = if key == "sandbox_handlers" {
            "--sandbox-handler".to_owned()
        } else {
            flag
        };
        assert!(help.contains(&flag), "help lacks {flag}");
    }
}

#[test]
fn check_passes_on_a_complete_node_and_fails_clearly_otherwise() {
    let dir = TempDir::new("cli-check");
    let signer = Signer::generate().unwrap();
    let config = node(dir.path(), &signer, &dir.path().join("nri.sock"));
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for name in ["config", "landlock", "nono", "keys", "catalog"] {
        assert!(text.contains(&format!("ok   {name}: ")), "{text}");
    }

    std::fs::remove_file(dir.path().join("opt/nono")).unwrap();
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL nono: "));

    let out = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--plugin-index",
            "7",
            "check",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin_index \"7\""));

    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/nri.toml", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn runs_against_the_runtime_and_stops_on_sigterm() {
    let rt = FakeRuntime::bind();
    let signer = Signer::generate().unwrap();
    let config = node(rt.dir.path(), &signer, &rt.socket);
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let conn = rt.accept(false).await;
    assert_eq!(conn.registration.plugin_name, "kubefence");
    conn.configure("containerd", "v2.3.0", "v0.12.2")
        .await
        .unwrap();
    let p = pod("team-a", "nono-runc", Some(decision(&signer, "team-a")));
    let c = container(&p, "app", &["/app"]);
    let rsp = conn.create(&create_request(p, c)).await.unwrap();
    assert_eq!(rsp.adjust.get_or_default().args[0], "/nono/nono");

    // SAFETY: signalling our own child process by its pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, out, err)
    })
    .await
    .unwrap();
    let (status, stdout, stderr) = status;
    assert!(status.success(), "exit {status:?}; stderr: {stderr}");
    // Audit on stdout, one JSON object per line; logs on stderr.
    let audit: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(audit.len(), 1, "{stdout}");
    assert_eq!(audit[0]["outcome"], "inject");
    assert_eq!(audit[0]["profile"], "web");
    assert!(stderr.contains("registered with the runtime"), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    conn.close().await;
}
