"""What the registry computes for one attestation besides storage, as the ingest benchmark's
compute ceiling measures it and as its compute-only server (``compute_server``) serves it:
one function for both, so that the floor and the ceiling are the same work."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sqm.trust import bundle, dsse
from sqm.trust.canonical import canonical_text
from sqm.validator import Severity, validate


def server_compute(
    body: bytes, keys: Mapping[str, Ed25519PublicKey], now: datetime
) -> tuple[list[float], list[Any]]:
    """What ``Ingest.attest`` (``registry/ingest.py``: ``attest``, ``_verify_signature``,
    ``_check_feed``) computes for one attestation besides storage, with the same library
    calls: its stage times (decode, verify, validate, subject check) and its errors.
    ``keys``: the suppliers' public keys by key id, as the registry looks them up."""
    start = time.perf_counter()
    envelope = dsse.Envelope.from_json(json.loads(body))  # Flask's get_json, then the envelope
    statement = json.loads(envelope.payload)
    feed = statement["predicate"]
    decoded = time.perf_counter()
    dsse.verify(envelope, {s.keyid: keys[s.keyid] for s in envelope.signatures if s.keyid in keys})
    verified = time.perf_counter()
    result = validate(feed, now=now)
    errors: list[Any] = [f for f in result.findings if f.severity is Severity.ERROR]
    validated = time.perf_counter()
    if statement != bundle.statement(feed, canonical_text(envelope.payload, "predicate")):
        errors.append("the statement's subject does not name the feed's digest")
    checked = time.perf_counter()
    return [decoded - start, verified - decoded, validated - verified, checked - validated], errors
