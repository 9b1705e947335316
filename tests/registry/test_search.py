"""Buyer search over the index, on both databases: thresholds in any unit, scopes, filters,
pagination, proofs, and clear refusals of bad requests."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.seed import seed
from sqm.trust import bundle, merkle
from sqm.trust.checkpoint import open_note
from tests.conftest import EXAMPLES

KRAFTWERK = "LEI:529900SQMKRAFTWERK41"
MEKONG = "LEI:724500SQMAGROFOODS94"
SELATAN = "LEI:254900SQMELEKTRONX93"


@pytest.fixture
def seeded(engine: Engine, tmp_path: Path) -> Iterator[Flask]:
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    yield app


def _search(client: FlaskClient, *pairs: tuple[str, str]) -> Any:
    return client.get(f"/api/v1/search/suppliers?{urlencode(pairs)}")


def _suppliers(client: FlaskClient, *pairs: tuple[str, str]) -> list[str]:
    answer = _search(client, *pairs)
    assert answer.status_code == 200, answer.json
    return [hit["supplier"] for hit in answer.json["hits"]]


def test_thresholds_scopes_and_filters(seeded: Flask) -> None:
    client = seeded.test_client()
    assert _suppliers(client) == [SELATAN, KRAFTWERK, MEKONG]
    assert _suppliers(client, ("where", "capability_records.cpk>=1.33")) == [KRAFTWERK, MEKONG]
    # Every in-scope value must meet a condition, unless match=any: Selatan's Cpks are 1.85
    # and 1.26, Kraftwerk's 1.54 to 1.83, Mekong's 1.72.
    assert _suppliers(client, ("where", "capability_records.cpk>=1.6")) == [MEKONG]
    assert _suppliers(client, ("where", "capability_records.cpk>=1.6"), ("match", "any")) == [
        SELATAN,
        KRAFTWERK,
        MEKONG,
    ]
    assert _suppliers(client, ("where", "capability_records.cpk<1.3"), ("match", "any")) == [
        SELATAN
    ]
    critical = _search(
        client, ("where", "capability_records.cpk>=1.33"), ("characteristic_class", "critical")
    ).json["hits"]
    assert [h["supplier"] for h in critical] == [KRAFTWERK]
    assert critical[0]["matches"][0]["values"] == 1
    # Unit-aware: the example quotes 15 DAY; 3 WEE is 21 DAY, 2 WEE is 14 DAY.
    lead = _search(client, ("where", "lead_time_records.quoted_lead_time<=3 WEE")).json["hits"]
    assert [h["supplier"] for h in lead] == [KRAFTWERK]
    assert lead[0]["matches"][0] | {} == {
        "where": "lead_time_records.quoted_lead_time<=3 WEE",
        "metric": "lead_time_records.quoted_lead_time",
        "min": pytest.approx(15 / 7),
        "max": pytest.approx(15 / 7),
        "values": 1,
        "unit": "WEE",
    }
    assert _suppliers(client, ("where", "lead_time_records.quoted_lead_time<=2 WEE")) == []
    assert _suppliers(client, ("where", "lead_time_records.quoted_lead_time<=360 HUR")) == [
        KRAFTWERK
    ]
    assert _suppliers(
        client,
        ("where", "capability_records.cpk>=1.33"),
        ("where", "delivery_records.on_time_percent>=98"),
        ("country", "DE"),
        ("certification", "IATF_16949"),
    ) == [KRAFTWERK]
    assert _suppliers(client, ("country", "MX")) == [KRAFTWERK]  # a site in Mexico
    assert _suppliers(client, ("certification", "IATF_16949"), ("valid_on", "2030-01-01")) == []
    assert _suppliers(client, ("classification", "UNSPSC:4014*")) == [KRAFTWERK]
    assert _suppliers(client, ("as_of", "2020-01-01")) == []
    assert _suppliers(client, ("assurance", "third_party")) == []


def test_pagination_walks_every_supplier_once_in_order(seeded: Flask) -> None:
    client = seeded.test_client()
    for sort in ("supplier", "name", "issued_at", "-issued_at"):
        seen: list[str] = []
        cursor = None
        while True:
            pairs = [("limit", "1"), ("sort", sort)] + ([("cursor", cursor)] if cursor else [])
            page = _search(client, *pairs).json
            seen += [hit["supplier"] for hit in page["hits"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert sorted(seen) == sorted([KRAFTWERK, MEKONG, SELATAN]) and len(seen) == 3, sort
    everyone = _search(client, ("sort", "-issued_at")).json["hits"]
    issued = [hit["issuedAt"] for hit in everyone]
    assert issued == sorted(issued, reverse=True)


def test_every_hit_verifies_against_the_stated_checkpoint(seeded: Flask) -> None:
    client = seeded.test_client()
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    answer = _search(client, ("proofs", "inline")).json
    checkpoint = open_note(answer["checkpoint"]["note"], root.log_key)
    assert checkpoint.size == answer["checkpoint"]["size"]
    for hit in answer["hits"]:
        proof = hit["proof"]
        leaf = base64.b64decode(proof["leaf"])
        merkle.verify_inclusion(
            merkle.leaf_hash(leaf),
            hit["logIndex"],
            proof["treeSize"],
            [base64.b64decode(h) for h in proof["hashes"]],
            checkpoint.root,
        )
        assert json.loads(leaf)["supplier"] == hit["supplier"]
        made = bundle.Bundle.from_json(client.get(hit["bundle"]).json)
        assert bundle.verify(made, root).ok
        assert made.attestation.index == hit["logIndex"]


def test_fields_select_what_is_returned(seeded: Flask) -> None:
    hits = _search(seeded.test_client(), ("fields", "issuedAt,logIndex")).json["hits"]
    assert all(set(hit) == {"supplier", "issuedAt", "logIndex"} for hit in hits)


@pytest.mark.parametrize(
    ("pairs", "code"),
    [
        ([("where", "capability_records.cpk>=")], "invalid_condition"),
        ([("where", "capability_records.cpk >= 1.33; DROP TABLE suppliers")], "invalid_condition"),
        ([("where", "capability_records.nope>=1")], "unknown_metric"),
        ([("where", "lead_time_records.quoted_lead_time<=3")], "unit_required"),
        ([("where", "lead_time_records.quoted_lead_time<=3 KGM")], "unit_mismatch"),
        ([("where", "lead_time_records.quoted_lead_time<=3 XYZ")], "unknown_unit"),
        ([("where", "capability_records.cpk>=1 DAY")], "unexpected_unit"),
        ([("where", "capability_records.cpk>=1")] * 9, "too_many_conditions"),
        ([("country", "DE' OR '1'='1")], "invalid_parameter"),
        ([("limit", "100000")], "invalid_parameter"),
        ([("limit", "0")], "invalid_parameter"),
        ([("sort", "password")], "invalid_parameter"),
        ([("fields", "secret")], "invalid_parameter"),
        ([("as_of", "yesterday")], "invalid_parameter"),
        ([("fresh_within", "forever")], "invalid_parameter"),
        ([("assurance", "divine")], "invalid_parameter"),
        ([("classification", "UNSPSC")], "invalid_parameter"),
        ([("cursor", "not-a-cursor")], "invalid_cursor"),
        ([("colour", "red")], "unknown_parameter"),
        ([("country", "DE"), ("country", "FR")], "repeated_parameter"),
    ],
)
def test_bad_requests_are_refused_with_a_stable_code(
    seeded: Flask, pairs: list[tuple[str, str]], code: str
) -> None:
    answer = _search(seeded.test_client(), *pairs)
    assert answer.status_code == 400, answer.json
    assert answer.json["error"] == code
    assert answer.json["message"]


def test_a_cursor_only_continues_its_own_search(seeded: Flask) -> None:
    client = seeded.test_client()
    cursor = _search(client, ("limit", "1")).json["next"]
    other = _search(client, ("limit", "1"), ("country", "DE"), ("cursor", cursor))
    assert other.status_code == 400 and other.json["error"] == "invalid_cursor"


def test_the_metric_catalogue_is_served(seeded: Flask) -> None:
    metrics = {m["name"]: m for m in seeded.test_client().get("/api/v1/metrics").json["metrics"]}
    assert metrics["capability_records.cpk"]["unitBearing"] is False
    assert metrics["lead_time_records.quoted_lead_time"]["unitBearing"] is True
    assert metrics["energy_records.energy_consumed"]["section"] == "energy_records"
