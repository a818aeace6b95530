//! build-ebpf, build, run, test.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, run as sh, target_dir, workspace_root};

/// Environment that a `cargo run` of xtask (stable) leaks into children and
/// that would make the nightly eBPF build use the wrong compiler or flags.
const TOOLCHAIN_ENV: &[&str] = &[
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTUP_TOOLCHAIN",
    "CARGO",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTC",
];

/// RUSTFLAGS of the eBPF build: BTF lets bpftool print the counter field names.
const EBPF_RUSTFLAGS: &str = "-Cdebuginfo=2 -Clink-arg=--btf";

/// Extra arguments for the libtest harness of `cargo xtask test`, after `--`
/// (e.g. "--test-threads=1" once the namespace tests need it).
const TEST_HARNESS_ARGS: &[&str] = &["--test-threads=1"];

/// Path of the eBPF object produced by `build_ebpf`.
pub fn ebpf_object() -> PathBuf {
    target_dir().join("bpfel-unknown-none/release/isodhcp-ebpf")
}

/// Path of the release daemon binary.
pub fn daemon_bin() -> PathBuf {
    target_dir().join("release/isodhcp")
}

/// Builds the XDP object with nightly and bpf-linker; returns its path.
/// `xdp_debug` compiles in the opt-in debug events (the
/// `debug-events` feature of isodhcp-ebpf).
pub fn build_ebpf_with(xdp_debug: bool) -> Result<PathBuf> {
    build_ebpf_in(xdp_debug, &target_dir())
}

/// Where `xtask test` builds the debug-events variant of the XDP object, so
/// that it never replaces the one the daemon embeds.
fn debug_target_dir() -> PathBuf {
    target_dir().join("ebpf-debug")
}

/// [`build_ebpf_with`] into the cargo target directory `target`.
fn build_ebpf_in(xdp_debug: bool, target: &Path) -> Result<PathBuf> {
    let mut cmd = Command::new("rustup");
    for k in TOOLCHAIN_ENV {
        cmd.env_remove(k);
    }
    cmd.current_dir(workspace_root())
        .env("RUSTFLAGS", EBPF_RUSTFLAGS)
        .env("CARGO_TARGET_DIR", target)
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "-p",
            "isodhcp-ebpf",
            "--release",
        ])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"]);
    if xdp_debug {
        cmd.args(["--features", "debug-events"]);
    }
    sh(&mut cmd).context("eBPF build failed (run `cargo xtask setup` for the toolchain)")?;
    let obj = target.join("bpfel-unknown-none/release/isodhcp-ebpf");
    if !obj.is_file() {
        bail!("eBPF build succeeded but {} is missing", obj.display());
    }
    Ok(obj)
}

/// build-ebpf, then the release daemon with the object embedded.
pub fn build() -> Result<PathBuf> {
    build_with(false)
}

/// [`build`], with the XDP debug events compiled in when `xdp_debug`.
pub fn build_with(xdp_debug: bool) -> Result<PathBuf> {
    let obj = build_ebpf_with(xdp_debug)?;
    sh(cargo().env("ISODHCP_EBPF_OBJ", &obj).args([
        "build",
        "--release",
        "-p",
        "isodhcp",
        "-p",
        "isodhcp-loadgen",
    ]))?;
    Ok(daemon_bin())
}

/// build, then replace this process with the daemon.
pub fn run(args: &[String]) -> Result<()> {
    let bin = build()?;
    eprintln!("xtask: exec {} {}", bin.display(), args.join(" "));
    let err = Command::new(&bin).args(args).exec();
    Err(err).with_context(|| format!("cannot exec {}", bin.display()))
}

/// Seconds each fuzz target runs in `xtask test` (a smoke run; campaigns
/// are `cargo xtask fuzz`).
const FUZZ_SECONDS: u64 = 15;

/// setup, build, lints, a bounded fuzz run, then the whole workspace's tests
/// in release mode. The last line is the summed `N passed, N failed` of
/// every test binary; the exit code is cargo's.
pub fn test(args: &[String]) -> Result<()> {
    crate::setup::run()?;
    let bin = build()?;
    let obj = ebpf_object();
    // The debug-events variant too, so the verifier sees it on every run.
    let debug_obj = build_ebpf_in(true, &debug_target_dir())?;
    // The package the package_deb suite installs, upgrades and purges.
    let deb = crate::deb::package(&bin)?;
    // ARGS before a literal `--` go to cargo test, the rest to the harness.
    let (cargo_args, harness_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    if cargo_args.is_empty() {
        sh(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ]))?;
        crate::fuzz::smoke(FUZZ_SECONDS)?;
    }
    let mut cmd = cargo();
    cmd.env("ISODHCP_BIN", &bin)
        .env("ISODHCP_EBPF_OBJ", &obj)
        .env("ISODHCP_EBPF_DEBUG_OBJ", &debug_obj)
        .env("ISODHCP_DEB", &deb)
        .args(["test", "--release"]);
    // cargo ignores `-p` next to `--workspace`: test everything only when no package is named.
    let names_package = cargo_args
        .iter()
        .any(|a| a == "-p" || a.starts_with("--package") || (a.starts_with("-p") && a.len() > 2));
    if !names_package {
        cmd.arg("--workspace");
    }
    cmd.args(cargo_args);
    cmd.arg("--").args(TEST_HARNESS_ARGS).args(harness_args);
    crate::util::run_counting_tests(&mut cmd)
}
