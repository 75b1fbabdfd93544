//! The review UI and its JSON API, served by the appliance: server-rendered
//! HTML that works on a shop-floor touch screen and a desktop browser
//! without a front-end build, and the same data as JSON for the MES.
//!
//! Security: every page but the login needs a session (cookie `session`,
//! HttpOnly, SameSite=Strict, Secure when `http.secure_cookies`) or an API
//! token (`Authorization: Bearer …`). Every form and every cookie-authorised
//! API write must echo the session's CSRF token. Reviews need the operator
//! role. Images are served by sha256 looked up in the database, never by a
//! path from the request.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::html::esc;
use store::accounts::{AccountError, Accounts, Role, User, SESSION_LIFETIME};
use store::reviews::{self, Corrections, Filter, ListRow, Missed, NewReview, QueryError};
use store::Store;

const COOKIE: &str = "session";

#[derive(Clone)]
pub struct Web {
    pub accounts: Accounts,
    pub store: Store,
    /// Mark the session cookie `Secure` (the UI is reached over HTTPS).
    pub secure_cookies: bool,
    /// The response-time budget drawn on the latency chart.
    pub latency_budget: std::time::Duration,
}

/// The review routes, to be merged into the appliance's HTTP server.
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/", get(list_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/verdicts/{id}", get(verdict_page))
        .route("/verdicts/{id}/review", post(review_form))
        .route("/images/{sha}", get(image))
        .route("/api/v1/verdicts", get(api_list))
        .route("/api/v1/verdicts/{id}", get(api_get))
        .route("/api/v1/verdicts/{id}/reviews", post(api_review))
        .route("/charts", get(charts_page))
        .route("/panel", get(panel_page))
        .route("/api/v1/health", get(api_health))
        .route("/export", post(export_form))
        .route("/api/v1/export", post(api_export))
        .with_state(web)
}

/// Who is asking: a session (with its CSRF token) or an API token.
struct Caller {
    user: User,
    /// `None` for API tokens (no cookie, so no cross-site forgery).
    csrf: Option<String>,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

async fn caller(web: &Web, headers: &HeaderMap) -> Result<Option<Caller>, AccountError> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Ok(web
            .accounts
            .token(token.trim())
            .await?
            .map(|user| Caller { user, csrf: None }));
    }
    let Some(token) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    Ok(web
        .accounts
        .session(&token)
        .await?
        .map(|(user, csrf)| Caller {
            user,
            csrf: Some(csrf),
        }))
}

/// A signed-in caller of a page; an anonymous one is sent to sign in.
struct PageCaller(Caller);

impl FromRequestParts<Web> for PageCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Response> {
        match caller(web, &parts.headers).await {
            Ok(Some(c)) => Ok(PageCaller(c)),
            Ok(None) => Err(unauthorised_page()),
            Err(e) => Err(server_error(e)),
        }
    }
}

/// A signed-in caller of the JSON API; an anonymous one gets 401.
struct ApiCaller(Caller);

impl FromRequestParts<Web> for ApiCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Response> {
        match caller(web, &parts.headers).await {
            Ok(Some(c)) => Ok(ApiCaller(c)),
            Ok(None) => Err(api_unauthorised()),
            Err(e) => Err(server_error(e)),
        }
    }
}

/// Why a page form that changes something is refused, if it is: it needs
/// the session's CSRF token echoed in `csrf` and at least `role` (`what`
/// names the action in the refusal).
fn form_refusal(who: &Caller, csrf: &str, role: Role, what: &str) -> Option<Response> {
    if !who.csrf.as_deref().is_some_and(|c| same(c, csrf)) {
        return Some(forbidden("missing or wrong CSRF token"));
    }
    if who.user.role < role {
        return Some(forbidden(&format!(
            "{what} needs the {} role",
            role.as_str()
        )));
    }
    None
}

/// Why an API write is refused, if it is: a session must send its CSRF
/// token as `X-CSRF-Token` (an API token needs none), and the caller needs
/// at least `role`.
fn api_write_refusal(
    who: &Caller,
    headers: &HeaderMap,
    role: Role,
    what: &str,
) -> Option<Response> {
    let refuse = |msg: String| {
        (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "error": msg })),
        )
            .into_response()
    };
    if let Some(csrf) = &who.csrf {
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same(csrf, sent) {
            return Some(refuse("missing or wrong X-CSRF-Token".into()));
        }
    }
    if who.user.role < role {
        return Some(refuse(format!("{what} needs the {} role", role.as_str())));
    }
    None
}

