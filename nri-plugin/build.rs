//! Generates the protobuf messages and async ttrpc services of the NRI subset
//! in `proto/api.proto` with pure-Rust codegen (no `protoc` needed).

use std::path::Path;

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    let out = std::env::var("OUT_DIR").map_err(std::io::Error::other)?;
    Codegen::new()
        .out_dir(&out)
        .input("proto/api.proto")
        .include("proto")
        .rust_protobuf()
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ProtobufCustomize::default())
        .run()?;
    // The generated files start with inner attributes and
    // doc comments (`#![allow(..)]`, `//!`),
    // which `include!` rejects; src/proto/mod.rs carries them instead.
    for name in ["api.rs", "api_ttrpc.rs"] {
        let path = Path::new(&out).join(name);
        let text = std::fs::read_to_string(&path)?;
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                !(l.starts_with("#![") || l.starts_with("//!"))
            })
            .collect();
        std::fs::write(&path, kept.join("\n"))?;
    }
    Ok(())
}
