//! `cargo xtask bench dora`: leases/s with full DORA, renewals/s, scale to
//! 10,000 clients, and start-up time / memory with 10,000 leases.
//!
//! One namespace lab per run (`isodhcp-tests`: server `srv0`, a bridge in a
//! switch namespace, one client namespace `c0` running `isodhcp-loadgen
//! dora`). The generator starts `--clients` fresh random MACs (first octet
//! `0e`), `--inflight` at a time, each doing DISCOVER→OFFER→REQUEST→ACK
//! (1 s retransmission, 4 sends per phase); then, for the servers that are
//! measured on renewals, every client that got a lease renews it once
//! (RENEWING: unicast REQUEST with ciaddr), again `--inflight` at a time.
//!
//! Servers (pool 198.18.0.0/16 for all):
//! - `isodhcp` (`--xdp off`) and `isodhcp-xdp` (`--xdp auto`), with every
//!   kernel effect on: a /32 host route per lease (always), an nft named set
//!   `inet filter iso` (`--nft-set-isolated`, created in the server
//!   namespace before the start) and the lease file on the lab's disk
//!   (new leases are durable before the ACK); rate limits raised so they do
//!   not throttle the bench;
//! - `kea` (kea-dhcp4, memfile, raw sockets, as in the flood bench);
//! - `dnsmasq` (DORA only: it answers renewals through the kernel stack,
//!   which would ARP for the generator's random clients).
//!
//! After each run the leases are checked where they live: isodhcp through
//! its control socket (`--dump=leases --json`), its routes (`ip route show
//! proto 108`) and the nft set while it runs, its lease file after SIGTERM;
//! Kea's CSV and dnsmasq's lease file after stopping them. The server
//! namespace's neighbour entries and the host-wide ARP table counters
//! (`entries`, `table_fulls`; gc_thresh3 is host-wide) are recorded too.
//!
//! Scale: isodhcp at `--scale-clients` (10,000) clients with the same flags;
//! then the daemon is stopped (SIGTERM: lease file complete), started again
//! with kernel state left in place (`warm`), stopped, kernel state removed
//! (routes with proto 108 flushed, set flushed: `cold`, as after a reboot)
//! and started again: time from exec to `isodhcp ready` in its log, VmRSS
//! then, and time until the routes and set elements are all back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use isodhcp_tests::daemon::{Daemon, udp_port_bound};
use isodhcp_tests::util::{find_tool, tail};
use isodhcp_tests::{DaemonConfig, Lab, SERVER_IF, XdpMode};
use serde_json::{Value, json};

mod chart;
mod checks;
mod measure;
mod report;
mod restart;
mod server;

use super::{
    Bins, KEA_BIN, Loadgen, NFT_SCRIPT, NFT_SET, POOL, cpu_seconds_with_children, poll,
    render_cells, rss_kib, save_results, start_kea,
};
use checks::*;
use measure::*;
use report::*;
use restart::*;
use server::*;

/// First MAC octet of the generator's clients.
const MAC_PREFIX: &str = "0e";
const TIMEOUT_MS: u64 = 1000;
const TRIES: u32 = 4;
/// Window in which each loadgen phase may start attempts (a bound: a phase
/// ends as soon as all its clients are done).
const PHASE_SECONDS: u64 = 60;
/// The nft named set isodhcp fills (`--nft-set-isolated`).
/// Rate limits far above what the bench sends.
/// Limits out of the way, and no XDP OFFER responder: `dora` measures the
/// daemon's own path. With 64 clients in flight, two of them hash to one
/// stripe slot often enough (about 1 % of DISCOVERs with 4096 slots) that
/// the loser's NAK would count as a failed client here (the generator does
/// not start over after a NAK as real clients do); `flood` and `join`
/// measure the responder.
const LIMIT_FLAGS: [&str; 10] = [
    "--rate-limit",
    "100000",
    "--rate-burst",
    "100000",
    "--global-rate-limit",
    "10000000",
    "--new-client-rate",
    "10000000",
    "--xdp-offer-stripe",
    "0",
];
const DNSMASQ_RANGE: &str = "198.18.1.0,198.18.255.254,255.255.0.0,10m";
/// isodhcp's metrics endpoint (on the server namespace's loopback).
const METRICS_PORT: u16 = 9464;
/// Deadline for a restarted daemon to log `isodhcp ready`.
const READY_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Isodhcp,
    IsodhcpXdp,
    /// Diagnostic (not in the default list): `--xdp off` without the nft
    /// set, to show what the per-batch nft transaction costs.
    IsodhcpNoSet,
    Kea,
    Dnsmasq,
}

