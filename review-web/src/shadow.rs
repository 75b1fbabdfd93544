//! Shadow mode on the screen: the panel's candidate section (what runs
//! beside the running model, its agreement, what it costs; start, stop and
//! promote for admins), `/shadow` (the frames the two models judged
//! differently, with both verdicts and the operators' standing decision)
//! and the candidate's judgement on the verdict page. The station does the
//! work (`appliance/src/shadow.rs`); the admin's buttons reach it as the
//! `shadow` command, answered as on `cmd/shadow`.

use axum::extract::{Form, Query, State};
use axum::response::Redirect;
use maud::{html, Markup};
use serde::Deserialize;
use store::accounts::Role;
use store::shadow::{CandidateSummary, Disagreement};

use crate::auth::{check_form, Caller, PageCaller};
use crate::html::local_time;
use crate::i18n::Lang;
use crate::line::CandidateState;
use crate::respond::{page, Refusal};
use crate::Web;

/// Disagreements listed on `/shadow`.
const LISTED: i64 = 200;

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn pct(part: i64, whole: i64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1} ms"))
}

/// The panel's section on the candidate model.
pub(crate) fn section(
    who: &Caller,
    live: Option<&CandidateState>,
    summaries: &[CandidateSummary],
) -> Markup {
    let lang = who.lang;
    let csrf = who.csrf.as_deref().unwrap_or_default();
    let admin = who.user.role >= Role::Admin;
    let current = live.and_then(|c| summaries.iter().find(|s| s.sha256 == c.sha256));
    html! {
        section id="shadow-mode" {
        h2 id="shadow" { (lang.t("Candidate model (shadow mode)")) }
        @if let Some(c) = live {
            p {
                (lang.f("{0} {1} (model.toml sha256 {2}…, {3}) from {4} judges every frame beside the running model since {5}; only the running model's verdicts are published.", &[
                    &c.name, &c.version, &short(&c.sha256), &c.precision, &c.package, &local_time(&c.since, true),
                ]))
            }
            @let (compared, agreed) = current.map_or((0, 0), |s| (s.compared, s.agreed));
            div.cards id="candidate" {
                div.card data-agreed=(agreed) data-compared=(compared) {
                    h3 { (lang.t("Agreement")) }
                    p.value id="agreement" { (pct(agreed, compared)) }
                    p { (lang.f("{0} of {1} frames decided the same", &[&agreed, &compared])) }
                    p {
                        a href={ "/shadow?candidate=" (c.sha256) } id="disagreements" {
                            (lang.f("{0} disagreements", &[&(compared - agreed)]))
                        }
                    }
                }
                div.card {
                    h3 { (lang.t("Frames")) }
                    p.value { (c.judged) }
                    p { (lang.f("{0} offered, {1} skipped (the candidate fell behind), {2} not kept", &[&c.offered, &c.skipped, &c.failed])) }
                }
                div.card id="cost" {
                    h3 { (lang.t("Extra cost")) }
                    p.value { (ms(c.candidate_ms_per_frame)) }
                    p { (lang.t("the candidate's engine time per frame")) }
                    p { (lang.f("running model: {0} per frame before, {1} since", &[&ms(c.running_ms_before), &ms(c.running_ms_since)])) }
                    p { (lang.f("candidate busy {0}% of the time (lower CPU priority)", &[&format!("{:.0}", c.busy_share * 100.0)])) }
                }
            }
            @if admin {
                form class="act" method="post" action="/shadow/command" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="promote";
                    button class="big" id="promote" { (lang.t("Promote: the candidate decides from now on")) }
                }
                form class="act" method="post" action="/shadow/command" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="stop";
                    button class="big" id="stop-shadow" { (lang.t("Stop shadow mode")) }
                }
            }
        } @else {
            p { (lang.t("No candidate model is in shadow mode.")) }
            @if admin {
                form class="act" method="post" action="/shadow/command" id="start-shadow" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="start";
                    label {
                        (lang.t("Candidate package folder (on this station)")) " "
                        input name="package" required maxlength="1024" size="40";
                    }
                    label {
                        (lang.t("Precision")) " "
                        select name="precision" {
                            option value="" { (lang.t("as the running model")) }
                            option value="fp32" { "FP32" }
                            option value="int8" { "INT8" }
                        }
                    }
                    button class="big" { (lang.t("Start shadow mode")) }
                }
            }
        }
        @if !summaries.is_empty() {
            table class="candidates" {
                tr {
                    th { (lang.t("Candidate")) }
                    th { (lang.t("Frames compared")) }
                    th { (lang.t("Agreement")) }
                    th { (lang.t("Disagreements")) }
                    th { (lang.t("Reviewed: candidate right / running right")) }
                    th { (lang.t("Last compared")) }
                }
                @for s in summaries {
                    tr {
                        td { (s.name) " " (s.version) " · " code { (short(&s.sha256)) } }
                        td { (s.compared) }
                        td { (pct(s.agreed, s.compared)) }
                        td { a href={ "/shadow?candidate=" (s.sha256) } { (s.compared - s.agreed) } }
                        td { (s.candidate_upheld) " / " (s.running_upheld) }
                        td { (local_time(&s.last, true)) }
                    }
                }
            }
        }
        }
    }
}

