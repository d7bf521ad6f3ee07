#!/usr/bin/env bash
# The main job, on a software TPM: start swtpm (with EK certificates), the
# verifier (TLS, sled), then the attestor: enroll → attest → join token →
# token check → history. Everything lives in a temp dir, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --bins --locked -q
BIN=$PWD/target/debug
work=$(mktemp -d /tmp/assay-demo.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "1. A software TPM with EK certificates (swtpm_setup, swtpm's local CA)"
mkdir -p "$work/tpm"
swtpm_setup --tpm2 --tpmstate "$work/tpm" --create-ek-cert --create-platform-cert --lock-nvram --overwrite >/dev/null
for _ in 1 2 3 4 5; do
  tport=$(free_port); [ "$tport" -lt 65535 ] || continue
  swtpm socket --tpm2 --tpmstate dir="$work/tpm" --flags not-need-init,startup-clear \
    --server type=tcp,port="$tport",bindaddr=127.0.0.1 --ctrl type=tcp,port=$((tport + 1)),bindaddr=127.0.0.1 &
  pids+=($!); sleep 0.3
  kill -0 "${pids[-1]}" 2>/dev/null && break
done
TCTI="swtpm:host=127.0.0.1,port=$tport"
echo "swtpm on 127.0.0.1:$tport; EK certificates signed by /var/lib/swtpm-localca"

step "2. The verifier: TLS material, then serve (sled in $work/verifier)"
"$BIN/assay-verifier" init --dir "$work/verifier/tls"
# Role certificates: the orchestrator redeems tokens, the auditor reads history.
"$BIN/assay-verifier" client-cert --dir "$work/verifier/tls" --role orchestrator --name demo-orchestrator
"$BIN/assay-verifier" client-cert --dir "$work/verifier/tls" --role auditor --name demo-auditor
as_orchestrator=(--cert "$work/verifier/tls/demo-orchestrator.pem" --key "$work/verifier/tls/demo-orchestrator.key")
as_auditor=(--cert "$work/verifier/tls/demo-auditor.pem" --key "$work/verifier/tls/demo-auditor.key")
"$BIN/assay-verifier" policy validate policies/swtpm-demo.toml
"$BIN/assay-verifier" serve --listen 127.0.0.1:0 --data-dir "$work/verifier" --policy policies/swtpm-demo.toml \
  --tls-cert "$work/verifier/tls/server.pem" --tls-key "$work/verifier/tls/server.key" \
  --ek-root /var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem \
  --ek-intermediate /var/lib/swtpm-localca/issuercert.pem >"$work/verifier.out" 2>"$work/verifier.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/verifier.out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/verifier.out")
[ -n "$addr" ] || { cat "$work/verifier.log"; exit 1; }
export ASSAY_VERIFIER="https://$addr" ASSAY_CA="$work/verifier/tls/ca.pem"
echo "verifier at $ASSAY_VERIFIER"

step "3. The attestor joins: enroll (EK cert → AK → credential activation), attest, get a join token"
"$BIN/assay-attestor" join --tcti "$TCTI" --state-dir "$work/attestor" --node-id demo-node --output json | tee "$work/join.json"
token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$work/join.json")

step "4. The orchestrator checks the token (single use: a second check is refused)"
"$BIN/assay-verifier" token verify "${as_orchestrator[@]}" --token "$token" --node demo-node
if "$BIN/assay-verifier" token verify "${as_orchestrator[@]}" --token "$token" --node demo-node; then echo "reuse was accepted!"; exit 1; fi

step "5. The node's PCR 7 changes (a tampered boot): the next attestation fails, no token"
tpm2_pcrextend -T "$TCTI" 7:sha256=$(printf 'ab%.0s' {1..32}) >/dev/null
set +e
"$BIN/assay-attestor" join --tcti "$TCTI" --state-dir "$work/attestor" --node-id demo-node
echo "(exit code $? = not trusted)"
set -e

step "6. The history, as an auditor sees it (without the auditor's certificate: refused)"
if "$BIN/assay-verifier" history --node demo-node 2>/dev/null; then echo "history without a role was served!"; exit 1; fi
"$BIN/assay-verifier" history "${as_auditor[@]}" --node demo-node
echo; echo "demo complete"
