//! A stress test's report: JSON (per-second rows, the steps the mode judged, the capacity
//! found) and a self-contained HTML page of it (inline CSS and SVG plots, no script, nothing
//! fetched; every text from the user or the target escaped).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::record::{Second, Stats};
use super::search::ProbeKind;

/// One step a mode held and judged: an auto-mode probe, a scan level, the fixed load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Step {
    /// When it started, in seconds since the run started.
    pub start_second: f64,
    /// The rate offered (open loop) or the connections (closed loop).
    pub target: f64,
    /// Auto mode's kind of probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProbeKind>,
    /// What the judged part of it measured.
    pub stats: Stats,
    /// Whether it met the goal.
    pub passed: bool,
    /// What it failed, if it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A stress test's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The test's name.
    pub name: String,
    /// Where the requests went (no credentials).
    pub target: String,
    /// `auto`, `scan` or `fixed`.
    pub mode: String,
    /// `open` (scheduled at a rate) or `closed` (fixed connections).
    pub load: String,
    /// The mode's settings, as given.
    pub config: serde_json::Value,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// How long it ran, in seconds.
    pub duration_secs: f64,
    /// The highest QPS that met the goal: auto mode's confirmed capacity, scan's highest
    /// passing level; `null` for fixed mode or when none passed.
    pub capacity_qps: Option<f64>,
    /// Why it ended.
    pub stopped_because: String,
    /// The whole run.
    pub summary: Stats,
    /// Each second.
    pub seconds: Vec<Second>,
    /// Each judged step.
    pub steps: Vec<Step>,
}

impl Report {
    /// The report as JSON.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// A self-contained HTML page of the report: summary, plots of QPS, latency and errors
    /// per second, and the steps.
    #[must_use]
    pub fn to_html(&self) -> String {
        let mut page = String::with_capacity(64 * 1024);
        let title = format!("eas stress: {}", self.name);
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
            escape(&title),
            escape(&title)
        );
        let capacity = self
            .capacity_qps
            .map_or_else(|| "none found".to_owned(), |c| format!("{c:.1} QPS"));
        let s = &self.summary;
        let rows: [(&str, String); 10] = [
            ("target", self.target.clone()),
            ("mode", format!("{} ({} loop)", self.mode, self.load)),
            ("started", self.started_at.clone()),
            ("duration", format!("{:.1} s", self.duration_secs)),
            ("capacity", capacity),
            ("stopped because", self.stopped_because.clone()),
            (
                "requests",
                format!(
                    "{} ok, {} errors ({:.2}%)",
                    s.ok,
                    s.errors,
                    s.error_rate() * 100.0
                ),
            ),
            ("errors by status", format_errors(&s.errors_by_status)),
            (
                "latency",
                format!(
                    "avg {:.2} ms, p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
                    s.latency_ms.avg,
                    s.latency_ms.p50,
                    s.latency_ms.p90,
                    s.latency_ms.p99,
                    s.latency_ms.max
                ),
            ),
            ("config", self.config.to_string()),
        ];
        page.push_str("<table class=\"summary\">\n");
        for (key, value) in rows {
            let _ = writeln!(
                page,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(key),
                escape(&value)
            );
        }
        page.push_str("</table>\n");

        let xs: Vec<f64> = self.seconds.iter().map(|r| r.second as f64).collect();
        let unit = if self.load == "closed" {
            "connections"
        } else {
            "QPS offered"
        };
        page.push_str(&plot(
            "Throughput per second",
            "1/s",
            &xs,
            &[
                Series::new(unit, "#999", self.seconds.iter().map(|r| r.target)),
                Series::new(
                    "QPS (2xx)",
                    "#1f77b4",
                    self.seconds.iter().map(|r| r.stats.qps),
                ),
            ],
        ));
        page.push_str(&plot(
            "Latency per second (from intended send time)",
            "ms",
            &xs,
            &[
                Series::new(
                    "avg",
                    "#2ca02c",
                    self.seconds.iter().map(|r| r.stats.latency_ms.avg),
                ),
                Series::new(
                    "p50",
                    "#1f77b4",
                    self.seconds.iter().map(|r| r.stats.latency_ms.p50),
                ),
                Series::new(
                    "p90",
                    "#ff7f0e",
                    self.seconds.iter().map(|r| r.stats.latency_ms.p90),
                ),
                Series::new(
                    "p99",
                    "#d62728",
                    self.seconds.iter().map(|r| r.stats.latency_ms.p99),
                ),
            ],
        ));
        page.push_str(&plot(
            "Errors per second",
            "1/s",
            &xs,
            &[Series::new(
                "errors",
                "#d62728",
                self.seconds.iter().map(|r| r.stats.errors as f64),
            )],
        ));

