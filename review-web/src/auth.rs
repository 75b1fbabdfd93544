//! Who is asking and whether they may: sessions (cookie `session`, HttpOnly,
//! SameSite=Strict, Secure when `http.secure_cookies`) with their CSRF
//! token, API tokens (`Authorization: Bearer …`), the extractors that give
//! every handler its signed-in caller, the CSRF and role checks for what
//! changes something, and signing in and out.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::i18n::Lang;
use crate::respond::{page, ApiRefusal, Refusal};
use crate::Web;
use store::accounts::{AccountError, Role, User, SESSION_LIFETIME};

const COOKIE: &str = "session";

/// Who is asking: a session (with its CSRF token) or an API token.
pub struct Caller {
    pub user: User,
    /// `None` for API tokens (no cookie, so no cross-site forgery).
    pub csrf: Option<String>,
    /// The language the pages speak to this caller.
    pub lang: Lang,
    /// Served by a plant server: the navigation offers the fleet instead
    /// of a line view and a station's panel.
    pub plant: bool,
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

/// The signed-in caller of a request, if any.
pub async fn caller(web: &Web, headers: &HeaderMap) -> Result<Option<Caller>, AccountError> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Ok(web.accounts.token(token.trim()).await?.map(|user| Caller {
            lang: Lang::of(None, headers),
            user,
            csrf: None,
            plant: web.fleet.is_some(),
        }));
    }
    let Some(token) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    Ok(web
        .accounts
        .session(&token)
        .await?
        .map(|(user, csrf)| Caller {
            lang: Lang::of(user.language.as_deref(), headers),
            user,
            csrf: Some(csrf),
            plant: web.fleet.is_some(),
        }))
}

/// A signed-in caller of a page; an anonymous one is sent to sign in.
pub(crate) struct PageCaller(pub(crate) Caller);

impl FromRequestParts<Web> for PageCaller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Refusal> {
        caller(web, &parts.headers)
            .await
            .map_err(Refusal::internal)?
            .map(PageCaller)
            .ok_or(Refusal::SignIn)
    }
}