impl Server {
    fn parse(s: &str) -> Result<Server> {
        Ok(match s.trim() {
            "isodhcp" | "isodhcp-noxdp" => Server::Isodhcp,
            "isodhcp-xdp" => Server::IsodhcpXdp,
            "isodhcp-noset" => Server::IsodhcpNoSet,
            "kea" => Server::Kea,
            "dnsmasq" => Server::Dnsmasq,
            o => bail!("unknown server {o:?} (isodhcp, isodhcp-xdp, isodhcp-noset, kea, dnsmasq)"),
        })
    }
    fn label(self) -> &'static str {
        match self {
            Server::Isodhcp => "isodhcp no-xdp",
            Server::IsodhcpXdp => "isodhcp xdp",
            Server::IsodhcpNoSet => "isodhcp no-xdp no-set",
            Server::Kea => "kea-dhcp4",
            Server::Dnsmasq => "dnsmasq",
        }
    }
    fn is_isodhcp(self) -> bool {
        matches!(
            self,
            Server::Isodhcp | Server::IsodhcpXdp | Server::IsodhcpNoSet
        )
    }
    /// Measured on renewals too.
    fn renews(self) -> bool {
        self != Server::Dnsmasq
    }
}

/// A lab with a running server.
struct Live {
    server: Server,
    lab: Lab,
    daemon: Option<Daemon>,
    lease_file: PathBuf,
    /// isodhcp's command line (for restarts).
    cfg: Option<DaemonConfig>,
}

/// Where the leases of a run were found.
#[derive(Debug, Clone, Default)]
struct Checks {
    /// isodhcp: leases in `--dump=leases` while running.
    ctl_leases: Option<u64>,
    /// isodhcp: proto-108 routes in the server namespace.
    routes: Option<u64>,
    /// isodhcp: elements of the nft set.
    set_elements: Option<u64>,
    /// Leases of the generator's MACs in the lease file after the server
    /// stopped.
    file_leases: Option<u64>,
    /// Neighbour entries in the server namespace after the run.
    neigh_ns: u64,
    /// Host-wide ARP table: entries after the run, and `table_fulls`
    /// during the run.
    arp_entries: Option<u64>,
    arp_table_fulls: Option<u64>,
}

impl Checks {
    fn to_json(&self) -> Value {
        json!({
            "ctl_leases": self.ctl_leases,
            "routes": self.routes,
            "set_elements": self.set_elements,
            "file_leases": self.file_leases,
            "neigh_server_ns": self.neigh_ns,
            "arp_entries_host": self.arp_entries,
            "arp_table_fulls_during_run": self.arp_table_fulls,
        })
    }
}

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    server: Server,
    clients: u64,
    /// The generator's JSON.
    out: Value,
    cpu_pct: f64,
    window_s: f64,
    checks: Checks,
    /// isodhcp: the datapath it reported (`--status`), if read.
    datapath: Option<String>,
    /// isodhcp: selected metrics after the run (name → value).
    metrics: Option<serde_json::Map<String, Value>>,
}

