//! Tables of `cargo xtask bench dora`: medians, ratios to Kea, cells.

use super::*;

pub(super) fn f0(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.0}"))
}

pub(super) fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    })
}

pub(super) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

pub(super) fn opt(x: Option<u64>) -> String {
    x.map_or("-".into(), |v| v.to_string())
}

/// Headers of [`stat_cells`].
const STAT_HEADERS: [&str; 6] = [
    "ok/attempts",
    "NAK",
    "retries",
    "timeouts",
    "p50 ms",
    "p99 ms",
];

/// Cells about one attempt-stats object: ok/attempts, NAK, retries,
/// failed+abandoned, p50, p99.
pub(super) fn stat_cells(s: &Value) -> [String; 6] {
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

pub(super) fn one_line(r: &Run) -> String {
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
pub(super) fn commit_cell(r: &Run) -> String {
    commit_stats(r).map_or("-".into(), |(n, ms)| format!("{n} ({ms:.1})"))
}

pub(super) fn restart_line(r: &Restart) -> String {
    format!(
        "{} {} restart with {} leases: ready after {:.0} ms (RSS {:.1} MiB), routes+set complete after {} ms (RSS {:.1} MiB); routes {}, set {}, leases {} (--dump {:.0} ms)",
        r.server.label(),
        r.kind,
        r.leases_in_file,
        r.ready_ms,
        r.rss_ready_kib as f64 / 1024.0,
        ms(r.complete_ms),
        r.rss_after_kib as f64 / 1024.0,
        r.routes,
        r.set_elements,
        opt(r.ctl_leases),
        r.dump_ms
    )
}

/// The median run by leases/s of each server (lower middle for an even
/// count), with the min and max leases/s.
pub(super) fn medians<'a>(servers: &[Server], runs: &'a [Run]) -> Vec<(&'a Run, f64, f64, usize)> {
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
pub(super) fn median_of(runs: &[Run], s: Server, f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
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

pub(super) fn render(
    opts: &crate::bench::BenchOpts,
    servers: &[Server],
    runs: &[Run],
    scale: &[Run],
    restarts: &[Restart],
) -> String {
    let med = medians(servers, runs);
    let mut out = dora_table(opts, &med);
    let renewing: Vec<&Server> = servers.iter().filter(|s| s.renews()).collect();
    if !renewing.is_empty() {
        out += &renew_table(opts, &renewing, runs);
    }
    if !scale.is_empty() {
        out += &scale_table(opts, servers, &med, scale);
    }
    if !restarts.is_empty() {
        out += &restart_table(restarts);
    }
    out
}

/// The cost and lease-state columns the DORA and the scale table end with.
const STATE_HEADERS: [&str; 7] = [
    "CPU %",
    "CPU µs/exchange",
    "durable writes (mean ms)",
    "leases ctl/file",
    "routes",
    "set elems",
    "neigh (ns/host, fulls)",
];

/// A run's cells under [`STATE_HEADERS`]; the neighbour cell is `ns/host,
/// fulls`: entries in the server namespace and host-wide, and ARP table
/// overflows during the run.
fn state_cells(r: &Run) -> [String; 7] {
    let c = &r.checks;
    [
        format!("{:.0}", r.cpu_pct),
        r.cpu_us_per_exchange()
            .map_or_else(|| "-".into(), |u| format!("{u:.0}")),
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
    ]
}

/// Full DORA: the median run of each server, compared with Kea's.
fn dora_table(opts: &crate::bench::BenchOpts, med: &[(&Run, f64, f64, usize)]) -> String {
    let kea = med.iter().find(|m| m.0.server == Server::Kea).map(|m| m.0);
    let kea_lps = kea.map(Run::leases_per_s);
    let kea_p99 = kea.and_then(|k| k.out["stats"]["p99_ms"].as_f64());
    let mut out = String::new();

    out += &format!(
        "Full DORA: {} clients, {} in flight, median of {} run(s) by leases/s (isodhcp: host route + nft set + durable lease file per lease; CPU % = server + its children such as nft, over DORA + renewals)\n\n",
        opts.clients, opts.inflight, opts.runs
    );
    let mut cells = vec![
        ["server", "leases/s", "min–max"]
            .into_iter()
            .chain(STAT_HEADERS)
            .chain(["× Kea", "p99 / Kea p99"])
            .chain(STATE_HEADERS)
            .map(String::from)
            .collect(),
    ];
    for (r, lo, hi, _) in med {
        let mut row = vec![
            r.server.label().into(),
            format!("{:.0}", r.leases_per_s()),
            format!("{lo:.0}–{hi:.0}"),
        ];
        row.extend(stat_cells(&r.out["stats"]));
        row.extend([
            ratio(Some(r.leases_per_s()), kea_lps),
            ratio(r.out["stats"]["p99_ms"].as_f64(), kea_p99),
        ]);
        row.extend(state_cells(r));
        cells.push(row);
    }
    out += &render_cells(&cells);
    out
}

/// Renewals: the run with the median renewals/s of each server that
/// renews, compared with Kea's.
fn renew_table(opts: &crate::bench::BenchOpts, renewing: &[&Server], runs: &[Run]) -> String {
    let mut out = String::new();
    let kea_r = median_of(runs, Server::Kea, Run::renew_per_s);
    out += &format!(
        "\nRenewals: the same clients renew (unicast REQUEST with ciaddr), {} round(s), {} in flight; median of {} run(s) by renewals/s\n\n",
        opts.renew_rounds, opts.inflight, opts.runs
    );
    let mut cells = vec![
        ["server", "renewals/s"]
            .into_iter()
            .chain(STAT_HEADERS)
            .chain(["× Kea"])
            .map(String::from)
            .collect(),
    ];
    for &&s in renewing {
        let rps = median_of(runs, s, Run::renew_per_s);
        // The run whose renewals/s is the median.
        let Some(r) = runs
            .iter()
            .filter(|r| r.server == s)
            .find(|r| r.renew_per_s() == rps)
        else {
            continue;
        };
        let mut row = vec![s.label().into(), f0(rps)];
        row.extend(stat_cells(&r.out["renew"]["stats"]));
        row.push(ratio(rps, kea_r));
        cells.push(row);
    }
    out += &render_cells(&cells);
    out
}

/// Scale: the isodhcp medians at `--clients` and at `--scale-clients`.
fn scale_table(
    opts: &crate::bench::BenchOpts,
    servers: &[Server],
    med: &[(&Run, f64, f64, usize)],
    scale: &[Run],
) -> String {
    let mut out = String::new();
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
        ]
        .into_iter()
        .chain(STATE_HEADERS)
        .map(String::from)
        .collect(),
    ];
    let small = med.iter().filter(|m| m.0.server.is_isodhcp()).map(|m| m.0);
    let big = medians(servers, scale);
    for r in small.chain(big.iter().map(|m| m.0)) {
        let s = stat_cells(&r.out["stats"]);
        let x = stat_cells(&r.out["renew"]["stats"]);
        let mut row = vec![
            r.server.label().into(),
            r.clients.to_string(),
            format!("{:.0}", r.leases_per_s()),
            s[0].clone(),
            s[3].clone(),
            s[4].clone(),
            s[5].clone(),
            f0(r.renew_per_s()),
            x[5].clone(),
        ];
        row.extend(state_cells(r));
        cells.push(row);
    }
    out += &render_cells(&cells);
    out
}

/// Start-up with the scale run's leases, warm and cold.
fn restart_table(restarts: &[Restart]) -> String {
    let mut out = String::new();
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
            "--dump ms",
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
            format!("{:.0}", r.dump_ms),
        ]);
    }
    out += &render_cells(&cells);
    out
}
