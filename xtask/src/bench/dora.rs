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

use super::{
    Bins, KEA_BIN, Loadgen, POOL, cpu_seconds_with_children, poll, render_cells, rss_kib,
    save_results, start_kea,
};

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

/// `isodhcp --socket SOCK --dump=leases --json`: number of leases.
fn ctl_lease_count(bin: &Path, sock: &Path) -> Result<u64> {
    let v = ctl_json(bin, sock, &["--dump=leases"])?;
    find_array(&v, "leases", 0)
        .map(|a| a.len() as u64)
        .with_context(|| {
            format!(
                "no leases array in the dump: {}",
                truncate(&v.to_string(), 300)
            )
        })
}

/// The datapath isodhcp reports in `--status` (`xdp ...` / `af_packet`).
fn ctl_datapath(bin: &Path, sock: &Path) -> Option<String> {
    let v = ctl_json(bin, sock, &["--status"]).ok()?;
    find_key(&v, "datapath", 0).map(|d| match d {
        Value::String(s) => s.clone(),
        o => o.to_string(),
    })
}

fn ctl_json(bin: &Path, sock: &Path, args: &[&str]) -> Result<Value> {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--socket").arg(sock).args(args).arg("--json");
    let out = isodhcp_tests::util::run_ok(&mut cmd, Duration::from_secs(20))?;
    serde_json::from_str(out.trim())
        .with_context(|| format!("control JSON: {}", truncate(&out, 300)))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// First value under `key` (breadth: this level, then nested objects).
fn find_key<'a>(v: &'a Value, key: &str, depth: usize) -> Option<&'a Value> {
    let o = v.as_object()?;
    if let Some(x) = o.get(key) {
        return Some(x);
    }
    if depth >= 4 {
        return None;
    }
    o.values().find_map(|x| find_key(x, key, depth + 1))
}

fn find_array<'a>(v: &'a Value, key: &str, depth: usize) -> Option<&'a Vec<Value>> {
    find_key(v, key, depth)?.as_array()
}

/// isodhcp's routes in the server namespace.
fn route_count(lab: &Lab) -> Result<u64> {
    let out = lab.server.ip(&["route", "show", "proto", "108"])?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}

/// Elements of the nft set.
fn set_count(lab: &Lab) -> Result<u64> {
    let p: Vec<&str> = NFT_SET.split_whitespace().collect();
    let out = lab
        .server
        .run_ok("nft", &["-j", "list", "set", p[0], p[1], p[2]])?;
    let v: Value = serde_json::from_str(&out).context("nft JSON")?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.pointer("/set/elem").and_then(Value::as_array))
        .map(|a| a.len() as u64)
        .sum())
}

/// Neighbour entries (any state) in the server namespace.
fn neigh_count(lab: &Lab) -> u64 {
    lab.server
        .ip(&["neigh", "show"])
        .map(|o| o.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0)
}

/// Host-wide ARP table (`entries`, `table_fulls`); the ARP table and its
/// gc thresholds are shared by all namespaces.
fn arp_table(lab: &Lab) -> Option<(u64, u64)> {
    let v = lab
        .server
        .ip_json(&["-s", "ntable", "show", "name", "arp_cache"])
        .ok()?;
    let t = v.as_array()?.iter().find(|t| t.get("entries").is_some())?;
    Some((
        t["entries"].as_u64()?,
        t["table_fulls"].as_u64().unwrap_or(0),
    ))
}

fn is_ours(mac: &str) -> bool {
    mac.to_ascii_lowercase()
        .starts_with(&format!("{MAC_PREFIX}:"))
}

/// Leases of the generator's MACs in isodhcp's JSON lease file.
fn isodhcp_file_leases(file: &Path) -> Result<u64> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
    )
    .with_context(|| format!("parsing {}", file.display()))?;
    Ok(v["leases"]
        .as_object()
        .map_or(0, |m| m.keys().filter(|k| is_ours(k)).count() as u64))
}

/// Distinct hwaddrs of the generator's MACs in Kea's memfile CSV.
fn kea_file_leases(file: &Path) -> Result<u64> {
    let s = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let set: std::collections::BTreeSet<String> = s
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1))
        .filter(|h| is_ours(h))
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(set.len() as u64)
}

/// Leases of the generator's MACs in dnsmasq's lease file
/// (`expiry mac ip hostname client-id` per line).
fn dnsmasq_file_leases(file: &Path) -> Result<u64> {
    let s = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(s.lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(is_ours))
        .count() as u64)
}

fn f0(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.0}"))
}

fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