/// `/shadow?candidate=SHA`.
#[derive(Deserialize, Default)]
pub(crate) struct Which {
    #[serde(default)]
    candidate: String,
}

/// The frames a candidate judged differently from the running model.
pub(crate) async fn disagreements_page(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Query(which): Query<Which>,
) -> Result<Markup, Refusal> {
    let lang = who.lang;
    let summaries = store::shadow::summaries(&web.store)
        .await
        .map_err(Refusal::internal)?;
    let Some(summary) = summaries
        .iter()
        .find(|s| which.candidate.is_empty() || s.sha256 == which.candidate)
    else {
        let body = html! { p { (lang.t("No candidate model has judged a frame here yet.")) } };
        return Ok(page(lang, lang.t("Disagreements"), Some(&who), body));
    };
    let rows = store::shadow::disagreements(&web.store, &summary.sha256, LISTED)
        .await
        .map_err(Refusal::internal)?;
    let body = html! {
        p {
            (lang.f("{0} {1} disagreed with the running model on {2} of {3} frames ({4} agreement). Each is listed with both verdicts; review it to say which was right.", &[
                &summary.name, &summary.version, &(summary.compared - summary.agreed), &summary.compared, &pct(summary.agreed, summary.compared),
            ]))
        }
        @if rows.len() as i64 == LISTED {
            p { (lang.f("The latest {0} are shown.", &[&LISTED])) }
        }
        table class="disagreements" {
            tr {
                th { (lang.t("Picture")) }
                th { (lang.t("Time")) }
                th.wide { (lang.t("Camera")) }
                th { (lang.t("Part")) }
                th { (lang.t("Running model")) }
                th { (lang.t("Candidate")) }
                th { (lang.t("After review")) }
            }
            @for d in &rows {
                (row(lang, d))
            }
        }
    };
    Ok(page(lang, lang.t("Disagreements"), Some(&who), body))
}

