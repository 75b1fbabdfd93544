//! The verdict record (`verdict/v1`): what the appliance tells the MES, stores
//! and shows to reviewers. Its JSON shape is a contract documented in the
//! README; change it only with a new schema version.

use serde::Serialize;

use fusion::consistency::{self, FindingFacts};
use fusion::{Decision, Judgement, Rule};

/// Schema tag carried by every verdict.
pub const SCHEMA: &str = "verdict/v1";

/// Where the verdict was made.
#[derive(Debug, Clone, Serialize)]
pub struct StationRef {
    pub site: String,
    pub line: String,
    pub station: String,
}

/// One finding, in the frame's terms.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub defect: String,
    /// Box normalised to 0..1 of the full frame: x0, y0, x1, y1.
    pub box_norm: [f32; 4],
    /// Box in frame pixels: x0, y0, x1, y1.
    pub box_px: [u32; 4],
    /// Largest side of the box, in millimetres (camera calibration).
    pub size_mm: f32,
    /// Clause violated, `null` when the standard tolerates the finding.
    pub clause: Option<u32>,
    /// The clause's label as the standard writes it (`5`, `4.2.1`, `3.a`).
    pub clause_label: Option<String>,
    pub clause_text: Option<String>,
    /// The size limit the cited clause sets, as read (absent when it sets
    /// none): `size_mm` was judged against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_mm: Option<f32>,
    /// The count the cited clause allows per part, as read (absent when it
    /// sets none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
    pub confidence: f32,
}

/// Which model made the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// When each stage happened (RFC 3339, UTC) and how long inference took.
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub captured_at: String,
    pub queued_at: String,
    pub decided_at: String,
    /// Set at the moment the verdict is handed to the broker.
    pub published_at: Option<String>,
    pub inference_ms: f64,
}

/// The stored image the verdict was made from.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRef {
    pub sha256: String,
    /// Empty when the image was not kept.
    pub path: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// Present only when the image could not be kept (disk full, write
    /// error): why. The verdict itself is unaffected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_kept: Option<String>,
}

/// The full verdict record.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub schema: &'static str,
    /// UUIDv7: time-ordered, lets consumers drop duplicates.
    pub id: String,
    pub station: StationRef,
    pub camera: String,
    pub part_id: Option<String>,
    pub trigger_id: Option<String>,
    pub frame_seq: u64,
    pub recipe: String,
    pub standard_sha256: String,
    pub decision: Decision,
    pub confidence: f32,
    pub review_reason: Option<String>,
    pub findings: Vec<Finding>,
    pub model: ModelRef,
    pub timings: Timings,
    pub image: ImageRef,
    /// Fraction of the standard cut to fit the model's text window.
    pub context_loss: f32,
}

/// The PLC's short form on `.../result`.
#[derive(Debug, Clone, Serialize)]
pub struct PlcResult<'a> {
    pub part_id: Option<&'a str>,
    pub ok: bool,
    /// 0 = PASS, 1 = FAIL, 2 = REVIEW.
    pub code: u8,
    pub verdict_id: &'a str,
}

impl Verdict {
    pub fn plc(&self) -> PlcResult<'_> {
        PlcResult {
            part_id: self.part_id.as_deref(),
            ok: self.decision == Decision::Pass,
            code: match self.decision {
                Decision::Pass => 0,
                Decision::Fail => 1,
                Decision::Review => 2,
            },
            verdict_id: &self.id,
        }
    }
}

/// Frame geometry needed to turn model boxes into frame pixels and millimetres.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    /// The crop the model saw, in frame pixels: x, y, width, height.
    pub crop: [u32; 4],
    pub frame_width: u32,
    pub frame_height: u32,
    pub mm_per_px: f64,
}

/// Times as the record writes them: RFC 3339, UTC, microseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
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
