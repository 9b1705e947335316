"""Canonical JSON (RFC 8785, JCS): the exact bytes that leaves and signatures commit to."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import orjson
import rfc8785

from sqm.trust.errors import TrustError

# RFC 8785 §3.2.2.3: JSON numbers are IEEE 754 doubles; integers beyond 2^53 lose precision.
_SAFE_INTEGER = 2**53 - 1


def canonical(value: Any) -> bytes:
    """The JCS serialisation of a JSON value; TrustError for values JCS cannot carry
    (integers beyond 2^53, NaN, non-string keys): carry such values as strings.

    Exactly rfc8785's bytes, mostly printed by orjson: a value made only of dicts, lists,
    strings, numbers that Python prints as JCS does, booleans and None, whose printed form
    holds no character beyond the BMP (which JCS orders by UTF-16 code units), is printed
    in C; anything else by the reference serialiser. Why: rfc8785 walks the value in Python,
    and every log entry's leaf is printed so, one of them under the log's write lock."""
    try:
        printed = orjson.dumps(_for_jcs(value, strict=True), option=orjson.OPT_SORT_KEYS)
    except (_NeedsReferenceError, orjson.JSONEncodeError, RecursionError):
        pass  # types beyond JSON's, surrogates, non-string keys, deep nesting: the reference
    else:
        if not _astral(printed):
            return printed
    return _reference(value)


def _reference(value: Any) -> bytes:
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
    return _printed_as_python(float(literal))


def _printed_as_python(value: float) -> int | float:
    """``value`` as a number Python prints as JCS does (an integral one as an int);
    _NeedsReferenceError when none does."""
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


class DuplicateMemberError(ValueError):
    """JSON text with an object that names a member twice. RFC 8259 section 4 leaves the
    meaning to each parser (most keep the last, some the first, some refuse), and I-JSON
    (RFC 7493 section 2.3), which JCS requires of its input (RFC 8785 section 3.1), forbids it:
    two readers of a signed payload could see two different feeds."""


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads`` that refuses a member named twice."""
    made = dict(pairs)
    if len(made) != len(pairs):
        seen: set[str] = set()
        name = next(n for n, _ in pairs if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise DuplicateMemberError(f"an object names the member {name[:80]!r} twice")
    return made


class StrictJSONError(ValueError):
    """Bytes that are not I-JSON (RFC 7493): the message says what is wrong and where, as the
    end of a sentence that begins with what was read ("the body ...")."""


# A \uXXXX escape of a surrogate: paired ones are JSON's way to write characters beyond the
# BMP; an unpaired one is text no UTF-8 database or encoder takes.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def strict_loads(raw: bytes) -> Any:
    """JSON read as I-JSON (RFC 7493 section 2): UTF-8 (a leading byte order mark ignored, as
    RFC 8259 section 8.1 allows), no member named twice, no NaN or Infinity, no unpaired
    surrogate. StrictJSONError otherwise."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StrictJSONError(
            f"is not UTF-8 text, which JSON between systems must be (RFC 8259 section 8.1): "
            f"byte {exc.start} is {raw[exc.start : exc.start + 1]!r}"
        ) from None
    try:
        value = json.loads(text, object_pairs_hook=unique_members, parse_constant=_no_constant)
    except DuplicateMemberError as exc:
        raise StrictJSONError(f"is ambiguous JSON: {exc} (RFC 7493 section 2.3)") from None
    except RecursionError:
        raise StrictJSONError("nests arrays or objects too deeply to read") from None
    except ValueError as exc:  # json.JSONDecodeError names the line and column
        raise StrictJSONError(f"is not JSON: {json_error(exc)}") from None
    if _ESCAPED_SURROGATE.search(text) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StrictJSONError(
                f"holds an unpaired surrogate ({exc.object[exc.start : exc.end]!r}), which is "
                "no Unicode text (RFC 7493 section 2.1)"
            ) from None
    return value


def json_error(exc: ValueError) -> str:
    """What json.loads's ``exc`` says, in words for whoever sent the text: Python's refusal of
    an integer of thousands of digits (a guard against slow conversion) advises a setting of
    the reader's own, which means nothing to a client."""
    if "integer string conversion" in str(exc):
        return (
            f"a number holds more than {sys.get_int_max_str_digits()} digits; no reader keeps "
            "such a number exact (I-JSON, RFC 7493 section 2.2, keeps integers within 2^53): "
            "carry it as a string"
        )
    return str(exc)


def _no_constant(literal: str) -> Any:
    raise ValueError(f"{literal} is not a JSON number (RFC 8259 section 6)")


# A member name's closing quote with white space before its colon, which the count below
# would miss.
_SPACED_COLON = re.compile(rb'"[ \t\n\r]+:')


def _check_unique(raw: bytes, members: int) -> None:
    """Raise DuplicateMemberError when ``raw``, parsed by orjson (which keeps the last of
    duplicates) into objects of ``members`` members in all, names a member twice.

    Why not a hook on every object: it cost 2.5 times orjson's parse of a feed. Each member
    name ends in a quote straight followed by a colon (unless white space separates them,
    which sends the text to the exact check), and a quote followed by a colon elsewhere is
    inside a string or opens one: so this count is at least the number of names in the
    text, which is at least ``members``; equal, no name repeats. Otherwise the exact check."""
    if _SPACED_COLON.search(raw) is None and raw.count(b'":') == members:
        return
    json.loads(raw, object_pairs_hook=unique_members)


def canonical_text(text: bytes | str, member: str | None = None) -> bytes:
    """The JCS bytes of the JSON value in ``text`` (of its top-level object's ``member`` when
    given): exactly ``canonical(json.loads(text)[member])``, mostly computed in C.

    Why hand-written: rfc8785 walks the value in Python, which made the subject digest of a
    submitted feed cost more than validating it. orjson parses to json.loads's value; one walk
    over its numbers then makes a copy that ``json.dumps(sort_keys=True, ensure_ascii=False)``
    prints exactly as JCS does: its string escapes are JCS's (§3.2.2.2), code-point key order
    equals JCS's UTF-16 order for keys within the BMP (§3.2.3), and the walk keeps only
    numbers that print alike (§3.2.2.3). Text with characters beyond the BMP or escaped
    surrogates, and numbers outside that range, take the reference path. ValueError for text
    that is not JSON (DuplicateMemberError for an object that names a member twice, which
    I-JSON forbids); TrustError for values JCS cannot carry; KeyError or TypeError when
    ``member`` is missing.
    """
    raw = text.encode() if isinstance(text, str) else text
    fast = _printable(raw)
    if fast is not None:
        _, printable = fast
        return _dumps(printable if member is None else printable[member])
    value = json.loads(raw, object_pairs_hook=unique_members)
    return _reference(value if member is None else value[member])


def loads_with_canonical(text: bytes, member: str) -> tuple[Any, bytes | None]:
    """``json.loads(text)``, and with it, when one parse gives both, the JCS bytes of its
    top-level object's ``member`` (None when the value is no object holding ``member``, or
    when only :func:`canonical_text` can tell them: call it then).

    Why: a submission needs both the parsed statement and its feed's JCS bytes; parsing the
    payload once saves a parse of the whole feed. The value is json.loads's exactly (an
    integral float stays a float; only the printed copy holds the int that JCS prints).
    ValueError for text that is not JSON, as json.loads, and DuplicateMemberError (a
    ValueError) for an object that names a member twice."""
    fast = _printable(text)
    if fast is None:
        return json.loads(text, object_pairs_hook=unique_members), None
    value, printable = fast
    jcs = _dumps(printable[member]) if isinstance(value, dict) and member in value else None
    return value, jcs


def _printable(raw: bytes) -> tuple[Any, Any] | None:
    """The value of ``raw`` as json.loads gives it, and a copy whose numbers all print as JCS
    prints them (see :func:`_for_jcs`); None when the reference serialiser must print it."""
    if _astral(raw) or b"\\ud" in raw or b"\\uD" in raw:
        return None
    try:
        # orjson parses to json.loads's value, twice as fast; it refuses what json.loads
        # takes beyond RFC 8259 (NaN, for one), which the hooked parse then judges. Integers
        # beyond 64 bits it reads as floats: beyond 2^53, the walk leaves those to the
        # reference path, which parses again.
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        members = [0]
        try:
            printable = _for_jcs(value, members=members)
        except _NeedsReferenceError:
            return None
        _check_unique(raw, members[0])
        return value, printable
    made_int = False

    def number(literal: str) -> int | float:
        nonlocal made_int
        value = _number(literal)
        made_int = made_int or isinstance(value, int)
        return value

    try:
        hooked = json.loads(
            raw,
            parse_int=_integer,
            parse_float=number,
            parse_constant=_constant,
            object_pairs_hook=unique_members,
        )
    except _NeedsReferenceError:
        return None
    return (json.loads(raw) if made_int else hooked), hooked


def _for_jcs(value: Any, strict: bool = False, members: list[int] | None = None) -> Any:
    """``value``, or a copy of it whose integral floats are ints (as :func:`_number` makes
    them); parts that hold no such float are shared, not copied. _NeedsReferenceError for a
    number whose JCS form Python does not print, and when ``strict``, for any type but
    JSON's (a tuple, a subclass of str, a datetime), which only the reference may judge.

    Why a walk after orjson rather than json.loads's number hooks: the hooks call Python for
    every number literal, which made the one parse of a typical feed three times orjson's
    parse and this walk together. ``members``: its one item counts the members of every
    object walked."""
    kind = type(value)
    if kind is dict or kind is list:
        if members is not None and kind is dict:
            members[0] += len(value)
        copied = None
        for place, item in value.items() if kind is dict else enumerate(value):
            if type(item) in _ATOMS:
                continue
            printed = _for_jcs(item, strict, members)
            if printed is not item:
                if copied is None:
                    copied = kind(value)  # a shallow copy: what it shares stays unchanged
                copied[place] = printed
        return value if copied is None else copied
    if kind is float:
        return _printed_as_python(value)
    if kind is int:
        if abs(value) > _SAFE_INTEGER:
            raise _NeedsReferenceError
        return value
    if strict and kind not in _ATOMS:
        raise _NeedsReferenceError
    return value


_ATOMS = frozenset({str, bool, type(None)})


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
