//! The verdict of a part photographed by several cameras
//! (`part-verdict/v1`): each view's own verdict combined into the one the PLC
//! acts on, and its short form for the PLC.

use serde::{Deserialize, Serialize};

use crate::Decision;

/// Schema tag carried by every part verdict.
pub const PART_SCHEMA: &str = "part-verdict/v1";

/// One judged view of a part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub camera: String,
    pub verdict_id: String,
    pub decision: Decision,
    pub findings: usize,
}

/// The combined verdict for one part (`part-verdict/v1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartVerdict {
    /// [`PART_SCHEMA`].
    pub schema: String,
    pub id: String,
    pub station: String,
    pub part_id: String,
    pub decision: Decision,
    /// Why the decision is REVIEW or FAIL, in words.
    pub reason: Option<String>,
    pub views: Vec<View>,
    /// Configured views that did not arrive in time.
    pub missing: Vec<String>,
    pub decided_at: String,
}

/// PLC short form of a part verdict.
#[derive(Serialize)]
pub struct PartPlc<'a> {
    pub part_id: &'a str,
    pub ok: bool,
    pub code: u8,
    pub part_verdict_id: &'a str,
    pub missing: &'a [String],
}

impl PartVerdict {
    pub fn plc(&self) -> PartPlc<'_> {
        PartPlc {
            part_id: &self.part_id,
            ok: self.decision == Decision::Pass,
            code: self.decision.plc_code(),
            part_verdict_id: &self.id,
            missing: &self.missing,
        }
    }
}