/// Constant-time comparison of CSRF tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn page(title: &str, who: Option<&Caller>, body: &str) -> Html<String> {
    let nav = match who {
        Some(c) => format!(
            r#"<nav><a href="/">Verdicts</a><a href="/charts">Charts</a><a href="/panel">Panel</a><span>{} ({})</span><form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><button>Sign out</button></form></nav>"#,
            esc(&c.user.name),
            c.user.role.as_str(),
            esc(c.csrf.as_deref().unwrap_or_default())
        ),
        None => String::new(),
    };
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title><style>{CSS}</style></head><body>{nav}<main><h1>{title}</h1>{body}</main></body></html>"#,
        title = esc(title)
    ))
}

/// Drawing a missed defect: drag on the image (mouse, pen or finger); the
/// box, normalised to the image, is appended to the "missed" field as
/// `name x0 y0 x1 y1`. Without script the field can be typed into.
const DRAW: &str = r#"(function(){var f=document.getElementById('part'),t=document.getElementById('missed');if(!f||!t)return;
var svg=f.querySelector('svg'),vb=svg.viewBox.baseVal,s=null,r=null;f.style.touchAction='none';f.style.cursor='crosshair';
function at(e){var b=f.getBoundingClientRect();return[Math.min(1,Math.max(0,(e.clientX-b.left)/b.width)),Math.min(1,Math.max(0,(e.clientY-b.top)/b.height))];}
f.addEventListener('pointerdown',function(e){s=at(e);r=document.createElementNS('http://www.w3.org/2000/svg','rect');r.setAttribute('fill','none');r.setAttribute('stroke','#1f6feb');r.setAttribute('stroke-width',Math.max(2,vb.width/200));r.setAttribute('stroke-dasharray','6 4');svg.appendChild(r);f.setPointerCapture(e.pointerId);e.preventDefault();});
f.addEventListener('pointermove',function(e){if(!s)return;var p=at(e);r.setAttribute('x',Math.min(s[0],p[0])*vb.width);r.setAttribute('y',Math.min(s[1],p[1])*vb.height);r.setAttribute('width',Math.abs(p[0]-s[0])*vb.width);r.setAttribute('height',Math.abs(p[1]-s[1])*vb.height);});
f.addEventListener('pointerup',function(e){if(!s)return;var p=at(e),x0=Math.min(s[0],p[0]),y0=Math.min(s[1],p[1]),x1=Math.max(s[0],p[0]),y1=Math.max(s[1],p[1]);s=null;
if(x1-x0<0.01||y1-y0<0.01){svg.removeChild(r);return;}var n=(document.getElementById('missed-name').value||'missed').trim().replace(/\s+/g,'_');
t.value+=(t.value&&!t.value.endsWith('\n')?'\n':'')+[n,x0.toFixed(3),y0.toFixed(3),x1.toFixed(3),y1.toFixed(3)].join(' ')+'\n';});})();"#;

