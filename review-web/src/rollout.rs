//! The rollout room of a plant server: an admin sends a model package from
//! the plant server's package folder, or a recipe's standard text, to the
//! stations they choose (`/rollout`, `POST /api/v1/rollouts`), and sees each
//! station's answer. Stations fetch the package's files from
//! `/rollout/packages/{folder}/{file}` (no sign-in: each file is refused by
//! the station unless its sha256 is the one the rollout message brought
//! over the broker's authenticated connection).
//!
//! What a rollout is and how it is sent is the plant server's business
//! ([`Desk`]); this room asks and shows.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use futures_util::future::BoxFuture;
use maud::{html, Markup};
use serde::{Deserialize, Serialize};
use store::accounts::Role;

use crate::auth::{check_api_write, check_form, ApiCaller, PageCaller};
use crate::html::local_time;
use crate::respond::{page, ApiRefusal, Refusal};
use crate::Web;

/// A package in the plant server's package folder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Offer {
    /// Its folder's name (what an order names).
    pub folder: String,
    pub name: String,
    pub version: String,
    /// sha256 of its `model.toml`.
    pub sha256: String,
    pub files: usize,
    /// Why it cannot be sent (it does not verify), if it cannot.
    pub problem: Option<String>,
}

/// What an admin asks to send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub stations: Vec<String>,
    /// A package folder on the plant server.
    #[serde(default)]
    pub package: Option<String>,
    /// `reload` (the default) or `shadow`.
    #[serde(default)]
    pub apply: Option<record::Apply>,
    /// `fp32` or `int8`; absent: each station's configured precision.
    #[serde(default)]
    pub precision: Option<String>,
    #[serde(default)]
    pub standard: Option<StandardOrder>,
}

/// A recipe's new standard text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardOrder {
    pub recipe: String,
    pub text: String,
}

/// The plant server's side of rollouts.
pub trait Desk: Send + Sync {
    /// The packages in the package folder, each verified.
    fn offers(&self) -> BoxFuture<'_, Vec<Offer>>;
    /// Sends `order` to its stations on behalf of `by`; returns the
    /// rollouts sent, or why nothing was.
    fn send<'a>(
        &'a self,
        order: Order,
        by: &'a str,
    ) -> BoxFuture<'a, Result<Vec<record::Rollout>, String>>;
    /// The file a station fetches, if `folder` is a package and `file` one of
    /// its plain files.
    fn file(&self, folder: &str, file: &str) -> Option<PathBuf>;
}

pub type RolloutDesk = Arc<dyn Desk>;

fn desk(web: &Web) -> Result<&RolloutDesk, Refusal> {
    web.rollout.as_ref().ok_or_else(|| {
        Refusal::NotFound("this is a station; rollouts are sent from the plant server".into())
    })
}

/// One row of the history, as the page and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub station: String,
    pub sent_by: String,
    pub sent_at: String,
    pub model: Option<String>,
    pub standards: Vec<String>,
    /// `taken on`, `refused` or `waiting`.
    pub state: &'static str,
    pub answer: Option<String>,
    pub answered_at: Option<String>,
}

async fn history(web: &Web) -> Result<Vec<Row>, Refusal> {
    let sent = store::rollouts::recent(&web.store, 50)
        .await
        .map_err(Refusal::internal)?;
    Ok(sent
        .into_iter()
        .map(|s| Row {
            model: s.rollout.model.as_ref().map(|m| {
                let folder = m.url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                format!("{folder} ({})", m.apply.as_str())
            }),
            standards: s.rollout.standards.keys().cloned().collect(),
            id: s.rollout.id,
            station: s.rollout.station,
            sent_by: s.rollout.sent_by,
            sent_at: s.rollout.sent_at,
            state: match s.answer_ok {
                Some(true) => "taken on",
                Some(false) => "refused",
                None => "waiting",
            },
            answer: s.answer,
            answered_at: s.answered_at,
        })
        .collect())
}

