#!/usr/bin/env bash
# Runs every check and test of ehrgate on a fresh machine: installs what the tests need,
# builds the gateway and the guest policies once, then formatting, lints and all tests.
#
#     tests/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing the wasm32-wasip2 target"
rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "installing redis-server (the shared state backend's tests)"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
# The package's own service is not used: the tests start servers on free 127.0.0.1 ports.

step "formatting"
cargo fmt --all --check
(cd guest-policies && cargo fmt --all --check)

step "tests (host build also builds the guest policies)"
cargo test --workspace --all-targets

step "guest sdk and policy unit tests (native)"
(cd guest-policies && cargo test --workspace)

step "end to end: the demo against a real FHIR server, every outcome checked"
examples/demo/run.sh --check --debug

step "end to end: the demo with two gateway replicas sharing state on Redis, checked"
examples/demo/run.sh --check --debug --redis

step "lints"
cargo clippy --workspace --all-targets -- -D warnings
(cd guest-policies && cargo clippy --workspace --all-targets --target wasm32-wasip2 -- -D warnings)

step "all checks passed"
