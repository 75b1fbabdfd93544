//! `Frame`: one camera picture of one part, with everything needed to tie a
//! verdict back to the part and the moment it was taken.

use std::sync::Arc;
use std::time::SystemTime;

use image::RgbImage;

/// A decoded camera picture.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The configured camera it came from.
    pub camera_id: String,
    /// Per-camera sequence number, counting from 0 at start-up.
    pub seq: u64,
    /// When the picture was taken (or arrived, if the source cannot tell).
    pub captured_at: SystemTime,
    /// The part it shows, when the line says (file name, trigger payload).
    pub part_id: Option<String>,
    /// The trigger that asked for it, if any.
    pub trigger_id: Option<String>,
    /// The pixels, full frame, RGB.
    pub image: Arc<RgbImage>,
    /// The bytes as delivered (kept for storage and hashing).
    pub encoded: Arc<Vec<u8>>,
    /// File extension of `encoded` (`png`, `jpg`).
    pub format: &'static str,
    /// Ground truth, for frames from the synthetic line: every defect drawn
    /// on the part (so demos and soak runs can score verdicts live).
    pub truth: Option<Arc<Vec<synth::DrawnDefect>>>,
    /// Its share of the pixel budget, given back when the frame is gone
    /// (empty for sources the budget does not cover).
    pub held: crate::decode::Held,
}
