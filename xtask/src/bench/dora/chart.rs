//! The DORA bench's SVG: leases/s (median bar, min–max whisker) and
//! renewals/s (median) per server, from one invocation.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::bench::category_label;

/// One server's figures.
#[derive(Debug, Clone)]
pub(super) struct Bar {
    pub(super) label: &'static str,
    pub(super) leases: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) renewals: Option<f64>,
}

const COLORS: [RGBColor; 5] = [
    RGBColor(40, 90, 200),
    RGBColor(200, 40, 40),
    RGBColor(120, 60, 160),
    RGBColor(30, 140, 60),
    RGBColor(150, 150, 150),
];

/// How a panel reads its figure from a bar.
type Value = fn(&Bar) -> Option<f64>;

/// Writes the chart of `bars` (`clients` per run) to `path`.
pub(super) fn write(path: &Path, bars: &[Bar], clients: u64) -> Result<()> {
    let e = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!("Full DORA, {clients} clients per run, every kernel effect on");
    let root = root.titled(&title, ("sans-serif", 20)).map_err(|x| e(&x))?;
    let panels: [(&str, Value); 2] = [
        ("leases/s (median; whisker: min-max)", |b| Some(b.leases)),
        ("renewals/s (median)", |b| b.renewals),
    ];
    let n = bars.len().max(1) as f64;
    let labels: Vec<String> = bars.iter().map(|b| b.label.to_string()).collect();
    for (k, (area, (title, value))) in root.split_evenly((1, 2)).iter().zip(panels).enumerate() {
        let top = bars
            .iter()
            .filter_map(|b| value(b).map(|v| v.max(b.max)))
            .fold(1.0_f64, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..(n - 0.5), 0.0..top)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&|x| category_label(*x, &labels))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(|x| e(&x))?;
        for (i, b) in bars.iter().enumerate() {
            let Some(v) = value(b) else { continue };
            let x = i as f64;
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.3, 0.0), (x + 0.3, v)],
                    c.filled(),
                )))
                .map_err(|x| e(&x))?;
            if k == 0 {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, b.min), (x, b.max)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(|x| e(&x))?;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{v:.0}"),
                    (x - 0.25, if k == 0 { b.max.max(v) } else { v } + top * 0.06),
                    ("sans-serif", 13),
                )))
                .map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every server and its median leases/s appear in the SVG.
    #[test]
    fn chart_names_servers_and_figures() {
        let bars = [
            Bar {
                label: "isodhcp xdp",
                leases: 24345.0,
                min: 22332.0,
                max: 27382.0,
                renewals: Some(128_228.0),
            },
            Bar {
                label: "dnsmasq",
                leases: 124.0,
                min: 120.0,
                max: 126.0,
                renewals: None,
            },
        ];
        let dir = std::env::temp_dir().join(format!("isodhcp-dchart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("dora.svg");
        write(&p, &bars, 5000).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for want in ["isodhcp xdp", "dnsmasq", "24345", "128228", "124"] {
            assert!(svg.contains(want), "{want} missing from the chart");
        }
    }
}
