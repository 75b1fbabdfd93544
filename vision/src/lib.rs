//! Camera side of the appliance: frames, image decoding, preprocessing for the
//! vision encoder, camera sources, and the synthetic line.
//!
//! This crate never decides anything about a part; it only delivers pixels
//! (and, for the synthetic line, ground truth) to the model.

pub mod synth;
