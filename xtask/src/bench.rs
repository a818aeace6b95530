//! `cargo xtask bench [flood|dora|all]`: benchmarks in namespace labs
//! (`isodhcp-tests`), with the generator `isodhcp-loadgen` (`loadgen/`).
//!
//! - [`flood`]: random-MAC DISCOVER flood against isodhcp (XDP on/off) and
//!   kea-dhcp4, with DORA probes.
//! - [`dora`]: leases/s with full DORA and renewals/s against isodhcp (XDP
//!   off/auto, every kernel effect on), kea-dhcp4 and dnsmasq; scale to
//!   10,000 clients and start-up time / memory with 10,000 leases.
//! - [`soak`]: N minutes of churn, flood, SIGUSR1 and `--verify` against
//!   one isodhcp; fails on growth after warm-up or a lost lease.
//! - [`join`]: how long a stock dhclient started during a flood waits for
//!   its lease, per server.
//! - `all`: flood, then dora (not soak: it has its own length).
//!
//! This module holds what both share: options, building the binaries, the
//! loadgen process guard, polling, CPU/RSS readings, Kea's start-up and the
//! table/JSON output (under `target/bench/`).

mod dora;
mod flood;
mod join;
mod soak;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use isodhcp_tests::daemon::{Daemon, udp_port_bound};
use isodhcp_tests::util::{find_tool, tail, wait_child};
use isodhcp_tests::{Lab, Netns, SERVER_IF, preflight};
use serde_json::{Value, json};

use crate::util::{cargo, target_dir};

/// Pool handed to every server: larger than any bench run can use up, so
/// results measure admission and CPU, not pool exhaustion.
pub(crate) const POOL: &str = "198.18.0.0/16";
pub(crate) const KEA_POOL: &str = "198.18.1.0 - 198.18.255.254";
pub(crate) const KEA_BIN: &str = "/usr/sbin/kea-dhcp4";
/// The nft set isodhcp fills in dora and soak (`--nft-set-isolated`).
pub(crate) const NFT_SET: &str = "inet filter iso";
pub(crate) const NFT_SCRIPT: &str =
    "table inet filter {\n  set iso {\n    type ipv4_addr;\n  }\n}\n";

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOpts {
    /// Which benchmark: `flood` (the default), `dora`, `all` (both), or
    /// `soak`.
    #[arg(default_value = "flood")]
    pub which: String,
    /// flood: seconds during which the probes start attempts, per flood
    /// rate; the flood runs 4 s longer so that attempts started late still
    /// see it.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// flood: comma-separated flood rates in frames/s; `none` = no flood
    /// (baseline), `max` = unpaced.
    #[arg(long, default_value = "none,1000,10000,max")]
    pub rates: String,
    /// flood: VLAN tags on every flood frame, outermost first, e.g.
    /// `88a8:0,8100:0` (stacked priority tags; see loadgen `--tags`).
    #[arg(long, default_value = "")]
    pub tags: String,
    /// flood: comma-separated servers: isodhcp-xdp, isodhcp-xdp-nooffer
    /// (XDP without the OFFER responder), isodhcp, kea.
    #[arg(long, default_value = "isodhcp-xdp,isodhcp-xdp-nooffer,isodhcp,kea")]
    pub servers: String,
    /// dora: comma-separated servers: isodhcp, isodhcp-xdp, kea, dnsmasq
    /// (and, for diagnosis, isodhcp-noset: `--xdp off` without the nft set).
    #[arg(long, default_value = "isodhcp,isodhcp-xdp,kea,dnsmasq")]
    pub dora_servers: String,
    /// dora: clients per run (each does one full DORA).
    #[arg(long, default_value_t = 1000)]
    pub clients: u64,
    /// dora: attempts in flight.
    #[arg(long, default_value_t = 64)]
    pub inflight: usize,
    /// dora: runs per server (fresh lab and server each); the table shows
    /// the median run by leases/s.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// dora: renewal rounds after the DORA phase (each client renews this
    /// many times; isodhcp and Kea).
    #[arg(long, default_value_t = 10)]
    pub renew_rounds: u32,
    /// dora: clients of the scale run and of the start-up measurement
    /// (isodhcp only); 0 skips both.
    #[arg(long, default_value_t = 10_000)]
    pub scale_clients: u64,
    /// dora: runs per isodhcp server at --scale-clients (median shown); the
    /// start-up is measured after the last.
    #[arg(long, default_value_t = 3)]
    pub scale_runs: usize,
    /// join: comma-separated servers a stock dhclient joins during a flood.
    #[arg(long, default_value = "isodhcp-xdp,isodhcp-xdp-nooffer,kea")]
    pub join_servers: String,
    /// join: the flood's DISCOVERs/s.
    #[arg(long, default_value_t = 1000)]
    pub join_rate: u64,
    /// join: dhclient starts per server (fresh server each).
    #[arg(long, default_value_t = 5)]
    pub join_tries: usize,
    /// soak: minutes to run (samples every 10 s; warm-up a fifth of the
    /// run, between 1 and 30 minutes).
    #[arg(long, default_value_t = 10)]
    pub minutes: u64,
    /// soak: background random-MAC DISCOVER flood, frames/s.
    #[arg(long, default_value_t = 500)]
    pub soak_flood_rate: u64,
    /// flood, join, soak: carry the server's replies to flood MACs across
    /// the bridge into the generator's namespace, as the lab did before
    /// the sink (by default the switch port drops them: on a real network
    /// they cost the switch and the attacker, not the router).
    #[arg(long)]
    pub carry_replies: bool,
    /// Use the binaries already in target/release (skip setup and builds).
    #[arg(long)]
    pub no_build: bool,
}

