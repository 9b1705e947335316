"""The index is derived from the log: rebuilt from it, checked against it, and refusing an
envelope that does not match its log leaf."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, delete, func, select, update

from sqm.cli import main
from sqm.client import requests
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.db import (
    INDEX_LOCK,
    attestations,
    envelope_of,
    exclusive,
    index_attestations,
    index_endorsements,
    index_facts,
    index_latest_filters,
    index_state,
    index_suppliers,
    index_verifications,
    stored_envelope,
    writing,
)
from sqm.registry.indexer import ROW_TABLES, Indexer, IndexMismatchError
from sqm.registry.seed import seed, supplier_key
from tests.conftest import EXAMPLES


def _seeded(engine: Engine, tmp_path: Path) -> tuple[object, Indexer]:
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    return app, app.extensions["sqm"]["indexer"]


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar() or 0)


def test_the_index_follows_the_log_and_rebuilds_to_the_same_rows(
    engine: Engine, tmp_path: Path
) -> None:
    _, indexer = _seeded(engine, tmp_path)
    assert indexer.position() == 5  # three key registrations, three attestations
    assert _count(engine, index_suppliers) == 3 and _count(engine, index_attestations) == 3
    facts = _count(engine, index_facts)
    assert facts > 150
    assert indexer.check() == []
    assert indexer.rebuild() == 6
    assert _count(engine, index_facts) == facts and indexer.check() == []


def test_check_finds_an_index_row_that_the_log_does_not_support(
    engine: Engine, tmp_path: Path
) -> None:
    _, indexer = _seeded(engine, tmp_path)
    with engine.begin() as connection:
        connection.execute(
            update(index_facts)
            .where(index_facts.c.metric == "capability_records.cpk")
            .values(value=9.99, base_value=9.99)
        )
    problems = indexer.check()
    assert problems and all("index_facts differs from the log" in p for p in problems)
    indexer.rebuild()
    assert indexer.check() == []


def test_an_envelope_changed_behind_the_log_is_refused(engine: Engine, tmp_path: Path) -> None:
    _, indexer = _seeded(engine, tmp_path)
    with engine.begin() as connection:
        seq, envelope = connection.execute(
            select(attestations.c.seq, attestations.c.envelope)
        ).first()
        stored = envelope_of(envelope)
        forged = replace(stored, payload=stored.payload[:-8] + b"00000000")
        connection.execute(
            update(attestations)
            .where(attestations.c.seq == seq)
            .values(envelope=stored_envelope(forged))
        )
    assert any("does not match the log leaf" in p for p in indexer.check())
    with pytest.raises(IndexMismatchError, match="does not match the log leaf"):
        indexer.rebuild()


OPERATOR = {"Authorization": "Bearer operator-secret"}
CERTA = "LEI:529900SQMCERTBODY123"


def _endorsed(engine: Engine, tmp_path: Path, level: str = "third_party") -> tuple[Any, int]:
    """A seeded registry (operator token ``operator-secret``) in which an endorser, not
    verified, endorsed the Mexican supplier's attestation at ``level``: its log index."""
    url = engine.url.render_as_string(hide_password=False)
    config = RegistryConfig(
        data_dir=tmp_path / "registry", database_url=url, operator_token="operator-secret"
    )
    app = create_app(config)
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    client = app.test_client()
    auditor = Ed25519PrivateKey.generate()
    organisation = {
        "name": "Certa Industrie-Zertifizierung GmbH",
        "identifiers": [{"scheme": "LEI", "code": CERTA.removeprefix("LEI:")}],
    }
    registered = client.post("/api/v1/endorsers", json=requests.registration(organisation, auditor))
    assert registered.status_code == 201, registered.json
    hit = client.get("/api/v1/search/suppliers?country=MX").json["hits"][0]
    digest = json.loads(base64.b64decode(client.get(hit["bundle"]).json["leaf"]))["payloadSha256"]
    envelope = requests.endorsement(CERTA, hit["logIndex"], digest, level, auditor)
    assert client.post("/api/v1/endorsements", json=envelope.to_json()).status_code == 201
    return app, int(hit["logIndex"])


