"""The registry's RFC 3161 time-stamping service, open to anyone (RFC 3161 section 3.4)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, request

from sqm.registry.blueprints.common import fail
from sqm.trust import timestamp

blueprint = Blueprint("tsa", __name__)
QUERY = "application/timestamp-query"


@blueprint.post("/tsa")
def stamp() -> Any:
    if request.mimetype != QUERY:
        fail(415, "unsupported_media_type", f"send a TimeStampReq as {QUERY}")
    authority = current_app.extensions["sqm"]["keys"].authority
    # 64 random bits: serials must be unique per TSA (RFC 3161 2.4.2) without shared state.
    serial = secrets.randbits(63)
    body = timestamp.answer_request(request.get_data(), authority, datetime.now(UTC), serial)
    return Response(body, mimetype="application/timestamp-reply")
