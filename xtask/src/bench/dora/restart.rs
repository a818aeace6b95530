//! Start-up with a full lease file: time to `isodhcp ready`, memory, and
//! time until the kernel state is complete again.

use super::*;

/// Starts isodhcp again on the lab of a finished run (its lease file holds
/// `want` leases): `cold` first removes its routes and set elements.
pub(super) fn restart(live: &mut Live, bins: &Bins, want: u64, cold: bool) -> Result<Restart> {
    let cfg = live.cfg.clone().context("restart: not isodhcp")?;
    let in_file = isodhcp_file_leases(&live.lease_file)?;
    if in_file != want {
        bail!("lease file holds {in_file} leases, expected {want}");
    }
    if cold {
        flush_kernel_state(&live.lab)?;
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
    let ready = wait_ready(&mut d, &log, t0)?;
    let pid = d.pid().context("pid")?;
    let rss_ready = rss_kib(pid)?;
    let complete = wait_complete(&live.lab, want, t0)?;
    let rss_after = rss_kib(pid)?;
    let sock = live.lab.dir().join(format!("isodhcp_{SERVER_IF}.sock"));
    // What an operator waits for `--dump=leases --json` of the whole table
    // (request, answer, parse).
    let t_dump = Instant::now();
    let ctl_leases = ctl_lease_count(&bins.daemon, &sock).ok();
    let dump_ms = t_dump.elapsed().as_secs_f64() * 1000.0;
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
        ctl_leases,
        dump_ms,
    };
    live.daemon = Some(d);
    stop(live)?;
    Ok(r)
}

/// Cold start: flushes isodhcp's routes (proto 108) and the nft set, as
/// after a reboot, and checks that nothing is left.
fn flush_kernel_state(lab: &Lab) -> Result<()> {
    lab.server.ip(&["route", "flush", "proto", "108"])?;
    let p: Vec<&str> = NFT_SET.split_whitespace().collect();
    lab.server
        .run_ok("nft", &["flush", "set", p[0], p[1], p[2]])?;
    let (r, s) = (route_count(lab)?, set_count(lab)?);
    if r != 0 || s != 0 {
        bail!("cold restart: {r} routes and {s} set elements left after flushing");
    }
    Ok(())
}

/// Time from `t0` (exec) until `isodhcp ready` is in the log.
fn wait_ready(d: &mut Daemon, log: &Path, t0: Instant) -> Result<Duration> {
    // Fine-grained readiness poll (2 ms), bounded in count and time.
    let mut ready = None;
    for _ in 0..(READY_DEADLINE.as_millis() / 2 + 2) {
        if std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(isodhcp_tests::daemon::READY_MARKER)
        {
            ready = Some(t0.elapsed());
            break;
        }
        if !d.is_running() {
            bail!("isodhcp exited during start-up; log:\n{}", tail(log, 30));
        }
        if t0.elapsed() > READY_DEADLINE {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    ready.with_context(|| {
        format!(
            "no `isodhcp ready` within {READY_DEADLINE:?}; log:\n{}",
            tail(log, 30)
        )
    })
}

/// Kernel state complete (reconcile may finish after `ready`): the time
/// at which the first check that found `want` routes and set elements
/// began (a check runs `ip` and `nft`, some tens of ms); None if not
/// within the deadline. Bounded in count and time.
fn wait_complete(lab: &Lab, want: u64, t0: Instant) -> Result<Option<Duration>> {
    let mut complete = None;
    for _ in 0..600 {
        let began = t0.elapsed();
        if route_count(lab)? >= want && set_count(lab)? >= want {
            complete = Some(began);
            break;
        }
        if t0.elapsed() > READY_DEADLINE {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(complete)
}
