"""What the blueprints share: the log of the current app and JSON errors."""

from __future__ import annotations

from typing import Any, NoReturn

from flask import abort, current_app, jsonify, make_response

from sqm.registry.log import TransparencyLog


def the_log() -> TransparencyLog:
    log: TransparencyLog = current_app.extensions["sqm"]["log"]
    return log


def fail(status: int, code: str, message: str) -> NoReturn:
    """Stop with a JSON error: a stable code and a message that says how to fix the request."""
    response = make_response(jsonify({"error": code, "message": message}), status)
    abort(response)


def integer_arg(args: Any, name: str, minimum: int = 0) -> int:
    raw = args.get(name)
    if raw is None:
        fail(400, "missing_parameter", f"the query parameter {name!r} is required")
    if not raw.isdigit() or int(raw) < minimum:
        fail(400, "invalid_parameter", f"{name} must be an integer >= {minimum}, got {raw!r}")
    return int(raw)
