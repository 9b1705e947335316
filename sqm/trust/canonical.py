"""Canonical JSON (RFC 8785, JCS): the exact bytes that leaves and signatures commit to."""

from __future__ import annotations

from typing import Any

import rfc8785

from sqm.trust.errors import TrustError


def canonical(value: Any) -> bytes:
    """The JCS serialisation of a JSON value; TrustError for values JCS cannot carry
    (integers beyond 2^53, NaN, non-string keys): carry such values as strings."""
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise TrustError(f"value has no canonical JSON form: {exc}") from exc
