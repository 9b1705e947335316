"""What the blueprints share: the log of the current app and JSON errors."""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

import orjson
from flask import Response, abort, current_app, jsonify, make_response, request

from sqm.registry.log import TransparencyLog
from sqm.trust.canonical import DuplicateMemberError, unique_members

# A \uXXXX escape of a surrogate: paired ones are JSON's way to write characters beyond the
# BMP; an unpaired one is text no UTF-8 database or encoder takes.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def the_log() -> TransparencyLog:
    log: TransparencyLog = current_app.extensions["sqm"]["log"]
    return log


def json_answer(value: Any, status: int = 200) -> Response:
    """``jsonify(value)`` with ``status``, for large answers such as bundles: the same JSON
    (keys sorted, compact, a final newline) by orjson, which took 1.5 µs where Flask's
    ``json.dumps`` took 54 for a 34 kB bundle. Non-ASCII text comes out as UTF-8 rather than
    escaped. What orjson refuses (integers beyond 64 bits) goes to Flask's JSON."""
    try:
        body = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return make_response(jsonify(value), status)
    return current_app.response_class(body, status, mimetype="application/json")


def fail(status: int, code: str, message: str) -> NoReturn:
    """Stop with a JSON error: a stable code and a message that says how to fix the request."""
    response = make_response(jsonify({"error": code, "message": message}), status)
    abort(response)


def integer_arg(args: Any, name: str, minimum: int = 0) -> int:
    raw = args.get(name)
    if raw is None:
        fail(400, "missing_parameter", f"the query parameter {name!r} is required")
    # isascii too: str.isdigit admits "²", which int() refuses; 19 digits bound int()'s work.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) < minimum:
        fail(
            400,
            "invalid_parameter",
            f"{name} must be a whole number from {minimum} to 9999999999999999999 in ASCII "
            f"digits, got {raw[:40]!r}",
        )
    return int(raw)


def json_body() -> Any:
    """The request's body as JSON, read strictly: UTF-8 (RFC 8259 section 8.1), no member named
    twice, no NaN or Infinity, no unpaired surrogate (I-JSON, RFC 7493 section 2). Otherwise a
    400 ``malformed_json`` that says what is wrong and where."""
    if not request.is_json:
        fail(
            400,
            "malformed_json",
            f"send the body as JSON with Content-Type: application/json (got "
            f"{request.mimetype or 'no Content-Type'})",
        )
    raw = request.get_data(cache=True)
    try:
        # utf-8-sig: a parser MAY ignore a byte order mark (RFC 8259 section 8.1), and some
        # clients (PowerShell, .NET) send one.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        fail(
            400,
            "malformed_json",
            f"the body is not UTF-8 text, which JSON between systems must be (RFC 8259 section "
            f"8.1): byte {exc.start} is {raw[exc.start : exc.start + 1]!r}",
        )
    try:
        value = json.loads(text, object_pairs_hook=unique_members, parse_constant=_no_constant)
    except DuplicateMemberError as exc:
        fail(400, "malformed_json", f"the body is ambiguous JSON: {exc} (RFC 7493 section 2.3)")
    except ValueError as exc:  # json.JSONDecodeError names the line and column
        fail(400, "malformed_json", f"the body is not JSON: {exc}")
    except RecursionError:
        fail(400, "malformed_json", "the body nests arrays or objects too deeply to read")
    if _ESCAPED_SURROGATE.search(text) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            fail(
                400,
                "malformed_json",
                f"the body holds an unpaired surrogate ({exc.object[exc.start : exc.end]!r}), "
                "which is no Unicode text (RFC 7493 section 2.1)",
            )
    return value


def _no_constant(literal: str) -> Any:
    raise ValueError(f"{literal} is not a JSON number (RFC 8259 section 6)")
