//! `cargo xtask <command>`: developer tasks for the isodhcp workspace.
//!
//! Everything builds with `--release` so the artifacts of `build`, `run` and
//! `test` are shared.

mod bench;
mod build;
mod deb;
mod demo;
mod fuzz;
mod setup;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "isodhcp developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what a fresh Debian machine needs (apt packages, rust-src for
    /// nightly, bpf-linker 0.13, bpffs mount). Idempotent; needs root for apt/mount.
    Setup,
    /// Build the XDP object (nightly, bpfel-unknown-none, bpf-linker, BTF).
    BuildEbpf {
        /// Compile in the opt-in debug events (aya-log; one record per DHCP
        /// frame, logged by the daemon under the target `isodhcp::xdp`).
        #[arg(long)]
        xdp_debug: bool,
    },
    /// build-ebpf, then `cargo build --release -p isodhcp` with the object embedded.
    Build {
        /// As for build-ebpf.
        #[arg(long)]
        xdp_debug: bool,
    },
    /// build, then exec target/release/isodhcp with ARGS.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// setup, build, then `cargo test --workspace --release`.
    ///
    /// `cargo xtask test [-- CARGO_TEST_ARGS [-- HARNESS_ARGS]]`, e.g.
    /// `cargo xtask test -- -p isodhcp-tests -- --test-threads=1`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run isodhcp on a namespace lab with dhclient, dhcpcd and
    /// udhcpc clients; stays up SECS seconds (default 120) or until Ctrl-C.
    Demo {
        #[arg(long, default_value_t = 120)]
        secs: u64,
    },
    /// Benchmarks in a namespace lab, against kea-dhcp4 (and dnsmasq):
    /// `flood` (default; random-MAC DISCOVER flood with DORA probes),
    /// `dora` (leases/s, renewals/s, 1k→10k scale, start-up with 10k
    /// leases), `all`. Builds first; prints tables. Needs root.
    Bench(bench::BenchOpts),
    /// Fuzz campaign: every target of `fuzz/` (or `--target T`) for
    /// `--seconds` each (default 60) or `--runs N` executions; prints
    /// executions, execs/s and corpus size per target. Needs nightly and
    /// cargo-fuzz (`cargo xtask setup`).
    Fuzz(fuzz::FuzzOpts),
    /// Build the Debian package target/debian/isodhcp_VERSION_ARCH.deb
    /// (binary with the XDP object embedded, systemd unit, man page,
    /// maintainer scripts from dist/debian/); runs lintian when installed.
    Deb,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup => setup::run(),
        Cmd::BuildEbpf { xdp_debug } => build::build_ebpf_with(xdp_debug).map(|obj| {
            eprintln!("xtask: eBPF object: {}", obj.display());
        }),
        Cmd::Build { xdp_debug } => build::build_with(xdp_debug).map(|bin| {
            eprintln!("xtask: daemon: {}", bin.display());
        }),
        Cmd::Run { args } => build::run(&args),
        Cmd::Test { args } => build::test(&args),
        Cmd::Demo { secs } => crate::setup::run()
            .and_then(|()| build::build())
            .and_then(|bin| demo::demo(&bin, secs)),
        Cmd::Bench(opts) => bench::run(&opts),
        Cmd::Fuzz(opts) => fuzz::run(&opts),
        Cmd::Deb => deb::deb().map(|deb| {
            eprintln!("xtask: package: {}", deb.display());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A failed child command already printed its own output; keep its exit code.
            if let Some(util::ChildFailed(code)) = e.downcast_ref::<util::ChildFailed>() {
                eprintln!("xtask: {e:#}");
                return ExitCode::from(*code);
            }
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        match Cli::try_parse_from(v).unwrap().cmd {
            Cmd::Run { args } | Cmd::Test { args } => args,
            _ => panic!("unexpected command"),
        }
    }

    #[test]
    fn trailing_args_are_passed_through() {
        assert_eq!(
            args(&["x", "run", "--", "--iface", "eth1"]),
            ["--iface", "eth1"]
        );
        assert_eq!(args(&["x", "run", "--iface", "eth1"]), ["--iface", "eth1"]);
        assert_eq!(
            args(&["x", "test", "--", "-p", "isodhcp", "--", "--test-threads=1"]),
            ["-p", "isodhcp", "--", "--test-threads=1"]
        );
    }
}
