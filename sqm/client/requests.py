"""The signed request bodies of the registry's write API, built without I/O.

Writes need no password: each body carries the signature that authorises it (see
docs/registry.md). These builders are the one definition of those bodies for the client, the
CLI and the seeding of a new registry.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sqm.trust import bundle, dsse


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``key``'s public half."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PrivateKey) -> str:
    """The key id the registry knows ``key`` by."""
    return bundle.key_id(raw_public_key(key))


def registration(organization: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Register an identity with its first key: the key proves possession by signing the
    registration message for the identity's ``scheme:code``."""
    identity = bundle.supplier_identity(organization)
    public = raw_public_key(key)
    return {
        "supplier": dict(organization),
        "publicKey": _b64(public),
        "proofOfPossession": _b64(key.sign(bundle.registration_message(identity, public))),
    }


def rotation(identity: str, current: Ed25519PrivateKey, new: Ed25519PrivateKey) -> dict[str, Any]:
    """Add ``new`` to a supplier's keys, authorised by its ``current`` key."""
    public = raw_public_key(new)
    return {
        "publicKey": _b64(public),
        "proofOfPossession": _b64(new.sign(bundle.registration_message(identity, public))),
        "authorization": {
            "keyId": key_id(current),
            "signature": _b64(
                current.sign(bundle.rotation_message(identity, bundle.key_id(public)))
            ),
        },
    }


def revocation(identity: str, key: Ed25519PrivateKey, revoked_at: str) -> dict[str, Any]:
    """Revoke ``key`` from ``revoked_at`` (RFC 3339) on, signed by the key itself."""
    message = bundle.revocation_message(identity, key_id(key), revoked_at)
    return {"revokedAt": revoked_at, "signature": _b64(key.sign(message))}


def attestation(feed: Mapping[str, Any], key: Ed25519PrivateKey) -> dsse.Envelope:
    """A feed signed as a DSSE envelope around its in-toto Statement."""
    payload = json.dumps(bundle.statement(feed)).encode()
    return dsse.sign(bundle.PAYLOAD_TYPE, payload, key, key_id(key))


def endorsement(
    endorser: str,
    index: int,
    payload_sha256: str,
    assurance: str,
    key: Ed25519PrivateKey,
    scope: str | None = None,
) -> dsse.Envelope:
    """An endorser's signed endorsement of the attestation at log ``index``."""
    claim: dict[str, Any] = {
        "endorser": endorser,
        "attestation": {"logIndex": index, "payloadSha256": payload_sha256},
        "assurance": assurance,
    }
    if scope:
        claim["scope"] = scope
    return dsse.sign(bundle.ENDORSEMENT_TYPE, json.dumps(claim).encode(), key, key_id(key))