/// The binaries under test.
pub(crate) struct Bins {
    pub daemon: PathBuf,
    pub loadgen: PathBuf,
}

pub fn run(opts: &BenchOpts) -> Result<()> {
    let (do_flood, do_dora, do_soak) = match opts.which.as_str() {
        "flood" => (true, false, false),
        "dora" => (false, true, false),
        "all" => (true, true, false),
        "soak" | "join" => (false, false, opts.which == "soak"),
        o => bail!("unknown benchmark {o:?} (available: flood, dora, all, soak, join)"),
    };
    let bins = if opts.no_build {
        Bins {
            daemon: target_dir().join("release/isodhcp"),
            loadgen: target_dir().join("release/isodhcp-loadgen"),
        }
    } else {
        crate::setup::run()?;
        let d = crate::build::build()?;
        // Same ISODHCP_EBPF_OBJ as `build`, so the isodhcp library is not rebuilt.
        crate::util::run(
            cargo()
                .env("ISODHCP_EBPF_OBJ", crate::build::ebpf_object())
                .args(["build", "--release", "-p", "isodhcp-loadgen"]),
        )?;
        Bins {
            daemon: d,
            loadgen: target_dir().join("release/isodhcp-loadgen"),
        }
    };
    for b in [&bins.daemon, &bins.loadgen] {
        if !b.is_file() {
            bail!("{} missing (build it or drop --no-build)", b.display());
        }
    }
    preflight()?;
    for t in ["ethtool", "bpftool", "nft"] {
        if find_tool(t).is_none() {
            bail!("`{t}` is required (cargo xtask setup)");
        }
    }
    if do_flood {
        flood::run(opts, &bins)?;
    }
    if do_dora {
        dora::run(opts, &bins)?;
    }
    if do_soak {
        soak::run(opts, &bins)?;
    }
    if opts.which == "join" {
        join::run(opts, &bins)?;
    }
    Ok(())
}

