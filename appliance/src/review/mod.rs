//! Operator review: the UI and its API (served by the appliance's HTTP
//! server), the panel and the charts. What they read and write is in the
//! `store` crate (`store::reviews`, `store::accounts`, `store::charts`).

pub mod charts;
pub mod html;
pub mod panel;
pub mod web;
