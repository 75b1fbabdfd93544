//! The model side of the appliance: the model package, the tokenizer, the
//! station's `Standard`, the verdict-v1 grammar and the engine that runs
//! vision encoder -> cross-modal encoder -> constrained language decoder.
//!
//! Library code: no logging set-up, no exits, no threads of its own; the
//! appliance decides where the engine runs.

pub mod anomaly;
pub mod cache;
pub mod compiled;
pub mod consistency;
pub mod decoding;
pub mod engine;
pub mod grammar;
pub mod package;
pub mod reading;
pub mod stand_in;
pub mod standard;

pub use anomaly::Anomaly;
pub use cache::CacheStats;
pub use compiled::Compiled;
pub use engine::{
    Decision, DecodeProfile, Engine, EngineError, EngineSettings, Judgement, RawFinding, Request,
};
pub use package::{ModelPackage, PackageError, StandardForm};
pub use reading::{Reading, Rule, Vocabulary};
pub use stand_in::Known;
pub use standard::{Clause, Standard};
