//! The records the appliance writes and the rest of the plant reads: the
//! verdict of one view (`verdict/v1`), the verdict of a part seen by several
//! cameras (`part-verdict/v1`), the PLC's short forms of both, a candidate model's judgement in shadow
//! mode (`shadow/v1`), what the plant server wants a station to run
//! (`rollout/v1`), the decision
//! they carry and the timestamps they are stamped with.
//!
//! This crate sits under every other: the engine produces a [`Decision`],
//! the station builds a [`Verdict`], the store writes it, delivery publishes
//! it and the review pages read it back, all through these types. It does no
//! I/O and knows nothing of models, SQL or MQTT; its JSON shapes are
//! contracts documented in the README and in `schemas/`, changed only with a
//! new schema version.

mod decision;
mod part;
mod rollout;
mod shadow;
pub mod time;
mod verdict;

pub use decision::{Decision, UnknownDecision};
pub use part::{PartPlc, PartVerdict, View, PART_SCHEMA};
pub use rollout::{Apply, ModelRollout, Rollout, StandardRollout, ROLLOUT_SCHEMA};
pub use shadow::{ShadowVerdict, SHADOW_SCHEMA};
pub use verdict::{
    stamp_published, Finding, ImageRef, ModelRef, PlcResult, StationRef, Timings, Verdict, SCHEMA,
};