pub(crate) async fn rollout_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    axum::extract::Query(q): axum::extract::Query<Said>,
) -> Result<Markup, Refusal> {
    let desk = desk(&web)?;
    let lang = who.lang;
    let admin = who.user.role >= Role::Admin;
    let csrf = who.csrf.as_deref().unwrap_or_default();
    let offers = desk.offers().await;
    let stations: Vec<String> = crate::fleet::known(&web).await?.into_keys().collect();
    let rows = history(&web).await?;
    let pick_stations = html! {
        fieldset {
            legend { (lang.t("Stations")) }
            @for s in &stations {
                label { input type="checkbox" name="station" value=(s); " " (s) }
            }
        }
    };
    let body = html! {
        @if let Some(said) = &q.said {
            p class="said" { (said) }
        }
        h2 { (lang.t("Model packages on this server")) }
        @if offers.is_empty() {
            p { (lang.t("The package folder holds no package.")) }
        } @else {
            table class="packages" {
                tr {
                    th { (lang.t("Folder")) }
                    th { (lang.t("Model")) }
                    th { "model.toml sha256" }
                    th { (lang.t("Files")) }
                }
                @for o in &offers {
                    tr {
                        td { (o.folder) }
                        td { (o.name) " " (o.version) }
                        td { code { (o.sha256.get(..12).unwrap_or(&o.sha256)) "…" } }
                        td {
                            @if let Some(p) = &o.problem { span class="problem" lang="en" { (p) } } @else { (o.files) }
                        }
                    }
                }
            }
        }
        @if admin {
            h2 { (lang.t("Roll out a model")) }
            form method="post" action="/rollout" class="rollout" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="what" value="model";
                label { (lang.t("Package")) " "
                    select name="package" {
                        @for o in offers.iter().filter(|o| o.problem.is_none()) {
                            option value=(o.folder) { (o.folder) " — " (o.name) " " (o.version) }
                        }
                    }
                }
                label { input type="radio" name="apply" value="reload" checked; " " (lang.t("decides at once (safe reload)")) }
                label { input type="radio" name="apply" value="shadow"; " " (lang.t("beside the running model (shadow mode)")) }
                label { (lang.t("Precision")) " "
                    select name="precision" {
                        option value="" { (lang.t("as each station is configured")) }
                        option value="fp32" { "FP32" }
                        option value="int8" { "INT8" }
                    }
                }
                (pick_stations)
                button { (lang.t("Send the model")) }
            }
            h2 { (lang.t("Roll out a standard")) }
            form method="post" action="/rollout" class="rollout" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="what" value="standard";
                label { (lang.t("Recipe")) " " input type="text" name="recipe" required; }
                label { (lang.t("Standard text (numbered clauses)")) br;
                    textarea name="text" rows="8" cols="80" required {}
                }
                (pick_stations)
                button { (lang.t("Send the standard")) }
            }
        }
        h2 { (lang.t("Sent")) }
        @if rows.is_empty() {
            p { (lang.t("Nothing has been rolled out yet.")) }
        } @else {
            table class="rollouts" {
                tr {
                    th { (lang.t("Sent")) }
                    th { (lang.t("Station")) }
                    th { (lang.t("By")) }
                    th { (lang.t("Model")) }
                    th { (lang.t("Standards")) }
                    th { (lang.t("Answer")) }
                }
                @for r in &rows {
                    tr class={ "rollout " (r.state.replace(' ', "-")) } data-rollout=(r.id) data-station=(r.station) {
                        td { (local_time(&r.sent_at, true)) }
                        td { (r.station) }
                        td { (r.sent_by) }
                        td { (r.model.as_deref().unwrap_or("–")) }
                        td { (if r.standards.is_empty() { "–".to_string() } else { r.standards.join(", ") }) }
                        td {
                            (lang.t(r.state))
                            @if let Some(a) = &r.answer { ": " span lang="en" { (a) } }
                        }
                    }
                }
            }
        }
    };
    Ok(page(lang, lang.t("Rollout"), Some(&who), body))
}

#[derive(Deserialize)]
pub(crate) struct Said {
    #[serde(default)]
    said: Option<String>,
}

