//! The line view (`/line`): the page an operator leaves open beside the
//! line. The latest part large with its boxes and a PASS / FAIL / REVIEW
//! lamp readable from three metres, the last 20 parts, the shift's counters
//! and first-pass yield, camera and broker state. It updates itself over
//! server-sent events (`/line/events`): a `verdict` event for each verdict
//! committed, a `state` event every two seconds, `reset` when a supervisor
//! starts the counters again, `resync` when the page fell behind. The
//! browser reconnects a dropped stream by itself and then reloads the
//! snapshot (`/api/v1/line`), so nothing is missed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use chrono::{Local, TimeZone, Timelike};
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::auth::{form_refusal, ApiCaller, CsrfForm, PageCaller};
use crate::html::{esc, local_time};
use crate::respond::{page, server_error};
use crate::Web;
use store::accounts::Role;
use store::line::Tally;

/// Parts shown in the strip.
const STRIP: i64 = 20;

/// What the line view is told as it happens.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Verdict(Arc<record::Verdict>),
    /// The shift counters were reset.
    Reset,
}

/// The live feed from the station to every open line view.
#[derive(Clone)]
pub struct Live(broadcast::Sender<LiveEvent>);

impl Default for Live {
    fn default() -> Self {
        Self(broadcast::channel(256).0)
    }
}

impl Live {
    /// Tells every open line view (nobody listening is fine).
    pub fn send(&self, event: LiveEvent) {
        let _ = self.0.send(event);
    }
}

/// One camera's state on the line view.
#[derive(Debug, Clone, Serialize)]
pub struct CameraState {
    pub camera: String,
    pub up: bool,
}

/// The station's state besides its verdicts.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StationState {
    pub cameras: Vec<CameraState>,
    pub broker_connected: bool,
    pub recipe: String,
    /// The recipes an operator may switch to.
    pub recipes: Vec<String>,
}

/// A command an operator gives from the line view (`recipe` or
/// `trigger`), answered as the same command over MQTT would be.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    /// The command's JSON, as on `cmd/{name}`.
    pub payload: String,
    /// Who gave it.
    pub by: String,
    pub answer: oneshot::Sender<Answer>,
}

/// How a command went, in words for the operator.
#[derive(Debug, Clone)]
pub struct Answer {
    pub ok: bool,
    pub said: String,
}

/// What the line view needs from the station.
#[derive(Clone)]
pub struct LineFeed {
    pub live: Live,
    /// Read every two seconds for each open page.
    pub state: Arc<dyn Fn() -> StationState + Send + Sync>,
    /// Shift starts, minutes after local midnight.
    pub shift_starts: Vec<u32>,
    /// Where the operator's commands go (none: the view only watches).
    pub commands: Option<mpsc::Sender<Command>>,
}

impl LineFeed {
    /// A feed with nothing live (tools that serve the pages without a
    /// station).
    pub fn idle() -> Self {
        Self {
            live: Live::default(),
            state: Arc::new(StationState::default),
            shift_starts: vec![0],
            commands: None,
        }
    }

    /// When the current shift started (UTC, as records write it).
    pub fn shift_start(&self) -> String {
        shift_start(&self.shift_starts, Local::now())
    }
}

/// The latest of `starts` (minutes after midnight) at or before `now`,
/// today or else yesterday.
fn shift_start<Tz: TimeZone>(starts: &[u32], now: chrono::DateTime<Tz>) -> String {
    let minute = now.hour() * 60 + now.minute();
    let today = now.date_naive();
    let (day, start) = match starts.iter().filter(|s| **s <= minute).max() {
        Some(s) => (today, *s),
        None => (
            today.pred_opt().unwrap_or(today),
            starts.iter().copied().max().unwrap_or(0),
        ),
    };
    let naive = day
        .and_hms_opt(start / 60, start % 60, 0)
        .unwrap_or_default();
    let at = now
        .timezone()
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    record::time::format(at)
}

