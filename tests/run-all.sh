#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, unit tests,
# and the real-part tests (swtpm, TLS, sled, tpm2-tools as oracle).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the real binaries: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
