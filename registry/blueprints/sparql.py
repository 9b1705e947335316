"""The read-only SPARQL 1.1 endpoint (SPARQL 1.1 Protocol, query operation only)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request

from sqm.registry.blueprints.common import fail
from sqm.registry.sparql import SparqlError, SparqlService

blueprint = Blueprint("sparql", __name__)
RESULTS = "application/sparql-results+json"
GRAPHS = ("text/turtle", "application/n-triples")


def _query_text() -> str:
    if request.method == "GET":
        text = request.args.get("query")
    elif request.mimetype == "application/sparql-query":
        text = request.get_data(as_text=True)
    elif request.mimetype == "application/x-www-form-urlencoded":
        text = request.form.get("query")
    else:
        fail(415, "unsupported_media_type", "POST the query as application/sparql-query or a form")
    if not text:
        fail(400, "missing_parameter", "send a SPARQL query in the 'query' parameter")
    return text


@blueprint.route("/sparql", methods=["GET", "POST"])
def sparql() -> Any:
    """SELECT and ASK answer as SPARQL JSON results; CONSTRUCT and DESCRIBE as Turtle or
    N-Triples. At most the configured number of results; ``SQM-Results-Truncated: true`` says
    when more were cut."""
    offered = (RESULTS, "application/json", *GRAPHS)
    accept = request.accept_mimetypes
    if accept and accept.best != "*/*" and accept.best_match(offered) is None:
        fail(406, "not_acceptable", f"answers are available as {', '.join(offered)}")
    graph_format = request.accept_mimetypes.best_match(GRAPHS) or "text/turtle"
    service: SparqlService = current_app.extensions["sqm"]["sparql"]
    try:
        answer = service.query(_query_text(), graph_format)
    except SparqlError as error:
        if error.retry_after is not None:
            refusal = jsonify({"error": error.code, "message": error.message})
            refusal.status_code = error.status
            refusal.headers["Retry-After"] = str(error.retry_after)
            abort(refusal)
        fail(error.status, error.code, error.message)
    response = Response(answer.body, mimetype=answer.mimetype)
    if answer.truncated:
        response.headers["SQM-Results-Truncated"] = "true"
    return response
