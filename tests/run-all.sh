#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy, unit tests,
# the real-part tests (swtpm, TLS, sled, PostgreSQL, tpm2-tools as oracle), and the fast
# set of vm-tests (real firmware measured boot in QEMU + OVMF + swtpm).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh --vm
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets (their own workspace, run on nightly by tests/fuzz.sh) must keep
# compiling against the core: checked here on stable (no libFuzzer link), in a
# folder of the shared target dir.
for fuzz in verifier/core/fuzz verifier/fuzz; do
  cargo check --manifest-path "$fuzz/Cargo.toml" --bins --locked \
    --target-dir "${CARGO_TARGET_DIR:-target}/fuzz-check"
done
# The end-to-end tests run the real binaries: build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked
bash vm-tests/run
