"""Supplier and attestation resources: profiles, history, trends, and content negotiation to
the standard's JSON-LD and Turtle."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import rdflib
from flask import Flask
from sqlalchemy import Engine

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.seed import seed
from tests.conftest import EXAMPLES

KRAFTWERK = "LEI:529900SQMKRAFTWERK41"
SQM = rdflib.Namespace("https://w3id.org/sqm/v0.1/")


@pytest.fixture
def seeded(engine: Engine, tmp_path: Path) -> Iterator[Flask]:
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    yield app


def test_a_supplier_profile_points_every_claim_at_its_log_entry(seeded: Flask) -> None:
    profile = seeded.test_client().get(f"/api/v1/suppliers/{KRAFTWERK}").json
    assert profile["verification"] == "unverified"
    assert profile["identity"]["name"] == "Kraftwerk Präzisionsteile GmbH"
    latest = profile["latest"]
    assert latest["bundle"] == f"/api/v1/bundles/{latest['logIndex']}"
    assert latest["previousIndex"] is None and latest["feedSequence"] == 14
    cpks = sorted(m["value"] for m in profile["metrics"] if m["metric"] == "capability_records.cpk")
    assert cpks == [1.54, 1.54, 1.83, 1.83]
    assert {c["scheme"] for c in profile["certifications"]} >= {"IATF_16949"}
    assert [h["logIndex"] for h in profile["history"]] == [latest["logIndex"]]
    assert [k["logIndex"] for k in profile["keys"]] == [latest["logIndex"] - 1]
    # The same instant as the logged key entry (SQLite once dropped the offset).
    entry = seeded.test_client().get(f"/api/v1/log/entries/{latest['logIndex'] - 1}").json
    logged = json.loads(base64.b64decode(entry["leaf"]))["validFrom"]
    assert datetime.fromisoformat(profile["keys"][0]["validFrom"]) == datetime.fromisoformat(logged)


def test_as_of_before_the_first_feed_shows_no_claims(seeded: Flask) -> None:
    profile = seeded.test_client().get(f"/api/v1/suppliers/{KRAFTWERK}?as_of=2020-01-01").json
    assert profile["latest"] is None and profile["metrics"] == [] and profile["history"] == []


def test_turtle_and_json_ld_by_content_negotiation(seeded: Flask) -> None:
    client = seeded.test_client()
    turtle = client.get(f"/api/v1/suppliers/{KRAFTWERK}", headers={"Accept": "text/turtle"})
    assert turtle.status_code == 200 and turtle.mimetype == "text/turtle"
    assert turtle.headers["Vary"] == "Accept"
    graph = rdflib.Graph().parse(data=turtle.get_data(as_text=True), format="turtle")
    assert len(graph) > 500
    cpks = sorted(float(o) for o in graph.objects(None, SQM.cpk))
    assert cpks == [1.54, 1.54, 1.83, 1.83]
    jsonld = client.get(f"/api/v1/suppliers/{KRAFTWERK}", headers={"Accept": "application/ld+json"})
    assert jsonld.mimetype == "application/ld+json"
    same = rdflib.Graph().parse(data=jsonld.get_data(as_text=True), format="json-ld")
    # The same triples (numbers may differ in lexical form between the two syntaxes).
    assert len(same) == len(graph)
    assert sorted(float(o) for o in same.objects(None, SQM.cpk)) == cpks
    index = client.get(f"/api/v1/suppliers/{KRAFTWERK}").json["latest"]["logIndex"]
    attested = client.get(f"/api/v1/attestations/{index}", headers={"Accept": "text/turtle"})
    assert attested.headers["Link"] == f'</api/v1/bundles/{index}>; rel="describedby"'
    plain = client.get(f"/api/v1/attestations/{index}").json
    expected = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    assert plain["feed"] == expected


def test_trend_history_and_refusals(seeded: Flask) -> None:
    client = seeded.test_client()
    series = client.get(
        f"/api/v1/suppliers/{KRAFTWERK}/trend?metric=delivery_records.on_time_percent"
    ).json["series"]
    assert [p["value"] for p in series["delivery_records.on_time_percent"]] == [98.4]
    assert (
        client.get(f"/api/v1/suppliers/{KRAFTWERK}/history").json["history"][0]["feedSequence"]
        == 14
    )
    refusals = [
        (client.get("/api/v1/suppliers/LEI:NOBODY"), 404, "no_such_supplier"),
        (client.get("/api/v1/attestations/0"), 404, "no_such_attestation"),  # a key entry
        (client.get(f"/api/v1/suppliers/{KRAFTWERK}?as_of=soon"), 400, "invalid_parameter"),
        (
            client.get(f"/api/v1/suppliers/{KRAFTWERK}/history?as_of=0001-01-01T00:00:00%2B23:59"),
            400,
            "invalid_parameter",
        ),
        (client.get(f"/api/v1/suppliers/{KRAFTWERK}/trend?metric=nope"), 400, "invalid_parameter"),
        (client.get(f"/api/v1/suppliers/{KRAFTWERK}/trend"), 400, "invalid_parameter"),
        (
            client.get(f"/api/v1/suppliers/{KRAFTWERK}", headers={"Accept": "application/xml"}),
            406,
            "not_acceptable",
        ),
    ]
    for answer, status, code in refusals:
        assert (answer.status_code, answer.json["error"]) == (status, code)
