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

/// Stacked bars per hour (PASS green, REVIEW amber, FAIL red) with the
/// reject rate as a line.
pub fn rate_svg(hours: &[Hour]) -> String {
    if hours.is_empty() {
        return "<p>No verdicts in this window.</p>".into();
    }
    let max = hours
        .iter()
        .map(|h| h.pass + h.fail + h.review)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let bw = (W - 2.0 * PAD) / hours.len() as f64;
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="verdicts per hour">"#
    );
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
    let max = pareto[0].1.max(1) as f64;
    let bw = (W - 2.0 * PAD) / pareto.len() as f64;
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="defect Pareto">"#
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
            H - PAD - cumulative as f64 / total as f64 * (H - 2.0 * PAD)
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
    let max = points
        .iter()
        .map(|p| p.2)
        .fold(budget_ms, f64::max)
        .max(1.0);
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
        r##"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="latency per hour"><line x1="{PAD}" x2="{:.0}" y1="{b:.1}" y2="{b:.1}" stroke="#d83933" stroke-dasharray="6 4"/><text x="{:.0}" y="{:.1}" font-size="12" text-anchor="end" fill="#d83933">budget {budget_ms:.0} ms</text><polyline points="{}" fill="none" stroke="#22313f" stroke-width="2"/><polyline points="{}" fill="none" stroke="#7a8a99" stroke-width="2" stroke-dasharray="4 3"/>{titles}<text x="{PAD}" y="20" font-size="13">capture to publish: median (solid), p95 (dashed), max {max:.0} ms</text></svg>"##,
        W - PAD,
        W - PAD,
        y(budget_ms) - 4.0,
        poly(|p| p.1),
        poly(|p| p.2),
        b = y(budget_ms),
    )
}
