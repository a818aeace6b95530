//! The flood bench's SVG: what the flood does to the probes, per server,
//! against the flood rate. Four panels: known- and new-client success (%)
//! and p99 (ms); one line per server, the rates as the row order gave them.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use serde_json::Value;

use super::report::Row;
use super::{Server, rate_label};
use crate::bench::category_label;

struct Panel {
    title: &'static str,
    value: fn(&Row) -> Option<f64>,
    /// Fixed top of the y axis (success %), or `None` to fit the data.
    top: Option<f64>,
    /// Logarithmic y axis (latencies span 0.1 ms to seconds).
    log: bool,
}

/// Latencies below this are drawn at it on a log axis.
const LOG_FLOOR_MS: f64 = 0.1;

fn stat(v: &Value, key: &str) -> Option<f64> {
    v["stats"][key].as_f64()
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "known client: success %",
        value: |r| stat(&r.known, "success_pct"),
        top: Some(105.0),
        log: false,
    },
    Panel {
        title: "known client: p99 ms",
        value: |r| stat(&r.known, "p99_ms"),
        top: None,
        log: true,
    },
    Panel {
        title: "new clients: success %",
        value: |r| stat(&r.new, "success_pct"),
        top: Some(105.0),
        log: false,
    },
    Panel {
        title: "new clients: p99 ms",
        value: |r| stat(&r.new, "p99_ms"),
        top: None,
        log: true,
    },
];

fn color(s: Server) -> RGBColor {
    match s {
        Server::IsodhcpXdp => RGBColor(200, 40, 40),
        Server::IsodhcpXdpNoOffer => RGBColor(230, 140, 30),
        Server::Isodhcp => RGBColor(40, 90, 200),
        Server::Kea => RGBColor(30, 140, 60),
    }
}

/// The distinct values of `key` over `rows`, in row order.
fn distinct<T: PartialEq>(rows: &[Row], key: impl Fn(&Row) -> T) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for r in rows {
        let k = key(r);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// Writes the chart of `rows` (one flood window of `seconds` each) to `path`.
pub(super) fn write(path: &Path, rows: &[Row], seconds: u64) -> Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!("DISCOVER flood ({seconds} s per rate): probes against the flood rate");
    let root = root.titled(&title, ("sans-serif", 20)).map_err(|x| e(&x))?;
    for (area, p) in root.split_evenly((2, 2)).iter().zip(&PANELS) {
        panel(area, p, rows).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Log-axis value of `v` ms (y is log10(ms) there; the labels show ms).
fn log_y(v: f64) -> f64 {
    v.max(LOG_FLOOR_MS).log10()
}

fn ms_label(v: f64) -> String {
    let ms = 10f64.powf(v);
    if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// One panel: a line per server over the rates.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    p: &Panel,
    rows: &[Row],
) -> Result<(), String> {
    let rates = distinct(rows, |r| r.rate);
    let n = rates.len().max(1) as f64;
    let labels: Vec<String> = rates.iter().map(|r| rate_label(*r)).collect();
    let x_of = |rate: Option<u64>| rates.iter().position(|r| *r == rate).unwrap_or(0) as f64;
    let y = |v: f64| if p.log { log_y(v) } else { v };
    let data_top = rows
        .iter()
        .filter_map(|r| (p.value)(r))
        .fold(1.0_f64, f64::max);
    let (bottom, top) = match (p.top, p.log) {
        (Some(t), _) => (0.0, t),
        (None, true) => (log_y(LOG_FLOOR_MS), log_y(data_top) + 0.3),
        (None, false) => (0.0, data_top * 1.15),
    };
    let s = |x: &dyn std::fmt::Display| x.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.3..(n - 0.7), bottom..top)
        .map_err(|x| s(&x))?;
    chart
        .configure_mesh()
        .x_labels(rates.len())
        .x_label_formatter(&|x| category_label(*x, &labels))
        .y_label_formatter(&|v| {
            if p.log {
                ms_label(*v)
            } else {
                format!("{v:.0}")
            }
        })
        .y_labels(if p.log { 6 } else { 11 })
        .x_desc("flood frames/s")
        .light_line_style(WHITE)
        .draw()
        .map_err(|x| s(&x))?;
    for server in distinct(rows, |r| r.server) {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.server == server)
            .filter_map(|r| Some((x_of(r.rate), y((p.value)(r)?))))
            .collect();
        let c = color(server);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|x| s(&x))?
            .label(server.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(|x| s(&x))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|x| s(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(server: Server, rate: Option<u64>, known: f64, new: f64) -> Row {
        let probe =
            |pct: f64| json!({"stats": {"success_pct": pct, "p99_ms": 4.0, "attempts": 120}});
        Row {
            server,
            rate,
            flood: None,
            known: probe(known),
            new: probe(new),
            flood_leases: 0,
            total_leases: 0,
            cpu_pct: 1.0,
            softirq_pct: 1.0,
            window_s: 14.0,
            xdp: None,
            xdp_attached: None,
            xdp_ns: None,
        }
    }

    /// The SVG names every server and every rate.
    #[test]
    fn chart_names_servers_and_rates() {
        let rows = [
            row(Server::IsodhcpXdp, None, 100.0, 100.0),
            row(Server::IsodhcpXdp, Some(0), 100.0, 4.5),
            row(Server::Kea, None, 100.0, 100.0),
            row(Server::Kea, Some(0), 91.0, 87.5),
        ];
        let dir = std::env::temp_dir().join(format!("isodhcp-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("flood.svg");
        write(&p, &rows, 10).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for want in [
            "isodhcp xdp",
            "kea-dhcp4",
            "none",
            "max",
            "new clients: success %",
        ] {
            assert!(svg.contains(want), "{want} missing from the chart");
        }
    }
}
