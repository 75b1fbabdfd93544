//! Talking to the review UI as a browser does, over plain HTTP: forms with
//! a session cookie, pages with a cookie or an API token, the sign-in with
//! its double-submit token.

use crate::http_request;

/// Posts a form (`application/x-www-form-urlencoded`) with the session
/// cookie `cookie` ("" for none); returns status, head and body.
pub fn form(port: u16, path: &str, cookie: &str, body: &str) -> (u16, String, String) {
    let headers: Vec<String> = if cookie.is_empty() {
        vec![]
    } else {
        vec![format!("Cookie: {cookie}")]
    };
    http_request(
        port,
        "POST",
        path,
        &headers,
        "application/x-www-form-urlencoded",
        body,
    )
}

/// A GET with a session cookie (`session=…`), an API token, or nothing ("").
pub fn get(port: u16, path: &str, auth: &str) -> (u16, String, String) {
    let headers: Vec<String> = match auth {
        "" => vec![],
        a if a.starts_with("session=") => vec![format!("Cookie: {a}")],
        token => vec![format!("Authorization: Bearer {token}")],
    };
    http_request(port, "GET", path, &headers, "text/plain", "")
}

/// The value of the cookie `name` set by a response head.
pub fn set_cookie(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.trim().split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// Posts the sign-in form as a browser would: fetch the form (its
/// double-submit cookie and token), then post it.
pub fn login(port: u16, credentials: &str) -> (u16, String, String) {
    let (_, head, page) = get(port, "/login", "");
    let cookie = set_cookie(&head, "login_csrf").expect("the form sets its cookie");
    let token = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the form carries its token");
    form(
        port,
        "/login",
        &cookie,
        &format!("{credentials}&csrf={token}"),
    )
}

/// Signs in; returns the `session=…` cookie and the page's CSRF token.
pub fn sign_in(port: u16, name: &str, password: &str) -> (String, String) {
    let (status, head, _) = login(port, &format!("name={name}&password={password}"));
    assert_eq!(status, 303, "{head}");
    let set = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set["set-cookie:".len()..]
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, _, page) = get(port, "/", &cookie);
    assert_eq!(status, 200);
    let csrf = page
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token on the page")
        .to_string();
    (cookie, csrf)
}
