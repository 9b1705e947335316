"""The SQM public registry: signed attestations, RFC 3161 timestamps and a Merkle log.

Built so far: the transparency log over SQLite or PostgreSQL (:mod:`sqm.registry.log`), the
registry's own keys, and :func:`create_app` serving the log's checkpoint and proofs and an
RFC 3161 TSA. Supplier keys, ingest and the query API come next.
"""

from sqm.registry.app import create_app

__all__ = ["create_app"]
