"""A bundle the registry made, saved by the CLI and tampered with, on both databases: every
tamper (payload, signature, leaf, proof hash, checkpoint, token) makes `sqm verify` fail, and
fail first at the step that guards that part; `openssl ts -verify` checks the registry's own
checkpoint token and refuses it over changed checkpoint bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.cli.test_registry_client_cli import _feed, _pinned, _sqm
from tests.trust.test_timestamp import _openssl_verify

# The steps of an attestation's bundle, in the order `sqm verify` runs them (sqm/trust/bundle.py
# `verify`, then the CLI's feed validation); the registry here has no further TSA and the
# supplier's key was not rotated in, so neither optional step runs.
STEPS = [
    "checkpoint signature",
    "timestamp token",
    "key registration included",
    "key proof of possession",
    "envelope signature",
    "leaf binds envelope",
    "attestation included",
    "statement",
    "feed names the signer",
    "key valid when logged",
    "feed valid",
]


@dataclass(frozen=True)
class Saved:
    """The bundle `sqm attest --out` saved, the trust root, and `sqm verify` on the two."""

    bundle: Path
    trust_root: Path
    untouched: Result


@pytest.fixture
def saved(live_registry: str, tmp_path: Path) -> Saved:
    key = str(tmp_path / "supplier.key")
    assert _sqm("keys", "generate", key).exit_code == 0
    root, at = _pinned(live_registry, tmp_path)
    feed = _feed(tmp_path, 20)
    registered = _sqm("supplier", "register", feed, "--key", key, *at)
    assert registered.exit_code == 0, registered.output
    path = tmp_path / "saved.bundle.json"
    attested = _sqm("attest", feed, "--key", key, "--out", str(path), *at)
    assert attested.exit_code == 0, attested.output
    return Saved(path, root, _sqm("verify", str(path), "--trust-root", str(root)))


def _steps(result: Result) -> list[tuple[str, bool, str]]:
    """The steps `sqm verify` printed: name, passed, detail."""
    steps = []
    for line in result.output.splitlines():
        mark, _, rest = line.partition("  ")
        if mark in ("PASS", "FAIL"):
            name, _, detail = rest.partition(": ")
            steps.append((name, mark == "PASS", detail))
    return steps


def _flip(data: bytes, at: int) -> bytes:
    """``data`` with one bit of the byte at ``at`` changed."""
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _payload(document: dict[str, Any]) -> None:
    # A digit of the feed's sequence number changed: the payload stays a readable statement.
    envelope = document["envelope"]
    payload = bytearray(base64.b64decode(envelope["payload"]))
    at = payload.index(b'"sequence"') + len(b'"sequence"')
    while not chr(payload[at]).isdigit():
        at += 1
    payload[at] = ord("7") if payload[at] != ord("7") else ord("8")
    envelope["payload"] = _b64(bytes(payload))


def _signature(document: dict[str, Any]) -> None:
    signature = document["envelope"]["signatures"][0]
    signature["sig"] = _b64(_flip(base64.b64decode(signature["sig"]), 10))


def _leaf(document: dict[str, Any]) -> None:
    # A hex digit of the payload digest the leaf records: the leaf stays readable JSON.
    leaf = bytearray(base64.b64decode(document["leaf"]))
    at = leaf.index(b'"payloadSha256":"') + len(b'"payloadSha256":"')
    leaf[at] = ord("0") if leaf[at] != ord("0") else ord("1")
    document["leaf"] = _b64(bytes(leaf))


def _proof_hash(document: dict[str, Any]) -> None:
    hashes = document["inclusionProof"]["hashes"]
    hashes[0] = _b64(_flip(base64.b64decode(hashes[0]), 0))


def _checkpoint_root(document: dict[str, Any]) -> None:
    lines = document["checkpoint"].split("\n")
    lines[2] = _b64(_flip(base64.b64decode(lines[2]), 31))
    document["checkpoint"] = "\n".join(lines)


def _checkpoint_size(document: dict[str, Any]) -> None:
    lines = document["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)
    document["checkpoint"] = "\n".join(lines)


def _token_signature(document: dict[str, Any]) -> None:
    # The DER ends with the TSA's signature (SignerInfo's last field): its last byte changed.
    token = base64.b64decode(document["timestamp"])
    document["timestamp"] = _b64(_flip(token, len(token) - 1))


def _token_imprint(document: dict[str, Any]) -> None:
    # A byte of the message imprint, the SHA-256 of the checkpoint that the token stamps.
    token = base64.b64decode(document["timestamp"])
    imprint = hashlib.sha256(document["checkpoint"].encode()).digest()
    assert token.count(imprint) == 1
    document["timestamp"] = _b64(_flip(token, token.index(imprint) + 5))


# Each tamper, the step that must be the first to fail, and what that step must say: the
# check that guards the part tampered with, not a reader refusing malformed material.
TAMPERS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("payload", _payload, "envelope signature", "no signature in the envelope verifies"),
    ("signature", _signature, "envelope signature", "no signature in the envelope verifies"),
    ("leaf", _leaf, "leaf binds envelope", "the log leaf does not bind this envelope"),
    ("proof-hash", _proof_hash, "attestation included", "does not lead to the expected root"),
    ("checkpoint-root-hash", _checkpoint_root, "checkpoint signature", "does not verify"),
    ("checkpoint-size", _checkpoint_size, "checkpoint signature", "does not verify"),
    ("token-signature", _token_signature, "timestamp token", "CMS signature does not verify"),
    ("token-message-imprint", _token_imprint, "timestamp token", "message imprint does not match"),
]


def test_the_bundle_the_cli_saved_passes_every_step_offline(saved: Saved) -> None:
    assert saved.untouched.exit_code == 0, saved.untouched.output
    steps = _steps(saved.untouched)
    assert [name for name, _, _ in steps] == STEPS
    assert all(ok for _, ok, _ in steps), saved.untouched.output
    assert saved.untouched.output.rstrip().endswith("bundle verified")


@pytest.mark.parametrize(
    ("tamper", "first_failure", "reason"),
    [pytest.param(tamper, step, reason, id=name) for name, tamper, step, reason in TAMPERS],
)
def test_a_tampered_bundle_fails_first_at_the_step_that_guards_it(
    saved: Saved,
    tmp_path: Path,
    tamper: Callable[[dict[str, Any]], None],
    first_failure: str,
    reason: str,
) -> None:
    assert saved.untouched.exit_code == 0, saved.untouched.output
    document = json.loads(saved.bundle.read_text())
    original = json.dumps(document)
    tamper(document)
    assert json.dumps(document) != original
    tampered = tmp_path / "tampered.bundle.json"
    tampered.write_text(json.dumps(document))

    result = _sqm("verify", str(tampered), "--trust-root", str(saved.trust_root))

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.rstrip().endswith("bundle NOT verified")
    steps = _steps(result)
    first = next(at for at, (_, ok, _) in enumerate(steps) if not ok)
    assert steps[first][0] == first_failure, result.output
    assert reason in steps[first][2], result.output
    # Every step before it ran and passed, as on the untouched bundle.
    assert [name for name, _, _ in steps[:first]] == STEPS[: STEPS.index(first_failure)]


def test_openssl_verifies_the_registrys_checkpoint_token_and_refuses_changed_bytes(
    saved: Saved, tmp_path: Path
) -> None:
    document = json.loads(saved.bundle.read_text())
    checkpoint = document["checkpoint"].encode()
    token = base64.b64decode(document["timestamp"])  # the whole DER TimeStampResp
    ca_pem = json.loads(saved.trust_root.read_text())["tsa"]["caCertificate"].encode()
    (tmp_path / "good").mkdir()
    (tmp_path / "changed").mkdir()

    good = _openssl_verify(tmp_path / "good", token, checkpoint, ca_pem)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Verification: OK" in good.stdout

    # One byte of the checkpoint file changed: the last digit of its tree size.
    at = checkpoint.index(b"\n", checkpoint.index(b"\n") + 1) - 1
    changed = checkpoint[:at] + (b"3" if checkpoint[at : at + 1] != b"3" else b"4")
    changed += checkpoint[at + 1 :]
    refused = _openssl_verify(tmp_path / "changed", token, changed, ca_pem)
    assert refused.returncode != 0
    assert "Verification: FAILED" in refused.stdout
    assert "message imprint mismatch" in refused.stderr