impl Run {
    fn leases_per_s(&self) -> f64 {
        self.out["successes_per_s"].as_f64().unwrap_or(0.0)
    }
    fn renew_per_s(&self) -> Option<f64> {
        self.out["renew"]["successes_per_s"].as_f64()
    }
    /// Server CPU (with its children) per successful exchange, DORA or
    /// renewal, over the measured window, µs.
    fn cpu_us_per_exchange(&self) -> Option<f64> {
        let n = self.out["stats"]["successes"].as_u64().unwrap_or(0)
            + self.out["renew"]["stats"]["successes"]
                .as_u64()
                .unwrap_or(0);
        (n > 0).then(|| self.cpu_pct / 100.0 * self.window_s * 1e6 / n as f64)
    }
    fn to_json(&self) -> Value {
        json!({
            "server": self.server.label(),
            "clients": self.clients,
            "loadgen": self.out,
            "cpu_pct": (self.cpu_pct * 10.0).round() / 10.0,
            "cpu_window_s": (self.window_s * 100.0).round() / 100.0,
            "checks": self.checks.to_json(),
            "datapath": self.datapath,
            "metrics": self.metrics,
        })
    }
}

/// One start-up measurement.
#[derive(Debug, Clone)]
struct Restart {
    server: Server,
    kind: &'static str,
    leases_in_file: u64,
    ready_ms: f64,
    rss_ready_kib: u64,
    /// Time until routes and set elements were all present (None: not
    /// within the deadline).
    complete_ms: Option<f64>,
    rss_after_kib: u64,
    routes: u64,
    set_elements: u64,
    ctl_leases: Option<u64>,
    /// `--dump=leases --json` of the whole table, ms.
    dump_ms: f64,
}

