"""The read-only SPARQL endpoint: answers over the current data, and bounded work: a result
limit, a timeout that stops a runaway query, no updates and no calls to other endpoints."""

from __future__ import annotations

import ast
import fcntl
import itertools
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.seed import seed
from sqm.registry.sparql import (
    MAX_QUERY_CHARS,
    MAX_TERMS,
    SparqlError,
    SparqlService,
    _Store,
    check_query,
    query_form,
    scan,
)
from tests.conftest import EXAMPLES, REPO

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
    # The stopped child's store is on disk: the new child reopened it and loaded nothing.
    service = seeded.extensions["sqm"]["sparql"]
    assert service.started_with is not None and service.started_with[1] == 0


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


@pytest.mark.parametrize(
    "query",
    [
        # Oxigraph reads "<2)SERVICE#>" as less-than, a ")", SERVICE and a comment; a scan
        # that takes it for an IRI misses the SERVICE, and the engine calls the URL.
        "SELECT * { FILTER(1<2)SERVICE#>\n<http://127.0.0.1:9/> { ?s ?p ?o } }",
        # ex:a\' is one prefixed name (a backslash escapes the quote): no string begins there.
        "PREFIX ex: <http://e/> SELECT * { { ?s ex:a\\' ?o } UNION "
        "{ SERVICE <http://127.0.0.1:9/> { ?a ?b ?c } } FILTER('x') }",
        # After the comment that ends with the line, ''' begins a string for the engine only
        # on the next line: the one the scan would take to begin at #>''' hides the SERVICE.
        "SELECT*{FILTER(1<2#>'''\n)SERVICE<http://127.0.0.1:9/>{?s ?p ?o}FILTER('''=''')}",
        "SELECT*{?s ?p <http://a/a'b>. FILTER(1<2)SERVICE#'>\n<http://127.0.0.1:9/>{}}",
    ],
)
def test_service_hidden_where_the_engine_still_reads_it_is_refused(query: str) -> None:
    with pytest.raises(SparqlError) as refused:
        check_query(query)
    assert refused.value.code == "service_not_allowed"


DEEP = 3000


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * WHERE { " + "{" * DEEP + "}" * DEEP + " }",
        "ASK { FILTER(" + "(" * DEEP + "1" + ")" * DEEP + ") }",
        "ASK { ?s ?p " + "[a " * 1500 + "1" + "]" * 1500 + " }",
        "ASK { " + "FILTER EXISTS {" * 600 + "}" * 600 + " }",
        "ASK { BIND(" + "STR(" * 1000 + "1" + ")" * 1000 + " AS ?x) }",
        "ASK { FILTER(" + "!" * 9000 + "true) }",  # 10,000 in a row crash it too
        # The same nesting where a scan that takes "<...>" for an IRI would not see it:
        # Oxigraph reads (1<2)+((...))>0 as comparisons.
        "ASK { FILTER((1<2)+" + "(" * DEEP + "1" + ")" * DEEP + ">0) }",
        "ASK { " + "{" * 65 + "}" * 65 + " }",  # 66 levels
    ],
)
def test_deep_nesting_is_refused_before_it_reaches_the_engine(query: str) -> None:
    with pytest.raises(SparqlError) as refused:
        check_query(query)
    assert (refused.value.code, refused.value.status) == ("query_too_deep", 400)
    assert "at most 64" in refused.value.message


@pytest.mark.parametrize(
    "query",
    [
        "ASK " + "{" * 64 + "}" * 64,  # the limit itself
        "ASK { FILTER(?v = '" + "(" * 500 + "') }",
        'ASK { FILTER(?v = """' + "{\n" * 500 + '""") }',
        "ASK { ?s ?p ?o # " + "[" * 500 + "\n}",
        "ASK { FILTER(?v < 3 && ?v > 1 && !BOUND(?x) && !(?v != 2)) }",
        "PREFIX ex: <http://e/> ASK { ?s ex:a\\'b ?o FILTER(?o<<http://e/x>) }",
        "PREFIX sd: <http://www.w3.org/ns/sparql-service-description#> ASK { ?s a sd:Endpoint }",
    ],
)
def test_shallow_queries_and_nesting_inside_literals_pass(query: str) -> None:
    check_query(query)


def test_a_deep_query_gets_400_and_the_engine_goes_on(seeded: Flask) -> None:
    client = seeded.test_client()
    service = seeded.extensions["sqm"]["sparql"]
    _select(client, "SELECT ?v WHERE { ?s sqm:on_time_percent ?v }")
    engine = service._pid
    deep = client.post(
        "/api/v1/sparql",
        data="SELECT * WHERE { " + "{" * DEEP + "}" * DEEP + " }",
        content_type="application/sparql-query",
    )
    assert (deep.status_code, deep.json["error"]) == (400, "query_too_deep")
    assert "3001 levels" in deep.json["message"] and "at most 64" in deep.json["message"]
    _select(client, "SELECT ?v WHERE { ?s sqm:on_time_percent ?v }")
    assert service._pid == engine  # the same engine: nothing crashed it


