//! `cargo xtask bench soak --minutes N`: isodhcp (XDP on, hooks, nft set,
//! 60 s leases) under churn for N minutes, read every 10 s; fails on growth
//! after warm-up, a lost lease, or a `--verify` finding that persists.
//!
//! Lab (`isodhcp-tests`, flood bridge set-up): `c0` floods random-MAC
//! DISCOVERs the whole time; `c1` runs a churn round every sample period (100
//! new clients, full DORA and one renewal each; every other round releases,
//! the others leave their leases to expire); `c2` holds four resident clients
//! that renew every 5 s and must keep their address from start to finish and
//! across a restart at the end. Every period the daemon gets SIGUSR1 and is
//! asked `--verify`. Samples: RSS, open fds, leases, journal size, hook
//! backlog and runs, CPU. Output: a table per minute, and JSON and SVG in
//! `target/bench/`. Nothing depends on N, so a 24 h run is the same command.

mod chart;
mod verdict;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use isodhcp_tests::daemon::Daemon;
use isodhcp_tests::util::{self, tail};
use isodhcp_tests::{DaemonConfig, Lab, XdpMode};
use serde_json::{Value, json};

use super::{
    BenchOpts, Bins, Loadgen, NFT_SCRIPT, NFT_SET, POOL, cpu_seconds, render_cells, rss_kib,
};
use verdict::{Sample, growth, leases_in, lost_leases, persistent};

const SAMPLE_SECS: u64 = 10;
const LEASE_SECS: u32 = 60;
const CHURN_CLIENTS: u64 = 100;
const RESIDENTS: [&str; 4] = [
    "02:50:00:00:00:01",
    "02:50:00:00:00:02",
    "02:50:00:00:00:03",
    "02:50:00:00:00:04",
];
const RESIDENT_INTERVAL_MS: u64 = 5000;
/// New-client budget, frames/s: above flood plus churn.
const NEW_CLIENT_RATE: u64 = 5000;
/// `--verify` rounds (500 ms apart) a finding must survive to count.
const VERIFY_ROUNDS: usize = 3;

/// What the run found besides the samples.
#[derive(Default)]
struct Findings {
    list: Vec<String>,
    churn_ok: u64,
    churn_tried: u64,
    flood_frames: u64,
    resident_renewals: u64,
    sigusr1: u64,
    verifies: u64,
}

pub fn run(opts: &BenchOpts, bins: &Bins) -> Result<()> {
    let total = Duration::from_secs(opts.minutes.max(1) * 60);
    let warmup_s = (total.as_secs_f64() / 5.0).clamp(60.0, 1800.0);
    let lab = Lab::new("soak", 3).context("building the lab")?;
    super::flood::prepare_lab(&lab, opts.carry_replies)?;
    let cfg = daemon_config(&lab, bins)?;
    let mut d = lab.start_isodhcp(&cfg)?;
    let sock = lab.dir().join("isodhcp_srv0.sock");
    eprintln!(
        "soak: {} min, sample every {SAMPLE_SECS} s, warm-up {warmup_s:.0} s, flood {}/s",
        opts.minutes, opts.soak_flood_rate
    );
    let mut w = Workers::start(&lab, bins, opts.soak_flood_rate, total.as_secs())?;
    let start_leases = resident_leases(bins, &sock)?;
    if start_leases.len() != RESIDENTS.len() {
        bail!("residents without a lease at the start: {start_leases:?}");
    }
    let (samples, mut f) = sample_loop(&mut w, &mut d, &sock, &start_leases, total)?;
    w.finish(&mut f)?;
    restart_keeps_residents(&lab, &cfg, &mut d, bins, &sock, &start_leases, &mut f)?;
    f.list.extend(growth(&samples, warmup_s));
    report(opts, &samples, &f, warmup_s)
}

fn daemon_config(lab: &Lab, bins: &Bins) -> Result<DaemonConfig> {
    let dir = lab.dir();
    let hook = dir.join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n")?;
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let script = dir.join("sets.nft");
    std::fs::write(&script, NFT_SCRIPT)?;
    lab.server
        .run_ok("nft", &["-f", script.to_str().context("path not UTF-8")?])?;
    let mut cfg = DaemonConfig::for_lab_with_bin(lab, &bins.daemon);
    cfg.pool = Some(POOL.into());
    cfg.lease_secs = Some(LEASE_SECS);
    cfg.xdp = XdpMode::Auto;
    cfg.verbose = 0;
    cfg.extra = vec![
        // Churn must get through: the flood's new MACs are then admitted
        // too, so the offer table and the fresh-MAC map work all the time.
        "--new-client-rate".into(),
        NEW_CLIENT_RATE.to_string(),
        "--hook-file".into(),
        hook.display().to_string(),
        "--nft-set-isolated".into(),
        NFT_SET.into(),
    ];
    Ok(cfg)
}

