//! The good-only safety net: a package commissioned from good parts only
//! (`toolchain.anomaly`) carries a graph that scores how unlike every good
//! part a picture is, patch by patch. A picture scoring over the package's
//! threshold goes to REVIEW with an `unknown` finding boxed where it differs
//! most, whatever the decoder wrote: a plant that has never photographed a
//! defect still never passes one the model cannot name.

use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::engine::{EngineError, RawFinding};

/// The defect word of a finding the anomaly graph raised.
pub const UNKNOWN: &str = "unknown";

/// `[anomaly]` in model.toml.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AnomalySection {
    /// The graph: `pixel_values` -> `anomaly_map` [B,H,W], `anomaly_score` [B].
    pub graph: String,
    /// Scores above this go to REVIEW.
    pub threshold: f32,
}

/// How unlike the good parts one picture is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub score: f32,
    pub threshold: f32,
    /// Normalised box of the cells over the threshold (the most anomalous
    /// cell when none is).
    pub box_norm: [f32; 4],
}

impl Anomaly {
    /// True when the picture goes to REVIEW.
    pub fn over(&self) -> bool {
        self.score > self.threshold
    }

    /// Why a picture over the threshold goes to REVIEW.
    pub fn reason(&self) -> String {
        format!(
            "unlike the good parts the model was commissioned on: anomaly score {:.1} over threshold {:.1}",
            self.score, self.threshold
        )
    }

    /// The finding a REVIEW verdict shows for it: cites no clause.
    pub fn finding(&self) -> RawFinding {
        // The location bins the decoder would write for this box (a bin k
        // spans k/1000 to (k+1)/1000).
        let [x0, y0, x1, y1] = self.box_norm;
        let bin = |v: f32| (v * 1000.0).round().clamp(0.0, 999.0) as u32;
        let loc = [bin(x0), bin(y0), bin(x1 - 0.001), bin(y1 - 0.001)];
        RawFinding {
            defect: UNKNOWN.to_string(),
            loc,
            box_norm: self.box_norm,
            clause: None,
            clause_label: None,
            clause_text: None,
            confidence: 1.0,
        }
    }
}

/// The loaded graph and its threshold.
pub struct AnomalyGraph {
    session: Session,
    threshold: f32,
}

impl AnomalyGraph {
    pub fn new(session: Session, threshold: f32) -> Self {
        Self { session, threshold }
    }

    /// Scores a batch of preprocessed images (`[b, 3, h, w]` in `pixels`).
    pub fn score(
        &mut self,
        pixels: &[f32],
        shape: [usize; 4],
    ) -> Result<Vec<Anomaly>, EngineError> {
        let fail = |e: ort::Error| EngineError::Inference {
            graph: "anomaly_model",
            reason: e.to_string(),
        };
        let x = TensorRef::from_array_view((shape, pixels)).map_err(fail)?;
        let out = self
            .session
            .run(ort::inputs!["pixel_values" => x])
            .map_err(fail)?;
        let missing = |name: &str| EngineError::Inference {
            graph: "anomaly_model",
            reason: format!("output `{name}` missing"),
        };
        let (map_shape, map) = out
            .get("anomaly_map")
            .ok_or_else(|| missing("anomaly_map"))?
            .try_extract_tensor::<f32>()
            .map_err(fail)?;
        let (_, scores) = out
            .get("anomaly_score")
            .ok_or_else(|| missing("anomaly_score"))?
            .try_extract_tensor::<f32>()
            .map_err(fail)?;
        let (h, w) = (map_shape[1] as usize, map_shape[2] as usize);
        Ok(scores
            .iter()
            .enumerate()
            .map(|(i, &score)| Anomaly {
                score,
                threshold: self.threshold,
                box_norm: heat_box(&map[i * h * w..(i + 1) * h * w], h, w, self.threshold),
            })
            .collect())
    }
}

/// Normalised `[x0, y0, x1, y1]` around the cells of a `h`×`w` map above
/// `threshold`, or the highest cell when none is. Mirrors `heat_box` in
/// models/toolchain/anomaly.py.
pub fn heat_box(map: &[f32], h: usize, w: usize, threshold: f32) -> [f32; 4] {
    let mut cells: Vec<usize> = (0..map.len()).filter(|&i| map[i] > threshold).collect();
    if cells.is_empty() {
        cells.extend((0..map.len()).max_by(|&a, &b| map[a].total_cmp(&map[b])));
    }
    let Some(&first) = cells.first() else {
        return [0.0, 0.0, 1.0, 1.0];
    };
    let (mut x0, mut y0) = (first % w, first / w);
    let (mut x1, mut y1) = (x0 + 1, y0 + 1);
    for i in cells {
        let (y, x) = (i / w, i % w);
        (x0, y0) = (x0.min(x), y0.min(y));
        (x1, y1) = (x1.max(x + 1), y1.max(y + 1));
    }
    [
        x0 as f32 / w as f32,
        y0 as f32 / h as f32,
        x1 as f32 / w as f32,
        y1 as f32 / h as f32,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_covers_the_cells_over_the_threshold_or_the_highest() {
        let mut map = vec![0.0f32; 4 * 8];
        map[8 + 2] = 5.0; // row 1, column 2
        map[2 * 8 + 5] = 6.0; // row 2, column 5
        assert_eq!(heat_box(&map, 4, 8, 4.0), [0.25, 0.25, 0.75, 0.75]);
        assert_eq!(heat_box(&map, 4, 8, 9.0), [0.625, 0.5, 0.75, 0.75]);
    }

    #[test]
    fn a_score_over_the_threshold_is_an_unknown_finding_citing_nothing() {
        let a = Anomaly {
            score: 40.0,
            threshold: 33.4,
            box_norm: [0.25, 0.5, 0.75, 1.0],
        };
        assert!(a.over());
        let f = a.finding();
        assert_eq!((f.defect.as_str(), f.clause), (UNKNOWN, None));
        assert_eq!(f.loc, [250, 500, 749, 999]);
        assert!(
            a.reason().contains("40.0 over threshold 33.4"),
            "{}",
            a.reason()
        );
    }
}
