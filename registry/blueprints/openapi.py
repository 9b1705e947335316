"""The API's own description, OpenAPI 3.1."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from sqm.registry.openapi import document

blueprint = Blueprint("openapi", __name__)


@blueprint.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI 3.1 document of /api/v1."""
    return jsonify(document())
