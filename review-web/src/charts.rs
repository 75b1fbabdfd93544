//! Charts where people would rather look than read: the pass/fail rate per
//! hour, the defect Pareto (which defects cause most rejects), and the
//! response latency per hour (capture to publish, median and p95). Plain
//! SVG drawn on the server with `maud`, which escapes every value placed in
//! it: no script, no CDN. The figures come from `store::charts`.

use maud::{html, Markup};
use store::charts::Hour;

use crate::i18n::Lang;

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

/// `v` with one decimal, as coordinates are written.
fn d1(v: f64) -> String {
    format!("{v:.1}")
}

/// `v` with no decimals.
fn d0(v: f64) -> String {
    format!("{v:.0}")
}

/// The chart's frame, `0 0 W H`.
fn view_box() -> String {
    format!("0 0 {W} {H}")
}

/// The left axis from 0 at the baseline to `max` at `top`: the axis line,
/// light gridlines at half and top, labels with their unit.
fn y_axis(max: f64, unit: &str, top: f64) -> Markup {
    let base = H - PAD;
    html! {
        line x1=(PAD) x2=(PAD) y1=(d1(top)) y2=(d1(base)) stroke="#555" {}
        line x1=(PAD) x2=(d0(W - PAD)) y1=(d1(base)) y2=(d1(base)) stroke="#555" {}
        @for f in [0.0, 0.5, 1.0] {
            @let y = base - f * (base - top);
            @let value = max * f;
            @let label = if value.fract() == 0.0 { d0(value) } else { d1(value) };
            line x1=(PAD) x2=(d0(W - PAD)) y1=(d1(y)) y2=(d1(y)) stroke="#e4e4e4" {}
            text x=(d0(PAD - 4.0)) y=(d1(y + 4.0)) font-size="11" text-anchor="end" { (label) }
        }
        text x="4" y=(d1(top - 6.0)) font-size="11" { (unit) }
    }
}

