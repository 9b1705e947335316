"""Buyer search over the index, on both databases: thresholds in any unit, scopes, filters,
pagination, proofs, and clear refusals of bad requests."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, insert, select

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.db import (
    index_attestations,
    index_certifications,
    index_classifications,
    index_countries,
    index_facts,
    index_latest_filters,
    index_suppliers,
)
from sqm.registry.indexer import derive_latest_filters
from sqm.registry.query import Condition, SupplierQuery
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
        ([("as_of", "9999-12-31T23:59:59-23:59")], "invalid_parameter"),
        ([("as_of", "0001-01-01T00:00:00+23:59")], "invalid_parameter"),
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


# --- the search's SQL against a plain reading of its definition, on generated index rows ------

METRICS = ("capability_records.cpk", "delivery_records.on_time_percent", "lead_time_records.days")
SCHEMES = ("ISO_9001", "IATF_16949")
# Two codes that differ only in case: a prefix of one must not find the other (SQLite's LIKE
# would, PostgreSQL's would not).
CODES = ("31161500", "31161600", "40141700", "A1161500", "a1161500")
DAY = date(2026, 11, 1)


@dataclass
class _Entry:
    index: int
    supplier: str
    issued: datetime
    rank: int
    facts: list[dict[str, Any]]
    countries: list[str]
    certificates: list[dict[str, Any]]
    classes: list[dict[str, Any]]


def _entries(rng: random.Random, suppliers: int) -> list[_Entry]:
    entries: list[_Entry] = []
    index = 0
    for number in range(suppliers):
        supplier = f"LEI:{number:020d}"
        for step in range(rng.randint(1, 3)):
            index += rng.randint(1, 3)
            facts = []
            for record in range(rng.randint(0, 6)):
                metric = rng.choice(METRICS)
                facts.append(
                    {
                        "log_index": index, "supplier": supplier,
                        "section": metric.split(".")[0], "record_id": f"r{record}",
                        "metric": metric, "value": 0.0,
                        "unit": "DAY" if metric == METRICS[2] else None,
                        "base_value": round(rng.uniform(0.5, 2.5), 2) * (50 if metric == METRICS[1] else 1),
                        "base_unit": rng.choice(("DAY", "MON")) if metric == METRICS[2] else None,
                        "site": None, "product": rng.choice(("p1", "p2", None)),
                        "characteristic": None,
                        "characteristic_class": rng.choice(("critical", "major", None)),
                        "as_of": None, "claimed_rank": rng.randint(0, 4),
                    }
                )  # fmt: skip
            entries.append(
                _Entry(
                    index, supplier, datetime(2026, 1 + number % 9, 1 + step, tzinfo=UTC),
                    rng.randint(0, 4), facts,
                    rng.sample(("DE", "MX", "VN"), rng.randint(0, 2)),
                    [
                        {
                            "log_index": index, "supplier": supplier, "record_id": scheme,
                            "scheme": scheme, "status": rng.choice(("active", "expired")),
                            "valid_from": rng.choice((None, date(2026, 1, 1), date(2026, 12, 1))),
                            "valid_until": rng.choice((None, date(2026, 6, 1), date(2027, 1, 1))),
                            "certificate_number": None, "site": None,
                        }
                        for scheme in rng.sample(SCHEMES, rng.randint(0, 2))
                    ],
                    [
                        {
                            "log_index": index, "supplier": supplier, "product": product,
                            "scheme": "UNSPSC", "code": rng.choice(CODES),
                        }
                        for product in ("p1", "p2")
                    ],
                )
            )  # fmt: skip
    return entries


def _store(engine: Engine, entries: list[_Entry]) -> None:
    latest: dict[str, _Entry] = {}
    for entry in entries:
        latest[entry.supplier] = entry
    with engine.begin() as connection:
        connection.execute(
            index_attestations.insert(),
            [
                {
                    "log_index": e.index, "supplier": e.supplier, "feed_id": f"feed-{e.index}",
                    "feed_sequence": e.index, "issued_at": e.issued, "previous_index": None,
                    "payload_sha256": "0" * 64, "assurance_rank": e.rank,
                }
                for e in entries
            ],
        )  # fmt: skip
        connection.execute(
            index_suppliers.insert(),
            [
                {
                    "supplier": s, "name": s, "country": None, "latest_index": e.index,
                    "latest_issued_at": e.issued, "attestation_count": 1,
                }
                for s, e in latest.items()
            ],
        )  # fmt: skip
        for table, rows in (
            (index_facts, [f for e in entries for f in e.facts]),
            (index_certifications, [c for e in entries for c in e.certificates]),
            (index_classifications, [c for e in entries for c in e.classes]),
            (
                index_countries,
                [
                    {"log_index": e.index, "supplier": e.supplier, "country": c}
                    for e in entries
                    for c in e.countries
                ],
            ),
        ):
            if rows:
                connection.execute(table.insert(), rows)
        derive_latest_filters(connection)


def _random_query(rng: random.Random) -> SupplierQuery:
    conditions = []
    for metric in rng.sample(METRICS, rng.randint(0, 3)):
        op = rng.choice((">=", ">", "<=", "<", "="))
        threshold = rng.choice((1.0, 1.33, 1.5, 2.0)) * (50 if metric == METRICS[1] else 1)
        base_unit = rng.choice(("DAY", "MON")) if metric == METRICS[2] else None
        conditions.append(
            Condition(metric, op, threshold, f"{metric}{op}{threshold}", None, base_unit)
        )
    code = rng.choice(CODES)
    return SupplierQuery(
        conditions=tuple(conditions),
        match=rng.choice(("all", "any")),
        country=rng.choice((None, "DE", "VN")),
        certification=(scheme := rng.choice((None, *SCHEMES))),
        valid_on=DAY if scheme else None,
        classification=rng.choice((None, ("UNSPSC", code), ("UNSPSC", code[:4] + "%"))),
        characteristic_class=rng.choice((None, "critical")),
        assurance=rng.choice((None, 2)),
        claimed_assurance=rng.choice((None, 3)),
        fresh_since=rng.choice((None, datetime(2026, 5, 1, tzinfo=UTC))),
        as_of=rng.choice((None, datetime(2026, 6, 2, tzinfo=UTC))),
        limit=100,
    )


def _sibling(rng: random.Random, query: SupplierQuery) -> SupplierQuery:
    """A query of the same shape with other values: the search runs it with the statement
    built for ``query``."""
    code = rng.choice(CODES)
    classification = query.classification
    if classification is not None:
        classification = ("UNSPSC", code[:4] + "%" if classification[1].endswith("%") else code)
    return dataclasses.replace(
        query,
        conditions=tuple(
            dataclasses.replace(each, threshold=each.threshold * rng.choice((0.5, 1.0, 1.2)))
            for each in query.conditions
        ),
        country=query.country and rng.choice(("DE", "VN")),
        certification=query.certification and rng.choice(SCHEMES),
        classification=classification,
        fresh_since=query.fresh_since and datetime(2026, rng.choice((4, 5, 6)), 1, tzinfo=UTC),
        as_of=query.as_of and datetime(2026, 6, rng.choice((1, 2, 3)), tzinfo=UTC),
    )


def _expected(entries: list[_Entry], query: SupplierQuery) -> list[tuple[str, int, list[Any]]]:
    """The definition, read plainly: each supplier's latest attestation (as of a time), kept
    when every filter and condition holds on it."""
    chosen: dict[str, _Entry] = {}
    for entry in entries:
        if query.as_of is None or entry.issued <= query.as_of:
            chosen[entry.supplier] = entry
    hits = []
    for supplier, entry in sorted(chosen.items()):

        def classified(product: str | None, entry: _Entry = entry) -> bool:
            assert query.classification is not None
            scheme, code = query.classification
            return any(
                c["product"] == product and c["scheme"] == scheme
                and (c["code"].startswith(code[:-1]) if code.endswith("%") else c["code"] == code)
                for c in entry.classes
            )  # fmt: skip

        if query.country and query.country not in entry.countries:
            continue
        if query.certification and not any(
            c["scheme"] == query.certification and c["status"] == "active"
            and (c["valid_from"] is None or c["valid_from"] <= query.valid_on)
            and (c["valid_until"] is None or c["valid_until"] >= query.valid_on)
            for c in entry.certificates
        ):  # fmt: skip
            continue
        if query.classification and not any(classified(p) for p in ("p1", "p2")):
            continue
        if query.assurance is not None and entry.rank < query.assurance:
            continue
        if query.fresh_since and entry.issued < query.fresh_since:
            continue
        matches, ok = [], True
        for condition in query.conditions:
            values = [
                f["base_value"] for f in entry.facts
                if f["metric"] == condition.metric
                and (condition.base_unit is None or f["base_unit"] == condition.base_unit)
                and (query.characteristic_class is None or f["section"] != "capability_records"
                     or f["characteristic_class"] == query.characteristic_class)
                and (query.claimed_assurance is None or f["claimed_rank"] >= query.claimed_assurance)
                and (query.classification is None or f["product"] is None or classified(f["product"]))
            ]  # fmt: skip
            holding = [v for v in values if _satisfies(condition, v)]
            if query.match == "all":
                ok = ok and bool(values) and len(holding) == len(values)
            else:
                ok = ok and bool(holding)
            matches.append((min(values, default=None), max(values, default=None), len(values)))
        if ok:
            hits.append((supplier, entry.index, matches))
    return hits


def _satisfies(condition: Condition, value: float) -> bool:
    threshold = condition.threshold
    return {
        ">=": value >= threshold, ">": value > threshold, "<=": value <= threshold,
        "<": value < threshold, "=": abs(value - threshold) <= 1e-9 * max(1.0, abs(threshold)),
    }[condition.op]  # fmt: skip


@pytest.mark.parametrize("probes", [(1000, 10_000), (2, 1000)])
def test_the_search_finds_what_its_definition_says(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probes: tuple[int, ...]
) -> None:
    # (2, 1000): every filter set is "large", so a walk is narrowed by the other sets' lists
    # (on PostgreSQL hashed, on SQLite a product-class range probed), as at registry scale.
    monkeypatch.setattr("sqm.registry.search.STARTING_SET_PROBES", probes)
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    rng = random.Random(2026)
    entries = _entries(rng, 60)
    _store(engine, entries)
    search = app.extensions["sqm"]["search"]
    tried = reused = 0
    query = _random_query(rng)
    for number in range(300):
        # Every other query has the shape of the one before: it reuses that one's statement
        # when its values choose the same starting sets.
        query = _sibling(rng, query) if number % 2 else _random_query(rng)
        expected = _expected(entries, query)
        built = len(search._searches)
        answer = search.run(query, datetime(2026, 11, 27, tzinfo=UTC))
        reused += len(search._searches) == built
        got = [
            (
                hit["supplier"],
                hit["logIndex"],
                [(m["min"], m["max"], m["values"]) for m in hit.get("matches", [])],
            )
            for hit in answer["hits"]
        ]
        assert got == expected, query
        tried += bool(expected)
        if len(expected) > 2:  # the same hits, two a page, in the same order
            paged: list[tuple[str, int]] = []
            after = None
            while True:
                page = search.run(
                    dataclasses.replace(query, limit=2, after=after),
                    datetime(2026, 11, 27, tzinfo=UTC),
                )
                paged += [(hit["supplier"], hit["logIndex"]) for hit in page["hits"]]
                if page["next"] is None:
                    break
                after = (paged[-1][0], paged[-1][0])
            assert paged == [(supplier, index) for supplier, index, _ in expected], query
    assert tried > 60  # most queries find something: the comparison is not of empty lists
    assert reused > 100  # many ran a statement built for other values


@pytest.mark.parametrize("probes", [(1000,), (2, 1000)])
def test_the_search_starts_from_the_smallest_filter_set(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probes: tuple[int, ...]
) -> None:
    # (2, 1000): every set is larger than the first look, so the closer one decides.
    monkeypatch.setattr("sqm.registry.search.STARTING_SET_PROBES", probes)
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    _store(engine, _entries(random.Random(7), 60))
    search = app.extensions["sqm"]["search"]
    with engine.connect() as connection:
        sizes = dict(
            connection.execute(
                select(index_latest_filters.c.value, func.count())
                .where(index_latest_filters.c.value.in_(["DE", "UNSPSC:31161500", "ISO_9001"]))
                .group_by(index_latest_filters.c.value)
            ).all()
        )
    assert len(set(sizes.values())) == 3  # a strict order, for the choice to be checked
    query = SupplierQuery(
        country="DE",
        classification=("UNSPSC", "31161500"),
        certification="ISO_9001",
        valid_on=DAY,
        limit=100,
    )
    first, *narrowing = (each.suppliers for each in search._starting_sets(query))

    def values(chosen: Any) -> set[str]:
        return {str(value) for value in chosen.compile(engine).params.values() if value in sizes}

    smallest = min(sizes, key=sizes.__getitem__)
    assert values(first) == {smallest}
    if probes == (1000,):
        assert narrowing == []  # the smallest set is short enough to walk as it is
    else:  # longer than the first look: the other sets, counted in full, narrow the walk
        assert sorted(value for each in narrowing for value in values(each)) == sorted(
            set(sizes) - {smallest}
        )
    # The counts are remembered for a while: a search soon after counts nothing, so what it
    # remembers (here made up: the largest set the smallest) steers it.
    largest = max(sizes, key=sizes.__getitem__)
    for key, (_, until) in list(search._sizes.items()):
        if largest in key[1]:
            search._sizes[key] = (0, until)
    first, *_ = (each.suppliers for each in search._starting_sets(query))
    assert values(first) == {largest}


def test_a_search_walks_a_one_value_set_before_an_equally_large_range(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both sets are larger than counted: walking the range means reading every supplier it
    # holds first (at 100,000 suppliers, an automotive search 29 -> 15 ms), the one value's
    # index entries are walked in supplier order and the walk stops with the page.
    monkeypatch.setattr("sqm.registry.search.STARTING_SET_PROBES", (2,))
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    _store(engine, _entries(random.Random(7), 60))
    search = app.extensions["sqm"]["search"]
    query = SupplierQuery(classification=("UNSPSC", "3116%"), country="DE", limit=100)
    first, *rest = search._starting_sets(query)
    assert (first.kind, first.value) == ("country", "DE")
    assert rest == []  # the range, larger than counted, is left to the exact test


def test_a_prefix_set_holds_the_codes_with_that_prefix_whatever_the_collation(
    icu_postgres_url: str, tmp_path: Path
) -> None:
    # Under en-US, "UNSPSC:a1161500" sorts between "UNSPSC:A116" and "UNSPSC:A117": a range
    # of the database's own collation would count it in the prefix "A116".
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=icu_postgres_url))
    search = app.extensions["sqm"]["search"]
    engine = search.log.engine
    rows = [("A1161500", "LEI:1"), ("a1161500", "LEI:2"), ("A1171500", "LEI:3")]
    with engine.begin() as connection:
        connection.execute(
            insert(index_latest_filters),
            [
                {"kind": "classification", "value": f"UNSPSC:{code}", "supplier": supplier,
                 "log_index": number}
                for number, (code, supplier) in enumerate(rows)
            ],
        )  # fmt: skip
    query = SupplierQuery(classification=("UNSPSC", "A116%"), limit=10)
    (prefix,) = search._filter_sets(query)
    with engine.connect() as connection:
        assert connection.execute(prefix.suppliers).scalars().all() == ["LEI:1"]
    assert search._set_sizes([prefix], 1000) == [1]


# Each field of a query with another value, or present where it was absent (or the reverse).
_OTHER_VALUES: dict[str, list[Any]] = {
    "match": ["any"],
    "country": [None, "VN"],
    "certification": [None, "IATF_16949"],
    "valid_on": [None, date(2026, 10, 1)],
    "classification": [None, ("HS", "8483"), ("HS", "84%")],
    "characteristic_class": [None, "major"],
    "assurance": [None, 1],
    "claimed_assurance": [None, 1],
    "fresh_since": [None, datetime(2026, 3, 1, tzinfo=UTC)],
    "as_of": [None, datetime(2026, 4, 1, tzinfo=UTC)],
    "sort": ["name", "issued_at", "-issued_at"],
    "after": [None, ("LEI:Z", "LEI:Z")],
    "limit": [7],
    "conditions": [
        (),
        (Condition(METRICS[1], "<", 90.0, "", None),),
        (Condition(METRICS[2], "=", 4.0, "", "WEE", "DAY"),),
        (Condition(METRICS[0], ">=", 1.67, "", None), Condition(METRICS[1], ">", 95.0, "", None)),
    ],
}


@pytest.mark.parametrize("postgres", [False, True], ids=["sqlite", "postgresql"])
def test_queries_of_one_shape_share_one_statement(postgres: bool) -> None:
    # A statement is reused for every query whose shape (search._shape) it was built for: two
    # queries of one shape must build the same SQL with the same fixed values, and every value
    # a query gives must be a parameter the statement is run with. Checked field by field, for
    # each way the search can start (no set, every set, the sets in another order).
    from sqlalchemy.dialects import postgresql, sqlite

    from sqm.registry.search import SupplierSearch, _shape

    search = object.__new__(SupplierSearch)
    search._postgres = postgres
    dialect = postgresql.dialect() if postgres else sqlite.dialect()
    base = SupplierQuery(
        conditions=(Condition(METRICS[0], ">=", 1.33, "", None),),
        country="DE",
        certification="ISO_9001",
        valid_on=DAY,
        classification=("UNSPSC", "3116%"),
        characteristic_class="critical",
        assurance=2,
        claimed_assurance=3,
        fresh_since=datetime(2026, 5, 1, tzinfo=UTC),
        after=("LEI:M", "LEI:M"),
        limit=20,
    )

    def built(query: SupplierQuery, order: int) -> tuple[str, dict[str, Any], tuple[Any, ...]]:
        sets = search._filter_sets(query)
        starting = [[], sets, sets[::-1]][order] if query.as_of is None else []
        statement = search._build(query, sets, starting)
        compiled = statement.compile(dialect=dialect)
        values = search._values(query, sets)
        missing = [
            name for name, bind in compiled.binds.items() if bind.required and name not in values
        ]
        assert not missing, (query, missing)
        fixed = {name: value for name, value in compiled.params.items() if name not in values}
        key = (_shape(query), tuple(sets.index(each) for each in starting))
        return str(compiled), fixed, key

    compared = 0
    for name, others in _OTHER_VALUES.items():
        for value in others:
            queries = [dataclasses.replace(base, **{name: value})]
            if name == "sort":  # a cursor holds the sort's own key
                key_of = {"name": "Kraft", "issued_at": "2026-05-01T00:00:00+00:00"}
                after = (key_of.get(str(value).lstrip("-")), "LEI:M")
                queries = [dataclasses.replace(base, sort=value, after=after)]
            for other in queries:
                for order in range(3):
                    sql, fixed, key = built(base, order)
                    other_sql, other_fixed, other_key = built(other, order)
                    if key == other_key:  # one shape: one statement serves both
                        compared += 1
                        assert (other_sql, other_fixed) == (sql, fixed), (name, value, order)
    # Every value changed at once, the shape kept: the same statement.
    sibling = dataclasses.replace(
        base,
        conditions=(Condition(METRICS[1], ">=", 90.0, "", None),),
        country="VN", certification="IATF_16949", valid_on=date(2026, 1, 2),
        classification=("HS", "84%"), characteristic_class="major", assurance=1,
        claimed_assurance=1, fresh_since=datetime(2026, 1, 1, tzinfo=UTC), after=("LEI:A", "LEI:A"),
    )  # fmt: skip
    for order in range(3):
        sql, fixed, key = built(base, order)
        assert built(sibling, order) == (sql, fixed, key)
        compared += 1
    assert compared >= 3 + 2 * 3  # the sibling's, and at least two fields changed in value alone