def test_a_flat_query_that_makes_a_deep_tree_is_answered(seeded: Flask, tmp_path: Path) -> None:
    # ORDER BY (1)(1)... nests nothing, yet Oxigraph builds a tree as deep as its conditions:
    # 3,300 overflowed a thread's default 8 MB stack; the engine's threads have more.
    query = "SELECT * WHERE {} ORDER BY " + "(1)" * 3300
    service = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
    try:
        answer = service.query(query, "application/sparql-results+json")
        assert json.loads(answer.body)["results"]["bindings"] == [{}]
    finally:
        service.stop()


def _objects(count: int) -> str:
    """A star on ?s: one predicate, ``count`` objects in a list."""
    return "?s sqm:cpk " + ", ".join(f"?o{n}" for n in range(count))


def _star(objects: int) -> str:
    return "SELECT * WHERE { " + _objects(objects) + " }"


def _each(template: str, count: int, joiner: str = " ") -> str:
    return joiner.join(template.format(n=n) for n in range(count))


P = "<https://w3id.org/sqm/v0.1/cpk>"
# Shapes whose planning grows steeply with their size, each at a size that took pyoxigraph from
# 1.9 s to 22 s over the three example feeds on a 2-core machine (in a process of its own, the
# store loaded first): a star on one subject 8 s, its objects in a list 8.2 s, constants 8.7 s,
# in groups of their own 21.6 s, with a FILTER between them 7 s, in GRAPHs 11.4 s; 150
# OPTIONALs 6.9 s, a blank node with 200 properties 21.7 s, a collection of 200 members 5.4 s,
# a path of 400 steps 4 s (800: stopped after 36 s), a chain of 300 patterns 1.9 s, patterns
# sharing an object 5.8 s.
TOO_COMPLEX = {
    "star": "SELECT * WHERE { " + _each(f"?s {P} ?o{{n}} .", 150) + " }",
    "star, an object list": _star(150),
    "star of constants": "SELECT * WHERE { ?s sqm:cpk " + _each("{n}", 200, ", ") + " }",
    "star of [] and ()": "SELECT * WHERE { ?s sqm:cpk " + _each("[], ()", 100, ", ") + " }",
    "star in groups": "SELECT * WHERE { " + _each("{{?s sqm:cpk ?o{n}}}", 200) + " }",
    "star between FILTERs": "SELECT * WHERE { "
    + _each("?s sqm:cpk ?o{n} FILTER(true)", 150)
    + " }",
    "star in GRAPHs": "SELECT * WHERE { " + _each("GRAPH ?g {{ ?s sqm:cpk ?o{n} }}", 150) + " }",
    "OPTIONALs": "SELECT * WHERE { ?s ?p ?o "
    + _each("OPTIONAL {{ ?s sqm:cpk ?o{n} }}", 150)
    + " }",
    "blank node": "SELECT * WHERE { ?s sqm:cpk [ " + _each("sqm:cpk ?o{n}", 200, " ; ") + " ] }",
    "collection": "SELECT * WHERE { ?s sqm:cpk (" + _each("1", 200) + ") }",
    "path": "SELECT * WHERE { ?s " + _each("sqm:cpk", 400, "/") + " ?o }",
    "path of a": "SELECT * WHERE { ?s " + _each("a", 800, "/") + " ?o }",
    "chain": "SELECT * WHERE { " + _each("?x{n} sqm:cpk ?y{n} .", 300) + " }",
    "shared object": "SELECT * WHERE { " + _each("?s{n} sqm:cpk ?o .", 150) + " }",
    # Data is not counted, but a group inside an IN list is (Oxigraph plans an EXISTS as it
    # evaluates it, cheaply, today), and so is what only looks like IN or VALUES: after a
    # name's escaped character, or where a reading of "<" nests deeper than the other.
    "EXISTS in an IN list": "SELECT * WHERE { ?s ?p ?o FILTER(?o IN (EXISTS { "
    + _objects(150)
    + " })) }",
    "IN in a name": "PREFIX ex: <http://e/> SELECT * WHERE { ?s ex:a\\.IN ("
    + _each("1", 200)
    + ") }",
    "VALUES in a name": "PREFIX ex: <http://e/> SELECT * WHERE { ?s ex:a\\.VALUES ?x { "
    + _objects(150)
    + " } }",
    "IN list left early": "SELECT * WHERE { FILTER(?x IN (<a:((((>)) " + _objects(150) + " }",
}


