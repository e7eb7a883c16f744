//! The HTML report: one self-contained file (no network, no JavaScript) with inline SVG charts
//! — sessions held, throughput and latency over time with phase bands, a latency percentile
//! spectrum per phase — and the phase and SLA tables. Part of `report/`; formats only.

use super::sla::Verdict;
use super::{PhaseStatus, RunReport, format_count, format_us};
use std::fmt::Write as _;

const WIDTH: f64 = 1160.0;
const HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 78.0;
const MARGIN_RIGHT: f64 = 36.0;
const MARGIN_TOP: f64 = 34.0;
const MARGIN_BOTTOM: f64 = 44.0;
const PHASE_COLORS: [&str; 6] = [
    "#e8f1fb", "#fdf3e1", "#e9f7ec", "#fbe9e9", "#efe9fb", "#f1f1f1",
];
const LINE_COLORS: [&str; 6] = [
    "#1f6fd1", "#e08a00", "#2e9d4f", "#c7352b", "#7a4fd1", "#555555",
];

/// A merged report's segments: who ran each share and how it went.
fn segments_table(rows: &[super::SegmentRow]) -> String {
    let mut out = String::from(
        "<h2>Segments</h2><table><tr><th>segment</th><th class=\"l\">host</th><th>sessions</th><th>failed</th><th>start offset</th><th>late</th><th>sustained req/s</th><th>sustained p99</th><th class=\"l\">generator</th><th class=\"l\">verdict</th></tr>",
    );
    for row in rows {
        let sustained = row.phases.iter().find(|p| p.name == "sustained");
        let valid = row.phases.iter().all(|p| p.generator_valid);
        let _ = write!(
            out,
            "<tr><td>{}/{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{:?}{}</td></tr>",
            row.segment.index,
            row.segment.count,
            escape(&row.segment.host),
            row.sessions_established,
            row.sessions_failed,
            row.start_offset_ms,
            row.segment
                .late_ms
                .map_or("—".to_string(), |ms| format!("{ms} ms")),
            sustained
                .and_then(|p| p.throughput_rps)
                .map_or("—".to_string(), |t| format!("{t:.0}")),
            sustained.map_or("—".to_string(), |p| format_us(p.latency_us_p99)),
            if valid { "ok" } else { "INVALID in a phase" },
            row.verdict,
            if row.partial { " (partial)" } else { "" }
        );
    }
    let count = rows.first().map_or(0, |r| r.segment.count);
    let missing = super::missing_segments(rows);
    out.push_str("</table>");
    if !missing.is_empty() {
        let _ = write!(
            out,
            "<p class=\"note\">MISSING segments {missing:?} of {count}: their share is not in these figures.</p>"
        );
    }
    out
}

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

struct Series<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

struct Band {
    x0: f64,
    x1: f64,
    label: String,
}

/// Tick positions for [0, max]: 1, 2 or 5 × 10^k steps, about five of them.
fn nice_ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let mut ticks = Vec::new();
    let mut t = 0.0;
    while t <= max * 1.0001 + step {
        ticks.push(t);
        if t >= max {
            break;
        }
        t += step;
    }
    ticks
}

fn short_number(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Where a chart's x axis puts its labels: seconds (linear) or fixed (position, label) pairs.
enum XAxis<'a> {
    Seconds,
    Labels(&'a [(f64, &'a str)]),
}

