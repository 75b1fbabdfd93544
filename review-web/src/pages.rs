//! The review pages: the verdict list with its filters and inbox, one
//! verdict with its picture, findings, standard and review form, the charts,
//! the monitoring panel, the export form and the pictures themselves.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use maud::{html, Markup};

use crate::api::export_now;
use crate::auth::{check_form, CsrfForm, PageCaller};
use crate::html::local_time;
use crate::respond::{page, Refusal};
use crate::Web;
use store::accounts::Role;
use store::reviews::{self, Corrections, Filter, ListRow, Missed, NewReview, QueryError};

/// Verdicts as table rows; `pick` adds a box per row for the bulk review
/// form (`form="bulk"`).
fn rows_table(rows: &[ListRow], pick: bool) -> Markup {
    html! {
        table {
            thead { tr {
                @if pick { th { "Pick" } }
                th { "Picture" }
                th { "Decided" } th { "Decision" } th { "Part" }
                th class="wide" { "Station" } th class="wide" { "Camera" } th class="wide" { "Recipe" }
                th { "Findings" } th { "Reviewed" }
            } }
            tbody {
                @for r in rows {
                    tr {
                        @if pick {
                            td { input type="checkbox" class="pick" name="ids" value=(r.id) form="bulk" aria-label="pick this part"; }
                        }
                        td class="pic" {
                            a href={ "/verdicts/" (r.id) } {
                                @if let Some(sha) = &r.image {
                                    img src={ "/images/" (sha) "/thumb" } alt={ "part " (r.part_id.as_deref().unwrap_or("")) } loading="lazy";
                                } @else {
                                    "—"
                                }
                            }
                        }
                        td { a href={ "/verdicts/" (r.id) } { (listed_time(&r.decided_at)) } }
                        td class=(r.decision) { (r.decision) }
                        td { (r.part_id.as_deref().unwrap_or("—")) }
                        td class="wide" { (r.station) }
                        td class="wide" { (r.camera) }
                        td class="wide" { (r.recipe) }
                        td { (r.findings) }
                        td { (r.reviewed.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

/// A decision time as the list shows it: `2026-12-04 14:03:22`.
fn listed_time(at: &str) -> String {
    let at = at.replace('T', " ");
    at.get(..19).map_or(at.clone(), str::to_string)
}

pub(crate) async fn list_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(f): Query<Filter>,
) -> Result<Response, Refusal> {
    let page_rows = match reviews::list(&web.store, &f).await {
        Ok(p) => p,
        Err(QueryError::Invalid(m)) => {
            let body = html! { p class="err" { (m) } };
            return Ok(
                (StatusCode::BAD_REQUEST, page("Verdicts", Some(&who), body)).into_response(),
            );
        }
        Err(e) => return Err(e.into()),
    };
    let inbox = reviews::inbox(&web.store, 20).await?;
    let choices = reviews::choices(&web.store).await?;
    let operator = who.user.role >= Role::Operator && who.csrf.is_some();
    let csrf = who.csrf.as_deref().unwrap_or_default();
    let inbox_html = html! {
        @if inbox.is_empty() {
            p { "Nothing waiting for review." }
        } @else if operator {
            (rows_table(&inbox, true))
            (bulk_html(csrf, &web.reasons))
        } @else {
            (rows_table(&inbox, false))
        }
    };
    let results = html! {
        h2 { "All verdicts" }
        (filters_form(&f, &choices))
        (rows_table(&page_rows.items, false))
        @if let Some(cursor) = &page_rows.next {
            p { a href={ "/?" (serde_urlencoded(&Filter { after: cursor.clone(), ..f.clone() })) } { "Older verdicts →" } }
        }
    };
    let inbox_title = format!("Review inbox ({})", inbox.len());
    let body = html! {
        @if filtered(&f) {
            // Someone looking for something gets it first; the inbox waits below.
            (results)
            details { summary { (inbox_title) } (inbox_html) }
        } @else {
            h2 { (inbox_title) }
            (inbox_html)
            (results)
        }
        @if who.user.role >= Role::Admin && who.csrf.is_some() {
            form method="post" action="/export" {
                input type="hidden" name="csrf" value=(csrf);
                button { "Export reviewed verdicts for retraining" }
            }
        }
    };
    Ok(page("Verdicts", Some(&who), body).into_response())
}

/// Whether the list is filtered (paging alone is not a filter).
fn filtered(f: &Filter) -> bool {
    [
        &f.station,
        &f.camera,
        &f.recipe,
        &f.decision,
        &f.defect,
        &f.from,
        &f.to,
        &f.reviewed,
    ]
    .iter()
    .any(|v| !v.is_empty())
}

/// The list's filters: what verdicts have, picked from lists; dates from a
/// date picker. A value that is asked for but not offered (an old link)
/// stays picked.
fn filters_form(f: &Filter, c: &reviews::Choices) -> Markup {
    let pick = |name: &str, value: &str, options: &[String], any: &str| {
        html! {
            select name=(name) aria-label=(name) {
                option value="" selected[value.is_empty()] { (any) }
                @if !value.is_empty() && !options.iter().any(|o| o == value) {
                    option value=(value) selected { (value) }
                }
                @for o in options {
                    option value=(o) selected[o == value] { (o) }
                }
            }
        }
    };
    let fixed = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let date = |name: &str, value: &str, hint: &str| {
        html! { label { (hint) " " input type="date" name=(name) value=(value) aria-label=(hint); } }
    };
    html! {
        form class="filters" method="get" action="/" {
            (pick("station", &f.station, &c.stations, "any station"))
            (pick("camera", &f.camera, &c.cameras, "any camera"))
            (pick("recipe", &f.recipe, &c.recipes, "any recipe"))
            (pick("decision", &f.decision, &fixed(&["PASS", "FAIL", "REVIEW"]), "any decision"))
            (pick("defect", &f.defect, &c.defects, "any defect"))
            (date("from", &f.from, "from"))
            (date("to", &f.to, "to"))
            (pick("reviewed", &f.reviewed, &fixed(&["yes", "no"]), "reviewed or not"))
            button { "Filter" }
        }
    }
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

pub(crate) async fn verdict_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Path(id): Path<String>,
) -> Result<Markup, Refusal> {
    let d = reviews::detail(&web.store, &id).await?;
    let v: record::Verdict = serde_json::from_value(d.verdict).map_err(|e| {
        Refusal::Internal(format!(
            "stored verdict {id} does not read as verdict/v1: {e}"
        ))
    })?;
    let csrf = who
        .csrf
        .as_deref()
        .filter(|_| who.user.role >= Role::Operator);
    let body = html! {
        div class="cols" {
            div { (picture(&v, d.image_deleted.as_deref())) }
            div {
                (standing(&v, &d.reviews))
                @if let Some(why) = &v.review_reason {
                    p class="why" { b { "Why a person must decide:" } " " (why) }
                }
                p {
                    "Part " b { (v.part_id.as_deref().unwrap_or("—")) }
                    " · camera " (v.camera) " · station " (v.station.station)
                    " · confidence " (format!("{:.2}", v.confidence))
                }
                (findings_table(&v))
                p {
                    "Recipe " b { (v.recipe) } ", standard "
                    code { (v.standard_sha256.get(..12).unwrap_or(&v.standard_sha256)) }
                    " · model " (v.model.name) " " (v.model.version)
                }
                p {
                    "Captured " (local_time(&v.timings.captured_at, true))
                    " · decided " (local_time(&v.timings.decided_at, false))
                    " · inference " (format!("{:.1}", v.timings.inference_ms)) " ms"
                }
                details {
                    summary { "The standard this verdict was judged against" }
                    pre { (d.standard) }
                }
                h2 { "Reviews" }
                ul { (reviews_list(&d.reviews, &v.findings)) }
                @if let Some(csrf) = csrf {
                    (one_tap_html(&id, csrf, v.decision, &web.reasons))
                    (review_form_html(&id, csrf, v.findings.len()))
                }
            }
        }
    };
    Ok(page(&format!("Verdict {id}"), Some(&who), body))
}

/// The decision that stands, large: the latest review's, else the
/// model's, and beneath it who changed or confirmed it.
fn standing(v: &record::Verdict, reviews: &[reviews::Review]) -> Markup {
    match reviews.last() {
        Some(r) if r.decision != v.decision.as_str() => html! {
            p class={ (r.decision) " headline" } { (r.decision) }
            p class="judged" {
                "Judged " (v.decision) " by the model · overridden to " (r.decision)
                " by " (r.reviewer) " at " (local_time(&r.created_at, true))
            }
        },
        Some(r) => html! {
            p class={ (r.decision) " headline" } { (r.decision) }
            p class="judged" { "Judged " (v.decision) " by the model · confirmed by " (r.reviewer) }
        },
        None => html! { p class={ (v.decision) " headline" } { (v.decision) } },
    }
}

/// The findings as a table, numbered from 1 as the boxes number them.
fn findings_table(v: &record::Verdict) -> Markup {
    html! {
        table {
            thead { tr { th { "#" } th { "Defect" } th { "Violates" } th { "Confidence" } th { "Size" } } }
            tbody {
                @for (i, f) in v.findings.iter().enumerate() {
                    tr {
                        td { (i + 1) }
                        td { (f.defect) }
                        td {
                            @if f.clause.is_some() {
                                blockquote {
                                    "Clause "
                                    (f.clause_label.clone().or_else(|| f.clause.map(|c| c.to_string())).unwrap_or_default())
                                    ": " (f.clause_text.as_deref().unwrap_or_default())
                                }
                            } @else if v.decision == record::Decision::Review {
                                // Not confirmed: the consistency check may
                                // have found that the standard rejects it.
                                "the model calls it tolerated (not confirmed)"
                            } @else {
                                "tolerated by the standard"
                            }
                        }
                        td { (format!("{:.2}", f.confidence)) }
                        td { (format!("{:.1}", f.size_mm)) " mm" }
                    }
                }
            }
        }
    }
}

/// The findings as SVG boxes over the picture (numbered from 1, red where
/// a clause is violated, amber where tolerated).
fn findings_drawn(v: &record::Verdict) -> Markup {
    let (w, h) = (
        f64::from(v.image.width.max(1)),
        f64::from(v.image.height.max(1)),
    );
    let size = MarkSize {
        stroke: (w / 200.0).max(2.0),
        font: (w / 28.0).max(11.0),
        lift: 3.0,
        top: 12.0,
    };
    html! {
        @for (i, f) in v.findings.iter().enumerate() {
            (mark_svg(i + 1, &f.defect, f.box_norm, f.clause.is_some(), (w, h), &size))
        }
    }
}

/// How large a finding's box and label are drawn on a picture.
pub(crate) struct MarkSize {
    pub(crate) stroke: f64,
    pub(crate) font: f64,
    /// The label sits this far above the box, but never above `top`.
    pub(crate) lift: f64,
    pub(crate) top: f64,
}

/// Finding `n`'s box (`at`, 0..1 of a picture `w` × `h`) with its numbered
/// label kept inside the picture: red where it violates a clause, amber
/// where the standard tolerates it. The verdict page and the line view
/// draw them alike.
pub(crate) fn mark_svg(
    n: usize,
    defect: &str,
    at: [f32; 4],
    violates: bool,
    (w, h): (f64, f64),
    size: &MarkSize,
) -> Markup {
    let [x0, y0, x1, y1] = at.map(f64::from);
    let colour = if violates { "#e3261b" } else { "#f2a900" };
    let n1 = |v: f64| format!("{v:.1}");
    html! {
        rect x=(n1(x0 * w)) y=(n1(y0 * h)) width=(n1((x1 - x0) * w)) height=(n1((y1 - y0) * h))
            fill="none" stroke=(colour) stroke-width=(n1(size.stroke)) {}
        text x=(n1(label_x(x0 * w, w, size.font, defect))) y=(n1((y0 * h - size.lift).max(size.top)))
            fill=(colour) font-size=(n1(size.font)) font-weight="700" { (n) " " (defect) }
    }
}

/// Where a box's label starts so that it stays inside a picture `width`
/// wide: at the box, or as far right as its estimated width allows.
pub(crate) fn label_x(box_x: f64, width: f64, font_size: f64, defect: &str) -> f64 {
    let label = font_size * 0.62 * (defect.chars().count() + 3) as f64;
    box_x.min((width - label).max(0.0))
}

/// The picture with its boxes, or why there is none.
fn picture(v: &record::Verdict, deleted: Option<&str>) -> Markup {
    let (w, h) = (v.image.width.max(1), v.image.height.max(1));
    match (deleted, v.image.not_kept.as_deref()) {
        (_, Some(why)) => html! { p class="err" { "Image not kept: " (why) } },
        (Some(why), _) => html! { p class="err" { "Image deleted by retention (" (why) ")." } },
        // Zoom and pan (wheel, pinch, drag; `assets/review.js`) move the
        // figure inside its frame, boxes and all.
        _ => html! {
            div class="zoom" {
                figure id="part" {
                    img src={ "/images/" (v.image.sha256) } alt="part image";
                    svg viewBox={ "0 0 " (w) " " (h) } preserveAspectRatio="none" role="img" aria-label="findings" {
                        (findings_drawn(v))
                    }
                }
            }
            p class="zoombar" {
                button type="button" data-zoom-by="1.5" aria-label="zoom in" { "+" }
                button type="button" data-zoom-by="0.6667" aria-label="zoom out" { "−" }
                button type="button" data-zoom-by="fit" { "Fit" }
                span { " Wheel or pinch to zoom, drag to move, double-click to fit." }
            }
            script src="/assets/review.js" {}
        },
    }
}

/// A review's corrections in words, findings numbered from 1 as the table
/// and the boxes number them.
fn corrections_in_words(c: &Corrections, findings: &[record::Finding]) -> String {
    let mut said = Vec::new();
    for i in &c.wrong_findings {
        let name = findings.get(*i).map_or("?", |f| f.defect.as_str());
        said.push(format!("finding {} ({name}) is wrong", i + 1));
    }
    for m in &c.missed {
        let [x0, y0, x1, y1] = m.box_norm.map(|v| (v * 100.0).round());
        said.push(format!(
            "missed {} at {x0}–{x1} % across, {y0}–{y1} % down",
            m.defect
        ));
    }
    said.join("; ")
}

/// The verdict's reviews, newest last.
fn reviews_list(reviews: &[reviews::Review], findings: &[record::Finding]) -> Markup {
    html! {
        @for r in reviews {
            li {
                (local_time(&r.created_at, true)) " — " b { (r.decision) }
                " by " (r.reviewer) " (" (if r.agrees { "confirmed" } else { "overridden" }) "): " (r.reason)
                @if r.corrections != Corrections::default() {
                    " — " (corrections_in_words(&r.corrections, findings))
                }
            }
        } @if reviews.is_empty() {
            li { "None yet." }
        }
    }
}

/// The one-tap review: a reason picked from `review.reasons` (a remark
/// optional), then PASS or FAIL with one tap (48 px and larger targets, or
/// the keys P and F, 1–9 for the reasons); the next REVIEW part follows.
fn one_tap_html(id: &str, csrf: &str, judged: record::Decision, reasons: &[String]) -> Markup {
    let label = |d: record::Decision| {
        if d == judged {
            format!("Confirm {d}")
        } else if judged == record::Decision::Review {
            format!("Decide {d}")
        } else {
            format!("Override to {d}")
        }
    };
    html! {
        h2 { "Review with one tap" }
        form id="tap" class="tap" method="post" action={ "/verdicts/" (id) "/review" } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value="review";
            p { label { "Reason "
                select name="reason_choice" id="reason-choice" required {
                    option value="" { "choose…" }
                    @for (i, r) in reasons.iter().enumerate() {
                        option value=(r) { (i + 1) ". " (r) }
                    }
                }
            } }
            p { label { "Remark (optional) " input name="reason" maxlength="500"; } }
            p class="taps" {
                button name="decision" value="PASS" class="tap PASS" accesskey="p" { (label(record::Decision::Pass)) }
                button name="decision" value="FAIL" class="tap FAIL" accesskey="f" { (label(record::Decision::Fail)) }
            }
            p class="keys" { "Keys: 1–9 pick a reason, P or F decide." }
        }
    }
}

/// The review form: decision, findings marked wrong, missed defects drawn
/// or typed, and the reason.
fn review_form_html(id: &str, csrf: &str, findings: usize) -> Markup {
    html! {
        details {
            summary { "Detailed review: findings that are wrong, missed defects" }
            form method="post" action={ "/verdicts/" (id) "/review" } {
                input type="hidden" name="csrf" value=(csrf);
                p { "Decision: "
                    label { input type="radio" name="decision" value="PASS" required; " PASS" } " "
                    label { input type="radio" name="decision" value="FAIL"; " FAIL" }
                }
                p { @for i in 0..findings {
                    label { input type="checkbox" name="wrong" value=(i); " finding " (i + 1) " is wrong" } br;
                } }
                p { label { "Missed defect: " input id="missed-name" value="" placeholder="defect name, then drag a box on the image"; } }
                p { label {
                    "Missed defects, one per line: " code { "name x0 y0 x1 y1" } " (0–1 of the image; drawn boxes land here)" br;
                    textarea id="missed" name="missed" rows="3" cols="50" {}
                } }
                p { label { "Reason" br; textarea name="reason" rows="3" cols="50" required {} } }
                button { "Record review" }
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Window {
    #[serde(default = "day")]
    hours: i64,
}

fn day() -> i64 {
    24
}

pub(crate) async fn charts_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(w): Query<Window>,
) -> Result<Markup, Refusal> {
    let hours = w.hours.clamp(1, 24 * 14);
    let c = store::charts::load(&web.store, hours)
        .await
        .map_err(Refusal::internal)?;
    let body = html! {
        p {
            "Window: the last " (hours) " hours (UTC) · "
            @for h in [24, 72, 168, 336] { a href={ "/charts?hours=" (h) } { (h) " h" } " " }
        }
        h2 { "Pass and fail per hour" }
        (crate::charts::rate_svg(&c.hours))
        h2 { "Defect Pareto" }
        (crate::charts::pareto_svg(&c.pareto))
        h2 { "Response latency per hour" }
        (crate::charts::latency_svg(&c.hours, web.latency_budget.as_secs_f64() * 1e3))
    };
    Ok(page("Charts", Some(&who), body))
}

pub(crate) async fn panel_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(w): Query<Window>,
) -> Result<Markup, Refusal> {
    let hours = w.hours.clamp(1, 24 * 90);
    let p = crate::panel::load(&web.store, hours)
        .await
        .map_err(Refusal::internal)?;
    Ok(page(
        "Monitoring",
        Some(&who),
        crate::panel::render(&p, hours),
    ))
}

pub(crate) async fn export_form(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(f): Form<CsrfForm>,
) -> Result<Markup, Refusal> {
    check_form(&who, &f.csrf, Role::Admin, "exporting")?;
    let r = export_now(&web).await.map_err(Refusal::internal)?;
    let folder = r
        .file
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let body = html! {
        p {
            (r.records) " reviewed verdicts written to " code { (r.file.display()) }
            " (" (r.without_image) " left out: image gone)."
        }
        p { "Fine-tune with " code { "python -m toolchain.finetune --base … --images … --standard … --reviews " (folder) } "." }
    };
    Ok(page("Export for retraining", Some(&who), body))
}

/// The review form: decision, wrong findings, missed boxes, reason.
/// A reason picked from the list (`reason_choice`), a remark (`reason`), or
/// both, joined.
fn joined_reason(pairs: &[(String, String)]) -> String {
    ["reason_choice", "reason"]
        .iter()
        .filter_map(|k| pairs.iter().find(|(n, _)| n == k))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
        .collect::<Vec<_>>()
        .join(" — ")
}

/// Deciding several REVIEW parts at once from the inbox: the parts picked
/// in the table, a reason from the list (remark optional), PASS or FAIL.
fn bulk_html(csrf: &str, reasons: &[String]) -> Markup {
    html! {
        form id="bulk" class="tap" method="post" action="/reviews/bulk" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Reason "
                select name="reason_choice" required {
                    option value="" { "choose…" }
                    @for r in reasons { option value=(r) { (r) } }
                }
            } " "
            label { "Remark (optional) " input name="reason" maxlength="500"; }
            p class="taps" {
                button name="decision" value="PASS" class="tap PASS" { "Picked parts are PASS" }
                button name="decision" value="FAIL" class="tap FAIL" { "Picked parts are FAIL" }
            }
        }
    }
}

/// The most parts one bulk review decides.
const MAX_BULK: usize = 100;

/// Whether a review form may be taken: it needs the session's CSRF token
/// and the operator role, settled before anything else it says is read.
fn check_reviewing(who: &crate::auth::Caller, pairs: &[(String, String)]) -> Result<(), Refusal> {
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str());
    check_form(who, csrf, Role::Operator, "reviewing")
}

/// The inbox's bulk review: every picked part gets the same review (each a
/// row of its own, each published for the MES).
pub(crate) async fn bulk_review(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Redirect, Refusal> {
    check_reviewing(&who, &pairs)?;
    let ids: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(Refusal::Invalid(format!("pick 1 to {MAX_BULK} parts")));
    }
    let review = NewReview {
        decision: pairs
            .iter()
            .find(|(k, _)| k == "decision")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        reason: joined_reason(&pairs),
        corrections: Corrections::default(),
    };
    for id in ids {
        web.record_review(id, &who.user, &review).await?;
    }
    Ok(Redirect::to("/"))
}

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
        reason: joined_reason(pairs),
        corrections: Corrections {
            wrong_findings: wrong,
            missed,
        },
    })
}

pub(crate) async fn review_form(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Redirect, Refusal> {
    // Who may act is settled before anything the form says is read.
    check_reviewing(&who, &pairs)?;
    let review = parse_review_form(&pairs).map_err(Refusal::Invalid)?;
    web.record_review(&id, &who.user, &review).await?;
    // One tap: on to the oldest REVIEW part nobody has reviewed, or back
    // to the inbox when none is left.
    let next_review = pairs.iter().any(|(k, v)| k == "next" && v == "review");
    if !next_review {
        return Ok(Redirect::to(&format!("/verdicts/{id}")));
    }
    Ok(match reviews::inbox(&web.store, 1).await?.first() {
        Some(next) => Redirect::to(&format!("/verdicts/{}", next.id)),
        None => Redirect::to("/"),
    })
}

#[cfg(test)]
mod tests {
    use super::{label_x, mark_svg, MarkSize};

    #[test]
    fn a_defect_name_is_text_in_the_picture_never_markup() {
        let size = MarkSize {
            stroke: 2.0,
            font: 11.0,
            lift: 3.0,
            top: 12.0,
        };
        let svg = mark_svg(
            2,
            "<script>\"x\"",
            [0.1, 0.2, 0.3, 0.4],
            true,
            (100.0, 50.0),
            &size,
        )
        .into_string();
        assert_eq!(
            svg,
            "<rect x=\"10.0\" y=\"10.0\" width=\"20.0\" height=\"10.0\" fill=\"none\" stroke=\"#e3261b\" stroke-width=\"2.0\"></rect>\
             <text x=\"4.5\" y=\"12.0\" fill=\"#e3261b\" font-size=\"11.0\" font-weight=\"700\">2 &lt;script&gt;&quot;x&quot;</text>"
        );
    }

    #[test]
    fn a_label_near_the_right_edge_moves_left_to_stay_inside() {
        assert_eq!(label_x(10.0, 256.0, 11.0, "dent"), 10.0);
        let x = label_x(240.0, 256.0, 11.0, "contamination");
        assert!(x + 11.0 * 0.62 * 16.0 <= 256.0 + 1e-9 && x < 240.0, "{x}");
        assert_eq!(label_x(5.0, 40.0, 11.0, "contamination"), 0.0);
    }
}
