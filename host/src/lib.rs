//! ehrgate: a gateway for EHR (FHIR R4) and billing APIs that runs sandboxed WebAssembly
//! policy modules on every request and writes a tamper-evident audit log.
//!
//! The folders follow a request's path: `config` (loading and validation), `proxy` (HTTP),
//! `request` (canonical request, identity, classification), `engine` (policy modules),
//! `state` (bounded shared state) and `audit` (the log and its review).

pub mod audit;
pub mod config;
pub mod engine;
pub mod proxy;
pub mod request;
pub mod state;

/// Where the build put the guest modules built from `guest-policies/` (the shipped policies
/// and the test fixtures), for tests, benchmarks and the example configs.
pub const BUILT_GUESTS_DIR: &str = env!("EHRGATE_GUEST_DIR");
