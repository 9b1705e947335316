"""Buyer searches through the client: every hit checked against the log before it is returned.

A hit is checked by its inclusion proof: the registry's checkpoint (signed with the log key of
the pinned trust root) must hold the hit's log entry, and that entry must be an attestation by
the supplier the hit names. The claims themselves are then verified from the hit's bundle
(:meth:`sqm.client.RegistryClient.bundle`), which proves what the feed says.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqm.trust import TrustError, merkle
from sqm.trust.bundle import TrustRoot
from sqm.trust.checkpoint import Checkpoint, open_note
from sqm.trust.errors import VerificationError


@dataclass(frozen=True)
class Match:
    """How a supplier met one condition: the range of its in-scope values."""

    where: str
    metric: str
    minimum: float | None
    maximum: float | None
    values: int
    unit: str | None


@dataclass(frozen=True)
class Hit:
    """One supplier whose latest attestation meets the search, proven in the log."""

    supplier: str
    name: str
    country: str | None
    verification: str
    log_index: int
    issued_at: str
    feed_sequence: int
    previous_index: int | None
    assurance: str
    bundle: str
    matches: tuple[Match, ...] = ()


@dataclass(frozen=True)
class SearchPage:
    """A page of hits, the checkpoint they were proven against, and the next page's cursor."""

    hits: tuple[Hit, ...]
    checkpoint: Checkpoint | None
    next_cursor: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"the proof holds malformed base64: {exc}") from exc


def check_page(answer: Mapping[str, Any], root: TrustRoot) -> SearchPage:
    """Verify a search answer's checkpoint and every hit's inclusion proof; the typed page."""
    try:
        stated = answer.get("checkpoint")
        checkpoint = None
        hits = []
        if stated is not None:
            checkpoint = open_note(str(stated["note"]), root.log_key)
            if checkpoint.origin != root.origin:
                raise VerificationError(f"the checkpoint is from {checkpoint.origin!r}")
        for item in answer["hits"]:
            index = int(item["logIndex"])
            proof = item.get("proof")
            if checkpoint is None or not isinstance(proof, Mapping):
                raise VerificationError(f"hit {item.get('supplier')!r} comes without a proof")
            if int(proof["treeSize"]) != checkpoint.size:
                raise VerificationError("a proof is not against the stated checkpoint")
            leaf = _b64(proof["leaf"])
            merkle.verify_inclusion(
                merkle.leaf_hash(leaf),
                index,
                checkpoint.size,
                [_b64(h) for h in proof["hashes"]],
                checkpoint.root,
            )
            entry = json.loads(leaf)
            if entry.get("kind") != "attestation" or entry.get("supplier") != item["supplier"]:
                raise VerificationError(
                    f"log entry {index} is not an attestation by {item['supplier']}"
                )
            if entry.get("previousIndex") != item.get("previousIndex"):
                raise VerificationError(f"log entry {index} names another previous entry")
            hits.append(
                Hit(
                    item["supplier"], item["name"], item.get("country"), item["verification"],
                    index, item["issuedAt"], int(item["feedSequence"]), item.get("previousIndex"),
                    item["assurance"], item["bundle"],
                    tuple(
                        Match(m["where"], m["metric"], m["min"], m["max"], int(m["values"]), m["unit"])
                        for m in item.get("matches", [])
                    ),
                )
            )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, VerificationError):
            raise
        raise TrustError(f"the search answer is malformed: {exc}") from exc
    return SearchPage(tuple(hits), checkpoint, answer.get("next"), dict(answer))
