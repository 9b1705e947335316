"""DSSE envelopes (Dead Simple Signing Envelope, secure-systems-lab/dsse v1.0) with Ed25519.

The signature covers PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body, so no
JSON canonicalisation is involved and the payload bytes are signed exactly as sent.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sqm.trust.errors import TrustError, VerificationError


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding (DSSE protocol, "Signature definition")."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: the payload bytes, their type, and signatures over PAE."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in self.signatures
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Envelope:
        """Read an envelope; raise TrustError naming what is malformed."""
        if not isinstance(data, Mapping):
            raise TrustError("a DSSE envelope is a JSON object")
        payload_type, payload, signatures = (
            data.get("payloadType"),
            data.get("payload"),
            data.get("signatures"),
        )
        if not isinstance(payload_type, str) or not payload_type:
            raise TrustError("envelope.payloadType must be a non-empty string")
        if not isinstance(payload, str):
            raise TrustError("envelope.payload must be base64 text")
        if not isinstance(signatures, list) or not signatures:
            raise TrustError("envelope.signatures must be a non-empty list")
        parsed = []
        for index, entry in enumerate(signatures):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("sig"), str):
                raise TrustError(f"envelope.signatures[{index}].sig must be base64 text")
            keyid = entry.get("keyid", "")
            if not isinstance(keyid, str):
                raise TrustError(f"envelope.signatures[{index}].keyid must be a string")
            parsed.append(Signature(keyid, decode_base64(entry["sig"], f"signatures[{index}].sig")))
        return cls(payload_type, decode_base64(payload, "payload"), tuple(parsed))

    def check_bounds(self) -> None:
        """Raise TrustError when the signatures exceed what a log takes in (MAX_SIGNATURES,
        MAX_SIGNATURE_BYTES, MAX_KEYID_CHARS): applied to submissions, not to what is read
        back, which earlier versions may have taken."""
        if len(self.signatures) > MAX_SIGNATURES:
            raise TrustError(
                f"envelope.signatures holds {len(self.signatures)} signatures; at most "
                f"{MAX_SIGNATURES} are accepted"
            )
        for index, signature in enumerate(self.signatures):
            if len(signature.keyid) > MAX_KEYID_CHARS:
                raise TrustError(
                    f"envelope.signatures[{index}].keyid must be at most {MAX_KEYID_CHARS} "
                    "characters"
                )
            if len(signature.sig) > MAX_SIGNATURE_BYTES:
                raise TrustError(
                    f"envelope.signatures[{index}].sig is {len(signature.sig)} bytes; no "
                    f"signature scheme in use needs more than {MAX_SIGNATURE_BYTES}"
                )


# Every signature is bound into the log leaf for good: bounds on what a submitter may add.
# A few co-signers, RSA-4096's 512-byte signatures, SHA-256 hex key ids with room to spare.
MAX_SIGNATURES = 16
MAX_SIGNATURE_BYTES = 1024
MAX_KEYID_CHARS = 256


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = (
    "use RFC 4648's standard alphabet (A-Z a-z 0-9 + /) or its URL-safe one (- _ for + /), "
    "not both, padded with = to a multiple of 4 characters"
)


def decode_base64(text: str, where: str) -> bytes:
    """The bytes of an envelope field: "either standard or URL-safe encoding is allowed"
    (DSSE envelope.md), padded, as the specification's reference implementation reads them
    (standard first, then URL-safe), but never the two alphabets mixed.

    Its bits beyond the last byte must be zero (RFC 4648 section 3.5): a lenient decoder
    reads ``eA==`` and ``eB==`` alike, which would make two envelopes of one signature."""
    if not isinstance(text, str):
        raise TrustError(f"envelope.{where} must be base64 text")
    try:
        # validate=True: the alphabet only, padding where RFC 4648 puts it (strict mode).
        raw = base64.b64decode(text, validate=True)
    except ValueError as standard_error:  # binascii.Error, or text that is not ASCII
        if "+" in text or "/" in text:
            raise TrustError(
                f"envelope.{where} is not valid base64 ({standard_error}): {_NOT_BASE64}"
            ) from None
        try:
            raw = base64.b64decode(text, altchars=b"-_", validate=True)
        except ValueError as exc:
            raise TrustError(
                f"envelope.{where} is not valid base64 ({exc}): {_NOT_BASE64}"
            ) from None
    padding = len(text) - len(text.rstrip("="))
    if padding > 2 or len(text) % 4:  # strict mode takes "AAAA====" (padding after a quantum)
        raise TrustError(f"envelope.{where} is not valid base64 (excess padding): {_NOT_BASE64}")
    if padding:
        last = text[-padding - 1].replace("-", "+").replace("_", "/")
        if _ALPHABET.index(last) & (0b1111 if padding == 2 else 0b11):
            raise TrustError(
                f"envelope.{where} is not canonical base64: the bits after its last byte are "
                "not zero (encode the bytes afresh)"
            )
    return raw


def sign(payload_type: str, payload: bytes, key: Ed25519PrivateKey, keyid: str) -> Envelope:
    """Sign a payload into a one-signature envelope."""
    return Envelope(
        payload_type, payload, (Signature(keyid, key.sign(pae(payload_type, payload))),)
    )


def verify(envelope: Envelope, keys: Mapping[str, Ed25519PublicKey]) -> str:
    """Verify that a signature by one of ``keys`` (keyid to public key) covers the envelope;
    return the keyid that verified; raise VerificationError otherwise."""
    message = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        key = keys.get(signature.keyid)
        if key is None:
            continue
        try:
            key.verify(signature.sig, message)
        except InvalidSignature:
            continue
        return signature.keyid
    raise VerificationError("no signature in the envelope verifies with a trusted key")
