"""The read-only SPARQL 1.1 endpoint (SPARQL 1.1 Protocol, query operation only)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, abort, current_app, jsonify, request

from sqm.registry.blueprints.common import fail
from sqm.registry.sparql import SparqlError, SparqlService, query_form

blueprint = Blueprint("sparql", __name__)
RESULTS = "application/sparql-results+json"
GRAPHS = ("text/turtle", "application/n-triples")
# What each query form's answer can be given as (SELECT and ASK: application/json names the
# same SPARQL JSON results).
SOLUTIONS = (RESULTS, "application/json")
OFFERED = {"SELECT": SOLUTIONS, "ASK": SOLUTIONS, "CONSTRUCT": GRAPHS, "DESCRIBE": GRAPHS}
QUERY_BODY, FORM = "application/sparql-query", "application/x-www-form-urlencoded"


def _queries(encoded: bytes) -> list[bytes]:
    """The values of every ``query`` parameter in ``encoded`` (a URL's query string or a form
    body), percent-decoded and not yet read as text. Werkzeug's own parse keeps bytes that are
    not UTF-8 percent-encoded (or fails on them unencoded): this leaves them to be refused."""
    pairs = parse_qsl(encoded.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return [value.encode("latin-1") for name, value in pairs if name == "query"]


def _query_text() -> str:
    """The query: in the URL for GET (and HEAD), in the body for POST; given once, in UTF-8."""
    in_url = _queries(request.query_string)
    if request.method in ("GET", "HEAD"):
        given, where = in_url, "in the URL"
    elif request.mimetype in (QUERY_BODY, FORM):
        body = request.get_data(cache=True)
        given = _queries(body) if request.mimetype == FORM else [body] if body else []
        where = "in the body"
        if given and in_url:  # a POST's query belongs in its body (SPARQL 1.1 Protocol 2.1)
            given, where = given + in_url, "in the body and in the URL"
    else:
        fail(415, "unsupported_media_type", "POST the query as application/sparql-query or a form")
    if len(given) > 1:
        fail(
            400,
            "repeated_parameter",
            f"give the query once: it was given {len(given)} times ({where}), and which one "
            "to run would be a guess",
        )
    if not given or not given[0]:
        place = "the 'query' parameter" if request.method != "POST" else "the body of the POST"
        fail(400, "missing_parameter", f"send a SPARQL query in {place}")
    try:
        return given[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(
            400,
            "malformed_query",
            f"the query is not UTF-8 text, which the SPARQL 1.1 Protocol requires: its byte "
            f"{exc.start} is {given[0][exc.start : exc.start + 1]!r}; send it in UTF-8 "
            "(percent-encoded in a URL or a form)",
        )


def _negotiate(offered: tuple[str, ...], what: str) -> str:
    """The type, of ``offered``, that the request's Accept header prefers (the first without
    one); 406 when it accepts none of them."""
    accept = request.accept_mimetypes
    chosen = accept.best_match(offered) if accept else offered[0]
    if chosen is None:
        fail(406, "not_acceptable", f"{what} are available as {', '.join(offered)}")
    return chosen


@blueprint.route("/sparql", methods=["GET", "POST"])
def sparql() -> Any:
    """SELECT and ASK answer as SPARQL JSON results; CONSTRUCT and DESCRIBE as Turtle or
    N-Triples. At most the configured number of results; ``SQM-Results-Truncated: true`` says
    when more were cut."""
    everything = (*SOLUTIONS, *GRAPHS)
    _negotiate(everything, "answers")  # before the query is read: nothing acceptable at all
    text = _query_text()
    form = query_form(text)
    if form is not None:
        _negotiate(OFFERED[form], f"{form} results")
    graph_format = request.accept_mimetypes.best_match(GRAPHS) or "text/turtle"
    service: SparqlService = current_app.extensions["sqm"]["sparql"]
    try:
        answer = service.query(text, graph_format)  # checks the query first (check_query)
    except SparqlError as error:
        if error.retry_after is not None:
            refusal = jsonify({"error": error.code, "message": error.message})
            refusal.status_code = error.status
            refusal.headers["Retry-After"] = str(error.retry_after)
            abort(refusal)
        fail(error.status, error.code, error.message)
    # The engine's answer, when the form was not read above (a query that begins oddly).
    kind = SOLUTIONS if answer.mimetype == RESULTS else GRAPHS
    _negotiate(
        kind, "SELECT and ASK results" if kind == SOLUTIONS else "CONSTRUCT and DESCRIBE results"
    )
    response = Response(answer.body, mimetype=answer.mimetype)
    if answer.truncated:
        response.headers["SQM-Results-Truncated"] = "true"
    return response
