//! The verdict of one view (`verdict/v1`): what the appliance tells the MES,
//! stores and shows to reviewers, and its short form for the PLC. Its JSON
//! shape is a contract documented in the README and `schemas/`; change it
//! only with a new schema version.

use serde::{Deserialize, Serialize};

use crate::Decision;

/// Schema tag carried by every verdict.
pub const SCHEMA: &str = "verdict/v1";

/// Where the verdict was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationRef {
    pub site: String,
    pub line: String,
    pub station: String,
}

/// One finding, in the frame's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// When each stage happened (RFC 3339, UTC) and how long inference took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub captured_at: String,
    pub queued_at: String,
    pub decided_at: String,
    /// Set at the moment the verdict is handed to the broker.
    pub published_at: Option<String>,
    pub inference_ms: f64,
}

/// The stored image the verdict was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// [`SCHEMA`].
    pub schema: String,
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
            code: self.decision.plc_code(),
            verdict_id: &self.id,
        }
    }
}

/// `timings.published_at` as a committed verdict's JSON carries it until the
/// verdict is handed to the broker.
const UNPUBLISHED: &str = r#""published_at":null"#;

/// Sets `timings.published_at` to `at` in a verdict's JSON as this crate
/// serialises it (compact, `published_at` null), without parsing it again:
/// the outbox drain does this for every verdict it hands over. The key can
/// appear only once unescaped (text inside strings has its quotes escaped),
/// so the first match is the field. `None` when there is no such field (not
/// a verdict, or already stamped).
pub fn stamp_published(json: &str, at: &str) -> Option<String> {
    let i = json.find(UNPUBLISHED)?;
    let mut out = String::with_capacity(json.len() + at.len());
    out.push_str(&json[..i]);
    out.push_str(r#""published_at":"#);
    // A timestamp needs no escaping, but a string from elsewhere might.
    out.push_str(&serde_json::to_string(at).expect("a string serialises"));
    out.push_str(&json[i + UNPUBLISHED.len()..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict() -> Verdict {
        Verdict {
            schema: SCHEMA.into(),
            id: "0193c1e4-7a2b-7c3d-9e8f-0a1b2c3d4e5f".into(),
            station: StationRef {
                site: "plant".into(),
                line: "line-1".into(),
                station: "st-1".into(),
            },
            camera: "top".into(),
            part_id: Some("P-1".into()),
            trigger_id: None,
            frame_seq: 7,
            recipe: "housing".into(),
            standard_sha256: "ab".repeat(32),
            decision: Decision::Fail,
            confidence: 0.97,
            review_reason: None,
            findings: vec![Finding {
                defect: "scratch".into(),
                box_norm: [0.1, 0.2, 0.3, 0.4],
                box_px: [10, 20, 30, 40],
                size_mm: 4.2,
                clause: Some(2),
                clause_label: Some("4.2".into()),
                clause_text: Some("Scratches longer than 3 mm are rejected.".into()),
                limit_mm: Some(3.0),
                max_count: None,
                confidence: 0.9,
            }],
            model: ModelRef {
                name: "reference-inspector".into(),
                version: "0.3.0".into(),
                sha256: "cd".repeat(32),
            },
            timings: Timings {
                captured_at: "2026-12-03T08:00:00.000000Z".into(),
                queued_at: "2026-12-03T08:00:00.001000Z".into(),
                decided_at: "2026-12-03T08:00:00.030000Z".into(),
                published_at: None,
                inference_ms: 21.3,
            },
            image: ImageRef {
                sha256: "ef".repeat(32),
                path: "images/ef.png".into(),
                bytes: 1234,
                width: 100,
                height: 100,
                not_kept: None,
            },
            context_loss: 0.0,
        }
    }

    #[test]
    fn a_verdict_reads_back_as_written() {
        let v = verdict();
        let json = serde_json::to_string(&v).unwrap();
        assert!(
            !json.contains("max_count"),
            "absent limits are left out: {json}"
        );
        assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), v);
        let plc = serde_json::to_value(v.plc()).unwrap();
        assert_eq!(plc["code"], 1);
        assert_eq!(plc["ok"], false);
    }

    #[test]
    fn stamping_sets_only_the_timings_field() {
        let mut v = verdict();
        // A clause quoting the field's JSON must not be mistaken for it.
        v.findings[0].clause_text = Some(r#"log "published_at":null here"#.into());
        let json = serde_json::to_string(&v).unwrap();
        let at = "2026-12-03T08:00:00.040000Z";
        let stamped = stamp_published(&json, at).expect("an unpublished verdict");
        let back: Verdict = serde_json::from_str(&stamped).unwrap();
        assert_eq!(back.timings.published_at.as_deref(), Some(at));
        v.timings.published_at = Some(at.into());
        assert_eq!(back, v, "nothing else changed");
        assert_eq!(stamp_published(&stamped, at), None, "stamped once");
        assert_eq!(stamp_published(r#"{"code":1}"#, at), None);
    }
}