fn opt(x: Option<u64>) -> String {
    x.map_or("-".into(), |v| v.to_string())
}

/// Cells about one attempt-stats object: ok/attempts, NAK, retries,
/// failed+abandoned, p50, p99.
fn stat_cells(s: &Value) -> [String; 6] {
    let u = |k: &str| s[k].as_u64().unwrap_or(0);
    [
        format!("{}/{}", u("successes"), u("attempts")),
        u("naks").to_string(),
        u("retries").to_string(),
        (u("failures") - u("naks").min(u("failures")) + u("abandoned")).to_string(),
        ms(s["p50_ms"].as_f64()),
        ms(s["p99_ms"].as_f64()),
    ]
}

fn one_line(r: &Run) -> String {
    let s = stat_cells(&r.out["stats"]);
    let mut line = format!(
        "{} {} clients: {:.0} leases/s, ok {}, NAK {}, retries {}, timeouts {}, p50 {} ms, p99 {} ms, CPU {:.0} %",
        r.server.label(),
        r.clients,
        r.leases_per_s(),
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        r.cpu_pct
    );
    if let Some(rs) = r.renew_per_s() {
        let x = stat_cells(&r.out["renew"]["stats"]);
        line += &format!(
            "; renewals {rs:.0}/s, ok {}, NAK {}, timeouts {}, p99 {} ms",
            x[0], x[1], x[3], x[5]
        );
    }
    if let Some((n, ms)) = commit_stats(r) {
        line += &format!("; {n} durable writes, mean {ms:.1} ms");
    }
    let c = &r.checks;
    line += &format!(
        "; leases ctl {} file {}, routes {}, set {}, neigh {}",
        opt(c.ctl_leases),
        opt(c.file_leases),
        opt(c.routes),
        opt(c.set_elements),
        c.neigh_ns
    );
    line
}

/// Durable writes during the run (DORA + renewals) and their mean time.
fn commit_cell(r: &Run) -> String {
    commit_stats(r).map_or("-".into(), |(n, ms)| format!("{n} ({ms:.1})"))
}

fn restart_line(r: &Restart) -> String {
    format!(
        "{} {} restart with {} leases: ready after {:.0} ms (RSS {:.1} MiB), routes+set complete after {} ms (RSS {:.1} MiB); routes {}, set {}, leases {}",
        r.server.label(),
        r.kind,
        r.leases_in_file,
        r.ready_ms,
        r.rss_ready_kib as f64 / 1024.0,
        ms(r.complete_ms),
        r.rss_after_kib as f64 / 1024.0,
        r.routes,
        r.set_elements,
        opt(r.ctl_leases)
    )
}

/// The median run by leases/s of each server (lower middle for an even
/// count), with the min and max leases/s.
fn medians<'a>(servers: &[Server], runs: &'a [Run]) -> Vec<(&'a Run, f64, f64, usize)> {
    servers
        .iter()
        .filter_map(|&s| {
            let mut v: Vec<&Run> = runs.iter().filter(|r| r.server == s).collect();
            if v.is_empty() {
                return None;
            }
            v.sort_by(|a, b| a.leases_per_s().total_cmp(&b.leases_per_s()));
            let n = v.len();
            Some((
                v[(n - 1) / 2],
                v[0].leases_per_s(),
                v[n - 1].leases_per_s(),
                n,
            ))
        })
        .collect()
}

