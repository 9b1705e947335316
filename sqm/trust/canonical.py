"""Canonical JSON (RFC 8785, JCS): the exact bytes that leaves and signatures commit to."""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

from sqm.trust.errors import TrustError

# RFC 8785 §3.2.2.3: JSON numbers are IEEE 754 doubles; integers beyond 2^53 lose precision.
_SAFE_INTEGER = 2**53 - 1


def canonical(value: Any) -> bytes:
    """The JCS serialisation of a JSON value; TrustError for values JCS cannot carry
    (integers beyond 2^53, NaN, non-string keys): carry such values as strings."""
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise TrustError(f"value has no canonical JSON form: {exc}") from exc


class _NeedsReferenceError(Exception):
    """The text holds a value whose JCS form needs the reference serialiser."""


def _integer(literal: str) -> int:
    value = int(literal)
    if abs(value) > _SAFE_INTEGER:
        raise _NeedsReferenceError
    return value


def _number(literal: str) -> int | float:
    value = float(literal)
    if value.is_integer() and abs(value) <= _SAFE_INTEGER:
        # ECMAScript prints an integral double with no fraction or exponent, exactly while
        # it is below 2^53 (RFC 8785 §3.2.2.3): as Python prints the equal int. Beyond, it
        # prints the shortest digits padded with zeros.
        return int(value)
    if not value.is_integer() and 1e-4 <= abs(value) < 1e16:
        # Here both Python's repr and ECMAScript's Number::toString print the shortest
        # round-tripping digits in positional notation; outside it their exponent forms differ.
        return value
    raise _NeedsReferenceError


def _constant(literal: str) -> Any:
    raise _NeedsReferenceError  # NaN and Infinity: no JSON value, the reference serialiser refuses them


def canonical_text(text: bytes | str, member: str | None = None) -> bytes:
    """The JCS bytes of the JSON value in ``text`` (of its top-level object's ``member`` when
    given): exactly ``canonical(json.loads(text)[member])``, mostly computed by the C encoder.

    Why hand-written: rfc8785 walks the value in Python, which made the subject digest of a
    submitted feed cost more than validating it. Parsing with number hooks yields a value that
    ``json.dumps(sort_keys=True, ensure_ascii=False)`` prints exactly as JCS does: its string
    escapes are JCS's (§3.2.2.2), code-point key order equals JCS's UTF-16 order for keys
    within the BMP (§3.2.3), and the hooks keep only numbers that print alike (§3.2.2.3).
    Text with characters beyond the BMP or escaped surrogates, and numbers outside that
    range, take the reference path. ValueError for text that is not JSON; TrustError for
    values JCS cannot carry; KeyError or TypeError when ``member`` is missing.
    """
    raw = text.encode() if isinstance(text, str) else text
    if not (_astral(raw) or b"\\ud" in raw or b"\\uD" in raw):
        try:
            value = json.loads(
                raw, parse_int=_integer, parse_float=_number, parse_constant=_constant
            )
        except _NeedsReferenceError:
            pass
        else:
            chosen = value if member is None else value[member]
            return json.dumps(
                chosen, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
    value = json.loads(raw)
    return canonical(value if member is None else value[member])


_FOUR_BYTE_LEAD = re.compile(rb"[\xf0-\xff]")


def _astral(raw: bytes) -> bool:
    """Whether UTF-8 ``raw`` holds a four-byte sequence (a character beyond the BMP); text in
    another encoding (UTF-16 or UTF-32: NUL bytes) is left to the reference path too."""
    if raw.isascii():
        return b"\x00" in raw
    return _FOUR_BYTE_LEAD.search(raw) is not None or b"\x00" in raw