/// One part as the line view draws it.
#[derive(Debug, Clone, Serialize)]
struct Part {
    id: String,
    part_id: Option<String>,
    camera: String,
    decision: &'static str,
    decided_at: String,
    /// The picture's sha256, when kept.
    image: Option<String>,
    width: u32,
    height: u32,
    findings: Vec<Mark>,
}

#[derive(Debug, Clone, Serialize)]
struct Mark {
    defect: String,
    /// x0, y0, x1, y1, 0..1 of the picture.
    at: [f32; 4],
    violates: bool,
}

impl Part {
    fn of(v: &record::Verdict) -> Part {
        Part {
            id: v.id.clone(),
            part_id: v.part_id.clone(),
            camera: v.camera.clone(),
            decision: v.decision.as_str(),
            decided_at: v.timings.decided_at.clone(),
            image: v.image.not_kept.is_none().then(|| v.image.sha256.clone()),
            width: v.image.width.max(1),
            height: v.image.height.max(1),
            findings: v
                .findings
                .iter()
                .map(|f| Mark {
                    defect: f.defect.clone(),
                    at: f.box_norm,
                    violates: f.clause.is_some(),
                })
                .collect(),
        }
    }
}

/// Everything the page shows, also as `/api/v1/line`.
#[derive(Debug, Serialize)]
struct Snapshot {
    tally: Tally,
    first_pass_yield: Option<f64>,
    latest: Vec<Part>,
    state: StationState,
}

async fn snapshot(web: &Web) -> Result<Snapshot, store::StoreError> {
    let tally = store::line::tally(&web.store, &web.line.shift_start()).await?;
    let latest = store::line::latest(&web.store, STRIP).await?;
    Ok(Snapshot {
        first_pass_yield: tally.first_pass_yield(),
        tally,
        latest: latest.iter().map(Part::of).collect(),
        state: (web.line.state)(),
    })
}

fn boxes_svg(p: &Part) -> String {
    let (w, h) = (f64::from(p.width), f64::from(p.height));
    // Larger than on the verdict page: read from across the cell.
    let size = crate::pages::MarkSize {
        stroke: (w / 150.0).max(2.0),
        font: (w / 22.0).max(12.0),
        lift: 4.0,
        top: h / 20.0,
    };
    p.findings
        .iter()
        .enumerate()
        .map(|(i, b)| crate::pages::mark_svg(i + 1, &b.defect, b.at, b.violates, (w, h), &size))
        .collect()
}

fn latest_html(p: Option<&Part>) -> String {
    let Some(p) = p else {
        return r#"<div id="lamp" class="lamp">WAITING</div><p id="now-part">No part judged yet.</p><figure id="latest" class="latest"></figure>"#.into();
    };
    let picture = match &p.image {
        Some(sha) => format!(
            r#"<img src="/images/{sha}" alt="latest part"><svg viewBox="0 0 {w} {h}" preserveAspectRatio="none">{boxes}</svg>"#,
            sha = esc(sha),
            w = p.width,
            h = p.height,
            boxes = boxes_svg(p)
        ),
        None => r#"<p class="err">Image not kept.</p>"#.into(),
    };
    format!(
        r#"<div id="lamp" class="lamp {d}" data-id="{id}" data-decided-at="{at}">{d}</div><p id="now-part">Part <b>{part}</b> · camera {cam} · {time}</p><figure id="latest" class="latest">{picture}</figure>"#,
        d = p.decision,
        id = esc(&p.id),
        at = esc(&p.decided_at),
        part = esc(p.part_id.as_deref().unwrap_or("—")),
        cam = esc(&p.camera),
        time = local_time(&p.decided_at, false),
    )
}

