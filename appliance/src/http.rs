//! The appliance's HTTP API. For now: triggers (`POST /api/v1/trigger`, the
//! same JSON as the MQTT `cmd/trigger` payload and the same reply), camera
//! health (`GET /api/v1/cameras`) and the MQTT backlog (`GET
//! /api/v1/outbox`), Prometheus metrics (`/metrics`), health (`/healthz`,
//! `/readyz`), and the review UI and its API (`review_web`).
//!
//! Who may: `/healthz` and `/readyz` are open (a load balancer or systemd
//! asks them; `/readyz` tells a stranger only whether the station is ready
//! and what it waits for, no model, standard or backlog). Everything else
//! needs an API token or a session: reading is for viewers, a trigger for
//! operators, with the session's CSRF token and a JSON body, so no other web
//! page an operator opens can fire one. `/metrics` is open only when
//! `http.open_metrics` says so (a scraper on a closed network).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use vision::sources::health::CameraHealth;

use crate::cameras::Triggers;
use crate::commands::{self, Failure};
use review_web::{check_api_write, ApiCaller, ApiRefusal, Refusal, Web};
use store::accounts::Role;

/// The largest request body taken (a review with its drawn boxes, a
/// trigger, a sign-in are a few kB); larger ones get 413 before they are
/// read.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct Api {
    triggers: Triggers,
    health: Arc<Vec<Arc<CameraHealth>>>,
    store: store::Store,
    /// Sessions and tokens, shared with the review UI.
    web: Web,
    /// `http.open_metrics`: `/metrics` without credentials.
    open_metrics: bool,
}

impl FromRef<Api> for Web {
    fn from_ref(api: &Api) -> Web {
        api.web.clone()
    }
}

async fn trigger(
    State(api): State<Api>,
    ApiCaller(who): ApiCaller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiRefusal> {
    check_api_write(&who, &headers, Role::Operator, "a trigger")?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Refusal::UnsupportedType(
            "a trigger is sent as Content-Type: application/json".into(),
        )
        .into());
    }
    let reply = commands::handle("trigger", &body, &api.triggers);
    let status = match reply.kind {
        Failure::None => StatusCode::OK,
        Failure::Malformed => StatusCode::BAD_REQUEST,
        Failure::Unknown => StatusCode::NOT_FOUND,
        Failure::Conflict => StatusCode::CONFLICT,
        Failure::Busy => StatusCode::TOO_MANY_REQUESTS,
        Failure::Failed => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok((status, Json(reply)).into_response())
}

async fn cameras(State(api): State<Api>, _: ApiCaller) -> impl IntoResponse {
    Json(api.health.iter().map(|h| h.snapshot()).collect::<Vec<_>>())
}

async fn outbox(State(api): State<Api>, _: ApiCaller) -> Result<impl IntoResponse, ApiRefusal> {
    let backlog = api.store.backlog().await.map_err(Refusal::internal)?;
    Ok(Json(backlog))
}

/// Prometheus text format; a viewer's token (`authorization: credentials`
/// in Prometheus) unless `http.open_metrics`.
async fn metrics(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiRefusal> {
    if !api.open_metrics {
        review_web::caller(&api.web, &headers)
            .await
            .map_err(Refusal::internal)?
            .ok_or(ApiRefusal(Refusal::SignIn))?;
    }
    let cameras: Vec<_> = api
        .health
        .iter()
        .map(|h| {
            let s = h.snapshot();
            telemetry::metrics::CameraState {
                camera: s.camera,
                up: s.up,
                dropped: s.dropped,
                reconnects: s.reconnects,
            }
        })
        .collect();
    let pending = api.store.backlog().await.ok().map(|b| b.pending);
    Ok((
        [(header::CONTENT_TYPE, telemetry::exposition::CONTENT_TYPE)],
        telemetry::exposition::render(&cameras, pending),
    )
        .into_response())
}

/// Alive: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to inspect: a model is loaded, the store answers (verdicts are
/// kept, and buffered in the outbox when the broker is away), and every
/// camera is up. 503 names what it waits for; the details (which model,
/// which camera, the backlog) are for signed-in callers only.
async fn readyz(State(api): State<Api>, headers: HeaderMap) -> impl IntoResponse {
    let model = telemetry::metrics::info();
    let store = api.store.backlog().await;
    let down: Vec<String> = api
        .health
        .iter()
        .map(|h| h.snapshot())
        .filter(|c| !c.up)
        .map(|c| c.camera)
        .collect();
    let ready = model.is_some() && store.is_ok() && down.is_empty();
    let waiting_for: Vec<&str> = [
        (model.is_none(), "model"),
        (store.is_err(), "store"),
        (!down.is_empty(), "cameras"),
    ]
    .into_iter()
    .filter_map(|(waiting, what)| waiting.then_some(what))
    .collect();
    let signed_in = matches!(review_web::caller(&api.web, &headers).await, Ok(Some(_)));
    let body = if signed_in {
        serde_json::json!({
            "ready": ready,
            "waiting_for": waiting_for,
            "model": model.map(|i| format!("{} {}", i.model_name, i.model_version)),
            "store": match &store { Ok(_) => "ok".to_string(), Err(e) => e.to_string() },
            "broker": if telemetry::metrics::is_mqtt_connected() { "connected" } else { "buffering in the outbox" },
            "outbox_pending": store.as_ref().ok().map(|b| b.pending),
            "cameras_down": down,
        })
    } else {
        serde_json::json!({ "ready": ready, "waiting_for": waiting_for })
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// The HTTP API's listener: the one handed over (systemd socket
/// activation, or a test that bound port 0), else `addr` bound now.
pub async fn listen(
    handed: Option<std::net::TcpListener>,
    addr: SocketAddr,
) -> std::io::Result<tokio::net::TcpListener> {
    match handed {
        Some(l) => {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        }
        None => tokio::net::TcpListener::bind(addr).await,
    }
}

/// Serves on `listener` until `shutdown` turns true. Returns the address it
/// serves on and the server task.
pub fn start(
    listener: tokio::net::TcpListener,
    triggers: Triggers,
    health: Vec<Arc<CameraHealth>>,
    web: Web,
    open_metrics: bool,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let store = web.store.clone();
    let review = review_web::router(web.clone());
    let app = Router::new()
        .route("/api/v1/trigger", post(trigger))
        .route("/api/v1/cameras", get(cameras))
        .route("/api/v1/outbox", get(outbox))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Api {
            triggers,
            health: Arc::new(health),
            store,
            web,
            open_metrics,
        })
        .merge(review)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(review_web::assets::CONTENT_SECURITY_POLICY),
        ))
        // Verdicts, images and sessions stay out of shared caches and the
        // browser's history cache; images and assets say otherwise.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        // The peer address feeds the limit on failed sign-ins.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tracing::info!(address = %bound, "HTTP API listening");
    Ok((bound, task))
}