@pytest.mark.parametrize("query", TOO_COMPLEX.values(), ids=TOO_COMPLEX.keys())
def test_queries_with_too_many_terms_are_refused_before_the_engine(query: str) -> None:
    text = PREFIX + query
    assert len(text) <= MAX_QUERY_CHARS  # refused for what it holds, not for its size
    with pytest.raises(SparqlError) as refused:
        check_query(text)
    assert (refused.value.code, refused.value.status) == ("query_too_complex", 400)
    assert f"at most {MAX_TERMS} are allowed" in refused.value.message
    assert "split the query" in refused.value.message


def test_a_query_with_too_many_terms_gets_400_and_the_engine_goes_on(seeded: Flask) -> None:
    client = seeded.test_client()
    service = seeded.extensions["sqm"]["sparql"]
    _select(client, "SELECT ?v WHERE { ?s sqm:on_time_percent ?v }")
    engine = service._pid
    started = time.monotonic()
    refused = client.post(
        "/api/v1/sparql", data=PREFIX + _star(150), content_type="application/sparql-query"
    )
    assert (refused.status_code, refused.json["error"]) == (400, "query_too_complex")
    assert "the query has 152 terms" in refused.json["message"]
    assert f"at most {MAX_TERMS}" in refused.json["message"]
    assert time.monotonic() - started < 1  # refused at once, not after the timeout
    _select(client, "SELECT ?v WHERE { ?s sqm:on_time_percent ?v }")
    assert service._pid == engine  # the same engine: nothing stopped it


def _at(terms: int) -> str:
    """A star on each record with a Cpk that has exactly ``terms`` terms: ?r, then pairs of a
    predicate and an object, and one more object in a list when ``terms`` is even."""
    pairs = (terms - 1) // 2
    extra = ", ?x" if terms % 2 == 0 else ""
    return (
        "SELECT ?r WHERE { ?r sqm:cpk ?v0"
        + extra
        + "".join(f" ; sqm:cpk ?v{n}" for n in range(1, pairs))
        + " }"
    )


def test_a_query_at_the_limit_is_answered_and_one_more_term_is_refused(seeded: Flask) -> None:
    at, over = PREFIX + _at(MAX_TERMS), PREFIX + _at(MAX_TERMS + 1)
    assert (scan(at).terms, scan(over).terms) == (MAX_TERMS, MAX_TERMS + 1)
    client = seeded.test_client()
    records = _select(client, "SELECT ?r WHERE { ?r sqm:cpk ?v }").json["results"]["bindings"]
    answer = client.post("/api/v1/sparql", data=at, content_type="application/sparql-query")
    assert answer.status_code == 200, answer.json
    assert len(answer.json["results"]["bindings"]) == len(records) > 0
    refused = client.post("/api/v1/sparql", data=over, content_type="application/sparql-query")
    assert (refused.status_code, refused.json["error"]) == (400, "query_too_complex")


@pytest.mark.parametrize(
    "query",
    [
        # Data holds no patterns: hundreds of values in VALUES or IN are not counted.
        "SELECT * WHERE { ?s sqm:supplier ?id VALUES ?id { "
        + _each('"LEI:{n:020d}"', 300)
        + " } }",
        "SELECT * WHERE { ?s sqm:cpk ?v } VALUES (?v ?s) { " + _each("({n} UNDEF)", 300) + " }",
        "SELECT * WHERE { ?s sqm:cpk ?v FILTER(?v NOT IN (" + _each("{n}.5", 300, ", ") + ")) }",
        # Nor is what is outside {}: a long ORDER BY or projection makes no patterns.
        "SELECT "
        + _each("?v{n}", 300)
        + " WHERE { ?s ?p ?o } ORDER BY "
        + _each("DESC(?v{n})", 300),
        _star(MAX_TERMS - 2),
    ],
    ids=["VALUES", "VALUES rows", "NOT IN", "outside {}", "a star at the limit"],
)
def test_data_and_what_is_outside_braces_are_not_counted(query: str) -> None:
    check_query(PREFIX + query)


