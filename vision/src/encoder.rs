//! The vision-encoder stage: preprocessed pixels in, image features out.
//!
//! It owns one ONNX Runtime session and must only be called from the engine's
//! worker thread, never from the async runtime.

use std::path::Path;

use ort::session::Session;
use ort::value::Tensor;

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

    /// Encodes a batch of CHW tensors (each `3 * height * width` floats).
    pub fn encode(&mut self, images: &[&[f32]]) -> ort::Result<ImageFeatures> {
        let batch = images.len();
        let mut flat = Vec::with_capacity(batch * 3 * self.width * self.height);
        for img in images {
            flat.extend_from_slice(img);
        }
        let input = Tensor::from_array(([batch, 3, self.height, self.width], flat))?;
        let outputs = self.session.run(ort::inputs!["pixel_values" => input])?;
        let (shape, data) = outputs["image_features"].try_extract_tensor::<f32>()?;
        Ok(ImageFeatures {
            data: data.to_vec(),
            batch,
            tokens: shape[1] as usize,
            dim: shape[2] as usize,
        })
    }
}