/// `POST /rollout`: the admin's form, fields repeated for each station.
pub(crate) async fn rollout_form(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Redirect, Refusal> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    check_form(&who, &field("csrf"), Role::Admin, "a rollout")?;
    let desk = desk(&web)?;
    let stations: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "station")
        .map(|(_, v)| v.clone())
        .collect();
    let order = if field("what") == "standard" {
        Order {
            stations,
            package: None,
            apply: None,
            precision: None,
            standard: Some(StandardOrder {
                recipe: field("recipe").trim().to_string(),
                text: field("text").replace("\r\n", "\n"),
            }),
        }
    } else {
        Order {
            stations,
            package: Some(field("package")),
            apply: Some(if field("apply") == "shadow" {
                record::Apply::Shadow
            } else {
                record::Apply::Reload
            }),
            precision: Some(field("precision")).filter(|p| !p.is_empty()),
            standard: None,
        }
    };
    let said = match desk.send(order, &who.user.name).await {
        Ok(sent) => who.lang.f(
            "Sent to {0}; each station answers below.",
            &[&sent
                .iter()
                .map(|r| r.station.as_str())
                .collect::<Vec<_>>()
                .join(", ")],
        ),
        Err(e) => format!("{}: {e}", who.lang.t("Not sent")),
    };
    Ok(Redirect::to(&format!(
        "/rollout?said={}",
        crate::line::percent(&said)
    )))
}

/// `GET /api/v1/rollouts`: the newest 50 rollouts and their answers.
pub(crate) async fn api_rollouts(
    State(web): State<Web>,
    ApiCaller(_): ApiCaller,
) -> Result<Json<Vec<Row>>, ApiRefusal> {
    desk(&web)?;
    Ok(Json(history(&web).await?))
}

/// `POST /api/v1/rollouts` with an [`Order`]: `201` with the rollouts sent.
pub(crate) async fn api_send(
    State(web): State<Web>,
    ApiCaller(who): ApiCaller,
    headers: HeaderMap,
    Json(order): Json<Order>,
) -> Result<(StatusCode, Json<Vec<record::Rollout>>), ApiRefusal> {
    check_api_write(&who, &headers, Role::Admin, "a rollout")?;
    let desk = desk(&web)?;
    let sent = desk
        .send(order, &who.user.name)
        .await
        .map_err(|e| ApiRefusal(Refusal::Invalid(e)))?;
    Ok((StatusCode::CREATED, Json(sent)))
}

/// `GET /rollout/packages/{folder}/{file}`: a package file, streamed.
pub(crate) async fn package_file(
    State(web): State<Web>,
    UrlPath((folder, file)): UrlPath<(String, String)>,
) -> Result<Response, Refusal> {
    let desk = desk(&web)?;
    let path = desk
        .file(&folder, &file)
        .ok_or_else(|| Refusal::NotFound(format!("no file `{file}` in package `{folder}`")))?;
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|_| Refusal::NotFound(format!("no file `{file}` in package `{folder}`")))?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let chunks = futures_util::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 16];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

/// The Chinese of this room.
pub(crate) const ZH: &[(&str, &str)] = &[
    ("Rollout", "下发"),
    ("Stations", "工位"),
    ("Model packages on this server", "本服务器上的模型包"),
    (
        "The package folder holds no package.",
        "模型包目录中没有模型包。",
    ),
    ("Folder", "目录"),
    ("Files", "文件数"),
    ("Roll out a model", "下发模型"),
    ("Package", "模型包"),
    ("decides at once (safe reload)", "立即启用（安全重载）"),
    (
        "beside the running model (shadow mode)",
        "与运行中模型并行（影子模式）",
    ),
    ("as each station is configured", "按各工位的配置"),
    ("Send the model", "下发模型"),
    ("Roll out a standard", "下发标准"),
    (
        "Standard text (numbered clauses)",
        "标准文本（带编号的条款）",
    ),
    ("Send the standard", "下发标准"),
    ("Sent", "已下发"),
    ("Nothing has been rolled out yet.", "尚未下发任何内容。"),
    ("By", "下发人"),
    ("Standards", "标准"),
    ("Answer", "工位答复"),
    ("taken on", "已生效"),
    ("refused", "已拒绝"),
    ("waiting", "等待答复"),
    (
        "Sent to {0}; each station answers below.",
        "已下发至 {0}；各工位的答复见下表。",
    ),
    ("Not sent", "未下发"),
];
