//! Camera side of the appliance: frames, image decoding, preprocessing, the
//! ONNX Runtime set-up and the vision-encoder stage, camera sources, and the
//! synthetic line.
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
pub mod synth;

pub use frame::Frame;
