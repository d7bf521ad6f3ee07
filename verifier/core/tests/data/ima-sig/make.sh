#!/usr/bin/env bash
# Regenerates the IMA signature fixtures of verifier/core/tests/ima_signature_evmctl.rs
# with openssl and evmctl (ima-evm-utils; tests/install-deps.sh installs both).
#
#   verifier/core/tests/data/ima-sig/make.sh          # re-sign with the kept TEST-ONLY keys
#   verifier/core/tests/data/ima-sig/make.sh --new-keys  # new keys and certificates too
#
# The *-TEST-ONLY-key.pem files are throwaway keys made by this script; they sign
# nothing but these fixtures. RSA PKCS#1 v1.5 signatures are deterministic, so
# re-signing with the kept keys reproduces the RSA .sig files byte for byte;
# ECDSA signatures are randomized and change on every run.
set -euo pipefail
cd "$(dirname "$0")"
for tool in openssl evmctl; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run tests/install-deps.sh" >&2; exit 1; }
done
# Runs a command, showing its output only when it fails (evmctl is chatty on stderr).
quiet() {
  local out
  out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; echo "failed: $*" >&2; return 1; }
}
[ "${1:-}" = --new-keys ] && rm -f ./*-TEST-ONLY-key.pem ./*.der ./*.cert.pem ./*.pub.pem

# cert NAME GENPKEY-ARGS SKID: a TEST-ONLY key (kept if present) and its self-signed
# certificate (PEM, DER) with subjectKeyIdentifier=SKID ("hash" or hex), and its
# SubjectPublicKeyInfo (NAME.pub.pem)
cert() {
  local name=$1 newkey=$2 skid=$3
  if [ ! -f "$name-TEST-ONLY-key.pem" ]; then
    quiet openssl genpkey $newkey -out "$name-TEST-ONLY-key.pem"
  fi
  if [ ! -f "$name.cert.pem" ]; then
    openssl req -new -x509 -key "$name-TEST-ONLY-key.pem" -out "$name.cert.pem" \
      -days 36500 -set_serial 1 -subj "/O=Assay test fixtures/CN=IMA signing key $name" \
      -addext "subjectKeyIdentifier=$skid" \
      -addext "basicConstraints=critical,CA:FALSE" \
      -addext "keyUsage=critical,digitalSignature" \
      -addext "extendedKeyUsage=critical,codeSigning"
    openssl x509 -in "$name.cert.pem" -outform DER -out "$name.der"
    openssl pkey -in "$name-TEST-ONLY-key.pem" -pubout -out "$name.pub.pem"
  fi
}

cert rsa2048 "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" hash
cert rsa4096 "-algorithm RSA -pkeyopt rsa_keygen_bits:4096" hash
cert p256 "-algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve" hash
cert p384 "-algorithm EC -pkeyopt ec_paramgen_curve:P-384 -pkeyopt ec_param_enc:named_curve" hash
# Another RSA key whose certificate claims rsa2048's subjectKeyIdentifier: the
# kernel and Assay look keys up by that id, so a signature by rsa2048 finds this
# key too, and must not verify with it.
rsa2048_skid=$(openssl x509 -in rsa2048.cert.pem -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :')
cert impostor "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" "$rsa2048_skid"
# A certificate whose subjectKeyIdentifier is not the SHA-1 of its key: the key id
# is the SKID's last 4 bytes (what the kernel matches), signed with --keyid-from-cert.
cert customskid "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" 00112233445566778899aabbccddeeff01020304

mkdir -p files
printf 'hello, IMA\n' > files/hello.txt
: > files/empty
printf '\000\001\002\003\377\376 binary \r\n\000' > files/binary.bin

# sign KEY ALG FILE [evmctl options]: evmctl writes FILE.sig (the security.ima
# value), kept as FILE.KEY-ALG.sig
sign() {
  local key=$1 alg=$2 file=$3
  shift 3
  quiet evmctl ima_sign --key "$key-TEST-ONLY-key.pem" -a "$alg" --sigfile "$@" "files/$file"
  mv "files/$file.sig" "files/$file.$key-$alg.sig"
  local digest keyid
  digest=$(openssl dgst "-$alg" -r "files/$file" | cut -d' ' -f1)
  keyid=$(od -An -tx1 -j3 -N4 "files/$file.$key-$alg.sig" | tr -d ' \n')
  echo "files/$file.$key-$alg.sig files/$file $key $alg $digest $keyid" >> MANIFEST.new
}

echo "# sig-file file key hash-alg file-digest keyid (written by make.sh)" > MANIFEST.new
for f in hello.txt empty binary.bin; do
  sign rsa2048 sha256 "$f"
  sign p256 sha256 "$f"
done
sign rsa2048 sha1 hello.txt
sign rsa2048 sha224 hello.txt
sign rsa2048 sha384 hello.txt
sign rsa2048 sha512 hello.txt
sign rsa4096 sha256 hello.txt
sign p256 sha512 hello.txt
sign p384 sha384 hello.txt
sign p384 sha384 binary.bin
sign p384 sha1 hello.txt
sign customskid sha256 hello.txt --keyid-from-cert customskid.cert.pem
mv MANIFEST.new MANIFEST

# The oracle agrees with every fixture signed by a key whose SKID is the hash of
# its key (evmctl 1.4 ima_verify computes key ids from the key, never from a SKID).
while read -r sig file key alg _; do
  case "$sig" in "#"*) continue ;; esac
  [ "$key" = customskid ] && continue
  cp "$sig" "$file.sig"
  quiet evmctl ima_verify --key "$key.der" --sigfile "$file"
  rm "$file.sig"
done < MANIFEST
echo "ok: $(grep -vc '^#' MANIFEST) signatures, verified by $(evmctl --version)"