/// One line chart: phase bands behind, y grid with `y_format` labels, x labels, one polyline
/// and legend entry per series. `x_max` is the right edge; points beyond it are clamped.
fn line_chart(
    title: &str,
    y_format: &dyn Fn(f64) -> String,
    series: &[Series<'_>],
    bands: &[Band],
    x_max: f64,
    x_axis: XAxis<'_>,
    y_log: bool,
) -> String {
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    // Log scale (latency spectra span µs to s): one tick per decade from the smallest
    // positive value's decade; values below it sit on the axis.
    let y_min_positive = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min);
    let (y_ticks, y_bottom, y_top) = if y_log {
        let low = if y_min_positive == f64::MAX {
            0.0
        } else {
            y_min_positive.log10().floor()
        };
        let high = y_max.max(10f64.powf(low + 1.0)).log10().ceil();
        let ticks: Vec<f64> = (low as i32..=high as i32).map(|e| 10f64.powi(e)).collect();
        (ticks, low, high)
    } else {
        let ticks = nice_ticks(y_max);
        let top = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        (ticks, 0.0, top)
    };
    let x_top = if x_max > 0.0 { x_max } else { 1.0 };
    let sx = |x: f64| MARGIN_LEFT + x.min(x_top) / x_top * plot_w;
    let sy = |y: f64| {
        let fraction = if y_log {
            (y.max(10f64.powf(y_bottom)).log10() - y_bottom)
                / (y_top - y_bottom).max(f64::MIN_POSITIVE)
        } else {
            y / y_top
        };
        MARGIN_TOP + plot_h - fraction * plot_h
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><text x="{MARGIN_LEFT}" y="20" class="title">{t}</text>"#,
        t = escape(title)
    );
    for (i, band) in bands.iter().enumerate() {
        let (x0, x1) = (sx(band.x0), sx(band.x1.max(band.x0)));
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{MARGIN_TOP}" width="{:.1}" height="{plot_h}" fill="{}"/><text x="{:.1}" y="{:.1}" class="band">{}</text>"#,
            (x1 - x0).max(0.5),
            PHASE_COLORS[i % PHASE_COLORS.len()],
            x0 + 3.0,
            MARGIN_TOP + 12.0,
            escape(&band.label)
        );
    }
    for tick in &y_ticks {
        let y = sy(*tick);
        let _ = write!(
            svg,
            r#"<line x1="{MARGIN_LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="ytick">{}</text>"#,
            WIDTH - MARGIN_RIGHT,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            escape(&y_format(*tick))
        );
    }
    let x_labels: Vec<(f64, String)> = match x_axis {
        XAxis::Seconds => nice_ticks(x_top)
            .into_iter()
            .filter(|t| *t <= x_top * 1.0001)
            .map(|t| (t, format!("{} s", short_number(t))))
            .collect(),
        XAxis::Labels(labels) => labels.iter().map(|(x, l)| (*x, l.to_string())).collect(),
    };
    for (x, label) in x_labels {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="xtick">{}</text>"#,
            sx(x),
            HEIGHT - MARGIN_BOTTOM + 18.0,
            escape(&label)
        );
    }
    let _ = write!(
        svg,
        r#"<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT}" y1="{MARGIN_TOP}" y2="{bottom:.1}" class="axis"/><line x1="{MARGIN_LEFT}" x2="{:.1}" y1="{bottom:.1}" y2="{bottom:.1}" class="axis"/>"#,
        WIDTH - MARGIN_RIGHT,
        bottom = MARGIN_TOP + plot_h,
    );
    for (i, s) in series.iter().enumerate() {
        let color = LINE_COLORS[i % LINE_COLORS.len()];
        if !s.points.is_empty() {
            let path: Vec<String> = s
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#,
                path.join(" ")
            );
        }
        let lx = MARGIN_LEFT + 10.0 + i as f64 * 170.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="4" fill="{color}"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"#,
            HEIGHT - 12.0,
            lx + 18.0,
            HEIGHT - 7.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A chart over the run's seconds with phase bands.
fn time_chart(
    title: &str,
    y_format: &dyn Fn(f64) -> String,
    series: &[Series<'_>],
    bands: &[Band],
    x_max: f64,
) -> String {
    line_chart(title, y_format, series, bands, x_max, XAxis::Seconds, false)
}

/// Latency by percentile, x = log10(1 / (1 − q)) as HdrHistogram plots draw it.
fn spectrum_chart(report: &RunReport) -> String {
    let series: Vec<Series<'_>> = report
        .phases
        .iter()
        .filter(|p| !p.latency_spectrum_us.is_empty())
        .map(|p| Series {
            name: &p.name,
            points: p
                .latency_spectrum_us
                .iter()
                .filter(|(q, _)| *q < 1.0)
                .map(|(q, v)| ((1.0 / (1.0 - q)).log10(), *v as f64))
                .collect(),
        })
        .collect();
    const LABELS: [(f64, &str); 6] = [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "99.999%"),
    ];
    line_chart(
        "Latency by percentile, per phase (corrected for coordinated omission; log scale)",
        &|v| format_us(v as u64),
        &series,
        &[],
        5.0,
        XAxis::Labels(&LABELS),
        true,
    )
}

fn verdict_class(verdict: Verdict) -> (&'static str, &'static str) {
    match verdict {
        Verdict::Pass => ("pass", "PASS"),
        Verdict::Fail => ("fail", "FAIL"),
        Verdict::Invalid => ("invalid", "INVALID"),
        Verdict::Skipped => ("skip", "SKIPPED"),
        Verdict::NotMeasured => ("fail", "NOT MEASURED"),
        Verdict::Info => ("skip", "info"),
    }
}

