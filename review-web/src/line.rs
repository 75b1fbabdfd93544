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
use axum::response::{IntoResponse, Redirect};
use axum::Json;
use chrono::{Local, TimeZone, Timelike};
use maud::{html, Markup};
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::auth::{check_form, ApiCaller, Caller, CsrfForm, PageCaller};
use crate::html::local_time;
use crate::i18n::Lang;
use crate::respond::{page, ApiRefusal, Refusal};
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
    /// The station is stopping: every stream ends (browsers reconnect to
    /// the next start by themselves).
    Closing,
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
    /// A candidate model in shadow mode, if one runs.
    pub shadow: Option<CandidateState>,
}

/// A candidate model in shadow mode as it runs: what it is, what it saw
/// and what it costs (the panel shows it; agreement comes from the store).
#[derive(Debug, Clone, Serialize, Default)]
pub struct CandidateState {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// The package folder it was loaded from, and at which precision.
    pub package: String,
    pub precision: String,
    /// When it started (RFC 3339, UTC).
    pub since: String,
    /// Frames offered to it, judged by it, skipped because it had no room
    /// (it fell behind the line), and judged but not kept (an error).
    pub offered: u64,
    pub judged: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Its engine time per frame.
    pub candidate_ms_per_frame: Option<f64>,
    /// The running model's engine time per frame over its last 200 batches
    /// before the candidate started, and since: the difference is what
    /// sharing the CPU costs it (batch sizes matter too: a busier line
    /// batches more frames at a lower cost each).
    pub running_ms_before: Option<f64>,
    pub running_ms_since: Option<f64>,
    /// Share of wall time the candidate's engine was busy (1.0: a core).
    pub busy_share: f64,
}

/// A command an operator gives from the line view (`recipe` or
/// `trigger`) or an admin from the panel (`shadow`), answered as the same
/// command over MQTT would be.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    /// The command's JSON, as on `cmd/{name}`.
    pub payload: String,
    /// Who gave it.
    pub by: String,
    pub answer: oneshot::Sender<Answer>,
}

/// How a command went, told to the person who gave it in their language.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    RecipeSwitched {
        recipe: String,
        by: String,
    },
    Triggered {
        part: String,
        cameras: Vec<String>,
        by: String,
    },
    /// `model`: the candidate's name and version.
    ShadowStarted {
        model: String,
        by: String,
    },
    ShadowStopped {
        model: String,
        frames: u64,
        skipped: u64,
        by: String,
    },
    Promoted {
        model: String,
        by: String,
    },
    /// Refused, with the station's reason as `cmd/reply` gives it (in
    /// English, like the log and the JSON API).
    Refused {
        error: String,
    },
}

impl Answer {
    pub fn ok(&self) -> bool {
        !matches!(self, Answer::Refused { .. })
    }