def _documented_queries() -> dict[str, str]:
    """The SPARQL queries of the docs (a Python example's triple-quoted ``query``, or a sparql
    code block) and of the benchmarks (SPARQL_QUERY, QUERIES), by where they are."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "docs").rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        blocks = re.findall(r'query = """(.*?)"""', text, re.DOTALL)
        blocks += re.findall(r"```sparql\n(.*?)```", text, re.DOTALL)
        for number, block in enumerate(blocks):
            found[f"{path.relative_to(REPO)}:{number}"] = block
    for name in ("registry_search.py", "sparql_engines.py"):
        path = REPO / "benchmarks" / name
        # The module's string constants alone (importing it would set up the benchmark).
        values: dict[str, Any] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            if set(targets) & {"PREFIX", "SPARQL_QUERY", "QUERIES"}:
                exec(compile(ast.Module([node], []), str(path), "exec"), values)
        if "SPARQL_QUERY" in values:
            found[f"benchmarks/{name}"] = values["SPARQL_QUERY"]
        for key, query in values.get("QUERIES", {}).items():
            found[f"benchmarks/{name}: {key}"] = query
    return found


def test_the_documented_and_benchmarked_queries_pass_the_checks() -> None:
    queries = _documented_queries()
    assert any(where.startswith("docs/") for where in queries)  # the buyer's guide's, at least
    assert "benchmarks/registry_search.py" in queries
    for where, query in queries.items():
        check_query(query)  # raises for a query the endpoint would refuse
        assert scan(query).terms <= MAX_TERMS // 2, where  # and with room to grow


def _started_on(engine: int, run: Callable[[], None]) -> threading.Thread:
    """``run`` in a thread of its own, once the engine process ``engine`` works on its query."""
    idle = _cpu_seconds(engine)
    running = threading.Thread(target=run)
    running.start()
    deadline = time.monotonic() + 20
    while _cpu_seconds(engine) < idle + 0.3:
        assert time.monotonic() < deadline, "the query never ran"
        time.sleep(0.02)
    return running


def _cpu_seconds(pid: int) -> float:
    """The processor time ``pid`` has used (utime and stime in /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_engine_that_crashes_under_a_query_says_so(seeded: Flask, tmp_path: Path) -> None:
    service = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
    runaway = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"
    failures: list[SparqlError] = []

    def run() -> None:
        try:
            service.query(runaway)
        except SparqlError as error:
            failures.append(error)

    try:
        service.query("ASK {}")  # started and loaded
        engine = service._child.pid
        running = _started_on(engine, run)
        os.kill(engine, signal.SIGSEGV)
        running.join(timeout=20)
        assert [(f.code, f.status) for f in failures] == [("sparql_engine_crashed", 500)]
        assert "SIGSEGV" in failures[0].message and "retry" not in failures[0].message
        assert service.query("ASK {}").body  # the next query starts a new engine
        assert service._child.pid != engine
    finally:
        service.stop()


def test_a_query_beside_one_that_stops_the_engine_is_sent_to_the_next_engine(
    seeded: Flask, tmp_path: Path
) -> None:
    # Two registry processes share an engine. One stops it (as it does for a query of its own
    # past the timeout) while the other's query runs there: that query is sent once more, to
    # the engine started next, and answered, instead of getting 503.
    overrun = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
    beside = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
    count = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f VALUES ?k { 1 2 3 4 5 6 } }"
    answers: list[Any] = []
    failures: list[SparqlError] = []

    def run() -> None:
        try:
            answers.append(json.loads(beside.query(count).body))
        except SparqlError as error:
            failures.append(error)

    try:
        overrun.query("ASK {}")  # its engine, loaded
        engine = overrun._child.pid
        quads = beside.query("SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c }").body
        assert beside._pid == engine
        running = _started_on(engine, run)
        assert running.is_alive(), "the query ended before the engine was stopped"
        overrun.stop()
        running.join(timeout=60)
        assert failures == []
        n = int(json.loads(quads)["results"]["bindings"][0]["n"]["value"])
        assert answers[0]["results"]["bindings"][0]["n"]["value"] == str(6 * n * n)
        assert beside._pid is not None and beside._pid != engine  # the next engine answered
    finally:
        overrun.stop()
        beside.stop()


@pytest.mark.parametrize(
    ("method", "url", "body", "content_type"),
    [
        ("GET", "/api/v1/sparql?query=ASK%7B%7D&query=SELECT*%7B%7D", None, None),
        (
            "POST",
            "/api/v1/sparql",
            "query=ASK%7B%7D&query=SELECT*%7B%7D",
            "application/x-www-form-urlencoded",
        ),
        (
            "POST",
            "/api/v1/sparql?query=ASK%7B%7D",
            "query=ASK%7B%7D",
            "application/x-www-form-urlencoded",
        ),
        ("POST", "/api/v1/sparql?query=ASK%7B%7D", "SELECT * {}", "application/sparql-query"),
    ],
)
def test_a_query_given_twice_is_refused(
    seeded: Flask, method: str, url: str, body: str | None, content_type: str | None
) -> None:
    answer = seeded.test_client().open(url, method=method, data=body, content_type=content_type)
    assert (answer.status_code, answer.json["error"]) == (400, "repeated_parameter")
    assert "2 times" in answer.json["message"]


