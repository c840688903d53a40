//! The plot: transition latency against thread count on log axes, the p50
//! and p99 of the transition (start → every thread switched) with the band
//! between them, the apply call's p50, and reference lines for published
//! anchors ([`ANCHORS`]), drawn as SVG.

use super::engine::Case;
use plotters::prelude::*;

/// A published figure to compare with: `threads` switched in `seconds`.
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    /// The series it belongs to (the legend's label).
    pub series: &'static str,
    /// Threads (processes) switched.
    pub threads: f64,
    /// How long that took, seconds.
    pub seconds: f64,
}

/// Erlang/OTP 25 hot code loading with busy processes: 10 000 in 0.68 s,
/// 100 000 in 21.9 s.
pub const ANCHORS: [Anchor; 2] = [
    Anchor {
        series: "Erlang/OTP 25, busy processes",
        threads: 10_000.0,
        seconds: 0.68,
    },
    Anchor {
        series: "Erlang/OTP 25, busy processes",
        threads: 100_000.0,
        seconds: 21.9,
    },
];

/// An axis label for `us` microseconds: `10 µs`, `2.5 ms`, `1 s`.
fn tick(us: f64) -> String {
    let (v, unit) = if us < 1.0 {
        (us * 1e3, "ns")
    } else if us < 1e3 {
        (us, "µs")
    } else if us < 1e6 {
        (us / 1e3, "ms")
    } else {
        (us / 1e6, "s")
    };
    let n = format!("{v:.3}");
    format!("{} {unit}", n.trim_end_matches('0').trim_end_matches('.'))
}

/// Drawing the plot failed.
#[derive(Debug, thiserror::Error)]
#[error("drawing the plot: {0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Debug) -> PlotError {
    PlotError(format!("{e:?}"))
}

/// The SVG document for `cases` (thread counts of 0 are left out: log
/// axes). `title` goes above the plot.
///
/// # Errors
/// [`PlotError`] when plotters fails to draw.
pub fn svg(cases: &[Case], anchors: &[Anchor], title: &str) -> Result<String, PlotError> {
    let cases: Vec<&Case> = cases
        .iter()
        .filter(|c| c.threads > 0 && c.phases(false).count() > 0)
        .collect();
    let pos = |x: f64| x.max(0.01);
    let t: Vec<(f64, f64, f64, f64)> = cases
        .iter()
        .map(|c| {
            let s = c.summary(false, |p| p.transition_us);
            let call = c.summary(false, |p| p.call_us);
            (c.threads as f64, pos(s.p50), pos(s.p99), pos(call.p50))
        })
        .collect();
    let anchor_pts: Vec<(f64, f64)> = anchors
        .iter()
        .map(|a| (a.threads, a.seconds * 1e6))
        .collect();
    let xs = t.iter().map(|p| p.0).chain(anchor_pts.iter().map(|p| p.0));
    let ys = t
        .iter()
        .flat_map(|p| [p.1, p.2, p.3])
        .chain(anchor_pts.iter().map(|p| p.1));
    let (x0, x1) = xs.fold((1.0f64, 10.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (y0, y1) = ys.fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (y0, y1) = if y1 > 0.0 {
        (y0 / 3.0, y1 * 3.0)
    } else {
        (0.1, 10.0)
    };

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d((x0 / 1.5..x1 * 1.5).log_scale(), (y0..y1).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("guest threads")
            .y_desc("latency")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| tick(*y))
            .draw()
            .map_err(err)?;

        let band: Vec<(f64, f64)> = t
            .iter()
            .map(|p| (p.0, p.1))
            .chain(t.iter().rev().map(|p| (p.0, p.2)))
            .collect();
        let blue = RGBColor(31, 90, 180);
        chart
            .draw_series(std::iter::once(Polygon::new(band, blue.mix(0.18))))
            .map_err(err)?
            .label("transition p50–p99 band")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], blue.mix(0.18)));
        chart
            .draw_series(LineSeries::new(
                t.iter().map(|p| (p.0, p.1)),
                blue.stroke_width(2),
            ))
            .map_err(err)?
            .label("transition p50 (start → every thread switched)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(
                t.iter().map(|p| (p.0, p.2)),
                6,
                4,
                blue.stroke_width(1),
            ))
            .map_err(err)?
            .label("transition p99")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(1)));
        chart
            .draw_series(t.iter().map(|p| Circle::new((p.0, p.1), 3, blue.filled())))
            .map_err(err)?;
        let green = RGBColor(40, 140, 60);
        chart
            .draw_series(LineSeries::new(
                t.iter().map(|p| (p.0, p.3)),
                green.stroke_width(1),
            ))
            .map_err(err)?
            .label("apply call p50 (checks, compile, first pass)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], green.stroke_width(1)));
        if !anchor_pts.is_empty() {
            let red = RGBColor(200, 40, 40);
            let label = anchors[0].series;
            chart
                .draw_series(DashedLineSeries::new(
                    anchor_pts.iter().copied(),
                    3,
                    3,
                    red.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("reference: {label}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], red.stroke_width(2)));
            chart
                .draw_series(
                    anchor_pts
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, red.filled())),
                )
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_drop_trailing_zeros() {
        assert_eq!(tick(10.0), "10 µs");
        assert_eq!(tick(2500.0), "2.5 ms");
        assert_eq!(tick(1e6), "1 s");
        assert_eq!(tick(0.1), "100 ns");
    }
}
