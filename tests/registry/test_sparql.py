"""The read-only SPARQL endpoint: answers over the current data, and bounded work: a result
limit, a timeout that stops a runaway query, no updates and no calls to other endpoints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.seed import seed
from sqm.registry.sparql import SparqlError, check_query
from tests.conftest import EXAMPLES

PREFIX = (
    "PREFIX sqm: <https://w3id.org/sqm/v0.1/>\nPREFIX reg: <https://w3id.org/sqm/v0.1/registry/>\n"
)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    folder = tmp_path_factory.mktemp("sparql")
    app = create_app(
        RegistryConfig(data_dir=folder, sparql_timeout_seconds=2.0, sparql_max_results=50)
    )
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", folder / "seed-keys")
    yield app
    app.extensions["sqm"]["sparql"].stop()


def _select(client: FlaskClient, query: str) -> Any:
    answer = client.get("/api/v1/sparql", query_string={"query": PREFIX + query})
    assert answer.status_code == 200, answer.json
    assert answer.mimetype == "application/sparql-results+json"
    return answer


def test_select_finds_claims_with_the_log_entry_that_proves_them(seeded: Flask) -> None:
    client = seeded.test_client()
    answer = _select(
        client,
        """SELECT ?index ?cpk WHERE {
             GRAPH ?g { ?record sqm:cpk ?cpk . ?entry reg:logIndex ?index }
             FILTER (?cpk >= 1.8)
           } ORDER BY ?cpk""",
    )
    rows = [
        (int(b["index"]["value"]), float(b["cpk"]["value"]))
        for b in answer.json["results"]["bindings"]
    ]
    assert [cpk for _, cpk in rows] == [1.83, 1.83, 1.85]
    profile = client.get("/api/v1/suppliers/LEI:529900SQMKRAFTWERK41").json
    assert rows[0][0] == profile["latest"]["logIndex"]


def test_ask_construct_and_post(seeded: Flask) -> None:
    client = seeded.test_client()
    ask = client.post(
        "/api/v1/sparql",
        data=PREFIX + "ASK { ?s sqm:on_time_percent ?v FILTER (?v > 98) }",
        content_type="application/sparql-query",
    )
    assert ask.json == {"head": {}, "boolean": True}
    graph = client.post(
        "/api/v1/sparql",
        data={"query": PREFIX + "CONSTRUCT { ?s sqm:cpk ?v } WHERE { ?s sqm:cpk ?v }"},
        headers={"Accept": "application/n-triples"},
    )
    assert graph.mimetype == "application/n-triples"
    assert len(graph.get_data(as_text=True).strip().splitlines()) == 7


def test_results_are_cut_at_the_limit(seeded: Flask) -> None:
    answer = _select(seeded.test_client(), "SELECT * WHERE { ?s ?p ?o }")
    assert len(answer.json["results"]["bindings"]) == 50
    assert answer.headers["SQM-Results-Truncated"] == "true"


def test_a_runaway_query_is_stopped_and_the_endpoint_recovers(seeded: Flask) -> None:
    client = seeded.test_client()
    started = time.monotonic()
    runaway = client.get(
        "/api/v1/sparql",
        query_string={
            "query": "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"
        },
    )
    assert runaway.status_code == 400 and runaway.json["error"] == "query_timeout"
    assert time.monotonic() - started < 10
    again = _select(client, "SELECT ?v WHERE { ?s sqm:on_time_percent ?v }")
    assert len(again.json["results"]["bindings"]) >= 1


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("INSERT DATA { <urn:a> <urn:b> <urn:c> }", 400, "malformed_query"),
        ("DELETE WHERE { ?s ?p ?o }", 400, "malformed_query"),
        (
            "SELECT * WHERE { SERVICE <http://evil.example/sparql> { ?s ?p ?o } }",
            400,
            "service_not_allowed",
        ),
        (
            "select * where { service <http://127.0.0.1:5432/> { ?s ?p ?o } }",
            400,
            "service_not_allowed",
        ),
        ("SELECT * WHERE { ?s ?p ?o", 400, "malformed_query"),
        ("", 400, "missing_parameter"),
        ("x" * 10_001, 400, "query_too_large"),
    ],
)
def test_refusals(seeded: Flask, query: str, status: int, code: str) -> None:
    answer = seeded.test_client().post("/api/v1/sparql", data={"query": query})
    assert (answer.status_code, answer.json["error"]) == (status, code)


def test_service_inside_strings_iris_and_comments_is_not_a_keyword() -> None:
    check_query('SELECT * WHERE { ?s ?p "SERVICE" . ?s <urn:SERVICE> ?o } # SERVICE')
    with pytest.raises(SparqlError):
        check_query('SELECT * WHERE { ?s ?p "x" . SeRvIcE <urn:x> { ?s ?p ?o } }')


def test_unsupported_formats_are_refused(seeded: Flask) -> None:
    client = seeded.test_client()
    xml = client.get(
        "/api/v1/sparql",
        query_string={"query": "ASK {}"},
        headers={"Accept": "application/sparql-results+xml"},
    )
    assert (xml.status_code, xml.json["error"]) == (406, "not_acceptable")
    plain = client.post("/api/v1/sparql", data="ASK {}", content_type="text/plain")
    assert (plain.status_code, plain.json["error"]) == (415, "unsupported_media_type")
    nothing = client.get("/api/v1/sparql", query_string={"query": "ASK { <urn:none> ?p ?o }"})
    assert json.loads(nothing.data)["boolean"] is False


def test_a_query_during_loading_is_told_to_retry_and_loading_goes_on(seeded: Flask) -> None:
    # A large registry takes longer to load than a request may wait (gunicorn kills a worker
    # after 30 s): the query gets 503 with Retry-After, and the engine keeps loading.
    service = seeded.extensions["sqm"]["sparql"]
    service.stop()
    service.timeout = 0.01  # shorter than the child takes to start
    client = seeded.test_client()
    query = {"query": PREFIX + "ASK { ?s sqm:cpk ?cpk }"}
    try:
        answer = client.get("/api/v1/sparql", query_string=query)
        assert answer.status_code == 503 and answer.json["error"] == "sparql_loading"
        assert answer.headers["Retry-After"] == "30" and "loading" in answer.json["message"]
        started = service._child.pid
        deadline = time.monotonic() + 120
        while not service._pipe.poll(0.1):
            assert time.monotonic() < deadline, "the engine never finished loading"
        service.timeout = 2.0
        answer = client.get("/api/v1/sparql", query_string=query)
        assert answer.status_code == 200 and answer.json["boolean"] is True
        assert service._child.pid == started  # the same load, not a new one
    finally:
        service.timeout = 2.0
