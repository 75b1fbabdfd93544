//! The page shell (header, navigation, style) and the one way a request is
//! refused: [`Refusal`], grouped by what the caller can do about it, written
//! as text for a page and as `{"error": …}` for the JSON API ([`ApiRefusal`]).
//!
//! Pages are built with `maud`: every value placed in a page is escaped by
//! construction; only markup this crate writes itself is ever unescaped.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup, DOCTYPE};

use crate::auth::Caller;
use crate::i18n::Lang;
use store::reviews::QueryError;

/// A page in `lang`: the navigation (with the language switch) for a
/// signed-in caller, the title and `body`.
pub(crate) fn page(lang: Lang, title: &str, who: Option<&Caller>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                @if let Some(c) = who {
                    nav {
                        @if c.plant {
                            a href="/fleet" { (lang.t("Fleet")) }
                            a href="/" { (lang.t("Verdicts")) }
                            a href="/charts" { (lang.t("Charts")) }
                            a href="/rollout" { (lang.t("Rollout")) }
                        } @else {
                            a href="/line" { (lang.t("Line")) }
                            a href="/" { (lang.t("Verdicts")) }
                            a href="/charts" { (lang.t("Charts")) }
                            a href="/panel" { (lang.t("Panel")) }
                        }
                        span { (c.user.name) " (" (lang.t(c.user.role.as_str())) ")" }
                        @if let Some(csrf) = &c.csrf {
                            (language_switch(lang, c, csrf))
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button { (lang.t("Sign out")) }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The person's language: English, Chinese, or the browser's.
fn language_switch(lang: Lang, c: &Caller, csrf: &str) -> Markup {
    let chosen = c.user.language.as_deref().unwrap_or_default();
    html! {
        form class="lang" method="post" action="/language" {
            input type="hidden" name="csrf" value=(csrf);
            select name="language" aria-label=(lang.t("Language")) {
                option value="" selected[chosen.is_empty()] { (lang.t("Browser language")) }
                option value="en" selected[chosen == "en"] { "English" }
                option value="zh" selected[chosen == "zh"] { "中文" }
            }
            button { (lang.t("Use")) }
        }
    }
}

/// The shell's Chinese.
pub(crate) const ZH: &[(&str, &str)] = &[
    ("Line", "产线"),
    ("Verdicts", "判定"),
    ("Charts", "图表"),
    ("Panel", "监控"),
    // The roles, as `Role::as_str` names them.
    ("viewer", "查看者"),
    ("operator", "操作员"),
    ("admin", "管理员"),
    ("Sign out", "退出"),
    ("Language", "语言"),
    ("Browser language", "浏览器语言"),
    ("Use", "切换"),
];

/// The stylesheet, served as `/assets/style.css` (the Content-Security-Policy
/// allows no inline style).
pub(crate) const CSS: &str = "body{font:16px system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}\
nav{display:flex;gap:1em;align-items:center;padding:.6em 1em;background:#22313f;color:#fff}nav a{color:#fff;font-weight:600}\
nav form{margin-left:auto}nav form.lang{margin-left:auto}nav form.lang+form{margin-left:0}nav select{min-height:2.2em}main{padding:1em;max-width:1200px;margin:auto}table{border-collapse:collapse;width:100%;background:#fff}\
td,th{padding:.55em .5em;border-bottom:1px solid #ddd;text-align:left}tr:hover{background:#eef3f8}\
.PASS{color:#17692f;font-weight:700}.FAIL{color:#b3261e;font-weight:700}.REVIEW{color:#a15c00;font-weight:700}\
button,input,select,textarea{font:inherit;padding:.5em .7em;min-height:2.6em}button{background:#22313f;color:#fff;border:0;border-radius:4px}\
form.filters{display:flex;flex-wrap:wrap;gap:.5em;margin:1em 0}.err{background:#fde8e6;padding:.8em;border-left:4px solid #b3261e}\
.cols{display:flex;flex-wrap:wrap;gap:1.5em}.cols>div{flex:1 1 420px}figure{margin:0;position:relative}figure svg{position:absolute;left:0;top:0;width:100%;height:100%}\
figure img{width:100%;display:block}svg.chart{display:block;width:100%;max-width:760px;background:#fff;margin:.5em 0 1.5em}blockquote{margin:.3em 0;padding:.4em .8em;border-left:4px solid #b3261e;background:#fff}\
.cards{display:flex;flex-wrap:wrap;gap:1em}.card{flex:1 1 220px;background:#fff;padding:.6em 1em;border-top:6px solid #7a8a99}\
.card.ok{border-color:#2e8540}.card.breached{border-color:#d83933}.card h3{margin:.2em 0;font-size:1em}.card .value{font-size:2em;font-weight:700;margin:.2em 0}\
p.state{padding:.6em 1em;background:#fff;border-left:6px solid #2e8540}p.state.alert{border-color:#f2a900}p.state.escalated{border-color:#d83933;background:#fde8e6}\
tr.alert td,tr.escalated td{color:#b3261e}tr.recovered td{color:#17692f}p.headline{font-size:1.6em;margin-bottom:.2em}p.judged{color:#555;margin-top:0}\
.line{display:flex;flex-wrap:wrap;gap:1.5em}.line .now{flex:3 1 480px}.line aside{flex:1 1 260px}\
.lamp{font-size:clamp(3em,12vw,9em);font-weight:900;text-align:center;color:#fff;background:#7a8a99;border-radius:12px;padding:.1em .3em;letter-spacing:.05em}\
.lamp.PASS{background:#1e7b34}.lamp.FAIL{background:#c0231a}.lamp.REVIEW{background:#b36b00}\
figure.latest{margin:.5em auto;position:relative;max-width:62vh}figure.latest img{width:100%;display:block}figure.latest svg{position:absolute;left:0;top:0;width:100%;height:100%}\
.counters{display:grid;grid-template-columns:1fr 1fr;gap:.5em}.counters div{background:#fff;padding:.4em .6em}.counters span{display:block;font-size:.85em;color:#555}.counters b{font-size:2em}\
.counters .PASS b{color:#17692f}.counters .FAIL b{color:#b3261e}.counters .REVIEW b{color:#a15c00}p.since{font-size:.9em;color:#555}\
button.big{min-height:48px;min-width:48px;font-size:1.1em}ul.states{list-style:none;padding:0}ul.states li{padding:.3em .5em;margin:.2em 0;background:#fff;border-left:6px solid #7a8a99}\
ul.states li.up{border-color:#2e8540}ul.states li.down{border-color:#d83933;color:#b3261e;font-weight:700}p.live{color:#2e8540}p.live.down{color:#b3261e;font-weight:700}\
.strip{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:.5em}.thumb{display:block;background:#fff;border-top:6px solid #7a8a99;text-decoration:none;color:inherit}\
.thumb.PASS{border-color:#1e7b34}.thumb.FAIL{border-color:#c0231a}.thumb.REVIEW{border-color:#b36b00}.thumb img{width:100%;display:block}.thumb span{display:block;padding:.2em .4em;font-size:.85em}\
form.act{background:#fff;padding:.5em;margin:0 0 .6em}form.act label{display:block;margin-bottom:.3em}p.said{background:#eef3f8;padding:.6em;border-left:6px solid #22313f}\
form.tap{background:#fff;padding:.6em 1em}form.tap select,form.tap input{min-height:48px;max-width:100%}p.taps{display:flex;flex-wrap:wrap;gap:.8em}\
button.tap{min-height:64px;min-width:48px;font-size:1.35em;font-weight:700;padding:.3em 1.2em}button.tap.PASS{background:#1e7b34}button.tap.FAIL{background:#c0231a}p.keys{color:#555;font-size:.9em}input.pick{width:28px;height:28px}\
td.pic{width:96px;padding:.2em}td.pic img{width:96px;height:auto;display:block;background:#ddd}@media (max-width:900px){.wide{display:none}}\
.zoom{overflow:hidden;position:relative;background:#222;cursor:grab}p.zoombar{margin:.3em 0}p.zoombar button{min-width:48px;min-height:48px;margin-right:.3em}p.zoombar span{color:#555;font-size:.9em}";

/// Why a request is refused, by what the caller can do about it.
#[derive(Debug)]
pub enum Refusal {
    /// Not signed in: a page sends the browser to sign in, the API says how.
    SignIn,
    /// Signed in, but not allowed (role, CSRF token).
    Forbidden(String),
    /// What was sent does not make sense; the message says why.
    Invalid(String),
    /// No such thing.
    NotFound(String),
    /// Not now: too many attempts, try again later.
    TooMany(String),
    /// The request body is not of the type this endpoint reads.
    UnsupportedType(String),
    /// Our fault: logged in full, the caller is told to read the log.
    Internal(String),
}

impl Refusal {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            Refusal::SignIn => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the caller is told (an internal error is logged here, once).
    fn message(self) -> String {
        match self {
            Refusal::SignIn => "sign in or send Authorization: Bearer <token>".into(),
            Refusal::Internal(e) => {
                tracing::error!(error = %e, "review UI");
                "internal error; see the appliance log".into()
            }
            Refusal::Forbidden(m)
            | Refusal::Invalid(m)
            | Refusal::NotFound(m)
            | Refusal::TooMany(m)
            | Refusal::UnsupportedType(m) => m,
        }
    }
}

impl From<QueryError> for Refusal {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(m) => Refusal::Invalid(m),
            QueryError::NotFound(m) => Refusal::NotFound(format!("no verdict `{m}`")),
            other => Refusal::internal(other),
        }
    }
}

/// For a page: plain text, and a browser that is not signed in is sent to
/// the sign-in page.
impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if let Refusal::SignIn = self {
            return Redirect::to("/login").into_response();
        }
        (self.status(), self.message()).into_response()
    }
}

/// A refusal as the JSON API writes it: `{"error": "…"}` with its status.
#[derive(Debug)]
pub struct ApiRefusal(pub Refusal);

impl From<Refusal> for ApiRefusal {
    fn from(r: Refusal) -> Self {
        ApiRefusal(r)
    }
}

impl From<QueryError> for ApiRefusal {
    fn from(e: QueryError) -> Self {
        ApiRefusal(e.into())
    }
}

impl IntoResponse for ApiRefusal {
    fn into_response(self) -> Response {
        let status = self.0.status();
        (
            status,
            Json(serde_json::json!({ "error": self.0.message() })),
        )
            .into_response()
    }
}