/// The defects a verdict found, in words.
fn defects(lang: Lang, findings: &[record::Finding]) -> String {
    if findings.is_empty() {
        return lang.t("nothing found").into();
    }
    findings
        .iter()
        .map(|f| format!("{} {:.1} mm", f.defect, f.size_mm))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(lang: Lang, d: &Disagreement) -> Markup {
    let v = &d.running;
    let c = &d.candidate;
    html! {
        tr class="disagreement" {
            td class="pic" {
                a href={ "/verdicts/" (v.id) } {
                    img src={ "/images/" (v.image.sha256) "/thumb" } alt="" loading="lazy";
                }
            }
            td { a href={ "/verdicts/" (v.id) } { (local_time(&v.timings.decided_at, true)) } }
            td.wide { (v.camera) }
            td { (v.part_id.as_deref().unwrap_or("—")) }
            td { b class=(v.decision.as_str()) { (v.decision.as_str()) } br; (defects(lang, &v.findings)) }
            td { b class=(c.decision.as_str()) { (c.decision.as_str()) } br; (defects(lang, &c.findings)) }
            td {
                @match d.standing {
                    Some(s) => b class=(s.as_str()) { (s.as_str()) },
                    None => (lang.t("not reviewed")),
                }
            }
        }
    }
}

/// The candidate's judgement of a verdict's frame, for the verdict page.
pub(crate) fn on_verdict(lang: Lang, s: &record::ShadowVerdict) -> Markup {
    html! {
        section class="shadow" id="candidate-verdict" {
            h2 { (lang.t("Candidate model (shadow mode)")) }
            p {
                (lang.f("{0} {1} judged this frame too (not published): ", &[&s.candidate.name, &s.candidate.version]))
                b class=(s.decision.as_str()) { (s.decision.as_str()) }
                " · " (defects(lang, &s.findings))
                @if let Some(why) = &s.review_reason { " · " (why) }
            }
            @if s.decision != s.running_decision {
                p { (lang.t("The two models disagree on this frame.")) }
            }
        }
    }
}

/// The admin's buttons: `start` (with a package and a precision), `stop`
/// or `promote`.
#[derive(Deserialize)]
pub(crate) struct ShadowForm {
    csrf: String,
    action: String,
    #[serde(default)]
    package: String,
    #[serde(default)]
    precision: String,
}

pub(crate) async fn shadow_command(
    State(web): State<Web>,
    PageCaller(who): PageCaller,
    Form(f): Form<ShadowForm>,
) -> Result<Redirect, Refusal> {
    check_form(&who, &f.csrf, Role::Admin, "shadow mode")?;
    let mut payload = serde_json::json!({ "action": f.action });
    if f.action == "start" {
        payload["package"] = f.package.trim().into();
        if !f.precision.is_empty() {
            payload["precision"] = f.precision.into();
        }
    }
    let said = match &web.line.commands {
        None => who.lang.t("this view takes no commands").to_string(),
        Some(commands) => crate::line::tell_station(commands, &who, "shadow", &payload).await,
    };
    Ok(Redirect::to(&format!(
        "/panel?said={}#shadow",
        crate::line::percent(&said)
    )))
}

/// The Chinese of this room.
pub(crate) const ZH: &[(&str, &str)] = &[
    ("Candidate model (shadow mode)", "候选模型（影子模式）"),
    (
        "{0} {1} (model.toml sha256 {2}…, {3}) from {4} judges every frame beside the running model since {5}; only the running model's verdicts are published.",
        "{0} {1}（model.toml sha256 {2}…，{3}，来自 {4}）自 {5} 起与运行中的模型并行判定每一帧；只发布运行中模型的判定。",
    ),
    ("Agreement", "一致率"),
    ("{0} of {1} frames decided the same", "{1} 帧中 {0} 帧判定相同"),
    ("{0} disagreements", "{0} 处分歧"),
    ("Frames", "帧数"),
    (
        "{0} offered, {1} skipped (the candidate fell behind), {2} not kept",
        "送检 {0}，跳过 {1}（候选模型跟不上），未保存 {2}",
    ),
    ("Extra cost", "额外开销"),
    ("the candidate's engine time per frame", "候选模型每帧的推理时间"),
    (
        "running model: {0} per frame before, {1} since",
        "运行中模型：之前每帧 {0}，之后每帧 {1}",
    ),
    (
        "candidate busy {0}% of the time (lower CPU priority)",
        "候选模型 {0}% 的时间在忙（较低 CPU 优先级）",
    ),
    ("Promote: the candidate decides from now on", "启用：今后由候选模型判定"),
    ("Stop shadow mode", "停止影子模式"),
    ("No candidate model is in shadow mode.", "没有候选模型处于影子模式。"),
    ("Candidate package folder (on this station)", "候选模型包目录（本工位上）"),
    ("Precision", "精度"),
    ("as the running model", "与运行中模型相同"),
    ("Start shadow mode", "启动影子模式"),
    ("Candidate", "候选模型"),
    ("Frames compared", "已比较帧数"),
    ("Disagreements", "分歧"),
    ("Reviewed: candidate right / running right", "已复核：候选模型对 / 运行中模型对"),
    ("Last compared", "最近比较"),
    ("No candidate model has judged a frame here yet.", "尚无候选模型在此判定过任何帧。"),
    (
        "{0} {1} disagreed with the running model on {2} of {3} frames ({4} agreement). Each is listed with both verdicts; review it to say which was right.",
        "{0} {1} 在 {3} 帧中有 {2} 帧与运行中模型判定不同（一致率 {4}）。每帧列出两个判定；复核即可说明哪个正确。",
    ),
    ("The latest {0} are shown.", "显示最近 {0} 条。"),
    ("Picture", "图片"),
    ("Time", "时间"),
    ("Camera", "相机"),
    ("Part", "零件"),
    ("Running model", "运行中模型"),
    ("After review", "复核后"),
    ("nothing found", "未发现缺陷"),
    ("not reviewed", "未复核"),
    (
        "{0} {1} judged this frame too (not published): ",
        "{0} {1} 也判定了这一帧（未发布）：",
    ),
    ("The two models disagree on this frame.", "两个模型对这一帧的判定不同。"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::tests::english_left;

    fn caller(lang: Lang, role: Role) -> Caller {
        Caller {
            user: store::accounts::User {
                name: "ada".into(),
                role,
                language: None,
            },
            csrf: Some("tok".into()),
            lang,
            plant: false,
        }
    }

    fn live() -> CandidateState {
        CandidateState {
            name: "inspector".into(),
            version: "0.4.0".into(),
            sha256: "ab".repeat(32),
            package: "/opt/models/inspector-0.4.0".into(),
            precision: "int8".into(),
            since: "2026-12-07T08:00:00.000000Z".into(),
            offered: 120,
            judged: 118,
            skipped: 2,
            failed: 0,
            candidate_ms_per_frame: Some(14.25),
            running_ms_before: Some(20.0),
            running_ms_since: Some(23.5),
            busy_share: 0.31,
        }
    }

    fn summary() -> CandidateSummary {
        CandidateSummary {
            name: "inspector".into(),
            version: "0.4.0".into(),
            sha256: "ab".repeat(32),
            compared: 118,
            agreed: 112,
            candidate_upheld: 3,
            running_upheld: 1,
            first: "2026-12-07T08:00:01.000000Z".into(),
            last: "2026-12-07T08:10:00.000000Z".into(),
        }
    }

    #[test]
    fn the_running_candidate_shows_agreement_cost_and_an_admins_buttons() {
        let html =
            section(&caller(Lang::En, Role::Admin), Some(&live()), &[summary()]).into_string();
        assert!(
            html.contains(r#"data-agreed="112" data-compared="118""#),
            "{html}"
        );
        assert!(html.contains(">94.9%<"), "{html}");
        assert!(html.contains("6 disagreements"), "{html}");
        assert!(html.contains(&format!(r#"href="/shadow?candidate={}""#, "ab".repeat(32))));
        assert!(html.contains("14.2 ms"), "{html}");
        assert!(
            html.contains("20.0 ms per frame before, 23.5 ms since"),
            "{html}"
        );
        assert!(html.contains("120 offered, 2 skipped"), "{html}");
        assert!(html.contains(r#"id="promote""#) && html.contains(r#"id="stop-shadow""#));
        assert!(!html.contains("start-shadow"));
        // A viewer sees the figures, not the buttons.
        let html = section(
            &caller(Lang::En, Role::Operator),
            Some(&live()),
            &[summary()],
        )
        .into_string();
        assert!(
            html.contains("94.9%") && !html.contains("/shadow/command"),
            "{html}"
        );
    }

    #[test]
    fn with_no_candidate_an_admin_gets_the_start_form() {
        let html = section(&caller(Lang::En, Role::Admin), None, &[]).into_string();
        assert!(html.contains("No candidate model is in shadow mode."));
        assert!(
            html.contains(r#"id="start-shadow""#) && html.contains(r#"name="package" required"#)
        );
        assert!(!html.contains("table class=\"candidates\""));
    }

    #[test]
    fn the_section_in_chinese_leaves_no_english_but_data() {
        let data = [
            "/opt/models/inspector-0.4.0",
            "inspector",
            "0.4.0",
            "int8",
            "model.toml sha256",
            "abababababab",
            "FP32",
            "INT8",
        ];
        for (live, summaries) in [(Some(live()), vec![summary()]), (None, vec![])] {
            let html =
                section(&caller(Lang::Zh, Role::Admin), live.as_ref(), &summaries).into_string();
            assert_eq!(english_left(&html, &data), Vec::<String>::new(), "{html}");
        }
        let s = record::ShadowVerdict {
            schema: record::SHADOW_SCHEMA.into(),
            verdict_id: "v".into(),
            station: "st".into(),
            candidate: record::ModelRef {
                name: "inspector".into(),
                version: "0.4.0".into(),
                sha256: "ab".repeat(32),
            },
            decision: record::Decision::Pass,
            confidence: 0.9,
            review_reason: None,
            findings: vec![],
            running_decision: record::Decision::Fail,
            inference_ms: 12.0,
            judged_at: "2026-12-07T08:00:00.000000Z".into(),
        };
        let html = on_verdict(Lang::Zh, &s).into_string();
        assert_eq!(english_left(&html, &data), Vec::<String>::new(), "{html}");
        assert!(on_verdict(Lang::En, &s)
            .into_string()
            .contains("The two models disagree"));
    }
}