fn thumb_html(p: &Part) -> String {
    let img = match &p.image {
        Some(sha) => format!(r#"<img src="/images/{}" alt="" loading="lazy">"#, esc(sha)),
        None => String::new(),
    };
    format!(
        r#"<a class="thumb {d}" href="/verdicts/{id}" data-id="{id}">{img}<span>{d} · {part}</span></a>"#,
        d = p.decision,
        id = esc(&p.id),
        part = esc(p.part_id.as_deref().unwrap_or("—")),
    )
}

fn state_html(s: &StationState) -> String {
    let cams: String = s
        .cameras
        .iter()
        .map(|c| {
            format!(
                r#"<li class="{}">camera {}: {}</li>"#,
                if c.up { "up" } else { "down" },
                esc(&c.camera),
                if c.up { "up" } else { "DOWN" }
            )
        })
        .collect();
    format!(
        r#"<ul id="states" class="states">{cams}<li class="{b}">broker: {bs}</li><li>recipe: {r}</li></ul>"#,
        b = if s.broker_connected { "up" } else { "down" },
        bs = if s.broker_connected {
            "connected"
        } else {
            "AWAY (verdicts wait in the outbox)"
        },
        r = esc(&s.recipe)
    )
}

fn counters_html(t: &Tally, fpy: Option<f64>) -> String {
    let fpy = fpy.map_or("—".to_string(), |y| format!("{:.1} %", y * 100.0));
    format!(
        r#"<div id="counters" class="counters" data-parts="{p}" data-pass="{pa}" data-fail="{f}" data-review="{r}"><div><span>Parts</span><b id="n-parts">{p}</b></div><div class="PASS"><span>PASS</span><b id="n-pass">{pa}</b></div><div class="FAIL"><span>FAIL</span><b id="n-fail">{f}</b></div><div class="REVIEW"><span>REVIEW</span><b id="n-review">{r}</b></div><div><span>First-pass yield</span><b id="fpy">{fpy}</b></div></div><p class="since">This shift since {since}</p>"#,
        p = t.parts,
        pa = t.pass,
        f = t.fail,
        r = t.review,
        since = local_time(&t.since, false),
    )
}

/// `?said=…`: how the operator's last command went.
#[derive(Deserialize, Default)]
pub(crate) struct Said {
    #[serde(default)]
    said: String,
}

/// The operator's controls: switch the recipe, trigger a picture.
fn controls_html(who: &crate::auth::Caller, s: &StationState, said: &str) -> String {
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(r#"<p id="said" class="said">{}</p>"#, esc(said))
    };
    if who.user.role < Role::Operator {
        return said;
    }
    let csrf = esc(who.csrf.as_deref().unwrap_or_default());
    let recipes: String = s
        .recipes
        .iter()
        .map(|r| {
            let chosen = if *r == s.recipe { " selected" } else { "" };
            format!(r#"<option value="{r}"{chosen}>{r}</option>"#, r = esc(r))
        })
        .collect();
    format!(
        r#"{said}<form class="act" method="post" action="/line/command"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="command" value="recipe"><label>Recipe <select name="recipe">{recipes}</select></label> <button class="big">Switch recipe</button></form><form class="act" method="post" action="/line/command"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="command" value="trigger"><label>Part id <input name="part_id" required maxlength="64"></label> <button class="big">Trigger</button></form>"#
    )
}

pub(crate) async fn line_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(said): Query<Said>,
) -> Response {
    let s = match snapshot(&web).await {
        Ok(s) => s,
        Err(e) => return server_error(e),
    };
    let reset = if who.user.role >= Role::Admin {
        format!(
            r#"<form method="post" action="/line/reset"><input type="hidden" name="csrf" value="{}"><button class="big">Reset shift counters</button></form>"#,
            esc(who.csrf.as_deref().unwrap_or_default())
        )
    } else {
        String::new()
    };
    let strip: String = s.latest.iter().map(thumb_html).collect();
    let body = format!(
        r#"<div class="line"><section class="now">{latest}</section><aside>{controls}{counters}{reset}{states}<p id="live" class="live down">connecting…</p></aside></div><h2>Last {n} parts</h2><div id="strip" class="strip">{strip}</div><script src="/assets/line.js"></script>"#,
        latest = latest_html(s.latest.first()),
        counters = counters_html(&s.tally, s.first_pass_yield),
        states = state_html(&s.state),
        controls = controls_html(&who, &s.state, &said.said),
        n = STRIP,
    );
    page("Line", Some(&who), &body).into_response()
}

pub(crate) async fn api_line(State(web): State<Web>, ApiCaller(_): ApiCaller) -> Response {
    match snapshot(&web).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => server_error(e),
    }
}