/// A signed-in caller of the JSON API; an anonymous one gets 401. Any
/// router whose state holds a [`Web`] can use it (the station's own API
/// does).
pub struct ApiCaller(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for ApiCaller
where
    Web: FromRef<S>,
{
    type Rejection = ApiRefusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiRefusal> {
        let web = Web::from_ref(state);
        caller(&web, &parts.headers)
            .await
            .map_err(Refusal::internal)?
            .map(ApiCaller)
            .ok_or(ApiRefusal(Refusal::SignIn))
    }
}

/// Whether a page form that changes something may: it needs the session's
/// CSRF token echoed in `csrf` and at least `role` (`what` names the
/// action in the refusal).
pub(crate) fn check_form(who: &Caller, csrf: &str, role: Role, what: &str) -> Result<(), Refusal> {
    if !who.csrf.as_deref().is_some_and(|c| same(c, csrf)) {
        return Err(Refusal::Forbidden("missing or wrong CSRF token".into()));
    }
    check_role(who, role, what)
}

fn check_role(who: &Caller, role: Role, what: &str) -> Result<(), Refusal> {
    if who.user.role < role {
        return Err(Refusal::Forbidden(format!(
            "{what} needs the {} role",
            role.as_str()
        )));
    }
    Ok(())
}

/// Whether an API write may: a session must send its CSRF token as
/// `X-CSRF-Token` (an API token needs none), and the caller needs at least
/// `role`.
pub fn check_api_write(
    who: &Caller,
    headers: &HeaderMap,
    role: Role,
    what: &str,
) -> Result<(), ApiRefusal> {
    if let Some(csrf) = &who.csrf {
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same(csrf, sent) {
            return Err(ApiRefusal(Refusal::Forbidden(
                "missing or wrong X-CSRF-Token".into(),
            )));
        }
    }
    Ok(check_role(who, role, what)?)
}

/// Constant-time comparison of CSRF tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The sign-in form is protected by a double-submit token: a cookie only
/// this site can set, echoed in the form (no session exists yet).
const LOGIN_COOKIE: &str = "login_csrf";

fn login_response(lang: Lang, status: StatusCode, error: &str) -> Response {
    let token = store::accounts::random_token();
    let html = page(
        lang,
        lang.t("Sign in"),
        None,
        html! {
            @if !error.is_empty() { p class="err" { (error) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(token);
                p { label { (lang.t("User")) " " input name="name" autocomplete="username" required; } }
                p { label { (lang.t("Password")) " " input name="password" type="password" autocomplete="current-password" required; } }
                button { (lang.t("Sign in")) }
            }
        },
    );
    let cookie =
        format!("{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600");
    (status, [(header::SET_COOKIE, cookie)], html).into_response()
}

pub(crate) async fn login_page(headers: HeaderMap) -> Response {
    login_response(Lang::of(None, &headers), StatusCode::OK, "")
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    pub(crate) csrf: String,
}

pub(crate) async fn login(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = Lang::of(None, &headers);
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| !f.csrf.is_empty() && same(&c, &f.csrf)) {
        return login_response(
            lang,
            StatusCode::FORBIDDEN,
            lang.t("The sign-in form has expired or did not come from this appliance; please sign in again."),
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
        Err(AccountError::WrongCredentials) => login_response(
            lang,
            StatusCode::UNAUTHORIZED,
            lang.t("Wrong user name or password."),
        ),
        Err(AccountError::TooManyAttempts(s)) => login_response(
            lang,
            StatusCode::TOO_MANY_REQUESTS,
            &lang.f("Too many failed sign-ins; try again in {0} s.", &[&s]),
        ),
        Err(e) => Refusal::internal(e).into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

pub(crate) async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    PageCaller(who): PageCaller,
    Form(f): Form<CsrfForm>,
) -> Result<Response, Refusal> {
    check_form(&who, &f.csrf, Role::Viewer, "signing out")?;
    if let Some(token) = cookie(&headers, COOKIE) {
        web.accounts
            .logout(&token)
            .await
            .map_err(Refusal::internal)?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/login"),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct LanguageForm {
    #[serde(default)]
    csrf: String,
    /// `en`, `zh`, or empty to follow the browser.
    #[serde(default)]
    language: String,
}

/// `POST /language`: the signed-in person's language for every page, kept
/// with their account (so it follows them to another tablet).
pub(crate) async fn set_language(
    State(web): State<Web>,
    headers: HeaderMap,
    PageCaller(who): PageCaller,
    Form(f): Form<LanguageForm>,
) -> Result<Redirect, Refusal> {
    check_form(&who, &f.csrf, Role::Viewer, "choosing a language")?;
    let language = Some(f.language.as_str()).filter(|l| !l.is_empty());
    web.accounts
        .set_language(&who.user.name, language)
        .await
        .map_err(|e| match e {
            AccountError::Invalid(m) => Refusal::Invalid(m),
            other => Refusal::internal(other),
        })?;
    // Back to the page the switch was used on, when it is one of ours.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").map(|i| &r[i + 3..]))
        .and_then(|r| r.find('/').map(|i| &r[i..]))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/")
        .to_string();
    Ok(Redirect::to(&back))
}

/// The sign-in's Chinese.
pub(crate) const ZH: &[(&str, &str)] = &[
    ("Sign in", "登录"),
    ("User", "用户名"),
    ("Password", "密码"),
    (
        "The sign-in form has expired or did not come from this appliance; please sign in again.",
        "登录表单已过期或并非来自本设备，请重新登录。",
    ),
    ("Wrong user name or password.", "用户名或密码错误。"),
    (
        "Too many failed sign-ins; try again in {0} s.",
        "登录失败次数过多，请 {0} 秒后再试。",
    ),
];
