"""The OpenAPI document describes every endpoint, and the live registry keeps to it: answers
to schemathesis-generated requests (valid and invalid) have documented status codes, content
types and bodies, and never a server error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.openapi import document
from sqm.registry.seed import seed
from tests.conftest import EXAMPLES
from tests.registry.servers import serving

# Octet bodies (RFC 3161 queries) and SPARQL query text go on the wire as they are generated.
schemathesis.serializer.alias("application/timestamp-query", "application/octet-stream")
schemathesis.serializer.alias("application/sparql-query", "text/plain")
SCHEMA = schemathesis.openapi.from_dict(document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("openapi")
    app = create_app(RegistryConfig(data_dir=folder, operator_token="operator-secret"))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", folder / "seed-keys")
    with serving(app) as base:
        yield f"{base}/api/v1"
    app.extensions["sqm"]["sparql"].stop()


def test_every_api_route_is_described(tmp_path: Path) -> None:
    app = create_app(RegistryConfig(data_dir=tmp_path))
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1")), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    described = {
        (path, method.upper()) for path, item in document()["paths"].items() for method in item
    }
    assert routes - described == set(), "routes without a description"
    assert described - routes == set(), "descriptions without a route"


@SCHEMA.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_live_registry_keeps_to_its_description(case: schemathesis.Case, live: str) -> None:
    case.call_and_validate(base_url=live, checks=CHECKS)


@pytest.mark.parametrize(
    ("path", "method", "parts"),
    [
        ("/bundles/{index}", "GET", {"path_parameters": {"index": 1}}),
        ("/attestations/{index}", "GET", {"path_parameters": {"index": 1}}),
        (
            "/suppliers/{supplier}",
            "GET",
            {"path_parameters": {"supplier": "LEI:529900SQMKRAFTWERK41"}},
        ),
        (
            "/suppliers/{supplier}/history",
            "GET",
            {"path_parameters": {"supplier": "LEI:529900SQMKRAFTWERK41"}},
        ),
        (
            "/search/suppliers",
            "GET",
            {"query": {"where": ["capability_records.cpk>=1.33"], "proofs": "inline"}},
        ),
        ("/log/entries/{index}", "GET", {"path_parameters": {"index": 0}}),
        ("/log/consistency", "GET", {"query": {"old": 1, "new": 6}}),
        ("/trust-root", "GET", {}),
        ("/metrics", "GET", {}),
    ],
)
def test_the_seeded_examples_answer_as_described(
    live: str, path: str, method: str, parts: dict[str, object]
) -> None:
    case = SCHEMA[path][method].Case(**parts)
    response = case.call_and_validate(base_url=live, checks=CHECKS)
    assert response.status_code == 200


def test_found_by_schemathesis_a_log_index_beyond_bigint_is_404_not_500(live: str) -> None:
    import urllib.error
    import urllib.request

    for path in ("/bundles/161748456810063626240", "/attestations/9223372036854775808"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{live}{path}")
        assert refused.value.code == 404
