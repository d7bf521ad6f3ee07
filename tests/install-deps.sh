#!/usr/bin/env bash
# Installs what Assay builds and tests with, if missing: Debian packages (swtpm,
# tpm2-tss headers, tpm2-tools as test oracle, protoc, openssl/python3 for the
# scripts, containerd + runc + busybox-static for the container tests, docker.io +
# iproute2 + util-linux for the Swarm join test, postgresql for the storage
# suite and the replica tests, minisign as the policy signatures' oracle,
# prometheus (scrapes the verifier in the metrics test), chromium + libnss3-tools
# (the fleet page in a browser), python3-venv (the grpcio health and reflection
# clients, installed from PyPI into target/grpc-venv); with
# --vm also QEMU, OVMF, Debian's cloud kernel, cpio and binutils for vm-tests)
# and, when there is no cargo at all, a stable Rust toolchain via rustup.
set -euo pipefail
pkgs=(swtpm swtpm-tools libtss2-dev tpm2-tools pkg-config protobuf-compiler openssl python3 ca-certificates curl build-essential containerd runc busybox-static tar docker.io iproute2 util-linux postgresql minisign ima-evm-utils prometheus chromium libnss3-tools python3-venv python3-gpg)
# The Debian packages test (tests/tests/packages.rs): what the packages'
# maintainer scripts use (adduser, deb-systemd-helper), systemd-analyze for
# their units, tpm-udev (the attestor's tss group).
pkgs+=(adduser init-system-helpers systemd tpm-udev)
vm_pkgs=()
[ "${1:-}" = --vm ] && vm_pkgs=(qemu-system-x86 ovmf linux-image-cloud-amd64 cpio binutils)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
vm_missing=()
for p in "${vm_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || vm_missing+=("$p")
done
if ((${#vm_missing[@]})); then
  echo "installing: ${vm_missing[*]}" >&2
  $SUDO apt-get update -qq
  # Without recommends: a kernel and firmware for guests, not a desktop.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${vm_missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "installing Rust (rustup, stable)" >&2
  curl -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal --component rustfmt,clippy
fi
# cargo-deb builds the Debian packages (README, "Install from Debian packages";
# tests/tests/packages.rs).
cargo_bin=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
if ! "$cargo_bin" deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb" >&2
  "$cargo_bin" install --locked cargo-deb --version '^3'
fi
# gRPC clients Assay did not write (health checking, server reflection), for
# tests/tests/grpc_clients.rs: grpcio from PyPI in a venv.
GRPC_VENV=${ASSAY_GRPC_VENV:-${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/grpc-venv}
if [ ! -x "$GRPC_VENV/bin/python" ] || ! "$GRPC_VENV/bin/python" -c "import grpc_health.v1, grpc_reflection.v1alpha" 2>/dev/null; then
  echo "installing grpcio, grpcio-health-checking, grpcio-reflection into $GRPC_VENV" >&2
  python3 -m venv "$GRPC_VENV"
  "$GRPC_VENV/bin/pip" install -q --disable-pip-version-check \
    'grpcio==1.85.*' 'grpcio-health-checking==1.85.*' 'grpcio-reflection==1.85.*'
fi