pub fn render(report: &RunReport) -> String {
    let bands: Vec<Band> = report
        .phases
        .iter()
        .filter(|p| !matches!(p.status, PhaseStatus::Skipped | PhaseStatus::NotRun))
        .map(|p| Band {
            x0: p.start_s,
            x1: p.start_s + p.duration_s,
            label: p.name.replace('_', " "),
        })
        .collect();
    let x_max = report
        .duration_s
        .max(report.series.last().map_or(0.0, |s| s.t_s));
    let series = &report.series;
    let sessions = time_chart(
        "Sessions held and answering (a fault shows as the gap between them)",
        &|v| short_number(v),
        &[
            Series {
                name: "sessions held",
                points: series
                    .iter()
                    .map(|s| (s.t_s, s.sessions_held as f64))
                    .collect(),
            },
            Series {
                name: "sessions answering",
                points: series
                    .iter()
                    .map(|s| (s.t_s, s.sessions_answering as f64))
                    .collect(),
            },
        ],
        &bands,
        x_max,
    );
    let throughput = time_chart(
        "Throughput (requests answered per second) and errors per second",
        &|v| short_number(v),
        &[
            Series {
                name: "req/s",
                points: series.iter().map(|s| (s.t_s, s.throughput_rps)).collect(),
            },
            Series {
                name: "errors/s",
                points: series.iter().map(|s| (s.t_s, s.errors as f64)).collect(),
            },
        ],
        &bands,
        x_max,
    );
    let latency = time_chart(
        "Latency per second (from intended send time)",
        &|v| format_us(v as u64),
        &[
            Series {
                name: "p50",
                points: series
                    .iter()
                    .map(|s| (s.t_s, s.latency_us_p50 as f64))
                    .collect(),
            },
            Series {
                name: "p95",
                points: series
                    .iter()
                    .map(|s| (s.t_s, s.latency_us_p95 as f64))
                    .collect(),
            },
            Series {
                name: "p99",
                points: series
                    .iter()
                    .map(|s| (s.t_s, s.latency_us_p99 as f64))
                    .collect(),
            },
        ],
        &bands,
        x_max,
    );
    // `--streams`: streams held and notifications received per second, and the fan-out
    // latency per second.
    let streams = report.streams.as_ref().map(|summary| {
        let held = time_chart(
            "Streams held, and notifications received per second",
            &|v| short_number(v),
            &[
                Series {
                    name: "streams held",
                    points: series
                        .iter()
                        .map(|s| (s.t_s, s.streams_held as f64))
                        .collect(),
                },
                Series {
                    name: "notifications/s",
                    points: series
                        .iter()
                        .map(|s| (s.t_s, s.notifications as f64))
                        .collect(),
                },
            ],
            &bands,
            x_max,
        );
        let fan_out = time_chart(
            "Fan-out latency per second (server send time → received), p99",
            &|v| format_us(v as u64),
            &[Series {
                name: "p99",
                points: series
                    .iter()
                    .filter(|s| s.notifications > 0)
                    .map(|s| (s.t_s, s.notification_latency_us_p99 as f64))
                    .collect(),
            }],
            &bands,
            x_max,
        );
        format!(
            r#"<h2>Streams</h2><p class="note">{}</p><div class="chart">{held}</div><div class="chart">{fan_out}</div>"#,
            escape(&super::text::streams_line(summary))
        )
    });
    let (verdict_css, verdict_text) = verdict_class(report.verdict);
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcpstorm report — {connections} connections</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2329; margin: 0; background: #fafbfc; }}
main {{ max-width: 1200px; margin: 0 auto; padding: 24px 20px 60px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 17px; margin: 32px 0 10px; }}
.meta {{ color: #5b6670; margin-bottom: 16px; }}
.verdict {{ display: inline-block; padding: 4px 12px; border-radius: 4px; font-weight: 700; color: #fff; }}
.verdict.pass {{ background: #2e9d4f; }} .verdict.fail {{ background: #c7352b; }} .verdict.invalid {{ background: #b07900; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; font-variant-numeric: tabular-nums; }}
th, td {{ border-bottom: 1px solid #e3e7eb; padding: 6px 8px; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child, td.l, th.l {{ text-align: left; }} th {{ background: #f1f4f7; font-weight: 600; }}
td.pass {{ color: #1f7a3b; font-weight: 700; }} td.fail {{ color: #b02a20; font-weight: 700; }} td.invalid {{ color: #9a6a00; font-weight: 700; }} td.skip {{ color: #77818a; }}
.chart {{ background: #fff; border: 1px solid #e3e7eb; margin: 12px 0; }} svg {{ width: 100%; height: auto; display: block; }}
svg .title {{ font-size: 14px; font-weight: 600; fill: #1d2329; }} svg .band {{ font-size: 11px; fill: #5b6670; }}
svg .ytick {{ font-size: 11px; fill: #5b6670; text-anchor: end; }} svg .xtick {{ font-size: 11px; fill: #5b6670; text-anchor: middle; }}
svg .legend {{ font-size: 12px; fill: #1d2329; }} svg .grid {{ stroke: #edf0f3; }} svg .axis {{ stroke: #9aa4ad; }}
.note {{ color: #5b6670; font-size: 12px; white-space: normal; text-align: left; }} td.wrap {{ white-space: normal; max-width: 260px; }}
.partial {{ background: #fff4d6; border: 1px solid #e5c46b; padding: 8px 12px; margin: 12px 0; }}
</style></head><body><main>
<h1>mcpstorm — {connections} MCP sessions against {target}</h1>
<div class="meta">mcpstorm {version} · {cpus} CPUs · Linux {kernel} · RLIMIT_NOFILE {nofile} · run took {duration:.1} s</div>
<div><span class="verdict {verdict_css}">{verdict_text}</span></div>
"#,
        connections = format_count(report.connections),
        target = escape(&if report.embedded_server {
            "the embedded server".to_string()
        } else {
            report.targets.join(", ")
        }),
        version = escape(&report.mcpstorm_version),
        cpus = report.machine.cpus,
        kernel = escape(&report.machine.kernel),
        nofile = report.machine.nofile_hard,
        duration = report.duration_s,
    );
    if report.partial {
        html.push_str(r#"<div class="partial">This run was interrupted: every figure covers only the time it ran.</div>"#);
    }
    html.push_str("<h2>SLA</h2><table><tr><th>check</th><th class=\"l\">phase</th><th class=\"l\">target</th><th class=\"l\">actual</th><th class=\"l\">verdict</th><th class=\"l\">note</th></tr>");
    for row in &report.sla {
        let (css, word) = verdict_class(row.verdict);
        let _ = write!(
            html,
            r#"<tr><td>{}</td><td class="l">{}</td><td class="l">{}</td><td class="l">{}</td><td class="l {css}">{word}</td><td class="note">{}</td></tr>"#,
            escape(&row.name),
            escape(&row.phase),
            escape(&row.target),
            escape(&row.actual),
            escape(row.note.as_deref().unwrap_or(""))
        );
    }
    html.push_str("</table>");
    let _ = write!(
        html,
        r#"<h2>Over time</h2><div class="chart">{sessions}</div><div class="chart">{throughput}</div><div class="chart">{latency}</div><div class="chart">{}</div>"#,
        spectrum_chart(report)
    );
    if let Some(streams) = &streams {
        html.push_str(streams);
    }
    if let Some(asked) = &report.server_requests {
        let _ = write!(
            html,
            r#"<h2>Server-to-client requests</h2><p class="note">{}</p>"#,
            escape(&super::text::server_requests_line(asked))
        );
    }
    if let Some(rows) = &report.merged_from {
        html.push_str(&segments_table(rows));
    }
    html.push_str("<h2>Phases</h2><table><tr><th>phase</th><th class=\"l\">status</th><th>time</th><th>sessions held</th><th>requests</th><th>req/s</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>errors</th><th class=\"l\">generator</th></tr>");
    for p in &report.phases {
        let has_latency = p.latency_us.count > 0;
        let lat = |v: u64| {
            if has_latency {
                format_us(v)
            } else {
                "—".into()
            }
        };
        let _ = write!(
            html,
            r#"<tr><td>{}</td><td class="l">{}</td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="l wrap {}">{}</td></tr>"#,
            escape(&p.name),
            if p.saturation.is_some() && p.status == PhaseStatus::Completed {
                "SATURATED".to_string()
            } else {
                format!("{:?}", p.status)
            },
            p.duration_s,
            format_count(p.sessions.held_max),
            format_count(p.requests.ok + p.requests.errors),
            p.throughput_rps,
            lat(p.latency_us.p50),
            lat(p.latency_us.p95),
            lat(p.latency_us.p99),
            lat(p.latency_us.max),
            format_count(p.requests.errors),
            if p.generator.valid { "pass" } else { "invalid" },
            if p.generator.valid {
                "ok".to_string()
            } else {
                escape(p.generator.invalid_reason.as_deref().unwrap_or("INVALID"))
            }
        );
    }
    html.push_str("</table>");
    html.push_str("<h2>Details</h2><table><tr><th>phase</th><th class=\"l\">detail</th></tr>");
    for phase in &report.phases {
        for line in super::text::phase_details(phase) {
            let _ = write!(
                html,
                r#"<tr><td>{}</td><td class="note">{}</td></tr>"#,
                escape(&phase.name),
                escape(&line)
            );
        }
    }
    html.push_str("</table></main></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(100.0), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(nice_ticks(7.0), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(0.0), vec![0.0, 1.0]);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
