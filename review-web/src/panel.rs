//! The monitoring panel: the three health figures against their thresholds,
//! self-healing's state and its recent actions, and the history as charts
//! (each figure with its threshold, throughput, per-stage latency). Drawn on
//! the server as SVG like the other charts, so it works on a line PC with no
//! internet access. Built with `maud`, which escapes every value placed in
//! the markup.

use maud::{html, Markup};
use store::health_history::{self, Event, Sample};
use store::Store;
use telemetry::health::{FigureName, Mode, Snapshot, Standing};

use crate::i18n::Lang;

const W: f64 = 760.0;
const H: f64 = 220.0;
const PAD: f64 = 64.0;

/// `2026-11-29T19:34:29.123456Z` -> `2026-11-29T19:34:29`.
fn to_the_second(at: &str) -> &str {
    at.get(..19).unwrap_or(at)
}

/// What the panel shows.
pub struct Panel {
    pub snapshot: Option<Snapshot>,
    pub samples: Vec<Sample>,
    pub events: Vec<Event>,
}

/// The last `hours` of history and the latest 50 events.
pub async fn load(store: &Store, hours: i64) -> Result<Panel, store::StoreError> {
    let since = record::time::format(chrono::Utc::now() - chrono::Duration::hours(hours));
    Ok(Panel {
        snapshot: telemetry::health::snapshot(),
        samples: health_history::samples(store, &since).await?,
        events: health_history::events(store, 50).await?,
    })
}

fn shown(name: FigureName, v: Option<f64>) -> String {
    match (name, v) {
        (_, None) => "–".into(),
        (FigureName::Latency, Some(v)) => format!("{:.0} ms", v * 1e3),
        (_, Some(v)) => format!("{:.1}%", v * 100.0),
    }
}

fn title(name: FigureName, lang: Lang) -> &'static str {
    match name {
        FigureName::Latency => lang.t("Response latency (p99, capture to published)"),
        FigureName::ContextLoss => lang.t("Context loss (share of verdicts)"),
        FigureName::Consistency => lang.t("Output consistency (lowest agreement)"),
    }
}

/// A figure's short name: in English the telemetry's own word (as the
/// status topic and the API say it), in Chinese its name.
fn figure_word(name: FigureName, lang: Lang) -> &'static str {
    match name {
        FigureName::Latency => lang.t("latency"),
        FigureName::ContextLoss => lang.t("context_loss"),
        FigureName::Consistency => lang.t("consistency"),
    }
}

/// Self-healing's state word.
fn mode_word(mode: Mode, lang: Lang) -> &'static str {
    match mode {
        Mode::Healthy => lang.t("healthy"),
        Mode::Alert => lang.t("alert"),
        Mode::Escalated => lang.t("escalated"),
    }
}

/// A source of output consistency (the telemetry's word in English).
fn source_word(source: &str, lang: Lang) -> &str {
    match source {
        "golden" => lang.t("golden"),
        "multi_view" => lang.t("multi_view"),
        "reviews" => lang.t("reviews"),
        other => other,
    }
}

/// An event's kind, as the station records it (the record's word in
/// English). "operator" is in respond.rs's table (the role, the same word).
fn kind_word(kind: &str, lang: Lang) -> &str {
    match kind {
        "alert" => lang.t("alert"),
        "reload" => lang.t("reload"),
        "reload_skipped" => lang.t("reload_skipped"),
        "reload_failed" => lang.t("reload_failed"),
        "escalated" => lang.t("escalated"),
        "recovered" => lang.t("recovered"),
        "golden" => lang.t("golden"),
        "golden_error" => lang.t("golden_error"),
        "operator" => lang.t("operator"),
        other => other,
    }
}

/// `90` -> `1m 30s`, `86400` -> `24h` (in Chinese `1分 30秒`, `24小时`).
fn span(secs: u64, lang: Lang) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(lang.f("{0}h", &[&h]));
    }
    if m > 0 {
        parts.push(lang.f("{0}m", &[&m]));
    }
    if s > 0 {
        parts.push(lang.f("{0}s", &[&s]));
    }
    parts.join(" ")
}

