//! The JSON API for the MES and scripts: verdicts (list, one, reviews),
//! health and export. Same data and rules as the pages; an API token needs
//! no CSRF token, a session does.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::{api_write_refusal, ApiCaller};
use crate::respond::{api_error, server_error};
use crate::Web;
use store::accounts::Role;
use store::reviews::{self, Filter, NewReview};

/// The health figures now and the latest self-healing events.
pub(crate) async fn api_health(State(web): State<Web>, ApiCaller(_who): ApiCaller) -> Response {
    match store::health_history::events(&web.store, 50).await {
        Ok(events) => Json(serde_json::json!({
            "health": telemetry::health::snapshot(),
            "events": events,
        }))
        .into_response(),
        Err(e) => server_error(e),
    }
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
) -> Response {
    if let Some(r) = api_write_refusal(&who, &headers, Role::Admin, "exporting") {
        return r;
    }
    match export_now(&web).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => server_error(e),
    }
}

pub(crate) async fn api_list(
    State(web): State<Web>,
    ApiCaller(_who): ApiCaller,
    Query(f): Query<Filter>,
) -> Response {
    match reviews::list(&web.store, &f).await {
        Ok(p) => Json(p).into_response(),
        Err(e) => api_error(e),
    }
}

pub(crate) async fn api_get(
    State(web): State<Web>,
    ApiCaller(_who): ApiCaller,
    Path(id): Path<String>,
) -> Response {
    match reviews::detail(&web.store, &id).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => api_error(e),
    }
}

pub(crate) async fn api_review(
    State(web): State<Web>,
    headers: HeaderMap,
    ApiCaller(who): ApiCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = api_write_refusal(&who, &headers, Role::Operator, "reviewing") {
        return r;
    }
    let review: NewReview = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": format!("not a review: {e}")})),
            )
                .into_response()
        }
    };
    match web.record_review(&id, &who.user, &review).await {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(e) => api_error(e),
    }
}
