#!/usr/bin/env bash
# Check an SQM bundle by hand with python3, base64 and openssl (docs/bundle.md walks through it).
# Run from a scratch folder: B=path/to/bundle.json R=path/to/trust-root.json bash check-by-hand.sh
set -e
B=${B:-examples/bundle/automotive-machining.bundle.json}
R=${R:-examples/bundle/trust-root.json}
# field FILE a/b/0 prints the JSON value at that path
field() {
  python3 -c 'import json, sys
value = json.load(open(sys.argv[1]))
for step in sys.argv[2].split("/"):
    value = value[int(step)] if step.isdigit() else value[step]
sys.stdout.write(value)' "$1" "$2"
}
# 1. the leaf and its hash, SHA-256(0x00 || leaf)
field $B leaf | base64 -d > leaf.json
( printf '\000'; cat leaf.json ) | openssl dgst -sha256 -binary | base64
# 2. walk the audit path (index 1 of 6): left, right, right
h() { ( printf '\001'; cat "$1" "$2" ) | openssl dgst -sha256 -binary; }
( printf '\000'; cat leaf.json ) | openssl dgst -sha256 -binary > r0
for i in 0 1 2; do field $B inclusionProof/hashes/$i | base64 -d > p$i; done
h p0 r0 > r1; h r1 p1 > r2; h r2 p2 > r3
base64 < r3
field $B checkpoint > note.txt
sed -n 3p note.txt
# 3. the checkpoint signature (Ed25519 over the body, i.e. the note up to the blank line)
python3 - "$R" <<'PY'
import base64, json, sys
key = json.load(open(sys.argv[1]))["log"]["verifierKey"].split("+", 2)[2]
raw = base64.b64decode(key)[1:]
der = bytes.fromhex("302a300506032b6570032100") + raw
open("log.pem", "w").write("-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n")
note = open("note.txt").read()
body, signatures = note.split("\n\n", 1)
open("body.txt", "w").write(body + "\n")
open("sig.bin", "wb").write(base64.b64decode(signatures.split()[2])[4:])
PY
openssl pkeyutl -verify -pubin -inkey log.pem -rawin -in body.txt -sigfile sig.bin
# 4. the RFC 3161 token over the exact checkpoint bytes
field $B timestamp | base64 -d > token.tsr
field $R tsa/caCertificate > tsa-ca.pem
openssl ts -verify -data note.txt -in token.tsr -CAfile tsa-ca.pem
