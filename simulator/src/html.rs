//! `report.html`: one self-contained page (inline CSS and SVG, no script, nothing fetched) that
//! a tester can open, mail or screenshot: the summary per plane, three plots (latency over
//! time, the percentile curve, the rate over time), the confusion matrices and the false
//! positives and negatives with their facts.

use crate::report::{PlaneReport, Report};
use std::fmt::Write as _;

const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// HTML-escape text (`& < > "`).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

/// One line series.
struct Series<'a> {
    name: String,
    color: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// A line chart as inline SVG. `log_y`: a log₁₀ latency axis; `x_ticks`: labelled ticks
/// (position, label), else evenly spaced numbers.
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    log_y: bool,
    x_ticks: Option<&[(f64, String)]>,
) -> String {
    let (w, h, l, r, t, b) = (760.0, 300.0, 70.0, 150.0, 30.0, 45.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let fy = |y: f64| if log_y { y.max(1e-3).log10() } else { y };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(fy(y));
        y1 = y1.max(fy(y));
    }
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><text x="{tx}" y="18" class="title">{title}</text>"##,
        tx = l,
        title = esc(title)
    );
    if x0 > x1 {
        svg.push_str(r#"<text x="300" y="150">no data</text></svg>"#);
        return svg;
    }
    if !log_y {
        y0 = y0.min(0.0);
    } else {
        y0 = y0.floor();
        y1 = y1.ceil();
    }
    if (y1 - y0).abs() < 1e-9 {
        y1 = y0 + 1.0;
    }
    if (x1 - x0).abs() < 1e-9 {
        x1 = x0 + 1.0;
    }
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - b - (fy(y) - y0) / (y1 - y0) * (h - t - b);
    let pyr = |v: f64| h - b - (v - y0) / (y1 - y0) * (h - t - b);
    // Axes and grid.
    let _ = write!(
        svg,
        r##"<line x1="{l}" y1="{yb}" x2="{xr}" y2="{yb}" class="axis"/><line x1="{l}" y1="{t}" x2="{l}" y2="{yb}" class="axis"/>"##,
        yb = h - b,
        xr = w - r
    );
    let y_ticks: Vec<f64> = if log_y {
        (y0 as i64..=y1 as i64).map(|e| e as f64).collect()
    } else {
        (0..=4)
            .map(|i| y0 + (y1 - y0) * f64::from(i) / 4.0)
            .collect()
    };
    for v in y_ticks {
        let y = pyr(v);
        let label = if log_y {
            fmt_ms(10f64.powf(v))
        } else {
            fmt_num(v)
        };
        let _ = write!(
            svg,
            r##"<line x1="{l}" y1="{y:.1}" x2="{xr}" y2="{y:.1}" class="grid"/><text x="{tx}" y="{ty:.1}" class="tick" text-anchor="end">{label}</text>"##,
            xr = w - r,
            tx = l - 6.0,
            ty = y + 4.0
        );
    }
    let xt: Vec<(f64, String)> = match x_ticks {
        Some(t) => t.to_vec(),
        None => (0..=5)
            .map(|i| {
                let v = x0 + (x1 - x0) * f64::from(i) / 5.0;
                (v, fmt_num(v))
            })
            .collect(),
    };
    for (v, label) in xt {
        let x = px(v);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{yb}" x2="{x:.1}" y2="{yb5}" class="axis"/><text x="{x:.1}" y="{ty}" class="tick" text-anchor="middle">{label}</text>"##,
            yb = h - b,
            yb5 = h - b + 5.0,
            ty = h - b + 18.0,
            label = esc(&label)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{cx}" y="{by}" class="label" text-anchor="middle">{x_label}</text><text x="14" y="{cy}" class="label" transform="rotate(-90 14 {cy})" text-anchor="middle">{y_label}</text>"##,
        cx = l + (w - l - r) / 2.0,
        by = h - 6.0,
        cy = t + (h - t - b) / 2.0,
        x_label = esc(x_label),
        y_label = esc(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="{c}" stroke-width="1.8"{dash} points="{p}"/>"##,
            c = s.color,
            dash = if s.dashed {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            },
            p = path.join(" ")
        );
        let ly = t + 14.0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            r##"<line x1="{a}" y1="{ly}" x2="{bx}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/><text x="{tx}" y="{ty}" class="tick">{n}</text>"##,
            a = w - r + 10.0,
            bx = w - r + 30.0,
            c = s.color,
            dash = if s.dashed {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            },
            tx = w - r + 35.0,
            ty = ly + 4.0,
            n = esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", fmt_num(ms / 1000.0))
    } else {
        format!("{} ms", fmt_num(ms))
    }
}

