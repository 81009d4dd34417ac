//! Cross-component tests: the host with real guest modules (and, in later suites, the
//! gateway binary with a real upstream). One test binary, one module per area.

mod chain;
mod sandbox;
mod state;
