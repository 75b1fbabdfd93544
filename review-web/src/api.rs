//! The JSON API for the MES and scripts: verdicts (list, one, reviews),
//! health and export. Same data and rules as the pages; an API token needs
//! no CSRF token, a session does.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::auth::{check_api_write, ApiCaller};
use crate::respond::{ApiRefusal, Refusal};
use crate::Web;
use store::accounts::Role;
use store::reviews::{self, Filter, NewReview};

/// The health figures now and the latest self-healing events.
pub(crate) async fn api_health(
    State(web): State<Web>,
    ApiCaller(_who): ApiCaller,
) -> Result<impl IntoResponse, ApiRefusal> {
    let events = store::health_history::events(&web.store, 50)
        .await
        .map_err(Refusal::internal)?;
    Ok(Json(serde_json::json!({
        "health": telemetry::health::snapshot(),
        "events": events,
    })))
}

/// A fresh export folder under the data folder.
pub(crate) async fn export_now(web: &Web) -> Result<store::export::Exported, store::StoreError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let out = web.store.data_dir().join("exports").join(stamp);
    store::export::export(&web.store, &out, "").await
}

pub(crate) async fn api_export(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiCaller(who): ApiCaller,
) -> Result<impl IntoResponse, ApiRefusal> {
    check_api_write(&who, &headers, Role::Admin, "exporting")?;
    Ok(Json(export_now(&web).await.map_err(Refusal::internal)?))
}

pub(crate) async fn api_list(
    State(web): State<Web>,
    ApiCaller(_who): ApiCaller,
    Query(f): Query<Filter>,
) -> Result<impl IntoResponse, ApiRefusal> {
    Ok(Json(reviews::list(&web.store, &f).await?))
}

pub(crate) async fn api_get(
    State(web): State<Web>,
    ApiCaller(_who): ApiCaller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiRefusal> {
    Ok(Json(reviews::detail(&web.store, &id).await?))
}

pub(crate) async fn api_review(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiCaller(who): ApiCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiRefusal> {
    check_api_write(&who, &headers, Role::Operator, "reviewing")?;
    let review: NewReview = serde_json::from_slice(&body)
        .map_err(|e| Refusal::Invalid(format!("not a review: {e}")))?;
    let r = web.record_review(&id, &who.user, &review).await?;
    Ok((StatusCode::CREATED, Json(r)))
}
