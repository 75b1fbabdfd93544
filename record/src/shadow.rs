//! A candidate model's judgement of a frame in shadow mode (`shadow/v1`):
//! kept beside the running model's verdict for the same frame, never
//! published, so that a quality engineer can compare the two before the
//! candidate decides for real.

use serde::{Deserialize, Serialize};

use crate::{Decision, Finding, ModelRef};

pub const SHADOW_SCHEMA: &str = "shadow/v1";

/// What the candidate made of the frame whose published verdict is
/// `verdict_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowVerdict {
    pub schema: String,
    /// The running model's verdict for the same frame.
    pub verdict_id: String,
    pub station: String,
    pub candidate: ModelRef,
    /// The candidate's decision, held to the standard like a published one.
    pub decision: Decision,
    pub confidence: f32,
    pub review_reason: Option<String>,
    pub findings: Vec<Finding>,
    /// What the running model decided (the published verdict).
    pub running_decision: Decision,
    /// The candidate's own inference time for the frame's batch.
    pub inference_ms: f64,
    /// When the candidate's judgement was made (RFC 3339, UTC).
    pub judged_at: String,
}

impl ShadowVerdict {
    /// Both models reached the same decision.
    pub fn agrees(&self) -> bool {
        self.decision == self.running_decision
    }
}
