//! `cargo xtask bench flood`: random-MAC DISCOVER flood against isodhcp
//! (XDP on, XDP off) and kea-dhcp4, with two DORA probes measuring what the
//! flood does to a client that holds a lease and to brand-new clients.
//!
//! One namespace lab per server (`isodhcp-tests`: server `srv0`, a bridge in
//! a switch namespace, client namespaces `c0` = flood, `c1` = known probe,
//! `c2` = new-client probe). For each flood rate a fresh server is started,
//! the probes start, then the flood; the server's CPU time, the XDP counters
//! and the lease file are read around the flood window. Every process is
//! bounded in time (and the flood in frames too) and stops by itself; the
//! lab's RAII guards remove namespaces, processes and files, also on error.
//!
//! Bridge set-up (switch namespace): the flood port does not learn source
//! MACs (a random-MAC flood would fill the forwarding database), so the
//! server's unicast replies to flood MACs are flooded to ports that accept
//! unknown unicast; the probe ports accept neither unknown unicast nor
//! broadcast (their own MACs are learned, so the server's unicast replies
//! reach them; broadcast replies such as NAK do not). TSO is off on every
//! veth so veth takes the NAPI path (and native XDP on `srv0` sees frames).
//!
//! Replies to flood MACs (first octet [`FLOOD_PREFIX`]) end at the switch's
//! port towards the server (the object's `isodhcp_lab_sink` XDP program):
//! on a real network they leave the router through its NIC and cost the
//! switch and the attacker's host. Carried across the bridge into the
//! generator's namespace (`--carry-replies`), they ran on the generator's
//! own CPU in its send path, and the generator's rate fell with every reply
//! the server sent: a cost of the lab, not of the server (design.md
//! §Performance has both figures). Every server gets the same switch.

mod chart;
mod report;
mod xdp;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use isodhcp_tests::daemon::Daemon;
use isodhcp_tests::util::tail;
use isodhcp_tests::{DaemonConfig, Lab, SERVER_IF, XdpMode};
use serde_json::{Value, json};

use report::{Row, one_line, render_table};
use xdp::{BpfStats, delta, xdp_attached, xdp_counters, xdp_run_stats};

use super::{
    BenchOpts, Bins, KEA_BIN, Loadgen, POOL, cpu_seconds, save_results, softirq_seconds, start_kea,
};

/// Known probe: one REQUEST (renewal) every 200 ms = 5/s.
const KNOWN_INTERVAL_MS: u64 = 200;
/// New-client probe: a fresh MAC every 250 ms, or often enough for
/// [`NEW_MIN_ATTEMPTS`] in a short window.
const NEW_INTERVAL_MS: u64 = 250;
/// Attempts of the new-client probe per row, at least: a success rate of a
/// few per cent needs this many tries to mean anything.
const NEW_MIN_ATTEMPTS: u64 = 120;

/// The new-client probe's interval for a window of `seconds`.
fn new_interval_ms(seconds: u64) -> u64 {
    (seconds * 1000 / NEW_MIN_ATTEMPTS).clamp(20, NEW_INTERVAL_MS)
}
const PROBE_TIMEOUT_MS: u64 = 1000;
const PROBE_TRIES: u32 = 4;
/// First MAC octets: flood, new-client probe.
pub(super) const FLOOD_PREFIX: &str = "0a";
const NEW_PREFIX: &str = "06";
/// Ceiling for an unpaced flood, frames.
const MAX_FLOOD_FRAMES: u64 = 50_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Server {
    IsodhcpXdp,
    /// XDP admission without the OFFER responder (`--xdp-offer-stripe 0`):
    /// the baseline the responder is measured against.
    IsodhcpXdpNoOffer,
    Isodhcp,
    Kea,
}