/// Median of a per-run figure over a server's runs.
fn median_of(runs: &[Run], s: Server, f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = runs
        .iter()
        .filter(|r| r.server == s)
        .filter_map(f)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

fn render(
    opts: &super::BenchOpts,
    servers: &[Server],
    runs: &[Run],
    scale: &[Run],
    restarts: &[Restart],
) -> String {
    let med = medians(servers, runs);
    let kea = med.iter().find(|m| m.0.server == Server::Kea).map(|m| m.0);
    let kea_lps = kea.map(Run::leases_per_s);
    let kea_p99 = kea.and_then(|k| k.out["stats"]["p99_ms"].as_f64());
    let mut out = String::new();

    out += &format!(
        "Full DORA: {} clients, {} in flight, median of {} run(s) by leases/s (isodhcp: host route + nft set + durable lease file per lease; CPU % = server + its children such as nft, over DORA + renewals)\n\n",
        opts.clients, opts.inflight, opts.runs
    );
    let mut cells = vec![
        [
            "server",
            "leases/s",
            "min–max",
            "ok/attempts",
            "NAK",
            "retries",
            "timeouts",
            "p50 ms",
            "p99 ms",
            "× Kea",
            "p99 / Kea p99",
            "CPU %",
            "durable writes (mean ms)",
            "leases ctl/file",
            "routes",
            "set elems",
            "neigh (ns/host, fulls)",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (r, lo, hi, _) in &med {
        let s = stat_cells(&r.out["stats"]);
        let c = &r.checks;
        cells.push(vec![
            r.server.label().into(),
            format!("{:.0}", r.leases_per_s()),
            format!("{lo:.0}–{hi:.0}"),
            s[0].clone(),
            s[1].clone(),
            s[2].clone(),
            s[3].clone(),
            s[4].clone(),
            s[5].clone(),
            ratio(Some(r.leases_per_s()), kea_lps),
            ratio(r.out["stats"]["p99_ms"].as_f64(), kea_p99),
            format!("{:.0}", r.cpu_pct),
            commit_cell(r),
            format!("{}/{}", opt(c.ctl_leases), opt(c.file_leases)),
            opt(c.routes),
            opt(c.set_elements),
            format!(
                "{}/{}, {}",
                c.neigh_ns,
                opt(c.arp_entries),
                opt(c.arp_table_fulls)
            ),
        ]);
    }
    out += &render_cells(&cells);

    let renewing: Vec<&Server> = servers.iter().filter(|s| s.renews()).collect();
    if !renewing.is_empty() {
        let kea_r = median_of(runs, Server::Kea, Run::renew_per_s);
        out += &format!(
            "\nRenewals: the same clients renew (unicast REQUEST with ciaddr), {} round(s), {} in flight; median of {} run(s) by renewals/s\n\n",
            opts.renew_rounds, opts.inflight, opts.runs
        );
        let mut cells = vec![
            [
                "server",
                "renewals/s",
                "ok/attempts",
                "NAK",
                "retries",
                "timeouts",
                "p50 ms",
                "p99 ms",
                "× Kea",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for &&s in &renewing {
            let rps = median_of(runs, s, Run::renew_per_s);
            // The run whose renewals/s is the median.
            let Some(r) = runs
                .iter()
                .filter(|r| r.server == s)
                .find(|r| r.renew_per_s() == rps)
            else {
                continue;
            };
            let x = stat_cells(&r.out["renew"]["stats"]);
            cells.push(vec![
                s.label().into(),
                f0(rps),
                x[0].clone(),
                x[1].clone(),
                x[2].clone(),
                x[3].clone(),
                x[4].clone(),
                x[5].clone(),
                ratio(rps, kea_r),
            ]);
        }
        out += &render_cells(&cells);
    }

    if !scale.is_empty() {
        out += &format!(
            "\nScale (isodhcp, same flags, {} in flight, {} renewal round(s)): median run by leases/s of {} run(s) at {} clients, of {} at {}\n\n",
            opts.inflight,
            opts.renew_rounds,
            opts.runs,
            opts.clients,
            opts.scale_runs,
            opts.scale_clients
        );
        let mut cells = vec![
            [
                "server",
                "clients",
                "leases/s",
                "ok/attempts",
                "timeouts",
                "p50 ms",
                "p99 ms",
                "renewals/s",
                "renew p99 ms",
                "CPU %",
                "durable writes (mean ms)",
                "leases ctl/file",
                "routes",
                "set elems",
                "neigh (ns/host, fulls)",
            ]
            .map(String::from)
            .to_vec(),
        ];
        let small = med.iter().filter(|m| m.0.server.is_isodhcp()).map(|m| m.0);
        let big = medians(servers, scale);
        for r in small.chain(big.iter().map(|m| m.0)) {
            let s = stat_cells(&r.out["stats"]);
            let x = stat_cells(&r.out["renew"]["stats"]);
            let c = &r.checks;
            cells.push(vec![
                r.server.label().into(),
                r.clients.to_string(),
                format!("{:.0}", r.leases_per_s()),
                s[0].clone(),
                s[3].clone(),
                s[4].clone(),
                s[5].clone(),
                f0(r.renew_per_s()),
                x[5].clone(),
                format!("{:.0}", r.cpu_pct),
                commit_cell(r),
                format!("{}/{}", opt(c.ctl_leases), opt(c.file_leases)),
                opt(c.routes),
                opt(c.set_elements),
                format!(
                    "{}/{}, {}",
                    c.neigh_ns,
                    opt(c.arp_entries),
                    opt(c.arp_table_fulls)
                ),
            ]);
        }
        out += &render_cells(&cells);
    }

    if !restarts.is_empty() {
        out += "\nStart-up with the scale run's leases (SIGTERM, then exec → `isodhcp ready`; warm = kernel state left in place, cold = routes and set flushed first)\n\n";
        let mut cells = vec![
            [
                "server",
                "restart",
                "leases",
                "exec→ready ms",
                "VmRSS at ready MiB",
                "routes+set complete ms",
                "VmRSS after MiB",
                "routes",
                "set elems",
                "leases ctl",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for r in restarts {
            cells.push(vec![
                r.server.label().into(),
                r.kind.into(),
                r.leases_in_file.to_string(),
                format!("{:.0}", r.ready_ms),
                format!("{:.1}", r.rss_ready_kib as f64 / 1024.0),
                ms(r.complete_ms),
                format!("{:.1}", r.rss_after_kib as f64 / 1024.0),
                r.routes.to_string(),
                r.set_elements.to_string(),
                opt(r.ctl_leases),
            ]);
        }
        out += &render_cells(&cells);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(server: Server, lps: f64, rps: f64) -> Run {
        Run {
            server,
            clients: 1000,
            out: json!({"successes_per_s": lps, "renew": {"successes_per_s": rps},
                        "stats": {"successes": 1000, "attempts": 1000, "failures": 0, "naks": 0,
                                  "abandoned": 0, "retries": 0, "p50_ms": 1.0, "p99_ms": 2.0}}),
            cpu_pct: 50.0,
            window_s: 1.0,
            checks: Checks::default(),
            datapath: None,
            metrics: None,
        }
    }

    #[test]
    fn medians_pick_the_middle_run() {
        let runs = vec![
            run_with(Server::Kea, 300.0, 10.0),
            run_with(Server::Kea, 100.0, 30.0),
            run_with(Server::Kea, 200.0, 20.0),
            run_with(Server::Isodhcp, 900.0, 90.0),
        ];
        let m = medians(&[Server::Kea, Server::Isodhcp], &runs);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0.leases_per_s(), 200.0);
        assert_eq!((m[0].1, m[0].2, m[0].3), (100.0, 300.0, 3));
        assert_eq!(median_of(&runs, Server::Kea, Run::renew_per_s), Some(20.0));
        assert_eq!(ratio(Some(900.0), Some(200.0)), "4.50");
        assert_eq!(ratio(Some(1.0), None), "-");
    }

    #[test]
    fn lease_files_are_counted() {
        let d = std::env::temp_dir().join(format!("xtask-dora-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let j = d.join("l.json");
        std::fs::write(
            &j,
            r#"{"version":1,"leases":{"0e:01:02:03:04:05":{"ip":"198.18.1.2"},"02:1d:00:00:00:10":{"ip":"198.18.1.3"}}}"#,
        )
        .unwrap();
        assert_eq!(isodhcp_file_leases(&j).unwrap(), 1);
        let k = d.join("k.csv");
        std::fs::write(
            &k,
            "address,hwaddr,client_id\n198.18.1.2,0e:01:02:03:04:05,\n198.18.1.2,0E:01:02:03:04:05,\n198.18.1.3,06:aa:bb:cc:dd:ee,\n",
        )
        .unwrap();
        assert_eq!(kea_file_leases(&k).unwrap(), 1);
        let m = d.join("dnsmasq.leases");
        std::fs::write(
            &m,
            "1795471476 0e:01:02:03:04:05 198.18.1.2 * 01:0e:01:02:03:04:05\n1795471476 06:01:02:03:04:05 198.18.1.3 * *\n",
        )
        .unwrap();
        assert_eq!(dnsmasq_file_leases(&m).unwrap(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn metrics_are_parsed() {
        let t = "# HELP x\nisodhcp_lease_commit_seconds_sum 0.5\nisodhcp_lease_commit_seconds_count 100\nisodhcp_lease_commit_seconds_bucket{le=\"0.1\"} 3\nisodhcp_messages_sent_total{type=\"ack\"} 7\n";
        let m = parse_metrics(t);
        assert_eq!(m.len(), 3);
        let mut r = run_with(Server::Isodhcp, 1.0, 1.0);
        r.metrics = Some(m);
        assert_eq!(commit_stats(&r), Some((100, 5.0)));
    }

    #[test]
    fn control_json_is_searched() {
        let v = json!({"version": 1, "status": "ok", "leases": [{"ip": "198.18.1.1"}, {"ip": "198.18.1.2"}]});
        assert_eq!(find_array(&v, "leases", 0).map(Vec::len), Some(2));
        let v = json!({"version": 1, "data": {"datapath": "xdp native"}});
        assert_eq!(find_key(&v, "datapath", 0), Some(&json!("xdp native")));
    }
}
