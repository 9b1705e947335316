"""Search for AI buyers: suppliers by metric thresholds and more, every hit verifiable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from sqm.registry.facts import catalogue
from sqm.registry.query import QueryError, parse
from sqm.registry.search import SupplierSearch

blueprint = Blueprint("search", __name__)


@blueprint.get("/search/suppliers")
def search_suppliers() -> Any:
    """Suppliers whose latest feed (or latest as of a date) meets every filter."""
    search: SupplierSearch = current_app.extensions["sqm"]["search"]
    now = datetime.now(UTC)
    try:
        query = parse(request.args.to_dict(flat=False), now)
    except QueryError as error:
        return jsonify({"error": error.code, "message": error.message}), error.status
    return jsonify(search.run(query, now))


@blueprint.get("/metrics")
def metrics() -> Any:
    """Every metric a search may name: section, whether it takes a unit, what it means."""
    return jsonify(
        {
            "metrics": [
                {
                    "name": metric.name,
                    "section": metric.section,
                    "unitBearing": metric.unit_bearing,
                    "description": metric.description,
                }
                for metric in catalogue().values()
            ]
        }
    )