def _assured(client: Any, level: str) -> list[tuple[str, int, str]]:
    found = client.get(f"/api/v1/search/suppliers?assurance={level}").json["hits"]
    return [(h["supplier"], h["logIndex"], h["assurance"]) for h in found]


def _verify(client: Any, status: str) -> None:
    path = f"/api/v1/operator/suppliers/{CERTA}/verification"
    answer = client.put(path, json={"status": status}, headers=OPERATOR)
    assert answer.status_code == 200, answer.json


def test_an_endorsement_raises_assurance_once_its_endorser_is_verified(
    engine: Engine, tmp_path: Path
) -> None:
    app, endorsed = _endorsed(engine, tmp_path)
    client, indexer = app.test_client(), app.extensions["sqm"]["indexer"]
    supplier = client.get(f"/api/v1/attestations/{endorsed}").json["supplier"]
    # Anyone may register as an endorser: an unverified one's word raises nothing.
    assert _assured(client, "third_party") == []
    assert client.get(f"/api/v1/attestations/{endorsed}").json["assurance"] == "self_declared"
    assert indexer.check() == []
    _verify(client, "verified")
    assert _assured(client, "third_party") == [(supplier, endorsed, "third_party")]
    assert client.get(f"/api/v1/attestations/{endorsed}").json["assurance"] == "third_party"
    assert indexer.check() == []
    indexer.rebuild()
    assert indexer.check() == []
    assert _assured(client, "third_party") == [(supplier, endorsed, "third_party")]
    # Suspended: its endorsements stop counting, and count again once it is verified again.
    _verify(client, "suspended")
    assert _assured(client, "second_party") == []
    assert indexer.check() == []
    _verify(client, "verified")
    assert _assured(client, "third_party") == [(supplier, endorsed, "third_party")]


def test_check_finds_an_assurance_the_log_does_not_support(engine: Engine, tmp_path: Path) -> None:
    app, endorsed = _endorsed(engine, tmp_path, "third_party_accredited")
    indexer = app.extensions["sqm"]["indexer"]
    with writing(engine, index=True) as connection:
        connection.execute(
            update(index_attestations)
            .where(index_attestations.c.log_index == endorsed)
            .values(assurance_rank=4)
        )
    assert indexer.check() == [
        f"entry {endorsed}: assurance rank 4, the log's verified endorsements give 0"
    ]
    with writing(engine, index=True) as connection:
        connection.execute(delete(index_verifications))
        connection.execute(
            index_verifications.insert().values(
                supplier=CERTA, verification="verified", log_index=0
            )
        )
    problems = indexer.check()
    assert "index_verifications differs from the log's verification statuses" in problems
    indexer.rebuild()
    assert indexer.check() == []


def test_an_index_of_format_2_is_upgraded_to_rank_by_verified_endorsers(
    engine: Engine, tmp_path: Path
) -> None:
    # An index made before: every endorsement raised the rank, and no endorsements or
    # statuses were kept. At start the registry derives them from the log and ranks again.
    app, endorsed = _endorsed(engine, tmp_path)
    indexer = app.extensions["sqm"]["indexer"]
    with writing(engine, index=True) as connection:
        connection.execute(delete(index_endorsements))
        connection.execute(delete(index_verifications))
        connection.execute(
            update(index_attestations)
            .where(index_attestations.c.log_index == endorsed)
            .values(assurance_rank=3)
        )
        connection.execute(
            update(index_state).where(index_state.c.name == "format").values(last_index=2)
        )
    problems = indexer.check()
    assert problems[0].startswith("the index is of format 2, this registry's is 3")
    assert any("index_endorsements differs" in p for p in problems)
    url = engine.url.render_as_string(hide_password=False)
    restarted = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    assert restarted.extensions["sqm"]["indexer"].check() == []
    assert _assured(restarted.test_client(), "second_party") == []
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(index_endorsements)).scalar() == 1
        )
    # A rebuild by `sqm registry reindex` leaves an index of the current format too.
    with writing(engine, index=True) as connection:
        connection.execute(
            update(index_state).where(index_state.c.name == "format").values(last_index=2)
        )
    rebuilt = Indexer(engine)
    rebuilt.rebuild()
    assert rebuilt.check() == []


