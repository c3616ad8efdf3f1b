//! `--plot FILE.svg`: the latency distribution (the percentile curve HdrHistogram users know:
//! each "nine" gets the same width, so the tail is as visible as the median) above the delivered
//! rate over time.

use crate::timeline::Rates;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("plotting {path}: {message}")]
pub struct PlotError {
    path: String,
    message: String,
}

/// Draws `latency` (microseconds) and `rates` into an SVG file at `path`.
pub fn draw(
    path: &Path,
    title: &str,
    latency: &Histogram<u64>,
    rates: &Rates,
) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(380);

    // x: -log10(1 - q), so 1 is p90, 2 is p99, 3 is p99.9.
    let mut curve = Vec::new();
    if !latency.is_empty() {
        for nines in (0..=40).map(|i| f64::from(i) / 10.0) {
            let q = 1.0 - 10f64.powf(-nines);
            curve.push((nines, latency.value_at_quantile(q) as f64 / 1000.0));
        }
        curve.push((4.2, latency.max() as f64 / 1000.0));
    }
    let y_max = curve.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{title}: latency by percentile"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..4.2f64, 0f64..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .x_labels(6)
        .x_label_formatter(&|x| match x.round() as i64 {
            0 => "0".into(),
            1 => "90".into(),
            2 => "99".into(),
            3 => "99.9".into(),
            4 => "99.99".into(),
            _ => String::new(),
        })
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(LineSeries::new(curve, BLUE.stroke_width(2)))
        .map_err(|e| fail(&e))?;

    let seconds = |i: usize| i as f64 * rates.bucket_ms as f64 / 1000.0;
    let x_max = seconds(rates.per_sec.len()).max(1.0);
    let r_max = rates.per_sec.iter().copied().fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("delivered messages per second", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..r_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(LineSeries::new(
            rates
                .per_sec
                .iter()
                .enumerate()
                .map(|(i, r)| (seconds(i), *r)),
            RED.stroke_width(2),
        ))
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_both_charts() {
        let mut h = crate::stats::histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let rates = Rates {
            bucket_ms: 250,
            per_sec: vec![10.0, 20.0, 30.0],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        draw(&path, "test", &h, &rates).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.contains("latency by percentile"));
        assert!(svg.contains("<polyline"));
    }
}
