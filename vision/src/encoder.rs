//! The vision-encoder stage: preprocessed pixels in, image features out.
//!
//! It owns one ONNX Runtime session and must only be called from the engine's
//! worker thread, never from the async runtime.

use std::path::Path;

use ort::session::Session;
use ort::value::TensorRef;

use crate::runtime::{self, RuntimeError, SessionSettings};

/// Runs `vision_encoder.onnx`.
pub struct VisionEncoder {
    session: Session,
    width: usize,
    height: usize,
}

/// Image features for a batch: `[batch, tokens, dim]`, row-major.
pub struct ImageFeatures {
    pub data: Vec<f32>,
    pub batch: usize,
    pub tokens: usize,
    pub dim: usize,
}

impl VisionEncoder {
    pub fn load(
        env: &ort::environment::Environment,
        graph: &Path,
        settings: &SessionSettings,
        width: u32,
        height: u32,
    ) -> Result<Self, RuntimeError> {
        Ok(Self {
            session: runtime::session(env, graph, settings)?,
            width: width as usize,
            height: height as usize,
        })
    }

    /// Encodes a batch of CHW tensors (each `3 * height * width` floats),
    /// `per_run` images to a run of the graph (0: all in one run); the
    /// features come back as one batch either way.
    pub fn encode(&mut self, images: &[&[f32]], per_run: usize) -> ort::Result<ImageFeatures> {
        let batch = images.len();
        let per_run = if per_run == 0 { batch.max(1) } else { per_run };
        let pixels = 3 * self.width * self.height;
        let mut features: Option<ImageFeatures> = None;
        for run in images.chunks(per_run) {
            let shape = [run.len(), 3, self.height, self.width];
            // One image is read where it lies; several are laid end to end.
            let flat: Vec<f32>;
            let pixels_of_run: &[f32] = match run {
                [one] => one,
                _ => {
                    let mut all = Vec::with_capacity(run.len() * pixels);
                    for img in run {
                        all.extend_from_slice(img);
                    }
                    flat = all;
                    &flat
                }
            };
            let input = TensorRef::from_array_view((shape, pixels_of_run))?;
            let outputs = self.session.run(ort::inputs!["pixel_values" => input])?;
            let (shape, data) = outputs["image_features"].try_extract_tensor::<f32>()?;
            match features.as_mut() {
                Some(f) => {
                    f.data.extend_from_slice(data);
                    f.batch += run.len();
                }
                None => {
                    let mut all = Vec::with_capacity(data.len() / run.len() * batch);
                    all.extend_from_slice(data);
                    features = Some(ImageFeatures {
                        data: all,
                        batch: run.len(),
                        tokens: shape[1] as usize,
                        dim: shape[2] as usize,
                    });
                }
            }
        }
        Ok(features.unwrap_or(ImageFeatures {
            data: Vec::new(),
            batch: 0,
            tokens: 0,
            dim: 0,
        }))
    }
}
