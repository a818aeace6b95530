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

mod checks;
mod report;

use super::{
    Bins, KEA_BIN, Loadgen, POOL, cpu_seconds_with_children, poll, render_cells, rss_kib,
    save_results, start_kea,
};
use checks::*;
use report::*;

/// First MAC octet of the generator's clients.
const MAC_PREFIX: &str = "0e";
const TIMEOUT_MS: u64 = 1000;
const TRIES: u32 = 4;
/// Window in which each loadgen phase may start attempts (a bound: a phase
/// ends as soon as all its clients are done).
const PHASE_SECONDS: u64 = 60;
/// The nft named set isodhcp fills (`--nft-set-isolated`).
const NFT_SET: &str = "inet filter iso";
const NFT_SCRIPT: &str = "table inet filter {\n  set iso {\n    type ipv4_addr;\n  }\n}\n";
/// Rate limits far above what the bench sends.
const LIMIT_FLAGS: [&str; 8] = [
    "--rate-limit",
    "100000",
    "--rate-burst",
    "100000",
    "--global-rate-limit",
    "10000000",
    "--new-client-rate",
    "10000000",
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
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn run(opts: &super::BenchOpts, bins: &Bins) -> Result<()> {
    let servers: Vec<Server> = opts
        .dora_servers
        .split(',')
        .map(Server::parse)
        .collect::<Result<_>>()?;
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
    let t_all = Instant::now();

    // 1 + 2: DORA (and renewals) at --clients, --runs times per server.
    let mut runs: Vec<Run> = Vec::new();
    let mut n = 0usize;
    for &server in &servers {
        for r in 0..opts.runs {
            let mut live = start_server(server, bins, n)
                .with_context(|| format!("starting {}", server.label()))?;
            let rounds = if server.renews() {
                opts.renew_rounds
            } else {
                0
            };
            let run = measure(&mut live, bins, opts.clients, opts.inflight, rounds, n)
                .with_context(|| format!("{} run {}", server.label(), r + 1))?;
            eprintln!("bench: {}", one_line(&run));
            runs.push(run);
            n += 1;
        }
    }

    // 3: scale and start-up (isodhcp servers of the list).
    let mut scale: Vec<Run> = Vec::new();
    let mut restarts: Vec<Restart> = Vec::new();
    if opts.scale_clients > 0 {
        for &server in servers
            .iter()
            .filter(|s| matches!(s, Server::Isodhcp | Server::IsodhcpXdp))
        {
            // --scale-runs runs; the start-up is measured after the last.
            for i in 0..opts.scale_runs {
                let mut live = start_server(server, bins, n)
                    .with_context(|| format!("starting {}", server.label()))?;
                let run = measure(
                    &mut live,
                    bins,
                    opts.scale_clients,
                    opts.inflight,
                    opts.renew_rounds,
                    n,
                )
                .with_context(|| format!("{} at {} clients", server.label(), opts.scale_clients))?;
                eprintln!("bench: {}", one_line(&run));
                let want = run.checks.file_leases.unwrap_or(0);
                scale.push(run);
                n += 1;
                if i + 1 < opts.scale_runs {
                    continue;
                }
                for cold in [false, true] {
                    let r = restart(&mut live, bins, want, cold).with_context(|| {
                        format!("{} restart with {want} leases", server.label())
                    })?;
                    eprintln!("bench: {}", restart_line(&r));
                    restarts.push(r);
                }
            }
        }
    }

    let tables = render(opts, &servers, &runs, &scale, &restarts);
    println!("\n{tables}");
    let doc = json!({
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
    });
    let out = save_results("dora", &doc, &tables)?;
    println!(
        "raw results: {} (bench dora took {:.0} s)",
        out.display(),
        t_all.elapsed().as_secs_f64()
    );
    Ok(())
}

/// TSO off on the veths the frames cross (veth then takes the NAPI path,
/// so native XDP on `srv0` sees frames; same as the flood bench).
fn prepare_lab(lab: &Lab) -> Result<()> {
    let c = lab.client(0);
    c.ns.run_ok("ethtool", &["-K", &c.ifname, "tso", "off"])?;
    lab.server
        .run_ok("ethtool", &["-K", SERVER_IF, "tso", "off"])?;
    for port in ["psrv", "p0"] {
        lab.switch.run_ok("ethtool", &["-K", port, "tso", "off"])?;
    }
    Ok(())
}

/// A fresh lab with `server` running on `srv0`.
fn start_server(server: Server, bins: &Bins, n: usize) -> Result<Live> {
    let lab = Lab::new("bdora", 1).context("building the lab")?;
    prepare_lab(&lab)?;
    let dir = lab.dir().to_path_buf();
    let (daemon, lease_file, cfg) = match server {
        Server::Isodhcp | Server::IsodhcpXdp | Server::IsodhcpNoSet => {
            let script = dir.join("sets.nft");
            std::fs::write(&script, NFT_SCRIPT)?;
            lab.server
                .run_ok("nft", &["-f", script.to_str().context("path not UTF-8")?])
                .context("creating the nft set")?;
            let mut cfg = DaemonConfig::for_lab_with_bin(&lab, &bins.daemon);
            cfg.pool = Some(POOL.into());
            cfg.lease_file = dir.join(format!("leases-{n}.json"));
            // -v would log per lease.
            cfg.verbose = 0;
            cfg.xdp = if server == Server::IsodhcpXdp {
                XdpMode::Auto
            } else {
                XdpMode::Off
            };
            cfg.extra = LIMIT_FLAGS.iter().map(|s| s.to_string()).collect();
            if server != Server::IsodhcpNoSet {
                cfg.extra
                    .extend(["--nft-set-isolated".into(), NFT_SET.into()]);
            }
            // Scraped once after the run (durable-write count and time).
            cfg.extra.extend([
                "--metrics-listen".into(),
                format!("127.0.0.1:{METRICS_PORT}"),
            ]);
            let d = lab.start_isodhcp(&cfg)?;
            (d, cfg.lease_file.clone(), Some(cfg))
        }
        Server::Kea => {
            let (d, f) = start_kea(&lab, n)?;
            (d, f, None)
        }
        Server::Dnsmasq => {
            let (d, f) = start_dnsmasq(&lab, n)?;
            (d, f, None)
        }
    };
    Ok(Live {
        server,
        lab,
        daemon: Some(daemon),
        lease_file,
        cfg,
    })
}

/// dnsmasq (DHCP only, DNS off) on `srv0` with a /16 range; ready once it
/// has bound UDP 67.
fn start_dnsmasq(lab: &Lab, n: usize) -> Result<(Daemon, PathBuf)> {
    let bin = find_tool("dnsmasq").context("dnsmasq not found")?;
    let dir = lab.dir();
    let leases = dir.join(format!("dnsmasq-{n}.leases"));
    let args: Vec<String> = vec![
        "--no-daemon".into(),
        "--port=0".into(),
        "--conf-file=/dev/null".into(),
        "--user=root".into(),
        "--group=root".into(),
        format!("--dhcp-range={DNSMASQ_RANGE}"),
        format!("--interface={SERVER_IF}"),
        "--bind-interfaces".into(),
        "--dhcp-authoritative".into(),
        "--dhcp-lease-max=1000000".into(),
        // No ICMP echo before each offer (it holds an offer up to 3 s);
        // neither Kea nor isodhcp probe that way.
        "--no-ping".into(),
        "--dhcp-option=option:router,198.18.0.1".into(),
        "--dhcp-option=option:dns-server,198.18.0.53".into(),
        "--log-facility=-".into(),
        format!("--dhcp-leasefile={}", leases.display()),
        format!(
            "--pid-file={}",
            dir.join(format!("dnsmasq-{n}.pid")).display()
        ),
    ];
    let log = dir.join(format!("dnsmasq-{n}.log"));
    let mut d = Daemon::start(&lab.server, &bin, &args, dir, &log)?;
    poll("dnsmasq to bind UDP 67", Duration::from_secs(15), || {
        if !d.is_running() {
            bail!("dnsmasq exited; log:\n{}", tail(&log, 30));
        }
        Ok(udp_port_bound(&lab.server, 67)?.then_some(()))
    })?;
    Ok((d, leases))
}

/// Runs the generator against the live server, checks the leases, stops
/// the server (SIGTERM) and counts the lease file.
fn measure(
    live: &mut Live,
    bins: &Bins,
    clients: u64,
    inflight: usize,
    renew: u32,
    n: usize,
) -> Result<Run> {
    let server = live.server;
    let pid = live
        .daemon
        .as_ref()
        .and_then(Daemon::pid)
        .context("server pid")?;
    let c = live.lab.client(0);
    let mut args: Vec<String> = vec![
        "-i".into(),
        c.ifname.clone(),
        "dora".into(),
        "--clients".into(),
        clients.to_string(),
        "--inflight".into(),
        inflight.to_string(),
        "--seconds".into(),
        PHASE_SECONDS.to_string(),
        "--timeout".into(),
        TIMEOUT_MS.to_string(),
        "--max-tries".into(),
        TRIES.to_string(),
        "--mac-prefix".into(),
        MAC_PREFIX.into(),
    ];
    if renew > 0 {
        args.extend(["--renew".into(), renew.to_string()]);
    }
    let fulls0 = arp_table(&live.lab).map(|(_, f)| f);
    let mut lg = Loadgen::spawn(
        &c.ns,
        &bins.loadgen,
        live.lab.dir(),
        &format!("dora-{n}"),
        &args,
    )?;
    lg.wait_ready(Duration::from_secs(5))?;
    let cpu0 = cpu_seconds_with_children(pid)?;
    let t0 = Instant::now();
    let drain = Duration::from_millis(TIMEOUT_MS * u64::from(TRIES) * 2 + 500);
    let phases = if renew > 0 { 2 } else { 1 };
    let out =
        lg.finish((Duration::from_secs(PHASE_SECONDS) + drain) * phases + Duration::from_secs(10))?;
    let window = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds_with_children(pid)?;
    {
        let d = live.daemon.as_mut().context("server not running")?;
        if !d.is_running() {
            bail!(
                "{} exited during the run; log:\n{}",
                server.label(),
                tail(&d.log, 30)
            );
        }
    }

    let mut checks = Checks::default();
    let mut datapath = None;
    let mut metrics = None;
    if server.is_isodhcp() {
        let sock = live.lab.dir().join(format!("isodhcp_{SERVER_IF}.sock"));
        checks.ctl_leases = Some(ctl_lease_count(&bins.daemon, &sock)?);
        datapath = ctl_datapath(&bins.daemon, &sock);
        checks.routes = Some(route_count(&live.lab)?);
        if server != Server::IsodhcpNoSet {
            checks.set_elements = Some(set_count(&live.lab)?);
        }
        metrics = match scrape_metrics(&live.lab) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("bench: metrics scrape failed: {e:#}");
                None
            }
        };
    }
    checks.neigh_ns = neigh_count(&live.lab);
    let arp = arp_table(&live.lab);
    checks.arp_entries = arp.map(|(e, _)| e);
    checks.arp_table_fulls = match (fulls0, arp) {
        (Some(a), Some((_, b))) => Some(b.saturating_sub(a)),
        _ => None,
    };
    stop(live)?;
    checks.file_leases = Some(match server {
        Server::Isodhcp | Server::IsodhcpXdp | Server::IsodhcpNoSet => {
            isodhcp_file_leases(&live.lease_file)?
        }
        Server::Kea => kea_file_leases(&live.lease_file)?,
        Server::Dnsmasq => dnsmasq_file_leases(&live.lease_file)?,
    });
    Ok(Run {
        server,
        clients,
        out,
        cpu_pct: 100.0 * (cpu1 - cpu0) / window.max(1e-3),
        window_s: window,
        checks,
        datapath,
        metrics,
    })
}

