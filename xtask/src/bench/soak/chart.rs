//! The soak's SVG: one panel per quantity against minutes, the warm-up
//! shaded, so flat lines can be seen to be flat.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::verdict::Sample;

/// One panel: title, unit and how to read the value from a sample.
struct Panel {
    title: &'static str,
    value: fn(&Sample) -> f64,
    color: RGBColor,
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "daemon RSS (MiB)",
        value: |s| s.rss_kib as f64 / 1024.0,
        color: RGBColor(200, 40, 40),
    },
    Panel {
        title: "open file descriptors",
        value: |s| s.fds as f64,
        color: RGBColor(40, 90, 200),
    },
    Panel {
        title: "leases",
        value: |s| s.leases as f64,
        color: RGBColor(30, 140, 60),
    },
    Panel {
        title: "journal (KiB)",
        value: |s| s.journal_bytes as f64 / 1024.0,
        color: RGBColor(120, 60, 160),
    },
];

/// Writes the chart of `samples` to `path`.
pub(super) fn write(path: &Path, samples: &[Sample], warmup_s: f64, title: &str) -> Result<()> {
    let root = SVGBackend::new(path, (900, 960)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|x| e(&x))?;
    let end_min = samples.last().map_or(1.0, |s| s.t / 60.0).max(1.0 / 6.0);
    for (area, p) in root.split_evenly((PANELS.len(), 1)).iter().zip(&PANELS) {
        let top = samples
            .iter()
            .map(|s| (p.value)(s))
            .fold(0.0_f64, f64::max)
            .max(1.0)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(p.title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end_min, 0.0..top)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .light_line_style(WHITE)
            .draw()
            .map_err(|x| e(&x))?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (warmup_s / 60.0, top)],
                RGBColor(235, 235, 235).filled(),
            )))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.t / 60.0, (p.value)(s))),
                p.color.stroke_width(2),
            ))
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
