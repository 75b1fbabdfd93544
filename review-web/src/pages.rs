//! The review pages: the verdict list with its filters and inbox, one
//! verdict with its picture, findings, standard and review form, the charts,
//! the monitoring panel, the export form and the pictures themselves.

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::api::export_now;
use crate::auth::{caller, form_refusal, CsrfForm, PageCaller};
use crate::html::{esc, local_time};
use crate::respond::{page, query_error, server_error};
use crate::Web;
use store::accounts::Role;
use store::reviews::{self, Corrections, Filter, ListRow, Missed, NewReview, QueryError};

/// Drawing a missed defect: drag on the image (mouse, pen or finger); the
/// box, normalised to the image, is appended to the "missed" field as
/// `name x0 y0 x1 y1`. Without script the field can be typed into. And the
/// one-tap form's keys: 1–9 pick a reason, P and F decide. Served as
/// `/assets/review.js` (the Content-Security-Policy allows no inline
/// script).
pub(crate) const DRAW: &str = r#"(function(){var f=document.getElementById('part'),t=document.getElementById('missed');if(!f||!t)return;
var svg=f.querySelector('svg'),vb=svg.viewBox.baseVal,s=null,r=null;f.style.touchAction='none';f.style.cursor='crosshair';
function at(e){var b=f.getBoundingClientRect();return[Math.min(1,Math.max(0,(e.clientX-b.left)/b.width)),Math.min(1,Math.max(0,(e.clientY-b.top)/b.height))];}
f.addEventListener('pointerdown',function(e){s=at(e);r=document.createElementNS('http://www.w3.org/2000/svg','rect');r.setAttribute('fill','none');r.setAttribute('stroke','#1f6feb');r.setAttribute('stroke-width',Math.max(2,vb.width/200));r.setAttribute('stroke-dasharray','6 4');svg.appendChild(r);f.setPointerCapture(e.pointerId);e.preventDefault();});
f.addEventListener('pointermove',function(e){if(!s)return;var p=at(e);r.setAttribute('x',Math.min(s[0],p[0])*vb.width);r.setAttribute('y',Math.min(s[1],p[1])*vb.height);r.setAttribute('width',Math.abs(p[0]-s[0])*vb.width);r.setAttribute('height',Math.abs(p[1]-s[1])*vb.height);});
f.addEventListener('pointerup',function(e){if(!s)return;var p=at(e),x0=Math.min(s[0],p[0]),y0=Math.min(s[1],p[1]),x1=Math.max(s[0],p[0]),y1=Math.max(s[1],p[1]);s=null;
if(x1-x0<0.01||y1-y0<0.01){svg.removeChild(r);return;}var n=(document.getElementById('missed-name').value||'missed').trim().replace(/\s+/g,'_');
t.value+=(t.value&&!t.value.endsWith('\n')?'\n':'')+[n,x0.toFixed(3),y0.toFixed(3),x1.toFixed(3),y1.toFixed(3)].join(' ')+'\n';});})();
(function(){var f=document.getElementById('tap');if(!f)return;var sel=document.getElementById('reason-choice');
document.addEventListener('keydown',function(e){var t=e.target;if((t&&/^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))||e.ctrlKey||e.metaKey||e.altKey)return;
var k=e.key.toLowerCase();if(k>='1'&&k<='9'){if(sel.options[+k]){sel.selectedIndex=+k;e.preventDefault();}return;}
if(k==='p'||k==='f'){var b=f.querySelector('button[value='+(k==='p'?'PASS':'FAIL')+']');e.preventDefault();if(b&&f.reportValidity())f.requestSubmit(b);}});})();"#;

