//! `cargo xtask setup`: idempotent preparation of a Debian machine.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::util::{host_cargo, is_root, output, run as sh};

/// Debian packages: LLVM 22 for bpf-linker, eBPF/network tools for the tests,
/// and the DHCP clients/servers the interoperability tests drive.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "clang",
    "bpftool",
    "ethtool",
    "nftables",
    "iproute2",
    "tcpdump",
    "isc-dhcp-client",
    "dhcpcd5",
    "udhcpc",
    "busybox",
    "kea-dhcp4-server",
    "dnsmasq-base",
    // cargo xtask deb and its test: dpkg-shlibdeps, the package linter.
    "dpkg-dev",
    "lintian",
];

/// bpf-linker must match nightly rustc's LLVM (22).
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPFFS: &str = "/sys/fs/bpf";

pub fn run() -> Result<()> {
    let root = is_root();
    // Steps that need root and could not be done: reported together at the end.
    let mut needs_root: Vec<String> = Vec::new();

    // 1. apt packages.
    apt_packages(root, &mut needs_root)?;
    // 2. rust-src for the nightly toolchain (build-std=core).
    rust_src()?;
    // 3. bpf-linker 0.13 built against Debian's LLVM 22.
    bpf_linker(&mut needs_root)?;
    // 4. cargo-fuzz: the fuzz target is built (and run briefly) by `xtask test`.
    cargo_fuzz()?;
    // 5. bpffs, where the daemon pins its maps and program link.
    bpffs(root, &mut needs_root)?;

    if !needs_root.is_empty() {
        eprintln!("xtask setup: not root; run as root (or do by hand):");
        for s in &needs_root {
            eprintln!("    {s}");
        }
        bail!("setup incomplete: root needed");
    }
    say("done");
    Ok(())
}

/// Installs the missing [`APT_PACKAGES`] (as root; otherwise records the
/// command in `needs_root`).
fn apt_packages(root: bool, needs_root: &mut Vec<String>) -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        say("apt packages: all installed, skipped");
    } else if root {
        say(&format!("apt packages: installing {}", missing.join(" ")));
        sh(Command::new("apt-get").arg("update"))?;
        sh(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(&missing))?;
    } else {
        needs_root.push(format!(
            "apt-get update && apt-get install -y {}",
            missing.join(" ")
        ));
    }
    Ok(())
}

/// Adds rust-src to the nightly toolchain (build-std=core) if missing.
fn rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|l| l.trim().starts_with("rust-src")) {
        say("rust-src (nightly): installed, skipped");
    } else {
        say("rust-src (nightly): installing");
        sh(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// Builds bpf-linker against Debian's LLVM 22 unless 0.13 is installed
/// (needs LLVM 22 first; otherwise records that in `needs_root`).
fn bpf_linker(needs_root: &mut Vec<String>) -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains("0.13") {
        say(&format!("bpf-linker: {}, skipped", version.trim()));
    } else if !Path::new(LLVM_PREFIX).join("bin/llvm-config").exists() {
        // Only reachable when apt could not run (not root): say what is missing.
        needs_root.push(format!(
            "(LLVM 22 at {LLVM_PREFIX}, from llvm-22-dev, before bpf-linker can be built)"
        ));
    } else {
        say(&format!(
            "bpf-linker: installing {BPF_LINKER_VERSION} (about a minute)"
        ));
        // Both variables: llvm-config on PATH may be another LLVM version.
        let mut cmd = host_cargo();
        sh(cmd
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
            .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
            .args(["--no-default-features", "--features", "llvm-22"]))?;
    }
    Ok(())
}

/// Installs cargo-fuzz if missing.
fn cargo_fuzz() -> Result<()> {
    if output(Command::new("cargo").args(["fuzz", "--version"])).is_some() {
        say("cargo-fuzz: installed, skipped");
    } else {
        say("cargo-fuzz: installing (about two minutes)");
        let mut cmd = host_cargo();
        sh(cmd.args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// Mounts bpffs at [`BPFFS`] if it is not (as root; otherwise records the
/// command in `needs_root`).
fn bpffs(root: bool, needs_root: &mut Vec<String>) -> Result<()> {
    let mounted = Command::new("mountpoint")
        .args(["-q", BPFFS])
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        say(&format!("bpffs: {BPFFS} mounted, skipped"));
    } else if root {
        say(&format!("bpffs: mounting {BPFFS}"));
        sh(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    } else {
        needs_root.push(format!("mount -t bpf bpf {BPFFS}"));
    }
    Ok(())
}

fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

fn say(msg: &str) {
    eprintln!("xtask setup: {msg}");
}
