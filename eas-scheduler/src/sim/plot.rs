//! [`render_svg`]: a report's timeline as a self-contained SVG picture.
//!
//! Two panels over time: instances (spot and on-demand stacked as areas, the instances the
//! demand needs as a line) and prices (the cheapest open spot price, the fleet's cost per hour).

use std::fmt::Write as _;

use super::report::{Report, TimelinePoint};

const WIDTH: f64 = 960.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 64.0;
const GAP: f64 = 50.0;

/// The timeline of `report` as an SVG document (deterministic: the same report gives the same
/// text).
///
/// ```
/// use eas_scheduler::sim::{render_svg, Report};
///
/// # fn demo(report: &Report) {
/// let svg = render_svg(report);
/// assert!(svg.starts_with("<svg"));
/// # }
/// ```
#[must_use]
pub fn render_svg(report: &Report) -> String {
    let points = &report.timeline;
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let policy = format!("{}: {}", report.service, report.policy);
    let figures = format!(
        "cost ${:.2} (on-demand ${:.2}, lower bound ${:.2}) | availability {:.4} | p50 {:.0} ms, p99 {:.0} ms | {} preemptions",
        report.cost_usd,
        report.on_demand_cost_usd,
        report.optimal_cost_usd,
        report.availability,
        report.p50_ms,
        report.p99_ms,
        report.preemptions
    );
    let _ = writeln!(svg, r#"<text x="{LEFT}" y="16">{}</text>"#, escape(&policy));
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="32">{}</text>"#,
        escape(&figures)
    );
    let span = points.last().map_or(1.0, |p| p.t_s as f64).max(1.0);
    let x = |t: u64| LEFT + (WIDTH - LEFT - RIGHT) * (t as f64 / span);

    // Panel 1: instances.
    let top = TOP;
    let max_n = points
        .iter()
        .map(|p| f64::from(p.spot + p.on_demand).max(p.needed))
        .fold(1.0, f64::max)
        .ceil();
    let y1 = |v: f64| top + PANEL - PANEL * (v / max_n);
    axes(&mut svg, top, max_n, "instances", span);
    let spot: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (x(p.t_s), y1(f64::from(p.spot))))
        .collect();
    let total: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (x(p.t_s), y1(f64::from(p.spot + p.on_demand))))
        .collect();
    area(&mut svg, &spot, y1(0.0), "#4c9f70");
    band(&mut svg, &total, &spot, "#e07b39");
    let needed: Vec<(f64, f64)> = points.iter().map(|p| (x(p.t_s), y1(p.needed))).collect();
    line(&mut svg, &needed, "#1f3b73");
    legend(
        &mut svg,
        top,
        &[
            ("spot", "#4c9f70"),
            ("on-demand", "#e07b39"),
            ("needed", "#1f3b73"),
        ],
    );

    // Panel 2: prices.
    let top = TOP + PANEL + GAP;
    let max_p = points
        .iter()
        .map(|p| p.fleet_usd_per_hour.max(p.spot_usd_per_hour.unwrap_or(0.0)))
        .fold(0.01, f64::max);
    let y2 = |v: f64| top + PANEL - PANEL * (v / max_p);
    axes(&mut svg, top, max_p, "USD/h", span);
    let fleet: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (x(p.t_s), y2(p.fleet_usd_per_hour)))
        .collect();
    line(&mut svg, &fleet, "#8e44ad");
    for run in spot_runs(points) {
        let pts: Vec<(f64, f64)> = run.iter().map(|&(t, v)| (x(t), y2(v))).collect();
        line(&mut svg, &pts, "#4c9f70");
    }
    legend(
        &mut svg,
        top,
        &[("fleet cost", "#8e44ad"), ("cheapest spot", "#4c9f70")],
    );
    svg.push_str("</svg>\n");
    svg
}

/// Stretches of the timeline with a spot price, as (t, price).
fn spot_runs(points: &[TimelinePoint]) -> Vec<Vec<(u64, f64)>> {
    let mut runs: Vec<Vec<(u64, f64)>> = Vec::new();
    let mut current: Vec<(u64, f64)> = Vec::new();
    for p in points {
        match p.spot_usd_per_hour {
            Some(v) => current.push((p.t_s, v)),
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

fn axes(svg: &mut String, top: f64, max: f64, label: &str, span: f64) {
    let bottom = top + PANEL;
    let right = WIDTH - RIGHT;
    let _ = writeln!(
        svg,
        r##"<path d="M{LEFT} {top} V{bottom} H{right}" stroke="#444" fill="none"/>"##
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let y = bottom - PANEL * f64::from(k) / 4.0;
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text><path d="M{LEFT} {y:.1} H{right}" stroke="#eee"/>"##,
            LEFT - 4.0,
            y + 4.0,
            short(v)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}">{label}</text><text x="{right}" y="{}" text-anchor="end">{:.1} h</text>"#,
        top - 6.0,
        bottom + 16.0,
        span / 3_600.0
    );
}

fn legend(svg: &mut String, top: f64, items: &[(&str, &str)]) {
    let mut x = WIDTH - RIGHT - 110.0 * items.len() as f64;
    for (name, color) in items {
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{name}</text>"#,
            top - 16.0,
            x + 14.0,
            top - 6.0
        );
        x += 110.0;
    }
}

fn path(points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    for (k, (x, y)) in points.iter().enumerate() {
        let _ = write!(d, "{}{x:.1} {y:.1} ", if k == 0 { 'M' } else { 'L' });
    }
    d
}

fn line(svg: &mut String, points: &[(f64, f64)], color: &str) {
    if points.is_empty() {
        return;
    }
    let _ = writeln!(
        svg,
        r#"<path d="{}" stroke="{color}" stroke-width="1.5" fill="none"/>"#,
        path(points)
    );
}

fn area(svg: &mut String, points: &[(f64, f64)], base: f64, color: &str) {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return;
    };
    let _ = writeln!(
        svg,
        r#"<path d="{}L{:.1} {base:.1} L{:.1} {base:.1} Z" fill="{color}" fill-opacity="0.6"/>"#,
        path(points),
        last.0,
        first.0
    );
}

fn band(svg: &mut String, upper: &[(f64, f64)], lower: &[(f64, f64)], color: &str) {
    if upper.is_empty() {
        return;
    }
    let mut d = path(upper);
    for (x, y) in lower.iter().rev() {
        let _ = write!(d, "L{x:.1} {y:.1} ");
    }
    let _ = writeln!(svg, r#"<path d="{d}Z" fill="{color}" fill-opacity="0.6"/>"#);
}

fn short(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
