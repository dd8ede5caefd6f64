//! The benches' SVG charts (docs/benchmarks.md shows them): log-log line charts, one
//! colour per series, a legend. `gateway_load` and `invocation` include this module
//! (`mod charts;`); a folder module, so Cargo does not take it for a bench of its own.
//!
//! Only plotters' SVG backend, without fonts: the SVG holds `<text>` elements the viewer
//! sets in its own sans-serif, and plotters lays labels out with an estimate of their width.

use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// Tableau 10: distinct on screen and in print, in this order.
const PALETTE: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(89, 161, 79),
    RGBColor(237, 201, 72),
    RGBColor(176, 122, 161),
    RGBColor(255, 157, 167),
    RGBColor(156, 117, 95),
    RGBColor(186, 176, 172),
];

/// How a series' line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stroke {
    /// A solid line.
    Solid,
    /// A dashed line, e.g. the p99 twin of a solid p50 line in the same colour.
    Dashed,
}

/// One line of a chart, with a dot at each point.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// The legend's text; `None` keeps the line out of the legend (a dashed twin whose
    /// solid line is in it).
    pub(crate) label: Option<String>,
    /// Index into the palette: lines that belong together share it.
    pub(crate) colour: usize,
    /// Solid or dashed.
    pub(crate) stroke: Stroke,
    /// `(x, y)` in x order. The axes are logarithmic: points with a coordinate `<= 0`
    /// are left out.
    pub(crate) points: Vec<(f64, f64)>,
}

/// An axis: its title and how its tick values read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Axis {
    /// The title, with its unit (`"latency (ms)"`).
    pub(crate) title: &'static str,
    /// A tick's text from its value.
    pub(crate) ticks: fn(f64) -> String,
}

/// A log-log line chart.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    /// The title above the plot.
    pub(crate) caption: String,
    /// The horizontal axis.
    pub(crate) x: Axis,
    /// The vertical axis.
    pub(crate) y: Axis,
    /// The lines, drawn in order (the legend lists the labelled ones in that order).
    pub(crate) series: Vec<Series>,
}

impl Chart {
    /// Writes the chart to `path` as an SVG file, creating its directory.
    ///
    /// # Errors
    ///
    /// When no series has a point to draw, or the file cannot be written.
    pub(crate) fn write_svg(&self, path: &Path) -> Result<(), Box<dyn Error>> {
        let positive = |&(x, y): &(f64, f64)| x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite();
        let all = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied().filter(positive));
        let (x, y) = all.fold(
            ((f64::MAX, f64::MIN), (f64::MAX, f64::MIN)),
            |((x0, x1), (y0, y1)), (x, y)| ((x0.min(x), x1.max(x)), (y0.min(y), y1.max(y))),
        );
        if x.0 > x.1 {
            return Err(format!("{}: no points to draw", self.caption).into());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
        root.fill(&WHITE)?;
        // Some room around the points, so none sits on the frame, and the y axis down to
        // a power of ten, so its lowest decade is labelled (just below it: plotters would
        // round 0.1 up to the next one).
        let y_floor = 10f64.powf((y.0 / 1.5).log10().floor()) * 0.999;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.caption, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (x.0 / 1.25..x.1 * 1.25).log_scale(),
                (y_floor..y.1 * 1.5).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc(self.x.title)
            .y_desc(self.y.title)
            .x_label_formatter(&|v| (self.x.ticks)(*v))
            .y_label_formatter(&|v| (self.y.ticks)(*v))
            // One light line per 2..9 multiple of a power of ten (plotters' default
            // draws 99 per decade on a log axis).
            .max_light_lines(9)
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        for series in &self.series {
            let colour = PALETTE[series.colour % PALETTE.len()];
            let line = colour.stroke_width(2);
            let points: Vec<(f64, f64)> = series.points.iter().copied().filter(positive).collect();
            let drawn = match series.stroke {
                Stroke::Solid => {
                    chart.draw_series(LineSeries::new(points.iter().copied(), line))?
                }
                Stroke::Dashed => {
                    chart.draw_series(DashedLineSeries::new(points.iter().copied(), 8, 5, line))?
                }
            };
            if let Some(label) = &series.label {
                let entry = drawn.label(label);
                let sample = move |(x, y)| vec![(x, y), (x + 24, y)];
                match series.stroke {
                    Stroke::Solid => {
                        entry.legend(move |p| PathElement::new(sample(p), line));
                    }
                    Stroke::Dashed => {
                        entry.legend(move |p| DashedPathElement::new(sample(p), 5, 3, line));
                    }
                }
            }
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 14))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// A tick value in few characters: `0.05`, `0.5`, `5`, `50`, `500`, `5k`, `50k`.
pub(crate) fn short_number(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{}M", trim(v / 1e6)),
        a if a >= 1e3 => format!("{}k", trim(v / 1e3)),
        _ => trim(v),
    }
}

/// `v` with at most three significant digits and no trailing zeros.
fn trim(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 || a == 0.0 => 0,
        a if a >= 10.0 => 1,
        a => (2.0 - a.log10().floor()).clamp(0.0, 9.0) as usize,
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Criterion's output directory, the same one criterion picks: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `criterion` in the target directory this bench
/// was built in. The charts go beside criterion's own reports.
pub(crate) fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // `CARGO_TARGET_TMPDIR` is `<target>/tmp`, set when Cargo builds a bench.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .join("criterion")
}
