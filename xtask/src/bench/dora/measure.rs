//! One measured run: the generator against a live server, then where its
//! leases ended up.

use super::*;

/// Selected metrics, name → value.
type Metrics = serde_json::Map<String, Value>;

/// Runs the generator against the live server, checks the leases, stops
/// the server (SIGTERM) and counts the lease file.
pub(super) fn measure(
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
    let args = loadgen_args(&c.ifname, clients, inflight, renew);
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

    let (mut checks, datapath, metrics) = if server.is_isodhcp() {
        isodhcp_checks(live, bins)?
    } else {
        (Checks::default(), None, None)
    };
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

/// The generator's command line: `dora` on `ifname` with the bench's
/// timeout, tries and MAC prefix.
fn loadgen_args(ifname: &str, clients: u64, inflight: usize, renew: u32) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-i".into(),
        ifname.to_string(),
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
    args
}

/// The running isodhcp's view after a run: leases over the control socket,
/// routes, set elements (not for `isodhcp-noset`), its datapath and the
/// scraped metrics (None with a message if the scrape failed).
fn isodhcp_checks(live: &Live, bins: &Bins) -> Result<(Checks, Option<String>, Option<Metrics>)> {
    let mut checks = Checks::default();
    let sock = live.lab.dir().join(format!("isodhcp_{SERVER_IF}.sock"));
    checks.ctl_leases = Some(ctl_lease_count(&bins.daemon, &sock)?);
    let datapath = ctl_datapath(&bins.daemon, &sock);
    checks.routes = Some(route_count(&live.lab)?);
    if live.server != Server::IsodhcpNoSet {
        checks.set_elements = Some(set_count(&live.lab)?);
    }
    let metrics = match scrape_metrics(&live.lab) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("bench: metrics scrape failed: {e:#}");
            None
        }
    };
    Ok((checks, datapath, metrics))
}

/// GET /metrics from isodhcp's endpoint; keeps the durable-write histogram
/// totals and the reply counters.
fn scrape_metrics(lab: &Lab) -> Result<Metrics> {
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
pub(super) fn parse_metrics(text: &str) -> Metrics {
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
pub(super) fn commit_stats(r: &Run) -> Option<(u64, f64)> {
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