/// The cards: each figure now, its threshold and where it stands.
fn cards(s: &Snapshot, lang: Lang) -> Markup {
    let state = s.state.as_str();
    html! {
        p class=(format!("state {state}")) {
            (lang.t("Self-healing: ")) b { (mode_word(s.state, lang)) }
            @if !s.alerting.is_empty() {
                " · "
                (lang.f("alerting on {0}", &[&s
                    .alerting
                    .iter()
                    .map(|f| figure_word(*f, lang))
                    .collect::<Vec<_>>()
                    .join(", ")]))
            }
            @if s.reloads > 0 {
                " · " (lang.f("{0} reload(s) in this alert", &[&s.reloads]))
            }
        }
        div.cards {
            @for f in &s.figures {
                @let (class, word) = match f.standing {
                    Standing::Ok => ("ok", lang.t("within threshold")),
                    Standing::Breached => ("breached", lang.t("beyond threshold")),
                    Standing::Unknown => ("unknown", lang.t("too few samples")),
                };
                @let alarm = if f.lower_is_worse { lang.t("alarm below") } else { lang.t("alarm above") };
                div class=(format!("card {class}")) data-figure=(f.name.as_str()) {
                    h3 { (title(f.name, lang)) }
                    p.value { (shown(f.name, f.value)) }
                    p {
                        (lang.f("threshold {0} ({1}) · {2}", &[&shown(f.name, Some(f.threshold)), &alarm, &word]))
                    }
                    p { (lang.f("{0} samples in {1}", &[&f.samples, &span(f.window_s, lang)])) }
                    @if !f.sources.is_empty() {
                        ul {
                            @for a in &f.sources {
                                li {
                                    (lang.f("{0}: {1} ({2} of {3})", &[
                                        &source_word(a.source, lang),
                                        &shown(f.name, a.value),
                                        &a.agreed,
                                        &a.samples,
                                    ]))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Lines over time: each series is (label, colour, dashed, value per sample).
fn lines(
    samples: &[Sample],
    series: &[(&str, &str, bool, Vec<Option<f64>>)],
    unit: &dyn Fn(f64) -> String,
    caption: &str,
    lang: Lang,
) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.3.iter().flatten())
        .copied()
        .fold(0.0f64, f64::max);
    if samples.len() < 2 || max <= 0.0 && series.iter().all(|s| s.3.iter().all(Option::is_none)) {
        return html! { p { (lang.f("{0}: not enough history yet.", &[&caption])) } };
    }
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let step = (W - 2.0 * PAD) / (samples.len() - 1) as f64;
    let y = |v: f64| H - PAD - v / max * (H - 2.0 * PAD);
    // Per series its runs of points: a gap (no value) breaks the line.
    let runs: Vec<(&str, bool, Vec<String>)> = series
        .iter()
        .flat_map(|(_, colour, dashed, values)| {
            let mut runs: Vec<Vec<String>> = vec![Vec::new()];
            for (i, v) in values.iter().enumerate() {
                match v {
                    Some(v) => runs.last_mut().expect("a run").push(format!(
                        "{:.1},{:.1}",
                        PAD + i as f64 * step,
                        y(*v)
                    )),
                    None => runs.push(Vec::new()),
                }
            }
            runs.into_iter()
                .filter(|r| !r.is_empty())
                .map(move |r| (*colour, *dashed, r))
        })
        .collect();
    let b = format!("{:.1}", H - PAD);
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(caption) {
            line x1=(PAD) x2=(format!("{:.0}", W - PAD)) y1=(b) y2=(b) stroke="#999" {}
            line x1=(PAD) x2=(PAD) y1=(format!("{:.1}", y(max))) y2=(b) stroke="#999" {}
            text x=(format!("{:.0}", PAD - 4.0)) y=(format!("{:.1}", y(max) + 4.0)) font-size="11" text-anchor="end" {
                (unit(max))
            }
            text x=(format!("{:.0}", PAD - 4.0)) y=(b) font-size="11" text-anchor="end" { "0" }
            @for (colour, dashed, run) in &runs {
                polyline points=(run.join(" ")) fill="none" stroke=(colour) stroke-width="2"
                    stroke-dasharray=[dashed.then_some("6 4")] {}
            }
            text x=(PAD) y="18" font-size="13" {
                (lang.f("{0}: ", &[&caption]))
                @for (i, (label, colour, dashed, _)) in series.iter().enumerate() {
                    @if i > 0 { " · " }
                    tspan fill=(colour) { (label) @if *dashed { (lang.t(" (dashed)")) } }
                }
            }
            text x=(PAD) y=(format!("{:.0}", H - 12.0)) font-size="11" {
                (to_the_second(&samples[0].at))
            }
            text x=(format!("{:.0}", W - PAD)) y=(format!("{:.0}", H - 12.0)) font-size="11" text-anchor="end" {
                (to_the_second(&samples[samples.len() - 1].at))
            }
        }
    }
}

/// The events, newest first. The detail is the station's own English
/// record (as the API gives it): on a Chinese page it is marked English.
fn events_table(events: &[Event], lang: Lang) -> Markup {
    if events.is_empty() {
        return html! { p { (lang.t("No alerts, reloads or golden-set runs yet.")) } };
    }
    let english = (lang != Lang::En).then_some("en");
    html! {
        table.events {
            thead {
                tr {
                    th { (lang.t("at (UTC)")) }
                    th { (lang.t("event")) }
                    th { (lang.t("figure")) }
                    th { (lang.t("detail")) }
                }
            }
            tbody {
                @for e in events {
                    @let figure = e.figure.as_deref().unwrap_or("");
                    tr class=(e.kind) {
                        td { (to_the_second(&e.at)) }
                        td { (kind_word(&e.kind, lang)) }
                        td { (FigureName::parse(figure).map_or(figure, |f| figure_word(f, lang))) }
                        td lang=[english] { (e.detail) }
                    }
                }
            }
        }
    }
}

/// The panel's body.
pub fn render(p: &Panel, hours: i64, lang: Lang) -> Markup {
    let s = &p.samples;
    let ms = |v: f64| format!("{:.0} ms", v * 1e3);
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    let col = |f: fn(&Sample) -> Option<f64>| s.iter().map(f).collect::<Vec<_>>();
    let now = match &p.snapshot {
        Some(snap) => cards(snap, lang),
        None => html! { p { (lang.t("The monitor has not evaluated yet.")) } },
    };
    // A figure drawn against its threshold (dashed red).
    let against =
        |name: &'static str, value: fn(&Sample) -> Option<f64>, threshold: fn(&Sample) -> f64| {
            [
                (name, "#22313f", false, col(value)),
                (
                    lang.t("threshold"),
                    "#d83933",
                    true,
                    s.iter().map(|x| Some(threshold(x))).collect(),
                ),
            ]
        };
    let latency = lines(
        s,
        &against("p99", |x| x.latency_p99, |x| x.latency_threshold),
        &ms,
        lang.t("capture to published, p99"),
        lang,
    );
    let context_loss = lines(
        s,
        &against(
            lang.t("share lost"),
            |x| x.context_loss,
            |x| x.context_loss_threshold,
        ),
        &pct,
        lang.t("verdicts that lost part of the standard"),
        lang,
    );
    let consistency = lines(
        s,
        &against(
            lang.t("agreement"),
            |x| x.consistency,
            |x| x.consistency_threshold,
        ),
        &pct,
        lang.t("lowest of golden set, multi-view and review agreement"),
        lang,
    );
    let throughput = lines(
        s,
        &[(
            lang.t("verdicts per second"),
            "#2e8540",
            false,
            col(|x| Some(x.throughput)),
        )],
        &|v| format!("{v:.1}/s"),
        lang.t("verdicts per second"),
        lang,
    );
    let stages = lines(
        s,
        &[
            (lang.t("queued"), "#7a8a99", false, col(|x| x.stage_p95[0])),
            // "inference" is in pages.rs's table (the verdict's timings).
            (
                lang.t("inference"),
                "#22313f",
                false,
                col(|x| x.stage_p95[1]),
            ),
            (lang.t("decided"), "#f2a900", false, col(|x| x.stage_p95[2])),
            (
                lang.t("published"),
                "#2e8540",
                false,
                col(|x| x.stage_p95[3]),
            ),
        ],
        &ms,
        lang.t("p95 from capture to each stage"),
        lang,
    );
    html! {
        (now)
        p {
            (lang.f("History: the last {0} hours", &[&hours])) " · "
            @for h in [1, 24, 168] {
                a href=(format!("/panel?hours={h}")) { (lang.f("{0} h", &[&h])) } " "
            }
        }
        h2 { (lang.t("Response latency")) } (latency)
        h2 { (lang.t("Context loss")) } (context_loss)
        h2 { (lang.t("Output consistency")) } (consistency)
        h2 { (lang.t("Throughput")) } (throughput)
        h2 { (lang.t("Latency by stage")) } (stages)
        h2 { (lang.t("Alerts, reloads and golden-set runs")) } (events_table(&p.events, lang))
    }
}

/// The panel's Chinese. "inference" is in pages.rs's table and "operator"
/// in respond.rs's, with the same meaning (a test holds shared texts to one
/// Chinese).
pub(crate) const ZH: &[(&str, &str)] = &[
    ("decided", "判定"),
    (
        "Response latency (p99, capture to published)",
        "响应时间（p99，采集到发布）",
    ),
    (
        "Context loss (share of verdicts)",
        "上下文丢失（占判定的比例）",
    ),
    (
        "Output consistency (lowest agreement)",
        "输出一致性（最低一致率）",
    ),
    ("latency", "响应时间"),
    ("context_loss", "上下文丢失"),
    ("consistency", "输出一致性"),
    ("healthy", "正常"),
    ("alert", "告警"),
    ("escalated", "告警升级"),
    ("golden", "黄金样本核验"),
    ("multi_view", "多视角"),
    ("reviews", "人工复核"),
    ("reload", "重载模型"),
    ("reload_skipped", "跳过重载"),
    ("reload_failed", "重载失败"),
    ("recovered", "已恢复"),
    ("golden_error", "黄金样本核验出错"),
    ("{0}h", "{0}小时"),
    ("{0}m", "{0}分"),
    ("{0}s", "{0}秒"),
    ("Self-healing: ", "自愈状态："),
    ("alerting on {0}", "告警指标：{0}"),
    ("{0} reload(s) in this alert", "本次告警已重载 {0} 次"),
    ("within threshold", "在阈值内"),
    ("beyond threshold", "超出阈值"),
    ("too few samples", "样本不足"),
    ("alarm below", "低于即告警"),
    ("alarm above", "高于即告警"),
    ("threshold {0} ({1}) · {2}", "阈值 {0}（{1}）· {2}"),
    ("{0} samples in {1}", "{1}内 {0} 个样本"),
    ("{0}: {1} ({2} of {3})", "{0}：{1}（{3} 个中 {2} 个一致）"),
    ("{0}: not enough history yet.", "{0}：历史数据尚不足。"),
    ("{0}: ", "{0}："),
    (" (dashed)", "（虚线）"),
    (
        "No alerts, reloads or golden-set runs yet.",
        "尚无告警、重载或黄金样本核验记录。",
    ),
    ("at (UTC)", "时间 (UTC)"),
    ("event", "事件"),
    ("figure", "指标"),
    ("detail", "详情"),
    (
        "The monitor has not evaluated yet.",
        "监控尚未完成首次评估。",
    ),
    ("threshold", "阈值"),
    ("capture to published, p99", "采集到发布，p99"),
    ("share lost", "丢失比例"),
    (
        "verdicts that lost part of the standard",
        "丢失部分标准内容的判定占比",
    ),
    ("agreement", "一致率"),
    (
        "lowest of golden set, multi-view and review agreement",
        "黄金样本、多视角与人工复核一致率中的最低值",
    ),
    ("verdicts per second", "每秒判定数"),
    ("queued", "入队"),
    ("published", "发布"),
    ("p95 from capture to each stage", "采集到各阶段的 p95 时间"),
    ("History: the last {0} hours", "历史：最近 {0} 小时"),
    ("{0} h", "{0} 小时"),
    ("Response latency", "响应时间"),
    ("Context loss", "上下文丢失"),
    ("Output consistency", "输出一致性"),
    ("Throughput", "吞吐量"),
    ("Latency by stage", "各阶段响应时间"),
    (
        "Alerts, reloads and golden-set runs",
        "告警、重载与黄金样本核验",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry::health::{Agreement, Figure};

    fn figure(name: FigureName, value: f64, threshold: f64, standing: Standing) -> Figure {
        Figure {
            name,
            value: Some(value),
            threshold,
            lower_is_worse: name == FigureName::Consistency,
            samples: 120,
            window_s: 90,
            standing,
            sources: Vec::new(),
        }
    }

    /// A station in an alert on latency after one reload, with history and
    /// events of each kind the station records.
    fn panel() -> Panel {
        let mut consistency = figure(FigureName::Consistency, 0.9, 0.8, Standing::Unknown);
        consistency.window_s = 86400;
        consistency.sources = vec![
            Agreement {
                source: "golden",
                samples: 10,
                agreed: 9,
                value: Some(0.9),
            },
            Agreement {
                source: "multi_view",
                samples: 0,
                agreed: 0,
                value: None,
            },
            Agreement {
                source: "reviews",
                samples: 20,
                agreed: 19,
                value: Some(0.95),
            },
        ];
        let sample = |at: &str, p99: f64| Sample {
            at: at.into(),
            state: "alert".into(),
            latency_p99: Some(p99),
            latency_threshold: 0.9,
            context_loss: Some(0.01),
            context_loss_threshold: 0.05,
            consistency: None,
            consistency_threshold: 0.8,
            throughput: 5.0,
            stage_p95: [Some(0.01), Some(0.5), Some(0.6), Some(p99)],
        };
        let event = |kind: &str, figure: Option<&str>, detail: &str| Event {
            at: "2026-11-29T19:34:29.123456Z".into(),
            kind: kind.into(),
            figure: figure.map(str::to_string),
            value: None,
            threshold: None,
            detail: detail.into(),
        };
        Panel {
            snapshot: Some(Snapshot {
                at: "2026-11-29T19:34:29.123456Z".into(),
                state: Mode::Alert,
                alerting: vec![FigureName::Latency, FigureName::ContextLoss],
                reloads: 1,
                figures: vec![
                    figure(FigureName::Latency, 1.2, 0.9, Standing::Breached),
                    figure(FigureName::ContextLoss, 0.01, 0.05, Standing::Ok),
                    consistency,
                ],
            }),
            samples: vec![
                sample("2026-11-29T19:30:00.000000Z", 0.4),
                sample("2026-11-29T19:32:00.000000Z", 1.2),
                sample("2026-11-29T19:34:00.000000Z", 1.1),
            ],
            events: [
                ("alert", Some("latency"), DETAILS[0]),
                ("reload", None, DETAILS[1]),
                ("reload_skipped", None, DETAILS[2]),
                ("reload_failed", None, DETAILS[3]),
                ("escalated", Some("context_loss"), DETAILS[4]),
                ("recovered", Some("consistency"), DETAILS[5]),
                ("golden", None, DETAILS[6]),
                ("golden_error", None, DETAILS[7]),
                ("operator", None, DETAILS[8]),
            ]
            .into_iter()
            .map(|(k, f, d)| event(k, f, d))
            .collect(),
        }
    }

    /// The station's own records (data: shown as recorded).
    const DETAILS: [&str; 9] = [
        "latency 1.200 s over 120 samples; threshold 0.900 s",
        "attempt 1: reference reloaded",
        "attempt 2: capture to judgement p99 0.300 s is within the threshold",
        "attempt 3: engine busy",
        "context_loss 6.0% over 100 samples; threshold 5.0%; 2 reloads did not cure it",
        "consistency 90.0% over 30 samples; threshold 80.0%",
        "9 of 10 golden parts agreed (housing)",
        "no golden set for housing",
        "trigger part-7: Part part-7 triggered on line by otto",
    ];

    #[test]
    fn the_panel_keeps_its_english_for_the_browser_and_the_api() {
        let html = render(&panel(), 24, Lang::En).into_string();
        for want in [
            "Self-healing: <b>alert</b> · alerting on latency, context_loss · 1 reload(s) in this alert",
            r#"<div class="card breached" data-figure="latency"><h3>Response latency (p99, capture to published)</h3>"#,
            "threshold 900 ms (alarm above) · beyond threshold",
            "threshold 80.0% (alarm below) · too few samples",
            "120 samples in 1m 30s",
            "120 samples in 24h",
            "golden: 90.0% (9 of 10)",
            "multi_view: – (0 of 0)",
            r#"aria-label="capture to published, p99""#,
            r#"aria-label="verdicts per second""#,
            r#"aria-label="p95 from capture to each stage""#,
            "threshold (dashed)",
            "History: the last 24 hours · ",
            r#"<a href="/panel?hours=168">168 h</a>"#,
            "<th>at (UTC)</th><th>event</th><th>figure</th><th>detail</th>",
            r#"<tr class="alert"><td>2026-11-29T19:34:29</td><td>alert</td><td>latency</td><td>latency 1.200 s"#,
            "<td>reload</td><td></td><td>attempt 1: reference reloaded</td>",
            "<td>escalated</td><td>context_loss</td>",
        ] {
            assert!(html.contains(want), "{want}\n{html}");
        }
        assert!(!html.contains(r#"lang="en""#), "{html}");
    }

    #[test]
    fn the_panel_speaks_chinese() {
        let p = panel();
        let mut data: Vec<&str> = DETAILS.to_vec();
        data.extend(["2026-11-29T19:34:29", "2026-11-29T19:30:00"]);
        let html = render(&p, 24, Lang::Zh).into_string();
        let left = crate::i18n::tests::english_left(&html, &data);
        assert!(left.is_empty(), "left in English: {left:?}\n{html}");
        for want in [
            "自愈状态：<b>告警</b> · 告警指标：响应时间, 上下文丢失 · 本次告警已重载 1 次",
            "阈值 900 ms（高于即告警）· 超出阈值",
            "24小时内 120 个样本",
            "1分 30秒内 120 个样本",
            "黄金样本核验：90.0%（10 个中 9 个一致）",
            r#"aria-label="采集到发布，p99""#,
            "采集到发布，p99：<tspan fill=\"#22313f\">p99</tspan> · <tspan fill=\"#d83933\">阈值（虚线）</tspan>",
            "<td>告警</td><td>响应时间</td>",
            r#"<td lang="en">attempt 1: reference reloaded</td>"#,
            r#"<tr class="alert">"#,
            r#"data-figure="context_loss""#,
        ] {
            assert!(html.contains(want), "{want}\n{html}");
        }
        // Before the monitor's first evaluation, with no history or events.
        let empty = Panel {
            snapshot: None,
            samples: Vec::new(),
            events: Vec::new(),
        };
        let html = render(&empty, 1, Lang::Zh).into_string();
        let left = crate::i18n::tests::english_left(&html, &[]);
        assert!(left.is_empty(), "left in English: {left:?}\n{html}");
    }
}