/// The load, in bounded chunks (loadgen runs at most 600 s, and a 24 h
/// soak is many chunks): a churn round and a flood slice per period, the
/// residents' probes restarted every [`RESIDENT_CHUNK_S`].
struct Workers<'a> {
    lab: &'a Lab,
    bins: &'a Bins,
    flood_rate: u64,
    total_s: u64,
    churn: Option<Loadgen>,
    flood: Option<Loadgen>,
    residents: Vec<Loadgen>,
}

/// Seconds each resident probe runs before it is restarted.
const RESIDENT_CHUNK_S: u64 = 300;

impl<'a> Workers<'a> {
    fn start(lab: &'a Lab, bins: &'a Bins, flood_rate: u64, total_s: u64) -> Result<Workers<'a>> {
        let mut w = Workers {
            lab,
            bins,
            flood_rate,
            total_s,
            churn: None,
            flood: None,
            residents: Vec::new(),
        };
        w.spawn_residents(0)?;
        Ok(w)
    }

    /// Collects the last period's churn and flood, starts the next ones;
    /// every [`RESIDENT_CHUNK_S`] also the residents'.
    fn next_period(&mut self, round: u64, f: &mut Findings) -> Result<()> {
        let limit = Duration::from_secs(SAMPLE_SECS);
        if let Some(mut c) = self.churn.take() {
            let v = c.finish(limit)?;
            f.churn_ok += v["stats"]["successes"].as_u64().unwrap_or(0);
            f.churn_tried += CHURN_CLIENTS;
        }
        if let Some(mut fl) = self.flood.take() {
            f.flood_frames += fl.finish(limit)?["frames_sent"].as_u64().unwrap_or(0);
        }
        if round > 0 && (round * SAMPLE_SECS).is_multiple_of(RESIDENT_CHUNK_S) {
            self.finish_residents(f)?;
            self.spawn_residents(round * SAMPLE_SECS)?;
        }
        self.churn = Some(self.spawn_churn(round)?);
        self.flood = Some(self.spawn_flood(round)?);
        Ok(())
    }

    fn finish(mut self, f: &mut Findings) -> Result<()> {
        let limit = Duration::from_secs(SAMPLE_SECS);
        if let Some(mut c) = self.churn.take() {
            c.finish(limit)?;
        }
        if let Some(mut fl) = self.flood.take() {
            fl.finish(limit)?;
        }
        self.finish_residents(f)
    }

    fn finish_residents(&mut self, f: &mut Findings) -> Result<()> {
        for (mac, mut r) in RESIDENTS.iter().zip(self.residents.drain(..)) {
            let v = r.finish(Duration::from_secs(RESIDENT_CHUNK_S + 30))?;
            f.resident_renewals += v["stats"]["successes"].as_u64().unwrap_or(0);
            let fails = v["stats"]["failures"].as_u64().unwrap_or(u64::MAX);
            if fails != 0 {
                f.list.push(format!(
                    "resident {mac}: {fails} failed renewals: {}",
                    v["stats"]
                ));
            }
        }
        Ok(())
    }

    /// One `probe --kind known --mac M` per resident, renewing every 5 s,
    /// for a chunk starting `at` seconds into the run.
    fn spawn_residents(&mut self, at: u64) -> Result<()> {
        let c = self.lab.client(2);
        let secs = RESIDENT_CHUNK_S.min(self.total_s.saturating_sub(at)).max(1);
        for (i, mac) in RESIDENTS.iter().enumerate() {
            let args: Vec<String> = [
                "-i", &c.ifname, "probe", "--kind", "known", "--mac", mac, "--repeat", "renew",
            ]
            .iter()
            .map(ToString::to_string)
            .chain([
                "--interval".into(),
                RESIDENT_INTERVAL_MS.to_string(),
                "--seconds".into(),
                secs.to_string(),
                "--timeout".into(),
                "1000".into(),
                "--max-tries".into(),
                "4".into(),
            ])
            .collect();
            let name = format!("resident-{i}");
            let mut p = Loadgen::spawn(&c.ns, &self.bins.loadgen, self.lab.dir(), &name, &args)?;
            p.wait_ready(Duration::from_secs(15))?;
            self.residents.push(p);
        }
        Ok(())
    }

    /// A flood slice from `c0` for most of one period.
    fn spawn_flood(&self, round: u64) -> Result<Loadgen> {
        let c = self.lab.client(0);
        let secs = SAMPLE_SECS - 1;
        let args: Vec<String> = vec![
            "-i".into(),
            c.ifname.clone(),
            "flood".into(),
            "--rate".into(),
            self.flood_rate.to_string(),
            "--frames".into(),
            self.flood_rate.saturating_mul(secs).to_string(),
            "--seconds".into(),
            secs.to_string(),
            "--mac-prefix".into(),
            super::flood::FLOOD_PREFIX.into(),
        ];
        let name = format!("flood-{round}");
        Loadgen::spawn(&c.ns, &self.bins.loadgen, self.lab.dir(), &name, &args)
    }

    /// One churn round on `c1`: fresh clients, DORA, a renewal, and every
    /// other round a RELEASE (the rest expire).
    fn spawn_churn(&self, round: u64) -> Result<Loadgen> {
        let c = self.lab.client(1);
        let mut args: Vec<String> = vec![
            "-i".into(),
            c.ifname.clone(),
            "dora".into(),
            "--clients".into(),
            CHURN_CLIENTS.to_string(),
            "--inflight".into(),
            "16".into(),
            "--seconds".into(),
            (SAMPLE_SECS - 3).to_string(),
            "--renew".into(),
            "1".into(),
            "--mac-prefix".into(),
            "0e".into(),
        ];
        if round.is_multiple_of(2) {
            args.push("--release".into());
        }
        let name = format!("churn-{round}");
        Loadgen::spawn(&c.ns, &self.bins.loadgen, self.lab.dir(), &name, &args)
    }
}