    /// The answer in words.
    pub fn said(&self, lang: Lang) -> String {
        match self {
            Answer::RecipeSwitched { recipe, by } => {
                lang.f("Recipe switched to {0} by {1}", &[recipe, by])
            }
            Answer::Triggered { part, cameras, by } => lang.f(
                "Part {0} triggered on {1} by {2}",
                &[part, &cameras.join(", "), by],
            ),
            Answer::ShadowStarted { model, by } => {
                lang.f("Candidate {0} in shadow mode (by {1})", &[model, by])
            }
            Answer::ShadowStopped {
                model,
                frames,
                skipped,
                by,
            } => lang.f(
                "Shadow mode stopped: candidate {0} saw {1} frames, {2} skipped (by {3})",
                &[model, frames, skipped, by],
            ),
            Answer::Promoted { model, by } => lang.f(
                "Candidate {0} promoted: it decides from now on (by {1})",
                &[model, by],
            ),
            Answer::Refused { error } => lang.f("Refused: {0}", &[error]),
        }
    }
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

fn boxes_svg(p: &Part) -> Markup {
    let (w, h) = (f64::from(p.width), f64::from(p.height));
    // Larger than on the verdict page: read from across the cell.
    let size = crate::pages::MarkSize {
        stroke: (w / 150.0).max(2.0),
        font: (w / 22.0).max(12.0),
        lift: 4.0,
        top: h / 20.0,
    };
    html! {
        @for (i, b) in p.findings.iter().enumerate() {
            (crate::pages::mark_svg(i + 1, &b.defect, b.at, b.violates, (w, h), &size))
        }
    }
}

fn latest_html(lang: Lang, p: Option<&Part>) -> Markup {
    let Some(p) = p else {
        return html! {
            div id="lamp" class="lamp" { (lang.t("WAITING")) }
            p id="now-part" { (lang.t("No part judged yet.")) }
            figure id="latest" class="latest" {}
        };
    };
    html! {
        div id="lamp" class={ "lamp " (p.decision) } data-id=(p.id) data-decided-at=(p.decided_at) {
            (p.decision)
        }
        p id="now-part" {
            (lang.t("Part")) " " b { (p.part_id.as_deref().unwrap_or("—")) }
            " · " (lang.t("camera")) " " (p.camera) " · " (local_time(&p.decided_at, false))
        }
        figure id="latest" class="latest" {
            @match &p.image {
                Some(sha) => {
                    img src={ "/images/" (sha) } alt=(lang.t("latest part"));
                    svg viewBox={ "0 0 " (p.width) " " (p.height) } preserveAspectRatio="none" {
                        (boxes_svg(p))
                    }
                }
                None => {
                    p class="err" { (lang.t("Image not kept.")) }
                }
            }
        }
    }
}

fn thumb_html(p: &Part) -> Markup {
    html! {
        a class={ "thumb " (p.decision) } href={ "/verdicts/" (p.id) } data-id=(p.id) {
            @if let Some(sha) = &p.image {
                img src={ "/images/" (sha) "/thumb" } alt="" loading="lazy";
            }
            span { (p.decision) " · " (p.part_id.as_deref().unwrap_or("—")) }
        }
    }
}

fn state_html(lang: Lang, s: &StationState) -> Markup {
    html! {
        ul id="states" class="states" {
            @for c in &s.cameras {
                li class=(if c.up { "up" } else { "down" }) {
                    (lang.f("camera {0}: {1}", &[&c.camera, &if c.up { lang.t("up") } else { lang.t("DOWN") }]))
                }
            }
            li class=(if s.broker_connected { "up" } else { "down" }) {
                (lang.f("broker: {0}", &[&if s.broker_connected {
                    lang.t("connected")
                } else {
                    lang.t("AWAY (verdicts wait in the outbox)")
                }]))
            }
            li { (lang.f("recipe: {0}", &[&s.recipe])) }
        }
    }
}

fn counters_html(lang: Lang, t: &Tally, fpy: Option<f64>) -> Markup {
    let fpy = fpy.map_or("—".to_string(), |y| format!("{:.1} %", y * 100.0));
    html! {
        div id="counters" class="counters" data-parts=(t.parts) data-pass=(t.pass) data-fail=(t.fail) data-review=(t.review) {
            div { span { (lang.t("Parts")) } b id="n-parts" { (t.parts) } }
            div class="PASS" { span { "PASS" } b id="n-pass" { (t.pass) } }
            div class="FAIL" { span { "FAIL" } b id="n-fail" { (t.fail) } }
            div class="REVIEW" { span { "REVIEW" } b id="n-review" { (t.review) } }
            div { span { (lang.t("First-pass yield")) } b id="fpy" { (fpy) } }
        }
        p class="since" { (lang.f("This shift since {0}", &[&local_time(&t.since, false)])) }
    }
}

/// `?said=…`: how the operator's last command went.
#[derive(Deserialize, Default)]
pub(crate) struct Said {
    #[serde(default)]
    said: String,
}

/// The operator's controls: switch the recipe, trigger a picture.
fn controls_html(who: &Caller, s: &StationState, said: &str) -> Markup {
    let lang = who.lang;
    let csrf = who.csrf.as_deref().unwrap_or_default();
    html! {
        @if !said.is_empty() {
            p id="said" class="said" { (said) }
        }
        @if who.user.role >= Role::Operator {
            form class="act" method="post" action="/line/command" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="command" value="recipe";
                label {
                    (lang.t("Recipe")) " "
                    select name="recipe" {
                        @for r in &s.recipes {
                            option value=(r) selected[*r == s.recipe] { (r) }
                        }
                    }
                }
                " "
                button class="big" { (lang.t("Switch recipe")) }
            }
            form class="act" method="post" action="/line/command" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="command" value="trigger";
                label { (lang.t("Part id")) " " input name="part_id" required maxlength="64"; }
                " "
                button class="big" { (lang.t("Trigger")) }
            }
        }
    }
}

