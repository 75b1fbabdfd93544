//! What the station measures about itself, kept apart from what it does.
//!
//! - [`Event`]: the one way in. The pipeline, the worker, the delivery and
//!   the monitor say what happened; each event writes its metric, its health
//!   sample and its log line here.
//! - [`metrics`]: the process-wide registry in atomics.
//! - [`exposition`]: what a scrape gets, the registry and the readings of
//!   the moment in the OpenMetrics text format (written by `prometheus-client`).
//! - [`health`]: the samples behind the three health figures of the product
//!   promise, the figures computed from them and the latest snapshot.
//! - [`gpu`]: GPU utilisation and memory, read in the background.
//!
//! This crate sits low in the workspace: it knows the verdict record and the
//! configuration, never the cameras, the store, the broker or the pipeline
//! (what a scrape reads from them is handed in).

mod events;
pub mod exposition;
pub mod gpu;
pub mod health;
pub mod metrics;

pub use events::Event;
