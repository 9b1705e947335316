"""Suppliers and attestations as resources: JSON for programs, and the standard's JSON-LD or
Turtle by content negotiation (``Accept``) for the semantic web."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from sqm.registry.blueprints.common import fail
from sqm.registry.facts import catalogue
from sqm.registry.profiles import Profiles
from sqm.registry.query import QueryError, instant
from sqm.schema.rdf import to_graph, typed_jsonld

blueprint = Blueprint("resources", __name__)
JSON, JSONLD, TURTLE = "application/json", "application/ld+json", "text/turtle"
OFFERED = (JSON, JSONLD, TURTLE)


def _profiles() -> Profiles:
    profiles: Profiles = current_app.extensions["sqm"]["profiles"]
    return profiles


def _negotiated() -> str:
    if not request.accept_mimetypes or request.accept_mimetypes.best == "*/*":
        return JSON
    chosen = request.accept_mimetypes.best_match(OFFERED)
    if chosen is None:
        fail(406, "not_acceptable", f"this resource is available as {', '.join(OFFERED)}")
    return str(chosen)


def _as_of() -> datetime | None:
    raw = request.args.get("as_of")
    if raw is None:
        return None
    try:
        return instant(raw, "as_of")
    except QueryError as error:
        fail(400, error.code, error.message)


def _rdf(feed: dict[str, Any], mimetype: str, link: str) -> Response:
    if mimetype == JSONLD:
        body = json.dumps(typed_jsonld(feed), ensure_ascii=False)
    else:
        body = to_graph(feed).serialize(format="turtle")
    response = Response(body, mimetype=mimetype)
    response.headers["Link"] = f'<{link}>; rel="describedby"'
    response.headers["Vary"] = "Accept"
    return response


@blueprint.get("/suppliers/<supplier>")
def supplier(supplier: str) -> Any:
    """A supplier's quality profile (as of ``as_of``); its latest feed as JSON-LD or Turtle."""
    mimetype = _negotiated()
    as_of = _as_of()
    profile = _profiles().supplier(supplier, as_of)
    if profile is None:
        fail(404, "no_such_supplier", f"no registered supplier {supplier!r}")
    if mimetype == JSON:
        response = jsonify(profile)
        response.headers["Vary"] = "Accept"
        return response
    latest = profile["latest"]
    if latest is None:
        fail(404, "no_attestation", f"{supplier} has not published a feed yet")
    feed = _profiles().feed(latest["logIndex"])
    assert feed is not None
    return _rdf(feed, mimetype, latest["bundle"])


@blueprint.get("/suppliers/<supplier>/history")
def history(supplier: str) -> Any:
    """The supplier's attestations, newest first, each naming the one before it."""
    if _profiles().supplier(supplier) is None:
        fail(404, "no_such_supplier", f"no registered supplier {supplier!r}")
    return jsonify({"supplier": supplier, "history": _profiles().history(supplier, _as_of())})


@blueprint.get("/suppliers/<supplier>/trend")
def trend(supplier: str) -> Any:
    """Values of up to 6 metrics over the supplier's attestations, oldest first."""
    metrics = request.args.getlist("metric")
    known = catalogue()
    if not metrics or len(metrics) > 6 or any(m not in known for m in metrics):
        fail(
            400,
            "invalid_parameter",
            "give 1 to 6 metric parameters, each a metric of /api/v1/metrics",
        )
    if _profiles().supplier(supplier) is None:
        fail(404, "no_such_supplier", f"no registered supplier {supplier!r}")
    return jsonify({"supplier": supplier, "series": _profiles().trend(supplier, metrics)})


@blueprint.get("/attestations/<int:index>")
def attestation(index: int) -> Any:
    """An attestation: what the log says about it and its feed; JSON-LD or Turtle of the feed."""
    mimetype = _negotiated()
    summary = _profiles().attestation_summary(index)
    feed = _profiles().feed(index)
    if summary is None or feed is None:
        fail(404, "no_such_attestation", f"no attestation at log index {index}")
    if mimetype != JSON:
        return _rdf(feed, mimetype, summary["bundle"])
    response = jsonify({**summary, "feed": feed})
    response.headers["Vary"] = "Accept"
    return response
