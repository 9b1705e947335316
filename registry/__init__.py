"""The SQM public registry: signed attestations, RFC 3161 timestamps and a Merkle log.

Not built yet; see the project's open issues. Nothing here is importable API.
"""
