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
use crate::i18n::Lang;
use crate::respond::{page, Refusal};
use crate::Web;
use store::accounts::Role;
use store::reviews::{self, Corrections, Filter, ListRow, Missed, NewReview, QueryError};

/// Verdicts as table rows; `pick` adds a box per row for the bulk review
/// form (`form="bulk"`).
fn rows_table(lang: Lang, rows: &[ListRow], pick: bool) -> Markup {
    html! {
        table {
            thead { tr {
                @if pick { th { (lang.t("Pick")) } }
                th { (lang.t("Picture")) }
                th { (lang.t("Decided")) } th { (lang.t("Decision")) } th { (lang.t("Part")) }
                th class="wide" { (lang.t("Station")) } th class="wide" { (lang.t("Camera")) } th class="wide" { (lang.t("Recipe")) }
                th { (lang.t("Findings")) } th { (lang.t("Reviewed")) }
            } }
            tbody {
                @for r in rows {
                    tr {
                        @if pick {
                            td { input type="checkbox" class="pick" name="ids" value=(r.id) form="bulk" aria-label=(lang.t("pick this part")); }
                        }
                        td class="pic" {
                            a href={ "/verdicts/" (r.id) } {
                                @if let Some(sha) = &r.image {
                                    img src={ "/images/" (sha) "/thumb" } alt=(lang.f("part {0}", &[&r.part_id.as_deref().unwrap_or("")])) loading="lazy";
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

/// The language a text is written in, for its `lang` attribute: Chinese
/// when it holds Han characters, else English. A standard is shown in its
/// own language whatever the page's.
fn text_lang(text: &str) -> &'static str {
    let han =
        |c: char| ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c);
    if text.chars().any(han) {
        "zh"
    } else {
        "en"
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
    let lang = who.lang;
    let page_rows = match reviews::list(&web.store, &f).await {
        Ok(p) => p,
        Err(QueryError::Invalid(m)) => {
            let body = html! { p class="err" { (m) } };
            return Ok((
                StatusCode::BAD_REQUEST,
                page(lang, lang.t("Verdicts"), Some(&who), body),
            )
                .into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let inbox = reviews::inbox(&web.store, 20).await?;
    let choices = reviews::choices(&web.store).await?;
    let operator = who.user.role >= Role::Operator && who.csrf.is_some();
    let csrf = who.csrf.as_deref().unwrap_or_default();
    let inbox_html = html! {
        @if inbox.is_empty() {
            p { (lang.t("Nothing waiting for review.")) }
        } @else if operator {
            (rows_table(lang, &inbox, true))
            (bulk_html(lang, csrf, &web.reasons))
        } @else {
            (rows_table(lang, &inbox, false))
        }
    };
    let results = html! {
        h2 { (lang.t("All verdicts")) }
        (filters_form(lang, &f, &choices))
        (rows_table(lang, &page_rows.items, false))
        @if let Some(cursor) = &page_rows.next {
            p { a href={ "/?" (serde_urlencoded(&Filter { after: cursor.clone(), ..f.clone() })) } { (lang.t("Older verdicts →")) } }
        }
    };
    let inbox_title = lang.f("Review inbox ({0})", &[&inbox.len()]);
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
                button { (lang.t("Export reviewed verdicts for retraining")) }
            }
        }
    };
    Ok(page(lang, lang.t("Verdicts"), Some(&who), body).into_response())
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
fn filters_form(lang: Lang, f: &Filter, c: &reviews::Choices) -> Markup {
    // Options as (value, what is shown).
    let pick = |name: &str, value: &str, options: &[(String, String)], any: &str| {
        html! {
            select name=(name) aria-label=(any) {
                option value="" selected[value.is_empty()] { (any) }
                @if !value.is_empty() && !options.iter().any(|(o, _)| o == value) {
                    option value=(value) selected { (value) }
                }
                @for (o, shown) in options {
                    option value=(o) selected[o == value] { (shown) }
                }
            }
        }
    };
    let data = |v: &[String]| v.iter().map(|s| (s.clone(), s.clone())).collect::<Vec<_>>();
    let decisions = data(&["PASS", "FAIL", "REVIEW"].map(String::from));
    let reviewed = [("yes", lang.t("reviewed")), ("no", lang.t("not reviewed"))]
        .map(|(v, shown)| (v.to_string(), shown.to_string()));
    let date = |name: &str, value: &str, hint: &str| {
        html! { label { (hint) " " input type="date" name=(name) value=(value) aria-label=(hint); } }
    };
    html! {
        form class="filters" method="get" action="/" {
            (pick("station", &f.station, &data(&c.stations), lang.t("any station")))
            (pick("camera", &f.camera, &data(&c.cameras), lang.t("any camera")))
            (pick("recipe", &f.recipe, &data(&c.recipes), lang.t("any recipe")))
            (pick("decision", &f.decision, &decisions, lang.t("any decision")))
            (pick("defect", &f.defect, &data(&c.defects), lang.t("any defect")))
            (date("from", &f.from, lang.t("from")))
            (date("to", &f.to, lang.t("to")))
            (pick("reviewed", &f.reviewed, &reviewed, lang.t("reviewed or not")))
            button { (lang.t("Filter")) }
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
    let shadow = store::shadow::of_verdict(&web.store, &id)
        .await
        .map_err(Refusal::internal)?;
    let lang = who.lang;
    let csrf = who
        .csrf
        .as_deref()
        .filter(|_| who.user.role >= Role::Operator);
    let body = html! {
        div class="cols" {
            div { (picture(lang, &v, d.image_deleted.as_deref())) }
            div {
                (standing(lang, &v, &d.reviews))
                @if let Some(why) = &v.review_reason {
                    p class="why" { b { (lang.t("Why a person must decide:")) } " " (why) }
                }
                p {
                    (lang.t("Part")) " " b { (v.part_id.as_deref().unwrap_or("—")) }
                    " · " (lang.t("camera")) " " (v.camera) " · " (lang.t("station")) " " (v.station.station)
                    " · " (lang.t("confidence")) " " (format!("{:.2}", v.confidence))
                }
                (findings_table(lang, &v))
                @if let Some(s) = &shadow {
                    (crate::shadow::on_verdict(lang, s))
                }
                p {
                    (lang.t("Recipe")) " " b { (v.recipe) } ", " (lang.t("standard")) " "
                    code { (v.standard_sha256.get(..12).unwrap_or(&v.standard_sha256)) }
                    " · " (lang.t("model")) " " (v.model.name) " " (v.model.version)
                }
                p {
                    (lang.f("Captured {0}", &[&local_time(&v.timings.captured_at, true)]))
                    " · " (lang.f("decided {0}", &[&local_time(&v.timings.decided_at, false)]))
                    " · " (lang.t("inference")) " " (format!("{:.1}", v.timings.inference_ms)) " ms"
                }
                details {
                    summary { (lang.t("The standard this verdict was judged against")) }
                    // The standard in its own language, whatever the page's.
                    pre lang=(text_lang(&d.standard)) { (d.standard) }
                }
                h2 { (lang.t("Reviews")) }
                ul { (reviews_list(lang, &d.reviews, &v.findings)) }
                @if let Some(csrf) = csrf {
                    (one_tap_html(lang, &id, csrf, v.decision, &web.reasons))
                    (review_form_html(lang, &id, csrf, v.findings.len()))
                }
            }
        }
    };
    Ok(page(lang, &lang.f("Verdict {0}", &[&id]), Some(&who), body))
}

/// The decision that stands, large: the latest review's, else the
/// model's, and beneath it who changed or confirmed it.
fn standing(lang: Lang, v: &record::Verdict, reviews: &[reviews::Review]) -> Markup {
    match reviews.last() {
        Some(r) if r.decision != v.decision.as_str() => html! {
            p class={ (r.decision) " headline" } { (r.decision) }
            p class="judged" {
                (lang.f(
                    "Judged {0} by the model · overridden to {1} by {2} at {3}",
                    &[&v.decision, &r.decision, &r.reviewer, &local_time(&r.created_at, true)],
                ))
            }
        },
        Some(r) => html! {
            p class={ (r.decision) " headline" } { (r.decision) }
            p class="judged" { (lang.f("Judged {0} by the model · confirmed by {1}", &[&v.decision, &r.reviewer])) }
        },
        None => html! { p class={ (v.decision) " headline" } { (v.decision) } },
    }
}

/// The findings as a table, numbered from 1 as the boxes number them.
fn findings_table(lang: Lang, v: &record::Verdict) -> Markup {
    html! {
        table {
            thead { tr { th { "#" } th { (lang.t("Defect")) } th { (lang.t("Violates")) } th { (lang.t("Confidence")) } th { (lang.t("Size")) } } }
            tbody {
                @for (i, f) in v.findings.iter().enumerate() {
                    tr {
                        td { (i + 1) }
                        td { (f.defect) }
                        td {
                            @if f.clause.is_some() {
                                blockquote {
                                    (lang.f("Clause {0}:", &[&f.clause_label.clone().or_else(|| f.clause.map(|c| c.to_string())).unwrap_or_default()]))
                                    " "
                                    span lang=(text_lang(f.clause_text.as_deref().unwrap_or_default())) {
                                        (f.clause_text.as_deref().unwrap_or_default())
                                    }
                                }
                            } @else if v.decision == record::Decision::Review {
                                // Not confirmed: the consistency check may
                                // have found that the standard rejects it.
                                (lang.t("the model calls it tolerated (not confirmed)"))
                            } @else {
                                (lang.t("tolerated by the standard"))
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
fn picture(lang: Lang, v: &record::Verdict, deleted: Option<&str>) -> Markup {
    let (w, h) = (v.image.width.max(1), v.image.height.max(1));
    match (deleted, v.image.not_kept.as_deref()) {
        (_, Some(why)) => html! { p class="err" { (lang.f("Image not kept: {0}", &[&why])) } },
        (Some(why), _) => {
            html! { p class="err" { (lang.f("Image deleted by retention ({0}).", &[&why])) } }
        }
        // Zoom and pan (wheel, pinch, drag; `assets/review.js`) move the
        // figure inside its frame, boxes and all.
        _ => html! {
            div class="zoom" {
                figure id="part" {
                    img src={ "/images/" (v.image.sha256) } alt=(lang.t("part image"));
                    svg viewBox={ "0 0 " (w) " " (h) } preserveAspectRatio="none" role="img" aria-label=(lang.t("findings")) {
                        (findings_drawn(v))
                    }
                }
            }
            p class="zoombar" {
                button type="button" data-zoom-by="1.5" aria-label=(lang.t("zoom in")) { "+" }
                button type="button" data-zoom-by="0.6667" aria-label=(lang.t("zoom out")) { "−" }
                button type="button" data-zoom-by="fit" { (lang.t("Fit")) }
                span { " " (lang.t("Wheel or pinch to zoom, drag to move, double-click to fit.")) }
            }
            script src="/assets/review.js" {}
        },
    }
}

/// A review's corrections in words, findings numbered from 1 as the table
/// and the boxes number them.
fn corrections_in_words(lang: Lang, c: &Corrections, findings: &[record::Finding]) -> String {
    let mut said = Vec::new();
    for i in &c.wrong_findings {
        let name = findings.get(*i).map_or("?", |f| f.defect.as_str());
        said.push(lang.f("finding {0} ({1}) is wrong", &[&(i + 1), &name]));
    }
    for m in &c.missed {
        let [x0, y0, x1, y1] = m.box_norm.map(|v| (v * 100.0).round());
        said.push(lang.f(
            "missed {0} at {1}–{2} % across, {3}–{4} % down",
            &[&m.defect, &x0, &x1, &y0, &y1],
        ));
    }
    said.join("; ")
}

/// The verdict's reviews, newest last.
fn reviews_list(lang: Lang, reviews: &[reviews::Review], findings: &[record::Finding]) -> Markup {
    html! {
        @for r in reviews {
            li {
                (local_time(&r.created_at, true)) " — " b { (r.decision) } " "
                (lang.f("by {0}", &[&r.reviewer])) " (" (if r.agrees { lang.t("confirmed") } else { lang.t("overridden") }) "): " (r.reason)
                @if r.corrections != Corrections::default() {
                    " — " (corrections_in_words(lang, &r.corrections, findings))
                }
            }
        } @if reviews.is_empty() {
            li { (lang.t("None yet.")) }
        }
    }
}

/// The one-tap review: a reason picked from `review.reasons` (a remark
/// optional), then PASS or FAIL with one tap (48 px and larger targets, or
/// the keys P and F, 1–9 for the reasons); the next REVIEW part follows.
fn one_tap_html(
    lang: Lang,
    id: &str,
    csrf: &str,
    judged: record::Decision,
    reasons: &[String],
) -> Markup {
    let label = |d: record::Decision| {
        if d == judged {
            lang.f("Confirm {0}", &[&d])
        } else if judged == record::Decision::Review {
            lang.f("Decide {0}", &[&d])
        } else {
            lang.f("Override to {0}", &[&d])
        }
    };
    html! {
        h2 { (lang.t("Review with one tap")) }
        form id="tap" class="tap" method="post" action={ "/verdicts/" (id) "/review" } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="next" value="review";
            p { label { (lang.t("Reason")) " "
                select name="reason_choice" id="reason-choice" required {
                    option value="" { (lang.t("choose…")) }
                    @for (i, r) in reasons.iter().enumerate() {
                        option value=(r) { (i + 1) ". " (r) }
                    }
                }
            } }
            p { label { (lang.t("Remark (optional)")) " " input name="reason" maxlength="500"; } }
            p class="taps" {
                button name="decision" value="PASS" class="tap PASS" accesskey="p" { (label(record::Decision::Pass)) }
                button name="decision" value="FAIL" class="tap FAIL" accesskey="f" { (label(record::Decision::Fail)) }
            }
            p class="keys" { (lang.t("Keys: 1–9 pick a reason, P or F decide.")) }
        }
    }
}

/// The review form: decision, findings marked wrong, missed defects drawn
/// or typed, and the reason.
fn review_form_html(lang: Lang, id: &str, csrf: &str, findings: usize) -> Markup {
    html! {
        details {
            summary { (lang.t("Detailed review: findings that are wrong, missed defects")) }
            form method="post" action={ "/verdicts/" (id) "/review" } {
                input type="hidden" name="csrf" value=(csrf);
                p { (lang.t("Decision:")) " "
                    label { input type="radio" name="decision" value="PASS" required; " PASS" } " "
                    label { input type="radio" name="decision" value="FAIL"; " FAIL" }
                }
                p { @for i in 0..findings {
                    label { input type="checkbox" name="wrong" value=(i); " " (lang.f("finding {0} is wrong", &[&(i + 1)])) } br;
                } }
                p { label { (lang.t("Missed defect:")) " " input id="missed-name" value="" placeholder=(lang.t("defect name, then drag a box on the image")); } }
                p { label {
                    (lang.t("Missed defects, one per line:")) " " code { "name x0 y0 x1 y1" } " " (lang.t("(0–1 of the image; drawn boxes land here)")) br;
                    textarea id="missed" name="missed" rows="3" cols="50" {}
                } }
                p { label { (lang.t("Reason")) br; textarea name="reason" rows="3" cols="50" required {} } }
                button { (lang.t("Record review")) }
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Window {
    #[serde(default = "day")]
    hours: i64,
    /// How the admin's last shadow-mode command went (the panel).
    #[serde(default)]
    said: String,
}

fn day() -> i64 {
    24
}

pub(crate) async fn charts_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(w): Query<Window>,
) -> Result<Markup, Refusal> {
    let lang = who.lang;
    let hours = w.hours.clamp(1, 24 * 14);
    let c = store::charts::load(&web.store, hours)
        .await
        .map_err(Refusal::internal)?;
    let body = html! {
        p {
            (lang.f("Window: the last {0} hours (UTC)", &[&hours])) " · "
            @for h in [24, 72, 168, 336] { a href={ "/charts?hours=" (h) } { (h) " h" } " " }
        }
        h2 { (lang.t("Pass and fail per hour")) }
        (crate::charts::rate_svg(&c.hours, lang))
        h2 { (lang.t("Defect Pareto")) }
        (crate::charts::pareto_svg(&c.pareto, lang))
        h2 { (lang.t("Response latency per hour")) }
        (crate::charts::latency_svg(&c.hours, web.latency_budget.as_secs_f64() * 1e3, lang))
    };
    Ok(page(lang, lang.t("Charts"), Some(&who), body))
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
    let summaries = store::shadow::summaries(&web.store)
        .await
        .map_err(Refusal::internal)?;
    let live = (web.line.state)().shadow;
    let lang = who.lang;
    let body = html! {
        @if !w.said.is_empty() {
            p id="said" class="said" { (w.said) }
        }
        (crate::panel::render(&p, hours, lang))
        (crate::shadow::section(&who, live.as_ref(), &summaries))
    };
    Ok(page(lang, lang.t("Monitoring"), Some(&who), body))
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
    let lang = who.lang;
    let body = html! {
        p {
            (lang.f(
                "{0} reviewed verdicts written to {1} ({2} left out: image gone).",
                &[&r.records, &r.file.display(), &r.without_image],
            ))
        }
        p { (lang.t("Fine-tune with")) " " code { "python -m toolchain.finetune --base … --images … --standard … --reviews " (folder) } }
    };
    Ok(page(
        lang,
        lang.t("Export for retraining"),
        Some(&who),
        body,
    ))
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
fn bulk_html(lang: Lang, csrf: &str, reasons: &[String]) -> Markup {
    html! {
        form id="bulk" class="tap" method="post" action="/reviews/bulk" {
            input type="hidden" name="csrf" value=(csrf);
            label { (lang.t("Reason")) " "
                select name="reason_choice" required {
                    option value="" { (lang.t("choose…")) }
                    @for r in reasons { option value=(r) { (r) } }
                }
            } " "
            label { (lang.t("Remark (optional)")) " " input name="reason" maxlength="500"; }
            p class="taps" {
                button name="decision" value="PASS" class="tap PASS" { (lang.t("Picked parts are PASS")) }
                button name="decision" value="FAIL" class="tap FAIL" { (lang.t("Picked parts are FAIL")) }
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

/// The review pages' Chinese.
pub(crate) const ZH: &[(&str, &str)] = &[
    (
        "Every station of the plant: the fleet page",
        "本厂所有工位：工位总览",
    ),
    ("Pick", "选择"),
    ("Picture", "图片"),
    ("Decided", "判定时间"),
    ("Decision", "判定"),
    ("Part", "零件"),
    ("Station", "工位"),
    ("Camera", "相机"),
    ("Recipe", "配方"),
    ("Findings", "缺陷数"),
    ("Reviewed", "复核"),
    ("pick this part", "选择此零件"),
    ("part {0}", "零件 {0}"),
    ("Verdicts", "判定"),
    ("Nothing waiting for review.", "没有待复核的零件。"),
    ("All verdicts", "全部判定"),
    ("Older verdicts →", "更早的判定 →"),
    ("Review inbox ({0})", "待复核（{0}）"),
    (
        "Export reviewed verdicts for retraining",
        "导出已复核的判定用于再训练",
    ),
    ("reviewed", "已复核"),
    ("not reviewed", "未复核"),
    ("any station", "全部工位"),
    ("any camera", "全部相机"),
    ("any recipe", "全部配方"),
    ("any decision", "全部判定"),
    ("any defect", "全部缺陷"),
    ("from", "从"),
    ("to", "至"),
    ("reviewed or not", "复核与否"),
    ("Filter", "筛选"),
    ("Why a person must decide:", "需要人工判定的原因："),
    ("camera", "相机"),
    ("station", "工位"),
    ("confidence", "置信度"),
    ("standard", "标准"),
    ("model", "模型"),
    ("Captured {0}", "拍摄于 {0}"),
    ("decided {0}", "判定于 {0}"),
    ("inference", "推理"),
    (
        "The standard this verdict was judged against",
        "本次判定所依据的标准",
    ),
    ("Reviews", "复核记录"),
    ("Verdict {0}", "判定 {0}"),
    (
        "Judged {0} by the model · overridden to {1} by {2} at {3}",
        "模型判定为 {0} · 由 {2} 于 {3} 改判为 {1}",
    ),
    (
        "Judged {0} by the model · confirmed by {1}",
        "模型判定为 {0} · 已由 {1} 确认",
    ),
    ("Defect", "缺陷"),
    ("Violates", "违反条款"),
    ("Confidence", "置信度"),
    ("Size", "尺寸"),
    ("Clause {0}:", "第 {0} 条："),
    (
        "the model calls it tolerated (not confirmed)",
        "模型认为可接受（未确认）",
    ),
    ("tolerated by the standard", "标准允许"),
    ("Image not kept: {0}", "图片未保存：{0}"),
    (
        "Image deleted by retention ({0}).",
        "图片已按保留策略删除（{0}）。",
    ),
    ("part image", "零件图片"),
    ("findings", "缺陷"),
    ("zoom in", "放大"),
    ("zoom out", "缩小"),
    ("Fit", "适应窗口"),
    (
        "Wheel or pinch to zoom, drag to move, double-click to fit.",
        "滚轮或双指缩放，拖动平移，双击适应窗口。",
    ),
    ("finding {0} ({1}) is wrong", "缺陷 {0}（{1}）判错"),
    (
        "missed {0} at {1}–{2} % across, {3}–{4} % down",
        "漏检 {0}：横向 {1}–{2} %，纵向 {3}–{4} %",
    ),
    ("by {0}", "复核人 {0}"),
    ("confirmed", "确认"),
    ("overridden", "改判"),
    ("None yet.", "暂无。"),
    ("Confirm {0}", "确认 {0}"),
    ("Decide {0}", "判为 {0}"),
    ("Override to {0}", "改判为 {0}"),
    ("Review with one tap", "一键复核"),
    ("Reason", "原因"),
    ("choose…", "请选择…"),
    ("Remark (optional)", "备注（可选）"),
    (
        "Keys: 1–9 pick a reason, P or F decide.",
        "快捷键：1–9 选择原因，P 或 F 判定。",
    ),
    (
        "Detailed review: findings that are wrong, missed defects",
        "详细复核：判错的缺陷、漏检的缺陷",
    ),
    ("Decision:", "判定："),
    ("finding {0} is wrong", "缺陷 {0} 判错"),
    ("Missed defect:", "漏检缺陷："),
    (
        "defect name, then drag a box on the image",
        "输入缺陷名称，然后在图片上拖出方框",
    ),
    ("Missed defects, one per line:", "漏检缺陷，每行一个："),
    (
        "(0–1 of the image; drawn boxes land here)",
        "（相对图片 0–1；画出的方框会填入此处）",
    ),
    ("Record review", "保存复核"),
    (
        "Window: the last {0} hours (UTC)",
        "时间窗口：最近 {0} 小时（UTC）",
    ),
    ("Pass and fail per hour", "每小时合格与不合格"),
    ("Defect Pareto", "缺陷帕累托图"),
    ("Response latency per hour", "每小时响应时间"),
    ("Charts", "图表"),
    ("Monitoring", "监控"),
    (
        "{0} reviewed verdicts written to {1} ({2} left out: image gone).",
        "已将 {0} 条复核过的判定写入 {1}（{2} 条因图片已删除而略过）。",
    ),
    ("Fine-tune with", "微调命令："),
    ("Export for retraining", "导出用于再训练"),
    ("Picked parts are PASS", "所选零件为 PASS"),
    ("Picked parts are FAIL", "所选零件为 FAIL"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::tests::english_left;

    fn verdict() -> record::Verdict {
        serde_json::from_value(serde_json::json!({
            "schema": "verdict/v1", "id": "v-1",
            "station": {"site": "plant", "line": "line-1", "station": "st-1"},
            "camera": "top", "part_id": "P-1", "trigger_id": null, "frame_seq": 7,
            "recipe": "housing", "standard_sha256": "ab".repeat(32), "decision": "REVIEW",
            "confidence": 0.97, "review_reason": "划痕长度接近限值",
            "findings": [{"defect": "scratch", "box_norm": [0.1, 0.2, 0.3, 0.4], "box_px": [10, 20, 30, 40],
                "size_mm": 4.2, "clause": 2, "clause_label": "4.2", "clause_text": "划痕长度超过 3 mm 判不合格。",
                "limit_mm": 3.0, "confidence": 0.9},
                {"defect": "dent", "box_norm": [0.5, 0.5, 0.6, 0.6], "box_px": [50, 50, 60, 60],
                "size_mm": 1.0, "clause": null, "clause_label": null, "clause_text": null, "confidence": 0.6}],
            "model": {"name": "reference-inspector", "version": "0.3.0", "sha256": "cd".repeat(32)},
            "timings": {"captured_at": "2026-12-03T08:00:00.000000Z", "queued_at": "2026-12-03T08:00:00.001000Z",
                "decided_at": "2026-12-03T08:00:00.030000Z", "published_at": null, "inference_ms": 21.3},
            "image": {"sha256": "ef".repeat(32), "path": "images/ef.png", "bytes": 1234, "width": 100,
                "height": 100, "not_kept": null},
            "context_loss": 0.0
        }))
        .unwrap()
    }

    #[test]
    fn a_chinese_reader_finds_no_english_on_the_review_pages() {
        let v = verdict();
        let review = reviews::Review {
            id: "r-1".into(),
            reviewer: "ana".into(),
            decision: "PASS".into(),
            agrees: false,
            reason: "治具压痕".into(),
            corrections: Corrections {
                wrong_findings: vec![0],
                missed: vec![Missed {
                    defect: "dent".into(),
                    box_norm: [0.1, 0.1, 0.2, 0.2],
                }],
            },
            created_at: "2026-12-03T08:05:00.000000Z".into(),
        };
        let row = ListRow {
            id: "v-1".into(),
            station: "st-1".into(),
            camera: "top".into(),
            part_id: Some("P-1".into()),
            recipe: "housing".into(),
            decision: "REVIEW".into(),
            confidence: 0.97,
            decided_at: "2026-12-03T08:00:00.030000Z".into(),
            findings: 2,
            reviewed: Some("PASS".into()),
            image: Some("ef".repeat(32)),
        };
        let choices = reviews::Choices {
            stations: vec!["st-1".into()],
            cameras: vec!["top".into()],
            recipes: vec!["housing".into()],
            defects: vec!["scratch".into(), "dent".into()],
        };
        let reasons = vec!["治具压痕".to_string()];
        let filter = Filter {
            reviewed: "no".into(),
            ..Filter::default()
        };
        for lang in [Lang::Zh, Lang::En] {
            let html = html! {
                (rows_table(lang, std::slice::from_ref(&row), true))
                (filters_form(lang, &filter, &choices))
                (bulk_html(lang, "csrf", &reasons))
                (picture(lang, &v, None))
                (standing(lang, &v, std::slice::from_ref(&review)))
                (findings_table(lang, &v))
                (reviews_list(lang, std::slice::from_ref(&review), &v.findings))
                (reviews_list(lang, &[], &v.findings))
                (one_tap_html(lang, "v-1", "csrf", v.decision, &reasons))
                (review_form_html(lang, "v-1", "csrf", v.findings.len()))
                (picture(lang, &record::Verdict { image: record::ImageRef { not_kept: Some("disk full".into()), ..v.image.clone() }, ..v.clone() }, None))
            }
            .into_string();
            let data = [
                "st-1",
                "top",
                "housing",
                "scratch",
                "dent",
                "ana",
                "disk full",
                "name x0 y0 x1 y1",
            ];
            let left = english_left(&html, &data);
            match lang {
                Lang::Zh => assert!(left.is_empty(), "untranslated: {left:?}\n{html}"),
                Lang::En => assert!(left.contains(&"Decision".to_string()), "{left:?}"),
            }
        }
    }

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
