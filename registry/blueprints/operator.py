"""Operator endpoints: authenticated by the operator token from the configuration."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from sqm.registry.blueprints.common import bearer, fail, json_body
from sqm.registry.ingest import RejectionError

blueprint = Blueprint("operator", __name__)


def _authorise() -> None:
    token = current_app.extensions["sqm"]["config"].operator_token
    given = request.headers.get("Authorization", "")
    if not token:
        fail(403, "operator_api_disabled", "no operator token is configured on this registry")
    if not bearer(given, token):
        fail(401, "unauthorised", "send the operator token as 'Authorization: Bearer <token>'")


@blueprint.put("/operator/suppliers/<supplier>/verification")
def set_verification(supplier: str) -> Any:
    """Set a supplier identity's verification status (unverified, verified, suspended): a log
    entry, like every identity and key event."""
    _authorise()
    body = json_body()
    if not isinstance(body, dict):
        fail(400, "malformed_request", 'send {"status": "unverified" | "verified" | "suspended"}')
    status = body.get("status")
    ingest = current_app.extensions["sqm"]["ingest"]
    try:
        return jsonify(ingest.set_verification(supplier, status))
    except RejectionError as refusal:
        fail(refusal.status, refusal.code, refusal.message)
