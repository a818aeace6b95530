//! Embeds the XDP object: copies it into `$OUT_DIR/isodhcp-ebpf.o`, where
//! `system::xdp` picks it up with `aya::include_bytes_aligned!`.
//!
//! Source, in order: `$ISODHCP_EBPF_OBJ` (set by `cargo xtask build`; must
//! exist), else `<target>/bpfel-unknown-none/release/isodhcp-ebpf` if present
//! (built by `cargo xtask build-ebpf`), else an empty file: the daemon then
//! builds and runs without XDP and says so at runtime. This keeps plain
//! `cargo build`/`clippy` working without the nightly/bpf-linker toolchain.

use std::env;
use std::fs;
use std::path::PathBuf;

const OBJ_ENV: &str = "ISODHCP_EBPF_OBJ";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed={OBJ_ENV}");
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_DIR");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("isodhcp-ebpf.o");

    let source = match env::var_os(OBJ_ENV).filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                panic!("{OBJ_ENV}={} does not name a file", p.display());
            }
            Some(p)
        }
        None => Some(default_object()).filter(|p| p.is_file()),
    };

    match source {
        Some(src) => {
            // Only watch paths that exist: cargo reruns on every build for a missing one.
            println!("cargo::rerun-if-changed={}", src.display());
            fs::copy(&src, &out)
                .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", src.display(), out.display()));
        }
        None => {
            println!(
                "cargo::warning=no XDP object embedded (run `cargo xtask build`); \
                 the daemon will run with --xdp off"
            );
            fs::write(&out, b"").unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
        }
    }
}

/// `<target dir>/bpfel-unknown-none/release/isodhcp-ebpf`, as `cargo xtask build-ebpf` leaves it.
fn default_object() -> PathBuf {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("isodhcp lives in the workspace")
        .to_path_buf();
    let target = match env::var_os("CARGO_TARGET_DIR") {
        Some(d) if PathBuf::from(&d).is_absolute() => PathBuf::from(d),
        Some(d) => workspace.join(d),
        None => workspace.join("target"),
    };
    target.join("bpfel-unknown-none/release/isodhcp-ebpf")
}
