//! The monitoring panel: the three health figures against their thresholds,
//! self-healing's state and its recent actions, and the history as charts
//! (each figure with its threshold, throughput, per-stage latency). Drawn on
//! the server as SVG like the other charts, so it works on a line PC with no
//! internet access.

use crate::html::esc;
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
fn cards(s: &Snapshot) -> String {
    let mut out = format!(
        r#"<p class="state {state}">Self-healing: <b>{state}</b>{alerting}{reloads}</p><div class="cards">"#,
        state = s.state.as_str(),
        alerting = if s.alerting.is_empty() {
            String::new()
        } else {
            format!(
                " · alerting on {}",
                s.alerting
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        reloads = if s.reloads > 0 {
            format!(" · {} reload(s) in this alert", s.reloads)
        } else {
            String::new()
        },
    );
    for f in &s.figures {
        let (class, word) = match f.standing {
            Standing::Ok => ("ok", "within threshold"),
            Standing::Breached => ("breached", "beyond threshold"),
            Standing::Unknown => ("unknown", "too few samples"),
        };
        let sources: String = f
            .sources
            .iter()
            .map(|a| {
                format!(
                    "<li>{}: {} ({} of {})</li>",
                    a.source,
                    shown(f.name, a.value),
                    a.agreed,
                    a.samples
                )
            })
            .collect();
        out.push_str(&format!(
            r#"<div class="card {class}" data-figure="{name}"><h3>{title}</h3><p class="value">{value}</p><p>threshold {limit} ({side}) · {word}</p><p>{samples} samples in {window}</p>{sources}</div>"#,
            name = f.name.as_str(),
            title = title(f.name),
            value = shown(f.name, f.value),
            limit = shown(f.name, Some(f.threshold)),
            side = if f.lower_is_worse { "alarm below" } else { "alarm above" },
            samples = f.samples,
            window = span(f.window_s),
            sources = if sources.is_empty() {
                String::new()
            } else {
                format!("<ul>{sources}</ul>")
            },
        ));
    }
    out.push_str("</div>");
    out
}

/// Lines over time: each series is (label, colour, dashed, value per sample).
fn lines(
    samples: &[Sample],
    series: &[(&str, &str, bool, Vec<Option<f64>>)],
    unit: &dyn Fn(f64) -> String,
    caption: &str,
) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.3.iter().flatten())
        .copied()
        .fold(0.0f64, f64::max);
    if samples.len() < 2 || max <= 0.0 && series.iter().all(|s| s.3.iter().all(Option::is_none)) {
        return format!("<p>{caption}: not enough history yet.</p>");
    }
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let step = (W - 2.0 * PAD) / (samples.len() - 1) as f64;
    let y = |v: f64| H - PAD - v / max * (H - 2.0 * PAD);
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#,
        esc(caption)
    );
    out.push_str(&format!(
        r##"<line x1="{PAD}" x2="{:.0}" y1="{b:.1}" y2="{b:.1}" stroke="#999"/><line x1="{PAD}" x2="{PAD}" y1="{:.1}" y2="{b:.1}" stroke="#999"/><text x="{:.0}" y="{:.1}" font-size="11" text-anchor="end">{}</text><text x="{:.0}" y="{b:.1}" font-size="11" text-anchor="end">0</text>"##,
        W - PAD,
        y(max),
        PAD - 4.0,
        y(max) + 4.0,
        esc(&unit(max)),
        PAD - 4.0,
        b = H - PAD,
    ));
    let mut legend = Vec::new();
    for (label, colour, dashed, values) in series {
        // A gap (no value) breaks the line.
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
        for run in runs.iter().filter(|r| !r.is_empty()) {
            out.push_str(&format!(
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{}/>"#,
                run.join(" "),
                if *dashed {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                }
            ));
        }
        legend.push(format!(
            r#"<tspan fill="{colour}">{}{}</tspan>"#,
            esc(label),
            if *dashed { " (dashed)" } else { "" }
        ));
    }
    out.push_str(&format!(
        r#"<text x="{PAD}" y="18" font-size="13">{}: {}</text><text x="{PAD}" y="{:.0}" font-size="11">{}</text><text x="{:.0}" y="{:.0}" font-size="11" text-anchor="end">{}</text></svg>"#,
        esc(caption),
        legend.join(" · "),
        H - 12.0,
        esc(to_the_second(&samples[0].at)),
        W - PAD,
        H - 12.0,
        esc(to_the_second(&samples[samples.len() - 1].at)),
    ));
    out
}

fn events_table(events: &[Event]) -> String {
    if events.is_empty() {
        return "<p>No alerts, reloads or golden-set runs yet.</p>".into();
    }
    let rows: String = events
        .iter()
        .map(|e| {
            format!(
                r#"<tr class="{kind}"><td>{at}</td><td>{kind}</td><td>{figure}</td><td>{detail}</td></tr>"#,
                at = esc(to_the_second(&e.at)),
                kind = esc(&e.kind),
                figure = esc(e.figure.as_deref().unwrap_or("")),
                detail = esc(&e.detail),
            )
        })
        .collect();
    format!(
        "<table class=\"events\"><thead><tr><th>at (UTC)</th><th>event</th><th>figure</th><th>detail</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// The panel's body.
pub fn render(p: &Panel, hours: i64) -> String {
    let s = &p.samples;
    let ms = |v: f64| format!("{:.0} ms", v * 1e3);
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    let col = |f: fn(&Sample) -> Option<f64>| s.iter().map(f).collect::<Vec<_>>();
    let now = match &p.snapshot {
        Some(snap) => cards(snap),
        None => "<p>The monitor has not evaluated yet.</p>".into(),
    };
    let windows: String = [1, 24, 168]
        .iter()
        .map(|h| format!(r#"<a href="/panel?hours={h}">{h} h</a> "#))
        .collect();
    format!(
        "{now}<p>History: the last {hours} hours · {windows}</p>\
         <h2>Response latency</h2>{}<h2>Context loss</h2>{}<h2>Output consistency</h2>{}\
         <h2>Throughput</h2>{}<h2>Latency by stage</h2>{}<h2>Alerts, reloads and golden-set runs</h2>{}",
        lines(
            s,
            &[
                ("p99", "#22313f", false, col(|x| x.latency_p99)),
                ("threshold", "#d83933", true, col(|x| Some(x.latency_threshold))),
            ],
            &ms,
            "capture to published, p99",
        ),
        lines(
            s,
            &[
                ("share lost", "#22313f", false, col(|x| x.context_loss)),
                ("threshold", "#d83933", true, col(|x| Some(x.context_loss_threshold))),
            ],
            &pct,
            "verdicts that lost part of the standard",
        ),
        lines(
            s,
            &[
                ("agreement", "#22313f", false, col(|x| x.consistency)),
                ("threshold", "#d83933", true, col(|x| Some(x.consistency_threshold))),
            ],
            &pct,
            "lowest of golden set, multi-view and review agreement",
        ),
        lines(
            s,
            &[("verdicts per second", "#2e8540", false, col(|x| Some(x.throughput)))],
            &|v| format!("{v:.1}/s"),
            "verdicts per second",
        ),
        lines(
            s,
            &[
                ("queued", "#7a8a99", false, col(|x| x.stage_p95[0])),
                ("inference", "#22313f", false, col(|x| x.stage_p95[1])),
                ("decided", "#f2a900", false, col(|x| x.stage_p95[2])),
                ("published", "#2e8540", false, col(|x| x.stage_p95[3])),
            ],
            &ms,
            "p95 from capture to each stage",
        ),
        events_table(&p.events),
    )
}
