#!/usr/bin/env bash
# The test command (README "Run the tests"; .ci/run calls it).
# Installs what the tests need on a fresh machine, then runs every check:
# formatting, lints, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit and integration)"
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
# Print one closing line summing every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "cargo: %d passed, %d failed\n", p, f }' target/test-output.txt