/// One segment of a stacked bar: its top, its height and its colour.
type Segment = (f64, f64, &'static str);

/// Stacked bars per hour (PASS green, REVIEW amber, FAIL red) with the
/// reject rate as a line.
pub fn rate_svg(hours: &[Hour], lang: Lang) -> Markup {
    if hours.is_empty() {
        return html! { p { (lang.t("No verdicts in this window.")) } };
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
    // Per hour: its left edge and its stacked segments (top, height, colour).
    let bars: Vec<(f64, [Segment; 3])> = hours
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut y = H - PAD;
            let stack = [
                (h.pass, "#2e8540"),
                (h.review, "#f2a900"),
                (h.fail, "#d83933"),
            ]
            .map(|(n, colour)| {
                let height = n as f64 / max * (H - 2.0 * PAD);
                y -= height;
                (y, height, colour)
            });
            (PAD + i as f64 * bw, stack)
        })
        .collect();
    let line = hours
        .iter()
        .zip(&bars)
        .map(|(h, (x, _))| {
            let total = h.pass + h.fail + h.review;
            let rate = (h.fail + h.review) as f64 / total.max(1) as f64;
            format!(
                "{:.1},{:.1}",
                x + bw / 2.0,
                H - PAD - rate * (H - 2.0 * PAD)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        svg.chart viewBox=(view_box()) role="img" aria-label=(lang.t("verdicts per hour")) {
            (y_axis(max, lang.t("parts / h"), PAD))
            @for (f, label) in [(0.0, "0 %"), (0.5, "50 %"), (1.0, "100 %")] {
                text x=(d0(W - PAD + 4.0)) y=(d1(H - PAD - f * (H - 2.0 * PAD) + 4.0)) font-size="11" {
                    (label)
                }
            }
            @for (h, (x, stack)) in hours.iter().zip(&bars) {
                @for (y, height, colour) in stack {
                    rect x=(d1(*x)) y=(d1(*y)) width=(d1((bw - 2.0).max(1.0))) height=(d1(*height)) fill=(colour) {}
                }
                rect x=(d1(*x)) y=(PAD) width=(d1(bw)) height=(d1(H - 2.0 * PAD)) fill="transparent" {
                    title { (h.hour) ": " (h.pass) " PASS, " (h.fail) " FAIL, " (h.review) " REVIEW" }
                }
            }
            polyline points=(line) fill="none" stroke="#1b1b1b" stroke-width="2" {}
            text x=(PAD) y="20" font-size="13" {
                (lang.f("bars: verdicts per hour (max {0}); line: share FAIL or REVIEW (0–100%)", &[&max]))
            }
            text x=(PAD) y=(d0(H - 12.0)) font-size="12" { (hours[0].hour) }
            text x=(d0(W - PAD)) y=(d0(H - 12.0)) font-size="12" text-anchor="end" {
                (hours[hours.len() - 1].hour)
            }
        }
    }
}

/// Bars per defect, most frequent first, with the cumulative share.
pub fn pareto_svg(pareto: &[(String, i64)], lang: Lang) -> Markup {
    if pareto.is_empty() {
        return html! { p { (lang.t("No violated clauses in this window.")) } };
    }
    let total: i64 = pareto.iter().map(|(_, n)| n).sum();
    let max = nice(pareto[0].1.max(1) as f64);
    let bw = ((W - 2.0 * PAD) / pareto.len() as f64).min(3.0 * MAX_BAR);
    let mut cumulative = 0i64;
    let line = pareto
        .iter()
        .enumerate()
        .map(|(i, (_, n))| {
            let x = PAD + i as f64 * bw;
            cumulative += n;
            format!(
                "{:.1},{:.1}",
                x + bw / 2.0,
                // On the bars' scale: 100 % at the axis' top.
                H - PAD - cumulative as f64 / total as f64 * (H - 2.0 * PAD - 20.0)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        svg.chart viewBox=(view_box()) role="img" aria-label=(lang.t("defect Pareto")) {
            // "findings" is in pages.rs's table (the same word there).
            (y_axis(max, lang.t("findings"), PAD + 20.0))
            @for (i, (defect, n)) in pareto.iter().enumerate() {
                @let x = PAD + i as f64 * bw;
                @let height = *n as f64 / max * (H - 2.0 * PAD - 20.0);
                rect x=(d1(x)) y=(d1(H - PAD - height)) width=(d1((bw - 6.0).max(1.0))) height=(d1(height)) fill="#d83933" {
                    title { (defect) ": " (n) }
                }
                text x=(d1(x + bw / 2.0)) y=(d1(H - PAD + 16.0)) font-size="12" text-anchor="middle" {
                    (defect)
                }
                text x=(d1(x + bw / 2.0)) y=(d1(H - PAD - height - 4.0)) font-size="12" text-anchor="middle" {
                    (n)
                }
            }
            polyline points=(line) fill="none" stroke="#1b1b1b" stroke-width="2" {}
            text x=(PAD) y="20" font-size="13" {
                (lang.f("rejecting findings by defect ({0} in all); line: cumulative share", &[&total]))
            }
        }
    }
}

/// Median and p95 of capture-to-publish latency per hour.
pub fn latency_svg(hours: &[Hour], budget_ms: f64, lang: Lang) -> Markup {
    let points: Vec<(usize, f64, f64)> = hours
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((i, h.latency_p50_ms?, h.latency_p95_ms?)))
        .collect();
    if points.is_empty() {
        return html! { p { (lang.t("No published verdicts in this window.")) } };
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
    let b = y(budget_ms);
    html! {
        svg.chart viewBox=(view_box()) role="img" aria-label=(lang.t("latency per hour")) {
            (y_axis(max, "ms", PAD))
            line x1=(PAD) x2=(d0(W - PAD)) y1=(d1(b)) y2=(d1(b)) stroke="#d83933" stroke-dasharray="6 4" {}
            text x=(d0(W - PAD)) y=(d1(b - 4.0)) font-size="12" text-anchor="end" fill="#d83933" {
                (lang.f("budget {0} ms", &[&d0(budget_ms)]))
            }
            polyline points=(poly(|p| p.1)) fill="none" stroke="#22313f" stroke-width="2" {}
            polyline points=(poly(|p| p.2)) fill="none" stroke="#7a8a99" stroke-width="2" stroke-dasharray="4 3" {}
            @for p in &points {
                circle cx=(d1(PAD + (p.0 as f64 + 0.5) * step)) cy=(d1(y(p.1))) r="3" fill="#22313f" {
                    title { (lang.f("{0}: p50 {1} ms, p95 {2} ms", &[&hours[p.0].hour, &d0(p.1), &d0(p.2)])) }
                }
            }
            text x=(PAD) y="20" font-size="13" {
                (lang.f("capture to publish: median (solid), p95 (dashed), max {0} ms", &[&d0(max)]))
            }
        }
    }
}

/// The charts' Chinese. ("findings" is in pages.rs's table, with the
/// same meaning: one table per key, so the rooms cannot disagree.)
pub(crate) const ZH: &[(&str, &str)] = &[
    ("No verdicts in this window.", "此时间窗口内没有判定。"),
    ("verdicts per hour", "每小时判定数"),
    ("parts / h", "件/小时"),
    (
        "bars: verdicts per hour (max {0}); line: share FAIL or REVIEW (0–100%)",
        "柱：每小时判定数（纵轴最大 {0}）；折线：FAIL 或 REVIEW 所占比例（0–100%）",
    ),
    (
        "No violated clauses in this window.",
        "此时间窗口内没有违反任何条款。",
    ),
    ("defect Pareto", "缺陷帕累托图"),
    (
        "rejecting findings by defect ({0} in all); line: cumulative share",
        "按缺陷统计的拒收缺陷（共 {0} 处）；折线：累计占比",
    ),
    (
        "No published verdicts in this window.",
        "此时间窗口内没有已发布的判定。",
    ),
    ("latency per hour", "每小时响应时间"),
    ("budget {0} ms", "上限 {0} ms"),
    (
        "{0}: p50 {1} ms, p95 {2} ms",
        "{0}：中位数 {1} ms，p95 {2} ms",
    ),
    (
        "capture to publish: median (solid), p95 (dashed), max {0} ms",
        "采集到发布：中位数（实线），p95（虚线），纵轴最大 {0} ms",
    ),
];

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
        let svg = rate_svg(&[hour("2026-12-04T10", 7, 3)], Lang::En).into_string();
        assert!(
            svg.contains(">parts / h</text>") && svg.contains(">100 %</text>"),
            "{svg}"
        );
        assert!(
            svg.contains(r#"width="46.0""#),
            "one hour is a {MAX_BAR}-unit bar: {svg}"
        );
        let svg = latency_svg(&[hour("2026-12-04T10", 7, 3)], 1200.0, Lang::En).into_string();
        assert!(
            svg.contains(">ms</text>") && svg.contains(">2000</text>"),
            "{svg}"
        );
    }

    #[test]
    fn values_are_escaped_and_svg_elements_are_closed() {
        let svg = pareto_svg(&[("<b>&\"x\"".into(), 3)], Lang::En).into_string();
        assert!(
            svg.contains("<title>&lt;b&gt;&amp;&quot;x&quot;: 3</title>"),
            "{svg}"
        );
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(
            svg.contains("></polyline>") && svg.contains("></line>"),
            "{svg}"
        );
        let svg = rate_svg(&[hour("<10>", 1, 0)], Lang::En).into_string();
        assert!(svg.contains("<title>&lt;10&gt;: 1 PASS"), "{svg}");
    }

    #[test]
    fn the_charts_keep_their_english_for_the_pages_and_the_tests() {
        let hours = [hour("2026-12-04T10", 7, 3), hour("2026-12-04T11", 5, 0)];
        let rate = rate_svg(&hours, Lang::En).into_string();
        assert!(
            rate.contains(r#"aria-label="verdicts per hour""#)
                && rate.contains("<title>2026-12-04T10: 7 PASS, 3 FAIL, 0 REVIEW</title>")
                && rate.contains("bars: verdicts per hour (max 10); line: share FAIL or REVIEW"),
            "{rate}"
        );
        let pareto =
            pareto_svg(&[("scratch".into(), 4), ("dent".into(), 1)], Lang::En).into_string();
        assert!(
            pareto.contains(r#"aria-label="defect Pareto""#)
                && pareto.contains("<title>scratch: 4</title>")
                && pareto.contains(">findings</text>")
                && pareto
                    .contains("rejecting findings by defect (5 in all); line: cumulative share"),
            "{pareto}"
        );
        let latency = latency_svg(&hours, 250.0, Lang::En).into_string();
        assert!(
            latency.contains("<title>2026-12-04T10: p50 40 ms, p95 90 ms</title>")
                && latency.contains("budget 250 ms")
                && latency.contains("capture to publish: median (solid), p95 (dashed), max 500 ms"),
            "{latency}"
        );
    }

    #[test]
    fn the_charts_speak_chinese() {
        let hours = [hour("2026-12-04T10", 7, 3), hour("2026-12-04T11", 5, 0)];
        let pareto = [
            ("scratch".to_string(), 4),
            ("burr on flange".to_string(), 1),
        ];
        let data = [
            "2026-12-04T10",
            "2026-12-04T11",
            "scratch",
            "burr on flange",
        ];
        for (chart, svg) in [
            ("rate", rate_svg(&hours, Lang::Zh).into_string()),
            ("pareto", pareto_svg(&pareto, Lang::Zh).into_string()),
            (
                "latency",
                latency_svg(&hours, 250.0, Lang::Zh).into_string(),
            ),
            ("no verdicts", rate_svg(&[], Lang::Zh).into_string()),
            ("no findings", pareto_svg(&[], Lang::Zh).into_string()),
            (
                "no latency",
                latency_svg(&[], 250.0, Lang::Zh).into_string(),
            ),
        ] {
            let left = crate::i18n::tests::english_left(&svg, &data);
            assert!(left.is_empty(), "{chart} left in English: {left:?}\n{svg}");
        }
        let svg = rate_svg(&hours, Lang::Zh).into_string();
        assert!(
            svg.contains(">件/小时</text>") && svg.contains(r#"aria-label="每小时判定数""#),
            "{svg}"
        );
        let svg = pareto_svg(&pareto, Lang::Zh).into_string();
        assert!(
            svg.contains(r#"aria-label="缺陷帕累托图""#)
                && svg.contains("<title>scratch: 4</title>"),
            "{svg}"
        );
        let svg = latency_svg(&hours, 250.0, Lang::Zh).into_string();
        assert!(
            svg.contains("<title>2026-12-04T10：中位数 40 ms，p95 90 ms</title>"),
            "{svg}"
        );
    }
}
