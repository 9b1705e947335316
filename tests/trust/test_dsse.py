"""DSSE envelopes."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sqm.trust import TrustError, VerificationError
from sqm.trust.dsse import Envelope, decode_base64, pae, sign, verify


def test_pae_matches_the_dsse_specification_example() -> None:
    # DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world")
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_sign_verify_round_trip_through_json() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = sign("application/vnd.in-toto+json", b'{"a": 1}', key, "supplier-key-1")
    again = Envelope.from_json(envelope.to_json())
    assert again == envelope
    assert verify(again, {"supplier-key-1": key.public_key()}) == "supplier-key-1"


def test_changed_payload_type_or_body_or_key_fails() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = sign("application/vnd.in-toto+json", b"payload", key, "k")
    keys = {"k": key.public_key()}
    for changed in (
        Envelope("text/plain", envelope.payload, envelope.signatures),
        Envelope(envelope.payload_type, b"payloaD", envelope.signatures),
    ):
        with pytest.raises(VerificationError):
            verify(changed, keys)
    with pytest.raises(VerificationError):
        verify(envelope, {"k": Ed25519PrivateKey.generate().public_key()})


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"payloadType": "", "payload": "", "signatures": [{"sig": ""}]},
        {"payloadType": "t", "payload": "!!", "signatures": [{"sig": ""}]},
        {"payloadType": "t", "payload": "", "signatures": []},
        {"payloadType": "t", "payload": "", "signatures": [{"sig": 5}]},
        # Found by schemathesis: base64 text that is not ASCII raised ValueError, a 500.
        {"payloadType": "t", "payload": "", "signatures": [{"sig": "\U0009f2ed"}]},
        {"payloadType": "t", "payload": "é", "signatures": [{"sig": "AA=="}]},
    ],
)
def test_malformed_envelopes_are_trust_errors(data: object) -> None:
    with pytest.raises(TrustError):
        Envelope.from_json(data)


def test_an_envelope_in_url_safe_base64_reads_as_in_standard_base64() -> None:
    # DSSE envelope.md: "Either standard or URL-safe encoding is allowed". These bytes encode
    # with + and / in the standard alphabet, - and _ in the URL-safe one.
    key = Ed25519PrivateKey.generate()
    envelope = sign("application/vnd.in-toto+json", bytes([0xFB, 0xFF, 0xBF] * 8), key, "k")
    standard = envelope.to_json()
    assert "+" in standard["payload"] and "/" in standard["payload"]
    url_safe = {
        **standard,
        "payload": base64.urlsafe_b64encode(envelope.payload).decode(),
        "signatures": [
            {"keyid": "k", "sig": base64.urlsafe_b64encode(envelope.signatures[0].sig).decode()}
        ],
    }
    assert "-" in url_safe["payload"] and "_" in url_safe["payload"]
    again = Envelope.from_json(url_safe)
    assert again == envelope
    assert verify(again, {"k": key.public_key()}) == "k"
    assert again.to_json() == standard  # written back in the standard alphabet


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        # One byte, "x": its canonical form is eA==; eB== sets a bit after the byte.
        ("eB==", "not canonical base64: the bits after its last byte are not zero"),
        ("eAB=", "not canonical base64"),
        ("eA", "not valid base64"),  # unpadded
        ("eA=", "not valid base64"),
        ("+-AA", "not valid base64 (Only base64 data is allowed): use RFC 4648's"),  # mixed
        ("eA==\n", "not valid base64"),
        ("e A==", "not valid base64"),
        ("AAAA====", "not valid base64 (excess padding)"),
        ("=", "not valid base64 (Leading padding not allowed)"),
    ],
)
def test_base64_that_is_not_one_canonical_padded_encoding_is_refused(
    payload: str, reason: str
) -> None:
    data = {"payloadType": "t", "payload": payload, "signatures": [{"sig": "AA=="}]}
    with pytest.raises(TrustError, match=re.escape(f"envelope.payload is {reason}")):
        Envelope.from_json(data)
    assert Envelope.from_json({**data, "payload": "eA=="}).payload == b"x"


@pytest.mark.parametrize("value", [None, 1, b"AA==", ["AA=="]])
def test_base64_of_another_type_than_text_is_a_trust_error(value: object) -> None:
    with pytest.raises(TrustError, match=re.escape("envelope.sig must be base64 text")):
        decode_base64(value, "sig")  # type: ignore[arg-type]


def test_an_envelope_bounds_what_its_signatures_may_add() -> None:
    """Every signature is bound into the log leaf for good: a submission is bounded, while
    what earlier versions took still reads back."""
    import base64

    good = {"keyid": "k", "sig": base64.b64encode(bytes(64)).decode()}
    base = {"payloadType": "t", "payload": base64.b64encode(b"p").decode()}
    Envelope.from_json({**base, "signatures": [good] * 16}).check_bounds()
    for signatures, message in (
        ([good] * 17, "at most 16"),
        ([{**good, "keyid": "k" * 257}], "at most 256 characters"),
        ([{**good, "sig": base64.b64encode(bytes(1025)).decode()}], "is 1025 bytes"),
    ):
        read = Envelope.from_json({**base, "signatures": signatures})
        with pytest.raises(TrustError, match=message):
            read.check_bounds()