impl Server {
    pub(super) fn parse(s: &str) -> Result<Server> {
        Ok(match s.trim() {
            "isodhcp-xdp" => Server::IsodhcpXdp,
            "isodhcp-xdp-nooffer" => Server::IsodhcpXdpNoOffer,
            "isodhcp" | "isodhcp-noxdp" => Server::Isodhcp,
            "kea" => Server::Kea,
            o => bail!("unknown server {o:?} (isodhcp-xdp, isodhcp-xdp-nooffer, isodhcp, kea)"),
        })
    }
    pub(super) fn label(self) -> &'static str {
        match self {
            Server::IsodhcpXdp => "isodhcp xdp",
            Server::IsodhcpXdpNoOffer => "isodhcp xdp, no responder",
            Server::Isodhcp => "isodhcp no-xdp",
            Server::Kea => "kea-dhcp4",
        }
    }
}

/// Flood rate: `None` = no flood, `Some(0)` = unpaced.
fn parse_rates(s: &str) -> Result<Vec<Option<u64>>> {
    s.split(',')
        .map(|r| {
            let r = r.trim();
            match r {
                "none" | "off" => Ok(None),
                "max" => Ok(Some(0)),
                n => {
                    let v: u64 = n
                        .trim_end_matches(['k', 'K'])
                        .parse()
                        .map_err(|_| anyhow!("bad rate {r:?}"))?;
                    let v = if n.ends_with(['k', 'K']) { v * 1000 } else { v };
                    if v == 0 {
                        bail!("rate 0: use `none` (no flood) or `max` (unpaced)");
                    }
                    Ok(Some(v))
                }
            }
        })
        .collect()
}

fn rate_label(r: Option<u64>) -> String {
    match r {
        None => "none".into(),
        Some(0) => "max".into(),
        Some(v) if v % 1000 == 0 => format!("{}k", v / 1000),
        Some(v) => v.to_string(),
    }
}

/// Runs the flood bench with `opts` (servers `--servers`, rates `--rates`).
pub fn run(opts: &super::BenchOpts, bins: &Bins) -> Result<()> {
    let _stats = BpfStats::enable();
    if opts.seconds == 0 || opts.seconds > 60 {
        bail!("--seconds must be 1..=60");
    }
    let rates = parse_rates(&opts.rates)?;
    let servers: Vec<Server> = opts
        .servers
        .split(',')
        .map(Server::parse)
        .collect::<Result<_>>()?;
    if servers.contains(&Server::Kea) && !Path::new(KEA_BIN).exists() {
        bail!("{KEA_BIN} missing (Debian package kea-dhcp4-server; cargo xtask setup)");
    }
    let (daemon, loadgen) = (&bins.daemon, &bins.loadgen);
    let mut rows = Vec::new();
    for &server in &servers {
        let lab = Lab::new("bflood", 3).context("building the lab")?;
        prepare_lab(&lab, opts.carry_replies)?;
        if !opts.tags.is_empty() {
            lab.tags_on_the_wire()?;
        }
        eprintln!(
            "\nbench: {} (lab {}, server ns {})",
            server.label(),
            lab.id,
            lab.server.name()
        );
        for (i, &rate) in rates.iter().enumerate() {
            let row = run_row(&lab, server, rate, i, opts, daemon, loadgen).with_context(|| {
                format!("{} at flood rate {}", server.label(), rate_label(rate))
            })?;
            eprintln!("bench: {}", one_line(&row));
            rows.push(row);
        }
        drop(lab);
    }

    let table = render_table(&rows);
    println!("\n{table}");
    let doc = json!({
        "bench": "flood",
        "replies_to_flood": replies_model(opts.carry_replies),
        "seconds": opts.seconds,
        "tags": opts.tags,
        "pool": POOL,
        "known_interval_ms": KNOWN_INTERVAL_MS,
        "new_interval_ms": new_interval_ms(opts.seconds),
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    });
    let out = save_results("flood", &doc, &table)?;
    println!("raw results: {}", out.display());
    let svg = out.with_extension("svg");
    chart::write(&svg, &rows, opts.seconds)?;
    println!("chart: {}", svg.display());
    Ok(())
}

/// What becomes of the server's replies to flood MACs, for the results.
pub(super) fn replies_model(carry_replies: bool) -> &'static str {
    if carry_replies {
        "carried to the generator's namespace"
    } else {
        "dropped at the switch port"
    }
}

