//! Charts where people would rather look than read: the pass/fail rate per
//! hour, the defect Pareto (which defects cause most rejects), and the
//! response latency per hour (capture to publish, median and p95). Plain
//! SVG drawn on the server: no script, no CDN. The figures come from
//! `store::charts`.

use crate::html::esc;
use store::charts::Hour;

const W: f64 = 760.0;
const H: f64 = 240.0;
const PAD: f64 = 40.0;
/// The widest a bar gets, so one hour of data is a bar, not a wall.
const MAX_BAR: f64 = 48.0;

/// A round number at or above `v` (1, 2 or 5 times a power of ten).
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// The left axis from 0 at the baseline to `max` at `top`: the axis line,
/// light gridlines at half and top, labels with their unit.
fn y_axis(max: f64, unit: &str, top: f64) -> String {
    let base = H - PAD;
    let mut out = format!(
        r##"<line x1="{PAD}" x2="{PAD}" y1="{top:.1}" y2="{base:.1}" stroke="#555"/><line x1="{PAD}" x2="{:.0}" y1="{base:.1}" y2="{base:.1}" stroke="#555"/>"##,
        W - PAD
    );
    for f in [0.0, 0.5, 1.0] {
        let y = base - f * (base - top);
        let value = max * f;
        let label = if value.fract() == 0.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.1}")
        };
        out.push_str(&format!(
            r##"<line x1="{PAD}" x2="{:.0}" y1="{y:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.0}" y="{:.1}" font-size="11" text-anchor="end">{label}</text>"##,
            W - PAD,
            PAD - 4.0,
            y + 4.0
        ));
    }
    out.push_str(&format!(
        r#"<text x="4" y="{:.1}" font-size="11">{}</text>"#,
        top - 6.0,
        esc(unit)
    ));
    out
}

/// Stacked bars per hour (PASS green, REVIEW amber, FAIL red) with the
/// reject rate as a line.
pub fn rate_svg(hours: &[Hour]) -> String {
    if hours.is_empty() {
        return "<p>No verdicts in this window.</p>".into();
    }
    let max = nice(
        hours
            .iter()
            .map(|h| h.pass + h.fail + h.review)
            .max()
            .unwrap_or(1)
            .max(1) as f64,
    );
    let bw = ((W - 2.0 * PAD) / hours.len() as f64).min(MAX_BAR);
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="verdicts per hour">{}"#,
        y_axis(max, "parts / h", PAD)
    );
    for (f, label) in [(0.0, "0 %"), (0.5, "50 %"), (1.0, "100 %")] {
        out.push_str(&format!(
            r#"<text x="{:.0}" y="{:.1}" font-size="11">{label}</text>"#,
            W - PAD + 4.0,
            H - PAD - f * (H - 2.0 * PAD) + 4.0
        ));
    }
    let mut line = Vec::new();
    for (i, h) in hours.iter().enumerate() {
        let x = PAD + i as f64 * bw;
        let mut y = H - PAD;
        for (n, colour) in [
            (h.pass, "#2e8540"),
            (h.review, "#f2a900"),
            (h.fail, "#d83933"),
        ] {
            let height = n as f64 / max * (H - 2.0 * PAD);
            y -= height;
            out.push_str(&format!(
                r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{height:.1}" fill="{colour}"/>"##,
                (bw - 2.0).max(1.0)
            ));
        }
        let total = h.pass + h.fail + h.review;
        let rate = (h.fail + h.review) as f64 / total.max(1) as f64;
        line.push(format!(
            "{:.1},{:.1}",
            x + bw / 2.0,
            H - PAD - rate * (H - 2.0 * PAD)
        ));
        out.push_str(&format!(
            r#"<rect x="{x:.1}" y="{PAD}" width="{bw:.1}" height="{:.1}" fill="transparent"><title>{}: {} PASS, {} FAIL, {} REVIEW</title></rect>"#,
            H - 2.0 * PAD,
            esc(&h.hour),
            h.pass,
            h.fail,
            h.review
        ));
    }
    out.push_str(&format!(
        r##"<polyline points="{}" fill="none" stroke="#1b1b1b" stroke-width="2"/><text x="{PAD}" y="20" font-size="13">bars: verdicts per hour (max {max}); line: share FAIL or REVIEW (0–100%)</text><text x="{PAD}" y="{:.0}" font-size="12">{}</text><text x="{:.0}" y="{:.0}" font-size="12" text-anchor="end">{}</text></svg>"##,
        line.join(" "),
        H - 12.0,
        esc(&hours[0].hour),
        W - PAD,
        H - 12.0,
        esc(&hours[hours.len() - 1].hour)
    ));
    out
}

