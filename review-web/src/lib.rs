//! The review UI and its JSON API, served by the appliance: server-rendered
//! HTML that works on a shop-floor touch screen and a desktop browser
//! without a front-end build, and the same data as JSON for the MES.
//!
//! Rooms: [`auth`] (who is asking, sessions, CSRF, sign-in), [`pages`] (the
//! HTML pages), [`api`] (the JSON API), [`respond`] (page shell and shared
//! refusals), [`html`] (escaping), [`charts`] and [`panel`] (server-drawn
//! SVG), `shadow` (a candidate model beside the running one), [`rollout`]
//! (a plant server sending models and standards to stations), [`assets`] (stylesheet, script, the Content-Security-Policy). What
//! they read and write is in the `store` crate.
//!
//! Security: every page but the login needs a session or an API token.
//! Every form and every cookie-authorised API write must echo the session's
//! CSRF token. Reviews need the operator role. Images are served by sha256
//! looked up in the database, never by a path from the request.

mod api;
pub mod assets;
mod auth;
pub mod charts;
pub mod fleet;
pub mod html;
pub mod i18n;
pub mod line;
mod pages;
pub mod panel;
mod pictures;
mod respond;
pub mod rollout;
mod shadow;

pub use auth::{caller, check_api_write, ApiCaller, Caller};
pub use respond::{ApiRefusal, Refusal};

use api::{api_export, api_get, api_health, api_list, api_review};
use auth::{login, login_page, logout};
use axum::routing::{get, post};
use axum::Router;
use pages::{charts_page, export_form, list_page, panel_page, review_form, verdict_page};
use store::accounts::Accounts;
use store::Store;

/// A station's review topic from its name.
pub type ReviewTopic = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;

#[derive(Clone)]
pub struct Web {
    pub accounts: Accounts,
    pub store: Store,
    /// Mark the session cookie `Secure` (the UI is reached over HTTPS).
    pub secure_cookies: bool,
    /// The response-time budget drawn on the latency chart.
    pub latency_budget: std::time::Duration,
    /// What the line view is fed by the station.
    pub line: line::LineFeed,
    /// The topic a review of a station's verdict is published on for the
    /// MES (through that station's outbox); `None` publishes nothing.
    pub review_topic: Option<ReviewTopic>,
    /// The reasons an operator picks from (`review.reasons`).
    pub reasons: Vec<String>,
    /// On a plant server: the stations its broker tells of (the fleet
    /// page); `None` on a station.
    pub fleet: Option<fleet::FleetFeed>,
    /// On a plant server: rollouts of models and standards to stations;
    /// `None` on a station.
    pub rollout: Option<rollout::RolloutDesk>,
}

impl Web {
    /// Records a review and, where the station publishes reviews, its
    /// message for the MES in the same transaction.
    pub(crate) async fn record_review(
        &self,
        verdict_id: &str,
        who: &store::accounts::User,
        review: &store::reviews::NewReview,
    ) -> Result<store::reviews::Review, store::reviews::QueryError> {
        store::reviews::review(
            &self.store,
            verdict_id,
            who,
            review,
            self.review_topic.as_deref(),
        )
        .await
    }
}

/// The review routes, to be merged into the appliance's HTTP server.
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(list_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/language", post(auth::set_language))
        .route("/verdicts/{id}", get(verdict_page))
        .route("/verdicts/{id}/review", post(review_form))
        .route("/reviews/bulk", post(pages::bulk_review))
        .route("/images/{sha}", get(pictures::image))
        .route("/images/{sha}/thumb", get(pictures::thumbnail))
        .route("/api/v1/verdicts", get(api_list))
        .route("/api/v1/verdicts/{id}", get(api_get))
        .route("/api/v1/verdicts/{id}/reviews", post(api_review))
        .route("/charts", get(charts_page))
        .route("/panel", get(panel_page))
        .route("/api/v1/health", get(api_health))
        .route("/export", post(export_form))
        .route("/api/v1/export", post(api_export))
        .route("/line", get(line::line_page))
        .route("/line/events", get(line::line_events))
        .route("/line/reset", post(line::line_reset))
        .route("/line/command", post(line::line_command))
        .route("/api/v1/line", get(line::api_line))
        .route("/shadow", get(shadow::disagreements_page))
        .route("/fleet", get(fleet::fleet_page))
        .route("/api/v1/fleet", get(fleet::api_fleet))
        .route("/shadow/command", post(shadow::shadow_command))
        .route(
            "/rollout",
            get(rollout::rollout_page).post(rollout::rollout_form),
        )
        .route(
            "/api/v1/rollouts",
            get(rollout::api_rollouts).post(rollout::api_send),
        )
        .route(
            "/rollout/packages/{folder}/{file}",
            get(rollout::package_file),
        )
        .route("/assets/line.js", get(assets::line_script))
        .route("/assets/style.css", get(assets::style))
        .route("/assets/review.js", get(assets::review_script))
        .with_state(web)
}
