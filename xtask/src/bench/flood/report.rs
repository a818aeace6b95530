//! One row of `cargo xtask bench flood` and how it is shown: the JSON
//! record, the progress line and the table.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Server, rate_label};
use crate::bench::render_cells;

#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) server: Server,
    pub(super) rate: Option<u64>,
    pub(super) flood: Option<Value>,
    pub(super) known: Value,
    pub(super) new: Value,
    pub(super) flood_leases: u64,
    pub(super) total_leases: u64,
    pub(super) cpu_pct: f64,
    /// Softirq time of the whole machine over the window, % of one core.
    pub(super) softirq_pct: f64,
    pub(super) window_s: f64,
    /// XDP counter deltas over the row (isodhcp with XDP), by field name.
    pub(super) xdp: Option<BTreeMap<String, u64>>,
    pub(super) xdp_attached: Option<bool>,
    /// Mean run time of the XDP program per frame over the flood window,
    /// ns (`kernel.bpf_stats_enabled`).
    pub(super) xdp_ns: Option<f64>,
}

impl Row {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "server": self.server.label(),
            "flood_rate": rate_label(self.rate),
            "flood": self.flood,
            "known_probe": self.known,
            "new_probe": self.new,
            "flood_leases": self.flood_leases,
            "total_leases": self.total_leases,
            "cpu_pct": (self.cpu_pct * 10.0).round() / 10.0,
            "softirq_pct": (self.softirq_pct * 10.0).round() / 10.0,
            "cpu_window_s": self.window_s,
            "xdp_counters": self.xdp,
            "xdp_attached": self.xdp_attached,
            "xdp_ns_per_frame": self.xdp_ns.map(f64::round),
        })
    }
}

fn probe_cells(v: &Value) -> (String, String, String) {
    let s = &v["stats"];
    let pct = s["success_pct"]
        .as_f64()
        .map_or("-".into(), |p| format!("{p:.1}"));
    let ms = |k: &str| {
        s[k].as_f64().map_or("-".to_string(), |x| {
            if x >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        })
    };
    let att = s["attempts"].as_u64().unwrap_or(0);
    (format!("{pct} ({att})"), ms("p50_ms"), ms("p99_ms"))
}

fn xdp_cell(r: &Row) -> String {
    match (&r.xdp, r.server) {
        (Some(m), _) => {
            let drops: Vec<String> = m
                .iter()
                .filter(|(k, v)| k.starts_with("drop") && **v > 0)
                .map(|(k, v)| format!("{}={}", k.trim_start_matches("drop_"), v))
                .collect();
            let pass: u64 = m
                .iter()
                .filter(|(k, _)| k.as_str() == "redirect" || k.as_str() == "pass_stack")
                .map(|(_, v)| *v)
                .sum();
            let offers = m.get("tx_offer").copied().unwrap_or(0);
            format!(
                "{} (passed {pass}, XDP offers {offers})",
                if drops.is_empty() {
                    "none".into()
                } else {
                    drops.join(" ")
                }
            )
        }
        (None, Server::IsodhcpXdp | Server::IsodhcpXdpNoOffer) => match r.xdp_attached {
            Some(false) => "not attached".into(),
            _ => "no counters".into(),
        },
        _ => "-".into(),
    }
}

fn ns_cell(r: &Row) -> String {
    r.xdp_ns.map_or("-".into(), |n| format!("{n:.0}"))
}

pub(super) fn one_line(r: &Row) -> String {
    let (kp, k50, k99) = probe_cells(&r.known);
    let (np, n50, n99) = probe_cells(&r.new);
    let ach = r
        .flood
        .as_ref()
        .and_then(|f| f["achieved_rate"].as_f64())
        .map_or("-".into(), |x| format!("{x:.0}/s"));
    format!(
        "{} flood {} (achieved {ach}): known {kp}% p50 {k50} p99 {k99} ms; new {np}% p50 {n50} p99 {n99} ms; flood leases {}; CPU {:.1} %, softirq {:.1} %; XDP {} ns/frame, {}",
        r.server.label(),
        rate_label(r.rate),
        r.flood_leases,
        r.cpu_pct,
        r.softirq_pct,
        ns_cell(r),
        xdp_cell(r)
    )
}

pub(super) fn render_table(rows: &[Row]) -> String {
    let header = [
        "server",
        "flood target",
        "achieved/s",
        "known ok % (n)",
        "p50 ms",
        "p99 ms",
        "new ok % (n)",
        "p50 ms",
        "p99 ms",
        "flood leases",
        "CPU %",
        "softirq %",
        "XDP ns/frame",
        "XDP drops by reason",
    ];
    let mut cells: Vec<Vec<String>> = vec![
        header
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
    ];
    for r in rows {
        let (kp, k50, k99) = probe_cells(&r.known);
        let (np, n50, n99) = probe_cells(&r.new);
        let ach = r
            .flood
            .as_ref()
            .and_then(|f| f["achieved_rate"].as_f64())
            .map_or("-".into(), |x| format!("{x:.0}"));
        cells.push(vec![
            r.server.label().into(),
            rate_label(r.rate),
            ach,
            kp,
            k50,
            k99,
            np,
            n50,
            n99,
            r.flood_leases.to_string(),
            format!("{:.1}", r.cpu_pct),
            format!("{:.1}", r.softirq_pct),
            ns_cell(r),
            xdp_cell(r),
        ]);
    }
    render_cells(&cells)
}