@pytest.mark.parametrize(
    ("url", "body", "content_type"),
    [
        ("/api/v1/sparql?query=ASK%7BFILTER('%FF'%3D'%EF%BF%BD')%7D", None, None),
        ("/api/v1/sparql", b"ASK { FILTER('\xff' = '\xef\xbf\xbd') }", "application/sparql-query"),
        (
            "/api/v1/sparql",
            b"query=ASK%7BFILTER('%FF'%3D'%EF%BF%BD')%7D",
            "application/x-www-form-urlencoded",
        ),
    ],
)
def test_a_query_that_is_not_utf8_is_refused_not_repaired(
    seeded: Flask, url: str, body: bytes | None, content_type: str | None
) -> None:
    # Read with replacement, b'\xff' would become U+FFFD and the query answer true.
    client = seeded.test_client()
    method = "GET" if body is None else "POST"
    answer = client.open(url, method=method, data=body, content_type=content_type)
    assert (answer.status_code, answer.json["error"]) == (400, "malformed_query")
    assert "not UTF-8" in answer.json["message"] and "b'\\xff'" in answer.json["message"]
    # U+FFFD itself, sent as UTF-8, is text like any other.
    fine = client.post(
        "/api/v1/sparql",
        data="ASK { FILTER('\ufffd' = '\ufffd') }".encode(),
        content_type="application/sparql-query",
    )
    assert (fine.status_code, fine.json) == (200, {"head": {}, "boolean": True})


def test_head_answers_as_get_does(seeded: Flask) -> None:
    client = seeded.test_client()
    for url in ("/api/v1/sparql", "/api/v1/sparql?query=ASK%7B%7D"):
        get, head = client.get(url), client.head(url)
        assert head.status_code == get.status_code != 415
        assert head.mimetype == get.mimetype and head.data == b""
    assert client.head("/api/v1/sparql").status_code == 400
    assert client.head("/api/v1/sparql?query=ASK%7B%7D").mimetype == (
        "application/sparql-results+json"
    )


@pytest.mark.parametrize(
    ("query", "accept", "status", "answer"),
    [
        ("ASK {}", "text/turtle", 406, "application/sparql-results+json, application/json"),
        (
            "SELECT * {}",
            "application/n-triples",
            406,
            "application/sparql-results+json, application/json",
        ),
        ("DESCRIBE <urn:x>", "application/json", 406, "text/turtle, application/n-triples"),
        (
            "CONSTRUCT WHERE { ?s ?p ?o }",
            "application/sparql-results+json",
            406,
            "text/turtle, application/n-triples",
        ),
        ("ASK {}", "application/json", 200, "application/sparql-results+json"),
        ("ASK {}", "text/turtle, application/json;q=0.1", 200, "application/sparql-results+json"),
        (
            "# a comment\nPREFIX ex: <http://e/> BASE <http://e/> construct {} WHERE {}",
            "application/json;q=0.9, application/n-triples;q=0.1",
            200,
            "application/n-triples",
        ),
        ("ASK {}", "*/*", 200, "application/sparql-results+json"),
        ("CONSTRUCT {} WHERE {}", "text/*", 200, "text/turtle"),
    ],
)
def test_each_query_form_answers_only_in_its_own_formats(
    seeded: Flask, query: str, accept: str, status: int, answer: str
) -> None:
    got = seeded.test_client().get(
        f"/api/v1/sparql?query={quote(query)}", headers={"Accept": accept}
    )
    assert got.status_code == status, got.data
    if status == 406:
        assert got.json["error"] == "not_acceptable"
        form = query.split()[0]
        assert got.json["message"] == f"{form} results are available as {answer}"
    else:
        assert got.mimetype == answer


def test_query_form_reads_past_the_prologue() -> None:
    assert query_form("PREFIX select: <urn:x> # SELECT\nBASE <urn:y> ask {}") == "ASK"
    assert query_form("PREFIX:<urn:x>CONSTRUCT{}{}") == "CONSTRUCT"
    assert query_form("# nothing but a comment") is None
    assert query_form("INSERT DATA {}") is None


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
    service.timeout = 0.01  # shorter than the engine takes to start
    client = seeded.test_client()
    query = {"query": PREFIX + "ASK { ?s sqm:cpk ?cpk }"}
    try:
        answer = client.get("/api/v1/sparql", query_string=query)
        assert answer.status_code == 503 and answer.json["error"] == "sparql_loading"
        assert answer.headers["Retry-After"] == "30"
        assert "starting" in answer.json["message"] or "loading" in answer.json["message"]
        started = service._child.pid
        service.timeout = 2.0
        deadline = time.monotonic() + 120
        while True:
            answer = client.get("/api/v1/sparql", query_string=query)
            if answer.status_code == 200:
                break
            assert answer.json["error"] == "sparql_loading", answer.json
            assert time.monotonic() < deadline, "the engine never finished loading"
        assert answer.json["boolean"] is True
        assert service._child.pid == service._pid == started  # the same load, not a new one
    finally:
        service.timeout = 2.0


