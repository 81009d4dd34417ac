//! Cross-component tests: the host with real guest modules (and, in later suites, the
//! gateway binary with a real upstream). One test binary, one module per area.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "in tests, a failed expectation is a failed test"
)]

#[path = "../support.rs"]
mod support;

mod anomaly;
mod audit;
mod chain;
mod connections;
mod gateway;
mod isolation;
mod least_privilege;
mod policy_cli;
mod pre_read;
mod protocols;
mod rate_limit;
mod refusals;
mod sandbox;
mod smuggling_headers;
mod state;
mod state_redis;