def test_reindex_command_rebuilds_and_checks(tmp_path: Path) -> None:
    app = create_app(RegistryConfig(data_dir=tmp_path))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    checked = CliRunner().invoke(main, ["registry", "reindex", "--data", str(tmp_path), "--check"])
    assert checked.exit_code == 0, checked.output
    assert "consistent" in checked.output
    rebuilt = CliRunner().invoke(main, ["registry", "reindex", "--data", str(tmp_path)])
    assert rebuilt.exit_code == 0 and "rebuilt the index from 6 log entries" in rebuilt.output


def test_a_batch_counts_every_attestation_of_a_supplier_once(
    engine: Engine, tmp_path: Path
) -> None:
    # Entries are applied a batch at a time: a supplier with several attestations in one
    # batch gets them all counted, and its newest as its latest, as one at a time would.
    app, indexer = _seeded(engine, tmp_path)
    ingest = app.extensions["sqm"]["ingest"]  # type: ignore[attr-defined]
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    supplier = "LEI:529900SQMKRAFTWERK41"
    key = supplier_key(tmp_path / "seed-keys", supplier)
    issued = datetime.fromisoformat(feed["header"]["issued_at"])
    indexes = []
    for step in (1, 2):
        feed = copy.deepcopy(feed)
        feed["header"]["previous_feed"]["sequence"] = feed["header"]["sequence"]
        feed["header"]["sequence"] += 1
        feed["header"]["issued_at"] = (issued + timedelta(days=30 * step)).isoformat()
        ingest.now = lambda at=issued, step=step: at + timedelta(days=30 * step, hours=1)
        status, answer = ingest.attest(requests.attestation(feed, key).to_json())
        assert status == 201, answer
        indexes.append(answer["logIndex"])

    def suppliers() -> list[tuple[object, ...]]:
        with engine.connect() as connection:
            return sorted(tuple(r) for r in connection.execute(select(index_suppliers)).all())

    one_at_a_time = suppliers()
    mine = [row for row in one_at_a_time if row[0] == supplier]
    assert [(row[3], row[5]) for row in mine] == [(indexes[-1], 3)]
    assert indexer.rebuild() == 8
    assert suppliers() == one_at_a_time and indexer.check() == []


def test_one_indexer_at_a_time(engine: Engine, tmp_path: Path) -> None:
    # Every gunicorn worker's sweep indexes; while one does, the others skip their turn
    # instead of computing the same rows again.
    _, indexer = _seeded(engine, tmp_path)
    with writing(engine) as connection:
        for table in (*ROW_TABLES, index_attestations, index_suppliers, index_state):
            connection.execute(delete(table))
    assert indexer.position() == -1
    with exclusive(engine, "indexer", INDEX_LOCK):  # another process's indexer, as it were
        assert indexer.catch_up(wait=False) == 0 and indexer.position() == -1
    assert indexer.catch_up(wait=False) == 6 and indexer.check() == []


def test_an_index_of_the_earlier_format_is_upgraded_in_place(
    engine: Engine, tmp_path: Path
) -> None:
    _, indexer = _seeded(engine, tmp_path)
    with writing(engine) as connection:  # as a registry of the previous version left it
        connection.execute(delete(index_latest_filters))
        connection.execute(delete(index_state).where(index_state.c.name == "format"))
    assert any("index_latest_filters differs" in p for p in indexer.check())
    indexer.upgrade()
    assert indexer.check() == [] and _count(engine, index_latest_filters) > 6


def test_a_deleted_index_file_is_rebuilt_from_the_log_at_start(tmp_path: Path) -> None:
    # The index is derived: an operator may delete its file while the registry is stopped.
    path = tmp_path / "registry.sqlite3"
    url = f"sqlite:///{path}"
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    engine = app.extensions["sqm"]["log"].engine
    facts = _count(engine, index_facts)
    assert facts > 150
    engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}.index{suffix}").unlink(missing_ok=True)
    restarted = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    indexer: Indexer = restarted.extensions["sqm"]["indexer"]
    assert Path(f"{path}.index").exists()
    assert indexer.position() == 5 and _count(indexer.engine, index_facts) == facts
    assert indexer.check() == []
