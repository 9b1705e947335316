"""C2SP signed-note checkpoints."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sqm.trust import TrustError, VerificationError
from sqm.trust.checkpoint import Checkpoint, NoteVerifier, key_id, open_note, sign

ORIGIN = "registry.sqm.example/log/2026"


def _keys() -> tuple[Ed25519PrivateKey, NoteVerifier]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, NoteVerifier(ORIGIN, raw)


def test_signed_note_layout_and_round_trip() -> None:
    private, verifier = _keys()
    checkpoint = Checkpoint(ORIGIN, 42, bytes(range(32)))
    note = sign(checkpoint, ORIGIN, private)
    body, signature = note.split("\n\n")
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(bytes(range(32))).decode()}"
    assert signature.startswith(f"\u2014 {ORIGIN} ") and signature.endswith("\n")
    stamp = base64.b64decode(signature.split(" ")[2])
    assert stamp[:4] == key_id(ORIGIN, verifier.public_key) and len(stamp) == 68
    assert open_note(note, verifier) == checkpoint


def test_verifier_key_string_round_trips_and_checks_its_id() -> None:
    verifier = _keys()[1]
    while "+" not in verifier.encode().split("+", 2)[2]:  # guard the base64-with-'+' case
        verifier = _keys()[1]
    text = verifier.encode()
    assert text.startswith(ORIGIN + "+") and len(text.split("+")[1]) == 8
    assert NoteVerifier.parse(text) == verifier
    name, _keyid, key = text.split("+", 2)
    with pytest.raises(TrustError, match="ID does not match"):
        NoteVerifier.parse(f"{name}+00000000+{key}")
    with pytest.raises(TrustError):
        NoteVerifier.parse("not-a-key")


def test_tampering_is_detected() -> None:
    private, verifier = _keys()
    note = sign(Checkpoint(ORIGIN, 7, bytes(32)), ORIGIN, private)
    with pytest.raises(VerificationError):
        open_note(note.replace("\n7\n", "\n8\n"), verifier)
    _, stranger = _keys()
    with pytest.raises(VerificationError, match="no signature"):
        open_note(note, stranger)
    other_private, _ = _keys()
    forged = sign(Checkpoint(ORIGIN, 7, bytes(32)), ORIGIN, other_private)
    with pytest.raises(VerificationError):
        open_note(forged, verifier)


def test_extensions_and_cosignatures_are_kept_and_ignored() -> None:
    private, verifier = _keys()
    checkpoint = Checkpoint(ORIGIN, 3, bytes(32), ("extension line",))
    note = sign(checkpoint, ORIGIN, private)
    witness, _ = _keys()
    cosigned = note + sign(checkpoint, "witness.example", witness).split("\n\n")[1]
    assert open_note(cosigned, verifier) == checkpoint


@pytest.mark.parametrize(
    "note",
    [
        "",
        "no blank line\n",
        f"{ORIGIN}\n01\n{base64.b64encode(bytes(32)).decode()}\n\n\u2014 x AAAA\n",
        f"{ORIGIN}\n1\nnot-base64!\n\n\u2014 x AAAA\n",
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(31)).decode()}\n\n\u2014 x AAAA\n",
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode()}\n\n- x AAAA\n",
    ],
)
def test_malformed_notes_are_trust_errors(note: str) -> None:
    _, verifier = _keys()
    with pytest.raises(TrustError):
        open_note(note, verifier)