pub(crate) async fn line_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(said): Query<Said>,
) -> Result<Markup, Refusal> {
    let s = snapshot(&web).await.map_err(Refusal::internal)?;
    let body = body_html(&who, &s, &said.said);
    Ok(page(who.lang, who.lang.t("Line"), Some(&who), body))
}

/// The page's body: the latest part, the operator's controls, the
/// counters, the station's state and the strip; `data-i18n` carries the
/// texts line.js writes itself, in the caller's language.
fn body_html(who: &Caller, s: &Snapshot, said: &str) -> Markup {
    let lang = who.lang;
    html! {
        div class="line" data-i18n=(script_texts(lang)) {
            section class="now" { (latest_html(lang, s.latest.first())) }
            aside {
                (controls_html(who, &s.state, said))
                (counters_html(lang, &s.tally, s.first_pass_yield))
                @if who.user.role >= Role::Admin {
                    form method="post" action="/line/reset" {
                        input type="hidden" name="csrf" value=(who.csrf.as_deref().unwrap_or_default());
                        button class="big" { (lang.t("Reset shift counters")) }
                    }
                }
                (state_html(lang, &s.state))
                p id="live" class="live down" { (lang.t("connecting…")) }
            }
        }
        h2 { (lang.f("Last {0} parts", &[&STRIP])) }
        div id="strip" class="strip" {
            @for p in &s.latest {
                (thumb_html(p))
            }
        }
        script src="/assets/line.js" {}
    }
}

/// The texts line.js builds itself, English to `lang`, as JSON (the
/// script reads them from `data-i18n`; no inline script is allowed). A
/// text missing here is shown in English by the script.
fn script_texts(lang: Lang) -> String {
    let texts: std::collections::BTreeMap<&str, &str> = [
        ("Part", lang.t("Part")),
        ("camera", lang.t("camera")),
        ("latest part", lang.t("latest part")),
        ("Image not kept.", lang.t("Image not kept.")),
        ("camera {0}: {1}", lang.t("camera {0}: {1}")),
        ("up", lang.t("up")),
        ("DOWN", lang.t("DOWN")),
        ("broker: {0}", lang.t("broker: {0}")),
        ("connected", lang.t("connected")),
        (
            "AWAY (verdicts wait in the outbox)",
            lang.t("AWAY (verdicts wait in the outbox)"),
        ),
        ("recipe: {0}", lang.t("recipe: {0}")),
        ("live", lang.t("live")),
        ("reconnecting…", lang.t("reconnecting…")),
    ]
    .into_iter()
    .collect();
    serde_json::to_string(&texts).unwrap_or_default()
}

pub(crate) async fn api_line(
    State(web): State<Web>,
    ApiCaller(_): ApiCaller,
) -> Result<impl IntoResponse, ApiRefusal> {
    let s = snapshot(&web).await.map_err(Refusal::internal)?;
    Ok(Json(s))
}

pub(crate) async fn line_reset(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(f): Form<CsrfForm>,
) -> Result<Redirect, Refusal> {
    check_form(&who, &f.csrf, Role::Admin, "resetting the counters")?;
    store::line::reset(&web.store, &who.user.name)
        .await
        .map_err(Refusal::internal)?;
    tracing::info!(by = %who.user.name, "shift counters reset");
    web.line.live.send(LiveEvent::Reset);
    Ok(Redirect::to("/line"))
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
) -> Result<Redirect, Refusal> {
    let (name, payload) = match f.command.as_str() {
        "recipe" => ("recipe", serde_json::json!({ "recipe": f.recipe })),
        "trigger" => ("trigger", serde_json::json!({ "part_id": f.part_id })),
        other => {
            return Err(Refusal::Forbidden(
                who.lang.f("no command `{0}` here", &[&other]),
            ))
        }
    };
    let what = format!("the {name} command");
    check_form(&who, &f.csrf, Role::Operator, &what)?;
    let Some(commands) = &web.line.commands else {
        return Err(Refusal::Forbidden(
            who.lang.t("this view takes no commands").into(),
        ));
    };
    let said = tell_station(commands, &who, name, &payload).await;
    Ok(Redirect::to(&format!("/line?said={}", percent(&said))))
}