const CSS: &str = "body{font:16px system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}\
nav{display:flex;gap:1em;align-items:center;padding:.6em 1em;background:#22313f;color:#fff}nav a{color:#fff;font-weight:600}\
nav form{margin-left:auto}main{padding:1em;max-width:1200px;margin:auto}table{border-collapse:collapse;width:100%;background:#fff}\
td,th{padding:.55em .5em;border-bottom:1px solid #ddd;text-align:left}tr:hover{background:#eef3f8}\
.PASS{color:#17692f;font-weight:700}.FAIL{color:#b3261e;font-weight:700}.REVIEW{color:#a15c00;font-weight:700}\
button,input,select,textarea{font:inherit;padding:.5em .7em;min-height:2.6em}button{background:#22313f;color:#fff;border:0;border-radius:4px}\
form.filters{display:flex;flex-wrap:wrap;gap:.5em;margin:1em 0}.err{background:#fde8e6;padding:.8em;border-left:4px solid #b3261e}\
.cols{display:flex;flex-wrap:wrap;gap:1.5em}.cols>div{flex:1 1 420px}figure{margin:0;position:relative}figure svg{position:absolute;left:0;top:0;width:100%;height:100%}\
figure img{width:100%;display:block}svg.chart{display:block;width:100%;max-width:760px;background:#fff;margin:.5em 0 1.5em}blockquote{margin:.3em 0;padding:.4em .8em;border-left:4px solid #b3261e;background:#fff}\
.cards{display:flex;flex-wrap:wrap;gap:1em}.card{flex:1 1 220px;background:#fff;padding:.6em 1em;border-top:6px solid #7a8a99}\
.card.ok{border-color:#2e8540}.card.breached{border-color:#d83933}.card h3{margin:.2em 0;font-size:1em}.card .value{font-size:2em;font-weight:700;margin:.2em 0}\
p.state{padding:.6em 1em;background:#fff;border-left:6px solid #2e8540}p.state.alert{border-color:#f2a900}p.state.escalated{border-color:#d83933;background:#fde8e6}\
tr.alert td,tr.escalated td{color:#b3261e}tr.recovered td{color:#17692f}";

fn unauthorised_page() -> Response {
    Redirect::to("/login").into_response()
}

fn forbidden(msg: &str) -> Response {
    (StatusCode::FORBIDDEN, msg.to_string()).into_response()
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "review UI");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the appliance log",
    )
        .into_response()
}

fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::Invalid(m) => (StatusCode::BAD_REQUEST, m).into_response(),
        QueryError::NotFound(m) => {
            (StatusCode::NOT_FOUND, format!("no verdict `{m}`")).into_response()
        }
        other => server_error(other),
    }
}

/// The sign-in form is protected by a double-submit token: a cookie only
/// this site can set, echoed in the form (no session exists yet).
const LOGIN_COOKIE: &str = "login_csrf";

