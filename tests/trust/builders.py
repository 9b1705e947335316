"""Builds a complete, real bundle with the trust core, as the registry will."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sqm.trust import bundle, dsse, merkle, timestamp
from sqm.trust.checkpoint import Checkpoint, NoteVerifier, sign
from tests.conftest import EXAMPLES

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ORIGIN = "registry.sqm.example/log/2026"


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def build_bundle(
    feed: dict[str, Any] | None = None, revoked_at: str | None = None
) -> tuple[bundle.Bundle, bundle.TrustRoot]:
    """A real bundle of Kraftwerk's key signing ``feed`` (default: its example feed); with
    ``revoked_at``, the log also holds the key's revocation from then, written as given."""
    log_key, supplier_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    authority = timestamp.create_authority("SQM test", NOW - timedelta(days=30))[0]
    feed = feed or json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    supplier = "LEI:529900SQMKRAFTWERK41"
    public = raw_public(supplier_key)
    tree = merkle.MemoryTree()
    tree.append(b"an earlier entry")
    possession = supplier_key.sign(bundle.registration_message(supplier, public))
    key_leaf = bundle.key_leaf(supplier, public, "2026-11-01T00:00:00Z", possession)
    key_index = tree.append(key_leaf)
    payload = json.dumps(bundle.statement(feed)).encode()
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, supplier_key, bundle.key_id(public))
    leaf = bundle.attestation_leaf(supplier, envelope, None)
    index = tree.append(leaf)
    tree.append(b"a later entry")
    revocation_leaf = None
    if revoked_at is not None:
        revocation_leaf = bundle.revocation_leaf(
            supplier, bundle.key_id(public), revoked_at, "operator", b""
        )
        revocation_index = tree.append(revocation_leaf)
    size = tree.size
    note = sign(Checkpoint(ORIGIN, size, tree.root()), ORIGIN, log_key)
    token = timestamp.stamp(authority, note.encode(), NOW, 1)
    made_bundle = bundle.Bundle(
        envelope,
        bundle.Included(leaf, index, size, tuple(merkle.inclusion_proof(tree, index, size))),
        bundle.Included(
            key_leaf, key_index, size, tuple(merkle.inclusion_proof(tree, key_index, size))
        ),
        note,
        token,
        # Logged at the same checkpoint: the consistency proof between equal sizes is empty.
        bundle.LoggedAt(note, token, ()),
        None
        if revocation_leaf is None
        else bundle.Included(
            revocation_leaf,
            revocation_index,
            size,
            tuple(merkle.inclusion_proof(tree, revocation_index, size)),
        ),
    )
    root = bundle.TrustRoot(
        ORIGIN,
        NoteVerifier(ORIGIN, raw_public(log_key)),
        authority.ca_certificate,
        "2026-01-01T00:00:00Z",
    )
    return made_bundle, root


class GrowingLog:
    """A log that grows between bundles: Kraftwerk's key and one attestation, then whatever a
    test appends; :meth:`bundle` makes the attestation's bundle at the log's size then, with
    its logging checkpoint as the first that held it. For checks of a bundle held since."""

    def __init__(self, log_key: Ed25519PrivateKey | None = None) -> None:
        self.log_key = log_key or Ed25519PrivateKey.generate()
        self.authority = timestamp.create_authority("SQM test", NOW - timedelta(days=30))[0]
        self.supplier = "LEI:529900SQMKRAFTWERK41"
        self.supplier_key = Ed25519PrivateKey.generate()
        self.public = raw_public(self.supplier_key)
        self.tree = merkle.MemoryTree()
        self.leaves: list[bytes] = []
        self.append(b"an earlier entry")
        possession = self.supplier_key.sign(bundle.registration_message(self.supplier, self.public))
        self.key_leaf = bundle.key_leaf(
            self.supplier, self.public, "2026-11-01T00:00:00Z", possession
        )
        self.key_index = self.append(self.key_leaf)
        feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
        payload = json.dumps(bundle.statement(feed)).encode()
        self.envelope = dsse.sign(
            bundle.PAYLOAD_TYPE, payload, self.supplier_key, bundle.key_id(self.public)
        )
        self.leaf = bundle.attestation_leaf(self.supplier, self.envelope, None)
        self.index = self.append(self.leaf)
        self.logged_size = self.tree.size
        self.revocation: int | None = None
        self.clock = NOW  # each checkpoint is stamped a minute after the one before

    def append(self, leaf: bytes) -> int:
        self.leaves.append(leaf)
        return self.tree.append(leaf)

    def revoke(self, revoked_at: str) -> None:
        """Log a revocation of the key from ``revoked_at``."""
        leaf = bundle.revocation_leaf(
            self.supplier, bundle.key_id(self.public), revoked_at, "operator", b""
        )
        self.revocation = self.append(leaf)

    def _stamped(self, size: int) -> tuple[str, bytes]:
        note = sign(Checkpoint(ORIGIN, size, self.tree.root(size)), ORIGIN, self.log_key)
        self.clock += timedelta(minutes=1)
        return note, timestamp.stamp(self.authority, note.encode(), self.clock, size)

    def _included(self, index: int, size: int) -> bundle.Included:
        proof = tuple(merkle.inclusion_proof(self.tree, index, size))
        return bundle.Included(self.leaves[index], index, size, proof)

    def bundle(self) -> bundle.Bundle:
        size = self.tree.size
        logged_note, logged_token = self._stamped(self.logged_size)
        note, token = self._stamped(size)
        proof = tuple(merkle.consistency_proof(self.tree, self.logged_size, size))
        return bundle.Bundle(
            self.envelope,
            self._included(self.index, size),
            self._included(self.key_index, size),
            note,
            token,
            bundle.LoggedAt(logged_note, logged_token, proof),
            None if self.revocation is None else self._included(self.revocation, size),
        )

    def consistency(self, old: int, new: int) -> tuple[bytes, ...]:
        return tuple(merkle.consistency_proof(self.tree, old, new))

    def trust_root(self) -> bundle.TrustRoot:
        return bundle.TrustRoot(
            ORIGIN,
            NoteVerifier(ORIGIN, raw_public(self.log_key)),
            self.authority.ca_certificate,
            "2026-01-01T00:00:00Z",
        )