# --- the store on disk ---------------------------------------------------------------------------


def _url(app: Flask) -> str:
    url: str = app.extensions["sqm"]["config"].url
    return url


def _contents(store: _Store) -> tuple[int, set[tuple[str, ...]]]:
    """The store's size and every statement without a blank node (JSON-LD loads name blank
    nodes afresh each time)."""
    found = store.store.query(
        "SELECT ?g ?s ?p ?o WHERE { GRAPH ?g { ?s ?p ?o } FILTER (!isBlank(?s) && !isBlank(?o)) }"
    )
    return len(store.store), {tuple(str(row[n]) for n in range(4)) for row in found}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def in_memory(seeded: Flask) -> Iterator[tuple[int, int, tuple[int, set[tuple[str, ...]]]]]:
    """(feeds loaded, position, contents) of a store loaded in memory from the seeded registry."""
    store = _Store(_url(seeded))
    loaded = store.refresh()
    yield loaded, store.position, _contents(store)
    store.close()


def test_the_store_on_disk_is_reopened_and_only_what_changed_is_loaded(
    seeded: Flask, in_memory: Any, tmp_path: Path
) -> None:
    loaded, position, contents = in_memory
    first = _Store(_url(seeded), tmp_path)
    assert first.position == -1 and first.refresh() == loaded > 1
    assert (first.position, _contents(first)) == (position, contents)
    # A store has one opener at a time: another process is refused while this one holds it.
    with pytest.raises(SparqlError) as refused:
        _Store(_url(seeded), tmp_path)
    assert (refused.value.code, refused.value.status) == ("sparql_unavailable", 503)
    first.close()

    again = _Store(_url(seeded), tmp_path)
    try:
        assert again.path == tmp_path / "store"
        assert again.position == position and again.refresh() == 0
        assert _contents(again) == contents
    finally:
        again.close()


class _StoppedAfter:
    """An Oxigraph store whose process is stopped (an exception here) at its n-th extend:
    after a feed's graph was written, before its log-entry statements."""

    def __init__(self, store: Any, n: int) -> None:
        self.store, self.left = store, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def extend(self, quads: Any) -> None:
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt("stopped")
        self.store.extend(quads)


def test_a_load_stopped_halfway_resumes_with_the_feed_it_was_writing(
    seeded: Flask, in_memory: Any, tmp_path: Path
) -> None:
    loaded, position, contents = in_memory
    stopped = _Store(_url(seeded), tmp_path)
    stopped.store = _StoppedAfter(stopped.store, 3)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        stopped.refresh()
    stopped.store = stopped.store.store  # type: ignore[attr-defined]
    stopped.close()

    resumed = _Store(_url(seeded), tmp_path)
    try:
        assert -1 < resumed.position < position
        # Two feeds were complete; the third, written without its log entry, loads again.
        assert resumed.refresh() == loaded - 2
        assert (resumed.position, _contents(resumed)) == (position, contents)
    finally:
        resumed.close()


def test_a_store_built_from_another_log_is_cleared(
    seeded: Flask, in_memory: Any, tmp_path: Path
) -> None:
    other = create_app(RegistryConfig(data_dir=tmp_path / "other"))
    seed(other.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "other-keys")
    built = _Store(_url(other), tmp_path / "stores")
    built.refresh()
    built.close()

    # The same folder, now for the seeded registry (say, a data folder reused for another
    # database): none of the other log's statements may answer a query here.
    loaded, position, contents = in_memory
    reopened = _Store(_url(seeded), tmp_path / "stores")
    try:
        assert reopened.position == -1 and reopened.refresh() == loaded
        assert (reopened.position, _contents(reopened)) == (position, contents)
    finally:
        reopened.close()


def test_a_service_stopped_and_started_again_loads_nothing_twice(
    seeded: Flask, in_memory: Any, tmp_path: Path
) -> None:
    loaded, position, _ = in_memory
    service = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
    query = PREFIX + "SELECT ?v WHERE { ?s sqm:on_time_percent ?v } ORDER BY ?v"
    try:
        answer = service.query(query, "application/sparql-results+json")
        assert service.started_with == (position, loaded)
        service.stop()
        assert service.query(query, "application/sparql-results+json").body == answer.body
        assert service.started_with == (position, 0)
    finally:
        service.stop()