/// Gives the station the command `name` with `payload` on behalf of `who`
/// and waits for its answer, in `who`'s words.
pub(crate) async fn tell_station(
    commands: &mpsc::Sender<Command>,
    who: &Caller,
    name: &'static str,
    payload: &serde_json::Value,
) -> String {
    let (answer, answered) = oneshot::channel();
    let command = Command {
        name,
        payload: payload.to_string(),
        by: who.user.name.clone(),
        answer,
    };
    match commands.send(command).await {
        Ok(()) => match answered.await {
            Ok(a) => a.said(who.lang),
            Err(_) => who.lang.t("the station did not answer").to_string(),
        },
        Err(_) => who.lang.t("the station is stopping").to_string(),
    }
}

/// `text` for a query string: unreserved characters as they are, every
/// other byte `%XX`.
pub(crate) fn percent(text: &str) -> String {
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
                    Ok(LiveEvent::Closing) | Err(broadcast::error::RecvError::Closed) => return None,
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

/// The line view's Chinese.
pub(crate) const ZH: &[(&str, &str)] = &[
    ("Recipe switched to {0} by {1}", "配方已由 {1} 切换为 {0}"),
    (
        "Part {0} triggered on {1} by {2}",
        "零件 {0} 已由 {2} 在 {1} 上触发拍照",
    ),
    (
        "Candidate {0} in shadow mode (by {1})",
        "候选模型 {0} 已进入影子模式（操作人 {1}）",
    ),
    (
        "Shadow mode stopped: candidate {0} saw {1} frames, {2} skipped (by {3})",
        "影子模式已停止：候选模型 {0} 判定了 {1} 帧，跳过 {2} 帧（操作人 {3}）",
    ),
    (
        "Candidate {0} promoted: it decides from now on (by {1})",
        "候选模型 {0} 已启用：今后由它判定（操作人 {1}）",
    ),
    ("Refused: {0}", "已拒绝：{0}"),
    ("Line", "产线"),
    ("WAITING", "等待中"),
    ("No part judged yet.", "尚无已判定的零件。"),
    ("Part", "零件"),
    ("camera", "相机"),
    ("latest part", "最新零件"),
    ("Image not kept.", "图片未保存。"),
    ("camera {0}: {1}", "相机 {0}：{1}"),
    ("up", "正常"),
    ("DOWN", "离线"),
    ("broker: {0}", "消息服务器：{0}"),
    ("connected", "已连接"),
    (
        "AWAY (verdicts wait in the outbox)",
        "断开（判定结果在发件箱中等待发送）",
    ),
    ("recipe: {0}", "配方：{0}"),
    ("Parts", "零件数"),
    ("First-pass yield", "一次合格率"),
    ("This shift since {0}", "本班次自 {0} 起"),
    ("Recipe", "配方"),
    ("Switch recipe", "切换配方"),
    ("Part id", "零件编号"),
    ("Trigger", "触发"),
    ("Reset shift counters", "班次计数清零"),
    ("connecting…", "正在连接…"),
    ("live", "实时"),
    ("reconnecting…", "正在重新连接…"),
    ("Last {0} parts", "最近 {0} 个零件"),
    ("no command `{0}` here", "此处没有 `{0}` 命令"),
    ("this view takes no commands", "此页面不接受命令"),
    ("the station did not answer", "工位没有应答"),
    ("the station is stopping", "工位正在停止"),
];

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

    fn caller(role: Role) -> Caller {
        caller_in(Lang::En, role)
    }

    fn caller_in(lang: Lang, role: Role) -> Caller {
        Caller {
            user: store::accounts::User {
                name: "otto".into(),
                role,
                language: None,
            },
            csrf: Some("t\"ok".into()),
            lang,
            plant: false,
        }
    }

    fn station() -> StationState {
        StationState {
            cameras: vec![CameraState {
                camera: "<top>".into(),
                up: false,
            }],
            broker_connected: true,
            recipe: "cover".into(),
            recipes: vec!["housing".into(), "cover".into()],
            shadow: None,
        }
    }

    #[test]
    fn answers_are_told_in_the_persons_language() {
        let switched = Answer::RecipeSwitched {
            recipe: "cover".into(),
            by: "otto".into(),
        };
        assert!(switched.ok());
        assert_eq!(switched.said(Lang::En), "Recipe switched to cover by otto");
        assert_eq!(switched.said(Lang::Zh), "配方已由 otto 切换为 cover");
        let stopped = Answer::ShadowStopped {
            model: "inspector 0.4.0".into(),
            frames: 120,
            skipped: 2,
            by: "ada".into(),
        };
        assert_eq!(
            stopped.said(Lang::Zh),
            "影子模式已停止：候选模型 inspector 0.4.0 判定了 120 帧，跳过 2 帧（操作人 ada）"
        );
        // The station's reason stays as cmd/reply gives it.
        let refused = Answer::Refused {
            error: "unknown recipe `lid`".into(),
        };
        assert!(!refused.ok());
        assert_eq!(refused.said(Lang::Zh), "已拒绝：unknown recipe `lid`");
    }

    #[test]
    fn controls_show_the_recipe_in_use_and_what_was_said() {
        let html = controls_html(
            &caller(Role::Operator),
            &station(),
            "Recipe switched to housing by otto",
        )
        .into_string();
        assert!(
            html.contains(r#"<option value="housing">housing</option>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<option value="cover" selected>cover</option>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<p id="said" class="said">Recipe switched to housing by otto</p>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<input type="hidden" name="csrf" value="t&quot;ok">"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<input name="part_id" required maxlength="64">"#),
            "{html}"
        );
    }

    #[test]
    fn a_viewer_gets_no_controls_and_what_was_said_is_escaped() {
        let html = controls_html(&caller(Role::Viewer), &station(), "<b>&").into_string();
        assert_eq!(html, r#"<p id="said" class="said">&lt;b&gt;&amp;</p>"#);
        assert_eq!(
            controls_html(&caller(Role::Viewer), &station(), "").into_string(),
            ""
        );
    }

    #[test]
    fn station_state_and_parts_are_escaped() {
        let html = state_html(Lang::En, &station()).into_string();
        assert_eq!(
            html,
            r#"<ul id="states" class="states"><li class="down">camera &lt;top&gt;: DOWN</li><li class="up">broker: connected</li><li>recipe: cover</li></ul>"#
        );
        let part = Part {
            id: "v\"1".into(),
            part_id: None,
            camera: "top".into(),
            decision: "FAIL",
            decided_at: "not a time".into(),
            image: None,
            width: 640,
            height: 480,
            findings: vec![],
        };
        assert_eq!(
            thumb_html(&part).into_string(),
            r#"<a class="thumb FAIL" href="/verdicts/v&quot;1" data-id="v&quot;1"><span>FAIL · —</span></a>"#
        );
        assert_eq!(
            latest_html(Lang::En, Some(&part)).into_string(),
            r#"<div id="lamp" class="lamp FAIL" data-id="v&quot;1" data-decided-at="not a time">FAIL</div><p id="now-part">Part <b>—</b> · camera top · not a time</p><figure id="latest" class="latest"><p class="err">Image not kept.</p></figure>"#
        );
        assert_eq!(
            latest_html(Lang::En, None).into_string(),
            r#"<div id="lamp" class="lamp">WAITING</div><p id="now-part">No part judged yet.</p><figure id="latest" class="latest"></figure>"#
        );
    }

    fn sample() -> Snapshot {
        let part = |id: &str, decision, image: bool| Part {
            id: id.into(),
            part_id: Some(format!("P-{id}")),
            camera: "top".into(),
            decision,
            decided_at: "2026-12-04T13:05:07.000000Z".into(),
            image: image.then(|| "ab12cd".into()),
            width: 640,
            height: 480,
            findings: vec![Mark {
                defect: "scratch".into(),
                at: [0.1, 0.2, 0.3, 0.4],
                violates: true,
            }],
        };
        Snapshot {
            tally: Tally {
                since: "2026-12-04T13:00:00.000000Z".into(),
                parts: 3,
                pass: 1,
                fail: 1,
                review: 1,
            },
            first_pass_yield: Some(1.0 / 3.0),
            latest: vec![
                part("v3", "FAIL", true),
                part("v2", "REVIEW", false),
                part("v1", "PASS", true),
            ],
            state: station(),
        }
    }

    #[test]
    fn in_chinese_no_english_is_left_but_the_data() {
        let who = caller_in(Lang::Zh, Role::Admin);
        let s = sample();
        let mut away = station();
        away.broker_connected = false;
        away.cameras.push(CameraState {
            camera: "side".into(),
            up: true,
        });
        let no_image = &s.latest[1];
        let html = [
            body_html(&who, &s, "Recipe switched to housing by otto"),
            latest_html(Lang::Zh, None),
            latest_html(Lang::Zh, Some(no_image)),
            state_html(Lang::Zh, &away),
            counters_html(Lang::Zh, &Tally::default(), None),
        ]
        .map(Markup::into_string)
        .join("\n");
        let data = [
            "Recipe switched to housing by otto",
            "P-v1",
            "P-v2",
            "P-v3",
            "<top>",
            "top",
            "side",
            "housing",
            "cover",
            "scratch",
        ];
        let left = crate::i18n::tests::english_left(&html, &data);
        assert!(left.is_empty(), "{left:?} in {html}");
        assert!(
            html.contains(r#"<p id="live" class="live down">正在连接…</p>"#),
            "{html}"
        );
        assert!(html.contains("<h2>最近 20 个零件</h2>"), "{html}");
        assert!(
            html.contains("<li class=\"down\">相机 &lt;top&gt;：离线</li>"),
            "{html}"
        );
        assert!(
            html.contains(r#"<option value="cover" selected>cover</option>"#),
            "{html}"
        );
    }

    #[test]
    fn in_english_the_page_reads_as_before() {
        let s = sample();
        let html = body_html(
            &caller_in(Lang::En, Role::Admin),
            &s,
            "Recipe switched to housing by otto",
        )
        .into_string();
        for expected in [
            r#"<p id="said" class="said">Recipe switched to housing by otto</p>"#,
            r#"<option value="cover" selected>cover</option>"#,
            r#"<label>Recipe <select name="recipe">"#,
            r#"<button class="big">Switch recipe</button>"#,
            r#"<label>Part id <input name="part_id" required maxlength="64"></label>"#,
            r#"<button class="big">Trigger</button>"#,
            r#"<button class="big">Reset shift counters</button>"#,
            r#"<div><span>Parts</span><b id="n-parts">3</b></div>"#,
            r#"<div><span>First-pass yield</span><b id="fpy">33.3 %</b></div>"#,
            r#"<p class="since">This shift since "#,
            r#"<li class="up">broker: connected</li><li>recipe: cover</li>"#,
            r#"<p id="live" class="live down">connecting…</p>"#,
            r#"<h2>Last 20 parts</h2>"#,
            r#"alt="latest part""#,
            r#"<p id="now-part">Part <b>P-v3</b> · camera top · "#,
            r#"<div class="line" data-i18n="{&quot;AWAY (verdicts wait in the outbox)&quot;:&quot;AWAY (verdicts wait in the outbox)&quot;,"#,
        ] {
            assert!(html.contains(expected), "no {expected} in {html}");
        }
        assert_eq!(
            state_html(Lang::En, &station()).into_string(),
            r#"<ul id="states" class="states"><li class="down">camera &lt;top&gt;: DOWN</li><li class="up">broker: connected</li><li>recipe: cover</li></ul>"#
        );
    }

    #[test]
    fn the_script_gets_its_texts_in_the_page_language() {
        let en: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&script_texts(Lang::En)).unwrap();
        for (k, v) in &en {
            assert_eq!(k, v, "English is its own key");
        }
        let zh: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&script_texts(Lang::Zh)).unwrap();
        assert_eq!(zh.len(), en.len());
        assert_eq!(zh["live"], "实时");
        assert_eq!(zh["camera {0}: {1}"], "相机 {0}：{1}");
        for (k, v) in &zh {
            assert_ne!(k, v, "no Chinese for {k}");
        }
        // Each is asked for by line.js, and line.js asks for no other.
        let script = include_str!("../assets/line.js");
        let asked: Vec<&str> = script
            .match_indices("t('")
            .filter(|(i, _)| {
                // `t(` itself, not the end of `createElement(`.
                !script[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.')
            })
            .map(|(i, _)| script[i + 3..].split('\'').next().unwrap())
            .collect();
        for k in en.keys() {
            let k = k.replace('…', "\\u2026");
            assert!(asked.contains(&k.as_str()), "line.js does not use {k}");
        }
        for a in &asked {
            let a = a.replace("\\u2026", "…");
            assert!(
                en.contains_key(&a),
                "line.js asks for {a}, which the page does not give"
            );
        }
    }
}