/// Verdicts as table rows; `pick` adds a box per row for the bulk review
/// form (`form="bulk"`).
fn rows_table(rows: &[ListRow], pick: bool) -> String {
    let mut t = format!(
        "<table><thead><tr>{}<th>Decided</th><th>Decision</th><th>Part</th><th>Station</th><th>Camera</th><th>Recipe</th><th>Findings</th><th>Reviewed</th></tr></thead><tbody>",
        if pick { "<th>Pick</th>" } else { "" }
    );
    for r in rows {
        let picked = if pick {
            format!(
                r#"<td><input type="checkbox" class="pick" name="ids" value="{}" form="bulk" aria-label="pick this part"></td>"#,
                esc(&r.id)
            )
        } else {
            String::new()
        };
        t.push_str(&format!(
            r#"<tr>{picked}<td><a href="/verdicts/{id}">{at}</a></td><td class="{d}">{d}</td><td>{part}</td><td>{st}</td><td>{cam}</td><td>{rec}</td><td>{n}</td><td>{rev}</td></tr>"#,
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

pub(crate) async fn list_page(
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
    let operator = who.user.role >= Role::Operator && who.csrf.is_some();
    let inbox_html = if inbox.is_empty() {
        "<p>Nothing waiting for review.</p>".to_string()
    } else if operator {
        format!(
            "{}{}",
            rows_table(&inbox, true),
            bulk_html(who.csrf.as_deref().unwrap_or_default(), &web.reasons)
        )
    } else {
        rows_table(&inbox, false)
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
        rows_table(&page_rows.items, false)
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

pub(crate) async fn verdict_page(
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
    let (boxes, rows) = findings_drawn(&v);
    let image = picture(&v, d.image_deleted.as_deref(), &boxes);
    let reviews = reviews_list(&d.reviews, &v.findings);
    // The decision that stands: the latest review's, else the model's.
    let (standing, judged) = match d.reviews.last() {
        Some(r) if r.decision != v.decision.as_str() => (
            r.decision.clone(),
            format!(
                r#"<p class="judged">Judged {} by the model · overridden to {} by {} at {}</p>"#,
                v.decision,
                esc(&r.decision),
                esc(&r.reviewer),
                esc(&local_time(&r.created_at, true))
            ),
        ),
        Some(r) => (
            r.decision.clone(),
            format!(
                r#"<p class="judged">Judged {} by the model · confirmed by {}</p>"#,
                v.decision,
                esc(&r.reviewer)
            ),
        ),
        None => (v.decision.as_str().to_string(), String::new()),
    };
    let form = if who.user.role >= Role::Operator && who.csrf.is_some() {
        let csrf = who.csrf.as_deref().unwrap_or_default();
        format!(
            "{}{}",
            one_tap_html(&id, csrf, v.decision, &web.reasons),
            review_form_html(&id, csrf, v.findings.len())
        )
    } else {
        String::new()
    };
    let body = format!(
        r#"<div class="cols"><div>{image}</div><div><p class="{standing} headline">{standing}</p>{judged}
{why}<p>Part <b>{part}</b> · camera {cam} · station {st} · confidence {conf:.2}</p>
<table><thead><tr><th>#</th><th>Defect</th><th>Violates</th><th>Confidence</th><th>Size</th></tr></thead><tbody>{rows}</tbody></table>
<p>Recipe <b>{recipe}</b>, standard <code>{std_sha}</code> · model {model} {mver}</p>
<p>Captured {cap} · decided {dec_at} · inference {inf:.1} ms</p>
<details><summary>The standard this verdict was judged against</summary><pre>{standard}</pre></details>
<h2>Reviews</h2><ul>{reviews}</ul>{form}</div></div>"#,
        standing = esc(&standing),
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
        cap = esc(&local_time(&v.timings.captured_at, true)),
        dec_at = esc(&local_time(&v.timings.decided_at, false)),
        inf = v.timings.inference_ms,
        standard = esc(&d.standard),
    );
    page(&format!("Verdict {}", &id), Some(&who), &body).into_response()
}

/// The findings as SVG boxes over the picture (numbered from 1, red where
/// a clause is violated, amber where tolerated) and as table rows.
fn findings_drawn(v: &record::Verdict) -> (String, String) {
    let findings = &v.findings;
    let (w, h) = (
        f64::from(v.image.width.max(1)),
        f64::from(v.image.height.max(1)),
    );
    let mut boxes = String::new();
    let mut rows = String::new();
    for (i, f) in findings.iter().enumerate() {
        let violates = f.clause.is_some();
        let size = MarkSize {
            stroke: (w / 200.0).max(2.0),
            font: (w / 28.0).max(11.0),
            lift: 3.0,
            top: 12.0,
        };
        boxes.push_str(&mark_svg(
            i + 1,
            &f.defect,
            f.box_norm,
            violates,
            (w, h),
            &size,
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
            "<tr><td>{}</td><td>{}</td><td>{clause}</td><td>{:.2}</td><td>{:.1} mm</td></tr>",
            i + 1,
            esc(&f.defect),
            f.confidence,
            f.size_mm
        ));
    }
    (boxes, rows)
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
) -> String {
    let [x0, y0, x1, y1] = at.map(f64::from);
    let colour = if violates { "#e3261b" } else { "#f2a900" };
    format!(
        r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{colour}" stroke-width="{:.1}"/><text x="{:.1}" y="{:.1}" fill="{colour}" font-size="{:.1}" font-weight="700">{n} {}</text>"#,
        x0 * w,
        y0 * h,
        (x1 - x0) * w,
        (y1 - y0) * h,
        size.stroke,
        label_x(x0 * w, w, size.font, defect),
        (y0 * h - size.lift).max(size.top),
        size.font,
        esc(defect)
    )
}

/// Where a box's label starts so that it stays inside a picture `width`
/// wide: at the box, or as far right as its estimated width allows.
pub(crate) fn label_x(box_x: f64, width: f64, font_size: f64, defect: &str) -> f64 {
    let label = font_size * 0.62 * (defect.chars().count() + 3) as f64;
    box_x.min((width - label).max(0.0))
}

/// The picture with its boxes, or why there is none.
fn picture(v: &record::Verdict, deleted: Option<&str>, boxes: &str) -> String {
    let (w, h) = (v.image.width.max(1), v.image.height.max(1));
    match (deleted, v.image.not_kept.as_deref()) {
        (_, Some(why)) => format!(r#"<p class="err">Image not kept: {}</p>"#, esc(why)),
        (Some(why), _) => format!(
            r#"<p class="err">Image deleted by retention ({}).</p>"#,
            esc(why)
        ),
        _ => format!(
            r#"<figure id="part"><img src="/images/{sha}" alt="part image"><svg viewBox="0 0 {w} {h}" preserveAspectRatio="none" role="img" aria-label="findings">{boxes}</svg></figure>"#,
            sha = esc(&v.image.sha256)
        ),
    }
}

/// The verdict's reviews, newest last.
/// A review's corrections in words, findings numbered from 1 as the table
/// and the boxes number them.
fn corrections_in_words(c: &Corrections, findings: &[record::Finding]) -> String {
    let mut said = Vec::new();
    for i in &c.wrong_findings {
        let name = findings.get(*i).map_or("?", |f| f.defect.as_str());
        said.push(format!("finding {} ({}) is wrong", i + 1, esc(name)));
    }
    for m in &c.missed {
        let [x0, y0, x1, y1] = m.box_norm.map(|v| (v * 100.0).round());
        said.push(format!(
            "missed {} at {x0}–{x1} % across, {y0}–{y1} % down",
            esc(&m.defect)
        ));
    }
    said.join("; ")
}

fn reviews_list(reviews: &[reviews::Review], findings: &[record::Finding]) -> String {
    let items: String = reviews
        .iter()
        .map(|r| {
            format!(
                "<li>{} — <b>{}</b> by {} ({}): {}{}</li>",
                esc(&local_time(&r.created_at, true)),
                esc(&r.decision),
                esc(&r.reviewer),
                if r.agrees { "confirmed" } else { "overridden" },
                esc(&r.reason),
                if r.corrections == Corrections::default() {
                    String::new()
                } else {
                    format!(" — {}", corrections_in_words(&r.corrections, findings))
                }
            )
        })
        .collect();
    if items.is_empty() {
        "<li>None yet.</li>".to_string()
    } else {
        items
    }
}

/// The one-tap review: a reason picked from `review.reasons` (a remark
/// optional), then PASS or FAIL with one tap (48 px and larger targets, or
/// the keys P and F, 1–9 for the reasons); the next REVIEW part follows.
fn one_tap_html(id: &str, csrf: &str, judged: record::Decision, reasons: &[String]) -> String {
    let options: String = reasons
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                r#"<option value="{r}">{n}. {r}</option>"#,
                n = i + 1,
                r = esc(r)
            )
        })
        .collect();
    let label = |d: record::Decision| {
        if d == judged {
            format!("Confirm {d}")
        } else if judged == record::Decision::Review {
            format!("Decide {d}")
        } else {
            format!("Override to {d}")
        }
    };
    format!(
        r#"<h2>Review with one tap</h2><form id="tap" class="tap" method="post" action="/verdicts/{id}/review"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="review">
<p><label>Reason <select name="reason_choice" id="reason-choice" required><option value="">choose…</option>{options}</select></label></p>
<p><label>Remark (optional) <input name="reason" maxlength="500"></label></p>
<p class="taps"><button name="decision" value="PASS" class="tap PASS" accesskey="p">{pass}</button><button name="decision" value="FAIL" class="tap FAIL" accesskey="f">{fail}</button></p>
<p class="keys">Keys: 1–9 pick a reason, P or F decide.</p></form>"#,
        id = esc(id),
        csrf = esc(csrf),
        pass = label(record::Decision::Pass),
        fail = label(record::Decision::Fail),
    )
}

/// The review form: decision, findings marked wrong, missed defects drawn
/// or typed, and the reason.
fn review_form_html(id: &str, csrf: &str, findings: usize) -> String {
    let per_finding: String = (0..findings)
            .map(|i| format!(r#"<label><input type="checkbox" name="wrong" value="{i}"> finding {} is wrong</label><br>"#, i + 1))
            .collect();
    format!(
        r#"<details><summary>Detailed review: findings that are wrong, missed defects</summary><form method="post" action="/verdicts/{id}/review"><input type="hidden" name="csrf" value="{csrf}">
<p>Decision: <label><input type="radio" name="decision" value="PASS" required> PASS</label> <label><input type="radio" name="decision" value="FAIL"> FAIL</label></p>
<p>{per_finding}</p><p><label>Missed defect: <input id="missed-name" value="" placeholder="defect name, then drag a box on the image"></label></p>
<p><label>Missed defects, one per line: <code>name x0 y0 x1 y1</code> (0–1 of the image; drawn boxes land here)<br><textarea id="missed" name="missed" rows="3" cols="50"></textarea></label></p>
<p><label>Reason<br><textarea name="reason" rows="3" cols="50" required></textarea></label></p><button>Record review</button></form></details><script src="/assets/review.js"></script>"#,
        id = esc(id),
        csrf = esc(csrf),
    )
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
        crate::charts::rate_svg(&c.hours),
        crate::charts::pareto_svg(&c.pareto),
        crate::charts::latency_svg(&c.hours, web.latency_budget.as_secs_f64() * 1e3),
    );
    page("Charts", Some(&who), &body).into_response()
}

pub(crate) async fn panel_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(w): Query<Window>,
) -> Response {
    let hours = w.hours.clamp(1, 24 * 90);
    match crate::panel::load(&web.store, hours).await {
        Ok(p) => page("Monitoring", Some(&who), &crate::panel::render(&p, hours)).into_response(),
        Err(e) => server_error(e),
    }
}

pub(crate) async fn export_form(
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
fn bulk_html(csrf: &str, reasons: &[String]) -> String {
    let options: String = reasons
        .iter()
        .map(|r| format!(r#"<option value="{r}">{r}</option>"#, r = esc(r)))
        .collect();
    format!(
        r#"<form id="bulk" class="tap" method="post" action="/reviews/bulk"><input type="hidden" name="csrf" value="{csrf}"><label>Reason <select name="reason_choice" required><option value="">choose…</option>{options}</select></label> <label>Remark (optional) <input name="reason" maxlength="500"></label><p class="taps"><button name="decision" value="PASS" class="tap PASS">Picked parts are PASS</button><button name="decision" value="FAIL" class="tap FAIL">Picked parts are FAIL</button></p></form>"#,
        csrf = esc(csrf)
    )
}

/// The most parts one bulk review decides.
const MAX_BULK: usize = 100;

/// Why a review form is refused, if it is: it needs the session's CSRF
/// token and the operator role, settled before anything else it says is
/// read.
fn reviewing_refusal(who: &crate::auth::Caller, pairs: &[(String, String)]) -> Option<Response> {
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str());
    form_refusal(who, csrf, Role::Operator, "reviewing")
}

/// The inbox's bulk review: every picked part gets the same review (each a
/// row of its own, each published for the MES).
pub(crate) async fn bulk_review(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = reviewing_refusal(&who, &pairs) {
        return r;
    }
    let ids: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.is_empty() || ids.len() > MAX_BULK {
        return (
            StatusCode::BAD_REQUEST,
            format!("pick 1 to {MAX_BULK} parts"),
        )
            .into_response();
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
        if let Err(e) = web.record_review(id, &who.user, &review).await {
            return query_error(e);
        }
    }
    Redirect::to("/").into_response()
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
) -> Response {
    // Who may act is settled before anything the form says is read.
    if let Some(r) = reviewing_refusal(&who, &pairs) {
        return r;
    }
    let review = match parse_review_form(&pairs) {
        Ok(r) => r,
        Err(m) => return (StatusCode::BAD_REQUEST, m).into_response(),
    };
    if let Err(e) = web.record_review(&id, &who.user, &review).await {
        return query_error(e);
    }
    // One tap: on to the oldest REVIEW part nobody has reviewed, or back
    // to the inbox when none is left.
    let next_review = pairs.iter().any(|(k, v)| k == "next" && v == "review");
    if !next_review {
        return Redirect::to(&format!("/verdicts/{id}")).into_response();
    }
    match reviews::inbox(&web.store, 1).await {
        Ok(rows) => match rows.first() {
            Some(next) => Redirect::to(&format!("/verdicts/{}", next.id)).into_response(),
            None => Redirect::to("/").into_response(),
        },
        Err(e) => query_error(e),
    }
}

pub(crate) async fn image(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(sha): Path<String>,
) -> Response {
    match caller(&web, &headers).await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(e) => return server_error(e),
    }
    // Only a content address is accepted; the file path comes from the database.
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (StatusCode::NOT_FOUND, "no such image").into_response();
    }
    let path = match web.store.image_file(&sha.to_ascii_lowercase()).await {
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

#[cfg(test)]
mod tests {
    use super::label_x;

    #[test]
    fn a_label_near_the_right_edge_moves_left_to_stay_inside() {
        assert_eq!(label_x(10.0, 256.0, 11.0, "dent"), 10.0);
        let x = label_x(240.0, 256.0, 11.0, "contamination");
        assert!(x + 11.0 * 0.62 * 16.0 <= 256.0 + 1e-9 && x < 240.0, "{x}");
        assert_eq!(label_x(5.0, 40.0, 11.0, "contamination"), 0.0);
    }
}
