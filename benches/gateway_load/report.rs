//! The gateway load bench's output: the markdown table, row by row as points are measured,
//! then the points as CSV and the latency-against-load chart.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::charts::{self, Axis, Chart, Series, Stroke};
use crate::{CLOSED_LOOP_CONNECTIONS, HYPER, NGINX, Point, Run};

/// The table's header and separator lines.
pub(crate) const TABLE_HEAD: &str = "\
| proxy | load | requests/s | p50 | p99 | errors | CPU µs/request | CPU vs hyper | rps vs nginx | p99 − nginx |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |";

/// `point`'s table row. `points` (all measured so far, `point` among them) holds what it
/// is compared with: hyper's CPU per request at the same load, nginx's requests/s in its
/// closed loop (closed-loop rows only), nginx's p99 at the same fixed rate. A figure whose
/// reference was not measured (nginx missing, a row left out, a sweep stopped lower) is
/// left blank.
pub(crate) fn table_row(point: &Point, points: &[Point]) -> String {
    let reference = |row: &str, rate: Option<u64>| {
        points
            .iter()
            .find(|p| p.row == row && p.rate == rate)
            .map(|p| &p.run)
    };
    let Run {
        rps,
        p50,
        p99,
        errors,
        cpu_us_per_request: cpu,
    } = point.run;
    let cpu_vs_hyper = reference(HYPER, point.rate)
        .filter(|hyper| hyper.cpu_us_per_request > 0.0)
        .map(|hyper| format!("{:.2}x", cpu / hyper.cpu_us_per_request));
    let rps_vs_nginx = match point.rate {
        None => reference(NGINX, None).map(|nginx| format!("{:.2}x", rps / nginx.rps)),
        Some(_) => None,
    };
    let p99_minus_nginx = point
        .rate
        .and(reference(NGINX, point.rate))
        .map(|nginx| format!("{:+.2} ms", ms(p99) - ms(nginx.p99)));
    let load = match point.rate {
        None => format!("max ({CLOSED_LOOP_CONNECTIONS} conns)"),
        Some(rate) if point.fell_over() => format!("{rate}/s (fell over)"),
        Some(rate) => format!("{rate}/s"),
    };
    format!(
        "| {} | {load} | {rps:.0} | {:.2} ms | {:.2} ms | {errors} | {cpu:.0} | {} | {} | {} |",
        point.row,
        ms(p50),
        ms(p99),
        cpu_vs_hyper.unwrap_or_default(),
        rps_vs_nginx.unwrap_or_default(),
        p99_minus_nginx.unwrap_or_default(),
    )
}

/// Writes `points.csv` and `latency.svg` to `target/criterion/gateway_load/` and prints
/// their paths. A file that cannot be written is reported, not fatal: the table is out.
pub(crate) fn write_files(points: &[Point]) {
    let dir = charts::criterion_dir().join("gateway_load");
    let csv = dir.join("points.csv");
    match write_csv(&csv, points) {
        Ok(()) => println!("\npoints: {}", csv.display()),
        Err(e) => eprintln!("{}: {e}", csv.display()),
    }
    let svg = dir.join("latency.svg");
    match latency_chart(points).write_svg(&svg) {
        Ok(()) => println!("chart: {}", svg.display()),
        Err(e) => eprintln!("{}: {e}", svg.display()),
    }
}

/// The points as CSV, one line each: `row,offered,achieved,p50_ms,p99_ms,cpu_us`, where
/// `offered` is empty for the closed loop and `cpu_us` is the proxy's CPU time per request.
fn write_csv(path: &Path, points: &[Point]) -> std::io::Result<()> {
    let mut out = String::from("row,offered,achieved,p50_ms,p99_ms,cpu_us\n");
    for p in points {
        let _ = writeln!(
            out,
            "\"{}\",{},{:.0},{:.3},{:.3},{:.1}",
            p.row.replace('"', "\"\""),
            p.rate.map(|r| r.to_string()).unwrap_or_default(),
            p.run.rps,
            ms(p.run.p50),
            ms(p.run.p99),
            p.run.cpu_us_per_request,
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, out)
}

/// Latency against offered load: per row, p50 as a solid line and p99 as a dashed one in
/// the same colour, over the open-loop points (the one a row fell over at included; a
/// closed loop offers no fixed load, so its point is not drawn). Both axes logarithmic.
fn latency_chart(points: &[Point]) -> Chart {
    let mut rows: Vec<&str> = Vec::new();
    for p in points {
        if !rows.contains(&p.row) {
            rows.push(p.row);
        }
    }
    let mut series = Vec::new();
    for (colour, row) in rows.into_iter().enumerate() {
        let open: Vec<(f64, &Run)> = points
            .iter()
            .filter(|p| p.row == row)
            .filter_map(|p| Some((p.rate? as f64, &p.run)))
            .collect();
        let line = |stroke, label: Option<&str>, latency: fn(&Run) -> Duration| Series {
            label: label.map(str::to_string),
            colour,
            stroke,
            points: open.iter().map(|&(x, r)| (x, ms(latency(r)))).collect(),
        };
        series.push(line(Stroke::Solid, Some(row), |r| r.p50));
        series.push(line(Stroke::Dashed, None, |r| r.p99));
    }
    Chart {
        caption: "Latency against offered load (solid: p50, dashed: p99)".to_string(),
        x: Axis {
            title: "offered load (requests/s)",
            ticks: charts::short_number,
        },
        y: Axis {
            title: "latency (ms)",
            ticks: charts::short_number,
        },
        series,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
