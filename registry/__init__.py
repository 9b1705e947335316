"""The SQM public registry: signed attestations, RFC 3161 timestamps and a Merkle log.

Built so far: the transparency log over SQLite or PostgreSQL (:mod:`sqm.registry.log`). The
Flask application, supplier keys, ingest and the query API come next.
"""