fn us_ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn plots(r: &Report) -> String {
    let mut over_time = Vec::new();
    let mut curve = Vec::new();
    let mut rate = Vec::new();
    for (i, p) in r.planes.iter().enumerate() {
        let c = COLORS.get(i % COLORS.len()).copied().unwrap_or("#000");
        let answered: Vec<&crate::report::Bucket> =
            p.series.iter().filter(|b| b.max_us > 0).collect();
        over_time.push(Series {
            name: format!("{} p50", p.plane),
            color: c,
            dashed: false,
            points: answered
                .iter()
                .map(|b| (b.t_s, b.p50_us as f64 / 1000.0))
                .collect(),
        });
        over_time.push(Series {
            name: format!("{} p99", p.plane),
            color: c,
            dashed: true,
            points: answered
                .iter()
                .map(|b| (b.t_s, b.p99_us as f64 / 1000.0))
                .collect(),
        });
        // x = log10(1 / (1 - q)): 50% at 0.3, 99% at 2, 99.9% at 3…
        curve.push(Series {
            name: p.plane.to_string(),
            color: c,
            dashed: false,
            points: p
                .percentile_curve
                .iter()
                .filter(|(q, _)| *q < 1.0)
                .map(|&(q, us)| ((1.0 / (1.0 - q)).log10(), us as f64 / 1000.0))
                .collect(),
        });
        let width = p.series.get(1).map_or(1.0, |b| b.t_s).max(1e-3);
        rate.push(Series {
            name: format!("{} sent", p.plane),
            color: c,
            dashed: true,
            points: p
                .series
                .iter()
                .map(|b| (b.t_s, b.sent as f64 / width))
                .collect(),
        });
        rate.push(Series {
            name: format!("{} answered", p.plane),
            color: c,
            dashed: false,
            points: p
                .series
                .iter()
                .map(|b| (b.t_s, b.answered as f64 / width))
                .collect(),
        });
    }
    let q_ticks: Vec<(f64, String)> = [
        (0.0, "0%"),
        (0.5, "50%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
        (0.99999, "99.999%"),
    ]
    .iter()
    .map(|&(q, l)| ((1.0f64 / (1.0 - q)).log10(), l.to_string()))
    .collect();
    let mut s = String::new();
    s.push_str(&chart(
        "Latency over time (from the scheduled send; p50 solid, p99 dashed)",
        "seconds since start (by scheduled send)",
        "latency",
        &over_time,
        true,
        None,
    ));
    s.push_str(&chart(
        "Latency percentile curve",
        "percentile",
        "latency",
        &curve,
        true,
        Some(q_ticks.as_slice()),
    ));
    s.push_str(&chart(
        "Rate over time (sent dashed, answered solid)",
        "seconds since start",
        "per second",
        &rate,
        false,
        None,
    ));
    s
}

fn plane_table(p: &PlaneReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<h2>{plane} <small>{target}</small></h2><table><tr><th>target rate</th><th>sent rate</th><th>achieved (answered/s)</th><th>scheduled</th><th>sent</th><th>answered</th><th>timeouts</th><th>errors (overflow)</th><th>unexpected</th><th>false positives</th><th>false negatives</th></tr>\
         <tr><td>{tr:.1}</td><td>{sr:.1}</td><td>{ar:.1}</td><td>{sc}</td><td>{se}</td><td>{an}</td><td>{to}</td><td>{er} ({ov})</td><td>{un}</td><td class=\"{fpc}\">{fp}</td><td class=\"{fnc}\">{fneg}</td></tr></table>",
        plane = p.plane,
        target = esc(&p.target),
        tr = p.target_rate,
        sr = p.sent_rate,
        ar = p.achieved_rate,
        sc = p.scheduled,
        se = p.sent,
        an = p.answered,
        to = p.timeouts,
        er = p.errors,
        ov = p.overflow,
        un = p.unexpected,
        fp = p.false_positives,
        fneg = p.false_negatives,
        fpc = if p.false_positives > 0 { "bad" } else { "good" },
        fnc = if p.false_negatives > 0 { "bad" } else { "good" },
    );
    s.push_str("<table><tr><th>latency (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    let row = |s: &mut String, name: &str, q: &crate::report::Percentiles| {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            q.count,
            us_ms(q.p50_us),
            us_ms(q.p90_us),
            us_ms(q.p99_us),
            us_ms(q.p999_us),
            us_ms(q.max_us)
        );
    };
    row(&mut s, "all answers", &p.latency);
    for (o, q) in &p.latency_by_outcome {
        row(&mut s, o.as_str(), q);
    }
    row(&mut s, "lateness of the send", &p.lateness);
    s.push_str("</table>");
    // The confusion matrix: rows expected, columns observed.
    let mut cols: Vec<crate::report::Observed> = p
        .confusion
        .values()
        .flat_map(|m| m.keys().copied())
        .collect();
    cols.sort();
    cols.dedup();
    s.push_str("<table class=\"cm\"><tr><th>expected ↓ observed →</th>");
    for c in &cols {
        let _ = write!(s, "<th>{}</th>", c.as_str());
    }
    s.push_str("</tr>");
    for (e, m) in &p.confusion {
        let _ = write!(s, "<tr><th>{}</th>", e.as_str());
        for c in &cols {
            let n = m.get(c).copied().unwrap_or(0);
            let class = match crate::report::judge(*e, *c) {
                _ if n == 0 => "",
                crate::report::Judgement::Correct => "good",
                crate::report::Judgement::NoVerdict => "warn",
                _ => "bad",
            };
            let _ = write!(s, "<td class=\"{class}\">{n}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    for (title, list) in [
        ("False positives", &p.false_positive_examples),
        ("False negatives", &p.false_negative_examples),
        ("Timeouts, errors, unexpected answers", &p.error_examples),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(
            s,
            "<details open><summary>{title} (first {})</summary><table><tr><th>#</th><th>request</th><th>expected</th><th>observed</th><th>wire</th></tr>",
            list.len()
        );
        for x in list {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                x.seq,
                esc(&x.facts),
                x.expected.as_str(),
                x.observed.as_str(),
                esc(&x.wire)
            );
        }
        s.push_str("</table></details>");
    }
    s
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}small{color:#666;font-weight:normal}\
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
th{background:#f4f4f4}td:nth-child(2){text-align:left}.good{background:#e6f4e6}.bad{background:#f8d7d7;font-weight:bold}\
.warn{background:#fff3cd}.plot{display:block;margin:12px 0;border:1px solid #eee}.title{font-size:14px;font-weight:bold}\
.tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#222}.axis{stroke:#333}.grid{stroke:#eee}\
.verdict{font-size:18px;padding:8px;display:inline-block}";

/// The whole page.
pub fn render(r: &Report) -> String {
    let t = &r.totals;
    let ok = t.false_positives == 0 && t.false_negatives == 0;
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>dragnet sim: {name}</title><style>{STYLE}</style></head><body>\
         <h1>Dragnet simulator report — {name}</h1>\
         <p>seed {seed}, {dur} s scheduled, {el:.2} s elapsed, started at unix time {st}.</p>\
         <p class=\"verdict {cls}\">{sched} requests scheduled, {sent} sent, {ans} answered: {correct} correct, \
         {fp} false positives, {fneg} false negatives, {to} timeouts, {err} errors, {un} unexpected answers.</p>",
        name = esc(if r.scenario.is_empty() { "scenario" } else { &r.scenario }),
        seed = r.seed,
        dur = r.duration_s,
        el = r.elapsed_s,
        st = r.started_unix,
        cls = if ok { "good" } else { "bad" },
        sched = t.scheduled,
        sent = t.sent,
        ans = t.answered,
        correct = t.correct,
        fp = t.false_positives,
        fneg = t.false_negatives,
        to = t.timeouts,
        err = t.errors,
        un = t.unexpected,
    );
    s.push_str(&plots(r));
    for p in &r.planes {
        s.push_str(&plane_table(p));
    }
    s.push_str("<p><small>Latency is measured from each request's scheduled send time (open loop, no coordinated omission); lateness is actual minus scheduled send. Percentiles from HDR histograms (3 significant digits).</small></p></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_empty_charts() {
        assert_eq!(
            esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
        let c = chart("t", "x", "y", &[], true, None);
        assert!(c.starts_with("<svg") && c.contains("no data") && c.ends_with("</svg>"));
        let s = [Series {
            name: "a".into(),
            color: "#000",
            dashed: false,
            points: vec![(0.0, 1.0), (1.0, 10.0), (2.0, 100.0)],
        }];
        let c = chart("t", "x", "y", &s, true, None);
        assert!(c.contains("<polyline") && c.contains("100 ms"));
    }
}