impl Restart {
    fn to_json(&self) -> Value {
        json!({
            "server": self.server.label(),
            "kind": self.kind,
            "leases_in_file": self.leases_in_file,
            "exec_to_ready_ms": round1(self.ready_ms),
            "rss_at_ready_kib": self.rss_ready_kib,
            "state_complete_ms": self.complete_ms.map(round1),
            "rss_after_kib": self.rss_after_kib,
            "routes": self.routes,
            "set_elements": self.set_elements,
            "ctl_leases": self.ctl_leases,
            "dump_ms": round1(self.dump_ms),
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `cargo xtask bench dora`: the DORA runs of every server, then scale and
/// start-up; prints the tables and saves the raw results.
pub fn run(opts: &super::BenchOpts, bins: &Bins) -> Result<()> {
    let servers: Vec<Server> = opts
        .dora_servers
        .split(',')
        .map(Server::parse)
        .collect::<Result<_>>()?;
    check_opts(opts, &servers)?;
    let t_all = Instant::now();

    // 1 + 2: DORA (and renewals) at --clients, --runs times per server.
    let mut n = 0usize;
    let runs = dora_runs(opts, bins, &servers, &mut n)?;
    // 3: scale and start-up (isodhcp servers of the list).
    let (scale, restarts) = if opts.scale_clients > 0 {
        scale_runs(opts, bins, &servers, &mut n)?
    } else {
        (Vec::new(), Vec::new())
    };

    let tables = render(opts, &servers, &runs, &scale, &restarts);
    println!("\n{tables}");
    let doc = results_json(opts, &runs, &scale, &restarts, t_all);
    let out = save_results("dora", &doc, &tables)?;
    println!(
        "raw results: {} (bench dora took {:.0} s)",
        out.display(),
        t_all.elapsed().as_secs_f64()
    );
    let bars: Vec<chart::Bar> = medians(&servers, &runs)
        .into_iter()
        .map(|(run, min, max, _)| chart::Bar {
            label: run.server.label(),
            leases: run.leases_per_s(),
            min,
            max,
            renewals: median_of(&runs, run.server, Run::renew_per_s),
        })
        .collect();
    if !bars.is_empty() {
        let svg = out.with_extension("svg");
        chart::write(&svg, &bars, opts.clients)?;
        println!("chart: {}", svg.display());
    }
    Ok(())
}

/// Bounds of the options and the tools the chosen servers need.
fn check_opts(opts: &super::BenchOpts, servers: &[Server]) -> Result<()> {
    if opts.clients == 0 || opts.clients > 100_000 || opts.scale_clients > 100_000 {
        bail!("--clients must be 1..=100000, --scale-clients 0..=100000");
    }
    if opts.inflight == 0 || opts.inflight > 4096 {
        bail!("--inflight must be 1..=4096");
    }
    if opts.runs == 0 || opts.runs > 9 || opts.scale_runs == 0 || opts.scale_runs > 9 {
        bail!("--runs and --scale-runs must be 1..=9");
    }
    if servers.contains(&Server::Kea) && !Path::new(KEA_BIN).exists() {
        bail!("{KEA_BIN} missing (Debian package kea-dhcp4-server; cargo xtask setup)");
    }
    if servers.contains(&Server::Dnsmasq) && find_tool("dnsmasq").is_none() {
        bail!("dnsmasq missing (Debian package dnsmasq-base; cargo xtask setup)");
    }
    Ok(())
}

/// DORA (and renewals) at `--clients`, `--runs` times per server, each on
/// a fresh lab; `n` numbers the runs.
fn dora_runs(
    opts: &super::BenchOpts,
    bins: &Bins,
    servers: &[Server],
    n: &mut usize,
) -> Result<Vec<Run>> {
    let mut runs: Vec<Run> = Vec::new();
    for &server in servers {
        for r in 0..opts.runs {
            let mut live = start_server(server, bins, *n)
                .with_context(|| format!("starting {}", server.label()))?;
            let rounds = if server.renews() {
                opts.renew_rounds
            } else {
                0
            };
            let run = measure(&mut live, bins, opts.clients, opts.inflight, rounds, *n)
                .with_context(|| format!("{} run {}", server.label(), r + 1))?;
            eprintln!("bench: {}", one_line(&run));
            runs.push(run);
            *n += 1;
        }
    }
    Ok(runs)
}

/// The isodhcp servers of the list at `--scale-clients`, `--scale-runs`
/// times; after the last run the warm and the cold start-up.
fn scale_runs(
    opts: &super::BenchOpts,
    bins: &Bins,
    servers: &[Server],
    n: &mut usize,
) -> Result<(Vec<Run>, Vec<Restart>)> {
    let mut scale: Vec<Run> = Vec::new();
    let mut restarts: Vec<Restart> = Vec::new();
    for &server in servers
        .iter()
        .filter(|s| matches!(s, Server::Isodhcp | Server::IsodhcpXdp))
    {
        // --scale-runs runs; the start-up is measured after the last.
        for i in 0..opts.scale_runs {
            let mut live = start_server(server, bins, *n)
                .with_context(|| format!("starting {}", server.label()))?;
            let run = measure(
                &mut live,
                bins,
                opts.scale_clients,
                opts.inflight,
                opts.renew_rounds,
                *n,
            )
            .with_context(|| format!("{} at {} clients", server.label(), opts.scale_clients))?;
            eprintln!("bench: {}", one_line(&run));
            let want = run.checks.file_leases.unwrap_or(0);
            scale.push(run);
            *n += 1;
            if i + 1 < opts.scale_runs {
                continue;
            }
            for cold in [false, true] {
                let r = restart(&mut live, bins, want, cold)
                    .with_context(|| format!("{} restart with {want} leases", server.label()))?;
                eprintln!("bench: {}", restart_line(&r));
                restarts.push(r);
            }
        }
    }
    Ok((scale, restarts))
}

/// The raw results document (settings and every run).
fn results_json(
    opts: &super::BenchOpts,
    runs: &[Run],
    scale: &[Run],
    restarts: &[Restart],
    t_all: Instant,
) -> Value {
    json!({
        "bench": "dora",
        "clients": opts.clients,
        "inflight": opts.inflight,
        "runs_per_server": opts.runs,
        "scale_clients": opts.scale_clients,
        "scale_runs": opts.scale_runs,
        "renew_rounds": opts.renew_rounds,
        "pool": POOL,
        "timeout_ms": TIMEOUT_MS,
        "max_tries": TRIES,
        "isodhcp_flags": LIMIT_FLAGS.iter().copied().chain(["--nft-set-isolated", NFT_SET]).collect::<Vec<_>>(),
        "total_s": round1(t_all.elapsed().as_secs_f64()),
        "runs": runs.iter().map(Run::to_json).collect::<Vec<_>>(),
        "scale": scale.iter().map(Run::to_json).collect::<Vec<_>>(),
        "restarts": restarts.iter().map(Restart::to_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests;
