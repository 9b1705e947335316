"""Operator endpoints: authenticated by the operator token from the configuration."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import update

from sqm.registry.blueprints.common import fail
from sqm.registry.db import suppliers

blueprint = Blueprint("operator", __name__)
STATUSES = ("unverified", "verified", "suspended")


def _authorise() -> None:
    token = current_app.extensions["sqm"]["config"].operator_token
    given = request.headers.get("Authorization", "")
    if not token:
        fail(403, "operator_api_disabled", "no operator token is configured on this registry")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        fail(401, "unauthorised", "send the operator token as 'Authorization: Bearer <token>'")


@blueprint.put("/operator/suppliers/<supplier>/verification")
def set_verification(supplier: str) -> Any:
    """Set a supplier identity's verification status (unverified, verified, suspended)."""
    _authorise()
    body = request.get_json(silent=True)
    status = body.get("status") if isinstance(body, dict) else None
    if status not in STATUSES:
        fail(400, "invalid_status", f"status must be one of {', '.join(STATUSES)}")
    engine = current_app.extensions["sqm"]["log"].engine
    with engine.begin() as connection:
        changed = connection.execute(
            update(suppliers).where(suppliers.c.id == supplier).values(verification=status)
        ).rowcount
    if not changed:
        fail(404, "no_such_supplier", f"no supplier {supplier!r}")
    return jsonify({"supplier": supplier, "verification": status})
