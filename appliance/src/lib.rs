//! The appliance service: pipeline wiring, the inference worker, storage,
//! MQTT publishing, the verdict record and evaluation. `main.rs` is the CLI
//! over these; integration tests drive them directly.

pub mod batcher;
pub mod bench;
pub mod bench_plant;
pub mod bench_review;
pub mod cameras;
pub mod commands;
pub mod eval;
pub mod faults;
pub mod handwritten;
pub mod health;
pub mod http;
pub mod inspect;
pub mod parts;
pub mod pipeline;
pub mod plant;
pub mod reconfigure;
pub mod rollout;
pub mod score;
pub mod shadow;
pub mod standards;
pub mod systemd;
pub mod verdict;
pub mod worker;
