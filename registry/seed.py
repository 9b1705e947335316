"""Seeding a new registry with the example feeds, registered, signed and logged for real.

Each example supplier gets its own Ed25519 key (kept in ``<data>/seed-keys``); its feed is
submitted through the same ingest path as any other, as of one hour after the feed's issue
time, so that a new user has real, verifiable entries to look at.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sqm.client import requests
from sqm.registry.errors import RegistryError
from sqm.registry.ingest import Ingest, RejectionError, supplier_id

FEED_SUFFIXES = (".json", ".yaml", ".yml")


def supplier_key(folder: Path, name: str) -> Ed25519PrivateKey:
    """The key the seed signs for supplier ``name`` with, kept in ``folder`` (made once)."""
    path = folder / f"{name.replace(':', '_')}.key"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise RegistryError(f"{path} is not an Ed25519 key")
        return key
    key = Ed25519PrivateKey.generate()
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def seed(ingest: Ingest, examples: Path, key_folder: Path) -> list[dict[str, Any]]:
    """Register and attest every example feed not in the log yet; what was logged."""
    key_folder.mkdir(parents=True, exist_ok=True)
    logged = []
    clock = ingest.now
    try:
        for path in sorted(examples.iterdir()):
            if path.suffix not in FEED_SUFFIXES:
                continue
            text = path.read_text(encoding="utf-8")
            feed = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            organization = feed["header"]["supplier"]
            identity = supplier_id(organization)
            key = supplier_key(key_folder, identity)
            issued = datetime.fromisoformat(feed["header"]["issued_at"])
            ingest.now = lambda at=issued: at + timedelta(hours=1)
            try:
                ingest.register_supplier(requests.registration(organization, key))
            except RejectionError as error:
                if error.code not in ("key_already_registered", "supplier_exists"):
                    raise
            envelope = requests.attestation(feed, key)
            status, answer = ingest.attest(envelope.to_json())
            index = answer["logIndex"] if status == 201 else answer["bundle"]["logIndex"]
            logged.append(
                {"feed": path.name, "supplier": identity, "logIndex": index, "new": status == 201}
            )
    finally:
        ingest.now = clock
    return logged