/// GET /metrics from isodhcp's endpoint; keeps the durable-write histogram
/// totals and the reply counters.
fn scrape_metrics(lab: &Lab) -> Result<serde_json::Map<String, Value>> {
    use std::io::{Read, Write};
    let text = lab.server.run_in(|| {
        let a = std::net::SocketAddr::from(([127, 0, 0, 1], METRICS_PORT));
        let mut s = std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        // Bounded by the read timeout and the server closing.
        s.take(4 << 20).read_to_string(&mut body)?;
        Ok(body)
    })?;
    Ok(parse_metrics(&text))
}

/// `name{labels} value` lines of interest, as a map.
fn parse_metrics(text: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for l in text.lines() {
        if l.starts_with('#') {
            continue;
        }
        let Some((k, v)) = l.trim_end().rsplit_once(' ') else {
            continue;
        };
        if !(k.contains("lease_commit_seconds_count")
            || k.contains("lease_commit_seconds_sum")
            || k.contains("messages_sent")
            || k.contains("naks"))
        {
            continue;
        }
        if let Ok(x) = v.parse::<f64>() {
            m.insert(k.to_string(), json!(x));
        }
    }
    m
}

/// Durable writes during the run and their mean time, ms.
fn commit_stats(r: &Run) -> Option<(u64, f64)> {
    let m = r.metrics.as_ref()?;
    let get = |suffix: &str| {
        m.iter()
            .find(|(k, _)| k.ends_with(suffix))
            .and_then(|(_, v)| v.as_f64())
    };
    let n = get("lease_commit_seconds_count")?;
    let sum = get("lease_commit_seconds_sum")?;
    Some((n as u64, if n > 0.0 { 1000.0 * sum / n } else { 0.0 }))
}