pub(crate) async fn line_reset(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(r) = form_refusal(&who, &f.csrf, Role::Admin, "resetting the counters") {
        return r;
    }
    if let Err(e) = store::line::reset(&web.store, &who.user.name).await {
        return server_error(e);
    }
    tracing::info!(by = %who.user.name, "shift counters reset");
    web.line.live.send(LiveEvent::Reset);
    Redirect::to("/line").into_response()
}

/// The line view's command form.
#[derive(Deserialize)]
pub(crate) struct CommandForm {
    #[serde(default)]
    csrf: String,
    command: String,
    #[serde(default)]
    recipe: String,
    #[serde(default)]
    part_id: String,
}

/// An operator's recipe switch or trigger: CSRF and the operator role
/// checked, handed to the station as the MQTT command would be, answered
/// on the page (`?said=`).
pub(crate) async fn line_command(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(f): Form<CommandForm>,
) -> Response {
    let (name, payload) = match f.command.as_str() {
        "recipe" => ("recipe", serde_json::json!({ "recipe": f.recipe })),
        "trigger" => ("trigger", serde_json::json!({ "part_id": f.part_id })),
        other => return crate::respond::forbidden(&format!("no command `{}` here", esc(other))),
    };
    let what = format!("the {name} command");
    if let Some(r) = form_refusal(&who, &f.csrf, Role::Operator, &what) {
        return r;
    }
    let Some(commands) = &web.line.commands else {
        return crate::respond::forbidden("this view takes no commands");
    };
    let (answer, answered) = oneshot::channel();
    let command = Command {
        name,
        payload: payload.to_string(),
        by: who.user.name.clone(),
        answer,
    };
    let said = match commands.send(command).await {
        Ok(()) => match answered.await {
            Ok(a) => a.said,
            Err(_) => "the station did not answer".to_string(),
        },
        Err(_) => "the station is stopping".to_string(),
    };
    Redirect::to(&format!("/line?said={}", percent(&said))).into_response()
}

/// `text` for a query string: unreserved characters as they are, every
/// other byte `%XX`.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The event stream of one open line view.
pub(crate) async fn line_events(
    State(web): State<Web>,
    PageCaller(_): PageCaller,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = web.line.live.0.subscribe();
    let mut every = tokio::time::interval(Duration::from_secs(2));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold(
        (rx, every, web),
        |(mut rx, mut every, web)| async move {
            let event = tokio::select! {
                got = rx.recv() => match got {
                    Ok(LiveEvent::Verdict(v)) => Event::default()
                        .event("verdict")
                        .id(v.id.clone())
                        .json_data(Part::of(&v))
                        .unwrap_or_default(),
                    Ok(LiveEvent::Reset) => Event::default().event("reset").data("{}"),
                    Err(broadcast::error::RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = every.tick() => Event::default()
                    .event("state")
                    .json_data((web.line.state)())
                    .unwrap_or_default(),
            };
            Some((Ok(event), (rx, every, web)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    #[test]
    fn the_shift_is_the_latest_start_today_or_else_yesterday() {
        let tz = FixedOffset::east_opt(3600).unwrap();
        let starts = [6 * 60, 14 * 60, 22 * 60];
        let at = |h, m| tz.with_ymd_and_hms(2026, 12, 4, h, m, 0).unwrap();
        assert_eq!(
            shift_start(&starts, at(15, 30)),
            "2026-12-04T13:00:00.000000Z"
        );
        assert_eq!(
            shift_start(&starts, at(6, 0)),
            "2026-12-04T05:00:00.000000Z"
        );
        // Before the first start of the day: last night's shift.
        assert_eq!(
            shift_start(&starts, at(2, 10)),
            "2026-12-03T21:00:00.000000Z"
        );
    }
}