/// TSO off on every veth end; bridge port flags (see the module comment);
/// an XDP program on the switch's port towards the server, without which a
/// veth drops the XDP OFFER responder's XDP_TX replies (a real NIC needs
/// nothing of the kind; every server gets the same switch). Unless
/// `carry_replies`, that program is the sink: replies to flood MACs end at
/// the port (see the module comment).
pub(super) fn prepare_lab(lab: &Lab, carry_replies: bool) -> Result<()> {
    if carry_replies {
        lab.pass_through_xdp("psrv")?;
    } else {
        lab.sink_xdp("psrv")?;
    }
    for c in &lab.clients {
        c.ns.run_ok("ethtool", &["-K", &c.ifname, "tso", "off"])?;
    }
    lab.server
        .run_ok("ethtool", &["-K", SERVER_IF, "tso", "off"])?;
    for port in ["psrv", "p0", "p1", "p2"] {
        lab.switch.run_ok("ethtool", &["-K", port, "tso", "off"])?;
    }
    lab.switch.ip(&[
        "link",
        "set",
        "dev",
        "p0",
        "type",
        "bridge_slave",
        "learning",
        "off",
    ])?;
    for port in ["p1", "p2"] {
        lab.switch.ip(&[
            "link",
            "set",
            "dev",
            port,
            "type",
            "bridge_slave",
            "flood",
            "off",
            "bcast_flood",
            "off",
        ])?;
    }
    Ok(())
}

/// (flood MACs, all MACs) in isodhcp's JSON lease file.
fn isodhcp_leases(file: &Path) -> Result<(u64, u64)> {
    if !file.exists() {
        return Ok((0, 0));
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(file)?)
        .with_context(|| format!("parsing {}", file.display()))?;
    let leases = v.get("leases").and_then(Value::as_object);
    let all = leases.map_or(0, |m| m.len() as u64);
    let flood = leases.map_or(0, |m| {
        m.keys()
            .filter(|k| {
                k.to_ascii_lowercase()
                    .starts_with(&format!("{FLOOD_PREFIX}:"))
            })
            .count() as u64
    });
    Ok((flood, all))
}

/// (flood MACs, all MACs) in Kea's memfile CSV (distinct hwaddr values).
fn kea_leases(file: &Path) -> Result<(u64, u64)> {
    let mut all = std::collections::BTreeSet::new();
    // Kea may move the file aside during LFC (disabled here): read both.
    for f in [file.to_path_buf(), file.with_extension("csv.2")] {
        let Ok(s) = std::fs::read_to_string(&f) else {
            continue;
        };
        for l in s.lines().skip(1) {
            if let Some(hw) = l.split(',').nth(1) {
                all.insert(hw.to_ascii_lowercase());
            }
        }
    }
    let flood = all
        .iter()
        .filter(|h| h.starts_with(&format!("{FLOOD_PREFIX}:")))
        .count() as u64;
    Ok((flood, all.len() as u64))
}

/// Starts the server for row `n`; returns it with its lease file.
pub(super) fn start_server(
    lab: &Lab,
    server: Server,
    n: usize,
    daemon: &Path,
) -> Result<(Daemon, PathBuf)> {
    match server {
        Server::IsodhcpXdp | Server::IsodhcpXdpNoOffer | Server::Isodhcp => {
            let mut cfg = DaemonConfig::for_lab_with_bin(lab, daemon);
            cfg.pool = Some(POOL.into());
            cfg.lease_file = lab.dir().join(format!("leases-{n}.json"));
            // -v would log per packet: not under a flood.
            cfg.verbose = 0;
            cfg.xdp = match server {
                Server::IsodhcpXdp | Server::IsodhcpXdpNoOffer => XdpMode::Auto,
                _ => XdpMode::Off,
            };
            // The known probe renews 5/s: within its per-MAC limit (the
            // same limits apply in userspace with --xdp off).
            cfg.extra = ["--rate-limit", "10", "--rate-burst", "10"]
                .map(String::from)
                .to_vec();
            if server == Server::IsodhcpXdpNoOffer {
                cfg.extra.extend(["--xdp-offer-stripe".into(), "0".into()]);
            }
            let d = lab.start_isodhcp(&cfg)?;
            Ok((d, cfg.lease_file))
        }
        Server::Kea => start_kea(lab, n),
    }
}

