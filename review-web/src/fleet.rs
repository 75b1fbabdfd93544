//! The fleet page of a plant server (`/fleet`, and `/api/v1/fleet` for the
//! plant's IT): every station sharing the plant's database and broker, as
//! its retained `status` says (online or not, model, recipe, health) and as
//! the database says (last verdict, verdicts in the last hour, outbox
//! backlog), each with a link into its verdicts. Stations keep their own
//! pages for their own line.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use maud::{html, Markup};
use serde::Serialize;

use crate::auth::{ApiCaller, PageCaller};
use crate::html::local_time;
use crate::i18n::Lang;
use crate::respond::{page, ApiRefusal, Refusal};
use crate::Web;

/// A station as its retained status topic last said.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StationSeen {
    pub station: String,
    /// `online`, or `offline` (its last will or a clean stop).
    pub state: String,
    /// Name and version of the model it runs.
    pub model: Option<String>,
    pub recipe: Option<String>,
    /// Its health state (`healthy`, `alert`, `escalated`).
    pub health: Option<String>,
}

/// The stations the plant's broker told of, as they stand.
pub type FleetFeed = Arc<dyn Fn() -> Vec<StationSeen> + Send + Sync>;

/// One row of the fleet page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Station {
    #[serde(flatten)]
    pub seen: StationSeen,
    pub last_verdict: Option<String>,
    pub verdicts_last_hour: i64,
    pub backlog: i64,
}

/// Every station the plant knows, by name: those its broker told of, and
/// those with verdicts in the database.
pub(crate) async fn known(web: &Web) -> Result<BTreeMap<String, StationSeen>, Refusal> {
    let Some(feed) = &web.fleet else {
        return Err(Refusal::NotFound(
            "this is a station; the fleet page is on the plant server".into(),
        ));
    };
    let mut all: BTreeMap<String, StationSeen> =
        feed().into_iter().map(|s| (s.station.clone(), s)).collect();
    for name in store::reviews::stations(&web.store).await? {
        all.entry(name.clone()).or_insert(StationSeen {
            station: name,
            ..StationSeen::default()
        });
    }
    Ok(all)
}

async fn stations(web: &Web) -> Result<Vec<Station>, Refusal> {
    let mut all = known(web).await?;
    let names: Vec<String> = all.keys().cloned().collect();
    let hour_ago = record::time::format(chrono::Utc::now() - chrono::Duration::hours(1));
    let figures = store::fleet::figures(&web.store, &names, &hour_ago)
        .await
        .map_err(Refusal::internal)?;
    Ok(figures
        .into_iter()
        .map(|f| Station {
            seen: all.remove(&f.station).unwrap_or_default(),
            last_verdict: f.last_verdict,
            verdicts_last_hour: f.recent,
            backlog: f.backlog,
        })
        .collect())
}

/// A health state's word (the panel's).
fn health_word(health: &str, lang: Lang) -> &str {
    match health {
        "healthy" => lang.t("healthy"),
        "alert" => lang.t("alert"),
        "escalated" => lang.t("escalated"),
        other => other,
    }
}

fn state_word(state: &str, lang: Lang) -> &str {
    match state {
        "online" => lang.t("online"),
        "offline" => lang.t("offline"),
        "" => lang.t("never seen on the broker"),
        other => other,
    }
}

pub(crate) async fn fleet_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
) -> Result<Markup, Refusal> {
    let lang = who.lang;
    let rows = stations(&web).await?;
    let body = html! {
        p { (lang.f("{0} stations share this plant's database and broker.", &[&rows.len()])) }
        table class="fleet" {
            tr {
                th { (lang.t("Station")) }
                th { (lang.t("State")) }
                th { (lang.t("Model")) }
                th.wide { (lang.t("Recipe")) }
                th { (lang.t("Health")) }
                th { (lang.t("Outbox backlog")) }
                th { (lang.t("Verdicts in the last hour")) }
                th { (lang.t("Last verdict")) }
            }
            @for s in &rows {
                tr class={ "station " (s.seen.state) } data-station=(s.seen.station) {
                    td { a href={ "/?station=" (s.seen.station) } { (s.seen.station) } }
                    td class="state" { (state_word(&s.seen.state, lang)) }
                    td { (s.seen.model.as_deref().unwrap_or("–")) }
                    td.wide { (s.seen.recipe.as_deref().unwrap_or("–")) }
                    td { (s.seen.health.as_deref().map_or("–", |h| health_word(h, lang))) }
                    td class="backlog" { (s.backlog) }
                    td class="recent" { (s.verdicts_last_hour) }
                    td { (s.last_verdict.as_deref().map_or("–".to_string(), |t| local_time(t, true))) }
                }
            }
        }
    };
    Ok(page(lang, lang.t("Fleet"), Some(&who), body))
}

/// `GET /api/v1/fleet`: the same rows as JSON.
pub(crate) async fn api_fleet(
    State(web): State<Web>,
    ApiCaller(_): ApiCaller,
) -> Result<Json<Vec<Station>>, ApiRefusal> {
    Ok(Json(stations(&web).await?))
}

/// The Chinese of this room.
pub(crate) const ZH: &[(&str, &str)] = &[
    ("online", "在线"),
    ("offline", "离线"),
    ("never seen on the broker", "消息服务器上从未出现"),
    (
        "{0} stations share this plant's database and broker.",
        "{0} 个工位共用本厂的数据库和消息服务器。",
    ),
    ("Station", "工位"),
    ("State", "状态"),
    ("Model", "模型"),
    ("Recipe", "配方"),
    ("Health", "健康状态"),
    ("Outbox backlog", "待发送消息"),
    ("Verdicts in the last hour", "最近一小时判定数"),
    ("Last verdict", "最近判定"),
    ("Fleet", "工位总览"),
];
