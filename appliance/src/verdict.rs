//! From the engine's judgement to the verdict record's findings: boxes in
//! frame pixels and millimetres, the limit each cited clause sets, and the
//! decision held to the standard (the consistency check). The record itself
//! lives in the `record` crate.

use fusion::consistency::{self, FindingFacts};
use fusion::{Judgement, Rule};
use record::{Decision, Finding};

/// Frame geometry needed to turn model boxes into frame pixels and millimetres.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// The crop the model saw, in frame pixels: x, y, width, height.
    pub crop: [u32; 4],
    pub frame_width: u32,
    pub frame_height: u32,
    pub mm_per_px: f64,
}

/// Maps the model's findings (relative to the crop) onto the frame.
pub fn findings_in_frame(j: &Judgement, g: Geometry) -> Vec<Finding> {
    let [cx, cy, cw, ch] = g.crop;
    j.findings
        .iter()
        .map(|f| {
            let px = |v: f32, extent: u32, origin: u32| origin + (v * extent as f32).round() as u32;
            let box_px = [
                px(f.box_norm[0], cw, cx),
                px(f.box_norm[1], ch, cy),
                px(f.box_norm[2], cw, cx),
                px(f.box_norm[3], ch, cy),
            ];
            let side = (box_px[2] - box_px[0]).max(box_px[3] - box_px[1]);
            let rule = f
                .clause
                .and_then(|n| j.readings.iter().find(|r| r.clause == n))
                .map(|r| r.rule);
            Finding {
                defect: f.defect.clone(),
                box_norm: [
                    box_px[0] as f32 / g.frame_width as f32,
                    box_px[1] as f32 / g.frame_height as f32,
                    box_px[2] as f32 / g.frame_width as f32,
                    box_px[3] as f32 / g.frame_height as f32,
                ],
                box_px,
                size_mm: ((side as f64 * g.mm_per_px * 100.0).round() / 100.0) as f32,
                clause: f.clause,
                clause_label: f.clause_label.clone(),
                clause_text: f.clause_text.clone(),
                limit_mm: match rule {
                    Some(Rule::SizeLimit { limit_mm }) => Some(limit_mm),
                    _ => None,
                },
                max_count: match rule {
                    Some(Rule::CountLimit { max_count }) => Some(max_count),
                    _ => None,
                },
                confidence: f.confidence,
            }
        })
        .collect()
}

/// The decision and review reason the verdict may carry once held to the
/// clauses it cites: any contradiction between the decision, the findings
/// (measured in millimetres) and the readings of the standard makes it
/// REVIEW with the contradictions named; a REVIEW keeps its own reason and
/// gains those. Never turns a verdict into PASS or FAIL.
pub fn held_to_standard(j: &Judgement, findings: &[Finding]) -> (Decision, Option<String>) {
    let facts: Vec<FindingFacts<'_>> = findings
        .iter()
        .map(|f| FindingFacts {
            defect: &f.defect,
            clause: f.clause,
            size_mm: Some(f.size_mm),
        })
        .collect();
    let contradictions = consistency::check(j.model_decision, &facts, &j.readings);
    if contradictions.is_empty() {
        return (j.decision, j.review_reason.clone());
    }
    let why = consistency::reason(&contradictions);
    let reason = match &j.review_reason {
        Some(own) => format!("{own}; {why}"),
        None => why,
    };
    (Decision::Review, Some(reason))
}