/// Every period: next load chunk, SIGUSR1, `--verify`, the residents'
/// addresses, one sample.
fn sample_loop(
    w: &mut Workers,
    d: &mut Daemon,
    sock: &Path,
    residents: &[(String, String)],
    total: Duration,
) -> Result<(Vec<Sample>, Findings)> {
    let pid = d.pid().context("daemon not running")?;
    let (lab, bins) = (w.lab, w.bins);
    let t0 = Instant::now();
    let mut f = Findings::default();
    let mut samples = Vec::new();
    for round in 0..total.as_secs() / SAMPLE_SECS {
        let due = t0 + Duration::from_secs((round + 1) * SAMPLE_SECS);
        w.next_period(round, &mut f)?;
        d.signal(libc::SIGUSR1)?;
        f.sigusr1 += 1;
        verify_round(bins, sock, &mut f, t0.elapsed().as_secs())?;
        for (mac, was, now) in lost_leases(residents, &resident_leases(bins, sock)?) {
            f.list.push(format!(
                "t={}s: resident {mac} had {was}, now {now:?}",
                t0.elapsed().as_secs()
            ));
        }
        if !d.is_running() {
            bail!("isodhcp died; log:\n{}", tail(&d.log, 40));
        }
        let s = sample(pid, sock, bins, lab, t0.elapsed().as_secs_f64())?;
        eprintln!(
            "soak: t={:>5.0}s rss={} KiB fds={} leases={} journal={} B hooks pending={} runs={}",
            s.t, s.rss_kib, s.fds, s.leases, s.journal_bytes, s.hooks_pending, s.hooks_runs
        );
        samples.push(s);
        // The period's remainder: this IS the sampling cadence.
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    Ok((samples, f))
}

/// `isodhcp --socket SOCK ARGS --json`, parsed; any exit code.
fn ctl(bins: &Bins, sock: &Path, args: &[&str]) -> Result<(Option<i32>, Value)> {
    let o = util::run(
        Command::new(&bins.daemon)
            .arg("--socket")
            .arg(sock)
            .args(args)
            .arg("--json"),
        Duration::from_secs(15),
    )?;
    let v = serde_json::from_str(&o.stdout)
        .with_context(|| format!("isodhcp {args:?}: not JSON: {}{}", o.stdout, o.stderr))?;
    Ok((o.status.code(), v))
}

/// `--verify` up to [`VERIFY_ROUNDS`] times; a finding present in every
/// round is recorded.
fn verify_round(bins: &Bins, sock: &Path, f: &mut Findings, t: u64) -> Result<()> {
    f.verifies += 1;
    let mut rounds = Vec::new();
    for _ in 0..VERIFY_ROUNDS {
        let (code, v) = ctl(bins, sock, &["--verify"])?;
        if code == Some(0) {
            return Ok(());
        }
        rounds.push(
            v["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| format!("{} {}", x["severity"], x["what"]))
                .collect::<Vec<_>>(),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for p in persistent(&rounds) {
        f.list.push(format!("t={t}s: --verify: {p}"));
    }
    Ok(())
}

/// The residents' `(mac, ip)` from `--dump`.
fn resident_leases(bins: &Bins, sock: &Path) -> Result<Vec<(String, String)>> {
    let (_, v) = ctl(bins, sock, &["--dump"])?;
    Ok(leases_in(&v)
        .into_iter()
        .filter(|(m, _)| RESIDENTS.contains(&m.as_str()))
        .collect())
}

fn sample(pid: u32, sock: &Path, bins: &Bins, lab: &Lab, t: f64) -> Result<Sample> {
    let (_, st) = ctl(bins, sock, &["--status"])?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let journal = lab.dir().join("leases.json.journal");
    let c = &st["clients"];
    Ok(Sample {
        t,
        rss_kib: rss_kib(pid)?,
        fds,
        leases: ["standard", "compat", "playground"]
            .iter()
            .map(|k| c[k].as_u64().unwrap_or(0))
            .sum(),
        journal_bytes: std::fs::metadata(journal).map_or(0, |m| m.len()),
        hooks_pending: st["hooks"]["pending"].as_u64().unwrap_or(0),
        hooks_runs: st["hooks"]["runs"].as_u64().unwrap_or(0),
        cpu_s: cpu_seconds(pid)?,
    })
}

/// SIGTERM and start again on the same lease file: the residents' leases
/// are still theirs.
fn restart_keeps_residents(
    lab: &Lab,
    cfg: &DaemonConfig,
    d: &mut Daemon,
    bins: &Bins,
    sock: &Path,
    residents: &[(String, String)],
    f: &mut Findings,
) -> Result<()> {
    d.signal(libc::SIGTERM)?;
    let st = d.wait_exit(Duration::from_secs(20))?;
    if !st.success() {
        f.list.push(format!("exit status {st} on SIGTERM"));
    }
    *d = lab.start_isodhcp(cfg)?;
    for (mac, was, now) in lost_leases(residents, &resident_leases(bins, sock)?) {
        f.list.push(format!(
            "after restart: resident {mac} had {was}, now {now:?}"
        ));
    }
    Ok(())
}

fn report(opts: &BenchOpts, samples: &[Sample], f: &Findings, warmup_s: f64) -> Result<()> {
    let mut cells = vec![
        [
            "min",
            "RSS KiB",
            "fds",
            "leases",
            "journal B",
            "hooks pending",
            "hook runs",
            "CPU s",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let per_min = (60 / SAMPLE_SECS) as usize;
    for s in samples.iter().skip(per_min - 1).step_by(per_min) {
        cells.push(vec![
            format!("{:.0}", s.t / 60.0),
            s.rss_kib.to_string(),
            s.fds.to_string(),
            s.leases.to_string(),
            s.journal_bytes.to_string(),
            s.hooks_pending.to_string(),
            s.hooks_runs.to_string(),
            format!("{:.1}", s.cpu_s),
        ]);
    }
    let mut table = render_cells(&cells);
    table += &format!(
        "\nchurn: {}/{} clients leased; residents: {} renewals; flood: {} frames; \
         SIGUSR1 {}x, --verify {}x; warm-up {warmup_s:.0} s\n",
        f.churn_ok, f.churn_tried, f.resident_renewals, f.flood_frames, f.sigusr1, f.verifies
    );
    let doc = json!({
        "minutes": opts.minutes, "sample_secs": SAMPLE_SECS, "warmup_s": warmup_s,
        "flood_rate": opts.soak_flood_rate, "flood_frames": f.flood_frames,
        "churn_ok": f.churn_ok, "churn_tried": f.churn_tried,
        "resident_renewals": f.resident_renewals,
        "findings": f.list, "samples": samples.iter().map(Sample::to_json).collect::<Vec<_>>(),
    });
    let json_path = super::save_results("soak", &doc, &table)?;
    let svg: PathBuf = json_path.with_extension("svg");
    let title = format!("isodhcp soak, {} min (shaded: warm-up)", opts.minutes);
    chart::write(&svg, samples, warmup_s, &title)?;
    println!("{table}");
    println!(
        "results: {}\nchart:   {}",
        json_path.display(),
        svg.display()
    );
    if f.list.is_empty() {
        println!("soak: PASS (flat after warm-up, no lease lost, no persistent --verify finding)");
        return Ok(());
    }
    for x in &f.list {
        println!("soak: FINDING: {x}");
    }
    bail!("soak failed with {} finding(s)", f.list.len())
}
