"""Canonical JSON (RFC 8785, JCS): the exact bytes that leaves and signatures commit to."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from sqm.trust.errors import TrustError

MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493 2.2), which JCS requires


def _plain(value: Any) -> bool:
    """Whether ``json.dumps`` with sorted keys writes exactly the JCS bytes of ``value``.

    It does when every float prints the same in Python and ECMAScript (finite, not integral,
    no exponent: both then give the shortest round-trip digits, RFC 8785 3.2.2.3), every
    integer is within I-JSON, and every key is ASCII (so code-point order is UTF-16 order,
    3.2.3). String escaping is the same in both (3.2.2.2).
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if kind is float:
            text = repr(item)
            if "e" in text or "n" in text or item.is_integer():  # exponent, nan, inf, 1.0
                return False
            continue
        if kind is dict:
            for key, child in item.items():
                if type(key) is not str or not key.isascii():
                    return False
                stack.append(child)
            continue
        if kind is list:
            stack.extend(item)
            continue
        return False
    return True


def canonical(value: Any) -> bytes:
    """The JCS serialisation of a JSON value; TrustError for values JCS cannot carry
    (integers beyond 2^53, NaN, non-string keys): carry such values as strings."""
    # rfc8785 is the reference; the standard library's C encoder gives the same bytes ten
    # times faster for the values that _plain admits, which are nearly all feeds.
    if _plain(value):
        try:
            return json.dumps(
                value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let the reference decide
            pass
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise TrustError(f"value has no canonical JSON form: {exc}") from exc
