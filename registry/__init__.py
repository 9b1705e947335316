"""The SQM public registry: signed attestations, RFC 3161 timestamps and a Merkle log.

Built so far: the transparency log over SQLite or PostgreSQL (:mod:`sqm.registry.log`),
supplier registration and attestation ingest (:mod:`sqm.registry.ingest`), seeding with the
examples, and :func:`create_app` serving them over HTTP with an RFC 3161 TSA.
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Flask is imported only by those who build the app, not by `sqm validate`.
    if name == "create_app":
        from sqm.registry.app import create_app

        return create_app
    raise AttributeError(name)
