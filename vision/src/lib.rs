//! Camera side of the appliance: frames, image decoding, preprocessing, the
//! ONNX Runtime set-up and the vision-encoder stage, and camera sources (the
//! synthetic line's camera among them; the line itself is the `synth`
//! crate).
//!
//! This crate never decides anything about a part; it delivers pixels (and,
//! for the synthetic line, ground truth) and image features to the model.

pub mod decode;
pub mod encoder;
pub mod frame;
pub mod geometry;
pub mod preprocess;
pub mod runtime;
pub mod sources;

pub use frame::Frame;
