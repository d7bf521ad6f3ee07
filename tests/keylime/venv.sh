#!/usr/bin/env bash
# The Keylime venv the side-by-side scripts use: Keylime 7.14.3 from PyPI on
# Debian's python3 (so it sees python3-gpg), at ${ASSAY_KEYLIME_VENV:-target/keylime-venv}.
#
#   source tests/keylime/venv.sh; keylime_venv     # sets PY (its python), VENV, KEYLIME_VERSION
#   bash tests/keylime/venv.sh                     # the same, then prints the venv's python
#
# Keylime's PyPI package declares no dependencies: the ones its verifier modules
# import are installed beside it (pyasn1 pyasn1-modules jsonschema lark, and
# cryptography pyyaml packaging), and `gpg` comes from Debian's python3-gpg (PyPI's
# needs gpgme headers to build). Missing Debian packages (python3, python3-venv,
# python3-gpg) are installed with apt-get (sudo when not root). Exits non-zero,
# saying why, if the venv cannot be made or does not import Keylime.
KEYLIME_VERSION=7.14.3
_KEYLIME_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${ASSAY_KEYLIME_VENV:-$_KEYLIME_ROOT/target/keylime-venv}

_keylime_log() { echo "[keylime-venv] $*" >&2; }

_keylime_venv_ok() {
  "$VENV/bin/python" - <<EOF 2>/dev/null
import importlib.metadata as m, gpg, jsonschema, pyasn1_modules, lark, yaml, cryptography, packaging
assert m.version("keylime") == "$KEYLIME_VERSION"
EOF
}

keylime_venv() {
  if ! _keylime_venv_ok; then
    local p missing=()
    for p in python3 python3-venv python3-gpg; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
      _keylime_log "installing: ${missing[*]}"
      local sudo=""
      [ "$(id -u)" -eq 0 ] || sudo="sudo"
      $sudo apt-get update -qq || return 1
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null || return 1
    fi
    _keylime_log "creating the Keylime venv in $VENV"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV" || return 1
    "$VENV/bin/pip" install -q "keylime==$KEYLIME_VERSION" cryptography pyyaml packaging \
      pyasn1 pyasn1-modules jsonschema lark || return 1
    _keylime_venv_ok || { _keylime_log "the Keylime venv in $VENV does not import Keylime $KEYLIME_VERSION"; return 1; }
  fi
  PY="$VENV/bin/python"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  keylime_venv || exit 1
  echo "$PY"
fi