/// SIGTERM, then wait for a clean exit.
fn stop(live: &mut Live) -> Result<()> {
    let mut d = live.daemon.take().context("server not running")?;
    d.signal(libc::SIGTERM)?;
    let st = d.wait_exit(Duration::from_secs(20))?;
    if !st.success() && live.server != Server::Kea {
        bail!(
            "{} exited with {st} on SIGTERM; log:\n{}",
            live.server.label(),
            tail(&d.log, 30)
        );
    }
    Ok(())
}

/// Starts isodhcp again on the lab of a finished run (its lease file holds
/// `want` leases): `cold` first removes its routes and set elements.
fn restart(live: &mut Live, bins: &Bins, want: u64, cold: bool) -> Result<Restart> {
    let cfg = live.cfg.clone().context("restart: not isodhcp")?;
    let in_file = isodhcp_file_leases(&live.lease_file)?;
    if in_file != want {
        bail!("lease file holds {in_file} leases, expected {want}");
    }
    if cold {
        live.lab.server.ip(&["route", "flush", "proto", "108"])?;
        let p: Vec<&str> = NFT_SET.split_whitespace().collect();
        live.lab
            .server
            .run_ok("nft", &["flush", "set", p[0], p[1], p[2]])?;
        let (r, s) = (route_count(&live.lab)?, set_count(&live.lab)?);
        if r != 0 || s != 0 {
            bail!("cold restart: {r} routes and {s} set elements left after flushing");
        }
    }
    let kind = if cold { "cold" } else { "warm" };
    let log = live.lab.dir().join(format!("isodhcp-restart-{kind}.log"));
    let t0 = Instant::now();
    let mut d = Daemon::start(
        &live.lab.server,
        &cfg.bin,
        &cfg.args(),
        live.lab.dir(),
        &log,
    )?;
    // Fine-grained readiness poll (2 ms), bounded in count and time.
    let mut ready = None;
    for _ in 0..(READY_DEADLINE.as_millis() / 2 + 2) {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(isodhcp_tests::daemon::READY_MARKER)
        {
            ready = Some(t0.elapsed());
            break;
        }
        if !d.is_running() {
            bail!("isodhcp exited during start-up; log:\n{}", tail(&log, 30));
        }
        if t0.elapsed() > READY_DEADLINE {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready = ready.with_context(|| {
        format!(
            "no `isodhcp ready` within {READY_DEADLINE:?}; log:\n{}",
            tail(&log, 30)
        )
    })?;
    let pid = d.pid().context("pid")?;
    let rss_ready = rss_kib(pid)?;
    // Kernel state complete (reconcile may finish after `ready`): the time
    // at which the first check that found everything began (a check runs
    // `ip` and `nft`, some tens of ms). Bounded in count and time.
    let mut complete = None;
    for _ in 0..600 {
        let began = t0.elapsed();
        if route_count(&live.lab)? >= want && set_count(&live.lab)? >= want {
            complete = Some(began);
            break;
        }
        if t0.elapsed() > READY_DEADLINE {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let rss_after = rss_kib(pid)?;
    let sock = live.lab.dir().join(format!("isodhcp_{SERVER_IF}.sock"));
    let r = Restart {
        server: live.server,
        kind,
        leases_in_file: in_file,
        ready_ms: ready.as_secs_f64() * 1000.0,
        rss_ready_kib: rss_ready,
        complete_ms: complete.map(|c| c.as_secs_f64() * 1000.0),
        rss_after_kib: rss_after,
        routes: route_count(&live.lab)?,
        set_elements: set_count(&live.lab)?,
        ctl_leases: ctl_lease_count(&bins.daemon, &sock).ok(),
    };
    live.daemon = Some(d);
    stop(live)?;
    Ok(r)
}

#[cfg(test)]
mod tests;