/// One row: the server, both probes, the flood (or the baseline window),
/// then the probes' results, the XDP counters and the leases.
fn run_row(
    lab: &Lab,
    server: Server,
    rate: Option<u64>,
    n: usize,
    opts: &BenchOpts,
    daemon_bin: &Path,
    loadgen: &Path,
) -> Result<Row> {
    let seconds = opts.seconds;
    let (mut daemon, lease_file) = start_server(lab, server, n, daemon_bin)?;
    let pid = daemon.pid().context("server pid")?;
    let pins = lab.pin_dir();
    let xdp_before = xdp_counters(&pins);
    let attached = (server != Server::Kea).then(|| xdp_attached(lab)).flatten();

    let (mut known, mut newp) = spawn_probes(lab, n, seconds, loadgen)?;

    let flood_secs = seconds + 4;
    let xdp_run0 = xdp_run_stats();
    let cpu0 = cpu_seconds(pid)?;
    let soft0 = softirq_seconds()?;
    let t0 = Instant::now();
    let flood = flood_window(lab, rate, n, &opts.tags, loadgen, flood_secs)?;
    let window = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid)?;
    let xdp_ns = match (xdp_run0, xdp_run_stats()) {
        (Some((t0, n0)), Some((t1, n1))) if n1 > n0 && server != Server::Kea => {
            Some((t1 - t0) as f64 / (n1 - n0) as f64)
        }
        _ => None,
    };
    let soft1 = softirq_seconds()?;
    let drain = Duration::from_millis(PROBE_TIMEOUT_MS * u64::from(PROBE_TRIES) * 2 + 500);
    let limit = Duration::from_secs(seconds) + drain + Duration::from_secs(10);
    let known_v = known.finish(limit)?;
    let new_v = newp.finish(limit)?;
    let xdp_after = xdp_counters(&pins);
    if !daemon.is_running() {
        bail!(
            "server exited during the run; log:\n{}",
            tail(&daemon.log, 30)
        );
    }
    drop(daemon);
    let (flood_leases, total_leases) = match server {
        Server::Kea => kea_leases(&lease_file)?,
        _ => isodhcp_leases(&lease_file)?,
    };
    Ok(Row {
        server,
        rate,
        flood,
        known: known_v,
        new: new_v,
        flood_leases,
        total_leases,
        cpu_pct: 100.0 * (cpu1 - cpu0) / window.max(1e-3),
        softirq_pct: 100.0 * (soft1 - soft0) / window.max(1e-3),
        window_s: (window * 100.0).round() / 100.0,
        xdp: match server {
            Server::IsodhcpXdp | Server::IsodhcpXdpNoOffer => delta(&xdp_before, &xdp_after),
            _ => None,
        },
        xdp_attached: attached,
        xdp_ns,
    })
}

