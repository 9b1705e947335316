"""Canonical JSON (RFC 8785, JCS): the exact bytes that leaves and signatures commit to."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
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
    fast = _printable(raw)
    if fast is not None:
        value, _ = fast
        return _dumps(value if member is None else value[member])
    value = json.loads(raw)
    return canonical(value if member is None else value[member])


def loads_with_canonical(text: bytes, member: str) -> tuple[Any, bytes | None]:
    """``json.loads(text)``, and with it, when one parse gives both, the JCS bytes of its
    top-level object's ``member`` (None when the value is no object holding ``member``, or
    when only :func:`canonical_text` can tell them: call it then).

    Why: a submission needs both the parsed statement and its feed's JCS bytes; parsing the
    payload once saves a parse of the whole feed. The value is json.loads's exactly: the
    number hooks return what json.loads returns, except for an integral float literal
    (``1.0``), which they make an int; then the text is parsed again without them (by
    orjson: both give json.loads's value, see :func:`_printable`).
    ValueError for text that is not JSON, as json.loads."""
    fast = _printable(text)
    if fast is None:
        return json.loads(text), None
    value, floats_made_int = fast
    jcs = _dumps(value[member]) if isinstance(value, dict) and member in value else None
    return (_loads(text) if floats_made_int else value), jcs


def _loads(text: bytes) -> Any:
    """json.loads's value, by orjson when it takes the text (it refuses NaN, for one)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _printable(raw: bytes) -> tuple[Any, bool] | None:
    """The value of ``raw``, its numbers all ones that JCS prints as Python does, and whether
    an integral float literal became an int for that; None when the reference serialiser
    must print it. By orjson when no number needs the hooks, else with the hooks."""
    if _astral(raw) or b"\\ud" in raw or b"\\uD" in raw:
        return None
    if raw.lstrip()[:1] in (b"{", b"[") and _NUMBER_TO_CHECK.search(raw) is None:
        # No literal the hooks could change or refuse (see _NUMBER_TO_CHECK): orjson parses
        # to json.loads's value, five times as fast; it refuses what json.loads takes
        # beyond RFC 8259 (NaN, for one), which the hooked parse then judges.
        try:
            return orjson.loads(raw), False
        except orjson.JSONDecodeError:
            pass
    made_int = False

    def number(literal: str) -> int | float:
        nonlocal made_int
        value = _number(literal)
        made_int = made_int or isinstance(value, int)
        return value

    try:
        value = json.loads(raw, parse_int=_integer, parse_float=number, parse_constant=_constant)
    except _NeedsReferenceError:
        return None
    return value, made_int


def _dumps(value: Any) -> bytes:
    """A value from :func:`_printable`, printed: its JCS bytes.

    orjson prints these exactly as ``json.dumps(sort_keys=True, ensure_ascii=False)`` does
    (the same escapes; floats in the hooks' range as Python's shortest repr; keys sorted by
    code point), in a fifth of the time; it refuses nesting beyond 255 levels, which the
    standard encoder prints."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# The number literals whose value the hooks might change (an integral fraction: "1.0";
# enough digits to round to an integer or to exceed 2^53) or refuse (an exponent; below
# 1e-4): in a value's place, after "[", "," or ":" (a document that is one number takes the
# hooked parse). Text in strings can match too: it only costs the hooked parse.
_NUMBER_TO_CHECK = re.compile(
    rb"[:\[,]\s*-?(?:[0-9]+(?:\.[0-9]+)?[eE]|[0-9]+\.0+(?![0-9])|[0-9][0-9.]{15}|0\.000)"
)
# A four-byte sequence's lead byte, or a surrogate encoded as UTF-8 (which json.loads takes
# from bytes, and no encoder can print as UTF-8: JCS refuses it).
_BEYOND_THE_FAST_PATH = re.compile(rb"[\xf0-\xff]|\xed[\xa0-\xbf]")


def _astral(raw: bytes) -> bool:
    """Whether UTF-8 ``raw`` holds a four-byte sequence (a character beyond the BMP) or an
    encoded surrogate; text in another encoding (UTF-16 or UTF-32: NUL bytes) is left to the
    reference path too."""
    if raw.isascii():
        return b"\x00" in raw
    return _BEYOND_THE_FAST_PATH.search(raw) is not None or b"\x00" in raw
