//! `cargo xtask demo`: a live lab with isodhcp and three stock DHCP clients.
//!
//! Builds the namespace lab of `isodhcp-tests` (server `srv0` 198.18.0.1/24, a
//! bridge in a switch namespace, three client namespaces), starts isodhcp in
//! the server namespace, brings the clients up with dhclient, dhcpcd and
//! udhcpc, prints their leases, the server's host routes, the daemon's own view
//! (`isodhcp --status`, `isodhcp --dump`) and the XDP verdict counters
//! (`bpftool map dump pinned <pin dir>/counters`), then stays up for
//! `secs` seconds or until Ctrl-C. The lab is ALWAYS torn down (RAII guards:
//! also on error and panic). Needs root. `ISODHCP_XDP` overrides `--xdp`
//! (default `auto`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use isodhcp_tests::netinfo::isodhcp_routes_text;
use isodhcp_tests::util::{
    self, CMD_TIMEOUT, find_tool, install_termination_flag, tail, termination_requested,
};
use isodhcp_tests::{ClientKind, DaemonConfig, Lab, UPSTREAM_IP, XdpMode, preflight};

const DEMO_PORT: u16 = 7000;

pub fn demo(bin: &Path, secs: u64) -> Result<()> {
    preflight()?;
    // Ctrl-C / SIGTERM only set a flag; the daemon runs in its own process
    // group, so teardown below happens in order.
    install_termination_flag();

    let lab = Lab::new("demo", 3).context("building the lab")?;
    println!(
        "lab {}: server {}, switch {}",
        lab.id,
        lab.server.name(),
        lab.switch.name()
    );

    let mut cfg = DaemonConfig::for_lab_with_bin(&lab, bin);
    cfg.xdp = match std::env::var("ISODHCP_XDP") {
        Ok(_) => isodhcp_tests::xdp_from_env()?,
        Err(_) => XdpMode::Auto,
    };
    println!("starting: {} {}", cfg.bin.display(), cfg.args().join(" "));
    let daemon = lab.start_isodhcp(&cfg).context("starting isodhcp")?;
    println!(
        "isodhcp ready (pid {}), log {}",
        daemon.pid().unwrap_or(0),
        daemon.log.display()
    );
    let _tcp = lab.server_listen(DEMO_PORT)?;

    for (i, kind) in [ClientKind::Dhclient, ClientKind::Dhcpcd, ClientKind::Udhcpc]
        .into_iter()
        .enumerate()
    {
        if termination_requested() {
            break;
        }
        let c = lab.client(i);
        match c.acquire(kind) {
            Ok(lease) => {
                let tcp = match c.tcp_check(UPSTREAM_IP, DEMO_PORT) {
                    Ok(src) => format!("TCP via default route OK (source {src})"),
                    Err(e) => format!("TCP via default route FAILED: {e:#}"),
                };
                println!(
                    "\n[{kind}] lease {}  -- {tcp}\n{}",
                    lease.addr,
                    c.describe()
                );
            }
            Err(e) => println!("\n[{kind}] NO LEASE: {e:#}"),
        }
    }

    println!(
        "\nserver routes (ip route show proto 108 in {}):",
        lab.server.name()
    );
    println!(
        "{}",
        isodhcp_routes_text(&lab.server)
            .unwrap_or_else(|e| format!("<{e:#}>"))
            .trim_end()
    );
    show_daemon_view(&lab, bin);

    println!(
        "\ninspect with e.g.  ip netns exec {} ip -4 addr",
        lab.client(0).ns.name()
    );
    println!("staying up for {secs} s (Ctrl-C to stop early)");

    let end = Instant::now() + Duration::from_secs(secs);
    // Bounded: at most secs*5+1 iterations of 200 ms.
    for _ in 0..secs.saturating_mul(5).saturating_add(1) {
        if termination_requested() || Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\nlast daemon log lines:\n{}", tail(&daemon.log, 15));
    drop(daemon);
    drop(lab);
    println!("lab torn down");
    Ok(())
}

/// Run a command (bounded) and print its output, or why it failed.
fn print_cmd(title: &str, cmd: &mut std::process::Command) {
    println!("\n$ {title}");
    match util::run(cmd, CMD_TIMEOUT) {
        Ok(o) => {
            let text = format!("{}{}", o.stdout, o.stderr);
            println!("{}", text.trim_end());
            if !o.ok() {
                println!("(exit status {})", o.status);
            }
        }
        Err(e) => println!("<{e:#}>"),
    }
}

/// The daemon's own view over its control socket (`--status`, `--dump`)
/// and the XDP program's named verdict counters.
fn show_daemon_view(lab: &Lab, bin: &Path) {
    // The lab runs the daemon with STATE_DIRECTORY = the lab folder.
    let sock = lab.dir().join("isodhcp_srv0.sock");
    for flag in ["--status", "--dump"] {
        print_cmd(
            &format!("isodhcp --socket {} {flag}", sock.display()),
            std::process::Command::new(bin)
                .arg("--socket")
                .arg(&sock)
                .arg(flag),
        );
    }
    let counters = lab.pin_dir().join("counters");
    if !counters.exists() {
        println!(
            "\n(no {}: XDP is not attached, the userspace limiter counts; see --status)",
            counters.display()
        );
        return;
    }
    match find_tool("bpftool") {
        Some(bpftool) => print_cmd(
            &format!("bpftool map dump pinned {}", counters.display()),
            std::process::Command::new(bpftool)
                .args(["map", "dump", "pinned"])
                .arg(&counters),
        ),
        None => println!(
            "\n(bpftool not installed: cannot dump {})",
            counters.display()
        ),
    }
}
