#!/usr/bin/env bash
# Side-by-side benchmark: Keylime 7.14.3's verifier functions and Assay's
# verification core, in one run, on the same evidence bytes (see README.md).
#
#   bash tests/keylime/run.sh [TABLE.md]
#
# Makes the evidence on a software TPM (swtpm + tpm2-tools) in a temp dir, runs
# the Assay side (verifier/core/benches/side_by_side.rs) and the Keylime side
# (compare.py, in a venv at ${ASSAY_KEYLIME_VENV:-target/keylime-venv}), prints
# one table and writes it as markdown to TABLE.md if given. Exits non-zero if
# either tool fails good evidence or passes bad evidence, or if they disagree on
# a replayed PCR value. ASSAY_KEYLIME_KEEP=1 keeps the evidence dir.
set -euo pipefail
START=$(date +%s)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT_MD=${1:-}
[ -z "$OUT_MD" ] || OUT_MD=$(realpath -m "$OUT_MD")
TESTDATA=${ASSAY_TESTDATA:-$ROOT/tests/data}
IMA_COUNT=10000
log() { echo "[keylime-bench] $*" >&2; }

# --- Debian packages: the TPM, tpm2-tools (Keylime parses event logs with
# tpm2_eventlog), libefivar1 (Keylime's event enrichment loads it), and the
# system Python with python3-gpg (Keylime imports gpg; its PyPI build needs gpgme).
pkgs=(swtpm swtpm-tools tpm2-tools libefivar1 python3 python3-venv python3-gpg openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Keylime in a venv on Debian's python3 (so it sees python3-gpg): venv.sh
# sets PY, VENV and KEYLIME_VERSION.
# shellcheck source=tests/keylime/venv.sh
source "$HERE/venv.sh"
keylime_venv || exit 1

# --- The Assay side: one bench binary.
log "building the Assay bench (cargo build --release -p assay-core --bench side_by_side)"
BENCH=$(cd "$ROOT" && cargo build --release -p assay-core --bench side_by_side --message-format=json \
  | "$PY" -c 'import json,sys
exe = [m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "side_by_side" and m.get("executable")]
print(exe[-1])')
[ -x "$BENCH" ] || { log "no bench binary"; exit 1; }

# --- Evidence, made for real on swtpm.
EV=$(mktemp -d /tmp/assay-keylime.XXXXXX)
SWTPM_PID=""
cleanup() {
  if [ -n "$SWTPM_PID" ] && kill -0 "$SWTPM_PID" 2>/dev/null; then kill "$SWTPM_PID"; fi
  if [ "${ASSAY_KEYLIME_KEEP:-0}" = 1 ]; then log "evidence kept in $EV"; else rm -rf "$EV"; fi
}
trap cleanup EXIT
cd "$EV"
mkdir ca tpm

cat > ca/swtpm-localca.conf <<EOF
statedir = $EV/ca
signingkey = $EV/ca/signkey.pem
issuercert = $EV/ca/issuercert.pem
certserial = $EV/ca/certserial
EOF
cat > ca/swtpm_setup.conf <<EOF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $EV/ca/swtpm-localca.conf
create_certs_tool_options = /etc/swtpm-localca.options
active_pcr_banks = sha256
EOF
swtpm_setup --tpm2 --tpmstate "$EV/tpm" --create-ek-cert --create-platform-cert --lock-nvram \
  --overwrite --config "$EV/ca/swtpm_setup.conf" >swtpm_setup.log 2>&1 \
  || { cat swtpm_setup.log >&2; exit 1; }

free_port_pair() {
  "$PY" - <<'EOF'
import random, socket
for _ in range(100):
    p = random.randrange(20000, 60000, 2)
    try:
        for q in (p, p + 1):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass
EOF
}
for _ in 1 2 3 4 5; do
  PORT=$(free_port_pair)
  rm -f swtpm.pid
  if swtpm socket --tpm2 --tpmstate dir="$EV/tpm" --flags not-need-init,startup-clear \
      --server type=tcp,port="$PORT",bindaddr=127.0.0.1 --ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 \
      --daemon --pid file="$EV/swtpm.pid" 2>swtpm.log; then
    for _ in $(seq 50); do [ -s swtpm.pid ] && break; sleep 0.1; done
    SWTPM_PID=$(cat swtpm.pid)
    break
  fi
done
[ -n "$SWTPM_PID" ] || { log "swtpm did not start"; cat swtpm.log >&2; exit 1; }
export TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$PORT"
flush() { tpm2_flushcontext -t >/dev/null; tpm2_flushcontext -s >/dev/null; }

log "TPM: EK, RSA and ECC AKs"
tpm2_createek -c ek.ctx -G rsa -u ek.pub >/dev/null; flush
tpm2_createak -C ek.ctx -c ak_rsa.ctx -G rsa -g sha256 -s rsassa -u ak_rsa.pub -n ak_rsa.name >/dev/null; flush
tpm2_createak -C ek.ctx -c ak_ecc.ctx -G ecc -g sha256 -s ecdsa -u ak_ecc.pub -n ak_ecc.name >/dev/null; flush

# The boot: the TPM is extended with every event of Keylime's secure-boot test log.
cp "$TESTDATA/eventlogs/keylime/binary_bios_measurements-secureboot" uefi_sb.bin
cp "$TESTDATA/eventlogs/tpm2-tools/event-gce-ubuntu-2104-log.bin" uefi_gce.bin
"$PY" "$HERE/compare.py" tamper-uefi uefi_sb.bin uefi_sb.bad.bin
"$PY" "$HERE/compare.py" tamper-uefi uefi_gce.bin uefi_gce.bad.bin
"$PY" "$HERE/compare.py" uefi-extends uefi_sb.bin > uefi-extends.txt
log "TPM: extending PCRs with the $(wc -l < uefi-extends.txt) events of the UEFI log"
xargs -n 100 tpm2_pcrextend < uefi-extends.txt
tpm2_pcrread sha256:0,1,2,3,4,5,6,7,8,9 -o pcr0_9.bin >/dev/null

# The kernel's IMA log: boot_aggregate over those PCRs, then real files with real digests.
log "IMA: hashing $((IMA_COUNT - 1)) files under /usr for a $IMA_COUNT-entry ima-ng log"
"$PY" "$HERE/compare.py" make-ima "$EV" pcr0_9.bin "$IMA_COUNT"
log "TPM: extending PCR 10 with the $(wc -l < ima-extends.txt) IMA template digests"
xargs -n 500 tpm2_pcrextend < ima-extends.txt
tpm2_pcrread sha256:0,1,2,3,4,5,6,7,8,9,10,14 -o pcrread_all.bin >/dev/null

NONCE=$(openssl rand -hex 32)
echo "$NONCE" > nonce.hex
quote() { # AK_CTX OUT SELECTION SCHEME
  tpm2_quote -c "$1" -l "sha256:$3" -q "$NONCE" -m "$2.msg" -s "$2.sig" -o "$2.pcrs" -g sha256 \
    --scheme "$4" >/dev/null
  flush
}
log "TPM: quotes"
quote ak_rsa.ctx q_all_rsa 0,1,2,3,4,5,6,7,8,9,10,14 rsassa
quote ak_ecc.ctx q_all_ecc 0,1,2,3,4,5,6,7,8,9,10,14 ecdsa
quote ak_rsa.ctx q_mb_rsa 0,1,2,3,4,5,6,7,8,9,14 rsassa
quote ak_rsa.ctx q_ima_rsa 10 rsassa
"$PY" "$HERE/compare.py" tamper-pcrs q_all_rsa.pcrs q_all_rsa.pcrs.bad q_all_rsa.pcrs.relabel
"$PY" "$HERE/compare.py" tamper-pcrs q_all_ecc.pcrs q_all_ecc.pcrs.bad q_all_ecc.pcrs.relabel
# tpm2-tools checks its own quotes: a third opinion on the good evidence.
for q in q_all_rsa:ak_rsa q_all_ecc:ak_ecc q_mb_rsa:ak_rsa q_ima_rsa:ak_rsa; do
  tpm2_checkquote -u "${q#*:}.pub" -m "${q%:*}.msg" -s "${q%:*}.sig" -f "${q%:*}.pcrs" -g sha256 \
    -q "$NONCE" >/dev/null
done
kill "$SWTPM_PID"; SWTPM_PID=""

# --- Keylime's configuration: measured-boot policy "example", evaluated on every
# quote; logging at WARNING to a file (its INFO lines are not timed).
cat > verifier.conf <<EOF
[verifier]
version = 2.0
measured_boot_imports = []
measured_boot_policy_name = example
measured_boot_evaluate = always
EOF
cat > logging.conf <<EOF
[loggers]
keys = root
[handlers]
keys = file
[formatters]
keys = plain
[logger_root]
level = WARNING
handlers = file
[handler_file]
class = FileHandler
level = WARNING
formatter = plain
args = ('$EV/keylime.log', 'a')
[formatter_plain]
format = %(name)s %(levelname)s %(message)s
EOF

# One side at a time, so they do not compete for the CPU. The bench prints its
# JSON, then fails if good evidence failed or bad evidence passed.
rc=0
log "running the Assay side"
"$BENCH" "$EV" > assay.json || rc=$?
log "running the Keylime side"
KEYLIME_VERIFIER_CONFIG="$EV/verifier.conf" KEYLIME_LOGGING_CONFIG="$EV/logging.conf" \
  "$PY" "$HERE/compare.py" run "$EV" > keylime.json 2> keylime.stderr \
  || { cat keylime.stderr >&2; exit 1; }

TABLE_HEADER="Assay (assay-core, Rust, release build) vs Keylime $KEYLIME_VERSION (Python $("$PY" -c 'import platform; print(platform.python_version())'), tpm2-tools $(tpm2_eventlog --version | sed -n 's/.*version="\([^"]*\)".*/\1/p')) on the same evidence; medians; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(date -u '+%F %H:%M') UTC"
export TABLE_HEADER
echo
echo "$TABLE_HEADER"
echo
"$PY" "$HERE/compare.py" table assay.json keylime.json "$OUT_MD" || rc=$?
echo
echo "run.sh took $(( $(date +%s) - START )) s"
exit $rc
