//! Everything that leaves the station over MQTT, and the commands that come
//! in.
//!
//! - [`link`]: one MQTT connection whichever protocol the broker speaks
//!   (3.1.1 or 5).
//! - [`topics`]: the station's topic names, a contract with PLC and MES.
//! - [`publisher`]: the verdict channel — the outbox drain (QoS 1, in order,
//!   marked done only when acknowledged), the retained status with birth and
//!   will.
//! - [`command_link`]: commands in, on a connection of their own so that no
//!   message can stop the verdicts.
//! - [`sparkplug`]: the station as a Sparkplug B edge node, beside the
//!   verdict topics.
//! - `broker` (feature `embedded-broker`): an MQTT broker inside the
//!   appliance, for a stand-alone station or the demo.
//!
//! Delivery reads the store's outbox and never writes verdicts; it knows
//! nothing of cameras, models or the review pages.

#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod command_link;
pub mod link;
pub mod publisher;
pub mod sparkplug;
pub mod topics;

pub use publisher::Publisher;
pub use topics::{Command, Topics};
