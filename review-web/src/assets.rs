//! The stylesheet and the scripts, served from the binary (no front-end
//! build, no CDN) so that the Content-Security-Policy can forbid anything
//! inline: an injected `<script>` or `style` attribute does nothing.

use axum::http::header;
use axum::response::IntoResponse;

/// What every response says the browser may load and who may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Assets change only with the binary; an hour is short enough for an upgrade.
const CACHE: &str = "public, max-age=3600";

pub(crate) async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        crate::respond::CSS,
    )
}

pub(crate) async fn review_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        include_str!("../assets/review.js"),
    )
}

/// The line view's live updates (`review-web/assets/line.js`).
pub(crate) async fn line_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        include_str!("../assets/line.js"),
    )
}
