//! `cargo xtask bench join`: a guest joins during a flood. For each server
//! (`--join-servers`) and each try (`--join-tries`, a fresh server each),
//! the lab's flood namespace sends random-MAC DISCOVERs at `--join-rate`,
//! and 3 s later (budget bursts spent) a stock `dhclient -1` starts on
//! another client; the figure is the
//! time from its start to its exit with a lease (it gives up, and counts as
//! failed, after the client helper's timeout). This is what a new guest
//! sees of a flood: isodhcp's XDP OFFER responder against the same
//! admission without it and against Kea.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use isodhcp_tests::{ClientKind, Lab};
use serde_json::json;

use super::flood::{FLOOD_PREFIX, Server, prepare_lab, start_server};
use super::{BenchOpts, Bins, Loadgen, save_results};

/// Longest flood of one try, seconds (the dhclient helper gives up at 40 s).
const FLOOD_SECS: u64 = 50;
/// The flood runs this long before dhclient starts: long enough to spend
/// every admission budget's burst (1 s worth), so the guest meets the
/// flood's steady state, not a server that has not noticed it yet.
const WARMUP: Duration = Duration::from_secs(3);

struct Try {
    server: Server,
    secs: Option<f64>,
}

pub fn run(opts: &BenchOpts, bins: &Bins) -> Result<()> {
    if opts.join_rate == 0 || opts.join_tries == 0 || opts.join_tries > 50 {
        bail!("--join-rate must be > 0 and --join-tries 1..=50");
    }
    let servers: Vec<Server> = opts
        .join_servers
        .split(',')
        .map(Server::parse)
        .collect::<Result<_>>()?;
    let mut tries = Vec::new();
    for &server in &servers {
        // Three clients: the lab set-up of `flood` (c0 floods, c1 joins).
        let lab = Lab::new("bjoin", 3).context("building the lab")?;
        prepare_lab(&lab, opts.carry_replies)?;
        eprintln!("\nbench join: {} (lab {})", server.label(), lab.id);
        for n in 0..opts.join_tries {
            let secs = one_try(&lab, server, n, opts.join_rate, bins)
                .with_context(|| format!("{} try {n}", server.label()))?;
            match secs {
                Some(s) => eprintln!(
                    "bench join: {} try {n}: lease after {s:.2} s",
                    server.label()
                ),
                None => eprintln!("bench join: {} try {n}: no lease", server.label()),
            }
            tries.push(Try { server, secs });
        }
    }
    let table = render(&servers, &tries, opts.join_rate);
    println!("\n{table}");
    let doc = json!({
        "bench": "join",
        "flood_rate": opts.join_rate,
        "replies_to_flood": super::flood::replies_model(opts.carry_replies),
        "tries": tries.iter().map(|t| json!({
            "server": t.server.label(),
            "seconds": t.secs,
        })).collect::<Vec<_>>(),
    });
    let out = save_results("join", &doc, &table)?;
    println!("raw results: {}", out.display());
    Ok(())
}

/// One try: fresh server, flood ready, then dhclient; seconds to a lease.
fn one_try(lab: &Lab, server: Server, n: usize, rate: u64, bins: &Bins) -> Result<Option<f64>> {
    let (_daemon, _leases) = start_server(lab, server, n, &bins.daemon)?;
    let args: Vec<String> = [
        "-i",
        &lab.client(0).ifname,
        "flood",
        "--rate",
        &rate.to_string(),
        "--frames",
        &(rate * FLOOD_SECS).to_string(),
        "--seconds",
        &FLOOD_SECS.to_string(),
        "--mac-prefix",
        FLOOD_PREFIX,
    ]
    .map(String::from)
    .to_vec();
    let mut flood = Loadgen::spawn(
        &lab.client(0).ns,
        &bins.loadgen,
        lab.dir(),
        &format!("join-flood-{n}"),
        &args,
    )?;
    flood.wait_ready(Duration::from_secs(10))?;
    // Part of the measurement's set-up, not a readiness wait (see WARMUP).
    std::thread::sleep(WARMUP);
    let c = lab.client(1);
    let t0 = Instant::now();
    let got = c.acquire(ClientKind::Dhclient);
    let secs = t0.elapsed().as_secs_f64();
    let _ = c.dhclient_stop(true);
    drop(flood);
    Ok(got.ok().map(|_| secs))
}

fn render(servers: &[Server], tries: &[Try], rate: u64) -> String {
    let mut s = String::from(
        "| server | flood/s | tries | leased | median s | max s |\n|---|---|---|---|---|---|\n",
    );
    for &srv in servers {
        let mut ok: Vec<f64> = tries
            .iter()
            .filter(|t| t.server == srv)
            .filter_map(|t| t.secs)
            .collect();
        let n = tries.iter().filter(|t| t.server == srv).count();
        ok.sort_by(f64::total_cmp);
        let median = ok
            .get(ok.len() / 2)
            .map_or("-".into(), |v| format!("{v:.2}"));
        let max = ok.last().map_or("-".into(), |v| format!("{v:.2}"));
        s.push_str(&format!(
            "| {} | {rate} | {n} | {} | {median} | {max} |\n",
            srv.label(),
            ok.len()
        ));
    }
    s
}
