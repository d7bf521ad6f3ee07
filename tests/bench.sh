#!/usr/bin/env bash
# Regenerates BENCHMARKS.md: every benchmark in one run, on this machine, so
# figures and ratios compare. Takes ~15 minutes on 2 cores.
#
#   bash tests/bench.sh [OUT.md]          (default: BENCHMARKS.md)
#
# Knobs (environment): ASSAY_BENCH_RECORDS (history size, default 1000000),
# ASSAY_LOAD_SECS / ASSAY_LOAD_NODES / ASSAY_LOAD_CONCURRENCY (load
# generator), ASSAY_BENCH_ROUNDS (swtpm round trips, default 30),
# ASSAY_BENCH_SKIP_KEYLIME=1 (no venv / PyPI access).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-BENCHMARKS.md}")
bash tests/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT

step() { echo "== $* ($(date +%T))" >&2; }

step "release build"
cargo build --release --workspace --bins --locked >&2

step "criterion: the verification core"
rm -rf target/criterion
cargo bench --locked -p assay-core --bench core --bench eventlog --bench ima -- \
  --warm-up-time 1 --measurement-time 3 >"$raw/criterion.txt" 2>&1

step "load generator: simulated nodes against real verifiers (sled, PostgreSQL ×1, ×2)"
ASSAY_LOAD_SECS=${ASSAY_LOAD_SECS:-10} cargo bench --locked -p assay-tests --bench load \
  >"$raw/load.txt" 2>"$raw/load.err" || { cat "$raw/load.err" >&2; exit 1; }

step "one attestation round trip on swtpm, broken down"
ASSAY_BENCH_ROUNDS=${ASSAY_BENCH_ROUNDS:-30} cargo bench --locked -p assay-tests --bench roundtrip \
  >"$raw/roundtrip.txt" 2>"$raw/roundtrip.err" || { cat "$raw/roundtrip.err" >&2; exit 1; }

step "history at scale on sled and PostgreSQL (${ASSAY_BENCH_RECORDS:-1000000} records)"
cargo bench --locked -p assay-tests --bench history >"$raw/history.txt" 2>"$raw/history.err" \
  || { cat "$raw/history.err" >&2; exit 1; }

if [ "${ASSAY_BENCH_SKIP_KEYLIME:-0}" != 1 ]; then
  step "side by side with Keylime"
  bash tests/keylime/run.sh "$raw/keylime.md" >"$raw/keylime.txt" 2>&1 \
    || { tail -30 "$raw/keylime.txt" >&2; exit 1; }
fi

step "writing $out"
python3 tests/bench_report.py "$raw" target/criterion "$(git rev-parse --short HEAD)" >"$out"
echo "wrote $out" >&2