/// Starts kea-dhcp4 (memfile, raw sockets, config and lease file
/// `kea-leases-<n>.csv` in the lab folder) on `srv0`; ready once it has
/// bound UDP 67. Returns it with its lease file.
pub(crate) fn start_kea(lab: &Lab, n: usize) -> Result<(Daemon, PathBuf)> {
    let dir = lab.dir();
    let (conf, leases) = kea_config(dir, n)?;
    let args: Vec<String> = vec![
        format!("KEA_PIDFILE_DIR={}", dir.display()),
        format!("KEA_LOCKFILE_DIR={}", dir.display()),
        KEA_BIN.into(),
        "-c".into(),
        conf.display().to_string(),
    ];
    let log = dir.join(format!("kea-{n}.log"));
    // env execs kea: the child pid is kea's.
    let mut d = Daemon::start(&lab.server, Path::new("/usr/bin/env"), &args, dir, &log)?;
    poll("kea-dhcp4 to bind UDP 67", Duration::from_secs(15), || {
        if !d.is_running() {
            bail!("kea-dhcp4 exited; log:\n{}", tail(&log, 30));
        }
        Ok(udp_port_bound(&lab.server, 67)?.then_some(()))
    })?;
    Ok((d, leases))
}

/// VmRSS of `pid`, KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// A Markdown table; the first row is the header.
pub(crate) fn render_cells(cells: &[Vec<String>]) -> String {
    let ncol = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            cells
                .iter()
                .map(|r| r.get(c).map_or(0, |v| v.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for (i, r) in cells.iter().enumerate() {
        let line: Vec<String> = (0..ncol)
            .map(|c| format!("{:<w$}", r.get(c).map_or("", String::as_str), w = widths[c]))
            .collect();
        let _ = writeln!(s, "| {} |", line.join(" | "));
        if i == 0 {
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(s, "|-{}-|", sep.join("-|-"));
        }
    }
    s
}

/// Writes `target/bench/<name>-<unix time>.json` and `.txt` (the table);
/// returns the JSON path.
pub(crate) fn save_results(name: &str, doc: &Value, table: &str) -> Result<PathBuf> {
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = out_dir.join(format!("{name}-{stamp}.json"));
    std::fs::write(&out, serde_json::to_string_pretty(doc)?)?;
    std::fs::write(out_dir.join(format!("{name}-{stamp}.txt")), table)?;
    Ok(out)
}

/// files. Drop kills it (the namespace guard would too).
pub(crate) struct Loadgen {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    name: String,
}

impl Loadgen {
    pub(crate) fn spawn(
        ns: &Netns,
        bin: &Path,
        dir: &Path,
        name: &str,
        args: &[String],
    ) -> Result<Loadgen> {
        let out = dir.join(format!("{name}.json"));
        let err = dir.join(format!("{name}.log"));
        let mut cmd = ns.nsenter_cmd(bin.to_str().context("loadgen path not UTF-8")?);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting loadgen {name} in {}", ns.name()))?;
        Ok(Loadgen {
            child: Some(child),
            out,
            err,
            name: name.into(),
        })
    }

    /// Polls stderr for `loadgen: ready`; fails at once if the process exits.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let (err, name) = (self.err.clone(), self.name.clone());
        let child = self.child.as_mut().context("not running")?;
        poll(&format!("loadgen {name} ready"), timeout, || {
            if std::fs::read_to_string(&err)?.contains("loadgen: ready") {
                return Ok(Some(()));
            }
            if let Some(st) = child.try_wait()? {
                bail!("loadgen {name} exited ({st}):\n{}", tail(&err, 20));
            }
            Ok(None)
        })
    }

    /// Waits for exit (killed after `timeout`) and parses the JSON on stdout.
    pub(crate) fn finish(&mut self, timeout: Duration) -> Result<Value> {
        let mut c = self.child.take().context("not running")?;
        let st = wait_child(&mut c, timeout)?.ok_or_else(|| {
            anyhow!(
                "loadgen {} did not finish within {timeout:?} (killed):\n{}",
                self.name,
                tail(&self.err, 20)
            )
        })?;
        if !st.success() {
            bail!(
                "loadgen {} failed ({st}):\n{}",
                self.name,
                tail(&self.err, 20)
            );
        }
        let s = std::fs::read_to_string(&self.out)?;
        serde_json::from_str(s.trim())
            .with_context(|| format!("loadgen {} output {s:?}", self.name))
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` every 50 ms until `Ok(Some)`; an `Err` aborts at once (unlike
/// `wait_until`, which retries), so a crashed process fails fast.
pub(crate) fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    // Bounded in count and by the deadline.
    for _ in 0..(timeout.as_millis() / 50 + 2) {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// utime + stime of `pid` and of its reaped children (e.g. the `nft`
/// processes isodhcp runs), seconds.
pub(crate) fn cpu_seconds_with_children(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').context("bad /proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime: fields 14..=17, indices 11..=14 here.
    let mut ticks = 0u64;
    for i in 11..=14 {
        ticks += f.get(i).context("short /proc stat")?.parse::<u64>()?;
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// The x-axis label of a chart whose categories sit at 0, 1, 2…:
/// `labels[x]` at a whole number, nothing between.
pub(crate) fn category_label(x: f64, labels: &[String]) -> String {
    let i = x.round();
    if (x - i).abs() > 0.01 || i < 0.0 {
        return String::new();
    }
    labels.get(i as usize).cloned().unwrap_or_default()
}

/// Softirq time of all CPUs since boot, seconds (`/proc/stat`, the
/// seventh number of the `cpu` line): where NAPI, XDP and the veth and
/// bridge paths of the lab run, whichever process they interrupt.
pub(crate) fn softirq_seconds() -> Result<f64> {
    let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    softirq_of(&s)
}

fn softirq_of(stat: &str) -> Result<f64> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let ticks: u64 = line
        .split_whitespace()
        .nth(7)
        .context("short cpu line in /proc/stat")?
        .parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// utime + stime of `pid`, seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').context("bad /proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: field 3 is state, so utime (14) and stime (15) are
    // at indices 11 and 12.
    let ticks: u64 =
        f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

pub(crate) fn kea_config(dir: &Path, n: usize) -> Result<(PathBuf, PathBuf)> {
    let leases = dir.join(format!("kea-leases-{n}.csv"));
    let conf = dir.join(format!("kea-{n}.json"));
    let c = json!({
        "Dhcp4": {
            "interfaces-config": {"interfaces": [SERVER_IF], "dhcp-socket-type": "raw"},
            "lease-database": {
                "type": "memfile", "persist": true, "lfc-interval": 0,
                "name": leases.display().to_string()
            },
            "valid-lifetime": 600,
            "renew-timer": 300,
            "rebind-timer": 525,
            "authoritative": true,
            "subnet4": [{
                "id": 1,
                "subnet": POOL,
                "pools": [{"pool": KEA_POOL}],
                "option-data": [
                    {"name": "routers", "data": "198.18.0.1"},
                    {"name": "domain-name-servers", "data": "198.18.0.53"}
                ]
            }],
            "loggers": [{
                "name": "kea-dhcp4",
                "output_options": [{"output": "stdout"}],
                "severity": "WARN"
            }]
        }
    });
    std::fs::write(&conf, serde_json::to_string_pretty(&c)?)?;
    Ok((conf, leases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softirq_is_the_seventh_number_of_the_cpu_line() {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let stat = "cpu  10 0 20 300 4 5 250 0 0 0\ncpu0 5 0 10 150 2 2 120 0 0 0\n";
        let s = softirq_of(stat).unwrap();
        assert!((s - 250.0 / hz).abs() < 1e-9, "{s}");
        assert!(softirq_of("intr 1 2\n").is_err());
    }

    #[test]
    fn cpu_and_rss_of_self_are_readable() {
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
        assert!(
            cpu_seconds_with_children(std::process::id()).unwrap()
                >= cpu_seconds(std::process::id()).unwrap()
        );
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn tables_are_aligned() {
        let t = render_cells(&[
            vec!["a".into(), "long header".into()],
            vec!["value".into(), "1".into()],
        ]);
        assert_eq!(
            t,
            "| a     | long header |\n|-------|-------------|\n| value | 1           |\n"
        );
    }
}
