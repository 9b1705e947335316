"""C2SP checkpoints in the signed-note format, signed with Ed25519.

A checkpoint body is ``origin\\n size\\n base64(root)\\n`` plus optional extension lines; the
note appends a blank line and one line per signature, ``— name base64(key ID || signature)``.
The key ID is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key) for Ed25519
(C2SP signed-note, "Signatures"; C2SP tlog-checkpoint). A verifier key is written
``name+hex(key ID)+base64(0x01 || public key)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sqm.trust.errors import TrustError, VerificationError
from sqm.trust.merkle import HASH_SIZE

ED25519 = b"\x01"
EM_DASH = "\u2014"
MAX_NOTE_BYTES = 1 << 20


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 signed-note key."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise TrustError(f"invalid key name {name!r}: no spaces or '+' allowed")


@dataclass(frozen=True)
class NoteVerifier:
    """A signed-note verifier key: a name and an Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        """``name+hex(key ID)+base64(0x01 || public key)``."""
        raw = base64.b64encode(ED25519 + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{raw}"

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        """Read a verifier key string; raise TrustError when it is malformed or inconsistent."""
        parts = text.strip().split("+", 2)  # base64 may itself contain '+'
        if len(parts) != 3:
            raise TrustError("a verifier key is name+keyid+key")
        name, hex_id, encoded = parts
        _check_name(name)
        try:
            raw = base64.b64decode(encoded, validate=True)
            claimed = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise TrustError(f"malformed verifier key: {exc}") from exc
        if len(raw) != 33 or raw[:1] != ED25519:
            raise TrustError("the verifier key is not an Ed25519 (type 0x01) key")
        verifier = cls(name, raw[1:])
        if verifier.key_id != claimed:
            raise TrustError("the verifier key's ID does not match its name and key")
        return verifier


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed tree head: origin, size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        if "\n" in self.origin or not self.origin:
            raise TrustError("the origin must be one non-empty line")
        if self.size < 0 or len(self.root) != HASH_SIZE:
            raise TrustError("a checkpoint needs a size >= 0 and a 32-byte root")
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse_body(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise TrustError("a checkpoint body is origin, size, root hash and extension lines")
        origin, size_text, root_text, *extensions = lines[:-1]
        # C2SP tlog-checkpoint: the size is an ASCII decimal uint64 without leading zeroes
        # (str.isdigit alone admits "²", which int() refuses).
        if (
            not (size_text.isascii() and size_text.isdigit())
            or (size_text != "0" and size_text.startswith("0"))
            or len(size_text) > 20
            or int(size_text) >= 2**64
        ):
            raise TrustError(
                f"checkpoint size {size_text[:40]!r} is not a decimal number from 0 to 2^64 - 1"
            )
        try:
            root = base64.b64decode(root_text, validate=True)
        except ValueError as exc:  # binascii.Error, or text that is not ASCII
            raise TrustError(f"checkpoint root is not base64: {exc}") from exc
        if len(root) != HASH_SIZE:
            raise TrustError("checkpoint root is not 32 bytes")
        return cls(origin, int(size_text), root, tuple(extensions))


def sign(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note of a checkpoint, as text."""
    _check_name(name)
    body = checkpoint.body()
    signature = private_key.sign(body.encode())
    stamp = base64.b64encode(key_id(name, _raw(private_key.public_key())) + signature).decode()
    return f"{body}\n{EM_DASH} {name} {stamp}\n"


def open_note(note: str, verifier: NoteVerifier) -> Checkpoint:
    """Verify a signed note with ``verifier`` and return its checkpoint; raise if it fails.

    Signatures by other keys are allowed (witness cosignatures) and ignored here.
    """
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise TrustError("the note is larger than 1 MiB")
    body, separator, signatures = note.partition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise TrustError("a signed note is a body, a blank line and signature lines")
    body += "\n"
    checkpoint = Checkpoint.parse_body(body)
    found = False
    for line in signatures[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise TrustError(f"malformed signature line {line!r}")
        _, name, stamp = parts
        try:
            blob = base64.b64decode(stamp, validate=True)
        except ValueError as exc:  # binascii.Error, or text that is not ASCII
            raise TrustError(f"signature is not base64: {exc}") from exc
        if name != verifier.name or blob[:4] != verifier.key_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(blob[4:], body.encode())
        except InvalidSignature:
            raise VerificationError(f"the signature of {name} does not verify") from None
        found = True
    if not found:
        raise VerificationError(f"the note carries no signature by {verifier.name}")
    if checkpoint.origin != verifier.name:
        raise VerificationError(
            f"the checkpoint's origin {checkpoint.origin!r} is not the log {verifier.name!r}"
        )
    return checkpoint
