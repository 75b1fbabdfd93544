//! Operator review: accounts and sessions, the queries behind the review UI
//! and API, and the UI itself (served by the appliance's HTTP server).

pub mod accounts;
pub mod charts;
pub mod export;
pub mod html;
pub mod panel;
pub mod queries;
pub mod web;