/// Starts the two probes of a row, `seconds` long: the known client on
/// `c1` (renewing) and the new clients on `c2` (with RELEASE); returns
/// them once both are measuring.
fn spawn_probes(lab: &Lab, n: usize, seconds: u64, loadgen: &Path) -> Result<(Loadgen, Loadgen)> {
    let dir = lab.dir();
    let secs = seconds.to_string();
    let probe_common = |kind: &str, interval: u64| -> Vec<String> {
        [
            "-i",
            "",
            "probe",
            "--kind",
            kind,
            "--interval",
            &interval.to_string(),
            "--seconds",
            &secs,
            "--timeout",
            &PROBE_TIMEOUT_MS.to_string(),
            "--max-tries",
            &PROBE_TRIES.to_string(),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut known_args = probe_common("known", KNOWN_INTERVAL_MS);
    known_args[1].clone_from(&lab.client(1).ifname);
    known_args.extend(["--repeat", "renew"].map(String::from));
    let mut new_args = probe_common("new", new_interval_ms(seconds));
    new_args[1].clone_from(&lab.client(2).ifname);
    new_args.extend(["--mac-prefix", NEW_PREFIX, "--release"].map(String::from));

    let mut known = Loadgen::spawn(
        &lab.client(1).ns,
        loadgen,
        dir,
        &format!("known-{n}"),
        &known_args,
    )?;
    // Ready after its initial DORA (at most 2 phases x tries x timeout).
    known.wait_ready(Duration::from_secs(15))?;
    let mut newp = Loadgen::spawn(
        &lab.client(2).ns,
        loadgen,
        dir,
        &format!("new-{n}"),
        &new_args,
    )?;
    newp.wait_ready(Duration::from_secs(5))?;
    Ok((known, newp))
}

/// The measurement window: a flood from `c0` at `rate` (`Some(0)`: as fast
/// as possible) for `flood_secs`, returning the generator's JSON, or
/// (`None`) the same window without a flood.
fn flood_window(
    lab: &Lab,
    rate: Option<u64>,
    n: usize,
    tags: &str,
    loadgen: &Path,
    flood_secs: u64,
) -> Result<Option<Value>> {
    let dir = lab.dir();
    Ok(match rate {
        Some(r) => {
            let frames = if r == 0 {
                MAX_FLOOD_FRAMES
            } else {
                r.saturating_mul(flood_secs).min(MAX_FLOOD_FRAMES)
            };
            let args: Vec<String> = vec![
                "-i".into(),
                lab.client(0).ifname.clone(),
                "flood".into(),
                "--rate".into(),
                r.to_string(),
                "--frames".into(),
                frames.to_string(),
                "--seconds".into(),
                flood_secs.to_string(),
                "--mac-prefix".into(),
                FLOOD_PREFIX.into(),
                "--tags".into(),
                tags.to_string(),
            ];
            let mut f = Loadgen::spawn(
                &lab.client(0).ns,
                loadgen,
                dir,
                &format!("flood-{n}"),
                &args,
            )?;
            Some(f.finish(Duration::from_secs(flood_secs + 15))?)
        }
        None => {
            // Baseline: the same window, no flood. Bounded sleep by design
            // (this IS the measurement window, not a readiness wait).
            std::thread::sleep(Duration::from_secs(flood_secs));
            None
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_flood_prefix_is_the_one_the_lab_sink_drops() {
        assert_eq!(
            super::FLOOD_PREFIX,
            format!("{:02x}", isodhcp_tests::LAB_FLOOD_OCTET)
        );
    }

    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rates("none,1000,10k,max").unwrap(),
            vec![None, Some(1000), Some(10_000), Some(0)]
        );
        assert!(parse_rates("0").is_err());
        assert!(parse_rates("fast").is_err());
        assert_eq!(rate_label(Some(10_000)), "10k");
        assert_eq!(rate_label(Some(1500)), "1500");
        assert_eq!(rate_label(Some(0)), "max");
    }

    #[test]
    fn lease_files_are_counted() {
        let d = std::env::temp_dir().join(format!("xtask-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let j = d.join("l.json");
        std::fs::write(
            &j,
            r#"{"version":1,"leases":{"0a:01:02:03:04:05":{"ip":"198.18.1.2"},"02:1d:00:00:00:10":{"ip":"198.18.1.3"}}}"#,
        )
        .unwrap();
        assert_eq!(isodhcp_leases(&j).unwrap(), (1, 2));
        let k = d.join("k.csv");
        std::fs::write(
            &k,
            "address,hwaddr,client_id\n198.18.1.2,0a:01:02:03:04:05,\n198.18.1.2,0a:01:02:03:04:05,\n198.18.1.3,06:aa:bb:cc:dd:ee,\n",
        )
        .unwrap();
        assert_eq!(kea_leases(&k).unwrap(), (1, 2));
        assert_eq!(isodhcp_leases(&d.join("missing")).unwrap(), (0, 0));
        let _ = std::fs::remove_dir_all(&d);
    }
}
