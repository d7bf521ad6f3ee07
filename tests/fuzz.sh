#!/usr/bin/env bash
# tests/fuzz.sh [SECONDS [TARGET...]] — runs every cargo-fuzz target (or the
# TARGETs named) for SECONDS each (default 60) with libFuzzer on nightly, then
# prints per target: runs, seconds, result. Targets are those `cargo fuzz list`
# gives in the core (verifier/core/fuzz: the wire, log, certificate and policy
# parsers) and in the service (verifier/fuzz: gRPC request decoding into the
# handlers). Exits non-zero if any target crashed (or failed to build or run).
#
# Starting inputs: fuzz/seeds/<target>/ when it exists, and for uefi_log / ima_log
# the repository's third-party logs (tests/data/eventlogs, tests/data/ima).
# New inputs go to <crate>/fuzz/corpus/<target>/ (git-ignored, kept between runs);
# crashes to <crate>/fuzz/artifacts/<target>/; each target's libFuzzer output to
# $TARGET_DIR/fuzz-logs/<target>.log. Builds in ${CARGO_TARGET_DIR:-target}/fuzz
# (ASSAY_FUZZ_NO_BUILD=1 runs what was built there before).
# Installs cargo-fuzz (`cargo install --locked cargo-fuzz`) if missing.
set -euo pipefail
SECS=${1:-60}
if ! [[ $SECS =~ ^[0-9]+$ ]] || [ "$SECS" -eq 0 ]; then
  echo "usage: $0 [SECONDS [TARGET...]]   (seconds per target, default 60; default: every target)" >&2
  exit 2
fi
shift || true
WANTED=("$@")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$ROOT/target}")/fuzz
LOGS=$TARGET_DIR/fuzz-logs
log() { echo "[fuzz] $*" >&2; }

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  log "installing the nightly toolchain (libFuzzer needs -Z sanitizer flags)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

# The crates holding fuzz targets (each a `fuzz/` directory under it).
CRATES=(verifier/core verifier)
declare -A crate_of=()
targets=()
for c in "${CRATES[@]}"; do
  while read -r t; do
    [ -n "$t" ] || continue
    crate_of[$t]=$c
    targets+=("$t")
  done < <(cd "$ROOT/$c" && cargo +nightly fuzz list)
done
[ "${#targets[@]}" -gt 0 ] || { log "cargo fuzz list found no targets"; exit 1; }
if [ "${#WANTED[@]}" -gt 0 ]; then
  for t in "${WANTED[@]}"; do
    [ -n "${crate_of[$t]:-}" ] || { log "no fuzz target $t (targets: ${targets[*]})"; exit 2; }
  done
  targets=("${WANTED[@]}")
fi
log "${#targets[@]} targets, ${SECS}s each: ${targets[*]}"
log "building (release, ASan) in $TARGET_DIR"
declare -A built=()
# ASSAY_FUZZ_NO_BUILD=1: run the binaries built before (e.g. several runs of
# one build side by side while the tree changes).
[ "${ASSAY_FUZZ_NO_BUILD:-}" = 1 ] && for c in "${CRATES[@]}"; do built[$c]=1; done
for t in "${targets[@]}"; do
  c=${crate_of[$t]}
  [ -n "${built[$c]:-}" ] && continue
  (cd "$ROOT/$c" && cargo +nightly fuzz build --target-dir "$TARGET_DIR")
  built[$c]=1
done
mkdir -p "$LOGS"

rows=()
bad=0
for t in "${targets[@]}"; do
  cd "$ROOT/${crate_of[$t]}"
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds+=("fuzz/seeds/$t")
  case $t in
    uefi_log) seeds+=("$ROOT/tests/data/eventlogs") ;;
    ima_log) seeds+=("$ROOT/tests/data/ima") ;;
    ima_signature) seeds+=("$ROOT/verifier/core/tests/data/ima-sig/files") ;;
  esac
  log "$t: ${SECS}s from ${seeds[*]:-(no seeds)}"
  start=$(date +%s)
  rc=0
  # The binary cargo fuzz built, run directly (as `cargo fuzz run` would, minus
  # its freshness check: what was built above is what runs).
  "$TARGET_DIR/x86_64-unknown-linux-gnu/release/$t" -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$SECS" -print_final_stats=1 "$corpus" "${seeds[@]}" \
    >"$LOGS/$t.log" 2>&1 || rc=$?
  secs=$(($(date +%s) - start))
  # "Done N runs in S second(s)" on a clean stop; else the last "#N ..." status line.
  runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$LOGS/$t.log" | tail -n1)
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$LOGS/$t.log" | tail -n1)
  # Artifacts: crash-/leak-/timeout-/oom-… are failures; slow-unit-… (an input
  # over 10 s, e.g. the first one, which builds a target's fixtures) only a note.
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$LOGS/$t.log" |
    grep -v '/slow-unit-' | tail -n1 || true)
  slowest=$(sed -n 's/^stat::slowest_unit_time_sec:[[:space:]]*\([0-9]*\).*/\1/p' "$LOGS/$t.log")
  if [ -n "$artifact" ]; then
    result="CRASH $artifact"
  elif [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc, see $LOGS/$t.log)"
  else
    result=ok
    [ "${slowest:-0}" -lt 10 ] || result="ok (slowest unit ${slowest}s)"
  fi
  case $result in ok*) ;; *)
    bad=1
    tail -n 30 "$LOGS/$t.log" >&2
    ;;
  esac
  rows+=("$(printf '%-18s %12s %6ss  %s' "$t" "${runs:-?}" "$secs" "$result")")
done

printf '%-18s %12s %7s  %s\n' target runs time result
printf '%s\n' "${rows[@]}"
if [ "$bad" -ne 0 ]; then
  log "FAILED: a target crashed or did not run (reproduce: cd verifier/core (or verifier) && cargo +nightly fuzz run TARGET ARTIFACT)"
  exit 1
fi
log "no crashes"
