//! What the station does about its health figures (the figures themselves,
//! their samples and the latest snapshot live in `telemetry::health`): the
//! [`monitor`] computes them on a schedule, the [`healer`] decides on
//! alerts, reloads, back-off and escalation, the [`golden`] set is judged
//! again on request, and `store::health_history` keeps each evaluation for the panel.

pub mod golden;
pub mod healer;
pub mod monitor;