fn login_response(status: StatusCode, error: &str) -> Response {
    let token = store::accounts::random_token();
    let err = if error.is_empty() {
        String::new()
    } else {
        format!(r#"<p class="err">{}</p>"#, esc(error))
    };
    let html = page(
        "Sign in",
        None,
        &format!(
            r#"{err}<form method="post" action="/login"><input type="hidden" name="csrf" value="{token}"><p><label>User <input name="name" autocomplete="username" required></label></p><p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p><button>Sign in</button></form>"#
        ),
    );
    let cookie =
        format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600");
    (status, [(header::SET_COOKIE, cookie)], html).into_response()
}

async fn login_page() -> Response {
    login_response(StatusCode::OK, "")
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| !f.csrf.is_empty() && same(&c, &f.csrf)) {
        return login_response(
            StatusCode::FORBIDDEN,
            "The sign-in form has expired or did not come from this appliance; please sign in again.",
        );
    }
    match web
        .accounts
        .login(&f.name, &f.password, &peer.ip().to_string())
        .await
    {
        Ok(session) => {
            let secure = if web.secure_cookies { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                session.token,
                SESSION_LIFETIME.as_secs()
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Err(AccountError::WrongCredentials) => {
            login_response(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Err(AccountError::TooManyAttempts(s)) => login_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed sign-ins; try again in {s} s."),
        ),
        Err(e) => server_error(e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    PageCaller(who): PageCaller,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(r) = form_refusal(&who, &f.csrf, Role::Viewer, "signing out") {
        return r;
    }
    if let Some(token) = cookie(&headers, COOKIE) {
        if let Err(e) = web.accounts.logout(&token).await {
            return server_error(e);
        }
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

fn rows_table(rows: &[ListRow]) -> String {
    let mut t = String::from("<table><thead><tr><th>Decided</th><th>Decision</th><th>Part</th><th>Station</th><th>Camera</th><th>Recipe</th><th>Findings</th><th>Reviewed</th></tr></thead><tbody>");
    for r in rows {
        t.push_str(&format!(
            r#"<tr><td><a href="/verdicts/{id}">{at}</a></td><td class="{d}">{d}</td><td>{part}</td><td>{st}</td><td>{cam}</td><td>{rec}</td><td>{n}</td><td>{rev}</td></tr>"#,
            id = esc(&r.id),
            at = esc(&r.decided_at.replace('T', " ")[..19.min(r.decided_at.len())]),
            d = esc(&r.decision),
            part = esc(r.part_id.as_deref().unwrap_or("—")),
            st = esc(&r.station),
            cam = esc(&r.camera),
            rec = esc(&r.recipe),
            n = r.findings,
            rev = esc(r.reviewed.as_deref().unwrap_or("")),
        ));
    }
    t.push_str("</tbody></table>");
    t
}

async fn list_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(f): Query<Filter>,
) -> Response {
    let page_rows = match reviews::list(&web.store, &f).await {
        Ok(p) => p,
        Err(QueryError::Invalid(m)) => {
            return (
                StatusCode::BAD_REQUEST,
                page(
                    "Verdicts",
                    Some(&who),
                    &format!(r#"<p class="err">{}</p>"#, esc(&m)),
                ),
            )
                .into_response()
        }
        Err(e) => return query_error(e),
    };
    let inbox = match reviews::inbox(&web.store, 20).await {
        Ok(i) => i,
        Err(e) => return query_error(e),
    };
    let field = |name: &str, value: &str, hint: &str| {
        format!(
            r#"<input name="{name}" value="{}" placeholder="{hint}" aria-label="{hint}">"#,
            esc(value)
        )
    };
    let select = |name: &str, value: &str, options: &[&str]| {
        let opts: String = options
            .iter()
            .map(|o| {
                let sel = if *o == value { " selected" } else { "" };
                format!(
                    r#"<option value="{o}"{sel}>{}</option>"#,
                    if o.is_empty() { "any" } else { o }
                )
            })
            .collect();
        format!(r#"<select name="{name}" aria-label="{name}">{opts}</select>"#)
    };
    let filters = format!(
        r#"<form class="filters" method="get" action="/">{}{}{}{}{}{}{}{}<button>Filter</button></form>"#,
        field("station", &f.station, "station"),
        field("camera", &f.camera, "camera"),
        field("recipe", &f.recipe, "recipe"),
        select("decision", &f.decision, &["", "PASS", "FAIL", "REVIEW"]),
        field("defect", &f.defect, "defect"),
        field("from", &f.from, "from (YYYY-MM-DD)"),
        field("to", &f.to, "to (YYYY-MM-DD)"),
        select("reviewed", &f.reviewed, &["", "yes", "no"]),
    );
    let next = match &page_rows.next {
        Some(cursor) => {
            let mut q = f.clone();
            q.after = cursor.clone();
            let qs = serde_urlencoded(&q);
            format!(r#"<p><a href="/?{qs}">Older verdicts →</a></p>"#)
        }
        None => String::new(),
    };
    let inbox_html = if inbox.is_empty() {
        "<p>Nothing waiting for review.</p>".to_string()
    } else {
        rows_table(&inbox)
    };
    let export = if who.user.role >= Role::Admin && who.csrf.is_some() {
        format!(
            r#"<form method="post" action="/export"><input type="hidden" name="csrf" value="{}"><button>Export reviewed verdicts for retraining</button></form>"#,
            esc(who.csrf.as_deref().unwrap_or_default())
        )
    } else {
        String::new()
    };
    let body = format!(
        "<h2>Review inbox ({})</h2>{inbox_html}<h2>All verdicts</h2>{filters}{}{next}{export}",
        inbox.len(),
        rows_table(&page_rows.items)
    );
    page("Verdicts", Some(&who), &body).into_response()
}

/// `application/x-www-form-urlencoded` of the non-empty filter fields.
fn serde_urlencoded(f: &Filter) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    [
        ("station", &f.station),
        ("camera", &f.camera),
        ("recipe", &f.recipe),
        ("decision", &f.decision),
        ("from", &f.from),
        ("to", &f.to),
        ("defect", &f.defect),
        ("reviewed", &f.reviewed),
        ("after", &f.after),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", enc(v)))
    .collect::<Vec<_>>()
    .join("&")
}

async fn verdict_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Path(id): Path<String>,
) -> Response {
    let d = match reviews::detail(&web.store, &id).await {
        Ok(d) => d,
        Err(e) => return query_error(e),
    };
    let v: record::Verdict = match serde_json::from_value(d.verdict) {
        Ok(v) => v,
        Err(e) => {
            return server_error(format!(
                "stored verdict {id} does not read as verdict/v1: {e}"
            ))
        }
    };
    let findings = &v.findings;
    let (w, h) = (
        f64::from(v.image.width.max(1)),
        f64::from(v.image.height.max(1)),
    );
    let mut boxes = String::new();
    let mut rows = String::new();
    for (i, f) in findings.iter().enumerate() {
        let b = f.box_norm.map(f64::from);
        let violates = f.clause.is_some();
        let colour = if violates { "#e3261b" } else { "#f2a900" };
        boxes.push_str(&format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{colour}" stroke-width="{sw:.1}"/><text x="{:.1}" y="{:.1}" fill="{colour}" font-size="{fs:.1}" font-weight="700">{} {}</text>"#,
            b[0] * w,
            b[1] * h,
            (b[2] - b[0]) * w,
            (b[3] - b[1]) * h,
            b[0] * w,
            (b[1] * h - 3.0).max(12.0),
            i + 1,
            esc(&f.defect),
            sw = (w / 200.0).max(2.0),
            fs = (w / 28.0).max(11.0),
        ));
        let clause = if violates {
            let label = f
                .clause_label
                .clone()
                .or_else(|| f.clause.map(|c| c.to_string()))
                .unwrap_or_default();
            format!(
                "<blockquote>Clause {}: {}</blockquote>",
                esc(&label),
                esc(f.clause_text.as_deref().unwrap_or_default())
            )
        } else if v.decision == record::Decision::Review {
            // Not confirmed: the consistency check may have found that the
            // standard rejects it.
            "the model calls it tolerated (not confirmed)".to_string()
        } else {
            "tolerated by the standard".to_string()
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{clause}</td><td>{:.2}</td><td>{} mm</td></tr>",
            i + 1,
            esc(&f.defect),
            f.confidence,
            f.size_mm
        ));
    }
    let image = match (&d.image_deleted, v.image.not_kept.as_deref()) {
        (_, Some(why)) => format!(r#"<p class="err">Image not kept: {}</p>"#, esc(why)),
        (Some(why), _) => format!(
            r#"<p class="err">Image deleted by retention ({}).</p>"#,
            esc(why)
        ),
        _ => format!(
            r#"<figure id="part"><img src="/images/{sha}" alt="part image"><svg viewBox="0 0 {w} {h}" preserveAspectRatio="none" role="img" aria-label="findings">{boxes}</svg></figure>"#,
            sha = esc(&v.image.sha256)
        ),
    };
    let reviews: String = d
        .reviews
        .iter()
        .map(|r| {
            format!(
                "<li>{} — <b>{}</b> by {} ({}): {}{}</li>",
                esc(&r.created_at),
                esc(&r.decision),
                esc(&r.reviewer),
                if r.agrees { "confirmed" } else { "overridden" },
                esc(&r.reason),
                if r.corrections == Corrections::default() {
                    String::new()
                } else {
                    format!(
                        " — corrections: {}",
                        esc(&serde_json::to_string(&r.corrections).unwrap_or_default())
                    )
                }
            )
        })
        .collect();
    let reviews = if reviews.is_empty() {
        "<li>None yet.</li>".to_string()
    } else {
        reviews
    };
    let form = if who.user.role >= Role::Operator && who.csrf.is_some() {
        let per_finding: String = (0..findings.len())
            .map(|i| format!(r#"<label><input type="checkbox" name="wrong" value="{i}"> finding {} is wrong</label><br>"#, i + 1))
            .collect();
        format!(
            r#"<h2>Review</h2><form method="post" action="/verdicts/{id}/review"><input type="hidden" name="csrf" value="{csrf}">
<p>Decision: <label><input type="radio" name="decision" value="PASS" required> PASS</label> <label><input type="radio" name="decision" value="FAIL"> FAIL</label></p>
<p>{per_finding}</p><p><label>Missed defect: <input id="missed-name" value="" placeholder="defect name, then drag a box on the image"></label></p>
<p><label>Missed defects, one per line: <code>name x0 y0 x1 y1</code> (0–1 of the image; drawn boxes land here)<br><textarea id="missed" name="missed" rows="3" cols="50"></textarea></label></p>
<p><label>Reason<br><textarea name="reason" rows="3" cols="50" required></textarea></label></p><button>Record review</button></form><script>{DRAW}</script>"#,
            id = esc(&id),
            csrf = esc(who.csrf.as_deref().unwrap_or_default()),
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<div class="cols"><div>{image}</div><div><p class="{dec}" style="font-size:1.6em">{dec}</p>
{why}<p>Part <b>{part}</b> · camera {cam} · station {st} · confidence {conf:.2}</p>
<table><thead><tr><th>#</th><th>Defect</th><th>Violates</th><th>Confidence</th><th>Size</th></tr></thead><tbody>{rows}</tbody></table>
<p>Recipe <b>{recipe}</b>, standard <code>{std_sha}</code> · model {model} {mver}</p>
<p>Captured {cap} · decided {dec_at} · inference {inf} ms</p>
<details><summary>The standard this verdict was judged against</summary><pre>{standard}</pre></details>
<h2>Reviews</h2><ul>{reviews}</ul>{form}</div></div>"#,
        dec = v.decision,
        part = esc(v.part_id.as_deref().unwrap_or("—")),
        cam = esc(&v.camera),
        st = esc(&v.station.station),
        conf = v.confidence,
        why = v
            .review_reason
            .as_deref()
            .map(|r| format!(
                r#"<p class="why"><b>Why a person must decide:</b> {}</p>"#,
                esc(r)
            ))
            .unwrap_or_default(),
        recipe = esc(&v.recipe),
        std_sha = esc(v.standard_sha256.get(..12).unwrap_or(&v.standard_sha256)),
        model = esc(&v.model.name),
        mver = esc(&v.model.version),
        cap = esc(&v.timings.captured_at),
        dec_at = esc(&v.timings.decided_at),
        inf = v.timings.inference_ms,
        standard = esc(&d.standard),
    );
    page(&format!("Verdict {}", &id), Some(&who), &body).into_response()
}

#[derive(Deserialize)]
struct Window {
    #[serde(default = "day")]
    hours: i64,
}

fn day() -> i64 {
    24
}

async fn charts_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(w): Query<Window>,
) -> Response {
    let hours = w.hours.clamp(1, 24 * 14);
    let c = match store::charts::load(&web.store, hours).await {
        Ok(c) => c,
        Err(e) => return server_error(e),
    };
    let windows: String = [24, 72, 168, 336]
        .iter()
        .map(|h| format!(r#"<a href="/charts?hours={h}">{h} h</a> "#))
        .collect();
    let body = format!(
        "<p>Window: the last {hours} hours (UTC) · {windows}</p><h2>Pass and fail per hour</h2>{}<h2>Defect Pareto</h2>{}<h2>Response latency per hour</h2>{}",
        super::charts::rate_svg(&c.hours),
        super::charts::pareto_svg(&c.pareto),
        super::charts::latency_svg(&c.hours, web.latency_budget.as_secs_f64() * 1e3),
    );
    page("Charts", Some(&who), &body).into_response()
}

async fn panel_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(w): Query<Window>,
) -> Response {
    let hours = w.hours.clamp(1, 24 * 90);
    match super::panel::load(&web.store, hours).await {
        Ok(p) => page("Monitoring", Some(&who), &super::panel::render(&p, hours)).into_response(),
        Err(e) => server_error(e),
    }
}

/// The health figures now and the latest self-healing events.
async fn api_health(State(web): State<Web>, ApiCaller(_who): ApiCaller) -> Response {
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
async fn export_now(web: &Web) -> Result<store::export::Exported, store::StoreError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let out = web.store.data_dir().join("exports").join(stamp);
    store::export::export(&web.store, &out, "").await
}

async fn export_form(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(r) = form_refusal(&who, &f.csrf, Role::Admin, "exporting") {
        return r;
    }
    match export_now(&web).await {
        Ok(r) => page(
            "Export for retraining",
            Some(&who),
            &format!(
                "<p>{} reviewed verdicts written to <code>{}</code> ({} left out: image gone).</p><p>Fine-tune with <code>python -m toolchain.finetune --base … --images … --standard … --reviews {}</code>.</p>",
                r.records,
                esc(&r.file.display().to_string()),
                r.without_image,
                esc(&r.file.parent().map(|p| p.display().to_string()).unwrap_or_default()),
            ),
        )
        .into_response(),
        Err(e) => server_error(e),
    }
}

async fn api_export(
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

/// The review form: decision, wrong findings, missed boxes, reason.
fn parse_review_form(pairs: &[(String, String)]) -> Result<NewReview, String> {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut wrong = Vec::new();
    for (_, v) in pairs.iter().filter(|(k, _)| k == "wrong") {
        wrong.push(
            v.parse::<usize>()
                .map_err(|_| format!("`{v}` is not a finding number"))?,
        );
    }
    let mut missed = Vec::new();
    for line in get("missed")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let nums: Result<Vec<f32>, _> = parts.iter().skip(1).map(|p| p.parse::<f32>()).collect();
        match (parts.first(), nums) {
            (Some(name), Ok(n)) if n.len() == 4 => missed.push(Missed {
                defect: name.to_string(),
                box_norm: [n[0], n[1], n[2], n[3]],
            }),
            _ => {
                return Err(format!(
                    "`{line}`: write a missed defect as `name x0 y0 x1 y1`"
                ))
            }
        }
    }
    Ok(NewReview {
        decision: get("decision").unwrap_or_default(),
        reason: get("reason").unwrap_or_default(),
        corrections: Corrections {
            wrong_findings: wrong,
            missed,
        },
    })
}

async fn review_form(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    // Who may act is settled before anything the form says is read.
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str());
    if let Some(r) = form_refusal(&who, csrf, Role::Operator, "reviewing") {
        return r;
    }
    let review = match parse_review_form(&pairs) {
        Ok(r) => r,
        Err(m) => return (StatusCode::BAD_REQUEST, m).into_response(),
    };
    match reviews::review(&web.store, &id, &who.user, &review).await {
        Ok(_) => Redirect::to(&format!("/verdicts/{id}")).into_response(),
        Err(e) => query_error(e),
    }
}

async fn image(State(web): State<Web>, headers: HeaderMap, Path(sha): Path<String>) -> Response {
    match caller(&web, &headers).await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(e) => return server_error(e),
    }
    // Only a content address is accepted; the file path comes from the database.
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (StatusCode::NOT_FOUND, "no such image").into_response();
    }
    let path: Option<String> = match sqlx::query_scalar(
        "SELECT path FROM images WHERE sha256 = $1 AND deleted_at IS NULL AND path <> ''",
    )
    .bind(sha.to_ascii_lowercase())
    .fetch_optional(web.store.pool())
    .await
    {
        Ok(p) => p,
        Err(e) => return server_error(e),
    };
    let Some(path) = path else {
        return (StatusCode::NOT_FOUND, "no such image").into_response();
    };
    let mime = if path.ends_with(".jpg") || path.ends_with(".jpeg") {
        "image/jpeg"
    } else {
        "image/png"
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, mime),
                (header::CACHE_CONTROL, "private, max-age=86400"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "image file is gone").into_response(),
    }
}

fn api_unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"error": "sign in or send Authorization: Bearer <token>"})),
    )
        .into_response()
}

fn api_error(e: QueryError) -> Response {
    let (status, msg) = match &e {
        QueryError::Invalid(m) => (StatusCode::BAD_REQUEST, m.clone()),
        QueryError::NotFound(_) => (StatusCode::NOT_FOUND, e.to_string()),
        _ => return server_error(e),
    };
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn api_list(
    State(web): State<Web>,
    ApiCaller(_who): ApiCaller,
    Query(f): Query<Filter>,
) -> Response {
    match reviews::list(&web.store, &f).await {
        Ok(p) => Json(p).into_response(),
        Err(e) => api_error(e),
    }
}

async fn api_get(
    State(web): State<Web>,
    ApiCaller(_who): ApiCaller,
    Path(id): Path<String>,
) -> Response {
    match reviews::detail(&web.store, &id).await {
        Ok(d) => Json(d).into_response(),
        Err(e) => api_error(e),
    }
}

async fn api_review(
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
    match reviews::review(&web.store, &id, &who.user, &review).await {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(e) => api_error(e),
    }
}