@pytest.fixture
def silent_database() -> Iterator[str]:
    """The URL of a database that accepts the connection and never answers: a load hangs."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield f"postgresql+psycopg://sqm@127.0.0.1:{silent.getsockname()[1]}/none"


def test_a_load_is_restarted_when_it_stops_making_progress_not_when_it_is_long(
    tmp_path: Path, silent_database: str
) -> None:
    url = silent_database
    service = SparqlService(url, timeout=0.05, load_timeout=0.3, folder=tmp_path)
    status = service._status
    counted = itertools.count(1)

    def rising(connection: Any) -> tuple[Any, ...]:  # feeds keep arriving: a long load
        kind, *rest = status(connection)
        return (kind, next(counted), *rest[1:]) if kind == "loading" else (kind, *rest)

    def stuck(connection: Any) -> tuple[Any, ...]:  # the same count at every look
        kind, *rest = status(connection)
        return (kind, 7, *rest[1:]) if kind == "loading" else (kind, *rest)

    service._status = rising  # type: ignore[method-assign]
    try:
        deadline = time.monotonic() + 60
        while service._pid is None:  # until the engine listens and says it is loading
            with pytest.raises(SparqlError) as first:
                service.query("ASK {}")
            assert first.value.code == "sparql_loading" and first.value.status == 503
            assert time.monotonic() < deadline, "the engine never started"
        loading = service._child.pid
        assert service._pid == loading

        time.sleep(0.4)  # longer than load_timeout, with feeds arriving: left to go on
        with pytest.raises(SparqlError) as later:
            service.query("ASK {}")
        assert later.value.code == "sparql_loading" and "restarted" not in str(later.value)
        assert "loading the registry's data" in str(later.value)
        assert service._child.pid == loading

        service._status = stuck  # type: ignore[method-assign]
        with pytest.raises(SparqlError):
            service.query("ASK {}")  # sees the count change to 7 ...
        time.sleep(0.4)  # ... and then nothing more for longer than load_timeout
        with pytest.raises(SparqlError) as stalled:
            service.query("ASK {}")
        assert stalled.value.code == "sparql_loading" and "restarted" in str(stalled.value)
        assert service._child is None  # stopped; the next query starts a new one
        assert not _alive(loading)
    finally:
        service.stop()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_registry_processes_of_one_folder_share_one_engine_and_one_store(
    seeded: Flask, in_memory: Any, tmp_path: Path
) -> None:
    loaded, position, _ = in_memory
    query = PREFIX + "SELECT ?v WHERE { ?s sqm:on_time_percent ?v } ORDER BY ?v"
    first = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
    second = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
    try:
        answer = first.query(query, "application/sparql-results+json")
        assert first.started_with == (position, loaded) and first._child is not None
        # The second process starts nothing and loads nothing: it asks the first one's engine.
        assert second.query(query, "application/sparql-results+json").body == answer.body
        assert second._child is None and second._pid == first._pid == first._child.pid
        assert second.started_with == (position, loaded)
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["store"]

        # That engine ends (its process stopped it): the next query starts one of its own,
        # which reopens the same store and loads nothing.
        first.stop()
        assert second.query(query, "application/sparql-results+json").body == answer.body
        assert second._child is not None and second.started_with == (position, 0)
    finally:
        first.stop()
        second.stop()


def test_an_engine_ends_with_the_registry_process_that_started_it(
    seeded: Flask, tmp_path: Path
) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from sqm.registry.sparql import SparqlService\n"
        "service = SparqlService(sys.argv[1], timeout=60.0, folder=Path(sys.argv[2]))\n"
        "service.query('ASK {}')\n"
        "print(service._child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, _url(seeded), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        engine = int(worker.stdout.readline())
        assert _alive(engine)
        worker.kill()  # SIGKILL: no atexit handler stops the engine
        worker.wait()
        deadline = time.monotonic() + 10
        while _alive(engine):
            assert time.monotonic() < deadline, "the engine outlived its registry process"
            time.sleep(0.1)
    finally:
        worker.kill()


def test_a_store_held_by_a_process_that_answers_no_queries_gives_503(
    seeded: Flask, tmp_path: Path
) -> None:
    with (tmp_path / "store.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        service = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
        try:
            with pytest.raises(SparqlError) as refused:
                service.query("ASK {}")
            assert (refused.value.code, refused.value.status) == ("sparql_unavailable", 503)
            assert "another process holds the SPARQL store" in refused.value.message
            assert refused.value.retry_after == 30 and service._child is None
        finally:
            service.stop()


def test_the_stores_of_earlier_versions_become_the_one_store(
    seeded: Flask, in_memory: Any, tmp_path: Path
) -> None:
    # Earlier versions kept one store per registry process: slot-0, slot-1, ... beside locks.
    _, position, contents = in_memory
    built = _Store(_url(seeded), tmp_path)
    built.refresh()
    built.close()
    (tmp_path / "store").rename(tmp_path / "slot-0")
    (tmp_path / "store.source").rename(tmp_path / "slot-0.source")
    (tmp_path / "slot-1").mkdir()
    (tmp_path / "slot-1" / "CURRENT").write_text("a copy\n")
    for name in ("slot-0.lock", "slot-1.lock", "slot-1.source"):
        (tmp_path / name).write_text("")
    (tmp_path / "slot-2").mkdir()  # still open in a process of the earlier version
    held = (tmp_path / "slot-2.lock").open("w")
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)

    adopted = _Store(_url(seeded), tmp_path)
    try:
        assert adopted.position == position and adopted.refresh() == 0
        assert _contents(adopted) == contents
        assert sorted(p.name for p in tmp_path.glob("slot-*")) == ["slot-2", "slot-2.lock"]
    finally:
        adopted.close()
        held.close()


def test_a_socket_file_left_by_a_killed_engine_does_not_block_the_next(
    seeded: Flask, in_memory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside Linux the engine listens on a socket file, which a killed engine leaves behind.
    path = tmp_path / "engine.sock"
    monkeypatch.setattr("sqm.registry.sparql._address", lambda folder: str(path))
    with socket.socket(socket.AF_UNIX) as left:
        left.bind(str(path))  # bound, never listened on, never removed: a stale file
    service = SparqlService(_url(seeded), timeout=30.0, folder=tmp_path)
    try:
        assert service.query("ASK { ?s ?p ?o }", "application/sparql-results+json").body
        loaded, position, _ = in_memory
        assert service.started_with == (position, loaded)
    finally:
        service.stop()


def test_another_process_seeing_a_load_for_the_first_time_does_not_restart_it(
    tmp_path: Path, silent_database: str
) -> None:
    url = silent_database
    starter = SparqlService(url, timeout=0.05, load_timeout=300.0, folder=tmp_path)
    other = SparqlService(url, timeout=0.05, load_timeout=0.3, folder=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while starter._pid is None:  # until its engine listens and says it is loading
            with pytest.raises(SparqlError):
                starter.query("ASK {}")
            assert time.monotonic() < deadline, "the engine never started"
        engine = starter._pid
        time.sleep(0.4)  # the load has made no progress for longer than other's limit ...
        with pytest.raises(SparqlError) as first:
            other.query("ASK {}")  # ... but other has only now begun to watch it
        assert first.value.code == "sparql_loading" and "restarted" not in str(first.value)
        assert other._pid == engine and _alive(engine)
        time.sleep(0.4)
        with pytest.raises(SparqlError) as later:
            other.query("ASK {}")
        assert "restarted" in str(later.value)
        deadline = time.monotonic() + 10  # SIGKILLed by other: it ends a moment later
        while _alive(engine):
            assert time.monotonic() < deadline, "the stalled engine was not stopped"
            time.sleep(0.05)
    finally:
        other.stop()
        starter.stop()


def test_a_load_that_fails_says_why_at_once(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on: the database is down
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    service = SparqlService(
        f"postgresql+psycopg://sqm@127.0.0.1:{port}/none", timeout=30.0, folder=tmp_path
    )
    try:
        started = time.monotonic()
        with pytest.raises(SparqlError) as refused:
            service.query("ASK {}")
        assert (refused.value.code, refused.value.status) == ("sparql_unavailable", 503)
        assert "could not be loaded" in refused.value.message
        assert "OperationalError" in refused.value.message
        assert time.monotonic() - started < 25  # not left to look like a load for minutes
    finally:
        service.stop()


def test_a_peer_that_says_nothing_or_lacks_the_key_blocks_no_one(
    seeded: Flask, tmp_path: Path
) -> None:
    from multiprocessing.connection import Client

    from sqm.registry.sparql import _address, _handshake

    service = SparqlService(_url(seeded), timeout=5.0, folder=tmp_path)
    query = PREFIX + "ASK { ?s sqm:cpk ?cpk }"
    try:
        assert service.query(query, "application/sparql-results+json").body
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(_address(tmp_path))  # connects, never answers the challenge
        wrong = Client(_address(tmp_path), "AF_UNIX")
        with pytest.raises(multiprocessing.AuthenticationError):  # the wrong key: refused
            _handshake(wrong, b"x" * 32, 5.0, engine=False)  # (within 5 s, whatever happens)
        wrong.close()
        other = SparqlService(_url(seeded), timeout=5.0, folder=tmp_path)
        began = time.monotonic()
        answer = other.query(query, "application/sparql-results+json")
        assert json.loads(answer.body)["boolean"] is True
        assert time.monotonic() - began < 5 and other._pid == service._pid
        silent.close()
    finally:
        service.stop()