        if !self.steps.is_empty() {
            page.push_str(
                "<h2>Steps</h2>\n<table class=\"steps\"><tr><th>start (s)</th><th>target</th>\
                 <th>kind</th><th>QPS</th><th>p50 ms</th><th>p99 ms</th><th>errors</th>\
                 <th>verdict</th></tr>\n",
            );
            for step in &self.steps {
                let kind = step.kind.map_or("", |k| match k {
                    ProbeKind::Ramp => "ramp",
                    ProbeKind::Bisect => "bisect",
                    ProbeKind::Confirm => "confirm",
                });
                let verdict = if step.passed {
                    "pass".to_owned()
                } else {
                    format!("fail: {}", step.reason)
                };
                let _ = writeln!(
                    page,
                    "<tr><td>{:.1}</td><td>{:.1}</td><td>{kind}</td><td>{:.1}</td><td>{:.2}</td>\
                     <td>{:.2}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                    step.start_second,
                    step.target,
                    step.stats.qps,
                    step.stats.latency_ms.p50,
                    step.stats.latency_ms.p99,
                    escape(&format_errors(&step.stats.errors_by_status)),
                    if step.passed { "pass" } else { "fail" },
                    escape(&verdict)
                );
            }
            page.push_str("</table>\n");
        }
        page.push_str("</body></html>\n");
        page
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.25em .6em;\
text-align:left;font-size:.9em}th{background:#f4f4f4}.fail{color:#b00}.pass{color:#070}\
figure{margin:1em 0}figcaption{font-weight:600}svg{background:#fff;border:1px solid #ddd}\
.legend span{margin-right:1em;font-size:.85em}";

fn format_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_owned();
    }
    errors
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `text` safe in HTML text and attribute values.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

struct Series {
    name: &'static str,
    color: &'static str,
    values: Vec<f64>,
}

impl Series {
    fn new(name: &'static str, color: &'static str, values: impl Iterator<Item = f64>) -> Self {
        Self {
            name,
            color,
            values: values.collect(),
        }
    }
}

/// A line plot of `series` over `xs` as inline SVG.
fn plot(title: &str, unit: &str, xs: &[f64], series: &[Series]) -> String {
    const W: f64 = 860.0;
    const H: f64 = 240.0;
    const L: f64 = 60.0;
    const B: f64 = 24.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure><figcaption>{}</figcaption><svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\">",
        escape(title)
    );
    let x_max = xs.iter().copied().fold(1.0_f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let (pw, ph) = (W - L - 10.0, H - B - 10.0);
    let x = |v: f64| L + v / x_max * pw;
    let y = |v: f64| 10.0 + ph - v / y_max * ph;
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = write!(
            out,
            "<line x1=\"{L}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#eee\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" font-size=\"10\" text-anchor=\"end\">{4}</text>",
            y(v),
            L + pw,
            L - 4.0,
            y(v) + 3.0,
            short(v)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{} s</text>\
         <text x=\"4\" y=\"12\" font-size=\"10\">{}</text>",
        L + pw,
        H - 6.0,
        short(x_max),
        escape(unit)
    );
    for s in series {
        let points: Vec<String> = xs
            .iter()
            .zip(&s.values)
            .filter(|(_, v)| v.is_finite())
            .map(|(&t, &v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
            s.color,
            points.join(" ")
        );
    }
    out.push_str("</svg><div class=\"legend\">");
    for s in series {
        let _ = write!(
            out,
            "<span style=\"color:{}\">&#9632; {}</span>",
            s.color,
            escape(s.name)
        );
    }
    out.push_str("</div></figure>\n");
    out
}

fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_should_neutralise_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
