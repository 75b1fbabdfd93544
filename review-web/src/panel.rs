//! The monitoring panel: the three health figures against their thresholds,
//! self-healing's state and its recent actions, and the history as charts
//! (each figure with its threshold, throughput, per-stage latency). Drawn on
//! the server as SVG like the other charts, so it works on a line PC with no
//! internet access. Built with `maud`, which escapes every value placed in
//! the markup.

use maud::{html, Markup};
use store::health_history::{self, Event, Sample};
use store::Store;
use telemetry::health::{FigureName, Snapshot, Standing};

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

fn title(name: FigureName) -> &'static str {
    match name {
        FigureName::Latency => "Response latency (p99, capture to published)",
        FigureName::ContextLoss => "Context loss (share of verdicts)",
        FigureName::Consistency => "Output consistency (lowest agreement)",
    }
}

/// `90` -> `1m 30s`, `86400` -> `24h`.
fn span(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    [(h, "h"), (m, "m"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The cards: each figure now, its threshold and where it stands.
fn cards(s: &Snapshot) -> Markup {
    let state = s.state.as_str();
    html! {
        p class=(format!("state {state}")) {
            "Self-healing: " b { (state) }
            @if !s.alerting.is_empty() {
                " · alerting on "
                (s.alerting.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "))
            }
            @if s.reloads > 0 {
                " · " (s.reloads) " reload(s) in this alert"
            }
        }
        div.cards {
            @for f in &s.figures {
                @let (class, word) = match f.standing {
                    Standing::Ok => ("ok", "within threshold"),
                    Standing::Breached => ("breached", "beyond threshold"),
                    Standing::Unknown => ("unknown", "too few samples"),
                };
                div class=(format!("card {class}")) data-figure=(f.name.as_str()) {
                    h3 { (title(f.name)) }
                    p.value { (shown(f.name, f.value)) }
                    p {
                        "threshold " (shown(f.name, Some(f.threshold)))
                        " (" (if f.lower_is_worse { "alarm below" } else { "alarm above" }) ") · "
                        (word)
                    }
                    p { (f.samples) " samples in " (span(f.window_s)) }
                    @if !f.sources.is_empty() {
                        ul {
                            @for a in &f.sources {
                                li {
                                    (a.source) ": " (shown(f.name, a.value))
                                    " (" (a.agreed) " of " (a.samples) ")"
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
) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.3.iter().flatten())
        .copied()
        .fold(0.0f64, f64::max);
    if samples.len() < 2 || max <= 0.0 && series.iter().all(|s| s.3.iter().all(Option::is_none)) {
        return html! { p { (caption) ": not enough history yet." } };
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
                (caption) ": "
                @for (i, (label, colour, dashed, _)) in series.iter().enumerate() {
                    @if i > 0 { " · " }
                    tspan fill=(colour) { (label) @if *dashed { " (dashed)" } }
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

fn events_table(events: &[Event]) -> Markup {
    if events.is_empty() {
        return html! { p { "No alerts, reloads or golden-set runs yet." } };
    }
    html! {
        table.events {
            thead { tr { th { "at (UTC)" } th { "event" } th { "figure" } th { "detail" } } }
            tbody {
                @for e in events {
                    tr class=(e.kind) {
                        td { (to_the_second(&e.at)) }
                        td { (e.kind) }
                        td { (e.figure.as_deref().unwrap_or("")) }
                        td { (e.detail) }
                    }
                }
            }
        }
    }
}

/// The panel's body.
pub fn render(p: &Panel, hours: i64) -> Markup {
    let s = &p.samples;
    let ms = |v: f64| format!("{:.0} ms", v * 1e3);
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    let col = |f: fn(&Sample) -> Option<f64>| s.iter().map(f).collect::<Vec<_>>();
    let now = match &p.snapshot {
        Some(snap) => cards(snap),
        None => html! { p { "The monitor has not evaluated yet." } },
    };
    // A figure drawn against its threshold (dashed red).
    let against =
        |name: &'static str, value: fn(&Sample) -> Option<f64>, threshold: fn(&Sample) -> f64| {
            [
                (name, "#22313f", false, col(value)),
                (
                    "threshold",
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
        "capture to published, p99",
    );
    let context_loss = lines(
        s,
        &against(
            "share lost",
            |x| x.context_loss,
            |x| x.context_loss_threshold,
        ),
        &pct,
        "verdicts that lost part of the standard",
    );
    let consistency = lines(
        s,
        &against("agreement", |x| x.consistency, |x| x.consistency_threshold),
        &pct,
        "lowest of golden set, multi-view and review agreement",
    );
    let throughput = lines(
        s,
        &[(
            "verdicts per second",
            "#2e8540",
            false,
            col(|x| Some(x.throughput)),
        )],
        &|v| format!("{v:.1}/s"),
        "verdicts per second",
    );
    let stages = lines(
        s,
        &[
            ("queued", "#7a8a99", false, col(|x| x.stage_p95[0])),
            ("inference", "#22313f", false, col(|x| x.stage_p95[1])),
            ("decided", "#f2a900", false, col(|x| x.stage_p95[2])),
            ("published", "#2e8540", false, col(|x| x.stage_p95[3])),
        ],
        &ms,
        "p95 from capture to each stage",
    );
    html! {
        (now)
        p {
            "History: the last " (hours) " hours · "
            @for h in [1, 24, 168] {
                a href=(format!("/panel?hours={h}")) { (h) " h" } " "
            }
        }
        h2 { "Response latency" } (latency)
        h2 { "Context loss" } (context_loss)
        h2 { "Output consistency" } (consistency)
        h2 { "Throughput" } (throughput)
        h2 { "Latency by stage" } (stages)
        h2 { "Alerts, reloads and golden-set runs" } (events_table(&p.events))
    }
}