/// Bars per defect, most frequent first, with the cumulative share.
pub fn pareto_svg(pareto: &[(String, i64)]) -> String {
    if pareto.is_empty() {
        return "<p>No violated clauses in this window.</p>".into();
    }
    let total: i64 = pareto.iter().map(|(_, n)| n).sum();
    let max = nice(pareto[0].1.max(1) as f64);
    let bw = ((W - 2.0 * PAD) / pareto.len() as f64).min(3.0 * MAX_BAR);
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="defect Pareto">{}"#,
        y_axis(max, "findings", PAD + 20.0)
    );
    let mut cumulative = 0i64;
    let mut line = Vec::new();
    for (i, (defect, n)) in pareto.iter().enumerate() {
        let x = PAD + i as f64 * bw;
        let height = *n as f64 / max * (H - 2.0 * PAD - 20.0);
        cumulative += n;
        line.push(format!(
            "{:.1},{:.1}",
            x + bw / 2.0,
            // On the bars' scale: 100 % at the axis' top.
            H - PAD - cumulative as f64 / total as f64 * (H - 2.0 * PAD - 20.0)
        ));
        out.push_str(&format!(
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{height:.1}" fill="#d83933"><title>{}: {n}</title></rect><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{n}</text>"##,
            H - PAD - height,
            (bw - 6.0).max(1.0),
            esc(defect),
            x + bw / 2.0,
            H - PAD + 16.0,
            esc(defect),
            x + bw / 2.0,
            H - PAD - height - 4.0,
        ));
    }
    out.push_str(&format!(
        r##"<polyline points="{}" fill="none" stroke="#1b1b1b" stroke-width="2"/><text x="{PAD}" y="20" font-size="13">rejecting findings by defect ({total} in all); line: cumulative share</text></svg>"##,
        line.join(" ")
    ));
    out
}

/// Median and p95 of capture-to-publish latency per hour.
pub fn latency_svg(hours: &[Hour], budget_ms: f64) -> String {
    let points: Vec<(usize, f64, f64)> = hours
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((i, h.latency_p50_ms?, h.latency_p95_ms?)))
        .collect();
    if points.is_empty() {
        return "<p>No published verdicts in this window.</p>".into();
    }
    let max = nice(
        points
            .iter()
            .map(|p| p.2)
            .fold(budget_ms, f64::max)
            .max(1.0),
    );
    let step = (W - 2.0 * PAD) / hours.len().max(1) as f64;
    let y = |ms: f64| H - PAD - ms / max * (H - 2.0 * PAD);
    let poly = |sel: fn(&(usize, f64, f64)) -> f64| {
        points
            .iter()
            .map(|p| format!("{:.1},{:.1}", PAD + (p.0 as f64 + 0.5) * step, y(sel(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let titles: String = points
        .iter()
        .map(|p| {
            format!(
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#22313f"><title>{}: p50 {:.0} ms, p95 {:.0} ms</title></circle>"##,
                PAD + (p.0 as f64 + 0.5) * step,
                y(p.1),
                esc(&hours[p.0].hour),
                p.1,
                p.2
            )
        })
        .collect();
    format!(
        r##"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="latency per hour">{axis}<line x1="{PAD}" x2="{:.0}" y1="{b:.1}" y2="{b:.1}" stroke="#d83933" stroke-dasharray="6 4"/><text x="{:.0}" y="{:.1}" font-size="12" text-anchor="end" fill="#d83933">budget {budget_ms:.0} ms</text><polyline points="{}" fill="none" stroke="#22313f" stroke-width="2"/><polyline points="{}" fill="none" stroke="#7a8a99" stroke-width="2" stroke-dasharray="4 3"/>{titles}<text x="{PAD}" y="20" font-size="13">capture to publish: median (solid), p95 (dashed), max {max:.0} ms</text></svg>"##,
        W - PAD,
        W - PAD,
        y(budget_ms) - 4.0,
        poly(|p| p.1),
        poly(|p| p.2),
        b = y(budget_ms),
        axis = y_axis(max, "ms", PAD),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(at: &str, pass: i64, fail: i64) -> Hour {
        Hour {
            hour: at.into(),
            pass,
            fail,
            review: 0,
            latency_p50_ms: Some(40.0),
            latency_p95_ms: Some(90.0),
        }
    }

    #[test]
    fn axes_have_round_tops_and_units_and_one_hour_is_one_bar() {
        assert_eq!(
            (nice(7.0), nice(13.0), nice(250.0), nice(1200.0)),
            (10.0, 20.0, 500.0, 2000.0)
        );
        let svg = rate_svg(&[hour("2026-12-04T10", 7, 3)]);
        assert!(
            svg.contains(">parts / h</text>") && svg.contains(">100 %</text>"),
            "{svg}"
        );
        assert!(
            svg.contains(r#"width="46.0""#),
            "one hour is a {MAX_BAR}-unit bar: {svg}"
        );
        let svg = latency_svg(&[hour("2026-12-04T10", 7, 3)], 1200.0);
        assert!(
            svg.contains(">ms</text>") && svg.contains(">2000</text>"),
            "{svg}"
        );
    }
}