def build_endorsement_bundle(
    role: str | None = "endorser",
    endorser: str = "LEI:529900SQMCERTBODY123",
    holder: str = "LEI:529900SQMCERTBODY123",
    rotated_role: str | None = None,
) -> tuple[bundle.Bundle, bundle.TrustRoot]:
    """A real bundle of an endorsement of Kraftwerk's attestation, signed by a key registered
    for ``holder`` in the ``role`` its leaf records (None: a leaf that records none, as a
    registry's before 2026-12); the endorsement names ``endorser`` as given. With
    ``rotated_role``, the endorsement is signed by a key that first key rotated in, whose own
    leaf claims that role."""
    log = GrowingLog()
    key = Ed25519PrivateKey.generate()
    public = raw_public(key)
    possession = key.sign(bundle.registration_message(holder, public))
    organization = None if role is None else {"name": "Certa", "identifiers": []}
    key_index = log.append(
        bundle.key_leaf(
            holder, public, "2026-11-01T00:00:00Z", possession,
            organization=organization, role=role,
        )
    )  # fmt: skip
    chain: tuple[int, ...] = ()
    if rotated_role is not None:
        first_id, first = bundle.key_id(public), key
        key = Ed25519PrivateKey.generate()
        public = raw_public(key)
        rotation = first.sign(bundle.rotation_message(holder, bundle.key_id(public)))
        chain = (key_index,)
        key_index = log.append(
            bundle.key_leaf(
                holder, public, "2026-11-02T00:00:00Z",
                key.sign(bundle.registration_message(holder, public)), first_id, rotation,
                organization={"name": "Certa", "identifiers": []}, role=rotated_role,
            )
        )  # fmt: skip
    digest = json.loads(log.leaf)["payloadSha256"]
    claim = {
        "endorser": endorser,
        "attestation": {"logIndex": log.index, "payloadSha256": digest},
        "assurance": "third_party",
    }
    envelope = dsse.sign(
        bundle.ENDORSEMENT_TYPE, json.dumps(claim).encode(), key, bundle.key_id(public)
    )
    leaf = bundle.endorsement_leaf(endorser, log.index, digest, "third_party", envelope)
    index = log.append(leaf)
    log.logged_size = log.tree.size
    made = log.bundle()
    return (
        dataclasses.replace(
            made,
            envelope=envelope,
            attestation=log._included(index, log.tree.size),
            key=log._included(key_index, log.tree.size),
            endorsed=log._included(log.index, log.tree.size),
            key_chain=tuple(log._included(link, log.tree.size) for link in chain),
        ),
        log.trust_root(),
    )


def build_rotated_bundle(
    authorised_by: Ed25519PrivateKey | None = None,
) -> tuple[bundle.Bundle, bundle.TrustRoot]:
    """A real bundle of Kraftwerk's attestation signed by a rotated-in key, with its key chain
    (the identity's first key). ``authorised_by``: the key that signs the rotation (default:
    the first key, as the registry requires; another makes a forged rotation)."""
    log = GrowingLog()
    first_id = bundle.key_id(log.public)
    new_key = Ed25519PrivateKey.generate()
    public = raw_public(new_key)
    signer = authorised_by or log.supplier_key
    rotation = signer.sign(bundle.rotation_message(log.supplier, bundle.key_id(public)))
    possession = new_key.sign(bundle.registration_message(log.supplier, public))
    key_index = log.append(
        bundle.key_leaf(
            log.supplier, public, "2026-11-10T00:00:00Z", possession, first_id, rotation
        )
    )
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    payload = json.dumps(bundle.statement(feed)).encode()
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, new_key, bundle.key_id(public))
    index = log.append(bundle.attestation_leaf(log.supplier, envelope, log.index))
    log.logged_size = log.tree.size
    made = log.bundle()
    size = log.tree.size
    return (
        dataclasses.replace(
            made,
            envelope=envelope,
            attestation=log._included(index, size),
            key=log._included(key_index, size),
            key_chain=(log._included(log.key_index, size),),
        ),
        log.trust_root(),
    )
